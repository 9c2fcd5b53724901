"""The mobile node controller: the reconcile loop gets the view, the engine hears after."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from mip6ctl.config.loader import load_directory
from mip6ctl.daemon.mobile import MobileNodeController
from mip6ctl.daemon.reconcile_loop import MOBILE
from mip6ctl.daemon.workqueue import KeyResult
from mip6ctl.engine.events import AtHome as EngineAtHome
from mip6ctl.engine.events import CareOfAddressChanged
from mip6ctl.engine.movement import AtHome, Moved
from mip6ctl.state.objects import Address, Route, Seg6TunnelSource
from mip6ctl.state.render import Capabilities, render_mobile_node

R_HOME = IPv6Address("fe80::1")
R1 = IPv6Address("fe80::a")
COA1 = IPv6Address("2001:db8:a::5")
COA2 = IPv6Address("2001:db8:b::5")
HOA = IPv6Address("2001:db8:1::100")
CFG = load_directory(Path(__file__).parents[3] / "examples" / "testbed" / "mn").config


class FakeLoop:
    """Records what the controller hands the reconcile loop; every wait succeeds."""

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


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_kernel_state_is_waited_for_before_the_engine_hears_of_a_move() -> None:
    calls: list = []
    caps = Capabilities()

    async def run() -> None:
        ctl = MobileNodeController(
            CFG, loop=FakeLoop(calls), caps=caps, feed=lambda e: calls.append(("feed", e))
        )
        ctl._run([Moved("mn0", COA1, R1)])
        await _settle()
        ctl._run([AtHome("mn0", R_HOME)])
        await _settle()
        await ctl.stop()

    asyncio.run(run())
    assert [c[0] for c in calls] == ["view", "wait", "feed", "view", "wait", "feed"]
    assert calls[1][1] == calls[4][1] == MOBILE
    away = render_mobile_node(CFG, calls[0][1], caps).objects.values()
    assert any(isinstance(o, Address) and o.flags & 0x10 for o in away)  # HOMEADDRESS
    assert Route("2001:db8:1::1/128", table=254, oif="mn0", gateway=str(R1)) in away
    assert Seg6TunnelSource(str(COA1)) in away
    assert calls[2][1] == CareOfAddressChanged(COA1, "mn0")
    home = render_mobile_node(CFG, calls[3][1], caps).objects.values()
    assert [o for o in home if isinstance(o, Address)] == [Address("mn0", str(HOA), 128, flags=2)]
    assert Seg6TunnelSource() in home  # back to source address selection
    assert calls[5][1] == EngineAtHome("mn0")


def test_route_optimised_correspondents_only_for_the_current_care_of_address() -> None:
    """A pair for a care-of address the node has left is not rendered, and a move drops
    every pair of the old one."""
    calls: list = []
    cn = IPv6Address("2001:db8:c::2")

    async def run() -> None:
        ctl = MobileNodeController(
            CFG,
            loop=FakeLoop(calls),
            caps=Capabilities(route_optimization=True),
            feed=lambda e: None,
        )
        ctl._run([Moved("mn0", COA1, R1)])
        views = len([c for c in calls if c[0] == "view"])
        ctl.route_optimisation(((cn, COA1),))
        assert len([c for c in calls if c[0] == "view"]) == views + 1
        assert ctl.view is not None and ctl.view.correspondents == ((cn, COA1),)
        ctl.route_optimisation(((cn, COA1),))  # no change: no new view
        assert len([c for c in calls if c[0] == "view"]) == views + 1
        ctl.route_optimisation(((cn, COA2),))  # not our care-of address: nothing direct
        assert ctl.view.correspondents == ()
        ctl.route_optimisation(((cn, COA1),))
        ctl._run([Moved("mn0", COA2, R1)])
        assert ctl.view.correspondents == ()
        await _settle()
        await ctl.stop()

    asyncio.run(run())
