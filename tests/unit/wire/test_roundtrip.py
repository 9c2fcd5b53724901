"""Property tests: every message and option survives encode -> decode, on the RFC's grid."""

from __future__ import annotations

from ipaddress import IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from mip6ctl.wire.checksum import verify_mh_checksum
from mip6ctl.wire.mh import (
    MH_MIN_HEADER_LEN,
    BindingUpdate,
    MobilityMessage,
    decode_mh,
    encode_mh,
    lifetime_seconds,
    lifetime_units,
)
from mip6ctl.wire.mobopts import MobilityOption, decode_options, encode_options
from mip6ctl.wire.packet import build_mh_packet, decode_mh_packet

from .strategies import addresses, messages, option_lists

ALIGN = {2: (2, 0), 3: (8, 6), 4: (2, 0), 5: (8, 2), 6: (8, 4)}
LENGTH = {2: 2, 3: 16, 4: 4, 5: 12, 6: 18}


def walk_options(mh: bytes, start: int) -> list[tuple[int, int, int]]:
    """(offset, type, length) of every TLV including padding, independent of the decoder."""
    out = []
    pos = start
    while pos < len(mh):
        t = mh[pos]
        if t == 0:
            out.append((pos, 0, 0))
            pos += 1
            continue
        out.append((pos, t, mh[pos + 1]))
        pos += 2 + mh[pos + 1]
    assert pos == len(mh), "options must end exactly at the end of the header"
    return out


@settings(max_examples=400)
@given(messages())
def test_message_roundtrip_and_layout(msg: MobilityMessage) -> None:
    raw = encode_mh(msg)
    assert len(raw) % 8 == 0
    assert raw[0] == 59 and raw[2] == msg.MH_TYPE and raw[3] == 0
    assert raw[1] == len(raw) // 8 - 1 >= MH_MIN_HEADER_LEN[msg.MH_TYPE]
    assert decode_mh(raw) == msg
    tlvs = walk_options(raw, msg.OPTIONS_OFFSET)
    real = [(p, t, n) for p, t, n in tlvs if t > 1]
    assert [t for _, t, _ in real] == [o.OPTION_TYPE for o in msg.options]
    for pos, t, n in real:
        if t in ALIGN:
            x, y = ALIGN[t]
            assert pos % x == y, f"option {t} at {pos}"
            assert n == LENGTH[t]
    for pos, t, n in tlvs:
        if t == 1:
            assert raw[pos + 2 : pos + 2 + n] == b"\x00" * n
    # padding is minimal: never 8 octets or more of it in a row
    run = 0
    for _, t, n in tlvs:
        run = run + (1 if t == 0 else n + 2) if t <= 1 else 0
        assert run < 8


@settings(max_examples=200)
@given(messages(), addresses, addresses, st.none() | addresses, st.none() | addresses)
def test_packet_roundtrip_with_checksum(
    msg: MobilityMessage,
    src: IPv6Address,
    dst: IPv6Address,
    hoa: IPv6Address | None,
    rh2: IPv6Address | None,
) -> None:
    pkt = build_mh_packet(src, dst, msg, home_address=hoa, rh2_home_address=rh2)
    parsed, decoded = decode_mh_packet(pkt)
    assert decoded == msg
    assert (parsed.src, parsed.dst, parsed.home_address, parsed.rh2_home_address) == (
        src, dst, hoa, rh2
    )
    mh = parsed.payload
    ps = hoa if hoa is not None else src
    pd = rh2 if rh2 is not None else dst
    assert verify_mh_checksum(mh, ps, pd)
    assert mh == encode_mh(msg, src=src, dst=dst, home_address=hoa, rh2_home_address=rh2)


@given(option_lists(), st.integers(0, 7))
def test_options_alone_roundtrip_at_any_start(opts: tuple[MobilityOption, ...], k: int) -> None:
    start = 8 + k
    body = encode_options(opts, start)
    assert (start + len(body)) % 8 == 0
    assert decode_options(body, 0, len(body), strict=False) == opts
    padded = b"\x00" * start + body
    assert decode_options(padded, start, len(padded)) == opts


@given(st.integers(0, 0xFFFF))
def test_lifetime_units(units: int) -> None:
    assert lifetime_units(lifetime_seconds(units)) == units
    assert BindingUpdate(0, 0, units).lifetime_seconds == units * 4


def test_lifetime_units_rounding() -> None:
    assert lifetime_units(0) == 0
    assert lifetime_units(-5) == 0
    assert lifetime_units(7) == 1  # never grant more than asked
    assert lifetime_units(10**9) == 0xFFFF
