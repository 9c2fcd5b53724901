"""A full disk under the binding cache (issue 21), against the real home agent daemon.

The daemon runs in a private mount namespace (``unshare --mount``, propagation
private: nothing is mounted on the host) whose state directory is a 2 MiB
tmpfs; the namespace, and the tmpfs with it, ends with the daemon, also when
the test fails.  The binding cache file is created on the tmpfs before the
daemon starts, so the daemon's first write must grow the WAL (SQLite rewrites
a WAL in place after a checkpoint: a small write on a full disk can succeed).
The test fills the tmpfs from inside that namespace (``nsenter --mount``) and
sends a Binding Update from a scapy station:

* no BA 0 comes back for it (the write failed, so the BA is withheld);
* ``mip6ctl status --json`` shows ``BindingStoreHealthy`` False, reason
  ``WriteFailed``, with SQLite's "database or disk is full", and the binding
  as accepted but not acknowledged (``pending``);
* once space is freed the next BU gets BA 0, the condition turns True and the
  binding is acknowledged -- the proof that the test can tell the two apart.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet6 import MIP6MH_BA

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import HaDaemon, Station, binding_update, conditions

pytestmark = [
    nsutil.NEEDS_RADVD,
    pytest.mark.timeout(60),
]

HOA = "2001:db8:1::100"
COA = "2001:db8:a::160"
TMPFS_SIZE = "2m"

#: Run inside the new mount namespace: mount the tmpfs on the state directory, create
#: the binding cache on it, then become the daemon (same pid: HaDaemon.stop kills it).
_WRAPPER = """
set -e
state=$1; shift
mount -t tmpfs -o size={size},mode=0700 mip6ctl-test-store "$state"
"$1" -c 'import sys; from mip6ctl.daemon.persistence import BindingStore
BindingStore(sys.argv[1]).close()' "$state/binding-cache.sqlite"
exec "$@"
"""


class FullDiskHa(HaDaemon):
    """The testbed's home agent with its state directory on a small private tmpfs."""

    def argv(self) -> list[str]:
        wrapper = _WRAPPER.format(size=TMPFS_SIZE)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper, "sh",
                str(self.state), *super().argv()]  # fmt: skip

    def in_mounts(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the daemon's mount namespace (where the tmpfs is)."""
        assert self.proc is not None
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "--mount", "--", *argv],
            capture_output=True, text=True, timeout=15, check=check,
        )  # fmt: skip


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[tuple[FullDiskHa, Station]]:
    with Testbed.build() as tb:
        ha = FullDiskHa(tb, tmp_path)
        station = None
        try:
            ha.start()
            station = Station(tb, "f1", "f1s", [COA], "2001:db8:a::1")
            yield ha, station
        finally:
            ha.stop()
            if station is not None:
                station.close()
    # the tmpfs lived only in the daemon's mount namespace: nothing is left mounted here
    mounts = Path("/proc/self/mounts").read_text()
    assert str(tmp_path) not in mounts and "mip6ctl-test-store" not in mounts


def wait_for(get: Any, ok: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.mark.seg6(auto=True)
def test_full_disk_withholds_the_ba_and_status_reports_it(bed) -> None:
    ha, station = bed
    t0 = time.monotonic()
    state = str(ha.state)
    mounted = ha.in_mounts("findmnt", "-n", "-o", "FSTYPE,SIZE", state).stdout.split()
    assert mounted == ["tmpfs", "2M"], mounted  # the state directory is the small tmpfs
    host_view = subprocess.run(["findmnt", "-n", state], capture_output=True, text=True)
    assert host_view.stdout == ""  # ... only in the daemon's namespace
    assert conditions(ha.status_cli())["BindingStoreHealthy"]["status"] == "True"

    fill = ha.in_mounts("dd", "if=/dev/zero", f"of={state}/filler", "bs=4096", check=False)
    assert "No space left on device" in fill.stderr, fill.stderr
    df = ha.in_mounts("df", "--output=avail", "-B1", state).stdout.split()
    assert df[-1] == "0", df

    def ba_statuses(seq: int, timeout: float) -> list[int]:
        station.drain()
        station.send(binding_update(HOA, COA, seq))
        got = station.capture(lambda p: MIP6MH_BA in p, timeout=timeout, count=1)
        return [p[MIP6MH_BA].status for p in got]

    # DAD (~1 s) and the kernel come first, then the write: wait well past them
    assert 0 not in ba_statuses(1, 5.0), ha.tail()

    doc = wait_for(ha.status_cli,
                   lambda d: conditions(d)["BindingStoreHealthy"]["status"] == "False")  # fmt: skip
    store = conditions(doc)["BindingStoreHealthy"]
    assert (store["status"], store["reason"]) == ("False", "WriteFailed"), store
    assert "database or disk is full" in store["message"], store
    assert "binding-cache.sqlite" in store["message"]
    rows = {r["home_address"]: r for r in doc["binding_cache"]["rows"]}
    assert rows[HOA]["acknowledged"] is False, rows  # accepted by the engine, not durable
    assert doc["binding_cache"]["pending"] == 1
    assert doc["counters"]["bas_sent"] == 0
    assert "BA withheld" in ha.tail(200)

    # space again: the next BU is written and acknowledged, the condition recovers
    ha.in_mounts("rm", "-f", f"{state}/filler")
    assert ba_statuses(2, 5.0) == [0], ha.tail()
    doc = wait_for(ha.status_cli,
                   lambda d: conditions(d)["BindingStoreHealthy"]["status"] == "True")  # fmt: skip
    store = conditions(doc)["BindingStoreHealthy"]
    assert (store["status"], store["reason"]) == ("True", "Writable"), store
    rows = {r["home_address"]: r for r in doc["binding_cache"]["rows"]}
    assert rows[HOA]["acknowledged"] is True and rows[HOA]["sequence"] == 2
    assert doc["binding_cache"]["pending"] == 0
    human = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "status", "--socket", str(ha.socket)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "BindingStoreHealthy True" in human.stdout, human.stdout
    assert time.monotonic() - t0 < 45
