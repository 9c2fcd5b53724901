"""`apply --confirm-timeout`, `confirm` and `rollback`: a change that undoes itself.

An operator changing a remote box can cut themselves off (a wrong prefix, a
wrong interface). Like `netplan try` and NETCONF's confirmed commit, the
daemon applies the new generation, then waits: `mip6ctl confirm` within the
timeout keeps it; otherwise the daemon rolls back by itself.

A rollback is not a special path: it writes the kept files of the earlier
generation back into the configuration directory (so the next hot reload
does not re-apply the change) and runs the same planned, verified apply as
`mip6ctl apply`. The kernel state afterwards is what that generation renders,
the bindings the engine kept included.

While a change awaits confirmation, another `apply --confirm-timeout` is
refused (one undo point at a time); hot reloads still apply, and a timeout
rolls back to the generation that ran *before* the confirmed-apply, whatever
came after it. The pending confirmation is kept on disk: a daemon that stops
before `confirm` rolls back when it starts again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mip6ctl.daemon.control import MethodError
from mip6ctl.daemon.history import HistoryError, Pending

log = logging.getLogger(__name__)


def _history(daemon: Any) -> Any:
    if daemon.history is None:
        raise MethodError(
            "NoHistory",
            "this daemon keeps no generation history (its state directory is not writable): "
            "no rollback is possible",
        )
    return daemon.history


def undo_point(daemon: Any, candidate_digest: str) -> Any:
    """The kept generation a confirmed-apply rolls back to: the one before the change.

    The change is the directory's files. When they differ from the running
    generation, the running one is the undo point. When the daemon's hot reload
    (or SIGHUP) already applied them — the watcher is quick — the change *is*
    that reload, and the undo point is the generation before it. An unchanged
    directory whose generation came from anywhere else has nothing to confirm.
    """
    h = _history(daemon)
    if daemon.pending is not None:
        raise MethodError(
            "PendingConfirmation",
            f"generation {daemon.pending.number} still awaits `mip6ctl confirm` "
            f"({max(0.0, daemon.pending.deadline - time.time()):.0f} s left): confirm or "
            "roll back first",
        )
    current = h.records[-1] if h.records else None
    if current is None or current.digest != daemon.gen.digest:
        raise MethodError("NoUndoPoint", "the running generation is not kept: no undo point")
    undo = current
    if candidate_digest == current.digest:
        if current.source != "reload" or current.number == daemon.confirmed_number:
            return None  # nothing changed since an apply, start, rollback or confirm
        undo = h.before(current.number)
    if undo is None or not undo.restorable:
        raise MethodError(
            "NoUndoPoint",
            "the generation before this change is not kept (or its files were not), so it "
            "could not be restored: not applying with --confirm-timeout",
        )
    return undo


def arm(daemon: Any, undo: Any, timeout: float) -> Pending | None:
    """After an applied change: roll back to `undo` unless confirmed within `timeout` s."""
    h = daemon.history
    new = h.records[-1] if h.records else None
    if new is None or new.number == undo.number or new.digest != daemon.gen.digest:
        return None  # nothing was applied (or it was refused): nothing to confirm
    p = Pending(
        number=new.number,
        digest=new.digest,
        rollback_to=undo.number,
        deadline=time.time() + timeout,
        timeout=timeout,
    )
    h.save_pending(p)
    daemon.pending = p
    daemon._set_condition(
        "GenerationConfirmed",
        False,
        "AwaitingConfirmation",
        f"generation {p.number}: `mip6ctl confirm` within {timeout:g} s or generation "
        f"{undo.number} comes back",
    )
    daemon._confirm_task = asyncio.get_running_loop().create_task(_expire(daemon, p))
    return p


async def _expire(daemon: Any, p: Pending) -> None:
    await asyncio.sleep(max(0.0, p.deadline - time.time()))
    if daemon.pending is not p:
        return
    log.warning(
        "generation %d was not confirmed within %g s: rolling back to generation %d",
        p.number,
        p.timeout,
        p.rollback_to,
    )
    try:
        doc = await rollback(daemon, p.rollback_to, reason=f"not confirmed within {p.timeout:g} s")
    except MethodError as e:
        log.error("rollback to generation %d failed: %s", p.rollback_to, e.message)
        return
    if not doc.get("ok"):
        log.error("rollback to generation %d did not verify: %s", p.rollback_to, doc["errors"])


def confirm(daemon: Any) -> dict[str, Any]:
    p = daemon.pending
    if p is None:
        last = daemon.last_rollback
        why = (
            f"too late: generation {last['from']} was rolled back to {last['to']} "
            f"({last['reason']})"
            if last
            else "no change awaits confirmation"
        )
        raise MethodError("NothingPending", why)
    _clear(daemon)
    daemon.confirmed_number = p.number
    daemon._set_condition("GenerationConfirmed", True, "Confirmed", f"generation {p.number}")
    log.info("generation %d confirmed", p.number)
    return {"ok": True, "changed": True, "confirmed": p.as_dict()}


def _clear(daemon: Any) -> None:
    task, daemon._confirm_task = daemon._confirm_task, None
    if task is not None and task is not asyncio.current_task():
        task.cancel()
    daemon.pending = None
    daemon.history.save_pending(None)


async def rollback(daemon: Any, to: int | None, *, reason: str) -> dict[str, Any]:
    """Restore generation `to` (default: the one before the running one) and apply it."""
    from mip6ctl.daemon.rpc import rpc_apply

    h = _history(daemon)
    current = h.records[-1] if h.records else None
    if to is None:
        if daemon.pending is not None:
            to = daemon.pending.rollback_to
        target = h.get(to) if to is not None else h.before(current.number if current else 0)
    else:
        target = h.get(to)
    if target is None:
        kept = ", ".join(str(r.number) for r in h.records) or "none"
        what = f"generation {to}" if to is not None else "an earlier generation"
        raise MethodError("NoSuchGeneration", f"{what} is not kept (kept: {kept})")
    from_number = daemon.pending.number if daemon.pending is not None else current.number
    daemon._source_hint = "rollback"
    try:
        written = h.restore_files(target, daemon.config_dir)
    except (HistoryError, OSError) as e:
        daemon._source_hint = None
        raise MethodError("RollbackFailed", f"generation {target.number}: {e}") from e
    if daemon.pending is not None:
        _clear(daemon)
    doc = await rpc_apply(daemon, {}, source="rollback")
    daemon.last_rollback = {
        "from": from_number,
        "to": target.number,
        "reason": reason,
        "at": time.time(),
        "ok": bool(doc.get("ok")),
    }
    daemon._set_condition(
        "GenerationConfirmed",
        False,
        "RolledBack",
        f"generation {from_number} rolled back to {target.number}: {reason}",
    )
    doc["rollback"] = {**daemon.last_rollback, "digest": target.digest, "files": written}
    return doc


def history_doc(daemon: Any) -> dict[str, Any]:
    h = _history(daemon)
    running = daemon.gen.digest if daemon.gen is not None else None
    rows = []
    for r in h.records:
        d = r.as_dict()
        d["running"] = r is h.records[-1] and r.digest == running
        rows.append(d)
    return {
        "ok": True,
        "changed": False,
        "keep": h.keep,
        "generations": rows,
        "pending": daemon.pending.as_dict() if daemon.pending is not None else None,
        "last_rollback": daemon.last_rollback,
    }
