"""Mobility options (RFC 6275 §6.2, RFC 3963 §4.3): TLVs after the fixed MH fields.

Encoding places each option at its alignment (``xn+y`` counted from the
first octet of the Mobility Header) with Pad1/PadN in front as needed and pads
the header to a multiple of 8 octets. Decoding is strict: known options must
have their exact length (and, with ``strict=True``, alignment); Binding
Authorization Data must be the last option. Pad1/PadN are consumed and not
reported. Options of unknown type are skipped for processing but returned as
:class:`UnknownOption` (type + raw body) so they can be inspected or logged.

Addresses are ``ipaddress.IPv6Address``: hashable, printable, validated, and
what the engine keys its tables with; ``.packed`` is cheap when octets are
needed. Interval fields keep their wire unit (4 s) with ``*_seconds`` helpers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar

from .addr import address
from .errors import AuthDataNotLast, BadOptionLength, MisalignedOption, Truncated

__all__ = [
    "AlternateCareofAddress",
    "BindingAuthorizationData",
    "BindingRefreshAdvice",
    "MobileNetworkPrefix",
    "MobilityOption",
    "MobilityOptionType",
    "NonceIndices",
    "UnknownOption",
    "decode_options",
    "encode_options",
    "padding",
]


class MobilityOptionType:
    """Option type numbers (IANA "Mobility Options")."""

    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2
    ALTERNATE_COA = 3
    NONCE_INDICES = 4
    BINDING_AUTHORIZATION_DATA = 5
    MOBILE_NETWORK_PREFIX = 6


_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_BB = struct.Struct("!BB")

AUTHENTICATOR_LEN = 12
"""First96 of HMAC_SHA1 (§5.2.6)."""


@dataclass(frozen=True, slots=True)
class BindingRefreshAdvice:
    """Refresh the binding after this interval (§6.2.4), in 4-second units."""

    refresh_interval: int

    OPTION_TYPE: ClassVar[int] = 2
    ALIGN: ClassVar[tuple[int, int]] = (2, 0)

    @property
    def refresh_interval_seconds(self) -> int:
        """The interval in seconds."""
        return self.refresh_interval * 4

    def body(self) -> bytes:
        """Option data (without type and length octets)."""
        return _H.pack(self.refresh_interval)


@dataclass(frozen=True, slots=True)
class AlternateCareofAddress:
    """Care-of address to bind instead of the packet's source (§6.2.5)."""

    address: IPv6Address

    OPTION_TYPE: ClassVar[int] = 3
    ALIGN: ClassVar[tuple[int, int]] = (8, 6)

    def body(self) -> bytes:
        """Option data (without type and length octets)."""
        return self.address.packed


@dataclass(frozen=True, slots=True)
class NonceIndices:
    """Which home / care-of nonces the keygen tokens came from (§6.2.6)."""

    home_nonce_index: int
    careof_nonce_index: int

    OPTION_TYPE: ClassVar[int] = 4
    ALIGN: ClassVar[tuple[int, int]] = (2, 0)

    def body(self) -> bytes:
        """Option data (without type and length octets)."""
        return _HH.pack(self.home_nonce_index, self.careof_nonce_index)


@dataclass(frozen=True, slots=True)
class BindingAuthorizationData:
    """The 96-bit RR authenticator (§6.2.7); MUST be the last option."""

    authenticator: bytes = b"\x00" * AUTHENTICATOR_LEN

    OPTION_TYPE: ClassVar[int] = 5
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)

    def body(self) -> bytes:
        """Option data (without type and length octets)."""
        if len(self.authenticator) != AUTHENTICATOR_LEN:
            raise ValueError("authenticator must be 12 octets")
        return self.authenticator


@dataclass(frozen=True, slots=True)
class MobileNetworkPrefix:
    """A prefix served by a mobile router (RFC 3963 §4.3)."""

    prefix_length: int
    prefix: IPv6Address

    OPTION_TYPE: ClassVar[int] = 6
    ALIGN: ClassVar[tuple[int, int]] = (8, 4)

    def body(self) -> bytes:
        """Option data (without type and length octets)."""
        if not 0 <= self.prefix_length <= 128:
            raise ValueError("prefix length must be 0..128")
        return bytes((0, self.prefix_length)) + self.prefix.packed


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """An option this implementation does not process, kept for inspection."""

    option_type: int
    data: bytes = b""

    ALIGN: ClassVar[tuple[int, int]] = (1, 0)

    @property
    def OPTION_TYPE(self) -> int:
        """The type received."""
        return self.option_type

    def body(self) -> bytes:
        """Option data (without type and length octets)."""
        if self.option_type <= MobilityOptionType.MOBILE_NETWORK_PREFIX:
            raise ValueError(f"option type {self.option_type} has its own class")
        return self.data


