"""mip6ctl(8) and mip6.toml(5) are generated from the parser and the schema, and render cleanly.

The pages are checked against an independent walk of `build_parser()` and of
the schema `mip6ctl schema` prints, so a new subcommand, option, section or
key that the generator misses fails here.  Rendering runs the real
``man -l --warnings`` (Debian: man-db, groff-base) and is skipped, with that
named, where ``man`` is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mip6ctl import __version__
from mip6ctl.cli import exitcodes, manpage
from mip6ctl.cli import main as cli
from mip6ctl.cli.schema import render

MAN = shutil.which("man")
needs_man = pytest.mark.skipif(
    MAN is None, reason="`man` not installed (Debian packages: man-db, groff-base)"
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def page8() -> str:
    return manpage.mip6ctl_8()


@pytest.fixture(scope="module")
def page5() -> str:
    return manpage.mip6_toml_5()


def _commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every visible subcommand (name, parser) of `parser`, walked independently of manpage.py."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            hidden = {a.dest for a in action._choices_actions if a.help == argparse.SUPPRESS}
            for name, sub in action.choices.items():
                if name not in hidden:
                    yield name, sub
                    yield from _commands(sub)


def _long_options(parser: argparse.ArgumentParser, hidden: bool) -> set[str]:
    return {
        opt
        for action in parser._actions
        if (action.help == argparse.SUPPRESS) == hidden
        for opt in action.option_strings
        if opt.startswith("--")
    }


def _section(page: str, name: str) -> str:
    """The roff text of section `name` (up to the next .SH)."""
    m = re.search(rf'^\.SH "?{re.escape(name)}"?\n(.*?)(?=^\.SH |\Z)', page, re.S | re.M)
    assert m, f"no .SH {name}"
    return m.group(1)


def _man(path: Path, locale: str = "C.UTF-8") -> subprocess.CompletedProcess[str]:
    assert MAN is not None
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": locale, "MAN_KEEP_FORMATTING": ""}
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    return subprocess.run(
        [MAN, "-l", "--warnings", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


# ------------------------------------------------------------------- mip6ctl(8)


def test_every_subcommand_and_long_option_is_in_mip6ctl_8(page8: str) -> None:
    parser = cli.build_parser()
    commands = list(_commands(parser))
    assert {"validate", "diff", "apply", "status", "daemon", "schema", "doctor"} <= {
        n for n, _ in commands
    }
    for name, sub in commands:
        assert f'.SS "{manpage.escape(name)}"' in page8, name
        assert f'.SY "mip6ctl {manpage.escape(name)}"' in page8, name
        for opt in _long_options(sub, hidden=False) - {"--help"}:
            assert manpage.escape(opt) in _section(page8, "COMMANDS"), (name, opt)
    for opt in _long_options(parser, hidden=False):
        assert manpage.escape(opt) in _section(page8, "OPTIONS"), opt


def test_suppressed_options_are_left_out(page8: str) -> None:
    hidden = set().union(
        *(_long_options(sub, hidden=True) for _, sub in _commands(cli.build_parser()))
    )
    assert "--show-secrets-fingerprints" in hidden  # the one today; the loop covers later ones
    for opt in hidden:
        assert manpage.escape(opt) not in page8, opt


def test_help_texts_are_there_with_defaults_expanded(page8: str) -> None:
    commands = _section(page8, "COMMANDS")
    for action in cli.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert manpage.inline(choice.help) in commands, choice.dest
    assert "%(default)s" not in page8
    assert manpage.escape("(default: $MIP6_CONFIG_DIR or /etc/mip6)") in commands


def test_defaults_do_not_come_from_the_building_environment(monkeypatch) -> None:
    monkeypatch.setenv("MIP6_CONFIG_DIR", "/srv/elsewhere")
    monkeypatch.setenv("MIP6_CONTROL_SOCKET", "/srv/elsewhere.sock")
    page = manpage.mip6ctl_8()
    assert "elsewhere" not in page
    assert manpage.escape("(default: /run/mip6/control.sock)") in page
    assert os.environ["MIP6_CONFIG_DIR"] == "/srv/elsewhere"  # put back afterwards


def test_exit_status_is_exitcodes_py(page8: str) -> None:
    section = _section(page8, "EXIT STATUS")
    codes = {v for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    assert codes == {0, 1, 2, 64, 69}
    found = {int(n) for n in re.findall(r"^\\fB(\d+)\\fR$", section, re.M)}
    assert found == codes
    assert manpage.escape("EX_USAGE: bad command line") in section
    assert [c for c, _n, _t in manpage.exit_codes()] == [0, 1, 2, 64, 69]


def test_environment_files_and_see_also(page8: str) -> None:
    env = _section(page8, "ENVIRONMENT")
    for var in ("MIP6_CONFIG_DIR", "MIP6_CONTROL_SOCKET", "MIP6_STATE_DIR"):
        assert f"\\fB{manpage.escape(var)}\\fR" in env
    # where each variable is used is found by building the parser with it set
    assert manpage.escape("`validate --config-dir`").replace("`", "") in env.replace(
        "\\fB", ""
    ).replace("\\fR", "")
    assert manpage.escape("daemon --state-dir") in env
    files = _section(page8, "FILES")
    for path in ("/etc/mip6/*.toml", "/var/lib/mip6", "/run/mip6/control.sock"):
        assert f"\\fI{manpage.escape(path)}\\fR" in files
    assert ".BR mip6.toml (5)" in _section(page8, "SEE ALSO")
    assert f'"mip6ctl {__version__}"' in page8.splitlines()[1]


def _fake_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mip6ctl", description=".starts with a dot")
    p.add_argument("--version", action="version", version="x")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    a = sub.add_parser("alpha", help="'quoted at the start", aliases=["al"])
    a.add_argument(
        "--path-name", metavar="P", default="/x", help="back\\slash, default %(default)s"
    )
    a.add_argument("--secret", help=argparse.SUPPRESS)
    a.add_argument("items", nargs="+", help="many")
    sub.add_parser("hidden", help=argparse.SUPPRESS)
    nest = sub.add_parser("group", help="nested commands")
    inner = nest.add_subparsers(dest="inner")
    deep = inner.add_parser("deep-er", help="two levels down")
    deep.add_argument("--count", type=int, choices=[1, 2], help="how many")
    return p


def test_the_walk_covers_aliases_nesting_and_escaping(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(cli, "build_parser", _fake_parser)
    page = manpage.mip6ctl_8()
    assert '.SS "alpha (alias al)"' in page
    assert '.SS "group deep\\-er"' in page and "two levels down" in page
    assert '.SY "mip6ctl group deep\\-er"' in page
    assert "\\fB\\-\\-path\\-name\\fR \\fIP\\fR" in page
    assert "back\\eslash, default /x" in page
    assert "\\fIitems\\fR [\\fIitems\\fR .\\|.\\|.]" in page
    assert "secret" not in page and "hidden" not in page
    # no text line may start with a control character
    for line in page.splitlines():
        if not line.startswith((".", "'")):
            continue
        assert re.match(r"^\.(\\\"|[A-Za-z]{1,2}\b)", line), line
    assert "\\&.starts with a dot" in page
    assert "\\&'quoted at the start" in page
    if MAN is not None:
        path = tmp_path / "fake.8"
        path.write_text(page)
        r = _man(path)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert ".starts with a dot" in r.stdout
        assert "back\\slash, default /x" in r.stdout
        assert "'quoted at the start" in r.stdout


def test_escape() -> None:
    assert manpage.escape("--json") == "\\-\\-json"
    assert manpage.escape("a\\b") == "a\\eb"
    assert manpage.escape("x ≤ 420 — §9") == "x \\(<= 420 \\(em section 9"
    assert manpage.escape("café") == "cafe"
    assert manpage.text_line(".x") == "\\&.x"
    assert manpage.text_line("'x") == "\\&'x"
    assert manpage.text_line("  a\n b ") == "a b"
    assert manpage.inline("run `mip6ctl confirm`") == "run \\fBmip6ctl confirm\\fR"
    assert manpage.toml_value(None) == "unset"
    assert manpage.toml_value([True, "a", 1.5]) == '[true, "a", 1.5]'


# ----------------------------------------------------------------- mip6.toml(5)


def test_every_section_and_key_is_in_mip6_toml_5(page5: str) -> None:
    schema = json.loads(render())
    sections = _section(page5, "SECTIONS")
    for name in schema["properties"]:
        assert re.search(rf"\[\[?{re.escape(name)}[\].]", sections), name
    # top-level properties are the sections above; every key of every table below them
    keys = {k for t in schema["$defs"].values() for k in t.get("properties", {})}
    assert len(keys) > 80
    for key in keys:
        assert f"\\fB{manpage.escape(key)}\\fR" in page5, key
    for heading in (
        "[node]",
        "[daemon.metrics]",
        "[[ha.mobile_nodes]]",
        "[ha.mobile_prefix_advertisements]",
        "[ipsec.NAME]",
        "[ipsec.NAME.encryption]",
        "[ipsec.NAME.tunnel_spi]",
        "[[mn.interfaces]]",
        "[[mn.correspondents]]",
        "[mn.timers]",
        "[[cn.policies]]",
    ):
        assert f'.SS "{manpage.escape(heading)}"' in page5, heading


def _entry(page: str, heading: str, key: str) -> str:
    """The roff of one key's .TP entry inside the .SS `heading`."""
    m = re.search(
        rf'^\.SS "{re.escape(manpage.escape(heading))}"\n(.*?)(?=^\.S[SH] |\Z)', page, re.S | re.M
    )
    assert m, heading
    e = re.search(
        rf"^\\fB{re.escape(manpage.escape(key))}\\fR.*?\n(.*?)(?=^\.TP|\Z)", m.group(1), re.S | re.M
    )
    assert e, (heading, key)
    return e.group(0)


