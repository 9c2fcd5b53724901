"""XFRM over netlink: policies, states, MIGRATE and events, encoded by hand.

Why not pyroute2: it ships no XFRM family, and what this module needs is
narrow -- fixed C structs plus a few attributes -- and hot (10k policies on
an HA, batched).  A plain ``socket(AF_NETLINK, SOCK_RAW, NETLINK_XFRM)`` with
precompiled ``struct.Struct`` layouts lets us (a) put hundreds of requests in
one ``send()`` and match acks by sequence number, (b) decode dumps straight
into the compact objects of `mip6ctl.state.xfrm` (no message objects kept,
owned-only filtering before full decoding), and (c) keep the codec sans-I/O:
every ``encode_*`` returns bytes and `decode_events` / `decode_messages` take
bytes, so unit tests run without a kernel.

Layouts follow include/uapi/linux/xfrm.h on Linux (x86_64, checked against
the header with offsetof()): xfrm_selector 56 bytes, xfrm_user_tmpl 64,
xfrm_userpolicy_info 168, xfrm_usersa_info 224, xfrm_userpolicy_id 64,
xfrm_usersa_id 24, xfrm_user_migrate 76, xfrm_user_kmaddress 40.  Fields
declared ``__be16``/``__be32`` (ports, SPI) are network order; the rest are
host order ("=" formats).

Ownership (DESIGN.md invariant 3): `flush_owned` deletes one object at a
time by its full identity *including our mark*, so a foreign policy of the
same shape (no mark) is never hit; XFRM_MSG_FLUSHPOLICY/FLUSHSA are never
sent.  MIGRATE is the exception the kernel forces on us: it finds the policy
by selector/direction/type only (mark ignored), so `migrate` first checks
that no unmarked policy of that shape would be chosen instead.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

from mip6ctl import ownership
from mip6ctl.state.xfrm import (
    AF_INET,
    AF_INET6,
    IPPROTO_ICMPV6,
    IPPROTO_MH,
    OWNED_MARK,
    Action,
    Address,
    Direction,
    Level,
    Mark,
    Mode,
    Network,
    PolicyType,
    XfrmAlgo,
    XfrmPolicy,
    XfrmPolicyKey,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmStateKey,
    XfrmTemplate,
    is_owned_policy,
)

NETLINK_XFRM = 6
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1

XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ACQUIRE = 0x17
XFRM_MSG_EXPIRE = 0x18
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_POLEXPIRE = 0x1B
XFRM_MSG_FLUSHSA = 0x1C
XFRM_MSG_FLUSHPOLICY = 0x1D
XFRM_MSG_REPORT = 0x20
XFRM_MSG_MIGRATE = 0x21

XFRMA_ALG_AUTH = 1
XFRMA_ALG_CRYPT = 2
XFRMA_ALG_COMP = 3
XFRMA_TMPL = 5
XFRMA_SA = 6
XFRMA_POLICY = 7
XFRMA_SRCADDR = 13
XFRMA_COADDR = 14
XFRMA_POLICY_TYPE = 16
XFRMA_MIGRATE = 17
XFRMA_ALG_AEAD = 18
XFRMA_KMADDRESS = 19
XFRMA_ALG_AUTH_TRUNC = 20
XFRMA_MARK = 21
XFRMA_IF_ID = 31

XFRMNLGRP_ACQUIRE = 1
XFRMNLGRP_EXPIRE = 2
XFRMNLGRP_SA = 3
XFRMNLGRP_POLICY = 4
XFRMNLGRP_REPORT = 6
XFRMNLGRP_MIGRATE = 7
#: Groups a controller listens to: all but AEVENTS/MAPPING.
DEFAULT_GROUPS = (
    XFRMNLGRP_ACQUIRE,
    XFRMNLGRP_EXPIRE,
    XFRMNLGRP_SA,
    XFRMNLGRP_POLICY,
    XFRMNLGRP_REPORT,
    XFRMNLGRP_MIGRATE,
)

XFRM_INF = 0xFFFFFFFFFFFFFFFF

# -- struct layouts ------------------------------------------------------------

_NLMSGHDR = struct.Struct("=IHHII")  # len type flags seq pid
_NLA = struct.Struct("=HH")
_SEL = struct.Struct("=16s16sHHHHHBBB3xiI")  # 56
_ID = struct.Struct("=16sIB3x")  # 24; spi is __be32
_TMPL = struct.Struct("=16sIB3xH2x16sIBBBxIII")  # 64
_LFT_CFG = struct.Struct("=8Q")  # 64
_LFT_CUR = struct.Struct("=4Q")  # 32
_POL_TAIL = struct.Struct("=IIBBBB4x")  # priority index dir action flags share (+pad) = 16
_SA_TAIL = struct.Struct("=16s64s32s12sIIHBBB7x")  # saddr lft cur stats seq reqid fam mode rw flags
_USERSA_ID = struct.Struct("=16sIHBx")  # 24
_POLICY_ID_TAIL = struct.Struct("=IB3x")  # index dir (+pad) after the selector = 8
_MIGRATE = struct.Struct("=16s16s16s16sBBHIHH")  # 76
_KMADDRESS = struct.Struct("=16s16sIH2x")  # 40
_POLICY_TYPE = struct.Struct("=BxHBx")  # 6
_MARK = struct.Struct("=II")
_U32 = struct.Struct("=I")
_ALGO_HDR = struct.Struct("=64sI")  # xfrm_algo: name, key bits
_ALGO_AUTH_HDR = struct.Struct("=64sII")  # xfrm_algo_auth / xfrm_algo_aead: + trunc/icv bits

SIZEOF_SELECTOR = _SEL.size
SIZEOF_TMPL = _TMPL.size
SIZEOF_USERPOLICY_INFO = _SEL.size + _LFT_CFG.size + _LFT_CUR.size + _POL_TAIL.size
SIZEOF_USERSA_INFO = _SEL.size + _ID.size + _SA_TAIL.size
SIZEOF_USERPOLICY_ID = _SEL.size + _POLICY_ID_TAIL.size
SIZEOF_USERSA_ID = _USERSA_ID.size
SIZEOF_USER_MIGRATE = _MIGRATE.size
SIZEOF_USER_KMADDRESS = _KMADDRESS.size
SIZEOF_USER_ACQUIRE = _ID.size + 16 + _SEL.size + SIZEOF_USERPOLICY_INFO + 16
SIZEOF_USER_REPORT = 4 + _SEL.size

_LFT_CFG_INF = _LFT_CFG.pack(XFRM_INF, XFRM_INF, XFRM_INF, XFRM_INF, 0, 0, 0, 0)
_LFT_CUR_ZERO = bytes(_LFT_CUR.size)
_ZERO16 = bytes(16)


class XfrmError(OSError):
    """A refused XFRM request: errno plus the kernel's extended-ack message, if any."""

    def __init__(self, err: int, message: str = "", what: str = "") -> None:
        text = os.strerror(err)
        if message:
            text += f" ({message})"
        if what:
            text = f"{what}: {text}"
        super().__init__(err, text)
        self.kernel_message = message