MobilityOption = (
    BindingRefreshAdvice
    | AlternateCareofAddress
    | NonceIndices
    | BindingAuthorizationData
    | MobileNetworkPrefix
    | UnknownOption
)

_PADS = tuple(
    b"" if n == 0 else b"\x00" if n == 1 else bytes((1, n - 2)) + b"\x00" * (n - 2)
    for n in range(8)
)


def padding(n: int) -> bytes:
    """``n`` octets of padding: nothing, Pad1, or a PadN option."""
    if n < 8:
        return _PADS[n]
    return bytes((1, n - 2)) + b"\x00" * (n - 2)


def encode_options(options: tuple[MobilityOption, ...] | list[MobilityOption], pos: int) -> bytes:
    """Options starting at MH offset ``pos``, aligned and padded to a multiple of 8.

    Raises ``ValueError`` when Binding Authorization Data is not last or a field
    does not fit its wire size.
    """
    out: list[bytes] = []
    last = len(options) - 1
    for i, opt in enumerate(options):
        x, y = opt.ALIGN
        if x > 1:
            pad = (y - pos) % x
            if pad:
                out.append(_PADS[pad])
                pos += pad
        body = opt.body()
        otype = opt.OPTION_TYPE
        if otype == 5 and i != last:
            raise ValueError("Binding Authorization Data must be the last option")
        if len(body) > 255 or not 0 <= otype <= 255:
            raise ValueError(f"option type {otype} / length {len(body)} does not fit")
        out.append(_BB.pack(otype, len(body)))
        out.append(body)
        pos += 2 + len(body)
    tail = -pos % 8
    if tail:
        out.append(_PADS[tail])
    return b"".join(out)


# (length, align x, align y) for each known option type
_KNOWN: dict[int, tuple[int, int, int]] = {
    2: (2, 2, 0),
    3: (16, 8, 6),
    4: (4, 2, 0),
    5: (12, 8, 2),
    6: (18, 8, 4),
}


def decode_options(
    data: bytes, pos: int, end: int, *, strict: bool = True, base: int = 0
) -> tuple[MobilityOption, ...]:
    """Decode the options in ``data[pos:end]`` (offsets are MH offsets).

    ``strict`` also rejects known options at the wrong alignment. ``base`` is
    added to error pointers (header chain in front of the MH).
    """
    if pos == end:
        return ()
    opts: list[MobilityOption] = []
    seen_auth = False
    while pos < end:
        otype = data[pos]
        if otype == 0:
            if seen_auth:
                raise AuthDataNotLast("option after Binding Authorization Data", mh_offset=pos,
                                      base=base)
            pos += 1
            continue
        if pos + 2 > end:
            raise Truncated("option type without length", mh_offset=pos, base=base)
        olen = data[pos + 1]
        start = pos + 2
        nxt = start + olen
        if nxt > end:
            raise BadOptionLength(
                f"option {otype} length {olen} runs past the header", mh_offset=pos + 1, base=base
            )
        if seen_auth:
            raise AuthDataNotLast("option after Binding Authorization Data", mh_offset=pos,
                                  base=base)
        if otype == 1:
            pos = nxt
            continue
        known = _KNOWN.get(otype)
        if known is None:
            opts.append(UnknownOption(otype, bytes(data[start:nxt])))
            pos = nxt
            continue
        want, ax, ay = known
        if olen != want:
            raise BadOptionLength(
                f"option {otype} length {olen}, expected {want}", mh_offset=pos + 1, base=base
            )
        if strict and pos % ax != ay:
            raise MisalignedOption(
                f"option {otype} at offset {pos}, needs {ax}n+{ay}", mh_offset=pos, base=base
            )
        if otype == 4:
            h, c = _HH.unpack_from(data, start)
            opts.append(NonceIndices(h, c))
        elif otype == 5:
            opts.append(BindingAuthorizationData(bytes(data[start:nxt])))
            seen_auth = True
        elif otype == 2:
            opts.append(BindingRefreshAdvice(_H.unpack_from(data, start)[0]))
        elif otype == 3:
            opts.append(AlternateCareofAddress(address(bytes(data[start:nxt]))))
        else:
            # a prefix length above 128 is well-formed on the wire but no prefix: the
            # home agent answers 141 Invalid Prefix (RFC 3963), not a decode error
            plen = data[start + 1]
            opts.append(MobileNetworkPrefix(plen, IPv6Address(bytes(data[start + 2 : nxt]))))
        pos = nxt
    return tuple(opts)
