"""Line numbers for TOML keys, so every error can say `file:line: key.path`.

tomllib gives values but no positions.  This scanner walks a document that
tomllib already accepted and records the line where each key path (including
array indices and keys inside inline tables) is defined.  It does not
validate: on anything unexpected it stops and keeps what it found, because a
missing line number is a nuisance while a crash in error reporting is a bug.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

Path = tuple[str | int, ...]

_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.lines: dict[Path, int] = {}
        # array-of-tables: current element count for each array path
        self.aot: dict[Path, int] = {}

    # -- helpers -------------------------------------------------------------
    def line(self, pos: int | None = None) -> int:
        return self.s.count("\n", 0, self.i if pos is None else pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def skip_ws(self, newlines: bool = False) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                nl = s.find("\n", self.i)
                self.i = len(s) if nl < 0 else nl
            else:
                return

    def record(self, path: Path, pos: int) -> None:
        self.lines.setdefault(path, self.line(pos))

    # -- lexical pieces ------------------------------------------------------
    def string(self) -> str:
        s = self.s
        for q in ('"""', "'''"):
            if s.startswith(q, self.i):
                end = s.find(q, self.i + 3)
                # a closing run may be up to 5 quotes long
                while end >= 0 and s.startswith(q[0], end + 3):
                    end += 1
                out = s[self.i + 3 : end]
                self.i = end + 3
                return out
        q = s[self.i]
        self.i += 1
        out = []
        while self.i < len(s) and s[self.i] != q:
            if q == '"' and s[self.i] == "\\":
                out.append(s[self.i : self.i + 2])
                self.i += 2
                continue
            out.append(s[self.i])
            self.i += 1
        self.i += 1
        text = "".join(out)
        if q == '"' and "\\" in text:
            with contextlib.suppress(UnicodeDecodeError):
                text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return text

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.i
                while self.i < len(self.s) and self.s[self.i] in _BARE:
                    self.i += 1
                if self.i == start:
                    raise ValueError("key expected")
                parts.append(self.s[start : self.i])
            self.skip_ws()
            if self.peek() == ".":
                self.i += 1
                continue
            return parts

    # -- values ---------------------------------------------------------------
    def value(self, path: Path) -> None:
        self.skip_ws()
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.array(path)
        elif c == "{":
            self.inline_table(path)
        else:
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1

    def array(self, path: Path) -> None:
        self.i += 1  # [
        idx = 0
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == "]":
                self.i += 1
                return
            self.record((*path, idx), self.i)
            self.value((*path, idx))
            idx += 1
            self.skip_ws(newlines=True)
            if self.peek() == ",":
                self.i += 1

    def inline_table(self, path: Path) -> None:
        self.i += 1  # {
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == "}":
                self.i += 1
                return
            start = self.i
            keys = self.key()
            full = (*path, *keys)
            for n in range(1, len(keys) + 1):
                self.record((*path, *keys[:n]), start)
            self.skip_ws()
            self.i += 1  # =
            self.value(full)
            self.skip_ws(newlines=True)
            if self.peek() == ",":
                self.i += 1

    # -- document -------------------------------------------------------------
    def resolve(self, keys: Iterable[str]) -> Path:
        """Insert the current index after every array-of-tables prefix."""
        out: list[str | int] = []
        for k in keys:
            out.append(k)
            n = self.aot.get(tuple(out))
            if n is not None:
                out.append(n - 1)
        return tuple(out)

    def document(self) -> None:
        table: Path = ()
        while True:
            self.skip_ws(newlines=True)
            if self.i >= len(self.s):
                return
            start = self.i
            if self.s.startswith("[[", self.i):
                self.i += 2
                keys = self.key()
                self.i += 2
                parent = self.resolve(keys[:-1])
                arr = (*parent, keys[-1])
                self.aot[arr] = self.aot.get(arr, 0) + 1
                table = (*arr, self.aot[arr] - 1)
                self.record(arr, start)
                self.record(table, start)
            elif self.peek() == "[":
                self.i += 1
                keys = self.key()
                self.i += 1
                table = self.resolve(keys)
                for n in range(1, len(table) + 1):
                    self.record(table[:n], start)
            else:
                keys = self.key()
                for n in range(1, len(keys) + 1):
                    self.record((*table, *keys[:n]), start)
                self.skip_ws()
                self.i += 1  # =
                self.value((*table, *keys))


def key_lines(text: str) -> tuple[dict[Path, int], set[Path]]:
    """Map every key path defined in `text` to its 1-based line number.

    Also returns the paths written as arrays of tables (`[[a.b]]`), which the
    loader may concatenate across files, unlike inline arrays.
    """
    sc = _Scanner(text)
    with contextlib.suppress(ValueError, IndexError):
        sc.document()
    return sc.lines, set(sc.aot)
