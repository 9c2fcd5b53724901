"""A configuration problem, located to file, line and key path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KeyPath = tuple[str | int, ...]


#: Longest key shown whole in a key path; a longer one is cut (keys may be megabytes).
MAX_KEY_SHOWN = 64


def format_path(path: KeyPath) -> str:
    """('ha', 'mobile_nodes', 1, 'home_address') -> 'ha.mobile_nodes[1].home_address'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            if len(part) > MAX_KEY_SHOWN:
                part = f"{part[: MAX_KEY_SHOWN - 16]}…({len(part):,} characters)"
            bare = part.isascii() and part.replace("_", "").replace("-", "").isalnum()
            text = part if bare else _quoted(part)
            out += f".{text}" if out else text
    return out


def _quoted(key: str) -> str:
    """A TOML quoted key, control characters escaped (they would reach a terminal)."""
    import json  # a basic string is JSON's string syntax

    return json.dumps(key, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration directory.

    `kind` is stable for machines: syntax, schema, conflict, reference,
    consistency, key-file, io, limit (size or nesting beyond the loader's
    limits), host (validate's warnings about this host, e.g. a missing interface).
    """

    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    path: KeyPath = ()

    @property
    def key(self) -> str:
        return format_path(self.path)

    def location(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        parts = [p for p in (self.location(), self.key) if p]
        return ": ".join([*parts, self.message])

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "message": self.message,
        }


class ConfigError(Exception):
    """The directory does not form a valid generation; `problems` says why, all at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
