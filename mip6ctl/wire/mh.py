"""Mobility Header messages (RFC 6275 §6.1, RFC 3963 §4): bytes <-> frozen dataclasses.

``decode_mh`` applies the generic checks of §9.2 in the RFC's order (after the
checksum, which needs the addresses and lives in :mod:`.checksum`/:mod:`.packet`):

1. enough octets for the fixed header and for what Header Len announces
   (else :class:`~.errors.Truncated`, discard);
2. MH Type known (else :class:`~.errors.UnknownMHType`, Binding Error status 2);
3. Payload Proto = 59 (else :class:`~.errors.BadPayloadProto`, Parameter
   Problem pointing at octet 0);
4. Header Len ≥ the type's minimum (else :class:`~.errors.HeaderLenTooShort`,
   Parameter Problem pointing at octet 1);
5. Header Len matches the octets received (else :class:`~.errors.LengthMismatch`);
6. the message's options (see :mod:`.mobopts`).

``encode_mh`` writes Payload Proto 59, computes Header Len, pads the options and,
given the pseudo-header addresses, fills the checksum.

Field conventions: sequence numbers and nonce indices are ``int``; cookies and
keygen tokens are 8-octet ``bytes``; lifetimes stay in the wire unit (4 s, see
:func:`lifetime_seconds` / :func:`lifetime_units`); ``flags`` is the raw flag
field as an ``int`` (use :class:`BUFlag` / :class:`BAFlag` members to build
and test it; unassigned bits are dropped on decode since they are reserved).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, TypeVar

from .checksum import Address, mh_checksum, pseudo_header_addresses
from .errors import (
    BadPayloadProto,
    HeaderLenTooShort,
    LengthMismatch,
    Truncated,
    UnknownMHType,
)
from .mobopts import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    MobilityOption,
    NonceIndices,
    decode_options,
    encode_options,
)

__all__ = [
    "MAX_LIFETIME_UNITS",
    "MH_MIN_HEADER_LEN",
    "PAYLOAD_PROTO_NONE",
    "BAFlag",
    "BAStatus",
    "BEStatus",
    "BUFlag",
    "BindingAcknowledgement",
    "BindingError",
    "BindingRefreshRequest",
    "BindingUpdate",
    "CareofTest",
    "CareofTestInit",
    "HomeTest",
    "HomeTestInit",
    "MHType",
    "MobilityMessage",
    "decode_mh",
    "encode_mh",
    "lifetime_seconds",
    "lifetime_units",
]

PAYLOAD_PROTO_NONE = 59
UNSPECIFIED = IPv6Address(0)
"""``::``, the Binding Error home address when the packet had no Home Address option."""
MAX_LIFETIME_UNITS = 0xFFFF
LIFETIME_UNIT_SECONDS = 4


class MHType(enum.IntEnum):
    """MH Type values (§6.1.2–§6.1.9)."""

    BRR = 0
    HOTI = 1
    COTI = 2
    HOT = 3
    COT = 4
    BU = 5
    BA = 6
    BE = 7


MH_MIN_HEADER_LEN: dict[int, int] = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 1, 6: 1, 7: 2}
"""Smallest Header Len (8-octet units past the first 8) each MH Type may carry."""


class BUFlag(enum.IntFlag):
    """Binding Update flags (§6.1.7; M from RFC 5380, R from RFC 3963)."""

    A = 0x8000
    """Acknowledge: the receiver must answer with a BA."""
    H = 0x4000
    """Home Registration: the receiver is asked to act as home agent."""
    L = 0x2000
    """Link-Local Address Compatibility: home address IID equals the link-local's."""
    K = 0x1000
    """Key Management Mobility Capability: the IKE SA survives movement."""
    M = 0x0800
    """MAP Registration (HMIPv6, RFC 5380)."""
    R = 0x0400
    """Mobile Router (NEMO, RFC 3963)."""


BU_FLAG_MASK = 0xFC00


class BAFlag(enum.IntFlag):
    """Binding Acknowledgement flags (§6.1.8; R from RFC 3963)."""

    K = 0x80
    R = 0x40


BA_FLAG_MASK = 0xC0


class BAStatus(enum.IntEnum):
    """Binding Acknowledgement status (§6.1.8, RFC 3963 §4.2); < 128 means accepted."""

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CAREOF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MOBILE_ROUTER_OPERATION_NOT_PERMITTED = 140
    INVALID_PREFIX = 141
    NOT_AUTHORIZED_FOR_PREFIX = 142
    FORWARDING_SETUP_FAILED = 143


class BEStatus(enum.IntEnum):
    """Binding Error status (§6.1.9)."""

    UNKNOWN_BINDING_FOR_HOME_ADDRESS_OPTION = 1
    UNRECOGNIZED_MH_TYPE = 2


