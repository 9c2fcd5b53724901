"""Internet checksum and the IPv6 upper-layer pseudo-header (RFC 8200 §8.1, RFC 6275 §6.1).

Mobile IPv6 changes which addresses go into the pseudo-header: with a Home
Address option the *home address* replaces the source, and behind a type 2
routing header the *home address* (the final destination) replaces the
destination. :func:`pseudo_header_addresses` encodes that rule once for the
Mobility Header and ICMPv6 alike.

The sum uses the identity 2**16 ≡ 1 (mod 0xFFFF): the one's complement sum of
the 16-bit words of a buffer is ``int.from_bytes(buffer) % 0xFFFF`` (with 0
read as 0xFFFF for a non-zero buffer), which runs in C instead of a Python
loop over words.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

__all__ = [
    "MH_CHECKSUM_OFFSET",
    "NEXT_HEADER_ICMPV6",
    "NEXT_HEADER_MH",
    "internet_checksum",
    "mh_checksum",
    "packed_address",
    "pseudo_header",
    "pseudo_header_addresses",
    "set_checksum",
    "upper_layer_checksum",
    "verify_mh_checksum",
    "verify_upper_layer_checksum",
]

NEXT_HEADER_MH = 135
NEXT_HEADER_ICMPV6 = 58
MH_CHECKSUM_OFFSET = 4
"""Octet offset of the Checksum field in the Mobility Header (also IPV6_CHECKSUM's)."""
ICMPV6_CHECKSUM_OFFSET = 2

_PSEUDO_TAIL = struct.Struct("!I3xB")

Address = IPv6Address | bytes


def packed_address(address: Address) -> bytes:
    """16 octets of an address given as ``IPv6Address`` or already packed."""
    if isinstance(address, bytes):
        if len(address) != 16:
            raise ValueError(f"IPv6 address must be 16 octets, got {len(address)}")
        return address
    return address.packed


def _ones_sum(data: bytes) -> int:
    """One's complement sum of 16-bit big-endian words, in [0, 0xFFFF]."""
    if len(data) & 1:
        data += b"\x00"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and data.count(0) != len(data):
        return 0xFFFF
    return total


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data`` (the value to store in the checksum field)."""
    return ~_ones_sum(data) & 0xFFFF


def pseudo_header(src: Address, dst: Address, length: int, next_header: int) -> bytes:
    """The 40-octet IPv6 pseudo-header (RFC 8200 §8.1)."""
    return packed_address(src) + packed_address(dst) + _PSEUDO_TAIL.pack(length, next_header)


def pseudo_header_addresses(
    src: Address,
    dst: Address,
    *,
    home_address: Address | None = None,
    rh2_home_address: Address | None = None,
) -> tuple[bytes, bytes]:
    """(source, destination) for the pseudo-header of a Mobile IPv6 packet.

    ``home_address``: the Home Address option's address, if the packet has one.
    ``rh2_home_address``: the type 2 routing header's address, if present with
    Segments Left 1 (i.e. as sent on the wire, before the MN processes it).
    """
    s = packed_address(home_address if home_address is not None else src)
    d = packed_address(rh2_home_address if rh2_home_address is not None else dst)
    return s, d


def upper_layer_checksum(src: Address, dst: Address, next_header: int, payload: bytes) -> int:
    """Checksum over pseudo-header + ``payload`` (whose checksum field must be zero)."""
    return ~_ones_sum(pseudo_header(src, dst, len(payload), next_header) + payload) & 0xFFFF


def verify_upper_layer_checksum(
    src: Address, dst: Address, next_header: int, payload: bytes
) -> bool:
    """True when ``payload`` (checksum field as received) verifies."""
    return _ones_sum(pseudo_header(src, dst, len(payload), next_header) + payload) == 0xFFFF


def set_checksum(payload: bytes, offset: int, value: int) -> bytes:
    """``payload`` with the 16-bit field at ``offset`` replaced by ``value``."""
    return payload[:offset] + value.to_bytes(2, "big") + payload[offset + 2 :]


def mh_checksum(mh: bytes, src: Address, dst: Address) -> int:
    """Checksum of a Mobility Header, whatever its Checksum field currently holds.

    ``src``/``dst`` are the pseudo-header addresses (see
    :func:`pseudo_header_addresses`).
    """
    if mh[4:6] != b"\x00\x00":
        mh = mh[:4] + b"\x00\x00" + mh[6:]
    return upper_layer_checksum(src, dst, NEXT_HEADER_MH, mh)


def verify_mh_checksum(mh: bytes, src: Address, dst: Address) -> bool:
    """True when the Mobility Header's Checksum field verifies (§9.2, first check)."""
    return verify_upper_layer_checksum(src, dst, NEXT_HEADER_MH, mh)
