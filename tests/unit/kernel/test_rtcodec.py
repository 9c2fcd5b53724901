"""The raw rtnetlink parser and encoders, fed with bytes (no kernel, no root)."""

from __future__ import annotations

import struct

import pytest

from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import rtcodec as rc
from mip6ctl.kernel.observer import ObserverCore
from mip6ctl.state.objects import (
    Address,
    ProxyNeighbour,
    Route,
    Rule,
    Seg6Encap,
    Seg6LocalDecap,
    Tunnel,
    canon_prefix,
)

NAMES = {2: "h0"}


def names(name: str) -> int:
    return {"h0": 2}[name]


def msg(kind: int, payload: bytes) -> bytes:
    return nl.message(kind, nl.NLM_F_MULTI, 7, payload)


def link(index: int, name: str) -> bytes:
    return msg(nl.RTM_NEWLINK, nl.IFINFOMSG.pack(0, 0, index, 1, 1) + nl.attr_str(3, name))


#: An RTM_NEWROUTE as Linux 6.18 dumps `2001:db8:1::100 dev h0 table 6275 proto 77
#: metric 1024` (with RTA_CACHEINFO and RTA_PREF, which the parser must skip).
KERNEL_ROUTE = bytes.fromhex(
    "0a800000fc4d0001 00000000"  # rtmsg: AF_INET6 /128 table=252 proto 77 universe unicast
    "08000f0083180000"  # RTA_TABLE 6275
    "14000100 20010db8000100000000000000000100"  # RTA_DST
    "0800060000040000"  # RTA_PRIORITY 1024
    "0800040002000000"  # RTA_OIF 2
    "24000c00"
    + "00" * 32  # RTA_CACHEINFO
    + "0500140000000000"  # RTA_PREF
)


def test_parser_reads_a_kernel_route_message_and_skips_unknown_attributes() -> None:
    core = ObserverCore()
    core.feed(link(2, "h0"))
    changes = core.feed(msg(nl.RTM_NEWROUTE, KERNEL_ROUTE))
    want = Route("2001:db8:1::100/128", oif="h0")
    assert [c.new for c in changes] == [want]
    assert core.owned == {want.key: want}
    gone = core.feed(msg(nl.RTM_DELROUTE, KERNEL_ROUTE))
    assert gone[0].old == want and gone[0].new is None and core.owned == {}


@pytest.mark.parametrize(
    "route",
    [
        Route("2001:db8:1::100", oif="h0", gateway="2001:db8:ff01::ff", prefsrc="2001:db8:ff01::1"),
        Route("2001:db8:1::/64", src="2001:db8:a::/64", metric=5, table=100, type="blackhole"),
        Route("2001:db8:1::101", oif="h0", encap=Seg6Encap(("2001:db8:a::5",))),
        Route("::/0", oif="h0", encap=Seg6Encap(("2001:db8:a::5", "2001:db8:b::6"), "encap")),
        Route("2001:db8:ff01::1", table=100, oif="h0", encap=Seg6LocalDecap(255)),
    ],
)
def test_route_roundtrip(route: Route) -> None:
    core = ObserverCore(watch_tables=(6275, 100))
    core.links.update(NAMES)
    core.feed(msg(nl.RTM_NEWROUTE, rc.route_payload(route, names)))
    assert core.owned[route.key] == route


def test_seg6_encap_layout_matches_iproute2() -> None:
    """One segment, encap.red: mode 3, SRH type 4, hdrlen 2, segments_left 0."""
    payload = rc.route_payload(Route("2001:db8:1::1", encap=Seg6Encap(("2001:db8:a::5",))), names)
    at = nl.attrs(payload, 12, len(payload))
    a, b = at[rc.RTA_ENCAP]
    inner = nl.attrs(payload, a, b)
    x, y = inner[rc.SEG6_IPTUNNEL_SRH]
    mode, nh, hdrlen, typ, left, first, _flags, _tag = struct.unpack_from("=iBBBBBBH", payload, x)
    assert (mode, nh, hdrlen, typ, left, first) == (3, 0, 2, 4, 0, 0)
    assert payload[x + 12 : y] == bytes.fromhex("20010db8000a00000000000000000005")


def test_foreign_route_is_kept_apart_only_in_watched_tables() -> None:
    core = ObserverCore(watch_tables=(6275,))
    foreign = Route("2001:db8:1::100", protocol=4)
    other_table = Route("2001:db8:1::100", protocol=4, table=254)
    core.feed(msg(nl.RTM_NEWROUTE, rc.route_payload(foreign, names)))
    core.feed(msg(nl.RTM_NEWROUTE, rc.route_payload(other_table, names)))
    assert core.owned == {} and core.foreign == {foreign.key: foreign}


