"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without a library.

Why no libsystemd binding: the protocol is one datagram on the Unix socket
named by ``$NOTIFY_SOCKET`` (sd_notify(3)); a dependency for that is not worth
it.  Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the
daemon calls these unconditionally.

Watchdog: with ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``) and kills the service when no ``WATCHDOG=1`` arrives in
time.  :func:`keepalive` pings from a task *in the daemon's event loop*, at
half the interval as sd_watchdog_enabled(3) advises, so a blocked loop — the
failure that matters, since every Binding Update is handled there — stops
the pings and gets the daemon restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time

__all__ = [
    "cancel",
    "keepalive",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_interval",
]


def notify(message: str) -> bool:
    """Send ``message`` (``"KEY=VALUE"`` lines) to systemd; False when not under systemd.

    Errors are swallowed: losing a status line must never stop the daemon.
    """
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), path)
    except OSError:
        return False
    return True


def _status_field(text: str) -> str:
    # One line: a newline would start a new KEY=VALUE assignment.
    return "STATUS=" + " ".join(text.split())


def status(text: str) -> bool:
    """Free-form one-line status, shown by ``systemctl status``."""
    return notify(_status_field(text))


def ready(status_text: str | None = None) -> bool:
    """Start-up finished: ``Type=notify`` units become active now."""
    return notify("READY=1" + ("\n" + _status_field(status_text) if status_text else ""))


def reloading() -> bool:
    """A reload starts; send :func:`ready` when it is done.

    ``MONOTONIC_USEC`` is what ``Type=notify-reload`` (systemd ≥ 253) requires;
    older versions ignore it.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """``WatchdogSec=`` in seconds when the watchdog is on for this process, else None.

    ``$WATCHDOG_PID``, when set, must be this process (the variables are
    inherited by children, which must not ping on the parent's behalf).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


async def _ping(period: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period)


def keepalive(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[None] | None:
    """Start pinging the watchdog at half its interval; None when the watchdog is off.

    Cancel the returned task on shutdown (before ``STOPPING=1``).
    """
    interval = watchdog_interval()
    if interval is None:
        return None
    loop = loop or asyncio.get_running_loop()
    return loop.create_task(_ping(interval / 2), name="sd-watchdog")


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Stop a :func:`keepalive` task (None is fine)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