# -- addresses, selectors, templates -------------------------------------------


def _pack_addr(a: Address | None) -> bytes:
    if a is None:
        return _ZERO16
    return a.packed.ljust(16, b"\0")


def _unpack_addr(raw: bytes, family: int) -> Address:
    if family == AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw[:16])


def _unpack_opt_addr(raw: bytes, family: int) -> Address | None:
    return None if raw == _ZERO16 else _unpack_addr(raw, family)


def encode_selector(sel: XfrmSelector) -> bytes:
    return _SEL.pack(
        sel.dst.network_address.packed.ljust(16, b"\0"),
        sel.src.network_address.packed.ljust(16, b"\0"),
        socket.htons(sel.dport),
        socket.htons(sel.dport_mask),
        socket.htons(sel.sport),
        socket.htons(sel.sport_mask),
        sel.family,
        sel.dst.prefixlen,
        sel.src.prefixlen,
        sel.proto,
        sel.ifindex,
        sel.user,
    )


@functools.lru_cache(maxsize=65536)
def _net(raw: bytes, plen: int, family: int) -> Network:
    """Prefixes repeat across a dump (the HA's /128, ::/0): build each ipaddress object once."""
    if family == AF_INET:
        return ipaddress.IPv4Network((raw[:4], plen), strict=False)
    return ipaddress.IPv6Network((raw, plen), strict=False)


def decode_selector(buf: bytes | memoryview, off: int = 0) -> XfrmSelector:
    d, s, dp, dpm, sp, spm, fam, pd, ps, proto, ifi, user = _SEL.unpack_from(buf, off)
    return XfrmSelector(
        dst=_net(d, pd, fam),
        src=_net(s, ps, fam),
        proto=proto,
        sport=socket.ntohs(sp),
        sport_mask=socket.ntohs(spm),
        dport=socket.ntohs(dp),
        dport_mask=socket.ntohs(dpm),
        ifindex=ifi,
        user=user,
    )


def encode_tmpl(t: XfrmTemplate, family: int) -> bytes:
    return _TMPL.pack(
        _pack_addr(t.dst),
        socket.htonl(t.spi),
        int(t.proto),
        t.family or family,
        _pack_addr(t.src),
        t.reqid,
        int(t.mode),
        t.share,
        int(t.level),
        t.aalgos,
        t.ealgos,
        t.calgos,
    )


def decode_tmpl(buf: bytes | memoryview, off: int = 0) -> XfrmTemplate:
    return _decode_tmpl_raw(bytes(buf[off : off + _TMPL.size]))


@functools.lru_cache(maxsize=4096)
def _decode_tmpl_raw(raw: bytes) -> XfrmTemplate:
    """Templates repeat across policies (same tunnel, same reqid): decode each once."""
    d, spi, proto, fam, s, reqid, mode, share, opt, aa, ea, ca = _TMPL.unpack(raw)
    return XfrmTemplate(
        proto=XfrmProto(proto),
        mode=Mode(mode),
        dst=_unpack_opt_addr(d, fam),
        src=_unpack_opt_addr(s, fam),
        spi=socket.ntohl(spi),
        reqid=reqid,
        level=Level(opt),
        share=share,
        aalgos=aa,
        ealgos=ea,
        calgos=ca,
        family=fam,
    )


# -- attributes and messages -------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    n = _NLA.size + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (-n & 3)


