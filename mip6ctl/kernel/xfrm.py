"""XFRM over netlink: the request socket and the event socket (codec in `xfrm_codec`).

Why not pyroute2: it ships no XFRM family, and what this module needs is
narrow -- fixed C structs plus a few attributes -- and hot (10k policies on
an HA, batched).  A plain ``socket(AF_NETLINK, SOCK_RAW, NETLINK_XFRM)`` with
precompiled ``struct.Struct`` layouts lets us (a) put hundreds of requests in
one ``send()`` and match acks by sequence number, (b) decode dumps straight
into the compact objects of `mip6ctl.state.xfrm` (no message objects kept,
owned-only filtering before full decoding), and (c) keep the codec sans-I/O:
the message bodies are built and parsed by `mip6ctl.kernel.xfrm_codec`, the
netlink framing by `mip6ctl.kernel.netlink`; this module only does I/O.
The capability probe that tries XFRM features is
`mip6ctl.kernel.probe.xfrm_capabilities`.

Ownership (DESIGN.md invariant 3): `flush_owned` deletes one object at a
time by its full identity *including our mark*, so a foreign policy of the
same shape (no mark) is never hit; XFRM_MSG_FLUSHPOLICY/FLUSHSA are never
sent.  MIGRATE is the exception the kernel forces on us: it finds the policy
by selector/direction/type only (mark ignored), so `migrate` first checks
that no unmarked policy of that shape would be chosen instead.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mip6ctl import ownership
from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel.xfrm_codec import (
    _LFT_CFG,
    _LFT_CUR,
    _MARK,
    _SEL,
    _U32,
    DEFAULT_GROUPS,
    SIZEOF_USERPOLICY_ID,
    SIZEOF_USERPOLICY_INFO,
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_GETPOLICY,
    XFRM_MSG_GETSA,
    XFRM_MSG_MIGRATE,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    XFRM_MSG_UPDPOLICY,
    XFRM_MSG_UPDSA,
    XFRMA_MARK,
    EventsLost,
    KmAddress,
    XfrmEvent,
    XfrmMigration,
    decode_events,
    decode_policy,
    decode_ro_usage,
    decode_state,
    encode_migrate,
    encode_policy,
    encode_policy_id,
    encode_state,
    encode_state_id,
    migrate_flow_selector,
)
from mip6ctl.state.xfrm import (
    OWNED_MARK,
    Direction,
    Mark,
    PolicyType,
    XfrmPolicy,
    XfrmPolicyKey,
    XfrmSelector,
    XfrmState,
    XfrmStateKey,
    is_owned_policy,
)

NETLINK_XFRM = 6


class XfrmError(OSError):
    """A refused XFRM request: errno plus the kernel's extended-ack message, if any."""

    def __init__(self, err: int, message: str = "", what: str = "") -> None:
        text = os.strerror(err)
        if message:
            text += f" ({message})"
        if what:
            text = f"{what}: {text}"
        super().__init__(err, text)
        self.kernel_message = message


# -- the request socket --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XfrmResult:
    """Outcome of one object in a batch.  ``error`` 0 = done; ``noop`` = it already was so."""

    op: str
    target: Any
    error: int = 0
    message: str = ""
    noop: bool = False

    @property
    def ok(self) -> bool:
        return self.error == 0

    def raise_for_error(self) -> None:
        if self.error:
            raise XfrmError(self.error, self.message, f"{self.op} {self.target}")


@dataclass(frozen=True, slots=True)
class _Request:
    op: str
    target: Any
    msg_type: int
    body: bytes
    #: errnos that mean "already in the requested state" (idempotent success)
    idempotent: tuple[int, ...] = ()


#: What DELSA/GETSA answer for an SA that is not there.  Unlike policies (ENOENT),
#: the kernel's xfrm_user_state_lookup() fails with ESRCH, and xfrm_state_delete()
#: says ESRCH for an SA already dead: both mean "absent", so a repeated delete is a
#: noop and get_state() returns None (the vm tier showed ESRCH on the second delete).
_STATE_ABSENT = (_errno.ESRCH, _errno.ENOENT)


