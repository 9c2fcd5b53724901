"""Load /etc/mip6/*.toml as one *generation*: all valid, or refused with every reason.

Files are read in lexical order and merged: tables merge key by key, an
array of tables (`[[ha.mobile_nodes]]`) concatenates across files so that each
mobile node may live in its own file, and any other key written in two files
is a conflict that names both.  Hidden files and editor leftovers (`.x.toml`,
`x.toml~`) are ignored, so a half-written temporary file never counts.

Every problem carries `file:line` and the key path: syntax errors from
tomllib's position, schema errors through the line map of `locate.py`.

Bad input is a report, never a traceback: file and directory sizes are
checked before anything is read (MAX_FILE_BYTES, MAX_DIRECTORY_BYTES), the
scanner refuses nesting and values that would exhaust tomllib (LimitExceeded),
and at most MAX_PROBLEMS problems are reported.  Values are tomllib's.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mip6ctl.config import checks
from mip6ctl.config.locate import MAX_DEPTH, LimitExceeded, key_lines, line_of
from mip6ctl.config.model import Mip6Config
from mip6ctl.config.problems import ConfigError, KeyPath, Problem, format_path
from mip6ctl.config.secrets import KeyInfo

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_EOF = re.compile(r"\s*\(at end of document\)$")

MiB = 1024 * 1024
#: Largest configuration file read; checked before parsing.
MAX_FILE_BYTES = 16 * MiB
#: Largest sum of the sizes of a directory's configuration files.
MAX_DIRECTORY_BYTES = 64 * MiB
#: Most problems reported at once (a list of a million bad entries is one mistake).
MAX_PROBLEMS = 1000


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Generation:
    """A validated configuration and where each of its keys came from."""

    config: Mip6Config
    directory: Path
    files: tuple[SourceFile, ...]
    #: content hash of the whole directory: names and bytes of every file, in order
    digest: str
    #: fingerprints of the key files, by key path ("ipsec.mn1.encryption")
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    origins: dict[KeyPath, tuple[str, int]] = field(default_factory=dict, repr=False)

    def where(self, path: KeyPath) -> str:
        return _where(self.origins, path)

    def locate(self, path: KeyPath) -> tuple[str | None, int | None]:
        """(file, line) where `path`, or the nearest key above it, was written."""
        return _locate(self.origins, path)


def config_files(directory: Path) -> list[Path]:
    """The files that make a generation: *.toml, lexical order, no hidden or backup files."""
    found = (p for p in directory.glob("*.toml") if not p.name.startswith(".") and p.is_file())
    return sorted(found, key=lambda p: p.name)  # = Path order here, without its cost


class DirectoryDigest:
    """The content hash of a generation's files: names and bytes, in load order.

    One formula for the loader and the directory watcher, so that "the files
    did not change" means the same thing to both.
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, name: str, raw: bytes) -> None:
        self._h.update(name.encode() + b"\0" + raw + b"\0")

    def hexdigest(self) -> str:
        return "sha256:" + self._h.hexdigest()


def _where(origins: dict[KeyPath, tuple[str, int]], path: KeyPath) -> str:
    for n in range(len(path), -1, -1):
        hit = origins.get(path[:n])
        if hit:
            return f"{hit[0]}:{hit[1]}"
    return "?"


def _locate(
    origins: dict[KeyPath, tuple[str, int]], path: KeyPath
) -> tuple[str | None, int | None]:
    for n in range(len(path), 0, -1):
        hit = origins.get(path[:n])
        if hit:
            return hit
    return None, None


class _Merger:
    """Deep-merges parsed files and records the file:line of every merged key path."""

    def __init__(self) -> None:
        self.aot: set[KeyPath] = set()
        self.doc: dict[str, Any] = {}
        self.origins: dict[KeyPath, tuple[str, int]] = {}
        self.problems: list[Problem] = []

    def add(self, name: str, data: dict[str, Any], lines: dict[KeyPath, int], aot: set) -> None:
        offsets: dict[KeyPath, int] = {}
        self._merge(self.doc, data, (), name, lines, aot, offsets)
        self.aot |= aot
        origins = self.origins
        # shift the indices of elements appended to an array of tables from an earlier
        # file: at the first index whose array is in offsets (shortest array first)
        shifts = sorted(offsets.items(), key=lambda kv: len(kv[0]))
        for local, line in lines.items():
            for arr, shift in shifts:
                n = len(arr)
                if len(local) > n and local[:n] == arr and isinstance(local[n], int):
                    local = (*arr, local[n] + shift, *local[n + 1 :])
                    break
            if local not in origins:
                origins[local] = (name, line)

    def _merge(
        self,
        dst: dict[str, Any],
        src: dict[str, Any],
        path: KeyPath,
        name: str,
        lines: dict[KeyPath, int],
        aot: set,
        offsets: dict[KeyPath, int],
    ) -> None:
        for key, value in src.items():
            here = (*path, key)
            if key not in dst:
                dst[key] = value
            elif isinstance(dst[key], dict) and isinstance(value, dict):
                self._merge(dst[key], value, here, name, lines, aot, offsets)
            elif here in aot and here in self.aot:
                offsets[here] = len(dst[key])
                dst[key].extend(value)  # in place: 20,000 one-node files stay linear
            else:
                first = _where(self.origins, here)
                self.problems.append(
                    Problem(
                        "conflict",
                        f"defined again; first defined at {first} (a key may be set in one "
                        "file only; arrays of tables like [[ha.mobile_nodes]] may be split)",
                        name,
                        line_of(lines, here),
                        here,
                    )
                )


