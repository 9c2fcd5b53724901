"""Whole IPv6 packets: header chain walk, Mobile IPv6 extension headers, checksums.

Used where the kernel does not frame Mobile IPv6 for us (AF_PACKET capture and
IPPROTO_RAW send, see DESIGN.md). The send side builds::

    IPv6 | [type 2 routing header] | [Destination Options with HAO] | upper layer

(RFC 8200 order: the routing header comes before the destination options meant
for the final destination). The receive side walks Hop-by-Hop, Routing and
Destination Options headers, stops at the upper layer (or at Fragment/ESP/AH,
which it reports as the upper layer without looking inside), validates the
Mobile IPv6 headers and, for the Mobility Header and ICMPv6, verifies the
checksum with the Mobile IPv6 pseudo-header rule. Error pointers are offsets
in the whole packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from .addr import address
from .checksum import (
    NEXT_HEADER_ICMPV6,
    NEXT_HEADER_MH,
    Address,
    packed_address,
    pseudo_header_addresses,
    upper_layer_checksum,
    verify_upper_layer_checksum,
)
from .errors import (
    BadChecksum,
    BadRoutingHeader,
    DestOptError,
    MalformedICMPv6,
    MalformedPacket,
    MisplacedHopByHop,
    Truncated,
    UnknownRoutingType,
)
from .exthdr import (
    decode_destination_options,
    decode_type2_routing_header,
    encode_hao_destination_options,
    encode_type2_routing_header,
)
from .icmp6 import ND_TYPES, ICMPv6Message, decode_icmp6, encode_icmp6
from .mh import MobilityMessage, decode_mh, encode_mh

__all__ = [
    "IPv6Packet",
    "build_icmp6_packet",
    "build_ipv6",
    "build_mh_packet",
    "decode_icmp6_packet",
    "decode_mh_packet",
    "packet_checksum",
    "parse_ipv6",
    "verify_packet_checksum",
]

IPV6_HEADER_LEN = 40
_IP6 = struct.Struct("!IHBB16s16s")
_CHECKSUM_OFFSET = {NEXT_HEADER_MH: 4, NEXT_HEADER_ICMPV6: 2}


@dataclass(frozen=True, slots=True)
class IPv6Packet:
    """An IPv6 packet with its Mobile IPv6 extension headers resolved.

    ``src``/``dst`` are the IPv6 header's; ``home_address`` comes from a Home
    Address option, ``rh2_home_address`` from a type 2 routing header.
    ``next_header`` and ``payload`` are the upper layer's protocol number and
    octets, which start at ``payload_offset`` in the packet.
    """

    src: IPv6Address
    dst: IPv6Address
    hop_limit: int
    next_header: int
    payload: bytes
    payload_offset: int
    home_address: IPv6Address | None = None
    rh2_home_address: IPv6Address | None = None
    traffic_class: int = 0
    flow_label: int = 0

    @property
    def pseudo_source(self) -> IPv6Address:
        """Source address for the upper-layer pseudo-header (home address with HAO)."""
        return self.home_address if self.home_address is not None else self.src

    @property
    def pseudo_destination(self) -> IPv6Address:
        """Destination for the pseudo-header (home address behind a type 2 RH)."""
        return self.rh2_home_address if self.rh2_home_address is not None else self.dst


def parse_ipv6(data: bytes, *, strict: bool = True) -> IPv6Packet:
    """Parse the IPv6 header and extension chain (no upper-layer checksum check).

    Octets past Payload Length (link-layer padding) are ignored.
    """
    n = len(data)
    if n < IPV6_HEADER_LEN:
        raise Truncated(f"IPv6 packet of {n} octets", mh_offset=0)
    vtf, plen, nh, hlim, src, dst = _IP6.unpack_from(data)
    if vtf >> 28 != 6:
        raise MalformedPacket(f"IP version {vtf >> 28}", mh_offset=0)
    if plen == 0:
        raise MalformedPacket("Payload Length 0 (jumbograms unsupported)", mh_offset=4)
    end = IPV6_HEADER_LEN + plen
    if end > n:
        raise Truncated(f"Payload Length {plen} but {n - 40} octets", mh_offset=4)
    if end < n:
        data = data[:end]
    dst_addr = address(dst)
    pos = IPV6_HEADER_LEN
    hoa: IPv6Address | None = None
    rh2: IPv6Address | None = None
    nh_field = 6  # offset of the Next Header field naming the current header
    while True:
        if nh == 0:
            if pos != IPV6_HEADER_LEN:
                raise MisplacedHopByHop("Hop-by-Hop Options not first", mh_offset=nh_field)
            if pos + 8 > end:
                raise Truncated("Hop-by-Hop header truncated", mh_offset=pos)
            length = (data[pos + 1] + 1) << 3
            nxt = data[pos]
        elif nh == 43:
            if pos + 8 > end:
                raise Truncated("routing header truncated", mh_offset=pos)
            if data[pos + 2] == 2:
                rh = decode_type2_routing_header(data[pos:end], base=pos)
                if rh2 is not None:
                    raise BadRoutingHeader("two type 2 routing headers", mh_offset=pos)
                rh2 = rh.home_address
                length, nxt = 24, rh.next_header
            else:
                if data[pos + 3] != 0:
                    raise UnknownRoutingType(
                        f"routing type {data[pos + 2]} with Segments Left {data[pos + 3]}",
                        mh_offset=pos + 2,
                    )
                length = (data[pos + 1] + 1) << 3
                nxt = data[pos]
        elif nh == 60:
            d = decode_destination_options(
                data[pos:end], strict=strict, base=pos, multicast_destination=dst[0] == 0xFF
            )
            if d.home_address is not None:
                if hoa is not None:
                    raise DestOptError("two Home Address options", mh_offset=pos)
                hoa = d.home_address
            length, nxt = d.length, d.next_header
        else:
            break
        if pos + length > end:
            raise Truncated("extension header runs past the packet", mh_offset=pos + 1)
        nh_field = pos
        pos += length
        nh = nxt
    return IPv6Packet(
        address(src), dst_addr, hlim, nh, bytes(data[pos:end]), pos, hoa, rh2,
        (vtf >> 20) & 0xFF, vtf & 0xFFFFF,
    )


def verify_packet_checksum(pkt: IPv6Packet) -> bool:
    """True when the upper-layer checksum verifies under the Mobile IPv6 pseudo-header."""
    return verify_upper_layer_checksum(
        pkt.pseudo_source, pkt.pseudo_destination, pkt.next_header, pkt.payload
    )


def packet_checksum(pkt: IPv6Packet) -> int:
    """The correct checksum for ``pkt``'s MH or ICMPv6 payload (whatever it holds now)."""
    off = _CHECKSUM_OFFSET.get(pkt.next_header)
    if off is None:
        raise ValueError(f"no checksum rule for next header {pkt.next_header}")
    p = pkt.payload
    zeroed = p[:off] + b"\x00\x00" + p[off + 2 :]
    return upper_layer_checksum(pkt.pseudo_source, pkt.pseudo_destination, pkt.next_header, zeroed)


