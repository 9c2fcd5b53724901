"""Load time of a home agent configuration with many mobile nodes (goal: 20,000 in well under 1 s).

Generates a configuration directory with ``--nodes`` ``[[ha.mobile_nodes]]``
entries (every node a description, every 10th its own lifetime, every 100th
a mobile network prefix, node 0 an IKE template -- a template protects one
node, issue 14), spread over ``--files`` files,
in a temporary directory, and times ``load_directory`` (read + parse + line
map + validate + checks) ``--runs`` times in this process. Also times the
stages on their own, so a regression shows where it is: ``key_lines`` (the
line map and the input limits), ``tomllib.loads`` (the values),
``model_validate`` and ``checks.check``. Reports medians.

    .venv/bin/python bench/config_load.py [--nodes 20000] [--files 1] [--runs 7] [--json]

Results: 2 vCPU VM ("AMD EPYC"), Linux 6.18, Python 3.11.7, ``--runs 7``
with another benchmark running on the machine: 20,000 nodes in one 2.1 MB
file load in a median of 657 ms (min 604 ms): tomllib 369 ms, the line map
153 ms, the model 123 ms, the checks 30 ms.  Before issue 21 the same load
took 47 s: the line map counted newlines from the start of the file for every
key.  ``--files 20000`` (a file per node) takes ~2 s, mostly system calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import tomllib
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from _machine import cpu_model  # bench/_machine.py (the script directory is on sys.path)

from mip6ctl.config import checks
from mip6ctl.config.loader import load_directory
from mip6ctl.config.locate import key_lines
from mip6ctl.config.model import Mip6Config

HOME = IPv6Network("2001:db8:1::/64")
SERVED = IPv6Network("2001:db8:f000::/36")

HEAD = f"""\
[node]
role = "ha"
name = "bench"

[ha]
interfaces = ["home0", "home1"]
home_prefixes = ["{HOME}", "2001:db8:2::/64"]
accept_mobile_routers = true
served_prefixes = ["{SERVED}"]

[ipsec.fleet]
protect = ["binding-update", "mobility-header"]
key_management = "ike"
psk_file = "fleet.psk"
reqid = {{ to_ha = 1001, to_mn = 1001 }}
"""


def node(i: int) -> str:
    """One [[ha.mobile_nodes]] table."""
    hoa = IPv6Address(int(HOME.network_address) + 0x100 + i)
    out = f'\n[[ha.mobile_nodes]]\nhome_address = "{hoa}"\n'
    if i == 0:
        out += 'ipsec = "fleet"\n'
    out += f'description = "bench node {i}"\n'
    if i % 10 == 0:
        out += "max_binding_lifetime = 600\n"
    if i % 100 == 0:
        mnp = IPv6Network((int(SERVED.network_address) + (i << 64), 64))
        out += f'mobile_network_prefixes = ["{mnp}"]\n'
    return out


def generate(directory: Path, nodes: int, files: int) -> int:
    """Write the configuration; return its size in bytes."""
    per = -(-nodes // max(files, 1))
    (directory / "00-node.toml").write_text(HEAD)
    psk = directory / "fleet.psk"
    psk.write_text("ab" * 32 + "\n")
    psk.chmod(0o600)
    size = len(HEAD)
    for f in range(max(files, 1)):
        text = "".join(node(i) for i in range(f * per, min(nodes, (f + 1) * per)))
        (directory / f"{10 + f:06d}-nodes.toml").write_text(text)
        size += len(text)
    return size


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--files", type=int, default=1, help="spread the nodes over this many files")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="mip6-bench-config-"))
    try:
        size = generate(base, args.nodes, args.files)
        gen = load_directory(base)  # warm-up, and proof that it is valid
        assert len(gen.config.ha.mobile_nodes) == args.nodes
        texts = [p.read_text() for p in sorted(base.glob("*.toml"))]
        datas = [tomllib.loads(t) for t in texts]
        doc = dict(datas[0])
        nodes = [m for d in datas[1:] for m in d["ha"]["mobile_nodes"]]
        doc["ha"] = dict(doc["ha"], mobile_nodes=nodes)
        cfg = Mip6Config.model_validate(doc)
        stages = {
            "load_directory (total)": lambda: load_directory(base),
            "key_lines (line map, limits)": lambda: [key_lines(t) for t in texts],
            "tomllib.loads": lambda: [tomllib.loads(t) for t in texts],
            "model_validate": lambda: Mip6Config.model_validate(doc),
            "checks.check": lambda: checks.check(cfg, base, lambda p: "?"),
        }
        rows = []
        for name, fn in stages.items():
            ts = timed(fn, args.runs)
            rows.append(
                {
                    "stage": name,
                    "median_ms": round(statistics.median(ts), 1),
                    "min_ms": round(min(ts), 1),
                    "max_ms": round(max(ts), 1),
                }
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)

    machine = {
        "node": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "linux": platform.release(),
        "python": platform.python_version(),
    }
    params = {"nodes": args.nodes, "files": args.files, "runs": args.runs, "bytes": size}
    if args.json:
        print(json.dumps({"machine": machine, "params": params, "results": rows}, indent=2))
    else:
        print(
            f"# {machine['node']} {machine['cpus']} CPU, {machine['cpu']}, Linux "
            f"{machine['linux']}, Python {machine['python']}"
        )
        print(
            f"# {args.nodes} mobile nodes in {args.files} file(s), {size / 1e6:.1f} MB, "
            f"median of {args.runs} runs"
        )
        print(f"{'stage':28} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
        for r in rows:
            print(f"{r['stage']:28} {r['median_ms']:10.1f} {r['min_ms']:8.1f} {r['max_ms']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
