"""Home Address option, type 2 routing header and header-chain validation."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from mip6ctl.wire import errors
from mip6ctl.wire.errors import Reaction
from mip6ctl.wire.exthdr import (
    decode_destination_options,
    decode_type2_routing_header,
    encode_hao_destination_options,
    encode_type2_routing_header,
)
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate
from mip6ctl.wire.packet import (
    build_ipv6,
    build_mh_packet,
    decode_mh_packet,
    packet_checksum,
    parse_ipv6,
    verify_packet_checksum,
)

COA = IPv6Address("2001:db8:0:101::100")
CN = IPv6Address("2001:db8:0:1::1")
HOA = IPv6Address("2001:db8:0:104::100")


def test_hao_layout_and_decode() -> None:
    h = encode_hao_destination_options(HOA, 135)
    assert h[:8] == bytes((135, 2, 1, 2, 0, 0, 0xC9, 16)) and h[8:] == HOA.packed
    d = decode_destination_options(h)
    assert (d.next_header, d.length, d.home_address, d.home_address_offset) == (135, 24, HOA, 6)


def test_hao_validation() -> None:
    h = bytearray(encode_hao_destination_options(HOA, 135))
    h[7] = 15  # length 15
    with pytest.raises(errors.DestOptError) as ei:
        decode_destination_options(bytes(h))
    assert ei.value.mh_offset == 7 and ei.value.reaction is Reaction.DISCARD
    # HAO at offset 4 (PadN of 0 data octets) is misaligned: 8n+6 required
    mis = bytes((135, 2, 1, 0, 0xC9, 16)) + HOA.packed + b"\x01\x00"
    with pytest.raises(errors.DestOptError):
        decode_destination_options(mis)
    assert decode_destination_options(mis, strict=False).home_address == HOA


@pytest.mark.parametrize(
    ("otype", "exc", "reaction", "code"),
    [
        (0x1E, None, None, None),
        (0x5E, errors.DestOptError, Reaction.DISCARD, None),
        (0x9E, errors.UnrecognizedDestOption, Reaction.PARAM_PROBLEM, 2),
        (0xDE, errors.UnrecognizedDestOption, Reaction.PARAM_PROBLEM, 2),
    ],
)
def test_unknown_destination_options_by_top_bits(
    otype: int, exc: type[Exception] | None, reaction: Reaction | None, code: int | None
) -> None:
    h = bytes((135, 0, otype, 4, 1, 2, 3, 4))
    if exc is None:
        assert decode_destination_options(h).skipped == ((otype, b"\x01\x02\x03\x04"),)
        return
    with pytest.raises(exc) as ei:
        decode_destination_options(h, base=64)
    e = ei.value
    assert isinstance(e, errors.WireError)
    assert (e.reaction, e.icmp_code, e.mh_offset, e.pointer) == (reaction, code, 2, 66)


def test_11_options_to_multicast_are_discarded_quietly() -> None:
    h = bytes((135, 0, 0xDE, 4, 1, 2, 3, 4))
    with pytest.raises(errors.UnrecognizedDestOption) as ei:
        decode_destination_options(h, multicast_destination=True)
    assert ei.value.reaction is Reaction.DISCARD and ei.value.multicast_exempt


def test_type2_routing_header() -> None:
    rh = encode_type2_routing_header(HOA, 135)
    assert rh[:8] == bytes((135, 2, 2, 1, 0, 0, 0, 0))
    assert decode_type2_routing_header(rh).home_address == HOA
    for idx, value, off in ((1, 4, 1), (3, 0, 3), (3, 2, 3)):
        bad = bytearray(rh)
        bad[idx] = value
        with pytest.raises(errors.BadRoutingHeader) as ei:
            decode_type2_routing_header(bytes(bad))
        assert ei.value.mh_offset == off and ei.value.reaction is Reaction.DISCARD


def test_packet_chain_and_link_layer_padding() -> None:
    ba = BindingAcknowledgement(0, 5, 10)
    pkt = build_mh_packet(CN, COA, ba, rh2_home_address=HOA)
    parsed, msg = decode_mh_packet(pkt + b"\x00" * 6)  # Ethernet padding after the packet
    assert msg == ba and parsed.rh2_home_address == HOA and parsed.pseudo_destination == HOA
    assert parsed.payload_offset == 64
    assert verify_packet_checksum(parsed)
    assert packet_checksum(parsed) == int.from_bytes(parsed.payload[4:6], "big")
    with pytest.raises(errors.Truncated):
        decode_mh_packet(pkt[:-1])


def test_unknown_routing_type_and_misplaced_hop_by_hop() -> None:
    bu = BindingUpdate(1)
    rh0 = bytes((135, 2, 0, 1, 0, 0, 0, 0)) + HOA.packed  # type 0, segments left 1
    pkt = build_ipv6(COA, CN, 43, rh0 + bu.encode(), checksum_offset=None)
    with pytest.raises(errors.UnknownRoutingType) as ei:
        parse_ipv6(pkt)
    assert (ei.value.reaction, ei.value.icmp_code, ei.value.pointer) == (
        Reaction.PARAM_PROBLEM, 0, 42)
    rh0_done = rh0[:3] + b"\x00" + rh0[4:]  # segments left 0: ignored (RFC 8200 §4.4)
    assert parse_ipv6(build_ipv6(COA, CN, 43, rh0_done + bu.encode())).next_header == 135
    hbh = bytes((0, 0, 1, 4, 0, 0, 0, 0))
    pkt = build_ipv6(COA, CN, 60, bytes((0, 0, 1, 4, 0, 0, 0, 0)) + hbh)
    with pytest.raises(errors.MisplacedHopByHop) as ei:
        parse_ipv6(pkt)
    assert (ei.value.icmp_code, ei.value.pointer) == (1, 40)


def test_two_home_address_options_are_refused() -> None:
    inner = encode_hao_destination_options(HOA, 135)
    outer = encode_hao_destination_options(HOA, 60)
    pkt = build_ipv6(COA, CN, 60, outer + inner + BindingUpdate(1).encode(), checksum_offset=None)
    with pytest.raises(errors.DestOptError):
        parse_ipv6(pkt)