def decode_mh_packet(
    data: bytes, *, strict: bool = True
) -> tuple[IPv6Packet, MobilityMessage]:
    """Parse a packet carrying a Mobility Header, verify its checksum, decode it (§9.2).

    The raw MH (for the RR authenticator) is ``packet.payload``. Error
    pointers are offsets in ``data``.
    """
    pkt = parse_ipv6(data, strict=strict)
    if pkt.next_header != NEXT_HEADER_MH:
        raise MalformedPacket(f"upper layer {pkt.next_header} is not a Mobility Header",
                        mh_offset=pkt.payload_offset)
    if len(pkt.payload) < 8:
        raise Truncated("Mobility Header shorter than 8 octets", mh_offset=0,
                        base=pkt.payload_offset)
    if not verify_packet_checksum(pkt):
        raise BadChecksum("Mobility Header checksum", mh_offset=4, base=pkt.payload_offset)
    return pkt, decode_mh(pkt.payload, strict=strict, base=pkt.payload_offset)


def decode_icmp6_packet(data: bytes) -> tuple[IPv6Packet, ICMPv6Message]:
    """Parse a packet carrying ICMPv6, verify checksum (and Hop Limit 255 for ND), decode."""
    pkt = parse_ipv6(data)
    if pkt.next_header != NEXT_HEADER_ICMPV6:
        raise MalformedPacket(f"upper layer {pkt.next_header} is not ICMPv6",
                        mh_offset=pkt.payload_offset)
    if not verify_packet_checksum(pkt):
        raise BadChecksum("ICMPv6 checksum", mh_offset=2, base=pkt.payload_offset)
    if pkt.payload and pkt.payload[0] in ND_TYPES and pkt.hop_limit != 255:
        raise MalformedICMPv6(f"ND message with Hop Limit {pkt.hop_limit}", mh_offset=7)
    return pkt, decode_icmp6(pkt.payload, base=pkt.payload_offset)