def iter_attrs(buf: bytes | memoryview, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, payload offset, payload end) for the attributes in buf[off:end]."""
    while off + 4 <= end:
        n, kind = _NLA.unpack_from(buf, off)
        if n < 4 or off + n > end:
            break
        yield kind & 0x3FFF, off + 4, off + n
        off += (n + 3) & ~3


def _attr_map(buf: bytes | memoryview, off: int, end: int) -> dict[int, tuple[int, int]]:
    """Last-wins map of attributes; XFRMA_MIGRATE may repeat and is collected separately."""
    return {k: (a, b) for k, a, b in iter_attrs(buf, off, end)}


def nlmsg(msg_type: int, flags: int, seq: int, payload: bytes, pid: int = 0) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, flags, seq, pid) + payload


def _mark_attrs(mark: Mark, if_id: int) -> bytes:
    out = b""
    if mark.value or mark.mask:
        out += _attr(XFRMA_MARK, _MARK.pack(mark.value, mark.mask))
    if if_id:
        out += _attr(XFRMA_IF_ID, _U32.pack(if_id))
    return out


def _policy_type_attr(ptype: PolicyType) -> bytes:
    return _attr(XFRMA_POLICY_TYPE, _POLICY_TYPE.pack(int(ptype), 0, 0))


def encode_userpolicy_info(p: XfrmPolicy) -> bytes:
    return (
        encode_selector(p.selector)
        + _LFT_CFG_INF
        + _LFT_CUR_ZERO
        + _POL_TAIL.pack(p.priority, p.index, int(p.direction), int(p.action), p.flags, p.share)
    )


def encode_policy(p: XfrmPolicy) -> bytes:
    """Body of XFRM_MSG_NEWPOLICY/UPDPOLICY: userpolicy_info + TMPL, POLICY_TYPE, MARK, IF_ID."""
    body = encode_userpolicy_info(p)
    if p.templates:
        fam = p.family
        body += _attr(XFRMA_TMPL, b"".join(encode_tmpl(t, fam) for t in p.templates))
    return body + _policy_type_attr(p.ptype) + _mark_attrs(p.mark, p.if_id)


def encode_policy_id(key: XfrmPolicyKey | XfrmPolicy, index: int = 0) -> bytes:
    """Body of XFRM_MSG_DELPOLICY/GETPOLICY: the identity, never just the selector."""
    if isinstance(key, XfrmPolicy):
        key = key.key
    return (
        encode_selector(key.selector)
        + _POLICY_ID_TAIL.pack(index, int(key.direction))
        + _policy_type_attr(key.ptype)
        + _mark_attrs(key.mark, key.if_id)
    )


def _decode_userpolicy_info(buf: bytes | memoryview, off: int) -> dict[str, Any]:
    prio, index, d, action, flags, share = _POL_TAIL.unpack_from(
        buf, off + _SEL.size + _LFT_CFG.size + _LFT_CUR.size
    )
    return {
        "selector": decode_selector(buf, off),
        "priority": prio,
        "index": index,
        "direction": Direction(d & 3),
        "action": Action(action),
        "flags": flags,
        "share": share,
    }


def _policy_extras(buf: bytes | memoryview, attrs: dict[int, tuple[int, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {"mark": Mark(), "ptype": PolicyType.MAIN, "if_id": 0, "templates": ()}
    if XFRMA_MARK in attrs:
        out["mark"] = Mark(*_MARK.unpack_from(buf, attrs[XFRMA_MARK][0]))
    if XFRMA_POLICY_TYPE in attrs:
        out["ptype"] = PolicyType(buf[attrs[XFRMA_POLICY_TYPE][0]])
    if XFRMA_IF_ID in attrs:
        out["if_id"] = _U32.unpack_from(buf, attrs[XFRMA_IF_ID][0])[0]
    if XFRMA_TMPL in attrs:
        a, b = attrs[XFRMA_TMPL]
        out["templates"] = tuple(
            decode_tmpl(buf, o) for o in range(a, b - _TMPL.size + 1, _TMPL.size)
        )
    return out


def decode_policy(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> XfrmPolicy:
    """Decode a NEWPOLICY/UPDPOLICY body (userpolicy_info + attributes)."""
    end = len(buf) if end is None else end
    base = _decode_userpolicy_info(buf, off)
    attrs = _attr_map(buf, off + SIZEOF_USERPOLICY_INFO, end)
    return XfrmPolicy(**base, **_policy_extras(buf, attrs))


# -- states --------------------------------------------------------------------


def _encode_algo(a: XfrmAlgo) -> bytes:
    name = a.name.encode()
    if len(name) >= 64:
        raise ValueError(f"algorithm name {a.name!r} too long")
    if a.kind in ("crypt", "comp"):
        kind = XFRMA_ALG_CRYPT if a.kind == "crypt" else XFRMA_ALG_COMP
        return _attr(kind, _ALGO_HDR.pack(name, a.key_bits) + a.key)
    kind = XFRMA_ALG_AUTH_TRUNC if a.kind == "auth" else XFRMA_ALG_AEAD
    return _attr(kind, _ALGO_AUTH_HDR.pack(name, a.key_bits, a.trunc_bits) + a.key)


def _decode_algo(kind: str, buf: bytes | memoryview, a: int, b: int) -> XfrmAlgo:
    if kind in ("crypt", "comp"):
        name, bits = _ALGO_HDR.unpack_from(buf, a)
        trunc, koff = 0, a + _ALGO_HDR.size
    else:
        name, bits, trunc = _ALGO_AUTH_HDR.unpack_from(buf, a)
        koff = a + _ALGO_AUTH_HDR.size
    key = bytes(buf[koff : min(b, koff + (bits + 7) // 8)])
    return XfrmAlgo.with_key(kind, name.split(b"\0", 1)[0].decode(), key, trunc)


def encode_usersa_info(s: XfrmState) -> bytes:
    return (
        encode_selector(s.selector)
        + _ID.pack(_pack_addr(s.dst), socket.htonl(s.spi), int(s.proto))
        + _SA_TAIL.pack(
            _pack_addr(s.src),
            _LFT_CFG_INF,
            _LFT_CUR_ZERO,
            bytes(12),
            0,
            s.reqid,
            s.family,
            int(s.mode),
            s.replay_window,
            s.flags,
        )
    )


def encode_state(s: XfrmState) -> bytes:
    """Body of XFRM_MSG_NEWSA/UPDSA: usersa_info + algorithms, COADDR, MARK, IF_ID."""
    body = encode_usersa_info(s)
    for a in s.algorithms:
        body += _encode_algo(a)
    if s.coaddr is not None:
        body += _attr(XFRMA_COADDR, _pack_addr(s.coaddr))
    return body + _mark_attrs(s.mark, s.if_id)


def encode_state_id(key: XfrmStateKey | XfrmState) -> bytes:
    """Body of XFRM_MSG_DELSA/GETSA; SPI-less protocols are found by XFRMA_SRCADDR."""
    if isinstance(key, XfrmState):
        key = key.key
    fam = AF_INET if key.dst.version == 4 else AF_INET6
    body = _USERSA_ID.pack(_pack_addr(key.dst), socket.htonl(key.spi), fam, int(key.proto))
    if key.src is not None:
        body += _attr(XFRMA_SRCADDR, _pack_addr(key.src))
    return body + _mark_attrs(key.mark, 0)


_ALGO_ATTRS = (
    (XFRMA_ALG_AEAD, "aead"),
    (XFRMA_ALG_CRYPT, "crypt"),
    (XFRMA_ALG_AUTH_TRUNC, "auth"),
    (XFRMA_ALG_COMP, "comp"),
)


def _decode_usersa_info(
    buf: bytes | memoryview, off: int, attrs: dict[int, tuple[int, int]]
) -> XfrmState:
    sel = decode_selector(buf, off)
    daddr, spi, proto = _ID.unpack_from(buf, off + _SEL.size)
    saddr, _lft, _cur, _st, _seq, reqid, fam, mode, rw, flags = _SA_TAIL.unpack_from(
        buf, off + _SEL.size + _ID.size
    )
    algos = [_decode_algo(kind, buf, *attrs[t]) for t, kind in _ALGO_ATTRS if t in attrs]
    if XFRMA_ALG_AUTH_TRUNC not in attrs and XFRMA_ALG_AUTH in attrs:
        legacy = _decode_algo("crypt", buf, *attrs[XFRMA_ALG_AUTH])
        algos.append(replace(legacy, kind="auth"))
    coaddr = None
    if XFRMA_COADDR in attrs:
        coaddr = _unpack_addr(bytes(buf[attrs[XFRMA_COADDR][0] : attrs[XFRMA_COADDR][0] + 16]), fam)
    mark = Mark(*_MARK.unpack_from(buf, attrs[XFRMA_MARK][0])) if XFRMA_MARK in attrs else Mark()
    if_id = _U32.unpack_from(buf, attrs[XFRMA_IF_ID][0])[0] if XFRMA_IF_ID in attrs else 0
    return XfrmState(
        dst=_unpack_addr(daddr, fam),
        src=_unpack_addr(saddr, fam),
        proto=XfrmProto(proto),
        spi=socket.ntohl(spi),
        mode=Mode(mode),
        reqid=reqid,
        selector=sel,
        mark=mark,
        algorithms=tuple(algos),
        coaddr=coaddr,
        replay_window=rw,
        flags=flags,
        if_id=if_id,
    )


def decode_state(buf: bytes | memoryview, off: int = 0, end: int | None = None) -> XfrmState:
    """Decode a NEWSA/UPDSA body (usersa_info + attributes)."""
    end = len(buf) if end is None else end
    return _decode_usersa_info(buf, off, _attr_map(buf, off + SIZEOF_USERSA_INFO, end))


# -- MIGRATE -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XfrmMigration:
    """One endpoint move (struct xfrm_user_migrate): templates/SAs old -> new."""

    old_dst: Address
    old_src: Address
    new_dst: Address
    new_src: Address
    proto: XfrmProto = XfrmProto.ESP
    mode: Mode = Mode.TUNNEL
    reqid: int = 0


@dataclass(frozen=True, slots=True)
class KmAddress:
    """XFRMA_KMADDRESS: the key manager's (IKE) endpoints after the move."""

    local: Address
    remote: Address


