"""The plan executor: the one place that writes kernel state (DESIGN.md invariant 1).

Theory of operation
-------------------
A plan (`state.plan.Plan`) is an ordered list of creates, updates and
deletes of typed objects.  The executor dispatches each change by object
type to the writer that speaks its kernel interface, batching consecutive
changes of one writer into one call:

==========================  ==================================================
objects                     writer
==========================  ==================================================
route, rule, address,       `kernel.writer.Writer` (rtnetlink, batched, marked
proxy, tunnel, sysctl       deletes, EEXIST read back)
XFRM state / policy         `kernel.xfrm.XfrmSocket` (one netlink batch per
                            action and kind)
nf_tables set, chain,       `kernel.nft_state` (nfnetlink batches, atomic;
set element                 per-object retry to name the culprit)
seg6 tunnel source          `kernel.genl` (SEG6 generic netlink)
==========================  ==================================================

Make-before-break, across writers: every create and update of the plan runs
before any delete (the plan is already ordered within each phase), and a
delete is *skipped* when a create or update of the same group failed -- a
group being what the caller says belongs together (the reconcile loop
passes its reconcile key: one binding's new tunnel failing never costs that
binding its old one).  Without a grouping the whole plan is one group.  A
skipped delete reports ``skipped`` (not ok, retried with the key).
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.kernel.writer import Op, Result, Writer
from mip6ctl.state.objects import (
    NftChain,
    NftSet,
    NftSetElement,
    Seg6TunnelSource,
    Tunnel,
)
from mip6ctl.state.plan import Change
from mip6ctl.state.xfrm import XfrmPolicy, XfrmState

_TRANSIENT = (
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
class Outcome:
    """What happened to one planned change."""

    change: Change
    status: str  # ok | exists | absent | conflict | refused | skipped | error
    message: str = ""
    errno: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "exists", "absent")

    @property
    def transient(self) -> bool:
        """Worth retrying with backoff (the kernel or an interface may come around)."""
        return self.status == "skipped" or (self.status == "error" and self.errno in _TRANSIENT)


def _obj(change: Change) -> Any:
    return change.desired if change.desired is not None else change.observed


def writer_of(obj: Any) -> str:
    """Which writer handles `obj`: rtnl | xfrm | nft | genl."""
    if isinstance(obj, XfrmPolicy | XfrmState):
        return "xfrm"
    if isinstance(obj, NftSet | NftChain | NftSetElement):
        return "nft"
    if isinstance(obj, Seg6TunnelSource):
        return "genl"
    return "rtnl"


class Executor:
    """Applies plan changes in the namespace its sockets were opened in.

    `writer` (rtnetlink) is given, and so are the other writers: a change of a
    kind whose writer is missing fails ("no ... writer") instead of reaching for
    a socket of its own -- `in_namespace()` opens them all.  `on_applied` is
    called with the rtnetlink results and the outcomes of objects the kernel
    announces no events for, so the observer's cache need not wait for a resync.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        xfrm: Any | None = None,
        nft_session: Any | None = None,
        set_tunsrc: Callable[[IPv6Address | None], None] | None = None,
        on_applied: Callable[[list[Result], list[Outcome]], None] | None = None,
    ) -> None:
        self.writer = writer
        self.xfrm = xfrm
        self._nft_session = nft_session
        self.set_tunsrc = set_tunsrc
        self.on_applied = on_applied
        self._genl: Any = None

    @classmethod
    def in_namespace(cls, writer: Writer) -> Executor:
        """Every writer, opened in the calling thread's namespace (a refused one is left
        out: its kinds then fail with a clear message)."""
        from mip6ctl.kernel import genl
        from mip6ctl.kernel.nft import NftSession
        from mip6ctl.kernel.xfrm import XfrmSocket

        xfrm: Any = None
        session: Any = None
        tunsrc: Any = None
        with contextlib.suppress(OSError):
            xfrm = XfrmSocket(timeout=5.0)
        with contextlib.suppress(OSError):
            session = NftSession()
        with contextlib.suppress(OSError):
            sock = genl.GenlSocket()
            tunsrc = functools.partial(genl.set_seg6_tunsrc, sock=sock)
        ex = cls(writer, xfrm=xfrm, nft_session=session, set_tunsrc=tunsrc)
        ex._genl = sock if tunsrc is not None else None
        return ex

    def close(self) -> None:
        if self._nft_session is not None:
            self._nft_session.close()
            self._nft_session = None
        if self.xfrm is not None:
            self.xfrm.close()
            self.xfrm = None
        if self._genl is not None:
            self._genl.close()
            self._genl = None
            self.set_tunsrc = None

    # ----------------------------------------------------------------- public

    def apply(
        self,
        changes: Sequence[Change],
        *,
        group: Callable[[tuple], Hashable] | None = None,
    ) -> list[Outcome]:
        """Apply `changes` (plan order), creates/updates of every writer before deletes."""
        group = group or (lambda _k: None)
        first = [c for c in changes if c.action != "delete"]
        last = [c for c in changes if c.action == "delete"]
        out = self._run(first)
        failed = {group(o.change.key) for o in out if not o.ok}
        runnable = [c for c in last if group(c.key) not in failed]
        out += [
            Outcome(c, "skipped", "kept: a change it makes way for failed", 0)
            for c in last
            if group(c.key) in failed
        ]
        out += self._run(runnable)
        return out

    # ----------------------------------------------------------------- dispatch

    def _run(self, changes: Sequence[Change]) -> list[Outcome]:
        out: list[Outcome] = []
        i = 0
        while i < len(changes):
            kind = writer_of(_obj(changes[i]))
            j = i
            while j < len(changes) and writer_of(_obj(changes[j])) == kind:
                j += 1
            run = list(changes[i:j])
            out += getattr(self, f"_write_{kind}")(run)
            i = j
        return out

    def _write_rtnl(self, changes: list[Change]) -> list[Outcome]:
        # ip6tnl devices created or changed first, in a call of their own: the
        # writer maps interface names to indexes once per call, so a route through
        # a device created in the same call would fail ENODEV until the next pass.
        def device(c: Change) -> bool:
            return c.action != "delete" and isinstance(_obj(c), Tunnel)

        devices = [c for c in changes if device(c)]
        if devices and len(devices) < len(changes):
            rest = [c for c in changes if not device(c)]
            return self._write_rtnl(devices) + self._write_rtnl(rest)
        ops = []
        for c in changes:
            obj = _obj(c)
            action = {"create": "create", "update": "replace", "delete": "delete"}[c.action]
            # the documented local-rule takeover and its undo are the only foreign writes;
            # an update replaces in place what the observer saw as ours
            replaces = c.observed if c.action == "update" else None
            ops.append(Op(action, obj, allow_foreign=not obj.owned, replaces=replaces))  # type: ignore[arg-type]
        results = self.writer.apply(ops)
        out = []
        for c, r in zip(changes, results, strict=True):
            msg = r.message
            if r.status == "conflict" and r.foreign is not None:
                msg = f"held by a foreign object: {r.foreign!r}"
            out.append(Outcome(c, r.status, msg, r.errno))
        if self.on_applied is not None:
            self.on_applied(results, [])
        return out

    def _write_xfrm(self, changes: list[Change]) -> list[Outcome]:
        if self.xfrm is None:
            return [Outcome(c, "error", "no XFRM writer", errno.ENOTSUP) for c in changes]
        out: list[Outcome] = []
        i = 0
        while i < len(changes):  # one batch per run of (action, kind)
            key = (changes[i].action, isinstance(_obj(changes[i]), XfrmPolicy))
            j = i
            while (
                j < len(changes)
                and (
                    changes[j].action,
                    isinstance(_obj(changes[j]), XfrmPolicy),
                )
                == key
            ):
                j += 1
            run = changes[i:j]
            if key[0] == "migrate":
                out += self._migrate(run, policies=key[1])
                i = j
                continue
            fn = {
                ("create", True): self.xfrm.add_policies,
                ("update", True): self.xfrm.update_policies,
                ("delete", True): self.xfrm.delete_policies,
                ("create", False): self.xfrm.add_states,
                ("update", False): self.xfrm.update_states,
                ("delete", False): self.xfrm.delete_states,
            }[key]
            for c, r in zip(run, fn([_obj(c) for c in run]), strict=True):
                if r.error:
                    out.append(Outcome(c, "error", r.message, r.error))
                else:
                    out.append(Outcome(c, "exists" if r.noop else "ok"))
            i = j
        return out

    def _migrate(self, changes: list[Change], *, policies: bool) -> list[Outcome]:
        """XFRM MIGRATE of tunnel-mode policies (their SAs move with them; the kernel
        tells key managers, with XFRMA_KMADDRESS naming the new IKE endpoints), all
        of a run in one batch (`XfrmSocket.migrate_many`).

        A state's migrate change is then only checked: the policy's MIGRATE moved it
        (same SPI), or -- no policy moved it, no CONFIG_XFRM_MIGRATE -- it is added
        at the new addresses and the old one deleted.  A policy whose MIGRATE the
        kernel refuses is replaced in place like any update."""
        from mip6ctl.kernel.xfrm import Migrate
        from mip6ctl.kernel.xfrm_codec import KmAddress, XfrmMigration

        xs = self.xfrm
        out: list[Outcome] = []
        if not policies:
            for c, have in zip(changes, xs.get_states([c.desired for c in changes]), strict=True):
                if have == c.desired:
                    out.append(Outcome(c, "ok", "migrated"))
                    continue
                made = xs.add_states([c.desired], replace=True)[0]
                if made.error:
                    out.append(Outcome(c, "error", made.message, made.error))
                    continue
                xs.delete_states([c.observed])
                out.append(Outcome(c, "ok", "re-added: no MIGRATE moved it"))
        else:
            items = []
            for c in changes:
                old, new = c.observed, c.desired
                pairs = list(zip(old.templates, new.templates, strict=True))
                moves = [
                    XfrmMigration(a.dst, a.src, b.dst, b.src, a.proto, a.mode, a.reqid)
                    for a, b in pairs
                    if a != b and a.dst is not None and a.src is not None
                ]
                t = next(b for a, b in pairs if a != b)
                # the IKE endpoints after the move: (local, remote) of this end
                local, remote = (t.src, t.dst) if new.direction == 1 else (t.dst, t.src)
                km = KmAddress(local, remote)
                items.append(Migrate(new.selector, new.direction, moves, new.ptype, new.mark, km))
            for c, r in zip(changes, xs.migrate_many(items), strict=True):
                if not r.error:
                    out.append(Outcome(c, "ok", "migrated"))
                elif r.error in (errno.EADDRINUSE, errno.EEXIST):
                    out.append(Outcome(c, "conflict", r.message, r.error))
                else:
                    u = xs.update_policies([c.desired])[0]  # no MIGRATE here: replace in place
                    why = errno.errorcode.get(r.error, str(r.error))
                    out.append(
                        Outcome(c, "error", u.message, u.error)
                        if u.error
                        else Outcome(c, "ok", f"replaced: MIGRATE refused ({why})")
                    )
        done = [o for o in out if o.ok]
        if done and self.on_applied is not None:
            self.on_applied([], done)  # MIGRATE announces nothing on the SA/policy groups
        return out

    def _write_nft(self, changes: list[Change]) -> list[Outcome]:
        from mip6ctl.kernel import nft_state as nw

        s = self._nft_session
        if s is None:
            return [Outcome(c, "error", "no nf_tables writer", errno.ENOTSUP) for c in changes]

        def requests(c: Change) -> list[tuple[int, int, bytes]]:
            obj = _obj(c)
            return nw.delete_requests(obj) if c.action == "delete" else nw.create_requests(obj)

        deleting = all(c.action == "delete" for c in changes)
        ignore = (errno.ENOENT,) if deleting else ()
        out: list[Outcome] = []
        try:
            s.batch(
                [r for c in changes for r in requests(c)],
                ignore=ignore if len(changes) == 1 else (),
            )
            out = [Outcome(c, "ok") for c in changes]
        except OSError:
            # the kernel aborted the whole batch: one batch each, to name the culprit
            for c in changes:
                try:
                    s.batch(requests(c), ignore=(errno.ENOENT,) if c.action == "delete" else ())
                    out.append(Outcome(c, "ok"))
                except OSError as e:
                    code = e.errno or errno.EIO
                    if c.action == "delete" and code == errno.ENOENT:
                        out.append(Outcome(c, "absent"))
                    else:
                        out.append(Outcome(c, "error", str(e), code))
        if deleting and any(not isinstance(_obj(c), NftSetElement) for c in changes):
            try:  # the owned table goes with its last chain or set
                if nw.table_is_empty(s) is True:
                    from mip6ctl.kernel import nft

                    nft.remove_table(session=s)
            except OSError:
                pass
        return out

    def _write_genl(self, changes: list[Change]) -> list[Outcome]:
        out = []
        for c in changes:
            obj = _obj(c)
            assert isinstance(obj, Seg6TunnelSource)
            if c.action == "delete":
                out.append(Outcome(c, "absent", "the tunnel source is left as it is"))
                continue
            addr = IPv6Address(obj.address)
            if self.set_tunsrc is None:
                out.append(Outcome(c, "error", "no seg6 tunnel source writer", errno.ENOTSUP))
                continue
            try:
                self.set_tunsrc(None if addr.is_unspecified else addr)
                out.append(Outcome(c, "ok"))
            except OSError as e:
                out.append(Outcome(c, "error", f"seg6 tunnel source: {e}", e.errno or errno.EIO))
        if self.on_applied is not None:
            self.on_applied([], out)
        return out
