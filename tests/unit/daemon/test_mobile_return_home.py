"""Returning home (RFC 6275 §11.5.5): the home agent is resolved from ``::`` before the
de-registration, and the static neighbour entry lives until the BA."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.daemon import mobile
from mip6ctl.daemon.mobile import MobileNodeController
from mip6ctl.daemon.workqueue import KeyResult
from mip6ctl.engine.events import AtHome as EngineAtHome
from mip6ctl.engine.events import CareOfAddressChanged
from mip6ctl.engine.movement import AtHome, Moved
from mip6ctl.state.objects import Neighbour
from mip6ctl.state.render import Capabilities, render_mobile_node
from mip6ctl.wire.datagram import ICMPv6Received
from mip6ctl.wire.icmp6 import NeighborAdvertisement, TargetLinkLayerAddress

CFG = load_directory(Path(__file__).parents[3] / "examples" / "testbed" / "mn").config
HA = IPv6Address("2001:db8:1::1")
R1 = IPv6Address("fe80::a")
COA1 = IPv6Address("2001:db8:a::5")
MAC = bytes.fromhex("02005e005301")


class FakeLoop:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def set_mobile_node(self, view: Any) -> bool:
        self.calls.append(("view", view))
        return True

    async def wait_reconciled(self, key: Any, timeout: float) -> KeyResult:
        self.calls.append(("wait", key))
        return KeyResult(True)

    def key_result(self, key: Any) -> KeyResult | None:
        return None


class FakeNd:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def neighbor_solicitation_unspecified(self, ifname: str, target: IPv6Address) -> None:
        self.calls.append(("ns-from-::", ifname, target))

    def neighbor_advertisement(self, ifname: str, target: IPv6Address) -> None:
        self.calls.append(("na", ifname, target))

    def close(self) -> None:
        pass


def controller(calls: list) -> MobileNodeController:
    ctl = MobileNodeController(
        CFG, loop=FakeLoop(calls), caps=Capabilities(), feed=lambda e: calls.append(("feed", e))
    )
    ctl._nd = FakeNd(calls)  # type: ignore[assignment]
    return ctl


def na(target: IPv6Address = HA, *, lladdr: bytes | None = MAC, ifname: str = "mn0") -> Any:
    opts = (TargetLinkLayerAddress(lladdr),) if lladdr is not None else ()
    msg = NeighborAdvertisement(target, NeighborAdvertisement.O, opts)
    return ICMPv6Received(msg, HA, IPv6Address("ff02::1"), 255, ifname)


async def settle(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def kinds(calls: list) -> list[str]:
    return [c[0] for c in calls]


def test_returning_home_resolves_the_home_agent_from_unspecified_first() -> None:
    calls: list = []

    async def run() -> MobileNodeController:
        ctl = controller(calls)
        ctl._run([Moved("mn0", COA1, R1)])
        await settle()
        calls.clear()
        ctl._run([AtHome("mn0", None)])
        await settle()
        assert kinds(calls) == ["view", "ns-from-::"]  # the engine has not heard yet
        ctl.icmp(na(IPv6Address("2001:db8:1::77")))  # another target: not the answer
        ctl.icmp(na(lladdr=None))  # no Target Link-Layer Address: not usable
        ctl.icmp(na(ifname="other0"))  # another link
        await settle()
        assert kinds(calls) == ["view", "ns-from-::"]
        ctl.icmp(na())
        await settle()
        assert kinds(calls) == ["view", "ns-from-::", "view", "wait", "feed"]
        st = ctl.status()
        assert st["home_agent_resolved_with_unspecified_source"] is True
        assert st["home_agent_lladdr"] == "02:00:5e:00:53:01"
        # the de-registration's BA: the engine's AdvertiseHomeAddress
        ctl.home_address_free()
        await ctl.stop()
        return ctl

    asyncio.run(run())
    assert calls[1][1:] == ("mn0", HA)
    resolved = calls[2][1]
    assert resolved.home_agent_lladdr == "02:00:5e:00:53:01"
    objs = render_mobile_node(CFG, resolved, Capabilities()).objects.values()
    assert Neighbour("mn0", str(HA), "02:00:5e:00:53:01") in objs
    assert calls[4][1] == EngineAtHome("mn0")
    assert calls[5][0] == "view" and calls[5][1].home_agent_lladdr is None
    assert calls[5][1].ifname == "mn0" and calls[5][1].care_of_address is None


def test_no_answer_within_the_bound_tells_the_engine_anyway(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mobile, "HA_RESOLVE_TIMEOUT", 0.03)
    calls: list = []

    async def run() -> dict:
        ctl = controller(calls)
        ctl._run([Moved("mn0", COA1, R1)])
        await settle()
        calls.clear()
        ctl._run([AtHome("mn0", None)])
        await asyncio.sleep(0.1)
        st = ctl.status()
        await ctl.stop()
        return st

    st = asyncio.run(run())
    assert kinds(calls) == ["view"] + ["ns-from-::"] * mobile.HA_RESOLVE_SOLICITS + [
        "wait",
        "feed",
    ]
    assert calls[-1][1] == EngineAtHome("mn0")
    assert st["home_agent_resolved_with_unspecified_source"] is False
    assert st["home_agent_lladdr"] is None
    assert "no Neighbor Advertisement for the home agent" in caplog.text


def test_a_move_away_during_the_resolution_supersedes_it() -> None:
    calls: list = []

    async def run() -> None:
        ctl = controller(calls)
        ctl._run([Moved("mn0", COA1, R1)])
        await settle()
        calls.clear()
        ctl._run([AtHome("mn0", None)])
        await settle()
        ctl._run([Moved("mn0", COA1, R1)])  # away again before the NA
        ctl.icmp(na())  # late answer: nobody waits for it
        await settle()
        assert ctl.view is not None and ctl.view.home_agent_lladdr is None
        await ctl.stop()

    asyncio.run(run())
    fed = [c[1] for c in calls if c[0] == "feed"]
    assert fed == [CareOfAddressChanged(COA1, "mn0")]  # never AtHome
    assert all(c[1].home_agent_lladdr is None for c in calls if c[0] == "view")


def test_moving_away_after_resolution_clears_the_entry() -> None:
    calls: list = []

    async def run() -> None:
        ctl = controller(calls)
        ctl._run([Moved("mn0", COA1, R1)])
        await settle()
        ctl._run([AtHome("mn0", None)])
        await settle()
        ctl.icmp(na())
        await settle()
        assert ctl.view is not None and ctl.view.home_agent_lladdr is not None
        ctl._run([Moved("mn0", COA1, R1)])  # no BA yet: away again
        assert ctl.view.home_agent_lladdr is None
        await settle()
        await ctl.stop()

    asyncio.run(run())


def test_starting_at_home_sends_no_solicitation() -> None:
    calls: list = []

    async def run() -> None:
        ctl = controller(calls)
        ctl._run([AtHome("mn0", None)])
        await settle()
        await ctl.stop()

    asyncio.run(run())
    assert kinds(calls) == ["view", "wait", "feed"]
