"""Execute plans against the kernel and verify the result (the nmstate half of apply).

`Reconciler` ties the observer (what is there), `plan()` (what to change) and
the plan executor (`kernel.executor`, the one writer) together, synchronously.  The daemon drives
it per key from its asyncio loop; `mip6ctl apply` uses it once.

Apply is level-triggered and idempotent: every change is computed from
desired vs observed, "already exists"/"already gone" count as success, and
planning again after a successful apply gives an empty plan.  After applying,
the touched keys are read back and any object whose kernel state differs from
the desired one is reported per object (verification).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mip6ctl.kernel.executor import Executor, Outcome
from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.writer import Result, Writer
from mip6ctl.state.objects import RT_TABLE_LOCAL, SETTINGS, Rule
from mip6ctl.state.plan import Change, Origin, Plan, plan
from mip6ctl.state.render import DEFAULT_LOCAL_RULE, Desired

__all__ = ["ApplyReport", "Mismatch", "Outcome", "Reconciler", "converge"]


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


def _is_moved_local_rule(obj: Any) -> bool:
    return (
        isinstance(obj, Rule)
        and obj.owned
        and obj.table == RT_TABLE_LOCAL
        and obj.action == "lookup"
        and obj.src == obj.dst == "::/0"
    )


class Reconciler:
    """Plans and applies desired state in the namespace it was created in.

    Every kind the executor writes is read back from the observer's cache
    (which must watch the sources the plans touch: ``sources=("nft", "xfrm")``
    where those kinds are desired)."""

    def __init__(
        self,
        *,
        observer: Observer,
        writer: Writer,
        xfrm: Any | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.observer = observer
        self.writer = writer
        self.executor = executor or Executor(writer, xfrm=xfrm)
        self.executor.on_applied = self._applied
        #: called with the outcomes of XFRM MIGRATEs (the daemon's status shows the last)
        self.on_migrated: Callable[[list[Outcome]], None] | None = None

    @property
    def xfrm(self) -> Any:
        return self.executor.xfrm

    def _applied(self, results: list[Result], outcomes: list[Outcome]) -> None:
        if results:
            self.observer.note_applied(results)
        if outcomes:
            self.observer.note_outcomes(outcomes)
            if self.on_migrated is not None:
                migrated = [o for o in outcomes if o.change.action == "migrate"]
                if migrated:
                    self.on_migrated(migrated)

    # -- reading ---------------------------------------------------------------------------

    def observed(self) -> dict[tuple, Any]:
        return dict(self.observer.owned)

    def observed_subset(self, keys: Iterable[tuple]) -> dict[tuple, Any]:
        """The owned objects under `keys` only: an incremental reconcile looks up
        its few keys in the cache instead of copying 100k entries (invariant 4)."""
        owned = self.observer.owned
        out: dict[tuple, Any] = {}
        for k in keys:
            v = owned.get(k)
            if v is not None:
                out[k] = v
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
        # Sysctls (and the tunnel source) carry no mark: we never "delete" one, only
        # set the values we want.
        drop = [k for k, v in seen.items() if k not in wanted and isinstance(v, SETTINGS)]
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

    def apply(
        self,
        p: Plan,
        desired: Desired | None = None,
        *,
        group: Callable[[tuple], Hashable] | None = None,
    ) -> ApplyReport:
        """Execute `p` make-before-break (see kernel/executor.py); verify when `desired`."""
        report = ApplyReport(p)
        report.outcomes = self.executor.apply(p.changes, group=group)
        if desired is not None:
            report.mismatches = self.verify(desired, [c.key for c in p.changes])
        return report

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
            if want != have and not (want is None and isinstance(have, SETTINGS)):
                out.append(Mismatch(key, want, have))
        return out


def converge(
    desired: Desired,
    *,
    present: bool = True,
    sources: tuple[str, ...] = ("nft", "xfrm"),
) -> ApplyReport:
    """Make the kernel hold `desired` (``present=False``: hold none of its objects), once,
    in the calling thread's namespace, through the executor: for tools and tests outside
    the daemon."""
    with Observer(sources=sources) as obs, Writer() as writer:
        rec = Reconciler(observer=obs, writer=writer, executor=Executor.in_namespace(writer))
        try:
            scope = set(desired.objects)
            plan = rec.plan(desired if present else Desired(), scope=scope)
            return rec.apply(plan, desired if present else Desired())
        finally:
            rec.executor.close()
