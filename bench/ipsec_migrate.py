"""Benchmark: IPsec tunnel endpoints following the care-of address (XFRM MIGRATE, issue 14).

Two figures, each in a throwaway network namespace (mip6ctl.kernel.netns: it
vanishes with its thread), through the real path -- render, plan (which
turns a move into ``migrate`` changes), the plan executor, the kernel:

* ``mn_move_ms``: a mobile node's care-of address changes; time from the new
  `MobileNodeView` to migrated SAs and policies in the kernel (render + plan
  + executor + kernel; the engine's part, building the Binding Update, is
  measured separately as ``mn_engine_us``), median of --moves moves back and
  forth between two care-of addresses;
* ``ha_migrates_per_s``: a home agent holding --nodes mobile nodes with
  tunnel-mode protection (payload: out, fwd, in policies each); every node
  moves at once; migrated policies per second and bindings per second,
  median of --runs runs.  The baseline in the same run is the same move
  planned as replace-in-place (``XFRM_MSG_UPDPOLICY``, what a kernel without
  MIGRATE gets): ``ratio`` = its time / MIGRATE's.

On a kernel without ESP states (this project's development kernel) the
template uses IKE keying: policies only, as when an IKE daemon installs the
SAs -- the output says ``states: false``.  On a kernel with ESP (the vm tier's
Debian kernel, emulated: figures labelled so) pass --states for manual-key
SAs that move with their policies.

    sudo .venv/bin/python bench/ipsec_migrate.py [--nodes 10000] [--runs 3] [--moves 50]
        [--states] [--json]

Results:
- 2 vCPU VM ("AMD EPYC"), Linux 6.18, Python 3.11.7, quiet, ``--runs 3``.
  - Mobile node move: 0.43 ms (p90 0.59 ms); engine 5.9 µs.
  - Home agent: 30,000 policies of 10,000 nodes migrated in 3.32 s (9,032/s,
    3,011 bindings/s); replaced in place they take 8.02 s (ratio 2.41).
- Emulated vm tier (Debian 6.1, ESP SAs, 1,000 nodes).
  - Mobile node move: 22 ms.
  - Home agent: 544 policies/s (ratio 0.38).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._machine import cpu_model
from mip6ctl.config.model import Mip6Config
from mip6ctl.kernel import netns
from mip6ctl.kernel.executor import Executor
from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.reconciler import Reconciler
from mip6ctl.kernel.writer import Writer
from mip6ctl.state import ipsec
from mip6ctl.state.render import (
    Capabilities,
    Desired,
    HostFacts,
    MobileNodeView,
    render_binding,
    render_mobile_node,
)
from mip6ctl.state.xfrm import XfrmPolicy, XfrmState

HA = IPv6Address("2001:db8:1::1")
HOA = IPv6Address("2001:db8:1::100")
COAS = (IPv6Address("2001:db8:a::100"), IPv6Address("2001:db8:b::100"))
ENC, AUTH = bytes(range(16)), bytes(range(32))
#: changes per executor call on the home agent (the reconcile loop's max_batch order)
BATCH = 1000


def _template(states: bool) -> dict[str, Any]:
    t: dict[str, Any] = {"protect": ["payload"], "reqid": {"to_ha": 31, "to_mn": 32}}
    if states:
        t |= {
            "encryption": {"algorithm": "aes-cbc"},
            "authentication": {"algorithm": "hmac-sha256"},
            "spi": {"to_ha": 0x3001, "to_mn": 0x3002},
            "tunnel_spi": {"to_ha": 0x3003, "to_mn": 0x3004},
        }
    else:
        t["key_management"] = "ike"
    return t


def _facts(cfg: Mip6Config, states: bool, base: HostFacts) -> HostFacts:
    if not states:
        return base
    raw = {n: {"encryption": ENC, "authentication": AUTH} for n in cfg.ipsec}
    return base.with_keys(ipsec.keyring(cfg.ipsec, raw))


def _xfrm_only(d: Desired) -> Desired:
    out = Desired()
    for k, o in d.objects.items():
        if isinstance(o, XfrmPolicy | XfrmState):
            out.objects[k], out.origins[k] = o, d.origins[k]
    return out


class Kernel:
    """Observer + reconciler in the calling thread's namespace."""

    def __init__(self) -> None:
        self.obs = Observer(sources=("xfrm",))
        self.writer = Writer()
        self.rec = Reconciler(
            observer=self.obs, writer=self.writer, executor=Executor.in_namespace(self.writer)
        )

    def converge(self, desired: Desired, scope: set[tuple]) -> Any:
        plan = self.rec.plan(desired, scope=scope)
        report = self.rec.apply(plan, desired)
        if not report.ok:
            bad = [o for o in report.outcomes if not o.ok][:3]
            raise RuntimeError(f"apply failed: {bad}")
        return report

    def close(self) -> None:
        self.rec.executor.close()
        self.obs.close()
        self.writer.close()


