"""The binding cache on disk (SQLite), so that an acknowledged binding survives a crash.

Why: invariant 6 — a binding the home agent acknowledged must come back after
a daemon crash or restart, so it is committed to disk *before* its Binding
Acknowledgement is sent (the engine emits ``PersistBinding`` / ``ForgetBinding``
ahead of the BA for exactly this).

Durability choice
=================

The database runs in WAL mode with ``synchronous=FULL`` (the default here):
every commit fsyncs the WAL, so a committed binding survives a power loss as
well as ``kill -9``. ``synchronous=NORMAL`` only fsyncs at checkpoints; it is
durable against a process crash (the WAL sits in the page cache) but a power
loss may roll back the last transactions. The price of FULL is one fsync per
*transaction*, not per binding, so the daemon persists bursts with group
commit — :meth:`BindingStore.put_many` or the asyncio :class:`WriteBehind`
batcher, which commits everything queued while the previous fsync ran in one
transaction. Measured with ``bench/persistence.py`` (2 vCPU VM, virtio disk,
median puts/s, figures in its docstring): FULL single commits ≈ 5,400/s
(1,600-6,300 with the machine's load; a disk with a 1-5 ms fsync would allow
only 200-1,000/s),
FULL batches of 100 ≈ 46,000/s and of 1000 ≈ 51,000/s, the ``WriteBehind``
batcher under a burst ≈ 35,000/s; NORMAL reaches ≈ 33,000/s single and
≈ 54,000/s batched. With group commit FULL costs ~15 % against NORMAL, so
power-loss durability is kept and the 10,000 refresh BUs/s goal is met.
NORMAL stays available (``synchronous="NORMAL"``) for hosts where power loss
is handled elsewhere.

CPU matters as much as the fsync: a commit costs ~80 µs of CPU (SQLite, WAL
write, fsync path) plus ~4 µs a binding, on the core that also answers the
BUs. Hence the writer's adaptive gathering (≤ ~1,000 commits/s under load)
and put-only batches written as one multi-row statement (one sqlite3 call,
one GIL hand-back per commit); see :class:`WriteBehind`.

Clocks
======

The engine's clock is monotonic and does not survive a reboot, so stored
``registered_at`` / ``expires_at`` are **wall-clock** seconds (Unix time).
:class:`BindingStore` translates with an offset ``wall - engine`` (default
``time.time() - time.monotonic()``) on write and the reverse on
:meth:`~BindingStore.load`, using :meth:`Binding.shifted`. A wall-clock step
while the daemon is down shortens or lengthens the restored lifetimes by the
step; the mobile node's next refresh corrects it.

Failure policy
==============

A database that cannot be opened, is not a mip6ctl binding cache, fails
``PRAGMA quick_check`` or carries a newer schema raises
:class:`PersistenceError` naming the file — never a silently empty cache: the
daemon must refuse to start rather than forget bindings it acknowledged. The
operator's way out is :func:`reset` (``mip6ctl daemon --reset-binding-cache``,
mip6ctl/cli/daemon.py), which moves the file aside for later inspection
instead of deleting it.

A write that fails (``database or disk is full``, an I/O error, a read-only
file system) raises :class:`PersistenceError`: the waiting Binding
Acknowledgements are withheld, and the store says so in its health
(:attr:`BindingStore.healthy`, :attr:`~BindingStore.last_error`): false from
the moment a write fails, true again after the next write that commits. The
daemon reports it as the ``BindingStoreHealthy`` condition of ``mip6ctl
status``. (SQLite rewrites a WAL file in place after a checkpoint, so on a
full disk a small write may still succeed; the first one that needs a new
block fails.)

Files: the database is created mode 0600 in a directory created 0700; SQLite
gives its ``-wal`` / ``-shm`` companions the database's mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Literal

from mip6ctl.engine.binding import Binding

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_FILENAME",
    "RESET_COMMAND",
    "SCHEMA_VERSION",
    "BindingStore",
    "CorruptStore",
    "PersistenceError",
    "SchemaTooNew",
    "WriteBehind",
    "binding_cache_path",
    "reset",
]

_log = logging.getLogger("mip6ctl.daemon.persistence")

#: Version of the on-disk schema, stored in ``meta``; bump with a migration.
SCHEMA_VERSION = 1
DEFAULT_FILENAME = "binding-cache.sqlite"
#: ``PRAGMA application_id`` ("MIP6"): tells our file from any other SQLite file.
APPLICATION_ID = 0x4D495036
#: The command the refusals name (mip6ctl/cli/daemon.py; a test checks that it parses).
RESET_COMMAND = "`mip6ctl daemon --reset-binding-cache`"

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE bindings (
    home_address            TEXT PRIMARY KEY,
    care_of_address         TEXT NOT NULL,
    local_address           TEXT NOT NULL,
    lifetime                INTEGER NOT NULL,
    registered_at           REAL NOT NULL,   -- wall clock, Unix seconds
    expires_at              REAL NOT NULL,   -- wall clock, Unix seconds
    sequence                INTEGER NOT NULL,
    flags                   INTEGER NOT NULL,
    home_registration       INTEGER NOT NULL,
    mobile_network_prefixes TEXT NOT NULL    -- JSON list of prefixes
) WITHOUT ROWID;
"""

