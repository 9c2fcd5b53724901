"""The informer: a compact cache of kernel objects, kept current by netlink events.

Theory of operation
-------------------
`ObserverCore` is sans-I/O: it is fed raw rtnetlink bytes (dump replies or
multicast events, both are NEW/DEL messages carrying the full object) and
keeps two maps from object key to object: `owned` (carries the mip6ctl mark)
and `foreign` (same kinds in the scope mip6ctl manages: the watched routing
tables, all IPv6 rules, addresses, proxy entries and ip6tnl devices), so that
a foreign object under an owned key can be reported as a conflict.  It
returns a `Change` per key whose value changed.

`Observer` adds the sockets.  The event socket subscribes *before* the dump;
events queued during a dump are applied after it, in order, which converges
because every event carries the whole object.  Routes are dumped with kernel
filters (strict check: protocol over all tables, then each watched table).
ENOBUFS on the event socket means events were lost: the next
`process_pending()` does a full `resync()` and reports the differences.

Kernel limits handled here: proxy NDP entries raise no netlink events (Linux
6.18), so proxies change in the cache only through `resync()` or
`note_applied()` (the writer's own results); sysctls are read at resync through
files opened in the observer's namespace.
"""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from mip6ctl import ownership
from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import rtcodec as rc
from mip6ctl.state.objects import (
    Address,
    KernelObject,
    ProxyNeighbour,
    Sysctl,
)


@dataclass(frozen=True, slots=True)
class Change:
    """`key` changed from `old` to `new` (None = absent) in the owned or foreign view."""

    key: tuple
    old: KernelObject | None
    new: KernelObject | None
    owned: bool


_ROUTE_TYPES = (nl.RTM_NEWROUTE, nl.RTM_DELROUTE)
_DELS = (nl.RTM_DELROUTE, nl.RTM_DELRULE, nl.RTM_DELADDR, nl.RTM_DELNEIGH, nl.RTM_DELLINK)
_PROTO_OFFSET = 5  # rtm_protocol inside struct rtmsg


class ObserverCore:
    """The cache and the bytes -> Change logic; no sockets, no clock."""

    def __init__(self, *, watch_tables: Collection[int] = (ownership.ROUTE_TABLE,)) -> None:
        self.watch_tables = frozenset(watch_tables)
        self.owned: dict[tuple, KernelObject] = {}
        self.foreign: dict[tuple, KernelObject] = {}
        #: ifindex -> name, needed to name interfaces in objects
        self.links: dict[int, str] = {}
        #: set when the cache cannot be kept exact from events (rename, overrun)
        self.needs_resync = False
        #: True while a dump fills an empty cache: changes are not computed
        self.bulk = False

    def clear(self) -> None:
        self.owned = {}
        self.foreign = {}
        self.links = {}
        self.needs_resync = False

    def _store(self, obj: KernelObject, present: bool, changes: list[Change] | None) -> None:
        owned = obj.owned
        view = self.owned if owned else self.foreign
        key = obj.key
        old = view.get(key)
        if present:
            if old == obj:
                return
            view[key] = obj
            if changes is not None:
                changes.append(Change(key, old, obj, owned))
        elif old is not None:
            del view[key]
            if changes is not None:
                changes.append(Change(key, old, None, owned))

    def feed(self, buf: bytes, *, skip_owned_routes: bool = False) -> list[Change]:
        """Apply every NEW/DEL message in `buf`; return what changed."""
        changes: list[Change] = []
        links = self.links
        owned = self.owned
        for kind, _flags, _seq, a, b in nl.iter_messages(buf):
            if kind in _ROUTE_TYPES:
                if buf[a + _PROTO_OFFSET] == ownership.ROUTE_PROTOCOL:
                    if skip_owned_routes:
                        continue
                    if kind == nl.RTM_NEWROUTE and self.bulk:
                        r = rc.decode_route(buf, a, b, links)
                        if r is not None:
                            owned[r.key] = r  # dump fast path: nothing to compare with
                        continue
                r = rc.decode_route(buf, a, b, links)
                if r is not None and (r.owned or r.table in self.watch_tables):
                    self._store(r, kind == nl.RTM_NEWROUTE, changes)
            elif kind in (nl.RTM_NEWRULE, nl.RTM_DELRULE):
                rule = rc.decode_rule(buf, a, b)
                if rule is not None:
                    self._store(rule, kind == nl.RTM_NEWRULE, changes)
            elif kind in (nl.RTM_NEWADDR, nl.RTM_DELADDR):
                addr = rc.decode_address(buf, a, b, links)
                if addr is not None:
                    self._store(addr, kind == nl.RTM_NEWADDR, changes)
            elif kind in (nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH):
                pn = rc.decode_neigh(buf, a, b, links)
                if pn is not None:
                    self._store(pn, kind == nl.RTM_NEWNEIGH, changes)
            elif kind in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
                self._link(buf, a, b, kind == nl.RTM_NEWLINK, changes)
            elif kind == nl.NLMSG_OVERRUN:
                self.needs_resync = True
        return changes

    def _link(self, buf: bytes, a: int, b: int, present: bool, changes: list[Change]) -> None:
        index, name, tunnel = rc.decode_link(buf, a, b)
        old = self.links.get(index)
        if present:
            if old is not None and old != name:
                self.needs_resync = True  # cached objects carry the old name
            self.links[index] = name
        else:
            self.links.pop(index, None)
            # Proxy entries and addresses vanish with the device, proxies without events.
            for view in (self.owned, self.foreign):
                gone = [
                    o
                    for o in view.values()
                    if isinstance(o, ProxyNeighbour | Address) and o.ifname == name
                ]
                for o in gone:
                    self._store(o, False, changes)
        if tunnel is not None:
            self._store(tunnel, present, changes)

    def apply_results(self, objs: Iterable[tuple[KernelObject, bool]]) -> list[Change]:
        """Record (object, present) pairs the writer applied (for kinds without events)."""
        changes: list[Change] = []
        for obj, present in objs:
            self._store(obj, present, changes)
        return changes

    def snapshot(self) -> tuple[dict[tuple, KernelObject], dict[tuple, KernelObject]]:
        return dict(self.owned), dict(self.foreign)


