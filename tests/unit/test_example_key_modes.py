"""Example key files (issue 21): git checks them out 0644, which mip6ctl refuses.

The examples' READMEs tell the user to ``chmod 600`` them; these tests hold
the READMEs, the refusal's message and ``broken/key-file/EXPECTED`` to what
``mip6ctl validate`` really prints, before and after the chmod.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mip6ctl.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WITH_KEYS = sorted({p.parent.parent for p in EXAMPLES.rglob("keys/*") if p.is_file()})


def checked_out(example: Path, dst: Path) -> Path:
    """A copy with the modes a git checkout gives (0644), whatever this tree has."""
    shutil.copytree(example, dst)
    for f in dst.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    return dst


def test_examples_with_key_files_exist() -> None:
    names = {str(p.relative_to(EXAMPLES)) for p in WITH_KEYS}
    assert names == {
        "broken/key-file",
        "broken/missing-reference",
        "broken/unused-template",
        "production/ha-ipsec",
        "production/mn-multihomed",
        "testbed/ike/ha",
        "testbed/ike/mn",
        "testbed/ipsec/ha",
        "testbed/ipsec/mn",
    }


@pytest.mark.parametrize("example", WITH_KEYS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_readmes_say_chmod_600(example: Path) -> None:
    top = (EXAMPLES / "README.md").read_text()
    rel = example.relative_to(EXAMPLES)
    assert f"chmod 600 examples/{rel}/keys/*" in top or f"examples/{rel}/keys/*" in top, rel
    if example.parent.name == "broken":
        assert f"chmod 600 examples/{rel}/keys/*" in (example.parent / "README.md").read_text()


@pytest.mark.parametrize("example", WITH_KEYS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_as_checked_out_validate_asks_for_chmod_600(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = checked_out(example, tmp_path / "cfg")
    assert main(["validate", "-c", str(d)]) == 1
    err = capsys.readouterr().err
    for key in sorted((d / "keys").iterdir()):
        assert f"key file {key} has mode 0644" in err, err
        assert f"run `chmod 600 {key}`" in err, err


def test_after_chmod_600_the_production_example_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = checked_out(EXAMPLES / "production" / "ha-ipsec", tmp_path / "cfg")
    for key in (d / "keys").iterdir():
        key.chmod(0o600)
    assert main(["validate", "-c", str(d)]) == 0, capsys.readouterr().err


def test_after_chmod_600_key_file_prints_its_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = EXAMPLES / "broken" / "key-file"
    d = checked_out(example, tmp_path / "cfg")
    for key in (d / "keys").iterdir():
        key.chmod(0o600)
    assert main(["validate", "-c", str(d)]) == 1
    printed = [x for x in capsys.readouterr().err.splitlines() if x.startswith(str(d / ""))]
    expected = (example / "EXPECTED").read_text().splitlines()
    assert len(printed) == len(expected), printed
    for got, want in zip(printed, expected, strict=True):
        where, key, text = want.split(": ", 2)
        assert got.startswith(f"{d / where}: {key}: "), (got, want)
        assert text in got, (got, want)
        assert "mode" not in got  # the chmod took: what is left is about the keys
