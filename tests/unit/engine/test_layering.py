"""The engine is sans-I/O (DESIGN.md, layers): it imports wire, config and I/O-free stdlib only.

Checked two ways: every ``import`` statement under ``mip6ctl/engine`` against
an allow-list (so a new dependency is a decision, not an accident), and a
fresh interpreter importing the engine must not pull in the layers above it
or an event loop, even indirectly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mip6ctl.engine

ENGINE = Path(mip6ctl.engine.__file__).parent

ALLOWED_PACKAGES = ("mip6ctl.wire", "mip6ctl.config")
ALLOWED_MODULES = frozenset(
    {
        "mip6ctl.rfc6275",  # the RFC's constants, stdlib only, for every layer
        "__future__",
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "hmac",
        "ipaddress",
        "itertools",
        "math",
        "secrets",
        "struct",
        "typing",
    }
)
"""Stdlib without I/O: no sockets, files, processes, clocks or event loops."""

FORBIDDEN_AT_RUNTIME = ("asyncio", "pyroute2", "mip6ctl.kernel", "mip6ctl.daemon", "mip6ctl.state")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative ones stay in engine."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mip6ctl":  # ``from mip6ctl import rfc6275``
                found += [(node.lineno, f"mip6ctl.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _allowed(module: str) -> bool:
    if module in ALLOWED_MODULES:
        return True
    return any(module == p or module.startswith(p + ".") for p in ALLOWED_PACKAGES)


@pytest.mark.parametrize("path", sorted(ENGINE.glob("*.py")), ids=lambda p: p.name)
def test_engine_module_imports_only_wire_config_and_io_free_stdlib(path: Path) -> None:
    bad = [f"{path.name}:{line} imports {m}" for line, m in _imports(path) if not _allowed(m)]
    assert not bad, "the engine is sans-I/O: " + "; ".join(bad)


def test_importing_the_engine_pulls_in_no_io_layer() -> None:
    modules = sorted(
        f"mip6ctl.engine.{p.stem}".removesuffix(".__init__") for p in ENGINE.glob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if any(m == f or m.startswith(f + '.') "
        f"for f in {FORBIDDEN_AT_RUNTIME!r})]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"importing the engine loaded {out}"
