"""Bad input becomes a problem report, never a traceback; limits are checked before parsing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from mip6ctl.config import loader
from mip6ctl.config.loader import ConfigError, load_directory
from mip6ctl.config.locate import MAX_DEPTH, MAX_SCALAR
from mip6ctl.config.problems import format_path

from .conftest import HA_MIN

DEEP = 100_000


def problems(d: Path):
    with pytest.raises(ConfigError) as e:
        load_directory(d)
    return e.value.problems


def the_problem(d: Path):
    (p,) = problems(d)
    return p


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize(
    "value",
    [
        "[" * DEEP + "]" * DEEP,  # arrays in arrays
        "{ a = " * DEEP + "1" + " }" * DEEP,  # inline tables in inline tables
        "[" * DEEP,  # and unterminated
        "[{ a = " * 2000 + "1" + " }]" * 2000,  # both, alternating
    ],
    ids=["arrays", "inline-tables", "unterminated", "mixed"],
)
def test_deeply_nested_value_is_reported_with_file_and_line(write, value):
    d = write({"a.toml": HA_MIN + "\nx = " + value + "\n"})
    p = the_problem(d)
    assert p.kind == "limit"
    assert p.message == f"nesting too deep: arrays and tables may nest at most {MAX_DEPTH} levels"
    assert (p.file, p.line) == (str(d / "a.toml"), 8)
    assert str(p).startswith(f"{d / 'a.toml'}:8: nesting too deep")


@pytest.mark.parametrize(
    "statement",
    [
        "[" + ".".join(["a"] * DEEP) + "]",  # a table header
        "[[" + ".".join(["a"] * DEEP) + "]]",  # an array of tables
        ".".join(["a"] * DEEP) + " = 1",  # a dotted key
        ".".join(['"a"'] * DEEP) + " = 1",  # quoted parts
    ],
    ids=["header", "array-of-tables", "dotted-key", "quoted-dotted-key"],
)
def test_long_dotted_keys_are_refused_quickly(write, statement):
    # tomllib's time grows with the square of a key's parts: never hand it one
    d = write({"a.toml": HA_MIN + "\n" + statement + "\n"})
    t0 = time.perf_counter()
    p = the_problem(d)
    assert time.perf_counter() - t0 < 5
    assert (p.kind, p.line) == ("limit", 8)
    assert "nesting too deep" in p.message


def test_nesting_up_to_the_limit_is_not_refused_for_depth(write, tmp_path):
    # key path ha.x[0][0]...: the key path of the innermost array is MAX_DEPTH long
    ok = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    p = the_problem(write({"a.toml": HA_MIN + "\nx = " + ok + "\n"}, tmp_path / "ok"))
    assert (p.kind, p.key, p.message) == ("schema", "ha.x", "unknown key")
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    p = the_problem(write({"a.toml": HA_MIN + "\nx = " + deep + "\n"}, tmp_path / "deep"))
    assert p.kind == "limit"


def test_deep_nesting_in_two_files_reports_both(write):
    d = write({"a.toml": HA_MIN, "b.toml": "x = " + "[" * 500, "c.toml": "y = " + "{a=" * 500})
    ps = problems(d)
    assert [(p.file, p.kind, p.line) for p in ps] == [
        (str(d / "b.toml"), "limit", 1),
        (str(d / "c.toml"), "limit", 1),
    ]


def test_recursion_inside_the_parser_is_caught(write, monkeypatch):
    # should some nesting get past the scanner, tomllib's RecursionError is still a report
    monkeypatch.setattr(loader, "key_lines", lambda text: ({}, set()))
    p = the_problem(write({"a.toml": "x = " + "[" * DEEP + "]" * DEEP + "\n"}))
    assert (p.kind, p.message.split(":")[0]) == ("limit", "nesting too deep")


# --------------------------------------------------------------------------- odd bytes


def test_not_utf8_names_the_line(write):
    p = the_problem(write({"a.toml": HA_MIN.encode() + b'\nx = "caf\xe9"\n'}))
    assert (p.kind, p.line, p.message) == ("syntax", 8, "not valid UTF-8")


def test_random_bytes(write):
    p = the_problem(write({"a.toml": bytes(range(256)) * 4}))
    assert p.kind == "syntax" and p.file.endswith("a.toml")


def test_nul_byte_is_a_syntax_error(write):
    p = the_problem(write({"a.toml": HA_MIN + 'x = "a\0b"\n'}))
    assert (p.kind, p.line) == ("syntax", 7)
    assert "Illegal character" in p.message


def test_nul_in_a_file_path_is_refused(write):
    d = write({"a.toml": HA_MIN + '[daemon]\nstate_dir = "/var/lib/\\u0000x"\n'})
    p = the_problem(d)
    assert (p.key, p.line) == ("daemon.state_dir", 8)
    assert "NUL" in p.message


def test_nul_in_a_key_file_path_is_a_key_file_problem(write):
    d = write(
        {
            "a.toml": HA_MIN
            + '[ipsec.a]\nprotect = ["binding-update"]\nspi = { to_ha = 300, to_mn = 301 }\n'
            'authentication = { algorithm = "hmac-sha1", key_file = "k\\u0000" }\n'
        }
    )
    p = the_problem(d)
    assert p.key == "ipsec.a.authentication.key_file" and "NUL" in p.message


@pytest.mark.parametrize("name", ["a\\u0000b", ".", "..", "a\\tb", "\\u001b[2J", "ééééééééé"])
def test_bad_interface_names(write, name):
    d = write({"a.toml": HA_MIN.replace('["home0"]', f'["{name}"]')})
    p = the_problem(d)
    assert p.key == "ha.interfaces[0]" and "is not a Linux interface name" in p.message


def test_control_characters_in_keys_are_escaped_in_reports(write):
    p = the_problem(write({"a.toml": HA_MIN + '"x\\u001b[2J" = 1\n'}))
    assert p.key == 'ha."x\\u001b[2J"' and "\x1b" not in str(p)


# --------------------------------------------------------------------------- huge values


@pytest.mark.parametrize(
    "value", ["9" * 5000, "0x" + "f" * 5000, "1." + "1" * 5000, "[" + "1" * 5000 + "]"]
)
def test_long_numbers_never_reach_tomllib(write, value):
    # its number pattern costs ~130 bytes per digit: 2 GB for a 16 MiB float
    d = write({"a.toml": HA_MIN + f"max_binding_lifetime = {value}\n"})
    p = the_problem(d)
    assert (p.kind, p.line) == ("limit", 7)
    n = len(value.strip("[]"))
    assert p.message == (
        f"value of {n:,} characters; a number, date or boolean may have at most {MAX_SCALAR:,}"
    )


def test_integer_beyond_pythons_conversion_limit(write):
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        d = write({"a.toml": HA_MIN + "max_binding_lifetime = " + "9" * 700 + "\n"})
        p = the_problem(d)
    finally:
        sys.set_int_max_str_digits(old)
    assert (p.kind, p.line, p.message) == ("limit", 7, "integer has more than 640 digits")


def test_huge_hexadecimal_integer(write):
    d = write({"a.toml": HA_MIN + "max_binding_lifetime = 0x" + "f" * 990 + "\n"})
    p = the_problem(d)
    assert (p.key, p.line, p.message) == (
        "ha.max_binding_lifetime",
        7,
        "Input should be less than or equal to 262140",
    )


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e999"])
def test_special_floats(write, value):
    p = the_problem(write({"a.toml": HA_MIN + f"[daemon]\nreconcile_interval = {value}\n"}))
    assert p.key == "daemon.reconcile_interval" and p.kind == "schema"


def test_huge_string_message_is_clipped(write):
    junk = "1" * 1_000_000
    d = write({"a.toml": HA_MIN + f'\n[[ha.mobile_nodes]]\nhome_address = "{junk}"\n'})
    p = the_problem(d)
    assert p.key == "ha.mobile_nodes[0].home_address" and p.line == 9
    assert len(p.message) <= 400 and p.message.endswith("characters)")


def test_huge_key_is_clipped_in_the_key_path(write):
    p = the_problem(write({"a.toml": HA_MIN + '"' + "k" * 1_000_000 + '" = 1\n'}))
    assert p.message == "unknown key" and len(p.key) < 100
    assert p.key.endswith('…(1,000,000 characters)"')
    assert format_path(("a", "b" * 64)) == "a." + "b" * 64  # short enough: whole


# --------------------------------------------------------------------------- size limits


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)


def test_file_over_the_limit_is_refused_before_it_is_read(write, monkeypatch):
    d = write({"a.toml": HA_MIN})
    _sparse(d / "b.toml", loader.MAX_FILE_BYTES + 1)
    monkeypatch.setattr(loader, "_parse", lambda *a: pytest.fail("parsed"))
    p = the_problem(d)
    assert (p.kind, p.file, p.line) == ("limit", str(d / "b.toml"), None)
    assert p.message == (
        "file is 16,777,217 bytes (16.0 MiB), more than the limit of 16 MiB per file"
    )


def test_directory_over_the_limit_is_refused(write):
    d = write({"a.toml": HA_MIN})
    for n in range(5):
        _sparse(d / f"b{n}.toml", 15 * loader.MiB)
    p = the_problem(d)
    assert (p.kind, p.file) == ("limit", str(d))
    total = 5 * 15 * loader.MiB + len(HA_MIN)
    assert p.message == (
        f"the 6 configuration files hold {total:,} bytes (75.0 MiB), more than the limit "
        "of 64 MiB per directory"
    )


def test_limits_are_module_constants(write, monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 100)
    d = write({"a.toml": HA_MIN + "#" * 100})
    assert "more than the limit" in the_problem(d).message
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 10_000)
    monkeypatch.setattr(loader, "MAX_DIRECTORY_BYTES", 300)
    d = write({"b.toml": "#" * 150}, d)
    assert the_problem(d).file == str(d)


def test_file_that_grows_after_it_was_measured(write, monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 1000)
    d = write({"a.toml": HA_MIN})
    monkeypatch.setattr(loader, "_size_problems", lambda *a: [])  # as if measured small
    (d / "a.toml").write_text(HA_MIN + "#" * 2000)
    p = the_problem(d)
    assert p.kind == "limit" and "1,001 bytes" in p.message


def test_oversized_key_file(write):
    d = write(
        {
            "a.toml": HA_MIN
            + '[ipsec.a]\nprotect = ["binding-update"]\nspi = { to_ha = 300, to_mn = 301 }\n'
            'authentication = { algorithm = "hmac-sha1", key_file = "k" }\n'
            '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\nipsec = "a"\n'
        }
    )
    (d / "k").write_text("00" * 5000)
    (d / "k").chmod(0o600)
    p = the_problem(d)
    assert p.kind == "key-file" and "a key file holds at most 4,096" in p.message


# --------------------------------------------------------------------------- scale


def test_many_one_node_files_merge_in_linear_time(write):
    # 2,000 files of one node each: concatenating the array per file was quadratic
    files = {"00.toml": HA_MIN}
    for i in range(2000):
        files[f"n{i:05d}.toml"] = f'[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::{i + 256:x}"\n'
    d = write(files)
    t0 = time.perf_counter()
    gen = load_directory(d)
    assert time.perf_counter() - t0 < 5
    assert len(gen.config.ha.mobile_nodes) == 2000
    assert gen.where(("ha", "mobile_nodes", 1999, "home_address")) == f"{d / 'n01999.toml'}:2"
