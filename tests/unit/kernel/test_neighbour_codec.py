"""Static neighbour entries (`Neighbour`) as rtnetlink bytes, and the NS from ``::``."""

from __future__ import annotations

import socket
from ipaddress import IPv6Address

import pytest

from mip6ctl import ownership
from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import rtcodec as rc
from mip6ctl.kernel.nd import solicited_node, unspecified_source_solicitation
from mip6ctl.kernel.observer import ObserverCore
from mip6ctl.kernel.writer import _ENCODERS, _GETS
from mip6ctl.state.describe import summary
from mip6ctl.state.objects import Neighbour, ProxyNeighbour, canon_lladdr
from mip6ctl.wire.icmp6 import NeighborSolicitation, decode_icmp6
from mip6ctl.wire.packet import upper_layer_checksum

NAMES = {2: "h0"}
HA = "2001:db8:1::1"
MAC = "02005e005301"
N = Neighbour("h0", HA, "02:00:5E:00:53:01")


def names(name: str) -> int:
    return {"h0": 2}[name]


def msg(kind: int, payload: bytes) -> bytes:
    return nl.message(kind, nl.NLM_F_MULTI, 7, payload)


def kernel_entry(state: int, *, proto: int | None, lladdr: bytes | None = None, flags: int = 0):
    """An ndmsg the way the kernel sends it (NDA_CACHEINFO etc. left out)."""
    out = nl.NDMSG.pack(socket.AF_INET6, 0, 0, 2, state, flags, 1)
    out += nl.attr(rc.NDA_DST, socket.inet_pton(socket.AF_INET6, HA))
    if lladdr is not None:
        out += nl.attr(rc.NDA_LLADDR, lladdr)
    if proto is not None:
        out += nl.attr_u8(rc.NDA_PROTOCOL, proto)
    return out


def test_object_is_canonical_keyed_and_owned_by_protocol() -> None:
    assert N.lladdr == "02:00:5e:00:53:01"
    assert Neighbour("h0", "2001:DB8:1:0::1", "2:0:5e:0:53:1") == N
    assert N.key == ("neigh", "h0", HA)
    assert N.owned and not Neighbour("h0", HA, N.lladdr, protocol=0).owned
    assert canon_lladdr("AA-BB-CC-DD-EE-FF") == "aa:bb:cc:dd:ee:ff"
    for bad in ("", "02:00:5e:00:53:zz", "02::5e", "123:00"):
        with pytest.raises(ValueError):
            canon_lladdr(bad)
    assert summary(N) == f"neighbour {HA} lladdr 02:00:5e:00:53:01 dev h0 permanent"


def test_payload_is_a_permanent_non_proxy_entry_with_lladdr_and_protocol() -> None:
    p = rc.neigh_payload(N, names)
    fam, _p1, _p2, index, state, flags, _type = nl.NDMSG.unpack_from(p, 0)
    assert (fam, index, state, flags) == (socket.AF_INET6, 2, rc.NUD_PERMANENT, 0)
    at = nl.attrs(p, 12, len(p))
    assert p[at[rc.NDA_DST][0] : at[rc.NDA_DST][1]] == socket.inet_pton(socket.AF_INET6, HA)
    assert p[at[rc.NDA_LLADDR][0] : at[rc.NDA_LLADDR][1]] == bytes.fromhex("02005e005301")
    assert p[at[rc.NDA_PROTOCOL][0]] == ownership.ROUTE_PROTOCOL
    # delete: only the key (the writer reads the entry first: no marked delete)
    d = rc.neigh_payload(N, names, delete=True)
    assert set(nl.attrs(d, 12, len(d))) == {rc.NDA_DST}
    assert nl.NDMSG.unpack_from(d, 0)[4:6] == (0, 0)
    assert _ENCODERS[Neighbour] == (rc.neigh_payload, nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH)
    assert _GETS[Neighbour] is rc.neigh_get_request


def test_roundtrip_through_the_observer_and_delete() -> None:
    core = ObserverCore()
    core.links.update(NAMES)
    payload = rc.neigh_payload(N, names)
    assert rc.decode_neigh(payload, 0, len(payload), NAMES) == N
    changes = core.feed(msg(nl.RTM_NEWNEIGH, payload))
    assert core.owned == {N.key: N} and [c.new for c in changes] == [N]
    moved = Neighbour("h0", HA, "02:00:5e:00:53:02")
    core.feed(msg(nl.RTM_NEWNEIGH, rc.neigh_payload(moved, names)))
    assert core.owned == {N.key: moved}
    core.feed(msg(nl.RTM_DELNEIGH, rc.neigh_payload(moved, names)))  # events: whole entries
    assert core.owned == {} and core.foreign == {}
    assert core.proxies == 0  # not a proxy entry: not polled


