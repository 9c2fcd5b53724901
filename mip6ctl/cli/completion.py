"""`mip6ctl completion bash`: a bash completion script generated from the argparse parser.

Install with ``mip6ctl completion bash > /etc/bash_completion.d/mip6ctl`` (or
``source <(mip6ctl completion bash)`` in ``~/.bashrc``).  The script is built
from :func:`mip6ctl.cli.main.build_parser` every time, so it never drifts
from the options there are: the subcommands, each one's options (hidden ones,
``help=SUPPRESS``, are left out) and what an option's value completes to,
from the option itself:

* ``choices`` (``completion bash``): those words;
* metavar ``DIR`` (``-c/--config-dir``, ``--state-dir``): directories;
* metavar ``PATH`` or ``FILE`` (``--socket``, ``schema -o/--check``): files;
* anything else (``--to GENERATION``, ``SECONDS``): nothing; after an option whose
  value is optional (``status --watch [SECONDS]``) a ``-`` completes the options.

The script needs only bash (no bash-completion package) and understands
``--option=value``.  Only argparse is imported: the command stays fast.
"""

from __future__ import annotations

import argparse

#: metavars whose values are directories, or files
_DIR_METAVARS = frozenset({"DIR", "DIRECTORY"})
_FILE_METAVARS = frozenset({"FILE", "PATH"})


class Command:
    """What completes after one subcommand (or, named "", before any).

    (A plain class: dataclasses would import inspect, ~7 ms.)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.options: list[str] = []
        #: option string -> "dir" | "file" | "none" | "optional" | "words:W1 W2" (what its
        #: value completes to; "optional": it may have one); options without a value absent
        self.values: dict[str, str] = {}
        #: words a positional argument may be (its choices)
        self.positionals: list[str] = []


def _value_kind(action: argparse.Action) -> str | None:
    """What the value of an option completes to; None: it takes no value."""
    if action.nargs == 0:
        return None
    if action.choices:
        return "words:" + " ".join(str(c) for c in action.choices)
    if action.nargs == argparse.OPTIONAL:  # `status --watch [SECONDS]`: options may follow
        return "optional"
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar.upper() in _DIR_METAVARS:
        return "dir"
    if metavar.upper() in _FILE_METAVARS:
        return "file"
    return "none"


def _command(name: str, parser: argparse.ArgumentParser) -> Command:
    cmd = Command(name)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if not action.option_strings:
            cmd.positionals += [str(c) for c in action.choices or ()]
            continue
        # long options first: that is what a bare `-` or `--` lists
        strings = sorted(action.option_strings, key=lambda s: (not s.startswith("--"), s))
        cmd.options += strings
        kind = _value_kind(action)
        if kind is not None:
            for s in strings:
                cmd.values[s] = kind
    return cmd


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The top level (name "") and every subcommand, in the parser's order."""
    out = [_command("", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out += [_command(name, sub) for name, sub in action.choices.items()]
    return out


def _quote(text: str) -> str:
    """One shell word (what shlex.quote does, without importing shlex)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _words(words: list[str]) -> str:
    return _quote(" ".join(words))


def _case_values(cmd: Command, indent: str) -> list[str]:
    """`case $prev in` arms: complete the value of the option just typed."""
    by_kind: dict[str, list[str]] = {}
    for option, kind in cmd.values.items():
        by_kind.setdefault(kind, []).append(option)
    if not by_kind:
        return []
    lines = [f"{indent}case $prev in"]
    for kind, options in by_kind.items():
        if kind == "dir":
            action = "_mip6ctl_reply -d"
        elif kind == "file":
            action = "_mip6ctl_reply -f"
        elif kind.startswith("words:"):
            action = f"_mip6ctl_reply -W {_words(kind[6:].split())}"
        elif kind == "optional":  # a value may follow, or the next option
            lines.append(f"{indent}    {'|'.join(options)}) [[ $cur == -* ]] || return 0 ;;")
            continue
        else:  # a number or a name: nothing to offer
            action = ":"
        lines.append(f"{indent}    {'|'.join(options)}) {action}; return 0 ;;")
    lines.append(f"{indent}esac")
    return lines


def bash_script(parser: argparse.ArgumentParser | None = None) -> str:
    """The bash completion script for `parser` (default: mip6ctl's own)."""
    if parser is None:
        from mip6ctl.cli.main import build_parser

        parser = build_parser()
    prog = parser.prog
    fn = "_" + "".join(ch if ch.isalnum() else "_" for ch in prog)
    top, *subs = commands(parser)
    out = [
        f"# bash completion for {prog}, generated by `{prog} completion bash` from its parser.",
        f"# Install: {prog} completion bash > /etc/bash_completion.d/{prog}",
        "",
        "_mip6ctl_reply() {",
        "    # _mip6ctl_reply -d | -f | -W WORDS: set COMPREPLY from compgen for $cur",
        "    if [[ $1 == -W ]]; then",
        '        mapfile -t COMPREPLY < <(compgen -W "$2" -- "$cur")',
        "    else",
        "        compopt -o filenames 2>/dev/null",
        '        mapfile -t COMPREPLY < <(compgen "$1" -- "$cur")',
        "    fi",
        "}",
        "",
        f"{fn}() {{",
        "    local cur prev cmd i",
        "    COMPREPLY=()",
        "    cur=${COMP_WORDS[COMP_CWORD]}",
        '    prev=""',
        "    (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}",
        "    # --option=value: bash splits it into --option, = and value",
        '    if [[ $cur == "=" ]]; then',
        '        cur=""',
        '    elif [[ $prev == "=" ]] && (( COMP_CWORD > 1 )); then',
        "        prev=${COMP_WORDS[COMP_CWORD-2]}",
        "    fi",
        '    cmd=""',
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        "        case ${COMP_WORDS[i]} in",
        "            -*) ;;",
        "            *) cmd=${COMP_WORDS[i]}; break ;;",
        "        esac",
        "    done",
        "    case $cmd in",
        '        "")',
        *_case_values(top, " " * 12),
        "            if [[ $cur == -* ]]; then",
        f"                _mip6ctl_reply -W {_words(top.options)}",
        "            else",
        f"                _mip6ctl_reply -W {_words([c.name for c in subs])}",
        "            fi",
        "            ;;",
    ]
    for cmd in subs:
        out.append(f"        {cmd.name})")
        out += _case_values(cmd, " " * 12)
        if cmd.positionals:
            out += [
                "            if [[ $cur == -* ]]; then",
                f"                _mip6ctl_reply -W {_words(cmd.options)}",
                "            else",
                f"                _mip6ctl_reply -W {_words(cmd.positionals)}",
                "            fi",
            ]
        else:
            out.append(f"            _mip6ctl_reply -W {_words(cmd.options)}")
        out.append("            ;;")
    out += [
        "    esac",
        "    return 0",
        "}",
        "",
        f"complete -F {fn} {_quote(prog)}",
        "",
    ]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    import sys

    from mip6ctl.cli import exitcodes

    if args.shell != "bash":  # the parser's choices allow only bash today
        sys.stderr.write(f"mip6ctl completion: no completion for {args.shell!r}\n")
        return exitcodes.USAGE
    sys.stdout.write(bash_script())
    return exitcodes.OK
