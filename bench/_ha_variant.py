"""Run ``mip6ctl daemon`` under cProfile (bench/ha_daemon.py --profile OUT).

    python bench/_ha_variant.py --profile OUT.pstats daemon -c CFG ...

The stats are written when the daemon exits.
"""

from __future__ import annotations

import cProfile
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    args = sys.argv[1:]
    profile = None
    if args[:1] == ["--profile"]:
        profile, args = args[1], args[2:]
    from mip6ctl.cli.main import main as cli_main

    if profile is None:
        return int(cli_main(args) or 0)
    prof = cProfile.Profile()
    try:
        return int(prof.runcall(cli_main, args) or 0)
    finally:
        prof.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main())
