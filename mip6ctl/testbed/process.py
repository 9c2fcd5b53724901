"""Stopping a daemon the testbed (or a test) started: politely, then for sure."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

__all__ = ["stop_process", "tail_lines"]


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM, SIGKILL after ``grace`` seconds; only this process, by its pid."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def tail_lines(path: Path, n: int) -> list[str] | None:
    """The last ``n`` lines of a log file (None when it cannot be read)."""
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return None
