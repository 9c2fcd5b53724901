"""`mip6ctl diff` / `apply` with a daemon running: the plan comes from the daemon and
includes its live bindings (issue 5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import HaDaemon, Station, binding_update

pytestmark = nsutil.NEEDS_RADVD

NODE_FILE = '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::110"\n'


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Testbed, HaDaemon, Station]]:
    with Testbed.build() as tb:
        ha = HaDaemon(
            tb,
            tmp_path_factory.mktemp("ha"),
            replace={"default_action": "duplicate_address_detection = false\ndefault_action"},
            files={"50-mn-110.toml": NODE_FILE},
        )
        station = None
        try:
            ha.start()
            station = Station(tb, "f1", "f1t", ["2001:db8:a::110"], "2001:db8:a::1")
            yield tb, ha, station
        finally:
            ha.stop()
            if station is not None:
                station.close()


def mip6ctl(tb: Testbed, ha: HaDaemon, *args: str, config: Path | None = None) -> tuple[int, dict]:
    argv = [sys.executable, "-m", "mip6ctl", *args, "-c", str(config or ha.config)]
    argv += ["--socket", str(ha.socket), "--json"]
    out = tb.run("ha", argv)
    return out.returncode, json.loads(out.stdout)


@pytest.mark.seg6(auto=True)
def test_diff_through_the_daemon_includes_live_bindings(setup) -> None:
    tb, ha, station = setup
    ba = station.ba(binding_update("2001:db8:1::110", "2001:db8:a::110", seq=1, lifetime=100))
    assert ba is not None
    rc, doc = mip6ctl(tb, ha, "diff")
    assert rc == 0, doc
    assert doc["mode"] == "daemon" and doc["bindings"] == 1 and doc["plan"] == []
    # the static CLI path would have said "static state only": this one knows the binding
    assert "live bindings" in doc["note"]


def test_another_directory_is_planned_but_never_applied(setup, tmp_path) -> None:
    """A staged copy (Ansible's check/diff mode) is planned by the daemon with its live
    bindings; applying it is refused: the daemon runs its own directory."""
    tb, ha, _ = setup
    other = tmp_path / "other"
    shutil.copytree(ha.config, other)
    (other / "60-mn-111.toml").write_text(NODE_FILE.replace("::110", "::111"))
    (other / "mip6.toml").write_text(
        (other / "mip6.toml").read_text().replace('signalling = "auto"', 'signalling = "kernel"')
    )
    rc, doc = mip6ctl(tb, ha, "diff", config=other)
    assert rc in (0, 2), doc
    assert doc["mode"] == "daemon" and doc["candidate_dir"] == str(other.resolve()), doc
    assert doc["restart_required"] == ["kernel.signalling"], doc
    assert doc["generation"] != doc["running_generation"]
    rc, doc = mip6ctl(tb, ha, "apply", config=other)
    assert rc == 1
    assert "runs the configuration in" in doc["errors"][0]["message"]


@pytest.mark.seg6(auto=True)
def test_apply_through_the_daemon_drops_a_removed_node(setup) -> None:
    tb, ha, station = setup
    if "2001:db8:1::110" not in ha.bindings():
        station.ba(binding_update("2001:db8:1::110", "2001:db8:a::110", seq=2, lifetime=100))
    assert "2001:db8:1::110" in ha.bindings()
    (ha.config / "50-mn-110.toml").unlink()
    rc, doc = mip6ctl(tb, ha, "apply")
    assert rc == 0 and doc["ok"] is True, doc
    assert doc["verification"] == []
    assert "2001:db8:1::110" not in ha.bindings()
    route = subprocess.run(
        ["ip", "-n", tb.ns("ha"), "-6", "route", "show", "table", "6275"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "2001:db8:1::110" not in route
    rc, doc = mip6ctl(tb, ha, "diff")
    assert (rc, doc["plan"]) == (0, [])
