"""The Ansible collection mip6.mip6ctl: built, installed and run against a real daemon.

`ansible-galaxy collection build` packs ansible_collections/mip6/mip6ctl into the
test's tmp dir and `ansible-galaxy collection install -p` installs it there;
the playbooks run with only that copy on ANSIBLE_COLLECTIONS_PATH.  Every
ansible-playbook runs inside a test namespace (`ip netns exec NS
ansible-playbook -c local`), so the modules, the mip6ctl they call and the
daemon all see that namespace's kernel, never the host's; the configuration
directory, state, control socket and ansible's temp dirs are in tmp.

One test drives a home agent through three playbook runs (ansible-core takes a
few seconds each):

1. check mode + --diff, before any daemon runs: `config` reports changed and
   shows the per-file diff and the kernel plan; `apply` in check mode reports
   changed (exit 2 is not a failure); files and kernel stay as they were;
   `info` fails, saying no daemon answers;
2. a real run with the daemon up: the files are installed, the daemon
   hot-reloads them (`info` polled until it runs the new generation), `apply`
   goes through the daemon and verifies;
3. the same again: `changed=0`; three refused changes (invalid TOML, an invalid
   value, inlined key material) fail with the problem named, and the files stay
   byte-identical.

This kernel has neither ip6tnl nor seg6 lwtunnels: the home agent's static
state (rules, sysctls, nf_tables) applies, bindings could not be tunnelled, so
none is registered.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.testbed.process import stop_process, tail_lines
from tests import nsutil
from tests.netns.ansible_helpers import ansible_env, next_to_python

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "ansible_collections" / "mip6" / "mip6ctl"
MODULES = ("mip6.mip6ctl.config", "mip6.mip6ctl.info", "mip6.mip6ctl.apply")
RUN_TIMEOUT = 180  # seconds per ansible-playbook run; one takes ~3-10 s
TOOL_TIMEOUT = 120  # ansible-galaxy, ansible-doc

NODE = (
    '[node]\nrole = "ha"\nname = "collection-test"\n\n'
    '[kernel]\ntunnel = "auto"\nsignalling = "auto"\n'
)
HA_V1 = (
    '[ha]\ninterfaces = ["home0"]\nhome_prefixes = ["2001:db8:1::/64"]\naddress = "2001:db8:1::1"\n'
)
HA_V2 = HA_V1.replace('["2001:db8:1::/64"]', '["2001:db8:1::/64", "2001:db8:2::/64"]')
MN_A = '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\n'
MN_B = '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::101"\ndescription = "added by the play"\n'
STRAY = (
    '# written by hand; not in the play\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::1ff"\n'
)

#: what the directory holds before the plays (the daemon starts on it)
V1 = {"10-node.toml": NODE, "20-ha.toml": HA_V1, "50-mn-a.toml": MN_A, "60-stray.toml": STRAY}
#: what the plays install, exclusively: 20-ha.toml changed, 50-mn-b.toml new, 60-stray gone
V2 = {"10-node.toml": NODE, "20-ha.toml": HA_V2, "50-mn-a.toml": MN_A, "50-mn-b.toml": MN_B}
SECRET = "00112233445566778899aabbccddeeff"
BROKEN = {
    "broken_syntax": {**V2, "20-ha.toml": HA_V2.replace("[ha]", "[ha")},
    "broken_value": {**V2, "50-mn-b.toml": MN_B.replace("2001:db8:1::101", "2001:db8:1::zz")},
    "broken_secret": {
        **V2,
        "30-ipsec.toml": f'[ipsec.mn1]\nprotect = ["binding-update"]\nkey = "0x{SECRET}"\n',
    },
}


def _tool(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
    )
    assert p.returncode == 0, f"{argv}:\n{p.stdout}\n{p.stderr}"
    return p


@dataclass
class Installed:
    collections: Path  # the ANSIBLE_COLLECTIONS_PATH holding the installed copy
    tarball: Path
    env: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    galaxy = next_to_python("ansible-galaxy")
    if galaxy is None or next_to_python("ansible-playbook") is None:
        pytest.skip("ansible-core not installed (ansible-galaxy, ansible-playbook; `test` extra)")
    tmp = tmp_path_factory.mktemp("collection")
    collections = tmp / "collections"
    env = ansible_env(tmp, collections)
    _tool(
        [galaxy, "collection", "build", str(COLLECTION), "--output-path", str(tmp / "build")],
        env,
        tmp,
    )
    tarballs = list((tmp / "build").glob("mip6-mip6ctl-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    _tool([galaxy, "collection", "install", "-p", str(collections), str(tarballs[0])], env, tmp)
    return Installed(collections, tarballs[0], env, tmp)


def test_collection_builds_installs_and_documents_its_modules(installed: Installed) -> None:
    yaml = pytest.importorskip("yaml")  # PyYAML comes with ansible-core
    # galaxy.yml's version is the project's, as semver (0.1.0.dev0 -> 0.1.0)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", project)
    assert m, project
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("mip6", "mip6ctl")
    assert galaxy["version"] == ".".join(m.groups())
    assert installed.tarball.name == f"mip6-mip6ctl-{galaxy['version']}.tar.gz"
    root = installed.collections / "ansible_collections" / "mip6" / "mip6ctl"
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == galaxy["version"]
    runtime = yaml.safe_load((root / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == ">=2.14"
    assert (root / "README.md").is_file()
    # AnsiballZ ships a module with the module_utils it imports: nothing else may be
    # needed on the managed host (no third-party package, no mip6ctl import)
    own = "ansible_collections.mip6.mip6ctl.plugins.module_utils"
    for module in sorted((root / "plugins").glob("*/*.py")):
        imports = re.findall(r"^(?:from|import) ([\w.]+)", module.read_text(), re.M)
        outside = [i for i in imports if i.split(".")[0] not in sys.stdlib_module_names]
        assert all(i.startswith(("ansible.module_utils", own)) for i in outside), (module, outside)

    doc = next_to_python("ansible-doc")
    assert doc is not None
    p = _tool([doc, "-t", "module", "--json", *MODULES], installed.env, installed.tmp)
    docs = json.loads(p.stdout)
    assert set(docs) == set(MODULES)
    for name in MODULES:
        d = docs[name]
        assert d["doc"]["short_description"], name
        assert d["examples"] and d["return"], name
        assert "mip6ctl_path" in d["doc"]["options"] and "socket" in d["doc"]["options"], name
        assert str(root) in d["doc"]["filename"], d["doc"]["filename"]  # the installed copy
    options = docs["mip6.mip6ctl.config"]["doc"]["options"]
    assert {"dir", "files", "exclusive", "mode", "owner"} <= set(options)
    assert options["dir"]["default"] == "/etc/mip6"
    assert "confirm_timeout" in docs["mip6.mip6ctl.apply"]["doc"]["options"]


# --------------------------------------------------------------------------- the runs


@dataclass
class Run:
    rc: int
    output: str
    results: dict[str, Any]

    @property
    def recap(self) -> dict[str, int]:
        m = re.search(r"^PLAY RECAP \*+\n(?:.*\n)*?localhost\s*:(.*)$", self.output, re.M)
        assert m, f"no play recap for localhost:\n{self.tail}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    @property
    def tail(self) -> str:
        return "\n".join(self.output.splitlines()[-80:])


class Daemon:
    """`mip6ctl daemon` in the namespace on the configuration directory; stop() ends only it."""

    def __init__(self, ns: str, tmp: Path, config: Path, socket: Path) -> None:
        self.ns, self.config, self.socket = ns, config, socket
        self.state = tmp / "state"
        self.state.mkdir()
        self.log = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Daemon:
        argv = [sys.executable, "-m", "mip6ctl", "daemon", "-c", str(self.config)]
        argv += ["--state-dir", str(self.state), "--socket", str(self.socket)]
        with open(self.log, "ab") as log:
            # `ip netns exec` execs the daemon: proc.pid is the daemon's
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the daemon exited:\n{self.tail()}"
            try:
                doc = self.status()
            except Exception:
                time.sleep(0.1)
                continue
            if {c["type"]: c["status"] for c in doc["conditions"]}.get("Ready") == "True":
                return self
            time.sleep(0.1)
        raise AssertionError(f"the daemon did not become ready in {timeout} s:\n{self.tail()}")

    def status(self) -> dict[str, Any]:
        from mip6ctl.daemon.control import call

        return call(str(self.socket), "status", {}, timeout=5.0)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, 10.0)

    def tail(self) -> str:
        return "\n".join(tail_lines(self.log, 40) or ["(no log)"])


class Plays:
    """Writes playbooks and runs them with ansible-playbook inside the namespace."""

    def __init__(self, installed: Installed, tmp: Path, ns: str) -> None:
        self.ns, self.tmp = ns, tmp
        self.env = ansible_env(tmp, installed.collections)
        self.executable = next_to_python("ansible-playbook")
        mip6ctl = next_to_python("mip6ctl")
        if mip6ctl is None:
            pytest.skip("mip6ctl entry point not installed (pip install -e .)")
        self.config_dir = tmp / "etc-mip6"
        self.socket = tmp / "control.sock"
        self.defaults = {"mip6ctl_path": mip6ctl, "socket": str(self.socket)}
        self.n = 0

    def run(self, tasks: list[dict[str, Any]], saved: list[str], *, check: bool = False) -> Run:
        self.n += 1
        results = self.tmp / f"results-{self.n}.json"
        save = {
            "name": "Save the registered results for the test",
            "ansible.builtin.copy": {
                "dest": str(results),
                "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in saved) + "} | to_json }}",
                "mode": "0600",
            },
            "check_mode": False,
            "changed_when": False,
            "diff": False,
        }
        play = [
            {
                "name": f"collection test, run {self.n}",
                "hosts": "localhost",
                "gather_facts": False,
                "module_defaults": {"group/mip6.mip6ctl.mip6ctl": self.defaults},
                "tasks": [*tasks, save],
            }
        ]
        path = self.tmp / f"play-{self.n}.yml"
        path.write_text(json.dumps(play, indent=2))  # JSON is YAML
        cmd = ["ip", "netns", "exec", self.ns, self.executable, "-i", "localhost,", "-c", "local"]
        cmd.append(str(path))
        if check:
            cmd += ["--check", "--diff"]
        p = subprocess.run(
            cmd,
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        output = p.stdout + p.stderr
        saved_results = json.loads(results.read_text()) if results.exists() else {}
        return Run(p.returncode, output, saved_results)

    def config(self, register: str, files: dict[str, str], **extra: Any) -> dict[str, Any]:
        args = {"dir": str(self.config_dir), "files": files, "exclusive": True, "mode": "0644"}
        return {
            "name": f"config ({register})",
            "mip6.mip6ctl.config": args,
            "register": register,
            **extra,
        }

    def files(self) -> dict[str, bytes]:
        """Every entry of the configuration directory, recursively, with its bytes."""
        return {
            str(p.relative_to(self.config_dir)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(self.config_dir.rglob("*"))
        }

    def staging_leftovers(self) -> list[Path]:
        return sorted(self.tmp.glob(".etc-mip6.staging-*"))


def _owned_rules(ns: str) -> list[str]:
    out = nsutil.ip("-6", "rule", "show", ns=ns).stdout
    return [line for line in out.splitlines() if "proto 77" in line]


def _sysctl(ns: str, name: str) -> str:
    path = "/proc/sys/net/ipv6/conf/" + name.replace(".", "/")
    return nsutil.run("cat", path, ns=ns).stdout.strip()


def _summaries(plan: list[dict[str, Any]] | None) -> list[str]:
    return [f"{c['action']} {c['summary']}" for c in plan or []]


@pytest.fixture
def plays(installed: Installed, netns, tmp_path: Path) -> Plays:
    ns = netns("ha")
    nsutil.ip("link", "add", "home0", "type", "veth", "peer", "name", "home0p", ns=ns)
    nsutil.ip("link", "set", "home0", "up", ns=ns)
    nsutil.ip("link", "set", "home0p", "up", ns=ns)
    nsutil.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "home0", "nodad", ns=ns)
    p = Plays(installed, tmp_path, ns)
    p.config_dir.mkdir()
    for name, text in V1.items():
        (p.config_dir / name).write_text(text)
    (p.config_dir / "keys").mkdir()  # not a *.toml entry: never touched
    (p.config_dir / "keys" / "README").write_text("key files go here (mode 0600)\n")
    return p


def test_config_apply_info_against_a_daemon(plays: Plays) -> None:
    ns = plays.ns
    v1_files = plays.files()
    assert _owned_rules(ns) == []
    forwarding = _sysctl(ns, "all.forwarding")
    rule1 = "to 2001:db8:1::/64 lookup 6275"
    rule2 = "to 2001:db8:2::/64 lookup 6275"

    # 1. Check mode with --diff, no daemon yet: changes reported and shown, none made.
    r = plays.run(
        [
            plays.config("cfg", V2),
            {
                "name": "apply, check mode, on the directory as it is",
                "mip6.mip6ctl.apply": {"dir": str(plays.config_dir)},
                "register": "as_is",
            },
            {
                "name": "apply, check mode, with the config result",
                "mip6.mip6ctl.apply": {"dir": str(plays.config_dir), "config_result": "{{ cfg }}"},
                "register": "pending",
            },
            {
                "name": "info, no daemon yet",
                "mip6.mip6ctl.info": {},
                "register": "nodaemon",
                "ignore_errors": True,
            },
        ],
        ["cfg", "as_is", "pending", "nodaemon"],
        check=True,
    )
    assert r.rc == 0, r.tail
    cfg, as_is, pending = r.results["cfg"], r.results["as_is"], r.results["pending"]
    assert cfg["changed"] is True
    assert cfg["files_changed"] == ["20-ha.toml", "50-mn-b.toml"]
    assert cfg["files_removed"] == ["60-stray.toml"]
    assert cfg["plan_document"]["mode"] == "static"
    assert f"create rule 1001 {rule2}" in _summaries(cfg["plan"]), cfg["plan"]
    # the --diff output: the TOML changes, then the kernel plan as a text section
    out = r.output
    assert f"+++ after: {plays.config_dir}/20-ha.toml" in out, r.tail
    assert '-home_prefixes = ["2001:db8:1::/64"]' in out, r.tail
    assert '+home_prefixes = ["2001:db8:1::/64", "2001:db8:2::/64"]' in out, r.tail
    assert f"--- before: {plays.config_dir}/50-mn-b.toml (absent)" in out, r.tail
    assert '+description = "added by the play"' in out, r.tail
    assert f"+++ after: {plays.config_dir}/60-stray.toml (removed)" in out, r.tail
    assert "kernel plan (mip6ctl diff, static):" in out, r.tail
    assert f"+ rule 1001 {rule2}  (config ha.home_prefixes[1])" in out, r.tail
    # apply --check on the old files: exit 2 is "changes pending", not a failure
    assert as_is["changed"] is True and as_is["mip6ctl_rc"] == 2, as_is
    assert as_is["mode"] == "static"
    assert f"create rule 1001 {rule1}" in _summaries(as_is["plan"])
    assert f"create rule 1001 {rule2}" not in _summaries(as_is["plan"])
    # ... and with config_result, the plan of the files config would install
    assert pending["changed"] is True
    assert _summaries(pending["plan"]) == _summaries(cfg["plan"])
    # info fails clearly when no daemon answers
    nodaemon = r.results["nodaemon"]
    assert nodaemon["failed"] is True and nodaemon["changed"] is False
    assert f"no mip6ctl daemon answers on {plays.socket}" in nodaemon["msg"], nodaemon["msg"]
    assert r.recap["changed"] == 3 and r.recap["failed"] == 0, r.tail
    assert r.recap["ignored"] == 1, r.tail
    # nothing changed: files byte for byte, the kernel, no staging directory left
    assert plays.files() == v1_files
    assert plays.staging_leftovers() == []
    assert _owned_rules(ns) == []
    assert _sysctl(ns, "all.forwarding") == forwarding

    daemon = Daemon(ns, plays.tmp, plays.config_dir, plays.socket).start()
    try:
        v1_generation = daemon.status()["generation"]
        assert [line for line in _owned_rules(ns) if rule1 in line], _owned_rules(ns)
        assert not [line for line in _owned_rules(ns) if rule2 in line]

        # 2. For real: installed, hot-reloaded by the daemon, converged through it.
        r = plays.run(
            [
                plays.config("cfg", V2),
                {
                    "name": "wait until the daemon runs the new generation",
                    "mip6.mip6ctl.info": {},
                    "register": "reloaded",
                    "until": "reloaded.generation == cfg.generation",
                    "retries": 100,
                    "delay": 0.1,
                },
                {
                    "name": "apply",
                    "mip6.mip6ctl.apply": {"dir": str(plays.config_dir)},
                    "register": "applied",
                },
                {"name": "info", "mip6.mip6ctl.info": {}, "register": "info"},
            ],
            ["cfg", "reloaded", "applied", "info"],
        )
        assert r.rc == 0, r.tail + "\n" + daemon.tail()
        cfg, applied, info = r.results["cfg"], r.results["applied"], r.results["info"]
        assert cfg["changed"] is True
        assert cfg["files_changed"] == ["20-ha.toml", "50-mn-b.toml"]
        assert cfg["files_removed"] == ["60-stray.toml"]
        assert {k: v.decode() for k, v in plays.files().items() if k.endswith(".toml")} == V2
        assert (plays.config_dir / "keys" / "README").is_file()
        assert {oct((plays.config_dir / n).stat().st_mode & 0o7777) for n in V2} == {"0o644"}
        assert plays.staging_leftovers() == []
        # a daemon answered: it planned the staged files with its live bindings
        assert cfg["plan_document"]["mode"] == "daemon", cfg["plan_document"]
        assert "candidate" in cfg["plan_document"]["note"]
        assert f"create rule 1001 {rule2}" in _summaries(cfg["plan"])
        # the daemon reloaded by itself: the generation config returned
        assert cfg["generation"] != v1_generation
        assert r.results["reloaded"]["generation"] == cfg["generation"]
        assert daemon.status()["generation"] == cfg["generation"]
        # apply went through the daemon and found the kernel as the generation wants it
        assert applied["mode"] == "daemon", applied
        assert applied["errors"] == [] and applied["verification"] == [], applied
        assert isinstance(applied["plan"], list)
        assert applied["generation"] == cfg["generation"]
        rules = _owned_rules(ns)
        assert [x for x in rules if rule1 in x] and [x for x in rules if rule2 in x], rules
        assert _sysctl(ns, "all.forwarding") == "1"
        # info: the daemon's status document
        assert info["changed"] is False
        assert info["role"] == "ha" and info["ready"] is True
        assert info["status"]["command"] == "status" and info["status"]["role"] == "ha"
        assert info["status"]["generation"] == cfg["generation"]
        assert info["conditions"]["ConfigValid"]["status"] == "True"
        assert r.recap["changed"] >= 1 and r.recap["failed"] == 0, r.tail
        v2_files = plays.files()
        generation = cfg["generation"]

        # 3. The same again: nothing changes.  Then three refused changes.
        refused = [plays.config(name, files, ignore_errors=True) for name, files in BROKEN.items()]
        r = plays.run(
            [
                plays.config("cfg", V2),
                {
                    "name": "apply, with a confirm timeout (passed through to mip6ctl)",
                    "mip6.mip6ctl.apply": {"dir": str(plays.config_dir), "confirm_timeout": 300},
                    "register": "applied",
                },
                {"name": "info", "mip6.mip6ctl.info": {}, "register": "info"},
                *refused,
            ],
            ["cfg", "applied", "info", *BROKEN],
        )
        assert r.rc == 0, r.tail
        assert r.recap["changed"] == 0, r.tail
        assert r.recap["failed"] == 0 and r.recap["ignored"] == len(BROKEN), r.tail
        cfg, applied = r.results["cfg"], r.results["applied"]
        assert cfg["changed"] is False and cfg["files_changed"] == cfg["files_removed"] == []
        assert cfg["generation"] == generation
        # nothing to install: config plans the installed directory through the daemon
        assert cfg["plan_document"]["mode"] == "daemon", cfg["plan_document"]
        assert cfg["plan"] == []
        assert applied["changed"] is False and applied["mode"] == "daemon"
        assert applied["plan"] == [] and applied["verification"] == []
        # --confirm-timeout reached the daemon: it armed a rollback (generation 2 came by
        # hot reload and was never confirmed) or found nothing to confirm
        confirmation = applied["confirmation"]
        assert confirmation["state"] in ("pending", "not-needed"), confirmation
        if confirmation["state"] == "pending":
            assert confirmation["timeout"] == 300, confirmation
        assert r.results["info"]["generation"] == generation

        syntax, value, secret = (r.results[k] for k in BROKEN)
        for res in (syntax, value, secret):
            assert res["failed"] is True and res["changed"] is False, res
        assert "invalid; nothing installed" in syntax["msg"], syntax["msg"]
        assert re.search(r"^20-ha\.toml:1: .*TOML", syntax["msg"], re.M), syntax["msg"]
        assert syntax["problems"][0]["file"] == "20-ha.toml"
        assert re.search(
            r"^50-mn-b\.toml:2: ha\.mobile_nodes\[\d\]\.home_address: ", value["msg"], re.M
        ), value["msg"]
        assert "30-ipsec.toml:3: key: looks like key material" in secret["msg"], secret["msg"]
        assert SECRET not in secret["msg"]
        assert "validation" not in secret  # refused before mip6ctl saw it
        # the old files stay, byte for byte; the daemon still runs the same generation
        assert plays.files() == v2_files
        assert plays.staging_leftovers() == []
        assert daemon.status()["generation"] == generation
        assert r.output.count("...ignoring") == len(BROKEN), r.tail
    finally:
        daemon.stop()
