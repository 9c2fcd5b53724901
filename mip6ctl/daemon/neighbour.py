"""Neighbour Discovery on the home link: DAD for home addresses, unsolicited NAs.

RFC 6275 §10.3.1: before accepting a first home registration the home agent
runs Duplicate Address Detection for the home address on the home link (a
Neighbor Solicitation from ``::`` to the solicited-node group, then silence
for RetransTimer means the address is free).  §10.4.1: once it intercepts
for the mobile node it multicasts a Neighbor Advertisement with the Override
flag so that neighbours update their caches to the home agent's link-layer
address.  UMIP blocked a thread per Binding Update for that second; here each
DAD is an asyncio task, so other Binding Updates keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from ipaddress import IPv6Address

from mip6ctl.wire.icmp6 import (
    NeighborAdvertisement,
    NeighborSolicitation,
    TargetLinkLayerAddress,
)
from mip6ctl.wire.packet import build_icmp6_packet

log = logging.getLogger("mip6ctl.neighbour")

ICMPV6_NS = 135
ICMPV6_NA = 136
ALL_NODES = IPv6Address("ff02::1")
#: RFC 4861 RetransTimer default: how long DAD listens for a defender.
RETRANS_TIMER = 1.0


def solicited_node(address: IPv6Address) -> IPv6Address:
    return IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + address.packed[13:])


def _icmp_filter(types: tuple[int, ...]) -> bytes:
    """ICMP6_FILTER: block all, pass `types` (the kernel's bit means 'block')."""
    words = [0xFFFFFFFF] * 8
    for t in types:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


def _link_address(ifname: str) -> bytes | None:
    try:
        with open(f"/sys/class/net/{ifname}/address") as f:
            return bytes.fromhex(f.read().strip().replace(":", ""))
    except (OSError, ValueError):
        return None


class NeighbourDiscovery:
    """One raw ICMPv6 socket per home link, opened in the daemon's namespace."""

    def __init__(self, interfaces: list[str]) -> None:
        self._socks: dict[str, socket.socket] = {}
        #: IPPROTO_RAW senders: DAD needs the unspecified source, which a raw
        #: ICMPv6 socket would replace with an address of the interface.
        self._raw: dict[str, socket.socket] = {}
        self._waiters: dict[tuple[str, IPv6Address], asyncio.Future[bool]] = {}
        for ifname in interfaces:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            s.setsockopt(socket.IPPROTO_ICMPV6, 1, _icmp_filter((ICMPV6_NS, ICMPV6_NA)))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            s.setsockopt(
                socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(ifname)
            )
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setblocking(False)
            self._socks[ifname] = s
            r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            r.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            # our own DAD probe looped back would look like another node's DAD
            r.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            self._raw[ifname] = r
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for ifname, s in self._socks.items():
            loop.add_reader(s.fileno(), self._readable, ifname, s)

    def close(self) -> None:
        for s in self._socks.values():
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(s.fileno())
            s.close()
        for r in self._raw.values():
            r.close()
        self._socks.clear()
        self._raw.clear()

    def _readable(self, ifname: str, s: socket.socket) -> None:
        while True:
            try:
                data, addr = s.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(data) < 24 or data[0] not in (ICMPV6_NS, ICMPV6_NA):
                continue
            target = IPv6Address(data[8:24])
            src = IPv6Address(addr[0].split("%")[0])
            fut = self._waiters.get((ifname, target))
            if fut is None or fut.done():
                continue
            # A defender (NA for the target), or another node doing DAD for it
            # (NS from ::): either way the address is not free.
            if data[0] == ICMPV6_NA or src == IPv6Address("::"):
                fut.set_result(False)

    async def duplicate_address_detection(
        self, address: IPv6Address, ifname: str | None, timeout: float = RETRANS_TIMER
    ) -> bool:
        """True when nobody defends `address` on the link within `timeout`."""
        if not self._socks:
            return True
        ifname = ifname if ifname in self._socks else next(iter(self._socks))
        loop = asyncio.get_running_loop()
        key = (ifname, address)
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters[key] = fut
        group = solicited_node(address)
        packet = build_icmp6_packet(IPv6Address("::"), group, NeighborSolicitation(target=address))
        try:
            self._raw[ifname].sendto(packet, (str(group), 0, 0, socket.if_nametoindex(ifname)))
        except OSError as e:
            log.warning("DAD for %s on %s: cannot send NS: %s", address, ifname, e)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return True
        finally:
            self._waiters.pop(key, None)

    def advertise(self, address: IPv6Address, ifname: str) -> None:
        """Unsolicited NA (Override set, Router and Solicited clear) to all nodes."""
        s = self._socks.get(ifname)
        if s is None:
            return
        lladdr = _link_address(ifname)
        options = (TargetLinkLayerAddress(lladdr),) if lladdr else ()
        na = NeighborAdvertisement(target=address, flags=NeighborAdvertisement.O, options=options)
        try:
            s.sendto(na.encode(), (str(ALL_NODES), 0, 0, socket.if_nametoindex(ifname)))
        except OSError as e:
            log.warning("unsolicited NA for %s on %s failed: %s", address, ifname, e)
