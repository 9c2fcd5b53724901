"""ConfigWatcher against a real directory and inotify, with a fake async reload."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.loader import config_files, load_directory
from mip6ctl.daemon.watch import ConfigWatcher, directory_digest, is_config_name

CFG = '[node]\nrole = "cn"\n'


class FakeReload:
    """Records every call: when, what the directory held, and overlap between calls."""

    def __init__(self, directory: Path, hold: float = 0.0) -> None:
        self.directory = directory
        self.hold = hold
        self.calls: list[tuple[float, dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            files = {p.name: p.read_text() for p in config_files(self.directory)}
            self.calls.append((time.monotonic(), files))
            if self.hold:
                await asyncio.sleep(self.hold)
        finally:
            self.in_flight -= 1


def _run(
    tmp_path: Path,
    body: Callable[[ConfigWatcher, FakeReload, Path], Awaitable[Any]],
    *,
    hold: float = 0.0,
    **kw: Any,
) -> tuple[ConfigWatcher, FakeReload]:
    d = tmp_path / "mip6"
    d.mkdir(exist_ok=True)
    if not (d / "node.toml").exists():
        (d / "node.toml").write_text(CFG)
    fake = FakeReload(d, hold)

    async def main() -> ConfigWatcher:
        w = ConfigWatcher(d, asyncio.get_running_loop(), fake, **kw)
        w.start()
        try:
            await body(w, fake, d)
        finally:
            w.stop()
        return w

    return asyncio.run(main()), fake


async def _until(pred: Callable[[], bool], timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def test_atomic_rename_is_applied_within_a_second(tmp_path: Path) -> None:
    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        tmp = d / ".ansible_tmp1234node.toml"  # what Ansible's atomic_move writes first
        tmp.write_text(CFG + "# v2\n")
        await asyncio.sleep(0.3)
        assert fake.calls == []  # the hidden temporary file alone does nothing
        t0 = time.monotonic()
        os.rename(tmp, d / "node.toml")  # IN_MOVED_TO
        await _until(lambda: len(fake.calls) == 1, 1.0)
        assert fake.calls[0][0] - t0 < 1.0
        assert fake.calls[0][1] == {"node.toml": CFG + "# v2\n"}

    _run(tmp_path, body)


def test_partial_writes_coalesce_into_one_reload_with_the_final_content(tmp_path: Path) -> None:
    final = CFG + "".join(f"# line {i}\n" for i in range(8))

    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        with open(d / "node.toml", "w") as f:  # in place, in pieces
            for i in range(0, len(final), 16):
                f.write(final[i : i + 16])
                f.flush()
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)
        assert len(fake.calls) == 1
        assert fake.calls[0][1] == {"node.toml": final}

    _run(tmp_path, body)


def test_a_thousand_edits_make_few_reloads_never_two_at_once(tmp_path: Path) -> None:
    def edit(d: Path) -> None:
        for i in range(1000):
            (d / "node.toml").write_text(CFG + f"# edit {i}\n")
            if i % 100 == 0:
                time.sleep(0.05)  # spread over more than one debounce period

    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        await asyncio.to_thread(edit, d)
        await _until(lambda: not w.running and w._first is None, 3.0)
        await asyncio.sleep(0.4)

    w, fake = _run(tmp_path, body, hold=0.2)  # a slow reload: edits arrive during it
    assert w.stats.events >= 1000
    assert 1 <= len(fake.calls) <= 10
    assert fake.max_in_flight == 1
    assert fake.calls[-1][1] == {"node.toml": CFG + "# edit 999\n"}


def test_deleting_and_adding_files_reload(tmp_path: Path) -> None:
    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        (d / "extra.toml").write_text("[log]\n")
        await _until(lambda: len(fake.calls) == 1)
        assert set(fake.calls[0][1]) == {"node.toml", "extra.toml"}
        (d / "extra.toml").unlink()
        await _until(lambda: len(fake.calls) == 2)
        assert set(fake.calls[1][1]) == {"node.toml"}

    _run(tmp_path, body)


def test_editor_files_alone_trigger_nothing(tmp_path: Path) -> None:
    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        for name in (".node.toml.swp", "node.toml~", ".hidden.toml", "notes.txt", "4913"):
            (d / name).write_text("junk")
            os.rename(d / name, d / (name + ".x"))
            (d / (name + ".x")).unlink()
        await asyncio.sleep(0.5)

    w, fake = _run(tmp_path, body)
    assert fake.calls == []
    assert w.stats.events == 0 and w.stats.ignored > 0


def test_touch_or_same_bytes_does_not_reload(tmp_path: Path) -> None:
    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        (d / "node.toml").write_text(CFG)  # same bytes, real IN_MODIFY + IN_CLOSE_WRITE
        os.utime(d / "node.toml")
        await asyncio.sleep(0.5)

    w, fake = _run(tmp_path, body)
    assert fake.calls == []
    assert w.stats.events >= 1 and w.stats.unchanged >= 1


def test_change_before_start_is_picked_up(tmp_path: Path) -> None:
    d = tmp_path / "mip6"
    d.mkdir()
    (d / "node.toml").write_text(CFG)
    before = directory_digest(d)
    (d / "node.toml").write_text(CFG + "# edited while the daemon started\n")

    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        await _until(lambda: len(fake.calls) == 1)

    _run(tmp_path, body, initial_digest=before)


def test_directory_removed_and_restored(tmp_path: Path) -> None:
    async def body(w: ConfigWatcher, fake: FakeReload, d: Path) -> None:
        shutil.rmtree(d)
        await _until(lambda: len(fake.calls) == 1)
        assert fake.calls[0][1] == {}
        d.mkdir()
        (d / "node.toml").write_text(CFG)
        await _until(lambda: len(fake.calls) == 2, 4.0)
        (d / "node.toml").write_text(CFG + "# watched again\n")
        await _until(lambda: len(fake.calls) == 3)

    _run(tmp_path, body)


def test_failing_callback_is_counted_and_watching_goes_on(tmp_path: Path) -> None:
    d = tmp_path / "mip6"
    d.mkdir()
    (d / "node.toml").write_text(CFG)
    calls: list[int] = []

    async def boom() -> None:
        calls.append(1)
        raise RuntimeError("bug")

    async def main() -> ConfigWatcher:
        w = ConfigWatcher(d, asyncio.get_running_loop(), boom)
        w.start()
        (d / "node.toml").write_text(CFG + "# 1\n")
        await _until(lambda: len(calls) == 1)
        (d / "node.toml").write_text(CFG + "# 2\n")
        await _until(lambda: len(calls) == 2)
        w.stop()
        return w

    w = asyncio.run(main())
    assert w.stats.failures == 2


def test_digest_is_the_loaders(tmp_path: Path) -> None:
    d = tmp_path / "mip6"
    d.mkdir()
    (d / "b.toml").write_text('[log]\nlevel = "debug"\n')
    (d / "a.toml").write_text(CFG)
    (d / ".a.toml.swp").write_text("junk")
    assert directory_digest(d) == load_directory(d).digest


@pytest.mark.parametrize(
    "name", ["a.toml", ".a.toml", "a.toml~", ".a.toml.swp", "a.TOML", "a.toml.bak", "#a.toml#"]
)
def test_name_rule_matches_config_files(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("")
    assert is_config_name(name) == (config_files(tmp_path) == [tmp_path / name])


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        ConfigWatcher(".", None, FakeReload(Path(".")), debounce=2, max_delay=1)  # type: ignore[arg-type]


def test_a_change_during_the_load_is_looked_at_again(tmp_path: Path) -> None:
    """The daemon loads the files a moment after the watcher hashed them. When the
    load saw other bytes (a burst still going), the watcher must not believe the
    hashed content is running: a burst that ends on exactly that content must still
    be applied (it was lost before: the last edit then looked "unchanged")."""
    d = tmp_path / "mip6"
    d.mkdir()
    (d / "node.toml").write_text(CFG)
    a, b = CFG + "# a\n", CFG + "# b\n"
    loaded: list[str] = []

    async def reload() -> dict[str, str]:
        if not loaded:  # the first load happens while the file already holds "b"
            (d / "node.toml").write_text(b)
        loaded.append((d / "node.toml").read_text())
        return {"generation": load_directory(d).digest}

    async def main() -> None:
        w = ConfigWatcher(d, asyncio.get_running_loop(), reload, debounce=0.05)
        w.start()
        try:
            (d / "node.toml").write_text(a)  # hashed as "a", loaded as "b"
            await _until(lambda: len(loaded) >= 1)
            (d / "node.toml").write_text(a)  # the burst ends on the hashed content
            await _until(lambda: loaded[-1] == a, 3.0)
        finally:
            w.stop()

    asyncio.run(main())
    assert loaded[0] == b and loaded[-1] == a
