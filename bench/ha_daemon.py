"""Benchmark: the real home agent daemon under Binding Update load from another namespace.

Two throwaway network namespaces joined by a veth pair:

* ``HA``: interface ``home0`` (2001:db8:1::1/64 home link address, 2001:db8:ff::1/64
  transit), the care-of prefix 2001:db8:5::/64 routed via the generator;
  ``mip6ctl daemon`` runs here as a subprocess pinned to CPU 0, with a copy of
  examples/testbed/ha adapted for scale (``default_action = "allow"``, no DAD
  except in the DAD run, ``home_address_defence = "daemon"``, seg6 backend,
  userspace signalling, the largest binding lifetime);
* ``GEN``: ``gen0`` (2001:db8:ff::2/64).  This process enters it and pins
  itself to CPU 1: pre-built BUs (HAO, correct MH checksum) leave through an
  IPPROTO_RAW socket at an open-loop target rate; BAs are captured at the link
  layer (AF_PACKET + the transport's BPF filter) and matched by (home address,
  sequence).  Care-of addresses are not assigned here, so this kernel drops
  the BAs silently (not forwarding; no ICMP) after the capture saw them.

Measured (each the median of ``--runs`` runs with min/max):

1. refresh BUs/s on one core: open-loop sweep, the highest offered rate at
   which >= 99.9 % of the BUs get BA 0 within 50 ms; daemon CPU use per step;
2. first registrations/s with 100k bindings present: the highest offered rate
   at which >= 99.9 % get BA 0 within 1 s (the BU retransmission timer);
3. BU→BA latency p50/p99 at 100k bindings with refresh at ``--latency-rate``/s;
4. seg6 routes in table 6275 and the daemon's VmRSS at 0, 10k and 100k bindings;
5. baseline: the same generator and sweep against a trivial Python echo over
   the same sockets (bench/_ha_echo.py), and the ratio daemon / echo;
6. one DAD run (first registrations with DAD on: ~1 s each).

Bounded (``--budget`` seconds, a watchdog), namespaces and processes removed on
any exit (exception, Ctrl-C, SIGTERM).  Needs root.

    sudo .venv/bin/python bench/ha_daemon.py [--bindings 100000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _ha_load import LoadGenerator, PhaseResult  # noqa: E402

PY = sys.executable
HA = IPv6Address("2001:db8:1::1")
HOA_BASE = IPv6Address("2001:db8:1::1:0")
COA_BASE = IPv6Address("2001:db8:5::1:0")
TABLE = 6275
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIG = """\
[node]
role = "ha"
name = "bench-ha"

[kernel]
tunnel = "seg6"
signalling = "userspace"
home_address_defence = "{defence}"

[ha]
interfaces = ["home0"]
home_prefixes = ["2001:db8:1::/64"]
address = "2001:db8:1::1"
max_binding_lifetime = 262140
binding_refresh_advice = 1800
default_action = "allow"
insecure_allow_unprotected = true   # a benchmark's own testbed: no IPsec here
duplicate_address_detection = {dad}