# --------------------------------------------------------------------------- mobile node


def _mn_move(moves: int, states: bool) -> dict[str, Any]:
    cfg = Mip6Config.model_validate(
        {
            "node": {"role": "mn"},
            "kernel": {"tunnel": "ip6tnl", "signalling": "kernel"},
            "mn": {
                "home_address": f"{HOA}/64",
                "home_agent": str(HA),
                "interfaces": [{"name": "lo"}],
                "ipsec": "mn1",
            },
            "ipsec": {"mn1": _template(states)},
        }
    )
    facts = _facts(cfg, states, HostFacts())
    caps = Capabilities(tunnel="ip6tnl", migrate=True, esp=states)
    k = Kernel()
    try:

        def view(i: int) -> Desired:
            v = MobileNodeView(IPv6Interface(f"{HOA}/64"), HA, COAS[i % 2], "lo")
            return _xfrm_only(render_mobile_node(cfg, v, caps, facts))

        prev = view(0)
        k.converge(prev, set(prev.objects))
        times, kinds = [], set()
        for i in range(1, moves + 1):
            t0 = time.perf_counter()
            d = view(i)
            # the daemon's mobile key sweeps what the last view had (the SA at the old
            # care-of address): the plan pairs it with its successor, one MIGRATE
            report = k.converge(d, set(d.objects) | set(prev.objects))
            prev = d
            times.append(time.perf_counter() - t0)
            kinds |= {o.change.action for o in report.outcomes}
        assert kinds == {"migrate"}, kinds
        return {
            "mn_move_ms": round(statistics.median(times) * 1e3, 3),
            "mn_move_p90_ms": round(sorted(times)[int(0.9 * len(times))] * 1e3, 3),
            "objects_moved": len(report.outcomes),
        }
    finally:
        k.close()


def _mn_engine(samples: int) -> float:
    """The engine's side of a move: CareOfAddressChanged -> the Binding Update to send."""
    from mip6ctl.engine import events as ev
    from mip6ctl.engine.engine import Engine

    cfg = Mip6Config.model_validate(
        {
            "node": {"role": "mn"},
            "mn": {
                "home_address": f"{HOA}/64",
                "home_agent": str(HA),
                "interfaces": [{"name": "x"}],
            },
        }
    )
    e = Engine(cfg, 0.0)
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        out = e.handle(ev.CareOfAddressChanged(COAS[i % 2], "x"), float(i))
        times.append(time.perf_counter() - t0)
        assert out
    return round(statistics.median(times) * 1e6, 2)


