"""plan(): the ordered, deterministic difference between desired and observed state.

Desired state comes from `render()` with an origin per object (which config
key or which binding wants it); observed state is what the observer saw of
*our* objects, plus whatever foreign objects occupy a desired key.  The plan
says, for each key: create, update (replace in place) or delete — or, when a
foreign object holds the key, a conflict that is reported and never
overwritten (DESIGN.md invariant 3).

Ordering is make-before-break:
1. creates, in dependency order (sysctl, tunnel, address, seg6 tunnel
   source, route, rule, proxy neighbour, static neighbour, XFRM state, XFRM
   policy, nf_tables set, set element, chain -- a chain is created after the set its rules
   look up and, deleted first, goes before it): a binding moving to a new
   care-of address gets its new objects before anything of the old goes;
2. migrations: a tunnel-mode XFRM policy whose template endpoints moved, and
   a tunnel-mode SA at new addresses with the same SPI, reqid and keys (a
   create + delete pair, or an update of the source alone) become one
   ``migrate`` change each -- the executor sends XFRM_MSG_MIGRATE, which moves
   policy and SAs together and tells the IKE daemon (RFC 4877 §8.4) --
   policies first: their MIGRATE carries the SAs along;
3. updates (in-place replaces are atomic for the kernel);
4. deletes, in reverse dependency order.
Within a phase, changes are sorted by kind and key, so the same inputs always
give the same plan (invariant 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["create", "migrate", "update", "delete"]

#: Dependency order of object kinds (the first element of every key).
KIND_ORDER: dict[str, int] = {
    "sysctl": 0,
    "tunnel": 1,
    "address": 2,
    "seg6-tunsrc": 3,
    "route": 4,
    "rule": 5,
    "proxy": 6,
    "neigh": 7,
    "xfrm-state": 8,
    "xfrm-policy": 9,
    "nft-set": 10,
    "nft-element": 11,
    "nft-chain": 12,
}
_PHASE = {"create": 0, "migrate": 1, "update": 2, "delete": 3}


@dataclass(frozen=True, slots=True)
class Origin:
    """Why an object is wanted: a configuration key, or a binding (by home address)."""

    kind: Literal["config", "binding"]
    ref: str

    def __str__(self) -> str:
        return f"{self.kind} {self.ref}"


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    key: tuple
    desired: Any | None
    observed: Any | None
    origin: Origin | None

    @property
    def kind(self) -> str:
        return str(self.key[0])

    def sort_key(self) -> tuple:
        order = KIND_ORDER.get(self.kind, 99)
        if self.action in ("delete", "migrate"):
            order = -order
        return (_PHASE[self.action], order, _key_text(self.key))


@dataclass(frozen=True, slots=True)
class Conflict:
    """A foreign object holds a key we want: reported, never overwritten."""

    key: tuple
    desired: Any
    foreign: Any
    origin: Origin | None


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    impact: Mapping[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "migrate": 0, "update": 0, "delete": 0}
        for c in self.changes:
            out[c.action] += 1
        return out


def _key_text(key: tuple) -> tuple:
    # Keys mix str and int (and None); compare as text with ints zero-padded so
    # that sorting is total and stable across runs.
    return tuple(f"{p:012d}" if isinstance(p, int) else str(p) for p in key)


def plan(
    desired: Mapping[tuple, Any],
    observed: Mapping[tuple, Any],
    *,
    origins: Mapping[tuple, Origin] | None = None,
    foreign: Mapping[tuple, Any] | None = None,
    scope: Iterable[tuple] | None = None,
) -> Plan:
    """Diff desired against observed (both keyed by object key).

    `observed` holds only owned objects.  `foreign` maps a desired key to the
    foreign object found there, if any.  `scope` limits the diff to some keys
    (incremental reconcile of one binding, invariant 4); None means all.
    """
    origins = origins or {}
    foreign = foreign or {}
    changes: list[Change] = []
    conflicts: list[Conflict] = []
    if scope is None:
        # Full diff: walk desired, then the observed keys nobody wants.  No union
        # set of all keys: a no-op plan of 100k bindings is a dict walk.
        seen = observed.get
        for key, want in desired.items():
            have = seen(key)
            if have is None:
                _missing(key, want, foreign, origins, changes, conflicts)
            elif want != have:
                changes.append(Change("update", key, want, have, origins.get(key)))
        for key, have in observed.items():
            if key not in desired:
                changes.append(Change("delete", key, None, have, origins.get(key)))
    else:
        for key in set(scope):
            want = desired.get(key)
            have = observed.get(key)
            if want is not None and have is None:
                _missing(key, want, foreign, origins, changes, conflicts)
            elif want is not None and have is not None:
                if want != have:
                    changes.append(Change("update", key, want, have, origins.get(key)))
            elif have is not None:
                changes.append(Change("delete", key, None, have, origins.get(key)))
    changes = _fold_migrations(changes)
    changes.sort(key=Change.sort_key)
    conflicts.sort(key=lambda c: _key_text(c.key))
    return Plan(tuple(changes), tuple(conflicts), _impact(changes, origins, observed))


def _fold_migrations(changes: list[Change]) -> list[Change]:
    """Tunnel endpoints that moved: one ``migrate`` instead of replace, or create + delete."""
    from mip6ctl.state.xfrm import XfrmPolicy, XfrmState, policy_moved, state_moved

    if not any(c.kind in ("xfrm-policy", "xfrm-state") for c in changes):
        return changes
    out: list[Change] = []
    created: dict[tuple, int] = {}
    for c in changes:
        d, o = c.desired, c.observed
        if c.action == "update" and (
            (isinstance(d, XfrmPolicy) and policy_moved(o, d))
            or (isinstance(d, XfrmState) and state_moved(o, d))
        ):
            out.append(Change("migrate", c.key, d, o, c.origin))
            continue
        if c.action == "create" and isinstance(d, XfrmState) and d.proto.uses_spi:
            created[(d.proto, d.spi, d.reqid, d.mark)] = len(out)
        out.append(c)
    if not created:
        return out
    drop: set[int] = set()
    for i, c in enumerate(out):
        o = c.observed
        if c.action != "delete" or not isinstance(o, XfrmState):
            continue
        j = created.get((o.proto, o.spi, o.reqid, o.mark))
        if j is None or j in drop:
            continue
        new = out[j]
        if state_moved(o, new.desired):
            out[j] = Change("migrate", new.key, new.desired, o, new.origin)
            drop.add(i)
            created.pop((o.proto, o.spi, o.reqid, o.mark))
    return [c for i, c in enumerate(out) if i not in drop]


def _missing(
    key: tuple,
    want: Any,
    foreign: Mapping[tuple, Any],
    origins: Mapping[tuple, Origin],
    changes: list[Change],
    conflicts: list[Conflict],
) -> None:
    """A desired object the kernel lacks: create it, unless a foreign object holds the key."""
    other = foreign.get(key)
    if other is not None:
        conflicts.append(Conflict(key, want, other, origins.get(key)))
    else:
        changes.append(Change("create", key, want, None, origins.get(key)))


def _impact(
    changes: list[Change], origins: Mapping[tuple, Origin], observed: Mapping[tuple, Any]
) -> dict[str, int]:
    """Bindings added, moved and dropped; config objects changed."""
    touched: dict[str, set[str]] = {"create": set(), "update": set(), "delete": set()}
    config = 0
    for c in changes:
        if c.origin is not None and c.origin.kind == "binding":
            touched["update" if c.action == "migrate" else c.action].add(c.origin.ref)
        else:
            config += 1
    moved = touched["update"] | (touched["create"] & touched["delete"])
    added = touched["create"] - touched["delete"] - touched["update"]
    dropped = touched["delete"] - touched["create"] - touched["update"]
    return {
        "bindings_added": len(added),
        "bindings_moved": len(moved),
        "bindings_dropped": len(dropped),
        "config_objects": config,
    }
