"""IPv6 datagrams ↔ protocol events: what the transports hand the engine, and back.

Pure functions over bytes, no sockets: :func:`decode_packet` turns a packet
captured at the link layer into an engine input, :func:`decode_kernel_message`
does the same for a raw IPPROTO_MH socket's message and its ancillary data,
:func:`build_outgoing` / :func:`build_parameter_problem` make the packets the
engine's actions ask for.  The transports (``mip6ctl.kernel.transport``) only
move these bytes; the engine (``mip6ctl.engine``) only sees the events.

``Received.src``/``dst`` are the addresses *on the wire* (care-of address as
source with a Home Address option, care-of address as destination behind a
type 2 routing header); the home addresses go into ``home_address_option`` /
``routing_header_address``, whichever transport produced the event.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address

from mip6ctl.wire.checksum import NEXT_HEADER_ICMPV6, NEXT_HEADER_MH
from mip6ctl.wire.errors import Truncated, WireError
from mip6ctl.wire.exthdr import (
    decode_destination_options,
    encode_hao_destination_options,
    encode_type2_routing_header,
)
from mip6ctl.wire.icmp6 import ICMPv6Message
from mip6ctl.wire.mh import MobilityMessage, decode_mh
from mip6ctl.wire.packet import (
    build_icmp6_packet,
    build_mh_packet,
    decode_icmp6_packet,
    parse_ipv6,
    verify_packet_checksum,
)

__all__ = [
    "Dropped",
    "HomeAddressOptionReceived",
    "ICMPv6Received",
    "InboundEvent",
    "Malformed",
    "Received",
    "Send",
    "SendParameterProblem",
    "build_outgoing",
    "build_parameter_problem",
    "decode_kernel_message",
    "decode_packet",
]

IPPROTO_IPV6_IN_IPV6 = 41
#: §9.3.1: "If the Next Header value of the Destination Option is one of the following:
#: {50 (ESP), 51 (AH), 135 (Mobility Header)}, the packet SHOULD be processed normally";
#: only other payload needs a binding (else Binding Error 1)
_HAO_PROCESSED_NORMALLY = frozenset({50, 51, NEXT_HEADER_MH})
ICMPV6_PARAMPROB = 4
#: RFC 4443 §2.4(c): an ICMPv6 error must fit the minimum MTU.
_MIN_MTU = 1280
#: RFC 3542 ancillary data levels/types (Linux values), so this module needs no socket import
IPPROTO_IPV6, IPV6_PKTINFO, IPV6_RTHDR, IPV6_DSTOPTS = 41, 50, 57, 59


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Received:
    """A Mobility Header message that decoded cleanly (checksum already verified).

    ``home_address_option`` / ``routing_header_address`` are the Home Address
    option and type 2 routing header addresses when present. ``raw`` is the
    Mobility Header octets as received: the return-routability authenticator
    is checked over them (without it the message is re-encoded, which only
    matches when the sender padded options the canonical way).
    """

    message: MobilityMessage
    src: IPv6Address
    dst: IPv6Address
    home_address_option: IPv6Address | None = None
    routing_header_address: IPv6Address | None = None
    ipsec_protected: bool = False
    ifname: str | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """The daemon decoded a packet and got a typed error (its ``reaction`` decides)."""

    error: WireError
    packet: bytes
    src: IPv6Address
    dst: IPv6Address
    home_address_option: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class HomeAddressOptionReceived:
    """A non-MH packet (e.g. payload to a correspondent) carried a Home Address option.

    Without a binding for (home address, care-of address = ``src``) it must be
    dropped and answered with Binding Error 1 (§9.3.1); the engine answers.
    """

    src: IPv6Address
    dst: IPv6Address
    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``message`` from ``src`` to ``dst``, with a Home Address option / type 2 RH.

    Messages that need an authenticator (a correspondent's BA) already carry it;
    the daemon only fills the checksum (``encode_mh`` with the addresses).
    """

    message: MobilityMessage
    src: IPv6Address
    dst: IPv6Address
    home_address_option: IPv6Address | None = None
    routing_header_address: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class SendParameterProblem:
    """ICMPv6 Parameter Problem (RFC 4443 §3.4) about ``invoking_packet``."""

    code: int
    pointer: int
    invoking_packet: bytes
    src: IPv6Address
    dst: IPv6Address