def _fam(a: Address) -> int:
    return AF_INET if a.version == 4 else AF_INET6


def migrate_flow_selector(sel: XfrmSelector) -> XfrmSelector:
    """The selector a ≥6.10 kernel needs in MIGRATE to find a policy by flow lookup.

    The kernel copies sel.sport/dport into the flow's port fields; for MH and
    ICMP the lookup reads the type (and code) from the first bytes of that
    union instead (`fl6_mh_type`, `fl6_icmp_type/code`), i.e. from the
    *dport* bytes.  Other selectors are returned unchanged.
    """
    if sel.proto == IPPROTO_MH and sel.sport_mask:
        return replace(sel, dport=(sel.sport & 0xFF) << 8)
    if sel.proto in (1, IPPROTO_ICMPV6) and (sel.sport_mask or sel.dport_mask):
        return replace(sel, dport=((sel.sport & 0xFF) << 8) | (sel.dport & 0xFF))
    return sel


def encode_migrate(
    selector: XfrmSelector,
    direction: Direction,
    migrations: Sequence[XfrmMigration],
    *,
    ptype: PolicyType = PolicyType.MAIN,
    kmaddress: KmAddress | None = None,
) -> bytes:
    """Body of XFRM_MSG_MIGRATE: policy id + one XFRMA_MIGRATE array (+ KMADDRESS)."""
    if not migrations:
        raise ValueError("MIGRATE needs at least one migration")
    ms = b"".join(
        _MIGRATE.pack(
            _pack_addr(m.old_dst),
            _pack_addr(m.old_src),
            _pack_addr(m.new_dst),
            _pack_addr(m.new_src),
            int(m.proto),
            int(m.mode),
            0,
            m.reqid,
            _fam(m.old_dst),
            _fam(m.new_dst),
        )
        for m in migrations
    )
    body = encode_selector(selector) + _POLICY_ID_TAIL.pack(0, int(direction))
    body += _policy_type_attr(ptype) + _attr(XFRMA_MIGRATE, ms)
    if kmaddress is not None:
        body += _attr(
            XFRMA_KMADDRESS,
            _KMADDRESS.pack(
                _pack_addr(kmaddress.local), _pack_addr(kmaddress.remote), 0, _fam(kmaddress.local)
            ),
        )
    return body


def _decode_migrations(buf: bytes | memoryview, off: int, end: int) -> list[XfrmMigration]:
    out = []
    for kind, a, b in iter_attrs(buf, off, end):
        if kind != XFRMA_MIGRATE:
            continue
        for o in range(a, b - _MIGRATE.size + 1, _MIGRATE.size):
            od, os_, nd, ns, proto, mode, _r, reqid, ofam, nfam = _MIGRATE.unpack_from(buf, o)
            out.append(
                XfrmMigration(
                    old_dst=_unpack_addr(od, ofam),
                    old_src=_unpack_addr(os_, ofam),
                    new_dst=_unpack_addr(nd, nfam),
                    new_src=_unpack_addr(ns, nfam),
                    proto=XfrmProto(proto),
                    mode=Mode(mode),
                    reqid=reqid,
                )
            )
    return out


# -- events (sans-I/O) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyEvent:
    """A policy was added/updated/deleted/expired (XFRMNLGRP_POLICY / EXPIRE)."""

    kind: str  # "new" | "update" | "delete" | "expire"
    policy: XfrmPolicy
    hard: bool = False


@dataclass(frozen=True, slots=True)
class PolicyFlushEvent:
    ptype: PolicyType


@dataclass(frozen=True, slots=True)
class StateEvent:
    """An SA was added/updated/deleted/expired (XFRMNLGRP_SA / EXPIRE)."""

    kind: str  # "new" | "update" | "delete" | "expire"
    state: XfrmState
    hard: bool = False


@dataclass(frozen=True, slots=True)
class StateFlushEvent:
    proto: int


@dataclass(frozen=True, slots=True)
class AcquireEvent:
    """The kernel needs an SA for a packet matching `policy` (XFRMNLGRP_ACQUIRE)."""

    dst: Address
    src: Address
    proto: XfrmProto
    selector: XfrmSelector
    policy: XfrmPolicy
    seq: int


@dataclass(frozen=True, slots=True)
class ReportEvent:
    """Route-optimisation report (XFRMNLGRP_REPORT): a packet needs a binding (MIP6)."""

    proto: int
    selector: XfrmSelector
    coaddr: Address | None


@dataclass(frozen=True, slots=True)
class MigrateEvent:
    """A policy's endpoints moved (XFRMNLGRP_MIGRATE), e.g. told to an IKE daemon."""

    selector: XfrmSelector
    direction: Direction
    ptype: PolicyType
    migrations: tuple[XfrmMigration, ...]
    kmaddress: KmAddress | None


@dataclass(frozen=True, slots=True)
class EventsLost:
    """The event socket overflowed (ENOBUFS): events were dropped, resync."""


XfrmEvent = (
    PolicyEvent
    | PolicyFlushEvent
    | StateEvent
    | StateFlushEvent
    | AcquireEvent
    | ReportEvent
    | MigrateEvent
    | EventsLost
)


def decode_messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """Split a netlink datagram: yield (type, flags, seq, payload offset, payload end)."""
    off, end = 0, len(data)
    while off + _NLMSGHDR.size <= end:
        n, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if n < _NLMSGHDR.size or off + n > end:
            break
        yield kind, flags, seq, off + _NLMSGHDR.size, off + n
        off += (n + 3) & ~3


def _decode_policy_id_event(buf: bytes | memoryview, a: int, b: int) -> XfrmPolicy:
    """DELPOLICY notifications carry userpolicy_id + XFRMA_POLICY + the usual attributes."""
    attrs = _attr_map(buf, a + SIZEOF_USERPOLICY_ID, b)
    if XFRMA_POLICY in attrs:
        base = _decode_userpolicy_info(buf, attrs[XFRMA_POLICY][0])
    else:  # delete by id without XFRMA_POLICY: rebuild what we can
        index, d = _POLICY_ID_TAIL.unpack_from(buf, a + _SEL.size)
        base = {"selector": decode_selector(buf, a), "direction": Direction(d & 3), "index": index}
        base["priority"] = 0
    return XfrmPolicy(**base, **_policy_extras(buf, attrs))


