"""Typed decode errors, each carrying the reaction RFC 6275 §9.2 prescribes.

The engine never has to guess what to do with a malformed packet: every error
raised by a decoder in this package is a :class:`WireError` whose ``reaction``
says whether to drop silently (``DISCARD``), answer with an ICMPv6 Parameter
Problem (``PARAM_PROBLEM``, with ``icmp_code`` and ``pointer``) or answer with
a Binding Error (``BINDING_ERROR``, with ``be_status``).

Offsets: ``mh_offset`` is the byte offset of the offending field counted from
the first octet of the Mobility Header (or of the extension header / ICMPv6
message the error is about). ``pointer`` is the same field counted from the
first octet of the IPv6 header when a whole packet was decoded, so it can go
straight into the ICMPv6 Parameter Problem Pointer field. A bare-MH decoder
called with ``base=N`` (the length of the header chain in front of the MH)
also yields a packet pointer; with the default ``base=0`` ``pointer`` equals
``mh_offset``.
"""

from __future__ import annotations

import enum

__all__ = [
    "AuthDataNotLast",
    "BadChecksum",
    "BadOptionLength",
    "BadPayloadProto",
    "BadRoutingHeader",
    "DestOptError",
    "HeaderLenTooShort",
    "LengthMismatch",
    "MalformedICMPv6",
    "MalformedPacket",
    "MisalignedOption",
    "MisplacedHopByHop",
    "ParamProblem",
    "Reaction",
    "Truncated",
    "UnknownMHType",
    "UnknownRoutingType",
    "UnrecognizedDestOption",
    "WireError",
]


class Reaction(enum.Enum):
    """What RFC 6275 §9.2 (and RFC 8200 / RFC 4861) tells the receiver to do."""

    DISCARD = "discard"
    """Drop silently (bad checksum, truncated, malformed options)."""
    PARAM_PROBLEM = "param_problem"
    """Drop and send ICMPv6 Parameter Problem (code + pointer) to the source."""
    BINDING_ERROR = "binding_error"
    """Drop and send a Binding Error (status) to the source, rate limited."""


class WireError(ValueError):
    """Base of every decode error; subclasses fix the reaction.

    Attributes:
        reaction: what the receiver must do.
        mh_offset: offset of the offending field in the header it belongs to.
        pointer: offset of that field in the whole packet (``base + mh_offset``).
        icmp_code: Parameter Problem code (only for ``PARAM_PROBLEM``).
        be_status: Binding Error status (only for ``BINDING_ERROR``).
    """

    reaction: Reaction = Reaction.DISCARD
    icmp_code: int | None = None
    be_status: int | None = None

    def __init__(self, message: str, *, mh_offset: int | None = None, base: int = 0) -> None:
        super().__init__(message)
        self.mh_offset = mh_offset
        self.pointer = None if mh_offset is None else base + mh_offset

    def rebase(self, base: int) -> WireError:
        """Shift ``pointer`` by ``base`` octets (the header chain in front); returns self."""
        if self.pointer is not None:
            self.pointer += base
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.args[0]!r}, reaction={self.reaction.name}, "
            f"mh_offset={self.mh_offset}, pointer={self.pointer})"
        )


# --- silently discarded ----------------------------------------------------


class Truncated(WireError):
    """Fewer octets than a header or its length field announce."""


class LengthMismatch(WireError):
    """Header Len disagrees with the octets the packet actually carries."""


class BadChecksum(WireError):
    """Upper-layer checksum does not verify: silently discard (§9.2)."""


class BadOptionLength(WireError):
    """A known option with the wrong length, or one running past the header."""


class MisalignedOption(WireError):
    """A known option not at its RFC alignment (strict decoding only)."""


class AuthDataNotLast(WireError):
    """Binding Authorization Data followed by another option (§6.2.7)."""


class BadRoutingHeader(WireError):
    """Type 2 routing header with Hdr Ext Len != 2 or Segments Left != 1 (§6.4)."""


class MalformedICMPv6(WireError):
    """ICMPv6 / Neighbor Discovery message failing its validity checks (RFC 4861)."""


class DestOptError(WireError):
    """Malformed Destination Options header or Home Address option (§6.3)."""


# --- ICMPv6 Parameter Problem ---------------------------------------------


class MalformedPacket(WireError):
    """IPv6 header or header chain unusable (wrong version, duplicate MIPv6 headers, ...)."""


class ParamProblem(WireError):
    """Base for errors answered with ICMPv6 Parameter Problem (code 0 unless set)."""

    reaction = Reaction.PARAM_PROBLEM
    icmp_code = 0

    def __init__(
        self, message: str, *, mh_offset: int, base: int = 0, code: int | None = None
    ) -> None:
        super().__init__(message, mh_offset=mh_offset, base=base)
        if code is not None:
            self.icmp_code = code


class UnknownRoutingType(ParamProblem):
    """Routing header of a type not processed here with Segments Left > 0 (RFC 8200 §4.4).

    Code 0, pointer at the Routing Type octet.
    """


class MisplacedHopByHop(ParamProblem):
    """Hop-by-Hop Options header not right after the IPv6 header (RFC 8200 §4.1).

    Code 1 (unrecognized Next Header), pointer at the Next Header field naming it.
    """

    icmp_code = 1


class BadPayloadProto(ParamProblem):
    """MH Payload Proto != 59; pointer at Payload Proto (§9.2)."""


class HeaderLenTooShort(ParamProblem):
    """MH Header Len below the type's minimum; pointer at Header Len (§9.2)."""


class UnrecognizedDestOption(ParamProblem):
    """Unknown destination option whose type's top bits say "send ICMP" (RFC 8200 §4.2).

    ``icmp_code`` is 2 (unrecognized IPv6 option); the pointer is at the option
    type octet. ``multicast_exempt`` is True for types 11xxxxxx, where no ICMP is
    sent if the packet's destination was multicast (the reaction is then DISCARD).
    """

    icmp_code = 2

    def __init__(
        self, message: str, *, mh_offset: int, base: int = 0, multicast_exempt: bool = False
    ) -> None:
        super().__init__(message, mh_offset=mh_offset, base=base)
        self.multicast_exempt = multicast_exempt
        if multicast_exempt:
            self.reaction = Reaction.DISCARD


# --- Binding Error ---------------------------------------------------------


class UnknownMHType(WireError):
    """Unrecognized MH Type: Binding Error status 2 (§9.2, §9.3.3).

    ``mh_type`` is the value received; ``mh_offset`` points at the MH Type
    octet (2) for diagnostics.
    """

    reaction = Reaction.BINDING_ERROR
    be_status = 2

    def __init__(self, message: str, *, mh_type: int, base: int = 0) -> None:
        super().__init__(message, mh_offset=2, base=base)
        self.mh_type = mh_type
