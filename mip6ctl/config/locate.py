"""Line numbers for TOML keys, so every error can say `file:line: key.path`.

tomllib gives values but no positions.  This scanner walks a document and
records the line where each key path (including array indices and keys inside
inline tables) is defined.  It does not validate: on anything unexpected it
stops and keeps what it found, because a missing line number is a nuisance
while a crash in error reporting is a bug.

It runs before tomllib, on any text, so it is also the guard that keeps
tomllib from input that would exhaust it: key paths deeper than MAX_DEPTH
(NestingTooDeep; this also bounds the scanner's own recursion) and numbers
longer than MAX_SCALAR (ValueTooLong).  Values are tomllib's alone: one
parser decides what a configuration means.

Linear in the size of the text: lexing is done with regular expressions (one
match per ordinary line), and line numbers are counted forward from the last
position asked for.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

Path = tuple[str | int, ...]

#: Deepest key path (tables, arrays and their indices) a configuration may use;
#: the model needs 5, so this only stops documents built to exhaust the stack.
MAX_DEPTH = 32
#: Longest number, date or boolean: tomllib's number pattern needs ~130 bytes of
#: memory per character (2 GB for a 16 MiB float), so longer ones never reach it.
MAX_SCALAR = 1000

_WS = re.compile(r"[ \t\r]*+(?:#[^\n]*+)?")
_WS_NL = re.compile(r"(?:[ \t\r\n]++|#[^\n]*+)*+")
_BARE = re.compile(r"[A-Za-z0-9_-]++")
_BASIC = re.compile(r'"((?:[^"\\]++|\\.)*+)"?', re.S)
_LITERAL = re.compile(r"'([^']*+)'?")
# multi-line strings; the closing run may be up to 5 quotes long
_ML_BASIC = re.compile(r'"""(?:[^"\\]++|\\.|"(?!""))*+"{3,5}', re.S)
_ML_LITERAL = re.compile(r"'''(?:[^']++|'(?!''))*+'{3,5}")
_SCALAR = re.compile(r"[^,\]}\n#]*+")
# Fast path for the common statements, from blank space before one to the end of
# its line: `key = "plain" | 'literal' | 123 | true`, and `[a.b]` / `[[a.b]]`.
_STATEMENT = re.compile(
    r"(?:[ \t\r\n]++|#[^\n]*+)*+(?:"
    r"(?P<k>[A-Za-z0-9_-]++)[ \t]*+=[ \t]*+"
    r"(?:\"[^\"\\\n]*+\"|'[^'\n]*+'|[A-Za-z0-9_:.+-]{1,1000}+)"  # 1000: MAX_SCALAR
    r"|(?P<o>\[\[?)[ \t]*+(?P<h>[A-Za-z0-9_-]++(?:\.[A-Za-z0-9_-]++)*+)[ \t]*+(?P<c>\]\]?)"
    r")[ \t]*+(?:#[^\n]*+)?(?=\r?\n|\Z)"
)

class LimitExceeded(Exception):
    """The text is beyond what the loader accepts, at `line`; `message` says how."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


class NestingTooDeep(LimitExceeded):
    """A key path deeper than MAX_DEPTH."""

    def __init__(self, line: int) -> None:
        super().__init__(
            line, f"nesting too deep: arrays and tables may nest at most {MAX_DEPTH} levels"
        )


class ValueTooLong(LimitExceeded):
    """A number, date or boolean longer than MAX_SCALAR characters."""

    def __init__(self, line: int, length: int) -> None:
        super().__init__(
            line,
            f"value of {length:,} characters; a number, date or boolean may have at most "
            f"{MAX_SCALAR:,}",
        )


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.lines: dict[Path, int] = {}
        # array-of-tables: current element count for each array path
        self.aot: dict[Path, int] = {}
        # line number at offset _pos: positions asked for only grow, so counting
        # the newlines since the last one keeps the whole scan linear
        self._pos = 0
        self._line = 1

    # -- helpers -------------------------------------------------------------
    def line(self, pos: int | None = None) -> int:
        pos = self.i if pos is None else pos
        if pos >= self._pos:
            self._line += self.s.count("\n", self._pos, pos)
        else:
            self._line -= self.s.count("\n", pos, self._pos)
        self._pos = pos
        return self._line

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def skip_ws(self, newlines: bool = False) -> None:
        m = (_WS_NL if newlines else _WS).match(self.s, self.i)
        assert m is not None  # both patterns match the empty string
        self.i = m.end()

    def record(self, path: Path, pos: int) -> None:
        if len(path) > MAX_DEPTH:
            raise NestingTooDeep(self.line(pos))
        if path not in self.lines:
            self.lines[path] = self.line(pos)

    def record_prefixes(self, base: Path, keys: list[str], pos: int) -> None:
        if len(base) + len(keys) > MAX_DEPTH:
            raise NestingTooDeep(self.line(pos))
        for n in range(1, len(keys) + 1):
            self.record((*base, *keys[:n]), pos)

    # -- lexical pieces ------------------------------------------------------
    def skip_string(self) -> None:
        s = self.s
        for q, pattern in (('"""', _ML_BASIC), ("'''", _ML_LITERAL)):
            if s.startswith(q, self.i):
                m = pattern.match(s, self.i)
                if m is None:
                    raise ValueError("unterminated string")
                self.i = m.end()
                return
        m = (_BASIC if s[self.i] == '"' else _LITERAL).match(s, self.i)
        assert m is not None  # the pattern's only mandatory part is the quote seen
        self.i = m.end()

    def string(self) -> str:
        """A quoted key (single line), unescaped the way tomllib does for plain cases."""
        quote = self.s[self.i]
        m = (_BASIC if quote == '"' else _LITERAL).match(self.s, self.i)
        assert m is not None
        self.i = m.end()
        text = m.group(1)
        if quote == '"' and "\\" in text:
            with contextlib.suppress(UnicodeDecodeError, UnicodeEncodeError):
                text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return text

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c in ('"', "'") and c:
                parts.append(self.string())
            else:
                m = _BARE.match(self.s, self.i)
                if m is None:
                    raise ValueError("key expected")
                parts.append(m.group())
                self.i = m.end()
            if len(parts) > MAX_DEPTH:
                raise NestingTooDeep(self.line())
            self.skip_ws()
            if self.peek() == ".":
                self.i += 1
                continue
            return parts

    # -- values ---------------------------------------------------------------
    # Inside a value, a key path is recorded only when it starts on another line
    # than the nearest one recorded above it: a lookup that falls back to the
    # parent (see `line_of`) finds the same line, and `x = [1, 1, ...]` with
    # millions of elements costs one entry, not millions.
    def value(self, path: Path, pline: int) -> None:
        self.skip_ws()
        c = self.peek()
        if c in ('"', "'") and c:
            self.skip_string()
        elif c == "[":
            self.array(path, pline)
        elif c == "{":
            self.inline_table(path, pline)
        else:
            m = _SCALAR.match(self.s, self.i)
            assert m is not None
            if m.end() - m.start() > MAX_SCALAR and len(m.group().rstrip()) > MAX_SCALAR:
                raise ValueTooLong(self.line(m.start()), len(m.group().rstrip()))
            self.i = m.end()

    def mark(self, path: Path, pos: int, pline: int) -> int:
        """Record `path` at `pos` unless that is on line `pline`; return its line."""
        if len(path) > MAX_DEPTH:
            raise NestingTooDeep(self.line(pos))
        line = self.line(pos)
        if line != pline and path not in self.lines:
            self.lines[path] = line
        return line

    def array(self, path: Path, pline: int) -> None:
        self.i += 1  # [
        idx = 0
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == "]":
                self.i += 1
                return
            start = self.i
            if start >= len(self.s):
                raise ValueError("unterminated array")
            element = (*path, idx)
            self.value(element, self.mark(element, start, pline))
            idx += 1
            self.skip_ws(newlines=True)
            if self.peek() == ",":
                self.i += 1
            elif self.i == start:
                raise ValueError("unexpected character in array")

    def inline_table(self, path: Path, pline: int) -> None:
        self.i += 1  # {
        while True:
            self.skip_ws(newlines=True)
            if self.peek() == "}":
                self.i += 1
                return
            start = self.i
            keys = self.key()
            line = pline
            for n in range(1, len(keys) + 1):
                line = self.mark((*path, *keys[:n]), start, pline)
            self.skip_ws()
            self.i += 1  # =
            self.value((*path, *keys), line)
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

    def header(self, keys: list[str], array: bool, start: int) -> Path:
        """Enter the table `[keys]` or a new element of `[[keys]]`; return its path."""
        if len(keys) > MAX_DEPTH:
            raise NestingTooDeep(self.line(start))
        if array:
            arr = (*self.resolve(keys[:-1]), keys[-1])
            self.aot[arr] = self.aot.get(arr, 0) + 1
            table = (*arr, self.aot[arr] - 1)
            self.record(arr, start)
            self.record(table, start)
            return table
        table = self.resolve(keys)
        if len(table) > MAX_DEPTH:
            raise NestingTooDeep(self.line(start))
        for n in range(1, len(table) + 1):
            self.record(table[:n], start)
        return table

    def document(self) -> None:
        table: Path = ()
        s, lines, fast = self.s, self.lines, _STATEMENT.match
        while True:
            m = fast(s, self.i)
            if m is not None:
                key = m.group("k")
                if key is not None:
                    path = (*table, key)
                    if len(path) > MAX_DEPTH:
                        raise NestingTooDeep(self.line(m.start("k")))
                    if path not in lines:
                        lines[path] = self.line(m.start("k"))
                    self.i = m.end()
                    continue
                if len(m.group("o")) == len(m.group("c")):
                    if m.group("h").count(".") >= MAX_DEPTH:
                        raise NestingTooDeep(self.line(m.start("o")))
                    keys = m.group("h").split(".")
                    table = self.header(keys, len(m.group("o")) == 2, m.start("o"))
                    self.i = m.end()
                    continue
            self.skip_ws(newlines=True)
            if self.i >= len(s):
                return
            start = self.i
            if self.s.startswith("[[", self.i):
                self.i += 2
                keys = self.key()
                self.i += 2
                table = self.header(keys, True, start)
            elif self.peek() == "[":
                self.i += 1
                keys = self.key()
                self.i += 1
                table = self.header(keys, False, start)
            else:
                keys = self.key()
                self.record_prefixes(table, keys, start)
                self.skip_ws()
                self.i += 1  # =
                self.value((*table, *keys), self.line(start))


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of `path` in a map from `key_lines`, or of the nearest key above it."""
    for n in range(len(path), 0, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return None


def key_lines(text: str) -> tuple[dict[Path, int], set[Path]]:
    """Map every key path defined in `text` to its 1-based line number.

    A key inside an inline table or array on the line of its parent is left
    out: `line_of` finds it.

    Also returns the paths written as arrays of tables (`[[a.b]]`), which the
    loader may concatenate across files, unlike inline arrays.  Raises
    LimitExceeded for a key path deeper than MAX_DEPTH or a scalar longer than
    MAX_SCALAR; nothing else.
    """
    sc = _Scanner(text)
    with contextlib.suppress(ValueError, IndexError, AssertionError):
        sc.document()
    return sc.lines, set(sc.aot)
