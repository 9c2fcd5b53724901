"""Man pages generated from the code, so that they cannot drift from it.

* ``mip6ctl(8)`` from `mip6ctl.cli.main.build_parser()`: every subcommand
  with its options and help texts (argparse's subparsers walked, SUPPRESSed
  options and subcommands left out), the exit codes of `mip6ctl.cli.exitcodes`
  with their comments, and the environment variables found by building the
  parser with each one set.
* ``mip6.toml(5)`` from the JSON Schema `mip6ctl schema` prints
  (`mip6ctl.cli.schema.render`): every section and key with its type,
  constraints, default and description; nested tables, arrays of tables and
  ``[ipsec.NAME]``-style maps included.

``python -m mip6ctl.cli.manpage OUTDIR`` writes ``OUTDIR/mip6ctl.8`` and
``OUTDIR/mip6.toml.5`` (``scripts/build-deb`` gzips them into the Debian
package).  The date in the title line is ``$SOURCE_DATE_EPOCH`` when set
(reproducible builds), else today.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import inspect
import io
import json
import os
import re
import sys
import tokenize
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mip6ctl
from mip6ctl import __version__
from mip6ctl.cli import exitcodes, main

#: The environment variables the CLI reads, with what they mean; where each
#: one is used (which option's default) is found by building the parser.
ENVIRONMENT: dict[str, str] = {
    "MIP6_CONFIG_DIR": f"configuration directory (default {main.DEFAULT_CONFIG_DIR})",
    "MIP6_CONTROL_SOCKET": f"control socket of the daemon (default {main.DEFAULT_CONTROL_SOCKET})",
    "MIP6_STATE_DIR": "persistent state (binding cache) directory of the daemon "
    f"(default: daemon.state_dir of the configuration, {main.DEFAULT_STATE_DIR})",
}

FILES: tuple[tuple[str, str], ...] = (
    (
        f"{main.DEFAULT_CONFIG_DIR}/*.toml",
        "the configuration: every file of the directory, merged into one generation; "
        "see mip6.toml(5)",
    ),
    (
        main.DEFAULT_STATE_DIR,
        "persistent state of the daemon: the home agent's binding cache (SQLite) and "
        "the configuration generations kept for history and rollback",
    ),
    (
        main.DEFAULT_CONTROL_SOCKET,
        "the daemon's control socket, used by status, diff, apply and the other commands "
        "that talk to a running daemon",
    ),
)

#: Configurations shown in mip6.toml(5) EXAMPLES; the unit tests validate each.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "A home agent on one home link that serves one listed mobile node. Without "
        "IPsec anyone who can reach it can forge Binding Updates for that home address "
        "(validate warns); protect it with an [ipsec.NAME] template and "
        "ha.require_ipsec = true:",
        """\
[node]
role = "ha"

[ha]
interfaces = ["eth0"]
home_prefixes = ["2001:db8:1::/64"]

[[ha.mobile_nodes]]          # may be repeated, also in other files
home_address = "2001:db8:1::100"
""",
    ),
    (
        "A correspondent node that route-optimises only mobile nodes of one home prefix:",
        """\
[node]
role = "cn"

[cn]
default_action = "deny"

