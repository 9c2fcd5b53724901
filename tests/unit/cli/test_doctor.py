"""doctor's decisions: what `[kernel]` resolves to for a given set of capabilities."""

from __future__ import annotations

from dataclasses import dataclass

from mip6ctl.cli.doctor import decisions
from mip6ctl.config.model import KernelSection


@dataclass
class Cap:
    name: str
    available: bool | None


def _caps(**avail: bool) -> list[Cap]:
    return [Cap(k, v) for k, v in avail.items()]


def test_this_kernel_without_mip6_or_ip6tnl():
    d = decisions(_caps(mip6=False, ip6tnl=False, proxy_ndp=True), KernelSection())
    assert d["tunnel"]["choice"] == "seg6" and "no ip6tnl" in d["tunnel"]["reason"]
    assert d["signalling"]["choice"] == "userspace"
    assert "CONFIG_IPV6_MIP6" in d["signalling"]["reason"]
    assert d["route_optimization"]["choice"] == "unavailable"


def test_full_kernel():
    d = decisions(_caps(mip6=True, ip6tnl=True, proxy_ndp=True), KernelSection())
    assert d["tunnel"]["choice"] == "ip6tnl"
    assert d["signalling"]["choice"] == "kernel"
    assert d["route_optimization"]["choice"] == "available"


def test_kernel_signalling_forced_without_mip6_is_named():
    d = decisions(_caps(mip6=False), KernelSection(signalling="kernel"))
    assert d["signalling"]["choice"] == "unavailable"
    assert "CONFIG_IPV6_MIP6" in d["signalling"]["reason"]


def test_daemon_defence():
    d = decisions(_caps(proxy_ndp=True), KernelSection(home_address_defence="daemon"))
    assert d["home_address_defence"]["choice"] == "daemon"
