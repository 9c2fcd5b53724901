"""On a kernel without ESP a configuration that requires IPsec is refused, never run unprotected.

This machine's kernel has XFRM policies but no ESP (CONFIG_INET6_ESP) and no
Mobile IPv6 (CONFIG_IPV6_MIP6): the home agent of examples/testbed/ipsec must
not start here (exit 1, the reason in its log, nothing left in the kernel),
``mip6ctl doctor -c`` fails its IPsec check, and ``mip6ctl validate`` says the
files are valid but a daemon on this host would refuse them.  Skipped on a
kernel that has ESP (the vm tier runs the protected daemons instead).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mip6ctl.kernel.probe import probe
from mip6ctl.testbed import Testbed
from tests.netns.ha_helpers import REPO, HaDaemon, ip

EXAMPLE = REPO / "examples" / "testbed" / "ipsec" / "ha"


@pytest.fixture(scope="module")
def esp_missing() -> None:
    caps = {c.name: c.available for c in probe()}
    if caps.get("esp"):
        pytest.skip("this kernel has ESP: the vm tier tests the protected daemons")


def _example(tmp: Path) -> Path:
    d = tmp / "example"
    shutil.copytree(EXAMPLE, d)
    for k in (d / "keys").iterdir():
        k.chmod(0o600)
    return d


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mip6ctl", *args], capture_output=True, text=True, timeout=120
    )


def test_the_daemon_refuses_to_run_ipsec_unprotected(esp_missing: None, tmp_path: Path) -> None:
    with Testbed.build(timeout=60.0, radvd=False) as tb:
        d = HaDaemon(tb, tmp_path, example=_example(tmp_path))
        with open(d.log, "ab") as log:
            proc = tb.exec(d.node, d.argv(), stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = d.log.read_text()
        assert rc == 1, text
        assert "requires IPsec" in text and "CONFIG_INET6_ESP" in text, text
        assert "cannot start" in text, text
        # nothing half-applied: no owned XFRM object, no binding-table rule
        assert ip(tb, "ha", "xfrm", "policy", "show").strip() == ""
        assert "6275" not in ip(tb, "ha", "-6", "rule", "show")


def test_doctor_and_validate_say_it_cannot_run_here(esp_missing: None, tmp_path: Path) -> None:
    cfg = _example(tmp_path)
    doc = _cli("doctor", "-c", str(cfg), "--json")
    assert doc.returncode == 1, doc.stdout + doc.stderr
    report = json.loads(doc.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "failed"]
    assert any("CONFIG_INET6_ESP" in c["message"] for c in failed), failed

    val = _cli("validate", "-c", str(cfg), "--json")
    assert val.returncode == 0, val.stdout + val.stderr  # the files are valid...
    warnings = json.loads(val.stdout)["warnings"]
    # ...but not for this host
    assert any(w["kind"] == "host" and "refuses to start" in w["message"] for w in warnings), (
        warnings
    )
