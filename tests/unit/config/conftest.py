from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


def copy_example(src: Path, dst: Path) -> Path:
    """Copy an example and give key files the 0600 mode git cannot store."""
    shutil.copytree(src, dst)
    for key in dst.rglob("keys/*"):
        key.chmod(0o600)
    return dst


@pytest.fixture(autouse=True)
def _no_kernel_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never probe the kernel: `validate`'s IPsec host check sees no answer
    (as without root) and says it was skipped.  Tests of that check patch it again."""
    from mip6ctl.cli import validate

    monkeypatch.setattr(validate, "kernel_capabilities", lambda: [])


@pytest.fixture
def write(tmp_path: Path):
    """write({"a.toml": "..."}) -> config directory holding those files."""

    def _write(files: dict[str, str | bytes], directory: Path | None = None) -> Path:
        d = directory or tmp_path / "mip6"
        d.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        return d

    return _write


HA_MIN = """\
[node]
role = "ha"

[ha]
interfaces = ["home0"]
home_prefixes = ["2001:db8:1::/64"]
"""