_UPSERT = (
    "INSERT OR REPLACE INTO bindings (home_address, care_of_address, local_address, lifetime, "
    "registered_at, expires_at, sequence, flags, home_registration, mobile_network_prefixes) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM bindings WHERE home_address = ?"
#: Largest put-only batch written as one statement (10 parameters a row).
_ONE_STATEMENT_ROWS = 1024
_VALUES_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


@functools.lru_cache(maxsize=16)
def _upsert_rows(n: int) -> str:
    """``_UPSERT`` for ``n`` rows in one statement."""
    return _UPSERT.replace(_VALUES_ROW, ", ".join([_VALUES_ROW] * n))


class PersistenceError(Exception):
    """The binding cache file cannot be used; the message names the file and what to do."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        self.detail = message
        """What went wrong, without the file name (``write failed: database or disk is full``)."""
        super().__init__(f"binding cache {self.path}: {message}")


class CorruptStore(PersistenceError):
    """Not a (healthy) mip6ctl binding cache: corrupt, truncated or a foreign file."""


class SchemaTooNew(PersistenceError):
    """Written by a newer mip6ctl whose schema this version does not understand."""


def binding_cache_path(cfg: Any, state_dir: Path | str | None = None) -> Path:
    """The binding cache file: ``cfg.ha.binding_cache`` or ``STATE_DIR/binding-cache.sqlite``.

    ``state_dir`` (the ``--state-dir`` option) overrides ``cfg.daemon.state_dir``.
    """
    ha = getattr(cfg, "ha", None)
    if ha is not None and ha.binding_cache is not None:
        return Path(ha.binding_cache)
    base = Path(state_dir) if state_dir is not None else Path(cfg.daemon.state_dir)
    return base / DEFAULT_FILENAME


def _default_offset() -> float:
    return time.time() - time.monotonic()


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def _text(address: IPv6Address) -> str:
    """``str(address)``, ~10x cheaper: ``inet_ntop`` gives the same RFC 5952 text except
    for IPv4-mapped addresses (dotted quad), which keep ``str()``'s form."""
    packed = address.packed
    if packed[:12] == _V4_MAPPED:
        return str(address)
    return socket.inet_ntop(socket.AF_INET6, packed)


def _row(b: Binding, offset: float = 0.0) -> tuple[Any, ...]:
    """The row of ``b`` with its times moved by ``offset`` (engine → wall clock)."""
    return (
        _text(b.home_address),
        _text(b.care_of_address),
        _text(b.local_address),
        b.lifetime,
        b.registered_at + offset,
        b.expires_at + offset,
        b.sequence,
        b.flags,
        1 if b.home_registration else 0,
        json.dumps([str(p) for p in b.mobile_network_prefixes])
        if b.mobile_network_prefixes
        else "[]",
    )


def _binding(r: tuple[Any, ...]) -> Binding:
    return Binding(
        home_address=IPv6Address(r[0]),
        care_of_address=IPv6Address(r[1]),
        local_address=IPv6Address(r[2]),
        lifetime=int(r[3]),
        registered_at=float(r[4]),
        expires_at=float(r[5]),
        sequence=int(r[6]),
        flags=int(r[7]),
        home_registration=bool(r[8]),
        mobile_network_prefixes=tuple(IPv6Network(p) for p in json.loads(r[9])),
    )


def _prepare_directory(directory: Path) -> None:
    """Create the state directory 0700 (explicit chmod: the umask must not widen it)."""
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise PersistenceError(directory, f"cannot create the state directory: {e.strerror}") from e


def _create_file(path: Path) -> None:
    """Create an empty database file 0600 before SQLite opens it (no umask window)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise PersistenceError(path, f"cannot create: {e.strerror}") from e
    os.fchmod(fd, 0o600)
    os.close(fd)


class BindingStore:
    """Bindings by home address in SQLite; every write is committed before it returns.

    Not thread-safe by itself: one thread (or :class:`WriteBehind`, which
    serialises its worker thread with the event loop) uses it at a time.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Synchronous = "FULL",
        wall_offset: Callable[[], float] = _default_offset,
        check: bool = True,
    ) -> None:
        """Open or create the store; raise :class:`PersistenceError` rather than lose data.

        ``wall_offset()`` returns ``wall clock - engine clock``; ``check`` runs
        ``PRAGMA quick_check`` (cheap next to the cost of trusting a bad file).
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None
        self._write_behind: WriteBehind | None = None
        self._offset = wall_offset
        self.healthy = True
        """False from the moment a write fails until a write commits again."""
        self.last_error: str | None = None
        """The last write failure (kept after recovery; ``healthy`` says whether it is current)."""
        self.last_error_at: float | None = None
        """Wall-clock time of ``last_error``."""
        self.health_changed_at = time.time()
        """Wall-clock time ``healthy`` last changed (or the store was opened)."""
        self.write_failures = 0
        """Writes that failed since the store was opened."""
        _prepare_directory(self.path.parent)
        existed = self.path.exists() and self.path.stat().st_size > 0
        if self.path.exists() and not stat.S_ISREG(self.path.stat().st_mode):
            raise PersistenceError(self.path, "exists and is not a regular file")
        _create_file(self.path)
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise PersistenceError(
                self.path, f"not readable and writable by uid {os.geteuid()} (run as root?)"
            )
        try:
            # isolation_level=None: transactions are explicit (BEGIN/COMMIT below).
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as e:
            raise PersistenceError(self.path, f"cannot open: {e}") from e
        try:
            self._setup(existed, check)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise CorruptStore(
                self.path,
                f"unreadable or corrupt ({e}); refusing to start with an empty binding cache. "
                f"Inspect the file, or move it aside with {RESET_COMMAND}",
            ) from e
        except PersistenceError:
            self._db.close()
            raise

    def _setup(self, existed: bool, check: bool) -> None:
        db = self._db
        if existed:
            # Reading the header first makes "file is not a database" fail here, before
            # any pragma could write to a foreign file.
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if app_id != APPLICATION_ID or not {"meta", "bindings"} <= tables:
                if app_id == 0 and not tables:
                    existed = False  # an empty database (e.g. created, then crashed)
                else:
                    raise CorruptStore(
                        self.path,
                        "is not a mip6ctl binding cache (application id "
                        f"{app_id:#x}, tables {sorted(tables)}); refusing to use it",
                    )
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise PersistenceError(self.path, f"cannot switch to WAL journal mode (got {mode})")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        if not existed:
            db.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("created_at", str(time.time()))],
            )
            db.execute("COMMIT")
            return
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise CorruptStore(self.path, "has no schema version in its meta table")
        try:
            version = int(row[0])
        except ValueError as e:
            raise CorruptStore(self.path, f"has a bad schema version {row[0]!r}") from e
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                self.path,
                f"has schema version {version}, this mip6ctl understands up to "
                f"{SCHEMA_VERSION}; run the newer mip6ctl that wrote it, or move the file "
                f"aside with {RESET_COMMAND} (its bindings are then lost)",
            )
        if check:
            result = db.execute("PRAGMA quick_check").fetchall()
            if result != [("ok",)]:
                problems = "; ".join(str(r[0]) for r in result[:5])
                raise CorruptStore(
                    self.path,
                    f"fails its integrity check ({problems}); refusing to start with a "
                    f"partial binding cache. Move it aside with {RESET_COMMAND}",
                )

    # ----------------------------------------------------------------- writes

    def put(self, binding: Binding) -> None:
        """Store one binding (engine clock) and commit: durable when this returns."""
        self.apply([binding])

    def put_many(self, bindings: Iterable[Binding]) -> int:
        """Store many bindings in one transaction (group commit: one fsync); returns the count."""
        return self.apply(bindings)

    def delete(self, home_address: IPv6Address) -> None:
        """Remove the binding of ``home_address`` (if any) and commit."""
        self.apply([home_address])

    def apply(self, ops: Iterable[Binding | IPv6Address]) -> int:
        """Puts (a :class:`Binding`) and deletes (an address), in order, in one transaction.

        All or nothing: after a crash either every op of the call is on disk or none.
        A failed write (SQLite or OS error) raises :class:`PersistenceError` and
        marks the store unhealthy; the next write that commits marks it healthy.
        """
        try:
            n = self._apply(ops)
        except PersistenceError as e:
            self._write_failed(e.detail)
            raise
        except OSError as e:
            self._write_failed(f"write failed: {e}")
            raise PersistenceError(self.path, f"write failed: {e}") from e
        if not self.healthy:
            self._write_ok()
        return n

    def health(self) -> dict[str, Any]:
        """``healthy``, ``last_error`` (+ when), ``write_failures``, ``since`` (wall clock)."""
        return {
            "healthy": self.healthy,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "write_failures": self.write_failures,
            "since": self.health_changed_at,
        }

    def _write_failed(self, detail: str) -> None:
        now = time.time()
        self.write_failures += 1
        self.last_error, self.last_error_at = detail, now
        if self.healthy:
            self.healthy = False
            self.health_changed_at = now
            _log.error("binding cache %s: %s; Binding Acknowledgements are withheld "
                       "until a write succeeds", self.path, detail)  # fmt: skip

    def _write_ok(self) -> None:
        self.healthy = True
        self.health_changed_at = time.time()
        _log.warning("binding cache %s: writes succeed again", self.path)

    def _apply(self, ops: Iterable[Binding | IPv6Address]) -> int:
        if not isinstance(ops, list):
            ops = list(ops)
        if 0 < len(ops) <= _ONE_STATEMENT_ROWS and all(isinstance(op, Binding) for op in ops):
            return self._upsert_statement(ops)  # type: ignore[arg-type]
        offset = self._offset()
        db = self._db
        n = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                # consecutive puts go in one executemany (one C loop, not one call each);
                # order between puts and deletes is kept
                rows: list[tuple[Any, ...]] = []
                for op in ops:
                    if isinstance(op, Binding):
                        rows.append(_row(op, offset))
                    elif isinstance(op, IPv6Address):
                        if rows:
                            db.executemany(_UPSERT, rows)
                            rows = []
                        db.execute(_DELETE, (_text(op),))
                    else:
                        raise TypeError(f"not a Binding or an IPv6Address: {op!r}")
                    n += 1
                if rows:
                    db.executemany(_UPSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise PersistenceError(self.path, f"write failed: {e}") from e
        return n

    def _upsert_statement(self, bindings: list[Binding]) -> int:
        """Puts only: one multi-row INSERT in autocommit mode (atomic and durable alone).

        Why: a commit that is a single statement is a single sqlite3 call, so
        :class:`WriteBehind`'s thread takes the GIL back once per commit rather
        than for BEGIN, the inserts and COMMIT each -- every one of those waits
        for the busy event-loop thread to let go of the GIL (a few ms each).
        The row count is padded to a power of two by repeating the last row
        (harmless: the same values again, still last) so that few distinct
        statements exist and sqlite3's statement cache keeps them prepared.
        """
        offset = self._offset()
        n = len(bindings)
        size = 1 << (n - 1).bit_length()
        params: list[Any] = []
        for b in bindings:
            params += _row(b, offset)
        if size > n:
            params += _row(bindings[-1], offset) * (size - n)
        try:
            self._db.execute(_upsert_rows(size), params)
        except sqlite3.Error as e:
            raise PersistenceError(self.path, f"write failed: {e}") from e
        return n

    # ----------------------------------------------------------------- reads

    def load(self, now_wall: float | None = None, engine_now: float | None = None) -> list[Binding]:
        """Bindings still alive at ``now_wall``, in the engine's clock; expired ones are deleted.

        ``now_wall`` defaults to ``time.time()``; the translation to the engine
        clock uses ``engine_now`` when given (``engine_now`` ↔ ``now_wall``),
        else the store's ``wall_offset``. Sorted by home address.
        """
        if now_wall is None:
            now_wall = time.time()
        delta = -self._offset() if engine_now is None else engine_now - now_wall
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM bindings WHERE expires_at <= ?", (now_wall,))
                rows = db.execute("SELECT * FROM bindings").fetchall()
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            out = [_binding(r).shifted(delta) for r in rows]
        except (sqlite3.Error, ValueError, TypeError) as e:
            raise CorruptStore(
                self.path,
                f"cannot read the stored bindings ({e}); refusing to start with a partial "
                f"binding cache. Move it aside with {RESET_COMMAND}",
            ) from e
        out.sort(key=lambda b: int(b.home_address))
        return out

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM bindings").fetchone()[0])

    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    def start_background_checkpoints(self, interval: float = 1.0) -> None:
        """Move WAL checkpoints off the commit path (the daemon's group commit uses this).

        By default SQLite checkpoints inside the COMMIT that grows the WAL past
        1000 pages: copying ~4 MB and an fsync of the database file, a stall of
        tens of ms for every BA waiting on that commit.  Here the committing
        connection never checkpoints; a thread with its own connection runs a
        PASSIVE checkpoint (it never blocks the writer) every ``interval`` s.
        Durability is unchanged: a commit is durable once its WAL frames are
        synced, checkpointed or not.
        """
        if self._checkpointer is not None:
            return
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        stop = threading.Event()

        def run() -> None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            except sqlite3.Error:
                return
            try:
                db.execute(f"PRAGMA synchronous={self.synchronous}")
                while not stop.wait(interval):
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                db.close()

        thread = threading.Thread(target=run, name="binding-store-checkpoint", daemon=True)
        self._checkpointer = (thread, stop)
        thread.start()

    def _stop_checkpoints(self) -> None:
        if self._checkpointer is None:
            return
        thread, stop = self._checkpointer
        self._checkpointer = None
        stop.set()
        thread.join(10.0)
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_autocheckpoint=1000")

    def close(self) -> None:
        """Checkpoint the WAL into the database and close (a clean stop leaves one file).

        A :class:`WriteBehind` on this store first commits what it has queued
        and stops its writer thread (never a commit racing the close).
        """
        wb, self._write_behind = self._write_behind, None
        if wb is not None:
            thread = wb._stop_thread()
            if thread is not None and thread is not threading.current_thread():
                thread.join(30.0)
        self._stop_checkpoints()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def __enter__(self) -> BindingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reset(path: Path | str) -> Path | None:
    """Move a (corrupt, too new or unwanted) binding cache aside; return where it went.

    The API behind ``mip6ctl daemon --reset-binding-cache``: the file and its ``-wal``/``-shm``
    companions are renamed to ``NAME.reset-YYYYmmddTHHMMSS`` (kept for
    inspection, never deleted), so the next open starts an empty cache.
    Returns None when there was nothing to move.
    """
    path = Path(path)
    if not path.exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.reset-{stamp}")
    i = 1
    while target.exists():
        target = path.with_name(f"{path.name}.reset-{stamp}.{i}")
        i += 1
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.replace(companion, Path(f"{target}{suffix}"))
    os.replace(path, target)
    return target


# --------------------------------------------------------------------------- group commit


@dataclass(slots=True)
class _Group:
    """Writes that share one commit future: every op queued while the group was open."""

    ops: list[Binding | IPv6Address]
    done: asyncio.Future[None]


class WriteBehind:
    """Group commit for the daemon: ``await put(b)`` returns once ``b`` is on disk.

    Why: one fsync per Binding Update would cap the HA at the disk's fsync
    rate, and each commit costs ~80 µs of CPU besides (SQLite, WAL write,
    fsync), on the core that also answers the BUs. Requests queue up while the
    previous transaction is being committed (in a dedicated writer thread, so
    the event loop keeps receiving BUs); the writer then commits everything
    queued -- up to ``max_batch`` -- in one transaction and wakes the event
    loop once (``call_soon_threadsafe``) to resolve that batch.

    Adaptive gathering: once the previous commit held ``gather_from`` writes
    or more (load), commits *start* at most every ``gather`` seconds -- the
    writer waits out the rest of the interval so that every write of that
    window joins one transaction (≤ 1/``gather`` commits per second whatever
    the BU rate, at a cost of at most ``gather`` of latency). Under light load
    (smaller commits) a write is committed as soon as the writer is free, so
    latency stays one commit.

    Writes queued while the writer has not picked them up share one future
    (one :class:`asyncio.Future` and one ``set_result`` per commit, not per
    binding); a group never holds more than ``max_batch`` writes. Batches
    commit and resolve in queue order, so once a future is done every write
    queued before it is on disk too.

    The writer is one long-lived thread, not an executor job per batch.
    A failed commit fails every waiter of that batch with
    :class:`PersistenceError` (their BAs must not go out).
    """

    def __init__(
        self,
        store: BindingStore,
        *,
        max_batch: int = 1000,
        gather: float = 0.001,
        gather_from: int = 4,
        background_checkpoints: bool = True,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.gather = gather
        self.gather_from = gather_from
        self._last_size = 0  # writes in the last commit (writer thread)
        if background_checkpoints:
            store.start_background_checkpoints()
        self._queue: deque[_Group] = deque()
        self._open: _Group | None = None  # the last queued group, still accepting writes
        self._cond = threading.Condition(threading.Lock())
        self._idle = False  # the writer waits on _cond for work (guarded by it)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._last_start = -1e9  # monotonic time the last commit started (writer thread)
        self.batches = 0
        """Transactions committed (for status / tests)."""
        self.committed = 0
        """Operations committed."""
        store._write_behind = self

    def put(self, binding: Binding) -> asyncio.Future[None]:
        """Queue ``binding`` now; the returned future is done once it is committed.

        Not a coroutine on purpose: the write is queued at the call, so every
        put of a burst joins the same transaction even when the caller awaits
        them one at a time (a coroutine would only queue when first awaited,
        serialising a burst into one commit per binding), and awaiting a plain
        future costs no task. Puts of one burst usually return the same future.
        """
        return self._submit(binding)

    def delete(self, home_address: IPv6Address) -> asyncio.Future[None]:
        """Queue forgetting the binding of ``home_address``; done once committed."""
        return self._submit(home_address)

    def _submit(self, op: Binding | IPv6Address) -> asyncio.Future[None]:
        if self._closed:
            raise PersistenceError(self.store.path, "the write-behind queue is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._writer, name="binding-store-writer", daemon=True
            )
            self._thread.start()
        cond = self._cond
        with cond:
            g = self._open
            if g is None or len(g.ops) >= self.max_batch:
                g = self._open = _Group([], loop.create_future())
                self._queue.append(g)
            g.ops.append(op)
            if self._idle:
                self._idle = False
                cond.notify()
        return g.done

    def _take(self) -> list[_Group] | None:
        """Under ``_cond``: wait for work (and the gather window); None when stopping."""
        cond, queue = self._cond, self._queue
        while not queue:
            if self._stopping:
                return None
            self._idle = True
            cond.wait()
        # gather: nobody notifies during this wait (``_idle`` is False) but close()
        wait_until = self._last_start + self.gather
        while self._last_size >= self.gather_from and not self._stopping:
            left = wait_until - time.monotonic()
            if left <= 0 or len(queue) > 1:  # > 1 group: max_batch writes are waiting
                break
            cond.wait(left)
        groups = [queue.popleft()]
        n = len(groups[0].ops)
        while queue and n + len(queue[0].ops) <= self.max_batch:
            n += len(queue[0].ops)
            groups.append(queue.popleft())
        if self._open is not None and not queue:
            self._open = None  # taken: later writes start a new group
        return groups

    def _writer(self) -> None:
        """The writer thread: commit what is queued, batch after batch, in order."""
        cond, store = self._cond, self.store
        while True:
            with cond:
                groups = self._take()
            if groups is None:
                return
            self._last_start = time.monotonic()
            ops = groups[0].ops if len(groups) == 1 else [op for g in groups for op in g.ops]
            self._last_size = len(ops)
            error: Exception | None = None
            try:
                store.apply(ops)
            except Exception as e:  # handed to every waiter
                error = e
            else:
                self.batches += 1
                self.committed += len(ops)
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                    loop.call_soon_threadsafe(_resolve, groups, error)

    def _stop_thread(self) -> threading.Thread | None:
        self._closed = True
        with self._cond:
            self._stopping = True
            self._cond.notify()
        return self._thread

    async def close(self) -> None:
        """Commit what is queued, then stop the writer (the store stays open)."""
        thread = self._stop_thread()
        if thread is not None:
            await asyncio.to_thread(thread.join)
            self._thread = None
            # the writer's last call_soon_threadsafe was queued before join returned;
            # one more turn of the loop resolves its waiters
            await asyncio.sleep(0)


def _resolve(groups: list[_Group], error: Exception | None) -> None:
    """On the event loop: wake the waiters of one committed (or failed) batch."""
    for g in groups:
        if not g.done.done():
            if error is None:
                g.done.set_result(None)
            else:
                g.done.set_exception(error)