def diff_views(
    before: dict[tuple, KernelObject], after: dict[tuple, KernelObject], owned: bool
) -> list[Change]:
    """The changes that turn `before` into `after` (used after a resync)."""
    out = [Change(k, v, after.get(k), owned) for k, v in before.items() if after.get(k) != v]
    out.extend(Change(k, None, v, owned) for k, v in after.items() if k not in before)
    return out


_GROUPS = (
    nl.RTNLGRP_LINK,
    nl.RTNLGRP_NEIGH,
    nl.RTNLGRP_IPV6_IFADDR,
    nl.RTNLGRP_IPV6_ROUTE,
    nl.RTNLGRP_IPV6_RULE,
)


class Observer:
    """Sockets around ObserverCore, bound to the calling thread's namespace at creation.

    Asyncio use: `loop.add_reader(obs.fileno(), obs.process_pending)`; or pass
    `on_change`, called with each non-empty list of changes.
    """

    def __init__(
        self,
        *,
        watch_tables: Collection[int] = (ownership.ROUTE_TABLE,),
        sysctls: Collection[str] = (),
        on_change: Callable[[list[Change]], None] | None = None,
        resync_now: bool = True,
    ) -> None:
        self.core = ObserverCore(watch_tables=watch_tables)
        self.sysctl_paths = {Sysctl(p).path for p in sysctls}
        self.on_change = on_change
        self._events = nl.open_socket(groups=_GROUPS)
        self._events.setblocking(False)
        self._dump = nl.open_socket()
        self._dump.settimeout(30)
        self._seq = 1
        self._synced = False
        self._netns = os.stat("/proc/thread-self/ns/net").st_ino
        self._sysctl_fds: dict[str, int] = {}
        if resync_now:
            self.resync()

    # -- views -----------------------------------------------------------------------------

    @property
    def owned(self) -> dict[tuple, KernelObject]:
        return self.core.owned

    @property
    def foreign(self) -> dict[tuple, KernelObject]:
        return self.core.foreign

    def get(self, key: tuple) -> KernelObject | None:
        """The owned object under `key`, if any."""
        return self.core.owned.get(key)

    def conflict(self, key: tuple) -> KernelObject | None:
        """The foreign object holding `key`, if any (an owned object there would collide)."""
        return self.core.foreign.get(key)

    # -- I/O -------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._events.fileno()

    def close(self) -> None:
        for fd in self._sysctl_fds.values():
            os.close(fd)
        self._sysctl_fds.clear()
        self._events.close()
        self._dump.close()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _dump_into(self, request_for: Callable[[int], bytes], **feed: bool) -> None:
        seq = self._next()
        self.core.bulk = True
        try:
            for buf in nl.dump_iter(self._dump, request_for(seq), seq):
                self.core.feed(buf, **feed)
        except OSError as e:
            if e.errno != errno.ENOENT:  # ENOENT: a watched table that does not exist yet
                raise
        finally:
            self.core.bulk = False

    def resync(self) -> list[Change]:
        """Rebuild the cache from kernel-filtered dumps; report what differed."""
        before_owned, before_foreign = self.core.snapshot()
        for _attempt in range(5):
            self._drain()
            self.core.clear()
            try:
                self._dump_into(rc.link_dump_request)
                self._dump_into(rc.address_dump_request)
                self._dump_into(rc.rule_dump_request)
                self._dump_into(rc.proxy_dump_request)
                self._dump_into(
                    lambda s: rc.route_dump_request(s, protocol=ownership.ROUTE_PROTOCOL)
                )
                for t in sorted(self.core.watch_tables):
                    self._dump_into(
                        lambda s, t=t: rc.route_dump_request(s, table=t), skip_owned_routes=True
                    )
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue  # the kernel changed under the dump: start over
                raise
            break
        else:
            self.core.needs_resync = True
        self._read_sysctls()
        if not self._synced:
            self._synced = True
            return []  # the first fill is read from `owned`/`foreign`, not as 100k changes
        changes = diff_views(before_owned, self.core.owned, True)
        changes += diff_views(before_foreign, self.core.foreign, False)
        self._notify(changes)
        return changes

    def _read_sysctls(self) -> None:
        """Read watched sysctls through descriptors opened in the observer's namespace
        (/proc/sys resolves names in the namespace of whoever opens the file)."""
        here = os.stat("/proc/thread-self/ns/net").st_ino == self._netns
        for path in sorted(self.sysctl_paths):
            fd = self._sysctl_fds.get(path)
            if fd is None and here:
                try:
                    fd = self._sysctl_fds[path] = os.open(f"/proc/sys/{path}", os.O_RDONLY)
                except OSError:
                    continue
            if fd is None:
                continue
            try:
                obj = Sysctl(path, os.pread(fd, 4096, 0).decode())
            except OSError:
                os.close(self._sysctl_fds.pop(path))
                continue
            self.core.owned[obj.key] = obj

    def _drain(self) -> None:
        """Discard queued events: the dump about to start already reflects them."""
        while True:
            try:
                self._events.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise

    def process_pending(self) -> list[Change]:
        """Read every queued event without blocking; resync after event loss."""
        changes: list[Change] = []
        while True:
            try:
                buf = self._events.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.core.needs_resync = True
                break
            changes.extend(self.core.feed(buf))
        if self.core.needs_resync:
            return changes + self.resync()
        self._notify(changes)
        return changes

    def wait(self, timeout: float) -> list[Change]:
        """Block up to `timeout` seconds for events, then process them (tests, simple loops)."""
        ready, _w, _x = select.select([self._events], [], [], timeout)
        return self.process_pending() if ready else []

    def note_applied(self, results: Iterable[object]) -> list[Change]:
        """Record writer results for objects the kernel announces no events for
        (proxy neighbours, sysctls), so the cache does not wait for a resync."""
        pairs: list[tuple[KernelObject, bool]] = []
        for r in results:
            op = getattr(r, "op", None)
            if op is None or not getattr(r, "ok", False):
                continue
            if isinstance(op.obj, ProxyNeighbour | Sysctl):
                if isinstance(op.obj, Sysctl) and op.action == "delete":
                    continue
                pairs.append((op.obj, op.action != "delete"))
        changes = self.core.apply_results(pairs)
        self._notify(changes)
        return changes

    def _notify(self, changes: list[Change]) -> None:
        if changes and self.on_change is not None:
            self.on_change(changes)
