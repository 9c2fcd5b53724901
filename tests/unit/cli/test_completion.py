"""`mip6ctl completion bash`: generated from the parser, and it completes in a real bash."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mip6ctl.cli import completion
from mip6ctl.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[3]
BASH = shutil.which("bash")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.fixture(scope="module")
def script() -> str:
    return completion.bash_script()


def test_run_prints_the_script(capsys):
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out == completion.bash_script()
    assert out.rstrip().endswith("complete -F _mip6ctl 'mip6ctl'")


def test_every_subcommand_and_long_option_appears(script):
    subs = _subparsers(build_parser())
    assert {"status", "apply", "completion", "doctor", "rollback"} <= set(subs)
    by_name = {c.name: c for c in completion.commands(build_parser())}
    for name, parser in subs.items():
        assert f"        {name})" in script, name
        for action in parser._actions:
            for option in action.option_strings:
                if action.help == argparse.SUPPRESS:
                    assert option not in by_name[name].options  # hidden stays hidden
                    continue
                assert option in by_name[name].options, (name, option)
                if option.startswith("--"):
                    assert option in script, (name, option)
    assert "--show-secrets-fingerprints" not in script


def test_value_kinds_come_from_the_options():
    by_name = {c.name: c for c in completion.commands(build_parser())}
    assert by_name["apply"].values["--config-dir"] == "dir"
    assert by_name["apply"].values["-c"] == "dir"
    assert by_name["status"].values["--socket"] == "file"
    assert by_name["status"].values["--watch"] == "optional"
    assert by_name["daemon"].values["--state-dir"] == "dir"
    assert by_name["schema"].values["--output"] == "file"
    assert by_name["rollback"].values["--to"] == "none"
    assert "--json" not in by_name["status"].values  # a flag takes no value
    assert by_name["completion"].positionals == ["bash"]


def test_a_new_option_appears_without_editing_the_script():
    parser = build_parser()
    _subparsers(parser)["history"].add_argument("--limit-new", metavar="DIR")
    text = completion.bash_script(parser)
    assert "--limit-new" in text and "--limit-new) _mip6ctl_reply -d" in text


def test_import_stays_light():
    code = (
        "import sys, mip6ctl.cli.main, mip6ctl.cli.completion; "
        "print(sorted(m for m in ('pydantic', 'rich', 'asyncio', 'dataclasses', 'shlex', "
        "'inspect') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- real bash


def _complete(script_path: Path, *words: str, cwd: Path | None = None) -> list[str]:
    """COMPREPLY of the script for the command line `words` (the last one being completed)."""
    driver = (
        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); '
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; '
        "_mip6ctl; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    out = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", driver, "bash", str(script_path), *words],
        capture_output=True, text=True, check=True, timeout=10, cwd=cwd,
    )  # fmt: skip
    return [w for w in out.stdout.splitlines() if w]


@pytest.fixture(scope="module")
def script_file(tmp_path_factory: pytest.TempPathFactory, script: str) -> Path:
    if BASH is None:
        pytest.skip("no bash on this host")
    p = tmp_path_factory.mktemp("completion") / "mip6ctl.bash"
    p.write_text(script)
    subprocess.run([BASH, "-n", str(p)], check=True, timeout=10)  # syntax
    return p


def test_bash_subcommand(script_file):
    assert _complete(script_file, "mip6ctl", "st") == ["status"]
    assert "status" in _complete(script_file, "mip6ctl", "")
    assert set(_complete(script_file, "mip6ctl", "")) == set(_subparsers(build_parser()))


def test_bash_options_of_apply(script_file):
    got = _complete(script_file, "mip6ctl", "apply", "--c")
    assert {"--config-dir", "--confirm-timeout", "--check"} <= set(got)
    assert all(w.startswith("--c") for w in got)
    assert "--watch" not in _complete(script_file, "mip6ctl", "apply", "--")
    assert "--watch" in _complete(script_file, "mip6ctl", "status", "--")


def test_bash_options_after_other_options(script_file):
    got = _complete(script_file, "mip6ctl", "apply", "-c", "/etc", "--json", "--ch")
    assert got == ["--check"]


def test_bash_config_dir_completes_directories(script_file, tmp_path):
    (tmp_path / "conf-a").mkdir()
    (tmp_path / "conf-b").mkdir()
    (tmp_path / "conf-file").write_text("")
    for words in (("-c", "conf"), ("--config-dir", "conf"), ("--config-dir", "=", "conf")):
        got = _complete(script_file, "mip6ctl", "diff", *words, cwd=tmp_path)
        assert sorted(got) == ["conf-a", "conf-b"], words


def test_bash_socket_completes_files(script_file, tmp_path):
    (tmp_path / "control.sock").write_text("")
    got = _complete(script_file, "mip6ctl", "status", "--socket", "cont", cwd=tmp_path)
    assert got == ["control.sock"]


def test_bash_completion_shell_and_values_without_completion(script_file):
    assert _complete(script_file, "mip6ctl", "completion", "") == ["bash"]
    assert _complete(script_file, "mip6ctl", "rollback", "--to", "") == []
    assert _complete(script_file, "mip6ctl", "status", "--watch", "") == []
    assert _complete(script_file, "mip6ctl", "status", "--watch", "--j") == ["--json"]
    assert _complete(script_file, "mip6ctl", "--v") == ["--version"]
