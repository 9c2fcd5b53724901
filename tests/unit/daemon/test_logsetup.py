"""Daemon logs: JSON lines for machines, and never a key file's content."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mip6ctl.config.loader import ConfigError, load_directory
from mip6ctl.daemon.logsetup import JsonFormatter, configure_logging
from mip6ctl.daemon.metrics import MetricsServer
from mip6ctl.daemon.status import GenerationInfo, build_status
from mip6ctl.daemon.watch import ConfigWatcher

ROOT = Path(__file__).resolve().parents[3]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger("mip6ctl")
    saved = (root.handlers[:], root.level, root.propagate)
    yield
    for h in root.handlers:
        if h not in saved[0]:
            h.close()
    root.handlers[:], root.level, root.propagate = saved


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_formatter_one_object_per_line(restore_logging: None) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("mip6ctl.test")
    root = logging.getLogger("mip6ctl")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False

    log.info("plain")
    log.warning('two\nlines and a "quote" and é')
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed: %s", "with args")

    docs = _lines(stream)
    assert len(docs) == 3  # a newline in a message or a traceback never splits a record
    for doc in docs:
        assert {"time", "level", "logger", "message"} <= set(doc)
        assert TIME.match(str(doc["time"]))
        assert doc["logger"] == "mip6ctl.test"
    assert [d["level"] for d in docs] == ["info", "warning", "error"]
    assert docs[1]["message"] == 'two\nlines and a "quote" and é'
    assert docs[2]["message"] == "failed: with args"
    assert "RuntimeError: boom" in str(docs[2]["exception"])
    assert "é" in stream.getvalue()  # ensure_ascii=False: readable in the journal


def test_configure_logging_json_to_a_file(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "mip6ctl.log"
    configure_logging("debug", "auto", str(path))  # a file is not a terminal: JSON
    logging.getLogger("mip6ctl.daemon").debug("one")
    logging.getLogger("mip6ctl.daemon.watch").info("two")
    for h in logging.getLogger("mip6ctl").handlers:
        h.flush()
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(d["logger"], d["message"]) for d in docs] == [
        ("mip6ctl.daemon", "one"),
        ("mip6ctl.daemon.watch", "two"),
    ]


def test_no_key_material_in_logs_or_metrics_on_the_reload_path(
    tmp_path: Path, restore_logging: None
) -> None:
    """Hot reload of an IPsec configuration, good then broken keys: no key byte is logged."""
    d = tmp_path / "mip6"
    shutil.copytree(ROOT / "examples" / "production" / "ha-ipsec", d)
    enc, auth = os.urandom(16).hex(), os.urandom(32).hex()
    short = os.urandom(10).hex()  # an 80-bit key: refused, and the error must not show it
    (d / "keys" / "mn1.enc").write_text(enc + "\n")
    (d / "keys" / "mn1.auth").write_text(auth + "\n")
    for key in (d / "keys").iterdir():
        key.chmod(0o600)
    secrets = [enc, auth, short, enc.upper(), auth.upper(), short.upper()]

    stream = io.StringIO()
    configure_logging("debug", "json")
    logging.getLogger("mip6ctl").handlers[0].setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("mip6ctl.daemon")
    outcomes: list[str] = []
    expositions: list[bytes] = []

    async def reload() -> None:
        # What Daemon.reload logs, plus the metrics a scrape would see next.
        try:
            gen = load_directory(d)
        except ConfigError as e:
            msg = "; ".join(str(p) for p in e.problems[:5])
            log.error("reload refused, keeping generation %d: %s", 1, msg)
            outcomes.append("refused")
            return
        fingerprints = {k: v.fingerprint for k, v in gen.keys.items()}
        log.info("configuration generation applied (%s) keys %s", gen.digest[:19], fingerprints)
        doc = build_status(
            "ha", gen.config, GenerationInfo(gen.digest, 2, 2), [], {}, [], [], time.monotonic(),
            started_at=time.monotonic(),
        )  # fmt: skip
        expositions.append(MetricsServer("127.0.0.1", 0, lambda: doc).render())
        outcomes.append("applied")

    async def main() -> None:
        w = ConfigWatcher(d, asyncio.get_running_loop(), reload, initial_digest="sha256:none")
        w.start()  # differs from the directory: one reload at once
        try:
            await _until(lambda: outcomes == ["applied"])
            (d / "keys" / "mn1.enc").write_text(short + "\n")
            ipsec = d / "20-ipsec.toml"
            ipsec.write_text(ipsec.read_text() + "\n# rotated\n")
            await _until(lambda: outcomes == ["applied", "refused"])
        finally:
            w.stop()

    asyncio.run(main())
    text = stream.getvalue()
    assert "sha256:" in text and "holds a 80-bit key" in text  # the logs did say something
    for line in text.splitlines():
        json.loads(line)
    for secret in secrets:
        assert secret not in text
        for exposition in expositions:
            assert secret.encode() not in exposition


async def _until(pred: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
