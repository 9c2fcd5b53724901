"""nf_tables over netlink (no `nft` binary): the session, expressions, requests, listing.

The typed objects (`state.objects.NftChain` / `NftSet` / `NftSetElement`)
are mapped to these requests and read back in `kernel/nft_state.py`; the
plan executor is the only writer.  What the owned table holds:

Why it exists: on a kernel without CONFIG_IPV6_MIP6 (DESIGN.md, "Kernel facts")
a packet carrying a Home Address option, a type 2 routing header, or simply a
Mobility Header that no raw socket claims, is answered by the kernel with an
ICMPv6 Parameter Problem and counted as an error.  The userspace transport has
already captured it at the link layer (packet sockets tap in
``__netif_receive_skb`` before the netfilter PREROUTING hook), so an owned
nf_tables table drops those packets early:

``table ip6 mip6ctl``
  ``chain signalling_pre`` (hook prerouting, priority raw -300), each rule with
  a counter and a comment:

  * ``meta l4proto 135 fib daddr type local drop`` -- every Mobility Header to
    this node (the header walk passes Destination Options and Routing headers,
    so HAO/RH2 in front are covered);
  * ``exthdr dst @6,16 == 0xc910 fib daddr type local drop`` -- another upper
    layer behind a Home Address option (the option sits at offset 6 of its
    Destination Options header in every sender's canonical layout, ours and the
    kernel's mip6 included);
  * ``rt type 2 fib daddr type local drop`` -- another upper layer behind a
    type 2 routing header.

  ``chain signalling_in`` (hook input, priority -300): ``meta l4proto 135
  drop``, for Mobility Headers that reach local delivery without passing
  PREROUTING: inner packets decapsulated by seg6local End.DT6.

``set reverse_tunnel_bindings`` (``ipv6_addr . ipv6_addr``) and ``chain
reverse_tunnel`` (prerouting, -300): RFC 6275 §10.4.5 for the seg6 backend.
End.DT6 does not check that a reverse-tunnelled packet's inner source (home
address) belongs to its outer source (care-of address); the rule drops
IPv6-in-IPv6 (next header 41) to a home agent address whose (outer source,
inner source at ``@nh,384,128``) pair is not a binding in the set.

Everything lives in one table whose name is the ownership mark
(``ownership.NFT_TABLE``); foreign tables are never touched.  Writing a chain
is idempotent and atomic (one nfnetlink batch: create-if-absent table and
chain, flush the chain, add its rules), so it also repairs drift.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel.probe import nf_tables_missing  # re-export; the probe lives in probe.py
from mip6ctl.ownership import NFT_TABLE
from mip6ctl.state.render import (
    CHAIN_REVERSE_TUNNEL,
    CHAIN_SIGNALLING_IN,
    CHAIN_SIGNALLING_PRE,
    REVERSE_TUNNEL_SET,
)

__all__ = [
    "CHAIN_INPUT",
    "CHAIN_PREROUTING",
    "CHAIN_REVERSE_TUNNEL",
    "REVERSE_TUNNEL_SET",
    "NftError",
    "NftRule",
    "NftSession",
    "NftTableInfo",
    "describe",
    "nf_tables_missing",
    "remove_table",
]

# --- nfnetlink / nf_tables constants (linux/netfilter/nfnetlink.h, nf_tables.h) -------------
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFPROTO_IPV6 = 10
NLM_F_APPEND = 0x800

NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE = 0, 1, 2
NFT_MSG_NEWCHAIN, NFT_MSG_GETCHAIN, NFT_MSG_DELCHAIN = 3, 4, 5
NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE = 6, 7, 8
NFT_MSG_NEWSET, NFT_MSG_GETSET, NFT_MSG_DELSET = 9, 10, 11
NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM, NFT_MSG_DELSETELEM = 12, 13, 14
NFT_MSG_GETGEN = 16

NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, NFTA_CHAIN_HOOK, NFTA_CHAIN_POLICY, NFTA_CHAIN_TYPE = (
    1,
    3,
    4,
    5,
    7,
)
NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY = 1, 2
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_EXPRESSIONS = 1, 2, 3, 4
NFTA_RULE_USERDATA = 7
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE = 1
NFTA_META_DREG, NFTA_META_KEY = 1, 2
NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA = 1, 2, 3
NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN = 1, 2, 3, 4
NFTA_EXTHDR_DREG, NFTA_EXTHDR_TYPE, NFTA_EXTHDR_OFFSET, NFTA_EXTHDR_LEN = 1, 2, 3, 4
NFTA_FIB_DREG, NFTA_FIB_RESULT, NFTA_FIB_FLAGS = 1, 2, 3
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTA_BITWISE_SREG, NFTA_BITWISE_DREG, NFTA_BITWISE_LEN, NFTA_BITWISE_MASK, NFTA_BITWISE_XOR = (
    1,
    2,
    3,
    4,
    5,
)
NFTA_LOOKUP_SET, NFTA_LOOKUP_SREG, NFTA_LOOKUP_SET_ID, NFTA_LOOKUP_FLAGS = 1, 2, 4, 5
NFTA_SET_TABLE, NFTA_SET_NAME, NFTA_SET_FLAGS, NFTA_SET_KEY_TYPE, NFTA_SET_KEY_LEN = 1, 2, 3, 4, 5
NFTA_SET_ID = 10
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_SET_ELEM_KEY = 1

NFT_REG_VERDICT, NFT_REG_1, NFT_REG_2 = 0, 1, 2
NFT_META_L4PROTO = 16
NFT_CMP_EQ = 0
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_FIB_RESULT_ADDRTYPE = 3
NFTA_FIB_F_DADDR = 2
NFT_LOOKUP_F_INV = 1
RTN_LOCAL = 2
NF_DROP, NF_ACCEPT = 0, 1
NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN = 0, 1
NF_IP6_PRI_RAW = -300
NFTNL_UDATA_RULE_COMMENT = 0
TYPE_IPV6ADDR = 8  # nft's datatype id; a concatenation is (t1 << 6) | t2
TYPE_CONCAT_IPV6_PAIR = (TYPE_IPV6ADDR << 6) | TYPE_IPV6ADDR

CHAIN_PREROUTING = CHAIN_SIGNALLING_PRE  # the names render() gives them
CHAIN_INPUT = CHAIN_SIGNALLING_IN
_SET_ID = 0x6D36  # batch-local id of the set, so a rule in the same batch can refer to it

_NFGEN = struct.Struct("!BBH")
_BE32 = struct.Struct("!I")
_BE32S = struct.Struct("!i")
_BE64 = struct.Struct("!Q")


class NftError(OSError):
    """An nf_tables request the kernel refused; names the request and the kernel's reason."""


