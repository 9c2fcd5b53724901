"""`mip6ctl confirm`, `rollback` and `history`: the daemon's kept generations.

All three talk to the running daemon (mip6ctl/daemon/confirmation.py does the
work): the history lives in its state directory and only the daemon can apply
a generation with its live bindings. Exit codes: 0 done; 1 the daemon said no
(nothing to confirm, no such generation, the rollback did not verify) or no
daemon answers.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mip6ctl.cli import exitcodes
from mip6ctl.cli.output import Painter, emit_json

TIMEOUT = 30.0  # a rollback is a full apply


def run(args: argparse.Namespace) -> int:
    from mip6ctl.daemon.control import ControlError, call

    params: dict[str, Any] = {}
    if args.command == "rollback" and args.to is not None:
        params["to"] = args.to
    try:
        doc = call(str(args.socket), args.command, params, timeout=TIMEOUT)
    except ControlError as e:
        if args.json:
            emit_json(
                args.command,
                {"ok": False, "errors": [{"kind": e.code or e.kind, "message": e.message}]},
            )
        else:
            sys.stderr.write(f"mip6ctl {args.command}: {e.message}\n")
        return exitcodes.ERROR
    ok = bool(doc.get("ok"))
    if args.json:
        emit_json(
            args.command,
            {k: v for k, v in doc.items() if k != "changed"},
            changed=bool(doc.get("changed")),
        )
    else:
        {"confirm": _confirmed, "rollback": _rolled_back, "history": _history}[args.command](doc)
    return exitcodes.OK if ok else exitcodes.ERROR


def _confirmed(doc: dict[str, Any]) -> None:
    p = Painter(sys.stdout)
    c = doc["confirmed"]
    p.line(p(f"✓ generation {c['number']} confirmed ({c['digest'][:19]})", "green"))


def _rolled_back(doc: dict[str, Any]) -> None:
    p = Painter(sys.stdout)
    r = doc.get("rollback", {})
    files = ", ".join(r.get("files", [])) or "none"
    if doc.get("ok"):
        p.line(
            p(
                f"✓ generation {r.get('from')} rolled back to {r.get('to')} "
                f"({r.get('digest', '')[:19]}), verified; files restored: {files}",
                "green",
            )
        )
    else:
        p.line(p(f"✗ rollback to generation {r.get('to')} did not verify", "red"))
        for e in doc.get("errors", []):
            p.line(p(f"! {e.get('message')}", "red"))


def _history(doc: dict[str, Any]) -> None:
    p = Painter(sys.stdout)
    pending = doc.get("pending")
    for g in doc.get("generations", []):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(g["applied_at"]))
        mark = "*" if g.get("running") else " "
        note = ""
        if pending and pending["number"] == g["number"]:
            left = max(0.0, pending["deadline"] - time.time())
            note = p(f"  awaiting confirm ({left:.0f} s left)", "yellow")
        if not g.get("restorable", True):
            note += p("  (files not kept)", "dim")
        p.line(f"{mark} {g['number']:>4}  {when}  {g['digest'][:19]}  {g['source']:<8}{note}")
    last = doc.get("last_rollback")
    if last:
        p.line(p(f"last rollback: {last['from']} → {last['to']} ({last['reason']})", "dim"))
    p.line(p(f"* running; the daemon keeps the last {doc.get('keep')} generations", "dim"))
