"""Generic netlink, in one module: family resolution, requests, the SEG6 tunnel source.

Generic netlink families get their message type at run time: the controller
family (``nlctrl``, fixed id GENL_ID_CTRL) maps a name such as ``"SEG6"`` to
it with CTRL_CMD_GETFAMILY.  `GenlSocket` resolves and caches those ids and
sends one acked request at a time (`request`); the framing is
`mip6ctl.kernel.netlink`'s.

The SEG6 family (net/ipv6/seg6.c) holds the per-namespace tunnel source of
seg6 encapsulation (``ip sr tunsrc``): `get_seg6_tunsrc` / `set_seg6_tunsrc`,
each in the calling thread's network namespace.  Why the mobile node sets it:
see mip6ctl/daemon/mobile.py (the outer source must be the care-of address).
The kernel has no "unset": ``::`` means "source address selection", so None
and ``::`` both clear it, and reading ``::`` back gives None.
"""

from __future__ import annotations

import contextlib
import errno
import struct
from ipaddress import IPv6Address

from mip6ctl.kernel import netlink as nl

__all__ = [
    "GenlSocket",
    "get_seg6_tunsrc",
    "set_seg6_tunsrc",
]

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
#: struct genlmsghdr: cmd, version, reserved
GENLMSGHDR = struct.Struct("=BBH")

SEG6_GENL_NAME = "SEG6"
SEG6_GENL_VERSION = 1
SEG6_CMD_SETHMAC, SEG6_CMD_DUMPHMAC, SEG6_CMD_SET_TUNSRC, SEG6_CMD_GET_TUNSRC = 1, 2, 3, 4
SEG6_ATTR_DST = 1

_UNSPECIFIED = IPv6Address("::")


class GenlSocket:
    """A NETLINK_GENERIC socket in the calling thread's network namespace."""

    def __init__(self, *, timeout: float = 2.0) -> None:
        self.sock = nl.open_socket(protocol=NETLINK_GENERIC, rcvbuf=1 << 20)
        self.sock.settimeout(timeout)
        self._seq = 0
        self._families: dict[str, int] = {}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> GenlSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(
        self, family: int, cmd: int, attrs: bytes = b"", *, version: int = 1
    ) -> list[tuple[int, dict[int, bytes]]]:
        """One acked request; the replies as (cmd, {attribute type: data}) before the ack.

        Raises OSError(errno, extack text) when the kernel refuses it.
        """
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        payload = GENLMSGHDR.pack(cmd, version, 0) + attrs
        req = nl.message(family, nl.NLM_F_REQUEST | nl.NLM_F_ACK, self._seq, payload)
        out = []
        for reply in nl.transact(self.sock, req, self._seq):
            if len(reply) < GENLMSGHDR.size:
                continue
            out.append((reply[0], nl.attr_bytes(reply, GENLMSGHDR.size, len(reply))))
        return out

    def family(self, name: str) -> int:
        """The message type of generic netlink family `name` (CTRL_CMD_GETFAMILY), cached.

        ENOENT when this kernel has no such family (module not built or loaded).
        """
        if name not in self._families:
            try:
                replies = self.request(
                    GENL_ID_CTRL, CTRL_CMD_GETFAMILY, nl.attr_str(CTRL_ATTR_FAMILY_NAME, name)
                )
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
                replies = []
            ids = [at[CTRL_ATTR_FAMILY_ID] for _cmd, at in replies if CTRL_ATTR_FAMILY_ID in at]
            if not ids:
                raise OSError(errno.ENOENT, f"no {name} generic netlink family in this kernel")
            self._families[name] = nl.U16.unpack_from(ids[0])[0]
        return self._families[name]


def _seg6(s: GenlSocket) -> int:
    try:
        return s.family(SEG6_GENL_NAME)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise OSError(
                errno.ENOENT, "no SEG6 generic netlink family (kernel without IPv6 segment routing)"
            ) from None
        raise


def get_seg6_tunsrc(sock: GenlSocket | None = None) -> IPv6Address | None:
    """``ip sr tunsrc show``: the namespace's seg6 tunnel source, None when unset (``::``).

    `sock`: a socket opened in the namespace to read (default: a new one, in the
    calling thread's namespace)."""
    with contextlib.nullcontext(sock) if sock is not None else GenlSocket() as s:
        replies = s.request(_seg6(s), SEG6_CMD_GET_TUNSRC, version=SEG6_GENL_VERSION)
    for _cmd, at in replies:
        raw = at.get(SEG6_ATTR_DST)
        if raw is not None and len(raw) >= 16:
            addr = IPv6Address(raw[:16])
            return None if addr == _UNSPECIFIED else addr
    return None


def set_seg6_tunsrc(address: IPv6Address | str | None, sock: GenlSocket | None = None) -> None:
    """``ip sr tunsrc set ADDRESS``; None or ``::`` clears it (source address selection).

    `sock` as for `get_seg6_tunsrc`."""
    addr = _UNSPECIFIED if address is None else IPv6Address(address)
    with contextlib.nullcontext(sock) if sock is not None else GenlSocket() as s:
        s.request(
            _seg6(s),
            SEG6_CMD_SET_TUNSRC,
            nl.attr(SEG6_ATTR_DST, addr.packed),
            version=SEG6_GENL_VERSION,
        )
