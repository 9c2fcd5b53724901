"""Home Address destination option (§6.3) and type 2 routing header (§6.4).

Both carry the mobile node's home address so that the packet on the wire uses
the care-of address while the upper layer (and its checksum) sees the home
address. Encoders emit a whole extension header; decoders take one extension
header (``data`` starts at its Next Header octet) and validate it:

- Destination Options: option TLVs must stay inside the header; a Home Address
  option must have length 16, sit at 8n+6 (``strict``) and occur at most once;
  unknown options follow RFC 8200 §4.2 by the top two bits of their type
  (skip / discard / Parameter Problem code 2 pointing at the type octet).
- Type 2 routing header: Hdr Ext Len must be 2 and Segments Left 1, else the
  packet is discarded. Checking the address is one of our home addresses is
  the engine's job.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from .addr import address
from .checksum import Address, packed_address
from .errors import BadRoutingHeader, DestOptError, Truncated, UnrecognizedDestOption

__all__ = [
    "HAO_OPTION_TYPE",
    "NEXT_HEADER_DESTOPTS",
    "NEXT_HEADER_ROUTING",
    "DestinationOptions",
    "Type2RoutingHeader",
    "decode_destination_options",
    "decode_type2_routing_header",
    "encode_hao_destination_options",
    "encode_type2_routing_header",
]

HAO_OPTION_TYPE = 0xC9
NEXT_HEADER_ROUTING = 43
NEXT_HEADER_DESTOPTS = 60
ROUTING_TYPE_2 = 2

_RH2 = struct.Struct("!BBBBI16s")


@dataclass(frozen=True, slots=True)
class DestinationOptions:
    """A decoded Destination Options header.

    ``home_address`` is the Home Address option's address (None without one);
    ``home_address_offset`` the offset of that option's type octet in the header;
    ``skipped`` lists (type, data) of unknown options with "skip" semantics.
    """

    next_header: int
    length: int
    home_address: IPv6Address | None = None
    home_address_offset: int | None = None
    skipped: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Type2RoutingHeader:
    """A decoded type 2 routing header (always Hdr Ext Len 2, Segments Left 1)."""

    next_header: int
    home_address: IPv6Address
    length: int = 24


def encode_hao_destination_options(home_address: Address, next_header: int) -> bytes:
    """A 24-octet Destination Options header holding PadN(4) and the Home Address option.

    The option lands at offset 6, satisfying its 8n+6 alignment.
    """
    return (
        bytes((next_header, 2, 1, 2, 0, 0, HAO_OPTION_TYPE, 16)) + packed_address(home_address)
    )


def encode_type2_routing_header(home_address: Address, next_header: int) -> bytes:
    """A type 2 routing header (Hdr Ext Len 2, Segments Left 1, reserved 0)."""
    return _RH2.pack(next_header, 2, ROUTING_TYPE_2, 1, 0, packed_address(home_address))


def decode_type2_routing_header(data: bytes, *, base: int = 0) -> Type2RoutingHeader:
    """Validate and decode a type 2 routing header at the start of ``data``."""
    if len(data) < 8:
        raise Truncated("routing header shorter than 8 octets", mh_offset=0, base=base)
    if data[2] != ROUTING_TYPE_2:
        raise BadRoutingHeader(f"routing type {data[2]}, not 2", mh_offset=2, base=base)
    if data[1] != 2:
        raise BadRoutingHeader(f"type 2 Hdr Ext Len {data[1]} != 2", mh_offset=1, base=base)
    if len(data) < 24:
        raise Truncated("type 2 routing header shorter than 24 octets", mh_offset=0, base=base)
    if data[3] != 1:
        raise BadRoutingHeader(f"type 2 Segments Left {data[3]} != 1", mh_offset=3, base=base)
    return Type2RoutingHeader(data[0], address(bytes(data[8:24])))


def decode_destination_options(
    data: bytes, *, strict: bool = True, base: int = 0, multicast_destination: bool = False
) -> DestinationOptions:
    """Validate and decode a Destination Options header at the start of ``data``.

    ``multicast_destination`` selects the RFC 8200 rule for option types
    11xxxxxx (no ICMP to a multicast destination): the error still says
    Parameter Problem but carries ``multicast_exempt``.
    """
    if len(data) < 8:
        raise Truncated("destination options shorter than 8 octets", mh_offset=0, base=base)
    length = (data[1] + 1) << 3
    if length > len(data):
        raise Truncated(f"destination options of {length} octets truncated", mh_offset=1,
                        base=base)
    pos = 2
    hoa: IPv6Address | None = None
    hoa_off: int | None = None
    skipped: list[tuple[int, bytes]] = []
    while pos < length:
        otype = data[pos]
        if otype == 0:
            pos += 1
            continue
        if pos + 2 > length:
            raise DestOptError("option type without length", mh_offset=pos, base=base)
        olen = data[pos + 1]
        nxt = pos + 2 + olen
        if nxt > length:
            raise DestOptError(f"option {otype:#x} runs past the header", mh_offset=pos + 1,
                               base=base)
        if otype == 1:
            pass
        elif otype == HAO_OPTION_TYPE:
            if olen != 16:
                raise DestOptError(f"Home Address option length {olen} != 16",
                                   mh_offset=pos + 1, base=base)
            if strict and pos % 8 != 6:
                raise DestOptError(f"Home Address option at offset {pos}, needs 8n+6",
                                   mh_offset=pos, base=base)
            if hoa is not None:
                raise DestOptError("two Home Address options", mh_offset=pos, base=base)
            hoa = address(bytes(data[pos + 2 : nxt]))
            hoa_off = pos
        else:
            action = otype >> 6
            if action == 0:
                skipped.append((otype, bytes(data[pos + 2 : nxt])))
            elif action == 1:
                raise DestOptError(f"unrecognized option {otype:#x} (discard)", mh_offset=pos,
                                   base=base)
            else:
                raise UnrecognizedDestOption(
                    f"unrecognized option {otype:#x}",
                    mh_offset=pos,
                    base=base,
                    multicast_exempt=action == 3 and multicast_destination,
                )
        pos = nxt
    return DestinationOptions(data[0], length, hoa, hoa_off, tuple(skipped))
