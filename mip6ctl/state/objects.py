"""Typed kernel objects: what the reconciler wants and what the observer saw.

Each object is a frozen, slotted dataclass (hashable, ~100 bytes, 100k of them
fit in a few tens of MB) holding plain str/int/tuple values, never pyroute2
messages.  `key` is the identity (what makes two objects "the same kernel
object"); every other field is an attribute compared to decide on an update.
Interfaces are named, not indexed, so desired state can be written before the
interface exists; the kernel layer maps names to indexes.

Addresses are canonical text (RFC 5952, as `inet_ntop` prints them) and
prefixes are "addr/len" with host bits cleared, so equal objects compare equal
however they were spelled.

Ownership (DESIGN.md invariant 3) is a property of the object itself, see
`owned`: routes, rules, addresses, proxy neighbours and static neighbour
entries carry `ownership.ROUTE_PROTOCOL` in their protocol attribute
(rtm_protocol, FRA_PROTOCOL, IFA_PROTO, NDA_PROTOCOL), rules in addition a priority inside
the owned band, tunnels the name prefix.  Sysctls cannot be marked: mip6ctl
owns only the per-interface IPv6 knobs it declares (see `Sysctl.owned`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from mip6ctl import ownership

_AF6 = socket.AF_INET6
_pton = socket.inet_pton
_ntop = socket.inet_ntop

ANY = "::"
ANY_PREFIX = "::/0"
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
#: iproute2's protocol for routes/rules the kernel made itself (e.g. the default rules)
RTPROT_KERNEL = 2


def canon_addr(text: str) -> str:
    """Canonical text of an IPv6 address."""
    return _ntop(_AF6, _pton(_AF6, text))


def canon_prefix(text: str) -> str:
    """Canonical "addr/len"; a bare address means /128; host bits are cleared."""
    addr, _, plen_text = text.partition("/")
    plen = int(plen_text) if plen_text else 128
    if not 0 <= plen <= 128:
        raise ValueError(f"bad IPv6 prefix length in {text!r}")
    raw = _pton(_AF6, addr)
    if plen < 128:
        n = int.from_bytes(raw, "big") >> (128 - plen) << (128 - plen)
        raw = n.to_bytes(16, "big")
    return f"{_ntop(_AF6, raw)}/{plen}"


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


# --- lightweight tunnel encapsulations ------------------------------------------------------

Seg6Mode = Literal["encap", "encap.red", "inline"]


@dataclass(frozen=True, slots=True)
class Seg6Encap:
    """`encap seg6 mode M segs A,B`: with one segment and mode encap.red this is
    plain IPv6-in-IPv6 (next header 41, no SRH), the tunnel without a netdev."""

    segs: tuple[str, ...]
    mode: Seg6Mode = "encap.red"

    def __post_init__(self) -> None:
        if self.mode not in ("encap", "encap.red", "inline"):
            raise ValueError(f"unsupported seg6 mode {self.mode!r}")
        if not self.segs:
            raise ValueError("seg6 encap needs at least one segment")
        _set(self, "segs", tuple(canon_addr(s) for s in self.segs))


@dataclass(frozen=True, slots=True)
class Seg6LocalDecap:
    """`encap seg6local action End.DT6 table T`: strip the outer header and look
    the inner destination up in table T (the receiving end of Seg6Encap)."""

    table: int
    action: Literal["End.DT6"] = "End.DT6"


Encap: TypeAlias = Seg6Encap | Seg6LocalDecap


# --- objects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """An IPv6 address on an interface (e.g. the MN's home address, IFA_F_HOMEADDRESS)."""

    ifname: str
    address: str
    prefixlen: int = 128
    #: IFA_F_* flags mip6ctl manages (see MANAGED_ADDR_FLAGS); others are ignored
    flags: int = 0
    protocol: int = ownership.ROUTE_PROTOCOL

    def __post_init__(self) -> None:
        _set(self, "address", canon_addr(self.address))

    @property
    def key(self) -> tuple:
        return ("address", self.ifname, self.address)

    @property
    def owned(self) -> bool:
        return self.protocol == ownership.ROUTE_PROTOCOL


IFA_F_NODAD = 0x02
IFA_F_HOMEADDRESS = 0x10
IFA_F_NOPREFIXROUTE = 0x200
MANAGED_ADDR_FLAGS = IFA_F_NODAD | IFA_F_HOMEADDRESS | IFA_F_NOPREFIXROUTE

RouteType = Literal["unicast", "blackhole", "unreachable", "prohibit", "throw"]


@dataclass(frozen=True, slots=True)
class Route:
    """An IPv6 route.  Identity is what the kernel uses to tell routes apart:
    (table, dst, src, metric); a foreign route with that key is a conflict."""

    dst: str
    table: int = ownership.ROUTE_TABLE
    src: str = ANY_PREFIX
    metric: int = 1024
    protocol: int = ownership.ROUTE_PROTOCOL
    type: RouteType = "unicast"
    oif: str | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    encap: Encap | None = None

    def __post_init__(self) -> None:
        _set(self, "dst", canon_prefix(self.dst))
        if self.src != ANY_PREFIX:
            _set(self, "src", canon_prefix(self.src))
        if self.gateway is not None:
            _set(self, "gateway", canon_addr(self.gateway))
        if self.prefsrc is not None:
            _set(self, "prefsrc", canon_addr(self.prefsrc))

    @property
    def key(self) -> tuple:
        return ("route", self.table, self.dst, self.src, self.metric)

    @property
    def owned(self) -> bool:
        return self.protocol == ownership.ROUTE_PROTOCOL


RuleAction = Literal["lookup", "goto", "nop", "blackhole", "unreachable", "prohibit"]


@dataclass(frozen=True, slots=True)
class Rule:
    """An IPv6 policy-routing rule.  Identity is priority plus selectors;
    the table/action are attributes (changing them means delete + add)."""

    priority: int
    table: int = ownership.ROUTE_TABLE
    src: str = ANY_PREFIX
    dst: str = ANY_PREFIX
    ipproto: int = 0
    iif: str = ""
    action: RuleAction = "lookup"
    protocol: int = ownership.ROUTE_PROTOCOL

    def __post_init__(self) -> None:
        if self.src != ANY_PREFIX:
            _set(self, "src", canon_prefix(self.src))
        if self.dst != ANY_PREFIX:
            _set(self, "dst", canon_prefix(self.dst))
        if self.action != "lookup":
            _set(self, "table", 0)  # only `lookup` rules have a table

    @property
    def key(self) -> tuple:
        return ("rule", self.priority, self.src, self.dst, self.ipproto, self.iif)

    @property
    def owned(self) -> bool:
        return (
            self.protocol == ownership.ROUTE_PROTOCOL
            and ownership.RULE_PRIORITY_MIN <= self.priority <= ownership.RULE_PRIORITY_MAX
        )


@dataclass(frozen=True, slots=True)
class ProxyNeighbour:
    """A proxy NDP entry (`ip -6 neigh add proxy A dev X`) defending a home address."""

    ifname: str
    address: str
    protocol: int = ownership.ROUTE_PROTOCOL

    def __post_init__(self) -> None:
        _set(self, "address", canon_addr(self.address))

    @property
    def key(self) -> tuple:
        return ("proxy", self.ifname, self.address)

    @property
    def owned(self) -> bool:
        return self.protocol == ownership.ROUTE_PROTOCOL


def canon_lladdr(text: str) -> str:
    """Canonical link-layer address: lower-case, two hex digits per octet, ':'-separated."""
    parts = text.replace("-", ":").split(":")
    if not parts or any(not 1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"bad link-layer address {text!r}")
    try:
        return ":".join(f"{int(p, 16):02x}" for p in parts)
    except ValueError:
        raise ValueError(f"bad link-layer address {text!r}") from None


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A static neighbour-cache entry (`ip -6 neigh replace A lladdr L dev X nud permanent
    protocol 77`): the mobile node returning home gives the kernel the home agent's
    link-layer address it resolved itself from ``::`` (RFC 6275 §11.5.5), so the
    de-registration leaves without an NS from the home address.

    Owned by NDA_PROTOCOL; ordinary (dynamic) neighbour entries never carry it and
    are not mip6ctl objects."""

    ifname: str
    address: str
    lladdr: str
    protocol: int = ownership.ROUTE_PROTOCOL

    def __post_init__(self) -> None:
        _set(self, "address", canon_addr(self.address))
        _set(self, "lladdr", canon_lladdr(self.lladdr))

    @property
    def key(self) -> tuple:
        return ("neigh", self.ifname, self.address)

    @property
    def owned(self) -> bool:
        return self.protocol == ownership.ROUTE_PROTOCOL


@dataclass(frozen=True, slots=True)
class Tunnel:
    """An ip6tnl (IPv6-in-IPv6, RFC 2473) device: one per peer, or one `external`
    (collect_metadata) device whose endpoints come from each route."""

    name: str
    local: str = ANY
    remote: str = ANY
    external: bool = False
    #: ip6_tunnel.h IP6_TNL_F_* flags (the low 16 bits the kernel reports back).
    #: Default IP6_TNL_F_IGN_ENCAP_LIMIT, as UMIP and `ip -6 tunnel ... encaplimit
    #: none`: no Tunnel Encapsulation Limit destination option on tunnelled
    #: packets (RFC 6275 tunnels are plain RFC 2473 without it).
    flags: int = 0x1

    def __post_init__(self) -> None:
        if len(self.name) > 15:
            raise ValueError(f"interface name too long: {self.name!r}")
        _set(self, "local", canon_addr(self.local))
        _set(self, "remote", canon_addr(self.remote))

    @property
    def key(self) -> tuple:
        return ("tunnel", self.name)

    @property
    def owned(self) -> bool:
        return self.name.startswith(ownership.TUNNEL_PREFIX)


#: sysctl subtrees mip6ctl may write: per-interface IPv6 knobs (forwarding,
#: proxy_ndp, accept_ra, seg6_enabled ...) and the global IPv6 ones.
SYSCTL_OWNED_PREFIXES = ("net/ipv6/conf/", "net/ipv6/neigh/")


@dataclass(frozen=True, slots=True)
class Sysctl:
    """A /proc/sys value, e.g. Sysctl("net/ipv6/conf/home0/proxy_ndp", "1")."""

    path: str
    value: str = field(default="")

    def __post_init__(self) -> None:
        p = self.path.replace(".", "/") if "/" not in self.path else self.path
        _set(self, "path", p.strip("/"))
        _set(self, "value", str(self.value).strip())

    @property
    def key(self) -> tuple:
        return ("sysctl", self.path)

    @property
    def owned(self) -> bool:
        return self.path.startswith(SYSCTL_OWNED_PREFIXES) and ".." not in self.path


# --- nf_tables (owned table ``ownership.NFT_TABLE``) and the seg6 tunnel source --------------
#
# nf_tables has no per-object mark: the table's name is the mark, so every
# object below lives in the owned table and is ``owned`` by construction;
# foreign tables are never read or written.


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named set of the owned table (the reverse-tunnel check's (care-of, home) pairs)."""

    name: str
    #: nft datatype id of the key (a concatenation is ``(t1 << 6) | t2``) and its length
    key_type: int
    key_len: int
    table: str = ownership.NFT_TABLE

    @property
    def key(self) -> tuple:
        return ("nft-set", self.table, self.name)

    @property
    def owned(self) -> bool:
        return self.table == ownership.NFT_TABLE


@dataclass(frozen=True, slots=True)
class NftChain:
    """A base chain of the owned table with its rules, written as one atomic batch.

    Rules are compared by their comments (each names what it matches, e.g.
    "mip6ctl: reverse tunnel to 2001:db8:1::1 from a non-binding"): the
    kernel reports expressions in its own normal form, the comment comes
    back as written.  ``exprs`` holds the encoded expressions per rule for
    the writer; it is not compared (the observer cannot fill it)."""

    name: str
    hook: int
    priority: int
    rules: tuple[str, ...] = ()
    table: str = ownership.NFT_TABLE
    exprs: tuple[tuple[bytes, ...], ...] = field(default=(), compare=False, repr=False)

    @property
    def key(self) -> tuple:
        return ("nft-chain", self.table, self.name)

    @property
    def owned(self) -> bool:
        return self.table == ownership.NFT_TABLE


@dataclass(frozen=True, slots=True)
class NftSetElement:
    """One (care-of address, home address) pair in a set of the owned table."""

    care_of: str
    home: str
    set: str
    table: str = ownership.NFT_TABLE

    def __post_init__(self) -> None:
        _set(self, "care_of", canon_addr(self.care_of))
        _set(self, "home", canon_addr(self.home))

    @property
    def key(self) -> tuple:
        return ("nft-element", self.table, self.set, self.care_of, self.home)

    @property
    def owned(self) -> bool:
        return self.table == ownership.NFT_TABLE


@dataclass(frozen=True, slots=True)
class Seg6TunnelSource:
    """The namespace's seg6 tunnel source (``ip sr tunsrc``); ``::`` = source selection.

    One per namespace and unmarkable, so, like a sysctl, it is only ever set to
    a value mip6ctl declares (a mobile node away: its care-of address; at
    home: ``::``) and never "deleted"."""

    address: str = ANY

    def __post_init__(self) -> None:
        _set(self, "address", canon_addr(self.address))

    @property
    def key(self) -> tuple:
        return ("seg6-tunsrc",)

    @property
    def owned(self) -> bool:
        return True


KernelObject: TypeAlias = (
    Address
    | Route
    | Rule
    | ProxyNeighbour
    | Neighbour
    | Tunnel
    | Sysctl
    | NftSet
    | NftChain
    | NftSetElement
    | Seg6TunnelSource
)

#: kinds without an ownership mark that mip6ctl only ever sets, never deletes
SETTINGS = (Sysctl, Seg6TunnelSource)

_SETTERS: dict[type, list] = {}


def trusted(cls: type[KernelObject], *values: object) -> KernelObject:
    """Build an object from values that are already canonical (kernel decoders),
    skipping normalisation: twice as fast, which matters for 100k-route dumps."""
    setters = _SETTERS.get(cls)
    if setters is None:
        setters = _SETTERS[cls] = [cls.__dict__[n].__set__ for n in cls.__dataclass_fields__]
    obj = object.__new__(cls)
    for setter, value in zip(setters, values, strict=True):
        setter(obj, value)
    return obj
