"""`mip6ctl status --watch [SECONDS]` against a fake daemon (issue 19).

The daemon is the control server of tests/unit/daemon/test_status_cli.py on a
tmp socket; the watch's sleep is replaced by a hook that runs between frames
(stops or restarts the daemon, changes its answer) and raises
KeyboardInterrupt after the last one, as Ctrl-C would.  One test runs the
real command in a subprocess and interrupts it with SIGINT.
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.cli import status
from mip6ctl.cli.main import main
from tests.unit.daemon.test_control import ServerThread
from tests.unit.daemon.test_status_cli import HA_STATUS, serve

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    p = tmp_path / "c.sock"
    assert len(str(p)) < 100  # AF_UNIX path limit
    return p


class Frames:
    """The watch's sleep: calls `between[i]` after frame i, Ctrl-C after `count` frames."""

    def __init__(self, count: int, between: dict[int, Callable[[], None]] | None = None):
        self.count = count
        self.between = between or {}
        self.done = 0
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.done += 1
        if self.done >= self.count:
            raise KeyboardInterrupt
        if self.done in self.between:
            self.between[self.done]()


def _watch(monkeypatch: pytest.MonkeyPatch, frames: Frames, *argv: str) -> int:
    monkeypatch.setattr(status, "_sleep", frames)
    return main(["status", "--watch", "0.05", *argv])


def _lines(out: str) -> list[dict[str, Any]]:
    lines = out.splitlines()
    assert all(line.startswith("{") and line.endswith("}") for line in lines), lines
    return [json.loads(line) for line in lines]


def test_json_lines_one_per_frame(sock, monkeypatch, capsys):
    frames = Frames(4)
    with serve(sock, HA_STATUS):
        assert _watch(monkeypatch, frames, "--json", "--socket", str(sock)) == 0
    out = capsys.readouterr().out
    docs = _lines(out)
    assert len(docs) == 4
    # each line is what `status --json` prints, compact
    with serve(sock, HA_STATUS):
        assert main(["status", "--json", "--socket", str(sock)]) == 0
    single = json.loads(capsys.readouterr().out)
    assert all(d == single for d in docs)
    assert single["ok"] is True and single["command"] == "status" and single["version"] == 1
    assert all(0 <= d <= 0.05 for d in frames.delays)


def test_daemon_going_away_and_coming_back(sock, monkeypatch, capsys):
    """Frames 1 and 5 answered; 2-4 carry the error, all with the same unreachable_since."""
    servers: list[ServerThread] = []
    second = copy.deepcopy(HA_STATUS)
    second["pid"] = 4343

    def stop() -> None:
        servers.pop().__exit__(None, None, None)

    def start() -> None:
        servers.append(serve(sock, second).__enter__())

    servers.append(serve(sock, HA_STATUS).__enter__())
    try:
        frames = Frames(5, {1: stop, 4: start})
        assert _watch(monkeypatch, frames, "--json", "--socket", str(sock)) == 0
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    docs = _lines(capsys.readouterr().out)
    assert [d["ok"] for d in docs] == [True, False, False, False, True]
    assert docs[0]["pid"] == 4242 and docs[4]["pid"] == 4343
    down = docs[1:4]
    assert {d["errors"][0]["kind"] for d in down} == {"NoDaemon"}
    assert all(str(sock) in d["errors"][0]["message"] for d in down)
    assert all(d["command"] == "status" and d["version"] == 1 for d in down)
    assert len({d["unreachable_since"] for d in down}) == 1
    assert down[0]["unreachable_since"].endswith("Z")
    assert "unreachable_since" not in docs[4]


def test_no_daemon_at_all_keeps_trying(sock, monkeypatch, capsys):
    frames = Frames(3)
    assert _watch(monkeypatch, frames, "--json", "--socket", str(sock)) == 0
    docs = _lines(capsys.readouterr().out)
    assert len(docs) == 3 and not any(d["ok"] for d in docs)


def test_human_frames_separated_by_a_blank_line(sock, monkeypatch, capsys):
    monkeypatch.setattr(status, "_clears_screen", lambda: False)
    frames = Frames(3)
    with serve(sock, HA_STATUS):
        assert _watch(monkeypatch, frames, "--socket", str(sock)) == 0
    out = capsys.readouterr().out
    assert "\x1b[2J" not in out
    parts = out.split("\nevery 0.05s · ")
    assert len(parts) == 3
    assert out.startswith("every 0.05s · ") and "Ctrl-C to stop" in out
    for part in parts:
        assert "ha ha-1  pid 4242" in part and "Binding cache" in part
    assert all(p.endswith("\n") for p in parts[:-1])  # a blank line between frames


def test_human_frames_on_a_terminal_clear_the_screen(sock, monkeypatch, capsys):
    monkeypatch.setattr(status, "_clears_screen", lambda: True)
    frames = Frames(3)
    with serve(sock, HA_STATUS):
        assert _watch(monkeypatch, frames, "--socket", str(sock)) == 0
    out = capsys.readouterr().out
    assert out.count(status._CLEAR) == 3
    assert out.startswith(status._CLEAR)


def test_human_frame_shows_the_error_and_since_when(sock, monkeypatch, capsys):
    monkeypatch.setattr(status, "_clears_screen", lambda: False)
    servers = [serve(sock, HA_STATUS).__enter__()]

    def stop() -> None:
        servers.pop().__exit__(None, None, None)

    def start() -> None:
        servers.append(serve(sock, HA_STATUS).__enter__())

    try:
        frames = Frames(4, {1: stop, 3: start})
        assert _watch(monkeypatch, frames, "--socket", str(sock)) == 0
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    captured = capsys.readouterr()
    parts = captured.out.split("\nevery 0.05s · ")
    assert len(parts) == 4
    assert "pid 4242" in parts[0] and "pid 4242" in parts[3]
    for part in parts[1:3]:
        assert "no daemon is listening on" in part and "pid 4242" not in part
        assert "unreachable since " in part and "trying again every 0.05s" in part
    since = [p.split("unreachable since ")[1].split(" (for")[0] for p in parts[1:3]]
    assert since[0] == since[1]
    assert captured.err == ""


def test_without_watch_nothing_changes(sock, capsys):
    assert main(["status", "--json", "--socket", str(sock)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["errors"][0]["kind"] == "NoDaemon" and "unreachable_since" not in doc


def test_parser_validates_seconds(capsys):
    with pytest.raises(SystemExit) as e:
        main(["status", "--watch", "0"])
    assert e.value.code == 64
    capsys.readouterr()


def test_real_ctrl_c_exits_0(sock):
    """The command itself, interrupted with SIGINT after a few lines: exit 0, JSON Lines."""
    with serve(sock, HA_STATUS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mip6ctl", "status", "--watch", "0.05", "--json",
             "--socket", str(sock)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            got = [json.loads(proc.stdout.readline()) for _ in range(3)]
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert all(d["ok"] is True and d["pid"] == 4242 for d in got)
    assert "Traceback" not in err
    assert all(json.loads(line)["ok"] for line in rest.splitlines())
