"""`mip6ctl daemon --reset-binding-cache`: the way out the binding cache's refusals name."""

from __future__ import annotations

import re
import shlex
import shutil
import sqlite3
from pathlib import Path

import pytest

from mip6ctl.cli.main import build_parser, main
from mip6ctl.daemon.persistence import RESET_COMMAND, BindingStore, CorruptStore, SchemaTooNew
from tests.unit.daemon.test_control import ServerThread

EXAMPLE_HA = Path(__file__).resolve().parents[3] / "examples" / "testbed" / "ha"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_HA, config)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return config, state, state / "binding-cache.sqlite"


def args(config: Path, state: Path, sock: Path) -> list[str]:
    return ["-c", str(config), "--state-dir", str(state), "--socket", str(sock)]


def named_command(message: str) -> list[str]:
    """The command a refusal tells the operator to run, as argv after `mip6ctl`."""
    m = re.search(r"`mip6ctl ([^`]+)`", message)
    assert m, message
    return shlex.split(m.group(1))


def test_every_refusal_names_a_command_that_exists(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state, db = setup
    db.write_bytes(b"garbage, not SQLite" * 100)
    with pytest.raises(CorruptStore) as e:
        BindingStore(db)
    argv = named_command(str(e.value))
    assert argv == ["daemon", "--reset-binding-cache"] == named_command(RESET_COMMAND)
    build_parser().parse_args(argv)  # the option exists (a usage error would exit 64)
    # ... and doing what it says works: the file moves aside, the next open is empty
    assert main([*argv, *args(config, state, tmp_path / "c.sock")]) == 0
    out = capsys.readouterr().out
    (moved,) = [p for p in state.iterdir() if p.name.startswith("binding-cache.sqlite.reset-")]
    assert f"moved {db} -> {moved}" in out
    assert moved.read_bytes() == b"garbage, not SQLite" * 100
    assert not db.exists()
    with BindingStore(db) as s:
        assert s.load() == []


def test_too_new_schema_message_and_companions(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state, db = setup
    BindingStore(db).close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(SchemaTooNew) as e:
        BindingStore(db)
    assert named_command(str(e.value)) == ["daemon", "--reset-binding-cache"]
    Path(f"{db}-wal").write_bytes(b"w")  # as a crash leaves them
    Path(f"{db}-shm").write_bytes(b"s")
    assert main(["daemon", "--reset-binding-cache", *args(config, state, tmp_path / "c.sock")]) == 0
    out = capsys.readouterr().out
    (moved,) = [p for p in state.iterdir() if p.name.endswith(tuple("0123456789"))]
    assert f"moved {db}-wal -> {moved}-wal" in out and f"moved {db}-shm -> {moved}-shm" in out
    assert Path(f"{moved}-wal").read_bytes() == b"w" and Path(f"{moved}-shm").read_bytes() == b"s"
    assert sorted(p.name for p in state.iterdir()) == sorted(
        [moved.name, f"{moved.name}-wal", f"{moved.name}-shm"]
    )


def test_nothing_to_reset(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state, db = setup
    assert main(["daemon", "--reset-binding-cache", *args(config, state, tmp_path / "c.sock")]) == 0
    assert f"nothing to reset: {db} does not exist" in capsys.readouterr().out


def test_refused_while_a_daemon_answers(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state, db = setup
    BindingStore(db).close()
    sock = tmp_path / "c.sock"
    with ServerThread(sock, {}):
        assert main(["daemon", "--reset-binding-cache", *args(config, state, sock)]) == 1
    assert "stop it first" in capsys.readouterr().err
    assert db.exists() and [p.name for p in state.iterdir()] == [db.name]


def test_refused_with_an_invalid_configuration(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state, db = setup
    (config / "mip6.toml").write_text("[node]\nrole = 'nope'\n")
    BindingStore(db).close()
    assert main(["daemon", "--reset-binding-cache", *args(config, state, tmp_path / "c.sock")]) == 1
    err = capsys.readouterr().err
    assert "role" in err and "fix it first" in err
    assert db.exists()


def test_binding_cache_setting_is_honoured(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state, _db = setup
    elsewhere = tmp_path / "elsewhere" / "bc.sqlite"
    main_toml = config / "mip6.toml"
    text = main_toml.read_text()
    main_toml.write_text(text.replace("[ha]\n", f'[ha]\nbinding_cache = "{elsewhere}"\n', 1))
    BindingStore(elsewhere).close()
    assert main(["daemon", "--reset-binding-cache", *args(config, state, tmp_path / "c.sock")]) == 0
    assert f"moved {elsewhere} -> " in capsys.readouterr().out
    assert not elsewhere.exists()