def lifetime_seconds(units: int) -> int:
    """Seconds in a lifetime field (4-second units)."""
    return units * LIFETIME_UNIT_SECONDS


def lifetime_units(seconds: float) -> int:
    """Lifetime field for ``seconds``: rounded down (never grant more), capped at 0xFFFF."""
    if seconds <= 0:
        return 0
    return min(int(seconds) // LIFETIME_UNIT_SECONDS, MAX_LIFETIME_UNITS)


OptionT = TypeVar("OptionT")

_PAD4 = b"\x01\x02\x00\x00"  # PadN filling octets 12..15 of a BU/BA without options
_BRR = struct.Struct("!BBBBHH")
_TI = struct.Struct("!BBBBHH8s")
_TEST = struct.Struct("!BBBBHH8s8s")
_BU = struct.Struct("!BBBBHHHH")
_BA = struct.Struct("!BBBBHBBHH")
_BE = struct.Struct("!BBBBHBB16s")
_BU_FIX = struct.Struct("!HHH")
_BA_FIX = struct.Struct("!BBHH")
_TEST_FIX = struct.Struct("!H8s8s")


def _header_len(total: int) -> int:
    if total > 2048:
        raise ValueError(f"Mobility Header of {total} octets exceeds Header Len 255")
    return (total >> 3) - 1


def _check8(name: str, value: bytes) -> None:
    if len(value) != 8:
        raise ValueError(f"{name} must be 8 octets, got {len(value)}")


@dataclass(frozen=True, slots=True)
class MobilityMessage:
    """Base of the eight MH messages; ``options`` is set by each subclass."""

    MH_TYPE: ClassVar[int] = -1
    OPTIONS_OFFSET: ClassVar[int] = 8

    def option(self, cls: type[OptionT]) -> OptionT | None:
        """The first option of class ``cls``, or None."""
        for opt in self.options:  # type: ignore[attr-defined]
            if type(opt) is cls:
                return opt  # type: ignore[return-value]
        return None

    def encode(self) -> bytes:
        """Wire form with checksum 0 (see :func:`encode_mh` for the checksum)."""
        raise NotImplementedError

    @property
    def authorization_data(self) -> BindingAuthorizationData | None:
        """The Binding Authorization Data option, if present (always last; BU and BA)."""
        options = self.options  # type: ignore[attr-defined]
        if options and type(options[-1]) is BindingAuthorizationData:
            return options[-1]  # type: ignore[no-any-return]
        return None


@dataclass(frozen=True, slots=True)
class BindingRefreshRequest(MobilityMessage):
    """Correspondent/HA asks the MN to refresh its binding (§6.1.2)."""

    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 0
    OPTIONS_OFFSET: ClassVar[int] = 8

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        opts = encode_options(self.options, 8) if self.options else b""
        return _BRR.pack(59, _header_len(8 + len(opts)), 0, 0, 0, 0) + opts


@dataclass(frozen=True, slots=True)
class HomeTestInit(MobilityMessage):
    """Starts the home-address half of return routability (§6.1.3)."""

    home_init_cookie: bytes
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 1
    OPTIONS_OFFSET: ClassVar[int] = 16

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        _check8("home init cookie", self.home_init_cookie)
        opts = encode_options(self.options, 16) if self.options else b""
        return _TI.pack(59, _header_len(16 + len(opts)), 1, 0, 0, 0, self.home_init_cookie) + opts


@dataclass(frozen=True, slots=True)
class CareofTestInit(MobilityMessage):
    """Starts the care-of-address half of return routability (§6.1.4)."""

    careof_init_cookie: bytes
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 2
    OPTIONS_OFFSET: ClassVar[int] = 16

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        _check8("care-of init cookie", self.careof_init_cookie)
        opts = encode_options(self.options, 16) if self.options else b""
        return (
            _TI.pack(59, _header_len(16 + len(opts)), 2, 0, 0, 0, self.careof_init_cookie) + opts
        )


@dataclass(frozen=True, slots=True)
class HomeTest(MobilityMessage):
    """CN's answer to HoTI carrying the home keygen token (§6.1.5)."""

    home_nonce_index: int
    home_init_cookie: bytes
    home_keygen_token: bytes
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 3
    OPTIONS_OFFSET: ClassVar[int] = 24

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        _check8("home init cookie", self.home_init_cookie)
        _check8("home keygen token", self.home_keygen_token)
        opts = encode_options(self.options, 24) if self.options else b""
        return (
            _TEST.pack(
                59, _header_len(24 + len(opts)), 3, 0, 0,
                self.home_nonce_index, self.home_init_cookie, self.home_keygen_token,
            )
            + opts
        )


@dataclass(frozen=True, slots=True)
class CareofTest(MobilityMessage):
    """CN's answer to CoTI carrying the care-of keygen token (§6.1.6)."""

    careof_nonce_index: int
    careof_init_cookie: bytes
    careof_keygen_token: bytes
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 4
    OPTIONS_OFFSET: ClassVar[int] = 24

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        _check8("care-of init cookie", self.careof_init_cookie)
        _check8("care-of keygen token", self.careof_keygen_token)
        opts = encode_options(self.options, 24) if self.options else b""
        return (
            _TEST.pack(
                59, _header_len(24 + len(opts)), 4, 0, 0,
                self.careof_nonce_index, self.careof_init_cookie, self.careof_keygen_token,
            )
            + opts
        )


@dataclass(frozen=True, slots=True)
class BindingUpdate(MobilityMessage):
    """MN tells a HA or CN its current care-of address (§6.1.7).

    ``lifetime`` is in 4-second units (0 = delete the binding).
    """

    sequence: int
    flags: int = 0
    lifetime: int = 0
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 5
    OPTIONS_OFFSET: ClassVar[int] = 12

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        if self.options:
            opts = encode_options(self.options, 12)
            hl = _header_len(12 + len(opts))
        else:
            opts, hl = _PAD4, 1
        return _BU.pack(59, hl, 5, 0, 0, self.sequence, self.flags, self.lifetime) + opts

    @property
    def lifetime_seconds(self) -> int:
        """Requested lifetime in seconds."""
        return self.lifetime * 4

    @property
    def ack(self) -> bool:
        """A flag: a Binding Acknowledgement is requested."""
        return bool(self.flags & 0x8000)

    @property
    def home_registration(self) -> bool:
        """H flag: this is a home registration."""
        return bool(self.flags & 0x4000)

    @property
    def link_local_compatibility(self) -> bool:
        """L flag."""
        return bool(self.flags & 0x2000)

    @property
    def key_management_mobility(self) -> bool:
        """K flag."""
        return bool(self.flags & 0x1000)

    @property
    def map_registration(self) -> bool:
        """M flag (RFC 5380)."""
        return bool(self.flags & 0x0800)

    @property
    def mobile_router(self) -> bool:
        """R flag (RFC 3963)."""
        return bool(self.flags & 0x0400)

    @property
    def nonce_indices(self) -> NonceIndices | None:
        """The Nonce Indices option, if present."""
        return self.option(NonceIndices)

    @property
    def alternate_careof_address(self) -> IPv6Address | None:
        """The Alternate Care-of Address option's address, if present."""
        opt = self.option(AlternateCareofAddress)
        return None if opt is None else opt.address

    @property
    def mobile_network_prefixes(self) -> tuple[MobileNetworkPrefix, ...]:
        """All Mobile Network Prefix options (RFC 3963)."""
        return tuple(o for o in self.options if type(o) is MobileNetworkPrefix)


@dataclass(frozen=True, slots=True)
class BindingAcknowledgement(MobilityMessage):
    """Answer to a Binding Update (§6.1.8); ``lifetime`` in 4-second units."""

    status: int
    sequence: int
    lifetime: int = 0
    flags: int = 0
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 6
    OPTIONS_OFFSET: ClassVar[int] = 12

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        if self.options:
            opts = encode_options(self.options, 12)
            hl = _header_len(12 + len(opts))
        else:
            opts, hl = _PAD4, 1
        return (
            _BA.pack(59, hl, 6, 0, 0, self.status, self.flags, self.sequence, self.lifetime)
            + opts
        )

    @property
    def accepted(self) -> bool:
        """Status < 128."""
        return self.status < 128

    @property
    def lifetime_seconds(self) -> int:
        """Granted lifetime in seconds."""
        return self.lifetime * 4

    @property
    def key_management_mobility(self) -> bool:
        """K flag."""
        return bool(self.flags & 0x80)

    @property
    def mobile_router(self) -> bool:
        """R flag (RFC 3963)."""
        return bool(self.flags & 0x40)

    @property
    def refresh_advice(self) -> BindingRefreshAdvice | None:
        """The Binding Refresh Advice option, if present."""
        return self.option(BindingRefreshAdvice)


@dataclass(frozen=True, slots=True)
class BindingError(MobilityMessage):
    """Signals a mobility problem back to the sender (§6.1.9)."""

    status: int
    home_address: IPv6Address = UNSPECIFIED
    options: tuple[MobilityOption, ...] = ()

    MH_TYPE: ClassVar[int] = 7
    OPTIONS_OFFSET: ClassVar[int] = 24

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        opts = encode_options(self.options, 24) if self.options else b""
        return (
            _BE.pack(
                59, _header_len(24 + len(opts)), 7, 0, 0, self.status, 0,
                self.home_address.packed,
            )
            + opts
        )


# --- decoding -------------------------------------------------------------


def _dec_brr(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    return BindingRefreshRequest(decode_options(data, 8, n, strict=strict, base=base))


def _dec_hoti(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    return HomeTestInit(bytes(data[8:16]), decode_options(data, 16, n, strict=strict, base=base))


def _dec_coti(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    return CareofTestInit(
        bytes(data[8:16]), decode_options(data, 16, n, strict=strict, base=base)
    )


def _dec_hot(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    idx, cookie, token = _TEST_FIX.unpack_from(data, 6)
    return HomeTest(idx, cookie, token, decode_options(data, 24, n, strict=strict, base=base))


def _dec_cot(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    idx, cookie, token = _TEST_FIX.unpack_from(data, 6)
    return CareofTest(idx, cookie, token, decode_options(data, 24, n, strict=strict, base=base))


def _dec_bu(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    seq, flags, life = _BU_FIX.unpack_from(data, 6)
    return BindingUpdate(
        seq, flags & BU_FLAG_MASK, life, decode_options(data, 12, n, strict=strict, base=base)
    )


def _dec_ba(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    status, flags, seq, life = _BA_FIX.unpack_from(data, 6)
    return BindingAcknowledgement(
        status, seq, life, flags & BA_FLAG_MASK,
        decode_options(data, 12, n, strict=strict, base=base),
    )


def _dec_be(data: bytes, n: int, strict: bool, base: int) -> MobilityMessage:
    return BindingError(
        data[6], IPv6Address(bytes(data[8:24])),
        decode_options(data, 24, n, strict=strict, base=base),
    )


_Decoder = Callable[[bytes, int, bool, int], MobilityMessage]
_DECODERS: dict[int, tuple[int, _Decoder]] = {
    0: (0, _dec_brr),
    1: (1, _dec_hoti),
    2: (1, _dec_coti),
    3: (2, _dec_hot),
    4: (2, _dec_cot),
    5: (1, _dec_bu),
    6: (1, _dec_ba),
    7: (2, _dec_be),
}


def decode_mh(data: bytes, *, strict: bool = True, base: int = 0) -> MobilityMessage:
    """Decode one Mobility Header occupying all of ``data`` (checksum not verified).

    ``strict`` rejects misaligned known options. ``base`` is the offset of the
    MH in the packet, added to every error's ``pointer`` (its ``mh_offset`` stays
    relative to the MH). Raises only :class:`~.errors.WireError` subclasses.
    """
    n = len(data)
    if n < 8:
        raise Truncated(f"Mobility Header of {n} octets", mh_offset=0, base=base)
    hl = data[1]
    if (hl + 1) << 3 > n:
        raise Truncated(f"Header Len {hl} but only {n} octets", mh_offset=1, base=base)
    mh_type = data[2]
    entry = _DECODERS.get(mh_type)
    if entry is None:
        raise UnknownMHType(f"unrecognized MH Type {mh_type}", mh_type=mh_type, base=base)
    if data[0] != 59:
        raise BadPayloadProto(f"Payload Proto {data[0]} != 59", mh_offset=0, base=base)
    min_hl, decoder = entry
    if hl < min_hl:
        raise HeaderLenTooShort(
            f"Header Len {hl} below {min_hl} for MH Type {mh_type}", mh_offset=1, base=base
        )
    if (hl + 1) << 3 != n:
        raise LengthMismatch(f"Header Len {hl} but {n} octets", mh_offset=1, base=base)
    return decoder(data, n, strict, base)


def encode_mh(
    msg: MobilityMessage,
    *,
    src: Address | None = None,
    dst: Address | None = None,
    home_address: Address | None = None,
    rh2_home_address: Address | None = None,
) -> bytes:
    """Wire form of ``msg``; with ``src`` and ``dst`` the checksum is filled in.

    ``home_address`` (HAO) and ``rh2_home_address`` (type 2 RH) select the
    pseudo-header addresses as §6.1 requires. Raises ``ValueError`` when a
    field does not fit its wire size.
    """
    try:
        raw = msg.encode()
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__}: {exc}") from None
    if src is None or dst is None:
        return raw
    s, d = pseudo_header_addresses(
        src, dst, home_address=home_address, rh2_home_address=rh2_home_address
    )
    c = mh_checksum(raw, s, d)
    return raw[:4] + c.to_bytes(2, "big") + raw[6:]
