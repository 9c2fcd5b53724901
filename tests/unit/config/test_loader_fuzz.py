"""Fuzzing the loader: any bytes give a generation or a problem report, nothing else.

Also checks that the line scanner, which runs on any text before tomllib,
raises nothing but LimitExceeded.
"""

from __future__ import annotations

import json
import tempfile
from ipaddress import IPv6Address
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mip6ctl.config.loader import ConfigError, Generation, load_directory
from mip6ctl.config.locate import LimitExceeded, key_lines
from mip6ctl.config.types import _address

from .conftest import EXAMPLES, HA_MIN

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no .hypothesis directory in the work tree
)

KINDS = {
    "syntax",
    "schema",
    "conflict",
    "reference",
    "consistency",
    "key-file",
    "io",
    "limit",
}

SEEDS = [HA_MIN] + [
    p.read_text()
    for p in sorted(EXAMPLES.rglob("*.toml"))
    if "broken" not in p.parts or p.parent.name in ("syntax", "duplicate-key", "wrong-type")
]

SNIPPETS = [
    "[", "]", "[[", "]]", "{", "}", "=", ",", ".", '"', "'", '"""', "'''", "#", "\n", "\r",
    "\r\n", "\t", " ", "\\", "\\u0000", "\x00", "\x7f", "\u2028", "é", "a", "_", "-", "0x",
    "1e9999", "inf", "nan", "-0", "1979-05-27T07:32:00Z", "true", "9" * 5000,
    "[" * 300, "{a=" * 300, "a." * 200 + "a = 1", "[ha]", "[[ha.mobile_nodes]]",
    'home_address = "2001:db8:1::5"', 'home_prefixes = ["2001:db8:1::/48"]', "[node]",
    'role = "mn"', "x = [1, 'a', {b = 2}]\n",
]  # fmt: skip

TOMLISH = st.sampled_from(list("[]{}=,.\"'#\n\r\t \\_-:/0123456789abcdefxyz") + SNIPPETS)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid (or documented broken) example with a few edits."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line"]))
        if op == "insert":
            text = text[:pos] + draw(TOMLISH) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)) :]
        elif op == "replace":
            text = text[:pos] + draw(TOMLISH) + text[pos + 1 :]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + lines[i:])
    return text


KEY = st.from_regex(r"[a-z_][a-z0-9_-]{0,8}", fullmatch=True) | st.sampled_from(
    ['"q k"', "'lit'", '"a.b"', "mobile_nodes", "ha", "node", "role", "interfaces"]
)
SCALAR = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text(st.characters(codec="utf-8", exclude_characters='"\\'), max_size=8).map(
        lambda s: f'"{s}"'
    ),
    st.text(st.characters(codec="utf-8", exclude_characters="'\n\r"), max_size=8).map(
        lambda s: f"'{s}'"
    ),
    st.sampled_from(["true", "false", "1.5", "inf", "0x1F", "1_000", "01", '"\\u00e9"']),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
        | st.lists(st.tuples(KEY, inner), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k} = {v}" for k, v in kv) + "}"
        )
    ),
    max_leaves=6,
)
STATEMENT = st.one_of(
    st.tuples(KEY, VALUE).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.lists(KEY, min_size=1, max_size=3).map(lambda ks: "[" + ".".join(ks) + "]"),
    st.lists(KEY, min_size=1, max_size=3).map(lambda ks: "[[" + ".".join(ks) + "]]"),
    st.sampled_from(["", "# comment", "  ", "[ha]", "[[ha.mobile_nodes]]"]),
)
#: TOML-shaped documents, plain and not.
DOCUMENT = st.lists(STATEMENT, max_size=12).map(lambda ls: "\n".join(ls) + "\n")

# Plain statements over few names, so that keys and tables collide often: the fast
# path must refuse exactly what tomllib refuses (a key or table defined twice, a
# table over a value or an array of tables, ...).
NAME = st.sampled_from(["a", "b", "c"])
PLAIN_VALUE = st.sampled_from(['"s"', "'l'", "1", "-0", "true", '["x", 2]', "[]", "1.5", "{}"])
PLAIN = st.lists(
    st.one_of(
        st.tuples(NAME, PLAIN_VALUE).map(lambda kv: f"{kv[0]} = {kv[1]}"),
        st.lists(NAME, min_size=1, max_size=3).map(lambda ks: "[" + ".".join(ks) + "]"),
        st.lists(NAME, min_size=1, max_size=3).map(lambda ks: "[[" + ".".join(ks) + "]]"),
    ),
    max_size=10,
).map(lambda ls: "\n".join(ls) + "\n")

TEXT = st.one_of(mutated(), DOCUMENT, st.lists(TOMLISH, max_size=40).map("".join))


def _load(files: dict[str, bytes]) -> Generation | ConfigError:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, raw in files.items():
            (d / name).write_bytes(raw)
        try:
            return load_directory(d)
        except ConfigError as e:
            return e


def _check_report(result: Generation | ConfigError) -> None:
    if isinstance(result, Generation):
        return
    assert result.problems
    for p in result.problems:
        assert p.kind in KINDS, p
        json.dumps(p.as_dict())
        str(p)


@FUZZ
@given(TEXT)
def test_text_gives_a_generation_or_a_report(text: str) -> None:
    _check_report(_load({"a.toml": text.encode("utf-8", "surrogatepass")}))


@FUZZ
@given(st.binary(max_size=300), mutated())
def test_bytes_give_a_generation_or_a_report(raw: bytes, text: str) -> None:
    _check_report(_load({"a.toml": raw, "b.toml": text.encode("utf-8", "surrogatepass")}))


@FUZZ
@given(st.one_of(PLAIN, DOCUMENT, mutated()))
def test_the_line_scanner_raises_nothing_but_its_limits(text: str) -> None:
    try:
        lines, aot = key_lines(text)
    except LimitExceeded:
        return
    assert all(isinstance(n, int) and n >= 1 for n in lines.values())
    assert aot <= set(lines)


ADDRESS_TEXT = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.lists(
        st.sampled_from([*"0123456789abcdefABCDEF:.", "::", "0000", "00001"]), max_size=16
    ).map("".join),
)


@FUZZ
@given(ADDRESS_TEXT)
def test_address_fast_path_accepts_what_ipaddress_accepts(text: str) -> None:
    # types._address tries libc's inet_pton first: same answers as ipaddress, or it's a bug
    try:
        want = IPv6Address(text)
    except ValueError:
        want = None
    try:
        got = _address(text)
    except ValueError:
        got = None
    assert got == want
