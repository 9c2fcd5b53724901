"""Run ``mip6ctl daemon`` with bench-only variations (bench/ha_daemon.py --variant/--profile).

    python bench/_ha_variant.py [--profile OUT.pstats] [--proposed-app] daemon -c CFG ...

``--proposed-app`` replaces ``Daemon._execute`` at run time with the version
proposed for mip6ctl/daemon/app.py in bench/results/ha_daemon.md (that file is
being edited elsewhere, so the bench measures the proposal without touching
it).  ``--profile`` runs the daemon under cProfile and writes the stats on exit.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def proposed_execute(self: Any, actions: list[Any]) -> None:
    """Run actions in order; a Send after a persistence action waits for its commit.

    Writes are queued as they come (``WriteBehind.put``/``delete`` return
    futures), so every write of a burst joins one transaction; a Send suspends
    only while a write queued before it is still uncommitted -- once per
    commit, not once per BA (a ``gather`` per BA cost a loop iteration each).
    """
    from mip6ctl.daemon.app import log
    from mip6ctl.engine.events import (
        BindingChanged,
        ForgetBinding,
        PersistBinding,
        Send,
        SendParameterProblem,
        StartDad,
    )

    wb = self.writer_behind
    pending: list[Any] = []
    for a in actions:
        if isinstance(a, PersistBinding):
            if wb is not None:
                pending.append(wb.put(a.binding))
        elif isinstance(a, ForgetBinding):
            if wb is not None:
                pending.append(wb.delete(a.home_address))
        elif isinstance(a, Send | SendParameterProblem):
            if pending:
                waits, pending = pending, []
                failed: BaseException | None = None
                for f in waits:
                    try:
                        await f  # no suspension once committed
                    except Exception as e:  # not durable: the BA must not go out
                        failed = e
                if failed is not None:
                    log.error("binding cache write failed, BA withheld: %s", failed)
                    continue
            self._send(a)
        elif isinstance(a, BindingChanged):
            self._binding_changed(a)
        elif isinstance(a, StartDad):
            self._spawn(self._dad(a))
    for f in pending:
        try:
            await f
        except Exception as e:
            log.error("binding cache write failed: %s", e)


def main() -> int:
    args = sys.argv[1:]
    profile = None
    if args[:1] == ["--profile"]:
        profile, args = args[1], args[2:]
    if args[:1] == ["--proposed-app"]:
        from mip6ctl.daemon import app

        app.Daemon._execute = proposed_execute  # type: ignore[method-assign]
        args = args[1:]
    from mip6ctl.cli.main import main as cli_main

    if profile is None:
        return int(cli_main(args) or 0)
    prof = cProfile.Profile()
    try:
        return int(prof.runcall(cli_main, args) or 0)
    finally:
        prof.dump_stats(profile)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
