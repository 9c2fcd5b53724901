"""Benchmark: the correspondent daemon under return routability + BU load from another namespace.

Issue #7: "Correspondent: >= 5,000 return-routability exchanges + BUs per second".

Two throwaway network namespaces joined by a veth pair:

* ``CN``: ``cn0`` (2001:db8:ff::1/64); the home prefix 2001:db8:1::/64 and the
  care-of prefix 2001:db8:5::/64 routed via the generator.  ``mip6ctl daemon``
  (``role = "cn"``, userspace signalling) runs here pinned to CPU 0;
* ``GEN``: ``gen0`` (2001:db8:ff::2/64).  This process enters it and pins itself
  to CPU 1 (bench/_cn_load.py): ``--mns`` mobile nodes (home address
  2001:db8:1::1:0 + i, care-of 2001:db8:5::1:0 + i).

One exchange = HoTI + CoTI answered with HoT + CoT, then a BU (HAO, Nonce
Indices, Binding Authorization Data signed with Kbm computed from the two
tokens received) answered with BA 0 whose authenticator verifies under that
Kbm (every ``--verify-every``-th BA is checked; default 1 = all).  Closed loop
with ``--window`` exchanges in flight.

Measured (median of ``--runs`` runs, min/max):

1. first pass: every home address once (``--mns`` new correspondent bindings);
2. steady state: ``--seconds`` s closed loop over the same home addresses
   (each exchange a full return routability + a refreshing BU);
   daemon and generator CPU use, exchange latency p50/p99;
3. baseline: the same generator against bench/_cn_echo.py (a minimal
   correspondent in plain Python over the same sockets, with the same
   crypto), and the ratio daemon / echo.

Bounded (``--budget`` s, a watchdog); namespaces and processes are removed on
any exit.  Needs root and 2 CPUs.

    sudo .venv/bin/python bench/cn_daemon.py [--mns 10000] [--runs 3] [--json] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _cn_load import CnLoad, RunResult  # noqa: E402
from ha_daemon import (  # noqa: E402
    PY,
    Bed,
    log,
    proc_cpu,
    proc_rss_mb,
    run_bench,
    sh,
    stats,
)

CN = IPv6Address("2001:db8:ff::1")
HOA_BASE = IPv6Address("2001:db8:1::1:0")
COA_BASE = IPv6Address("2001:db8:5::1:0")

CONFIG = """\
[node]
role = "cn"
name = "bench-cn"

[kernel]
signalling = "userspace"

[cn]
route_optimization = true
max_binding_lifetime = 420
default_action = "allow"

[log]
level = "info"
format = "text"
"""


class CnBed(Bed):
    """Bed's namespaces and cleanup, with the correspondent's addressing."""

    def build(self) -> None:
        for ns in (self.ha, self.gen):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
        sh("ip", "link", "add", "cn0", "netns", self.ha, "type", "veth",
           "peer", "name", "gen0", "netns", self.gen)  # fmt: skip
        for ns, dev in ((self.ha, "cn0"), (self.gen, "gen0")):
            for k in ("accept_ra=0", "autoconf=0", "dad_transmits=0"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.{k}")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.ha, "-6", "addr", "add", f"{CN}/64", "dev", "cn0", "nodad")
        sh("ip", "-n", self.gen, "-6", "addr", "add", "2001:db8:ff::2/64", "dev", "gen0", "nodad")
        for prefix in ("2001:db8:1::/64", "2001:db8:5::/64"):
            sh("ip", "-n", self.ha, "-6", "route", "add", prefix,
               "via", "2001:db8:ff::2", "dev", "cn0")  # fmt: skip
        sh("ip", "netns", "exec", self.gen, "ping", "-6", "-c", "1", "-W", "2", str(CN),
           check=False)  # fmt: skip


class Target:
    """The answerer in the CN namespace: the daemon or the echo baseline."""

    def __init__(self, bed: CnBed, kind: str, profile: str | None = None) -> None:
        self.bed, self.kind = bed, kind
        d = bed.tmp / f"{kind}-{int(time.time() * 1000)}"
        d.mkdir()
        self.log = f"{d.name}.log"
        self.socket = d / "control.sock"
        if kind == "echo":
            cmd = [PY, str(ROOT / "bench" / "_cn_echo.py"), str(CN)]
        else:
            (d / "config").mkdir()
            (d / "config" / "mip6.toml").write_text(CONFIG)
            argv = ["daemon", "-c", str(d / "config"), "--state-dir", str(d / "state"),
                    "--socket", str(d / "control.sock")]  # fmt: skip
            if profile:
                cmd = [PY, str(ROOT / "bench" / "_ha_variant.py"), "--profile", profile, *argv]
            else:
                cmd = [PY, "-m", "mip6ctl", *argv]
        self.proc = bed.spawn(cmd, self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        p = self.bed.tmp / self.log
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def wait_ready(self, gen: CnLoad, probe: int, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self.proc.returncode}: {self.tail()}")
            r, _ = gen.run(5, 1, start=probe, count=1, timeout=0.5)
            if r.completed:
                return
        raise RuntimeError(f"{self.kind} did not answer within {timeout} s: {self.tail()}")

    def binding_cache(self) -> dict[str, Any]:
        """The daemon's binding cache (status RPC), rows counted, not listed."""
        from mip6ctl.daemon.control import call

        bc = call(self.socket, "status", {}, timeout=30)["binding_cache"]
        rows = bc.pop("rows", [])
        bc["rows_returned"] = len(rows)
        bc["correspondent_rows"] = sum(1 for r in rows if not r.get("home_registration"))
        return bc

    def stop(self) -> int | None:
        return self.bed.stop(self.proc)