[[cn.policies]]
home_prefix = "2001:db8:1::/64"
action = "allow"
""",
    ),
)

# --------------------------------------------------------------------------- roff

#: Characters outside ASCII that the descriptions use, as groff glyphs that
#: every output device (also -Tascii) can draw, or ASCII.
_GLYPHS = {
    "\u2014": "\\(em",  # em dash
    "\u2013": "\\(en",  # en dash
    "\u2212": "\\-",  # minus sign
    "\u2264": "\\(<=",
    "\u2265": "\\(>=",
    "\u2260": "\\(!=",
    "\u2248": "~",
    "\u00b1": "\\(+-",
    "\u00d7": "\\(mu",
    "\u2192": "\\(->",
    "\u2190": "\\(<-",
    "\u2194": "\\(<>",
    "\u00b7": "\\(bu",
    "\u2022": "\\(bu",
    "\u2018": "\\(oq",
    "\u2019": "\\(cq",
    "\u201c": "\\(lq",
    "\u201d": "\\(rq",
    "\u2026": ".\\|.\\|.",
    "\u00a0": "\\ ",
    "\u00b5": "u",
    "\u00b0": " degrees",
}

_CODE = re.compile(r"``(.+?)``|`([^`]+)`")


def escape(text: str) -> str:
    """Plain text as roff text: backslashes, hyphens, non-ASCII; nothing else is changed.

    Backslashes become ``\\e`` and every hyphen-minus ``\\-`` (an option such as
    ``--json`` must stay two ASCII hyphens, never typographic hyphens, so that it
    can be searched for and pasted).  Characters outside ASCII become groff
    glyphs.  A dot or apostrophe at the start of a line is the business of
    `text_line`, which every text line of the pages goes through.
    """
    # No section sign in -Tascii: "RFC 6275 §9" reads "RFC 6275 section 9".
    text = re.sub(r"§§\s*", "sections ", text)
    text = re.sub(r"§\s*", "section ", text)
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\e")
        elif ch == "-":
            out.append("\\-")
        elif ch == "\t":
            out.append(" ")
        elif ord(ch) < 128:
            out.append(ch)
        elif ch in _GLYPHS:
            out.append(_GLYPHS[ch])
        else:
            plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(plain if plain else f"\\[u{ord(ch):04X}]")
    return "".join(out)


def inline(text: str) -> str:
    """`escape`, with ```code``` and ````code```` in bold (help texts and docstrings use both)."""
    out: list[str] = []
    pos = 0
    for m in _CODE.finditer(text):
        out.append(escape(text[pos : m.start()]))
        out.append("\\fB" + escape(m.group(1) or m.group(2)) + "\\fR")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def text_line(roff: str) -> str:
    """One roff text line: never read as a request (leading ``.``/``'``), no leading blank."""
    roff = " ".join(roff.split())
    if roff.startswith((".", "'")):
        return "\\&" + roff
    return roff


def _quote_arg(roff: str) -> str:
    """A macro argument: double-quoted, with its own double quotes as glyphs."""
    return '"' + roff.replace('"', "\\(dq") + '"'


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each joined to one line."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _sentence(text: str) -> str:
    """`text` ending in punctuation (the models' descriptions are fragments)."""
    text = text.rstrip()
    return text if not text or text[-1] in ".!?:;" else text + "."


def _body(lines: list[str], text: str | None) -> None:
    """Paragraphs of `text` as the body of the current .TP/.IP (later ones as .IP)."""
    for i, para in enumerate(_paragraphs(text or "")):
        if i:
            lines.append(".IP")
        lines.append(text_line(inline(_sentence(para))))


def _th(title: str, section: int, manual: str) -> list[str]:
    return [
        f'.\\" Generated by mip6ctl/cli/manpage.py ({__version__}); do not edit.',
        f".TH {title} {section} {_quote_arg(_date())} "
        f"{_quote_arg('mip6ctl ' + escape(__version__))} {_quote_arg(manual)}",
        # No hyphenation: option names and keys (daemon.control_socket) must stay whole.
        # groff's .YS restores hyphenation from the HY register, hence both.
        ".nr HY 0",
        ".nh",
    ]


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
        if epoch and epoch.isdigit()
        else datetime.datetime.now(tz=datetime.UTC)
    )
    return when.strftime("%Y-%m-%d")


def _summary() -> str:
    """The package's one-line summary (its docstring), for NAME."""
    doc = (mip6ctl.__doc__ or "").strip().splitlines()[0]
    return doc.partition(": ")[2].rstrip(".") or doc


