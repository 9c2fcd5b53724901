"""`mip6ctl doctor` (the kernel capability probe is not built yet)."""

from __future__ import annotations

import argparse

from mip6ctl.cli.output import not_available


def run(args: argparse.Namespace) -> int:
    return not_available("doctor", "the kernel capability probe is not built yet", as_json=args.json)