def test_types_defaults_and_descriptions(page5: str) -> None:
    e = _entry(page5, "[kernel]", "route_table")
    assert "Type: integer, 1 to 4294967295; default: 6275." in e
    assert "table for per" in e
    e = _entry(page5, "[node]", "role")
    assert "(required)" in e and 'one of "ha", "mn", "cn"' in e
    assert e.splitlines()[1].startswith("\\&'ha'")  # a description starting with '
    e = _entry(page5, "[mn]", "home_agent")
    assert 'IPv6 address or "dhaad"' in e
    e = _entry(page5, "[ha]", "interfaces")
    assert "array of strings, each matching ^[^\\es/:]{1,15}$, at least 1 item" in e
    e = _entry(page5, "[ha]", "served_prefixes")
    assert "default: []" in e
    e = _entry(page5, "[daemon]", "metrics")
    assert "see \\fB[daemon.metrics]\\fR below" in e
    e = _entry(page5, "[daemon.metrics]", "listen")
    assert 'default: "127.0.0.1:9276"' in e
    e = _entry(page5, "[ipsec.NAME]", "rotation_grace")
    assert "0.5 to 3600.0; default: 10.0" in e
    e = _entry(page5, "[[mn.correspondents]]", "route_optimization")
    assert 'boolean or one of "always", "on\\-traffic", "never"; default: true' in e


