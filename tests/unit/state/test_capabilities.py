"""`Capabilities.resolve` and `tunnel_problem`: which tunnel backend `[kernel] tunnel` gets."""

from __future__ import annotations

import pytest

from mip6ctl.config.model import KernelSection
from mip6ctl.state.render import Capabilities, tunnel_problem

BOTH = {"ip6tnl": True, "seg6": True, "seg6local": True}
SEG6_ONLY = {"ip6tnl": False, "seg6": True, "seg6local": True}  # the old CI kernel
NEITHER = {"ip6tnl": False, "seg6": False, "seg6local": False}  # the CI kernel since 2026-12
UNPROBED = {"ip6tnl": None, "seg6": None, "seg6local": None}  # no root: nothing known


@pytest.mark.parametrize(
    ("setting", "available", "backend", "problem"),
    [
        ("auto", BOTH, "ip6tnl", None),
        ("auto", SEG6_ONLY, "seg6", None),
        # neither: ip6tnl has no static objects, so the daemon's static state applies
        ("auto", NEITHER, "ip6tnl", "no IPv6-in-IPv6 data path"),
        ("auto", UNPROBED, "seg6", None),
        ("ip6tnl", SEG6_ONLY, "ip6tnl", "CONFIG_IPV6_TUNNEL"),
        ("seg6", BOTH, "seg6", None),
        ("seg6", NEITHER, "seg6", "CONFIG_IPV6_SEG6_LWTUNNEL"),
    ],
)
def test_tunnel_backend(setting: str, available: dict, backend: str, problem: str | None) -> None:
    kernel = KernelSection(tunnel=setting)
    assert Capabilities.resolve(available, kernel).tunnel == backend
    found = tunnel_problem(available, kernel)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
