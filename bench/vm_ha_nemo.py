"""bench/ha_nemo.py inside the vm tier's Debian kernel (seg6 lwtunnel, which this host lacks).

Not a test: a pytest module the vm tier can be pointed at (the guest runs
pytest only), with two guest CPUs so the daemon and the generator are pinned
apart as on the host:

    scripts/vm-tier --cpus 2 --timeout 3600 --results /var/cache/mip6ctl-vm/results-nemo-bench \\
        -- -s bench/vm_ha_nemo.py

Everything is emulated (qemu without KVM, Python ~20x slower than the host),
so the absolute rates are far below a real machine's; the ratio routers /
hosts from the same run is the figure that carries over.  Sizes and rates
come from ``MIP6_BENCH_NEMO_ARGS`` (default: 10,000 of each, three runs, rates
for an emulated CPU).  Prints ``BENCH {json}``; CI never collects it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (
    "--bindings 10000 --runs 3 --rates 50,100,150,200,250,300,400,500 --step-seconds 4 "
    "--register-rate 30 --latency-rate 50 --latency-seconds 5 --start-timeout 900 "
    "--budget 5400"
)


@pytest.mark.timeout(6000)  # pyproject's 300 s is for tests
def test_bench_home_agent_with_mobile_routers() -> None:
    if os.environ.get("MIP6_VM_GUEST") != "1":
        pytest.skip("vm tier only: runs inside scripts/vm-tier")
    args = shlex.split(os.environ.get("MIP6_BENCH_NEMO_ARGS", DEFAULT))
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ha_nemo.py"), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=6000,
    )
    sys.stderr.write(r.stderr[-20000:])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(r.stdout)
    doc["emulated"] = True
    print("BENCH " + json.dumps(doc))
