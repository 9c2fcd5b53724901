"""Correspondent bindings in the reconcile loop: their own key, XFRM route2/hao objects."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.daemon.reconcile_loop import STATIC, ReconcileLoop, binding_key, correspondent_key
from mip6ctl.kernel.xfrm import XfrmResult
from mip6ctl.state.render import Capabilities, HostFacts, object_key
from mip6ctl.state.xfrm import Direction, XfrmPolicy, XfrmSelector, XfrmState
from tests.unit.daemon.test_reconcile_loop import CFG, FakeObserver, FakeWriter, drain

HOA = IPv6Address("2001:db8:1::1a0")
COA = IPv6Address("2001:db8:a::1a0")
COA2 = IPv6Address("2001:db8:b::1a0")
LOCAL = IPv6Address("2001:db8:1::1")  # the home agent answering as a correspondent
RO = Capabilities(route_optimization=True)


@dataclass(frozen=True)
class CB:
    home_address: IPv6Address
    care_of_address: IPv6Address
    local_address: IPv6Address = LOCAL
    home_registration: bool = False
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


class FakeXfrm:
    """An in-memory SPD/SAD with XfrmSocket's batch interface; the observer's cache
    (the one view the loop reads) follows it, as the real observer's XFRM events do."""

    def __init__(self, obs: FakeObserver) -> None:
        self.obs = obs
        self.objs: dict[tuple, Any] = {}
        self.writes = 0

    def drift(self, key: tuple, obj: Any) -> None:
        self.objs[key] = self.obs.owned[key] = obj

    def _put(self, objs: Any) -> list[XfrmResult]:
        out = []
        for o in objs:
            self.writes += 1
            self.objs[object_key(o)] = self.obs.owned[object_key(o)] = o
            out.append(XfrmResult("add", o))
        return out

    def _drop(self, objs: Any) -> list[XfrmResult]:
        out = []
        for o in objs:
            self.writes += 1
            self.objs.pop(object_key(o), None)
            self.obs.owned.pop(object_key(o), None)
            out.append(XfrmResult("delete", o))
        return out

    add_policies = update_policies = add_states = update_states = _put
    delete_policies = delete_states = _drop

    def dump_policies(self, *, owned_only: bool = False) -> list[XfrmPolicy]:
        return [o for o in self.objs.values() if isinstance(o, XfrmPolicy)]

    def dump_states(self, *, owned_only: bool = False) -> list[XfrmState]:
        return [o for o in self.objs.values() if isinstance(o, XfrmState)]


def make(caps: Capabilities = RO) -> tuple[ReconcileLoop, FakeXfrm]:
    obs = FakeObserver()
    x = FakeXfrm(obs)
    loop = ReconcileLoop(CFG, caps, HostFacts(), obs, FakeWriter(obs), x)
    drain(loop)
    return loop, x


def states(x: FakeXfrm) -> dict:
    return {(s.proto.name, s.coaddr) for s in x.objs.values() if isinstance(s, XfrmState)}


def test_correspondent_binding_objects_created_moved_and_removed():
    loop, x = make()
    assert loop.set_correspondent(CB(HOA, COA))
    drain(loop)
    assert len(x.objs) == 5
    assert states(x) == {("ROUTE2", COA), ("HAO", COA)}
    assert loop.key_result(correspondent_key(HOA))
    assert not loop.set_correspondent(CB(HOA, COA))  # a refresh: nothing to do
    assert loop.set_correspondent(CB(HOA, COA2))
    drain(loop)
    assert states(x) == {("ROUTE2", COA2), ("HAO", COA2)} and len(x.objs) == 5
    loop.remove_correspondent(HOA)
    drain(loop)
    assert x.objs == {}
    assert loop.status()["correspondents"] == 0


def test_static_reconcile_never_deletes_correspondent_objects():
    loop, x = make()
    loop.set_correspondent(CB(HOA, COA))
    drain(loop)
    loop.enqueue(STATIC)
    drain(loop)
    assert len(x.objs) == 5
    # an owned leftover nobody renders is still static's to delete
    stray = XfrmPolicy(XfrmSelector.between("2001:db8:9::/64", "2001:db8:8::/64"), Direction.OUT)
    x.drift(object_key(stray), stray)
    loop.enqueue(STATIC)
    drain(loop)
    assert object_key(stray) not in x.objs and len(x.objs) == 5


def test_home_registration_and_correspondent_keys_are_separate():
    loop, x = make()
    loop.set_binding(CB(HOA, COA, home_registration=True))
    loop.set_correspondent(CB(IPv6Address("2001:db8:1::1a1"), COA))
    drain(loop)
    assert binding_key(HOA) != correspondent_key(HOA)
    assert len(x.objs) == 5
    loop.remove_binding(HOA)
    drain(loop)
    assert len(x.objs) == 5


def test_xfrm_drift_is_found_by_resync():
    loop, x = make()
    loop.set_correspondent(CB(HOA, COA))
    drain(loop)
    (k,) = [k for k, o in x.objs.items() if isinstance(o, XfrmState) and o.proto.name == "HAO"]
    x.drift(k, replace(x.objs[k], coaddr=COA2))
    assert correspondent_key(HOA) in loop.out_of_sync()
    loop.resync()
    drain(loop)
    assert states(x) == {("ROUTE2", COA), ("HAO", COA)}


def test_nothing_rendered_or_queued_without_route_optimisation():
    loop, x = make(Capabilities())
    assert loop.reconciler.xfrm is x
    assert not loop.set_correspondent(CB(HOA, COA))
    assert loop.step(0.0) == 0
    loop.remove_correspondent(HOA)
    assert loop.step(0.0) == 0
    assert x.objs == {} and x.writes == 0


def test_no_xfrm_socket_is_opened_without_route_optimisation():
    obs = FakeObserver()
    loop = ReconcileLoop(CFG, Capabilities(), HostFacts(), obs, FakeWriter(obs))
    loop.set_correspondent(CB(HOA, COA))
    assert loop.reconciler.xfrm is None
