"""`mip6ctl status` (needs the daemon and its control socket, not built yet)."""

from __future__ import annotations

import argparse

from mip6ctl.cli.output import not_available


def run(args: argparse.Namespace) -> int:
    return not_available(
        "status", "the daemon and its control socket are not built yet", as_json=args.json
    )
