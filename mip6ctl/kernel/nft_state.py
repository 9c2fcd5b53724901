"""Typed nf_tables objects (`NftSet`, `NftChain`, `NftSetElement`) ↔ nfnetlink requests and dumps.

The plan executor writes them here and the observer reads them back from
here, so rule expressions live in one table, `RULES`: a rule kind (what the
state layer names, e.g. ``("reverse-tunnel", HA)``) → its comment and its
expressions.  The comment is what the kernel gives back unchanged, so it is
also how the observer recognises a rule: `spec_of(comment)` inverts the
table.

Writes go in nfnetlink batches, which the kernel applies atomically: a
batch of many elements either all land or none do.  `apply()` first tries
one batch per kind of request; when the kernel refuses it, every operation
is retried in a batch of its own so the error lands on the object that
caused it.  Only the owned table (`ownership.NFT_TABLE`) is ever named, so a
foreign table cannot be touched.
"""

from __future__ import annotations

import errno
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from ipaddress import IPv6Address

from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import nft
from mip6ctl.ownership import NFT_TABLE
from mip6ctl.state import render
from mip6ctl.state.objects import NftChain, NftSet, NftSetElement

Request = tuple[int, int, bytes]

_DROP = (nft._counter(), nft._verdict(nft.NF_DROP))


def _mh_to_local(_arg: str) -> tuple[str, list[bytes]]:
    return (
        "mip6ctl: Mobility Header to this node (userspace transport)",
        [*nft._l4proto_is(135), *nft._daddr_is_local(), *_DROP],
    )


def _hao_to_local(_arg: str) -> tuple[str, list[bytes]]:
    return (
        "mip6ctl: Home Address option to this node",
        [
            nft._exthdr(nft.NFT_REG_1, 60, 6, 2),
            nft._cmp_eq(nft.NFT_REG_1, b"\xc9\x10"),
            *nft._daddr_is_local(),
            *_DROP,
        ],
    )


def _rh2_to_local(_arg: str) -> tuple[str, list[bytes]]:
    return (
        "mip6ctl: type 2 routing header to this node",
        [
            nft._exthdr(nft.NFT_REG_1, 43, 2, 1),
            nft._cmp_eq(nft.NFT_REG_1, b"\x02"),
            *nft._daddr_is_local(),
            *_DROP,
        ],
    )


def _mh_decapsulated(_arg: str) -> tuple[str, list[bytes]]:
    return (
        "mip6ctl: decapsulated Mobility Header (userspace transport)",
        [*nft._l4proto_is(135), *_DROP],
    )


def _set_id(name: str) -> int:
    """Batch-local id of a set, so a rule in the batch that adds it can refer to it."""
    if name == nft.REVERSE_TUNNEL_SET:
        return nft._SET_ID
    return nft._SET_ID + 1 + zlib.crc32(name.encode()) % 0xFFFF


def _tunnelled_pair(ha: str) -> list[bytes]:
    """IPv6-in-IPv6 to `ha`; REG_1 = outer source (care-of), REG_2 = inner source."""
    return [
        nft._payload(nft.NFT_REG_1, 6, 1),
        nft._cmp_eq(nft.NFT_REG_1, b"\x29"),  # ip6 nexthdr 41
        nft._payload(nft.NFT_REG_1, 24, 16),
        nft._cmp_eq(nft.NFT_REG_1, IPv6Address(ha).packed),
        nft._payload(nft.NFT_REG_1, 8, 16),  # outer source: the care-of address ...
        nft._payload(nft.NFT_REG_2, 48, 16),  # ... inner source (@nh,384,128)
    ]


def _lookup(name: str, *, inverted: bool = False) -> bytes:
    return nft._expr(
        "lookup",
        nl.attr_str(nft.NFTA_LOOKUP_SET, name),
        nft._be32(nft.NFTA_LOOKUP_SET_ID, _set_id(name)),
        nft._be32(nft.NFTA_LOOKUP_SREG, nft.NFT_REG_1),
        *((nft._be32(nft.NFTA_LOOKUP_FLAGS, nft.NFT_LOOKUP_F_INV),) if inverted else ()),
    )


def _reverse_tunnel(ha: str) -> tuple[str, list[bytes]]:
    """Drop IPv6-in-IPv6 to the HA address whose (outer src, inner src) is no binding."""
    return (
        f"mip6ctl: reverse tunnel to {ha} from a non-binding",
        [*_tunnelled_pair(ha), _lookup(nft.REVERSE_TUNNEL_SET, inverted=True), *_DROP],
    )


_MNP_HEAD, _MNP_TAIL = "mip6ctl: reverse tunnel to ", " from a mobile network"


