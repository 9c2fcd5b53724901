"""ICMPv6 / ND with the Mobile IPv6 extensions: round trips and scapy cross-checks."""

from __future__ import annotations

import logging
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mip6ctl.wire import errors
from mip6ctl.wire.icmp6 import (
    AdvertisementInterval,
    HomeAgentAddressDiscoveryReply,
    HomeAgentAddressDiscoveryRequest,
    HomeAgentInformation,
    ICMPv6Message,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    MTUOption,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    UnknownNDOption,
    decode_icmp6,
    encode_icmp6,
    home_agents_anycast,
)
from mip6ctl.wire.packet import build_icmp6_packet, decode_icmp6_packet

from .strategies import addresses, u8, u16

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
inet6 = pytest.importorskip("scapy.layers.inet6")
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6HAADReply,
    ICMPv6HAADRequest,
    ICMPv6MPAdv,
    ICMPv6MPSol,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptAdvInterval,
    ICMPv6NDOptHAInfo,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)

LL = IPv6Address("fe80::1")
ALL_NODES = IPv6Address("ff02::1")
HA = IPv6Address("2001:db8:1::1")
MAC = b"\x02\x00\x00\x00\x00\x01"
u32 = st.integers(0, 2**32 - 1)
s16 = st.integers(-(2**15), 2**15 - 1)

nd_options = st.one_of(
    st.builds(SourceLinkLayerAddress, st.just(MAC)),
    st.builds(TargetLinkLayerAddress, st.just(MAC)),
    st.builds(PrefixInformation, st.integers(0, 128), st.sampled_from([0, 0x20, 0xC0, 0xE0]),
              u32, u32, addresses),
    st.builds(MTUOption, u32),
    st.builds(AdvertisementInterval, u32),
    st.builds(HomeAgentInformation, s16, u16),
    st.builds(UnknownNDOption, st.integers(30, 255), st.binary(min_size=6, max_size=6)),
)
opt_lists = st.lists(nd_options, max_size=4).map(tuple)
icmp_messages = st.one_of(
    st.builds(RouterSolicitation, opt_lists),
    st.builds(RouterAdvertisement, u8, st.sampled_from([0, 0x20, 0xC0, 0xE8]), u16, u32, u32,
              opt_lists),
    st.builds(NeighborSolicitation, addresses, opt_lists),
    st.builds(NeighborAdvertisement, addresses, st.sampled_from([0, 0x20, 0x60, 0xA0]),
              opt_lists),
    st.builds(HomeAgentAddressDiscoveryRequest, u16, st.sampled_from([0, 0x8000])),
    st.builds(HomeAgentAddressDiscoveryReply, u16, st.lists(addresses, max_size=4).map(tuple),
              st.sampled_from([0, 0x8000])),
    st.builds(MobilePrefixSolicitation, u16),
    st.builds(MobilePrefixAdvertisement, u16, st.sampled_from([0, 0x4000, 0x8000, 0xC000]),
              opt_lists),
)


@settings(max_examples=300)
@given(icmp_messages, addresses, addresses)
def test_icmp6_roundtrip_with_checksum(msg: ICMPv6Message, src: IPv6Address,
                                       dst: IPv6Address) -> None:
    assert decode_icmp6(encode_icmp6(msg)) == msg
    pkt = build_icmp6_packet(src, dst, msg)
    parsed, decoded = decode_icmp6_packet(pkt)
    assert decoded == msg and parsed.hop_limit == 255
    # scapy computes the same checksum
    assert raw(IPv6(pkt)) == pkt
    theirs = IPv6(pkt)
    del theirs.payload.cksum
    assert raw(theirs) == pkt


def test_ra_with_mobility_extensions_matches_scapy_both_ways() -> None:
    scapy_ra = (
        IPv6(src=str(LL), dst=str(ALL_NODES), hlim=255)
        / ICMPv6ND_RA(chlim=64, H=1, prf=0, routerlifetime=1800)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
        / ICMPv6NDOptPrefixInfo(prefixlen=64, L=1, A=1, R=1, validlifetime=86400,
                                preferredlifetime=14400, prefix=str(HA))
        / ICMPv6NDOptAdvInterval(advint=1000)
        / ICMPv6NDOptHAInfo(pref=10, lifetime=1800)
    )
    ours = RouterAdvertisement(
        64, RouterAdvertisement.H, 1800, 0, 0,
        (
            SourceLinkLayerAddress(MAC),
            PrefixInformation(64, 0xE0, 86400, 14400, HA),
            AdvertisementInterval(1000),
            HomeAgentInformation(10, 1800),
        ),
    )
    theirs = raw(scapy_ra)
    assert build_icmp6_packet(LL, ALL_NODES, ours) == theirs
    _, decoded = decode_icmp6_packet(theirs)
    assert decoded == ours
    assert isinstance(decoded, RouterAdvertisement)
    assert decoded.home_agent and decoded.prefixes[0].router_address
    assert decoded.home_agent_information == HomeAgentInformation(10, 1800)
    assert decoded.advertisement_interval == AdvertisementInterval(1000)


