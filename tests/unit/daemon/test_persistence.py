"""The SQLite binding cache: durability, clocks, schema versions, refusal to lose data."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from types import SimpleNamespace

import pytest

from mip6ctl.daemon import persistence
from mip6ctl.daemon.persistence import (
    BindingStore,
    CorruptStore,
    PersistenceError,
    SchemaTooNew,
    WriteBehind,
    binding_cache_path,
)
from mip6ctl.engine.binding import Binding

HA = IPv6Address("2001:db8:1::1")
WALL = 1_800_000_000.0  # a fixed wall clock
MONO = 5_000.0  # the engine clock at the same instant
OFFSET = WALL - MONO


def hoa(i: int) -> IPv6Address:
    return IPv6Address(int(IPv6Address("2001:db8:1::1:0")) + i)


def binding(i: int, *, expires_in: float = 400.0, now: float = MONO, seq: int = 1) -> Binding:
    return Binding(
        home_address=hoa(i),
        care_of_address=IPv6Address(int(IPv6Address("2001:db8:2::1:0")) + i),
        local_address=HA,
        lifetime=400,
        registered_at=now,
        expires_at=now + expires_in,
        sequence=seq,
        flags=0xC000,
        home_registration=True,
    )


def open_store(path: Path, **kw: object) -> BindingStore:
    return BindingStore(path, wall_offset=lambda: OFFSET, **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "binding-cache.sqlite"


def test_round_trip_translates_clocks(db: Path) -> None:
    b = Binding(
        hoa(1), hoa(2), HA, 400, MONO - 10, MONO + 390, 7, 0xC400, True,
        (IPv6Network("2001:db8:9::/48"),),
    )  # fmt: skip
    with open_store(db) as s:
        s.put(b)
    # Stored as wall clock ...
    raw = sqlite3.connect(db).execute("SELECT registered_at, expires_at FROM bindings").fetchone()
    assert raw == (WALL - 10, WALL + 390)
    # ... and restored into a *different* engine clock after a "reboot".
    with open_store(db) as s:
        (got,) = s.load(now_wall=WALL + 100, engine_now=20.0)
    assert got == b.shifted(20.0 - (MONO + 100))
    assert got.remaining(20.0) == pytest.approx(290.0)
    assert got.mobile_network_prefixes == (IPv6Network("2001:db8:9::/48"),)


def test_load_drops_and_deletes_expired(db: Path) -> None:
    with open_store(db) as s:
        s.put_many(
            [binding(1, expires_in=50), binding(2, expires_in=500), binding(3, expires_in=100)]
        )
        alive = s.load(now_wall=WALL + 100, engine_now=MONO + 100)
        assert [b.home_address for b in alive] == [hoa(2)]
        assert len(s) == 1  # expired rows are gone from the file, not just filtered


def test_load_default_offset_uses_store_clock(db: Path) -> None:
    with open_store(db) as s:
        s.put(binding(1))
        (got,) = s.load(now_wall=WALL)
    assert got == binding(1)


def test_put_replaces_delete_removes(db: Path) -> None:
    with open_store(db) as s:
        s.put(binding(1, seq=1))
        s.put(binding(1, seq=2))
        s.put(binding(2))
        s.delete(hoa(2))
        s.delete(hoa(99))  # absent: no error
        assert [b.sequence for b in s.load(WALL)] == [2]


def test_apply_is_ordered_and_atomic(db: Path) -> None:
    with open_store(db) as s:
        s.apply([binding(1), hoa(1), binding(2)])
        assert [b.home_address for b in s.load(WALL)] == [hoa(2)]
        with pytest.raises(TypeError):
            s.apply([binding(3), object()])  # type: ignore[list-item]
        assert [b.home_address for b in s.load(WALL)] == [hoa(2)]  # binding(3) rolled back


def test_file_and_directory_modes(tmp_path: Path) -> None:
    old = os.umask(0)  # the widest umask must not widen the files
    try:
        path = tmp_path / "a" / "b" / "cache.sqlite"
        with open_store(path) as s:
            s.put(binding(1))
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)


def test_synchronous_setting(db: Path) -> None:
    for mode, value in (("FULL", 2), ("NORMAL", 1)):
        with open_store(db, synchronous=mode) as s:
            assert s._db.execute("PRAGMA synchronous").fetchone()[0] == value
            assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError):
        open_store(db, synchronous="OFF")


def test_schema_version_recorded(db: Path) -> None:
    with open_store(db) as s:
        assert s.schema_version() == persistence.SCHEMA_VERSION


def test_newer_schema_refused(db: Path) -> None:
    open_store(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNew) as e:
        open_store(db)
    assert str(db) in str(e.value) and "99" in str(e.value)
    assert e.value.path == db


def test_garbage_file_is_an_error_naming_it(db: Path) -> None:
    db.parent.mkdir(mode=0o700)
    db.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CorruptStore) as e:
        open_store(db)
    assert str(db) in str(e.value)
    assert "--reset-binding-cache" in str(e.value)
    assert db.read_bytes().startswith(b"this is not")  # untouched


def test_foreign_sqlite_file_refused(db: Path) -> None:
    db.parent.mkdir(mode=0o700)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(CorruptStore, match="not a mip6ctl binding cache"):
        open_store(db)


def test_corrupt_pages_refused(db: Path) -> None:
    with open_store(db) as s:
        s.put_many(binding(i) for i in range(2000))
    data = bytearray(db.read_bytes())
    assert len(data) > 8 * 4096
    # Scribble over interior pages (keep page 1, the header, intact).
    for off in range(4096 * 2, 4096 * 6):
        data[off] = 0x55
    db.write_bytes(bytes(data))
    with pytest.raises(CorruptStore) as e:
        open_store(db).load(WALL)
    assert str(db) in str(e.value)


def test_unreadable_file_is_an_error(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_store(db).close()
    db.chmod(0)
    if os.geteuid() == 0:  # root reads any file: pretend it could not
        monkeypatch.setattr(persistence.os, "access", lambda *a: False)
    with pytest.raises(PersistenceError, match="not readable") as e:
        open_store(db)
    assert str(db) in str(e.value)


def test_empty_file_is_initialised(db: Path) -> None:
    db.parent.mkdir(mode=0o700)
    db.touch()  # e.g. created, then the daemon died before the schema went in
    with open_store(db) as s:
        assert s.load(WALL) == []


def test_reset_moves_file_aside(db: Path) -> None:
    db.parent.mkdir(mode=0o700)
    db.write_bytes(b"garbage")
    moved = persistence.reset(db)
    assert moved is not None and moved.read_bytes() == b"garbage"
    assert not db.exists()
    with open_store(db) as s:
        assert s.load(WALL) == []
    assert persistence.reset(db.with_name("absent")) is None


def test_binding_cache_path() -> None:
    cfg = SimpleNamespace(ha=None, daemon=SimpleNamespace(state_dir=Path("/var/lib/mip6")))
    assert binding_cache_path(cfg) == Path("/var/lib/mip6/binding-cache.sqlite")
    assert binding_cache_path(cfg, "/tmp/s") == Path("/tmp/s/binding-cache.sqlite")
    cfg.ha = SimpleNamespace(binding_cache=Path("/srv/bc.db"))
    assert binding_cache_path(cfg) == Path("/srv/bc.db")


def test_binding_cache_path_from_real_config() -> None:
    from mip6ctl.config.model import Mip6Config

    cfg = Mip6Config.model_validate({"node": {"role": "cn"}})
    assert binding_cache_path(cfg) == Path("/var/lib/mip6/binding-cache.sqlite")


# --------------------------------------------------------------------------- health (issue 21)


class FailingDb:
    """The store's connection, whose writes raise ``fail`` while it is set."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.fail: BaseException | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if self.fail is not None and sql != "ROLLBACK":
            raise self.fail
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args: object) -> sqlite3.Cursor:
        if self.fail is not None:
            raise self.fail
        return self._db.executemany(sql, *args)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (sqlite3.OperationalError("database or disk is full"), "database or disk is full"),
        (OSError(28, "No space left on device"), "No space left on device"),
    ],
)
@pytest.mark.parametrize("ops", ["put", "mixed"])
def test_failed_write_makes_the_store_unhealthy_until_one_commits(
    db: Path, error: BaseException, expected: str, ops: str
) -> None:
    with open_store(db) as s:
        assert s.health()["healthy"] is True and s.last_error is None
        opened = s.health_changed_at
        fake = FailingDb(s._db)
        s._db = fake  # type: ignore[assignment]
        fake.fail = error
        batch = [binding(1)] if ops == "put" else [binding(1), hoa(2)]
        with pytest.raises(PersistenceError, match=expected) as e:
            s.apply(batch)
        assert str(db) in str(e.value)
        h = s.health()
        assert h["healthy"] is False and h["write_failures"] == 1
        assert h["last_error"] == f"write failed: {error}" and h["since"] >= opened
        failed_at = s.health_changed_at
        with pytest.raises(PersistenceError):
            s.put(binding(3))  # still failing: the transition time stays
        assert s.health_changed_at == failed_at and s.write_failures == 2
        fake.fail = None
        s.put(binding(4))
        assert s.healthy is True and s.health_changed_at >= failed_at
        assert expected in (s.last_error or "")  # kept for the operator, no longer current
        s._db = fake._db
        assert [x.home_address for x in s.load(WALL)] == [hoa(4)]  # nothing half-written


