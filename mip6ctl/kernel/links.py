"""Links and addresses of this namespace over rtnetlink: one decoder, two readers.

* `decode_ifaddr` / `decode_ifinfo`: pure decoders of an RTM_NEWADDR/RTM_DELADDR
  payload (struct ifaddrmsg + IFA_* attributes) and of an RTM_NEWLINK/RTM_DELLINK
  payload (struct ifinfomsg + IFLA_IFNAME); `decode` walks a whole receive
  buffer.  These are the tree's readers of ifaddrmsg/ifinfomsg: the observer's
  `rtcodec.decode_address` builds its `state.objects.Address` on
  `decode_ifaddr`'s fields (ifindex, address, prefix length, IFA_FLAGS, IFA_PROTO).
* `LocalAddresses`: "is this address one of ours?", a cached address dump (the
  userspace transport's destination check).
* `LinkWatch`: carrier and global IPv6 address changes (RTNLGRP_LINK +
  RTNLGRP_IPV6_IFADDR, an initial dump, then events), for the mobile node's
  movement detection.

No pyroute2 (DESIGN.md, scale facts); framing is `mip6ctl.kernel.netlink`'s.
Sockets open in the calling thread's network namespace.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address

from mip6ctl.kernel import netlink as nl

log = logging.getLogger("mip6ctl.links")

__all__ = [
    "AddrEvent",
    "IfAddr",
    "IfInfo",
    "LinkEvent",
    "LinkLocalEvent",
    "LinkWatch",
    "LocalAddresses",
    "decode",
    "decode_ifaddr",
    "decode_ifinfo",
]

# linux/if_addr.h
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS, IFA_PROTO = 1, 2, 8, 11
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_HOMEADDRESS = 0x10
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
# linux/if_link.h, linux/if.h
IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

_AF6 = socket.AF_INET6
_U32 = nl.U32.unpack_from


@dataclass(frozen=True, slots=True)
class IfAddr:
    """One IPv6 address as an ifaddrmsg describes it.

    ``address`` is the local address (IFA_LOCAL, else IFA_ADDRESS); ``peer`` is
    IFA_ADDRESS when it differs (point-to-point).  ``flags`` is IFA_FLAGS when
    present (32 bits), else the 8-bit ifa_flags.
    """

    ifindex: int
    address: IPv6Address
    prefixlen: int
    flags: int
    scope: int
    protocol: int = 0
    peer: IPv6Address | None = None

    @property
    def usable(self) -> bool:
        """Neither tentative nor failed DAD: the address can be used as a source."""
        return not self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)


@dataclass(frozen=True, slots=True)
class IfInfo:
    """One link as an ifinfomsg describes it (``name`` "" when IFLA_IFNAME is absent)."""

    ifindex: int
    name: str
    flags: int

    @property
    def up(self) -> bool:
        """Administratively up and with carrier (IFF_UP and IFF_LOWER_UP)."""
        return bool(self.flags & IFF_UP) and bool(self.flags & IFF_LOWER_UP)


def decode_ifaddr(buf: bytes | memoryview, off: int, end: int) -> IfAddr | None:
    """An RTM_NEWADDR/RTM_DELADDR payload buf[off:end]; None for non-IPv6 or no address."""
    if end - off < nl.IFADDRMSG.size:
        return None
    fam, plen, flags8, scope, index = nl.IFADDRMSG.unpack_from(buf, off)
    if fam != _AF6:
        return None
    at = nl.attrs(buf, off + nl.IFADDRMSG.size, end)
    loc = at.get(IFA_LOCAL)
    adr = at.get(IFA_ADDRESS)
    main = loc or adr
    if main is None or main[1] - main[0] < 16:
        return None
    address = IPv6Address(bytes(buf[main[0] : main[0] + 16]))
    peer = None
    if loc is not None and adr is not None and adr[1] - adr[0] >= 16:
        other = IPv6Address(bytes(buf[adr[0] : adr[0] + 16]))
        peer = other if other != address else None
    flags = _U32(buf, at[IFA_FLAGS][0])[0] if IFA_FLAGS in at else flags8
    proto = buf[at[IFA_PROTO][0]] if IFA_PROTO in at else 0
    return IfAddr(index, address, plen, flags, scope, proto, peer)


def decode_ifinfo(buf: bytes | memoryview, off: int, end: int) -> IfInfo | None:
    """An RTM_NEWLINK/RTM_DELLINK payload buf[off:end]."""
    if end - off < nl.IFINFOMSG.size:
        return None
    _fam, _type, index, flags, _change = nl.IFINFOMSG.unpack_from(buf, off)
    at = nl.attrs(buf, off + nl.IFINFOMSG.size, end)
    name = ""
    if IFLA_IFNAME in at:
        a, b = at[IFLA_IFNAME]
        name = bytes(buf[a:b]).split(b"\0", 1)[0].decode(errors="replace")
    return IfInfo(index, name, flags)


def decode(buf: bytes | memoryview) -> Iterator[tuple[int, IfAddr | IfInfo]]:
    """(message type, decoded payload) for each link/address message in a receive buffer."""
    for kind, _flags, _seq, a, b in nl.iter_messages(buf):
        if kind in (nl.RTM_NEWADDR, nl.RTM_DELADDR):
            addr = decode_ifaddr(buf, a, b)
            if addr is not None:
                yield kind, addr
        elif kind in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
            link = decode_ifinfo(buf, a, b)
            if link is not None:
                yield kind, link


def address_dump_request(seq: int) -> bytes:
    return nl.message(
        nl.RTM_GETADDR, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, nl.IFADDRMSG.pack(_AF6, 0, 0, 0, 0)
    )


def link_dump_request(seq: int) -> bytes:
    return nl.message(
        nl.RTM_GETLINK,
        nl.NLM_F_REQUEST | nl.NLM_F_DUMP,
        seq,
        nl.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
    )


# --------------------------------------------------------------------------- local addresses


class LocalAddresses:
    """Is an address one of this node's?  Netlink address dump, cached for ``max_age`` s.

    The default destination check of the userspace transport (the packet
    socket sees everything the link delivers, including packets this node
    only forwards).  A miss re-dumps at most every ``min_refresh`` seconds, so
    a newly added care-of address is seen at once and a flood of foreign
    destinations costs one dump per ``min_refresh``.  Opened in the calling
    thread's network namespace.
    """

    def __init__(self, *, max_age: float = 2.0, min_refresh: float = 0.2) -> None:
        self.max_age = max_age
        self.min_refresh = min_refresh
        self._addrs: frozenset[IPv6Address] = frozenset()
        self._at = -1e9
        self._sock = nl.open_socket(rcvbuf=1 << 20)
        self._seq = 0

    def refresh(self) -> frozenset[IPv6Address]:
        self._seq += 1
        found: set[IPv6Address] = set()
        for buf in nl.dump(self._sock, address_dump_request(self._seq), self._seq):
            for kind, a in decode(buf):
                if kind != nl.RTM_NEWADDR or not isinstance(a, IfAddr):
                    continue
                found.add(a.address)
                if a.peer is not None:
                    found.add(a.peer)
        self._addrs = frozenset(found)
        self._at = time.monotonic()
        return self._addrs

    def __call__(self, address: IPv6Address) -> bool:
        age = time.monotonic() - self._at
        if age > self.max_age or (address not in self._addrs and age > self.min_refresh):
            self.refresh()
        return address in self._addrs

    def sent_from(self, address: IPv6Address) -> None:
        """This node just sent from ``address``: if the cache does not know it yet (a
        care-of address made a moment ago), the next miss re-reads at once -- else the
        answer to that packet, milliseconds later, is dropped as not ours."""
        if address not in self._addrs:
            self._at = -1e9

    def close(self) -> None:
        self._sock.close()


# --------------------------------------------------------------------------- link watch


@dataclass(frozen=True, slots=True)
class LinkEvent:
    ifname: str
    up: bool


@dataclass(frozen=True, slots=True)
class AddrEvent:
    ifname: str
    address: IPv6Address
    present: bool


@dataclass(frozen=True, slots=True)
class LinkLocalEvent:
    """A link-local address came or went: not a care-of address, but the L bit's test."""

    ifname: str
    address: IPv6Address
    present: bool