@dataclass(frozen=True, slots=True)
class ICMPv6Received:
    """An ICMPv6 message of a type the transport was asked for (not an engine input yet).

    For the daemon's movement detection (RA), home address defence (NS) and
    DHAAD / Mobile Prefix handling; checksum (and Hop Limit 255 for ND) verified.
    """

    message: ICMPv6Message
    src: IPv6Address
    dst: IPv6Address
    hop_limit: int
    ifname: str | None = None


@dataclass(frozen=True, slots=True)
class Dropped:
    """A captured packet that produces no event, and why (counted in the stats)."""

    reason: str


InboundEvent = Received | Malformed | HomeAddressOptionReceived | ICMPv6Received


# --------------------------------------------------------------------------- decoding


def _all_local(_address: IPv6Address) -> bool:
    return True


def decode_packet(
    data: bytes,
    *,
    ifname: str | None = None,
    is_local: Callable[[IPv6Address], bool] = _all_local,
    icmp_types: Collection[int] = (),
    decapsulate: bool = True,
    tunnel_from: Collection[IPv6Address] | None = None,
) -> InboundEvent | Dropped:
    """Turn one captured IPv6 packet into an engine input, or say why there is none.

    - Mobility Header to a local unicast address: checksum verified under the
      HAO/RH2 rule (bad: dropped silently, RFC 6275 §9.2), then ``Received``
      or, on a decode error, ``Malformed`` with the packet-offset pointer.
    - A header-chain error in a packet to us: ``Malformed`` (the engine reacts
      by the error's reaction: discard or Parameter Problem).
    - ICMPv6 of one of ``icmp_types`` to a local or multicast address:
      ``ICMPv6Received`` (bad checksum or ND hop limit: dropped).
    - Another upper layer with a Home Address option: ``HomeAddressOptionReceived``.
    - IPv6-in-IPv6 (``decapsulate``): the inner packet, decoded the same way
      (its destination must be local too), so signalling tunnelled by the
      home agent arrives with its inner addresses. ``tunnel_from``: the outer
      sources allowed (a mobile node's home agent: RFC 6275 §11.3.3, a Home Test
      reaches the mobile node only through its home agent's tunnel); others dropped.
    """
    if len(data) < 40 or data[0] >> 4 != 6:
        return Dropped("not IPv6")
    dst = IPv6Address(bytes(data[24:40]))
    multicast = data[24] == 0xFF
    if not multicast and not is_local(dst):
        return Dropped("not for us")
    try:
        pkt = parse_ipv6(data)
    except WireError as e:
        if multicast:
            return Dropped("malformed multicast")
        return Malformed(e, bytes(data), IPv6Address(bytes(data[8:24])), dst)
    src, dst = pkt.src, pkt.dst
    nh = pkt.next_header
    if nh == IPPROTO_IPV6_IN_IPV6 and decapsulate and not multicast:
        if tunnel_from is not None and src not in tunnel_from:
            return Dropped("tunnelled, not from the home agent")
        return decode_packet(
            pkt.payload, ifname=ifname, is_local=is_local, icmp_types=icmp_types, decapsulate=False
        )
    if nh == NEXT_HEADER_MH:
        if multicast:
            return Dropped("Mobility Header to multicast")
        # decode_mh_packet() without parsing the header chain a second time
        base = pkt.payload_offset
        try:
            if len(pkt.payload) < 8:
                raise Truncated("Mobility Header shorter than 8 octets", mh_offset=0, base=base)
            if not verify_packet_checksum(pkt):
                return Dropped("bad checksum")
            msg = decode_mh(pkt.payload, base=base)
        except WireError as e:
            return Malformed(e, bytes(data), src, dst, pkt.home_address)
        return Received(
            msg, src, dst, pkt.home_address, pkt.rh2_home_address, False, ifname, pkt.payload
        )
    if nh == NEXT_HEADER_ICMPV6 and pkt.payload and pkt.payload[0] in icmp_types:
        try:
            _, icmp = decode_icmp6_packet(data)
        except WireError:
            return Dropped("bad ICMPv6")
        return ICMPv6Received(icmp, src, dst, pkt.hop_limit, ifname)
    if pkt.home_address is not None and not multicast and nh not in _HAO_PROCESSED_NORMALLY:
        return HomeAddressOptionReceived(src, dst, pkt.home_address)
    return Dropped("not signalling")


