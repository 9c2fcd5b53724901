"""Typed XFRM policies and states: what the reconciler compares, not how netlink spells it.

Theory of operation
-------------------
Every object here is a frozen, slotted, hashable dataclass built from plain
values (``ipaddress`` objects and ints), so a desired set and an observed set
can be diffed with ``==`` and keyed in dicts.  Each object has:

* ``key`` -- the identity the *kernel* uses to tell two objects apart.  For a
  policy that is (direction, policy type, selector, mark, if_id); the priority
  is **not** part of it (adding a second policy that differs only in priority
  replaces the first, `xfrm_policy_insert`).  For an SA with an SPI (ESP, AH,
  IPComp) it is (destination, SPI, protocol, mark); for the Mobile IPv6
  route-optimisation states (type 2 routing header, Home Address option) the
  kernel does not use SPIs and finds them by (destination, source, protocol,
  mark).
* compared attributes -- every other field except those marked
  ``compare=False`` (the kernel-assigned policy index, live counters).
  ``diff()`` names the attributes that differ, for "desired X, current Y".
* ``owned`` -- DESIGN.md invariant 3, see `is_owned_policy` and `OWNED_MARK`.

Key material: an `XfrmAlgo` keeps the key bytes (the kernel needs them) but
compares and prints only a SHA-256 digest; ``repr()`` shows the same
``sha256:`` fingerprint the configuration layer prints.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from typing import Any

from mip6ctl import ownership

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

AF_INET = 2
AF_INET6 = 10

#: IP protocol numbers a selector commonly names.
IPPROTO_ICMPV6 = 58
IPPROTO_MH = 135


class Direction(IntEnum):
    IN = 0
    OUT = 1
    FWD = 2


class PolicyType(IntEnum):
    """MAIN policies are the SPD; SUB policies are looked up first (MIPL used them for RO)."""

    MAIN = 0
    SUB = 1


class Action(IntEnum):
    ALLOW = 0
    BLOCK = 1


class Mode(IntEnum):
    TRANSPORT = 0
    TUNNEL = 1
    RO = 2  # XFRM_MODE_ROUTEOPTIMIZATION (route2/hao)
    IN_TRIGGER = 3
    BEET = 4


class XfrmProto(IntEnum):
    """XFRM "protocols": IPsec ones plus the two Mobile IPv6 extension headers."""

    ROUTE2 = 43  # IPPROTO_ROUTING: type 2 routing header
    ESP = 50
    AH = 51
    HAO = 60  # IPPROTO_DSTOPTS: Home Address destination option
    COMP = 108
    ANY = 255  # IPSEC_PROTO_ANY (templates only)

    @property
    def uses_spi(self) -> bool:
        return self in (XfrmProto.ESP, XfrmProto.AH, XfrmProto.COMP)


class Level(IntEnum):
    """Template level: ``required`` needs an SA, ``use`` uses one when present (tmpl.optional)."""

    REQUIRED = 0
    USE = 1


@dataclass(frozen=True, slots=True, order=True)
class Mark:
    """An XFRM mark: a packet matches when ``(skb_mark & mask) == value``.

    The kernel stores ``value & mask``; we normalise the same way so that a
    decoded mark compares equal to the one we sent.
    """

    value: int = 0
    mask: int = 0

    def __post_init__(self) -> None:
        for name, v in (("value", self.value), ("mask", self.mask)):
            if not 0 <= v <= 0xFFFFFFFF:
                raise ValueError(f"mark {name} {v:#x} is not a 32-bit value")
        if self.value & ~self.mask:
            object.__setattr__(self, "value", self.value & self.mask)

    def __str__(self) -> str:
        return f"{self.value:#x}/{self.mask:#x}"


#: The mark every owned policy and state carries (DESIGN.md invariant 3).
OWNED_MARK = Mark(ownership.XFRM_MARK, ownership.XFRM_MARK_MASK)

_ANY6 = ipaddress.IPv6Network("::/0")


def _family(*items: Address | Network | None) -> int:
    version = 0
    for i in items:
        if i is None:
            continue
        if version and i.version != version:
            raise ValueError(f"mixed address families in {items}")
        version = i.version
    return AF_INET if version == 4 else AF_INET6


def _as(enum: type[Any], value: Any) -> Any:
    """Coerce to an IntEnum member, skipping the (slow) call when it already is one."""
    return value if type(value) is enum else enum(value)


@dataclass(frozen=True, slots=True)
class XfrmSelector:
    """Which packets a policy or SA covers (struct xfrm_selector).

    Ports are host-order numbers here; for ICMPv6 the kernel puts type/code
    in sport/dport, and for the Mobility Header (proto 135) it puts the MH
    type in *sport* (`xfrm_flowi_sport`: ``htons(fl6_mh_type)``) -- use
    `XfrmSelector.mobility()` and the `mh_type` property for that.
    """

    dst: Network = _ANY6
    src: Network = _ANY6
    proto: int = 0
    sport: int = 0
    sport_mask: int = 0
    dport: int = 0
    dport_mask: int = 0
    ifindex: int = 0
    user: int = 0

    def __post_init__(self) -> None:
        if self.dst.version != self.src.version:
            raise ValueError(f"selector mixes families: {self.src} -> {self.dst}")
        for name in ("sport", "sport_mask", "dport", "dport_mask"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"selector {name} out of range")

    @classmethod
    def mobility(
        cls, src: str | Network, dst: str | Network, mh_type: int | None = None
    ) -> XfrmSelector:
        """Selector for Mobility Header traffic, optionally one MH type (RFC 3776 §4.2)."""
        s, d = ipaddress.ip_network(src), ipaddress.ip_network(dst)
        if mh_type is None:
            return cls(dst=d, src=s, proto=IPPROTO_MH)
        if not 0 <= mh_type <= 255:
            raise ValueError(f"MH type {mh_type} out of range")
        return cls(dst=d, src=s, proto=IPPROTO_MH, sport=mh_type, sport_mask=0xFFFF)

    @classmethod
    def between(cls, src: str | Network, dst: str | Network, proto: int = 0) -> XfrmSelector:
        return cls(dst=ipaddress.ip_network(dst), src=ipaddress.ip_network(src), proto=proto)

    @property
    def family(self) -> int:
        return _family(self.dst, self.src)

    @property
    def mh_type(self) -> int | None:
        """The Mobility Header type this selector is restricted to, if any."""
        if self.proto == IPPROTO_MH and self.sport_mask == 0xFFFF:
            return self.sport
        return None

    def __str__(self) -> str:
        s = f"{self.src} -> {self.dst}"
        if self.proto:
            s += f" proto {self.proto}"
        if self.mh_type is not None:
            s += f" mh-type {self.mh_type}"
        elif self.sport_mask or self.dport_mask:
            s += f" sport {self.sport}/{self.sport_mask:#x} dport {self.dport}/{self.dport_mask:#x}"
        return s


#: "any algorithm" bitmaps a template uses by default (as `ip xfrm` does).
ALL_ALGOS = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class XfrmTemplate:
    """One transformation a policy requires (struct xfrm_user_tmpl).

    ``src``/``dst`` are the tunnel endpoints (tunnel mode) or the SA peers
    (route2/hao: the care-of/home addresses); None means "any" (``::``).
    """

    proto: XfrmProto
    mode: Mode = Mode.TRANSPORT
    dst: Address | None = None
    src: Address | None = None
    spi: int = 0
    reqid: int = 0
    level: Level = Level.REQUIRED
    share: int = 0
    aalgos: int = ALL_ALGOS
    ealgos: int = ALL_ALGOS
    calgos: int = ALL_ALGOS
    #: address family of the template; None = that of the endpoints, else the policy's.
    family: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "proto", _as(XfrmProto, self.proto))
        object.__setattr__(self, "mode", _as(Mode, self.mode))
        object.__setattr__(self, "level", _as(Level, self.level))
        if self.family is None and (self.src is not None or self.dst is not None):
            object.__setattr__(self, "family", _family(self.src, self.dst))


@dataclass(frozen=True, slots=True)
class XfrmPolicyKey:
    """What the kernel uses to tell two policies apart."""

    direction: Direction
    ptype: PolicyType
    selector: XfrmSelector
    mark: Mark
    if_id: int = 0


def is_owned_policy(priority: int, mark: Mark) -> bool:
    """Ownership rule: priority in the owned band **and** exactly the owned mark/mask."""
    return (
        ownership.XFRM_PRIORITY_MIN <= priority <= ownership.XFRM_PRIORITY_MAX
        and mark == OWNED_MARK
    )


def _diff(a: Any, b: Any) -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    for f in fields(a):
        if not f.compare:
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va != vb:
            out[f.name] = (va, vb)
    return out


@dataclass(frozen=True, slots=True)
class XfrmPolicy:
    """An SPD entry (struct xfrm_userpolicy_info + XFRMA_TMPL/POLICY_TYPE/MARK/IF_ID).

    Defaults describe an *owned* policy (lowest priority of the owned band,
    the owned mark), since that is what render() builds; decoded policies
    always carry the kernel's values.
    """

    selector: XfrmSelector
    direction: Direction
    ptype: PolicyType = PolicyType.MAIN
    priority: int = ownership.XFRM_PRIORITY_MIN
    mark: Mark = OWNED_MARK
    action: Action = Action.ALLOW
    templates: tuple[XfrmTemplate, ...] = ()
    flags: int = 0
    share: int = 0
    if_id: int = 0
    #: kernel-assigned index (observed only; not part of identity or comparison)
    index: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", _as(Direction, self.direction))
        object.__setattr__(self, "ptype", _as(PolicyType, self.ptype))
        object.__setattr__(self, "action", _as(Action, self.action))
        # A template without endpoints takes the policy's family (the kernel does the same).
        fam = self.selector.family
        object.__setattr__(
            self,
            "templates",
            tuple(t if t.family is not None else replace(t, family=fam) for t in self.templates),
        )
        if not 0 <= self.priority <= 0xFFFFFFFF:
            raise ValueError(f"priority {self.priority} out of range")

    @property
    def key(self) -> XfrmPolicyKey:
        return XfrmPolicyKey(self.direction, self.ptype, self.selector, self.mark, self.if_id)

    @property
    def owned(self) -> bool:
        return is_owned_policy(self.priority, self.mark)

    @property
    def family(self) -> int:
        return self.selector.family

    def diff(self, other: XfrmPolicy) -> dict[str, tuple[Any, Any]]:
        """Compared attributes that differ: {name: (self's, other's)}."""
        return _diff(self, other)


# -- states ------------------------------------------------------------------

#: Configuration algorithm names (config/secrets.py) -> (kind, kernel crypto name, trunc bits).
ALGORITHMS: dict[str, tuple[str, str, int]] = {
    "aes-cbc": ("crypt", "cbc(aes)", 0),
    "aes-ctr": ("crypt", "rfc3686(ctr(aes))", 0),
    "3des-cbc": ("crypt", "cbc(des3_ede)", 0),
    "null": ("crypt", "ecb(cipher_null)", 0),
    "hmac-sha1": ("auth", "hmac(sha1)", 96),
    "hmac-sha256": ("auth", "hmac(sha256)", 128),
    "hmac-sha384": ("auth", "hmac(sha384)", 192),
    "hmac-sha512": ("auth", "hmac(sha512)", 256),
}


def key_fingerprint(key: bytes) -> str:
    """Short fingerprint for humans (same format as config.secrets.fingerprint)."""
    return "sha256:" + hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class XfrmAlgo:
    """An SA algorithm with its key; compared and printed by digest, never by key bytes.

    ``kind`` is "crypt", "auth" (sent as XFRMA_ALG_AUTH_TRUNC), "aead" (``icv_bits``
    in ``trunc_bits``) or "comp".
    """

    kind: str
    name: str
    key_digest: str
    key_bits: int
    trunc_bits: int = 0
    key: bytes = field(default=b"", repr=False, compare=False, hash=False)

    @classmethod
    def with_key(cls, kind: str, name: str, key: bytes, trunc_bits: int = 0) -> XfrmAlgo:
        if kind not in ("crypt", "auth", "aead", "comp"):
            raise ValueError(f"unknown algorithm kind {kind!r}")
        return cls(
            kind=kind,
            name=name,
            key_digest=hashlib.sha256(key).hexdigest(),
            key_bits=len(key) * 8,
            trunc_bits=trunc_bits,
            key=bytes(key),
        )

    @classmethod
    def from_config(cls, algorithm: str, key: bytes) -> XfrmAlgo:
        """Build from a configuration algorithm name ("aes-cbc", "hmac-sha256", ...)."""
        try:
            kind, name, trunc = ALGORITHMS[algorithm]
        except KeyError:
            raise ValueError(f"unknown IPsec algorithm {algorithm!r}") from None
        return cls.with_key(kind, name, key, trunc)

    @property
    def fingerprint(self) -> str:
        return "sha256:" + self.key_digest[:16]

    def __repr__(self) -> str:
        extra = f", trunc_bits={self.trunc_bits}" if self.trunc_bits else ""
        return (
            f"XfrmAlgo(kind={self.kind!r}, name={self.name!r}, key_bits={self.key_bits}"
            f"{extra}, key={self.fingerprint})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class XfrmStateKey:
    """SA identity: (dst, spi, proto, mark) -- or (dst, src, proto, mark) without SPIs."""

    dst: Address
    proto: XfrmProto
    spi: int
    src: Address | None
    mark: Mark


@dataclass(frozen=True, slots=True)
class XfrmState:
    """An SAD entry (struct xfrm_usersa_info + algorithms, XFRMA_COADDR, XFRMA_MARK).

    For route2/hao (mode RO) ``coaddr`` is the care-of address the kernel
    writes into the routing header / Home Address option.
    """

    dst: Address
    src: Address
    proto: XfrmProto
    spi: int = 0
    mode: Mode = Mode.TRANSPORT
    reqid: int = 0
    #: None means "any" (::/0 -> ::/0 of the SA's family), as `ip xfrm state` sends.
    selector: XfrmSelector = None  # type: ignore[assignment]
    mark: Mark = OWNED_MARK
    algorithms: tuple[XfrmAlgo, ...] = ()
    coaddr: Address | None = None
    replay_window: int = 0
    flags: int = 0
    if_id: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "proto", _as(XfrmProto, self.proto))
        object.__setattr__(self, "mode", _as(Mode, self.mode))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        _family(self.src, self.dst, self.coaddr)
        if self.selector is None:
            anyn = ipaddress.ip_network("::/0" if self.dst.version == 6 else "0.0.0.0/0")
            object.__setattr__(self, "selector", XfrmSelector(dst=anyn, src=anyn))

    @property
    def family(self) -> int:
        return _family(self.src, self.dst)

    @property
    def key(self) -> XfrmStateKey:
        if self.proto.uses_spi:
            return XfrmStateKey(self.dst, self.proto, self.spi, None, self.mark)
        return XfrmStateKey(self.dst, self.proto, 0, self.src, self.mark)

    @property
    def owned(self) -> bool:
        """States carry no priority: the owned mark alone marks them as ours -- except
        the kernel's larval states, which are nobody's objects."""
        return self.mark == OWNED_MARK and not self.larval

    @property
    def larval(self) -> bool:
        """A route-optimisation state without a care-of address: the kernel's stand-in
        for an ACQUIRE of the traffic-trigger policy (it copies that policy's mark).
        Every state mip6ctl writes in mode RO has one (the wildcards ``::``)."""
        return self.mode == Mode.RO and self.coaddr is None

    def diff(self, other: XfrmState) -> dict[str, tuple[Any, Any]]:
        return _diff(self, other)


# -- movement ----------------------------------------------------------------


def _endpoints_only(a: XfrmTemplate, b: XfrmTemplate) -> bool:
    return a == b or (a.mode == b.mode == Mode.TUNNEL and replace(a, src=b.src, dst=b.dst) == b)


def policy_moved(old: XfrmPolicy, new: XfrmPolicy) -> bool:
    """`new` is `old` with tunnel endpoints moved (a care-of address change): what an
    XFRM MIGRATE does, instead of replacing the policy."""
    return (
        old != new
        and old.key == new.key
        and len(old.templates) == len(new.templates)
        and replace(old, templates=new.templates) == new
        and all(_endpoints_only(a, b) for a, b in zip(old.templates, new.templates, strict=True))
    )


def state_moved(old: XfrmState, new: XfrmState) -> bool:
    """`new` is tunnel-mode SA `old` at other addresses, same SPI, reqid and keys."""
    return (
        old.mode == new.mode == Mode.TUNNEL
        and old.proto.uses_spi
        and (old.src, old.dst) != (new.src, new.dst)
        and replace(old, src=new.src, dst=new.dst) == new
    )
