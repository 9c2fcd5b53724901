"""The layering of DESIGN.md, checked on the source: imports and calls read with `ast`.

Nothing under mip6ctl/ is imported; every ``.py`` file is parsed and its
import statements and calls are matched against the rules below, which are
data so they can be read (and changed) in one place:

(a) kernel access stays in mip6ctl/kernel/: no module outside it creates an
    AF_NETLINK, AF_PACKET or SOCK_RAW socket, or imports pyroute2.
    mip6ctl/testbed/ is exempt: it builds test topologies (namespaces, veth,
    radvd) for the netns tier and the demo, never the daemon's kernel state;
    so is mip6ctl/demo.py, which pings across such a topology.
(b) mip6ctl/engine and mip6ctl/wire are sans-I/O: they import no I/O module;
    mip6ctl/wire imports only the standard library and mip6ctl.wire.
(c) mip6ctl/config depends on nothing above it (state, kernel, daemon).
(d) one writer: only the plan executor (kernel/reconciler.py,
    kernel/executor.py) and the module defining each writer call the
    writers' write methods (DESIGN.md invariant 1).

`PENDING` lists the violations the tree has today and that the one-writer
restructuring removes.  The test fails on a violation not listed there *and*
on a listed one that no longer occurs, so the list can only shrink.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mip6ctl"

# --------------------------------------------------------------------------- the rules, as data

#: (a) where raw kernel sockets and pyroute2 may be used, and why the exemption
KERNEL_ACCESS_ALLOWED = {
    "mip6ctl/kernel/": "the kernel layer",
    "mip6ctl/testbed/": "builds test topologies for the netns tier and the demo",
    "mip6ctl/demo.py": "drives the testbed: pings from inside the CN namespace it built",
}
RAW_SOCKET_CONSTANTS = {"AF_NETLINK", "AF_PACKET", "SOCK_RAW"}
#: the same constants by value: AF_NETLINK 16, AF_PACKET 17 (family); SOCK_RAW 3 (type)
RAW_FAMILIES, RAW_TYPES = {16, 17}, {3}
KERNEL_ONLY_IMPORTS = ("pyroute2",)

#: (b) sans-I/O packages and what they must not import
IO_MODULES = (
    "socket",
    "select",
    "selectors",
    "asyncio",
    "subprocess",
    "pyroute2",
    "ctypes",
    "mip6ctl.kernel",
    "mip6ctl.daemon",
)
SANS_IO = ("mip6ctl/engine/", "mip6ctl/wire/")
#: packages that may import only the standard library and these prefixes
STDLIB_ONLY = {"mip6ctl/wire/": ("mip6ctl.wire",)}

#: (c) package -> module prefixes it must not import
FORBIDDEN_IMPORTS = {
    "mip6ctl/config/": ("mip6ctl.state", "mip6ctl.kernel", "mip6ctl.daemon"),
}


@dataclass(frozen=True)
class WriteCall:
    """Calls that write kernel state through one writer.

    A call matches when its name is in ``functions`` (any receiver, or a bare
    name), or its method name matches ``methods`` and its receiver is an
    instance of one of ``types`` (bound from a constructor call in the same
    module, or constructed in place) or has a name matching ``receiver``.
    """

    name: str
    defined_in: str
    functions: frozenset[str] = frozenset()
    methods: str = ""  # regex on the method name
    types: frozenset[str] = frozenset()
    receiver: str = ""  # regex on the receiver's last name (case-insensitive)


WRITE_CALLS = (
    WriteCall(
        "Writer.apply",
        "mip6ctl/kernel/writer.py",
        methods=r"^apply$",
        types=frozenset({"Writer"}),
        receiver=r"writer",
    ),
    WriteCall(
        "XfrmSocket add_/update_/delete_",
        "mip6ctl/kernel/xfrm.py",
        methods=r"^(add|update|delete)_",
        types=frozenset({"XfrmSocket"}),
        receiver=r"xfrm",
    ),
    WriteCall(
        "nft install_/remove_",
        "mip6ctl/kernel/nft.py",
        functions=frozenset({"install_signalling_drop", "remove_signalling_drop", "remove_table"}),
    ),
    WriteCall(
        "ReverseTunnelCheck add/remove",
        "mip6ctl/kernel/nft.py",
        methods=r"^(add|remove|remove_all|ensure)$",
        types=frozenset({"ReverseTunnelCheck"}),
        receiver=r"reverse_tunnel|rtcheck|rt_check",
    ),
    WriteCall(
        "set_seg6_tunsrc",
        "mip6ctl/kernel/genl.py",
        functions=frozenset({"set_seg6_tunsrc"}),
    ),
)
#: the plan executor: the only callers of the writers' write methods
PLAN_EXECUTOR = ("mip6ctl/kernel/reconciler.py", "mip6ctl/kernel/executor.py")
#: other modules allowed to call writers, and why
WRITE_EXEMPT = {
    "mip6ctl/kernel/probe.py": "writes throw-away probe objects inside a namespace it creates",
}

#: Known violations, as "rule: path: what" (none: the one-writer restructuring removed
#: them; an entry here must name a violation that still occurs).
PENDING: frozenset[str] = frozenset()

# --------------------------------------------------------------------------- the checker


@dataclass(frozen=True, order=True)
class Violation:
    rule: str
    path: str
    what: str
    line: int = 0

    @property
    def key(self) -> str:
        return f"{self.rule}: {self.path}: {self.what}"


def _under(path: str, prefixes: object) -> bool:
    return any(path.startswith(p) for p in prefixes)  # type: ignore[attr-defined]


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _module_of(path: str) -> str:
    parts = path[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(tree: ast.AST, path: str) -> list[tuple[int, str, str]]:
    """(line, imported module, full name) per import; relative imports resolved."""
    pkg = _module_of(path).split(".")
    if not path.endswith("__init__.py"):
        pkg = pkg[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            out += [(node.lineno, base, f"{base}.{a.name}") for a in node.names]
    return out


def _last_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _last_name(node.func)
    return ""


def _constructed(tree: ast.AST) -> dict[str, str]:
    """Names (or attribute names) bound from a constructor call: name -> class name."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        pairs: list[tuple[ast.AST, ast.AST | None]] = []
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, ast.AnnAssign):
            pairs = [(node.target, node.value)]
        elif isinstance(node, ast.With | ast.AsyncWith):
            pairs = [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars]
        for target, value in pairs:
            if isinstance(value, ast.Call) and _last_name(target):
                out[_last_name(target)] = _last_name(value.func)
    return out


