"""Benchmark: owned proxy NDP entries added through the writer, and how the cost grows.

The kernel keeps proxy entries in a 16-bucket hash (DESIGN.md), so each add
gets slower as the table fills; this prints the cost per add around 1k, 5k
and 10k entries.  Runs in a throwaway namespace (mip6ctl.kernel.netns).

    sudo .venv/bin/python bench/kernel_proxy_ndp.py [--entries 10000] [--batch 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6ctl.kernel import netns
from mip6ctl.kernel.writer import Writer, create
from mip6ctl.state.objects import ProxyNeighbour

BASE = 0x20010DB8_00010000 << 64


def entries(n: int) -> list[ProxyNeighbour]:
    return [
        ProxyNeighbour("p0", socket.inet_ntop(socket.AF_INET6, (BASE + i).to_bytes(16, "big")))
        for i in range(1, n + 1)
    ]


def one_run(objs: list[ProxyNeighbour], batch: int) -> list[tuple[int, float]]:
    """(entries present after the batch, microseconds per add in that batch)."""

    def run() -> list[tuple[int, float]]:
        netns.link_up()
        netns.add_veth("p0", "p1")
        points = []
        with Writer() as w:
            for start in range(0, len(objs), batch):
                chunk = objs[start : start + batch]
                t0 = time.perf_counter()
                res = w.apply([create(o) for o in chunk])
                dt = time.perf_counter() - t0
                if not all(r.ok for r in res):
                    raise RuntimeError(next(r for r in res if not r.ok))
                points.append((start + len(chunk), dt / len(chunk) * 1e6))
        return points

    return netns.run_isolated(run, timeout=600)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    objs = entries(args.entries)
    runs = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        points = one_run(objs, args.batch)
        runs.append((time.perf_counter() - t0, points))
    total = statistics.median(t for t, _p in runs)
    slope = {}
    for mark in (1000, 5000, 10000):
        if mark <= args.entries:
            per_run = [min(p, key=lambda x: abs(x[0] - mark))[1] for _t, p in runs]
            slope[str(mark)] = round(statistics.median(per_run), 1)
    doc = {
        "entries": args.entries,
        "runs": args.runs,
        "batch": args.batch,
        "adds_per_s": round(args.entries / total),
        "total_seconds": round(total, 3),
        "us_per_add_at": slope,
    }
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(f"{'measure':28} {'value':>30}")
        for k, v in doc.items():
            print(f"{k:28} {v!s:>30}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