def _decode_one(kind: int, buf: bytes | memoryview, a: int, b: int) -> XfrmEvent | None:
    if kind in (XFRM_MSG_NEWPOLICY, XFRM_MSG_UPDPOLICY):
        return PolicyEvent(
            "new" if kind == XFRM_MSG_NEWPOLICY else "update", decode_policy(buf, a, b)
        )
    if kind == XFRM_MSG_DELPOLICY:
        return PolicyEvent("delete", _decode_policy_id_event(buf, a, b))
    if kind == XFRM_MSG_POLEXPIRE:
        hard = bool(buf[a + SIZEOF_USERPOLICY_INFO])
        attrs = _attr_map(buf, a + SIZEOF_USERPOLICY_INFO + 8, b)
        pol = XfrmPolicy(**_decode_userpolicy_info(buf, a), **_policy_extras(buf, attrs))
        return PolicyEvent("expire", pol, hard)
    if kind == XFRM_MSG_FLUSHPOLICY:
        attrs = _attr_map(buf, a, b)
        pt = PolicyType(buf[attrs[XFRMA_POLICY_TYPE][0]]) if XFRMA_POLICY_TYPE in attrs else 0
        return PolicyFlushEvent(PolicyType(pt))
    if kind in (XFRM_MSG_NEWSA, XFRM_MSG_UPDSA):
        return StateEvent("new" if kind == XFRM_MSG_NEWSA else "update", decode_state(buf, a, b))
    if kind == XFRM_MSG_DELSA:
        attrs = _attr_map(buf, a + SIZEOF_USERSA_ID, b)
        if XFRMA_SA not in attrs:
            return None
        return StateEvent("delete", _decode_usersa_info(buf, attrs[XFRMA_SA][0], attrs))
    if kind == XFRM_MSG_EXPIRE:
        hard = bool(buf[a + SIZEOF_USERSA_INFO])
        attrs = _attr_map(buf, a + SIZEOF_USERSA_INFO + 8, b)
        return StateEvent("expire", _decode_usersa_info(buf, a, attrs), hard)
    if kind == XFRM_MSG_FLUSHSA:
        return StateFlushEvent(buf[a] if b > a else 0)
    if kind == XFRM_MSG_ACQUIRE:
        _daddr, _spi, proto = _ID.unpack_from(buf, a)
        pol_off = a + _ID.size + 16 + _SEL.size
        attrs = _attr_map(buf, a + SIZEOF_USER_ACQUIRE, b)
        pol = XfrmPolicy(**_decode_userpolicy_info(buf, pol_off), **_policy_extras(buf, attrs))
        fam = pol.selector.family
        (seq,) = _U32.unpack_from(buf, a + SIZEOF_USER_ACQUIRE - 4)
        return AcquireEvent(
            dst=_unpack_addr(bytes(buf[a : a + 16]), fam),
            src=_unpack_addr(bytes(buf[a + _ID.size : a + _ID.size + 16]), fam),
            proto=XfrmProto(proto),
            selector=decode_selector(buf, a + _ID.size + 16),
            policy=pol,
            seq=seq,
        )
    if kind == XFRM_MSG_REPORT:
        sel = decode_selector(buf, a + 4)
        attrs = _attr_map(buf, a + SIZEOF_USER_REPORT, b)
        co = None
        if XFRMA_COADDR in attrs:
            o = attrs[XFRMA_COADDR][0]
            co = _unpack_addr(bytes(buf[o : o + 16]), sel.family)
        return ReportEvent(buf[a], sel, co)
    if kind == XFRM_MSG_MIGRATE:
        sel = decode_selector(buf, a)
        _index, d = _POLICY_ID_TAIL.unpack_from(buf, a + _SEL.size)
        attrs = _attr_map(buf, a + SIZEOF_USERPOLICY_ID, b)
        pt = PolicyType(buf[attrs[XFRMA_POLICY_TYPE][0]]) if XFRMA_POLICY_TYPE in attrs else 0
        km = None
        if XFRMA_KMADDRESS in attrs:
            lo, re_, _r, fam = _KMADDRESS.unpack_from(buf, attrs[XFRMA_KMADDRESS][0])
            km = KmAddress(_unpack_addr(lo, fam), _unpack_addr(re_, fam))
        migs = _decode_migrations(buf, a + SIZEOF_USERPOLICY_ID, b)
        return MigrateEvent(sel, Direction(d & 3), PolicyType(pt), tuple(migs), km)
    return None


def decode_events(data: bytes | memoryview) -> list[XfrmEvent]:
    """Decode every XFRM notification in a datagram (unknown types are skipped)."""
    out: list[XfrmEvent] = []
    for kind, _flags, _seq, a, b in decode_messages(data):
        ev = _decode_one(kind, data, a, b)
        if ev is not None:
            out.append(ev)
    return out


# -- the request socket --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XfrmResult:
    """Outcome of one object in a batch.  ``error`` 0 = done; ``noop`` = it already was so."""

    op: str
    target: Any
    error: int = 0
    message: str = ""
    noop: bool = False

    @property
    def ok(self) -> bool:
        return self.error == 0

    def raise_for_error(self) -> None:
        if self.error:
            raise XfrmError(self.error, self.message, f"{self.op} {self.target}")


@dataclass(frozen=True, slots=True)
class _Request:
    op: str
    target: Any
    msg_type: int
    body: bytes
    #: errnos that mean "already in the requested state" (idempotent success)
    idempotent: tuple[int, ...] = ()


#: What DELSA/GETSA answer for an SA that is not there.  Unlike policies (ENOENT),
#: the kernel's xfrm_user_state_lookup() fails with ESRCH, and xfrm_state_delete()
#: says ESRCH for an SA already dead: both mean "absent", so a repeated delete is a
#: noop and get_state() returns None (the vm tier showed ESRCH on the second delete).
_STATE_ABSENT = (_errno.ESRCH, _errno.ENOENT)


def _parse_error(buf: bytes | memoryview, a: int, b: int, flags: int) -> tuple[int, str]:
    (err,) = struct.unpack_from("=i", buf, a)
    msg = ""
    if flags & NLM_F_ACK_TLVS:
        # capped ack: the original header only; TLVs follow it
        for kind, x, y in iter_attrs(buf, a + 4 + _NLMSGHDR.size, b):
            if kind == NLMSGERR_ATTR_MSG:
                msg = bytes(buf[x:y]).split(b"\0", 1)[0].decode(errors="replace")
    return -err, msg