@dataclass(frozen=True, slots=True)
class Migrate:
    """One policy's MIGRATE for `XfrmSocket.migrate_many`."""

    selector: XfrmSelector
    direction: Direction
    migrations: Sequence[XfrmMigration]
    ptype: PolicyType = PolicyType.MAIN
    mark: Mark = OWNED_MARK
    kmaddress: KmAddress | None = None


class XfrmSocket:
    """Request/response XFRM netlink socket, opened in the caller's current namespace.

    Write methods taking sequences send them batched (many messages per
    ``send()``, one ack each, matched by sequence number) and return one
    `XfrmResult` per object in order; the singular forms raise `XfrmError`.
    Every call is bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        batch: int = 512,
        sndbuf: int = 4 << 20,
        rcvbuf: int = 8 << 20,
    ) -> None:
        self.timeout = timeout
        self.batch = batch
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        try:
            for opt, force, size in (
                (socket.SO_SNDBUF, nl.SO_SNDBUFFORCE, sndbuf),
                (socket.SO_RCVBUF, nl.SO_RCVBUFFORCE, rcvbuf),
            ):
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, force, size)
                except OSError:
                    self._sock.setsockopt(socket.SOL_SOCKET, opt, size)
            for opt in (nl.NETLINK_CAP_ACK, nl.NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(nl.SOL_NETLINK, opt, 1)
            self._sock.bind((0, 0))
            self._sock.settimeout(timeout)
        except BaseException:
            self._sock.close()
            raise
        self._seq = int(time.monotonic_ns() & 0x3FFFFFFF)
        #: MIGRATE: this kernel matched the exact selector form (see `migrate`)
        self._migrate_exact = False
        self._buf = bytearray(1 << 20)
        # keep the send size under the socket buffer (netlink refuses > sndbuf - 32)
        self._max_send = max(
            4096, self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2 - 64
        )

    # -- plumbing --

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _recv(self) -> memoryview:
        n = self._sock.recv_into(self._buf)
        return memoryview(self._buf)[:n]

    def _execute(self, requests: Sequence[_Request]) -> list[XfrmResult]:
        """Send requests in batches; one result per request, matched by sequence number.

        A batch asks for error replies only (no nl.NLM_F_ACK) and ends with an
        acked nl.NLMSG_NOOP barrier: the kernel handles the messages of one send
        in order and acks successes only when asked, so once the barrier's
        ack is in, every request before it without an error reply succeeded.
        This halves the syscalls per object compared with one ack each.
        """
        results: list[XfrmResult | None] = [None] * len(requests)
        deadline = time.monotonic() + self.timeout
        i = 0
        while i < len(requests):
            pending: dict[int, int] = {}
            chunk: list[bytes] = []
            size = 0
            single = len(requests) - i == 1
            flags = nl.NLM_F_REQUEST | (nl.NLM_F_ACK if single else 0)
            while i < len(requests) and len(pending) < self.batch:
                r = requests[i]
                m = nl.message(r.msg_type, flags, self._next_seq(), r.body)
                if chunk and size + len(m) > self._max_send:
                    break
                pending[self._seq] = i
                chunk.append(m)
                size += len(m)
                i += 1
            barrier = 0
            if not single:
                barrier = self._next_seq()
                chunk.append(
                    nl.message(nl.NLMSG_NOOP, nl.NLM_F_REQUEST | nl.NLM_F_ACK, barrier, b"")
                )
            self._sock.sendall(b"".join(chunk))
            done = False
            while not done and pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._sock.settimeout(left)
                try:
                    data = self._recv()
                except TimeoutError:
                    break
                for kind, mflags, seq, a, b in nl.iter_messages(data):
                    if kind != nl.NLMSG_ERROR:
                        continue
                    if seq == barrier:
                        done = True
                        continue
                    if seq not in pending:
                        continue
                    idx = pending.pop(seq)
                    err, _s, msg = nl.parse_error(data, a, b, mflags, strerror=False)
                    r = requests[idx]
                    noop = bool(err) and err in r.idempotent
                    results[idx] = XfrmResult(r.op, r.target, 0 if noop else err, msg, noop)
            if done:  # no error reply before the barrier: success
                for idx in pending.values():
                    results[idx] = XfrmResult(requests[idx].op, requests[idx].target)
                pending.clear()
            if pending:  # timed out: report the rest, do not send more
                for idx in pending.values():
                    r = requests[idx]
                    results[idx] = XfrmResult(r.op, r.target, _errno.ETIMEDOUT)
                break
        self._sock.settimeout(self.timeout)
        return [
            r or XfrmResult(requests[k].op, requests[k].target, _errno.ECANCELED, "not sent")
            for k, r in enumerate(results)
        ]

    def _dump(self, msg_type: int, body: bytes) -> Iterator[tuple[memoryview, int, int, int]]:
        """Yield (buffer, type, payload start, payload end) for each dumped message.

        The buffer is reused by the next recv: consume each item before advancing.
        """
        for _attempt in range(3):
            seq = self._next_seq()
            self._sock.sendall(nl.message(msg_type, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, seq, body))
            interrupted = False
            done = False
            deadline = time.monotonic() + self.timeout
            while not done:
                self._sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data = self._recv()
                except TimeoutError:
                    raise XfrmError(_errno.ETIMEDOUT, "", "dump") from None
                for kind, flags, mseq, a, b in nl.iter_messages(data):
                    if mseq != seq:
                        continue
                    if flags & nl.NLM_F_DUMP_INTR:
                        interrupted = True
                    if kind == nl.NLMSG_DONE:
                        done = True
                        break
                    if kind == nl.NLMSG_ERROR:
                        err, _s, msg = nl.parse_error(data, a, b, flags, strerror=False)
                        raise XfrmError(err, msg, "dump")
                    if not interrupted:
                        yield data, kind, a, b
            self._sock.settimeout(self.timeout)
            if not interrupted:
                return
        raise XfrmError(_errno.EINTR, "dump kept being interrupted", "dump")

    # -- policies --

    def add_policies(
        self, policies: Iterable[XfrmPolicy], *, replace: bool = False
    ) -> list[XfrmResult]:
        """NEWPOLICY (EEXIST = success, noop) or, with replace, UPDPOLICY (add or replace)."""
        mt = XFRM_MSG_UPDPOLICY if replace else XFRM_MSG_NEWPOLICY
        op = "update policy" if replace else "add policy"
        idem = () if replace else (_errno.EEXIST,)
        return self._execute([_Request(op, p, mt, encode_policy(p), idem) for p in policies])

    def update_policies(self, policies: Iterable[XfrmPolicy]) -> list[XfrmResult]:
        return self.add_policies(policies, replace=True)

    def delete_policies(self, policies: Iterable[XfrmPolicy | XfrmPolicyKey]) -> list[XfrmResult]:
        """DELPOLICY by full identity (selector, dir, type, mark, if_id); ENOENT = success."""
        return self._execute(
            [
                _Request(
                    "delete policy", p, XFRM_MSG_DELPOLICY, encode_policy_id(p), (_errno.ENOENT,)
                )
                for p in policies
            ]
        )

    def add_policy(self, policy: XfrmPolicy, *, replace: bool = False) -> XfrmResult:
        r = self.add_policies([policy], replace=replace)[0]
        r.raise_for_error()
        return r

    def update_policy(self, policy: XfrmPolicy) -> XfrmResult:
        return self.add_policy(policy, replace=True)

    def delete_policy(self, policy: XfrmPolicy | XfrmPolicyKey) -> XfrmResult:
        r = self.delete_policies([policy])[0]
        r.raise_for_error()
        return r

    def get_policy(self, key: XfrmPolicyKey | XfrmPolicy) -> XfrmPolicy | None:
        """The kernel's policy with exactly this identity, or None."""
        return self.get_policies([key])[0]

    def dump_policies(self, *, owned_only: bool = False) -> list[XfrmPolicy]:
        """All policies (main and sub); with owned_only, foreign ones are skipped undecoded."""
        out: list[XfrmPolicy] = []
        prio_off = _SEL.size + _LFT_CFG.size + _LFT_CUR.size
        for buf, kind, a, b in self._dump(XFRM_MSG_GETPOLICY, bytes(SIZEOF_USERPOLICY_ID)):
            if kind != XFRM_MSG_NEWPOLICY:
                continue
            if owned_only:
                (prio,) = _U32.unpack_from(buf, a + prio_off)
                if not ownership.XFRM_PRIORITY_MIN <= prio <= ownership.XFRM_PRIORITY_MAX:
                    continue
                mark = Mark()
                for k, x, _y in nl.iter_attrs(buf, a + SIZEOF_USERPOLICY_INFO, b):
                    if k == XFRMA_MARK:
                        mark = Mark(*_MARK.unpack_from(buf, x))
                if not is_owned_policy(prio, mark):
                    continue
            out.append(decode_policy(buf, a, b))
        return out

    # -- states --

    def add_states(self, states: Iterable[XfrmState], *, replace: bool = False) -> list[XfrmResult]:
        """NEWSA (EEXIST = success, noop) or, with replace, add-or-replace (`_replace_states`).

        route2/hao states found present are read back: the kernel finds them by
        (dst, src, proto), so a larval state of the traffic-trigger policy for the
        same pair makes NEWSA fail EEXIST -- such a one (or any that differs) is
        replaced (UPDSA takes the larval one's place); an equal one stays a noop.
        """
        states = list(states)
        if replace:
            return self._replace_states(states)
        results = self._execute(
            [
                _Request("add state", s, XFRM_MSG_NEWSA, encode_state(s), (_errno.EEXIST,))
                for s in states
            ]
        )
        present = [
            i
            for i, (s, r) in enumerate(zip(states, results, strict=True))
            if r.noop and not s.proto.uses_spi
        ]
        if present:
            found = self.get_states([states[i] for i in present])
            stale = [i for i, f in zip(present, found, strict=True) if f != states[i]]
            if stale:
                done = self._replace_states([states[i] for i in stale])
                for i, r in zip(stale, done, strict=True):
                    results[i] = r
        return results

    def _replace_states(self, states: list[XfrmState]) -> list[XfrmResult]:
        """Make the kernel hold exactly these SAs, whether or not they exist.

        UPDSA alone is not that (xfrm_state_update): it fails ESRCH for a missing
        SA -- which made the capability probe report ESP/route2/hao as missing
        on the full kernel -- and it copies only lifetimes, encap, the care-of
        address and (SPI-less states) the selector, silently keeping old keys,
        algorithms, reqid or mode.  So: route2/hao (the CoA moves on every
        binding update) get UPDSA, atomic, then NEWSA if absent, and a delete +
        add if the read-back still differs; SPI states get delete + add in one
        batch (an SA's keys cannot change in place).
        """
        results: list[XfrmResult | None] = [None] * len(states)
        ro = [i for i, st in enumerate(states) if not st.proto.uses_spi]
        upd = self._execute(
            [
                _Request("update state", states[i], XFRM_MSG_UPDSA, encode_state(states[i]))
                for i in ro
            ]
        )
        recreate: list[int] = []
        missing: list[int] = []
        for i, r in zip(ro, upd, strict=True):
            if r.error in _STATE_ABSENT:
                missing.append(i)
            elif r.error or self.get_state(states[i]) == states[i]:
                results[i] = r
            else:
                recreate.append(i)
        added = self._execute(
            [
                _Request("update state", states[i], XFRM_MSG_NEWSA, encode_state(states[i]))
                for i in missing
            ]
        )
        for i, r in zip(missing, added, strict=True):
            results[i] = r
        recreate += [i for i, st in enumerate(states) if st.proto.uses_spi]
        reqs: list[_Request] = []
        for i in recreate:
            st = states[i]
            reqs.append(
                _Request("update state", st, XFRM_MSG_DELSA, encode_state_id(st), _STATE_ABSENT)
            )
            reqs.append(_Request("update state", st, XFRM_MSG_NEWSA, encode_state(st)))
        done = self._execute(reqs)
        for k, i in enumerate(recreate):
            gone, made = done[2 * k], done[2 * k + 1]
            results[i] = made if gone.ok else gone
        return [r for r in results if r is not None]

    def update_states(self, states: Iterable[XfrmState]) -> list[XfrmResult]:
        return self.add_states(states, replace=True)

    def delete_states(self, states: Iterable[XfrmState | XfrmStateKey]) -> list[XfrmResult]:
        """DELSA by identity; an absent SA is success (noop)."""
        return self._execute(
            [
                _Request("delete state", s, XFRM_MSG_DELSA, encode_state_id(s), _STATE_ABSENT)
                for s in states
            ]
        )

    def add_state(self, state: XfrmState, *, replace: bool = False) -> XfrmResult:
        r = self.add_states([state], replace=replace)[0]
        r.raise_for_error()
        return r

    def update_state(self, state: XfrmState) -> XfrmResult:
        return self.add_state(state, replace=True)

    def delete_state(self, state: XfrmState | XfrmStateKey) -> XfrmResult:
        r = self.delete_states([state])[0]
        r.raise_for_error()
        return r

    def get_state(self, key: XfrmStateKey | XfrmState) -> XfrmState | None:
        return self.get_states([key])[0]

    def dump_states(self, *, owned_only: bool = False) -> list[XfrmState]:
        # The SA dump parses attributes right after the header: send no body.
        out: list[XfrmState] = []
        for buf, kind, a, b in self._dump(XFRM_MSG_GETSA, b""):
            if kind != XFRM_MSG_NEWSA:
                continue
            s = decode_state(buf, a, b)
            if not owned_only or s.owned:
                out.append(s)
        return out

    def ro_usage(self) -> dict[tuple[bytes, bytes, int], int]:
        """Owned route2/hao states with a care-of address: (dst, src, proto) -> packets
        so far (curlft), raw addresses; what tells a binding in use (BRR, §9.5.5)."""
        mark = (OWNED_MARK.value, OWNED_MARK.mask)
        out: dict[tuple[bytes, bytes, int], int] = {}
        for buf, kind, a, b in self._dump(XFRM_MSG_GETSA, b""):
            if kind != XFRM_MSG_NEWSA:
                continue
            u = decode_ro_usage(buf, a, b, mark)
            if u is not None:
                out[u[0], u[1], u[2]] = u[3]
        return out

    # -- MIGRATE and cleanup --

    def _get_many(
        self,
        msg_type: int,
        reply: int,
        bodies: Sequence[bytes],
        decode: Callable[..., Any],
        absent: tuple[int, ...] = (_errno.ENOENT,),
    ) -> list[Any]:
        """GETs in batches of one send each; replies matched by sequence number
        (None for an absent object: an error in `absent`)."""
        out: list[Any] = [None] * len(bodies)
        for start in range(0, len(bodies), self.batch):
            part: dict[int, int] = {}
            chunk = []
            for i in range(start, min(len(bodies), start + self.batch)):
                seq = self._next_seq()
                part[seq] = i
                chunk.append(nl.message(msg_type, nl.NLM_F_REQUEST, seq, bodies[i]))
            self._sock.sendall(b"".join(chunk))
            deadline = time.monotonic() + self.timeout
            while part:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise XfrmError(_errno.ETIMEDOUT, "", "get")
                self._sock.settimeout(left)
                try:
                    data = self._recv()
                except TimeoutError:
                    raise XfrmError(_errno.ETIMEDOUT, "", "get") from None
                finally:
                    self._sock.settimeout(self.timeout)
                for kind, flags, mseq, a, b in nl.iter_messages(data):
                    idx = part.pop(mseq, None)
                    if idx is None:
                        continue
                    if kind == nl.NLMSG_ERROR:
                        err, _s, msg = nl.parse_error(data, a, b, flags, strerror=False)
                        if err and err not in absent:
                            raise XfrmError(err, msg, "get")
                    elif kind == reply:
                        out[idx] = decode(data, a, b)
        return out

    def get_policies(self, keys: Sequence[XfrmPolicyKey | XfrmPolicy]) -> list[XfrmPolicy | None]:
        """`get_policy` for many keys, one send per batch."""
        bodies = [encode_policy_id(k) for k in keys]
        return self._get_many(XFRM_MSG_GETPOLICY, XFRM_MSG_NEWPOLICY, bodies, decode_policy)

    def get_states(self, keys: Sequence[XfrmStateKey | XfrmState]) -> list[XfrmState | None]:
        """`get_state` for many SAs, one send per batch."""
        bodies = [encode_state_id(k) for k in keys]
        return self._get_many(
            XFRM_MSG_GETSA, XFRM_MSG_NEWSA, bodies, decode_state, absent=_STATE_ABSENT
        )

    def _migrate_unguarded(self, items: Sequence[Migrate]) -> list[XfrmResult]:
        """The MIGRATEs in one batch, in the selector form this kernel wants (`migrate`)."""

        def send(batch: list[Migrate], exact: bool) -> list[XfrmResult]:
            reqs = []
            for m in batch:
                sel = m.selector if exact else migrate_flow_selector(m.selector)
                body = encode_migrate(
                    sel, m.direction, m.migrations, ptype=m.ptype, kmaddress=m.kmaddress
                )
                reqs.append(_Request("migrate", m.selector, XFRM_MSG_MIGRATE, body))
            return self._execute(reqs)

        first_exact = self._migrate_exact
        results = send(list(items), first_exact)
        again = [
            i
            for i, r in enumerate(results)
            if r.error == _errno.ENOENT
            and migrate_flow_selector(items[i].selector) != items[i].selector
        ]
        if again:
            for i, r in zip(again, send([items[i] for i in again], not first_exact), strict=True):
                results[i] = r
                if not r.error and not first_exact:
                    self._migrate_exact = True  # a memcmp() kernel: exact form first
        return results

    def migrate_many(self, items: Sequence[Migrate]) -> list[XfrmResult]:
        """`migrate` (with its guard) for many policies, each step one batch for all.

        Guard: an unmarked policy of the same shape refuses its item (EEXIST);
        after the MIGRATEs, our policy must be the one that moved (EADDRINUSE)."""
        return self._migrate_guarded(items)[0]

    def _migrate_guarded(
        self, items: Sequence[Migrate]
    ) -> tuple[list[XfrmResult], list[XfrmPolicy | None]]:
        """`migrate_many`'s results and our policies as read back (None: not moved)."""
        results: list[XfrmResult | None] = [None] * len(items)
        read: list[XfrmPolicy | None] = [None] * len(items)
        twins = self.get_policies(
            [XfrmPolicyKey(m.direction, m.ptype, m.selector, Mark()) for m in items]
        )
        todo = []
        for i, (m, twin) in enumerate(zip(items, twins, strict=True)):
            if twin is not None:
                results[i] = XfrmResult(
                    "migrate",
                    m.selector,
                    _errno.EEXIST,
                    f"unmarked policy with priority {twin.priority} has the same selector",
                )
            else:
                todo.append(i)

        for i, r in zip(todo, self._migrate_unguarded([items[i] for i in todo]), strict=True):
            results[i] = r
        moved = [i for i in todo if not results[i].error]  # type: ignore[union-attr]
        ours = self.get_policies(
            [
                XfrmPolicyKey(items[i].direction, items[i].ptype, items[i].selector, items[i].mark)
                for i in moved
            ]
        )
        for i, pol in zip(moved, ours, strict=True):
            m = items[i]
            read[i] = pol
            ok = pol is not None and any(
                (t.src, t.dst) == (x.new_src, x.new_dst)
                for t in pol.templates
                for x in m.migrations
            )
            if not ok:
                results[i] = XfrmResult(
                    "migrate",
                    m.selector,
                    _errno.EADDRINUSE,
                    "the kernel migrated another policy matching this selector, not ours",
                )
        return [r for r in results if r is not None], read

    def migrate(
        self,
        selector: XfrmSelector,
        direction: Direction,
        migrations: Sequence[XfrmMigration],
        *,
        ptype: PolicyType = PolicyType.MAIN,
        mark: Mark = OWNED_MARK,
        kmaddress: KmAddress | None = None,
        guard: bool = True,
    ) -> XfrmPolicy | None:
        """Move tunnel endpoints of our policy (and its SAs) with this selector/dir/type.

        The kernel ignores marks in MIGRATE: up to ~6.9 it memcmp()s the selector
        against policies of that shape; newer kernels run the packet-path
        lookup on a flow built from the selector, which for an MH-type selector
        needs `migrate_flow_selector`.  We send the flow form first and the exact
        selector on ENOENT, so both kernel generations work: a newer kernel given
        the exact form of an MH-type selector looks up a flow of MH type 0, which
        can find (and move) a less specific policy with the same endpoints -- the
        payload policy next to a HoTI one -- instead of ours (ENODATA when that one
        had moved already).  A kernel that matched the exact form is remembered
        (one round trip less).  With ``guard``: refuse (EEXIST) when an unmarked
        policy of the same shape exists, and afterwards check that *our* policy
        (``mark``) is the one that moved (EADDRINUSE if not).  Returns our policy
        as the kernel now has it (None without ``guard``).
        """
        item = Migrate(selector, direction, migrations, ptype, mark, kmaddress)
        if guard:
            results, read = self._migrate_guarded([item])
            if results[0].error:
                raise XfrmError(results[0].error, results[0].message, "migrate")
            return read[0]
        self._migrate_unguarded([item])[0].raise_for_error()
        return None

    def flush_owned(self) -> tuple[list[XfrmResult], list[XfrmResult]]:
        """Delete every owned policy and state, one by one by identity (never FLUSH*)."""
        pols = self.delete_policies(p.key for p in self.dump_policies(owned_only=True))
        sas = self.delete_states(s.key for s in self.dump_states(owned_only=True))
        return pols, sas


