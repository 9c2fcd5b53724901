"""Pure decode/encode steps of the transports: bytes in, engine inputs out (no sockets)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv6Address

import pytest

from mip6ctl.engine.events import (
    HomeAddressOptionReceived,
    Malformed,
    Received,
    Send,
    SendParameterProblem,
)
from mip6ctl.kernel.transport import TransportUnavailable, select_transport
from mip6ctl.wire.datagram import (
    Dropped,
    ICMPv6Received,
    build_outgoing,
    build_parameter_problem,
    decode_kernel_message,
    decode_packet,
)
from mip6ctl.wire.errors import (
    BadPayloadProto,
    BadRoutingHeader,
    HeaderLenTooShort,
    Reaction,
    UnknownMHType,
)
from mip6ctl.wire.exthdr import encode_hao_destination_options, encode_type2_routing_header
from mip6ctl.wire.icmp6 import NeighborSolicitation, RouterAdvertisement, encode_icmp6
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate, encode_mh
from mip6ctl.wire.packet import (
    build_icmp6_packet,
    build_ipv6,
    build_mh_packet,
    decode_icmp6_packet,
    decode_mh_packet,
    parse_ipv6,
)

HA = IPv6Address("2001:db8:1::1")
COA = IPv6Address("2001:db8:3::100")
HOA = IPv6Address("2001:db8:1::100")
CN = IPv6Address("2001:db8:2::1")
BU = BindingUpdate(7, 0xC000, 100)
BA = BindingAcknowledgement(0, 7, 100)


def local(*addrs: IPv6Address):
    return lambda a: a in addrs


# --- decode_packet (userspace transport) ------------------------------------------------------


def test_bu_with_hao() -> None:
    pkt = build_mh_packet(COA, HA, BU, home_address=HOA)
    ev = decode_packet(pkt, ifname="eth0", is_local=local(HA))
    assert ev == Received(BU, COA, HA, HOA, None, False, "eth0", encode_mh(BU, src=HOA, dst=HA))


def test_ba_with_rh2() -> None:
    pkt = build_mh_packet(HA, COA, BA, rh2_home_address=HOA)
    ev = decode_packet(pkt, is_local=local(COA))
    assert isinstance(ev, Received)
    assert (ev.src, ev.dst, ev.routing_header_address, ev.home_address_option) == (
        HA, COA, HOA, None,
    )  # fmt: skip
    assert ev.message == BA


def test_not_for_us() -> None:
    pkt = build_mh_packet(COA, CN, BU, home_address=HOA)
    assert decode_packet(pkt, is_local=local(HA)) == Dropped("not for us")


def test_mh_to_multicast_is_dropped() -> None:
    pkt = build_mh_packet(COA, IPv6Address("ff02::1"), BU)
    assert isinstance(decode_packet(pkt), Dropped)


def test_bad_checksum_is_dropped() -> None:
    pkt = bytearray(build_mh_packet(COA, HA, BU, home_address=HOA))
    pkt[40 + 24 + 4] ^= 0xFF
    assert decode_packet(bytes(pkt)) == Dropped("bad checksum")


def test_checksum_over_care_of_address_is_wrong_with_hao() -> None:
    """A sender that forgot the HAO rule (checksum over the care-of source) is dropped."""
    plain = build_mh_packet(COA, HA, BU)
    chain = encode_hao_destination_options(HOA, 135)
    body = chain + plain[40:]
    pkt = struct.pack("!IHBB", 6 << 28, len(body), 60, 64) + COA.packed + HA.packed + body
    assert decode_packet(pkt) == Dropped("bad checksum")


def _with_mh_byte(pkt: bytes, offset: int, value: int, src: IPv6Address, dst: IPv6Address,
                  **kw: IPv6Address) -> bytes:  # fmt: skip
    """Change one MH octet and rebuild so the checksum stays valid."""
    p = parse_ipv6(pkt)
    mh = bytearray(p.payload)
    mh[offset] = value
    return build_ipv6(src, dst, 135, bytes(mh), **kw)  # type: ignore[arg-type]


def test_payload_proto_not_59_is_malformed_with_packet_pointer() -> None:
    pkt = _with_mh_byte(build_mh_packet(COA, HA, BU, home_address=HOA), 0, 6, COA, HA,
                        home_address=HOA)  # fmt: skip
    ev = decode_packet(pkt)
    assert isinstance(ev, Malformed) and isinstance(ev.error, BadPayloadProto)
    assert ev.error.reaction is Reaction.PARAM_PROBLEM
    assert ev.error.pointer == 64
    assert (ev.src, ev.dst, ev.home_address_option, ev.packet) == (COA, HA, HOA, pkt)


def test_header_len_too_short_points_at_header_len() -> None:
    mh = bytes((59, 0, 5, 0, 0, 0, 0, 0))  # a BU needs Header Len >= 1
    pkt = build_ipv6(COA, HA, 135, mh)
    ev = decode_packet(pkt)
    assert isinstance(ev, Malformed) and isinstance(ev.error, HeaderLenTooShort)
    assert ev.error.pointer == 41


def test_unknown_mh_type_is_malformed_binding_error() -> None:
    pkt = build_ipv6(COA, HA, 135, bytes((59, 0, 200, 0, 0, 0, 0, 0)), home_address=HOA)
    ev = decode_packet(pkt)
    assert isinstance(ev, Malformed) and isinstance(ev.error, UnknownMHType)
    assert ev.home_address_option == HOA


def test_bad_rh2_is_malformed_discard() -> None:
    pkt = bytearray(build_mh_packet(HA, COA, BA, rh2_home_address=HOA))
    pkt[40 + 3] = 0  # segments left 0
    ev = decode_packet(bytes(pkt))
    assert isinstance(ev, Malformed) and isinstance(ev.error, BadRoutingHeader)
    assert ev.error.reaction is Reaction.DISCARD


def test_tunnelled_inner_packet() -> None:
    inner = build_mh_packet(CN, HOA, BA)
    outer = build_ipv6(HA, COA, 41, inner)
    ev = decode_packet(outer, is_local=local(COA, HOA))
    assert isinstance(ev, Received) and (ev.src, ev.dst) == (CN, HOA)
    # the home agent forwarding a reverse-tunnelled packet is not its receiver
    assert decode_packet(outer, is_local=local(COA)) == Dropped("not for us")
    assert decode_packet(outer, decapsulate=False) == Dropped("not signalling")


def test_tunnelled_signalling_only_from_the_home_agent() -> None:
    """RFC 6275 §11.3.3: the mobile node takes tunnelled signalling (a Home Test) only
    from its home agent's tunnel; IPv6-in-IPv6 from anyone else is dropped."""
    inner = build_mh_packet(CN, HOA, BA)
    ok = decode_packet(build_ipv6(HA, COA, 41, inner), is_local=local(COA, HOA), tunnel_from={HA})
    assert isinstance(ok, Received)
    forged = build_ipv6(CN, COA, 41, inner)
    assert decode_packet(forged, is_local=local(COA, HOA), tunnel_from={HA}) == Dropped(
        "tunnelled, not from the home agent"
    )


