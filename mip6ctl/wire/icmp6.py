"""ICMPv6 messages Mobile IPv6 uses: Neighbor Discovery with the §7 extensions, DHAAD, MPS/MPA.

- Router Solicitation (133) / Router Advertisement (134) with the H (home
  agent) flag, Prefix Information with the R (router address) flag,
  Advertisement Interval (option 7) and Home Agent Information (option 8);
- Neighbor Solicitation (135) / Neighbor Advertisement (136), used by a home
  agent defending the home addresses of mobile nodes away from home;
- Home Agent Address Discovery Request (144) / Reply (145) (§6.5, §6.6);
- Mobile Prefix Solicitation (146) / Advertisement (147) (§6.7, §6.8).

``decode_icmp6`` checks what can be checked without the IP header (code 0,
minimum lengths, ND option lengths non-zero and in bounds, RFC 4861 §4.6) and
raises :class:`~.errors.MalformedICMPv6` (discard) otherwise. Hop Limit 255
and the checksum are checked in :mod:`.packet`. Unknown message types decode
to :class:`UnknownICMPv6`; unknown ND options to :class:`UnknownNDOption`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar

from .checksum import NEXT_HEADER_ICMPV6, Address, upper_layer_checksum
from .errors import MalformedICMPv6

__all__ = [
    "AdvertisementInterval",
    "HomeAgentAddressDiscoveryReply",
    "HomeAgentAddressDiscoveryRequest",
    "HomeAgentInformation",
    "ICMPv6Message",
    "ICMPv6Type",
    "MTUOption",
    "MobilePrefixAdvertisement",
    "MobilePrefixSolicitation",
    "NDOption",
    "NeighborAdvertisement",
    "NeighborSolicitation",
    "PrefixInformation",
    "RouterAdvertisement",
    "RouterSolicitation",
    "SourceLinkLayerAddress",
    "TargetLinkLayerAddress",
    "UnknownICMPv6",
    "UnknownNDOption",
    "decode_icmp6",
    "decode_nd_options",
    "encode_icmp6",
    "encode_nd_options",
    "home_agents_anycast",
]


class ICMPv6Type:
    """ICMPv6 type numbers used here."""

    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136
    DHAAD_REQUEST = 144
    DHAAD_REPLY = 145
    MOBILE_PREFIX_SOLICITATION = 146
    MOBILE_PREFIX_ADVERTISEMENT = 147


ND_TYPES = frozenset((133, 134, 135, 136, 137))
"""Types that must arrive with Hop Limit 255 (RFC 4861)."""


# --- Neighbor Discovery options ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceLinkLayerAddress:
    """ND option 1: the sender's link-layer address (6 octets on Ethernet)."""

    address: bytes
    OPTION_TYPE: ClassVar[int] = 1

    def body(self) -> bytes:
        """Option body, padded so the option is a multiple of 8 octets."""
        return self.address + b"\x00" * (-(len(self.address) + 2) % 8)


@dataclass(frozen=True, slots=True)
class TargetLinkLayerAddress:
    """ND option 2: the target's link-layer address."""

    address: bytes
    OPTION_TYPE: ClassVar[int] = 2

    def body(self) -> bytes:
        """Option body, padded so the option is a multiple of 8 octets."""
        return self.address + b"\x00" * (-(len(self.address) + 2) % 8)


_PI = struct.Struct("!BBIII16s")


@dataclass(frozen=True, slots=True)
class PrefixInformation:
    """ND option 3; with ``R`` the prefix field holds the router's full address (§7.2)."""

    prefix_length: int
    flags: int
    valid_lifetime: int
    preferred_lifetime: int
    prefix: IPv6Address

    OPTION_TYPE: ClassVar[int] = 3
    L: ClassVar[int] = 0x80
    A: ClassVar[int] = 0x40
    R: ClassVar[int] = 0x20

    @property
    def on_link(self) -> bool:
        """L flag."""
        return bool(self.flags & 0x80)

    @property
    def autonomous(self) -> bool:
        """A flag."""
        return bool(self.flags & 0x40)

    @property
    def router_address(self) -> bool:
        """R flag: ``prefix`` is the router's (home agent's) global address."""
        return bool(self.flags & 0x20)

    def body(self) -> bytes:
        """Option body (30 octets)."""
        return _PI.pack(
            self.prefix_length, self.flags, self.valid_lifetime, self.preferred_lifetime, 0,
            self.prefix.packed,
        )