# -- the event socket ----------------------------------------------------------


class XfrmEventSocket:
    """Multicast subscriber: ``fileno()`` for an event loop, `read()` for typed events.

    Non-blocking after construction: `read()` returns [] when nothing is
    queued, and `EventsLost()` when the kernel dropped events (resync then).
    """

    def __init__(self, groups: Iterable[int] = DEFAULT_GROUPS, *, rcvbuf: int = 4 << 20) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, nl.SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, 0))
            for g in groups:
                self._sock.setsockopt(nl.SOL_NETLINK, nl.NETLINK_ADD_MEMBERSHIP, g)
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self._buf = bytearray(1 << 20)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmEventSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> list[XfrmEvent]:
        """Drain what is queued now."""
        out: list[XfrmEvent] = []
        while True:
            try:
                n = self._sock.recv_into(self._buf)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == _errno.ENOBUFS:
                    out.append(EventsLost())
                    continue
                raise
            out.extend(decode_events(memoryview(self._buf)[:n]))

    def wait(self, timeout: float) -> list[XfrmEvent]:
        """Block up to `timeout` seconds for at least one event (tests, scripts)."""
        import selectors

        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            while True:
                got = self.read()
                left = deadline - time.monotonic()
                if got or left <= 0:
                    return got
                sel.select(left)
