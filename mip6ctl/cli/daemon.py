"""`mip6ctl daemon`: run the home agent / mobile node / correspondent node in the foreground.

systemd Type=notify: READY=1 is sent once the configuration is loaded, the
kernel reconciled for it and the signalling transport open.  SIGHUP reloads
the configuration (applied whole, or refused with the old one kept), SIGTERM
stops and keeps kernel state unless `daemon.flush_on_stop` is set.

`mip6ctl daemon --reset-binding-cache` does not start the daemon: it moves
the home agent's binding cache file (``ha.binding_cache``, else
``STATE_DIR/binding-cache.sqlite``) and its ``-wal`` / ``-shm`` companions
aside to ``NAME.reset-YYYYmmddTHHMMSS`` (kept for inspection, never deleted),
says what went where, and exits; the next start begins with an empty binding
cache. That is the way out the daemon names when it refuses to start on a
corrupt, foreign or too new binding cache. It refuses while a daemon answers
on the control socket (the file is in use).
"""

from __future__ import annotations

import argparse
import os
import sys


def run(args: argparse.Namespace) -> int:
    if getattr(args, "reset_binding_cache", False):
        return reset_binding_cache(args)

    from mip6ctl.daemon.app import run_daemon

    if os.geteuid() != 0:
        sys.stderr.write(
            "mip6ctl daemon: needs root (CAP_NET_ADMIN and CAP_NET_RAW) to change "
            "kernel state and send Mobility Headers\n"
        )
        return 1
    return run_daemon(args.config_dir, state_dir=args.state_dir, control_socket=args.socket)


def reset_binding_cache(args: argparse.Namespace) -> int:
    """Move the binding cache aside (persistence.reset) and print what moved where."""
    from pathlib import Path

    from mip6ctl.config.loader import ConfigError, load_directory
    from mip6ctl.daemon.control import _answers
    from mip6ctl.daemon.persistence import binding_cache_path, reset

    def fail(message: str) -> int:
        sys.stderr.write(f"mip6ctl daemon --reset-binding-cache: {message}\n")
        return 1

    try:
        cfg = load_directory(args.config_dir).config
    except ConfigError as e:
        for p in e.problems:
            sys.stderr.write(f"{p}\n")
        return fail(
            f"the configuration in {args.config_dir} is invalid, and it says where the "
            "binding cache is; fix it first (mip6ctl validate)"
        )
    sock = str(args.socket or cfg.daemon.control_socket)
    if os.path.exists(sock) and _answers(sock):
        return fail(
            f"a daemon is answering on {sock} and has the binding cache open; stop it first"
        )
    path = binding_cache_path(cfg, args.state_dir)
    companions = [Path(f"{path}{s}") for s in ("-wal", "-shm") if Path(f"{path}{s}").exists()]
    try:
        target = reset(path)
    except OSError as e:
        return fail(f"cannot move {path} aside: {e.strerror or e}")
    if target is None:
        stray = ", ".join(c.name for c in companions)
        removed = f" (removed the stray {stray})" if stray else ""
        print(f"nothing to reset: {path} does not exist{removed}")
        return 0
    print(f"moved {path} -> {target}")
    for c in companions:
        print(f"moved {c} -> {target}{str(c)[len(str(path)) :]}")
    print(
        "the next `mip6ctl daemon` starts with an empty binding cache: its bindings are "
        "gone, and mobile nodes register again with their next Binding Update"
    )
    return 0