def timed(gen: CnLoad, target: Target, **kw: Any) -> tuple[RunResult, dict[str, Any]]:
    c0, g0, t0 = proc_cpu(target.pid), time.process_time(), time.monotonic()
    r, _ = gen.run(**kw)
    c1, g1, t1 = proc_cpu(target.pid), time.process_time(), time.monotonic()
    s = r.summary()
    s["target_cpu"] = round((c1 - c0) / (t1 - t0), 3)
    s["generator_cpu"] = round((g1 - g0) / (t1 - t0), 3)
    # rate per CPU-second the target got: robust when other work shares its CPU
    s["exchanges_per_target_cpu_s"] = round(r.completed / (c1 - c0), 1) if c1 > c0 else None
    s["loadavg_1min"] = os.getloadavg()[0]
    return r, s


def measure(args: argparse.Namespace, gen: CnLoad, target: Target, probe: int) -> dict[str, Any]:
    target.wait_ready(gen, probe)
    time.sleep(0.5)
    out: dict[str, Any] = {}
    if target.kind == "daemon":
        out["rss_mb_start"] = round(proc_rss_mb(target.pid), 1)
    log(f"{target.kind}: first pass over {args.mns} home addresses")
    _, s = timed(gen, target, seconds=0, window=args.window, start=0, count=args.mns,
                 verify_every=args.verify_every, timeout=args.timeout)  # fmt: skip
    log(f"  {s}")
    out["first_pass"] = s
    runs: list[dict[str, Any]] = []
    redone: list[dict[str, Any]] = []
    k = 0
    while len(runs) < args.runs:
        time.sleep(0.3)
        k += 1
        _, s = timed(gen, target, seconds=args.seconds, window=args.window,
                     start=(k * 7919) % args.mns, verify_every=args.verify_every,
                     timeout=args.timeout)  # fmt: skip
        if s["target_cpu"] < args.min_target_cpu and len(redone) < args.redo:
            # saturated by design (window): less than a whole CPU means another
            # process shared CPU 0 -- this shared machine's noise, not the target's rate
            log(f"  run {k}: {s['exchanges_per_s']}/s with target cpu {s['target_cpu']}: redone")
            redone.append(s)
            continue
        log(
            f"  run {k}: {s['exchanges_per_s']}/s lost {s['lost']} p50 "
            f"{s['exchange_p50_ms']} p99 {s['exchange_p99_ms']} ms cpu {s['target_cpu']} "
            f"gen cpu {s['generator_cpu']} per cpu-s {s['exchanges_per_target_cpu_s']}"
        )  # fmt: skip
        runs.append(s)
    out["steady"] = {
        "exchanges_per_s": stats([r["exchanges_per_s"] for r in runs]),
        "target_cpu": stats([r["target_cpu"] for r in runs]),
        "exchanges_per_target_cpu_s": stats([r["exchanges_per_target_cpu_s"] for r in runs]),
        "generator_cpu": stats([r["generator_cpu"] for r in runs]),
        "exchange_p50_ms": stats([r["exchange_p50_ms"] for r in runs]),
        "exchange_p99_ms": stats([r["exchange_p99_ms"] for r in runs]),
        "runs": runs,
        "redone_contended_runs": redone,
    }
    if args.latency_window:
        lat = []
        for k in range(args.runs):
            _, s = timed(gen, target, seconds=min(args.seconds, 3.0), window=args.latency_window,
                         start=(k * 104729) % args.mns, verify_every=args.verify_every,
                         timeout=args.timeout)  # fmt: skip
            lat.append(s)
        rates = [x["exchanges_per_s"] for x in lat]
        p50s, p99s = [x["exchange_p50_ms"] for x in lat], [x["exchange_p99_ms"] for x in lat]
        log(f"  window {args.latency_window}: {rates}/s, p50 {p50s} p99 {p99s} ms")
        out["small_window"] = {
            "window": args.latency_window,
            "exchanges_per_s": stats([r["exchanges_per_s"] for r in lat]),
            "exchange_p50_ms": stats([r["exchange_p50_ms"] for r in lat]),
            "exchange_p99_ms": stats([r["exchange_p99_ms"] for r in lat]),
            "target_cpu": stats([r["target_cpu"] for r in lat]),
            "runs": lat,
        }
    if target.kind == "daemon":
        out["rss_mb_end"] = round(proc_rss_mb(target.pid), 1)
        out["binding_cache_at_end"] = target.binding_cache()
    return out