# --- attribute and expression builders ----------------------------------------------------


def _be32(kind: int, v: int) -> bytes:
    return nl.attr(kind, _BE32.pack(v))


def _be32s(kind: int, v: int) -> bytes:
    return nl.attr(kind, _BE32S.pack(v))


def _expr(name: str, *attrs: bytes) -> bytes:
    return nl.nested(
        NFTA_LIST_ELEM, nl.attr_str(NFTA_EXPR_NAME, name), nl.nested(NFTA_EXPR_DATA, *attrs)
    )


def _cmp_eq(reg: int, value: bytes) -> bytes:
    return _expr(
        "cmp",
        _be32(NFTA_CMP_SREG, reg),
        _be32(NFTA_CMP_OP, NFT_CMP_EQ),
        nl.nested(NFTA_CMP_DATA, nl.attr(NFTA_DATA_VALUE, value)),
    )


def _payload(reg: int, offset: int, length: int) -> bytes:
    """Load ``length`` octets at ``offset`` of the network header (``@nh,offset*8,length*8``)."""
    return _expr(
        "payload",
        _be32(NFTA_PAYLOAD_DREG, reg),
        _be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER),
        _be32(NFTA_PAYLOAD_OFFSET, offset),
        _be32(NFTA_PAYLOAD_LEN, length),
    )


def _bitwise_and(reg: int, mask: bytes) -> bytes:
    """``reg = reg & mask`` (nft's bitwise: (reg & mask) ^ xor, with xor zero)."""
    return _expr(
        "bitwise",
        _be32(NFTA_BITWISE_SREG, reg),
        _be32(NFTA_BITWISE_DREG, reg),
        _be32(NFTA_BITWISE_LEN, len(mask)),
        nl.nested(NFTA_BITWISE_MASK, nl.attr(NFTA_DATA_VALUE, mask)),
        nl.nested(NFTA_BITWISE_XOR, nl.attr(NFTA_DATA_VALUE, bytes(len(mask)))),
    )


def _exthdr(reg: int, hdr: int, offset: int, length: int) -> bytes:
    """Load octets of the first IPv6 extension header of type ``hdr`` (no header: no match)."""
    return _expr(
        "exthdr",
        _be32(NFTA_EXTHDR_DREG, reg),
        nl.attr_u8(NFTA_EXTHDR_TYPE, hdr),
        _be32(NFTA_EXTHDR_OFFSET, offset),
        _be32(NFTA_EXTHDR_LEN, length),
    )


