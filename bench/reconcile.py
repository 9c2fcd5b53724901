"""Benchmark: the reconcile loop at 10k and 100k bindings against a real kernel.

Every run builds a throwaway network namespace owned by one thread
(mip6ctl.kernel.netns; it vanishes with the thread), loads the testbed home
agent's configuration, gives the loop N bindings and lets it converge.  Then,
against the observer's cache and without kernel writes (checked):

* ``noop_generation``: a new configuration generation with nothing changed
  (static render + plan, the full compare of cached binding objects against
  the cache, orphan scan) — what a reload costs;
* ``noop_all_keys``: every key queued and reconciled (cached per-binding
  render + scoped plans of all keys in batches) — the worst-case "reconcile
  everything" pass;
* ``baseline_full``: what existed before the loop: ``render()`` of all
  bindings + ``Reconciler.plan()`` of the full desired state (``ratio`` =
  baseline / noop_all_keys);
* ``out_of_sync`` and ``resync`` (kernel dump + compare);
* ``move_10k``: 10k bindings change care-of address — render + plan + batched
  apply + verification until the loop is idle;
* ``one_binding_ms``: one binding change through the asyncio driver until
  ``wait_reconciled`` returns, and ``thread_hop_ms``: what handing a pass to a
  worker thread would add (run_in_executor round trip);
* ``rss_mb``: RSS growth of a fresh process holding the bindings, their
  rendered desired state and the observer cache (child process).

At 100k bindings proxy NDP entries are off (``Capabilities(proxy_ndp=False)``:
home addresses defended by the daemon), because the kernel's 16-bucket proxy
hash makes 100k entries impractical (DESIGN.md scale facts).

    sudo .venv/bin/python bench/reconcile.py [--sizes 10000,100000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6ctl.config.loader import load_directory
from mip6ctl.daemon.reconcile_loop import ReconcileLoop, binding_key
from mip6ctl.kernel import netns
from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.reconciler import Reconciler
from mip6ctl.kernel.writer import Writer
from mip6ctl.state.render import Capabilities, HostFacts, render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = load_directory(os.path.join(ROOT, "examples", "testbed", "ha")).config
T = CFG.kernel.route_table
HOME = int(IPv6Address("2001:db8:1::")) + 0x10000
COA = int(IPv6Address("2001:db8:5::"))


@dataclass(frozen=True, slots=True)
class Bnd:
    home_address: IPv6Address
    care_of_address: IPv6Address
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def bindings(n: int, shift: int = 0) -> list[Bnd]:
    return [Bnd(IPv6Address(HOME + i), IPv6Address(COA + shift + i)) for i in range(n)]


def caps_for(n: int) -> Capabilities:
    return Capabilities(proxy_ndp=n <= 50_000)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CountingWriter:
    def __init__(self) -> None:
        self.inner = Writer()
        self.ops = 0

    def apply(self, ops: Any) -> list:
        ops = list(ops)
        self.ops += len(ops)
        return self.inner.apply(ops)


def drain(loop: ReconcileLoop) -> list[float]:
    """Run passes until nothing is queued or waiting for a retry; return pass durations."""
    passes = []
    while True:
        t0 = time.perf_counter()
        if loop.step():
            passes.append(time.perf_counter() - t0)
            continue
        due = loop.queue.next_due()
        if due is None:
            return passes
        time.sleep(max(0.0, due - loop.clock()))


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build(
    n: int, max_batch: int, held: list[Bnd] | None = None
) -> tuple[ReconcileLoop, Observer, CountingWriter, float]:
    """Namespace with the home link, loop with n bindings, converged."""
    netns.link_up()
    netns.add_veth("home0", "core0")
    obs = Observer(watch_tables=(T, T + 1))
    w = CountingWriter()
    loop = ReconcileLoop(
        CFG, caps_for(n), HostFacts(), obs, w, max_batch=max_batch, resync_interval=3600
    )
    for b in held if held is not None else bindings(n):
        loop.set_binding(b)
    t = timed(lambda: drain(loop))
    st = loop.status()
    if st["failing_keys"]:
        raise RuntimeError(f"initial apply failed: {st['failing']}")
    return loop, obs, w, t


def one_run(n: int, max_batch: int, move: int) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        loop, obs, w, initial = build(n, max_batch)
        out: dict[str, Any] = {"initial_apply_s": initial}
        ops = w.ops
        out["noop_generation_s"] = timed(lambda: (loop.set_generation(CFG, 2), drain(loop)))
        keys = [binding_key(b.home_address) for b in bindings(n)]

        def all_keys() -> None:
            loop.enqueue(("static",))
            for k in keys:
                loop.enqueue(k)
            drain(loop)

        out["noop_all_keys_s"] = timed(all_keys)
        out["out_of_sync_s"] = timed(loop.out_of_sync)
        out["resync_s"] = timed(lambda: (loop.resync(), drain(loop)))
        if w.ops != ops:
            raise RuntimeError(f"no-op reconciles wrote {w.ops - ops} kernel op(s)")
        rec = Reconciler(observer=obs, writer=w)
        bs = bindings(n)

        def baseline() -> None:
            desired = render(CFG, bs, caps_for(n), HostFacts())
            p = rec.plan(desired)
            if p.changes:
                raise RuntimeError(f"baseline plan not empty: {len(p.changes)}")

        out["baseline_full_s"] = timed(baseline)

        # one binding change through the asyncio driver, and what a thread hop costs
        async def latency() -> tuple[float, float]:
            loop.start()
            pool = concurrent.futures.ThreadPoolExecutor(1)
            ev = asyncio.get_running_loop()
            one, hop = [], []
            try:
                for i in range(200):
                    b = Bnd(IPv6Address(HOME + i), IPv6Address(COA + 0x100000 + i))
                    t0 = time.perf_counter()
                    loop.set_binding(b)
                    r = await loop.wait_reconciled(binding_key(b.home_address), 5.0)
                    one.append(time.perf_counter() - t0)
                    if not r:
                        raise RuntimeError(f"single reconcile failed: {r}")
                    t0 = time.perf_counter()
                    await ev.run_in_executor(pool, int)
                    hop.append(time.perf_counter() - t0)
            finally:
                await loop.stop()
                pool.shutdown()
            return statistics.median(one), statistics.median(hop)

        out["one_binding_s"], out["thread_hop_s"] = asyncio.run(latency())

        m = min(move, n)
        moved = bindings(m, shift=0x200000)
        ops = w.ops

        def move_all() -> list[float]:
            for b in moved:
                loop.set_binding(b)
            return drain(loop)

        t0 = time.perf_counter()
        passes = move_all()
        out["move_s"] = time.perf_counter() - t0
        out["move_max_pass_s"] = max(passes)
        out["move_kernel_ops"] = w.ops - ops
        st = loop.status()
        if st["failing_keys"]:
            raise RuntimeError(f"move failed: {st['failing']}")
        routes = [o for k, o in obs.owned.items() if k[0] == "route" and k[1] == T]
        moved_ok = sum(
            1
            for r in routes
            if r.encap is not None and int(IPv6Address(r.encap.segs[0])) >= COA + 0x200000
        )
        if moved_ok != m:
            raise RuntimeError(f"{moved_ok} of {m} routes moved")
        w.inner.close()
        obs.close()
        return out

    return netns.run_isolated(run, timeout=900)


def rss_child(n: int) -> None:
    """In a fresh interpreter: RSS growth for n bindings + desired state + observer cache."""

    def run() -> dict[str, float]:
        gc.collect()
        before = rss_bytes()
        held = bindings(n)  # the engine's binding cache holds these; the loop refers to them
        loop, obs, _w, _t = build(n, 1024, held)
        gc.collect()
        after = rss_bytes()
        return {
            "rss_mb": (after - before) / 1e6,
            "owned_objects": len(obs.owned),
            "bindings": loop.bindings(),
        }

    json.dump(netns.run_isolated(run, timeout=900), sys.stdout)


def _rss(n: int) -> float:
    r = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--rss-child", str(n)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode:
        raise RuntimeError(f"rss child failed: {r.stderr[-2000:]}")
    return float(json.loads(r.stdout)["rss_mb"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--move", type=int, default=10_000, help="bindings changing care-of address")
    ap.add_argument("--max-batch", type=int, default=1024)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    doc: dict[str, Any] = {
        "runs": args.runs,
        "max_batch": args.max_batch,
        "machine": f"{socket.gethostname()}, {os.cpu_count()} cpu, Linux {os.uname().release}, "
        f"Python {sys.version.split()[0]}",
        "sizes": {},
    }
    for n in (int(x) for x in args.sizes.split(",")):
        runs = [one_run(n, args.max_batch, args.move) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rss = [_rss(n) for _ in range(args.runs)]
        doc["sizes"][str(n)] = {
            "proxy_ndp": caps_for(n).proxy_ndp,
            "initial_apply_s": round(med["initial_apply_s"], 3),
            "noop_generation_ms": round(med["noop_generation_s"] * 1e3, 1),
            "noop_all_keys_ms": round(med["noop_all_keys_s"] * 1e3, 1),
            "baseline_full_ms": round(med["baseline_full_s"] * 1e3, 1),
            "ratio_baseline_over_all_keys": round(
                med["baseline_full_s"] / med["noop_all_keys_s"], 1
            ),
            "out_of_sync_ms": round(med["out_of_sync_s"] * 1e3, 1),
            "resync_ms": round(med["resync_s"] * 1e3, 1),
            "one_binding_ms": round(med["one_binding_s"] * 1e3, 3),
            "thread_hop_ms": round(med["thread_hop_s"] * 1e3, 3),
            "move_bindings": min(args.move, n),
            "move_s": round(med["move_s"], 3),
            "move_max_pass_ms": round(med["move_max_pass_s"] * 1e3, 1),
            "move_kernel_ops": int(med["move_kernel_ops"]),
            "rss_mb": round(statistics.median(rss), 1),
            "rss_mb_per_100k": round(statistics.median(rss) * 100_000 / n, 1),
            "all_runs": [{k: round(v, 4) for k, v in r.items()} for r in runs],
        }
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(doc["machine"])
        for n, row in doc["sizes"].items():
            print(f"\n{n} bindings (medians of {args.runs} runs)")
            for k, v in row.items():
                if k != "all_runs":
                    print(f"  {k:32} {v!s:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
