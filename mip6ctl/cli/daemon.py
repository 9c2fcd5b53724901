"""`mip6ctl daemon`: run the home agent / mobile node / correspondent node in the foreground.

systemd Type=notify: READY=1 is sent once the configuration is loaded, the
kernel reconciled for it and the signalling transport open.  SIGHUP reloads
the configuration (applied whole, or refused with the old one kept), SIGTERM
stops and keeps kernel state unless `daemon.flush_on_stop` is set.
"""

from __future__ import annotations

import argparse
import os


def run(args: argparse.Namespace) -> int:
    from mip6ctl.daemon.app import run_daemon

    if os.geteuid() != 0:
        import sys

        sys.stderr.write(
            "mip6ctl daemon: needs root (CAP_NET_ADMIN and CAP_NET_RAW) to change "
            "kernel state and send Mobility Headers\n"
        )
        return 1
    return run_daemon(args.config_dir, state_dir=args.state_dir, control_socket=args.socket)
