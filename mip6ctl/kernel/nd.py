"""Neighbour Discovery sockets (raw ICMPv6, IPPROTO_RAW): DAD probes, RS, NS, unsolicited NA.

The protocol decisions live elsewhere (the home agent's asyncio DAD in
mip6ctl/daemon/neighbour.py, the mobile node's movement detection in
mip6ctl/engine/movement.py); this module only opens, configures and uses
the sockets, in the calling thread's network namespace:

* `DadSockets` -- one home link's pair: a raw ICMPv6 socket bound to the
  interface that receives Neighbor Solicitations/Advertisements (and sends
  unsolicited NAs), and an IPPROTO_RAW socket for DAD probes, which need the
  unspecified source ``::`` that a raw ICMPv6 socket would replace.  Both are
  bound to the interface *index* of the moment they are opened; `stale()`
  says when the name now refers to another index (the interface was deleted
  and re-created), and the owner re-opens them.
* `NdSender` -- the mobile node's Router Solicitations, Neighbor
  Solicitations (RFC 4436 router probes; from ``::`` for the home agent when
  returning home, RFC 6275 §11.5.5) and unsolicited Neighbor Advertisements
  for its home address.
* `hardware_address` -- an interface's MAC, read in this namespace.

All packets hop limit 255 (RFC 4861 §7.1).
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
from ipaddress import IPv6Address

from mip6ctl.wire.icmp6 import (
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    encode_icmp6,
)
from mip6ctl.wire.packet import build_icmp6_packet

__all__ = [
    "DadSockets",
    "NdSender",
    "hardware_address",
    "icmp6_filter",
    "solicited_node",
    "unspecified_source_solicitation",
]

ICMPV6_RS = 133
ICMPV6_NS = 135
ICMPV6_NA = 136
ICMP6_FILTER = 1
SIOCGIFHWADDR = 0x8927
ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
UNSPECIFIED = IPv6Address("::")


def solicited_node(address: IPv6Address) -> IPv6Address:
    """The solicited-node multicast group of `address` (ff02::1:ffXX:XXXX)."""
    return IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + address.packed[13:])


def icmp6_filter(types: tuple[int, ...]) -> bytes:
    """ICMP6_FILTER: block all, pass `types` (the kernel's bit means 'block')."""
    words = [0xFFFFFFFF] * 8
    for t in types:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


def hardware_address(ifname: str) -> bytes:
    """The interface's MAC (SIOCGIFHWADDR in this namespace; /sys may show another one)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    return ifreq[18:24]


class DadSockets:
    """One interface's ND sockets for the home agent (see the module docstring).

    Raises OSError (ENODEV) when the interface does not exist now.
    """

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        self.listen = socket.socket(
            socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_ICMPV6
        )
        self.raw: socket.socket | None = None
        try:
            s = self.listen
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter((ICMPV6_NS, ICMPV6_NA)))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setblocking(False)
            self.raw = socket.socket(
                socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_RAW
            )
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            # our own DAD probe looped back would look like another node's DAD
            self.raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        return self.listen.fileno()

    def stale(self) -> bool:
        """True when `ifname` is gone or now names another interface index."""
        try:
            return socket.if_nametoindex(self.ifname) != self.ifindex
        except OSError:
            return True

    def receive(self) -> list[tuple[int, IPv6Address, IPv6Address]]:
        """Drain what is queued: (ICMPv6 type, target, source) per NS/NA; never blocks.

        A receive error other than "nothing queued" ends the drain (the caller
        checks `stale()`).
        """
        out = []
        while True:
            try:
                data, addr = self.listen.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                return out
            if len(data) < 24 or data[0] not in (ICMPV6_NS, ICMPV6_NA):
                continue
            out.append((data[0], IPv6Address(data[8:24]), IPv6Address(addr[0].split("%")[0])))

    def send_dad_probe(self, address: IPv6Address) -> None:
        """NS for `address` from ``::`` to its solicited-node group (RFC 4862 §5.4.2)."""
        assert self.raw is not None
        group = solicited_node(address)
        packet = build_icmp6_packet(UNSPECIFIED, group, NeighborSolicitation(target=address))
        self.raw.sendto(packet, (str(group), 0, 0, self.ifindex))

    def send_unsolicited_na(self, address: IPv6Address, lladdr: bytes | None) -> None:
        """NA for `address` (Override set, Router and Solicited clear) to all nodes."""
        options = (TargetLinkLayerAddress(lladdr),) if lladdr else ()
        na = NeighborAdvertisement(target=address, flags=NeighborAdvertisement.O, options=options)
        self.listen.sendto(na.encode(), (str(ALL_NODES), 0, 0, self.ifindex))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listen.close()
        if self.raw is not None:
            with contextlib.suppress(OSError):
                self.raw.close()


def unspecified_source_solicitation(target: IPv6Address) -> tuple[IPv6Address, bytes]:
    """(destination, IPv6 packet): an NS for `target` from ``::`` to its solicited-node
    group, without a Source Link-Layer Address option (RFC 4861 §4.3 forbids it with
    ``::``).  The answer is an NA to all-nodes with the Target Link-Layer Address."""
    group = solicited_node(target)
    return group, build_icmp6_packet(UNSPECIFIED, group, NeighborSolicitation(target=target))


class NdSender:
    """Router Solicitations and unsolicited Neighbor Advertisements (raw ICMPv6, hop limit 255).

    NSs from ``::`` go through an IPPROTO_RAW socket with the IPv6 header built
    here: a raw ICMPv6 socket puts a source address of its own choosing in place
    of ``::`` (IPV6_PKTINFO with ``::`` means "choose")."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 58)
        self.raw: socket.socket | None = None
        try:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            # send only: block every ICMPv6 type on receive
            self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)
            self.sock.setblocking(False)
            self.raw = socket.socket(
                socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_RAW
            )
            self.raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            self.raw.setblocking(False)
        except BaseException:
            self.close()
            raise

    def router_solicitation(self, ifname: str) -> None:
        self.sock.sendto(
            RouterSolicitation().encode(),
            (str(ALL_ROUTERS), 0, 0, socket.if_nametoindex(ifname)),
        )

    def neighbor_solicitation(self, ifname: str, target: IPv6Address) -> None:
        """NS for ``target`` to its solicited-node group, with our link-layer address."""
        index = socket.if_nametoindex(ifname)
        ns = NeighborSolicitation(target, (SourceLinkLayerAddress(hardware_address(ifname)),))
        self.sock.sendto(encode_icmp6(ns), (str(solicited_node(target)), 0, 0, index))

    def neighbor_solicitation_unspecified(self, ifname: str, target: IPv6Address) -> None:
        """NS for ``target`` from ``::`` (see `unspecified_source_solicitation`)."""
        assert self.raw is not None
        index = socket.if_nametoindex(ifname)
        group, packet = unspecified_source_solicitation(target)
        self.raw.sendto(packet, (str(group), 0, 0, index))

    def neighbor_advertisement(self, ifname: str, target: IPv6Address) -> None:
        index = socket.if_nametoindex(ifname)
        na = NeighborAdvertisement(
            target, NeighborAdvertisement.O, (TargetLinkLayerAddress(hardware_address(ifname)),)
        )
        pktinfo = target.packed + struct.pack("=I", index)
        self.sock.sendmsg(
            [encode_icmp6(na)],
            [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)],
            0,
            (str(ALL_NODES), 0, 0, index),
        )

    def close(self) -> None:
        self.sock.close()
        if self.raw is not None:
            self.raw.close()
