"""Cross-checks against scapy's independent Mobile IPv6 implementation.

Both directions, octet for octet, checksums included, with and without a Home
Address option and a type 2 routing header. Where scapy is wrong the test pins
scapy's behaviour down with an assertion, so it fails (and this file needs
revisiting) the day scapy changes.
"""

from __future__ import annotations

import logging
from ipaddress import IPv6Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
inet6 = pytest.importorskip("scapy.layers.inet6")
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    HAO,
    MIP6MH_BA,
    MIP6MH_BE,
    MIP6MH_BRR,
    MIP6MH_BU,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
    MIP6MH_CoT,
    MIP6MH_CoTI,
    MIP6MH_Generic,
    MIP6MH_HoT,
    MIP6MH_HoTI,
    MIP6OptAltCoA,
    MIP6OptBindingAuthData,
    MIP6OptBRAdvice,
    MIP6OptLLAddr,
    MIP6OptMobNetPrefix,
    MIP6OptNonceIndices,
    MIP6OptUnknown,
    Pad1,
    PadN,
    in6_chksum,
)

from mip6ctl.wire.mh import (  # noqa: E402
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    MobilityMessage,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import (  # noqa: E402
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    MobilityOption,
    NonceIndices,
    UnknownOption,
)
from mip6ctl.wire.packet import build_mh_packet, decode_mh_packet  # noqa: E402

from .strategies import addresses, messages  # noqa: E402

SRC = IPv6Address("2001:db8:0:101::100")
DST = IPv6Address("2001:db8:0:1::1")
HOA = IPv6Address("2001:db8:0:104::100")

# --- translation between the two object models ---------------------------------


def to_scapy_option(o: MobilityOption) -> Any:
    if isinstance(o, BindingRefreshAdvice):
        return MIP6OptBRAdvice(rinter=o.refresh_interval)
    if isinstance(o, AlternateCareofAddress):
        return MIP6OptAltCoA(acoa=str(o.address))
    if isinstance(o, NonceIndices):
        # scapy's default olen is 16 (RFC: 4), see test_scapy_default_lengths_are_wrong
        return MIP6OptNonceIndices(hni=o.home_nonce_index, coni=o.careof_nonce_index, olen=4)
    if isinstance(o, BindingAuthorizationData):
        # scapy's default olen is 16 (RFC: 12)
        return MIP6OptBindingAuthData(
            authenticator=int.from_bytes(o.authenticator, "big"), olen=12
        )
    if isinstance(o, MobileNetworkPrefix):
        return MIP6OptMobNetPrefix(plen=o.prefix_length, prefix=str(o.prefix))
    return MIP6OptUnknown(otype=o.option_type, odata=o.data)


def from_scapy_option(o: Any) -> MobilityOption | None:
    if isinstance(o, Pad1 | PadN):
        return None
    if isinstance(o, MIP6OptBRAdvice):
        return BindingRefreshAdvice(o.rinter)
    if isinstance(o, MIP6OptAltCoA):
        return AlternateCareofAddress(IPv6Address(o.acoa))
    if isinstance(o, MIP6OptNonceIndices):
        return NonceIndices(o.hni, o.coni)
    if isinstance(o, MIP6OptBindingAuthData):
        return BindingAuthorizationData(o.authenticator.to_bytes(12, "big"))
    if isinstance(o, MIP6OptMobNetPrefix):
        return MobileNetworkPrefix(o.plen, IPv6Address(o.prefix))
    body = raw(o)
    return UnknownOption(body[0], body[2:])


def to_scapy(msg: MobilityMessage) -> Any:
    opts = [to_scapy_option(o) for o in msg.options]
    if isinstance(msg, BindingRefreshRequest):
        return MIP6MH_BRR(options=opts)
    if isinstance(msg, HomeTestInit):
        return MIP6MH_HoTI(cookie=msg.home_init_cookie, options=opts)
    if isinstance(msg, CareofTestInit):
        return MIP6MH_CoTI(cookie=msg.careof_init_cookie, options=opts)
    if isinstance(msg, HomeTest):
        return MIP6MH_HoT(
            index=msg.home_nonce_index, cookie=msg.home_init_cookie,
            token=msg.home_keygen_token, options=opts,
        )
    if isinstance(msg, CareofTest):
        return MIP6MH_CoT(
            index=msg.careof_nonce_index, cookie=msg.careof_init_cookie,
            token=msg.careof_keygen_token, options=opts,
        )
    if isinstance(msg, BindingUpdate):
        return MIP6MH_BU(seq=msg.sequence, flags=msg.flags >> 9, mhtime=msg.lifetime,
                         options=opts)
    if isinstance(msg, BindingAcknowledgement):
        return MIP6MH_BA(status=msg.status, flags=msg.flags >> 5, seq=msg.sequence,
                         mhtime=msg.lifetime, options=opts)
    assert isinstance(msg, BindingError)
    return MIP6MH_BE(status=msg.status, ha=str(msg.home_address), options=opts)


def from_scapy(m: Any) -> MobilityMessage:
    opts = tuple(x for x in map(from_scapy_option, m.options) if x is not None)
    if isinstance(m, MIP6MH_BRR):
        return BindingRefreshRequest(opts)
    if isinstance(m, MIP6MH_CoTI):  # subclass of MIP6MH_HoTI: test first
        return CareofTestInit(m.cookie, opts)
    if isinstance(m, MIP6MH_HoTI):
        return HomeTestInit(m.cookie, opts)
    if isinstance(m, MIP6MH_CoT):
        return CareofTest(m.index, m.cookie, m.token, opts)
    if isinstance(m, MIP6MH_HoT):
        return HomeTest(m.index, m.cookie, m.token, opts)
    if isinstance(m, MIP6MH_BU):
        # scapy: 7 flag bits "PRMKLHA" (P = RFC 5213 proxy, reserved for us) then 9 reserved
        return BindingUpdate(m.seq, (int(m.flags) << 9) & 0xFC00, m.mhtime, opts)
    if isinstance(m, MIP6MH_BA):
        return BindingAcknowledgement(m.status, m.seq, m.mhtime, (int(m.flags) << 5) & 0xC0,
                                      opts)
    assert isinstance(m, MIP6MH_BE)
    return BindingError(m.status, IPv6Address(m.ha), opts)


def scapy_packet(
    msg: MobilityMessage,
    src: IPv6Address,
    dst: IPv6Address,
    hoa: IPv6Address | None,
    rh2: IPv6Address | None,
) -> Any:
    p = IPv6(src=str(src), dst=str(dst))
    if rh2 is not None:
        p = p / IPv6ExtHdrRouting(type=2, addresses=[str(rh2)])
    if hoa is not None:
        p = p / IPv6ExtHdrDestOpt(options=[HAO(hoa=str(hoa))])
    return p / to_scapy(msg)


def mh_layer(p: Any) -> Any:
    for cls in (MIP6MH_BRR, MIP6MH_HoTI, MIP6MH_CoTI, MIP6MH_HoT, MIP6MH_CoT, MIP6MH_BU,
                MIP6MH_BA, MIP6MH_BE):
        if cls in p:
            return p[cls]
    raise AssertionError(f"no MH in {p!r}")


# --- both directions, property-based ----------------------------------------------

CHAINS = st.sampled_from([(None, None), (HOA, None), (None, HOA), (HOA, HOA)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(min_unknown=17), addresses, addresses, CHAINS)
def test_scapy_built_equals_ours_and_decodes(
    msg: MobilityMessage,
    src: IPv6Address,
    dst: IPv6Address,
    chain: tuple[IPv6Address | None, IPv6Address | None],
) -> None:
    hoa, rh2 = chain
    theirs = raw(scapy_packet(msg, src, dst, hoa, rh2))
    ours = build_mh_packet(src, dst, msg, home_address=hoa, rh2_home_address=rh2)
    assert ours == theirs  # same padding, same lengths, same checksum
    _, decoded = decode_mh_packet(theirs)  # verifies the checksum too
    assert decoded == msg
    assert decoded == from_scapy(mh_layer(IPv6(theirs)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(min_unknown=17), addresses, addresses)
def test_ours_dissects_in_scapy(msg: MobilityMessage, src: IPv6Address, dst: IPv6Address) -> None:
    pkt = IPv6(build_mh_packet(src, dst, msg))
    m = mh_layer(pkt)
    assert from_scapy(m) == msg
    assert m.len == len(raw(m)) // 8 - 1
    mh = bytearray(raw(m))
    mh[4:6] = b"\x00\x00"
    assert m.cksum == in6_chksum(135, m, bytes(mh))


def test_ours_with_hao_and_rh2_dissects_in_scapy() -> None:
    msg = BindingUpdate(3, 0xC000, 50, (NonceIndices(4, 5),))
    pkt = IPv6(build_mh_packet(SRC, DST, msg, home_address=HOA, rh2_home_address=HOA))
    assert pkt[IPv6ExtHdrRouting].type == 2
    assert pkt[IPv6ExtHdrRouting].segleft == 1
    assert pkt[IPv6ExtHdrRouting].addresses == [str(HOA)]
    assert pkt[HAO].hoa == str(HOA)
    assert from_scapy(pkt[MIP6MH_BU]) == msg


# --- scapy's known mistakes, pinned -------------------------------------------------


def test_scapy_default_lengths_are_wrong() -> None:
    """scapy's Nonce Indices and Binding Authorization Data default to olen 16.

    RFC 6275 §6.2.6/§6.2.7: Nonce Indices length is 4, Binding Authorization
    Data length is 12. A scapy BU built with default options is therefore
    malformed; our decoder refuses it.
    """
    assert MIP6OptNonceIndices().olen == 16
    assert MIP6OptBindingAuthData().olen == 16
    bad = raw(MIP6MH_BU(options=[MIP6OptNonceIndices(hni=1, coni=2)]))
    assert bad[12:14] == b"\x04\x10"
    from mip6ctl.wire.errors import BadOptionLength

    with pytest.raises(BadOptionLength):
        decode_mh(bad)


def test_scapy_generic_message_length_is_wrong() -> None:
    """MIP6MH_Generic takes 8*len-6 octets of message data; the RFC's is 8*len+2.

    (The MH is 8*(len+1) octets and the fixed header 6.) So for an unknown type
    scapy leaves 8 octets of the MH in a Raw layer.
    """
    from scapy.packet import Raw

    mh = bytes((59, 1, 200, 0, 0, 0)) + bytes(range(10))
    g = MIP6MH_Generic(mh)
    assert g.msg == bytes(range(2))
    assert g[Raw].load == bytes(range(2, 10))


def test_scapy_ignores_hao_for_checksum_once_padding_is_dissected() -> None:
    """in6_pseudoheader uses the HAO only when it is the Destination Options' sole option.

    Building from [HAO] works (and equals ours), but a *dissected* header holds
    [PadN, HAO], so scapy recomputes the checksum with the care-of source.
    """
    msg = BindingUpdate(1, 0x8000, 1)
    ours = build_mh_packet(SRC, DST, msg, home_address=HOA)
    assert ours == raw(scapy_packet(msg, SRC, DST, HOA, None))
    dissected = IPv6(ours)
    assert [type(o) for o in dissected[IPv6ExtHdrDestOpt].options] == [PadN, HAO]
    m = dissected[MIP6MH_BU]
    zeroed = bytearray(raw(m))
    zeroed[4:6] = b"\x00\x00"
    assert in6_chksum(135, m, bytes(zeroed)) != m.cksum  # scapy's mistake
    decode_mh_packet(ours)  # ours verifies


def test_scapy_bu_and_ba_defaults_decode() -> None:
    """scapy's defaults (BU flags K|H|A, lifetime 3; BA flags K) decode as such."""
    bu = decode_mh(raw(MIP6MH_BU(seq=9)))
    assert bu == BindingUpdate(9, 0xD000, 3)
    ba = decode_mh(raw(MIP6MH_BA(seq=9)))
    assert ba == BindingAcknowledgement(0, 9, 0, 0x80)


def test_known_scapy_option_types_we_do_not_process_are_preserved() -> None:
    """scapy's RFC 4068 Link-Layer Address option (type 7) stays an UnknownOption in ours.

    scapy gets its length wrong too: olen defaults to 7 while the body it
    writes (code, pad, 6-octet MAC) is 8 octets, so the option needs olen=8.
    """
    assert MIP6OptLLAddr().olen == 7
    assert len(raw(MIP6OptLLAddr())) - 2 == 8
    lla = MIP6OptLLAddr(lla="02:00:00:00:00:01", olen=8)
    theirs = raw(MIP6MH_BU(seq=1, options=[lla]))  # no IPv6 underlayer: checksum 0
    m = decode_mh(theirs)
    assert isinstance(m, BindingUpdate)
    assert m.options == (UnknownOption(7, raw(lla)[2:]),)
    assert encode_mh(m) == theirs
