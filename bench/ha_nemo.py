"""Benchmark: the home agent with mobile routers (RFC 3963) next to mobile hosts, one command.

The bed, load generator and sweep of bench/ha_daemon.py (two namespaces, the
daemon pinned to CPU 0, the generator to CPU 1, seg6 backend, userspace
signalling).  Two daemons in turn, each with ``--bindings`` listed nodes:

* ``hosts``: mobile hosts (the host-only figures, as ha_daemon.py's);
* ``routers``: the same number of mobile routers, each listed with two mobile
  network prefixes (``2001:db8:8000::/33`` cut into /64s), registering in
  explicit mode: R = 1 and two Mobile Network Prefix options in every BU.
  Each binding then has three seg6 routes and three reverse-tunnel elements
  instead of one of each.

For each: the time to register all of them at ``--register-rate``/s, the
refresh sweep (the highest offered rate at which >= 99.9 % of refresh BUs
get BA 0 within 50 ms), BU->BA p50/p99 at ``--latency-rate``/s, the daemon's
RSS and the routes in table 6275; then the ratios routers / hosts.

    sudo .venv/bin/python bench/ha_nemo.py [--bindings 10000] [--runs 3] [--json]

On a kernel without seg6 lwtunnel run it in the vm tier (bench/vm_ha_nemo.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ha_daemon as hd  # noqa: E402
from _ha_load import LoadGenerator  # noqa: E402

from mip6ctl.wire.mh import BUFlag  # noqa: E402
from mip6ctl.wire.mobopts import MobileNetworkPrefix  # noqa: E402

MNP_BASE = int(IPv6Address("2001:db8:8000::"))
SERVED = "2001:db8:8000::/33"


def prefixes(i: int) -> tuple[IPv6Network, IPv6Network]:
    """The two /64 mobile network prefixes of router ``i``."""
    return tuple(  # type: ignore[return-value]
        IPv6Network((MNP_BASE + ((2 * i + j) << 64), 64)) for j in (0, 1)
    )


def nodes_file(n: int, routers: bool) -> str:
    """``[[ha.mobile_nodes]]`` for home addresses HOA_BASE + [0, n)."""
    base = int(hd.HOA_BASE)
    out = []
    for i in range(n):
        out.append(f'[[ha.mobile_nodes]]\nhome_address = "{IPv6Address(base + i)}"\n')
        if routers:
            a, b = prefixes(i)
            out.append(f'mobile_network_prefixes = ["{a}", "{b}"]\n')
    return "".join(out)


class Daemon(hd.Target):
    """ha_daemon's daemon target with listed nodes (hosts or routers) instead of allow."""

    def __init__(self, bed: hd.Bed, kind: str, n: int) -> None:
        self.bed, self.kind = bed, kind
        self.dir = bed.tmp / f"{kind}-{int(time.time() * 1000)}"
        cfg = self.dir / "config"
        cfg.mkdir(parents=True)
        main = hd.CONFIG.format(defence="daemon", dad="false", daemon="")
        main = main.replace('default_action = "allow"', 'default_action = "deny"')
        if kind == "routers":  # served_prefixes: one policy rule for all 20,000 prefixes
            extra = f'accept_mobile_routers = true\nserved_prefixes = ["{SERVED}"]\n'
            main = main.replace("[ha]\n", "[ha]\n" + extra, 1)
        (cfg / "mip6.toml").write_text(main)
        (cfg / "nodes.toml").write_text(nodes_file(n, kind == "routers"))
        argv = ["daemon", "-c", str(cfg), "--state-dir", str(self.dir / "state")]
        argv += ["--socket", str(self.dir / "control.sock")]
        self.proc = bed.spawn([hd.PY, "-m", "mip6ctl", *argv], f"daemon-{kind}.log")


