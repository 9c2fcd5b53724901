"""The live demo (issue 8): ``python -m mip6ctl.demo`` end to end, and that it cleans up.

Each test runs the demo as a subprocess (bounded) and then checks that
nothing of it is left: no namespace with its prefix ``m6demo<pid>-``, no run
directory, no process mentioning the prefix (daemons, radvd), no bridge of
the testbed's in the host namespace and no nftables table named mip6ctl in
any leftover namespace of the prefix (there should be no such namespace).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from mip6ctl.testbed.radvd import find_radvd
from tests import nsutil
from tests.netns.ha_helpers import REPO

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="netns tier: needs root"),
    pytest.mark.skipif(
        find_radvd() is None
        or (shutil.which("nft") is None and not os.path.exists("/usr/sbin/nft")),
        reason="netns tier: needs radvd and nft (scripts/bootstrap installs them)",
    ),
]

DEMO = [sys.executable, "-m", "mip6ctl.demo"]
RUN_DIR = "/run/mip6ctl-testbed"


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def processes() -> dict[int, str]:
    """Every process's command line (from /proc: ps would truncate it)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    out[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return out


def assert_clean(prefix: str) -> None:
    """Nothing of the demo with ``prefix`` is left on the machine."""
    deadline = time.monotonic() + 5.0  # the kernel frees namespaces asynchronously
    while True:
        names = [line.split()[0] for line in _sh("ip", "netns", "list").splitlines() if line]
        left = [n for n in names if n.startswith(prefix)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    tables = {ns: _sh("ip", "netns", "exec", ns, "nft", "list", "tables") for ns in left}
    assert not left, f"namespaces left behind: {left}; their nftables tables: {tables}"
    assert not os.path.exists(f"{RUN_DIR}/{prefix}"), f"run directory {RUN_DIR}/{prefix} left"
    procs = [f"{pid} {args}" for pid, args in processes().items() if prefix in args]
    assert not procs, f"processes left behind: {procs}"
    bridges = _sh("ip", "-o", "link", "show", "type", "bridge")
    for br in ("br-home", "br-f1", "br-f2"):
        assert f" {br}:" not in bridges, f"bridge {br} in the host namespace"
    assert "mip6ctl" not in _sh("nft", "list", "tables"), "an nftables table in the host"


@pytest.mark.seg6(auto=True)
def test_json_run() -> None:
    t0 = time.monotonic()
    out = subprocess.run(
        [*DEMO, "--moves", "3", "--interval", "2", "--json", "--no-dashboard"],
        capture_output=True,
        text=True,
        timeout=120 * nsutil.SLOWDOWN,
        cwd=REPO,
    )
    took = time.monotonic() - t0
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    doc = json.loads(out.stdout)
    assert doc["version"] == 1 and doc["ok"] is True, doc
    assert [(m["from"], m["to"]) for m in doc["moves"]] == [
        ("home", "f1"),
        ("f1", "f2"),
        ("f2", "f1"),
    ]
    for m in doc["moves"]:
        assert m["recovered"] is True, m
        assert isinstance(m["latency_ms"], float) and 0 < m["latency_ms"] < 10_000, m
        assert isinstance(m["lost"], int) and m["lost"] >= 0, m
        assert m["care_of_address"] and m["care_of_address"].startswith(
            "2001:db8:a:" if m["to"] == "f1" else "2001:db8:b:"
        ), m
    p = doc["pings"]
    assert p["sent"] > 100 and 0 < p["received"] <= p["sent"], p
    # continuous: all echo requests except those lost around the moves were answered
    assert p["sent"] - p["received"] <= sum(m["lost"] for m in doc["moves"]) + 5, doc
    assert doc["testbed"].startswith("m6demo")
    print(f"demo --moves 3 --interval 2 took {took:.1f} s: {json.dumps(doc['moves'])}")
    assert_clean(doc["testbed"])


class Running:
    """The demo as a subprocess whose output lines are read by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*DEMO, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self.prefix = f"m6demo{self.proc.pid}-"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_line(self, text: str, timeout: float) -> None:
        timeout *= nsutil.SLOWDOWN  # the vm tier's guest runs the demo ~5x slower
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return
        self.kill()
        raise AssertionError(f"{text!r} not printed in {timeout} s:\n{''.join(self.seen)}")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        timeout *= nsutil.SLOWDOWN
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        time.sleep(0.1)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return rc, "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.mark.seg6(auto=True)
def test_sigint_tears_down() -> None:
    demo = Running("--moves", "50", "--interval", "1", "--no-dashboard")
    demo.wait_line("move 1:", 60)
    assert os.path.exists(f"{RUN_DIR}/{demo.prefix}")
    demo.proc.send_signal(signal.SIGINT)
    rc, text = demo.finish()
    assert rc == 130, text
    assert "interrupted" in text, text
    assert_clean(demo.prefix)


def _daemon_pid(prefix: str, node: str) -> int:
    needle = f"{RUN_DIR}/{prefix}/demo/{node}/config"
    for pid, args in processes().items():
        if needle in args and "mip6ctl" in args:
            return pid
    raise AssertionError(f"no {node} daemon process found")


@pytest.mark.seg6(auto=True)
def test_daemon_crash_is_reported_and_cleaned_up() -> None:
    demo = Running("--moves", "50", "--interval", "1", "--no-dashboard")
    demo.wait_line("move 1:", 60)
    os.kill(_daemon_pid(demo.prefix, "mn"), signal.SIGKILL)
    rc, text = demo.finish()
    assert rc == 1, text
    assert "the mobile node daemon (mn) was killed by signal 9" in text, text
    assert "log ends with" in text, text
    assert_clean(demo.prefix)


def test_main_is_importable_without_root_effects(monkeypatch: Any) -> None:
    """Without root the demo refuses at once and says why (exit 2, nothing built)."""
    from mip6ctl import demo

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    problems = demo.check_prerequisites(probe_kernel=False)
    assert len(problems) == 1 and "needs root" in problems[0]
