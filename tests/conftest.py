"""Fixtures shared by the test tiers (the netns tier on this kernel, the vm tier in the guest)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import nsutil


def _host_profile() -> bool:
    """Booted by `scripts/vm-tier --host-profile`: look like the development host."""
    try:
        with open("/proc/cmdline") as f:
            return "mip6ctl.host_profile=1" in f.read().split()
    except OSError:
        return False


if _host_profile():
    # Debian builds CONFIG_IPV6_MIP6 in, so no module blacklist hides it: the probe
    # reports it (and ESP, ip6tnl) missing instead, for this process and the daemons
    # the tests start, as on the host kernel these tests were written for.
    os.environ.setdefault("MIP6CTL_PROBE_DENY", "mip6,esp,ip6tnl,ip6tnl_external")


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
