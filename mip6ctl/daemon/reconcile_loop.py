"""The reconcile loop: keeps the kernel equal to render(configuration, bindings), by key.

Theory of operation
-------------------
This is Kubernetes controller-runtime's loop, for one process and one kernel.

*Keys, not events.*  There are four kinds of reconcile key: ``("static",)``
for everything the configuration alone requires, ``("binding", HOA)`` per
home registration (HOA in canonical text), ``("correspondent", HOA)`` per
correspondent binding (route optimisation: XFRM route2/hao states and
policies, `render_correspondent_binding`; only on kernels with them, never
awaited -- a correspondent's BA is not held) and ``("mobile",)`` for a
mobile node's own state (`render_mobile_node` of the `MobileNodeView` the
movement detection decided: home address, reverse tunnel, seg6 tunnel
source, route optimisation).  On a mobile node the stale-object sweep
belongs to the mobile key, not to static, and runs only once a view exists,
so a restarted node adopts the state it finds.  Whatever happens — a new configuration
generation, a binding change, a netlink event, the periodic resync — only
decides *which keys* to look at.  Reconciling a key re-reads its whole desired
state (the objects rendered for it) and its current state (the observer's
cache) and converges them with `Reconciler.plan/apply`, so a missed event is
repaired by the next trigger of the same key (level-triggered).

*Triggers.*
- `set_generation(cfg, n)`: static + every binding + every orphan (an owned
  binding object whose binding is gone);
- `set_binding(b)` / `remove_binding(hoa)`: that binding's key;
- observer changes (`Observer.on_change`): the object key is mapped to the
  reconcile key that desires it, else (owned, no longer desired) to its
  classify() origin, else to static; foreign objects nobody desires are
  ignored.  A change that leaves the key equal to desired — the echo of our
  own writes — triggers nothing;
- every `cfg.daemon.reconcile_interval`: `observer.resync()` (a full dump;
  proxy neighbours raise no events on this kernel, only a dump sees them) and
  a full compare of the cached desired state against the cache, which
  requeues every key whose state differs.

*Work queue* (`daemon/workqueue.py`, the machinery: client-go's queue,
backoff, key results, conditions): a key queued twice before it is picked
is reconciled once; a key triggered while being reconciled is reconciled
exactly once more after it.  Failed keys retry with per-key exponential
backoff (5 ms doubling to 30 s, reset on success).  controller-runtime
caps at 1000 s; 30 s here because the things we wait for (an interface, a
foreign route going away) change on human time scales and the periodic
resync (60 s) would catch them anyway.

*Batches.*  The single worker takes up to `max_batch` ready keys, renders
each (cached per binding: a binding is rendered when it changes, not on
every pass), plans them together with ``scope=`` their own keys (invariant
4: no full dump, no full diff per event) and applies the union in one
batched writer call; outcomes, conflicts and verification mismatches are
attributed back to the key whose scope holds the object key.  10k bindings
moving at once cost one pass of a few netlink batches, not 10k round trips.

*Where it runs.*  Reconcile passes run in the event-loop thread, not in a
worker thread — decided by measurement (bench/reconcile.py, 2 vCPU VM,
10k bindings): one binding change until `wait_reconciled` returns takes
0.32 ms in the loop thread, and a bare run_in_executor round trip alone
costs 0.13 ms, so a thread would add ~40 % latency per binding change and
buy no parallelism (the work is Python under the GIL apart from short
netlink syscalls), while making the observer, which is not thread-safe,
shared between threads.  What a thread would buy is loop responsiveness
during big passes, so `max_batch` (default 1024 keys) bounds one pass
instead: 1024 bindings moving = one pass of ~90 ms; the worker yields to
the loop between passes.  The periodic full resync is the exception
(`resync_off_loop`): its kernel dump, cache diff and desired-vs-cache
compare (~0.2 s at 10k, ~1.4 s at 100k bindings) run in a worker thread at
nice 19 into a *new* cache that is swapped in on the loop, with the cyclic
GC held off meanwhile and the new cache frozen out of it afterwards;
otherwise they blocked every Binding Acknowledgement for that long once per
`reconcile_interval`.  Nice 19 yields the core but not the GIL, so the
thread also steps aside: after each ~1 ms of work, if the daemon saw packets
in the last 4 ms (`activity`), it sleeps 4 ms (`_throttled`; at 100k
bindings under 2,000 refresh BUs/s this took the p99 BU->BA latency of a run
overlapping a resync from ~5.5 to ~3 ms, the resync itself from ~2.8 s to
~3.1 s).  Running the same work on the loop in 1 ms slices instead was
measured and is worse (p99 ~11 ms: each slice delays the packets and the
commit callbacks of every loop turn).  The on-demand `resync()` still
blocks.
The Observer/Writer sockets are bound to the namespace of the thread that
created them; sysctls are written through /proc/sys of the *calling*
thread, so the loop thread must be in the target namespace (it is, in the
daemon).

*Kernel limit seen at scale.*  Every seg6 encap route allocates a per-CPU
dst cache with GFP_ATOMIC; a burst of thousands of creates drains the
per-CPU atomic reserve and the kernel answers ENOMEM ("percpu: atomic alloc
failed" in dmesg) until its balance worker refills it.  ENOMEM is therefore
retried like ENODEV (with backoff); bulk creation of 100k binding routes is
paced by the kernel, not by the writer.

*Results.*  Per key: ok, or a reason — ``Conflict`` (a foreign object holds a
desired key: reported, never overwritten, retried with backoff),
``TransientError`` (ENODEV & co: retried), ``VerificationFailed`` (read-back
differs: retried), ``ApplyFailed`` / ``RenderProblem`` (terminal: not retried
until the next trigger or resync).  They roll up into one condition,
``KernelInSync`` (True/False/Unknown, CamelCase reason, message, last
transition time), plus ``observed_generation`` (set once every key a
generation queued has been reconciled under it) and counters, all in
`status()` as plain data.

*Waiting.*  The home agent must have the tunnel route and proxy entry in
place before it acknowledges a Binding Update (invariant 1):
``await loop.wait_reconciled(("binding", hoa), timeout)`` returns once a
reconcile of that key that *started after the call's latest trigger*
succeeded (truthy `KeyResult`), failed definitively (terminal or conflict),
or the timeout passed; transient failures keep it waiting for the retry.

Usage (the daemon)::

    obs = Observer(watch_tables=(T, T + 1))     # created in the target namespace
    loop = ReconcileLoop(cfg, caps, facts, obs, Writer(), generation=1)
    for b in restored_bindings:                  # before start(): bindings not yet
        loop.set_binding(b)                      # known would be deleted as orphans
    loop.start()
    ...
    loop.set_binding(b); ok = await loop.wait_reconciled(binding_key(b.home_address), 1.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno as errno_mod
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable
from ipaddress import IPv6Address, IPv6Network
from typing import Any, Literal

from mip6ctl.config.model import Mip6Config, Role
from mip6ctl.daemon.workqueue import OK, Backoff, Condition, KeyResult, WorkQueue
from mip6ctl.kernel.reconciler import ApplyReport, Outcome, Reconciler
from mip6ctl.state.objects import SETTINGS, Sysctl
from mip6ctl.state.plan import Origin, Plan
from mip6ctl.state.render import (
    MNP_SET_PREFIX,
    BindingLike,
    Capabilities,
    CorrespondentBindingLike,
    Desired,
    HostFacts,
    MobileNodeView,
    binding_keys,
    classify,
    mnp_route_keys,
    mnp_set,
    mobile_network_prefixes,
    object_key,
    render_binding,
    render_correspondent_binding,
    render_mobile_node,
    render_static,
)

log = logging.getLogger("mip6ctl.reconcile")

Key = tuple[str, ...]
STATIC: Key = ("static",)
#: the mobile node's own objects (home address, reverse tunnel, tunnel source, RO)
MOBILE: Key = ("mobile",)
#: how often the sources without events (the seg6 tunnel source) are read
POLL_INTERVAL = 0.5
CONDITION = "KernelInSync"


def binding_key(hoa: IPv6Address | str) -> Key:
    """The reconcile key of the binding for home address `hoa`."""
    addr = hoa if isinstance(hoa, IPv6Address) else IPv6Address(hoa)
    return ("binding", socket.inet_ntop(socket.AF_INET6, addr.packed))


def correspondent_key(hoa: IPv6Address | str) -> Key:
    """The reconcile key of the correspondent binding (route optimisation) for `hoa`.

    Separate from `binding_key`: a node may hold home registrations and
    correspondent bindings, and their objects (routes/proxy vs XFRM route2/hao)
    never overlap."""
    return ("correspondent", binding_key(hoa)[1])


def key_text(key: Key) -> str:
    return " ".join(key)


# --------------------------------------------------------------------------- key kinds


class _Entry:
    """A binding and its rendered objects (None: not rendered under this generation)."""

    __slots__ = ("binding", "key", "objs")

    def __init__(self, key: Key, binding: BindingLike, objs: tuple | None) -> None:
        # objects only, their keys computed when needed: a (key, object) pair per
        # object would cost ~14 MB per 100k bindings
        self.key, self.binding, self.objs = key, binding, objs


#: most severe first: the reason a key (and the condition) reports
_SEVERITY = ("Conflict", "ApplyFailed", "RenderProblem", "TransientError", "VerificationFailed")


#: Entries of a resync walk between two yields (`_dump_and_compare_steps`).
_STEP = 512


def _exhaust(steps: Generator[None, None, Any]) -> Any:
    """Run a step generator to the end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as e:
            return e.value


