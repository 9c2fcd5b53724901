"""Issue 21, the daemon's side of a failing binding cache: BAs withheld, the
``BindingStoreHealthy`` condition and acknowledged / pending bindings in ``status``.

The real :class:`~mip6ctl.daemon.app.Daemon` action executor, engine, binding
store and group-commit writer; only the kernel (a reconcile loop that always
succeeds at once) and the packet transport (a list) are fakes.  The store's
connection fails on demand like a full disk (``database or disk is full``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mip6ctl.daemon.app import Daemon
from mip6ctl.daemon.persistence import BindingStore, WriteBehind
from mip6ctl.daemon.workqueue import OK
from mip6ctl.engine import Engine
from mip6ctl.wire.mh import BindingAcknowledgement
from tests.unit.daemon.test_persistence import FailingDb
from tests.unit.engine.helpers import HOA, HOA2, ha_config, home_bu


class FakeLoop:
    """The reconcile loop's surface the executor uses: every key is in sync at once."""

    def set_binding(self, b: Any) -> None:
        pass

    def remove_binding(self, hoa: Any) -> None:
        pass

    async def wait_reconciled(self, key: Any, timeout: float) -> Any:
        return OK

    def status(self) -> dict[str, Any]:
        return {"conditions": []}


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, a: Any) -> None:
        self.sent.append(a)

    def bas(self) -> list[tuple[str, int, int]]:
        """(home address, status, sequence) of every BA sent."""
        return [
            (str(a.routing_header_address or a.dst), a.message.status, a.message.sequence)
            for a in self.sent
            if isinstance(a.message, BindingAcknowledgement)
        ]


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def daemon(tmp_path: Path) -> tuple[Daemon, FakeTransport, FailingDb]:
    cfg = ha_config()
    d = Daemon(tmp_path / "config", state_dir=tmp_path / "state")
    d.gen = SimpleNamespace(config=cfg, digest="sha256:test", keys={})  # type: ignore[assignment]
    d.generation_number = 1
    d.engine = Engine(cfg, d.clock())
    d.store = BindingStore(tmp_path / "state" / "binding-cache.sqlite")
    d.acks.restored(d.store.load(), d.engine.cache)
    fake = FailingDb(d.store._db)
    d.store._db = fake
    d.writer_behind = WriteBehind(d.store, background_checkpoints=False)
    d.loop = FakeLoop()
    transport = FakeTransport()
    d.transport = transport
    return d, transport, fake


def packet(d: Daemon, seq: int, **kw: Any) -> None:
    """What ``_on_packets`` does with one decoded BU."""
    assert d.engine is not None
    actions = d.engine.handle(home_bu(seq, **kw), d.clock())
    d._execute_now(actions, 0, [])


def rows(doc: dict[str, Any]) -> dict[str, bool | None]:
    return {r["home_address"]: r["acknowledged"] for r in doc["binding_cache"]["rows"]}


def store_condition(doc: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in doc["conditions"] if c["type"] == "BindingStoreHealthy"]
    return c


def test_full_disk_withholds_the_ba_and_status_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        d, transport, db = daemon(tmp_path)
        try:
            # a healthy registration: reconciled, written, acknowledged
            packet(d, 1)
            await until(lambda: len(transport.bas()) == 1)
            assert transport.bas() == [(str(HOA), 0, 1)]
            doc = await d._rpc_status({})
            c = store_condition(doc)
            assert (c["status"], c["reason"], c["message"]) == ("True", "Writable", "")
            assert rows(doc) == {str(HOA): True} and doc["binding_cache"]["pending"] == 0

            # the disk fills: a refresh (no kernel work, straight to the write) and a
            # first registration (after the kernel) are accepted, never acknowledged
            db.fail = sqlite3.OperationalError("database or disk is full")
            packet(d, 2)
            packet(d, 1, hoa=HOA2)
            await until(lambda: caplog.text.count("BA withheld") == 2)  # one commit or two
            await asyncio.sleep(0.05)  # a BA would have gone out by now
            assert transport.bas() == [(str(HOA), 0, 1)]
            doc = await d._rpc_status({})
            c = store_condition(doc)
            assert (c["status"], c["reason"]) == ("False", "WriteFailed")
            assert "database or disk is full" in c["message"]
            assert str(d.store.path) in c["message"] and "withheld" in c["message"]
            assert rows(doc) == {str(HOA): False, str(HOA2): False}
            assert doc["binding_cache"]["pending"] == 2
            assert doc["counters"]["bas_sent"] == 1
            assert d.store.write_failures >= 1

            # space again: the next BU is acknowledged and the condition recovers
            db.fail = None
            packet(d, 3)
            await until(lambda: len(transport.bas()) == 2)
            assert transport.bas()[-1] == (str(HOA), 0, 3)
            doc = await d._rpc_status({})
            c = store_condition(doc)
            assert (c["status"], c["reason"]) == ("True", "Writable")
            assert "recovered" in c["message"] and "disk is full" in c["message"]
            assert rows(doc) == {str(HOA): True, str(HOA2): False}
            assert doc["binding_cache"]["pending"] == 1
        finally:
            d.store.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks


def test_restored_bindings_count_as_acknowledged(tmp_path: Path) -> None:
    async def first() -> None:
        d, transport, _db = daemon(tmp_path)
        try:
            packet(d, 5)
            await until(lambda: len(transport.bas()) == 1)
        finally:
            d.store.close()

    async def second() -> None:
        d, _transport, _db = daemon(tmp_path)  # restart: the cache comes back from disk
        try:
            assert d.engine is not None
            d.engine.restore(d.store.load(), d.clock())
            d.acks.restored(d.store.load(), d.engine.cache)
            doc = await d._rpc_status({})
            assert rows(doc) == {str(HOA): True} and doc["binding_cache"]["pending"] == 0
        finally:
            d.store.close()

    asyncio.run(first())
    asyncio.run(second())