class LinkWatch:
    """Carrier and global IPv6 address changes of this namespace (rtnetlink, no pyroute2)."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.events = nl.open_socket(
            groups=(nl.RTNLGRP_LINK, nl.RTNLGRP_IPV6_IFADDR), rcvbuf=4 << 20
        )
        self.events.setblocking(False)
        self._seq = 0

    def fileno(self) -> int:
        return self.events.fileno()

    def dump(self, attempts: int = 10) -> list[LinkEvent | AddrEvent | LinkLocalEvent]:
        """Current links and addresses (the event socket is subscribed already).

        A dump the kernel marks interrupted (NLM_F_DUMP_INTR: addresses changed
        under it, e.g. SLAAC at start-up) is started over."""
        for attempt in range(attempts):
            try:
                return self._dump_once()
            except OSError as e:
                if e.errno != errno.EINTR or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _dump_once(self) -> list[LinkEvent | AddrEvent | LinkLocalEvent]:
        out: list[LinkEvent | AddrEvent | LinkLocalEvent] = []
        with contextlib.closing(nl.open_socket(rcvbuf=1 << 20)) as s:
            for request in (link_dump_request, address_dump_request):
                self._seq += 1
                for buf in nl.dump(s, request(self._seq), self._seq):
                    out += self.parse(buf)
        return out

    def read(self) -> list[LinkEvent | AddrEvent | LinkLocalEvent]:
        out: list[LinkEvent | AddrEvent | LinkLocalEvent] = []
        while True:
            try:
                buf = self.events.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:  # ENOBUFS: events lost, start from a dump
                log.warning("netlink events lost (%s): re-reading links and addresses", e)
                out += self.dump()
                continue
            out += self.parse(buf)

    def parse(self, buf: bytes | memoryview) -> list[LinkEvent | AddrEvent | LinkLocalEvent]:
        """Events from a buffer of RTM_*LINK / RTM_*ADDR messages; learns ifindex -> name."""
        out: list[LinkEvent | AddrEvent | LinkLocalEvent] = []
        for kind, obj in decode(buf):
            if isinstance(obj, IfInfo):
                if obj.name:
                    self.names[obj.ifindex] = obj.name
                name = self.names.get(obj.ifindex)
                if name is None:
                    continue
                out.append(LinkEvent(name, kind == nl.RTM_NEWLINK and obj.up))
                if kind == nl.RTM_DELLINK:
                    self.names.pop(obj.ifindex, None)
            else:
                if obj.ifindex not in self.names:
                    continue
                name = self.names[obj.ifindex]
                if obj.scope == RT_SCOPE_UNIVERSE:
                    present = kind == nl.RTM_NEWADDR and obj.usable
                    out.append(AddrEvent(name, obj.address, present))
                elif obj.scope == RT_SCOPE_LINK and obj.address.is_link_local:
                    # a tentative one (DAD again after every carrier loss) is still ours
                    present = kind == nl.RTM_NEWADDR and not obj.flags & IFA_F_DADFAILED
                    out.append(LinkLocalEvent(name, obj.address, present))
        return out

    def close(self) -> None:
        self.events.close()