def run(args: argparse.Namespace, bed: CnBed, out: dict[str, Any]) -> None:
    bed.build()
    os.sched_setaffinity(0, {1})
    bed.enter_gen()
    probe = args.mns  # one extra mobile node, never measured
    gen = CnLoad("gen0", CN, HOA_BASE, COA_BASE, args.mns + 1)
    log(f"templates for {args.mns + 1} mobile nodes built")
    res = out["results"]
    if not args.skip_echo:
        echo = Target(bed, "echo")
        try:
            res["echo"] = measure(args, gen, echo, probe)
        finally:
            echo.stop()
        gen.seq = type(gen.seq)("H", bytes(2 * gen.n))
    d = Target(bed, "daemon", args.profile)
    try:
        res["daemon"] = measure(args, gen, d, probe)
    finally:
        rc = d.stop()
    if rc not in (0, None):
        raise RuntimeError(f"daemon exited {rc}: {d.tail()}")
    dm = res["daemon"]["steady"]["exchanges_per_s"]["median"]
    res["goal_per_s"] = 5000
    res["meets_goal"] = bool(dm and dm >= 5000)
    if "echo" in res:
        e = res["echo"]["steady"]["exchanges_per_s"]["median"]
        res["ratio_daemon_to_echo"] = round(dm / e, 3) if e and dm else None
        dc = res["daemon"]["steady"]["exchanges_per_target_cpu_s"]["median"]
        ec = res["echo"]["steady"]["exchanges_per_target_cpu_s"]["median"]
        res["ratio_per_cpu_s_daemon_to_echo"] = round(dc / ec, 3) if dc and ec else None
    gen.close()


def _fmt(st: dict[str, Any], unit: str = "") -> str:
    if st.get("median") is None:
        return "n/a"
    return f"{st['median']:,}{unit} (min {st['min']:,}, max {st['max']:,})"


