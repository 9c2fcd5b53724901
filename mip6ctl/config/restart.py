"""Settings a running daemon reads only at start: a reload logs them instead of applying.

The rest of a configuration generation is applied live by the reload; these
choose sockets, files and kernel tables that are opened or watched once, so
changing them needs a restart (hitless: bindings and kernel state survive it).
"""

from __future__ import annotations

from typing import Any

from mip6ctl.config.model import Mip6Config

__all__ = ["RESTART_ONLY", "restart_only_changes"]

RESTART_ONLY: tuple[str, ...] = (
    "node.role",
    "daemon.state_dir",
    "daemon.control_socket",
    "daemon.metrics",
    "kernel.signalling",
    "kernel.tunnel",
    "kernel.home_address_defence",
    "kernel.route_table",
    "kernel.route_protocol",
    "kernel.rule_priority",
)
"""Dotted key paths (a section name covers the whole section)."""


def _at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def restart_only_changes(old: Mip6Config, new: Mip6Config) -> list[str]:
    """The restart-only key paths whose value differs between two generations."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    return [p for p in RESTART_ONLY if _at(a, p) != _at(b, p)]