def generator(routers: bool) -> LoadGenerator:
    if not routers:
        return LoadGenerator("gen0", hd.HA, hd.HOA_BASE, hd.COA_BASE)

    def options(i: int) -> tuple[MobileNetworkPrefix, ...]:
        return tuple(MobileNetworkPrefix(64, p.network_address) for p in prefixes(i))

    flags = int(BUFlag.A | BUFlag.H | BUFlag.R)
    return LoadGenerator("gen0", hd.HA, hd.HOA_BASE, hd.COA_BASE, flags=flags, options_of=options)


def measure(args: argparse.Namespace, bed: hd.Bed, kind: str) -> dict[str, Any]:
    n = args.bindings
    gen = generator(kind == "routers")
    try:
        gen.ensure(n)
        hd.log(f"{kind}: start the daemon with {n} listed nodes")
        d = Daemon(bed, kind, n)
        d.wait_ready(gen, n - 1, timeout=args.start_timeout)  # the last one: a real BU
        time.sleep(1.0)
        out: dict[str, Any] = {"rss_mb_0": round(hd.proc_rss_mb(d.pid), 1)}
        hd.log(f"{kind}: register {n} at {args.register_rate}/s")
        out["register"] = hd.register(gen, d, 0, n, args.register_rate)
        time.sleep(1.0)
        out["rss_mb"] = round(hd.proc_rss_mb(d.pid), 1)
        out["routes_table_6275"] = bed.routes()
        pool = hd.refresh_rounds(n)
        sweep = {"seconds": args.step_seconds, "bound_ms": 50, "quantile": 0.999, "wait": 0.5}
        sweeps = [
            hd.sweep(gen, d, range(n), args.rates, rounds_of=pool, **sweep)
            for _ in range(args.runs)
        ]
        probe = list(range(min(n, int(args.latency_rate * args.latency_seconds))))
        lat = [hd.phase(gen, d, probe, args.latency_rate, wait=0.5)[0] for _ in range(args.runs)]
        out["refresh_max_rate_99.9pct_within_50ms"] = hd.stats([s["best_rate"] for s in sweeps])
        out["cpu_at_best"] = hd.stats([s["best_cpu"] for s in sweeps])
        out["latency_p50_ms"] = hd.stats([r.quantile(0.5) for r in lat])
        out["latency_p99_ms"] = hd.stats([r.quantile(0.99) for r in lat])
        out["latency_accepted"] = [r.accepted for r in lat]
        out["sweeps"] = sweeps
        d.stop()
        return out
    finally:
        gen.close()


def ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if a and b else None


def run(args: argparse.Namespace, bed: hd.Bed, out: dict[str, Any]) -> None:
    bed.build()
    os.sched_setaffinity(0, {1})
    bed.enter_gen()
    res = out["results"]
    for kind in ("hosts", "routers"):
        res[kind] = measure(args, bed, kind)
    h, r = res["hosts"], res["routers"]
    key = "refresh_max_rate_99.9pct_within_50ms"
    res["routers_over_hosts"] = {
        "refresh_rate": ratio(r[key]["median"], h[key]["median"]),
        "latency_p99": ratio(r["latency_p99_ms"]["median"], h["latency_p99_ms"]["median"]),
        "register_seconds": ratio(r["register"]["seconds"], h["register"]["seconds"]),
        "rss": ratio(r["rss_mb"], h["rss_mb"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bindings", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="1000,2000,4000,6000,8000,10000,12000,16000")
    ap.add_argument("--step-seconds", type=float, default=3.0)
    ap.add_argument("--register-rate", type=float, default=2000)
    ap.add_argument("--latency-rate", type=float, default=2000)
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--start-timeout", type=float, default=120.0)
    hd.add_output_args(ap)
    args = ap.parse_args()
    args.rates = [float(x) for x in args.rates.split(",")]
    rc, out = hd.run_bench("ha_nemo", args, lambda: hd.Bed(f"n{os.getpid()}"), run)
    return hd.emit(args, rc, out)


if __name__ == "__main__":
    raise SystemExit(main())