def build_ipv6(
    src: Address,
    dst: Address,
    next_header: int,
    payload: bytes,
    *,
    home_address: Address | None = None,
    rh2_home_address: Address | None = None,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
    checksum_offset: int | None = None,
) -> bytes:
    """An IPv6 packet with optional type 2 RH and HAO; fills the upper-layer checksum.

    ``checksum_offset`` defaults to 4 for the MH and 2 for ICMPv6 (none for
    other protocols); the field is overwritten with the value computed under
    the Mobile IPv6 pseudo-header rule.
    """
    if checksum_offset is None:
        checksum_offset = _CHECKSUM_OFFSET.get(next_header)
    if checksum_offset is not None:
        s, d = pseudo_header_addresses(
            src, dst, home_address=home_address, rh2_home_address=rh2_home_address
        )
        zeroed = payload[:checksum_offset] + b"\x00\x00" + payload[checksum_offset + 2 :]
        c = upper_layer_checksum(s, d, next_header, zeroed)
        payload = zeroed[:checksum_offset] + c.to_bytes(2, "big") + zeroed[checksum_offset + 2 :]
    chain = b""
    nh = next_header
    if home_address is not None:
        chain = encode_hao_destination_options(home_address, nh)
        nh = 60
    if rh2_home_address is not None:
        chain = encode_type2_routing_header(rh2_home_address, nh) + chain
        nh = 43
    body = chain + payload
    if len(body) > 0xFFFF:
        raise ValueError("payload too long for an IPv6 packet without jumbogram")
    vtf = (6 << 28) | (traffic_class << 20) | flow_label
    return (
        _IP6.pack(vtf, len(body), nh, hop_limit, packed_address(src), packed_address(dst)) + body
    )


def build_mh_packet(
    src: Address,
    dst: Address,
    msg: MobilityMessage | bytes,
    *,
    home_address: Address | None = None,
    rh2_home_address: Address | None = None,
    hop_limit: int = 64,
) -> bytes:
    """An IPv6 packet carrying ``msg`` (a message or already-encoded/signed MH octets)."""
    mh = msg if isinstance(msg, bytes) else encode_mh(msg)
    return build_ipv6(
        src, dst, NEXT_HEADER_MH, mh,
        home_address=home_address, rh2_home_address=rh2_home_address, hop_limit=hop_limit,
    )


def build_icmp6_packet(
    src: Address, dst: Address, msg: ICMPv6Message | bytes, *, hop_limit: int = 255
) -> bytes:
    """An IPv6 packet carrying an ICMPv6 message (Hop Limit 255 by default, as ND needs)."""
    body = msg if isinstance(msg, bytes) else encode_icmp6(msg)
    return build_ipv6(src, dst, NEXT_HEADER_ICMPV6, body, hop_limit=hop_limit)