class XfrmSocket:
    """Request/response XFRM netlink socket, opened in the caller's current namespace.

    Write methods taking sequences send them batched (many messages per
    ``send()``, one ack each, matched by sequence number) and return one
    `XfrmResult` per object in order; the singular forms raise `XfrmError`.
    Every call is bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        batch: int = 512,
        sndbuf: int = 4 << 20,
        rcvbuf: int = 8 << 20,
    ) -> None:
        self.timeout = timeout
        self.batch = batch
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        try:
            for opt, force, size in (
                (socket.SO_SNDBUF, SO_SNDBUFFORCE, sndbuf),
                (socket.SO_RCVBUF, SO_RCVBUFFORCE, rcvbuf),
            ):
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:
                    self._sock.setsockopt(socket.SOL_SOCKET, opt, size)
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(SOL_NETLINK, opt, 1)
            self._sock.bind((0, 0))
            self._sock.settimeout(timeout)
        except BaseException:
            self._sock.close()
            raise
        self._seq = int(time.monotonic_ns() & 0x3FFFFFFF)
        self._buf = bytearray(1 << 20)
        # keep the send size under the socket buffer (netlink refuses > sndbuf - 32)
        self._max_send = max(
            4096, self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2 - 64
        )

    # -- plumbing --

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _recv(self) -> memoryview:
        n = self._sock.recv_into(self._buf)
        return memoryview(self._buf)[:n]

    def _execute(self, requests: Sequence[_Request]) -> list[XfrmResult]:
        """Send requests in batches; one result per request, matched by sequence number.

        A batch asks for error replies only (no NLM_F_ACK) and ends with an
        acked NLMSG_NOOP barrier: the kernel handles the messages of one send
        in order and acks successes only when asked, so once the barrier's
        ack is in, every request before it without an error reply succeeded.
        This halves the syscalls per object compared with one ack each.
        """
        results: list[XfrmResult | None] = [None] * len(requests)
        deadline = time.monotonic() + self.timeout
        i = 0
        while i < len(requests):
            pending: dict[int, int] = {}
            chunk: list[bytes] = []
            size = 0
            single = len(requests) - i == 1
            flags = NLM_F_REQUEST | (NLM_F_ACK if single else 0)
            while i < len(requests) and len(pending) < self.batch:
                r = requests[i]
                m = nlmsg(r.msg_type, flags, self._next_seq(), r.body)
                if chunk and size + len(m) > self._max_send:
                    break
                pending[self._seq] = i
                chunk.append(m)
                size += len(m)
                i += 1
            barrier = 0
            if not single:
                barrier = self._next_seq()
                chunk.append(nlmsg(NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, barrier, b""))
            self._sock.sendall(b"".join(chunk))
            done = False
            while not done and pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._sock.settimeout(left)
                try:
                    data = self._recv()
                except TimeoutError:
                    break
                for kind, mflags, seq, a, b in decode_messages(data):
                    if kind != NLMSG_ERROR:
                        continue
                    if seq == barrier:
                        done = True
                        continue
                    if seq not in pending:
                        continue
                    idx = pending.pop(seq)
                    err, msg = _parse_error(data, a, b, mflags)
                    r = requests[idx]
                    noop = bool(err) and err in r.idempotent
                    results[idx] = XfrmResult(r.op, r.target, 0 if noop else err, msg, noop)
            if done:  # no error reply before the barrier: success
                for idx in pending.values():
                    results[idx] = XfrmResult(requests[idx].op, requests[idx].target)
                pending.clear()
            if pending:  # timed out: report the rest, do not send more
                for idx in pending.values():
                    r = requests[idx]
                    results[idx] = XfrmResult(r.op, r.target, _errno.ETIMEDOUT)
                break
        self._sock.settimeout(self.timeout)
        return [
            r or XfrmResult(requests[k].op, requests[k].target, _errno.ECANCELED, "not sent")
            for k, r in enumerate(results)
        ]

    def _dump(self, msg_type: int, body: bytes) -> Iterator[tuple[memoryview, int, int, int]]:
        """Yield (buffer, type, payload start, payload end) for each dumped message.

        The buffer is reused by the next recv: consume each item before advancing.
        """
        for _attempt in range(3):
            seq = self._next_seq()
            self._sock.sendall(nlmsg(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
            interrupted = False
            done = False
            deadline = time.monotonic() + self.timeout
            while not done:
                self._sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data = self._recv()
                except TimeoutError:
                    raise XfrmError(_errno.ETIMEDOUT, "", "dump") from None
                for kind, flags, mseq, a, b in decode_messages(data):
                    if mseq != seq:
                        continue
                    if flags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR:
                        err, msg = _parse_error(data, a, b, flags)
                        raise XfrmError(err, msg, "dump")
                    if not interrupted:
                        yield data, kind, a, b
            self._sock.settimeout(self.timeout)
            if not interrupted:
                return
        raise XfrmError(_errno.EINTR, "dump kept being interrupted", "dump")

    # -- policies --

    def add_policies(
        self, policies: Iterable[XfrmPolicy], *, replace: bool = False
    ) -> list[XfrmResult]:
        """NEWPOLICY (EEXIST = success, noop) or, with replace, UPDPOLICY (add or replace)."""
        mt = XFRM_MSG_UPDPOLICY if replace else XFRM_MSG_NEWPOLICY
        op = "update policy" if replace else "add policy"
        idem = () if replace else (_errno.EEXIST,)
        return self._execute([_Request(op, p, mt, encode_policy(p), idem) for p in policies])

    def update_policies(self, policies: Iterable[XfrmPolicy]) -> list[XfrmResult]:
        return self.add_policies(policies, replace=True)

    def delete_policies(self, policies: Iterable[XfrmPolicy | XfrmPolicyKey]) -> list[XfrmResult]:
        """DELPOLICY by full identity (selector, dir, type, mark, if_id); ENOENT = success."""
        return self._execute(
            [
                _Request(
                    "delete policy", p, XFRM_MSG_DELPOLICY, encode_policy_id(p), (_errno.ENOENT,)
                )
                for p in policies
            ]
        )

    def add_policy(self, policy: XfrmPolicy, *, replace: bool = False) -> XfrmResult:
        r = self.add_policies([policy], replace=replace)[0]
        r.raise_for_error()
        return r

    def update_policy(self, policy: XfrmPolicy) -> XfrmResult:
        return self.add_policy(policy, replace=True)

    def delete_policy(self, policy: XfrmPolicy | XfrmPolicyKey) -> XfrmResult:
        r = self.delete_policies([policy])[0]
        r.raise_for_error()
        return r

    def get_policy(self, key: XfrmPolicyKey | XfrmPolicy) -> XfrmPolicy | None:
        """The kernel's policy with exactly this identity, or None."""
        seq = self._next_seq()
        self._sock.sendall(nlmsg(XFRM_MSG_GETPOLICY, NLM_F_REQUEST, seq, encode_policy_id(key)))
        return self._get_reply(seq, XFRM_MSG_NEWPOLICY, decode_policy)  # type: ignore[return-value]

    def _get_reply(
        self,
        seq: int,
        want: int,
        decode: Callable[..., Any],
        absent: tuple[int, ...] = (_errno.ENOENT,),
    ) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self._recv()
            except TimeoutError:
                raise XfrmError(_errno.ETIMEDOUT, "", "get") from None
            finally:
                self._sock.settimeout(self.timeout)
            for kind, flags, mseq, a, b in decode_messages(data):
                if mseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    err, msg = _parse_error(data, a, b, flags)
                    if err in absent:
                        return None
                    raise XfrmError(err, msg, "get")
                if kind == want:
                    return decode(data, a, b)

    def dump_policies(self, *, owned_only: bool = False) -> list[XfrmPolicy]:
        """All policies (main and sub); with owned_only, foreign ones are skipped undecoded."""
        out: list[XfrmPolicy] = []
        prio_off = _SEL.size + _LFT_CFG.size + _LFT_CUR.size
        for buf, kind, a, b in self._dump(XFRM_MSG_GETPOLICY, bytes(SIZEOF_USERPOLICY_ID)):
            if kind != XFRM_MSG_NEWPOLICY:
                continue
            if owned_only:
                (prio,) = _U32.unpack_from(buf, a + prio_off)
                if not ownership.XFRM_PRIORITY_MIN <= prio <= ownership.XFRM_PRIORITY_MAX:
                    continue
                mark = Mark()
                for k, x, _y in iter_attrs(buf, a + SIZEOF_USERPOLICY_INFO, b):
                    if k == XFRMA_MARK:
                        mark = Mark(*_MARK.unpack_from(buf, x))
                if not is_owned_policy(prio, mark):
                    continue
            out.append(decode_policy(buf, a, b))
        return out

    # -- states --

    def add_states(self, states: Iterable[XfrmState], *, replace: bool = False) -> list[XfrmResult]:
        """NEWSA (EEXIST = success, noop) or, with replace, add-or-replace (`_replace_states`)."""
        if replace:
            return self._replace_states(list(states))
        return self._execute(
            [
                _Request("add state", s, XFRM_MSG_NEWSA, encode_state(s), (_errno.EEXIST,))
                for s in states
            ]
        )

    def _replace_states(self, states: list[XfrmState]) -> list[XfrmResult]:
        """Make the kernel hold exactly these SAs, whether or not they exist.

        UPDSA alone is not that (xfrm_state_update): it fails ESRCH for a missing
        SA -- which made the capability probe report ESP/route2/hao as missing
        on the full kernel -- and it copies only lifetimes, encap, the care-of
        address and (SPI-less states) the selector, silently keeping old keys,
        algorithms, reqid or mode.  So: route2/hao (the CoA moves on every
        binding update) get UPDSA, atomic, then NEWSA if absent, and a delete +
        add if the read-back still differs; SPI states get delete + add in one
        batch (an SA's keys cannot change in place).
        """
        results: list[XfrmResult | None] = [None] * len(states)
        ro = [i for i, st in enumerate(states) if not st.proto.uses_spi]
        upd = self._execute(
            [
                _Request("update state", states[i], XFRM_MSG_UPDSA, encode_state(states[i]))
                for i in ro
            ]
        )
        recreate: list[int] = []
        missing: list[int] = []
        for i, r in zip(ro, upd, strict=True):
            if r.error in _STATE_ABSENT:
                missing.append(i)
            elif r.error or self.get_state(states[i]) == states[i]:
                results[i] = r
            else:
                recreate.append(i)
        added = self._execute(
            [
                _Request("update state", states[i], XFRM_MSG_NEWSA, encode_state(states[i]))
                for i in missing
            ]
        )
        for i, r in zip(missing, added, strict=True):
            results[i] = r
        recreate += [i for i, st in enumerate(states) if st.proto.uses_spi]
        reqs: list[_Request] = []
        for i in recreate:
            st = states[i]
            reqs.append(
                _Request("update state", st, XFRM_MSG_DELSA, encode_state_id(st), _STATE_ABSENT)
            )
            reqs.append(_Request("update state", st, XFRM_MSG_NEWSA, encode_state(st)))
        done = self._execute(reqs)
        for k, i in enumerate(recreate):
            gone, made = done[2 * k], done[2 * k + 1]
            results[i] = made if gone.ok else gone
        return [r for r in results if r is not None]

    def update_states(self, states: Iterable[XfrmState]) -> list[XfrmResult]:
        return self.add_states(states, replace=True)

    def delete_states(self, states: Iterable[XfrmState | XfrmStateKey]) -> list[XfrmResult]:
        """DELSA by identity; an absent SA is success (noop)."""
        return self._execute(
            [
                _Request("delete state", s, XFRM_MSG_DELSA, encode_state_id(s), _STATE_ABSENT)
                for s in states
            ]
        )

    def add_state(self, state: XfrmState, *, replace: bool = False) -> XfrmResult:
        r = self.add_states([state], replace=replace)[0]
        r.raise_for_error()
        return r

    def update_state(self, state: XfrmState) -> XfrmResult:
        return self.add_state(state, replace=True)

    def delete_state(self, state: XfrmState | XfrmStateKey) -> XfrmResult:
        r = self.delete_states([state])[0]
        r.raise_for_error()
        return r

    def get_state(self, key: XfrmStateKey | XfrmState) -> XfrmState | None:
        seq = self._next_seq()
        self._sock.sendall(nlmsg(XFRM_MSG_GETSA, NLM_F_REQUEST, seq, encode_state_id(key)))
        return self._get_reply(  # type: ignore[no-any-return]
            seq, XFRM_MSG_NEWSA, decode_state, absent=_STATE_ABSENT
        )

    def dump_states(self, *, owned_only: bool = False) -> list[XfrmState]:
        # The SA dump parses attributes right after the header: send no body.
        out: list[XfrmState] = []
        for buf, kind, a, b in self._dump(XFRM_MSG_GETSA, b""):
            if kind != XFRM_MSG_NEWSA:
                continue
            s = decode_state(buf, a, b)
            if not owned_only or s.owned:
                out.append(s)
        return out

    # -- MIGRATE and cleanup --

    def migrate(
        self,
        selector: XfrmSelector,
        direction: Direction,
        migrations: Sequence[XfrmMigration],
        *,
        ptype: PolicyType = PolicyType.MAIN,
        mark: Mark = OWNED_MARK,
        kmaddress: KmAddress | None = None,
        guard: bool = True,
    ) -> XfrmPolicy | None:
        """Move tunnel endpoints of our policy (and its SAs) with this selector/dir/type.

        The kernel ignores marks in MIGRATE: up to ~6.9 it memcmp()s the selector
        against policies of that shape; newer kernels run the packet-path
        lookup on a flow built from the selector, which for an MH-type selector
        needs `migrate_flow_selector`.  We send the exact selector first and the
        flow form on ENOENT, so both kernel generations work.  With ``guard``:
        refuse (EEXIST) when an unmarked policy of the same shape exists, and
        afterwards check that *our* policy (``mark``) is the one that moved
        (EADDRINUSE if not).  Returns our policy as the kernel now has it.
        """
        key = XfrmPolicyKey(direction, ptype, selector, mark)
        if guard:
            foreign = self.get_policy(XfrmPolicyKey(direction, ptype, selector, Mark()))
            if foreign is not None:
                raise XfrmError(
                    _errno.EEXIST,
                    f"unmarked policy with priority {foreign.priority} has the same selector",
                    "migrate",
                )
        r = XfrmResult("migrate", selector, _errno.ENOENT)
        for sel in dict.fromkeys((selector, migrate_flow_selector(selector))):
            body = encode_migrate(sel, direction, migrations, ptype=ptype, kmaddress=kmaddress)
            r = self._execute([_Request("migrate", selector, XFRM_MSG_MIGRATE, body)])[0]
            if r.error != _errno.ENOENT:
                break
        r.raise_for_error()
        if not guard:
            return None
        ours = self.get_policy(key)
        moved = ours is not None and any(
            (t.src, t.dst) == (m.new_src, m.new_dst) for t in ours.templates for m in migrations
        )
        if not moved:
            raise XfrmError(
                _errno.EADDRINUSE,
                "the kernel migrated another policy matching this selector, not ours",
                "migrate",
            )
        return ours

    def flush_owned(self) -> tuple[list[XfrmResult], list[XfrmResult]]:
        """Delete every owned policy and state, one by one by identity (never FLUSH*)."""
        pols = self.delete_policies(p.key for p in self.dump_policies(owned_only=True))
        sas = self.delete_states(s.key for s in self.dump_states(owned_only=True))
        return pols, sas


