"""`apply --confirm-timeout`, `confirm`, `rollback`, `history` against a home agent daemon
(issue 19): a change nobody confirms undoes itself, files and kernel state included.

The change moves the home agent off its home link (`interfaces = ["core0"]`): proxy
ND, its rules and sysctls move with it, which on a real network cuts off every mobile
node. It applies cleanly, so only the confirmation protects the operator. On this
machine's kernel (no ip6tnl, no seg6) the HA's static state still applies; bindings
are not needed to see the kernel change and its undoing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import HaDaemon

pytestmark = nsutil.NEEDS_RADVD

GOOD = 'interfaces = ["home0"]'
BAD = 'interfaces = ["core0"]'


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[tuple[Testbed, HaDaemon]]:
    with Testbed.build() as tb:
        d = HaDaemon(tb, tmp_path)
        try:
            d.start()
            yield tb, d
        finally:
            d.stop()


def cli(tb: Testbed, d: HaDaemon, *args: str, config: bool = True) -> tuple[int, dict]:
    argv = [sys.executable, "-m", "mip6ctl", *args, "--socket", str(d.socket), "--json"]
    if config:
        argv += ["-c", str(d.config)]
    out = tb.run("ha", argv)
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def kernel(tb: Testbed, *, sysctls: bool = True) -> str:
    """Everything the home agent owns or touches, as iproute2/nft/sysctl print it."""
    parts = []
    cmds = [
        ["ip", "-6", "rule", "show"],
        ["ip", "-6", "route", "show", "table", "all", "proto", "77"],
        ["ip", "-6", "neigh", "show", "proxy"],
        ["nft", "list", "ruleset"],
    ]
    if sysctls:
        cmds.append(["sysctl", "net.ipv6.conf.home0.proxy_ndp", "net.ipv6.conf.core0.proxy_ndp",
                     "net.ipv6.conf.all.forwarding"])  # fmt: skip
    for cmd in cmds:
        out = tb.run("ha", cmd)
        assert out.returncode == 0, out.stderr
        parts.append(out.stdout)
    return "\n".join(parts)


def back_to(tb: Testbed, before: str, timeout: float = 5.0) -> None:
    """Wait until the kernel dump equals `before`; fail with the difference."""
    import difflib

    deadline = time.monotonic() + timeout
    while (now := kernel(tb)) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    diff = "\n".join(difflib.unified_diff(before.splitlines(), now.splitlines(), lineterm=""))
    assert now == before, f"kernel state not back to the original within {timeout} s:\n{diff}"


def files(d: HaDaemon) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.config.glob("*.toml"))}


def edit(d: HaDaemon, old: str, new: str) -> None:
    main = d.config / "mip6.toml"
    text = main.read_text()
    assert old in text
    main.write_text(text.replace(old, new))


def wait(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v := pred():
            return v
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_an_unconfirmed_change_rolls_back_byte_identical(ha) -> None:
    tb, d = ha
    before_kernel, before_files = kernel(tb), files(d)
    rc, plan_before = cli(tb, d, "diff")
    assert rc == 0 and plan_before["plan"] == [], plan_before

    edit(d, GOOD, BAD)
    t0 = time.monotonic()
    rc, doc = cli(tb, d, "apply", "--confirm-timeout", "3")
    assert rc == 0, doc
    assert doc["confirmation"]["state"] == "pending", doc["confirmation"]
    assert doc["confirmation"]["timeout"] == 3
    changed = kernel(tb)
    assert changed != before_kernel, "the change must reach the kernel before the rollback"
    status = d.rpc("status")
    assert status["confirmation"]["pending"]["rollback_to"] == doc["confirmation"]["rollback_to"]

    # nobody confirms: after 3 s the daemon goes back by itself
    wait(lambda: d.rpc("status")["confirmation"]["last_rollback"], 10.0, "the rollback")
    took = time.monotonic() - t0
    assert 3.0 <= took < 8.0, took
    assert files(d) == before_files  # the files too, or the next reload re-applies it
    back_to(tb, before_kernel)
    rc, plan_after = cli(tb, d, "diff")
    assert rc == 0 and plan_after["plan"] == plan_before["plan"] == [], plan_after
    conds = {c["type"]: c for c in d.rpc("status")["conditions"]}
    assert conds["GenerationConfirmed"]["reason"] == "RolledBack"
    # too late to confirm now: said plainly, exit 1
    rc, doc = cli(tb, d, "confirm", config=False)
    assert rc == 1 and "too late" in doc["errors"][0]["message"], doc
    rc, hist = cli(tb, d, "history", config=False)
    assert rc == 0
    sources = [g["source"] for g in hist["generations"]]
    # the change came in by `apply`, or by the hot reload when the watcher was quicker
    assert sources[-2] in ("apply", "reload") and sources[-1] == "rollback", sources
    assert hist["generations"][-1]["digest"] == hist["generations"][-3]["digest"]
    assert hist["generations"][-1]["running"] is True


def test_a_confirmed_change_stays_and_rollback_on_demand_undoes_it(ha) -> None:
    tb, d = ha
    before_kernel, before_files = kernel(tb), files(d)
    edit(d, GOOD, BAD)
    rc, doc = cli(tb, d, "apply", "--confirm-timeout", "3")
    assert rc == 0 and doc["confirmation"]["state"] == "pending", doc.get("errors") or doc
    changed_kernel, changed_files = kernel(tb), files(d)
    rc, ok = cli(tb, d, "confirm", config=False)
    assert rc == 0 and ok["confirmed"]["number"] == doc["confirmation"]["number"], ok
    time.sleep(4.0)  # past the deadline: nothing happens
    assert kernel(tb) == changed_kernel and files(d) == changed_files
    assert d.rpc("status")["confirmation"]["pending"] is None
    # a second confirmed-apply with nothing changed has nothing to confirm
    rc, doc = cli(tb, d, "apply", "--confirm-timeout", "3")
    assert rc == 0 and doc["confirmation"]["state"] == "not-needed", doc
    # and `rollback` goes back on demand: a planned, verified apply
    rc, doc = cli(tb, d, "rollback", config=False)
    assert rc == 0 and doc["ok"] and doc["rollback"]["files"] == ["mip6.toml"], doc
    assert files(d) == before_files
    back_to(tb, before_kernel)


def test_a_change_the_hot_reload_applied_first_is_still_covered(ha) -> None:
    """The watcher applies an edit within about a second; `apply --confirm-timeout` right
    after it finds nothing left to apply, and still rolls back to the generation before."""
    tb, d = ha
    before_kernel = kernel(tb)
    edit(d, GOOD, BAD)
    wait(lambda: kernel(tb) != before_kernel, 10.0, "the hot reload")
    rc, doc = cli(tb, d, "apply", "--confirm-timeout", "2")
    assert rc == 0 and doc["confirmation"]["state"] == "pending", doc.get("errors") or doc
    wait(lambda: d.rpc("status")["confirmation"]["last_rollback"], 10.0, "the rollback")
    back_to(tb, before_kernel)


def test_confirm_timeout_without_a_daemon_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "apply", "--confirm-timeout", "3", "--json",
         "-c", str(Path(__file__).resolve().parents[2] / "examples" / "testbed" / "cn"),
         "--socket", str(tmp_path / "none.sock")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 69, out
    doc = json.loads(out.stdout)
    assert "needs the running daemon" in doc["errors"][0]["message"]


def test_a_daemon_that_dies_before_the_confirmation_rolls_back_when_it_starts(ha) -> None:
    """Like a NETCONF confirmed commit whose session drops: kill -9 while the change
    awaits `confirm`, and the next start runs the generation from before it."""
    tb, d = ha
    before_kernel, before_files = kernel(tb), files(d)
    before_objects = kernel(tb, sysctls=False)
    edit(d, GOOD, BAD)
    rc, doc = cli(tb, d, "apply", "--confirm-timeout", "600")
    assert rc == 0 and doc["confirmation"]["state"] == "pending", doc.get("errors") or doc
    assert kernel(tb) != before_kernel
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait(10)
    d.start()
    assert files(d) == before_files
    rb = d.rpc("status")["confirmation"]["last_rollback"]
    assert rb and rb["reason"] == "daemon stopped before confirmation", rb
    assert d.rpc("status")["confirmation"]["pending"] is None
    # the kernel state the dead daemon left is repaired to the old generation, sysctls
    # excepted: what they were before the change died with the daemon's memory
    deadline = time.monotonic() + 5.0
    while kernel(tb, sysctls=False) != before_objects and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel(tb, sysctls=False) == before_objects


def test_diff_names_the_settings_that_need_a_restart(ha) -> None:
    """A restart-only setting (here `[kernel] signalling`) shows in `diff` whether or not
    the hot reload already took the file: it is not in effect until a restart."""
    tb, d = ha
    edit(d, 'signalling = "auto"', 'signalling = "userspace"')
    rc, doc = cli(tb, d, "diff")
    assert rc == 0, doc
    assert doc["restart_required"] == ["kernel.signalling"], doc
    time.sleep(2.0)  # the watcher has reloaded by now: still pending a restart
    rc, doc = cli(tb, d, "diff")
    assert doc["restart_required"] == ["kernel.signalling"], doc
