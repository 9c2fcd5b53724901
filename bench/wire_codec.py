"""Throughput of the wire layer: BU/BA decode and encode, RR authenticators.

Usage: python bench/wire_codec.py [--json] [--rounds N] [--number N]

Each figure is the median of several rounds. ``baseline`` is a bare
``struct.unpack`` of the same BU octets run in the same process; the
``*_ratio`` figures (operation rate / baseline rate) stay comparable across
machines and noisy runs where absolute rates do not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import time
from collections.abc import Callable
from ipaddress import IPv6Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingUpdate,
    BUFlag,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import (
    BindingAuthorizationData,
    BindingRefreshAdvice,
    NonceIndices,
)
from mip6ctl.wire.rr import BindingAuthenticator, mh_data

COA = IPv6Address("2001:db8:0:101::100")
CN = IPv6Address("2001:db8:0:1::1")
KBM = bytes.fromhex("9efc95d286cbb5498c37894fb359314de4fb6fad")

BU = BindingUpdate(
    10000, BUFlag.A, 100, (NonceIndices(1, 2), BindingAuthorizationData(b"\x5a" * 12))
)
BA = BindingAcknowledgement(0, 10000, 100, 0, (BindingRefreshAdvice(90),))


def rate(fn: Callable[[], object], number: int, rounds: int) -> float:
    """Median operations per second of ``fn`` over ``rounds`` rounds of ``number`` calls."""
    results = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        results.append(number / (time.perf_counter() - t0))
    return statistics.median(results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--number", type=int, default=50_000)
    args = ap.parse_args()

    bu_raw = encode_mh(BU)
    ba_raw = encode_mh(BA)
    assert decode_mh(bu_raw) == BU and decode_mh(ba_raw) == BA
    auth = BindingAuthenticator(KBM)
    data = mh_data(bu_raw)
    hdr = struct.Struct("!BBBBHHHH")
    n, r = args.number, args.rounds

    figures = {
        "baseline_struct_unpack_per_s": rate(lambda: hdr.unpack_from(bu_raw), n, r),
        "bu_decode_per_s": rate(lambda: decode_mh(bu_raw), n, r),
        "bu_encode_per_s": rate(lambda: encode_mh(BU), n, r),
        "ba_decode_per_s": rate(lambda: decode_mh(ba_raw), n, r),
        "ba_encode_per_s": rate(lambda: encode_mh(BA), n, r),
        "authenticator_per_s": rate(lambda: auth.compute(COA, CN, data), n, r),
    }
    base = figures["baseline_struct_unpack_per_s"]
    for key in list(figures):
        if key != "baseline_struct_unpack_per_s":
            figures[key.replace("_per_s", "_ratio")] = figures[key] / base
    out = {"python": sys.version.split()[0], "rounds": r, "number": n, **figures}
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"python {out['python']}, median of {r} rounds x {n} ops")
        print(f"{'baseline struct.unpack':<24}{base:>14,.0f} /s")
        for key in ("bu_decode", "bu_encode", "ba_decode", "ba_encode", "authenticator"):
            print(f"{key:<24}{figures[key + '_per_s']:>14,.0f} /s"
                  f"   ratio {figures[key + '_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
