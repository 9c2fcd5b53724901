"""Output helpers shared by every command: versioned JSON and a lazily imported rich console."""

from __future__ import annotations

import json
import sys
from typing import Any

#: Version of every `--json` document; bump on incompatible change.
JSON_VERSION = 1


def emit_json(command: str, body: dict[str, Any], *, changed: bool = False) -> None:
    """Write one stable JSON document: {"version", "command", "changed", ...body}."""
    doc = {"version": JSON_VERSION, "command": command, "changed": changed, **body}
    json.dump(doc, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def console(stderr: bool = False) -> Any:
    """A rich Console, imported only when a human-readable answer is printed."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def not_available(command: str, what: str, *, as_json: bool = False) -> int:
    """Say plainly that a command cannot do its job (yet, or here) and exit 69."""
    from mip6ctl.cli import exitcodes

    if as_json:
        emit_json(command, {"ok": False, "errors": [{"kind": "NotAvailable", "message": what}]})
    else:
        sys.stderr.write(f"mip6ctl {command}: not available: {what}\n")
    return exitcodes.UNAVAILABLE
