"""Network namespaces for tests and benchmarks: per-run names, always cleaned up.

Every namespace is named ``<prefix><tag>`` where the prefix carries this
process id, so two runs (or the leftovers of a crashed run) never collide.
`sweep_stale()` removes namespaces left by runs whose process is gone.
Tests may use iproute2 to build topologies; product code never does.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

PREFIX_BASE = "m6test"
RUN_PREFIX = f"{PREFIX_BASE}{os.getpid()}-"
_NAME_RE = re.compile(rf"^{PREFIX_BASE}(\d+)-")
_CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def missing_capability() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN/CAP_SYS_ADMIN) to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`) to build test topologies"
    return None


#: How much longer a test waits for daemons under emulation (the vm tier runs
#: Python ~5-20x slower); a wait that only bounds a hang, not a measured figure.
SLOWDOWN = float(
    os.environ.get("MIP6_TEST_SLOWDOWN") or (6 if os.environ.get("MIP6_VM_GUEST") else 1)
)

#: In the vm tier's guest: qemu without KVM. Figures (loss 0 over a restart, a
#: rate, 20,000 nodes in a bound) are not meaningful there; such tests skip.
EMULATED = bool(os.environ.get("MIP6_VM_GUEST"))

_KERNEL_FEATURES: dict[str, str | None] = {}

#: How each feature is tried, inside a throwaway namespace (never on the host's
#: interfaces), and the kernel option its absence points at.
_FEATURE_PROBES: dict[str, tuple[str, list[list[str]]]] = {
    "seg6": (
        "CONFIG_IPV6_SEG6_LWTUNNEL (seg6 encap routes: the HA/MN data path without ip6tnl)",
        [
            [
                "-6",
                "route",
                "add",
                "2001:db8:ffff::1/128",
                "encap",
                "seg6",
                "mode",
                "encap.red",
                "segs",
                "2001:db8:ffff::2",
                "dev",
                "lo",
            ]
        ],
    ),
    "ip6tnl": (
        "CONFIG_IPV6_TUNNEL (ip6tnl devices)",
        [
            [
                "link",
                "add",
                "m6probe",
                "type",
                "ip6tnl",
                "mode",
                "ip6ip6",
                "local",
                "2001:db8:ffff::1",
                "remote",
                "2001:db8:ffff::2",
            ]
        ],
    ),
}


def kernel_lacks(feature: str) -> str | None:
    """The kernel option missing for `feature` (see _FEATURE_PROBES), or None.

    Tried once per process in a namespace of its own, so a test can be skipped
    with the missing capability named instead of failing on ENOTSUP.
    """
    if feature in _KERNEL_FEATURES:
        return _KERNEL_FEATURES[feature]
    why, commands = _FEATURE_PROBES[feature]
    name = f"{RUN_PREFIX}probe-{feature}"
    missing: str | None = None
    try:
        ip("netns", "add", name)
        ip("link", "set", "lo", "up", ns=name)
        for cmd in commands:
            if ip(*cmd, ns=name, check=False).returncode != 0:
                missing = f"kernel lacks {why}"
                break
    finally:
        ip("netns", "del", name, check=False)
    _KERNEL_FEATURES[feature] = missing
    return missing


def run(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (inside namespace `ns` when given), bounded in time."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


def list_namespaces() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def sweep_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process no longer exists."""
    removed = []
    for name in list_namespaces():
        m = _NAME_RE.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


class NetnsFactory:
    """Creates namespaces for one test; `cleanup()` deletes all of them."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self._seq = 0

    def __call__(self, tag: str = "ns", *, loopback_up: bool = True) -> str:
        self._seq += 1
        name = f"{RUN_PREFIX}{tag}{self._seq}"
        ip("netns", "add", name)
        self.created.append(name)
        if loopback_up:
            ip("link", "set", "lo", "up", ns=name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.created):
            # Kill anything still running in the namespace, then delete it.
            pids = ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            ip("netns", "del", name, check=False)
        self.created.clear()


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Switch *this thread* into namespace `name` for the block.

    Sockets opened inside the block stay in that namespace after it ends,
    which is how tests open a pyroute2 or raw socket in a test namespace.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns(back): {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(own)


def ping6(ns: str, dst: str, *, count: int = 3, timeout: float = 2.0) -> int:
    """Send ICMPv6 echo requests from namespace `ns`; return how many replies came back.

    A raw-socket ping, because test machines need not have ping(8) installed.
    """
    import select
    import socket
    import struct
    import time

    with inside(ns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ident = os.getpid() & 0xFFFF
    replies = 0
    with s:
        for seq in range(1, count + 1):
            s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"mip6ctl", (dst, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                data, _addr = s.recvfrom(2048)
                if len(data) >= 8 and data[0] == 129:
                    _t, _c, _k, rid, rseq = struct.unpack_from("!BBHHH", data)
                    if rid == ident and rseq == seq:
                        replies += 1
                        break
    return replies


def _radvd_missing() -> bool:
    from mip6ctl.testbed.radvd import find_radvd

    return find_radvd() is None


#: the reference testbed runs radvd on its links (TESTBED.md)
NEEDS_RADVD = pytest.mark.skipif(
    _radvd_missing(), reason="netns tier: needs radvd (scripts/bootstrap installs it)"
)
