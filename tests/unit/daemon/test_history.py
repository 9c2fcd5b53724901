"""The kept generations (mip6ctl/daemon/history.py): snapshot, prune, restore, pending."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from mip6ctl.daemon.history import History, HistoryError, Pending


@dataclass
class Src:  # the loader's SourceFile: path and hex sha256
    path: Path
    sha256: str


def _write(d: Path, files: dict[str, str]) -> list[Src]:
    d.mkdir(exist_ok=True)
    for p in d.glob("*.toml"):
        p.unlink()
    out = []
    for name, text in files.items():
        (d / name).write_text(text)
        out.append(Src(d / name, hashlib.sha256(text.encode()).hexdigest()))
    return out


def test_record_restore_and_prune(tmp_path: Path) -> None:
    cfg = tmp_path / "etc"
    h = History(tmp_path / "gen", keep=3)
    one = h.record("sha256:aa", _write(cfg, {"10-node.toml": "a", "50-mn.toml": "m"}), "start")
    two = h.record("sha256:bb", _write(cfg, {"10-node.toml": "b"}), "apply")
    assert (one.number, two.number) == (1, 2)
    assert h.before(2) == one
    # going back: 10-node.toml rewritten, 50-mn.toml comes back, an extra file goes
    (cfg / "99-extra.toml").write_text("x")
    changed = h.restore_files(one, cfg)
    assert sorted(changed) == ["10-node.toml", "50-mn.toml", "99-extra.toml"]
    assert {p.name: p.read_text() for p in cfg.glob("*.toml")} == {
        "10-node.toml": "a",
        "50-mn.toml": "m",
    }
    assert not list(cfg.glob(".*")), "no temporary file left behind"
    assert h.restore_files(one, cfg) == []  # already there: nothing written
    # survives a restart; only `keep` generations stay, the oldest go
    for d in ("cc", "dd"):
        h.record(f"sha256:{d}", _write(cfg, {"10-node.toml": d}), "reload")
    again = History(tmp_path / "gen", keep=3)
    assert [r.number for r in again.records] == [2, 3, 4]
    assert [r.digest for r in again.records] == ["sha256:bb", "sha256:cc", "sha256:dd"]
    assert len(list((tmp_path / "gen").iterdir())) == 3


def test_before_skips_the_same_digest(tmp_path: Path) -> None:
    cfg = tmp_path / "etc"
    h = History(tmp_path / "gen")
    h.record("sha256:aa", _write(cfg, {"a.toml": "a"}), "start")
    h.record("sha256:bb", _write(cfg, {"a.toml": "b"}), "apply")
    h.record("sha256:aa", _write(cfg, {"a.toml": "a"}), "rollback")
    assert h.before(3).digest == "sha256:bb"


def test_a_file_edited_after_the_load_is_not_restorable(tmp_path: Path) -> None:
    cfg = tmp_path / "etc"
    h = History(tmp_path / "gen")
    srcs = _write(cfg, {"a.toml": "loaded"})
    (cfg / "a.toml").write_text("edited since")  # the hash no longer matches
    r = h.record("sha256:aa", srcs, "reload")
    assert not r.restorable and r.files == ()
    with pytest.raises(HistoryError):
        h.restore_files(r, cfg)
    assert h.before(2) is None


def test_pending_confirmation_round_trip(tmp_path: Path) -> None:
    h = History(tmp_path / "gen")
    assert h.load_pending() is None
    p = Pending(number=5, digest="sha256:ee", rollback_to=4, deadline=123.0, timeout=3.0)
    h.save_pending(p)
    assert History(tmp_path / "gen").load_pending() == p
    h.save_pending(None)
    assert h.load_pending() is None
    (tmp_path / "gen" / "pending-confirmation.json").write_text("{not json")
    assert h.load_pending() is None  # unreadable: logged, treated as none