def _raw_socket(call: ast.Call) -> str | None:
    """The raw-socket constant a socket() call uses, if any."""
    if _last_name(call.func) != "socket":
        return None
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        for n in ast.walk(arg):
            name = _last_name(n) if isinstance(n, ast.Name | ast.Attribute) else ""
            if name in RAW_SOCKET_CONSTANTS:
                return name
    args = call.args
    if args and isinstance(args[0], ast.Constant) and args[0].value in RAW_FAMILIES:
        return {16: "AF_NETLINK", 17: "AF_PACKET"}[args[0].value]
    if len(args) > 1 and isinstance(args[1], ast.Constant) and args[1].value in RAW_TYPES:
        return "SOCK_RAW"
    return None


def _write_call(call: ast.Call, bound: dict[str, str]) -> WriteCall | None:
    name = _last_name(call.func)
    recv = call.func.value if isinstance(call.func, ast.Attribute) else None
    for rule in WRITE_CALLS:
        if name in rule.functions:
            return rule
        if recv is None or not rule.methods or not re.search(rule.methods, name):
            continue
        rname = _last_name(recv)
        rtype = _last_name(recv.func) if isinstance(recv, ast.Call) else bound.get(rname, "")
        if rtype in rule.types or (rule.receiver and re.search(rule.receiver, rname, re.I)):
            return rule
    return None