def _schema_problems(
    err: ValidationError, origins: dict[KeyPath, tuple[str, int]], data: dict
) -> list[Problem]:
    out = []
    details = err.errors(include_url=False, include_context=False, include_input=False)
    for e in details[: MAX_PROBLEMS + 1]:
        loc: KeyPath = tuple(p for p in e["loc"] if isinstance(p, int | str))
        msg = e["msg"]
        kind = e["type"]
        if kind == "extra_forbidden":
            msg = "unknown key" + _suggest(loc, data)
        elif kind == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        file, line = _locate(origins, loc)
        out.append(Problem("schema", _clip(msg), file, line, loc))
    return out


def _suggest(loc: KeyPath, data: dict) -> str:
    """'did you mean' for a misspelt key, from the fields the model has there."""
    import difflib  # only on this error path: keeps `validate` start-up short

    if not loc or len(str(loc[-1])) > 64:
        return ""
    model: Any = Mip6Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field_info = getattr(model, "model_fields", {}).get(part)
        if field_info is None:
            return ""
        model = _model_of(field_info.annotation)
        if model is None:
            return ""
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def load_directory(directory: str | Path) -> Generation:
    """Read, merge and validate a configuration directory; raise ConfigError on any problem."""
    # Parsing makes millions of small dicts and tuples and no cycles: the cyclic
    # collector would only rescan them over and over (~40 % of the time for huge files).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(Path(directory))
    finally:
        if collecting:
            gc.enable()


def _load(directory: Path) -> Generation:
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise ConfigError([Problem("io", f"configuration directory {what}", str(directory))])
    files = config_files(directory)
    if not files:
        raise ConfigError(
            [Problem("io", "no *.toml configuration files in this directory", str(directory))]
        )
    problems = _size_problems(directory, files)
    if problems:
        raise ConfigError(_ordered(problems))

    merger = _Merger()
    sources: list[SourceFile] = []
    whole = DirectoryDigest()
    for path in files:
        name = str(path)
        try:
            raw = _read_capped(path)
        except OSError as e:
            problems.append(Problem("io", f"cannot read: {e.strerror or e}", name))
            continue
        if len(raw) > MAX_FILE_BYTES:  # grew since it was measured
            problems.append(_too_large(name, len(raw)))
            continue
        sources.append(SourceFile(path, hashlib.sha256(raw).hexdigest(), len(raw)))
        whole.add(path.name, raw)
        parsed = _parse(raw, name)
        if isinstance(parsed, Problem):
            problems.append(parsed)
            continue
        data, lines, aot = parsed
        try:
            merger.add(name, data, lines, aot)
        except RecursionError:
            problems.append(_too_deep(name, None))

    problems.extend(merger.problems)
    if problems:
        raise ConfigError(_ordered(problems))

    try:
        cfg = Mip6Config.model_validate(merger.doc)
    except ValidationError as e:
        raise ConfigError(_ordered(_schema_problems(e, merger.origins, merger.doc))) from None
    except RecursionError:
        raise ConfigError([_too_deep(str(directory), None)]) from None

    try:
        findings, keys = checks.check(
            cfg, directory, lambda p: _where(merger.origins, p), limit=MAX_PROBLEMS + 1
        )
    except RecursionError:
        raise ConfigError([_too_deep(str(directory), None)]) from None
    if findings:
        raise ConfigError(
            _ordered(
                [
                    Problem(f.kind, _clip(f.message), *_locate(merger.origins, f.path), f.path)
                    for f in findings
                ]
            )
        )
    return Generation(
        config=cfg,
        directory=directory,
        files=tuple(sources),
        digest=whole.hexdigest(),
        keys=keys,
        origins=merger.origins,
    )


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n % MiB else f"{n // MiB} MiB"