# -- the event socket ----------------------------------------------------------


class XfrmEventSocket:
    """Multicast subscriber: ``fileno()`` for an event loop, `read()` for typed events.

    Non-blocking after construction: `read()` returns [] when nothing is
    queued, and `EventsLost()` when the kernel dropped events (resync then).
    """

    def __init__(self, groups: Iterable[int] = DEFAULT_GROUPS, *, rcvbuf: int = 4 << 20) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, 0))
            for g in groups:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self._buf = bytearray(1 << 20)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmEventSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> list[XfrmEvent]:
        """Drain what is queued now."""
        out: list[XfrmEvent] = []
        while True:
            try:
                n = self._sock.recv_into(self._buf)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    out.append(EventsLost())
                    continue
                raise
            out.extend(decode_events(memoryview(self._buf)[:n]))

    def wait(self, timeout: float) -> list[XfrmEvent]:
        """Block up to `timeout` seconds for at least one event (tests, scripts)."""
        import selectors

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            while True:
                got = self.read()
                left = deadline - time.monotonic()
                if got or left <= 0:
                    return got
                sel.select(left)


# -- capability probe ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XfrmCapability:
    """Whether one XFRM feature worked when tried; why not, if not."""

    ok: bool
    errno: int = 0
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reason(self) -> str:
        if self.ok:
            return ""
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {os.strerror(self.errno)}" + (f" ({self.message})" if self.message else "")


