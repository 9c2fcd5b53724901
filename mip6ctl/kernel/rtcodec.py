"""Kernel objects <-> rtnetlink message payloads.

Encoders build exactly the attributes mip6ctl sets; decoders read only the
attributes that `mip6ctl.state.objects` compares, straight from the receive
buffer, so a dump of 100k routes costs a fraction of a second and no
pyroute2 objects.  Pure functions: tests feed them bytes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Mapping

from mip6ctl import ownership
from mip6ctl.kernel import netlink as nl
from mip6ctl.state.objects import (
    ANY_PREFIX,
    MANAGED_ADDR_FLAGS,
    Address,
    Neighbour,
    ProxyNeighbour,
    Route,
    Rule,
    Seg6Encap,
    Seg6LocalDecap,
    Tunnel,
    trusted,
)

_AF6 = socket.AF_INET6
_ntop = socket.inet_ntop
_pton = socket.inet_pton

# rtmsg / route attributes
RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 4, 5, 6, 7
RTA_TABLE, RTA_ENCAP_TYPE, RTA_ENCAP = 15, 21, 22
RT_TABLE_COMPAT = 252
RTN_BY_NAME = {"unicast": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9}
RTN_BY_NUM = {v: k for k, v in RTN_BY_NAME.items()}
RTN_LOCAL = 2
LWTUNNEL_ENCAP_SEG6, LWTUNNEL_ENCAP_SEG6_LOCAL = 5, 7
SEG6_IPTUNNEL_SRH = 1
SEG6_MODE_BY_NAME = {"inline": 0, "encap": 1, "encap.red": 3}
SEG6_MODE_BY_NUM = {v: k for k, v in SEG6_MODE_BY_NAME.items()}
SEG6_LOCAL_ACTION, SEG6_LOCAL_TABLE = 1, 3
SEG6_LOCAL_ACTION_END_DT6 = 7

# fib rules
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_TABLE = 1, 2, 3, 6, 15
FRA_PROTOCOL, FRA_IP_PROTO = 21, 22
FR_ACT_BY_NAME = {"lookup": 1, "nop": 3, "blackhole": 6, "unreachable": 7, "prohibit": 8}
FR_ACT_BY_NUM = {v: k for k, v in FR_ACT_BY_NAME.items()}

# addresses
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS, IFA_PROTO = 1, 2, 8, 11

# neighbours
NDA_DST, NDA_LLADDR, NDA_PROTOCOL = 1, 2, 12
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80

# links
IFLA_IFNAME, IFLA_LINKINFO = 3, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_IP6TNL_LOCAL, IFLA_IP6TNL_REMOTE, IFLA_IP6TNL_PROTO = 2, 3, 9
IFLA_IP6TNL_COLLECT_METADATA = 19
IFLA_IP6TNL_FLAGS = 8
#: IP6_TNL_F_* flags a user sets; the kernel adds capability bits (0x10000+) on dump
IP6_TNL_USER_FLAGS = 0xFFFF
IFF_UP = 0x1
IPPROTO_IPV6 = 41

Resolve = Callable[[str], int]


def _split(prefix: str) -> tuple[bytes, int]:
    addr, _, plen = prefix.partition("/")
    return _pton(_AF6, addr), int(plen)


# --- routes -----------------------------------------------------------------------------------


def _encap(e: Seg6Encap | Seg6LocalDecap) -> bytes:
    if isinstance(e, Seg6Encap):
        n = len(e.segs)
        srh = struct.pack("=BBBBBBH", 0, n * 2, 4, n - 1, n - 1, 0, 0)
        srh += b"".join(_pton(_AF6, s) for s in reversed(e.segs))
        data = nl.I32.pack(SEG6_MODE_BY_NAME[e.mode]) + srh
        return nl.attr(RTA_ENCAP_TYPE, nl.U16.pack(LWTUNNEL_ENCAP_SEG6)) + nl.nested(
            RTA_ENCAP, nl.attr(SEG6_IPTUNNEL_SRH, data)
        )
    return nl.attr(RTA_ENCAP_TYPE, nl.U16.pack(LWTUNNEL_ENCAP_SEG6_LOCAL)) + nl.nested(
        RTA_ENCAP,
        nl.attr_u32(SEG6_LOCAL_ACTION, SEG6_LOCAL_ACTION_END_DT6),
        nl.attr_u32(SEG6_LOCAL_TABLE, e.table),
    )


def route_payload(r: Route, resolve: Resolve, *, delete: bool = False) -> bytes:
    """RTM_NEWROUTE payload; with delete=True only the key plus the protocol, so the
    kernel deletes the route only if it carries our protocol (foreign ones: ESRCH)."""
    dst, dlen = _split(r.dst)
    src, slen = _split(r.src) if r.src != ANY_PREFIX else (b"", 0)
    table8 = r.table if r.table < 256 else RT_TABLE_COMPAT
    rtype = 0 if delete else RTN_BY_NAME[r.type]
    out = [nl.RTMSG.pack(_AF6, dlen, slen, 0, table8, r.protocol, 0, rtype, 0)]
    out.append(nl.attr_u32(RTA_TABLE, r.table))
    if dlen:
        out.append(nl.attr(RTA_DST, dst))
    if slen:
        out.append(nl.attr(RTA_SRC, src))
    out.append(nl.attr_u32(RTA_PRIORITY, r.metric))
    if not delete:
        if r.oif:
            out.append(nl.attr_u32(RTA_OIF, resolve(r.oif)))
        if r.gateway:
            out.append(nl.attr(RTA_GATEWAY, _pton(_AF6, r.gateway)))
        if r.prefsrc:
            out.append(nl.attr(RTA_PREFSRC, _pton(_AF6, r.prefsrc)))
        if r.encap is not None:
            out.append(_encap(r.encap))
    return b"".join(out)


def _decode_encap(buf: bytes, etype: int, a: int, b: int) -> Seg6Encap | Seg6LocalDecap | None:
    inner = nl.attrs(buf, a, b)
    if etype == LWTUNNEL_ENCAP_SEG6 and SEG6_IPTUNNEL_SRH in inner:
        x, _y = inner[SEG6_IPTUNNEL_SRH]
        (mode,) = nl.I32.unpack_from(buf, x)
        first = buf[x + 4 + 4]
        segs = [_ntop(_AF6, buf[x + 12 + 16 * i : x + 28 + 16 * i]) for i in range(first + 1)]
        return Seg6Encap(tuple(reversed(segs)), SEG6_MODE_BY_NUM.get(mode, "encap"))  # type: ignore[arg-type]
    if etype == LWTUNNEL_ENCAP_SEG6_LOCAL and SEG6_LOCAL_ACTION in inner:
        x, _y = inner[SEG6_LOCAL_ACTION]
        if nl.U32.unpack_from(buf, x)[0] != SEG6_LOCAL_ACTION_END_DT6:
            return None  # other SRv6 behaviours are not mip6ctl objects
        t = inner.get(SEG6_LOCAL_TABLE)
        return Seg6LocalDecap(nl.U32.unpack_from(buf, t[0])[0] if t else 0)
    return None


_ROUTE_HDR = nl.RTMSG.unpack_from
_U32 = nl.U32.unpack_from
_HDR = nl.RTATTR.unpack_from
_RTN_BY_NUM = RTN_BY_NUM


def decode_route(buf: bytes, off: int, end: int, names: Mapping[int, str]) -> Route | None:
    """A Route from an RTM_NEWROUTE/DELROUTE payload, or None for what mip6ctl never
    manages (non-IPv6, cached clones, local/multicast types).  Hot path of every dump."""
    fam, dlen, slen, _tos, table, proto, _scope, rtype, flags = _ROUTE_HDR(buf, off)
    if fam != _AF6 or flags & 0x200 or rtype not in _RTN_BY_NUM:  # 0x200 = RTM_F_CLONED
        return None
    dst = src = gw = prefsrc = enc = None
    oif = metric = etype = 0
    p = off + 12
    while p + 4 <= end:
        n, kind = _HDR(buf, p)
        if n < 4:
            break
        d = p + 4
        if kind == RTA_DST:
            dst = buf[d : d + 16]
        elif kind == RTA_TABLE:
            table = _U32(buf, d)[0]
        elif kind == RTA_PRIORITY:
            metric = _U32(buf, d)[0]
        elif kind == RTA_OIF:
            oif = _U32(buf, d)[0]
        elif kind == RTA_GATEWAY:
            gw = _ntop(_AF6, buf[d : d + 16])
        elif kind == RTA_SRC:
            src = buf[d : d + 16]
        elif kind == RTA_PREFSRC:
            prefsrc = _ntop(_AF6, buf[d : d + 16])
        elif kind == RTA_ENCAP_TYPE:
            etype = nl.U16.unpack_from(buf, d)[0]
        elif kind & nl.NLA_TYPE_MASK == RTA_ENCAP:
            enc = (d, p + n)
        p += (n + 3) & ~3
    return trusted(  # type: ignore[return-value]
        Route,
        f"{_ntop(_AF6, dst)}/{dlen}" if dst else f"::/{dlen}",
        table,
        f"{_ntop(_AF6, src)}/{slen}" if src and slen else ANY_PREFIX,
        metric,
        proto,
        _RTN_BY_NUM[rtype],
        (names.get(oif) or f"if{oif}") if oif else None,
        gw,
        prefsrc,
        _decode_encap(buf, etype, *enc) if enc and etype else None,
    )


def route_dump_request(seq: int, *, table: int = 0, protocol: int = 0) -> bytes:
    """RTM_GETROUTE dump filtered in the kernel (needs NETLINK_GET_STRICT_CHK)."""
    table8 = table if table < 256 else RT_TABLE_COMPAT
    payload = nl.RTMSG.pack(_AF6, 0, 0, 0, table8, protocol, 0, 0, 0)
    if table:
        payload += nl.attr_u32(RTA_TABLE, table)
    return nl.message(nl.RTM_GETROUTE, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)


# --- rules ------------------------------------------------------------------------------------


def rule_payload(r: Rule, resolve: Resolve, *, delete: bool = False) -> bytes:
    """RTM_NEWRULE/DELRULE payload; the kernel matches FRA_PROTOCOL on delete."""
    src, slen = _split(r.src) if r.src != ANY_PREFIX else (b"", 0)
    dst, dlen = _split(r.dst) if r.dst != ANY_PREFIX else (b"", 0)
    action = FR_ACT_BY_NAME[r.action]
    table8 = r.table if r.table < 256 else 0
    out = [nl.FIBRULEHDR.pack(_AF6, dlen, slen, 0, table8 if action == 1 else 0, 0, 0, action, 0)]
    out.append(nl.attr_u32(FRA_PRIORITY, r.priority))
    if action == 1:
        out.append(nl.attr_u32(FRA_TABLE, r.table))
    if slen:
        out.append(nl.attr(FRA_SRC, src))
    if dlen:
        out.append(nl.attr(FRA_DST, dst))
    if r.iif:
        out.append(nl.attr_str(FRA_IIFNAME, r.iif))
    if r.ipproto:
        out.append(nl.attr_u8(FRA_IP_PROTO, r.ipproto))
    out.append(nl.attr_u8(FRA_PROTOCOL, r.protocol))
    return b"".join(out)


def decode_rule(buf: bytes, off: int, end: int) -> Rule | None:
    fam, dlen, slen, _tos, table, _r1, _r2, action, _flags = nl.FIBRULEHDR.unpack_from(buf, off)
    if fam != _AF6 or action not in FR_ACT_BY_NUM:
        return None
    at = nl.attrs(buf, off + 12, end)

    def u(kind: int, size: int = 4) -> int | None:
        if kind not in at:
            return None
        a, _b = at[kind]
        return _U32(buf, a)[0] if size == 4 else buf[a]

    def pfx(kind: int, plen: int) -> str:
        if kind not in at or not plen:
            return ANY_PREFIX
        a, _b = at[kind]
        return f"{_ntop(_AF6, buf[a : a + 16])}/{plen}"

    iif = ""
    if FRA_IIFNAME in at:
        a, b = at[FRA_IIFNAME]
        iif = bytes(buf[a:b]).split(b"\0", 1)[0].decode()
    return Rule(
        priority=u(FRA_PRIORITY) or 0,
        table=u(FRA_TABLE) or table,
        src=pfx(FRA_SRC, slen),
        dst=pfx(FRA_DST, dlen),
        ipproto=u(FRA_IP_PROTO, 1) or 0,
        iif=iif,
        action=FR_ACT_BY_NUM[action],  # type: ignore[arg-type]
        protocol=u(FRA_PROTOCOL, 1) or 0,
    )


def rule_dump_request(seq: int) -> bytes:
    """Rules cannot be filtered in the kernel (strict check forbids it); they are few."""
    payload = nl.FIBRULEHDR.pack(_AF6, 0, 0, 0, 0, 0, 0, 0, 0)
    return nl.message(nl.RTM_GETRULE, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)


# --- addresses --------------------------------------------------------------------------------


def address_payload(a: Address, resolve: Resolve, *, delete: bool = False) -> bytes:
    flags = a.flags & MANAGED_ADDR_FLAGS
    out = [nl.IFADDRMSG.pack(_AF6, a.prefixlen, flags & 0xFF, 0, resolve(a.ifname))]
    out.append(nl.attr(IFA_ADDRESS, _pton(_AF6, a.address)))
    if not delete:
        out.append(nl.attr_u32(IFA_FLAGS, flags))
        out.append(nl.attr_u8(IFA_PROTO, a.protocol))
    return b"".join(out)


def decode_address(buf: bytes, off: int, end: int, names: Mapping[int, str]) -> Address | None:
    """An owned-or-foreign `Address` from an ifaddrmsg (the one decoder: kernel/links.py)."""
    from mip6ctl.kernel.links import decode_ifaddr

    ia = decode_ifaddr(buf, off, end)
    if ia is None:
        return None
    return Address(
        ifname=names.get(ia.ifindex, f"if{ia.ifindex}"),
        address=_ntop(_AF6, ia.address.packed),
        prefixlen=ia.prefixlen,
        flags=ia.flags & MANAGED_ADDR_FLAGS,
        protocol=ia.protocol,
    )


def address_get_request(seq: int, a: Address, ifindex: int) -> bytes:
    payload = nl.IFADDRMSG.pack(_AF6, 0, 0, 0, ifindex) + nl.attr(
        IFA_ADDRESS, _pton(_AF6, a.address)
    )
    return nl.message(nl.RTM_GETADDR, nl.NLM_F_REQUEST, seq, payload)


def address_dump_request(seq: int) -> bytes:
    payload = nl.IFADDRMSG.pack(_AF6, 0, 0, 0, 0)
    return nl.message(nl.RTM_GETADDR, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)


# --- proxy neighbours -------------------------------------------------------------------------


def proxy_payload(p: ProxyNeighbour, resolve: Resolve, *, delete: bool = False) -> bytes:
    state = 0 if delete else NUD_PERMANENT
    out = nl.NDMSG.pack(_AF6, 0, 0, resolve(p.ifname), state, NTF_PROXY, 0)
    out += nl.attr(NDA_DST, _pton(_AF6, p.address))
    if not delete:
        out += nl.attr_u8(NDA_PROTOCOL, p.protocol)
    return out


def decode_neigh(
    buf: bytes,
    off: int,
    end: int,
    names: Mapping[int, str],
    *,
    static_foreign: bool = False,
) -> ProxyNeighbour | Neighbour | None:
    """A proxy entry (owned or foreign), or a `Neighbour` for a neighbour-cache entry
    carrying our NDA_PROTOCOL; ordinary neighbour-cache churn is ignored.

    ``static_foreign`` (the writer's read-back) also returns foreign NUD_PERMANENT
    entries, which a create must not overwrite.  An entry of ours that is not
    static (the NUD_FAILED notice the kernel sends just before it deletes one,
    `ip neigh change ... nud reachable`) is not the object mip6ctl wants: it
    decodes with `lladdr` "" (it may come without NDA_LLADDR anyway), so it never
    equals a desired one, and the observer counts it absent (`neigh_static`)."""
    fam, _p1, _p2, index, state, flags, _type = nl.NDMSG.unpack_from(buf, off)
    if fam != _AF6:
        return None
    at = nl.attrs(buf, off + 12, end)
    if NDA_DST not in at:
        return None
    a, _b = at[NDA_DST]
    proto = buf[at[NDA_PROTOCOL][0]] if NDA_PROTOCOL in at else 0
    ifname = names.get(index, f"if{index}")
    if flags & NTF_PROXY:
        return ProxyNeighbour(ifname, _ntop(_AF6, buf[a : a + 16]), proto)
    if proto != ownership.ROUTE_PROTOCOL and not (static_foreign and state & NUD_PERMANENT):
        return None
    lladdr = ""
    if NDA_LLADDR in at and state & NUD_PERMANENT:
        x, y = at[NDA_LLADDR]
        lladdr = ":".join(f"{c:02x}" for c in bytes(buf[x:y]))
    return trusted(Neighbour, ifname, _ntop(_AF6, buf[a : a + 16]), lladdr, proto)  # type: ignore[return-value]


def neigh_static(buf: bytes, off: int) -> bool:
    """The ndmsg at `off` is a static (NUD_PERMANENT) entry: what `Neighbour` stands for."""
    return bool(nl.NDMSG.unpack_from(buf, off)[4] & NUD_PERMANENT)


def proxy_get_request(seq: int, p: ProxyNeighbour, ifindex: int) -> bytes:
    payload = nl.NDMSG.pack(_AF6, 0, 0, ifindex, 0, NTF_PROXY, 0)
    payload += nl.attr(NDA_DST, _pton(_AF6, p.address))
    return nl.message(nl.RTM_GETNEIGH, nl.NLM_F_REQUEST, seq, payload)


def proxy_dump_request(seq: int) -> bytes:
    payload = nl.NDMSG.pack(_AF6, 0, 0, 0, 0, NTF_PROXY, 0)
    return nl.message(nl.RTM_GETNEIGH, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)


# --- static neighbour-cache entries -----------------------------------------------------------


def _lladdr_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def neigh_payload(n: Neighbour, resolve: Resolve, *, delete: bool = False) -> bytes:
    """RTM_NEWNEIGH (NUD_PERMANENT, no NTF_PROXY, NDA_LLADDR, NDA_PROTOCOL) / RTM_DELNEIGH.

    The kernel matches neither the protocol nor the state on delete: the writer
    reads the entry first (`neigh_get_request`) and deletes only one of ours."""
    state = 0 if delete else NUD_PERMANENT
    out = nl.NDMSG.pack(_AF6, 0, 0, resolve(n.ifname), state, 0, 0)
    out += nl.attr(NDA_DST, _pton(_AF6, n.address))
    if not delete:
        out += nl.attr(NDA_LLADDR, _lladdr_bytes(n.lladdr))
        out += nl.attr_u8(NDA_PROTOCOL, n.protocol)
    return out


def neigh_get_request(seq: int, n: Neighbour, ifindex: int) -> bytes:
    """RTM_GETNEIGH for one entry of the neighbour cache (ENOENT when there is none)."""
    payload = nl.NDMSG.pack(_AF6, 0, 0, ifindex, 0, 0, 0)
    payload += nl.attr(NDA_DST, _pton(_AF6, n.address))
    return nl.message(nl.RTM_GETNEIGH, nl.NLM_F_REQUEST, seq, payload)


def neigh_dump_request(seq: int) -> bytes:
    """The IPv6 neighbour cache (not the proxy table); the kernel cannot filter it by
    protocol, `decode_neigh` keeps the owned entries (the cache is bounded by gc_thresh3)."""
    payload = nl.NDMSG.pack(_AF6, 0, 0, 0, 0, 0, 0)
    return nl.message(nl.RTM_GETNEIGH, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)


# --- links and ip6tnl tunnels -----------------------------------------------------------------


def tunnel_payload(t: Tunnel, resolve: Resolve, *, delete: bool = False) -> bytes:
    name = nl.attr_str(IFLA_IFNAME, t.name)
    if delete:
        return nl.IFINFOMSG.pack(0, 0, 0, 0, 0) + name
    data = [nl.attr_u8(IFLA_IP6TNL_PROTO, IPPROTO_IPV6)]
    data.append(nl.attr(IFLA_IP6TNL_FLAGS, nl.U32.pack(t.flags & IP6_TNL_USER_FLAGS)))
    if t.external:
        data.append(nl.attr(IFLA_IP6TNL_COLLECT_METADATA, b""))
    else:
        data.append(nl.attr(IFLA_IP6TNL_LOCAL, _pton(_AF6, t.local)))
        data.append(nl.attr(IFLA_IP6TNL_REMOTE, _pton(_AF6, t.remote)))
    info = nl.nested(
        IFLA_LINKINFO, nl.attr_str(IFLA_INFO_KIND, "ip6tnl"), nl.nested(IFLA_INFO_DATA, *data)
    )
    return nl.IFINFOMSG.pack(0, 0, 0, IFF_UP, IFF_UP) + name + info


def decode_link(buf: bytes, off: int, end: int) -> tuple[int, str, Tunnel | None]:
    """(ifindex, name, Tunnel if it is an ip6tnl device) from an RTM_NEWLINK payload."""
    _fam, _type, index, _flags, _change = nl.IFINFOMSG.unpack_from(buf, off)
    at = nl.attrs(buf, off + 16, end)
    name = ""
    if IFLA_IFNAME in at:
        a, b = at[IFLA_IFNAME]
        name = bytes(buf[a:b]).split(b"\0", 1)[0].decode()
    tunnel = None
    if IFLA_LINKINFO in at:
        info = nl.attrs(buf, *at[IFLA_LINKINFO])
        kind = b""
        if IFLA_INFO_KIND in info:
            a, b = info[IFLA_INFO_KIND]
            kind = bytes(buf[a:b]).rstrip(b"\0")
        if kind == b"ip6tnl":
            data = nl.attrs(buf, *info[IFLA_INFO_DATA]) if IFLA_INFO_DATA in info else {}

            def addr(k: int) -> str:
                return _ntop(_AF6, buf[data[k][0] : data[k][0] + 16]) if k in data else "::"

            flags = 0
            if IFLA_IP6TNL_FLAGS in data:
                x = data[IFLA_IP6TNL_FLAGS][0]
                flags = nl.U32.unpack_from(buf, x)[0] & IP6_TNL_USER_FLAGS

            tunnel = Tunnel(
                name,
                addr(IFLA_IP6TNL_LOCAL),
                addr(IFLA_IP6TNL_REMOTE),
                IFLA_IP6TNL_COLLECT_METADATA in data,
                flags,
            )
    return index, name, tunnel


def link_dump_request(seq: int) -> bytes:
    payload = nl.IFINFOMSG.pack(0, 0, 0, 0, 0)
    return nl.message(nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, payload)