def test_programming_errors_are_not_a_sick_disk(db: Path) -> None:
    with open_store(db) as s:
        with pytest.raises(TypeError):
            s.apply([binding(1), object()])  # type: ignore[list-item]
        assert s.healthy


_FULL_CHILD = textwrap.dedent(
    """
    import resource, signal, sys, os
    from ipaddress import IPv6Address
    from mip6ctl.daemon.persistence import BindingStore, PersistenceError
    from mip6ctl.engine.binding import Binding

    path = sys.argv[1]
    def b(i):
        a = IPv6Address(int(IPv6Address("2001:db8:1::1:0")) + i)
        return Binding(a, a, IPv6Address("2001:db8:1::1"), 400, 0.0, 4e9, 1, 0xC000, True)
    store = BindingStore(path, wall_offset=lambda: 0.0)
    store.put(b(0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    biggest = max(os.path.getsize(p) for p in (path, path + "-wal"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest, hard))
    try:
        store.put_many([b(i) for i in range(1, 200)])  # needs new WAL frames
        print("committed")
    except PersistenceError as e:
        print("failed", store.healthy, store.last_error)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.put(b(500))
    print("recovered", store.healthy, len(store))
    """
)


def test_a_real_os_write_error_is_reported(tmp_path: Path) -> None:
    """The file system refuses to grow the WAL (RLIMIT_FSIZE standing in for a full disk)."""
    out = subprocess.run(
        [sys.executable, "-c", _FULL_CHILD, str(tmp_path / "bc.sqlite")],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    failed, recovered = out.stdout.splitlines()
    assert failed.startswith("failed False write failed: "), failed
    assert recovered == "recovered True 2"


# --------------------------------------------------------------------------- group commit


def test_write_behind_groups_a_burst(db: Path) -> None:
    async def main() -> WriteBehind:
        wb = WriteBehind(open_store(db), max_batch=100)
        await asyncio.gather(*(wb.put(binding(i)) for i in range(500)))
        await wb.delete(hoa(0))
        await wb.close()
        return wb

    wb = asyncio.run(main())
    assert wb.committed == 501
    # The first put commits alone, the rest queue behind it: far fewer transactions.
    assert wb.batches <= 10
    assert len(wb.store.load(WALL)) == 499
    wb.store.close()


def test_put_only_batches_are_one_padded_statement(db: Path) -> None:
    # 3 puts are written as a 4-row statement (last row repeated): same result as 3 puts,
    # and a later put of the same address within a batch still wins.
    with open_store(db) as s:
        assert s.apply([binding(1), binding(2), binding(3)]) == 3
        assert s.apply([binding(4, seq=1), binding(4, seq=7)]) == 2
        got = {b.home_address: b for b in s.load(WALL)}
        assert sorted(got) == [hoa(1), hoa(2), hoa(3), hoa(4)]
        assert got[hoa(4)].sequence == 7
        assert got[hoa(3)] == binding(3)
        # mixed puts and deletes keep their order (the transaction path)
        assert s.apply([hoa(1), binding(1, seq=9), hoa(2)]) == 3
        got = {b.home_address: b for b in s.load(WALL)}
        assert sorted(got) == [hoa(1), hoa(3), hoa(4)] and got[hoa(1)].sequence == 9


def test_write_behind_gathers_under_load(db: Path) -> None:
    """Once commits carry several writes, they are spaced by the gather interval:
    writes trickling in one per loop turn still share transactions."""

    async def main() -> WriteBehind:
        wb = WriteBehind(open_store(db), gather=0.02, gather_from=2)
        futs = [wb.put(binding(i)) for i in range(10)]  # a first, big commit
        await asyncio.gather(*futs)
        t0 = asyncio.get_running_loop().time()
        futs = []
        for i in range(10, 60):
            futs.append(wb.put(binding(i)))
            await asyncio.sleep(0.001)
        await asyncio.gather(*futs)
        elapsed = asyncio.get_running_loop().time() - t0
        await wb.close()
        assert wb.batches <= 2 + elapsed / 0.02 + 1
        return wb

    wb = asyncio.run(main())
    assert wb.committed == 60
    assert len(wb.store.load(WALL)) == 60
    wb.store.close()


def test_write_behind_returns_only_after_commit(db: Path) -> None:
    async def main() -> None:
        store = open_store(db)
        wb = WriteBehind(store)
        await wb.put(binding(1))
        # Visible to a second connection: committed, not merely queued.
        other = sqlite3.connect(db)
        assert other.execute("SELECT count(*) FROM bindings").fetchone()[0] == 1
        other.close()
        await wb.close()
        store.close()

    asyncio.run(main())


def test_write_behind_failure_reaches_waiters(db: Path) -> None:
    async def main() -> None:
        store = open_store(db)
        wb = WriteBehind(store)
        await wb.put(binding(1))
        assert store.healthy
        store._db.close()  # the next commit fails
        with pytest.raises(PersistenceError):
            await wb.put(binding(2))
        assert not store.healthy and store.write_failures == 1  # seen through the batcher too
        assert "closed database" in (store.last_error or "")
        await wb.close()
        with pytest.raises(PersistenceError, match="closed"):
            await wb.put(binding(3))

    asyncio.run(main())


# --------------------------------------------------------------------------- crash


_CHILD = textwrap.dedent(
    """
    import sys
    from ipaddress import IPv6Address
    from mip6ctl.daemon.persistence import BindingStore
    from mip6ctl.engine.binding import Binding

    path, batch = sys.argv[1], int(sys.argv[2])
    store = BindingStore(path, wall_offset=lambda: 0.0)
    base = int(IPv6Address("2001:db8:1::1:0"))
    ha = IPv6Address("2001:db8:1::1")
    flags = 0xC000
    i = 0
    while True:
        bs = [
            Binding(IPv6Address(base + j), IPv6Address(base + j), ha, 400, 0.0, 4e9, 1, flags, True)
            for j in range(i, i + batch)
        ]
        store.put_many(bs)
        i += batch
        sys.stdout.write(f"{i}\\n")  # the "BA": only after the commit returned
        sys.stdout.flush()
    """
)


@pytest.mark.parametrize("batch", [1, 50])
def test_sigkill_keeps_exactly_the_committed(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "bc.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert child.stdout is not None
    acked = 0
    while acked < 40 * batch:
        line = child.stdout.readline()
        assert line, "child died"
        acked = int(line)
    child.send_signal(signal.SIGKILL)  # mid-stream: the child is still writing
    child.wait()
    rest = child.stdout.read().split()
    acked = int(rest[-1]) if rest else acked  # acks written just before the kill
    child.stdout.close()

    with BindingStore(path, wall_offset=lambda: 0.0) as s:
        got = s.load(now_wall=1.0, engine_now=1.0)
    n = len(got)
    # Every acknowledged binding is back; at most the one batch committed between its
    # commit and its ack more; and never part of a batch (a transaction is atomic).
    assert acked <= n <= acked + batch
    assert n % batch == 0
    assert [b.home_address for b in got] == [hoa(i) for i in range(n)]