def _too_large(name: str, size: int) -> Problem:
    return Problem(
        "limit",
        f"file is {size:,} bytes ({_mib(size)}), more than the limit of {_mib(MAX_FILE_BYTES)} "
        "per file",
        name,
    )


def _too_deep(name: str, line: int | None) -> Problem:
    return Problem(
        "limit",
        f"nesting too deep: arrays and tables may nest at most {MAX_DEPTH} levels",
        name,
        line,
    )


def _size_problems(directory: Path, files: list[Path]) -> list[Problem]:
    """The size limits, checked on the file sizes before anything is read."""
    out: list[Problem] = []
    total = 0
    for path in files:
        try:
            size = path.stat().st_size
        except OSError:
            continue  # reported when it is read
        total += size
        if size > MAX_FILE_BYTES:
            out.append(_too_large(str(path), size))
    if total > MAX_DIRECTORY_BYTES:
        out.append(
            Problem(
                "limit",
                f"the {len(files)} configuration files hold {total:,} bytes ({_mib(total)}), "
                f"more than the limit of {_mib(MAX_DIRECTORY_BYTES)} per directory",
                str(directory),
            )
        )
    return out


def _read_capped(path: Path) -> bytes:
    """The file's bytes, but never more than one byte past MAX_FILE_BYTES."""
    with path.open("rb") as f:
        # read(n) allocates n bytes first: ask for what the file holds, not the limit
        size = min(os.fstat(f.fileno()).st_size, MAX_FILE_BYTES)
        raw = f.read(size + 1)
        if len(raw) > size:  # it grew since: read on, up to the limit
            raw += f.read(MAX_FILE_BYTES + 1 - len(raw))
        return raw


def _parse(
    raw: bytes, name: str
) -> tuple[dict[str, Any], dict[KeyPath, int], set[KeyPath]] | Problem:
    """Decode and parse one file: its data, line map and arrays of tables, or its problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return Problem("syntax", "not valid UTF-8", name, line)
    try:
        lines, aot = key_lines(text)
    except LimitExceeded as e:
        # Not given to tomllib at all: its time grows with the square of the number
        # of parts of a dotted key (`[a.a.a...]`: 8 million fit in 16 MiB), and its
        # number pattern takes ~130 bytes of memory per digit.
        return Problem("limit", e.message, name, e.line)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return _syntax_problem(e, name, text)
    except RecursionError:
        return _too_deep(name, None)
    except ValueError as e:  # an integer too long to convert; never a TOMLDecodeError
        if "digits" in str(e):  # Python's int conversion limit (CVE-2020-10735)
            digits = sys.get_int_max_str_digits()
            m = re.search(f"[0-9][0-9_]{{{max(digits - 1, 1)},}}", text)
            line = text.count("\n", 0, m.start()) + 1 if m else None
            return Problem("limit", f"integer has more than {digits} digits", name, line)
        return Problem("syntax", f"TOML: {_clip(str(e))}", name)
    except Exception as e:  # a parser bug must still be a report, not a traceback
        return Problem("syntax", f"TOML parser failed: {type(e).__name__}: {_clip(str(e))}", name)
    return data, lines, aot


def _clip(message: str, limit: int = 400) -> str:
    """A message of sane length: values quoted in it may be megabytes long."""
    if len(message) <= limit:
        return message
    return f"{message[: limit - 40]}… ({len(message):,} characters)"


def _ordered(problems: list[Problem]) -> list[Problem]:
    """File order, then line order: the way a person fixes them; at most MAX_PROBLEMS."""
    out = sorted(problems, key=lambda p: (p.file or "", p.line or 0))
    if len(out) <= MAX_PROBLEMS:
        return out
    return [
        *out[:MAX_PROBLEMS],
        Problem("limit", f"more problems not shown: at most {MAX_PROBLEMS} are reported"),
    ]


def _syntax_problem(e: tomllib.TOMLDecodeError, name: str, text: str) -> Problem:
    msg = str(e)
    m = _TOML_POS.search(msg)
    if m:
        line = int(m.group(1))
        return Problem("syntax", f"TOML: {msg[: m.start()]} (column {m.group(2)})", name, line)
    if _TOML_EOF.search(msg):
        return Problem(
            "syntax",
            f"TOML: {_TOML_EOF.sub('', msg)} (at end of file)",
            name,
            text.count("\n") + 1,
        )
    return Problem("syntax", f"TOML: {msg}", name)


__all__ = [
    "ConfigError",
    "DirectoryDigest",
    "Generation",
    "Problem",
    "config_files",
    "format_path",
    "load_directory",
]