# ----------------------------------------------------------------- mip6ctl(8)


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """Set (str) or remove (None) environment variables for the duration."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _clean_parser() -> argparse.ArgumentParser:
    """`build_parser()` as without any MIP6_* variable: defaults as documented, not as here."""
    with _environ(**dict.fromkeys(ENVIRONMENT)):
        return main.build_parser()


def subcommands(
    parser: argparse.ArgumentParser, path: Sequence[str] = ()
) -> Iterator[tuple[list[str], list[str], argparse.ArgumentParser, str | None]]:
    """(path, aliases, parser, help) of every subcommand, depth first, SUPPRESSed ones left out."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        names: dict[int, list[str]] = {}
        for name, sub in action.choices.items():
            names.setdefault(id(sub), []).append(name)
        for name, sub in action.choices.items():
            aliases = names[id(sub)]
            if aliases[0] != name:
                continue
            help_text = helps.get(name)
            if help_text == argparse.SUPPRESS:
                continue
            yield [*path, name], aliases[1:], sub, help_text
            yield from subcommands(sub, [*path, name])


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
    ]


def _metavar(action: argparse.Action) -> str:
    """The argument of an option as roff (``\\fIDIR\\fR``), shaped by nargs as argparse does."""
    if action.option_strings and action.nargs == 0:
        return ""
    if action.metavar is not None:
        names = action.metavar if isinstance(action.metavar, tuple) else (action.metavar,)
    elif action.choices is not None:
        names = ("{" + ",".join(map(str, action.choices)) + "}",)
    elif action.option_strings:
        names = (action.dest.upper(),)
    else:
        names = (action.dest,)
    m = [f"\\fI{escape(str(n))}\\fR" for n in names]
    nargs = action.nargs
    if nargs is None or nargs == 1:
        return m[0]
    if nargs == argparse.OPTIONAL:
        return f"[{m[0]}]"
    if nargs == argparse.ZERO_OR_MORE:
        return f"[{m[0]} .\\|.\\|.]"
    if nargs == argparse.ONE_OR_MORE:
        return f"{m[0]} [{m[0]} .\\|.\\|.]"
    if nargs in (argparse.REMAINDER, argparse.PARSER):
        return f"{m[0]} .\\|.\\|."
    if isinstance(nargs, int):
        return " ".join(m[i % len(m)] for i in range(nargs))
    return m[0]


def _help(action: argparse.Action, prog: str) -> str:
    """The help text with argparse's %(default)s & co. expanded."""
    text = action.help or ""
    params: dict[str, Any] = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    for key, value in list(params.items()):
        if hasattr(value, "__name__"):
            params[key] = value.__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    try:
        return text % params
    except (KeyError, TypeError, ValueError):
        return text


def _synopsis(prog: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    lines = [f".SY {_quote_arg(escape(' '.join(prog)))}"]
    for action in _visible(parser):
        if isinstance(action, argparse._HelpAction) and len(prog) > 1:
            continue
        meta = _metavar(action)
        if action.option_strings:
            flag = escape(action.option_strings[0])
            if meta:
                lines.append(f".OP {flag} {_quote_arg(meta)}")
            else:
                lines.append(f".OP {flag}")
        else:
            lines.append(text_line(meta))
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        lines.append(text_line("\\fICOMMAND\\fR [\\fIOPTIONS\\fR]"))
    lines.append(".YS")
    return lines


def _options(lines: list[str], parser: argparse.ArgumentParser, prog: str, top: bool) -> None:
    for action in _visible(parser):
        if isinstance(action, argparse._HelpAction) and not top:
            continue  # every command has -h; OPTIONS says so once
        meta = _metavar(action)
        if action.option_strings:
            tag = ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
            if meta:
                tag += " " + meta
        else:
            tag = meta
        lines.append(".TP")
        lines.append(text_line(tag))
        help_text = _help(action, prog)
        if action.choices is not None and not action.option_strings:
            help_text = help_text.rstrip(".") + "; one of: " + ", ".join(map(str, action.choices))
        _body(lines, help_text or "(no description)")


def _environment_uses() -> dict[str, list[str]]:
    """VAR -> ["validate --config-dir", ...]: the options whose default VAR sets."""
    uses: dict[str, list[str]] = {}
    for var in ENVIRONMENT:
        sentinel = f"/nonexistent/{var}.probe"
        with _environ(**{**dict.fromkeys(ENVIRONMENT), var: sentinel}):
            parser = main.build_parser()
        found = []
        for path, _aliases, sub, _help_text in subcommands(parser):
            for action in sub._actions:
                if action.default == sentinel and action.option_strings:
                    found.append(f"{' '.join(path)} {action.option_strings[-1]}")
        uses[var] = found
    return uses


def exit_codes() -> list[tuple[int, str, str]]:
    """(value, NAME, comment) of every constant in `mip6ctl.cli.exitcodes`, in source order."""
    source = inspect.getsource(exitcodes)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out: list[tuple[int, str, str]] = []
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(value := getattr(exitcodes, node.targets[0].id, None), int)
        ):
            name = node.targets[0].id
            out.append((value, name, comments.get(node.lineno, name.lower())))
    return out


