"""The home agent's discovery socket: DHAAD Requests and Router Advertisements (RFC 6275 §10.5).

The mobile node uses the same socket for its side (types 145 only, no
anycast): requests out from the care-of address, replies in.

One raw ICMPv6 socket per home agent, passing only types 134 (Router
Advertisement: other home agents on the home links, §10.5.1) and 144 (DHAAD
Request).  It joins the Home-Agents anycast address of every home prefix on
its home link (``IPV6_JOIN_ANYCAST``, RFC 2526): the kernel then accepts
packets to that address, and only while this socket is open -- the
membership is the socket's, like a multicast group, so it goes when the
daemon does and never needs a drift repair.  ``IPV6_RECVPKTINFO`` tells which
address a request was sent to, so a request to a unicast address of this node
can be told from one to the anycast address.

I/O only: what to answer is `mip6ctl.engine.discovery`'s business.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address

from mip6ctl.kernel.nd import ICMP6_FILTER, icmp6_filter

__all__ = ["ICMPV6_DHAAD_REQUEST", "ICMPV6_RA", "DiscoveryDatagram", "DiscoverySocket"]

ICMPV6_RA = 134
ICMPV6_DHAAD_REQUEST = 144
ICMPV6_DHAAD_REPLY = 145
ICMPV6_MOBILE_PREFIX_SOLICITATION = 146
#: linux/in6.h (not in Python's socket module)
IPV6_JOIN_ANYCAST = 27
_PKTINFO = struct.Struct("=16sI")  # struct in6_pktinfo
_MREQ = struct.Struct("=16sI")  # struct ipv6_mreq


@dataclass(frozen=True, slots=True)
class DiscoveryDatagram:
    """One ICMPv6 message as received: the octets from the ICMPv6 type on."""

    data: bytes
    src: IPv6Address
    dst: IPv6Address | None
    ifindex: int
    hop_limit: int | None


class DiscoverySocket:
    """Raw ICMPv6 for DHAAD Requests and Router Advertisements; see the module docstring.

    ``anycast``: (interface name, Home-Agents anycast address) to join.  A join
    that fails (the interface is missing, the address is already this node's)
    is reported in `join_errors`, not raised: DHAAD is one service of the home
    agent, its registrations do not depend on it.
    """

    def __init__(
        self,
        anycast: Iterable[tuple[str, IPv6Address]] = (),
        types: tuple[int, ...] = (ICMPV6_RA, ICMPV6_DHAAD_REQUEST),
    ) -> None:
        self.sock = socket.socket(
            socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_ICMPV6
        )
        self.joined: list[tuple[str, IPv6Address]] = []
        self.join_errors: dict[tuple[str, IPv6Address], str] = {}
        try:
            s = self.sock
            s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter(types))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            s.setblocking(False)
            for ifname, addr in anycast:
                try:
                    mreq = _MREQ.pack(addr.packed, socket.if_nametoindex(ifname))
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_JOIN_ANYCAST, mreq)
                    self.joined.append((ifname, addr))
                except OSError as e:
                    self.join_errors[(ifname, addr)] = f"{type(e).__name__}: {e}"
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self, limit: int = 256) -> list[DiscoveryDatagram]:
        """What is queued (at most `limit`); never blocks."""
        out: list[DiscoveryDatagram] = []
        space = socket.CMSG_SPACE(_PKTINFO.size) + socket.CMSG_SPACE(4)
        while len(out) < limit:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(2048, space)
            except OSError:  # nothing queued (BlockingIOError), or the socket failed
                break
            dst: IPv6Address | None = None
            ifindex, hops = 0, None
            for level, kind, value in anc:
                if level != socket.IPPROTO_IPV6:
                    continue
                if kind == socket.IPV6_PKTINFO and len(value) >= _PKTINFO.size:
                    raw, ifindex = _PKTINFO.unpack_from(value)
                    dst = IPv6Address(raw)
                elif kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                    hops = struct.unpack_from("=i", value)[0]
            src = IPv6Address(addr[0].split("%", 1)[0])
            out.append(DiscoveryDatagram(bytes(data), src, dst, ifindex, hops))
        return out

    def send(self, data: bytes, dst: IPv6Address, src: IPv6Address) -> None:
        """One ICMPv6 message (checksum filled in by the kernel) from `src` to `dst`."""
        info = _PKTINFO.pack(src.packed, 0)
        self.sock.sendmsg(
            [data], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)], 0, (str(dst), 0)
        )

    def close(self) -> None:
        self.sock.close()
