"""Fixtures for the netns tier: skip with the missing capability named, clean up always."""

from __future__ import annotations

import pytest

from tests import nsutil

_missing = nsutil.missing_capability()


def _seg6_skip(item: pytest.Item) -> str | None:
    """Why a test marked `seg6` cannot run on this kernel, or None.

    ``seg6(auto=True)``: the test runs the daemons with ``tunnel = "auto"`` and
    checks seg6 objects, so it also needs a kernel where auto picks seg6 (no
    ip6tnl).  Where the host lacks seg6, scripts/test runs these tests in the vm
    tier with ip6tnl and MIP6 hidden (``scripts/vm-tier --host-profile``).
    """
    mark = item.get_closest_marker("seg6")
    if mark is None:
        return None
    lacks = nsutil.kernel_lacks("seg6")
    if lacks:
        return f"netns tier: {lacks}; scripts/test runs it in the vm tier instead"
    if mark.kwargs.get("auto") and nsutil.kernel_lacks("ip6tnl") is None:
        return "netns tier: expects `tunnel = auto` to pick seg6, but this kernel has ip6tnl"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/netns/" in str(item.fspath):
            item.add_marker(pytest.mark.netns)
            if _missing:
                item.add_marker(pytest.mark.skip(reason=f"netns tier: {_missing}"))
            elif (why := _seg6_skip(item)) is not None:
                if config.getoption("--require-seg6"):
                    raise pytest.UsageError(f"--require-seg6: {item.nodeid}: {why}")
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces() -> None:
    if not _missing:
        nsutil.sweep_stale()


# The `netns` fixture lives in tests/conftest.py (shared with the vm tier).
