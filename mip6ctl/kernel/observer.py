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
6.18), so proxies change in the cache only through `resync()`, `poll()` or
`note_applied()` (the writer's own results); sysctls are read at resync through
files opened in the observer's namespace.  Static neighbour entries of ours
(`Neighbour`) do raise RTNLGRP_NEIGH events, as every neighbour-cache entry
does: `rtcodec.decode_neigh` keeps only those carrying our NDA_PROTOCOL (the
rest of the cache's churn costs a header check), and one of ours that is no
longer NUD_PERMANENT (the NUD_FAILED notice before a delete, `ip neigh change
... nud reachable`) counts as absent.

Besides rtnetlink the observer can watch the other kernel interfaces the
executor writes (``sources``): ``"nft"`` -- the owned nf_tables table
(NFNLGRP_NFTABLES events: set elements are cached from their own events,
any change to a chain or set re-reads the table's chains and sets);
``"xfrm"`` -- owned XFRM policies and states (XFRMNLGRP_POLICY/SA events,
a flush re-dumps); ``"seg6-tunsrc"`` -- the seg6 tunnel source, which raises
no event and is read by `poll()`.  `fileno()` is then an epoll descriptor
over every event socket.  A stepped resync for callers that must not block
(the reconcile loop's worker thread): `fill_steps(new_core())` dumps every
source into a fresh cache, yielding between netlink buffers, and
`install(core)` swaps it in.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mip6ctl import ownership
from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import rtcodec as rc
from mip6ctl.state.objects import (
    Address,
    KernelObject,
    Neighbour,
    NftSet,
    NftSetElement,
    ProxyNeighbour,
    Seg6TunnelSource,
    Sysctl,
)
from mip6ctl.state.render import object_key

#: object kinds the rtnetlink dump does not produce (kept across a stepped resync's
#: rtnetlink part, refilled from their own sources)
EXTRA_KINDS = ("sysctl", "nft-set", "nft-chain", "nft-element", "xfrm-policy", "xfrm-state")
NFNLGRP_NFTABLES = 7
#: proxy neighbours raise no events: polled while there are at most this many
PROXY_POLL_LIMIT = 4096


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
        #: proxy neighbours in both views (they are polled while few)
        self.proxies = 0

    def clear(self) -> None:
        self.owned = {}
        self.foreign = {}
        self.links = {}
        self.needs_resync = False
        self.proxies = 0

    def _store(
        self,
        obj: KernelObject,
        present: bool,
        changes: list[Change] | None,
        key: tuple | None = None,
    ) -> None:
        owned = obj.owned
        view = self.owned if owned else self.foreign
        key = obj.key if key is None else key
        old = view.get(key)
        if present:
            if old == obj:
                return
            if old is None and key[0] == "proxy":
                self.proxies += 1
            view[key] = obj
            if changes is not None:
                changes.append(Change(key, old, obj, owned))
        elif old is not None:
            del view[key]
            if key[0] == "proxy":
                self.proxies -= 1
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
                    present = kind == nl.RTM_NEWNEIGH
                    if present and type(pn) is Neighbour:
                        present = rc.neigh_static(buf, a)
                    self._store(pn, present, changes)
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
            # Proxy entries, neighbours and addresses vanish with the device, proxies
            # without events (the others' may come after this one, naming a gone index).
            for view in (self.owned, self.foreign):
                gone = [
                    o
                    for o in view.values()
                    if isinstance(o, ProxyNeighbour | Neighbour | Address) and o.ifname == name
                ]
                for o in gone:
                    self._store(o, False, changes)
        if tunnel is not None:
            self._store(tunnel, present, changes)

    def replace_kinds(
        self, kinds: Collection[str], objs: Iterable[Any], changes: list[Change] | None
    ) -> None:
        """Make the owned objects of `kinds` exactly `objs` (a source was re-read)."""
        fresh = {object_key(o): o for o in objs}
        for k in [k for k in self.owned if k[0] in kinds and k not in fresh]:
            self._store(self.owned[k], False, changes, k)
        for k, o in fresh.items():
            self._store(o, True, changes, k)

    def feed_nft(
        self, messages: Iterable[tuple[int, dict[int, bytes]]]
    ) -> tuple[list[Change], bool]:
        """nf_tables events: elements of the owned table applied; True = chains/sets
        changed (re-read them)."""
        from mip6ctl.kernel import nft
        from mip6ctl.kernel.nft_state import elements_of

        changes: list[Change] = []
        reread = False
        for kind, msg in messages:
            if kind in (nft.NFT_MSG_NEWSETELEM, nft.NFT_MSG_DELSETELEM):
                for e in elements_of(msg):
                    if e.owned:
                        self._store(e, kind == nft.NFT_MSG_NEWSETELEM, changes)
            elif kind in _NFT_STRUCTURE:
                table = msg.get(_NFT_TABLE_ATTR.get(kind, 1))
                if table is None or nft._str(table) == ownership.NFT_TABLE:
                    reread = True
        return changes, reread

    def feed_xfrm(self, events: Iterable[Any]) -> tuple[list[Change], bool]:
        """XFRM events for owned objects; True = a flush or overrun (re-dump)."""
        from mip6ctl.kernel import xfrm_codec as x

        changes: list[Change] = []
        redump = False
        for ev in events:
            if isinstance(ev, x.PolicyEvent | x.StateEvent):
                obj = ev.policy if isinstance(ev, x.PolicyEvent) else ev.state
                if not obj.owned:
                    continue
                gone = ev.kind == "delete" or (ev.kind == "expire" and ev.hard)
                self._store(obj, not gone, changes, object_key(obj))
            elif isinstance(ev, x.PolicyFlushEvent | x.StateFlushEvent | x.EventsLost):
                redump = True
        return changes, redump

    def apply_results(self, objs: Iterable[tuple[KernelObject, bool]]) -> list[Change]:
        """Record (object, present) pairs the writer applied (for kinds without events)."""
        changes: list[Change] = []
        for obj, present in objs:
            self._store(obj, present, changes, object_key(obj))
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


def _nft_structure() -> tuple[frozenset[int], dict[int, int]]:
    from mip6ctl.kernel import nft

    kinds = {
        nft.NFT_MSG_NEWTABLE: nft.NFTA_TABLE_NAME,
        nft.NFT_MSG_DELTABLE: nft.NFTA_TABLE_NAME,
        nft.NFT_MSG_NEWCHAIN: nft.NFTA_CHAIN_TABLE,
        nft.NFT_MSG_DELCHAIN: nft.NFTA_CHAIN_TABLE,
        nft.NFT_MSG_NEWRULE: nft.NFTA_RULE_TABLE,
        nft.NFT_MSG_DELRULE: nft.NFTA_RULE_TABLE,
        nft.NFT_MSG_NEWSET: nft.NFTA_SET_TABLE,
        nft.NFT_MSG_DELSET: nft.NFTA_SET_TABLE,
    }
    return frozenset(kinds), kinds


_NFT_STRUCTURE, _NFT_TABLE_ATTR = _nft_structure()


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
        sources: Collection[str] = (),
    ) -> None:
        self.core = ObserverCore(watch_tables=watch_tables)
        self.sources = frozenset(sources)
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
        self._nft: Any = None  # NftSession for dumps
        self._nft_events: Any = None
        self._xfrm: Any = None  # XfrmSocket for dumps
        self._xfrm_events: Any = None
        self._epoll: select.epoll | None = None
        self._genl: Any = None  # GenlSocket, for the seg6 tunnel source
        try:
            self._open_sources()
        except BaseException:
            self.close()
            raise
        if resync_now:
            self.resync()

    def _open_sources(self) -> None:
        """Open the event and dump sockets of `sources`; one the kernel refuses is
        dropped from `sources` (its kinds are then never seen as present)."""
        if "seg6-tunsrc" in self.sources:
            from mip6ctl.kernel import genl

            try:
                self._genl = genl.GenlSocket()
            except OSError:
                self.sources -= {"seg6-tunsrc"}
        if not self.sources - {"seg6-tunsrc"}:
            return
        self._epoll = select.epoll()
        self._epoll.register(self._events.fileno(), select.EPOLLIN)
        if "nft" in self.sources:
            try:
                from mip6ctl.kernel import nft

                self._nft = nft.NftSession(timeout=30)
                self._nft_events = nft.NftSession(timeout=5)
                self._nft_events.sock.setsockopt(
                    nl.SOL_NETLINK, nl.NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES
                )
                self._nft_events.sock.setblocking(False)
                self._epoll.register(self._nft_events.sock.fileno(), select.EPOLLIN)
            except OSError:
                for s in (self._nft, self._nft_events):
                    if s is not None:
                        s.close()
                self._nft = self._nft_events = None
                self.sources -= {"nft"}
        if "xfrm" in self.sources:
            try:
                from mip6ctl.kernel import xfrm

                self._xfrm = xfrm.XfrmSocket(timeout=30)
                from mip6ctl.kernel import xfrm_codec as xc

                self._xfrm_events = xfrm.XfrmEventSocket(
                    groups=(xc.XFRMNLGRP_SA, xc.XFRMNLGRP_POLICY, xc.XFRMNLGRP_EXPIRE)
                )
                self._epoll.register(self._xfrm_events.fileno(), select.EPOLLIN)
            except OSError:
                for s in (self._xfrm, self._xfrm_events):
                    if s is not None:
                        s.close()
                self._xfrm = self._xfrm_events = None
                self.sources -= {"xfrm"}

    # -- views -----------------------------------------------------------------------------

    @property
    def owned(self) -> dict[tuple, KernelObject]:
        return self.core.owned

    @property
    def foreign(self) -> dict[tuple, KernelObject]:
        return self.core.foreign

    @property
    def synced(self) -> bool:
        """The cache has been filled from a dump at least once."""
        return self._synced

    @property
    def needs_resync(self) -> bool:
        """Events were lost or cannot be applied exactly: only a full dump is right."""
        return self.core.needs_resync

    def link_names(self) -> frozenset[str]:
        """The interfaces the cache knows of."""
        return frozenset(self.core.links.values())

    def get(self, key: tuple) -> KernelObject | None:
        """The owned object under `key`, if any."""
        return self.core.owned.get(key)

    def conflict(self, key: tuple) -> KernelObject | None:
        """The foreign object holding `key`, if any (an owned object there would collide)."""
        return self.core.foreign.get(key)

    # -- I/O -------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._epoll.fileno() if self._epoll is not None else self._events.fileno()

    def close(self) -> None:
        for fd in self._sysctl_fds.values():
            os.close(fd)
        self._sysctl_fds.clear()
        for s in (
            self._nft, self._nft_events, self._xfrm, self._xfrm_events, self._epoll, self._genl
        ):  # fmt: skip
            if s is not None:
                s.close()
        self._nft = self._nft_events = self._xfrm = self._xfrm_events = self._epoll = None
        self._genl = None
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

    def new_core(self) -> ObserverCore:
        """An empty cache watching the same tables, for `fill_steps` / `install`."""
        return ObserverCore(watch_tables=self.core.watch_tables)

    def fill_steps(
        self, core: ObserverCore, *, nft_elements: bool = True
    ) -> Generator[None, None, bool]:
        """Dump every source into `core` (empty), yielding between netlink buffers.

        `nft_elements=False` (the periodic resync while no nf_tables event was
        lost) carries the set elements over from the live cache instead of
        dumping them: they change only through events this observer reads,
        and at 100k bindings their dump made the resync outlast the 5 s a
        parked Binding Update waits for its kernel state.

        Safe in another thread while nothing else uses this observer's dump
        sockets; the event sockets are not read.  Returns False when the kernel
        kept interrupting the rtnetlink dump (the caller falls back to
        `resync()`).  Sysctls are not read here (`install` does, through the
        descriptors of the observer's namespace)."""
        requests: list[tuple[Callable[[int], bytes], bool]] = [
            (rc.link_dump_request, False),
            (rc.address_dump_request, False),
            (rc.rule_dump_request, False),
            (rc.proxy_dump_request, False),
            (rc.neigh_dump_request, False),
            (lambda s: rc.route_dump_request(s, protocol=ownership.ROUTE_PROTOCOL), False),
        ]
        for t in sorted(core.watch_tables):
            requests.append((lambda s, t=t: rc.route_dump_request(s, table=t), True))
        for _attempt in range(5):
            core.clear()
            try:
                for request_for, skip in requests:
                    seq = self._next()
                    core.bulk = True
                    try:
                        for buf in nl.dump_iter(self._dump, request_for(seq), seq):
                            core.feed(buf, skip_owned_routes=skip)
                            yield
                    except OSError as e:
                        if e.errno != errno.ENOENT:  # a watched table not there yet
                            raise
                    finally:
                        core.bulk = False
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue  # the kernel changed under the dump: start over
                raise
            break
        else:
            return False
        yield from self._fill_sources(core, nft_elements)
        return True

    def _fill_sources(
        self, core: ObserverCore, nft_elements: bool = True
    ) -> Generator[None, None, None]:
        if self._nft is not None:
            from mip6ctl.kernel.nft_state import read_table_steps

            objs = yield from read_table_steps(self._nft, elements=nft_elements)
            if not nft_elements:  # those of the sets still there
                sets = {o.name for o in objs if isinstance(o, NftSet)}
                objs += [
                    o
                    for o in self.core.owned.values()
                    if isinstance(o, NftSetElement) and o.set in sets
                ]
            # `core` is empty (filled from scratch): store, no diff; yield as we go
            for i, o in enumerate(objs):
                (core.owned if o.owned else core.foreign)[object_key(o)] = o
                if i % 512 == 511:
                    yield
            yield
        if self._xfrm is not None:
            objs = [*self._xfrm.dump_states(owned_only=True)]
            yield
            objs += self._xfrm.dump_policies(owned_only=True)
            core.replace_kinds(("xfrm-state", "xfrm-policy"), objs, None)
            yield
        if "seg6-tunsrc" in self.sources:
            tunsrc = _read_tunsrc(self._genl)
            if tunsrc is not None:
                core.owned[tunsrc.key] = tunsrc

    def install(self, core: ObserverCore, changes: list[Change] | None = None) -> list[Change]:
        """Swap in a cache `fill_steps` filled and read the sysctls; report what differed.

        `changes`: the caller already diffed the two caches (off the event loop,
        with the old sysctls carried over); only the sysctls are compared here."""
        first = not self._synced
        if changes is None and not first:
            before_owned, before_foreign = self.core.snapshot()
        sysctls = {k: v for k, v in core.owned.items() if k[0] == "sysctl"}
        self.core = core
        self._read_sysctls()
        if first:
            self._synced = True
            return []  # the first fill is read from `owned`/`foreign`, not as 100k changes
        if changes is None:
            changes = diff_views(before_owned, self.core.owned, True)
            changes += diff_views(before_foreign, self.core.foreign, False)
        else:
            for k, old in sysctls.items():
                now = core.owned.get(k)
                if now != old:
                    changes.append(Change(k, old, now, True))
        self._notify(changes)
        return changes

    def resync(self) -> list[Change]:
        """Rebuild the cache from kernel-filtered dumps; report what differed."""
        self._drain()
        core = self.new_core()
        steps = self.fill_steps(core)
        while True:
            try:
                next(steps)
            except StopIteration as e:
                done = e.value
                break
        if not done:
            core.needs_resync = True
        return self.install(core)

    def watch_sysctls(self, paths: set[str]) -> None:
        """Watch these sysctls from now on; read the new ones at once, so a plan made
        before the next resync sees their values (and what they were before us)."""
        new = paths - self.sysctl_paths
        self.sysctl_paths = set(paths)
        if new and self._synced:
            self._read_sysctls()

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
        socks = [self._events]
        if self._nft_events is not None:
            socks.append(self._nft_events.sock)
        for sock in socks:
            for _ in self._pending(sock, resync_on_loss=False):
                pass
        if self._xfrm_events is not None:
            self._xfrm_events.read()

    def _pending(self, sock: socket.socket, *, resync_on_loss: bool = True) -> Iterator[bytes]:
        """The datagrams queued on a non-blocking event socket.  ENOBUFS means
        events were lost: the view is marked for a resync and reading stops,
        unless the caller is about to dump anyway (then reading goes on)."""
        while True:
            try:
                buf = sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                if resync_on_loss:
                    self.core.needs_resync = True
                    return
                continue
            yield buf

    def process_pending(self) -> list[Change]:
        """Read every queued event without blocking; resync after event loss."""
        changes: list[Change] = []
        for buf in self._pending(self._events):
            changes.extend(self.core.feed(buf))
        changes.extend(self._process_sources())
        if self.core.needs_resync:
            return changes + self.resync()
        self._notify(changes)
        return changes

    def _process_sources(self) -> list[Change]:
        changes: list[Change] = []
        if self._nft_events is not None:
            msgs: list[tuple[int, dict[int, bytes]]] = []
            for buf in self._pending(self._nft_events.sock):
                for kind, _f, _s, a, b in nl.iter_messages(buf):
                    if kind >> 8 == 10:  # NFNL_SUBSYS_NFTABLES
                        at = nl.attrs(buf, a + 4, b)
                        msgs.append((kind & 0xFF, {k: bytes(buf[x:y]) for k, (x, y) in at.items()}))
            got, reread = self.core.feed_nft(msgs)
            changes += got
            if reread:
                changes += self._reread_nft_structure()
        if self._xfrm_events is not None:
            got, redump = self.core.feed_xfrm(self._xfrm_events.read())
            changes += got
            if redump:
                objs = [*self._xfrm.dump_states(owned_only=True)]
                objs += self._xfrm.dump_policies(owned_only=True)
                self.core.replace_kinds(("xfrm-state", "xfrm-policy"), objs, changes)
        return changes

    def _reread_nft_structure(self) -> list[Change]:
        """Chains and sets of the owned table again; elements of a set that is gone go too."""
        from mip6ctl.kernel.nft_state import read_table

        changes: list[Change] = []
        objs = read_table(self._nft, elements=False)
        self.core.replace_kinds(("nft-set", "nft-chain"), objs, changes)
        sets = {o.name for o in objs if isinstance(o, NftSet)}
        for k, o in list(self.core.owned.items()):
            if isinstance(o, NftSetElement) and o.set not in sets:
                self.core._store(o, False, changes, k)
        return changes

    def poll(self) -> list[Change]:
        """Read what raises no events: the seg6 tunnel source, and proxy neighbours
        while there are at most `PROXY_POLL_LIMIT` of them (a kernel-filtered dump;
        more are left to the periodic resync, as the dump grows with them)."""
        changes: list[Change] = []
        if "seg6-tunsrc" in self.sources:
            tunsrc = _read_tunsrc(self._genl)
            old = self.core.owned.get(("seg6-tunsrc",))
            if tunsrc is not None and tunsrc != old:
                self.core._store(tunsrc, True, changes)
        if 0 < self.proxies() <= PROXY_POLL_LIMIT:
            changes += self._poll_proxies()
        self._notify(changes)
        return changes

    def proxies(self) -> int:
        """How many proxy neighbours the cache holds (owned and foreign)."""
        return self.core.proxies

    def _poll_proxies(self) -> list[Change]:
        fresh = ObserverCore(watch_tables=self.core.watch_tables)
        fresh.links = dict(self.core.links)
        seq = self._next()
        try:
            for buf in nl.dump_iter(self._dump, rc.proxy_dump_request(seq), seq):
                fresh.feed(buf)
        except OSError:
            return []  # the next resync reads them
        changes: list[Change] = []
        for view, now in ((self.core.owned, fresh.owned), (self.core.foreign, fresh.foreign)):
            for k, o in list(view.items()):
                if k[0] == "proxy" and k not in now:
                    self.core._store(o, False, changes, k)
            for k, o in now.items():
                if k[0] == "proxy":
                    self.core._store(o, True, changes, k)
        return changes

    def wait(self, timeout: float) -> list[Change]:
        """Block up to `timeout` seconds for events, then process them (tests, simple loops)."""
        ready, _w, _x = select.select([self.fileno()], [], [], timeout)
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

    def note_outcomes(self, outcomes: Iterable[Any]) -> list[Change]:
        """Executor outcomes of objects without events: the seg6 tunnel source, and XFRM
        objects an XFRM MIGRATE moved (the kernel sends no SA/policy events for it)."""
        pairs: list[tuple[Any, bool]] = []
        for o in outcomes:
            if not o.ok:
                continue
            c = o.change
            if isinstance(c.desired, Seg6TunnelSource):
                pairs.append((c.desired, True))
            elif c.action == "migrate":
                pairs += [(c.observed, False), (c.desired, True)]
        changes = self.core.apply_results(pairs)
        self._notify(changes)
        return changes

    def _notify(self, changes: list[Change]) -> None:
        if changes and self.on_change is not None:
            self.on_change(changes)


def _read_tunsrc(sock: Any) -> Seg6TunnelSource | None:
    from mip6ctl.kernel import genl

    try:
        addr = genl.get_seg6_tunsrc(sock)
    except OSError:
        return None
    return Seg6TunnelSource("::" if addr is None else str(addr))
