"""`mip6ctl doctor`: which kernel features exist here, and what mip6ctl does about each.

The probe runs in a throwaway network namespace, so it needs root (or
CAP_SYS_ADMIN + CAP_NET_ADMIN) but never changes the host.  pyroute2 is not
imported at all; rich only when a table is printed.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from mip6ctl.cli.output import console, emit_json
    from mip6ctl.kernel.probe import probe

    caps = probe()
    if args.json:
        emit_json("doctor", {"ok": True, "capabilities": [c.as_dict() for c in caps]})
        return 0

    from rich.table import Table

    table = Table(title="mip6ctl doctor: kernel capabilities", show_lines=True)
    for col in ("capability", "available", "how detected", "enables", "without it"):
        table.add_column(col, overflow="fold")
    marks = {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]unknown[/]"}
    for c in caps:
        table.add_row(c.name, marks[c.available], c.detail, c.enables, c.fallback)
    console().print(table)
    return 0
