"""Mobile IPv6 on the wire: pure encode/decode, no I/O, stdlib only.

Module map (named after RFC 6275 concepts):

- :mod:`.mh` — the eight Mobility Header messages (BRR, HoTI, CoTI, HoT, CoT,
  BU, BA, BE) as frozen dataclasses; ``decode_mh`` / ``encode_mh``; BU/BA flags
  and status codes; lifetime unit helpers.
- :mod:`.mobopts` — mobility options 0–6 (Pad1, PadN, Binding Refresh Advice,
  Alternate Care-of Address, Nonce Indices, Binding Authorization Data,
  RFC 3963 Mobile Network Prefix), alignment-aware encoding, strict decoding,
  unknown options preserved.
- :mod:`.exthdr` — Home Address destination option and type 2 routing header.
- :mod:`.checksum` — Internet checksum and the Mobile IPv6 pseudo-header rule
  (home address as source with a HAO, as destination behind a type 2 RH).
- :mod:`.rr` — return routability: keygen tokens, Kbm, authenticator, with
  keyed HMAC objects reused per Kcn / per binding.
- :mod:`.icmp6` — RS/RA (H flag, R prefix flag, Advertisement Interval, Home
  Agent Information), NS/NA, DHAAD Request/Reply, Mobile Prefix
  Solicitation/Advertisement.
- :mod:`.packet` — whole IPv6 packets: header chain walk, checksum
  verification, building packets with HAO / type 2 RH (for raw sockets).
- :mod:`.errors` — :class:`WireError` hierarchy; each error carries the
  :class:`Reaction` RFC 6275 §9.2 prescribes (discard, ICMPv6 Parameter Problem
  with code and pointer, Binding Error with status).

Addresses are ``ipaddress.IPv6Address`` in decoded objects; functions that
take addresses also accept 16 packed octets. Decoders raise only
``WireError`` subclasses (a ``ValueError``); encoders raise ``ValueError`` for
values that do not fit the wire format.
"""

from .errors import Reaction, WireError
from .mh import (
    BAFlag,
    BAStatus,
    BEStatus,
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    MHType,
    MobilityMessage,
    decode_mh,
    encode_mh,
    lifetime_seconds,
    lifetime_units,
)
from .mobopts import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    MobilityOption,
    NonceIndices,
    UnknownOption,
)
from .packet import IPv6Packet, build_mh_packet, decode_mh_packet, parse_ipv6
from .rr import BindingAuthenticator, KeygenTokenGenerator, binding_management_key

__all__ = [
    "AlternateCareofAddress",
    "BAFlag",
    "BAStatus",
    "BEStatus",
    "BUFlag",
    "BindingAcknowledgement",
    "BindingAuthenticator",
    "BindingAuthorizationData",
    "BindingError",
    "BindingRefreshAdvice",
    "BindingRefreshRequest",
    "BindingUpdate",
    "CareofTest",
    "CareofTestInit",
    "HomeTest",
    "HomeTestInit",
    "IPv6Packet",
    "KeygenTokenGenerator",
    "MHType",
    "MobileNetworkPrefix",
    "MobilityMessage",
    "MobilityOption",
    "NonceIndices",
    "Reaction",
    "UnknownOption",
    "WireError",
    "binding_management_key",
    "build_mh_packet",
    "decode_mh",
    "decode_mh_packet",
    "encode_mh",
    "lifetime_seconds",
    "lifetime_units",
    "parse_ipv6",
]
