"""Fuzz: >= 100,000 random and mutated inputs; only typed WireErrors may come out.

Reproducible (fixed seed) and time-bounded. Mutations cover truncation, bad
Header Len, every MH Type value 0-255, every option type 0-255 with random
lengths, bit flips, misaligned options, and packets whose checksum is
recomputed after mutation so the decoders past the checksum are exercised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from ipaddress import IPv6Address

from mip6ctl.wire.errors import Reaction, WireError
from mip6ctl.wire.exthdr import decode_destination_options, decode_type2_routing_header
from mip6ctl.wire.icmp6 import (
    AdvertisementInterval,
    HomeAgentAddressDiscoveryReply,
    HomeAgentAddressDiscoveryRequest,
    HomeAgentInformation,
    MobilePrefixAdvertisement,
    MobilePrefixSolicitation,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    decode_icmp6,
    encode_icmp6,
)
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    NonceIndices,
    UnknownOption,
    decode_options,
)
from mip6ctl.wire.packet import (
    build_ipv6,
    decode_icmp6_packet,
    decode_mh_packet,
    parse_ipv6,
)

SEED = 6275
BUDGET_S = 60.0  # generous wall-clock bound for slow CI; typically ~10 s here
A = IPv6Address("2001:db8::1")
B = IPv6Address("2001:db8::2")
H = IPv6Address("2001:db8:1::100")

OPTS = (
    NonceIndices(1, 2),
    BindingRefreshAdvice(30),
    AlternateCareofAddress(A),
    MobileNetworkPrefix(48, H),
    UnknownOption(99, b"abc"),
)

MH_SEEDS = [
    encode_mh(m)
    for m in (
        BindingRefreshRequest(),
        HomeTestInit(b"12345678"),
        CareofTestInit(b"12345678", (UnknownOption(200, b"x"),)),
        HomeTest(1, b"12345678", b"abcdefgh"),
        CareofTest(2, b"12345678", b"abcdefgh", (BindingRefreshAdvice(1),)),
        BindingUpdate(1, 0xC000, 100),
        BindingUpdate(2, 0x8000, 100, (*OPTS, BindingAuthorizationData(b"z" * 12))),
        BindingAcknowledgement(0, 1, 100, 0x80, (BindingRefreshAdvice(5),)),
        BindingAcknowledgement(135, 7, 0, 0, (NonceIndices(1, 1), BindingAuthorizationData())),
        BindingError(2, H, (UnknownOption(17, b""),)),
    )
]
ICMP_SEEDS = [
    encode_icmp6(m)
    for m in (
        RouterSolicitation((SourceLinkLayerAddress(b"\x02\x00\x00\x00\x00\x01"),)),
        RouterAdvertisement(
            64, 0x20, 1800, 0, 0,
            (
                PrefixInformation(64, 0xE0, 86400, 14400, H),
                AdvertisementInterval(1000),
                HomeAgentInformation(-1, 1800),
            ),
        ),
        NeighborSolicitation(H),
        NeighborAdvertisement(H, 0xA0),
        HomeAgentAddressDiscoveryRequest(7),
        HomeAgentAddressDiscoveryReply(7, (A, B)),
        MobilePrefixSolicitation(9),
        MobilePrefixAdvertisement(9, 0x8000, (PrefixInformation(64, 0xC0, 1, 1, H),)),
    )
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random structural mutation of ``data``."""
    b = bytearray(data)
    k = rng.randrange(8)
    if k == 0 and b:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if k == 1 and b:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif k == 2 and len(b) > 1:  # bad length octet
        b[1] = rng.randrange(256)
    elif k == 3:  # append junk
        b += rng.randbytes(rng.randrange(1, 24))
    elif k == 4 and len(b) > 12:  # inject an option of any type at a random place
        pos = rng.randrange(8, len(b))
        t = rng.randrange(256)
        b[pos : pos + 2] = bytes((t, rng.randrange(256)))
    elif k == 5 and len(b) > 12:  # shift options by one octet (misalignment)
        pos = rng.randrange(8, len(b))
        b.insert(pos, 0)
        b.pop()
    elif k == 6:  # random Header Len consistent with length
        b += bytes(-len(b) % 8)
        if len(b) > 1:
            b[1] = len(b) // 8 - 1
    else:
        return rng.randbytes(rng.randrange(0, 64))
    return bytes(b)