def test_hao_on_other_upper_layer() -> None:
    pkt = build_ipv6(COA, CN, 17, bytes(8), home_address=HOA)
    assert decode_packet(pkt) == HomeAddressOptionReceived(COA, CN, HOA)


def test_icmpv6_when_asked() -> None:
    ns = NeighborSolicitation(HOA)
    pkt = build_icmp6_packet(COA, IPv6Address("ff02::1:ff00:100"), ns)
    assert decode_packet(pkt) == Dropped("not signalling")
    ev = decode_packet(pkt, icmp_types={135}, is_local=local())
    assert ev == ICMPv6Received(ns, COA, IPv6Address("ff02::1:ff00:100"), 255)
    bad = build_icmp6_packet(COA, HA, ns, hop_limit=64)
    assert decode_packet(bad, icmp_types={135}) == Dropped("bad ICMPv6")


@pytest.mark.parametrize("data", [b"", bytes(39), b"\x45" + bytes(60)])
def test_not_ipv6(data: bytes) -> None:
    assert decode_packet(data) == Dropped("not IPv6")


# --- decode_kernel_message (kernel transport) ----------------------------------------------


def _pktinfo(addr: IPv6Address) -> tuple[int, int, bytes]:
    return socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, addr.packed + struct.pack("=I", 2)


