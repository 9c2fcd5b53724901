"""Fixtures shared by the test tiers (the netns tier on this kernel, the vm tier in the guest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import nsutil


@pytest.fixture
def netns() -> Iterator[nsutil.NetnsFactory]:
    """`netns("ha")` creates a fresh namespace; all are deleted after the test."""
    factory = nsutil.NetnsFactory()
    try:
        yield factory
    finally:
        factory.cleanup()
