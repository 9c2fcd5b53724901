"""render() for RFC 3963: mobile network prefixes on the home agent and the mobile router."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.kernel import nft_state
from mip6ctl.state.objects import NftChain, NftSet, NftSetElement, Route, Rule, Seg6Encap, Sysctl
from mip6ctl.state.plan import plan
from mip6ctl.state.render import (
    CHAIN_REVERSE_TUNNEL,
    MNP_AT_HOME_METRIC,
    REVERSE_TUNNEL_SET,
    Capabilities,
    HostFacts,
    MobileNodeView,
    binding_keys,
    classify,
    mnp_set,
    render,
    render_binding,
    tunnel_name,
    tunnel_problem,
)

ROOT = Path(__file__).resolve().parents[3]
HA = load_directory(ROOT / "examples" / "testbed" / "nemo" / "ha").config
MR = load_directory(ROOT / "examples" / "testbed" / "nemo" / "mr").config
PLAIN_HA = load_directory(ROOT / "examples" / "testbed" / "ha").config
HOA = IPv6Address("2001:db8:1::100")
COA = IPv6Address("2001:db8:a::100")
MNP = IPv6Network("2001:db8:50::/64")
MNP1 = IPv6Network("2001:db8:50:1::/64")
SEG6 = Capabilities(tunnel="seg6", nftables=True)


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    mobile_network_prefixes: tuple[IPv6Network, ...] = ()
    defended_link_local: IPv6Address | None = None


ROUTER = B(HOA, COA, (MNP, MNP1))


def test_ha_static_routes_each_mobile_network_prefix_to_the_binding_table() -> None:
    """Without served_prefixes one rule per prefix; with them one per block (the kernel
    walks rules one by one), and every prefix's at-home route either way."""
    assert HA.ha is not None
    unserved = HA.model_copy(update={"ha": HA.ha.model_copy(update={"served_prefixes": []})})
    d = render(unserved, (), SEG6)
    objs = set(d.objects.values())
    for net in (MNP, MNP1):
        assert Rule(1001, table=6275, dst=str(net)) in objs
        at_home = Route(
            str(net), table=6275, metric=MNP_AT_HOME_METRIC, oif="home0", gateway=str(HOA)
        )
        assert at_home in objs  # the mobile router at home is a router on the home link
        assert classify(at_home, unserved) is None  # static, no binding's to delete
    key = Rule(1001, table=6275, dst=str(MNP1)).key
    assert str(d.origins[key]) == "config ha.mobile_nodes[0].mobile_network_prefixes[1]"

    served = render(HA, (), SEG6)  # the example: served_prefixes = ["2001:db8:50::/48"]
    rules = [o for o in served.objects.values() if isinstance(o, Rule) and o.table == 6275]
    assert sorted(r.dst for r in rules) == ["2001:db8:1::/64", "2001:db8:50::/48"]
    block = Rule(1001, table=6275, dst="2001:db8:50::/48").key
    assert str(served.origins[block]) == "config ha.served_prefixes[0]"
    assert {k for k in served.objects if k[0] == "route"} == {
        k for k in d.objects if k[0] == "route"
    }


def test_no_mobile_routers_no_nemo_objects() -> None:
    objs = render(PLAIN_HA, (), SEG6).objects
    assert not [k for k in objs if k[0] == "nft-set" and k[2] != REVERSE_TUNNEL_SET]
    chain = objs[("nft-chain", "mip6ctl", CHAIN_REVERSE_TUNNEL)]
    assert isinstance(chain, NftChain) and chain.rules == (("reverse-tunnel", "2001:db8:1::1"),)
    off = HA.model_copy(update={"ha": HA.ha.model_copy(update={"accept_mobile_routers": False})})
    assert not [o for o in render(off, (), SEG6).objects.values() if isinstance(o, Rule) and
                o.dst == str(MNP)]  # fmt: skip


def test_ha_binding_seg6_tunnels_the_prefixes_and_admits_them_in_the_reverse_check() -> None:
    d = render(HA, [ROUTER], SEG6)
    encap = Seg6Encap((str(COA),))
    for net in (MNP, MNP1):
        route = Route(str(net), table=6275, oif="home0", encap=encap)
        assert d.objects[route.key] == route
        assert str(d.origins[route.key]) == f"binding {HOA}"
        elem = NftSetElement(str(COA), str(net.network_address), mnp_set(64))
        assert elem.key in d.objects
        assert classify(route, HA).ref == str(HOA) and classify(elem, HA).ref == str(HOA)
    assert NftSet(mnp_set(64), (8 << 6) | 8, 32).key in d.objects
    chain = d.objects[("nft-chain", "mip6ctl", CHAIN_REVERSE_TUNNEL)]
    # accept a mobile network's packets first, then drop every other non-binding
    assert chain.rules == (
        ("reverse-tunnel-mnp", "2001:db8:1::1/64"),
        ("reverse-tunnel", "2001:db8:1::1"),
    )
    for kind, arg in chain.rules:
        comment, _exprs = nft_state.RULES[kind](arg)
        assert nft_state.spec_of(comment) == (kind, arg)  # the observer reads it back


