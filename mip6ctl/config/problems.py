"""A configuration problem, located to file, line and key path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """('ha', 'mobile_nodes', 1, 'home_address') -> 'ha.mobile_nodes[1].home_address'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if part.replace("_", "").replace("-", "").isalnum() else f'"{part}"'
            out += f".{text}" if out else text
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration directory.

    `kind` is stable for machines: syntax, schema, conflict, reference,
    consistency, key-file, io.
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