def test_config_page_follows_any_schema() -> None:
    doc = {
        "description": "test",
        "additionalProperties": False,
        "required": ["top"],
        "properties": {
            "top": {"$ref": "#/$defs/Top"},
            "maps": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Leaf"}},
        },
        "$defs": {
            "Top": {
                "type": "object",
                "description": ".dotted description",
                "properties": {
                    "rows": {"type": "array", "items": {"$ref": "#/$defs/Leaf"}},
                    "sub": {"anyOf": [{"$ref": "#/$defs/Leaf"}, {"type": "null"}], "default": None},
                },
            },
            "Leaf": {
                "type": "object",
                "required": ["when"],
                "properties": {"when": {"type": "number", "exclusiveMinimum": 0}},
            },
        },
    }
    page = manpage.config_page(doc)
    for heading in ("[top]", "[[top.rows]]", "[top.sub]", "[maps.NAME]"):
        assert f'.SS "{heading}"' in page, heading
    assert "\\&.dotted description" in page
    assert "greater than 0" in page


def test_examples_validate(tmp_path, capsys) -> None:
    assert manpage.EXAMPLES
    for i, (_caption, text) in enumerate(manpage.EXAMPLES):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "mip6.toml").write_text(text)
        assert cli.main(["validate", "-c", str(d)]) == exitcodes.OK, capsys.readouterr()


def test_module_writes_both_pages(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    r = subprocess.run(
        [sys.executable, "-m", "mip6ctl.cli.manpage", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "mip6ctl.8").read_text() == manpage.mip6ctl_8()
    assert (tmp_path / "out" / "mip6.toml.5").read_text() == manpage.mip6_toml_5()
    assert '"1970-01-02"' in manpage.mip6ctl_8().splitlines()[1]
    r = subprocess.run(
        [sys.executable, "-m", "mip6ctl.cli.manpage"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == exitcodes.USAGE


# ----------------------------------------------------------------------- man -l

HEADERS = {
    "mip6ctl.8": (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ),
    "mip6.toml.5": ("NAME", "SYNOPSIS", "DESCRIPTION", "SECTIONS", "EXAMPLES", "FILES", "SEE ALSO"),
}


@needs_man
@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
@pytest.mark.parametrize("name", sorted(HEADERS))
def test_man_renders_without_warnings(name: str, locale: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(manpage.PAGES[name]())
    r = _man(path, locale)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    for header in HEADERS[name]:
        assert header in lines, header
    if name == "mip6ctl.8":
        # \- renders as ASCII hyphen-minus: options can be searched for and pasted
        assert "--config-dir DIR" in r.stdout and "--reset-binding-cache" in r.stdout
        assert "mip6ctl validate [-c DIR] [--json]" in r.stdout
    else:
        assert "[[ha.mobile_nodes]]" in r.stdout and "route_table" in r.stdout
        assert "\u2010" not in r.stdout  # no hyphenation inside keys or options
