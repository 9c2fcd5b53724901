"""The plan executor: applies create/replace/delete operations with batched netlink.

Theory of operation
-------------------
Messages for many objects are packed into one send buffer (up to
`batch_size` per `send`), each with NLM_F_ACK and its own sequence number;
the kernel processes them in order and the acks are matched back by sequence
number, so 100k routes cost a few hundred system calls, not 100k round trips.

Ownership (DESIGN.md invariant 3) is enforced here, not trusted to callers:

* an operation on an object that does not carry the mark is *refused*;
* routes and rules are deleted with the mark in the request (rtm_protocol /
  FRA_PROTOCOL), so the kernel itself skips an equal-shaped foreign object
  (ESRCH/ENOENT).  A route "replace" of an object the observer saw as ours
  (`Op.replaces`, what the plan executor passes) is one NLM_F_REPLACE, so a
  refused new route leaves the old one working (make-before-break); without
  that knowledge it is a marked delete followed by an exclusive create in the
  same batch, because NLM_F_REPLACE would overwrite a foreign route with the
  same key;
* EEXIST on an exclusive create is resolved by reading the object back
  (a table-filtered dump for routes): ours -> "exists", foreign -> "conflict";
* addresses and proxy neighbours have no marked delete and proxy creation
  would silently adopt a foreign entry, so they are read first with batched
  single-object GETs; rules (few, no single GET) with one rule dump;
* static neighbour entries (`Neighbour`) too: the GET tells ours from a
  foreign static (NUD_PERMANENT) entry, a conflict; an ordinary entry the
  kernel resolved itself is the kernel's cache, not a foreign object, and is
  overwritten -- a create or replace is one NLM_F_REPLACE, which also changes
  the link-layer address of ours in place;
* ip6tnl tunnels (few) are read with the link dump: the kernel answers EEXIST
  both for "this name exists" and for "another device has these endpoints"
  (or "an external device exists"), so only the dump tells "exists" from
  "conflict", and a change between per-peer and external, which the kernel's
  changelink refuses (EINVAL), is done as delete + create.

EEXIST on create and ENOENT/ESRCH on delete are success ("exists"/"absent").
Sysctls are written through /proc/sys of the calling thread's namespace.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import rtcodec as rc
from mip6ctl.state.objects import (
    Address,
    KernelObject,
    Neighbour,
    ProxyNeighbour,
    Route,
    Rule,
    Sysctl,
    Tunnel,
)

Action = Literal["create", "replace", "delete"]
Status = Literal["ok", "exists", "absent", "conflict", "refused", "error"]

_NEW = nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE | nl.NLM_F_EXCL
_DEL = nl.NLM_F_REQUEST | nl.NLM_F_ACK
_REPLACE = nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE | nl.NLM_F_REPLACE
_ABSENT = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)


@dataclass(frozen=True, slots=True)
class Op:
    """One planned change.  `allow_foreign` lifts the ownership guard for the rare,
    documented takeovers (e.g. moving the default local-table rule, see seg6.py).
    `replaces`: for a replace, the owned object the observer saw under the key --
    a route is then replaced in place (NLM_F_REPLACE: the old one stays if the
    kernel refuses the new one) instead of deleted and re-created."""

    action: Action
    obj: KernelObject
    allow_foreign: bool = False
    replaces: KernelObject | None = None


def create(obj: KernelObject) -> Op:
    return Op("create", obj)


def replace(obj: KernelObject) -> Op:
    return Op("replace", obj)


def delete(obj: KernelObject) -> Op:
    return Op("delete", obj)


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome for one Op.  `foreign` is the foreign object that blocked it (conflict)
    or that was left alone (a delete of an owned object that a foreign one shadows)."""

    op: Op
    status: Status
    errno: int = 0
    message: str = ""
    foreign: KernelObject | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "exists", "absent")


_ENCODERS = {
    Route: (rc.route_payload, nl.RTM_NEWROUTE, nl.RTM_DELROUTE),
    Rule: (rc.rule_payload, nl.RTM_NEWRULE, nl.RTM_DELRULE),
    Address: (rc.address_payload, nl.RTM_NEWADDR, nl.RTM_DELADDR),
    ProxyNeighbour: (rc.proxy_payload, nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH),
    Neighbour: (rc.neigh_payload, nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH),
    Tunnel: (rc.tunnel_payload, nl.RTM_NEWLINK, nl.RTM_DELLINK),
}


_GETS: dict[type, Callable[[int, Any, int], bytes]] = {
    Address: rc.address_get_request,
    ProxyNeighbour: rc.proxy_get_request,
    Neighbour: rc.neigh_get_request,
}