def _reverse_tunnel_mnp(arg: str) -> tuple[str, list[bytes]]:
    """Accept IPv6-in-IPv6 to the HA whose (outer src, inner src / L) is a mobile router
    binding's (care-of, mobile network prefix); `arg` is "HA/L" (RFC 3963)."""
    ha, _, length = arg.rpartition("/")
    n = int(length)
    mask = ((1 << 128) - (1 << (128 - n))).to_bytes(16, "big")
    return (
        f"{_MNP_HEAD}{arg}{_MNP_TAIL}",
        [
            *_tunnelled_pair(ha),
            nft._bitwise_and(nft.NFT_REG_2, mask),
            _lookup(render.mnp_set(n)),
            nft._verdict(nft.NF_ACCEPT),  # no counter: NftTableInfo.dropped sums counters
        ],
    )


#: rule kind -> (argument -> (comment, expressions))
RULES: dict[str, Callable[[str], tuple[str, list[bytes]]]] = {
    "mh-to-local": _mh_to_local,
    "hao-to-local": _hao_to_local,
    "rh2-to-local": _rh2_to_local,
    "mh-decapsulated": _mh_decapsulated,
    "reverse-tunnel": _reverse_tunnel,
    "reverse-tunnel-mnp": _reverse_tunnel_mnp,
}
_FIXED = {RULES[k]("")[0]: (k, "") for k in RULES if not k.startswith("reverse-tunnel")}


def spec_of(comment: str) -> tuple[str, str]:
    """The (kind, argument) a rule comment was written for; ("foreign", comment) if none."""
    fixed = _FIXED.get(comment)
    if fixed is not None:
        return fixed
    head, tail = "mip6ctl: reverse tunnel to ", " from a non-binding"
    if comment.startswith(head) and comment.endswith(tail):
        return ("reverse-tunnel", comment[len(head) : -len(tail)])
    if comment.startswith(_MNP_HEAD) and comment.endswith(_MNP_TAIL):
        return ("reverse-tunnel-mnp", comment[len(_MNP_HEAD) : -len(_MNP_TAIL)])
    return ("foreign", comment)


# --------------------------------------------------------------------------- requests


def _table(table: str) -> Request:
    return nft._table_req(table)


def create_requests(obj: NftSet | NftChain | NftSetElement) -> list[Request]:
    """Create-or-repair requests for one object (idempotent in the kernel)."""
    if isinstance(obj, NftSetElement):
        return [(nft.NFT_MSG_NEWSETELEM, nl.NLM_F_CREATE, _elements(obj.table, obj.set, [obj]))]
    reqs = [_table(obj.table)]
    if isinstance(obj, NftSet):
        attrs = (
            nl.attr_str(nft.NFTA_SET_TABLE, obj.table)
            + nl.attr_str(nft.NFTA_SET_NAME, obj.name)
            + nft._be32(nft.NFTA_SET_FLAGS, 0)
            + nft._be32(nft.NFTA_SET_KEY_TYPE, obj.key_type)
            + nft._be32(nft.NFTA_SET_KEY_LEN, obj.key_len)
            + nft._be32(nft.NFTA_SET_ID, _set_id(obj.name))  # mandatory; batch-local id
        )
        return [*reqs, (nft.NFT_MSG_NEWSET, nl.NLM_F_CREATE, attrs)]
    reqs.append(nft._chain_req(obj.table, obj.name, obj.hook, obj.priority))
    reqs.append(nft._flush_req(obj.table, obj.name))
    for kind, arg in obj.rules:
        comment, exprs = RULES[kind](arg)
        reqs.append(nft._rule_req(obj.table, obj.name, comment, exprs))
    return reqs


def delete_requests(obj: NftSet | NftChain | NftSetElement) -> list[Request]:
    if isinstance(obj, NftSetElement):
        return [(nft.NFT_MSG_DELSETELEM, 0, _elements(obj.table, obj.set, [obj]))]
    if isinstance(obj, NftSet):
        attrs = nl.attr_str(nft.NFTA_SET_TABLE, obj.table) + nl.attr_str(
            nft.NFTA_SET_NAME, obj.name
        )
        return [(nft.NFT_MSG_DELSET, 0, attrs)]
    return [nft._flush_req(obj.table, obj.name), nft._delchain_req(obj.table, obj.name)]


def _elements(table: str, name: str, elems: Iterable[NftSetElement]) -> bytes:
    items = [
        nl.nested(
            nft.NFTA_LIST_ELEM,
            nl.nested(
                nft.NFTA_SET_ELEM_KEY,
                nl.attr(
                    nft.NFTA_DATA_VALUE,
                    IPv6Address(e.care_of).packed + IPv6Address(e.home).packed,
                ),
            ),
        )
        for e in elems
    ]
    return (
        nl.attr_str(nft.NFTA_SET_ELEM_LIST_TABLE, table)
        + nl.attr_str(nft.NFTA_SET_ELEM_LIST_SET, name)
        + nl.nested(nft.NFTA_SET_ELEM_LIST_ELEMENTS, *items)
    )


