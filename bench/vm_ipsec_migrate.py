"""bench/ipsec_migrate.py with ESP states, inside the vm tier's Debian kernel (emulated).

Not a test: a way to run the benchmark where the kernel has ESP.  The guest
runs pytest only, so this file is a pytest module the vm tier can be pointed at:

    scripts/vm-tier --results /var/cache/mip6ctl-vm/results-bench -- -s bench/vm_ipsec_migrate.py

It prints the benchmark's JSON (figures labelled ``emulated``: qemu without
KVM, Python ~20x slower than the host).  CI never collects it (bench/ is not a
test directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.vm


def test_run_ipsec_migrate_with_states() -> None:
    # the first ESP state loads the crypto modules inside NEWSA: seconds under emulation,
    # longer than the executor's XFRM socket waits -- load them first (as the vm tier does)
    for mod in ("esp6", "mip6", "xfrm_user", "crypto-authenc", "crypto-cbc(aes)",
                "crypto-hmac(sha256)"):
        subprocess.run(["modprobe", "-q", mod], capture_output=True, timeout=120)
    nodes = os.environ.get("MIP6_BENCH_NODES", "1000")
    out = subprocess.run(
        [sys.executable, "bench/ipsec_migrate.py", "--states", "--nodes", nodes,
         "--runs", "1", "--moves", "20", "--json"],
        capture_output=True, text=True, timeout=3000,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    doc["emulated"] = True
    print("BENCH " + json.dumps(doc))
