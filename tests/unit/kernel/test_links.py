"""rtnetlink link/address decoding (mip6ctl.kernel.links) from hand-built netlink bytes.

Layouts (linux/if_addr.h, linux/rtnetlink.h): struct ifaddrmsg is
family u8, prefixlen u8, flags u8, scope u8, index u32 (8 bytes); struct
ifinfomsg is family u8, pad u8, type u16, index i32, flags u32, change u32
(16 bytes).  Attributes are (len u16, type u16) + data, padded to 4.
"""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv6Address

import pytest

from mip6ctl.kernel import links
from mip6ctl.kernel import netlink as nl

HOA = IPv6Address("2001:db8:1::100")
PEER = IPv6Address("2001:db8:1::1")


def _attr(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def _msg(kind: int, payload: bytes, seq: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, seq, 0) + payload


def _ifaddr(
    index: int,
    addr: IPv6Address,
    *,
    plen: int = 64,
    flags8: int = 0,
    scope: int = 0,
    ifa_flags: int | None = None,
    local: IPv6Address | None = None,
    proto: int | None = None,
    family: int = 10,
) -> bytes:
    body = struct.pack("=BBBBI", family, plen, flags8, scope, index)
    body += _attr(1, addr.packed)  # IFA_ADDRESS
    if local is not None:
        body += _attr(2, local.packed)  # IFA_LOCAL
    if ifa_flags is not None:
        body += _attr(8, struct.pack("=I", ifa_flags))  # IFA_FLAGS
    if proto is not None:
        body += _attr(11, bytes([proto]))  # IFA_PROTO
    return body


def _ifinfo(index: int, name: str | None, flags: int) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    if name is not None:
        body += _attr(3, name.encode() + b"\0")  # IFLA_IFNAME
    return body


def test_ifaddrmsg_layout_and_fields() -> None:
    raw = _ifaddr(7, HOA, plen=64, flags8=0x80, scope=0, ifa_flags=0x10 | 0x80, proto=77)
    assert raw[:8] == bytes([10, 64, 0x80, 0, 7, 0, 0, 0])
    a = links.decode_ifaddr(raw, 0, len(raw))
    assert a == links.IfAddr(7, HOA, 64, 0x90, 0, 77, None)
    assert a.usable


def test_ifa_flags_attribute_wins_over_the_8_bit_field() -> None:
    raw = _ifaddr(3, HOA, flags8=0x00, ifa_flags=links.IFA_F_TENTATIVE | 0x200)
    a = links.decode_ifaddr(raw, 0, len(raw))
    assert a is not None and a.flags == 0x240 and not a.usable
    raw = _ifaddr(3, HOA, flags8=links.IFA_F_DADFAILED)
    a = links.decode_ifaddr(raw, 0, len(raw))
    assert a is not None and a.flags == links.IFA_F_DADFAILED and not a.usable


def test_local_attribute_is_the_address_and_a_different_ifa_address_the_peer() -> None:
    raw = _ifaddr(2, PEER, local=HOA, plen=128)
    a = links.decode_ifaddr(raw, 0, len(raw))
    assert a is not None and (a.address, a.peer, a.prefixlen) == (HOA, PEER, 128)
    raw = _ifaddr(2, HOA, local=HOA)
    a = links.decode_ifaddr(raw, 0, len(raw))
    assert a is not None and (a.address, a.peer) == (HOA, None)


def test_non_ipv6_and_address_less_messages_are_none() -> None:
    v4 = struct.pack("=BBBBI", 2, 24, 0, 0, 1) + _attr(1, bytes(4))
    assert links.decode_ifaddr(v4, 0, len(v4)) is None
    bare = struct.pack("=BBBBI", 10, 64, 0, 0, 1) + _attr(8, bytes(4))
    assert links.decode_ifaddr(bare, 0, len(bare)) is None
    assert links.decode_ifaddr(b"\x0a\x40", 0, 2) is None


def test_ifinfomsg_name_and_up_lower_up() -> None:
    raw = _ifinfo(4, "wlan0", links.IFF_UP | links.IFF_LOWER_UP)
    assert raw[4:8] == b"\x04\x00\x00\x00"
    i = links.decode_ifinfo(raw, 0, len(raw))
    assert i == links.IfInfo(4, "wlan0", 0x10001) and i.up
    i = links.decode_ifinfo(_ifinfo(4, "wlan0", links.IFF_UP), 0, 16 + 12)
    assert i is not None and not i.up, "up without carrier is not up"
    nameless = _ifinfo(4, None, 0)
    assert links.decode_ifinfo(nameless, 0, len(nameless)) == links.IfInfo(4, "", 0)


def test_decode_walks_a_buffer_and_skips_other_messages() -> None:
    buf = (
        _msg(nl.RTM_NEWLINK, _ifinfo(4, "eth1", 0x10001))
        + _msg(nl.RTM_NEWROUTE, bytes(12))
        + _msg(nl.RTM_DELADDR, _ifaddr(4, HOA))
        + _msg(nl.RTM_NEWADDR, struct.pack("=BBBBI", 2, 24, 0, 0, 4) + _attr(1, bytes(4)))
    )
    got = list(links.decode(buf))
    assert [k for k, _ in got] == [nl.RTM_NEWLINK, nl.RTM_DELADDR]
    assert got[1][1].address == HOA


def test_linkwatch_parse_learns_names_sorts_scopes_and_tentative() -> None:
    w = links.LinkWatch.__new__(links.LinkWatch)  # no sockets: parsing only
    w.names = {}
    lo_scope = _ifaddr(5, IPv6Address("fe80::1"), scope=links.RT_SCOPE_LINK)
    tentative_ll = _ifaddr(
        5, IPv6Address("fe80::2"), scope=links.RT_SCOPE_LINK, ifa_flags=links.IFA_F_TENTATIVE
    )
    failed_ll = _ifaddr(
        5, IPv6Address("fe80::3"), scope=links.RT_SCOPE_LINK, ifa_flags=links.IFA_F_DADFAILED
    )
    buf = (
        _msg(nl.RTM_NEWADDR, _ifaddr(5, HOA))  # unknown ifindex yet: dropped
        + _msg(nl.RTM_NEWLINK, _ifinfo(5, "wlan0", 0x10001))
        + _msg(nl.RTM_NEWADDR, _ifaddr(5, HOA))
        + _msg(nl.RTM_NEWADDR, lo_scope)  # link-local: not a care-of address, the L bit's
        + _msg(nl.RTM_NEWADDR, tentative_ll)  # still ours while DAD runs again
        + _msg(nl.RTM_NEWADDR, failed_ll)  # not ours
        + _msg(nl.RTM_NEWADDR, _ifaddr(5, PEER, ifa_flags=links.IFA_F_TENTATIVE))
        + _msg(nl.RTM_DELADDR, _ifaddr(5, HOA))
        + _msg(nl.RTM_NEWLINK, _ifinfo(5, None, links.IFF_UP))  # name from the cache
        + _msg(nl.RTM_DELLINK, _ifinfo(5, "wlan0", 0x10001))
    )
    assert w.parse(buf) == [
        links.LinkEvent("wlan0", True),
        links.AddrEvent("wlan0", HOA, True),
        links.LinkLocalEvent("wlan0", IPv6Address("fe80::1"), True),
        links.LinkLocalEvent("wlan0", IPv6Address("fe80::2"), True),
        links.LinkLocalEvent("wlan0", IPv6Address("fe80::3"), False),
        links.AddrEvent("wlan0", PEER, False),
        links.AddrEvent("wlan0", HOA, False),
        links.LinkEvent("wlan0", False),
        links.LinkEvent("wlan0", False),
    ]
    assert w.names == {}


def test_linkwatch_dump_retries_interrupted_dumps() -> None:
    w = links.LinkWatch.__new__(links.LinkWatch)
    outcomes: list[object] = [OSError(errno.EINTR, "intr"), ["done"]]

    def once() -> list:
        o = outcomes.pop(0)
        if isinstance(o, BaseException):
            raise o
        return o  # type: ignore[return-value]

    w._dump_once = once  # type: ignore[method-assign]
    assert w.dump() == ["done"]
    w._dump_once = lambda: (_ for _ in ()).throw(OSError(errno.ENOBUFS, "x"))  # type: ignore[method-assign]
    with pytest.raises(OSError):
        w.dump()


class _FakeSock:
    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        data = self.replies.pop(0)
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass


def test_local_addresses_include_local_and_peer_of_every_new_address() -> None:
    la = links.LocalAddresses.__new__(links.LocalAddresses)
    la.max_age, la.min_refresh, la._addrs, la._at, la._seq = 2.0, 0.2, frozenset(), -1e9, 0
    dump = (
        _msg(nl.RTM_NEWADDR, _ifaddr(2, PEER, local=HOA), seq=1)
        + _msg(nl.RTM_NEWADDR, _ifaddr(1, IPv6Address("::1"), plen=128), seq=1)
        + _msg(nl.NLMSG_DONE, bytes(4), seq=1)
    )
    la._sock = _FakeSock([dump])  # type: ignore[assignment]
    assert la(HOA) and la(PEER) and la(IPv6Address("::1"))
    assert la._sock.sent[0][4:6] == struct.pack("=H", nl.RTM_GETADDR)  # type: ignore[attr-defined]
    # a miss within min_refresh of the dump does not dump again (no reply is queued)
    assert not la(IPv6Address("2001:db8::dead"))