def _diff_steps(
    before: dict[tuple, Any], after: dict[tuple, Any], owned: bool
) -> Generator[None, None, list]:
    """`diff_views` (kernel/observer.py), yielding every `_STEP` entries."""
    from mip6ctl.kernel.observer import Change

    out: list = []
    get = after.get
    for i, (k, v) in enumerate(before.items()):
        if not i % _STEP:
            yield
        now = get(k)
        if now != v:
            out.append(Change(k, v, now, owned))
    if len(after) != len(before) or out:
        for i, (k, v) in enumerate(after.items()):
            if not i % _STEP:
                yield
            if k not in before:
                out.append(Change(k, None, v, owned))
    return out


def _text(addr: IPv6Address) -> str:
    return socket.inet_ntop(socket.AF_INET6, addr.packed)


def _keys(objs: tuple) -> tuple:
    return tuple(object_key(o) for o in objs)


def _short(obj: Any, limit: int = 160) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- the loop


class ReconcileLoop:
    """Reconcile keys against the kernel; see the module docstring.

    `observer` and `writer` must have been created in the target namespace;
    the observer must watch the binding and decapsulation tables
    (`cfg.kernel.route_table` and +1) so that foreign routes there show up as
    conflicts.  The loop installs itself as `observer.on_change` (chaining
    any previous callback) while started.
    """

    def __init__(
        self,
        cfg: Mip6Config,
        caps: Capabilities,
        facts: HostFacts,
        observer: Any,
        writer: Any,
        xfrm: Any | None = None,
        *,
        executor: Any | None = None,
        generation: int = 1,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        max_batch: int = 1024,
        resync_interval: float | None = None,
        resync_work: float = 0.001,
        resync_pause: float = 0.004,
    ) -> None:
        self.observer = observer
        self.writer = writer
        self.clock = clock
        self.wall = wall
        self.backoff = backoff or Backoff()
        self.max_batch = max_batch
        self._resync_override = resync_interval
        self.resync_work = resync_work
        self.resync_pause = resync_pause
        self.activity = -1e9  # monotonic time of the loop's last work (note_activity)
        self.queue = WorkQueue()
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "reconciles",
                "passes",
                "changes_applied",
                "kernel_ops",
                "drift_events",
                "drift_repairs",
                "failures",
                "resyncs",
            ),
            0,
        )
        self._bindings: dict[str, _Entry] = {}
        #: object keys a binding no longer renders, deleted at its next reconcile
        self._retired: dict[str, tuple] = {}
        #: binding objects whose key does not name their binding (ip6tnl devices)
        self._extra_owner: dict[tuple, Key] = {}
        # Sysctls carry no mark and are never "deleted": the value each had before this
        # daemon first changed it, and the ones a generation no longer wants, to put back
        # (a rollback must leave the kernel as it found it).
        self._sysctl_found: dict[str, str] = {}
        self._sysctl_restore: dict[str, str] = {}
        # Objects several bindings render (an ip6tnl device per care-of address is
        # shared by every binding with that care-of address): key -> the bindings
        # rendering it, so that one binding going away never deletes it under another.
        self._extra_users: dict[tuple, dict[Key, None]] = {}
        self._failing: dict[Key, KeyResult] = {}
        self._drifted: set[Key] = set()
        # Correspondent bindings (route optimisation, render_correspondent_binding):
        # by HoA text, the object keys they no longer render (deleted at their next
        # reconcile), and object key -> owner (kept out of the static key's scope).
        self._correspondents: dict[str, _Entry] = {}
        self._corr_retired: dict[str, tuple] = {}
        self._corr_owner: dict[tuple, Key] = {}
        # The mobile node's view and the object keys it rendered now and before.
        self._mobile: MobileNodeView | None = None
        self._mobile_desired = Desired()
        self._mobile_keys: set[tuple] = set()
        self._next_poll = 0.0
        self._element_index: dict[str, list[tuple]] | None = None
        # wait_reconciled bookkeeping: a tick per trigger, the tick a pass started at
        self._tick = 0
        self._requested: dict[Key, int] = {}
        self._inflight: dict[Key, int] = {}
        self._waiters: dict[Key, list[tuple[int, asyncio.Future[KeyResult]]]] = {}
        self._gen_pending: set[Key] = set()
        self._newly_failing = 0
        self._recovered = 0
        self.generation = 0
        self.observed_generation = 0
        self._synced_once = False
        self._condition = Condition(CONDITION, "Unknown", "Pending", "not reconciled yet", wall())
        self._links: frozenset[str] = self._link_names()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._prev_hook: Callable[[list], None] | None = None
        self._next_resync = 0.0
        self._caps = caps
        self._facts = facts
        self._inputs: tuple | None = None
        self.cfg = cfg
        self._static = Desired()
        self.reconciler = Reconciler(observer=observer, writer=writer, xfrm=xfrm, executor=executor)
        self.set_generation(cfg, generation, caps=caps, facts=facts)

    # ----------------------------------------------------------------- triggers (public)

    def set_generation(
        self,
        cfg: Mip6Config,
        generation: int,
        *,
        caps: Capabilities | None = None,
        facts: HostFacts | None = None,
    ) -> None:
        """Adopt a validated configuration generation: queue static, all bindings, orphans.

        Rendered binding objects are kept when nothing they depend on changed
        (tables, home links, prefixes, backend), so a reload that only touches
        e.g. the log level re-renders nothing but static state."""
        self.cfg = cfg
        self._caps = caps or self._caps
        self._facts = facts or self._facts
        self.generation = generation
        self._static = render_static(cfg, self._caps, self._facts)
        self._with_sysctl_restores()
        inputs = self._binding_inputs()
        if inputs != self._inputs:
            self._inputs = inputs
            self._extra_owner.clear()
            self._extra_users.clear()
            for hoa, entry in self._bindings.items():
                if entry.objs:
                    self._retired[hoa] = _keys(entry.objs) + self._retired.get(hoa, ())
                entry.objs = None
            keys = [STATIC, *(e.key for e in self._bindings.values())]
        else:
            # Binding objects render the same as before: only the keys whose cached
            # desired state differs from the kernel need a pass (same outcome as
            # queueing all of them, level-triggered, without 100k empty plans).
            keys = [STATIC, *self._bindings_out_of_sync()]
        keys += self._orphans()
        keys += self._rerender_correspondents()
        if self._mobile is not None:
            # the mobile node's own objects depend on the generation too (its IPsec
            # template and keys): render its view again, queue it when it changed
            d = render_mobile_node(self.cfg, self._mobile, self._caps, self._facts)
            if d.objects != self._mobile_desired.objects:
                self._mobile_desired = d
                self._mobile_keys |= set(d.objects) | set(d.takeovers)
                keys.append(MOBILE)
        self._gen_pending = set(keys)
        for key in keys:
            self.enqueue(key)

    def set_binding(self, binding: BindingLike) -> bool:
        """A binding was created or changed: queue its key.

        Returns False (and queues nothing) when the binding renders exactly the
        objects already in sync — a lifetime refresh costs no reconcile."""
        hoa = _text(binding.home_address)
        key = ("binding", hoa)
        objs = self._render(binding)
        entry = self._bindings.get(hoa)
        if entry is not None:
            if (
                entry.objs == objs
                and not self.queue.pending(entry.key)
                and key not in self._failing
            ):
                entry.binding = binding
                return False
            if entry.objs:
                gone = set(_keys(entry.objs)) - set(_keys(objs))
                if gone:
                    self._retired[hoa] = tuple(gone) + self._retired.get(hoa, ())
                    self._unindex_extra(entry.key, gone)
            key = entry.key
        self._bindings[hoa] = _Entry(key, binding, objs)
        self._index_extra(key, objs)
        self.enqueue(key)
        return True

    def remove_binding(self, hoa: IPv6Address | str) -> None:
        """A binding was deleted or expired: its objects go at the next reconcile."""
        key = binding_key(hoa)
        entry = self._bindings.pop(key[1], None)
        if entry is not None and entry.objs:
            self._retired[key[1]] = _keys(entry.objs) + self._retired.get(key[1], ())
            self._unindex_extra(entry.key, _keys(entry.objs))
        self.enqueue(key)

    # ----------------------------------------------------------------- correspondents

    def set_correspondent(self, binding: CorrespondentBindingLike) -> bool:
        """A correspondent binding was created or moved: queue its key when its
        route-optimisation objects change.  Nothing is queued when nothing is
        rendered (no route2/hao states on this kernel) or nothing changed.
        Never awaited by the engine: a correspondent BA is not held for it."""
        hoa = _text(binding.home_address)
        key = ("correspondent", hoa)
        objs = self._render_correspondent(binding)
        entry = self._correspondents.get(hoa)
        if (
            entry is not None
            and entry.objs == objs
            and not self.queue.pending(key)
            and key not in self._failing
        ):
            entry.binding = binding
            return False
        if entry is not None and entry.objs:
            self._retire_correspondent(hoa, set(_keys(entry.objs)) - set(_keys(objs)))
        self._correspondents[hoa] = _Entry(key, binding, objs)
        for k in _keys(objs):
            self._corr_owner[k] = key
        if not objs and not self._corr_retired.get(hoa):
            return False
        self.enqueue(key)
        return True

    def remove_correspondent(self, hoa: IPv6Address | str) -> None:
        """A correspondent binding was deleted or expired: its objects go."""
        key = correspondent_key(hoa)
        entry = self._correspondents.pop(key[1], None)
        if entry is not None and entry.objs:
            self._retire_correspondent(key[1], set(_keys(entry.objs)))
        if self._corr_retired.get(key[1]):
            self.enqueue(key)

    def correspondents(self) -> int:
        return len(self._correspondents)

    def _render_correspondent(self, binding: CorrespondentBindingLike) -> tuple:
        d = render_correspondent_binding(self.cfg, binding, self._caps)
        return tuple(d.objects.values())

    def _retire_correspondent(self, hoa: str, gone: set[tuple]) -> None:
        if not gone:
            return
        self._corr_retired[hoa] = tuple(gone) + self._corr_retired.get(hoa, ())
        for k in gone:
            self._corr_owner.pop(k, None)

    def _rerender_correspondents(self) -> list[Key]:
        """A new generation (capabilities may differ): the correspondents whose
        objects changed.  A handful at most (RR bindings live minutes)."""
        out = []
        for entry in list(self._correspondents.values()):
            if self.set_correspondent(entry.binding):
                out.append(entry.key)
        return out

    def _correspondent_desired(self, key: Key) -> tuple[Desired, set[tuple]]:
        hoa = key[1]
        d = Desired()
        entry = self._correspondents.get(hoa)
        if entry is not None and entry.objs:
            origin = Origin("binding", hoa)
            for obj in entry.objs:
                k = object_key(obj)
                d.objects[k] = obj
                d.origins[k] = origin
        scope = set(d.objects)
        scope.update(self._corr_retired.get(hoa, ()))
        return d, scope

    def _correspondents_out_of_sync(self, owned: dict[tuple, Any]) -> set[Key]:
        """Correspondent keys whose XFRM objects differ from the cache `owned`."""
        out = {("correspondent", h) for h, ks in list(self._corr_retired.items()) if ks}
        get = owned.get
        for e in list(self._correspondents.values()):
            if any(get(object_key(o)) != o for o in e.objs or ()):
                out.add(e.key)
        return out

    # ----------------------------------------------------------------- mobile node

    def set_mobile_node(self, view: MobileNodeView | None) -> bool:
        """The mobile node is somewhere else (or its correspondents changed): queue the
        mobile key when its objects change; False when they are already desired."""
        self._mobile = view
        d = (
            render_mobile_node(self.cfg, view, self._caps, self._facts)
            if view is not None
            else Desired()
        )
        same = d.objects == self._mobile_desired.objects
        self._mobile_desired = d
        self._mobile_keys |= set(d.objects) | set(d.takeovers)
        if same and MOBILE not in self._failing and not self.queue.pending(MOBILE):
            return False
        self.enqueue(MOBILE)
        return True

    def _mobile_desired_for(self) -> tuple[Desired, set[tuple]]:
        d = self._mobile_desired
        scope = set(self._mobile_keys)
        if self._mobile is not None:
            # the sweep: owned objects nobody else wants (a previous run's, a move's)
            static, corr = self._static.objects, self._corr_owner
            scope.update(
                k
                for k, obj in self.observer.owned.items()
                if k not in static and k not in corr and not isinstance(obj, SETTINGS)
            )
        return d, scope

    def enqueue(self, key: Key) -> None:
        """Ask for `key` to be reconciled (coalesced with any pending request)."""
        self._tick += 1
        self._requested[key] = self._tick
        self.queue.add(key)
        if self._wake is not None:
            self._wake.set()

    def bindings(self) -> int:
        return len(self._bindings)

    @property
    def facts(self) -> HostFacts:
        """The host facts the current generation renders with."""
        return self._facts

    @property
    def mobile_view(self) -> MobileNodeView | None:
        """Where the mobile node is, as last handed to the loop (None: not decided yet)."""
        return self._mobile

    def flush(self) -> ApplyReport:
        """Delete every owned object (`flush_on_stop`), through the executor: the
        plan puts the kernel's own local rule back before removing mip6ctl's copy."""
        with contextlib.suppress(OSError):
            self.observer.process_pending()
        rec = self.reconciler
        return rec.apply(rec.plan(Desired()))

    # ----------------------------------------------------------------- asyncio driver

    def start(self) -> None:
        """Start the worker and watch the observer's socket (call inside the event loop)."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._prev_hook = getattr(self.observer, "on_change", None)
        self.observer.on_change = self._on_kernel_changes
        fileno = getattr(self.observer, "fileno", None)
        if fileno is not None:
            loop.add_reader(fileno(), self._on_readable)
        self._next_resync = self.clock() + self.resync_interval
        self._task = loop.create_task(self._run(), name="mip6ctl-reconcile")

    async def stop(self) -> None:
        """Stop the worker; pending waiters get a `Stopped` result."""
        task, self._task = self._task, None
        if task is None:
            return
        fileno = getattr(self.observer, "fileno", None)
        if fileno is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fileno())
        self.observer.on_change = self._prev_hook
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._wake = None
        for waiters in self._waiters.values():
            for _target, fut in waiters:
                if not fut.done():
                    fut.set_result(KeyResult(False, "Stopped", "reconcile loop stopped"))
        self._waiters.clear()

    @property
    def resync_interval(self) -> float:
        if self._resync_override is not None:
            return self._resync_override
        return float(self.cfg.daemon.reconcile_interval)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                if self.clock() >= self._next_resync:
                    self._next_resync = self.clock() + self.resync_interval
                    await self.resync_off_loop()
                    # counted from the end: a slow off-loop resync (100k bindings on a
                    # busy core) must leave the worker a full interval of passes
                    self._next_resync = max(
                        self._next_resync, self.clock() + 0.5 * self.resync_interval
                    )
                if self.step():
                    await asyncio.sleep(0)  # let the engine run between passes
                    continue
            except Exception:  # a bug must not kill the loop; the keys were requeued
                log.exception("reconcile pass failed")
                await asyncio.sleep(0.05)
                continue
            wake_at = self._next_resync
            if self._polling():
                if self.clock() >= self._next_poll:
                    self._next_poll = self.clock() + POLL_INTERVAL
                    self.observer.poll()  # changes arrive through the on_change hook
                wake_at = min(wake_at, self._next_poll)
            due = self.queue.next_due()
            if due is not None:
                wake_at = min(wake_at, due)
            timeout = max(0.0, wake_at - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _polling(self) -> bool:
        """Some object raises no kernel events: the seg6 tunnel source, proxy
        neighbours (while few enough to dump twice a second, `Observer.poll`)."""
        obs = self.observer
        if not hasattr(obs, "poll"):
            return False
        return ("seg6-tunsrc",) in self._mobile_desired.objects or obs.proxies() > 0

    async def wait_reconciled(self, key: Key, timeout: float) -> KeyResult:
        """Wait for a reconcile of `key` that started after its latest trigger.

        Truthy on success.  Returns early on a terminal failure or a conflict;
        transient failures keep waiting for the retry until `timeout`."""
        if key in self._requested:
            target = self._requested[key]
        elif key in self._inflight:
            target = self._inflight[key]
        else:
            failing = self._failing.get(key)
            if failing is None:
                return OK
            if failing.definitive:
                return failing
            target = self._tick + 1  # the next attempt (a retry pops with a new tick)
        fut: asyncio.Future[KeyResult] = asyncio.get_running_loop().create_future()
        entry = (target, fut)
        self._waiters.setdefault(key, []).append(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            last = self._failing.get(key)
            why = f"; last attempt: {last.reason}: {last.message}" if last else ""
            return KeyResult(False, "Timeout", f"not reconciled within {timeout:g} s{why}")
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(entry)
                if not waiters:
                    del self._waiters[key]

    # ----------------------------------------------------------------- observer side

    def _on_readable(self) -> None:
        try:
            self.observer.process_pending()  # changes arrive through the on_change hook
        except OSError:
            log.exception("observer: reading events failed; resync at the next pass")
            self._next_resync = 0.0
            if self._wake is not None:
                self._wake.set()
        self._check_links()

    def _link_names(self) -> frozenset[str]:
        names = getattr(self.observer, "link_names", None)
        return names() if names is not None else frozenset()

    def _check_links(self) -> None:
        """An interface appeared: retry now the keys waiting out an ENODEV backoff."""
        names = self._link_names()
        if names == self._links:
            return
        appeared = names - self._links
        self._links = names
        if appeared:
            for key, result in list(self._failing.items()):
                if result.reason == "TransientError":
                    self.enqueue(key)

    def _on_kernel_changes(self, changes: list) -> None:
        if self._prev_hook is not None:
            self._prev_hook(changes)
        for c in changes:
            obj = c.new if c.new is not None else c.old
            key = self._owner_of(c.key, obj)
            if key is None or self._in_sync(c.key, key):
                continue
            self.counters["drift_events"] += 1
            self._drifted.add(key)
            self.enqueue(key)

    def _binding_hoa(self, k: tuple) -> str | None:
        """The home address a binding-shaped object key belongs to (mirrors classify())."""
        if k[0] == "route":
            if k[1] == self.cfg.kernel.route_table and k[2].endswith("/128"):
                return k[2][:-4]
            return None
        if k[0] == "proxy":
            # a link-local one (L = 1) names no home address: the binding that
            # renders it owns it, as it owns its XFRM objects (_index_extra)
            return None if k[2].startswith("fe80:") else k[2]
        if k[0] == "nft-element":
            # a mobile network prefix's element names a prefix: classify() finds its router
            return None if k[2].startswith(MNP_SET_PREFIX) else k[4]
        return None

    def _owner_of(self, k: tuple, obj: Any) -> Key | None:
        """The reconcile key responsible for object key `k` (None: not our business)."""
        static = self._static
        if k in static.objects or k in static.takeovers:
            return STATIC
        corr = self._corr_owner.get(k)
        if corr is not None:
            return corr
        if self.cfg.node.role == Role.MN:
            owned = obj is not None and obj.owned and not isinstance(obj, SETTINGS)
            return MOBILE if k in self._mobile_keys or owned else None
        hoa = self._binding_hoa(k)
        if hoa is not None:
            if hoa in self._bindings or (obj is not None and obj.owned):
                return ("binding", hoa)
            return None  # a foreign object at a binding-shaped key nobody wants
        extra = self._extra_owner.get(k)
        if extra is not None:
            return extra
        if obj is None or not getattr(obj, "owned", False) or isinstance(obj, SETTINGS):
            return None
        origin = classify(obj, self.cfg)
        if origin is not None and origin.kind == "binding":
            return binding_key(origin.ref)
        return STATIC

    _UNRENDERED = object()

    def _desired_object(self, k: tuple, key: Key) -> Any:
        if key == STATIC:
            return self._static.objects.get(k)
        if key == MOBILE:
            return self._mobile_desired.objects.get(k)
        if key[0] == "correspondent":
            entry = self._correspondents.get(key[1])
            for obj in (entry.objs or ()) if entry is not None else ():
                if object_key(obj) == k:
                    return obj
            return None
        entry = self._bindings.get(key[1])
        if entry is None:
            return None
        if entry.objs is None:
            return self._UNRENDERED
        for obj in entry.objs:
            if object_key(obj) == k:
                return obj
        return None

    def _in_sync(self, k: tuple, key: Key) -> bool:
        if key == STATIC and k in self._static.takeovers:
            return self.observer.conflict(k) is None
        if key == MOBILE and k in self._mobile_desired.takeovers:
            return self.observer.conflict(k) is None
        want = self._desired_object(k, key)
        if want is self._UNRENDERED:
            return False
        have = self.observer.owned.get(k)
        if want is None:
            return have is None or isinstance(have, SETTINGS)
        return have == want

    # ----------------------------------------------------------------- full resync

    def resync(self) -> int:
        """Re-dump the kernel and requeue every key whose state differs; returns how many.

        Blocks for the dump (≈ 0.2 s with 100k routes) — it runs every
        `reconcile_interval`, or on demand."""
        self.counters["resyncs"] += 1
        self.observer.resync()  # differences flow through the on_change hook
        self._links = self._link_names()
        out = self.out_of_sync()
        for key in out:
            if key not in self._failing and not self.queue.pending(key):
                self.counters["drift_events"] += 1
                self._drifted.add(key)
            self.enqueue(key)
        return len(out)

    async def resync_off_loop(self) -> int:
        """:meth:`resync` with the kernel dump, the diff and the compare in a thread.

        Why: at 100k bindings the dump and the walks take ~1.3 s of Python,
        which on the event loop stalled every Binding Acknowledgement behind
        them.  The dump fills a *new* cache (`Observer.fill_steps`) while the
        loop keeps serving from the old one; nothing writes the old one
        meanwhile (the observer's event sockets are not read, and this loop's
        worker, the only other writer, is awaiting here), so the old cache is
        a consistent "before" for the diff.  Back on the loop the new cache is
        swapped in (`Observer.install`), the changes go through the usual
        hook, and the events queued during the dump are then read and applied
        in order on top -- as after a blocking resync.  Observers without a
        stepped dump (test fakes) resync in place.
        """
        obs = self.observer
        if not (hasattr(obs, "fill_steps") and obs.synced):
            return self.resync()
        loop = asyncio.get_running_loop()
        fd = obs.fileno()
        self._on_readable()  # what happened before the dump, applied the usual way
        if obs.needs_resync:
            return self.resync()
        loop.remove_reader(fd)
        collecting = gc.isenabled()
        if collecting:
            gc.collect(0)  # the youngest garbage now (a few ms), not frozen below
        gc.disable()  # the new cache's objects would be walked by young collections meanwhile
        try:
            return await self._resync_in_thread(obs, fd)
        finally:
            if collecting:
                # The new cache lives until the next resync: out of every collection's
                # way (as the daemon does at start-up).  Without this each resync at
                # 100k bindings caused 10-40 ms young collections and, later, a
                # ~0.4 s full one -- all of it stalling the event loop.
                gc.freeze()
                gc.enable()

    async def _resync_in_thread(self, obs: Any, fd: int) -> int:
        loop = asyncio.get_running_loop()
        try:
            new, changes, out = await asyncio.to_thread(self._dump_and_compare, obs)
        except Exception:
            loop.add_reader(fd, self._on_readable)
            raise
        self.counters["resyncs"] += 1
        if new is None:
            loop.add_reader(fd, self._on_readable)
            return self.resync()  # the dump kept being interrupted: do it the blocking way
        obs.install(new, changes)  # reads the sysctls, reports every change
        loop.add_reader(fd, self._on_readable)
        self._on_readable()  # the events that queued up during the dump
        for key in out:
            if key not in self._failing and not self.queue.pending(key):
                self.counters["drift_events"] += 1
                self._drifted.add(key)
            self.enqueue(key)
        return len(out)

    def _dump_and_compare(self, obs: Any) -> tuple[Any, list, set[Key]]:
        """Worker thread: dump into a new cache, diff it with the live one, compare with
        desired. Reads the live cache and this loop's bindings, writes neither.
        Runs at nice 19: on a shared core the loop thread gets the CPU first."""
        tid = threading.get_native_id()
        try:  # yield the core to the event loop: BAs first, the resync when it is idle
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except OSError:
            nice = None
        try:
            return self._throttled(self._dump_and_compare_steps(obs))
        finally:
            if nice is not None:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, nice)

    def _throttled(self, steps: Generator[None, None, Any]) -> Any:
        """Worker thread: run `steps`, stepping aside while the loop is busy.

        Nice 19 gives the loop the core but not the GIL: each time the loop
        thread comes back from a system call (epoll, recvfrom, sendto: several
        per Binding Update) while this thread runs, it waits a switch interval
        for the GIL -- at 100k bindings that made the BAs of a 2,000/s load late
        by 5-16 ms at p99 for the ~3 s of a resync.  So after `resync_work`
        seconds of work, when the loop was active within `resync_pause` seconds
        (`note_activity`), this thread sleeps `resync_pause` (holding no GIL):
        at least ~1/5 of the core for the resync under sustained load, all of
        the idle time otherwise."""
        work, pause = self.resync_work, self.resync_pause
        clock = time.monotonic
        mark = clock()
        while True:
            try:
                next(steps)
            except StopIteration as e:
                return e.value
            now = clock()
            if now - mark >= work:
                if now - self.activity < pause:
                    time.sleep(pause)
                mark = clock()

    def note_activity(self, now: float) -> None:
        """The loop handled work at ``now`` (monotonic): the resync thread steps aside."""
        self.activity = now

    def _dump_and_compare_now(self, obs: Any) -> tuple[Any, list, set[Key]]:
        return _exhaust(self._dump_and_compare_steps(obs))

    def _dump_and_compare_steps(
        self, obs: Any
    ) -> Generator[None, None, tuple[Any, list, set[Key]]]:
        """The dump, the diff and the compare, yielding every few hundred objects (a
        netlink buffer, a slice of a walk) so that the thread can step aside."""
        old_owned, old_foreign = obs.owned, obs.foreign
        new = obs.new_core()
        if not (yield from obs.fill_steps(new, nft_elements=False)):
            return None, [], set()
        # sysctls are read on the loop by install(): carry the current ones over
        for k, obj in list(old_owned.items()):
            if isinstance(obj, Sysctl):
                new.owned[k] = obj
        yield
        changes = yield from _diff_steps(old_owned, new.owned, True)
        changes += yield from _diff_steps(old_foreign, new.foreign, False)
        out = yield from self._out_of_sync_steps(new.owned, new.foreign.get)
        return new, changes, out

    def out_of_sync(
        self,
        owned: dict[tuple, Any] | None = None,
        conflict: Callable[[tuple], Any] | None = None,
    ) -> set[Key]:
        """Keys whose cached desired objects differ from the observer's cache.

        A walk of the cached rendered objects against the cache; the walk over
        the cache for stale owned objects is skipped when the counts show there
        are none (the common case).  ``owned``/``conflict``: compare with another
        cache than the observer's (the off-loop resync's new one)."""
        return _exhaust(self._out_of_sync_steps(owned, conflict))

    def _out_of_sync_steps(
        self,
        owned: dict[tuple, Any] | None = None,
        conflict: Callable[[tuple], Any] | None = None,
    ) -> Generator[None, None, set[Key]]:
        """`out_of_sync`, yielding every `_STEP` entries of its walks."""
        if owned is None:
            owned = self.observer.owned
        get = owned.get
        out: set[Key] = set()
        matched = 0
        for k, want in list(self._static.objects.items()):
            if get(k) == want:
                matched += 1
            else:
                out.add(STATIC)
        if conflict is None:
            conflict = self.observer.conflict
        for k in list(self._static.takeovers):
            if conflict(k) is not None:
                out.add(STATIC)
        for i, entry in enumerate(list(self._bindings.values())):
            if not i % _STEP:
                yield
            objs = entry.objs
            if objs is None:
                out.add(entry.key)
                continue
            for want in objs:
                if get(object_key(want)) != want:
                    out.add(entry.key)
                    break
            else:
                matched += len(objs)
        out |= self._correspondents_out_of_sync(owned)
        if self._mobile is not None:
            for k, want in list(self._mobile_desired.objects.items()):
                if get(k) != want:
                    out.add(MOBILE)
                    break
            else:
                matched += len(self._mobile_desired.objects)
        if len(owned) != matched:
            for i, (k, obj) in enumerate(list(owned.items())):
                if not i % _STEP:
                    yield
                if isinstance(obj, SETTINGS) or self._is_desired(k):
                    continue
                key = self._owner_of(k, obj)
                if key is not None:
                    out.add(key)
        return out

    def _bindings_out_of_sync(self) -> list[Key]:
        get = self.observer.owned.get
        failing = self._failing
        out = []
        for entry in self._bindings.values():
            objs = entry.objs
            if objs is None or entry.key in failing or any(get(object_key(w)) != w for w in objs):
                out.append(entry.key)
        return out

    def _is_desired(self, k: tuple) -> bool:
        if k in self._static.objects or k in self._mobile_desired.objects:
            return True
        corr = self._corr_owner.get(k)
        if corr is not None:
            return self._desired_object(k, corr) is not None
        hoa = self._binding_hoa(k)
        key = ("binding", hoa) if hoa is not None else self._extra_owner.get(k)
        if key is None:
            return False
        want = self._desired_object(k, key)
        return want is not None and want is not self._UNRENDERED

    def _orphans(self) -> set[Key]:
        """Keys of owned binding objects whose binding is gone."""
        out: set[Key] = set()
        for k, obj in self.observer.owned.items():
            hoa = self._binding_hoa(k)
            if hoa is not None and hoa not in self._bindings and obj.owned:
                out.add(("binding", hoa))
        return out

    # ----------------------------------------------------------------- one pass

    def step(self, now: float | None = None) -> int:
        """Reconcile up to `max_batch` ready keys; return how many (0: nothing due).

        The synchronous core the asyncio worker calls; tests with a fake clock
        call it directly."""
        now = self.clock() if now is None else now
        keys: list[Key] = self.queue.pop_ready(now, self.max_batch)  # type: ignore[assignment]
        if not keys:
            return 0
        for key in keys:
            started = self._requested.pop(key, None)
            if started is None:  # a retry from the delay heap
                self._tick += 1
                started = self._tick
            self._inflight[key] = started
        try:
            results = self._reconcile(keys)
        except Exception as e:  # e.g. a netlink timeout: every key of the pass retries
            log.exception("reconcile pass of %d key(s) failed", len(keys))
            results = {
                k: KeyResult(False, "TransientError", f"{type(e).__name__}: {e}", True)
                for k in keys
            }
        self._newly_failing = self._recovered = 0
        for key in keys:
            self._finish(key, results.get(key, OK), now)
        self._update_condition()
        # one line per pass, not per key: 10k keys can fail (ENOMEM) and recover together
        if self._newly_failing:
            log.warning(
                "%d key(s) started failing; %s", self._newly_failing, self._condition_text()
            )
        if self._recovered:
            log.info("%d key(s) in sync again", self._recovered)
        self.counters["passes"] += 1
        return len(keys)

    def _finish(self, key: Key, result: KeyResult, now: float) -> None:
        started = self._inflight.pop(key)
        self.counters["reconciles"] += 1
        self.queue.done(key)
        if result.ok:
            self.backoff.forget(key)
            self.queue.forget(key)
            if self._failing.pop(key, None) is not None:
                self._recovered += 1
                log.debug("%s: in sync again", key_text(key))
            if key[0] == "binding":
                self._retired.pop(key[1], None)
                self._share(key[1])
            elif key[0] == "correspondent":
                self._corr_retired.pop(key[1], None)
        else:
            self.counters["failures"] += 1
            previous = self._failing.get(key)
            self._failing[key] = result
            if previous is None or previous.reason != result.reason:
                self._newly_failing += 1
                log.debug("%s: %s: %s", key_text(key), result.reason, result.message)
            if result.retry:
                delay = self.backoff.next_delay(key)
                self.queue.add_at(key, now + delay)
            else:
                self.backoff.forget(key)
        if key[0] == "binding" and key[1] not in self._bindings and result.ok:
            self._failing.pop(key, None)
        if key in self._gen_pending:
            self._gen_pending.discard(key)
            if not self._gen_pending:
                self.observed_generation = self.generation
        waiters = self._waiters.get(key)
        if waiters:
            for target, fut in waiters:
                if target <= started and result.definitive and not fut.done():
                    fut.set_result(result)

    def _share(self, hoa: str) -> None:
        """Let the observer's cache hold our rendered object where the two are equal.

        The cache and the desired state would otherwise keep two equal copies of
        every binding route (~250 bytes each); values are frozen and equal, so
        swapping one for the other changes nothing but memory (-25% RSS at 100k)."""
        entry = self._bindings.get(hoa)
        if entry is None or not entry.objs:
            return
        owned = self.observer.owned
        for obj in entry.objs:
            k = object_key(obj)
            have = owned.get(k)
            if have is not None and have is not obj and have == obj:
                owned[k] = obj

    def _render(self, binding: BindingLike) -> tuple:
        cfg = self.cfg
        if cfg.node.role != Role.HA or cfg.ha is None:
            return ()
        d = render_binding(cfg, binding, self._caps, self._facts)
        return tuple(d.objects.values())

    def _index_extra(self, key: Key, objs: tuple) -> None:
        for k in _keys(objs):
            if self._binding_hoa(k) is None:
                self._extra_owner[k] = key
                self._extra_users.setdefault(k, {})[key] = None

    def _unindex_extra(self, key: Key, keys: Iterable[tuple]) -> None:
        """`key` no longer renders `keys`: a shared object passes to another user."""
        for k in keys:
            users = self._extra_users.get(k)
            if users is None:
                continue
            users.pop(key, None)
            if users:
                self._extra_owner[k] = next(iter(users))
            else:
                del self._extra_users[k]

    def _shared_elsewhere(self, k: tuple, key: Key) -> bool:
        """Another binding still renders object `k` (not to be deleted for `key`)."""
        users = self._extra_users.get(k)
        return bool(users) and any(u != key for u in users)

    def _binding_inputs(self) -> tuple:
        cfg = self.cfg
        ha = cfg.ha
        return (
            cfg.node.role,
            cfg.kernel.route_table,
            (tuple(ha.interfaces), tuple(ha.home_prefixes), ha.address) if ha else None,
            self._caps,
            self._facts,
        )

    def _with_sysctl_restores(self) -> None:
        """Add to static state the original value of each sysctl it stopped wanting."""
        wanted = {k[1] for k in self._static.objects if k[0] == "sysctl"}
        for path in [p for p in self._sysctl_found if p not in wanted]:
            self._sysctl_restore[path] = self._sysctl_found.pop(path)
        for path in wanted:
            self._sysctl_restore.pop(path, None)
        origin = Origin("config", "restore the value found before")
        for path, value in self._sysctl_restore.items():
            obj = Sysctl(path, value)
            self._static.objects[obj.key] = obj
            self._static.origins[obj.key] = origin
        paths = wanted | set(self._sysctl_restore)
        if hasattr(self.observer, "watch_sysctls"):
            self.observer.watch_sysctls(paths)
        elif hasattr(self.observer, "sysctl_paths"):
            self.observer.sysctl_paths = paths

    def _note_sysctls(self, plan: Plan) -> None:
        """Remember what a sysctl was before our first write; forget finished restores."""
        for c in plan.changes:
            if c.key[0] != "sysctl" or c.observed is None or c.desired is None:
                continue
            path = c.key[1]
            if path not in self._sysctl_restore:
                self._sysctl_found.setdefault(path, c.observed.value)

    def _restores_done(self) -> None:
        for path, value in list(self._sysctl_restore.items()):
            seen = self.observer.owned.get(("sysctl", path))
            if seen is not None and getattr(seen, "value", None) == value:
                del self._sysctl_restore[path]
                self._static.objects.pop(("sysctl", path), None)
                self._static.origins.pop(("sysctl", path), None)

    def _desired_for(self, key: Key) -> tuple[Desired, set[tuple]]:
        """The desired objects of `key` and the object keys its plan may touch."""
        if key == STATIC:
            if self._sysctl_restore:
                self._restores_done()
            d = self._static
            scope = set(d.objects)
            owned = self.observer.owned
            if self.cfg.node.role == Role.MN:
                return d, scope  # the sweep is the mobile key's
            corr = self._corr_owner
            for k, obj in owned.items():
                if k in scope or isinstance(obj, SETTINGS) or k in corr:
                    continue
                if self._binding_hoa(k) is None and k not in self._extra_owner:
                    scope.add(k)  # owned, wanted by nobody: stale static state
            return d, scope
        if key == MOBILE:
            return self._mobile_desired_for()
        if key[0] == "correspondent":
            return self._correspondent_desired(key)
        hoa = key[1]
        d = Desired()
        entry = self._bindings.get(hoa)
        if entry is not None:
            if entry.objs is None:
                entry.objs = self._render(entry.binding)
                self._index_extra(key, entry.objs)
            origin = Origin("binding", hoa)
            for obj in entry.objs:
                k = object_key(obj)
                d.objects[k] = obj
                d.origins[k] = origin
        scope = set(d.objects)
        scope.update(k for k in self._retired.get(hoa, ()) if not self._shared_elsewhere(k, key))
        scope.update(self._binding_scope(hoa, d))
        return d, scope

    def _binding_scope(self, hoa: str, d: Desired) -> list[tuple]:
        """Keys any binding for `hoa` may own (route and proxy, whatever the care-of
        address or proxy_ndp setting), derived from the rendered route when there is
        one: binding_keys() parses the address, which costs more than the rest."""
        table = self.cfg.kernel.route_table
        route_key = ("route", table, f"{hoa}/128", "::/0", 1024)
        route = d.objects.get(route_key)
        networks = mobile_network_prefixes(self.cfg).get(hoa, ()) if self.cfg.ha else ()
        if route is not None and route.oif is not None and route.encap is not None:
            keys = [route_key, ("proxy", route.oif, hoa)]
            if networks:  # a mobile router: its prefix routes and their elements too
                keys += mnp_route_keys(self.cfg, hoa) + self._network_elements(networks)
            return keys
        if self.cfg.ha is None:
            return [route_key]
        any_caps = dataclasses.replace(self._caps, proxy_ndp=True)
        keys = binding_keys(self.cfg, IPv6Address(hoa), any_caps)
        if route is None:  # gone or unknown: a reverse-tunnel element it left, if any
            keys += self._elements_of(hoa)
        return keys + self._network_elements(networks)

    def _network_elements(self, networks: Iterable[IPv6Network]) -> list[tuple]:
        """Owned reverse-tunnel elements of these mobile network prefixes."""
        out: list[tuple] = []
        for net in networks:
            name = mnp_set(net.prefixlen)
            out += [k for k in self._elements_of(str(net.network_address)) if k[2] == name]
        return out

    def _elements_of(self, hoa: str) -> list[tuple]:
        """Owned reverse-tunnel set elements for `hoa` (indexed once per pass)."""
        if self._element_index is None:
            index: dict[str, list[tuple]] = {}
            for k in self.observer.owned:
                if k[0] == "nft-element":
                    index.setdefault(k[4], []).append(k)
            self._element_index = index
        return self._element_index.get(hoa, [])

    def _reconcile(self, keys: list[Key]) -> dict[Key, KeyResult]:
        self._element_index = None
        union = Desired()
        owner: dict[tuple, Key] = {}
        problems: dict[Key, list[str]] = {}
        for key in keys:
            d, scope = self._desired_for(key)
            union.objects.update(d.objects)
            union.origins.update(d.origins)
            union.takeovers.update(d.takeovers)
            for k in scope:
                owner[k] = key
            for k in d.takeovers:
                owner[k] = key
            if d.problems:
                problems[key] = list(d.problems)
        plan = self.reconciler.plan(union, scope=owner.keys())
        self._note_sysctls(plan)
        report = (
            self.reconciler.apply(plan, union, group=lambda k: owner.get(k, STATIC))
            if plan.changes
            else None
        )
        return self._attribute(keys, owner, plan, report, problems)

    def _attribute(
        self,
        keys: list[Key],
        owner: dict[tuple, Key],
        plan: Plan,
        report: ApplyReport | None,
        problems: dict[Key, list[str]],
    ) -> dict[Key, KeyResult]:
        issues: dict[Key, list[tuple[str, str, bool]]] = {}
        applied: dict[Key, int] = {}

        def note(k: tuple, reason: str, message: str, retry: bool) -> None:
            issues.setdefault(owner.get(k, STATIC), []).append((reason, message, retry))

        for c in plan.conflicts:
            note(c.key, "Conflict", f"{c.key}: held by a foreign object {_short(c.foreign)}", True)
        if report is not None:
            self.counters["kernel_ops"] += len(report.outcomes)
            failed = set()
            for o in report.outcomes:
                self._note_outcome(o, owner, applied, note)
                if not o.ok:
                    failed.add(o.change.key)
            for m in report.mismatches:
                if m.key in failed:
                    continue  # the failed write already says why it differs
                note(
                    m.key,
                    "VerificationFailed",
                    f"{m.key}: desired {_short(m.desired)}, kernel has {_short(m.observed)}",
                    True,
                )
        for key, texts in problems.items():
            for text in texts:
                issues.setdefault(key, []).append(("RenderProblem", text, False))
        out: dict[Key, KeyResult] = {}
        for key in keys:
            n = applied.get(key, 0)
            self.counters["changes_applied"] += n
            if key in self._drifted:
                self._drifted.discard(key)
                if n:
                    self.counters["drift_repairs"] += 1
            found = issues.get(key)
            if not found:
                out[key] = OK
                continue
            found.sort(key=lambda i: _SEVERITY.index(i[0]))
            reason = found[0][0]
            message = "; ".join(dict.fromkeys(m for r, m, _ in found if r == reason))
            out[key] = KeyResult(False, reason, message, any(r for _, _, r in found))
        return out

    @staticmethod
    def _note_outcome(
        o: Outcome,
        owner: dict[tuple, Key],
        applied: dict[Key, int],
        note: Callable[[tuple, str, str, bool], None],
    ) -> None:
        k = o.change.key
        if o.status == "ok":
            key = owner.get(k, STATIC)
            applied[key] = applied.get(key, 0) + 1
        if o.ok:
            return
        what = f"{o.change.action} {k}"
        obj = o.change.desired if o.change.desired is not None else o.change.observed
        if isinstance(obj, Sysctl) and o.errno == errno_mod.ENOENT and "/conf/" in obj.path:
            # net/ipv6/conf/IFNAME/... is missing because the interface is (ENODEV)
            note(k, "TransientError", f"{what}: interface missing: {o.message}", True)
        elif o.status == "conflict":
            note(k, "Conflict", f"{what}: {o.message}", True)
        elif o.transient or o.errno == errno_mod.ENOMEM:
            # ENOMEM: seg6 routes allocate per-CPU memory atomically; a burst of
            # thousands can exhaust the reserve until the kernel refills it.
            name = errno_mod.errorcode.get(o.errno, str(o.errno))
            note(k, "TransientError", f"{what}: {name}: {o.message}", True)
        else:
            name = errno_mod.errorcode.get(o.errno, str(o.errno)) if o.errno else o.status
            note(k, "ApplyFailed", f"{what}: {name}: {o.message}", False)

    # ----------------------------------------------------------------- status

    def _condition_text(self) -> str:
        return f"{self._condition.reason}: {self._condition.message}"

    def _update_condition(self) -> None:
        status: Literal["True", "False", "Unknown"]
        if self._failing:
            key, result = min(
                self._failing.items(),
                key=lambda kv: (_SEVERITY.index(kv[1].reason), kv[0]),
            )
            n = len(self._failing)
            more = f" (and {n - 1} more key(s) failing)" if n > 1 else ""
            status = "False"
            reason, message = result.reason, f"{key_text(key)}: {result.message}{more}"
        elif self.queue.ready() == 0 and self.queue.waiting() == 0:
            self._synced_once = True
            status, reason, message = "True", "Reconciled", "the kernel matches the desired state"
        elif self._synced_once:
            status, reason = "True", "Reconciled"
            message = "the kernel matched the desired state at the last pass; more work queued"
        else:
            status, reason, message = "Unknown", "Pending", "reconcile in progress"
        old = self._condition
        when = old.last_transition_time if old.status == status else self.wall()
        self._condition = Condition(CONDITION, status, reason, message, when)

    def condition(self) -> Condition:
        return self._condition

    def key_result(self, key: Key) -> KeyResult | None:
        """The last result of `key` if it is failing, OK if known and in sync, else None."""
        if key in self._failing:
            return self._failing[key]
        known = self._correspondents if key[0] == "correspondent" else self._bindings
        if key in (STATIC, MOBILE) or key[1] in known:
            return None if self.queue.pending(key) else OK
        return None

    def status(self, *, max_keys: int = 50) -> dict[str, Any]:
        """Plain data for `mip6ctl status` and the control socket."""
        now = self.clock()
        failing = []
        for key, r in sorted(self._failing.items())[:max_keys]:
            due = self.queue.due_at(key)
            failing.append(
                {
                    "key": key_text(key),
                    "reason": r.reason,
                    "message": r.message,
                    "retrying": r.retry,
                    "attempts": self.backoff.failures(key),
                    "retry_in_s": None if due is None else round(max(0.0, due - now), 3),
                }
            )
        return {
            "generation": self.generation,
            "observed_generation": self.observed_generation,
            "conditions": [self._condition.as_dict()],
            "bindings": len(self._bindings),
            "correspondents": len(self._correspondents),
            "counters": dict(self.counters),
            "queue": {
                "ready": self.queue.ready(),
                "in_flight": len(self._inflight),
                "waiting_retry": self.queue.waiting(),
            },
            "failing_keys": len(self._failing),
            "failing": failing,
        }


__all__ = [
    "CONDITION",
    "MOBILE",
    "STATIC",
    "Key",
    "ReconcileLoop",
    "binding_key",
    "correspondent_key",
    "key_text",
]
