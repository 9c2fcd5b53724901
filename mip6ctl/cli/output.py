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


_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


class Painter:
    """ANSI colours for short answers without importing rich (~40 ms at start-up).

    Colour only on a terminal, and never with NO_COLOR set or TERM=dumb.
    """

    def __init__(self, stream: Any) -> None:
        import os

        self.stream = stream
        self.enabled = (
            hasattr(stream, "isatty")
            and stream.isatty()
            and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb"
        )

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        codes = ";".join(_SGR[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
