"""Each §9.2 reaction, with the exact field the pointer designates."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from mip6ctl.wire import errors
from mip6ctl.wire.checksum import mh_checksum
from mip6ctl.wire.errors import Reaction
from mip6ctl.wire.mh import BindingUpdate, HomeTest, decode_mh, encode_mh
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices
from mip6ctl.wire.packet import build_ipv6, build_mh_packet, decode_mh_packet

SRC = IPv6Address("2001:db8:0:101::100")
DST = IPv6Address("2001:db8:0:1::1")
HOA = IPv6Address("2001:db8:0:104::100")
BU = BindingUpdate(7, 0x8000, 10, (NonceIndices(1, 2), BindingAuthorizationData(b"x" * 12)))


def with_checksum(mh: bytes, src: IPv6Address = SRC, dst: IPv6Address = DST) -> bytes:
    c = mh_checksum(mh, src, dst)
    return mh[:4] + c.to_bytes(2, "big") + mh[6:]


def mh_packet(mh: bytes, **kw: IPv6Address) -> bytes:
    """A packet carrying ``mh`` verbatim with a correct checksum."""
    return build_ipv6(SRC, DST, 135, mh, **kw)


def test_bad_checksum_is_discarded_with_pointer_at_checksum() -> None:
    pkt = bytearray(build_mh_packet(SRC, DST, BU))
    pkt[40 + 4] ^= 0xFF
    with pytest.raises(errors.BadChecksum) as ei:
        decode_mh_packet(bytes(pkt))
    assert ei.value.reaction is Reaction.DISCARD
    assert ei.value.mh_offset == 4
    assert ei.value.pointer == 44


def test_checksum_uses_home_address_with_hao() -> None:
    pkt = build_mh_packet(SRC, DST, BU, home_address=HOA)
    parsed, msg = decode_mh_packet(pkt)
    assert msg == BU and parsed.home_address == HOA and parsed.payload_offset == 64
    # the same MH checksummed with the care-of address as source must be refused
    mh = parsed.payload
    wrong = with_checksum(mh[:4] + b"\0\0" + mh[6:], SRC, DST)
    bad = pkt[:64] + wrong
    with pytest.raises(errors.BadChecksum):
        decode_mh_packet(bad)


def test_checksum_uses_home_address_behind_rh2() -> None:
    pkt = build_mh_packet(DST, SRC, BU, rh2_home_address=HOA)
    parsed, msg = decode_mh_packet(pkt)
    assert msg == BU and parsed.rh2_home_address == HOA
    wrong = with_checksum(encode_mh(BU), DST, SRC)
    with pytest.raises(errors.BadChecksum):
        decode_mh_packet(pkt[:64] + wrong)


@pytest.mark.parametrize("chain", [{}, {"home_address": HOA}, {"rh2_home_address": HOA},
                                   {"home_address": HOA, "rh2_home_address": HOA}])
@pytest.mark.parametrize("proto", [0, 6, 58, 135, 255])
def test_payload_proto_not_59_points_at_payload_proto(
    chain: dict[str, IPv6Address], proto: int
) -> None:
    mh = bytes((proto,)) + encode_mh(BU)[1:]
    with pytest.raises(errors.BadPayloadProto) as ei:
        decode_mh(mh)
    e = ei.value
    assert (e.reaction, e.icmp_code, e.mh_offset, e.pointer) == (Reaction.PARAM_PROBLEM, 0, 0, 0)
    base = 40 + 24 * len(chain)
    with pytest.raises(errors.BadPayloadProto) as ei:
        decode_mh_packet(mh_packet(mh, **chain))
    assert (ei.value.mh_offset, ei.value.pointer) == (0, base)
    with pytest.raises(errors.BadPayloadProto) as ei:
        decode_mh(mh, base=base)
    assert ei.value.pointer == base


@pytest.mark.parametrize(
    ("mh_type", "minimum"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 1), (6, 1), (7, 2)]
)
def test_header_len_below_minimum_points_at_header_len(mh_type: int, minimum: int) -> None:
    hl = minimum - 1
    mh = bytes((59, hl, mh_type, 0, 0, 0)) + b"\x00" * (8 * (hl + 1) - 6)
    with pytest.raises(errors.HeaderLenTooShort) as ei:
        decode_mh(mh)
    e = ei.value
    assert (e.reaction, e.icmp_code, e.mh_offset, e.pointer) == (Reaction.PARAM_PROBLEM, 0, 1, 1)
    with pytest.raises(errors.HeaderLenTooShort) as ei:
        decode_mh_packet(mh_packet(mh, home_address=HOA))
    assert ei.value.pointer == 40 + 24 + 1


def test_brr_has_no_minimum() -> None:
    decode_mh(bytes((59, 0, 0, 0, 0, 0, 0, 0)))


@pytest.mark.parametrize("mh_type", [8, 9, 100, 255])
def test_unknown_mh_type_asks_for_binding_error_status_2(mh_type: int) -> None:
    mh = bytes((59, 1, mh_type, 0)) + b"\x00" * 12
    with pytest.raises(errors.UnknownMHType) as ei:
        decode_mh(mh)
    e = ei.value
    assert e.reaction is Reaction.BINDING_ERROR
    assert e.be_status == 2 and e.mh_type == mh_type and e.mh_offset == 2
    # checked before Payload Proto, as §9.2 lists it
    with pytest.raises(errors.UnknownMHType):
        decode_mh(b"\x11" + mh[1:])
    with pytest.raises(errors.UnknownMHType) as ei:
        decode_mh_packet(mh_packet(mh))
    assert ei.value.pointer == 42


def test_truncated_and_length_mismatch_are_discarded() -> None:
    raw = encode_mh(BU)
    for cut in (0, 3, 7, 8, len(raw) - 8):
        with pytest.raises(errors.Truncated) as ei:
            decode_mh(raw[:cut])
        assert ei.value.reaction is Reaction.DISCARD
    with pytest.raises(errors.LengthMismatch) as ei:
        decode_mh(raw + b"\x00" * 8)
    assert ei.value.reaction is Reaction.DISCARD and ei.value.mh_offset == 1


def test_option_errors_are_discarded_with_offsets() -> None:
    raw = bytearray(encode_mh(BindingUpdate(1, 0, 0, (NonceIndices(1, 2),))))
    # NI at 12: 04 04 ...; set its length to 5
    raw[13] = 5
    with pytest.raises(errors.BadOptionLength) as ei:
        decode_mh(bytes(raw))
    assert ei.value.mh_offset == 13 and ei.value.reaction is Reaction.DISCARD
    raw[13] = 40  # runs past the end
    with pytest.raises(errors.BadOptionLength):
        decode_mh(bytes(raw))


def test_misaligned_option_strict_only() -> None:
    # BU (12 octets) | Pad1 | Nonce Indices at 13 (needs 2n) | PadN(5) -> 24 octets
    mh = bytes((59, 2, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0)) + b"\x00\x04\x04\x00\x01\x00\x02"
    mh += b"\x01\x03\x00\x00\x00"
    assert len(mh) == 24
    with pytest.raises(errors.MisalignedOption) as ei:
        decode_mh(mh)
    assert ei.value.mh_offset == 13
    msg = decode_mh(mh, strict=False)
    assert isinstance(msg, BindingUpdate) and msg.nonce_indices == NonceIndices(1, 2)


def test_auth_data_must_be_last() -> None:
    # BU | NI@12 | BAD@18 | PadN(6) after it
    good = encode_mh(BU)
    bad = bytes((59, 4)) + good[2:] + b"\x01\x06" + b"\x00" * 6
    with pytest.raises(errors.AuthDataNotLast) as ei:
        decode_mh(bad)
    assert ei.value.mh_offset == 32 and ei.value.reaction is Reaction.DISCARD
    with pytest.raises(ValueError, match="last"):
        encode_mh(BindingUpdate(1, 0, 0, (BindingAuthorizationData(), NonceIndices(1, 2))))


def test_every_error_is_a_wire_error_and_value_error() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, Exception):
            assert issubclass(cls, errors.WireError) and issubclass(cls, ValueError)


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        encode_mh(BindingUpdate(70000))
    with pytest.raises(ValueError):
        encode_mh(HomeTest(1, b"short", b"12345678"))
