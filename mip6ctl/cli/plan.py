"""`mip6ctl diff` and `mip6ctl apply`: show and converge the kernel state a configuration needs.

Terraform's contract: `diff` and `apply --check` exit 0 when nothing would
change, 2 when changes are pending and 1 on error; `apply` exits 0 when the
kernel now matches (verified by reading it back) and 1 otherwise.  `--json`
gives one versioned document with `changed`, the plan, per-object results,
verification mismatches and errors — what Ansible's `changed_when` needs.

Without a running daemon these commands handle *static* state only (what the
configuration alone requires) and leave binding objects alone; they say so.
The configuration is validated first: a broken directory changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mip6ctl.cli import exitcodes
from mip6ctl.cli.output import Painter, emit_json

STATIC_NOTE = (
    "no daemon is running: static state only (what the configuration requires); "
    "binding objects are left alone"
)


def _daemon_running(path: str) -> bool:
    import socket

    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def run(args: argparse.Namespace) -> int:
    from mip6ctl.config.loader import ConfigError, load_directory

    command = args.command
    dry = command == "diff" or getattr(args, "check", False)
    try:
        gen = load_directory(args.config_dir)
    except ConfigError as e:
        if args.json:
            emit_json(command, {"ok": False, "errors": [p.as_dict() for p in e.problems]})
        else:
            p = Painter(sys.stderr)
            for prob in e.problems:
                p.line(str(prob))
            p.line(f"{p('✗', 'bold', 'red')} configuration invalid; nothing applied")
        return exitcodes.ERROR
    if _daemon_running(str(args.socket)):
        # The daemon owns the bindings: its plan includes them, and its reload path
        # is the one SIGHUP and the directory watcher use.
        return _through_daemon(args, dry)
    if getattr(args, "confirm_timeout", None) and not dry:
        from mip6ctl.cli.output import not_available

        return not_available(
            command,
            f"--confirm-timeout needs the running daemon (none answers on {args.socket}): "
            "something must be there to roll back when no confirmation comes",
            as_json=args.json,
        )
    note = STATIC_NOTE
    try:
        return _run(args, gen, dry, note)
    except PermissionError as e:
        return _fail(args, f"needs root (CAP_NET_ADMIN) to read and change kernel state: {e}")
    except OSError as e:
        return _fail(args, f"kernel: {e}")


def _through_daemon(args: argparse.Namespace, dry: bool) -> int:
    from mip6ctl.daemon.control import ControlError, call

    method = "plan" if dry else "apply"
    params: dict[str, Any] = {"config_dir": str(Path(args.config_dir).resolve())}
    if not dry and getattr(args, "confirm_timeout", None):
        params["confirm_timeout"] = args.confirm_timeout
    try:
        doc = call(str(args.socket), method, params, timeout=30.0)
    except ControlError as e:
        return _fail(args, f"daemon: {e}", kind=e.code or e.kind)
    ok = bool(doc.get("ok"))
    changed = bool(doc.get("changed"))
    if dry:
        rc = exitcodes.ERROR if not ok else (exitcodes.CHANGES if changed else exitcodes.OK)
    else:
        rc = exitcodes.OK if ok else exitcodes.ERROR
    if args.json:
        body = {k: v for k, v in doc.items() if k != "changed"}
        emit_json(args.command, body, changed=changed)
        return rc
    p = Painter(sys.stdout)
    p.line(p(f"note: {doc.get('note', 'planned by the running daemon')}", "dim"))
    sign = {
        "create": p("+", "green", "bold"),
        "update": p("~", "yellow", "bold"),
        "delete": p("-", "red", "bold"),
    }
    for c in doc.get("plan", []):
        why = p(f"  ({c['origin']})", "dim") if c.get("origin") else ""
        res = c.get("result")
        tail = "" if res is None else "  " + (p(res, "green") if res == "ok" else p(res, "red"))
        p.line(f"{sign[c['action']]} {c['summary']}{why}{tail}")
    for key in doc.get("restart_required", []):
        p.line(p(f"! {key}: read only at start: takes effect after a daemon restart", "yellow"))
    for e in doc.get("errors", []):
        where = f"{e['file']}:{e['line']}: {e['key']}: " if e.get("file") else ""
        p.line(p(f"! {where}{e['message']}", "red"))
    for m in doc.get("verification", []):
        p.line(
            p(
                f"! verification: desired {m['desired'] or 'absent'}, current "
                f"{m['current'] or 'absent'}",
                "red",
            )
        )
    n = doc.get("counts", {"create": 0, "update": 0, "delete": 0})
    i = doc.get("impact", {})
    tally = (
        f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete; "
        f"bindings: {i.get('bindings_added', 0)} added, {i.get('bindings_moved', 0)} "
        f"moved, {i.get('bindings_dropped', 0)} dropped"
    )
    if not doc.get("plan") and ok:
        p.line(p("✓ no changes: the kernel matches the configuration and the bindings", "green"))
    elif dry:
        p.line(f"Plan: {tally}. Run `mip6ctl apply` to make these changes.")
    elif ok:
        p.line(p(f"✓ applied through the daemon and verified: {tally.replace('to ', '')}", "green"))
    else:
        p.line(p("✗ not applied cleanly (see above)", "red"))
    pending = doc.get("confirmation") or {}
    if pending.get("state") == "pending":
        p.line(
            p(
                f"⧗ generation {pending['number']} rolls back to generation "
                f"{pending['rollback_to']} unless `mip6ctl confirm` comes within "
                f"{pending['timeout']:g} s",
                "yellow",
                "bold",
            )
        )
    return rc


def _fail(args: argparse.Namespace, message: str, *, kind: str = "kernel") -> int:
    if args.json:
        emit_json(args.command, {"ok": False, "errors": [{"kind": kind, "message": message}]})
    else:
        sys.stderr.write(f"mip6ctl {args.command}: {message}\n")
    return exitcodes.ERROR


def _run(args: argparse.Namespace, gen: Any, dry: bool, note: str) -> int:
    from mip6ctl.daemon.protection import with_generation_keys
    from mip6ctl.kernel.executor import Executor
    from mip6ctl.kernel.observer import Observer
    from mip6ctl.kernel.probe import probe
    from mip6ctl.kernel.reconciler import Reconciler
    from mip6ctl.kernel.writer import Writer
    from mip6ctl.state.render import Capabilities, HostFacts, classify, is_mobile_router, render

    cfg = gen.config
    available = {c.name: c.available for c in probe()}
    caps = Capabilities.resolve(available, cfg.kernel, mobile_router=is_mobile_router(cfg))
    tables = (cfg.kernel.route_table, cfg.kernel.route_table + 1)
    with Observer(watch_tables=tables, sources=_sources(cfg, caps)) as obs, Writer() as writer:
        facts = HostFacts.observe(cfg, [*obs.owned.values(), *obs.foreign.values()])
        facts = with_generation_keys(gen, facts)
        desired = render(cfg, (), caps, facts)
        sysctls = [k[1] for k in desired.objects if k[0] == "sysctl"]
        obs.sysctl_paths = set(sysctls)
        obs.resync()
        rec = Reconciler(observer=obs, writer=writer, executor=Executor.in_namespace(writer))

        def keep(key: tuple, obj: Any) -> bool:
            origin = classify(obj, cfg)
            return origin is not None and origin.kind == "binding"

        plan = rec.plan(desired, keep=keep)
        report = None if dry or plan.empty else rec.apply(plan, desired)
        rec.executor.close()
    return _report(args, gen, caps, desired, plan, report, dry, note)


def _sources(cfg: Any, caps: Any) -> tuple[str, ...]:
    """What the observer must read besides rtnetlink to see every kind render wants."""
    tunsrc = cfg.node.role == "mn" and caps.tunnel == "seg6"
    return ("nft", "xfrm", "seg6-tunsrc") if tunsrc else ("nft", "xfrm")


def _report(
    args: argparse.Namespace,
    gen: Any,
    caps: Any,
    desired: Any,
    plan: Any,
    report: Any,
    dry: bool,
    note: str,
) -> int:
    from mip6ctl.state.describe import change_doc, key_text, summary

    outcomes = {id(o.change): o for o in (report.outcomes if report else [])}
    failed = [o for o in (report.outcomes if report else []) if not o.ok]
    mismatches = report.mismatches if report else []
    conflicts = list(plan.conflicts)
    errors = [
        {
            "kind": "conflict",
            "key": key_text(c.key),
            "message": f"held by a foreign object: {summary(c.foreign)} (wanted by {c.origin})",
        }
        for c in conflicts
    ] + [{"kind": "render", "message": m} for m in desired.problems]
    if dry:
        rc = exitcodes.ERROR if errors else (exitcodes.CHANGES if not plan.empty else exitcodes.OK)
        changed = not plan.empty
    else:
        ok = not errors and not failed and not mismatches
        rc = exitcodes.OK if ok else exitcodes.ERROR
        changed = report is not None and report.changed
    if args.json:
        body = {
            "ok": rc != exitcodes.ERROR,
            "mode": "static",
            "note": note,
            "generation": gen.digest,
            "backend": {"tunnel": caps.tunnel, "proxy_ndp": caps.proxy_ndp},
            "counts": plan.counts(),
            "impact": dict(plan.impact),
            "plan": [change_doc(c, outcomes.get(id(c))) for c in plan.changes],
            "verification": [
                {
                    "key": key_text(m.key),
                    "desired": summary(m.desired) if m.desired else None,
                    "current": summary(m.observed) if m.observed else None,
                }
                for m in mismatches
            ],
            "errors": errors
            + [
                {"kind": "apply", "key": key_text(o.change.key), "message": o.message or o.status}
                for o in failed
            ],
        }
        emit_json(args.command, body, changed=changed)
        return rc
    _print_human(args, plan, outcomes, failed, mismatches, errors, dry, note)
    return rc


def _print_human(
    args: argparse.Namespace,
    plan: Any,
    outcomes: dict[int, Any],
    failed: list[Any],
    mismatches: list[Any],
    errors: list[dict[str, Any]],
    dry: bool,
    note: str,
) -> None:
    from mip6ctl.state.describe import summary

    p = Painter(sys.stdout)
    p.line(p(f"note: {note}", "dim"))
    sign = {
        "create": p("+", "green", "bold"),
        "update": p("~", "yellow", "bold"),
        "delete": p("-", "red", "bold"),
    }
    for c in plan.changes:
        obj = c.desired if c.desired is not None else c.observed
        why = p(f"  ({c.origin})", "dim") if c.origin else ""
        tail = ""
        o = outcomes.get(id(c))
        if o is not None:
            tail = "  " + (p(o.status, "green") if o.ok else p(f"{o.status}: {o.message}", "red"))
        p.line(f"{sign[c.action]} {summary(obj)}{why}{tail}")
        if c.action == "update":
            p.line(p(f"    was: {summary(c.observed)}", "dim"))
    for e in errors:
        p.line(p(f"! {e['message']}", "red"))
    for m in mismatches:
        p.line(
            p(
                f"! verification: desired {summary(m.desired) if m.desired else 'absent'}, "
                f"current {summary(m.observed) if m.observed else 'absent'}",
                "red",
            )
        )
    n = plan.counts()
    impact = plan.impact
    tally = f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete"
    if any(impact.get(k) for k in ("bindings_added", "bindings_moved", "bindings_dropped")):
        tally += (
            f"; bindings: {impact['bindings_added']} added, {impact['bindings_moved']} "
            f"moved, {impact['bindings_dropped']} dropped"
        )
    if plan.empty:
        p.line(p("✓ no changes: the kernel matches the configuration", "green"))
    elif dry:
        p.line(f"Plan: {tally}. Run `mip6ctl apply` to make these changes.")
    elif not failed and not mismatches and not errors:
        p.line(p(f"✓ applied and verified: {tally.replace('to ', '')}", "green"))
    else:
        p.line(p(f"✗ {len(failed)} change(s) failed, {len(mismatches)} mismatch(es)", "red"))
