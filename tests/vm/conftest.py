"""The vm tier: tests that need Debian's full Mobile IPv6 kernel.

Everything under tests/vm is marked `vm`.  These tests run only inside the
virtme-ng guest that `scripts/vm-tier` boots (it sets MIP6_VM_GUEST=1 through
tests/vm/guest-run); a normal `pytest` run on the host skips them, naming why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

VM_DIR = Path(__file__).resolve().parent
SKIP_REASON = "vm tier: runs inside the full Mobile IPv6 kernel via scripts/vm-tier"


def in_guest() -> bool:
    return os.environ.get("MIP6_VM_GUEST") == "1"


@pytest.hookimpl(tryfirst=True)  # before `-m vm` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    guest = in_guest()
    for item in items:
        if VM_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.vm)
            if not guest:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def modprobe(*modules: str) -> None:
    """Load kernel modules in the guest; fail (not skip) when one is missing."""
    exe = shutil.which("modprobe") or "/usr/sbin/modprobe"
    for mod in modules:
        proc = subprocess.run([exe, mod], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"modprobe {mod} failed: {proc.stderr.strip()}"


@pytest.fixture(scope="session")
def mip6_modules() -> None:
    """The modules the Mobile IPv6 data path needs (built in or loaded here)."""
    modprobe("ip6_tunnel", "mip6", "esp6", "xfrm_user")
