"""The Debian package: built by scripts/build-deb, installed into an empty root, run in place.

The .deb is built once per session into a tmp directory and installed with
``dpkg --root=ROOT --force-script-chrootless --force-depends`` into a fresh
root that holds nothing but an empty dpkg database.  The maintainer scripts
then run on the host with ``DPKG_ROOT=ROOT`` and must do nothing outside ROOT.

To run what was installed, each check gets a private mount namespace
(``unshare --mount --propagation private``) in which an overlay puts ROOT/usr
on top of the host's /usr (``lowerdir=ROOT/usr:/usr``, read-only).  There
/usr/bin/mip6ctl, /usr/lib/mip6ctl and the man pages are at their real paths
and /usr/bin/python3 is Debian's.  The host's own mounts are never changed.

``systemd-analyze verify`` of the installed unit runs in such a namespace
too, so that ExecStart=/usr/bin/mip6ctl and Documentation=man:... resolve.
Its output may carry lines about the host's units (this machine's systemd
setup); any line that names mip6ctl -- the unit, its ExecStart, its man
pages -- fails the test, as does a non-zero exit.

Every subprocess has a timeout; ROOT is removed afterwards.  The tier needs
root (tests/netns/conftest.py); without dpkg-deb, dpkg or unshare, or on a
kernel without overlayfs, the tests are skipped with that named.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-deb"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _missing() -> str | None:
    for tool, package in (("dpkg-deb", "dpkg"), ("dpkg", "dpkg"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` not installed (Debian package: {package})"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if not re.search(r"\boverlay$", filesystems, re.M):
        subprocess.run(["modprobe", "overlay"], capture_output=True, timeout=30, check=False)
        if not re.search(r"\boverlay$", Path("/proc/filesystems").read_text(), re.M):
            return "the kernel has no overlayfs (CONFIG_OVERLAY_FS) to run the installed tree"
    return None


_MISSING = _missing() if os.geteuid() == 0 else None
if _MISSING:
    pytestmark = [pytestmark, pytest.mark.skip(reason=f"package test: {_MISSING}")]

#: The environment of everything run from the package: nothing of .venv or the tree.
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "HOME": "/root"}

DPKG_FLAGS = [
    "--force-not-root",
    "--force-script-chrootless",  # scripts run on the host with DPKG_ROOT=ROOT
    "--force-depends",  # python3 is the host's, not in ROOT's dpkg database
    "--log=/dev/null",
    # in case the host's dpkg.cfg.d excludes documentation (slim images)
    "--path-include=/usr/share/man/*",
    "--path-include=/usr/share/doc/mip6ctl/*",
]


def _run(argv: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("env", ENV)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def debian_version(upstream: str) -> str:
    v = re.sub(r"[.-]?(dev|a|b|rc|alpha|beta|pre|c)(\d*)", r"~\1\2", upstream)
    return re.sub(r"[.-]?post(\d*)", r"+post\1", v) + "-1"


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """scripts/build-deb --out TMP: (the .deb, seconds it took)."""
    out = tmp_path_factory.mktemp("deb")
    started = time.monotonic()
    r = subprocess.run(
        [str(BUILD), "--out", str(out)], capture_output=True, text=True, timeout=300, cwd="/"
    )
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    debs = list(out.glob("*.deb"))
    assert len(debs) == 1 and r.stdout.strip() == str(debs[0]), (debs, r.stdout)
    return debs[0], took


def _new_root(base: Path) -> Path:
    root = base / "root"
    for d in ("info", "updates"):
        (root / "var/lib/dpkg" / d).mkdir(parents=True)
    for f in ("status", "available"):
        (root / "var/lib/dpkg" / f).touch()
    assert not set(str(root)) & {",", ":"}, "overlayfs lowerdir cannot hold , or :"
    return root


def _dpkg(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _run(["dpkg", f"--root={root}", *DPKG_FLAGS, *args], timeout=timeout)


@pytest.fixture(scope="module")
def root(deb: tuple[Path, float], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh root with the package installed by dpkg; removed afterwards."""
    base = tmp_path_factory.mktemp("pkgroot")
    root = _new_root(base)
    try:
        r = _dpkg(root, "--install", str(deb[0]))
        assert r.returncode == 0, r.stdout + r.stderr
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def in_root(
    root: Path, argv: list[str], timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv in a private mount namespace where ROOT/usr overlays /usr."""
    script = 'mount -t overlay overlay -o "lowerdir=$1/usr:/usr" /usr && shift && exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private"]
    return _run(
        [*unshare, "sh", "-c", script, "sh", str(root), *argv],
        timeout=timeout,
        env=env or ENV,
        cwd="/",
    )


# ------------------------------------------------------------------- the .deb


def test_build_is_quick_and_named_by_version(deb: tuple[Path, float]) -> None:
    path, took = deb
    arch = _run(["dpkg", "--print-architecture"]).stdout.strip()
    assert path.name == f"mip6ctl_{debian_version(VERSION)}_{arch}.deb"
    assert took < 120, f"scripts/build-deb took {took:.0f} s"


def test_control_fields(deb: tuple[Path, float]) -> None:
    path = str(deb[0])
    fields = _run(["dpkg-deb", "--field", path]).stdout
    assert "Package: mip6ctl\n" in fields
    assert f"Version: {debian_version(VERSION)}\n" in fields
    assert "Depends: python3 (>= 3.11), python3 (<< 3.12)\n" in fields
    assert re.search(r"^Installed-Size: \d+$", fields, re.M)
    assert re.search(r"^Description: .+\n( .+\n)+", fields, re.M)
    info = _run(["dpkg-deb", "--info", path, "conffiles"]).stdout
    assert info.split() == ["/etc/mip6/README", "/etc/mip6/mip6.toml.example"]
    for script in ("postinst", "prerm", "postrm"):
        text = _run(["dpkg-deb", "--info", path, script]).stdout
        assert text.startswith("#!/bin/sh\n"), script
        assert _run(["sh", "-n", "-c", text]).returncode == 0, script
        assert not re.search(r"\b(start|enable)\b\s+mip6ctl", text), script


# -------------------------------------------------------------- installed files

EXPECTED = (
    "/lib/systemd/system/mip6ctl.service",
    "/usr/bin/mip6ctl",
    "/usr/lib/mip6ctl/mip6ctl/cli/main.py",
    "/usr/lib/mip6ctl/pydantic",
    "/usr/lib/mip6ctl/pyroute2",
    "/usr/share/man/man8/mip6ctl.8.gz",
    "/usr/share/man/man5/mip6.toml.5.gz",
    "/etc/mip6",
    "/etc/mip6/README",
    "/etc/mip6/mip6.toml.example",
    "/var/lib/mip6",
    "/usr/share/doc/mip6ctl/copyright",
    "/usr/share/doc/mip6ctl/changelog.Debian.gz",
    "/usr/share/doc/mip6ctl/examples/production/ha-ipsec/10-node.toml",
    "/usr/share/mip6ctl/mip6.schema.json",
)


def test_dpkg_lists_the_files(root: Path) -> None:
    r = _run(["dpkg", f"--root={root}", "-L", "mip6ctl"])
    assert r.returncode == 0, r.stderr
    listed = set(r.stdout.split("\n"))
    for path in EXPECTED:
        assert path in listed, path
    assert not [p for p in listed if p.startswith("/usr/lib/mip6ctl/bin")]
    assert not [p for p in listed if re.search(r"/keys?/|\.psk$|\.enc$|\.auth$", p)]
    status = _run(["dpkg", f"--root={root}", "--status", "mip6ctl"]).stdout
    assert "Status: install ok installed" in status
    verify = _run(["dpkg", f"--root={root}", "--verify", "mip6ctl"])
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout


def test_modes_and_wrapper(root: Path) -> None:
    assert stat.S_IMODE((root / "var/lib/mip6").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "etc/mip6").stat().st_mode) == 0o755
    wrapper = root / "usr/bin/mip6ctl"
    assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
    text = wrapper.read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    assert 'sys.path.insert(0, "/usr/lib/mip6ctl")' in text
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert path.stat().st_uid == 0 and path.stat().st_gid == 0, path


def test_unit_is_the_example_with_documentation(root: Path) -> None:
    unit = (root / "lib/systemd/system/mip6ctl.service").read_text().splitlines()
    example = (REPO / "examples/systemd/mip6ctl.service").read_text().splitlines()
    assert "ExecStart=/usr/bin/mip6ctl daemon" in unit
    added = [line for line in unit if line not in example]
    assert added == ["Documentation=man:mip6ctl(8) man:mip6.toml(5)"]
    assert [line for line in unit if not line.startswith("Documentation=")] == example


# ------------------------------------------------------------------- running it


def test_version_and_exit_codes(root: Path) -> None:
    r = in_root(root, ["/usr/bin/mip6ctl", "--version"])
    assert r.returncode == 0 and r.stdout == f"mip6ctl {VERSION}\n", r.stdout + r.stderr
    r = in_root(root, ["/usr/bin/python3", "-I", "/usr/bin/mip6ctl", "--version"])
    assert r.stdout == f"mip6ctl {VERSION}\n", r.stderr
    r = in_root(root, ["/usr/bin/mip6ctl", "no-such-command"])
    assert r.returncode == 64, r.stderr
    r = in_root(root, ["/usr/bin/mip6ctl", "validate", "-c", "/nonexistent"])
    assert r.returncode == 1, r.stderr
    probe = (
        "import sys; sys.path.insert(0, '/usr/lib/mip6ctl'); import mip6ctl, pydantic, pyroute2;"
        "print(mip6ctl.__file__, pydantic.__file__, pydantic.VERSION, sys.executable)"
    )
    r = in_root(root, ["/usr/bin/python3", "-c", probe])
    mip6ctl_file, pydantic_file, pydantic_version, exe = r.stdout.split()
    assert mip6ctl_file.startswith("/usr/lib/mip6ctl/mip6ctl/"), r.stdout
    assert pydantic_file.startswith("/usr/lib/mip6ctl/pydantic/"), r.stdout
    assert pydantic_version.startswith("2."), r.stdout
    assert exe == "/usr/bin/python3"


def test_bytecode_matches_the_sources(root: Path) -> None:
    # /usr is read-only to the daemon (ProtectSystem=strict): a stale .pyc would be
    # recompiled, in memory, at every start.  They are timestamp-checked (flags 0),
    # as Debian's own, so the mtimes dpkg-deb writes must be the ones compiled against.
    pycs = list((root / "usr/lib/mip6ctl").rglob("*.cpython-311.pyc"))
    assert len(pycs) > 500
    for pyc in pycs[:: max(1, len(pycs) // 50)]:
        assert pyc.read_bytes()[4:8] == b"\0\0\0\0", pyc
    r = in_root(root, ["/usr/bin/python3", "-v", "/usr/bin/mip6ctl", "schema"], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    log = r.stderr
    assert "bytecode is stale" not in log
    assert re.search(r"/usr/lib/mip6ctl/pydantic/__pycache__/\S+\.pyc matches", log)
    assert re.search(r"/usr/lib/mip6ctl/mip6ctl/cli/__pycache__/schema\S+\.pyc matches", log)
    assert "code object from /usr/lib/mip6ctl/mip6ctl/cli/schema.py" not in log


def test_no_configuration_is_shipped(root: Path) -> None:
    # the chosen default: /etc/mip6 has README and mip6.toml.example (not *.toml), so
    # validate (and the daemon) refuse
    r = in_root(root, ["/usr/bin/mip6ctl", "validate", "-c", f"{root}/etc/mip6", "--json"])
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["valid"] is False
    assert [e["message"] for e in doc["errors"]] == [
        "no *.toml configuration files in this directory"
    ]


def test_the_readme_steps_give_a_valid_configuration(root: Path, tmp_path: Path) -> None:
    """The `$ ` commands of /etc/mip6/README, with /etc/mip6 -> a tmp dir, run as written."""
    readme = (root / "etc/mip6/README").read_text()
    steps = [m.group(1) for m in re.finditer(r"^#\s+\$ (.+)$", readme, re.M)]
    assert any(s.startswith("cp /usr/share/doc/mip6ctl/examples/") for s in steps), steps
    assert steps[-1] == "mip6ctl validate -c /etc/mip6"
    conf = tmp_path / "etc-mip6"
    conf.mkdir()
    script = "set -e\n" + "\n".join(s.replace("/etc/mip6", str(conf)) for s in steps[:-1])
    r = in_root(root, ["sh", "-c", script])
    assert r.returncode == 0, r.stdout + r.stderr
    keys = sorted(p.name for p in (conf / "keys").iterdir())
    assert keys == ["fleet.psk", "mn1.auth", "mn1.enc"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (conf / "keys").iterdir())
    r = in_root(root, ["/usr/bin/mip6ctl", "validate", "-c", str(conf), "--json"])
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["valid"] is True and doc["errors"] == [], doc
    first = (conf / "10-node.toml").read_text().splitlines()[0]
    assert first == "#:schema /usr/share/mip6ctl/mip6.schema.json"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="`systemd-analyze` not installed (Debian package: systemd)",
)
def test_systemd_analyze_verify(root: Path) -> None:
    unit = root / "lib/systemd/system/mip6ctl.service"
    r = in_root(root, ["systemd-analyze", "verify", str(unit)], timeout=120)
    out = r.stdout + r.stderr
    ours = [line for line in out.splitlines() if "mip6ctl" in line]
    assert r.returncode == 0 and not ours, out


@pytest.mark.skipif(
    shutil.which("man") is None, reason="`man` not installed (Debian packages: man-db, groff-base)"
)
@pytest.mark.parametrize(
    ("page", "headers"),
    [
        ("man8/mip6ctl.8.gz", ["NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"]),
        ("man5/mip6.toml.5.gz", ["NAME", "SYNOPSIS", "SECTIONS", "EXAMPLES", "SEE ALSO"]),
    ],
)
def test_installed_man_pages(root: Path, page: str, headers: list[str]) -> None:
    path = f"/usr/share/man/{page}"
    with gzip.open(root / path.lstrip("/"), "rt") as f:
        assert f.readline().startswith('.\\" Generated by mip6ctl/cli/manpage.py')
    r = in_root(root, ["man", "-l", "--warnings", path], env={**ENV, "MANWIDTH": "80"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    for header in headers:
        assert header in lines, header
    name, section = Path(page).name.removesuffix(".gz").rsplit(".", 1)
    r = in_root(root, ["man", "-w", section, name])
    assert r.stdout.strip() == path, r.stdout + r.stderr


# -------------------------------------------------------------- maintainer scripts

SHIM = """#!/bin/sh
echo "$(basename "$0") $*" >>"$MIP6_TEST_CALLS"
"""


def _scripts_with_systemd(
    root: Path, tmp_path: Path, calls: list[tuple[str, ...]], systemd: bool, dpkg_root: str = ""
) -> list[list[str]]:
    """Run the installed maintainer scripts with `calls`; return what each called.

    In a private mount namespace with tmpfs on /run (holding /run/systemd/system
    when `systemd`) and on /var/lib, and systemctl / deb-systemd-helper replaced
    by shims that only log: the host's systemd and /var/lib are out of reach.
    """
    shims = tmp_path / "shims"
    shims.mkdir(exist_ok=True)
    for tool in ("systemctl", "deb-systemd-helper"):
        (shims / tool).write_text(SHIM)
        (shims / tool).chmod(0o755)
    info = root / "var/lib/dpkg/info"
    results = []
    for i, (script, *args) in enumerate(calls):
        log = tmp_path / f"calls-{i}"
        log.write_text("")
        setup = (
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && mkdir -p /var/lib/mip6"
        )
        if systemd:
            setup += " && mkdir -p /run/systemd/system"
        env = {**ENV, "PATH": f"{shims}:{ENV['PATH']}", "MIP6_TEST_CALLS": str(log)}
        if dpkg_root:
            env["DPKG_ROOT"] = dpkg_root
        r = _run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'{setup} && sh "$@" && '
                'if [ -z "$DPKG_ROOT" ] && [ ! -d /var/lib/mip6 ]; then echo purged; fi',
                "sh",
                str(info / f"mip6ctl.{script}"),
                *args,
            ],
            env=env,
        )
        assert r.returncode == 0, (script, args, r.stderr)
        results.append(log.read_text().splitlines() + r.stdout.split())
    return results


CALLS = [
    ("postinst", "configure", ""),  # fresh install
    ("postinst", "configure", "0.0.1-1"),  # upgrade
    ("prerm", "upgrade", "9.9-1"),
    ("prerm", "remove"),
    ("postrm", "remove"),
    ("postrm", "purge"),
]


def test_maintainer_scripts_with_systemd_running(root: Path, tmp_path: Path) -> None:
    got = _scripts_with_systemd(root, tmp_path, CALLS, systemd=True)
    assert got == [
        ["deb-systemd-helper update-state mip6ctl.service", "systemctl --system daemon-reload"],
        [
            "deb-systemd-helper update-state mip6ctl.service",
            "systemctl --system daemon-reload",
            "systemctl --system try-restart mip6ctl.service",
        ],
        [],
        ["systemctl --system stop mip6ctl.service"],
        ["systemctl --system daemon-reload"],
        [
            "systemctl --system daemon-reload",
            "deb-systemd-helper purge mip6ctl.service",
            "deb-systemd-helper unmask mip6ctl.service",
            "purged",
        ],
    ]


def test_maintainer_scripts_without_systemd(root: Path, tmp_path: Path) -> None:
    got = _scripts_with_systemd(root, tmp_path, CALLS, systemd=False)
    assert got == [
        ["deb-systemd-helper update-state mip6ctl.service"],
        ["deb-systemd-helper update-state mip6ctl.service"],
        [],
        [],
        [],
        [
            "deb-systemd-helper purge mip6ctl.service",
            "deb-systemd-helper unmask mip6ctl.service",
            "purged",
        ],
    ]


def test_maintainer_scripts_in_another_root_touch_nothing(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-root"
    (other / "var/lib/mip6").mkdir(parents=True)
    got = _scripts_with_systemd(root, tmp_path, CALLS, systemd=True, dpkg_root=str(other))
    assert got == [[]] * len(CALLS)
    assert not (other / "var/lib/mip6").exists()  # purge removed the state under DPKG_ROOT


def test_reinstall_remove_purge(deb: tuple[Path, float], tmp_path: Path) -> None:
    host_state = Path("/var/lib/mip6").exists()
    root = _new_root(tmp_path)
    try:
        for _ in range(2):  # the second time is an upgrade to the same version
            r = _dpkg(root, "--install", str(deb[0]))
            assert r.returncode == 0, r.stdout + r.stderr
        (root / "var/lib/mip6/binding-cache.sqlite").write_bytes(b"state")
        (root / "etc/mip6/ha.toml").write_text('[node]\nrole = "cn"\n')
        r = _dpkg(root, "--remove", "mip6ctl")
        assert r.returncode == 0, r.stderr
        assert not (root / "usr/bin/mip6ctl").exists()
        assert (root / "etc/mip6/README").exists()  # a conffile stays until purge
        status = _run(["dpkg", f"--root={root}", "--status", "mip6ctl"]).stdout
        assert "Status: deinstall ok config-files" in status
        r = _dpkg(root, "--purge", "mip6ctl")
        assert r.returncode == 0, r.stderr
        assert not (root / "etc/mip6/README").exists()
        assert (root / "etc/mip6/ha.toml").exists()  # the administrator's file is left alone
        assert not (root / "var/lib/mip6").exists()
        assert not (root / "usr/lib/mip6ctl").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert Path("/var/lib/mip6").exists() == host_state


def test_the_wheel_installs_with_pipx(deb: tuple[Path, float], tmp_path: Path) -> None:
    """`pipx install mip6ctl-*.whl` gives a working `mip6ctl` (pipx from PyPI, into a
    virtual environment of the test's own; PIPX_HOME/PIPX_BIN_DIR keep it there)."""
    (wheel,) = deb[0].parent.glob("mip6ctl-*.whl")
    venv = tmp_path / "pipx-venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    r = _run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "pipx"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    r = subprocess.run(
        [str(venv / "bin/pipx"), "install", str(wheel)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [str(tmp_path / "bin/mip6ctl"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout.startswith("mip6ctl "), r.stdout + r.stderr
    r = subprocess.run(
        [str(tmp_path / "bin/mip6ctl"), "validate", "--json",
         "-c", str(REPO / "examples/testbed/cn")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout)["valid"] is True, r.stdout + r.stderr


@pytest.mark.parametrize("role", ["home agent", "mobile node", "correspondent node"])
def test_each_role_of_the_commented_example_validates(
    root: Path, tmp_path: Path, role: str
) -> None:
    """/etc/mip6/mip6.toml.example: one role's block uncommented is a valid configuration."""
    text = (root / "etc/mip6/mip6.toml.example").read_text()
    blocks = re.split(r"^# ---- (?:a|an) (.+?) -+$", text, flags=re.M)
    by_role = dict(zip(blocks[1::2], blocks[2::2], strict=True))
    assert set(by_role) == {"home agent", "mobile node", "correspondent node"}, by_role.keys()
    lines = [ln[1:] for ln in by_role[role].splitlines() if re.match(r"^#\S", ln)]
    conf = tmp_path / "etc-mip6"
    conf.mkdir()
    (conf / "mip6.toml").write_text("\n".join(lines) + "\n")
    r = in_root(root, ["/usr/bin/mip6ctl", "validate", "-c", str(conf), "--json"])
    doc = json.loads(r.stdout)
    # interfaces need not exist here: validate only warns about them off-box
    assert r.returncode == 0 and doc["valid"] is True, (lines, doc)
