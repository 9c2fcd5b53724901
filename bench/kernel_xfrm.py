"""Benchmark: XFRM policy writes and dumps over mip6ctl.kernel.xfrm, in a private namespace.

What it measures (DESIGN.md "Scale facts" is where the results go):
  * adding N owned policies batched (policies/s, median of --runs runs), and
    one-at-a-time adds of a --single sample in the same run (the ratio);
  * dumping N policies into compact objects (seconds, RSS added);
  * the cost of a policy insert with --routes routes in the namespace.

    sudo .venv/bin/python bench/kernel_xfrm.py [--json]

Every namespace it creates is deleted on exit, also on failure.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mip6ctl.kernel.xfrm import XfrmSocket
from mip6ctl.state.xfrm import (
    Direction,
    Mode,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmTemplate,
)
from tests import nsutil

HA = ipaddress.IPv6Address("2001:db8:1::1")


def policies(n: int, base: int = 0) -> list[XfrmPolicy]:
    """One BU-protecting policy per mobile node: HoA -> HA, MH type 5, ESP transport."""
    out = []
    for i in range(base, base + n):
        hoa = ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:100::")) + i + 1)
        sel = XfrmSelector.mobility(f"{hoa}/128", f"{HA}/128", 5)
        tmpl = XfrmTemplate(XfrmProto.ESP, Mode.TRANSPORT, reqid=i + 1)
        out.append(XfrmPolicy(sel, Direction.OUT, templates=(tmpl,)))
    return out


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def add_routes(ns: str, count: int) -> float:
    """Add `count` /128 routes with `ip -batch` (test tooling, not product code)."""
    nsutil.ip("link", "add", "bd0", "type", "veth", "peer", "name", "bd1", ns=ns)  # no dummy here
    nsutil.ip("link", "set", "bd1", "up", ns=ns)
    nsutil.ip("link", "set", "bd0", "up", ns=ns)
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as f:
        for i in range(count):
            f.write(f"route add 2001:db8:200::{i // 65536:x}:{i % 65536:x}/128 dev bd0\n")
        path = f.name
    t0 = time.perf_counter()
    try:
        subprocess.run(["ip", "-6", "-n", ns, "-batch", path], check=True, timeout=600)
    finally:
        os.unlink(path)
    return time.perf_counter() - t0


def open_socket(ns: str) -> XfrmSocket:
    with nsutil.inside(ns):
        return XfrmSocket(timeout=120.0)


def run(args: argparse.Namespace) -> dict[str, object]:
    factory = nsutil.NetnsFactory()
    res: dict[str, object] = {
        "kernel": os.uname().release,
        "policies": args.count,
        "runs": args.runs,
        "single_sample": args.single,
    }
    try:
        batched_rates, single_rates, dump_s, dump_rss = [], [], [], []
        for _ in range(args.runs):
            ns = factory("xbench")
            with open_socket(ns) as xs:
                pols = policies(args.count)
                t0 = time.perf_counter()
                results = xs.add_policies(pols)
                dt = time.perf_counter() - t0
                assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
                batched_rates.append(args.count / dt)

                sample = policies(args.single, base=args.count)
                t0 = time.perf_counter()
                for p in sample:
                    xs.add_policy(p)
                single_rates.append(args.single / (time.perf_counter() - t0))

                gc.collect()
                before = rss_kib()
                t0 = time.perf_counter()
                dumped = xs.dump_policies(owned_only=True)
                dump_s.append(time.perf_counter() - t0)
                dump_rss.append(rss_kib() - before)
                assert len(dumped) == args.count + args.single
                del dumped
                pols_, _ = xs.flush_owned()
                assert all(r.ok for r in pols_)
            factory.cleanup()

        med_b, med_s = statistics.median(batched_rates), statistics.median(single_rates)
        res["batched_add_per_s"] = {
            "median": round(med_b),
            "all": [round(r) for r in batched_rates],
        }
        res["single_add_per_s"] = {
            "median": round(med_s),
            "all": [round(r) for r in single_rates],
        }
        res["batched_vs_single_ratio"] = round(med_b / med_s, 2)
        res["dump"] = {
            "objects": args.count + args.single,
            "median_s": round(statistics.median(dump_s), 4),
            "rss_added_kib_median": statistics.median(dump_rss),
        }

        if args.routes:
            ns = factory("xroutes")
            route_s = add_routes(ns, args.routes)
            with open_socket(ns) as xs:
                each = []
                for p in policies(args.route_sample, base=500_000):
                    t0 = time.perf_counter()
                    xs.add_policy(p)
                    each.append(time.perf_counter() - t0)
                batch = policies(args.route_sample, base=600_000)
                t0 = time.perf_counter()
                assert all(r.ok for r in xs.add_policies(batch))
                batch_each = (time.perf_counter() - t0) / len(batch)
            empty = factory("xempty")
            with open_socket(empty) as xs:
                base_each = []
                for p in policies(args.route_sample, base=700_000):
                    t0 = time.perf_counter()
                    xs.add_policy(p)
                    base_each.append(time.perf_counter() - t0)
            res["insert_with_routes"] = {
                "routes": args.routes,
                "route_setup_s": round(route_s, 1),
                "sample": args.route_sample,
                "single_median_ms": round(statistics.median(each) * 1e3, 3),
                "batched_each_ms": round(batch_each * 1e3, 3),
                "empty_fib_single_median_ms": round(statistics.median(base_each) * 1e3, 3),
            }
    finally:
        factory.cleanup()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--single", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--routes", type=int, default=100_000, help="0 skips the FIB test")
    ap.add_argument("--route-sample", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if (why := nsutil.missing_capability()) is not None:
        print(f"cannot run: {why}", file=sys.stderr)
        return 1
    nsutil.sweep_stale()
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:26} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
