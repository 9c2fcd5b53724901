"""Load /etc/mip6/*.toml as one *generation*: all valid, or refused with every reason.

Files are read in lexical order and merged: tables merge key by key, an
array of tables (`[[ha.mobile_nodes]]`) concatenates across files so that each
mobile node may live in its own file, and any other key written in two files
is a conflict that names both.  Hidden files and editor leftovers (`.x.toml`,
`x.toml~`) are ignored, so a half-written temporary file never counts.

Every problem carries `file:line` and the key path: syntax errors from
tomllib's position, schema errors through the line map of `locate.py`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mip6ctl.config import checks
from mip6ctl.config.locate import key_lines
from mip6ctl.config.model import Mip6Config
from mip6ctl.config.problems import ConfigError, KeyPath, Problem, format_path
from mip6ctl.config.secrets import KeyInfo

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_EOF = re.compile(r"\s*\(at end of document\)$")


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


def config_files(directory: Path) -> list[Path]:
    """The files that make a generation: *.toml, lexical order, no hidden or backup files."""
    return sorted(p for p in directory.glob("*.toml") if not p.name.startswith(".") and p.is_file())


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
        for local, line in lines.items():
            merged = list(local)
            for i, part in enumerate(local):
                if isinstance(part, int) and tuple(local[:i]) in offsets:
                    merged[i] = part + offsets[tuple(local[:i])]
                    break
            self.origins.setdefault(tuple(merged), (name, line))

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
                dst[key] = [*dst[key], *value]
            else:
                first = _where(self.origins, here)
                self.problems.append(
                    Problem(
                        "conflict",
                        f"defined again; first defined at {first} (a key may be set in one "
                        "file only; arrays of tables like [[ha.mobile_nodes]] may be split)",
                        name,
                        lines.get(here),
                        here,
                    )
                )


def _schema_problems(
    err: ValidationError, origins: dict[KeyPath, tuple[str, int]], data: dict
) -> list[Problem]:
    out = []
    for e in err.errors(include_url=False):
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
        out.append(Problem("schema", msg, file, line, loc))
    return out


def _suggest(loc: KeyPath, data: dict) -> str:
    """'did you mean' for a misspelt key, from the fields the model has there."""
    import difflib  # only on this error path: keeps `validate` start-up short

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
    directory = Path(directory)
    if not directory.is_dir():
        what = "does not exist" if not directory.exists() else "is not a directory"
        raise ConfigError([Problem("io", f"configuration directory {what}", str(directory))])
    files = config_files(directory)
    if not files:
        raise ConfigError(
            [Problem("io", "no *.toml configuration files in this directory", str(directory))]
        )

    problems: list[Problem] = []
    merger = _Merger()
    sources: list[SourceFile] = []
    whole = DirectoryDigest()
    for path in files:
        name = str(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            problems.append(Problem("io", f"cannot read: {e.strerror}", name))
            continue
        sources.append(SourceFile(path, hashlib.sha256(raw).hexdigest(), len(raw)))
        whole.add(path.name, raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            problems.append(Problem("syntax", "not valid UTF-8", name, line))
            continue
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            problems.append(_syntax_problem(e, name, text))
            continue
        lines, aot = key_lines(text)
        merger.add(name, data, lines, aot)

    problems.extend(merger.problems)
    if problems:
        raise ConfigError(_ordered(problems))

    try:
        cfg = Mip6Config.model_validate(merger.doc)
    except ValidationError as e:
        raise ConfigError(_ordered(_schema_problems(e, merger.origins, merger.doc))) from None

    findings, keys = checks.check(cfg, directory, lambda p: _where(merger.origins, p))
    if findings:
        raise ConfigError(
            _ordered(
                [
                    Problem(f.kind, f.message, *_locate(merger.origins, f.path), f.path)
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


def _ordered(problems: list[Problem]) -> list[Problem]:
    """File order, then line order: the way a person fixes them."""
    return sorted(problems, key=lambda p: (p.file or "", p.line or 0))


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
