"""`mip6ctl validate` warns about interfaces this host does not have; the exit code stays 0."""

from __future__ import annotations

import json

from mip6ctl.cli import exitcodes, validate
from mip6ctl.cli.main import main

MISSING = "mip6-absent0"  # no host has this (test-only name)

CONFIG = f"""\
[node]
role = "ha"

[ha]
interfaces = ["lo", "{MISSING}"]
home_prefixes = ["2001:db8:1::/64"]
"""

WARNING = (
    f"no interface {MISSING!r} on this host (a daemon here refuses this configuration until "
    "it exists)"
)


def test_interface_exists():
    assert validate.interface_exists("lo")
    assert not validate.interface_exists(MISSING)
    assert not validate.interface_exists("a\0b")


def test_json_output_carries_warnings_and_exit_code_is_ok(write, capsys):
    d = write({"a.toml": CONFIG})
    assert main(["validate", "-c", str(d), "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["errors"] == []
    assert doc["warnings"] == [
        {
            "kind": "host",
            "file": str(d / "a.toml"),
            "line": 5,
            "key": "ha.interfaces[1]",
            "message": WARNING,
        }
    ]


def test_human_output_shows_warnings(write, capsys):
    d = write({"a.toml": CONFIG})
    assert main(["validate", "-c", str(d)]) == exitcodes.OK
    out = capsys.readouterr()
    assert f"warning: {d / 'a.toml'}:5: ha.interfaces[1]: {WARNING}\n" in out.err
    assert "'lo'" not in out.err
    assert "valid" in out.out


def test_mobile_node_interfaces_are_checked_too(write, capsys):
    d = write(
        {
            "a.toml": '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
            f'home_agent = "dhaad"\ninterfaces = [\n  {{ name = "{MISSING}" }},\n]\n'
        }
    )
    assert main(["validate", "-c", str(d), "--json"]) == exitcodes.OK
    (w,) = json.loads(capsys.readouterr().out)["warnings"]
    assert (w["key"], w["line"]) == ("mn.interfaces[0]", 7)


def test_no_warnings_when_every_interface_exists(write, capsys, monkeypatch):
    monkeypatch.setattr(validate, "interface_exists", lambda name: True)
    d = write({"a.toml": CONFIG})
    assert main(["validate", "-c", str(d)]) == exitcodes.OK
    assert "warning" not in capsys.readouterr().err


def test_invalid_configuration_has_an_empty_warning_list(write, capsys):
    d = write({"a.toml": CONFIG + "bogus = 1\n"})
    assert main(["validate", "-c", str(d), "--json"]) == exitcodes.ERROR
    doc = json.loads(capsys.readouterr().out)
    assert doc["warnings"] == [] and doc["errors"][0]["key"] == "ha.bogus"