[log]
level = "info"
format = "text"
{daemon}"""


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def sh(*args: str, check: bool = True, timeout: float = 60) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


# --------------------------------------------------------------------------- namespaces


class Bed:
    """The two namespaces, the veth, and every process started in them."""

    def __init__(self, tag: str) -> None:
        self.ha = f"mip6b-ha-{tag}"
        self.gen = f"mip6b-gen-{tag}"
        self.tmp = Path(tempfile.mkdtemp(prefix="mip6-bench-ha-"))
        self.procs: list[subprocess.Popen[Any]] = []
        self.created: list[str] = []
        self._orig_ns: int | None = None

    def build(self) -> None:
        for ns in (self.ha, self.gen):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
        sh(
            "ip",
            "link",
            "add",
            "home0",
            "netns",
            self.ha,
            "type",
            "veth",
            "peer",
            "name",
            "gen0",
            "netns",
            self.gen,
        )
        for ns, dev in ((self.ha, "home0"), (self.gen, "gen0")):
            for k in ("accept_ra=0", "autoconf=0", "dad_transmits=0"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.{k}")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for a in ("2001:db8:1::1/64", "2001:db8:ff::1/64"):
            sh("ip", "-n", self.ha, "-6", "addr", "add", a, "dev", "home0", "nodad")
        sh("ip", "-n", self.gen, "-6", "addr", "add", "2001:db8:ff::2/64", "dev", "gen0", "nodad")
        sh(
            "ip",
            "-n",
            self.ha,
            "-6",
            "route",
            "add",
            "2001:db8:5::/64",
            "via",
            "2001:db8:ff::2",
            "dev",
            "home0",
        )
        sh(
            "ip",
            "-n",
            self.gen,
            "-6",
            "route",
            "add",
            "2001:db8:1::/64",
            "via",
            "2001:db8:ff::1",
            "dev",
            "gen0",
        )
        # neighbours resolved once, up front (the first BUs must not wait for ND)
        sh(
            "ip",
            "netns",
            "exec",
            self.gen,
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "2001:db8:ff::1",
            check=False,
        )

    def enter_gen(self) -> None:
        """Move this (single-threaded) process into the generator namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        self._orig_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.gen}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    def leave_gen(self) -> None:
        if self._orig_ns is None:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(self._orig_ns, 0x40000000)
        os.close(self._orig_ns)
        self._orig_ns = None

    def spawn(self, argv: list[str], log_name: str, cpu: int = 0) -> subprocess.Popen[Any]:
        out = open(self.tmp / log_name, "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ha, "taskset", "-c", str(cpu), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[Any], timeout: float = 30.0) -> int | None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def routes(self) -> int:
        out = sh(
            "ip",
            "-n",
            self.ha,
            "-6",
            "route",
            "show",
            "table",
            str(TABLE),
            check=False,
            timeout=120,
        )
        return sum(1 for line in out.splitlines() if "encap seg6 mode" in line)

    def cleanup(self) -> None:
        for p in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(p, timeout=10)
        self.leave_gen()
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)
        self.created = []
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- processes


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` (all threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Target:
    """A BU answerer in the HA namespace: the daemon, or the echo baseline."""

    def __init__(
        self,
        bed: Bed,
        kind: str,
        *,
        dad: bool = False,
        profile: str | None = None,
        reconcile_interval: float | None = None,
        variant: str | None = None,
        reuse: Target | None = None,
    ):
        self.bed, self.kind = bed, kind
        if reuse is not None:  # a restart: the same configuration and binding cache
            self.dir = reuse.dir
        else:
            self.dir = bed.tmp / f"{kind}-{int(time.time() * 1000)}"
            self.dir.mkdir()
        if kind == "echo":
            self.proc = bed.spawn([PY, str(ROOT / "bench" / "_ha_echo.py"), str(HA)], "echo.log")
            return
        cfg = self.dir / "config"
        cfg.mkdir(exist_ok=True)
        (cfg / "mip6.toml").write_text(
            CONFIG.format(
                defence="daemon",
                dad="true" if dad else "false",
                daemon=f"\n[daemon]\nreconcile_interval = {reconcile_interval:g}\n"
                if reconcile_interval
                else "",
            )
        )
        argv = [
            "daemon",
            "-c",
            str(cfg),
            "--state-dir",
            str(self.dir / "state"),
            "--socket",
            str(self.dir / "control.sock"),
        ]
        if profile or variant:
            cmd = [PY, str(ROOT / "bench" / "_ha_variant.py")]
            if profile:
                cmd += ["--profile", profile]
            if variant:
                cmd += ["--variant", variant]
            cmd += argv
        else:
            cmd = [PY, "-m", "mip6ctl", *argv]
        self.proc = bed.spawn(cmd, f"daemon-{self.dir.name}.log")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, gen: LoadGenerator, probe_index: int, timeout: float = 60.0) -> None:
        """Until a probe BU gets its BA (the transport is open and the engine answers)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.tail()}")
            r = gen.run([probe_index], 100.0, wait=0.5)
            if r.accepted:
                return
        raise RuntimeError(f"{self.kind} did not answer within {timeout} s: {self.tail()}")

    def tail(self) -> str:
        logs = sorted(self.bed.tmp.glob("*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace")[-2000:] if logs else ""

    def stop(self) -> None:
        self.bed.stop(self.proc)


# --------------------------------------------------------------------------- measurements


def stats(values: list[float | None]) -> dict[str, Any]:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "runs": values}
    return {
        "median": round(statistics.median(v), 3),
        "min": round(min(v), 3),
        "max": round(max(v), 3),
        "runs": [None if x is None else round(x, 3) for x in values],
    }


def phase(
    gen: LoadGenerator, target: Target, indexes: Any, rate: float, **kw: Any
) -> tuple[PhaseResult, float]:
    """One open-loop phase; returns its result and the target's CPU use (fraction of a core)."""
    c0, t0 = proc_cpu(target.pid), time.monotonic()
    r = gen.run(indexes, rate, **kw)
    c1, t1 = proc_cpu(target.pid), time.monotonic()
    return r, (c1 - c0) / (t1 - t0)


def register(gen: LoadGenerator, target: Target, lo: int, hi: int, rate: float) -> dict[str, Any]:
    """First registrations of home addresses [lo, hi) at ``rate``/s; retry the unanswered."""
    gen.ensure(hi)
    t0 = time.monotonic()
    todo = list(range(lo, hi))
    res = None
    for _attempt in range(4):
        res = gen.run(todo, rate, wait=6.0)
        if res.accepted == len(todo):
            break
        # unanswered / refused ones once more (a new sequence each time)
        log(f"  register: {res.accepted}/{len(todo)} accepted {res.statuses}, retrying the rest")
        todo = sorted(set(res.failed))
    took = time.monotonic() - t0
    assert res is not None
    return {"count": hi - lo, "seconds": round(took, 2), "last": res.summary(1000)}


def sweep(
    gen: LoadGenerator,
    target: Target,
    indexes: range,
    rates: list[float],
    *,
    seconds: float,
    bound_ms: float,
    quantile: float,
    wait: float,
    rounds_of: Any = None,
    pause: float = 0.5,
) -> dict[str, Any]:
    """Ascending open-loop rates until two in a row fail; the best passing rate."""
    steps = []
    best = None
    fails = 0
    for rate in rates:
        n = int(rate * seconds)
        if rounds_of is not None:
            idx, rounds = rounds_of(n)
        else:
            idx, rounds = list(indexes)[:n], 1
        r, cpu = phase(gen, target, idx, rate, wait=wait, rounds=rounds)
        ok = r.within(bound_ms) >= quantile
        s = r.summary(bound_ms)
        s["daemon_cpu"] = round(cpu, 3)
        s["pass"] = ok
        steps.append(s)
        frac = s[f"within_{bound_ms:g}ms"]
        log(
            f"  {target.kind} {rate:8.0f}/s: within {bound_ms:g}ms {frac:.4f}"
            f" p50 {s['p50_ms']} p99 {s['p99_ms']} ms cpu {cpu:.2f}"
            f" sent/s {s['achieved_send_per_s']} {'PASS' if ok else 'fail'}"
        )
        if ok:
            best, fails = rate, 0
            best_cpu = cpu
        else:
            fails += 1
            if fails >= 2:
                break
        time.sleep(pause)
    return {
        "best_rate": best,
        "best_cpu": round(best_cpu, 3) if best is not None else None,
        "steps": steps,
    }


def refresh_rounds(pool: int) -> Any:
    """``n`` refresh BUs spread over ``pool`` registered home addresses."""

    def f(n: int) -> tuple[list[int], int]:
        if n <= pool:
            return list(range(n)), 1
        rounds = -(-n // pool)
        return list(range(pool)), rounds

    return f


def latency_run(gen: LoadGenerator, d: Target, n: int, args: argparse.Namespace, k: int) -> Any:
    """One latency run: ``--latency-seconds`` of refresh BUs at ``--latency-rate``/s."""
    cnt = int(args.latency_rate * args.latency_seconds)
    lo = (k * cnt) % n
    idx = [(lo + j) % n for j in range(cnt)]
    t0 = time.monotonic()
    r, cpu = phase(gen, d, idx, args.latency_rate, wait=1.0)
    log(f"  [{t0:.1f}-{time.monotonic():.1f}] {r.summary(5)} cpu {cpu:.2f}")
    time.sleep(0.5)
    return r, cpu


def latency_stats(n: int, args: argparse.Namespace, lat: list[Any]) -> dict[str, Any]:
    return {
        "bindings": n,
        "rate_per_s": args.latency_rate,
        "p50_ms": stats([r.quantile(0.5) for r, _ in lat]),
        "p99_ms": stats([r.quantile(0.99) for r, _ in lat]),
        "p999_ms": stats([r.quantile(0.999) for r, _ in lat]),
        "max_ms": stats([r.latencies_ms[-1] if r.latencies_ms else None for r, _ in lat]),
        "daemon_cpu": stats([c for _, c in lat]),
        "runs": [r.summary(5) for r, _ in lat],
    }


def latency_variants(
    gen: LoadGenerator,
    bed: Bed,
    d: Target,
    n: int,
    args: argparse.Namespace,
    res: dict[str, Any],
    probe: int,
) -> Target:
    """A/B: ``--runs`` rounds over ``--variants`` (bench/_ha_variant.py), interleaved;
    each variant is a restart of the daemon on the same binding cache and kernel state
    (its bindings are restored and adopted), then ``--latency-per-variant`` runs."""
    lat: dict[str, list[Any]] = {v: [] for v in args.variants}
    k = 0
    for rnd in range(args.runs):
        for v in args.variants:
            if rnd or v != args.variants[0]:
                d.stop()
                t0 = time.monotonic()
                d = Target(
                    bed,
                    "daemon",
                    reconcile_interval=args.reconcile_interval,
                    variant=v,
                    reuse=d,
                )
                d.wait_ready(gen, probe, timeout=120)
                log(f" variant {v}: restarted in {time.monotonic() - t0:.1f} s")
                time.sleep(args.settle)
            for _ in range(args.latency_per_variant):
                log(f" variant {v} round {rnd + 1}")
                lat[v].append(latency_run(gen, d, n, args, k))
                k += 1
    res["latency_variants"] = {v: latency_stats(n, args, x) for v, x in lat.items()}
    for v, x in res["latency_variants"].items():
        log(
            f" {v}: p50 {x['p50_ms']['median']} p99 {x['p99_ms']['median']}"
            f" ({x['p99_ms']['min']}-{x['p99_ms']['max']}) max {x['max_ms']['median']}"
            f" cpu {x['daemon_cpu']['median']}; p99 runs {x['p99_ms']['runs']}"
        )
    return d


def rates_from(start: float, stop: float, factor: float) -> list[float]:
    out, r = [], start
    while r <= stop:
        out.append(round(r, -2))
        r *= factor
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, bed: Bed, out: dict[str, Any]) -> None:
    n = args.bindings
    small = min(10_000, n)
    bed.build()
    os.sched_setaffinity(0, {1})
    bed.enter_gen()
    gen = LoadGenerator("gen0", HA, HOA_BASE, COA_BASE)
    # first registrations use [n, n + most), the DAD and comparison runs the addresses
    # below the probe address, which is never measured
    most = args.runs * sum(
        min(args.new_registrations, int(r * args.step_seconds)) for r in args.reg_rates
    )
    probe = n + most + args.dad_count * (args.runs + 3) + small + 10
    gen.ensure(probe + 1)
    log(f"templates for {probe + 1} home addresses built")
    res = out["results"]

    # ---- baseline echo: same generator, same sweep ------------------------------
    if not (args.skip_echo or args.latency_only or args.registrations_only):
        log("baseline: echo")
        echo = Target(bed, "echo")
        echo.wait_ready(gen, probe, timeout=30)
        pool = refresh_rounds(small)
        sweeps = [
            sweep(
                gen,
                echo,
                range(small),
                args.rates,
                seconds=args.step_seconds,
                bound_ms=50,
                quantile=0.999,
                wait=0.5,
                rounds_of=pool,
            )
            for _ in range(args.runs)
        ]
        lat = [
            phase(
                gen,
                echo,
                list(range(small)),
                args.latency_rate,
                wait=0.5,
                rounds=max(1, int(args.latency_rate * args.step_seconds) // small),
            )[0]
            for _ in range(args.runs)
        ]
        echo.stop()
        res["echo"] = {
            "max_rate_99.9pct_within_50ms": stats([s["best_rate"] for s in sweeps]),
            "cpu_at_best": stats([s["best_cpu"] for s in sweeps]),
            "latency_p50_ms": stats([r.quantile(0.5) for r in lat]),
            "latency_p99_ms": stats([r.quantile(0.99) for r in lat]),
            "sweeps": sweeps,
        }

    # ---- the daemon -----------------------------------------------------------
    log("daemon: start")
    d = Target(
        bed,
        "daemon",
        profile=args.profile,
        reconcile_interval=args.reconcile_interval,
        variant=args.variants[0] if args.variants else None,
    )
    d.wait_ready(gen, probe, timeout=60)
    time.sleep(1.0)
    rss = {"0": proc_rss_mb(d.pid)}
    routes = {"0": bed.routes()}
    log(f"daemon pid {d.pid} rss {rss['0']:.1f} MB, routes {routes['0']}")

    log(f"register {small} at {args.register_rate}/s")
    regs = [register(gen, d, 0, small, args.register_rate)]
    time.sleep(1.0)
    rss[str(small)] = proc_rss_mb(d.pid)
    routes[str(small)] = bed.routes()
    log(f"  {regs[-1]}; rss {rss[str(small)]:.1f} MB, routes {routes[str(small)]}")

    log(f"1. refresh sweep at {small} bindings")
    pool = refresh_rounds(small)
    sweeps = []
    for k in range(0 if args.latency_only or args.registrations_only else args.runs):
        log(f" sweep {k + 1}/{args.runs}")
        sweeps.append(
            sweep(
                gen,
                d,
                range(small),
                args.rates,
                seconds=args.step_seconds,
                bound_ms=50,
                quantile=0.999,
                wait=1.0,
                rounds_of=pool,
            )
        )
    res["refresh_small"] = {
        "bindings": small,
        "max_rate_99.9pct_within_50ms": stats([s["best_rate"] for s in sweeps]),
        "daemon_cpu_at_best": stats([s["best_cpu"] for s in sweeps]),
        "sweeps": sweeps,
    }

    if n > small:
        step = 10_000
        log(f"register up to {n} at {args.register_rate}/s")
        for lo in range(small, n, step):
            regs.append(register(gen, d, lo, min(n, lo + step), args.register_rate))
            log(f"  {min(n, lo + step)}: {regs[-1]['seconds']} s rss {proc_rss_mb(d.pid):.1f} MB")
        time.sleep(2.0)
    rss[str(n)] = proc_rss_mb(d.pid)
    routes[str(n)] = bed.routes()
    log(f"at {n}: rss {rss[str(n)]:.1f} MB, routes {routes[str(n)]}")
    res["registration_phases"] = regs
    res["held"] = {
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "seg6_routes_table_6275": routes,
    }

    log(f"3. latency at {n} bindings, refresh {args.latency_rate}/s")
    if args.registrations_only:
        pass
    elif args.variants:
        d = latency_variants(gen, bed, d, n, args, res, probe)
    else:
        lat = [latency_run(gen, d, n, args, k) for k in range(args.runs)]
        res["latency_at_scale"] = latency_stats(n, args, lat)
    if args.latency_only:
        d.stop()
        gen.close()
        return

    if n > small and not args.skip_scale_sweep and not args.registrations_only:
        log(f"1b. refresh sweep at {n} bindings")
        big = refresh_rounds(n)
        sw = [
            sweep(
                gen,
                d,
                range(n),
                args.rates,
                seconds=args.step_seconds,
                bound_ms=50,
                quantile=0.999,
                wait=1.0,
                rounds_of=big,
            )
            for _ in range(args.runs)
        ]
        res["refresh_at_scale"] = {
            "bindings": n,
            "max_rate_99.9pct_within_50ms": stats([s["best_rate"] for s in sw]),
            "daemon_cpu_at_best": stats([s["best_cpu"] for s in sw]),
            "sweeps": sw,
        }

    log(f"2. first registrations with {n} bindings present")
    nxt = n
    fr = []
    for k in range(args.runs):
        steps = []
        best = None
        fails = 0
        for rate in args.reg_rates:
            cnt = min(args.new_registrations, int(rate * args.step_seconds))
            r, cpu = phase(gen, d, range(nxt, nxt + cnt), rate, wait=6.0)
            nxt += cnt
            ok = r.within(1000) >= 0.999
            s = r.summary(1000)
            s["daemon_cpu"] = round(cpu, 3)
            s["pass"] = ok
            steps.append(s)
            log(
                f"  run {k + 1} {rate:6.0f}/s: within 1s {s['within_1000ms']:.4f} "
                f"p50 {s['p50_ms']} p99 {s['p99_ms']} ms cpu {cpu:.2f} {'PASS' if ok else 'fail'}"
            )
            if ok:
                best, fails = rate, 0
            else:
                fails += 1
                if fails >= 2:
                    break
            time.sleep(1.0)
        fr.append({"best_rate": best, "steps": steps})
    res["first_registrations"] = {
        "bindings_present_at_start": n,
        "max_rate_99.9pct_within_1s": stats([x["best_rate"] for x in fr]),
        "runs": fr,
    }
    rss["end"] = proc_rss_mb(d.pid)
    res["held"]["rss_mb"]["end"] = round(rss["end"], 1)
    res["held"]["bindings_at_end"] = nxt
    d.stop()

    if not args.skip_dad and not args.registrations_only:
        log("6. DAD run (fresh daemon, DAD on)")
        dd = Target(bed, "daemon", dad=True)
        dd.wait_ready(gen, probe - 1, timeout=60)
        base = probe - 1 - args.dad_count - 1
        dr = [
            phase(
                gen,
                dd,
                range(base - k * args.dad_count, base - (k - 1) * args.dad_count),
                args.dad_rate,
                wait=12.0,
            )[0]
            for k in range(1, args.runs + 1)
        ]
        dd.stop()
        res["dad_first_registration"] = {
            "rate_per_s": args.dad_rate,
            "count_per_run": args.dad_count,
            "p50_ms": stats([r.quantile(0.5) for r in dr]),
            "p99_ms": stats([r.quantile(0.99) for r in dr]),
            "accepted_fraction": stats([r.accepted / r.sent for r in dr]),
        }

    if "echo" in res:
        e = res["echo"]["max_rate_99.9pct_within_50ms"]["median"]
        dm = res["refresh_small"]["max_rate_99.9pct_within_50ms"]["median"]
        res["ratio_daemon_to_echo"] = round(dm / e, 3) if e and dm else None
    gen.close()


def run_bench(
    name: str,
    args: argparse.Namespace,
    make_bed: Callable[[], Any],
    body: Callable[[argparse.Namespace, Any, dict[str, Any]], None],
) -> tuple[int, dict[str, Any]]:
    """What every daemon bench does around its body (bench/ha_daemon.py, bench/cn_daemon.py):
    refuse without root or two CPUs, enforce ``args.budget``, build the result document,
    keep the daemon logs on failure (or in ``args.keep_logs``), always tear the bed down.
    Returns (exit code, document); an empty document when the bench could not start."""
    if os.geteuid() != 0:
        sys.stderr.write(f"bench/{name}.py needs root (network namespaces, raw sockets)\n")
        return 2, {}
    if (os.cpu_count() or 1) < 2:
        sys.stderr.write(f"bench/{name}.py needs 2 CPUs (daemon and generator pinned apart)\n")
        return 2, {}

    def _deadline(*_a: object) -> None:
        raise TimeoutError(f"time budget of {args.budget:.0f} s exceeded")

    def _term(*_a: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, _deadline)
    signal.signal(signal.SIGTERM, _term)
    signal.alarm(int(args.budget))
    started = time.time()
    out: dict[str, Any] = {
        "benchmark": name,
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "machine": machine(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("json", "out")},
        "results": {},
    }
    bed = make_bed()
    rc = 0
    try:
        body(args, bed, out)
    except (KeyboardInterrupt, TimeoutError, Exception) as e:
        log(f"stopped: {type(e).__name__}: {e}")
        out["error"] = f"{type(e).__name__}: {e}"
        rc = 1
    finally:
        signal.alarm(0)
        with contextlib.suppress(Exception):
            logs = {p.name: p.read_text(errors="replace")[-3000:] for p in bed.tmp.glob("*.log")}
            if rc:
                out["logs_tail"] = logs
            keep = getattr(args, "keep_logs", None)
            if keep:
                os.makedirs(keep, exist_ok=True)
                for p in bed.tmp.glob("*.log"):
                    shutil.copy(p, keep)
        bed.cleanup()
    out["elapsed_s"] = round(time.time() - started, 1)
    return rc, out


def add_output_args(ap: argparse.ArgumentParser, budget: float = 1800) -> None:
    """The options every daemon bench around `run_bench` shares."""
    ap.add_argument("--keep-logs", help="copy the daemon logs into this directory")
    ap.add_argument("--budget", type=float, default=budget, help="hard time limit, seconds")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--out", help="also write the JSON here")


def emit(args: argparse.Namespace, rc: int, out: dict[str, Any]) -> int:
    """Write (``--out``) and print (all with ``--json``, else the results) a bench's document."""
    if not out:
        return rc
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text if args.json else json.dumps(out["results"], indent=1)[:6000])
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bindings", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="2000,4000,6000,8000,10000,12000,14000,16000,20000,24000")
    ap.add_argument("--reg-rates", default="500,1000,1500,2000,3000,4000,6000")
    ap.add_argument("--step-seconds", type=float, default=3.0)
    ap.add_argument("--register-rate", type=float, default=2000)
    ap.add_argument("--new-registrations", type=int, default=10_000)
    ap.add_argument("--latency-rate", type=float, default=2000)
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--dad-rate", type=float, default=100)
    ap.add_argument("--dad-count", type=int, default=200)
    ap.add_argument("--skip-echo", action="store_true")
    ap.add_argument("--skip-dad", action="store_true")
    ap.add_argument("--skip-scale-sweep", action="store_true")
    ap.add_argument("--profile", help="cProfile the daemon; write stats to this file")
    ap.add_argument(
        "--reconcile-interval",
        type=float,
        help="the daemon's full-resync period in seconds (default: its own, 60 s); "
        "a short one puts resyncs inside every latency run",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="register --bindings, then only the latency runs (row 3): no echo, no sweeps, "
        "no first-registration or DAD runs",
    )
    ap.add_argument(
        "--registrations-only",
        action="store_true",
        help="register --bindings, then only the first-registration sweep (row 2)",
    )
    ap.add_argument(
        "--variants",
        default="",
        help="comma-separated bench/_ha_variant.py variants for row 3, interleaved over "
        "--runs rounds (the daemon restarts on the same bindings for each)",
    )
    ap.add_argument("--latency-per-variant", type=int, default=1)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after a restart")
    add_output_args(ap)
    args = ap.parse_args()
    args.rates = [float(x) for x in args.rates.split(",")]
    args.reg_rates = [float(x) for x in args.reg_rates.split(",")]
    args.variants = [v for v in args.variants.split(",") if v]
    rc, out = run_bench("ha_daemon", args, lambda: Bed(f"{os.getpid()}"), run)
    return emit(args, rc, out)


if __name__ == "__main__":
    sys.exit(main())