def mip6ctl_8() -> str:
    """mip6ctl(8) in roff, generated from the parser, the exit codes and the environment."""
    parser = _clean_parser()
    prog = parser.prog
    lines = _th("MIP6CTL", 8, "System Administration")
    lines += [".SH NAME", text_line(f"{escape(prog)} \\- {inline(_summary())}")]

    lines.append(".SH SYNOPSIS")
    lines += _synopsis([prog], parser)
    commands = list(subcommands(parser))
    for path, _aliases, sub, _help_text in commands:
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
            lines += _synopsis([prog, *path], sub)

    lines.append(".SH DESCRIPTION")
    _body(lines, parser.description)
    with_json = [
        " ".join(path)
        for path, _aliases, sub, _help_text in commands
        if any("--json" in a.option_strings for a in _visible(sub))
    ]
    text = "Every command takes `-h`/`--help`. "
    if with_json:
        text += f"With `--json`, {', '.join(with_json)} print one versioned JSON document. "
    text += "The configuration is described in mip6.toml(5)."
    lines += [".PP", text_line(inline(text))]

    lines.append(".SH OPTIONS")
    _options(lines, parser, prog, top=True)

    lines.append(".SH COMMANDS")
    for path, aliases, sub, help_text in commands:
        heading = " ".join(path) + (f" (alias {', '.join(aliases)})" if aliases else "")
        lines.append(f".SS {_quote_arg(escape(heading))}")
        for text in (help_text, sub.description):
            if text and text != argparse.SUPPRESS:
                lines.append(".PP")
                lines.append(text_line(inline(text)))
        _options(lines, sub, f"{prog} {' '.join(path)}", top=False)
        if sub.epilog:
            lines.append(".PP")
            lines.append(text_line(inline(sub.epilog)))

    lines.append(".SH EXIT STATUS")
    for value, _name, comment in exit_codes():
        lines += [".TP", text_line(f"\\fB{value}\\fR"), text_line(inline(comment))]

    lines.append(".SH ENVIRONMENT")
    uses = _environment_uses()
    for var, meaning in ENVIRONMENT.items():
        lines += [".TP", text_line(f"\\fB{escape(var)}\\fR")]
        text = meaning[0].upper() + meaning[1:]
        if uses[var]:
            text += "; the default of " + ", ".join(f"`{u}`" for u in uses[var])
        lines.append(text_line(inline(text + ".")))

    lines.append(".SH FILES")
    for path, what in FILES:
        lines += [".TP", text_line(f"\\fI{escape(path)}\\fR"), text_line(inline(what + "."))]

    lines += [
        ".SH SEE ALSO",
        ".BR mip6.toml (5),",
        ".BR ip (8),",
        ".BR ip\\-xfrm (8),",
        ".BR systemctl (1),",
        ".BR swanctl (8)",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ mip6.toml(5)


class _Schema:
    """The JSON Schema of the configuration with its $refs resolved on demand."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.defs: dict[str, Any] = doc.get("$defs", {})

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """`node` with a local ``$ref`` replaced by its target (siblings of $ref kept)."""
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/$defs/"):
                raise ValueError(f"unsupported $ref {ref!r}")
            target = self.defs[ref.removeprefix("#/$defs/")]
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings}
        return node

    def alternatives(self, node: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """(the non-null alternatives of anyOf/oneOf, or [node]; whether null is allowed)."""
        node = self.resolve(node)
        alts = node.get("anyOf") or node.get("oneOf")
        if not alts:
            return [node], node.get("type") == "null"
        resolved = [self.resolve(a) for a in alts]
        real = [a for a in resolved if a.get("type") != "null"]
        return real, len(real) != len(resolved)

    def table(self, node: dict[str, Any]) -> dict[str, Any] | None:
        """The object schema if `node` is a table with declared keys, else None."""
        alts, _ = self.alternatives(node)
        if len(alts) == 1 and alts[0].get("type") == "object" and "properties" in alts[0]:
            return alts[0]
        return None

    def array_of_tables(self, node: dict[str, Any]) -> dict[str, Any] | None:
        alts, _ = self.alternatives(node)
        if len(alts) == 1 and alts[0].get("type") == "array" and "items" in alts[0]:
            return self.table(alts[0]["items"])
        return None

    def map_of_tables(self, node: dict[str, Any]) -> dict[str, Any] | None:
        alts, _ = self.alternatives(node)
        if len(alts) == 1 and alts[0].get("type") == "object" and "properties" not in alts[0]:
            extra = alts[0].get("additionalProperties")
            if isinstance(extra, dict):
                return self.table(extra)
        return None


def toml_value(value: Any) -> str:
    """A default as it would be written in TOML."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number (integer or decimal)",
    "boolean": "boolean",
    "object": "table",
    "array": "array",
}