def _cmsg_address(data: bytes) -> IPv6Address:
    return IPv6Address(bytes(data[:16]))


def _wire_packet(
    src: IPv6Address,
    dst: IPv6Address,
    mh: bytes,
    hoa: IPv6Address | None,
    rh2: IPv6Address | None,
) -> bytes:
    """The packet as it was on the wire (for a Parameter Problem's invoking packet)."""
    chain, nh = b"", NEXT_HEADER_MH
    if hoa is not None:
        chain, nh = encode_hao_destination_options(hoa, nh), 60
    if rh2 is not None:
        chain, nh = encode_type2_routing_header(rh2, nh) + chain, 43
    body = chain + bytes(mh)
    return struct.pack("!IHBB", 6 << 28, len(body), nh, 64) + src.packed + dst.packed + body


def decode_kernel_message(
    payload: bytes,
    peer: IPv6Address,
    ancillary: Iterable[tuple[int, int, bytes]],
    *,
    ifname: str | None = None,
) -> Received | Malformed | Dropped:
    """A raw IPPROTO_MH socket's message + ancillary data → engine input (kernel transport).

    On a CONFIG_IPV6_MIP6 kernel, processing the extension headers *swaps*
    addresses: after a Home Address option the IPv6 source (and so ``peer``)
    is the home address and the option (IPV6_DSTOPTS) holds the care-of
    address; after a type 2 routing header the destination (IPV6_PKTINFO) is
    the home address and the header (IPV6_RTHDR, Segments Left 0) holds the
    care-of address.  This swaps them back, so events look exactly like the
    userspace transport's.  The checksum was verified by the kernel
    (IPV6_CHECKSUM 4 with the home-address pseudo-header).
    """
    local: IPv6Address | None = None
    swapped_src: IPv6Address | None = None
    swapped_dst: IPv6Address | None = None
    chain = 0
    for level, kind, data in ancillary:
        if level != IPPROTO_IPV6:
            continue
        if kind == IPV6_PKTINFO and len(data) >= 16:
            local = _cmsg_address(data)
        elif kind == IPV6_DSTOPTS:
            chain += len(data)
            try:
                d = decode_destination_options(bytes(data), strict=False)
            except WireError:
                continue
            if d.home_address is not None:
                swapped_src = d.home_address
        elif kind == IPV6_RTHDR:
            chain += len(data)
            if len(data) >= 24 and data[2] == 2:
                swapped_dst = _cmsg_address(data[8:24])
    if local is None:
        return Dropped("no IPV6_PKTINFO")
    src, hoa = (swapped_src, peer) if swapped_src is not None else (peer, None)
    dst, rh2 = (swapped_dst, local) if swapped_dst is not None else (local, None)
    try:
        msg = decode_mh(payload, base=40 + chain)
    except WireError as e:
        return Malformed(e, _wire_packet(src, dst, payload, hoa, rh2), src, dst, hoa)
    return Received(msg, src, dst, hoa, rh2, False, ifname, bytes(payload))


# --------------------------------------------------------------------------- building


def build_outgoing(action: Send) -> tuple[bytes, IPv6Address]:
    """The whole IPv6 packet for a ``Send`` and the address the IPv6 header goes to.

    HAO when the action says so (source = care-of address, option = home
    address), a type 2 routing header for packets to a care-of address (header
    destination = care-of, routing header = home address); the MH checksum
    follows the Mobile IPv6 pseudo-header rule.
    """
    pkt = build_mh_packet(
        action.src,
        action.dst,
        action.message,
        home_address=action.home_address_option,
        rh2_home_address=action.routing_header_address,
    )
    return pkt, action.dst


def build_parameter_problem(action: SendParameterProblem) -> bytes:
    """ICMPv6 Parameter Problem (RFC 4443 §3.4), invoking packet cut to fit 1280 octets."""
    room = _MIN_MTU - 40 - 8
    body = struct.pack("!BBHI", ICMPV6_PARAMPROB, action.code, 0, action.pointer)
    return build_icmp6_packet(
        action.src, action.dst, body + action.invoking_packet[:room], hop_limit=64
    )