def render_md(out: dict[str, Any]) -> str:
    """The human summary (bench/results/cn_daemon.md)."""
    m, r, p = out["machine"], out["results"], out["parameters"]
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    ve = p["verify_every"]
    verified = "all" if ve == 1 else "none" if ve == 0 else f"every {ve}th"
    lines = [
        "# bench/cn_daemon.py — correspondent daemon: return routability + BU exchanges/s",
        "",
        f"Command: `{out['command']}`  ",
        f"Machine: {m['nproc']} vCPU, {m['cpu_model']}, Linux {m['kernel']}, Python "
        f"{m['python']}; load average at start {load} (shared machine).",
        "",
        f'`mip6ctl daemon` (`role = "cn"`, userspace signalling) pinned to CPU 0; the load '
        f"generator in another namespace pinned to CPU 1; {p['mns']:,} distinct home addresses "
        f"(one binding each); closed loop, {p['window']} exchanges in flight; one exchange = "
        "HoTI + CoTI → HoT + CoT → BU (Nonce Indices + Binding Authorization Data, Kbm from "
        "the received tokens) → BA 0 whose authenticator verifies "
        f"(verified: {verified}). Median of {p['runs']} runs of "
        f"{p['seconds']:g} s (min, max); runs in which the target got < {p['min_target_cpu']} "
        "of its CPU (another process on CPU 0) are redone, at most "
        f"{p['redo']} times, and kept in the JSON.",
        "",
        "| target | exchanges/s | per CPU-second of the target | target CPU | generator CPU "
        "| exchange p50 / p99 ms | first pass (new bindings) /s |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in ("daemon", "echo"):
        if k not in r:
            continue
        s = r[k]["steady"]
        lines.append(
            f"| {k} | {_fmt(s['exchanges_per_s'])} | {_fmt(s['exchanges_per_target_cpu_s'])} "
            f"| {s['target_cpu']['median']} | {s['generator_cpu']['median']} "
            f"| {s['exchange_p50_ms']['median']} / {s['exchange_p99_ms']['median']} "
            f"| {r[k]['first_pass']['exchanges_per_s']:,} |"
        )
    lines.append("")
    for k in ("daemon", "echo"):
        if k in r and "small_window" in r[k]:
            w = r[k]["small_window"]
            lines.append(
                f"- {k}, {w['window']} in flight: {_fmt(w['exchanges_per_s'], '/s')}; "
                f"p50 {_fmt(w['exchange_p50_ms'], ' ms')}, p99 {_fmt(w['exchange_p99_ms'], ' ms')}"
            )
    if "daemon" in r:
        d = r["daemon"]
        lines.append(
            f"- daemon binding cache at the end: {d.get('binding_cache_at_end', {}).get('count')}"
            f" entries; VmRSS {d.get('rss_mb_start')} → {d.get('rss_mb_end')} MB"
        )
    if "ratio_daemon_to_echo" in r:
        lines.append(
            f"- ratio daemon / echo: exchanges/s {r['ratio_daemon_to_echo']}, per CPU-second "
            f"{r.get('ratio_per_cpu_s_daemon_to_echo')}"
        )
    lines.append(
        f"- goal ≥ {r.get('goal_per_s', 5000):,}/s: {'met' if r.get('meets_goal') else 'NOT met'}"
    )
    lines.append(f"\nElapsed {out.get('elapsed_s')} s. Every run is in `cn_daemon.json`.")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mns", type=int, default=10_000, help="distinct home addresses")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one steady run")
    ap.add_argument("--window", type=int, default=256, help="exchanges in flight")
    ap.add_argument("--latency-window", type=int, default=8,
                    help="also run with this few in flight (latency; 0 = skip)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=1.0, help="an exchange is lost after this")
    ap.add_argument("--verify-every", type=int, default=1,
                    help="verify every n-th BA authenticator (1 = all, 0 = none)")  # fmt: skip
    ap.add_argument("--min-target-cpu", type=float, default=0.9,
                    help="redo a steady run in which the target got less CPU")  # fmt: skip
    ap.add_argument("--redo", type=int, default=6, help="at most this many runs redone")
    ap.add_argument("--skip-echo", action="store_true")
    ap.add_argument("--profile", help="cProfile the daemon; write stats to this file")
    ap.add_argument("--budget", type=float, default=600, help="hard time limit, seconds")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--out", help="also write the JSON here (and X.md next to X.json)")
    args = ap.parse_args()
    rc, out = run_bench("cn_daemon", args, lambda: CnBed(f"c{os.getpid()}"), run)
    if not out:
        return rc
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
        if args.out.endswith(".json") and not rc:
            Path(args.out[: -len(".json")] + ".md").write_text(render_md(out))
    if args.json:
        print(text)
    else:
        r = out["results"]
        for k in ("echo", "daemon"):
            if k in r:
                s = r[k]["steady"]["exchanges_per_s"]
                print(f"{k}: {s['median']} exchanges/s (min {s['min']}, max {s['max']})")
        if "ratio_daemon_to_echo" in r:
            print(f"ratio daemon/echo: {r['ratio_daemon_to_echo']}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
