"""`mip6ctl diff` and `mip6ctl apply` (the reconciler is not built yet)."""

from __future__ import annotations

import argparse

from mip6ctl.cli.output import not_available


def run(args: argparse.Namespace) -> int:
    return not_available(
        args.command,
        "the reconciler (render/plan/apply) is not built yet; "
        "use `mip6ctl validate` to check a configuration",
        as_json=args.json,
    )
