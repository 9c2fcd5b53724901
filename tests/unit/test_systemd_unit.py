"""examples/systemd/mip6ctl.service is valid and keeps its promises; sd_notify helper.

`systemd-analyze verify` needs the ExecStart binary to exist, so it runs on a
copy whose ExecStart points at this environment's `mip6ctl`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mip6ctl.daemon import sdnotify

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "systemd" / "mip6ctl.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package: systemd)"
)


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _mip6ctl() -> str:
    found = Path(sys.executable).parent / "mip6ctl"
    if found.exists():
        return str(found)
    which = shutil.which("mip6ctl")
    if which is None:
        pytest.skip("no mip6ctl executable to point ExecStart at (pip install -e .)")
    return which


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text().replace("ExecStart=/usr/bin/mip6ctl ", f"ExecStart={_mip6ctl()} ")
    path = tmp_path / "mip6ctl.service"
    path.write_text(text)
    return path


@needs_analyze
def test_systemd_analyze_verify(unit_copy: Path) -> None:
    assert ANALYZE is not None
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = r.stdout + r.stderr
    # Unknown or unparsable settings are only warnings ("…, ignoring"): fail on them too.
    ours = [line for line in out.splitlines() if "mip6ctl.service" in line]
    assert r.returncode == 0 and not ours, out


@needs_analyze
def test_security_exposure_stays_low(unit_copy: Path) -> None:
    assert ANALYZE is not None
    help_text = subprocess.run(
        [ANALYZE, "security", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    if "--offline" not in help_text:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    # Exposure is 2.6 of 10 today; --threshold is on a 0-100 scale.
    r = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--threshold=35", "--no-pager", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr


def test_unit_settings() -> None:
    d = _directives(UNIT.read_text())
    assert d["Type"] == ["notify"]
    assert d["ExecStart"] == ["/usr/bin/mip6ctl daemon"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    assert "WatchdogSec" in d
    assert d["StateDirectory"] == ["mip6"] and d["StateDirectoryMode"] == ["0700"]
    assert d["RuntimeDirectory"] == ["mip6"]
    assert set(d["CapabilityBoundingSet"][0].split()) == {
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SYS_ADMIN",
    }
    assert set(d["RestrictAddressFamilies"][0].split()) == {
        "AF_UNIX",
        "AF_NETLINK",
        "AF_INET",
        "AF_INET6",
        "AF_PACKET",
    }
    assert d["RestrictNamespaces"] == ["net"]
    for key in ("ProtectSystem",):
        assert d[key] == ["strict"]
    for key in (
        "ProtectHome",
        "PrivateTmp",
        "NoNewPrivileges",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "ProtectKernelModules",
    ):
        assert d[key] == ["yes"], key
    # The reconciler writes sysctls through /proc/sys: these would break it.
    assert "ProtectKernelTunables" not in d and "ProcSubset" not in d
    assert "ReadWritePaths" not in d  # /etc/mip6 stays read-only


# ---------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # A short directory: AF_UNIX paths are limited to 108 bytes.
    d = tempfile.mkdtemp(prefix="sdn", dir="/tmp")
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        yield s
    finally:
        s.close()
        shutil.rmtree(d)


def test_notify_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready("x") is False


def test_ready_status_and_stopping(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("ha: 3 binding(s)\ngeneration 2")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=ha: 3 binding(s) generation 2"
    assert sdnotify.status("reloading")
    assert notify_socket.recv(4096) == b"STATUS=reloading"
    assert sdnotify.reloading()
    msg = notify_socket.recv(4096).decode()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and msg.split("=")[-1].isdigit()
    assert sdnotify.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"mip6ctl-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert s.recv(4096) == b"WATCHDOG=1"


def test_dead_socket_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert sdnotify.notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "1", None),  # another process's watchdog (inherited variables)
        ("0", None, None),
        ("abc", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert sdnotify.watchdog_interval() == expected


def test_keepalive_pings_at_half_the_interval(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s → a ping every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notify_socket.setblocking(False)

    async def main() -> int:
        task = sdnotify.keepalive()
        assert task is not None
        await asyncio.sleep(0.28)
        await sdnotify.cancel(task)
        n = 0
        while True:
            try:
                assert notify_socket.recv(64) == b"WATCHDOG=1"
            except BlockingIOError:
                return n
            n += 1

    assert 3 <= asyncio.run(main()) <= 8


def test_keepalive_off_without_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)

    async def main() -> None:
        assert sdnotify.keepalive() is None
        await sdnotify.cancel(None)

    asyncio.run(main())
