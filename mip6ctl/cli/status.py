"""`mip6ctl status [--json] [--watch [SECONDS]]`: ask the running daemon for its status.

Why through the control socket: the binding cache, conditions and counters
live in the daemon; the CLI only renders the document built by
:func:`mip6ctl.daemon.status.build_status` (its schema is documented there).
``--json`` prints it unchanged inside the usual envelope
(``{"version", "command": "status", "changed": false, "ok": true, …}``).

Exit codes: 0 the daemon answered; 1 no daemon, permission denied, timeout
or an error answer (JSON: ``{"ok": false, "errors": [{"kind": …}]}`` with kind
``NoDaemon`` | ``PermissionDenied`` | ``Timeout`` | ``ProtocolError`` |
``RemoteError``).

``--watch [SECONDS]`` (default 2) repeats that every SECONDS until Ctrl-C
(exit 0): see :func:`watch`.

Start-up cost: only the socket client is imported here; rich is imported
when a table is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from mip6ctl.cli import exitcodes
from mip6ctl.cli.output import emit_json
from mip6ctl.daemon.control import ControlError, call

#: Highest status_version this CLI knows how to render (newer: shown best effort).
KNOWN_STATUS_VERSION = 1
TIMEOUT = 5.0

_COND_STYLE = {"True": "green", "False": "red", "Unknown": "yellow"}


def fetch(socket: str) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """(status document, None) or (None, {"kind", "message"}) when the daemon did not answer."""
    try:
        doc = call(socket, "status", {}, timeout=TIMEOUT)
    except ControlError as e:
        return None, {"kind": e.kind, "message": e.message}
    if not isinstance(doc, dict):
        message = f"the daemon on {socket} answered a status that is not an object"
        return None, {"kind": "ProtocolError", "message": message}
    return doc, None


def run(args: argparse.Namespace) -> int:
    if getattr(args, "watch", None) is not None:
        return watch(args)
    doc, error = fetch(args.socket)
    if error is not None:
        if args.json:
            emit_json("status", {"ok": False, "errors": [error]})
        else:
            sys.stderr.write(f"mip6ctl status: {error['message']}\n")
        return exitcodes.ERROR
    assert doc is not None
    if args.json:
        emit_json("status", {"ok": True, **doc})
    else:
        render(doc)
    return exitcodes.OK


# --------------------------------------------------------------------------- --watch

#: What --watch waits with between frames (tests replace it).
_sleep = time.sleep
#: Home and clear the whole screen.
_CLEAR = "\x1b[H\x1b[2J"


def _clears_screen() -> bool:
    """Redraw in place only on a terminal; a pipe or file gets frames one after another."""
    return sys.stdout.isatty()


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def watch(args: argparse.Namespace) -> int:
    """`status --watch SECONDS`: a frame every SECONDS until Ctrl-C (then exit 0).

    Human frames are redrawn in place on a terminal, else separated by a blank
    line; with ``--json`` each frame is one compact JSON document on its own line
    (JSON Lines), the envelope of ``status --json``.  A daemon that stops
    answering does not end the watch: the frame shows the error and since when it
    has been unreachable (JSON: ``"unreachable_since"``, UTC), and the next
    frame tries again.
    """
    import json

    from mip6ctl.cli.output import JSON_VERSION

    interval = float(args.watch)
    clear = not args.json and _clears_screen()
    down_since: float | None = None
    frames = 0
    try:
        while True:
            started = time.monotonic()
            doc, error = fetch(args.socket)
            now = time.time()
            if error is None:
                down_since = None
            elif down_since is None:
                down_since = now
            if args.json:
                body: dict[str, Any]
                if error is None:
                    body = {"ok": True, **(doc or {})}
                else:
                    body = {
                        "ok": False,
                        "errors": [error],
                        "unreachable_since": _utc(down_since or now),
                    }
                envelope = {"version": JSON_VERSION, "command": "status", "changed": False, **body}
                sys.stdout.write(json.dumps(envelope, separators=(",", ":"), default=str) + "\n")
            else:
                if clear:
                    sys.stdout.write(_CLEAR)
                elif frames:
                    sys.stdout.write("\n")
                _frame(args, doc, error, now, down_since)
            sys.stdout.flush()
            frames += 1
            # every SECONDS from the start of a frame; a slow answer shortens the wait
            _sleep(max(0.0, started + interval - time.monotonic()))
    except KeyboardInterrupt:
        if clear:
            sys.stdout.write("\n")
        return exitcodes.OK


def _frame(
    args: argparse.Namespace,
    doc: dict[str, Any] | None,
    error: dict[str, str] | None,
    now: float,
    down_since: float | None,
) -> None:
    from mip6ctl.cli.output import console

    con = console()
    con.print(
        f"[dim]every {args.watch:g}s · {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}"
        " · Ctrl-C to stop[/]"
    )
    if error is None:
        render(doc or {})
        return
    since = down_since if down_since is not None else now
    con.print(f"[red]mip6ctl status: {_esc(error['message'])}[/]")
    con.print(
        f"unreachable since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))} "
        f"(for {_duration(now - since)}); trying again every {args.watch:g}s"
    )


# --------------------------------------------------------------------------- human output


def _duration(seconds: Any) -> str:
    """3725 → "1h2m", 59 → "59s": short enough for a header line."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _esc(text: Any) -> str:
    from rich.markup import escape

    return escape(str(text))


