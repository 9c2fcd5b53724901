"""Named network namespaces without iproute2: create, enter, find processes, remove.

The testbed is user-facing, so it must not depend on `ip netns`.  Namespaces
are bind mounts under /run/netns (what `ip netns add` and
`pyroute2.netns.create` make), so iproute2 still sees them for debugging.
Entering one is per thread (setns(2) with CLONE_NEWNET moves only the calling
thread), which is how sysctls are written: /proc/sys/net shows the namespace of
the thread that opens it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Create the named namespace (pyroute2 forks a helper that unshares and bind-mounts it)."""
    from pyroute2 import netns

    if exists(name):
        raise FileExistsError(f"network namespace {name} already exists")
    netns.create(name)


def remove(name: str) -> None:
    """Unmount and unlink the namespace; the kernel frees it (and its devices) once unused."""
    p = path(name).encode()
    _libc.umount2(p, _MNT_DETACH)  # fails harmlessly when not mounted
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Switch the calling thread into namespace `name` for the block, then back.

    Sockets opened in the block stay in that namespace after it ends.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path(name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run_inside(name: str, fn: Callable[[], T], *, timeout: float = 30.0) -> T:
    """Run `fn` in a fresh thread switched into namespace `name`; return its result."""
    box: dict[str, object] = {}

    def main() -> None:
        try:
            fd = os.open(path(name), os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed back to the caller
            box["error"] = e

    t = threading.Thread(target=main, name=f"netns-{name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"task in namespace {name} did not finish within {timeout} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def write_sysctls(name: str, values: dict[str, str | int]) -> None:
    """Write sysctls (dotted names below `net.`) inside namespace `name`, in order."""

    def write() -> None:
        for key, value in values.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(f"{value}\n")

    run_inside(name, write)


def read_sysctl(name: str, key: str) -> str:
    def read() -> str:
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()

    return run_inside(name, read)


class SetnsPreexec:
    """A `preexec_fn` that moves a forked child into namespace `name` before exec.

    The namespace file is opened now, in the parent, so the child makes only one
    system call between fork and exec.  Call `close()` once the child is spawned.
    """

    def __init__(self, name: str) -> None:
        self.fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)

    def __call__(self) -> None:
        if _libc.setns(self.fd, CLONE_NEWNET) != 0:
            os._exit(127)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pids_in(name: str) -> list[int]:
    """Processes whose (main thread's) network namespace is `name`, except this one."""
    try:
        st = os.stat(path(name))
    except FileNotFoundError:
        return []
    key = (st.st_dev, st.st_ino)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            s = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # gone, or a zombie
            continue
        if (s.st_dev, s.st_ino) == key:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def kill_all(
    pids: list[int], *, grace: float = 1.0, reap: Callable[[], None] | None = None
) -> None:
    """SIGTERM `pids`, wait up to `grace` seconds, then SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        if reap:
            reap()
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left and reap:
        deadline = time.monotonic() + 2.0
        while any(alive(p) for p in left) and time.monotonic() < deadline:
            reap()
            time.sleep(0.01)