@dataclass(frozen=True, slots=True)
class MTUOption:
    """ND option 5: link MTU."""

    mtu: int
    OPTION_TYPE: ClassVar[int] = 5

    def body(self) -> bytes:
        """Option body (6 octets)."""
        return struct.pack("!HI", 0, self.mtu)


@dataclass(frozen=True, slots=True)
class AdvertisementInterval:
    """ND option 7 (§7.3): the router's maximum RA interval in milliseconds."""

    interval_ms: int
    OPTION_TYPE: ClassVar[int] = 7

    def body(self) -> bytes:
        """Option body (6 octets)."""
        return struct.pack("!HI", 0, self.interval_ms)


@dataclass(frozen=True, slots=True)
class HomeAgentInformation:
    """ND option 8 (§7.4): preference (signed 16-bit) and lifetime (seconds)."""

    preference: int
    lifetime: int
    OPTION_TYPE: ClassVar[int] = 8

    def body(self) -> bytes:
        """Option body (6 octets)."""
        return struct.pack("!HhH", 0, self.preference, self.lifetime)


@dataclass(frozen=True, slots=True)
class UnknownNDOption:
    """An ND option not interpreted here (RFC 4861: ignore, keep for inspection)."""

    option_type: int
    data: bytes

    @property
    def OPTION_TYPE(self) -> int:
        """The type received."""
        return self.option_type

    def body(self) -> bytes:
        """Option body as received (must make the option a multiple of 8 octets)."""
        return self.data


NDOption = (
    SourceLinkLayerAddress
    | TargetLinkLayerAddress
    | PrefixInformation
    | MTUOption
    | AdvertisementInterval
    | HomeAgentInformation
    | UnknownNDOption
)


def encode_nd_options(options: tuple[NDOption, ...] | list[NDOption]) -> bytes:
    """TLVs with the length in 8-octet units."""
    out = []
    for opt in options:
        body = opt.body()
        total = len(body) + 2
        if total % 8 or total > 255 * 8:
            raise ValueError(f"ND option {opt.OPTION_TYPE} of {total} octets")
        out.append(bytes((opt.OPTION_TYPE, total >> 3)))
        out.append(body)
    return b"".join(out)


_HI = struct.Struct("!HI")
_HHH = struct.Struct("!HhH")


def decode_nd_options(data: bytes, pos: int, *, base: int = 0) -> tuple[NDOption, ...]:
    """ND options from ``data[pos:]`` (RFC 4861 §4.6: zero length = malformed)."""
    opts: list[NDOption] = []
    end = len(data)
    while pos < end:
        if pos + 2 > end:
            raise MalformedICMPv6("ND option truncated", mh_offset=pos, base=base)
        otype = data[pos]
        olen = data[pos + 1] << 3
        if olen == 0:
            raise MalformedICMPv6(f"ND option {otype} with length 0", mh_offset=pos + 1,
                                  base=base)
        nxt = pos + olen
        if nxt > end:
            raise MalformedICMPv6(f"ND option {otype} runs past the message",
                                  mh_offset=pos + 1, base=base)
        body = bytes(data[pos + 2 : nxt])
        opt: NDOption
        if otype == 1:
            opt = SourceLinkLayerAddress(body)
        elif otype == 2:
            opt = TargetLinkLayerAddress(body)
        elif otype in (3, 5, 7, 8):
            want = 32 if otype == 3 else 8
            if olen != want:
                raise MalformedICMPv6(f"ND option {otype} of {olen} octets, expected {want}",
                                      mh_offset=pos + 1, base=base)
            if otype == 3:
                plen, flags, valid, pref, _, prefix = _PI.unpack(body)
                if plen > 128:
                    raise MalformedICMPv6(f"prefix length {plen}", mh_offset=pos + 2, base=base)
                opt = PrefixInformation(plen, flags & 0xE0, valid, pref, IPv6Address(prefix))
            elif otype == 5:
                opt = MTUOption(_HI.unpack(body)[1])
            elif otype == 7:
                opt = AdvertisementInterval(_HI.unpack(body)[1])
            else:
                _, preference, lifetime = _HHH.unpack(body)
                opt = HomeAgentInformation(preference, lifetime)
        else:
            opt = UnknownNDOption(otype, body)
        opts.append(opt)
        pos = nxt
    return tuple(opts)