def render(doc: dict[str, Any]) -> None:
    """Compact header, coloured conditions, counters, then the role's tables."""
    from rich.table import Table

    from mip6ctl.cli.output import console

    con = console()
    if not con.is_terminal:
        con.width = max(con.width, 160)  # a pipe must not get folded addresses
    version = doc.get("status_version")
    if isinstance(version, int) and version > KNOWN_STATUS_VERSION:
        console(stderr=True).print(
            f"[yellow]note:[/] status version {version} is newer than this mip6ctl "
            f"({KNOWN_STATUS_VERSION}); some fields may be missing"
        )

    role = doc.get("role", "?")
    name = doc.get("node_name") or ""
    con.print(
        f"[bold]{_esc(role)}[/] {_esc(name)}  pid {_esc(doc.get('pid', '?'))}  "
        f"up {_duration(doc.get('uptime_s'))}  mip6ctl {_esc(doc.get('daemon_version', '?'))}"
    )
    gen = doc.get("generation")
    number, observed = doc.get("generation_number"), doc.get("observed_generation")
    sync = "" if number == observed else "  [yellow](not yet applied)[/]"
    short = "-" if not gen else (gen if len(gen) <= 19 else gen[:19] + "…")
    con.print(
        f"generation {_esc(number if number is not None else '-')} ({_esc(short)})  "
        f"observed {_esc(observed if observed is not None else '-')}{sync}  "
        f"last reconcile {_esc(doc.get('last_reconcile_time') or 'never')}"
    )
    con.print(
        f"transport {_esc(doc.get('transport') or '-')}  "
        f"tunnel {_esc(doc.get('tunnel_backend') or '-')}"
    )
    confirmation = doc.get("confirmation") or {}
    pending = confirmation.get("pending")
    if isinstance(pending, dict):
        con.print(
            f"[bold yellow]awaiting confirmation:[/] generation {_esc(pending.get('number'))} "
            f"rolls back to {_esc(pending.get('rollback_to'))} in "
            f"{_esc(pending.get('seconds_left'))} s unless `mip6ctl confirm`"
        )
    last = confirmation.get("last_rollback")
    if isinstance(last, dict):
        con.print(
            f"[yellow]last rollback:[/] generation {_esc(last.get('from'))} → "
            f"{_esc(last.get('to'))} ({_esc(last.get('reason'))})"
        )

    conditions = [c for c in doc.get("conditions") or [] if isinstance(c, dict)]
    width = max([13, *(len(str(c.get("type", "?"))) for c in conditions)])
    for c in conditions:
        status = str(c.get("status", "Unknown"))
        style = _COND_STYLE.get(status, "yellow")
        ctype = str(c.get("type", "?"))
        line = f"  {_esc(ctype)}{' ' * (width - len(ctype))} [{style}]{status:<7}[/] " + _esc(
            c.get("reason", "")
        )
        if c.get("message"):
            line += f": {_esc(c['message'])}"
        if c.get("last_transition_time"):
            line += f" [dim](since {_esc(c['last_transition_time'])})[/]"
        con.print(line)

    k = doc.get("counters") or {}
    rejected = k.get("bus_rejected_by_status") or {}
    rej = sum(int(v) for v in rejected.values())
    detail = ", ".join(f"{code}×{n}" for code, n in rejected.items())
    con.print(
        f"BUs {k.get('bus_received', 0)} received, {k.get('bus_accepted', 0)} accepted, "
        f"{rej} rejected{f' ({detail})' if detail else ''} · BAs {k.get('bas_sent', 0)} · "
        f"BEs {k.get('bes_sent', 0)} · drift repairs {k.get('drift_repairs', 0)} · "
        f"reconcile failures {k.get('reconcile_failures', 0)}"
    )

    bc = doc.get("binding_cache")
    if bc is not None:
        rows = bc.get("rows") or []
        count = bc.get("count", len(rows))
        more = f", first {len(rows)} shown" if bc.get("truncated") else ""
        pending = bc.get("pending")
        if pending:  # accepted by the engine, BA not sent (yet): not durable, not told
            more = f", [yellow]{_esc(pending)} pending[/]{more}"
        con.print()
        if not rows:
            con.print(f"[bold]Binding cache[/]: {count} entries{more}")
        else:
            t = Table(title=f"Binding cache ({count} entries{more})", title_justify="left")
            ack_column = any("acknowledged" in r for r in rows)  # status documents before it
            columns = [
                ("home address", False),
                ("care-of address", False),
                ("lifetime left", True),
                ("seq", True),
                ("flags", False),
                ("age", True),
            ]
            if ack_column:
                columns.append(("acknowledged", False))
            nemo_column = any(r.get("mobile_network_prefixes") for r in rows)
            if nemo_column:
                columns.append(("mobile network", False))
            for col, right in columns:
                t.add_column(col, justify="right" if right else "left", no_wrap=True)
            for r in rows:
                cells = [
                    _esc(r.get("home_address")),
                    _esc(r.get("care_of_address")),
                    f"{r.get('lifetime_left_s')} s",
                    str(r.get("sequence")),
                    _esc(r.get("flags") or "-"),
                    _duration(r.get("age_s")),
                ]
                if ack_column:
                    ack = r.get("acknowledged")
                    cells.append("-" if ack is None else "yes" if ack else "[yellow]pending[/]")
                if nemo_column:
                    cells.append(_esc(", ".join(r.get("mobile_network_prefixes") or []) or "-"))
                t.add_row(*cells)
            con.print(t)

    bul = doc.get("binding_update_list")
    if bul is not None:
        rows = bul.get("rows") or []
        con.print()
        if not rows:
            con.print("[bold]Binding update list[/]: empty")
        else:
            t = Table(title=f"Binding update list ({len(rows)})", title_justify="left")
            for col in ("peer", "care-of address", "state", "lifetime left", "seq", "retrans"):
                right = col in ("lifetime left", "seq", "retrans")
                t.add_column(col, justify="right" if right else "left", no_wrap=True)
            for r in rows:
                state = str(r.get("state"))
                style = {"registered": "green", "failed": "red"}.get(state, "yellow")
                left = r.get("lifetime_left_s")
                t.add_row(
                    _esc(r.get("peer") or "-"),
                    _esc(r.get("care_of_address") or "-"),
                    f"[{style}]{_esc(state)}[/]",
                    "-" if left is None else f"{left} s",
                    str(r.get("sequence")),
                    str(r.get("retransmissions", 0)),
                )
            con.print(t)

    dhaad = doc.get("home_agent_discovery")
    if dhaad is not None:
        if not dhaad.get("enabled"):
            con.print("Home agent discovery: off")
        for lst in dhaad.get("lists") or []:
            agents = ", ".join(
                f"{'/'.join(h['addresses'])} ({h['preference']}{', this one' if h['self'] else ''})"
                for h in lst.get("home_agents") or []
            )
            con.print(
                f"Home agents on {_esc(lst['interface'])} {_esc(lst['prefix'])}: "
                f"{_esc(agents) or 'none'}"
            )
        c = dhaad.get("counters") or {}
        if dhaad.get("enabled"):
            con.print(
                f"DHAAD: {c.get('requests', 0)} requests, {c.get('replies', 0)} replies, "
                f"{c.get('discarded', 0)} discarded"
            )

    router = doc.get("mobile_router")
    if router is not None:
        took = {True: "[green]accepted[/]", False: "[red]refused (BA without R)[/]"}.get(
            router.get("accepted"), "not yet acknowledged"
        )
        nets = ", ".join(router.get("mobile_network_prefixes") or []) or "none"
        con.print(f"Mobile router ({_esc(router.get('mode'))} mode): {_esc(nets)}; {took}")

    rr = doc.get("return_routability")
    if rr is not None:
        rows = rr.get("rows") or []
        enabled = "on" if rr.get("enabled") else "off"
        con.print(f"Return routability: route optimisation {enabled}, {len(rows)} peers")
        for r in rows:
            err = f" ({_esc(r['last_error'])})" if r.get("last_error") else ""
            con.print(
                f"  {_esc(r.get('peer'))} {_esc(r.get('state'))}  home token "
                f"{_duration(r.get('home_token_age_s'))} old, care-of token "
                f"{_duration(r.get('care_of_token_age_s'))} old{err}"
            )

    ipsec = doc.get("ipsec") or []
    if ipsec:
        con.print()
        t = Table(title=f"IPsec ({len(ipsec)})", title_justify="left")
        for col in ("home address", "template", "keys", "SPIs", "fingerprints", "kernel", "moved"):
            t.add_column(col, no_wrap=col != "fingerprints")
        for r in ipsec:
            spi = r.get("spi") or {}
            tun = r.get("tunnel_spi") or {}
            spis = " ".join(
                f"{k} {v}"
                for k, v in (
                    ("→ha", spi.get("to_ha")),
                    ("→mn", spi.get("to_mn")),
                    ("tun→ha", tun.get("to_ha")),
                    ("tun→mn", tun.get("to_mn")),
                )
                if v
            )
            fps = r.get("fingerprints") or {}
            ike = r.get("ike") or {}
            keys = str(r.get("key_management"))
            if ike:
                keys += f" ({_esc(ike.get('state') or '-')})"
            rot = r.get("rotation")
            if rot:
                keys += f", rotating (phase {rot.get('phase')})"
            moved = r.get("last_migration") or {}
            t.add_row(
                _esc(r.get("home_address")),
                _esc(r.get("template")),
                _esc(keys),
                _esc(spis or "-"),
                _esc(" ".join(f"{k[:4]} {v}" for k, v in fps.items()) or "-"),
                "[green]in sync[/]" if r.get("in_kernel") else "[yellow]pending[/]",
                _esc(moved.get("care_of_address") or "-"),
            )
        con.print(t)
