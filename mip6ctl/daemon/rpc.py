"""`mip6ctl diff` / `apply` through a running daemon: plans that include the live bindings.

Without a daemon the CLI can only plan what the configuration alone requires;
the daemon also knows every binding, so its plan shows what a new
configuration generation would do to them (bindings dropped because their
mobile node left the configuration, moved to another backend, ...).

`plan`: load the daemon's configuration directory as a *candidate* (nothing
is applied), render it with the live bindings it would keep, and diff that
against the kernel as the observer sees it.  `apply`: the same plan, then the
daemon's reload path (the one SIGHUP and the directory watcher use), wait for
the reconcile, and report what remains different (nothing, when it worked).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from mip6ctl.config.loader import ConfigError, load_directory
from mip6ctl.config.model import Mip6Config
from mip6ctl.daemon.control import MethodError, param
from mip6ctl.engine.admission import kept_home_registrations
from mip6ctl.engine.binding import Binding
from mip6ctl.state.describe import change_doc, key_text, summary
from mip6ctl.state.plan import Plan
from mip6ctl.state.render import Desired, classify, render

#: how long `apply` waits for the kernel to converge on the new generation
APPLY_TIMEOUT = 10.0
#: how long apply's verification waits for the loop to finish converging (s)
VERIFY_SETTLE = 2.0


#: Longest ``config_dir`` accepted (PATH_MAX).
_PATH_MAX = 4096


def _config_dir_param(params: dict[str, Any]) -> Path | None:
    """``params.config_dir`` as a resolved path, None when absent or empty.

    Anything a client sends is checked here, before it reaches ``Path``: a
    number, a list or a path with a NUL byte is ``InvalidParams`` (not a
    TypeError / ValueError answered as ``Internal``).
    """
    wanted = param(params, "config_dir", str, "")
    if not wanted:
        return None
    if "\0" in wanted or len(wanted) > _PATH_MAX:
        raise MethodError(
            "InvalidParams", f"params.config_dir must be a path (no NUL, at most {_PATH_MAX} bytes)"
        )
    try:
        return Path(wanted).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # e.g. a symlink loop
        raise MethodError("InvalidParams", f"params.config_dir: cannot resolve: {e}") from e


def _same_dir(daemon: Any, params: dict[str, Any]) -> None:
    wanted = _config_dir_param(params)
    if wanted is not None and wanted != daemon.config_dir.resolve():
        raise MethodError(
            "WrongConfigDir",
            f"the daemon runs the configuration in {daemon.config_dir}, not {wanted}; "
            "edit that directory (or stop the daemon to apply another one statically)",
        )


def _kept_bindings(daemon: Any, cfg: Mip6Config) -> list[Binding]:
    """The home registrations a candidate configuration would keep.

    The engine's admission policy decides, the same one a reload applies, so
    the plan shows exactly the bindings the reload will keep.
    """
    return kept_home_registrations(cfg.ha, daemon.engine.cache)


def candidate_plan(daemon: Any, directory: Path | None = None) -> tuple[Any, Desired, Plan]:
    """Plan `directory` (default: the daemon's own) against the kernel and live bindings."""
    gen = load_directory(directory or daemon.config_dir)
    cfg = gen.config
    loop = daemon.loop
    # everything the loop renders: kept home registrations, correspondent bindings
    # (route optimisation, where the kernel has it), the mobile node's own state
    bindings: list[Any] = list(_kept_bindings(daemon, cfg))
    if daemon.caps.route_optimization:
        bindings += [b for b in daemon.engine.cache if not getattr(b, "home_registration", True)]
    from mip6ctl.daemon.protection import with_generation_keys

    facts = with_generation_keys(gen, loop.facts)  # the candidate's keys (a rotation shows)
    desired = render(cfg, bindings, daemon.caps, facts, mobile_node=loop.mobile_view)
    # Deletes get an origin too, so the plan can count the bindings it drops.
    running = getattr(daemon, "cfg", None)
    for k, obj in loop.observer.owned.items():
        if k not in desired.origins:
            # the running configuration knows what a candidate dropped (a mobile
            # network prefix it no longer lists still belongs to its router's binding)
            origin = classify(obj, cfg) or (classify(obj, running) if running else None)
            if origin is not None:
                desired.origins[k] = origin
    return gen, desired, loop.reconciler.plan(desired)


def plan_doc(daemon: Any, gen: Any, desired: Desired, plan: Plan) -> dict[str, Any]:
    errors = [
        {
            "kind": "conflict",
            "key": key_text(c.key),
            "message": f"held by a foreign object: {summary(c.foreign)} (wanted by {c.origin})",
        }
        for c in plan.conflicts
    ] + [{"kind": "render", "message": m} for m in desired.problems]
    from mip6ctl.config.restart import restart_only_changes

    return {
        # settings read only at start that differ from what this process started with
        # (a hot reload took the file, not the setting)
        "restart_required": restart_only_changes(daemon.started_cfg, gen.config)
        if daemon.gen
        else [],
        "mode": "daemon",
        "note": "planned by the running daemon: includes its live bindings",
        "generation": gen.digest,
        "running_generation": daemon.gen.digest if daemon.gen else None,
        "bindings": sum(1 for _ in daemon.engine.cache),
        "backend": {"tunnel": daemon.caps.tunnel, "proxy_ndp": daemon.caps.proxy_ndp},
        "counts": plan.counts(),
        "impact": dict(plan.impact),
        "plan": [change_doc(c) for c in plan.changes],
        "errors": errors,
    }


def _invalid(e: ConfigError) -> dict[str, Any]:
    return {"mode": "daemon", "ok": False, "errors": [p.as_dict() for p in e.problems]}


async def rpc_plan(daemon: Any, params: dict[str, Any]) -> dict[str, Any]:
    # Planning another directory (a staged copy: Ansible's check and diff mode) is
    # safe: nothing is applied. `apply` of another directory stays refused.
    wanted = _config_dir_param(params)
    other = wanted if wanted is not None and wanted != daemon.config_dir.resolve() else None
    try:
        gen, desired, plan = candidate_plan(daemon, other)
    except ConfigError as e:
        return _invalid(e)
    doc = plan_doc(daemon, gen, desired, plan)
    if other is not None:
        doc["note"] = (
            f"candidate {other} planned by the running daemon (it runs {daemon.config_dir}): "
            "includes its live bindings; apply by installing the files there"
        )
        doc["candidate_dir"] = str(other)
    doc["ok"] = not doc["errors"]
    doc["changed"] = not plan.empty
    return doc


async def rpc_apply(
    daemon: Any, params: dict[str, Any], *, source: str = "apply"
) -> dict[str, Any]:
    from mip6ctl.daemon import confirmation

    _same_dir(daemon, params)
    timeout = params.get("confirm_timeout") or 0
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if not number or not 0 <= timeout <= 86400:
        raise MethodError("InvalidParams", "params.confirm_timeout must be 0..86400 seconds")
    try:
        gen, desired, before = candidate_plan(daemon)
    except ConfigError as e:
        return _invalid(e)
    undo = confirmation.undo_point(daemon, gen.digest) if timeout else None
    doc = plan_doc(daemon, gen, desired, before)
    result = await daemon.reload(source)
    loop = daemon.loop
    static = await loop.wait_reconciled(("static",), APPLY_TIMEOUT)
    # Read the kernel back: what still differs from the desired state is a failure --
    # once the loop had its chance: a hot reload of the same files a moment earlier
    # may still be converging (level-triggered), so look again for a short while.
    _gen, _desired, after = candidate_plan(daemon)
    settle = time.monotonic() + VERIFY_SETTLE
    while not after.empty and static and time.monotonic() < settle:
        await asyncio.sleep(0.1)
        _gen, _desired, after = candidate_plan(daemon)
    doc["reload"] = {k: v for k, v in result.items() if k != "errors"}
    remaining = [change_doc(c) for c in after.changes]
    doc["verification"] = [
        {
            "key": c["key"],
            "desired": c["summary"] if c["action"] != "delete" else None,
            "current": c["summary"] if c["action"] != "create" else None,
        }
        for c in remaining
    ]
    for c in doc["plan"]:
        c["result"] = "pending" if any(r["key"] == c["key"] for r in remaining) else "ok"
    if not static:
        doc["errors"].append(
            {"kind": "apply", "message": f"static state: {getattr(static, 'message', static)}"}
        )
    doc["ok"] = not doc["errors"] and not remaining
    doc["changed"] = bool(result.get("applied")) and not before.empty
    if timeout:
        # applied now, or already by the hot reload (undo_point found the change)
        pending = confirmation.arm(daemon, undo, float(timeout)) if undo is not None else None
        doc["confirmation"] = (
            {"state": "pending", **pending.as_dict()}
            if pending is not None
            else {"state": "not-needed", "reason": "nothing changed: nothing to confirm"}
        )
    return doc


async def rpc_confirm(daemon: Any, params: dict[str, Any]) -> dict[str, Any]:
    from mip6ctl.daemon import confirmation

    return confirmation.confirm(daemon)


async def rpc_rollback(daemon: Any, params: dict[str, Any]) -> dict[str, Any]:
    from mip6ctl.daemon import confirmation

    to = param(params, "to", int, 0)
    if isinstance(to, bool) or to < 0:
        raise MethodError("InvalidParams", "params.to must be a generation number")
    return await confirmation.rollback(daemon, to or None, reason="mip6ctl rollback")


async def rpc_history(daemon: Any, params: dict[str, Any]) -> dict[str, Any]:
    from mip6ctl.daemon import confirmation

    return confirmation.history_doc(daemon)