def test_ha_binding_ip6tnl_routes_the_prefixes_into_its_tunnel() -> None:
    objs = set(render(HA, [ROUTER], Capabilities(tunnel="ip6tnl")).objects.values())
    name = tunnel_name(COA)
    assert Route(str(MNP), table=6275, oif=name) in objs
    assert Route(str(MNP1), table=6275, oif=name) in objs


def test_binding_keys_cover_the_prefix_routes_for_deletion() -> None:
    rendered = render_binding(HA, ROUTER, SEG6, HostFacts(IPv6Address("2001:db8:1::1")))
    routes = {k for k in rendered.objects if k[0] == "route"}
    assert routes <= set(binding_keys(HA, HOA, SEG6))
    assert len(routes) == 3


def test_moving_a_router_updates_its_routes_and_swaps_its_elements() -> None:
    before = render(HA, [ROUTER], SEG6)
    after = render(HA, [B(HOA, IPv6Address("2001:db8:b::100"), (MNP, MNP1))], SEG6)
    p = plan(after.objects, before.objects, origins=after.origins)
    actions = sorted((c.action, c.kind) for c in p.changes)
    assert actions.count(("update", "route")) == 3  # home address and both prefixes
    assert actions.count(("create", "nft-element")) == 3
    assert actions.count(("delete", "nft-element")) == 3


def test_deregistration_leaves_only_the_at_home_routes() -> None:
    p = plan(render(HA, (), SEG6).objects, render(HA, [ROUTER], SEG6).objects)
    deleted = {c.key for c in p.changes if c.action == "delete"}
    assert ("route", 6275, str(MNP), "::/0", 1024) in deleted
    assert not [c for c in p.changes if c.action != "delete"]


# --------------------------------------------------------------------------- mobile router


def view(care_of: IPv6Address | None, ifname: str = "mn0") -> MobileNodeView:
    return MobileNodeView(
        IPv6Interface("2001:db8:1::100/64"), IPv6Address("2001:db8:1::1"), care_of, ifname
    )


def test_mobile_router_forwards_and_keeps_router_advertisements() -> None:
    caps = Capabilities(tunnel="ip6tnl")
    objs = set(render(MR, (), caps, mobile_node=view(None)).objects.values())
    assert Sysctl("net/ipv6/conf/all/forwarding", "1") in objs
    assert Sysctl("net/ipv6/conf/mn0/accept_ra", "2") in objs  # else no care-of address
    assert not [o for o in objs if isinstance(o, Rule) and o.src == str(MNP)]  # at home


def test_mobile_router_away_sends_its_network_through_the_reverse_tunnel() -> None:
    caps = Capabilities(tunnel="ip6tnl")
    objs = set(render(MR, (), caps, mobile_node=view(COA)).objects.values())
    assert Rule(1003, table=254, dst=str(MNP)) in objs  # its own prefixes stay local ...
    assert Rule(1004, table=6275, src=str(MNP)) in objs  # ... the rest goes to the HA
    assert all(o.owned for o in objs)  # inside the owned rule band, or the observer loses them
    assert Route("::/0", table=6275, oif=tunnel_name(IPv6Address("2001:db8:1::1"))) in objs


def test_a_mobile_host_renders_none_of_it() -> None:
    mn = load_directory(ROOT / "examples" / "testbed" / "mn").config
    objs = render(mn, (), Capabilities(tunnel="ip6tnl"), mobile_node=view(COA)).objects.values()
    assert not [o for o in objs if isinstance(o, Sysctl)]
    assert not [o for o in objs if isinstance(o, Rule) and o.priority in (1003, 1004)]


@pytest.mark.parametrize(
    ("available", "want"),
    [
        ({"ip6tnl": True, "seg6": True, "seg6local": True}, "ip6tnl"),
        ({"ip6tnl": False, "seg6": True, "seg6local": True}, "ip6tnl"),
    ],
)
def test_auto_takes_ip6tnl_for_a_mobile_router(available: dict, want: str) -> None:
    caps = Capabilities.resolve(available, MR.kernel, mobile_router=True)
    assert caps.tunnel == want
    assert Capabilities.resolve(available, MR.kernel).tunnel == (
        "ip6tnl" if available["ip6tnl"] else "seg6"
    )


def test_a_mobile_router_without_ip6tnl_is_told_why() -> None:
    available = {"ip6tnl": False, "seg6": True, "seg6local": True}
    problem = tunnel_problem(available, MR.kernel, mobile_router=True)
    assert problem is not None and "mobile router" in problem and "ip6_tunnel" in problem
    assert tunnel_problem(available, MR.kernel) is None

