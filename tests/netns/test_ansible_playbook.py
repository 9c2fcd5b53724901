"""examples/ansible/site.yml: check mode, converge, idempotence, removing a mobile node.

Runs the playbook with ansible-core against this machine (`-i localhost, -c
local`) inside a test namespace (`ip netns exec NS ansible-playbook ...`), with
the configuration directory and the control socket in the test's tmp dir, so
neither /etc/mip6 nor the host's kernel state is touched.  The playbook's
modules come from the collection in this source tree
(ansible_collections/mip6/mip6ctl; tests/netns/test_ansible_collection.py
builds and installs it).  ansible-core is slow to start (several seconds a
run), so one test does all four runs in order.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import nsutil
from tests.netns.ansible_helpers import ansible_env, next_to_python

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "examples" / "ansible" / "site.yml"
COLLECTIONS = REPO  # holds ansible_collections/mip6/mip6ctl
RUN_TIMEOUT = 300  # seconds per ansible-playbook run; a run takes ~10 s
APPLY_TASK = "Converge the kernel (mip6ctl apply)"

MOBILE_NODES = [
    {"name": "mn-a", "home_address": "2001:db8:1::100", "description": "first"},
    {"name": "mn-b", "home_address": "2001:db8:1::101", "max_binding_lifetime": 600},
    {"name": "mn-c", "home_address": "2001:db8:1::102"},
]


@dataclass
class Run:
    rc: int
    output: str

    @property
    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counters of localhost (ok, changed, failed, ...)."""
        m = re.search(r"^PLAY RECAP \*+\n(?:.*\n)*?localhost\s*:(.*)$", self.output, re.M)
        assert m, f"no play recap for localhost:\n{self.tail}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    def task_status(self, name: str) -> str:
        """The first status word (ok, changed, skipping, fatal) reported for task `name`."""
        m = re.search(
            rf"^TASK \[{re.escape(name)}\] \*+\n(?:.*\n)*?(ok|changed|skipping|fatal): ",
            self.output,
            re.M,
        )
        assert m, f"task {name!r} not in the output:\n{self.tail}"
        return m.group(1)

    @property
    def tail(self) -> str:
        return "\n".join(self.output.splitlines()[-60:])