# --------------------------------------------------------------------------- reading


def _hook(raw: bytes | None) -> tuple[int, int]:
    if not raw:
        return -1, 0
    at = nft._attrs(raw)
    num = nft._BE32.unpack(at[nft.NFTA_HOOK_HOOKNUM])[0] if nft.NFTA_HOOK_HOOKNUM in at else -1
    prio = nft._BE32S.unpack(at[nft.NFTA_HOOK_PRIORITY])[0] if nft.NFTA_HOOK_PRIORITY in at else 0
    return num, prio


def elements_of(msg: dict[int, bytes]) -> Iterator[NftSetElement]:
    """Elements in a NEWSETELEM/DELSETELEM message (dump reply or event)."""
    table = nft._str(msg.get(nft.NFTA_SET_ELEM_LIST_TABLE))
    name = nft._str(msg.get(nft.NFTA_SET_ELEM_LIST_SET))
    lst = msg.get(nft.NFTA_SET_ELEM_LIST_ELEMENTS)
    if lst is None:
        return
    for a, b in nft._iter_nested(lst):
        key = nft._attrs(lst[a:b]).get(nft.NFTA_SET_ELEM_KEY)
        val = nft._attrs(key).get(nft.NFTA_DATA_VALUE) if key is not None else None
        if val is not None and len(val) == 32:
            yield NftSetElement(
                str(IPv6Address(bytes(val[:16]))), str(IPv6Address(bytes(val[16:]))), name, table
            )


NftObject = NftSet | NftChain | NftSetElement

STEP = 512
"""Elements decoded between two yields of `read_table_steps`."""


def read_table(
    session: nft.NftSession, table: str = NFT_TABLE, *, elements: bool = True
) -> list[NftObject]:
    """Every set, chain (with its rules) and (with `elements`) set element of the table."""
    steps = read_table_steps(session, table, elements=elements)
    while True:
        try:
            next(steps)
        except StopIteration as e:
            return e.value


def read_table_steps(
    session: nft.NftSession, table: str = NFT_TABLE, *, elements: bool = True
) -> Generator[None, None, list[NftObject]]:
    """`read_table`, yielding every `STEP` elements: at 100k bindings the element
    dump is ~1 s of Python, and a resync thread must be able to step aside for the
    event loop in between (`ReconcileLoop._throttled`)."""
    out: list[NftObject] = []
    try:
        tables = [nft._str(m.get(nft.NFTA_TABLE_NAME)) for m in session.dump(nft.NFT_MSG_GETTABLE)]
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EPROTONOSUPPORT):
            return out
        raise
    if table not in tables:
        return out
    mark = STEP
    rules: dict[str, list[tuple[str, str]]] = {}
    for m in session.dump(nft.NFT_MSG_GETRULE, nl.attr_str(nft.NFTA_RULE_TABLE, table)):
        if nft._str(m.get(nft.NFTA_RULE_TABLE)) == table:
            r = nft._rule_of(m)
            rules.setdefault(r.chain, []).append(spec_of(r.comment))
    for m in session.dump(nft.NFT_MSG_GETCHAIN):
        if nft._str(m.get(nft.NFTA_CHAIN_TABLE)) != table:
            continue
        name = nft._str(m.get(nft.NFTA_CHAIN_NAME))
        hook, prio = _hook(m.get(nft.NFTA_CHAIN_HOOK))
        out.append(NftChain(name, hook, prio, tuple(rules.get(name, ())), table))
    for m in session.dump(nft.NFT_MSG_GETSET, nl.attr_str(nft.NFTA_SET_TABLE, table)):
        if nft._str(m.get(nft.NFTA_SET_TABLE)) != table:
            continue
        name = nft._str(m.get(nft.NFTA_SET_NAME))
        ktype = nft._BE32.unpack(m[nft.NFTA_SET_KEY_TYPE])[0] if nft.NFTA_SET_KEY_TYPE in m else 0
        klen = nft._BE32.unpack(m[nft.NFTA_SET_KEY_LEN])[0] if nft.NFTA_SET_KEY_LEN in m else 0
        out.append(NftSet(name, ktype, klen, table))
        if not elements:
            continue
        req = nl.attr_str(nft.NFTA_SET_ELEM_LIST_TABLE, table) + nl.attr_str(
            nft.NFTA_SET_ELEM_LIST_SET, name
        )
        try:
            for em in session.dump(nft.NFT_MSG_GETSETELEM, req):
                out.extend(elements_of(em))
                if len(out) >= mark:
                    mark = len(out) + STEP
                    yield
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
    return out


def table_is_empty(session: nft.NftSession, table: str = NFT_TABLE) -> bool | None:
    """True: the owned table exists and holds nothing; None: it does not exist."""
    info = nft.describe(table, session=session)
    if info is None:
        return None
    return not info.chains and not info.sets