def _l4proto_is(proto: int) -> list[bytes]:
    return [
        _expr("meta", _be32(NFTA_META_DREG, NFT_REG_1), _be32(NFTA_META_KEY, NFT_META_L4PROTO)),
        _cmp_eq(NFT_REG_1, bytes((proto,))),
    ]


def _daddr_is_local() -> list[bytes]:
    return [
        _expr(
            "fib",
            _be32(NFTA_FIB_DREG, NFT_REG_1),
            _be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE),
            _be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR),
        ),
        _cmp_eq(NFT_REG_1, struct.pack("=I", RTN_LOCAL)),  # the fib result is host order
    ]


def _counter() -> bytes:
    return _expr(
        "counter",
        nl.attr(NFTA_COUNTER_BYTES, _BE64.pack(0)),
        nl.attr(NFTA_COUNTER_PACKETS, _BE64.pack(0)),
    )


def _verdict(code: int) -> bytes:
    return _expr(
        "immediate",
        _be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
        nl.nested(
            NFTA_IMMEDIATE_DATA, nl.nested(NFTA_DATA_VERDICT, _be32s(NFTA_VERDICT_CODE, code))
        ),
    )


def _comment(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return bytes((NFTNL_UDATA_RULE_COMMENT, len(raw))) + raw


# --- the netlink session ------------------------------------------------------------------


_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33


class NftSession:
    """A NETLINK_NETFILTER socket in the calling thread's namespace: batches and dumps."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
        )
        try:
            self.sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_EXT_ACK, 1)
            self.sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_CAP_ACK, 1)
            # A batch is one datagram (a transaction cannot span two sends), and a
            # large refused one answers with an error per request: room for both.
            for force, plain in (
                (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
                (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
            ):
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, force, 4 << 20)
                except OSError:
                    self.sock.setsockopt(socket.SOL_SOCKET, plain, 4 << 20)
            self.sock.bind((0, 0))
            self.sock.settimeout(timeout)
        except BaseException:
            self.sock.close()
            raise
        self._seq = int.from_bytes(os.urandom(3), "big")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NftSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        return self._seq

    @staticmethod
    def _msg(kind: int, flags: int, seq: int, family: int, attrs: bytes, res_id: int = 0) -> bytes:
        return nl.message(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            nl.NLM_F_REQUEST | flags,
            seq,
            _NFGEN.pack(family, 0, res_id) + attrs,
        )

    def batch(
        self, requests: Sequence[tuple[int, int, bytes]], *, ignore: Iterable[int] = ()
    ) -> None:
        """Send ``(msg type, flags, attributes)`` requests as one atomic transaction.

        Raises :class:`NftError` for the first refused request unless its errno
        is in ``ignore`` (the kernel then aborts the whole batch, so ignoring
        only makes sense for a batch of one request).
        """
        ignore = set(ignore)
        begin = self._next_seq()
        out = [
            nl.message(
                NFNL_MSG_BATCH_BEGIN,
                nl.NLM_F_REQUEST,
                begin,
                _NFGEN.pack(0, 0, NFNL_SUBSYS_NFTABLES),
            )
        ]
        names: dict[int, str] = {}
        final: int | None = None  # the request whose ack ends the wait
        last = len(requests) - 1
        for i, (kind, flags, attrs) in enumerate(requests):
            seq = self._next_seq()
            names[seq] = _MSG_NAMES.get(kind, str(kind))
            # Only the last request asks for an ack: the kernel reports every refused
            # request anyway and delivers the batch's errors before that ack.  An ack
            # per request overflowed the socket at a few hundred requests (each ack
            # is ~0.7 KiB of receive buffer), and the lost acks became a timeout.
            ack = 0
            if i == last:
                ack, final = nl.NLM_F_ACK, seq
            out.append(self._msg(kind, flags | ack, seq, NFPROTO_IPV6, attrs))
        end = self._next_seq()
        out.append(
            nl.message(
                NFNL_MSG_BATCH_END, nl.NLM_F_REQUEST, end, _NFGEN.pack(0, 0, NFNL_SUBSYS_NFTABLES)
            )
        )
        self.sock.send(b"".join(out))
        first_error: NftError | None = None
        while final is not None:
            try:
                buf = self.sock.recv(1 << 16)
            except TimeoutError:
                raise NftError(errno.ETIMEDOUT, "nf_tables batch not acknowledged") from None
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                raise NftError(errno.ENOBUFS, "nf_tables batch: replies lost") from None
            for kind, flags, seq, a, b in nl.iter_messages(buf):
                if kind != nl.NLMSG_ERROR:
                    continue
                code, _s, text = nl.parse_error(buf, a, b, flags)
                if seq == begin and code:  # the batch itself was refused
                    raise NftError(code, f"nf_tables batch: {text}")
                if seq == final:
                    final = None
                if code and code not in ignore and first_error is None:
                    first_error = NftError(code, f"{names.get(seq, seq)}: {text}")
        if first_error is not None:
            raise first_error

    def dump(self, kind: int, attrs: bytes = b"") -> Iterator[dict[int, bytes]]:
        """Yield the top-level attributes of every object a GET dump returns."""
        seq = self._next_seq()
        req = self._msg(kind, nl.NLM_F_DUMP, seq, NFPROTO_IPV6, attrs)
        for buf in nl.dump(self.sock, req, seq):
            for mkind, _f, mseq, a, b in nl.iter_messages(buf):
                if mseq != seq or mkind in (nl.NLMSG_DONE, nl.NLMSG_ERROR):
                    continue
                yield nl.attr_bytes(buf, a + 4, b)


_MSG_NAMES = {
    NFT_MSG_NEWTABLE: "add table",
    NFT_MSG_DELTABLE: "delete table",
    NFT_MSG_NEWCHAIN: "add chain",
    NFT_MSG_DELCHAIN: "delete chain",
    NFT_MSG_NEWRULE: "add rule",
    NFT_MSG_DELRULE: "flush chain",
    NFT_MSG_NEWSET: "add set",
    NFT_MSG_DELSET: "delete set",
    NFT_MSG_NEWSETELEM: "add element",
    NFT_MSG_DELSETELEM: "delete element",
}


# --- request builders -------------------------------------------------------------------


def _table_req(table: str) -> tuple[int, int, bytes]:
    return NFT_MSG_NEWTABLE, nl.NLM_F_CREATE, nl.attr_str(NFTA_TABLE_NAME, table)


def _chain_req(table: str, chain: str, hook: int, priority: int) -> tuple[int, int, bytes]:
    attrs = (
        nl.attr_str(NFTA_CHAIN_TABLE, table)
        + nl.attr_str(NFTA_CHAIN_NAME, chain)
        + nl.nested(
            NFTA_CHAIN_HOOK, _be32(NFTA_HOOK_HOOKNUM, hook), _be32s(NFTA_HOOK_PRIORITY, priority)
        )
        + _be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
        + nl.attr_str(NFTA_CHAIN_TYPE, "filter")
    )
    return NFT_MSG_NEWCHAIN, nl.NLM_F_CREATE, attrs


def _flush_req(table: str, chain: str) -> tuple[int, int, bytes]:
    return (
        NFT_MSG_DELRULE,
        0,
        nl.attr_str(NFTA_RULE_TABLE, table) + nl.attr_str(NFTA_RULE_CHAIN, chain),
    )


def _rule_req(table: str, chain: str, comment: str, exprs: list[bytes]) -> tuple[int, int, bytes]:
    attrs = (
        nl.attr_str(NFTA_RULE_TABLE, table)
        + nl.attr_str(NFTA_RULE_CHAIN, chain)
        + nl.nested(NFTA_RULE_EXPRESSIONS, *exprs)
        + nl.attr(NFTA_RULE_USERDATA, _comment(comment))
    )
    return NFT_MSG_NEWRULE, nl.NLM_F_CREATE | NLM_F_APPEND, attrs


def _delchain_req(table: str, chain: str) -> tuple[int, int, bytes]:
    return (
        NFT_MSG_DELCHAIN,
        0,
        nl.attr_str(NFTA_CHAIN_TABLE, table) + nl.attr_str(NFTA_CHAIN_NAME, chain),
    )


def _session(session: NftSession | None) -> NftSession:
    return session if session is not None else NftSession()


def remove_table(table: str = NFT_TABLE, *, session: NftSession | None = None) -> bool:
    """Delete the owned table with everything in it; absent is fine. Always True."""
    s = _session(session)
    try:
        s.batch(
            [(NFT_MSG_DELTABLE, 0, nl.attr_str(NFTA_TABLE_NAME, table))], ignore=(errno.ENOENT,)
        )
        return True
    finally:
        if session is None:
            s.close()


def _set_elements(s: NftSession, table: str, name: str) -> set[tuple[IPv6Address, IPv6Address]]:
    req = nl.attr_str(NFTA_SET_ELEM_LIST_TABLE, table) + nl.attr_str(NFTA_SET_ELEM_LIST_SET, name)
    out: set[tuple[IPv6Address, IPv6Address]] = set()
    try:
        for msg in s.dump(NFT_MSG_GETSETELEM, req):
            lst = msg.get(NFTA_SET_ELEM_LIST_ELEMENTS)
            if lst is None:
                continue
            for a, b in _iter_nested(lst):
                key = _attrs(lst[a:b]).get(NFTA_SET_ELEM_KEY)
                val = _attrs(key).get(NFTA_DATA_VALUE) if key is not None else None
                if val is not None and len(val) == 32:
                    out.add((IPv6Address(bytes(val[:16])), IPv6Address(bytes(val[16:]))))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
    return out


# --- listing, for the observer and `mip6ctl doctor` --------------------------------------------


@dataclass(frozen=True, slots=True)
class NftRule:
    """One rule of the owned table with its comment and drop counter."""

    chain: str
    handle: int
    comment: str
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class NftTableInfo:
    """What the owned table holds: chain names, rules with counters, set names."""

    name: str
    chains: tuple[str, ...] = ()
    rules: tuple[NftRule, ...] = ()
    sets: tuple[str, ...] = ()
    elements: dict[str, int] = field(default_factory=dict)

    def dropped(self, chain: str | None = None) -> int:
        """Packets dropped so far by the rules (of one chain)."""
        return sum(r.packets for r in self.rules if chain is None or r.chain == chain)


_EMPTY = NftTableInfo("")


def _attrs(buf: bytes | memoryview) -> dict[int, bytes]:
    return nl.attr_bytes(buf, 0, len(buf))


def _iter_nested(buf: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(start, end) of each attribute's payload in a list of same-typed attributes."""
    for _kind, a, b in nl.iter_attrs(buf, 0, len(buf)):
        yield a, b


def _str(v: bytes | memoryview | None) -> str:
    return bytes(v or b"").rstrip(b"\0").decode(errors="replace")


def _rule_of(msg: dict[int, bytes]) -> NftRule:
    packets = octets = 0
    exprs = msg.get(NFTA_RULE_EXPRESSIONS, b"")
    for a, b in _iter_nested(exprs):
        e = _attrs(exprs[a:b])
        if _str(e.get(NFTA_EXPR_NAME)) == "counter" and NFTA_EXPR_DATA in e:
            d = _attrs(e[NFTA_EXPR_DATA])
            packets += _BE64.unpack(d[NFTA_COUNTER_PACKETS])[0] if NFTA_COUNTER_PACKETS in d else 0
            octets += _BE64.unpack(d[NFTA_COUNTER_BYTES])[0] if NFTA_COUNTER_BYTES in d else 0
    comment = ""
    ud = msg.get(NFTA_RULE_USERDATA, b"")
    pos = 0
    while pos + 2 <= len(ud):
        t, n = ud[pos], ud[pos + 1]
        if t == NFTNL_UDATA_RULE_COMMENT:
            comment = _str(ud[pos + 2 : pos + 2 + n])
        pos += 2 + n
    handle = _BE64.unpack(msg[NFTA_RULE_HANDLE])[0] if NFTA_RULE_HANDLE in msg else 0
    return NftRule(_str(msg.get(NFTA_RULE_CHAIN)), handle, comment, packets, octets)


def describe(table: str = NFT_TABLE, *, session: NftSession | None = None) -> NftTableInfo | None:
    """The owned table's chains, rules (with counters) and sets; None when it does not exist."""
    s = _session(session)
    try:
        tables = [_str(m.get(NFTA_TABLE_NAME)) for m in s.dump(NFT_MSG_GETTABLE)]
        if table not in tables:
            return None
        chains = tuple(
            _str(m.get(NFTA_CHAIN_NAME))
            for m in s.dump(NFT_MSG_GETCHAIN)
            if _str(m.get(NFTA_CHAIN_TABLE)) == table
        )
        rules = tuple(
            _rule_of(m)
            for m in s.dump(NFT_MSG_GETRULE, nl.attr_str(NFTA_RULE_TABLE, table))
            if _str(m.get(NFTA_RULE_TABLE)) == table
        )
        sets = tuple(
            _str(m.get(NFTA_SET_NAME))
            for m in s.dump(NFT_MSG_GETSET, nl.attr_str(NFTA_SET_TABLE, table))
            if _str(m.get(NFTA_SET_TABLE)) == table
        )
        elements = {name: len(_set_elements(s, table, name)) for name in sets}
        return NftTableInfo(table, chains, rules, sets, elements)
    finally:
        if session is None:
            s.close()