def test_dump_fast_path_skips_owned_routes_in_table_dumps() -> None:
    core = ObserverCore()
    data = msg(nl.RTM_NEWROUTE, rc.route_payload(Route("2001:db8::1"), names))
    assert core.feed(data, skip_owned_routes=True) == [] and core.owned == {}


@pytest.mark.parametrize(
    "obj",
    [
        Rule(1000, table=100, dst="2001:db8:ff01::1", ipproto=41),
        Rule(1001, src="2001:db8:1::100/128", iif="h0"),
        Rule(0, table=255, protocol=2),
        Rule(1002, action="blackhole"),
    ],
)
def test_rule_roundtrip(obj: Rule) -> None:
    core = ObserverCore()
    core.feed(msg(nl.RTM_NEWRULE, rc.rule_payload(obj, names)))
    view = core.owned if obj.owned else core.foreign
    assert view == {obj.key: obj}


def test_address_and_proxy_roundtrip() -> None:
    core = ObserverCore()
    core.links.update(NAMES)
    addr = Address("h0", "2001:db8:1::100", 64, 0x10)
    pn = ProxyNeighbour("h0", "2001:db8:1::100")
    core.feed(msg(nl.RTM_NEWADDR, rc.address_payload(addr, names)))
    core.feed(msg(nl.RTM_NEWNEIGH, rc.proxy_payload(pn, names)))
    assert core.owned == {addr.key: addr, pn.key: pn}


def test_ordinary_neighbour_entries_are_ignored() -> None:
    core = ObserverCore()
    payload = nl.NDMSG.pack(10, 0, 0, 2, 0x02, 0, 1) + nl.attr(1, bytes(16))
    assert core.feed(msg(nl.RTM_NEWNEIGH, payload)) == []


def test_ip6tnl_link_and_link_removal() -> None:
    core = ObserverCore()
    t = Tunnel("m6t1", "2001:db8:ff01::1", "2001:db8:a::100")
    payload = rc.tunnel_payload(t, names)
    payload = nl.IFINFOMSG.pack(0, 0, 9, 1, 1) + payload[16:]
    core.feed(msg(nl.RTM_NEWLINK, payload))
    assert core.owned == {t.key: t} and core.links[9] == "m6t1"
    core.feed(msg(nl.RTM_DELLINK, payload))
    assert core.owned == {} and 9 not in core.links


def test_rename_and_overrun_ask_for_resync() -> None:
    core = ObserverCore()
    core.feed(link(2, "h0"))
    core.feed(link(2, "h0renamed"))
    assert core.needs_resync
    core.needs_resync = False
    core.feed(nl.message(nl.NLMSG_OVERRUN, 0, 0, b""))
    assert core.needs_resync


def test_ack_parsing_with_extack_message() -> None:
    orig = nl.NLMSGHDR.pack(40, nl.RTM_NEWROUTE, 5, 42, 0)
    payload = nl.I32.pack(-17) + orig + nl.attr_str(nl.NLMSGERR_ATTR_MSG, "File exists")
    data = nl.message(nl.NLMSG_ERROR, 0x100 | nl.NLM_F_ACK_TLVS, 42, payload)
    ((_kind, flags, _seq, a, b),) = list(nl.iter_messages(data))
    assert nl.parse_error(data, a, b, flags) == (17, 42, "File exists")


def test_objects_are_canonical_hashable_and_keyed() -> None:
    a = Route("2001:DB8:0:0::1/128", oif="h0")
    b = Route("2001:db8::1", oif="h0", gateway="2001:db8::ff")
    assert a.dst == "2001:db8::1/128" and a.key == b.key and a != b
    assert len({a, b, Route("2001:db8::1/128", oif="h0")}) == 2
    assert canon_prefix("2001:db8:1::77/64") == "2001:db8:1::/64"
    with pytest.raises(AttributeError):
        a.dst = "::/0"  # type: ignore[misc]
    assert not Rule(999).owned and Rule(1000).owned and not Rule(1000, protocol=4).owned
    assert Tunnel("m6t0").owned and not Tunnel("ip6tnl0").owned


def test_ip6tnl_flags_ignore_the_encapsulation_limit_and_roundtrip() -> None:
    """Tunnels are created without a Tunnel Encapsulation Limit option (UMIP, `ip -6
    tunnel ... encaplimit none`); a device with other flags differs (changelink fixes it)."""
    t = Tunnel("m6t1", "2001:db8:ff01::1", "2001:db8:a::100")
    assert t.flags & 0x1  # IP6_TNL_F_IGN_ENCAP_LIMIT
    payload = rc.tunnel_payload(t, names)
    _idx, name, back = rc.decode_link(payload, 0, len(payload))
    assert name == "m6t1" and back == t
    plain = Tunnel("m6t1", "2001:db8:ff01::1", "2001:db8:a::100", flags=0)
    payload = rc.tunnel_payload(plain, names)
    assert rc.decode_link(payload, 0, len(payload))[2] == plain != t