# --- messages ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    """RS (133): a mobile node asking for an RA after moving."""

    options: tuple[NDOption, ...] = ()
    ICMP_TYPE: ClassVar[int] = 133

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return bytes((133, 0, 0, 0, 0, 0, 0, 0)) + encode_nd_options(self.options)


_RA = struct.Struct("!BBHBBHII")


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """RA (134); ``flags`` is the flags octet (M 0x80, O 0x40, H 0x20, Prf 0x18)."""

    cur_hop_limit: int = 0
    flags: int = 0
    router_lifetime: int = 0
    reachable_time: int = 0
    retrans_timer: int = 0
    options: tuple[NDOption, ...] = ()

    ICMP_TYPE: ClassVar[int] = 134
    M: ClassVar[int] = 0x80
    O: ClassVar[int] = 0x40  # noqa: E741 - RFC 4861 flag name
    H: ClassVar[int] = 0x20

    @property
    def home_agent(self) -> bool:
        """H flag: the router is a home agent on this link (§7.1)."""
        return bool(self.flags & 0x20)

    @property
    def prefixes(self) -> tuple[PrefixInformation, ...]:
        """Prefix Information options."""
        return tuple(o for o in self.options if type(o) is PrefixInformation)

    @property
    def home_agent_information(self) -> HomeAgentInformation | None:
        """The Home Agent Information option, if any."""
        for o in self.options:
            if type(o) is HomeAgentInformation:
                return o
        return None

    @property
    def advertisement_interval(self) -> AdvertisementInterval | None:
        """The Advertisement Interval option, if any."""
        for o in self.options:
            if type(o) is AdvertisementInterval:
                return o
        return None

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return _RA.pack(
            134, 0, 0, self.cur_hop_limit, self.flags, self.router_lifetime,
            self.reachable_time, self.retrans_timer,
        ) + encode_nd_options(self.options)


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """NS (135)."""

    target: IPv6Address
    options: tuple[NDOption, ...] = ()
    ICMP_TYPE: ClassVar[int] = 135

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return (
            bytes((135, 0, 0, 0, 0, 0, 0, 0)) + self.target.packed
            + encode_nd_options(self.options)
        )


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """NA (136); ``flags`` is the first octet (R 0x80, S 0x40, O 0x20)."""

    target: IPv6Address
    flags: int = 0
    options: tuple[NDOption, ...] = ()

    ICMP_TYPE: ClassVar[int] = 136
    R: ClassVar[int] = 0x80
    S: ClassVar[int] = 0x40
    O: ClassVar[int] = 0x20  # noqa: E741 - RFC 4861 flag name

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return (
            bytes((136, 0, 0, 0, self.flags, 0, 0, 0)) + self.target.packed
            + encode_nd_options(self.options)
        )


_ID = struct.Struct("!BBHHH")


@dataclass(frozen=True, slots=True)
class HomeAgentAddressDiscoveryRequest:
    """DHAAD Request (144, §6.5); ``flags`` 0x8000 = R (mobile router, RFC 3963)."""

    identifier: int
    flags: int = 0
    ICMP_TYPE: ClassVar[int] = 144

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return _ID.pack(144, 0, 0, self.identifier, self.flags)


@dataclass(frozen=True, slots=True)
class HomeAgentAddressDiscoveryReply:
    """DHAAD Reply (145, §6.6): home agents in preference order."""

    identifier: int
    home_agent_addresses: tuple[IPv6Address, ...] = ()
    flags: int = 0
    ICMP_TYPE: ClassVar[int] = 145

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return _ID.pack(145, 0, 0, self.identifier, self.flags) + b"".join(
            a.packed for a in self.home_agent_addresses
        )


@dataclass(frozen=True, slots=True)
class MobilePrefixSolicitation:
    """Mobile Prefix Solicitation (146, §6.7)."""

    identifier: int
    ICMP_TYPE: ClassVar[int] = 146

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return _ID.pack(146, 0, 0, self.identifier, 0)


@dataclass(frozen=True, slots=True)
class MobilePrefixAdvertisement:
    """Mobile Prefix Advertisement (147, §6.8); ``flags`` M 0x8000, O 0x4000."""

    identifier: int
    flags: int = 0
    options: tuple[NDOption, ...] = ()
    ICMP_TYPE: ClassVar[int] = 147

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return _ID.pack(147, 0, 0, self.identifier, self.flags) + encode_nd_options(self.options)