def guarded(fn: Callable[[bytes], object], data: bytes, stats: dict[str, int]) -> None:
    try:
        fn(data)
    except WireError as e:
        stats[type(e).__name__] = stats.get(type(e).__name__, 0) + 1
        if e.reaction is Reaction.PARAM_PROBLEM:  # the pointer must designate an input octet
            assert e.pointer is not None and 0 <= e.pointer < len(data), (e, data.hex())
    else:
        stats["ok"] = stats.get("ok", 0) + 1


def test_fuzz_decoders_raise_only_wire_errors() -> None:
    rng = random.Random(SEED)
    stats: dict[str, int] = {}
    count = 0  # decoder calls
    inputs = 0  # distinct inputs generated
    start = time.monotonic()

    # every MH Type value with every plausible Header Len, both Payload Protos
    for t in range(256):
        for hl in range(4):
            for pp in (59, 6):
                mh = bytes((pp, hl, t, 0, 0, 0)) + rng.randbytes(8 * hl + 2)
                guarded(decode_mh, mh, stats)
                count += 1
                inputs += 1
    # every option type, with several lengths, at every offset parity, in a BU
    for t in range(256):
        for olen in (0, 1, 2, 4, 12, 16, 18, 40, 255):
            for lead in range(3):
                body = b"\x00" * lead + bytes((t, olen)) + rng.randbytes(min(olen, 40))
                mh = bytes((59, 0, 5, 0, 0, 0, 0, 1, 0, 0, 0, 0)) + body
                mh += bytes(-len(mh) % 8)
                mh = mh[:1] + bytes((len(mh) // 8 - 1,)) + mh[2:]
                guarded(decode_mh, mh, stats)
                guarded(lambda d: decode_options(d, 12, len(d)), mh, stats)
                count += 2
                inputs += 1

    while inputs < 120_000:
        seed = rng.choice(MH_SEEDS)
        mh = seed
        for _ in range(rng.randint(1, 3)):
            mh = mutate(rng, mh)
        guarded(decode_mh, mh, stats)
        guarded(lambda d: decode_mh(d, strict=False), mh, stats)
        hoa = H if rng.random() < 0.5 else None
        rh2 = H if rng.random() < 0.3 else None
        pkt = build_ipv6(A, B, 135, mh, home_address=hoa, rh2_home_address=rh2,
                         checksum_offset=4 if len(mh) >= 6 else None)
        if rng.random() < 0.3:
            pkt = mutate(rng, pkt)  # breaks the IPv6 header / chain / checksum
        guarded(decode_mh_packet, pkt, stats)
        guarded(parse_ipv6, pkt, stats)
        guarded(decode_destination_options, mutate(rng, pkt[40:64]), stats)
        guarded(decode_type2_routing_header, mutate(rng, pkt[40:64]), stats)
        icmp = mutate(rng, rng.choice(ICMP_SEEDS))
        guarded(decode_icmp6, icmp, stats)
        ipkt = build_ipv6(A, B, 58, icmp, hop_limit=255,
                          checksum_offset=2 if len(icmp) >= 4 else None)
        guarded(decode_icmp6_packet, ipkt, stats)
        count += 8
        inputs += 6
        assert time.monotonic() - start < BUDGET_S, f"fuzz too slow after {count} inputs"

    assert inputs >= 100_000 and count > inputs
    print(f"fuzz: {inputs} inputs, {count} decoder calls, {time.monotonic() - start:.1f} s",
          dict(sorted(stats.items())))
    # the fuzzer must reach both the error paths and successful decodes
    assert stats.get("ok", 0) > 1000
    for name in ("Truncated", "UnknownMHType", "BadPayloadProto", "HeaderLenTooShort",
                 "BadOptionLength", "MisalignedOption", "BadChecksum", "MalformedICMPv6"):
        assert stats.get(name, 0) > 0, (name, stats)
