"""Micro-benchmark of the sans-I/O engine (no sockets, no kernel).

1. Home agent: refresh Binding Updates (same care-of address, new sequence)
   processed per second with 100k bindings in the cache. Each refresh goes
   through every §10.3.1 rule, updates the cache and its expiry heap and
   returns PersistBinding + the BA.
2. Correspondent: return routability exchanges (HoTI→HoT, CoTI→CoT) plus the
   authorised Binding Update (authenticator verified, BA signed) per second.

Events are decoded from wire octets before the clock starts (decoding is the
daemon's job). Each figure is the median of ``--rounds`` rounds and is also
given as a ratio to a baseline loop run in the same process over the same
events (one dict lookup + building one BA per event), so results compare
across machines.

    .venv/bin/python bench/engine_ha.py [--bindings 100000] [--rounds 5] [--mns 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import time
from ipaddress import IPv6Address

from mip6ctl.config.model import Mip6Config
from mip6ctl.engine import Binding, Engine, Received
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingUpdate,
    BUFlag,
    CareofTestInit,
    HomeTestInit,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import AlternateCareofAddress, BindingAuthorizationData, NonceIndices

HA = IPv6Address("2001:db8:1::1")
CN = IPv6Address("2001:db8:0:1::1")
HOME_BASE = int(IPv6Address("2001:db8:1::1:0"))
COA_BASE = int(IPv6Address("2001:db8:2::1:0"))
FLAGS = int(BUFlag.A | BUFlag.H)


def ha_engine(n: int, now: float) -> tuple[Engine, list[IPv6Address], list[IPv6Address]]:
    cfg = Mip6Config.model_validate({
        "node": {"role": "ha"},
        "ha": {
            "interfaces": ["home0"], "home_prefixes": ["2001:db8:1::/64"],
            "default_action": "allow", "duplicate_address_detection": False,
        },
    })
    e = Engine(cfg, now)
    hoas = [IPv6Address(HOME_BASE + i) for i in range(n)]
    coas = [IPv6Address(COA_BASE + i) for i in range(n)]
    e.restore(
        (Binding(h, c, HA, 400, now, now + 400 + i % 1000, 0, FLAGS, True)
         for i, (h, c) in enumerate(zip(hoas, coas, strict=True))),
        now,
    )
    return e, hoas, coas


def refresh_events(seq: int, hoas: list[IPv6Address], coas: list[IPv6Address]) -> list[Received]:
    out = []
    for h, c in zip(hoas, coas, strict=True):
        raw = encode_mh(BindingUpdate(seq, FLAGS, 100, (AlternateCareofAddress(c),)))
        out.append(Received(decode_mh(raw), c, HA, h, None, False, None, raw))
    return out


def baseline(events: list[Received], table: dict[IPv6Address, int]) -> float:
    """The least any implementation does per BU: one lookup, one BA object."""
    t = time.perf_counter()
    for ev in events:
        seq = table.get(ev.home_address_option)  # type: ignore[arg-type]
        BindingAcknowledgement(0, ev.message.sequence if seq is not None else 0, 100)  # type: ignore[attr-defined]
    return time.perf_counter() - t


def bench_ha(n: int, rounds: int) -> None:
    now = 1000.0
    e, hoas, coas = ha_engine(n, now)
    table = {h: 0 for h in hoas}
    rates, ratios = [], []
    for r in range(1, rounds + 1):
        events = refresh_events(r, hoas, coas)
        now += 10
        handle = e.handle
        t = time.perf_counter()
        for ev in events:
            out = handle(ev, now)
        dt = time.perf_counter() - t
        assert out[-1].message.status == 0 and len(e.cache) == n  # type: ignore[union-attr]
        rates.append(n / dt)
        ratios.append(dt / baseline(events, table))
    print(f"HA refresh BUs/s with {n} bindings: median {statistics.median(rates):,.0f} "
          f"(rounds {', '.join(f'{x:,.0f}' for x in rates)}); "
          f"time ratio vs baseline loop: {statistics.median(ratios):.1f}x")


def bench_cn(mns: int, rounds: int) -> None:
    cfg = Mip6Config.model_validate({"node": {"role": "cn"}})
    rates, ratios = [], []
    for r in range(rounds):
        now = 1000.0 + r
        e = Engine(cfg, now, kcn=bytes(range(20)))
        hoas = [IPv6Address(HOME_BASE + i) for i in range(mns)]
        coas = [IPv6Address(COA_BASE + i) for i in range(mns)]
        hoti = [Received(HomeTestInit(b"h" * 8), h, CN) for h in hoas]
        coti = [Received(CareofTestInit(b"c" * 8), c, CN) for c in coas]
        t = time.perf_counter()
        hots = [e.handle(ev, now)[0].message for ev in hoti]  # type: ignore[union-attr]
        cots = [e.handle(ev, now)[0].message for ev in coti]  # type: ignore[union-attr]
        dt = time.perf_counter() - t
        bus = []
        for h, c, hot, cot in zip(hoas, coas, hots, cots, strict=True):  # the MN's work: untimed
            raw = encode_mh(BindingUpdate(1, int(BUFlag.A), 100, (
                NonceIndices(hot.home_nonce_index, cot.careof_nonce_index),  # type: ignore[attr-defined]
                BindingAuthorizationData())))
            kbm = hashlib.sha1(hot.home_keygen_token + cot.careof_keygen_token).digest()  # type: ignore[attr-defined]
            data = raw[:4] + b"\0\0" + raw[6:-12]
            raw = data + hmac.new(kbm, c.packed + CN.packed + data, hashlib.sha1).digest()[:12]
            bus.append(Received(decode_mh(raw), c, CN, h, None, False, None, raw))
        t = time.perf_counter()
        for ev in bus:
            out = e.handle(ev, now)
        dt += time.perf_counter() - t
        assert out[-1].message.status == 0 and len(e.cache) == mns  # type: ignore[union-attr]
        rates.append(mns / dt)
        ratios.append(dt / baseline(bus, {}))
    print(f"CN RR exchanges + BUs/s ({mns} mobile nodes): median "
          f"{statistics.median(rates):,.0f} (rounds {', '.join(f'{x:,.0f}' for x in rates)}); "
          f"time ratio vs baseline loop: {statistics.median(ratios):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindings", type=int, default=100_000)
    ap.add_argument("--mns", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    bench_ha(a.bindings, a.rounds)
    bench_cn(a.mns, a.rounds)


if __name__ == "__main__":
    main()