@dataclass(frozen=True, slots=True)
class UnknownICMPv6:
    """Any other ICMPv6 message, body kept raw (everything after the checksum)."""

    icmp_type: int
    code: int
    body: bytes

    def encode(self) -> bytes:
        """Wire form with checksum 0."""
        return bytes((self.icmp_type, self.code, 0, 0)) + self.body


ICMPv6Message = (
    RouterSolicitation
    | RouterAdvertisement
    | NeighborSolicitation
    | NeighborAdvertisement
    | HomeAgentAddressDiscoveryRequest
    | HomeAgentAddressDiscoveryReply
    | MobilePrefixSolicitation
    | MobilePrefixAdvertisement
    | UnknownICMPv6
)

_MIN_LEN = {133: 8, 134: 16, 135: 24, 136: 24, 144: 8, 145: 8, 146: 8, 147: 8}


def decode_icmp6(data: bytes, *, base: int = 0) -> ICMPv6Message:
    """Decode one ICMPv6 message occupying all of ``data`` (checksum not verified)."""
    n = len(data)
    if n < 4:
        raise MalformedICMPv6(f"ICMPv6 message of {n} octets", mh_offset=0, base=base)
    t = data[0]
    minimum = _MIN_LEN.get(t)
    if minimum is None:
        return UnknownICMPv6(t, data[1], bytes(data[4:]))
    if data[1] != 0:
        raise MalformedICMPv6(f"ICMPv6 type {t} with code {data[1]}", mh_offset=1, base=base)
    if n < minimum:
        raise MalformedICMPv6(f"ICMPv6 type {t} of {n} octets < {minimum}", mh_offset=0,
                              base=base)
    if t == 134:
        _, _, _, hop, flags, life, reach, retrans = _RA.unpack_from(data)
        return RouterAdvertisement(
            hop, flags, life, reach, retrans, decode_nd_options(data, 16, base=base)
        )
    if t == 133:
        return RouterSolicitation(decode_nd_options(data, 8, base=base))
    if t == 135:
        return NeighborSolicitation(
            IPv6Address(bytes(data[8:24])), decode_nd_options(data, 24, base=base)
        )
    if t == 136:
        return NeighborAdvertisement(
            IPv6Address(bytes(data[8:24])), data[4] & 0xE0, decode_nd_options(data, 24, base=base)
        )
    _, _, _, ident, flags = _ID.unpack_from(data)
    if t == 144:
        return HomeAgentAddressDiscoveryRequest(ident, flags & 0x8000)
    if t == 145:
        if (n - 8) % 16:
            raise MalformedICMPv6("DHAAD Reply address list not a multiple of 16 octets",
                                  mh_offset=0, base=base)
        addrs = tuple(IPv6Address(bytes(data[i : i + 16])) for i in range(8, n, 16))
        return HomeAgentAddressDiscoveryReply(ident, addrs, flags & 0x8000)
    if t == 146:
        return MobilePrefixSolicitation(ident)
    return MobilePrefixAdvertisement(ident, flags & 0xC000, decode_nd_options(data, 8, base=base))


def encode_icmp6(
    msg: ICMPv6Message, *, src: Address | None = None, dst: Address | None = None
) -> bytes:
    """Wire form of ``msg``; with ``src`` and ``dst`` (pseudo-header) the checksum is set."""
    try:
        raw = msg.encode()
    except struct.error as exc:
        raise ValueError(f"{type(msg).__name__}: {exc}") from None
    if src is None or dst is None:
        return raw
    c = upper_layer_checksum(src, dst, NEXT_HEADER_ICMPV6, raw)
    return raw[:2] + c.to_bytes(2, "big") + raw[4:]


def home_agents_anycast(prefix: IPv6Address, prefix_length: int = 64) -> IPv6Address:
    """Mobile IPv6 Home-Agents anycast address of a prefix (RFC 2526, §6.5).

    For a /64 this is prefix::fdff:ffff:ffff:fffe (EUI-64 format, u bit 0);
    for other lengths, the prefix followed by all ones except anycast ID 0x7e.
    """
    host_bits = 128 - prefix_length
    net = int(prefix) >> host_bits << host_bits
    if prefix_length == 64:
        return IPv6Address(net | 0xFDFF_FFFF_FFFF_FFFE)
    return IPv6Address(net | (((1 << host_bits) - 1) ^ 0x01))
