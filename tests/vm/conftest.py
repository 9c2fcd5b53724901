"""The vm tier: tests that need Debian's full Mobile IPv6 kernel.

Everything under tests/vm is marked `vm`.  These tests run only inside the
virtme-ng guest that `scripts/vm-tier` boots (it sets MIP6_VM_GUEST=1 through
tests/vm/guest-run); a normal `pytest` run on the host skips them, naming why.

Besides the kernel facts (test_kernel_capabilities.py), the tier re-collects
the kernel layer's netns tests (test_kernel_layer_*.py: tests/netns/test_xfrm.py
and test_kernel_rtnl.py), whose ESP/route2/hao/ip6tnl cases skip on the host
kernel; here the modules are loaded first and such a skip is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Generator
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In the guest a skip from inside a vm test is a failure.

    The kernel-layer tests re-collected from tests/netns skip "missing
    capability: ..." on kernels without MIP6/ESP/ip6tnl; this kernel has all
    of them, so such a skip means the tier lost what it exists to test.
    """
    report = yield
    if (
        in_guest()
        and report.when == "call"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and VM_DIR in Path(item.path).resolve().parents
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"vm tier: skipped inside the full Mobile IPv6 kernel: {reason}"
    return report


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
    # the ESP algorithms of the tests' SAs: loaded now, not inside a daemon's first NEWSA
    exe = shutil.which("modprobe") or "/usr/sbin/modprobe"
    for alias in ("crypto-authenc", "crypto-cbc(aes)", "crypto-hmac(sha256)", "crypto-sha256"):
        subprocess.run([exe, "-q", alias], capture_output=True, timeout=60)
