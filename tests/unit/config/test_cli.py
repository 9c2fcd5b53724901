"""The command-line contract of DESIGN.md: commands, exit codes, JSON envelope."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mip6ctl.cli import exitcodes
from mip6ctl.cli.main import COMMANDS, main

from .conftest import ROOT


def test_help_lists_the_contract(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    names = {"validate", "diff", "apply", "status", "daemon", "schema", "doctor"}
    names |= {"confirm", "rollback", "history", "completion"}  # issue 19
    names |= {"radvd"}  # issue 16
    for name in names:
        assert name in out
    assert set(COMMANDS) == names


def test_usage_error_is_not_exit_2(capsys):
    # 2 means "changes pending" in our contract; argparse's 2 would lie to Ansible.
    with pytest.raises(SystemExit) as e:
        main(["nonsense"])
    assert e.value.code == exitcodes.USAGE == 64


def test_status_without_a_daemon(capsys, tmp_path):
    rc = main(["status", "--json", "--socket", str(tmp_path / "none.sock")])
    assert rc == exitcodes.ERROR
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1 and doc["changed"] is False
    assert doc["errors"][0]["kind"] == "NoDaemon"


def test_daemon_refuses_an_invalid_configuration(capsys, tmp_path):
    # Refusing to start (exit 1, reason logged) beats running without a valid generation.
    assert main(["daemon", "-c", str(tmp_path / "absent")]) == exitcodes.ERROR
    err = capsys.readouterr().err
    assert "does not exist" in err or "needs root" in err


@pytest.mark.parametrize("command", [["diff"], ["apply"], ["apply", "--check"]])
def test_diff_and_apply_refuse_an_invalid_configuration(command, capsys, tmp_path):
    (tmp_path / "a.toml").write_text("[node]\nrole = 'ha'\n")
    assert main([*command, "-c", str(tmp_path), "--json"]) == exitcodes.ERROR
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["changed"] is False
    assert doc["errors"][0]["key"] == "node.role"


def test_config_dir_from_environment(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MIP6_CONFIG_DIR", str(tmp_path / "absent"))
    assert main(["validate", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["directory"] == str(tmp_path / "absent")


def test_console_script_runs_without_heavy_imports():
    code = (
        "import sys\n"
        "from mip6ctl.cli.main import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('pydantic', 'pyroute2', 'rich') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def test_validate_imports_no_rich_or_pyroute2():
    code = (
        "import sys\n"
        "from mip6ctl.cli.main import main\n"
        f"rc = main(['validate', '-c', {str(ROOT / 'examples/testbed/ha')!r}])\n"
        "print([m for m in ('pyroute2', 'rich') if m in sys.modules], rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "[] 0"


def test_schema_file_is_fresh():
    # Fails when the models change without `mip6ctl schema -o schemas/mip6.schema.json`.
    assert main(["schema", "--check", str(ROOT / "schemas" / "mip6.schema.json")]) == 0


def test_schema_check_detects_staleness(tmp_path: Path, capsys):
    stale = tmp_path / "s.json"
    doc = json.loads((ROOT / "schemas" / "mip6.schema.json").read_text())
    doc["properties"].pop("node")
    stale.write_text(json.dumps(doc))
    assert main(["schema", "--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


def test_schema_output_is_json_schema(capsys):
    assert main(["schema"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["$schema"].endswith("2020-12/schema")
    assert doc["additionalProperties"] is False
    assert {"node", "kernel", "ha", "mn", "cn", "ipsec"} <= set(doc["properties"])


def test_validate_does_not_load_importlib_metadata_but_it_still_works():
    # ~10 ms of the 150 ms start-up budget; and a deferred module must behave like the real one.
    code = (
        "import sys\n"
        "from mip6ctl.cli.main import main\n"
        f"rc = main(['validate', '-c', {str(ROOT / 'examples/testbed/cn')!r}])\n"
        "loaded = [m for m in sys.modules if m.startswith(('importlib.metadata.', 'email.'))]\n"
        "import importlib.metadata\n"
        "from importlib.metadata import entry_points, version\n"
        "print(rc, loaded, version('pydantic').count('.') >= 1, "
        "type(entry_points(group='console_scripts')).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "0 [] True EntryPoints"


def test_radvd_renders_the_home_links_with_the_preference(capsys, tmp_path):
    """`mip6ctl radvd`: one interface block per home link, the H flag, the configured
    preference, the HA's own address with the R bit; a prefix it has no address in
    without it. Not a home agent: exit 1, nothing printed on stdout."""
    cfg = tmp_path / "ha"
    cfg.mkdir()
    text = (ROOT / "examples" / "testbed" / "ha" / "mip6.toml").read_text()
    text = text.replace('interfaces = ["home0"]', 'interfaces = ["home0", "home1"]')
    two = 'home_prefixes = ["2001:db8:1::/64", "2001:db8:2::/64"]'
    text = text.replace('home_prefixes = ["2001:db8:1::/64"]', two)
    text = text.replace('default_action = "deny"', 'default_action = "deny"\npreference = -5')
    (cfg / "mip6.toml").write_text(text)
    assert main(["radvd", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    blocks = out.split("interface ")[1:]
    assert [b.split()[0] for b in blocks] == ["home0", "home1"]
    assert all("AdvHomeAgentFlag on;" in b and "HomeAgentPreference -5;" in b for b in blocks)
    assert "prefix 2001:db8:1::1/64 {" in blocks[0] and "AdvRouterAddr on;" in blocks[0]
    assert "prefix 2001:db8:2::/64 {" in blocks[1] and "AdvRouterAddr off;" in blocks[1]
    assert main(["radvd", "-c", str(ROOT / "examples" / "testbed" / "mn")]) == exitcodes.ERROR
    captured = capsys.readouterr()
    assert captured.out == "" and "only a home agent" in captured.err
