"""`python -m mip6ctl.testbed up|down|status|move LINK|sweep`: the reference testbed for humans.

``up`` builds a testbed, prints it and leaves it running (its run file in
/run/mip6ctl-testbed lets ``down``, ``status`` and ``move`` find it);
``up --foreground`` keeps it until Ctrl-C instead.  With several testbeds
running, ``--prefix`` says which one is meant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from typing import Any

from mip6ctl.testbed import topology
from mip6ctl.testbed.topology import LINKS, Testbed, TestbedError


def _print_up(tb: Testbed) -> None:
    d = tb.describe()
    print(f"testbed {tb.prefix} is up (run directory {d['run_dir']})")
    print("namespaces:")
    for node, ns in d["namespaces"].items():
        print(f"  {node:5} {ns}")
    print("addresses:")
    for node, addrs in d["addresses"].items():
        print(f"  {node:5} {', '.join(addrs)}")
    for mn, info in d["mobile_nodes"].items():
        coa = ", ".join(str(a) for a in tb.addresses(mn, "mn0")) or "none yet"
        print(
            f"  {mn:5} {info['interface']} on {tb.attachment(mn)}: {coa}"
            f" (home address {info['home_address']} is the MN daemon's to configure)"
        )
    print("links: " + ", ".join(f"{k} = {v}" for k, v in d["links"].items()))
    if tb.radvd:
        print("radvd: core on f1/f2, ha on home0 (H flag), intervals 0.03-0.07 s")
    print(f"enter a node:  sudo ip netns exec {tb.ns('mn')} bash")


def _pick(prefix: str | None) -> Testbed:
    if prefix:
        return Testbed.attach(prefix)
    running = topology.list_testbeds()
    if len(running) == 1:
        return Testbed.attach(running[0]["prefix"])
    if not running:
        raise TestbedError("no testbed is running (start one with `up`)")
    names = ", ".join(s["prefix"] for s in running)
    raise TestbedError(f"several testbeds are running ({names}); say which with --prefix")


def _cmd_up(args: argparse.Namespace) -> int:
    swept = topology.sweep_stale()
    if swept:
        print(f"removed leftovers of earlier runs: {', '.join(swept)}")
    started = time.monotonic()
    tb = Testbed.build(args.prefix, radvd=not args.no_radvd, mobile_nodes=args.mobile_nodes)
    took = time.monotonic() - started
    _print_up(tb)
    print(f"built in {took:.2f} s")
    if not args.foreground:
        tb.detach()
        print("tear it down with: python -m mip6ctl.testbed down")
        return 0
    print("press Ctrl-C to tear it down")
    with tb, contextlib.suppress(KeyboardInterrupt):
        signal.pause()
    print(f"testbed {tb.prefix} torn down")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    targets = (
        [Testbed.attach(s["prefix"]) for s in topology.list_testbeds()]
        if args.all
        else [_pick(args.prefix)]
    )
    for tb in targets:
        started = time.monotonic()
        tb.teardown()
        print(f"testbed {tb.prefix} torn down in {time.monotonic() - started:.2f} s")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    states = topology.list_testbeds()
    if args.json:
        out: list[dict[str, Any]] = []
        for s in states:
            entry = dict(s)
            if s["namespaces_present"]:
                tb = Testbed.attach(s["prefix"])
                entry["attachments"] = {mn: tb.attachment(mn) for mn in tb.mobile_nodes}
            out.append(entry)
        print(json.dumps(out, indent=2))
        return 0
    if not states:
        print("no testbed is running")
        return 0
    for s in states:
        owner = s.get("owner")
        who = "detached" if owner is None else f"owned by pid {owner['pid']}"
        if owner is not None and not s["owner_alive"]:
            who += " (gone: `sweep` removes it)"
        present = len(s["namespaces_present"])
        print(f"{s['prefix']}  {who}, {present}/{len(s['namespaces'])} namespaces")
        if present:
            tb = Testbed.attach(s["prefix"])
            for mn in tb.mobile_nodes:
                addrs = ", ".join(str(a) for a in tb.addresses(mn, "mn0")) or "no address"
                print(f"  {mn}: on {tb.attachment(mn)}; {addrs}")
    return 0


def _cmd_move(args: argparse.Namespace) -> int:
    tb = _pick(args.prefix)
    at = tb.move(args.mn, args.link, carrier_loss=not args.keep_carrier)
    coa = tb.care_of_address(args.mn, timeout=5.0)
    print(f"{args.mn} moved to {args.link}; address {coa} after {time.monotonic() - at:.3f} s")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    swept = topology.sweep_stale()
    print(f"removed: {', '.join(swept)}" if swept else "nothing stale")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mip6ctl.testbed", description="The mip6ctl reference testbed."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the testbed")
    up.add_argument("--prefix", help="namespace name prefix (default m6tb<pid>-1-)")
    up.add_argument("--mobile-nodes", type=int, default=1, metavar="N")
    up.add_argument("--no-radvd", action="store_true", help="do not start radvd")
    up.add_argument("--foreground", action="store_true", help="stay until Ctrl-C, then tear down")
    up.set_defaults(func=_cmd_up)
    down = sub.add_parser("down", help="tear a testbed down")
    down.add_argument("--prefix")
    down.add_argument("--all", action="store_true", help="every testbed on this machine")
    down.set_defaults(func=_cmd_down)
    status = sub.add_parser("status", help="list running testbeds")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)
    move = sub.add_parser("move", help="move a mobile node to another link")
    move.add_argument("link", choices=list(LINKS))
    move.add_argument("--mn", default="mn", help="which mobile node (mn, mn2, …)")
    move.add_argument("--prefix")
    move.add_argument(
        "--keep-carrier", action="store_true", help="change the bridge without a carrier loss"
    )
    move.set_defaults(func=_cmd_move)
    sweep = sub.add_parser("sweep", help="remove leftovers of crashed runs")
    sweep.set_defaults(func=_cmd_sweep)
    args = parser.parse_args(argv)
    try:
        topology.check_privileges()
        return int(args.func(args))
    except TestbedError as e:
        print(f"mip6ctl.testbed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
