"""The generations a daemon has run, kept on disk so an operator can go back to one.

Why on disk and not in memory: a rollback must restore the *files* of the
configuration directory, not only the kernel state, or the next hot reload
would apply the rolled-back change again; and the history must survive the
daemon (``mip6ctl history`` after a restart still shows what ran before).

Layout under the state directory::

    generations/
      0007-3f2a9c1b0d4e/        number, the first 12 hex digits of the digest
        meta.json               number, digest, applied_at, source, files
        files/50-mn-a.toml      the bytes the generation was loaded from
      pending-confirmation.json while an `apply --confirm-timeout` awaits `confirm`

A snapshot is written to a temporary name and renamed, so a crash never
leaves half a generation; one whose files changed on disk between the load
and the snapshot (their hash no longer matches) is recorded without files and
cannot be rolled back to.  Key files are referenced by path and are not
copied: a rollback restores the TOML that names them (secrets never land in
the history).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: how many generations are kept (the running one included)
KEEP = 10
PENDING = "pending-confirmation.json"


@dataclass(frozen=True, slots=True)
class Record:
    """One generation as the history knows it."""

    number: int
    digest: str
    applied_at: float
    #: "start" | "reload" | "apply" | "rollback"
    source: str
    files: tuple[str, ...] = ()
    #: False when the files could not be kept (changed on disk before the snapshot)
    restorable: bool = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = list(self.files)
        return d


@dataclass(frozen=True, slots=True)
class Pending:
    """An applied generation that rolls back unless confirmed by `deadline` (wall clock)."""

    number: int
    digest: str
    rollback_to: int
    deadline: float
    timeout: float
    requested_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HistoryError(Exception):
    """A rollback target that does not exist or cannot be restored."""


class History:
    """The kept generations of one daemon, newest last."""

    def __init__(self, root: Path, keep: int = KEEP) -> None:
        self.root = root
        self.keep = keep
        self.records: list[Record] = []
        self._load()

    # ------------------------------------------------------------------ reading

    def _load(self) -> None:
        if not self.root.is_dir():
            return
        for d in sorted(self.root.iterdir()):
            if d.name.startswith(".") or not d.is_dir():
                continue
            try:
                meta = json.loads((d / "meta.json").read_text())
                self.records.append(
                    Record(
                        number=int(meta["number"]),
                        digest=str(meta["digest"]),
                        applied_at=float(meta["applied_at"]),
                        source=str(meta["source"]),
                        files=tuple(meta.get("files", ())),
                        restorable=bool(meta.get("restorable", True)),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("generation history: ignoring %s: %s", d, e)
        self.records.sort(key=lambda r: r.number)

    @property
    def last_number(self) -> int:
        return self.records[-1].number if self.records else 0

    def get(self, number: int) -> Record | None:
        return next((r for r in self.records if r.number == number), None)

    def before(self, number: int) -> Record | None:
        """The newest restorable generation older than `number` with another digest."""
        current = self.get(number)
        digest = current.digest if current is not None else None
        for r in reversed(self.records):
            if r.number < number and r.restorable and r.digest != digest:
                return r
        return None

    def _dir(self, r: Record) -> Path:
        return self.root / f"{r.number:04d}-{r.digest.removeprefix('sha256:')[:12]}"

    # ------------------------------------------------------------------ writing

    def record(
        self, digest: str, sources: Iterable[Any], source: str, now: float | None = None
    ) -> Record:
        """Keep the generation just applied: `sources` are the loader's SourceFiles."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        files: dict[str, bytes] = {}
        restorable = True
        for sf in sources:
            try:
                raw = Path(sf.path).read_bytes()
            except OSError:
                restorable = False
                break
            if hashlib.sha256(raw).hexdigest() != sf.sha256.removeprefix("sha256:"):
                restorable = False  # edited again since the load: not this generation's bytes
                break
            files[Path(sf.path).name] = raw
        rec = Record(
            number=self.last_number + 1,
            digest=digest,
            applied_at=time.time() if now is None else now,
            source=source,
            files=tuple(sorted(files)) if restorable else (),
            restorable=restorable,
        )
        final = self._dir(rec)
        tmp = self.root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "files").mkdir(parents=True)
        if restorable:
            for name, raw in files.items():
                (tmp / "files" / name).write_bytes(raw)
        (tmp / "meta.json").write_text(json.dumps(rec.as_dict(), indent=1) + "\n")
        os.replace(tmp, final)
        self.records.append(rec)
        self._prune()
        return rec

    def _prune(self) -> None:
        while len(self.records) > self.keep:
            old = self.records.pop(0)
            shutil.rmtree(self._dir(old), ignore_errors=True)

    def restore_files(self, r: Record, config_dir: Path) -> list[str]:
        """Make `config_dir`'s *.toml files exactly those of generation `r`.

        Each file is written under a hidden name (the loader ignores those) and
        renamed into place; files the generation did not have go last.  Returns
        the names written or removed.
        """
        if not r.restorable:
            raise HistoryError(f"generation {r.number}: its files were not kept")
        src = self._dir(r) / "files"
        changed: list[str] = []
        for name in r.files:
            raw = (src / name).read_bytes()
            target = config_dir / name
            with contextlib.suppress(OSError):
                if target.read_bytes() == raw:
                    continue
            tmp = config_dir / f".{name}.mip6-rollback"
            with open(tmp, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            changed.append(name)
        keep = set(r.files)
        for p in sorted(config_dir.glob("*.toml")):
            if p.name not in keep and not p.name.startswith("."):
                p.unlink()
                changed.append(p.name)
        return changed

    # ------------------------------------------------------------------ pending confirmation

    def save_pending(self, p: Pending | None) -> None:
        path = self.root / PENDING
        if p is None:
            path.unlink(missing_ok=True)
            return
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = self.root / f".{PENDING}.tmp"
        tmp.write_text(json.dumps(p.as_dict()) + "\n")
        os.replace(tmp, path)

    def load_pending(self) -> Pending | None:
        try:
            d = json.loads((self.root / PENDING).read_text())
            return Pending(**d)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as e:
            log.warning("generation history: unreadable %s: %s", PENDING, e)
            return None
