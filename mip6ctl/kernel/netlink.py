"""Netlink framing, written once: nlmsghdr packing, attribute packing/iteration, acks.

Every netlink user in mip6ctl (rtnetlink here and in rtcodec/links, XFRM in
xfrm_codec, nf_tables in nft, generic netlink in genl) frames its messages
with the helpers of this module; only the family-specific bodies live in
those modules.  The rtnetlink constants and the NETLINK_ROUTE socket setup
are here too.

Why not pyroute2 here: the writer and observer handle 100k objects, and
pyroute2's generic message objects cost ~100x more time and memory than
packing and slicing the few attributes mip6ctl needs (DESIGN.md, scale facts).
This module knows bytes and sockets, nothing about mip6ctl objects.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from collections.abc import Iterator

# --- netlink core ---------------------------------------------------------------------------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended ack attributes follow

NLMSGERR_ATTR_MSG = 1

# --- rtnetlink message types ------------------------------------------------------------------
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34

# multicast groups (numbers, not bit masks)
RTNLGRP_LINK = 1
RTNLGRP_NEIGH = 3
RTNLGRP_IPV6_IFADDR = 9
RTNLGRP_IPV6_ROUTE = 11
RTNLGRP_IPV6_RULE = 19

AF_INET6 = socket.AF_INET6

# --- struct layouts -------------------------------------------------------------------------
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
FIBRULEHDR = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table res1 res2 action flags
IFADDRMSG = struct.Struct("=BBBBI")  # family prefixlen flags scope index
NDMSG = struct.Struct("=BBHiHBB")  # family pad pad ifindex state flags type
IFINFOMSG = struct.Struct("=BxHiII")  # family type index flags change
RTATTR = struct.Struct("=HH")
U8 = struct.Struct("=B")
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF


def align4(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute (TLV), padded to 4 bytes."""
    n = 4 + len(data)
    return RTATTR.pack(n, kind) + data + b"\0" * (align4(n) - n)


def attr_u8(kind: int, v: int) -> bytes:
    return attr(kind, U8.pack(v))


def attr_u32(kind: int, v: int) -> bytes:
    return attr(kind, U32.pack(v))


def attr_str(kind: int, s: str) -> bytes:
    return attr(kind, s.encode() + b"\0")


def nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def message(kind: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    """One netlink message; payloads built here are always 4-byte aligned."""
    return NLMSGHDR.pack(16 + len(payload), kind, flags, seq, pid) + payload


def iter_messages(buf: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (type, flags, seq, payload_offset, payload_end) for each message in `buf`."""
    off = 0
    end = len(buf)
    unpack = NLMSGHDR.unpack_from
    while off + 16 <= end:
        length, kind, flags, seq, _pid = unpack(buf, off)
        if length < 16 or off + length > end:
            break
        yield kind, flags, seq, off + 16, off + length
        off += (length + 3) & ~3


def iter_attrs(buf: bytes | memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, data offset, data end) for each attribute in buf[off:end], in order.

    Repeated attributes (XFRMA_MIGRATE, list elements) come out once each; a
    truncated attribute ends the walk.  The type has the NLA_F_* bits cleared.
    """
    unpack = RTATTR.unpack_from
    while off + 4 <= end:
        n, kind = unpack(buf, off)
        if n < 4 or off + n > end:
            break
        yield kind & NLA_TYPE_MASK, off + 4, off + n
        off += (n + 3) & ~3


def attrs(buf: bytes | memoryview, off: int, end: int) -> dict[int, tuple[int, int]]:
    """Map attribute type -> (data offset, data end), last one wins; slices are left to
    the caller.  (Inlined rather than built on `iter_attrs`: route dumps are hot.)"""
    out: dict[int, tuple[int, int]] = {}
    unpack = RTATTR.unpack_from
    while off + 4 <= end:
        n, kind = unpack(buf, off)
        if n < 4 or off + n > end:
            break
        out[kind & NLA_TYPE_MASK] = (off + 4, off + n)
        off += (n + 3) & ~3
    return out


def attr_bytes(buf: bytes | memoryview, off: int, end: int) -> dict[int, bytes]:
    """`attrs` with the data sliced out (small messages: nf_tables, generic netlink)."""
    return {k: bytes(buf[a:b]) for k, (a, b) in attrs(buf, off, end).items()}


def parse_error(
    buf: bytes | memoryview, off: int, end: int, flags: int, *, strerror: bool = True
) -> tuple[int, int, str]:
    """Decode an NLMSG_ERROR payload into (errno, acked seq, extack message).

    errno 0 is an ack.  Without an extended-ack message the text is
    ``os.strerror(errno)``, or "" with ``strerror=False`` (callers that add the
    strerror themselves, e.g. `XfrmError`).
    """
    (err,) = I32.unpack_from(buf, off)
    _l, _t, _f, seq, _p = NLMSGHDR.unpack_from(buf, off + 4)
    text = ""
    if flags & NLM_F_ACK_TLVS:
        # With NETLINK_CAP_ACK only the original header is echoed; TLVs follow it.
        for kind, a, b in iter_attrs(buf, off + 4 + 16, end):
            if kind == NLMSGERR_ATTR_MSG:
                text = bytes(buf[a:b]).split(b"\0", 1)[0].decode(errors="replace")
    code = -err
    if code and not text and strerror:
        text = os.strerror(code)
    return code, seq, text


def open_socket(
    *, groups: tuple[int, ...] = (), rcvbuf: int = 32 << 20, protocol: int = NETLINK_ROUTE
) -> socket.socket:
    """A netlink socket (NETLINK_ROUTE unless told) in the calling thread's network namespace.

    Strict checking makes the kernel honour the filters in dump requests; capped
    extended acks give error strings without echoing our whole message back.
    """
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            s.setsockopt(SOL_NETLINK, opt, 1)
        for force, plain, size in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20),
        ):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, size)
            except PermissionError:
                s.setsockopt(socket.SOL_SOCKET, plain, size)
        s.bind((0, 0))
        for g in groups:
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
    except BaseException:
        s.close()
        raise
    return s


