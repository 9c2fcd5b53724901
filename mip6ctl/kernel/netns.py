"""Throwaway network namespaces for probing and benchmarking, without `ip`.

A thread that calls unshare(CLONE_NEWNET) moves only itself into a fresh,
empty namespace; sockets opened there stay in it.  When the thread ends and
its sockets are closed the namespace disappears by itself, so nothing can be
left behind on the host, even after a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def unshare_net() -> None:
    """Move the calling thread into a new, empty network namespace."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def run_isolated(fn: Callable[[], T], *, timeout: float | None = 120.0) -> T:
    """Run `fn` in a new thread inside a fresh network namespace; return its result."""
    box: dict[str, object] = {}

    def main() -> None:
        try:
            unshare_net()
            box["value"] = fn()
        except BaseException as e:  # handed back to the caller
            box["error"] = e

    t = threading.Thread(target=main, name="mip6ctl-netns", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"isolated namespace task did not finish within {timeout} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _request(payload_type: int, payload: bytes, *, create: bool = True) -> None:
    from mip6ctl.kernel import netlink as nl

    with nl.open_socket(rcvbuf=1 << 20) as s:
        s.settimeout(5)
        flags = nl.NLM_F_REQUEST | nl.NLM_F_ACK
        if create:
            flags |= nl.NLM_F_CREATE | nl.NLM_F_EXCL
        s.send(nl.message(payload_type, flags, 1, payload))
        buf = s.recv(1 << 16)
        for kind, f, _seq, a, b in nl.iter_messages(buf):
            if kind == nl.NLMSG_ERROR:
                code, _s, text = nl.parse_error(buf, a, b, f)
                if code:
                    raise OSError(code, text)


def link_up(index: int = 1) -> None:
    """Bring interface `index` up (1 = loopback) in the calling thread's namespace."""
    from mip6ctl.kernel import netlink as nl

    _request(nl.RTM_NEWLINK, nl.IFINFOMSG.pack(0, 0, index, 1, 1), create=False)


def add_veth(name: str, peer: str) -> None:
    """Create a veth pair with both ends up, in the calling thread's namespace."""
    import socket

    from mip6ctl.kernel import netlink as nl

    # Both ends are brought up afterwards: a veth end cannot open before its peer exists.
    peer_msg = nl.IFINFOMSG.pack(0, 0, 0, 0, 0) + nl.attr_str(3, peer)
    info = nl.nested(18, nl.attr_str(1, "veth"), nl.nested(2, nl.attr(1, peer_msg)))
    _request(nl.RTM_NEWLINK, nl.IFINFOMSG.pack(0, 0, 0, 0, 0) + nl.attr_str(3, name) + info)
    link_up(socket.if_nametoindex(name))
    link_up(socket.if_nametoindex(peer))
