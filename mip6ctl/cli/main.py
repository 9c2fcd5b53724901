"""Entry point of the `mip6ctl` command.

Only argparse is imported here: each subcommand module is imported when it
runs, so `mip6ctl --help` stays fast (pydantic, pyroute2 and rich are heavy).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mip6ctl import __version__
from mip6ctl.cli import exitcodes

DEFAULT_CONFIG_DIR = "/etc/mip6"
DEFAULT_STATE_DIR = "/var/lib/mip6"
DEFAULT_CONTROL_SOCKET = "/run/mip6/control.sock"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(exitcodes.USAGE, f"{self.prog}: error: {message}\n")


def _config_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config-dir",
        metavar="DIR",
        default=os.environ.get("MIP6_CONFIG_DIR", DEFAULT_CONFIG_DIR),
        help="configuration directory (default: $MIP6_CONFIG_DIR or %(default)s)",
    )


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one versioned JSON document")


def _socket_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        metavar="PATH",
        default=os.environ.get("MIP6_CONTROL_SOCKET", DEFAULT_CONTROL_SOCKET),
        help="daemon control socket (default: %(default)s)",
    )


#: subcommand -> (module under mip6ctl.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "check the configuration directory; 0 valid, 1 invalid"),
    "diff": ("plan", "show what apply would change; 0 none, 2 pending, 1 error"),
    "apply": ("plan", "converge the kernel to the configuration"),
    "status": ("status", "role, generation, conditions, binding cache / BU list"),
    "daemon": ("daemon", "run the daemon in the foreground (systemd Type=notify)"),
    "schema": ("schema", "print the JSON Schema of the configuration"),
    "doctor": ("doctor", "kernel capabilities and what they enable"),
    "confirm": ("generations", "keep a generation applied with --confirm-timeout"),
    "rollback": ("generations", "go back to an earlier generation (a planned, verified apply)"),
    "history": ("generations", "the generations the daemon keeps, with their hashes"),
    "completion": ("completion", "print a shell completion script (bash)"),
    "radvd": ("radvd", "print radvd.conf for a home agent's home links (H flag, preference)"),
}


def _daemon_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str
) -> argparse.ArgumentParser:
    """A subcommand that only asks the running daemon: --json and --socket."""
    p = sub.add_parser(name, help=COMMANDS[name][1])
    _json_arg(p)
    _socket_arg(p)
    return p


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"wants 0 < SECONDS <= 86400, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mip6ctl",
        description="Mobile IPv6 (RFC 6275) home agent, mobile node and correspondent node "
        "for Linux, driven by declared state in /etc/mip6/*.toml.",
        epilog="Exit codes: 0 ok / no change, 1 error or invalid, 2 changes pending, "
        "64 usage, 69 not available.",
    )
    parser.add_argument("--version", action="version", version=f"mip6ctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("validate", help=COMMANDS["validate"][1])
    _config_dir_arg(p)
    _json_arg(p)
    p.add_argument(
        "--show-secrets-fingerprints",
        action="store_true",
        help=argparse.SUPPRESS,
    )

    for name in ("diff", "apply"):
        p = sub.add_parser(name, help=COMMANDS[name][1])
        _config_dir_arg(p)
        _json_arg(p)
        _socket_arg(p)
        if name == "apply":
            p.add_argument("--check", action="store_true", help="dry run: exit 2 if changes")
            p.add_argument(
                "--confirm-timeout",
                metavar="SECONDS",
                type=_positive_seconds,
                help="roll back to the running generation unless `mip6ctl confirm` arrives "
                "within SECONDS (needs the daemon)",
            )

    p = _daemon_command(sub, "status")
    p.add_argument(
        "--watch",
        metavar="SECONDS",
        nargs="?",
        const=2.0,
        type=_positive_seconds,
        help="redraw every SECONDS (default 2) until interrupted; with --json, one "
        "document per line",
    )

    p = _daemon_command(sub, "confirm")

    p = _daemon_command(sub, "rollback")
    p.add_argument(
        "--to",
        metavar="GENERATION",
        type=int,
        help="generation number from `mip6ctl history` (default: the one before the running one)",
    )

    p = _daemon_command(sub, "history")

    p = sub.add_parser("completion", help=COMMANDS["completion"][1])
    p.add_argument("shell", choices=["bash"], help="the shell to complete for")

    p = sub.add_parser("daemon", help=COMMANDS["daemon"][1])
    _config_dir_arg(p)
    p.add_argument(
        "--socket",
        metavar="PATH",
        default=os.environ.get("MIP6_CONTROL_SOCKET"),
        help="control socket (default: $MIP6_CONTROL_SOCKET, else daemon.control_socket "
        f"of the configuration, {DEFAULT_CONTROL_SOCKET})",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        default=os.environ.get("MIP6_STATE_DIR"),
        help="persistent state (binding cache) directory (default: $MIP6_STATE_DIR, else "
        f"daemon.state_dir of the configuration, {DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "--reset-binding-cache",
        action="store_true",
        help="do not start: move the binding cache file aside (kept as "
        "NAME.reset-TIMESTAMP), print where, and exit; the next start has an empty cache",
    )

    p = sub.add_parser("schema", help=COMMANDS["schema"][1])
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--check",
        metavar="FILE",
        help="exit 1 if FILE differs from the schema the models generate",
    )

    p = sub.add_parser("radvd", help=COMMANDS["radvd"][1])
    _config_dir_arg(p)
    _json_arg(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")

    p = sub.add_parser("doctor", help=COMMANDS["doctor"][1])
    _json_arg(p)
    p.add_argument(
        "-c",
        "--config-dir",
        metavar="DIR",
        default=os.environ.get("MIP6_CONFIG_DIR"),
        help="also say which backends this configuration gets here (default: the [kernel] "
        "defaults, or $MIP6_CONFIG_DIR)",
    )
    return parser


def _defer_importlib_metadata() -> None:
    """Keep `importlib.metadata` (and email, zipfile, csv ...) out of a short command.

    pydantic imports `entry_points` from it at import time only to look for
    plugins, which PYDANTIC_DISABLE_PLUGINS turns off: ~10 ms of a 150 ms
    budget.  A placeholder module answers that import; the first real use of
    any attribute (or a call of `entry_points`) loads the real module.
    """
    import importlib
    import types

    if "importlib.metadata" in sys.modules:
        return

    def _real() -> types.ModuleType:
        sys.modules.pop("importlib.metadata", None)
        module = importlib.import_module("importlib.metadata")
        importlib.metadata = module  # type: ignore[attr-defined]
        return module

    class _Deferred(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            if name.startswith("__"):  # the import system probing __path__ & co.
                raise AttributeError(name)
            return getattr(_real(), name)

    def entry_points(*args: object, **kwargs: object) -> object:
        return _real().entry_points(*args, **kwargs)

    stub = _Deferred("importlib.metadata")
    stub.entry_points = entry_points  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stub
    importlib.metadata = stub  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    # pydantic scans every installed distribution for plugins on first model
    # build (~20 ms); a CLI has no use for them.
    if os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__") == "__all__":
        _defer_importlib_metadata()
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"mip6ctl.cli.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mip6ctl ... | head` must not print a traceback.
        sys.stderr.close()
        return exitcodes.OK
