"""Start-up time of the `mip6ctl` command (goal: ≤ 150 ms median).

Runs each command N times as a fresh process and reports the median and p90
wall time, next to a bare `python -c pass` measured in the same run, so that
figures from a noisy shared machine stay comparable (the ratio).

    python bench/cli_startup.py [--runs 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(argv: list[str], runs: int) -> list[float]:
    env = dict(os.environ)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    py = sys.executable
    cases = {
        "python -c pass (baseline)": [py, "-c", "pass"],
        "mip6ctl --help": [py, "-m", "mip6ctl", "--help"],
    }
    for role in ("ha", "mn", "cn"):
        cases[f"mip6ctl validate testbed/{role}"] = [
            py,
            "-m",
            "mip6ctl",
            "validate",
            "-c",
            str(ROOT / "examples" / "testbed" / role),
        ]
    # interleave rounds so that machine noise hits every case alike
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            samples[name] += measure(argv, 1)
    base = statistics.median(samples["python -c pass (baseline)"])
    rows = []
    for name, ts in samples.items():
        med = statistics.median(ts)
        p90 = statistics.quantiles(ts, n=10)[-1]
        rows.append(
            {
                "case": name,
                "median_ms": round(med, 1),
                "p90_ms": round(p90, 1),
                "ratio_to_baseline": round(med / base, 2),
            }
        )
    if args.json:
        print(
            json.dumps(
                {"runs": args.runs, "machine": os.uname().nodename, "results": rows}, indent=2
            )
        )
    else:
        print(f"{'case':36} {'median ms':>10} {'p90 ms':>8} {'× python':>9}")
        for r in rows:
            print(
                f"{r['case']:36} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} "
                f"{r['ratio_to_baseline']:9.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