def test_scapy_home_agent_preference_is_unsigned() -> None:
    """RFC 6275 §7.4: Home Agent Preference is signed; scapy's ShortField reads it unsigned."""
    ours = encode_icmp6(RouterAdvertisement(options=(HomeAgentInformation(-1, 60),)))
    theirs = ICMPv6ND_RA(ours)
    assert theirs[ICMPv6NDOptHAInfo].pref == 0xFFFF
    assert decode_icmp6(ours).home_agent_information == HomeAgentInformation(-1, 60)


@pytest.mark.parametrize(
    ("scapy_msg", "ours"),
    [
        (ICMPv6HAADRequest(id=7, R=0), HomeAgentAddressDiscoveryRequest(7)),
        (ICMPv6HAADRequest(id=7), HomeAgentAddressDiscoveryRequest(7, 0x8000)),
        (ICMPv6HAADReply(id=9, R=0, addresses=[str(HA), "2001:db8:1::2"]),
         HomeAgentAddressDiscoveryReply(9, (HA, IPv6Address("2001:db8:1::2")))),
        (ICMPv6MPSol(id=3), MobilePrefixSolicitation(3)),
        (ICMPv6MPAdv(id=3, flags=2) / ICMPv6NDOptPrefixInfo(prefix=str(HA), R=1),
         MobilePrefixAdvertisement(3, 0x8000, (
             PrefixInformation(64, 0xE0, 0xFFFFFFFF, 0xFFFFFFFF, HA),))),
        (ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01"),
         RouterSolicitation((SourceLinkLayerAddress(MAC),))),
        (ICMPv6ND_NS(tgt=str(HA)), NeighborSolicitation(HA)),
        (ICMPv6ND_NA(tgt=str(HA), R=0, S=0, O=1), NeighborAdvertisement(HA, 0x20)),
    ],
)
def test_dhaad_mps_mpa_nd_match_scapy(scapy_msg: object, ours: ICMPv6Message) -> None:
    src = IPv6Address("2001:db8:1::100")
    dst = home_agents_anycast(IPv6Address("2001:db8:1::"), 64)
    theirs = raw(IPv6(src=str(src), dst=str(dst), hlim=255) / scapy_msg)
    assert build_icmp6_packet(src, dst, ours) == theirs
    assert decode_icmp6_packet(theirs)[1] == ours


def test_home_agents_anycast() -> None:
    p = IPv6Address("2001:db8:1::")
    assert home_agents_anycast(p, 64) == IPv6Address("2001:db8:1:0:fdff:ffff:ffff:fffe")
    assert home_agents_anycast(p, 48) == IPv6Address("2001:db8:1:ffff:ffff:ffff:ffff:fffe")


def test_nd_validity_checks() -> None:
    ns = build_icmp6_packet(LL, ALL_NODES, NeighborSolicitation(HA), hop_limit=64)
    with pytest.raises(errors.MalformedICMPv6) as ei:
        decode_icmp6_packet(ns)
    assert ei.value.reaction is errors.Reaction.DISCARD and ei.value.pointer == 7
    zero_len = encode_icmp6(RouterSolicitation()) + b"\x01\x00" + b"\x00" * 6
    with pytest.raises(errors.MalformedICMPv6) as ei:
        decode_icmp6(zero_len)
    assert ei.value.mh_offset == 9
    bad_code = b"\x85\x01" + encode_icmp6(RouterSolicitation())[2:]
    with pytest.raises(errors.MalformedICMPv6):
        decode_icmp6(bad_code)
    bad = bytearray(build_icmp6_packet(LL, ALL_NODES, RouterSolicitation()))
    bad[-1] ^= 1
    with pytest.raises(errors.BadChecksum):
        decode_icmp6_packet(bytes(bad))