# --------------------------------------------------------------------------- home agent


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    home_registration: bool = True
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def _ha_cfg(n: int, states: bool) -> Mip6Config:
    homes = [IPv6Address(int(IPv6Address("2001:db8:1::")) + 0x1000 + i) for i in range(n)]
    names = [f"mn{i}" if states else "fleet" for i in range(n)]
    templates: dict[str, Any] = {}
    for i, name in enumerate(names):
        t = _template(states)
        if states:  # a manual-key template per node: SPIs and reqids unique
            t["spi"] = {"to_ha": 0x10000 + 4 * i, "to_mn": 0x10001 + 4 * i}
            t["tunnel_spi"] = {"to_ha": 0x10002 + 4 * i, "to_mn": 0x10003 + 4 * i}
            t["reqid"] = {"to_ha": 0x10000 + 2 * i, "to_mn": 0x10001 + 2 * i}
        templates[name] = t
    return Mip6Config.model_validate(
        {
            "node": {"role": "ha"},
            "kernel": {"tunnel": "ip6tnl", "signalling": "kernel"},
            "ha": {
                "interfaces": ["lo"],
                "home_prefixes": ["2001:db8:1::/64"],
                "address": str(HA),
                "mobile_nodes": [
                    {"home_address": str(h), "ipsec": nm}
                    for h, nm in zip(homes, names, strict=True)
                ],
            },
            "ipsec": templates,
        }
    )


def _care_of(i: int, side: int) -> IPv6Address:
    return IPv6Address(int(IPv6Address(f"2001:db8:{0xA + side:x}::")) + 0x1000 + i)


def _ha_run(cfg: Mip6Config, states: bool, migrate: bool) -> dict[str, Any]:
    facts = _facts(cfg, states, HostFacts(HA))
    caps = Capabilities(tunnel="ip6tnl", migrate=migrate, esp=states)
    assert cfg.ha is not None
    homes = [m.home_address for m in cfg.ha.mobile_nodes]

    def desired(side: int) -> Desired:
        out = Desired()
        for i, h in enumerate(homes):
            out.merge(_xfrm_only(render_binding(cfg, B(h, _care_of(i, side)), caps, facts)))
        return out

    k = Kernel()
    try:
        d0 = desired(0)
        k.converge(d0, set(d0.objects))
        d1 = desired(1)
        plan = k.rec.plan(d1, scope=set(d1.objects) | set(d0.objects))
        if not migrate:  # the baseline: what a kernel without MIGRATE gets
            from mip6ctl.state.plan import Change, Plan

            plan = Plan(
                tuple(
                    Change("update", c.key, c.desired, c.observed, c.origin)
                    if c.action == "migrate"
                    else c
                    for c in plan.changes
                )
            )
        # in batches, as the reconcile loop applies a burst (one netlink batch of 30k
        # replaces outlasts the socket's timeout: the kernel's inexact policy lists)
        changes = list(plan.changes)
        outcomes = []
        t0 = time.perf_counter()
        for i in range(0, len(changes), BATCH):
            outcomes += k.rec.executor.apply(changes[i : i + BATCH])
        took = time.perf_counter() - t0
        assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
        moved = [o for o in outcomes if isinstance(o.change.desired, XfrmPolicy)]
        return {"seconds": took, "policies": len(moved)}
    finally:
        k.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--states", action="store_true", help="manual-key SAs (needs ESP)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    mn = netns.run_isolated(lambda: _mn_move(a.moves, a.states), timeout=600)
    mn["mn_engine_us"] = _mn_engine(2000)
    cfg = _ha_cfg(a.nodes, a.states)
    runs = []
    for _ in range(a.runs):
        m = netns.run_isolated(lambda: _ha_run(cfg, a.states, True), timeout=1800)
        u = netns.run_isolated(lambda: _ha_run(cfg, a.states, False), timeout=1800)
        runs.append((m, u))
    mig = statistics.median(r[0]["seconds"] for r in runs)
    upd = statistics.median(r[1]["seconds"] for r in runs)
    policies = runs[0][0]["policies"]
    doc = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "states": a.states,
        "nodes": a.nodes,
        "runs": a.runs,
        **mn,
        "ha_policies_moved": policies,
        "ha_move_all_s": round(mig, 3),
        "ha_migrates_per_s": round(policies / mig),
        "ha_bindings_per_s": round(a.nodes / mig),
        "ha_replace_all_s": round(upd, 3),
        "ratio_replace_over_migrate": round(upd / mig, 2),
    }
    if a.json:
        print(json.dumps(doc, indent=1))
    else:
        for k, v in doc.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
