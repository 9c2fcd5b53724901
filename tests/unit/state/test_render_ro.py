"""Route optimisation (RFC 6275): the XFRM objects both ends render, and when not."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

from mip6ctl import ownership
from mip6ctl.config.loader import load_directory
from mip6ctl.state.plan import plan
from mip6ctl.state.render import (
    IPPROTO_MH,
    RO_DATA_PRIORITY,
    RO_SIGNALLING_PRIORITY,
    Capabilities,
    MobileNodeView,
    correspondent_binding_keys,
    render,
    render_correspondent_binding,
    render_mobile_node,
)
from mip6ctl.state.xfrm import (
    Direction,
    Level,
    Mode,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmTemplate,
)

ROOT = Path(__file__).resolve().parents[3]
MN = load_directory(ROOT / "examples" / "testbed" / "mn").config
CN = load_directory(ROOT / "examples" / "testbed" / "cn").config
HA = load_directory(ROOT / "examples" / "testbed" / "ha").config

HOA = IPv6Address("2001:db8:1::100")
COA = IPv6Address("2001:db8:a::100")
COA2 = IPv6Address("2001:db8:b::100")
CNA = IPv6Address("2001:db8:c::2")
HAA = IPv6Address("2001:db8:1::1")
RO = Capabilities(route_optimization=True)


@dataclass(frozen=True)
class CB:
    home_address: IPv6Address
    care_of_address: IPv6Address
    local_address: IPv6Address
    home_registration: bool = False
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def net(a: IPv6Address) -> IPv6Network:
    return IPv6Network((a, 128))


def by_type(d, kind):
    return [o for o in d.objects.values() if isinstance(o, kind)]


def test_correspondent_binding_objects():
    d = render_correspondent_binding(CN, CB(HOA, COA, CNA), RO)
    states = {(s.proto, s.src, s.dst): s for s in by_type(d, XfrmState)}
    assert set(states) == {(XfrmProto.ROUTE2, CNA, HOA), (XfrmProto.HAO, HOA, CNA)}
    for s in states.values():
        assert s.mode == Mode.RO and s.coaddr == COA and s.owned and s.spi == 0
    route2 = states[(XfrmProto.ROUTE2, CNA, HOA)]
    assert route2.selector == XfrmSelector(dst=net(HOA), src=net(CNA))
    pols = {(p.direction, p.selector): p for p in by_type(d, XfrmPolicy)}
    out = pols[(Direction.OUT, XfrmSelector(dst=net(HOA), src=net(CNA)))]
    assert out.templates == (
        XfrmTemplate(XfrmProto.ROUTE2, Mode.RO, dst=HOA, src=CNA, level=Level.USE),
    )
    assert out.priority == RO_DATA_PRIORITY
    inp = pols[(Direction.IN, XfrmSelector(dst=net(CNA), src=net(HOA)))]
    assert inp.templates == (
        XfrmTemplate(XfrmProto.HAO, Mode.RO, dst=CNA, src=HOA, level=Level.USE),
    )
    # the Home Test goes to the home address: MH is excepted, ahead of the data policy
    mh = pols[(Direction.OUT, XfrmSelector(dst=net(HOA), src=net(CNA), proto=IPPROTO_MH))]
    assert mh.templates == () and mh.priority == RO_SIGNALLING_PRIORITY < out.priority
    assert len(pols) == 3
    for p in pols.values():
        assert p.owned
        assert ownership.XFRM_PRIORITY_MIN <= p.priority <= ownership.XFRM_PRIORITY_MAX
    assert {str(o) for o in d.origins.values()} == {f"binding {HOA}"}


def test_correspondent_binding_needs_route_optimisation():
    assert render_correspondent_binding(CN, CB(HOA, COA, CNA), Capabilities()).objects == {}
    # a deletion (care-of = home address) renders nothing either
    assert render_correspondent_binding(CN, CB(HOA, HOA, CNA), RO).objects == {}


def test_correspondent_keys_cover_every_care_of_address():
    keys = set(correspondent_binding_keys(CN, HOA, CNA, RO))
    for coa in (COA, COA2):
        assert set(render_correspondent_binding(CN, CB(HOA, coa, CNA), RO).objects) == keys


def test_correspondent_move_is_two_state_updates():
    a = render_correspondent_binding(CN, CB(HOA, COA, CNA), RO)
    b = render_correspondent_binding(CN, CB(HOA, COA2, CNA), RO)
    p = plan(b.objects, a.objects)
    assert sorted(c.action for c in p.changes) == ["update", "update"]
    assert all(isinstance(c.desired, XfrmState) for c in p.changes)


def test_render_dispatches_correspondent_bindings():
    assert render(CN, [CB(HOA, COA, CNA)], Capabilities()).objects == {}
    cn = render(CN, [CB(HOA, COA, CNA)], RO).objects
    assert len(cn) == 5
    # a home agent also answers as a correspondent; its home registrations are unchanged
    ha = render(HA, [CB(HOA, COA, HAA, home_registration=False)], RO).objects
    assert len([o for o in ha.values() if isinstance(o, XfrmState)]) == 2


def view(correspondents=((CNA, COA),), care_of=COA):
    return MobileNodeView(
        IPv6Interface("2001:db8:1::100/64"),
        HAA,
        care_of,
        "mn0",
        correspondents=correspondents,
    )


def test_mobile_node_route_optimisation_objects():
    d = render_mobile_node(MN, view(), RO)
    states = {(s.proto, s.src, s.dst): s for s in by_type(d, XfrmState)}
    assert set(states) == {(XfrmProto.HAO, HOA, CNA), (XfrmProto.ROUTE2, CNA, HOA)}
    assert all(s.coaddr == COA and s.mode == Mode.RO for s in states.values())
    pols = {(p.direction, p.selector): p for p in by_type(d, XfrmPolicy)}
    out = pols[(Direction.OUT, XfrmSelector(dst=net(CNA), src=net(HOA)))]
    assert out.templates == (
        XfrmTemplate(XfrmProto.HAO, Mode.RO, dst=CNA, src=HOA, level=Level.USE),
    )
    inp = pols[(Direction.IN, XfrmSelector(dst=net(HOA), src=net(CNA)))]
    assert inp.templates == (
        XfrmTemplate(XfrmProto.ROUTE2, Mode.RO, dst=HOA, src=CNA, level=Level.USE),
    )
    # the Home Test Init goes through the home agent (reverse tunnel), never from the CoA
    mh = pols[(Direction.OUT, XfrmSelector(dst=net(CNA), src=net(HOA), proto=IPPROTO_MH))]
    assert mh.templates == () and mh.priority < out.priority
    # the rest of the away state is still there
    without = render_mobile_node(MN, view(()), RO)
    assert set(without.objects) < set(d.objects)
    assert len(d.objects) - len(without.objects) == 5


def test_mobile_node_uses_the_care_of_address_registered_with_each_correspondent():
    other = IPv6Address("2001:db8:d::1")
    d = render_mobile_node(MN, view(((CNA, COA), (other, COA2)), care_of=COA2), RO)
    coas = {(s.src if s.dst == HOA else s.dst): s.coaddr for s in by_type(d, XfrmState)}
    assert coas == {CNA: COA, other: COA2}


def test_mobile_node_without_route_optimisation_or_at_home():
    assert not by_type(render_mobile_node(MN, view(), Capabilities()), XfrmState)
    home = replace(view(), care_of_address=None)
    assert not by_type(render_mobile_node(MN, home, RO), XfrmState)
    assert not by_type(render_mobile_node(MN, home, RO), XfrmPolicy)


def test_render_is_deterministic():
    a = render_correspondent_binding(CN, CB(HOA, COA, CNA), RO)
    b = render_correspondent_binding(CN, CB(HOA, COA, CNA), RO)
    assert list(a.objects.items()) == list(b.objects.items())
