"""render(): what each role needs, pure and deterministic."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path

from mip6ctl.config.loader import load_directory
from mip6ctl.state.objects import Address, ProxyNeighbour, Route, Rule, Seg6Encap, Sysctl, Tunnel
from mip6ctl.state.plan import plan
from mip6ctl.state.render import (
    DEFAULT_LOCAL_RULE,
    Capabilities,
    HostFacts,
    MobileNodeView,
    binding_keys,
    classify,
    render,
    render_binding,
    tunnel_name,
)
from mip6ctl.state.xfrm import Direction, XfrmPolicy

ROOT = Path(__file__).resolve().parents[3]
HA = load_directory(ROOT / "examples" / "testbed" / "ha").config
MN = load_directory(ROOT / "examples" / "testbed" / "mn").config
CN = load_directory(ROOT / "examples" / "testbed" / "cn").config


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def _b(i: int, coa: str = "2001:db8:a::") -> B:
    return B(IPv6Address(f"2001:db8:1::{0x100 + i:x}"), IPv6Address(f"{coa}{0x100 + i:x}"))


def test_ha_static_seg6():
    d = render(HA, (), Capabilities(tunnel="seg6"))
    objs = set(d.objects.values())
    assert Sysctl("net/ipv6/conf/all/forwarding", "1") in objs
    assert Sysctl("net/ipv6/conf/home0/proxy_ndp", "1") in objs
    assert Rule(1001, table=6275, dst="2001:db8:1::/64") in objs
    assert Rule(1000, table=6276, dst="2001:db8:1::1/128", ipproto=41) in objs
    assert Rule(1099, table=255) in objs  # the local lookup moved behind the decap rule
    assert d.takeovers == {DEFAULT_LOCAL_RULE.key: DEFAULT_LOCAL_RULE}
    assert all(o.owned for o in objs)
    assert d.problems == []
    assert str(d.origins[Rule(1001, table=6275, dst="2001:db8:1::/64").key]) == (
        "config ha.home_prefixes[0]"
    )


def test_ha_binding_seg6():
    d = render(HA, [_b(0)], Capabilities(tunnel="seg6"))
    route = Route(
        "2001:db8:1::100/128", table=6275, oif="home0", encap=Seg6Encap(("2001:db8:a::100",))
    )
    assert d.objects[route.key] == route
    assert ProxyNeighbour("home0", "2001:db8:1::100") in d.objects.values()
    assert str(d.origins[route.key]) == "binding 2001:db8:1::100"
    assert set(render_binding(HA, _b(0), Capabilities(), HostFacts()).objects) <= set(
        binding_keys(HA, IPv6Address("2001:db8:1::100"), Capabilities())
    )
    assert classify(route, HA).ref == "2001:db8:1::100"


def test_ha_binding_ip6tnl():
    d = render(HA, [_b(0)], Capabilities(tunnel="ip6tnl"))
    name = tunnel_name(IPv6Address("2001:db8:a::100"))
    assert len(name) <= 15 and name.startswith("m6t")
    assert Tunnel(name, "2001:db8:1::1", "2001:db8:a::100") in d.objects.values()
    assert Route("2001:db8:1::100/128", table=6275, oif=name) in d.objects.values()
    assert not any(isinstance(o, Rule) and o.ipproto == 41 for o in d.objects.values())


def test_binding_move_plans_an_update_only():
    caps = Capabilities()
    before = render(HA, [_b(i) for i in range(10)], caps)
    after = render(HA, [_b(i, "2001:db8:b::") if i == 3 else _b(i) for i in range(10)], caps)
    p = plan(after.objects, before.objects, origins=after.origins)
    (c,) = p.changes
    assert c.action == "update" and c.kind == "route"
    assert p.impact["bindings_moved"] == 1


def test_daemon_defence_skips_proxy_ndp():
    d = render(HA, [_b(0)], Capabilities(proxy_ndp=False))
    assert not any(isinstance(o, ProxyNeighbour) for o in d.objects.values())
    assert not any(k[0] == "sysctl" and "proxy_ndp" in k[1] for k in d.objects)


def test_unknown_ha_address_is_a_problem_not_a_crash():
    cfg = HA.model_copy(update={"ha": HA.ha.model_copy(update={"address": None})})
    d = render(cfg, (), Capabilities())
    assert d.problems and "home agent address" in d.problems[0]
    d = render(cfg, (), Capabilities(), HostFacts(IPv6Address("2001:db8:1::1")))
    assert d.problems == []


def test_mn_away_and_home():
    caps = Capabilities()
    home = render(MN, (), caps, mobile_node=MobileNodeView(
        IPv6Interface("2001:db8:1::100/64"), IPv6Address("2001:db8:1::1")))
    assert home.objects == {}
    away = render(MN, (), caps, mobile_node=MobileNodeView(
        IPv6Interface("2001:db8:1::100/64"), IPv6Address("2001:db8:1::1"),
        IPv6Address("2001:db8:a::100"), "mn0"))
    objs = list(away.objects.values())
    assert any(isinstance(o, Address) and o.address == "2001:db8:1::100" for o in objs)
    assert Rule(1002, table=6275, src="2001:db8:1::100/128") in objs
    assert Route("::/0", table=6275, oif="mn0", encap=Seg6Encap(("2001:db8:1::1",))) in objs
    assert Rule(1000, table=6276, dst="2001:db8:a::100/128", ipproto=41) in objs


def test_cn_needs_nothing_without_route_optimisation():
    assert render(CN, (), Capabilities()).objects == {}


def test_ipsec_transport_policies_for_protected_mobile_nodes(tmp_path):
    import shutil

    src = ROOT / "examples" / "production" / "ha-ipsec"
    d = tmp_path / "cfg"
    shutil.copytree(src, d)
    for k in (d / "keys").iterdir():
        k.chmod(0o600)
    cfg = load_directory(d).config
    out = render(cfg, (), Capabilities(tunnel="ip6tnl"),
                 HostFacts(IPv6Address("2001:db8:100::1")))
    pols = [o for o in out.objects.values() if isinstance(o, XfrmPolicy)]
    # two protected nodes ("mn1" manual, "fleet" ike), one out + one in policy each
    assert len(pols) == 4
    assert {p.direction for p in pols} == {Direction.OUT, Direction.IN}
    assert {p.selector.mh_type for p in pols} == {5, 6, None}  # "fleet": every MH
    assert all(p.owned for p in pols)


def test_render_is_pure():
    bs = [_b(i) for i in range(20)]
    a = render(HA, bs, Capabilities())
    b = render(HA, list(reversed(bs)), Capabilities())
    assert a.objects == b.objects and a.origins == b.origins


def test_host_facts_find_the_home_agent_address_on_a_home_link():
    cfg = HA.model_copy(update={"ha": HA.ha.model_copy(update={"address": None})})
    seen = [
        Address("core0", "2001:db8:1::9"),  # inside the prefix, but not a home link
        Address("home0", "fe80::1", 64),
        Address("home0", "2001:db8:1::1", 64),
    ]
    assert HostFacts.observe(cfg, seen).home_agent_address == IPv6Address("2001:db8:1::1")
    assert HostFacts.observe(cfg, seen[:2]).home_agent_address is None
    assert HostFacts.observe(HA, []).home_agent_address == IPv6Address("2001:db8:1::1")
