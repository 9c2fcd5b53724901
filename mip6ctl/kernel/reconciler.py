"""Execute plans against the kernel and verify the result (the nmstate half of apply).

`Reconciler` ties the observer (what is there), `plan()` (what to change) and
the writers (rtnetlink and XFRM) together, synchronously.  The daemon drives
it per key from its asyncio loop; `mip6ctl apply` uses it once.

Apply is level-triggered and idempotent: every change is computed from
desired vs observed, "already exists"/"already gone" count as success, and
planning again after a successful apply gives an empty plan.  After applying,
the touched keys are read back and any object whose kernel state differs from
the desired one is reported per object (verification).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.writer import Op, Result, Writer
from mip6ctl.state.objects import RT_TABLE_LOCAL, Rule, Sysctl
from mip6ctl.state.plan import Change, Origin, Plan, plan
from mip6ctl.state.render import DEFAULT_LOCAL_RULE, Desired, object_key
from mip6ctl.state.xfrm import XfrmPolicy, XfrmState


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one planned change."""

    change: Change
    status: str  # ok | exists | absent | conflict | refused | error
    message: str = ""
    errno: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "exists", "absent")

    @property
    def transient(self) -> bool:
        """Worth retrying with backoff (the kernel or an interface may come around)."""
        return self.status == "error" and self.errno in (
            errno.ENODEV,
            errno.ENETDOWN,
            errno.EBUSY,
            errno.EAGAIN,
            errno.ENOBUFS,
            errno.ETIMEDOUT,
            errno.EINTR,
            errno.ENETUNREACH,
        )


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Verification: desired X, kernel has Y (None = absent)."""

    key: tuple
    desired: Any
    observed: Any


@dataclass
class ApplyReport:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and not self.mismatches and not self.plan.conflicts

    @property
    def changed(self) -> bool:
        return any(o.status == "ok" for o in self.outcomes)


_XFRM_KINDS = ("xfrm-policy", "xfrm-state")


def _is_moved_local_rule(obj: Any) -> bool:
    return (
        isinstance(obj, Rule)
        and obj.owned
        and obj.table == RT_TABLE_LOCAL
        and obj.action == "lookup"
        and obj.src == obj.dst == "::/0"
    )


class Reconciler:
    """Plans and applies desired state in the namespace it was created in."""

    def __init__(
        self,
        *,
        observer: Observer,
        writer: Writer,
        xfrm: Any | None = None,
    ) -> None:
        self.observer = observer
        self.writer = writer
        self.xfrm = xfrm  # kernel.xfrm.XfrmSocket, opened lazily by the caller

    # -- reading ---------------------------------------------------------------------------

    def observed(self) -> dict[tuple, Any]:
        out: dict[tuple, Any] = dict(self.observer.owned)
        if self.xfrm is not None:
            out.update(self.observed_xfrm())
        return out

    def observed_xfrm(self) -> dict[tuple, Any]:
        out: dict[tuple, Any] = {}
        for p in self.xfrm.dump_policies(owned_only=True):
            out[object_key(p)] = p
        for s in self.xfrm.dump_states(owned_only=True):
            out[object_key(s)] = s
        return out

    def observed_subset(self, keys: Iterable[tuple]) -> dict[tuple, Any]:
        """The owned objects under `keys` only: an incremental reconcile looks up
        its few keys in the cache instead of copying 100k entries (invariant 4),
        and dumps XFRM only when one of the keys is an XFRM object."""
        owned = self.observer.owned
        out: dict[tuple, Any] = {}
        xfrm_keys = []
        for k in keys:
            v = owned.get(k)
            if v is not None:
                out[k] = v
            elif k[0] in _XFRM_KINDS:
                xfrm_keys.append(k)
        if xfrm_keys and self.xfrm is not None:
            dumped = self.observed_xfrm()
            for k in xfrm_keys:
                if k in dumped:
                    out[k] = dumped[k]
        return out

    def plan(
        self,
        desired: Desired,
        *,
        keep: Callable[[tuple, Any], bool] | None = None,
        scope: Iterable[tuple] | None = None,
        observed: Mapping[tuple, Any] | None = None,
    ) -> Plan:
        """Plan desired vs observed.

        `keep(key, obj)` protects observed owned objects this plan must not delete
        (e.g. binding objects when planning static state without the daemon).
        With `scope`, only those keys are read from the cache and diffed.
        """
        if scope is not None:
            scope = set(scope)
        if observed is not None:
            seen = dict(observed)
        elif scope is not None:
            seen = self.observed_subset(scope)
        else:
            seen = self.observed()
        wanted = desired.objects
        # Sysctls carry no mark: we never "delete" one, only set the values we want.
        drop = [k for k, v in seen.items() if k not in wanted and isinstance(v, Sysctl)]
        if keep is not None:
            drop += [k for k, v in seen.items() if k not in wanted and keep(k, v)]
        for k in drop:
            seen.pop(k, None)
        conflict = self.observer.conflict
        foreign: dict[tuple, Any] = {}
        for k in wanted if scope is None else (k for k in scope if k in wanted):
            if k not in seen:
                other = conflict(k)
                if other is not None:
                    foreign[k] = other
        p = plan(wanted, seen, origins=desired.origins, foreign=foreign, scope=scope)
        takeovers = [
            Change("delete", key, None, obj, Origin("config", "kernel.tunnel"))
            for key, obj in sorted(desired.takeovers.items(), key=lambda kv: str(kv[0]))
            if conflict(key) is not None
        ]
        # The reverse: our copy of the local rule is going (backend no longer seg6,
        # or nothing needs decapsulation) — put the kernel's own rule back first,
        # or the host would lose local delivery between the two changes.
        restores = [
            Change(
                "create",
                DEFAULT_LOCAL_RULE.key,
                DEFAULT_LOCAL_RULE,
                None,
                Origin("config", "kernel.tunnel"),
            )
            for c in p.changes
            if c.action == "delete"
            and _is_moved_local_rule(c.observed)
            and DEFAULT_LOCAL_RULE.key not in desired.takeovers
            and conflict(DEFAULT_LOCAL_RULE.key) is None
        ][:1]
        if takeovers or restores:
            p = Plan(tuple(restores) + p.changes + tuple(takeovers), p.conflicts, p.impact)
        return p

    # -- writing ---------------------------------------------------------------------------

    def apply(self, p: Plan, desired: Desired | None = None) -> ApplyReport:
        report = ApplyReport(p)
        rtnl: list[tuple[Change, Op]] = []
        xfrm: list[Change] = []
        for change in p.changes:
            obj = change.desired if change.desired is not None else change.observed
            if isinstance(obj, XfrmPolicy | XfrmState):
                xfrm.append(change)
                continue
            takeover = not obj.owned  # the documented local-rule takeover and its undo
            action = {"create": "create", "update": "replace", "delete": "delete"}[change.action]
            rtnl.append((change, Op(action, obj, allow_foreign=takeover)))  # type: ignore[arg-type]
        # Make-before-break across the two sockets: rtnetlink creates/updates, XFRM,
        # then rtnetlink deletes (the plan is already ordered within each).
        first = [(c, o) for c, o in rtnl if c.action != "delete"]
        last = [(c, o) for c, o in rtnl if c.action == "delete"]
        report.outcomes += self._rtnl(first)
        report.outcomes += self._xfrm(xfrm)
        report.outcomes += self._rtnl(last)
        if desired is not None:
            report.mismatches = self.verify(desired, [c.key for c in p.changes])
        return report

    def _rtnl(self, pairs: list[tuple[Change, Op]]) -> list[Outcome]:
        if not pairs:
            return []
        results: list[Result] = self.writer.apply(op for _, op in pairs)
        self.observer.note_applied(results)
        out = []
        for (change, _), r in zip(pairs, results, strict=True):
            msg = r.message
            if r.status == "conflict" and r.foreign is not None:
                msg = f"held by a foreign object: {r.foreign!r}"
            out.append(Outcome(change, r.status, msg, r.errno))
        return out

    def _xfrm(self, changes: list[Change]) -> list[Outcome]:
        if not changes:
            return []
        if self.xfrm is None:
            return [Outcome(c, "error", "no XFRM socket", errno.ENOTSUP) for c in changes]
        out = []
        for c in changes:
            obj = c.desired if c.desired is not None else c.observed
            is_policy = isinstance(obj, XfrmPolicy)
            fn = {
                ("create", True): self.xfrm.add_policies,
                ("update", True): self.xfrm.update_policies,
                ("delete", True): self.xfrm.delete_policies,
                ("create", False): self.xfrm.add_states,
                ("update", False): self.xfrm.update_states,
                ("delete", False): self.xfrm.delete_states,
            }[(c.action, is_policy)]
            (r,) = fn([obj])
            if r.error:
                out.append(Outcome(c, "error", r.message, r.error))
            else:
                out.append(Outcome(c, "exists" if r.noop else "ok"))
        return out

    # -- verification ----------------------------------------------------------------------

    def verify(self, desired: Desired, keys: Iterable[tuple]) -> list[Mismatch]:
        """Read back `keys`: every desired object present and equal, every other gone."""
        self.observer.process_pending()
        keys = list(keys)
        seen = self.observed_subset(keys)
        out = []
        for key in keys:
            want = desired.objects.get(key)
            have = seen.get(key)
            if key in desired.takeovers:
                if self.observer.conflict(key) is not None:
                    out.append(Mismatch(key, None, self.observer.conflict(key)))
                continue
            if want != have and not (want is None and isinstance(have, Sysctl)):
                out.append(Mismatch(key, want, have))
        return out