def test_only_entries_carrying_our_protocol_are_seen() -> None:
    core = ObserverCore()
    core.links.update(NAMES)
    mac = bytes.fromhex("02005e005301")
    ordinary = kernel_entry(0x02, proto=None, lladdr=mac)  # REACHABLE, resolved by the kernel
    static = kernel_entry(rc.NUD_PERMANENT, proto=None, lladdr=mac)  # `ip neigh add ... permanent`
    other = kernel_entry(rc.NUD_PERMANENT, proto=42, lladdr=mac)  # another tool's
    for p in (ordinary, static, other):
        assert core.feed(msg(nl.RTM_NEWNEIGH, p)) == []
        assert rc.decode_neigh(p, 0, len(p), NAMES) is None
    assert core.owned == {} and core.foreign == {}
    # the writer's read-back sees foreign static entries (a conflict), never dynamic ones
    got = rc.decode_neigh(static, 0, len(static), NAMES, static_foreign=True)
    assert got == Neighbour("h0", HA, "02:00:5e:00:53:01", protocol=0) and not got.owned
    assert rc.decode_neigh(ordinary, 0, len(ordinary), NAMES, static_foreign=True) is None
    # proxy entries are still ProxyNeighbour, owned or not
    proxy = kernel_entry(rc.NUD_PERMANENT, proto=None, flags=rc.NTF_PROXY)
    assert rc.decode_neigh(proxy, 0, len(proxy), NAMES) == ProxyNeighbour("h0", HA, 0)


def test_an_entry_of_ours_that_is_no_longer_static_counts_as_absent() -> None:
    """Before a delete the kernel announces NUD_FAILED (without NDA_LLADDR); `ip neigh
    change ... nud reachable` keeps our protocol: neither is the static entry we want."""
    core = ObserverCore()
    core.links.update(NAMES)
    core.feed(msg(nl.RTM_NEWNEIGH, rc.neigh_payload(N, names)))
    failed = kernel_entry(0x20, proto=ownership.ROUTE_PROTOCOL)  # NUD_FAILED, no lladdr
    got = rc.decode_neigh(failed, 0, len(failed), NAMES)
    assert got is not None and got.key == N.key and not rc.neigh_static(failed, 0)
    changes = core.feed(msg(nl.RTM_NEWNEIGH, failed))
    assert core.owned == {} and [(c.old, c.new) for c in changes] == [(N, None)]
    assert core.feed(msg(nl.RTM_DELNEIGH, failed)) == []
    core.feed(msg(nl.RTM_NEWNEIGH, rc.neigh_payload(N, names)))
    reachable = kernel_entry(0x02, proto=ownership.ROUTE_PROTOCOL, lladdr=bytes.fromhex(MAC))
    core.feed(msg(nl.RTM_NEWNEIGH, reachable))
    assert core.owned == {}
    # the writer's read-back: ours, but never equal to the static entry wanted
    got = rc.decode_neigh(reachable, 0, len(reachable), NAMES, static_foreign=True)
    assert got is not None and got.owned and got.lladdr == "" and got != N


def test_entries_vanish_with_their_link() -> None:
    core = ObserverCore()
    core.feed(msg(nl.RTM_NEWLINK, nl.IFINFOMSG.pack(0, 0, 2, 1, 1) + nl.attr_str(3, "h0")))
    core.feed(msg(nl.RTM_NEWNEIGH, rc.neigh_payload(N, names)))
    assert core.owned == {N.key: N}
    core.feed(msg(nl.RTM_DELLINK, nl.IFINFOMSG.pack(0, 0, 2, 0, 0) + nl.attr_str(3, "h0")))
    assert core.owned == {}


def test_get_and_dump_requests() -> None:
    get = rc.neigh_get_request(9, N, 2)
    length, kind, flags, seq, _pid = nl.NLMSGHDR.unpack_from(get, 0)
    assert (length, kind, flags, seq) == (len(get), nl.RTM_GETNEIGH, nl.NLM_F_REQUEST, 9)
    fam, _p1, _p2, index, state, nflags, _t = nl.NDMSG.unpack_from(get, 16)
    assert (fam, index, state, nflags) == (socket.AF_INET6, 2, 0, 0)  # the cache, not proxies
    assert set(nl.attrs(get, 28, len(get))) == {rc.NDA_DST}
    dump = rc.neigh_dump_request(10)
    _l, kind, flags, _s, _p = nl.NLMSGHDR.unpack_from(dump, 0)
    assert kind == nl.RTM_GETNEIGH and flags == nl.NLM_F_REQUEST | nl.NLM_F_DUMP
    # strict check refuses any ifindex/state/type and flags other than NTF_PROXY
    assert nl.NDMSG.unpack_from(dump, 16) == (socket.AF_INET6, 0, 0, 0, 0, 0, 0)


def test_solicitation_from_the_unspecified_address() -> None:
    """RFC 6275 §11.5.5 / RFC 4861 §4.3, §7.2.2: source ::, to the target's
    solicited-node group, hop limit 255, no Source Link-Layer Address option."""
    target = IPv6Address(HA)
    group, packet = unspecified_source_solicitation(target)
    assert group == solicited_node(target) == IPv6Address("ff02::1:ff00:1")
    assert packet[0] >> 4 == 6
    plen = int.from_bytes(packet[4:6], "big")
    assert (plen, packet[6], packet[7]) == (24, 58, 255)
    assert IPv6Address(packet[8:24]) == IPv6Address("::")
    assert IPv6Address(packet[24:40]) == group
    body = packet[40:]
    assert len(body) == plen
    assert decode_icmp6(body) == NeighborSolicitation(target=target)  # no options at all
    zeroed = body[:2] + b"\0\0" + body[4:]
    want = upper_layer_checksum(IPv6Address("::"), group, 58, zeroed)
    assert int.from_bytes(body[2:4], "big") == want