def transact(sock: socket.socket, request: bytes, seq: int) -> list[bytes]:
    """Send one request that asks for an ack (NLM_F_ACK) and collect the payloads of the
    replies with its sequence number up to the ack; raises OSError(errno, extack) on a
    refusal.  For small request/response exchanges (generic netlink, single GETs)."""
    sock.send(request)
    out: list[bytes] = []
    while True:
        buf = sock.recv(1 << 16)
        for kind, flags, mseq, a, b in iter_messages(buf):
            if mseq != seq:
                continue
            if kind == NLMSG_ERROR:
                code, _s, text = parse_error(buf, a, b, flags)
                if code:
                    raise OSError(code, text)
                return out
            if kind == NLMSG_DONE:
                return out
            out.append(bytes(buf[a:b]))


def dump_iter(sock: socket.socket, request: bytes, seq: int) -> Iterator[bytes]:
    """Send one dump request and yield the raw reply buffers up to NLMSG_DONE, so a
    caller can parse as it reads and never holds the whole dump in memory.

    Raises OSError(errno) when the kernel refuses the dump (e.g. ENOENT for a
    table that does not exist) or interrupts it (EINTR on NLM_F_DUMP_INTR).
    """
    sock.send(request)
    scratch = bytearray(1 << 20)
    view = memoryview(scratch)
    intr = False
    while True:
        n = sock.recv_into(scratch)
        buf = bytes(view[:n])
        done = False
        for kind, flags, mseq, a, b in iter_messages(buf):
            if mseq != seq:
                continue
            if flags & NLM_F_DUMP_INTR:
                intr = True
            if kind == NLMSG_DONE:
                done = True
                if b - a >= 4 and I32.unpack_from(buf, a)[0] < 0:
                    code = -I32.unpack_from(buf, a)[0]
                    raise OSError(code, os.strerror(code))
            elif kind == NLMSG_ERROR:
                code, _s, text = parse_error(buf, a, b, flags)
                if code:
                    raise OSError(code, text)
                done = True
        yield buf
        if done:
            break
    if intr:
        raise OSError(_errno.EINTR, "dump interrupted by concurrent change")


def dump(sock: socket.socket, request: bytes, seq: int) -> list[bytes]:
    """`dump_iter` collected into a list (small dumps)."""
    return list(dump_iter(sock, request, seq))