class Playbook:
    """ansible-playbook with an isolated configuration, temp dirs and environment."""

    def __init__(self, executable: str, tmp: Path, ns: str, mip6ctl: str) -> None:
        self.executable = executable
        self.ns = ns
        self.tmp = tmp
        self.config_dir = tmp / "etc-mip6"
        self.staging_parent = tmp / "tmp"  # TMPDIR of the modules: nothing may stay here
        self.staging_parent.mkdir()
        self.env = ansible_env(tmp, COLLECTIONS, TMPDIR=str(self.staging_parent))
        self.vars = {
            "mip6_hosts": "localhost",
            "mip6_config_dir": str(self.config_dir),
            "mip6ctl_path": mip6ctl,
            # no daemon runs in this test: a socket nothing listens on, never the host's
            "mip6_control_socket": str(tmp / "control.sock"),
            "mip6_kernel": {"tunnel": "auto", "signalling": "auto"},
            "mip6_ha": {
                "interfaces": ["home0"],
                "home_prefixes": ["2001:db8:1::/64"],
                "address": "2001:db8:1::1",
            },
            "mip6_mobile_nodes": list(MOBILE_NODES),
        }

    def run(self, *, check: bool = False) -> Run:
        vars_file = self.tmp / "vars.json"
        vars_file.write_text(json.dumps(self.vars, indent=2))
        cmd = [
            # the modules run here (-c local) and so does the mip6ctl they call
            "ip",
            "netns",
            "exec",
            self.ns,
            self.executable,
            "-i",
            "localhost,",
            "-c",
            "local",
            str(PLAYBOOK),
            "-e",
            f"@{vars_file}",
        ]
        if check:
            cmd.append("--check")
        p = subprocess.run(
            cmd,
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        run = Run(p.returncode, p.stdout + p.stderr)
        leftovers = list(self.staging_parent.iterdir())
        assert leftovers == [], f"staging directory left behind: {leftovers}"
        # mip6.mip6ctl.config stages next to the configuration directory
        leftovers = list(self.tmp.glob(f".{self.config_dir.name}.staging-*"))
        assert leftovers == [], f"staging directory left behind: {leftovers}"
        return run

    def files(self) -> set[str]:
        return {p.name for p in self.config_dir.glob("*.toml")}


def _owned_rules(ns: str) -> list[str]:
    out = nsutil.ip("-6", "rule", "show", ns=ns).stdout
    return [line for line in out.splitlines() if "proto 77" in line]


def _forwarding(ns: str) -> str:
    return nsutil.run("cat", "/proc/sys/net/ipv6/conf/all/forwarding", ns=ns).stdout.strip()


@pytest.fixture
def playbook(netns, tmp_path: Path) -> Playbook:
    executable = next_to_python("ansible-playbook")
    if executable is None:
        pytest.skip("ansible-playbook not installed (ansible-core, from the `test` extra)")
    mip6ctl = next_to_python("mip6ctl")
    if mip6ctl is None:
        pytest.skip("mip6ctl entry point not installed (pip install -e .)")
    ns = netns("ha")
    nsutil.ip("link", "add", "home0", "type", "veth", "peer", "name", "home0p", ns=ns)
    nsutil.ip("link", "set", "home0", "up", ns=ns)
    nsutil.ip("link", "set", "home0p", "up", ns=ns)
    nsutil.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "home0", "nodad", ns=ns)
    return Playbook(executable, tmp_path, ns, mip6ctl)


def test_playbook_check_converge_idempotent_and_remove_node(playbook: Playbook) -> None:
    ns = playbook.ns
    node_files = {f"50-mn-{n['name']}.toml" for n in MOBILE_NODES}
    all_files = {"10-node.toml", "20-ha.toml"} | node_files
    assert _owned_rules(ns) == []
    forwarding_before = _forwarding(ns)

    # 1. Check mode before anything was applied: changes reported, nothing changed.
    r = playbook.run(check=True)
    assert r.rc == 0, r.tail
    assert r.recap["changed"] > 0, r.tail
    assert r.task_status(APPLY_TASK) == "changed", r.tail  # apply --check exit 2: not a failure
    assert not playbook.config_dir.exists()
    assert _owned_rules(ns) == []
    assert _forwarding(ns) == forwarding_before

    # 2. Converge: files installed, kernel state created.
    r = playbook.run()
    assert r.rc == 0, r.tail
    assert r.recap["changed"] > 0, r.tail
    assert r.task_status(APPLY_TASK) == "changed", r.tail
    assert playbook.files() == all_files
    assert "[[ha.mobile_nodes]]" in (playbook.config_dir / "50-mn-mn-b.toml").read_text()
    rules = _owned_rules(ns)
    assert rules, nsutil.ip("-6", "rule", "show", ns=ns).stdout
    assert any("2001:db8:1::/64" in line for line in rules), rules
    assert _forwarding(ns) == "1"

    # 3. Again: nothing to do.
    r = playbook.run()
    assert r.rc == 0, r.tail
    assert r.recap["changed"] == 0, r.tail
    assert r.task_status(APPLY_TASK) == "ok", r.tail
    assert _owned_rules(ns) == rules

    # 4. A mobile node dropped from the list loses its file.
    playbook.vars["mip6_mobile_nodes"] = [n for n in MOBILE_NODES if n["name"] != "mn-b"]
    r = playbook.run()
    assert r.rc == 0, r.tail
    assert r.recap["changed"] > 0, r.tail
    assert playbook.files() == all_files - {"50-mn-mn-b.toml"}
    assert _owned_rules(ns) == rules