def _scalar(schema: _Schema, node: dict[str, Any]) -> str:
    """A type with its constraints, in words: 'integer, 4 to 420', 'one of "a", "b"'."""
    node = schema.resolve(node)
    if "const" in node:
        return toml_value(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(toml_value(v) for v in node["enum"])
    alts, _ = schema.alternatives(node)
    if len(alts) > 1 or alts[0] is not node:
        return " or ".join(_scalar(schema, a) for a in alts)
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(_TYPES.get(k, k) for k in kind if k != "null")
    if node.get("format") == "ipv6":
        words = "IPv6 address"
    elif kind == "array":
        items = node.get("items")
        words = "array of " + (_plural(_scalar(schema, items)) if items else "values")
    else:
        words = _TYPES.get(kind or "", kind or "value")
    limits = []
    lo, hi = node.get("minimum"), node.get("maximum")
    if lo is not None and hi is not None:
        limits.append(f"{toml_value(lo)} to {toml_value(hi)}")
    elif lo is not None:
        limits.append(f"at least {toml_value(lo)}")
    elif hi is not None:
        limits.append(f"at most {toml_value(hi)}")
    if "exclusiveMinimum" in node:
        limits.append(f"greater than {toml_value(node['exclusiveMinimum'])}")
    if "exclusiveMaximum" in node:
        limits.append(f"less than {toml_value(node['exclusiveMaximum'])}")
    if "minLength" in node:
        limits.append(f"at least {node['minLength']} characters")
    if "maxLength" in node:
        limits.append(f"at most {node['maxLength']} characters")
    if "minItems" in node:
        limits.append(f"at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}")
    if "maxItems" in node:
        limits.append(f"at most {node['maxItems']} items")
    if "pattern" in node:
        limits.append(f"matching {node['pattern']}")
    return ", ".join([words, *limits])


def _plural(words: str) -> str:
    first, sep, rest = words.partition(",")
    if first.startswith("one of "):
        return "strings, each " + words
    if first.endswith(("ss", "sh", "ch", "x")):
        first += "es"
    elif not first.endswith("s"):
        first += "s"
    return first + (", each" + rest if sep else "")


def _description(node: dict[str, Any], schema: _Schema) -> str | None:
    """A property's own description, else that of the definition it refers to."""
    if node.get("description"):
        return node["description"]
    alts, _ = schema.alternatives(node)
    return alts[0].get("description") if len(alts) == 1 else None


def _sorted_keys(table: dict[str, Any]) -> list[str]:
    required = set(table.get("required", []))
    return sorted(table.get("properties", {}), key=lambda k: (k not in required, k))


def _key_entry(
    lines: list[str], schema: _Schema, name: str, node: dict[str, Any], required: bool, path: str
) -> tuple[str, dict[str, Any]] | None:
    """One key of a table as .TP; returns (heading, table) when it opens a nested table."""
    tag = f"\\fB{escape(name)}\\fR" + (" (required)" if required else "")
    lines += [".TP", text_line(tag)]
    _, nullable = schema.alternatives(node)
    nested: tuple[str, dict[str, Any]] | None = None
    if (table := schema.table(node)) is not None:
        nested = (f"[{path}.{name}]", table)
        kind = f"table, see `{nested[0]}` below"
    elif (table := schema.array_of_tables(node)) is not None:
        nested = (f"[[{path}.{name}]]", table)
        kind = f"array of tables, see `{nested[0]}` below"
    elif (table := schema.map_of_tables(node)) is not None:
        nested = (f"[{path}.{name}.NAME]", table)
        kind = f"tables by name, see `{nested[0]}` below"
    else:
        kind = _scalar(schema, node)
    facts = [f"Type: {kind}"]
    if "default" in node:
        facts.append(f"default: {toml_value(node['default'])}")
    elif not required and nested is None:
        resolved = schema.alternatives(node)[0][0]
        if resolved.get("type") == "array":
            facts.append("default: []")
        elif nullable:
            facts.append("default: unset")
    description = _description(node, schema)
    if description:
        _body(lines, description)
        lines.append(".br")
    lines.append(text_line(inline("; ".join(facts) + ".")))
    return nested


def _table_section(
    lines: list[str], schema: _Schema, heading: str, table: dict[str, Any], path: str, depth: int
) -> None:
    lines.append(f".SS {_quote_arg(escape(heading))}")
    if table.get("description"):
        for para in _paragraphs(table["description"]):
            lines += [".PP", text_line(inline(para))]
    nested: list[tuple[str, dict[str, Any], str]] = []
    required = set(table.get("required", []))
    props = table.get("properties", {})
    for name in _sorted_keys(table):
        sub = _key_entry(lines, schema, name, props[name], name in required, path)
        if sub is not None:
            sub_path = sub[0].strip("[]")
            nested.append((sub[0], sub[1], sub_path))
    if depth > 16:  # a self-referencing schema; this one has none
        return
    for sub_heading, sub_table, sub_path in nested:
        _table_section(lines, schema, sub_heading, sub_table, sub_path, depth + 1)


def _top_sections(schema: _Schema) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(name, heading, table, property) of every top-level section: required first."""
    root = schema.doc
    out = []
    for name in _sorted_keys(root):
        prop = root["properties"][name]
        if (table := schema.table(prop)) is not None:
            out.append((name, f"[{name}]", table, prop))
        elif (table := schema.map_of_tables(prop)) is not None:
            out.append((name, f"[{name}.NAME]", table, prop))
        elif (table := schema.array_of_tables(prop)) is not None:
            out.append((name, f"[[{name}]]", table, prop))
        else:
            out.append((name, name, {}, prop))
    return out


def config_page(doc: dict[str, Any]) -> str:
    """mip6.toml(5) in roff for a JSON Schema document (`mip6_toml_5` passes the real one)."""
    schema = _Schema(doc)
    lines = _th("MIP6.TOML", 5, "File Formats")
    lines += [
        ".SH NAME",
        text_line("mip6.toml \\- configuration files of the mip6ctl Mobile IPv6 daemon"),
        ".SH SYNOPSIS",
        text_line(f"\\fI{escape(main.DEFAULT_CONFIG_DIR)}/*.toml\\fR"),
        ".SH DESCRIPTION",
    ]
    if doc.get("description"):
        lines.append(text_line(inline(doc["description"])))
        lines.append(".PP")
    lines += [
        text_line(
            inline(
                f"`mip6ctl` reads every `*.toml` file of the configuration directory "
                f"(`{main.DEFAULT_CONFIG_DIR}`, `-c DIR` or `$MIP6_CONFIG_DIR`) in lexical "
                f"order and merges them into one generation, which is applied whole or not "
                f"at all. Tables merge key by key; arrays of tables such as "
                f"`[[ha.mobile_nodes]]` concatenate across files; any other key set in two "
                f"files is an error that names both places."
            )
        ),
        ".PP",
        text_line(
            inline(
                "The files are TOML 1.0. Types are strict: addresses and prefixes are "
                "strings, booleans are `true` or `false`. "
                + (
                    "A key not listed below is an error. "
                    if doc.get("additionalProperties") is False
                    else ""
                )
                + "Relative paths of key files are relative to the configuration "
                "directory; key files must not be readable by group or others. "
                "`mip6ctl validate` reports every problem as `file:line: key: message`."
            )
        ),
        ".PP",
        text_line(
            inline(
                "This page is generated from the JSON Schema that `mip6ctl schema` prints; "
                "a `#:schema` comment pointing at that file lets TOML-aware editors check "
                "keys as they are typed."
            )
        ),
    ]

    sections = _top_sections(schema)
    lines.append(".SH SECTIONS")
    required = set(doc.get("required", []))
    for name, heading, table, prop in sections:
        lines += [".TP", text_line(f"\\fB{escape(heading)}\\fR")]
        text = _description(prop, schema) or table.get("description") or ""
        if name in required:
            text = (_sentence(text) + " " if text else "") + "Required."
        _body(lines, text or "(no description)")
    for name, heading, table, prop in sections:
        if table:
            _table_section(lines, schema, heading, table, heading.strip("[]"), 0)
        else:
            lines.append(f".SS {_quote_arg(escape(name))}")
            lines.append(text_line(inline(f"Type: {_scalar(schema, prop)}.")))

    lines.append(".SH EXAMPLES")
    for caption, text in EXAMPLES:
        lines += [".PP", text_line(inline(caption)), ".PP", ".RS 4", ".nf"]
        lines += ["\\&" + escape(line) for line in text.splitlines()]
        lines += [".fi", ".RE"]

    lines += [
        ".SH FILES",
        ".TP",
        text_line(f"\\fI{escape(main.DEFAULT_CONFIG_DIR)}/*.toml\\fR"),
        text_line("The configuration directory read by the daemon and every command."),
        ".SH SEE ALSO",
        ".BR mip6ctl (8),",
        text_line("\\fIhttps://toml.io/en/v1.0.0\\fR"),
    ]
    return "\n".join(lines) + "\n"


def mip6_toml_5() -> str:
    """mip6.toml(5) in roff, generated from the schema `mip6ctl schema` prints."""
    from mip6ctl.cli.schema import render

    return config_page(json.loads(render()))


# ------------------------------------------------------------------------ CLI

PAGES = {"mip6ctl.8": mip6ctl_8, "mip6.toml.5": mip6_toml_5}


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mip6ctl.cli.manpage",
        description="Write the generated man pages mip6ctl.8 and mip6.toml.5 into OUTDIR.",
    )
    parser.add_argument("outdir", metavar="OUTDIR", help="directory to write into (created)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return exitcodes.OK if e.code == 0 else exitcodes.USAGE
    out = Path(args.outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, page in PAGES.items():
            (out / name).write_text(page(), encoding="utf-8")
    except OSError as e:
        sys.stderr.write(f"mip6ctl.cli.manpage: {e.filename}: {e.strerror}\n")
        return exitcodes.ERROR
    for name in PAGES:
        sys.stdout.write(f"{out / name}\n")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(run())