#: What each probed capability needs from the kernel configuration.
CAPABILITY_NEEDS = {
    "policy": "CONFIG_XFRM_USER",
    "sub_policy": "CONFIG_XFRM_SUB_POLICY",
    "migrate": "CONFIG_XFRM_MIGRATE",
    "esp_state": "CONFIG_INET6_ESP",
    "route2_state": "CONFIG_IPV6_MIP6",
    "hao_state": "CONFIG_IPV6_MIP6",
}

_PROBE_A = ipaddress.IPv6Address("2001:db8:ffff::a")
_PROBE_B = ipaddress.IPv6Address("2001:db8:ffff::b")
_PROBE_C = ipaddress.IPv6Address("2001:db8:ffff::c")


def _probe(xs: XfrmSocket) -> dict[str, XfrmCapability]:
    def cap(r: XfrmResult) -> XfrmCapability:
        return XfrmCapability(r.ok, r.error, r.message)

    prio = ownership.XFRM_PRIORITY_MAX
    sel = XfrmSelector.between(f"{_PROBE_A}/128", f"{_PROBE_B}/128", proto=253)
    tun = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=_PROBE_B, src=_PROBE_A, reqid=0xFFFF)
    main = XfrmPolicy(sel, Direction.OUT, priority=prio, templates=(tun,))
    sub = XfrmPolicy(sel, Direction.OUT, PolicyType.SUB, priority=prio, action=Action.ALLOW)
    out: dict[str, XfrmCapability] = {}
    made_pol: list[XfrmPolicy] = []
    made_sa: list[XfrmState] = []
    try:
        r = xs.add_policies([main], replace=True)[0]
        out["policy"] = cap(r)
        if r.ok:
            made_pol.append(main)
        r = xs.add_policies([sub], replace=True)[0]
        out["sub_policy"] = cap(r)
        if r.ok:
            made_pol.append(sub)
        if out["policy"]:
            try:
                xs.migrate(
                    sel,
                    Direction.OUT,
                    [XfrmMigration(_PROBE_B, _PROBE_A, _PROBE_B, _PROBE_C, reqid=0xFFFF)],
                )
                out["migrate"] = XfrmCapability(True)
            except XfrmError as e:
                out["migrate"] = XfrmCapability(False, e.errno or 0, e.kernel_message)
        else:
            out["migrate"] = out["policy"]
        esp = XfrmState(
            dst=_PROBE_B,
            src=_PROBE_A,
            proto=XfrmProto.ESP,
            spi=0x6D36FFFF,
            mode=Mode.TRANSPORT,
            reqid=0xFFFF,
            algorithms=(
                XfrmAlgo.from_config("aes-cbc", os.urandom(16)),
                XfrmAlgo.from_config("hmac-sha256", os.urandom(32)),
            ),
        )
        ro = {
            name: XfrmState(
                dst=_PROBE_B,
                src=_PROBE_A,
                proto=proto,
                mode=Mode.RO,
                coaddr=_PROBE_C,
                selector=XfrmSelector.between(f"{_PROBE_A}/128", f"{_PROBE_B}/128"),
            )
            for name, proto in (("route2_state", XfrmProto.ROUTE2), ("hao_state", XfrmProto.HAO))
        }
        for name, st in (("esp_state", esp), *ro.items()):
            r = xs.add_states([st], replace=True)[0]
            out[name] = cap(r)
            if r.ok:
                made_sa.append(st)
    finally:
        xs.delete_policies(made_pol)
        xs.delete_states(made_sa)
    return out


def xfrm_capabilities(
    target: XfrmSocket | Callable[[], AbstractContextManager[Any]] | None = None,
) -> dict[str, XfrmCapability]:
    """Try each XFRM feature with throw-away owned objects and say what worked.

    `target` is an open `XfrmSocket`, or a callable returning a context
    manager that switches this thread into the namespace to probe (e.g.
    ``lambda: nsutil.inside(name)``), or None for the current namespace.
    Keys: policy, sub_policy, migrate, esp_state, route2_state, hao_state
    (`CAPABILITY_NEEDS` names the kernel option each one needs).  The probe
    objects use documentation addresses and the owned mark, and are deleted
    before returning.
    """
    if isinstance(target, XfrmSocket):
        return _probe(target)
    if target is None:
        with XfrmSocket(timeout=5.0) as xs:
            return _probe(xs)
    with target():
        xs = XfrmSocket(timeout=5.0)
    with xs:
        return _probe(xs)