class _Msg:
    """A queued message: which op it serves and what its ack means."""

    __slots__ = ("data", "index", "role", "seq")

    def __init__(self, index: int, role: str, seq: int, data: bytes) -> None:
        self.index, self.role, self.seq, self.data = index, role, seq, data


class Writer:
    """Executes operations in the network namespace the calling thread is in
    when the Writer is constructed (the netlink socket stays bound to it)."""

    def __init__(self, *, batch_size: int = 1024, timeout: float = 10.0) -> None:
        self.batch_size = batch_size
        self._sock = nl.open_socket()
        self._sock.settimeout(timeout)
        self._seq = 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    # -- public ----------------------------------------------------------------------------

    def apply(self, ops: Iterable[Op]) -> list[Result]:
        """Apply `ops` in order; one Result per op, in the same order."""
        ops = list(ops)
        self._checked: dict[int, Result] = {}
        results: list[Result | None] = [None] * len(ops)
        for i, op in enumerate(ops):
            if not op.allow_foreign and not op.obj.owned:
                results[i] = Result(op, "refused", errno.EPERM, f"not owned by mip6ctl: {op.obj!r}")
        index = self._link_index(ops, results)
        self._names = {v: k for k, v in index.items()}
        existing = self._preflight(ops, results, index)

        msgs: list[_Msg] = []
        log: list[tuple[int, str, int, str]] = []
        for i, op in enumerate(ops):
            if results[i] is not None:
                continue
            if isinstance(op.obj, Sysctl):
                self._flush(ops, msgs, log)
                msgs = []
                results[i] = _write_sysctl(op)
                continue
            try:
                self._queue(i, op, existing, index, msgs, results)
            except KeyError as e:
                results[i] = Result(op, "error", errno.ENODEV, f"no such interface: {e.args[0]}")
            if len(msgs) >= self.batch_size:
                self._flush(ops, msgs, log)
                msgs = []
        self._flush(ops, msgs, log)
        self._fold(ops, results, log)
        return [r for r in results if r is not None]

    # -- phases ----------------------------------------------------------------------------

    def _link_index(self, ops: Sequence[Op], results: list[Result | None]) -> dict[str, int]:
        """Map interface names to indexes with one link dump, only if some op needs it;
        the same dump records every ip6tnl device in `self._tunnels` (name -> Tunnel)."""
        self._tunnels: dict[str, Tunnel] = {}
        self._link_names: set[str] = set()
        if not any(
            isinstance(op.obj, Address | ProxyNeighbour | Neighbour | Tunnel)
            or (isinstance(op.obj, Route) and op.obj.oif)
            for op in ops
        ):
            return {}
        out: dict[str, int] = {}
        seq = self._next()
        for buf in nl.dump(self._sock, rc.link_dump_request(seq), seq):
            for kind, _f, _s, a, b in nl.iter_messages(buf):
                if kind == nl.RTM_NEWLINK:
                    idx, name, tunnel = rc.decode_link(buf, a, b)
                    out[name] = idx
                    if tunnel is not None:
                        self._tunnels[name] = tunnel
        self._link_names = set(out)
        return out

    def _preflight(
        self, ops: Sequence[Op], results: list[Result | None], index: dict[str, int]
    ) -> dict[int, list[KernelObject]]:
        """What the kernel holds under each op's key, for kinds with no marked delete."""
        found: dict[int, list[KernelObject]] = {}
        gets: dict[int, int] = {}
        out: list[bytes] = []
        rules_needed = False
        for i, op in enumerate(ops):
            if results[i] is not None:
                continue
            obj = op.obj
            if isinstance(obj, Rule):
                rules_needed = True
            elif isinstance(obj, Address | ProxyNeighbour | Neighbour):
                if obj.ifname not in index:
                    continue  # reported as ENODEV when queued
                seq = self._next()
                gets[seq] = i
                fn = _GETS[type(obj)]
                out.append(fn(seq, obj, index[obj.ifname]))
        if out:
            names = {v: k for k, v in index.items()}
            for buf in self._exchange(out, set(gets)):
                for kind, _flags, seq, a, b in nl.iter_messages(buf):
                    i = gets.get(seq, -1)
                    if i < 0:
                        continue
                    got: KernelObject | None = None
                    if kind == nl.NLMSG_ERROR:
                        code, _s, text = nl.parse_error(buf, a, b, _flags)
                        if code and code not in _ABSENT:
                            results[i] = Result(ops[i], "error", code, f"reading back: {text}")
                    elif kind == nl.RTM_NEWADDR:
                        got = rc.decode_address(buf, a, b, names)
                    elif kind == nl.RTM_NEWNEIGH:
                        got = rc.decode_neigh(buf, a, b, names, static_foreign=True)
                    if got is not None and got.key == ops[i].obj.key:
                        found.setdefault(i, []).append(got)
        if rules_needed:
            by_key: dict[tuple, list[KernelObject]] = {}
            seq = self._next()
            for buf in nl.dump(self._sock, rc.rule_dump_request(seq), seq):
                for kind, _f, _s, a, b in nl.iter_messages(buf):
                    if kind == nl.RTM_NEWRULE:
                        rule = rc.decode_rule(buf, a, b)
                        if rule is not None:
                            by_key.setdefault(rule.key, []).append(rule)
            for i, op in enumerate(ops):
                if results[i] is None and isinstance(op.obj, Rule) and op.obj.key in by_key:
                    found[i] = by_key[op.obj.key]
        return found

    def _queue(
        self,
        i: int,
        op: Op,
        existing: dict[int, list[KernelObject]],
        index: dict[str, int],
        msgs: list[_Msg],
        results: list[Result | None],
    ) -> None:
        obj = op.obj
        encode, new_type, del_type = _ENCODERS[type(obj)]
        resolve = index.__getitem__

        def new(flags: int = _NEW) -> None:
            s = self._next()
            msgs.append(_Msg(i, "new", s, nl.message(new_type, flags, s, encode(obj, resolve))))

        def dele(target: KernelObject, role: str = "del") -> None:
            s = self._next()
            payload = encode(target, resolve, delete=True)
            msgs.append(_Msg(i, role, s, nl.message(del_type, _DEL, s, payload)))

        if isinstance(obj, Route):
            if op.action == "replace" and op.replaces is not None and op.replaces.owned:
                new(_REPLACE)
                return
            if op.action != "create":
                dele(obj)
            if op.action != "delete":
                new()
            return
        if isinstance(obj, Tunnel):
            self._queue_tunnel(i, op, results, new, dele)
            return

        # Address, ProxyNeighbour, Neighbour, Rule: decided against what the preflight read.
        present = existing.get(i, [])
        mine = [o for o in present if o.owned]
        foreign = next((o for o in present if not o.owned), None)
        if op.action == "delete":
            targets = mine + ([foreign] if foreign and op.allow_foreign else [])
            if not targets:
                note = "a foreign object with this key is left alone" if foreign else ""
                results[i] = Result(op, "absent", 0, note, foreign)
            for t in targets:
                dele(t)
            return
        if foreign is not None and not op.allow_foreign:
            results[i] = Result(
                op, "conflict", errno.EEXIST, "foreign object holds this key", foreign
            )
            return
        if isinstance(obj, Neighbour):
            if obj in mine:
                results[i] = Result(op, "exists")
            else:  # over ours (another lladdr, not static) or the kernel's own entry
                new(_REPLACE)
            return
        if op.action == "create" and mine:
            same = obj in mine
            note = "" if same else f"owned object differs: {mine[0]!r}"
            results[i] = Result(op, "exists", 0, note)
            return
        for t in mine:
            if t != obj:
                dele(t)
            elif op.action == "replace":
                results[i] = Result(op, "exists")
                return
        new()

    def _queue_tunnel(
        self,
        i: int,
        op: Op,
        results: list[Result | None],
        new: Callable[..., None],
        dele: Callable[..., None],
    ) -> None:
        """Decide a tunnel op against the link dump (see the module docstring)."""
        obj = op.obj
        assert isinstance(obj, Tunnel)
        if op.action == "delete":
            dele(obj)
            return
        cur = self._tunnels.get(obj.name)
        if cur == obj:
            results[i] = Result(op, "exists")
            return
        if op.action == "create" and obj.name in self._link_names:
            note = f"owned object differs: {cur!r}" if cur else "a non-ip6tnl device has this name"
            results[i] = Result(op, "exists", 0, note)
            return

        # EEXIST from here on is another device: the one with these endpoints, or
        # the namespace's single external (collect_md) device.
        def holds(t: Tunnel) -> bool:
            if t.name == obj.name or t.external != obj.external:
                return False
            return t.external or (t.local, t.remote) == (obj.local, obj.remote)

        holder = next((t for t in self._tunnels.values() if holds(t)), None)
        what = (
            "the external ip6tnl device"
            if obj.external
            else "an ip6tnl device with these endpoints"
        )
        self._checked[i] = Result(op, "conflict", errno.EEXIST, f"{what} exists", holder)
        if obj.name not in self._link_names:
            new()
        elif cur is None or cur.external != obj.external:
            # changelink refuses collect_md (EINVAL) and cannot turn a per-peer
            # device into an external one or back: recreate it.
            dele(obj, "del")
            new()
        else:
            new(_NEW & ~nl.NLM_F_EXCL)  # changelink: keeps the ifindex and routes through it

    def _exchange(self, out: list[bytes], pending: set[int]) -> list[bytes]:
        """Send messages in one buffer and read until every seq in `pending` is answered."""
        self._sock.send(b"".join(out))
        bufs: list[bytes] = []
        pending = set(pending)
        while pending:
            try:
                buf = self._sock.recv(1 << 16)
            except TimeoutError:
                break
            bufs.append(buf)
            for kind, flags, seq, _a, _b in nl.iter_messages(buf):
                if kind == nl.NLMSG_DONE or not flags & nl.NLM_F_MULTI:
                    pending.discard(seq)
        return bufs

    def _flush(
        self, ops: Sequence[Op], msgs: list[_Msg], log: list[tuple[int, str, int, str]]
    ) -> None:
        """Send queued messages in chunks; append (op index, role, errno, text) per ack.

        A route EEXIST is read back right after its chunk, before later chunks can
        change the table again."""
        for start in range(0, len(msgs), self.batch_size):
            chunk = msgs[start : start + self.batch_size]
            by_seq = {m.seq: m for m in chunk}
            answered: set[int] = set()
            for buf in self._exchange([m.data for m in chunk], set(by_seq)):
                for kind, flags, seq, a, b in nl.iter_messages(buf):
                    m = by_seq.get(seq)
                    if kind == nl.NLMSG_ERROR and m is not None:
                        code, _s, text = nl.parse_error(buf, a, b, flags)
                        log.append((m.index, m.role, code, text))
                        answered.add(seq)
            for m in chunk:
                if m.seq not in answered:
                    log.append((m.index, m.role, errno.ETIMEDOUT, "no acknowledgement from kernel"))
            clash = [
                i
                for i, role, code, _t in log[-len(chunk) :]
                if role == "new" and code == errno.EEXIST and isinstance(ops[i].obj, Route)
            ]
            if clash:
                self._verify_routes(ops, clash, self._checked)
        msgs.clear()

    def _fold(
        self,
        ops: Sequence[Op],
        results: list[Result | None],
        log: list[tuple[int, str, int, str]],
    ) -> None:
        """Turn per-message acks into one Result per op; resolve route EEXIST by reading back."""
        verdict: dict[int, Result] = {}
        for i, role, code, text in log:
            op = ops[i]
            prev = verdict.get(i)
            if prev is not None and not prev.ok:
                continue  # first failure of an op wins
            if code == 0:
                verdict[i] = Result(op, "ok")
            elif role == "del" and code in _ABSENT:
                verdict[i] = Result(op, "absent" if op.action == "delete" else "ok")
            elif role == "new" and code == errno.EEXIST:
                verdict[i] = self._checked.get(i) or Result(op, "exists")
            else:
                verdict[i] = Result(op, "error", code, text)
        for i, r in verdict.items():
            if results[i] is None:
                results[i] = r
        for i, op in enumerate(ops):
            if results[i] is None:  # e.g. replace of an identical owned object
                results[i] = Result(op, "ok")

    def _verify_routes(
        self, ops: Sequence[Op], which: list[int], verdict: dict[int, Result]
    ) -> None:
        """After EEXIST: read the tables back (kernel-filtered) to tell ours from foreign."""
        tables = sorted({ops[i].obj.table for i in which})  # type: ignore[union-attr]
        seen: dict[tuple, list[Route]] = {}
        wanted = {ops[i].obj.key for i in which}
        for t in tables:
            seq = self._next()
            try:
                bufs = nl.dump(self._sock, rc.route_dump_request(seq, table=t), seq)
            except OSError:
                continue
            for buf in bufs:
                for kind, _f, _s, a, b in nl.iter_messages(buf):
                    if kind != nl.RTM_NEWROUTE:
                        continue
                    r = rc.decode_route(buf, a, b, self._names)
                    if r is not None and r.key in wanted:
                        seen.setdefault(r.key, []).append(r)
        for i in which:
            op = ops[i]
            present = seen.get(op.obj.key, [])
            mine = [r for r in present if r.owned]
            foreign = next((r for r in present if not r.owned), None)
            if mine:
                verdict[i] = Result(op, "exists")
            elif foreign is not None:
                verdict[i] = Result(
                    op, "conflict", errno.EEXIST, "foreign route holds this key", foreign
                )
            else:
                verdict[i] = Result(
                    op, "error", errno.EEXIST, "route exists but could not be read back"
                )


def _write_sysctl(op: Op) -> Result:
    obj = op.obj
    assert isinstance(obj, Sysctl)
    if op.action == "delete":
        return Result(op, "absent", 0, "sysctls are left as they are")
    try:
        with open(f"/proc/sys/{obj.path}") as f:
            if f.read().strip() == obj.value:
                return Result(op, "exists")
        with open(f"/proc/sys/{obj.path}", "w") as f:
            f.write(obj.value)
    except OSError as e:
        return Result(op, "error", e.errno or errno.EIO, f"{obj.path}: {e.strerror}")
    return Result(op, "ok")