def test_kernel_hao_is_swapped_back() -> None:
    """The kernel reports source = home address and the option holding the care-of address."""
    mh = encode_mh(BU, src=HOA, dst=HA)
    anc = [_pktinfo(HA), (socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS,
                          encode_hao_destination_options(COA, 135))]  # fmt: skip
    ev = decode_kernel_message(mh, HOA, anc, ifname="eth0")
    assert ev == Received(BU, COA, HA, HOA, None, False, "eth0", mh)


def test_kernel_rh2_is_swapped_back() -> None:
    mh = encode_mh(BA, src=HA, dst=HOA)
    rth = bytearray(encode_type2_routing_header(COA, 135))
    rth[3] = 0  # the kernel reports it processed: segments left 0
    anc = [_pktinfo(HOA), (socket.IPPROTO_IPV6, socket.IPV6_RTHDR, bytes(rth))]
    ev = decode_kernel_message(mh, HA, anc)
    assert isinstance(ev, Received)
    assert (ev.src, ev.dst, ev.routing_header_address) == (HA, COA, HOA)


def test_kernel_malformed_rebuilds_the_wire_packet() -> None:
    mh = bytes((59, 0, 200, 0, 0, 0, 0, 0))
    anc = [_pktinfo(HA), (socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS,
                          encode_hao_destination_options(COA, 135))]  # fmt: skip
    ev = decode_kernel_message(mh, HOA, anc)
    assert isinstance(ev, Malformed) and isinstance(ev.error, UnknownMHType)
    assert ev.error.pointer == 40 + 24 + 2
    p = parse_ipv6(ev.packet)
    assert (p.src, p.dst, p.home_address, p.payload) == (COA, HA, HOA, mh)


def test_kernel_without_pktinfo_is_dropped() -> None:
    assert isinstance(decode_kernel_message(encode_mh(BU), HA, []), Dropped)


# --- encoding -----------------------------------------------------------------------------


def test_build_outgoing_bu_and_ba() -> None:
    pkt, hop = build_outgoing(Send(BU, COA, HA, home_address_option=HOA))
    assert hop == HA
    p, msg = decode_mh_packet(pkt)  # checksum verified with the home address as source
    assert (p.src, p.dst, p.home_address, msg) == (COA, HA, HOA, BU)
    pkt, hop = build_outgoing(Send(BA, HA, COA, routing_header_address=HOA))
    assert hop == COA
    p, msg = decode_mh_packet(pkt)
    assert (p.dst, p.rh2_home_address, msg) == (COA, HOA, BA)


def test_parameter_problem_fits_the_minimum_mtu() -> None:
    invoking = bytes(3000)
    pkt = build_parameter_problem(SendParameterProblem(0, 64, invoking, HA, COA))
    assert len(pkt) == 1280
    p, msg = decode_icmp6_packet(pkt)
    assert (p.src, p.dst, p.hop_limit) == (HA, COA, 64)
    assert (msg.icmp_type, msg.code, msg.body[:4]) == (4, 0, struct.pack("!I", 64))


# --- selection ------------------------------------------------------------------------------


def test_select_transport() -> None:
    assert select_transport("auto", {"mip6": False}) == "userspace"
    assert select_transport("auto", {"mip6": None}) == "userspace"
    assert select_transport("auto", {"mip6": True}) == "kernel"
    assert select_transport("userspace", {"mip6": True}) == "userspace"
    assert select_transport("kernel", {"mip6": True}) == "kernel"
    with pytest.raises(TransportUnavailable, match="CONFIG_IPV6_MIP6"):
        select_transport("kernel", {"mip6": False})
    with pytest.raises(ValueError):
        select_transport("carrier-pigeon", {})


def test_select_transport_takes_probe_capabilities() -> None:
    from mip6ctl.kernel.probe import Capability

    caps = [Capability("mip6", False, "", "", ""), Capability("esp", True, "", "", "")]
    assert select_transport("auto", caps) == "userspace"


def test_ra_roundtrip_helper_sanity() -> None:
    ra = RouterAdvertisement(64, 0x20, 1800, 0, 0)
    pkt = build_icmp6_packet(HA, IPv6Address("ff02::1"), encode_icmp6(ra))
    ev = decode_packet(pkt, icmp_types={134})
    assert isinstance(ev, ICMPv6Received) and ev.message == ra
