"""Benchmark: batched owned-route writes and the observer's cold dump.

Every run happens in a throwaway network namespace owned by one thread
(mip6ctl.kernel.netns), which vanishes with the thread: nothing touches the
host's routes, and nothing is left behind on failure.

    sudo .venv/bin/python bench/kernel_routes.py [--routes 100000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6ctl.kernel import netns
from mip6ctl.kernel.writer import Writer, create
from mip6ctl.state.objects import Route


def routes(n: int, base: int = 0x20010DB8_00010000 << 64) -> list[Route]:
    import socket

    return [
        Route(socket.inet_ntop(socket.AF_INET6, (base + i).to_bytes(16, "big")) + "/128", oif="b0")
        for i in range(1, n + 1)
    ]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _batched_run(objs: list[Route]) -> float:
    def run() -> float:
        netns.link_up()
        netns.add_veth("b0", "b1")
        with Writer() as w:
            t0 = time.perf_counter()
            res = w.apply([create(o) for o in objs])
            dt = time.perf_counter() - t0
        bad = [r for r in res if not r.ok]
        if bad:
            raise RuntimeError(f"{len(bad)} failed, first: {bad[0]}")
        return dt

    return netns.run_isolated(run, timeout=600)


def _pyroute2_run(objs: list[Route]) -> float:
    def run() -> float:
        from pyroute2 import IPRoute

        netns.link_up()
        netns.add_veth("b0", "b1")
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="b0")[0]
            t0 = time.perf_counter()
            for r in objs:
                ipr.route("add", dst=r.dst, oif=idx, table=r.table, proto=r.protocol)
            return time.perf_counter() - t0

    return netns.run_isolated(run, timeout=600)


def _observer_run(objs: list[Route]) -> dict[str, float]:
    """Populate a namespace, then measure a cold Observer in a child process there
    (a fresh interpreter, so the added RSS is the observer's own)."""

    def run() -> dict[str, float]:
        netns.link_up()
        netns.add_veth("b0", "b1")
        with Writer() as w:
            assert all(r.ok for r in w.apply([create(o) for o in objs]))
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--observer-child"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        return json.loads(out)

    return netns.run_isolated(run, timeout=600)


def observer_child() -> None:
    from mip6ctl.kernel.observer import Observer

    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    obs = Observer()
    dt = time.perf_counter() - t0
    gc.collect()
    added = rss_bytes() - before
    n = sum(1 for k in obs.owned if k[0] == "route")
    json.dump({"seconds": dt, "added_rss_mb": added / 1e6, "owned_routes": n}, sys.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000, help="pyroute2 one-at-a-time sample")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--observer-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.observer_child:
        observer_child()
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1

    objs = routes(args.routes)
    batched = [_batched_run(objs) for _ in range(args.runs)]
    sample = objs[: args.sample]
    one = [_pyroute2_run(sample) for _ in range(args.runs)]
    obs = [_observer_run(objs) for _ in range(args.runs)]

    rate = args.routes / statistics.median(batched)
    one_rate = args.sample / statistics.median(one)
    doc = {
        "routes": args.routes,
        "runs": args.runs,
        "batched_add_routes_per_s": round(rate),
        "batched_add_seconds": [round(x, 3) for x in batched],
        "pyroute2_one_at_a_time_routes_per_s": round(one_rate),
        "pyroute2_sample": args.sample,
        "speedup": round(rate / one_rate, 1),
        "observer_cold_dump_seconds": round(statistics.median(o["seconds"] for o in obs), 3),
        "observer_added_rss_mb": round(statistics.median(o["added_rss_mb"] for o in obs), 1),
        "observer_owned_routes": obs[0]["owned_routes"],
    }
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(f"{'measure':44} {'value':>14}")
        for k, v in doc.items():
            print(f"{k:44} {v!s:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
