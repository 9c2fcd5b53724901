"""XFRM netlink codec (sans-I/O): policies, states, MIGRATE and event messages as bytes.

Pure functions and value types only -- no sockets: every ``encode_*`` returns
the body of one XFRM message and every ``decode_*`` / `decode_events` takes
bytes, so unit tests run without a kernel.  The netlink framing around the
bodies (nlmsghdr, attributes, acks) is `mip6ctl.kernel.netlink`'s; the
socket that sends them, `XfrmSocket`/`XfrmEventSocket`, is in
`mip6ctl.kernel.xfrm`.  Decoders build the compact objects of
`mip6ctl.state.xfrm` straight from the receive buffer.

Layouts follow include/uapi/linux/xfrm.h on Linux (x86_64, checked against
the header with offsetof()): xfrm_selector 56 bytes, xfrm_user_tmpl 64,
xfrm_userpolicy_info 168, xfrm_usersa_info 224, xfrm_userpolicy_id 64,
xfrm_usersa_id 24, xfrm_user_migrate 76, xfrm_user_kmaddress 40.  Fields
declared ``__be16``/``__be32`` (ports, SPI) are network order; the rest are
host order ("=" formats).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mip6ctl.kernel import netlink as nl
from mip6ctl.state.xfrm import (
    AF_INET,
    AF_INET6,
    IPPROTO_ICMPV6,
    IPPROTO_MH,
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
)

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
_U16 = struct.Struct("=H")
_U64 = struct.Struct("=Q")
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


# -- policies ------------------------------------------------------------------


def _mark_attrs(mark: Mark, if_id: int) -> bytes:
    out = b""
    if mark.value or mark.mask:
        out += nl.attr(XFRMA_MARK, _MARK.pack(mark.value, mark.mask))
    if if_id:
        out += nl.attr(XFRMA_IF_ID, _U32.pack(if_id))
    return out


def _policy_type_attr(ptype: PolicyType) -> bytes:
    return nl.attr(XFRMA_POLICY_TYPE, _POLICY_TYPE.pack(int(ptype), 0, 0))


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
        body += nl.attr(XFRMA_TMPL, b"".join(encode_tmpl(t, fam) for t in p.templates))
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
    attrs = nl.attrs(buf, off + SIZEOF_USERPOLICY_INFO, end)
    return XfrmPolicy(**base, **_policy_extras(buf, attrs))


# -- states --------------------------------------------------------------------


def _encode_algo(a: XfrmAlgo) -> bytes:
    name = a.name.encode()
    if len(name) >= 64:
        raise ValueError(f"algorithm name {a.name!r} too long")
    if a.kind in ("crypt", "comp"):
        kind = XFRMA_ALG_CRYPT if a.kind == "crypt" else XFRMA_ALG_COMP
        return nl.attr(kind, _ALGO_HDR.pack(name, a.key_bits) + a.key)
    kind = XFRMA_ALG_AUTH_TRUNC if a.kind == "auth" else XFRMA_ALG_AEAD
    return nl.attr(kind, _ALGO_AUTH_HDR.pack(name, a.key_bits, a.trunc_bits) + a.key)


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
        body += nl.attr(XFRMA_COADDR, _pack_addr(s.coaddr))
    return body + _mark_attrs(s.mark, s.if_id)


def encode_state_id(key: XfrmStateKey | XfrmState) -> bytes:
    """Body of XFRM_MSG_DELSA/GETSA; SPI-less protocols are found by XFRMA_SRCADDR."""
    if isinstance(key, XfrmState):
        key = key.key
    fam = AF_INET if key.dst.version == 4 else AF_INET6
    body = _USERSA_ID.pack(_pack_addr(key.dst), socket.htonl(key.spi), fam, int(key.proto))
    if key.src is not None:
        body += nl.attr(XFRMA_SRCADDR, _pack_addr(key.src))
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
    return _decode_usersa_info(buf, off, nl.attrs(buf, off + SIZEOF_USERSA_INFO, end))


_RO_MODE = 2  # XFRM_MODE_ROUTEOPTIMIZATION
_PACKETS_AT = _SEL.size + _ID.size + 16 + _LFT_CFG.size + 8  # curlft.packets
_MODE_AT = _SEL.size + _ID.size + _SA_TAIL.size - 10  # mode octet of the tail
_FAMILY_AT = _MODE_AT - 2


def decode_ro_usage(
    buf: bytes | memoryview, off: int, end: int, mark: tuple[int, int]
) -> tuple[bytes, bytes, int, int] | None:
    """(dst, src, proto, packets) of a route2/hao state that carries ``mark`` and a
    care-of address, else None -- without building an XfrmState: a correspondent
    with 10k bindings reads 20k of these per usage poll (Binding Refresh Requests)."""
    if buf[off + _MODE_AT] != _RO_MODE or _U16.unpack_from(buf, off + _FAMILY_AT)[0] != 10:
        return None
    has_coaddr = False
    m: tuple[int, int] = (0, 0)
    for kind, a, _b in nl.iter_attrs(buf, off + SIZEOF_USERSA_INFO, end):
        if kind == XFRMA_COADDR:
            has_coaddr = True
        elif kind == XFRMA_MARK:
            m = _MARK.unpack_from(buf, a)
    if not has_coaddr or m != mark:
        return None
    d = off + _SEL.size
    return (
        bytes(buf[d : d + 16]),
        bytes(buf[d + _ID.size : d + _ID.size + 16]),
        buf[d + 20],
        _U64.unpack_from(buf, off + _PACKETS_AT)[0],
    )


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
    body += _policy_type_attr(ptype) + nl.attr(XFRMA_MIGRATE, ms)
    if kmaddress is not None:
        body += nl.attr(
            XFRMA_KMADDRESS,
            _KMADDRESS.pack(
                _pack_addr(kmaddress.local), _pack_addr(kmaddress.remote), 0, _fam(kmaddress.local)
            ),
        )
    return body


def _decode_migrations(buf: bytes | memoryview, off: int, end: int) -> list[XfrmMigration]:
    out = []
    for kind, a, b in nl.iter_attrs(buf, off, end):
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


def _decode_policy_id_event(buf: bytes | memoryview, a: int, b: int) -> XfrmPolicy:
    """DELPOLICY notifications carry userpolicy_id + XFRMA_POLICY + the usual attributes."""
    attrs = nl.attrs(buf, a + SIZEOF_USERPOLICY_ID, b)
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
        attrs = nl.attrs(buf, a + SIZEOF_USERPOLICY_INFO + 8, b)
        pol = XfrmPolicy(**_decode_userpolicy_info(buf, a), **_policy_extras(buf, attrs))
        return PolicyEvent("expire", pol, hard)
    if kind == XFRM_MSG_FLUSHPOLICY:
        attrs = nl.attrs(buf, a, b)
        pt = PolicyType(buf[attrs[XFRMA_POLICY_TYPE][0]]) if XFRMA_POLICY_TYPE in attrs else 0
        return PolicyFlushEvent(PolicyType(pt))
    if kind in (XFRM_MSG_NEWSA, XFRM_MSG_UPDSA):
        return StateEvent("new" if kind == XFRM_MSG_NEWSA else "update", decode_state(buf, a, b))
    if kind == XFRM_MSG_DELSA:
        attrs = nl.attrs(buf, a + SIZEOF_USERSA_ID, b)
        if XFRMA_SA not in attrs:
            return None
        return StateEvent("delete", _decode_usersa_info(buf, attrs[XFRMA_SA][0], attrs))
    if kind == XFRM_MSG_EXPIRE:
        hard = bool(buf[a + SIZEOF_USERSA_INFO])
        attrs = nl.attrs(buf, a + SIZEOF_USERSA_INFO + 8, b)
        return StateEvent("expire", _decode_usersa_info(buf, a, attrs), hard)
    if kind == XFRM_MSG_FLUSHSA:
        return StateFlushEvent(buf[a] if b > a else 0)
    if kind == XFRM_MSG_ACQUIRE:
        _daddr, _spi, proto = _ID.unpack_from(buf, a)
        pol_off = a + _ID.size + 16 + _SEL.size
        attrs = nl.attrs(buf, a + SIZEOF_USER_ACQUIRE, b)
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
        attrs = nl.attrs(buf, a + SIZEOF_USER_REPORT, b)
        co = None
        if XFRMA_COADDR in attrs:
            o = attrs[XFRMA_COADDR][0]
            co = _unpack_addr(bytes(buf[o : o + 16]), sel.family)
        return ReportEvent(buf[a], sel, co)
    if kind == XFRM_MSG_MIGRATE:
        sel = decode_selector(buf, a)
        _index, d = _POLICY_ID_TAIL.unpack_from(buf, a + _SEL.size)
        attrs = nl.attrs(buf, a + SIZEOF_USERPOLICY_ID, b)
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
    for kind, _flags, _seq, a, b in nl.iter_messages(data):
        ev = _decode_one(kind, data, a, b)
        if ev is not None:
            out.append(ev)
    return out
