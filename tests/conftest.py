"""Fixtures shared by the test tiers (the netns tier on this kernel, the vm tier in the guest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import nsutil


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-seg6",
        action="store_true",
        help="fail instead of skipping a test marked seg6 that cannot run here "
        "(scripts/test passes it to the vm tier run with --host-profile)",
    )


@pytest.fixture
def netns() -> Iterator[nsutil.NetnsFactory]:
    """`netns("ha")` creates a fresh namespace; all are deleted after the test."""
    factory = nsutil.NetnsFactory()
    try:
        yield factory
    finally:
        factory.cleanup()
