"""`mip6ctl diff` / `apply` against a real kernel, inside a test namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import nsutil

ROOT = Path(__file__).resolve().parents[2]
HA_CONFIG = ROOT / "examples" / "testbed" / "ha"
# The seg6 backend as `tunnel = auto` picks it: a kernel with seg6 and without ip6tnl.
pytestmark = pytest.mark.seg6(auto=True)


def mip6ctl(ns: str, *args: str) -> tuple[int, dict]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "mip6ctl", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    try:
        doc = json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON (rc {out.returncode}): {out.stdout!r} {out.stderr!r}")
    return out.returncode, doc


@pytest.fixture
def ha_ns(netns) -> str:
    ns = netns("ha")
    nsutil.ip("link", "add", "home0", "type", "veth", "peer", "name", "home0p", ns=ns)
    for dev in ("home0", "home0p"):
        nsutil.ip("link", "set", dev, "up", ns=ns)
    nsutil.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "home0", "nodad", ns=ns)
    return ns


def rules(ns: str) -> str:
    return nsutil.ip("-6", "rule", "show", ns=ns).stdout


def test_apply_from_scratch_then_nothing_to_do(ha_ns):
    rc, doc = mip6ctl(ha_ns, "diff", "-c", str(HA_CONFIG))
    assert rc == 2 and doc["changed"] is True
    assert doc["counts"]["create"] >= 4
    assert "static state only" in doc["note"]
    assert "proto 77" not in rules(ha_ns)  # diff changed nothing

    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(HA_CONFIG))
    assert rc == 0 and doc["ok"] is True and doc["changed"] is True, doc
    assert all(c["result"] in ("ok", "exists") for c in doc["plan"])
    assert doc["verification"] == []
    r = rules(ha_ns)
    assert "1000:\tfrom all to 2001:db8:1::1 ipproto ipv6 lookup 6276 proto 77" in r
    assert "1001:\tfrom all to 2001:db8:1::/64 lookup 6275 proto 77" in r
    assert "1099:\tfrom all lookup local proto 77" in r
    assert not r.startswith("0:")  # the local rule moved behind the decap rule
    route = nsutil.ip("-6", "route", "show", "table", "6276", ns=ha_ns).stdout
    assert "2001:db8:1::1 " in route and "seg6local" in route and "End.DT6" in route
    assert (
        nsutil.run("sysctl", "-n", "net.ipv6.conf.home0.proxy_ndp", ns=ha_ns).stdout.strip() == "1"
    )

    rc, doc = mip6ctl(ha_ns, "diff", "-c", str(HA_CONFIG))
    assert (rc, doc["changed"], doc["plan"]) == (0, False, [])
    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(HA_CONFIG))
    assert (rc, doc["changed"], doc["plan"]) == (0, False, [])


def test_check_mode_changes_nothing(ha_ns):
    rc, doc = mip6ctl(ha_ns, "apply", "--check", "-c", str(HA_CONFIG))
    assert rc == 2 and doc["changed"] is True
    assert "proto 77" not in rules(ha_ns)


def test_foreign_object_is_reported_and_survives(ha_ns):
    nsutil.ip(
        "-6",
        "route",
        "add",
        "2001:db8:1::1/128",
        "dev",
        "home0",
        "table",
        "6276",
        "proto",
        "static",
        ns=ha_ns,
    )
    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(HA_CONFIG))
    assert rc == 1 and doc["ok"] is False
    conflicts = [e for e in doc["errors"] if e["kind"] == "conflict"]
    assert len(conflicts) == 1 and "foreign" in conflicts[0]["message"]
    route = nsutil.ip("-6", "route", "show", "table", "6276", ns=ha_ns).stdout
    assert "proto static" in route and "seg6local" not in route
    # everything else was still applied
    assert "1001:\tfrom all to 2001:db8:1::/64 lookup 6275 proto 77" in rules(ha_ns)


def test_binding_objects_and_foreign_rules_are_left_alone(ha_ns):
    nsutil.ip(
        "-6",
        "route",
        "add",
        "2001:db8:1::100/128",
        "encap",
        "seg6",
        "mode",
        "encap.red",
        "segs",
        "2001:db8:a::100",
        "dev",
        "home0",
        "table",
        "6275",
        "proto",
        "77",
        ns=ha_ns,
    )
    nsutil.ip(
        "-6", "rule", "add", "pref", "500", "to", "2001:db8:99::/64", "lookup", "main", ns=ha_ns
    )
    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(HA_CONFIG))
    assert rc == 0, doc
    assert not any(c["action"] == "delete" and c["kind"] == "route" for c in doc["plan"])
    assert "2001:db8:1::100" in nsutil.ip("-6", "route", "show", "table", "6275", ns=ha_ns).stdout
    assert "500:\tfrom all to 2001:db8:99::/64 lookup main" in rules(ha_ns)


def test_stale_owned_static_object_is_removed(ha_ns):
    nsutil.ip(
        "-6",
        "rule",
        "add",
        "pref",
        "1005",
        "to",
        "2001:db8:77::/64",
        "lookup",
        "6275",
        "proto",
        "77",
        ns=ha_ns,
    )
    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(HA_CONFIG))
    assert rc == 0, doc
    deletes = [c for c in doc["plan"] if c["action"] == "delete" and c["kind"] == "rule"]
    assert any("2001:db8:77::/64" in c["summary"] for c in deletes)
    assert "2001:db8:77::/64" not in rules(ha_ns)


def test_invalid_configuration_changes_nothing(ha_ns, tmp_path):
    cfg = tmp_path / "cfg"
    shutil.copytree(HA_CONFIG, cfg)
    (cfg / "zz-broken.toml").write_text("[ha]\nmax_binding_lifetime = 'soon'\n")
    before = rules(ha_ns)
    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(cfg))
    assert rc == 1 and doc["changed"] is False
    assert doc["errors"][0]["file"].endswith("zz-broken.toml")
    assert rules(ha_ns) == before


def test_leaving_the_seg6_backend_gives_the_local_rule_back(ha_ns, tmp_path):
    # seg6 decapsulation moved the kernel's `lookup local` rule behind ours; a
    # configuration that no longer needs it must restore the original first.
    assert mip6ctl(ha_ns, "apply", "-c", str(HA_CONFIG))[0] == 0
    assert not rules(ha_ns).startswith("0:")
    cfg = tmp_path / "cfg"
    shutil.copytree(HA_CONFIG, cfg)
    main = cfg / "mip6.toml"
    main.write_text(main.read_text().replace('tunnel = "auto"', 'tunnel = "ip6tnl"'))
    rc, doc = mip6ctl(ha_ns, "apply", "-c", str(cfg))
    assert rc == 0, doc
    actions = [(c["action"], c["summary"]) for c in doc["plan"]]
    restore = actions.index(("create", "rule 0 lookup 255"))
    drop = actions.index(("delete", "rule 1099 lookup 255"))
    assert restore < drop
    r = rules(ha_ns)
    assert r.startswith("0:\tfrom all lookup local")
    assert "1099:" not in r and "ipproto ipv6" not in r
    assert (mip6ctl(ha_ns, "diff", "-c", str(cfg))[0]) == 0
