"""Every shipped example is valid, and every broken one fails exactly as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mip6ctl.cli.main import main
from mip6ctl.config.loader import load_directory

from .conftest import EXAMPLES, copy_example

VALID = sorted(
    p.parent for p in EXAMPLES.rglob("*.toml") if "broken" not in p.parts
)
VALID = sorted(set(VALID))
BROKEN = sorted(p for p in (EXAMPLES / "broken").iterdir() if p.is_dir())


def test_examples_exist():
    names = {str(p.relative_to(EXAMPLES)) for p in VALID}
    assert {"testbed/ha", "testbed/mn", "testbed/cn"} <= names
    assert len(BROKEN) >= 8


@pytest.mark.parametrize("example", VALID, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_valid_example(example: Path, tmp_path: Path, capsys):
    d = copy_example(example, tmp_path / "cfg")
    gen = load_directory(d)
    assert gen.digest.startswith("sha256:")
    assert main(["validate", "-c", str(d), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["errors"] == []
    assert doc["summary"]["role"] == str(gen.config.node.role)


@pytest.mark.parametrize("example", VALID, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_examples_carry_schema_header(example: Path):
    for f in example.glob("*.toml"):
        first = f.read_text().splitlines()[0]
        assert first.startswith("#:schema "), f
        target = (f.parent / first.split(" ", 1)[1]).resolve()
        assert target == EXAMPLES.parent / "schemas" / "mip6.schema.json"


def _expected(example: Path) -> list[tuple[str, int | None, str, str]]:
    out = []
    for line in (example / "EXPECTED").read_text().splitlines():
        loc, key, text = line.split(": ", 2)
        name, _, lineno = loc.partition(":")
        out.append((name, int(lineno) if lineno else None, key, text))
    return out


@pytest.mark.parametrize("example", BROKEN, ids=lambda p: p.name)
def test_broken_example(example: Path, tmp_path: Path, capsys):
    d = copy_example(example, tmp_path / "cfg")
    assert main(["validate", "-c", str(d), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False
    got = [(Path(e["file"]).name, e["line"], e["key"], e["message"]) for e in doc["errors"]]
    want = _expected(example)
    assert len(got) == len(want), got
    for (gname, gline, gkey, gmsg), (wname, wline, wkey, wtext) in zip(got, want, strict=True):
        assert (gname, gline, gkey) == (wname, wline, wkey), (gname, gline, gkey, gmsg)
        assert wtext in gmsg, gmsg


@pytest.mark.parametrize("example", BROKEN, ids=lambda p: p.name)
def test_broken_example_human_output(example: Path, tmp_path: Path, capsys):
    d = copy_example(example, tmp_path / "cfg")
    assert main(["validate", "-c", str(d)]) == 1
    err = capsys.readouterr().err
    for name, line, key, _text in _expected(example):
        prefix = f"{d / name}:{line}: " + (f"{key}: " if key else "")
        assert prefix in err, err
    assert "nothing applied" in err
