"""Fixtures for the netns tier: skip with the missing capability named, clean up always."""

from __future__ import annotations

import pytest

from tests import nsutil

_missing = nsutil.missing_capability()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)
            if _missing:
                item.add_marker(pytest.mark.skip(reason=f"netns tier: {_missing}"))


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces() -> None:
    if not _missing:
        nsutil.sweep_stale()


# The `netns` fixture lives in tests/conftest.py (shared with the vm tier).