def check_source(source: str, path: str) -> list[Violation]:
    """Every violation of the rules in one module; `path` is relative to the repository."""
    tree = ast.parse(source, filename=path)
    out: list[Violation] = []
    kernel_ok = _under(path, KERNEL_ACCESS_ALLOWED)
    for line, module, full in _imports(tree, path):
        if not kernel_ok and _matches(full, KERNEL_ONLY_IMPORTS):
            out.append(Violation("a", path, f"imports {module}", line))
        if _under(path, SANS_IO) and _matches(full, IO_MODULES):
            out.append(Violation("b", path, f"imports {module}", line))
        for prefix, allowed in STDLIB_ONLY.items():
            top = module.split(".")[0]
            if (
                path.startswith(prefix)
                and module
                and top not in sys.stdlib_module_names
                and not _matches(module, allowed)
            ):
                out.append(Violation("b", path, f"imports non-stdlib {module}", line))
        for prefix, banned in FORBIDDEN_IMPORTS.items():
            if path.startswith(prefix) and _matches(full, banned):
                out.append(Violation("c", path, f"imports {module}", line))
    bound = _constructed(tree)
    write_ok = path in PLAN_EXECUTOR or path in WRITE_EXEMPT
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if not kernel_ok and (const := _raw_socket(node)):
            out.append(Violation("a", path, f"{const} socket", node.lineno))
        if not write_ok and (rule := _write_call(node, bound)) and path != rule.defined_in:
            out.append(Violation("d", path, f"calls {rule.name}", node.lineno))
    return out


def check_tree(root: Path = ROOT) -> list[Violation]:
    out: list[Violation] = []
    for file in sorted((root / "mip6ctl").rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        out += check_source(file.read_text(), rel)
    return out


# --------------------------------------------------------------------------- the tests


def compare(found: list[Violation], pending: frozenset[str]) -> tuple[list[str], list[str]]:
    """(violations not in `pending`, entries of `pending` that no longer occur)."""
    keys = {v.key for v in found}
    unexpected = sorted(f"{v.key} (line {v.line})" for v in found if v.key not in pending)
    return unexpected, sorted(pending - keys)


def test_the_tree_keeps_its_layers() -> None:
    unexpected, gone = compare(check_tree(), PENDING)
    assert not unexpected, "layering violations:\n" + "\n".join(unexpected)
    assert not gone, "fixed, remove from PENDING:\n" + "\n".join(gone)


SYNTHETIC = """
import socket
import pyroute2
from mip6ctl.kernel.writer import Writer
from mip6ctl.kernel import genl, nft

s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
p = socket.socket(17, 3, 0)
ok = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
with Writer() as w:
    w.apply([])
self.writer.apply([])
self.reconciler.apply([])
self._xfrm.delete_states([])
self._xfrm.dump_states()
nft.install_signalling_drop()
genl.set_seg6_tunsrc(None)
"""


def test_the_checker_finds_violations_in_synthetic_source() -> None:
    got = {(v.rule, v.what) for v in check_source(SYNTHETIC, "mip6ctl/daemon/fake.py")}
    assert got == {
        ("a", "imports pyroute2"),
        ("a", "AF_NETLINK socket"),
        ("a", "AF_PACKET socket"),
        ("d", "calls Writer.apply"),
        ("d", "calls XfrmSocket add_/update_/delete_"),
        ("d", "calls nft install_/remove_"),
        ("d", "calls set_seg6_tunsrc"),
    }
    assert sum(v.what == "calls Writer.apply" for v in check_source(SYNTHETIC, "x.py")) == 2
    # the plan executor may write; the kernel layer may open raw sockets
    assert check_source(SYNTHETIC, "mip6ctl/kernel/executor.py") == []
    engine = check_source("import asyncio\nfrom ..kernel import xfrm\n", "mip6ctl/engine/e.py")
    assert {v.what for v in engine} == {"imports asyncio", "imports mip6ctl.kernel"}
    wire = check_source("import struct\nimport pydantic\nfrom . import mh\n", "mip6ctl/wire/w.py")
    assert [v.what for v in wire] == ["imports non-stdlib pydantic"]
    config = check_source("from mip6ctl.state import objects\n", "mip6ctl/config/c.py")
    assert [(v.rule, v.what) for v in config] == [("c", "imports mip6ctl.state")]


def test_new_violations_and_stale_pending_entries_both_fail() -> None:
    found = check_source(SYNTHETIC, "mip6ctl/daemon/fake.py")
    listed = frozenset(v.key for v in found)
    assert compare(found, listed) == ([], [])
    unexpected, gone = compare(found[1:], listed | {"a: mip6ctl/nowhere.py: SOCK_RAW socket"})
    assert unexpected == []
    assert gone == sorted([found[0].key, "a: mip6ctl/nowhere.py: SOCK_RAW socket"])
    unexpected, gone = compare(found, listed - {found[0].key})
    assert unexpected == [f"{found[0].key} (line {found[0].line})"] and gone == []
