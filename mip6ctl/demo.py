"""The live demo (issue 8): a mobile node moving between links, on the reference testbed.

    sudo ./scripts/demo                       # moves forever, live dashboard, Ctrl-C ends
    sudo .venv/bin/python -m mip6ctl.demo --moves 3 --interval 2 --json --no-dashboard

What it does, in order:

1. checks the prerequisites: root, radvd and nft (naming the Debian packages
   when missing; ``scripts/bootstrap`` installs them as root) and the kernel's
   seg6 support (`mip6ctl.kernel.probe.probe`);
2. builds the reference testbed (`mip6ctl.testbed.Testbed`, prefix
   ``m6demo<pid>-``) and copies ``examples/testbed/{ha,mn,cn}`` into its run
   directory, next to each daemon's state directory, control socket and log;
3. starts the home agent, mobile node and correspondent node daemons in their
   namespaces and waits until each reports Ready;
4. pings the home address 2001:db8:1::100 from the CN every 20 ms (a raw
   ICMPv6 socket opened inside the CN namespace) and moves the mobile node
   home → f1 → f2 → f1 → home → … every ``--interval`` seconds;
5. per move records the handover latency (link move → first echo reply to a
   request sent after the move) and the echo requests lost around it.

Output: a live dashboard (rich), or one line per move (``--no-dashboard``),
and with ``--json`` one summary document on stdout::

    {"version": 1, "testbed": "m6demo123-",
     "moves": [{"from": "home", "to": "f1", "latency_ms": 1012.3, "lost": 51,
                "recovered": true, "care_of_address": "2001:db8:a::…"}, …],
     "pings": {"sent": 812, "received": 700}, "ok": true}

The exit status is 0 when every move's ping stream recovered, 1 otherwise or
when a daemon crashed (its log tail is shown), 2 for missing prerequisites,
130 after Ctrl-C with ``--moves`` (Ctrl-C is the normal end without it).

Teardown always runs: the daemons are stopped, the ICMPv6 socket (which would
keep the CN namespace alive) is closed, and the testbed is torn down, which
kills whatever still runs in its namespaces and deletes them, and with them
every bridge, veth and nftables table the daemons made.  The testbed's own
atexit hook and signal handling cover SIGTERM/SIGHUP and crashes of this
process; a SIGKILL leaves a testbed that ``python -m mip6ctl.testbed down``
(or the next testbed build's sweep) removes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "testbed"
HOME_ADDRESS = IPv6Address("2001:db8:1::100")
SCHEDULE = ("f1", "f2", "f1", "home")  # from home, repeated
PING_INTERVAL = 0.02
RECOVERY_TIMEOUT = 10.0  # s: a move whose ping has not recovered by then failed
ROLES = (("ha", "home agent"), ("cn", "correspondent node"), ("mn", "mobile node"))


class DemoError(Exception):
    """A reason to stop the demo, with a message for the user."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- prerequisites


def _find(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def check_prerequisites(*, probe_kernel: bool = True) -> list[str]:
    """What stops the demo from running here; an empty list when nothing does."""
    if os.geteuid() != 0:
        return [
            "the demo needs root: it builds network namespaces and runs the daemons "
            "in them (run `sudo ./scripts/demo`)"
        ]
    problems = []
    missing = [pkg for tool, pkg in (("radvd", "radvd"), ("nft", "nftables")) if not _find(tool)]
    if missing:
        problems.append(
            f"missing Debian package(s): {' '.join(missing)} "
            f"(`./scripts/bootstrap` as root installs them, or "
            f"`apt-get install {' '.join(missing)}`)"
        )
    if not EXAMPLES.is_dir():
        problems.append(f"the example configurations are missing ({EXAMPLES})")
    if probe_kernel:
        from mip6ctl.kernel.probe import probe

        caps = {c.name: c for c in probe()}
        for name in ("seg6", "seg6local"):
            cap = caps.get(name)
            if cap is None or not cap.available:
                detail = cap.detail if cap is not None else "not probed"
                problems.append(f"the kernel lacks {name}, which the demo's tunnels need: {detail}")
    return problems


# --------------------------------------------------------------------------- daemons


class Daemon:
    """``mip6ctl daemon`` in one testbed namespace, files in ``<run dir>/demo/<node>``."""

    def __init__(self, tb: Any, node: str, what: str, root: Path) -> None:
        self.tb, self.node, self.what = tb, node, what
        self.dir = root / node
        self.config = self.dir / "config"
        shutil.copytree(EXAMPLES / node, self.config)
        self.state = self.dir / "state"
        self.state.mkdir()
        self.socket = self.dir / "control.sock"
        self.log = self.dir / "daemon.log"
        self.proc: subprocess.Popen[Any] | None = None

    def start(self, timeout: float = 20.0) -> None:
        argv = [sys.executable, "-m", "mip6ctl", "daemon", "-c", str(self.config)]
        argv += ["--state-dir", str(self.state), "--socket", str(self.socket)]
        with open(self.log, "ab") as log:
            self.proc = self.tb.exec(self.node, argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                doc = self.rpc("status", timeout=1.0)
            except Exception:
                time.sleep(0.05)
                continue
            if {c["type"]: c["status"] for c in doc["conditions"]}.get("Ready") == "True":
                return
            time.sleep(0.05)
        raise DemoError(f"the {self.what} daemon was not ready in {timeout:g} s\n{self.tail()}")

    def check(self) -> None:
        """Raise DemoError when the daemon has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise DemoError(
                f"the {self.what} daemon ({self.node}) {how}; its log ends with:\n{self.tail()}"
            )

    def rpc(self, method: str, timeout: float = 2.0) -> Any:
        from mip6ctl.daemon.control import call

        return call(self.socket, method, {}, timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s; only this process (the testbed reaps the rest)."""
        from mip6ctl.testbed.process import stop_process

        proc, self.proc = self.proc, None
        stop_process(proc, 5.0)

    def tail(self, n: int = 25) -> str:
        from mip6ctl.testbed.process import tail_lines

        lines = tail_lines(self.log, n)
        if lines is None:
            return "    (no log)"
        return "\n".join("    " + line for line in lines) or "    (empty log)"


# --------------------------------------------------------------------------- pings


class PingStream:
    """Echo requests CN → home address every ``interval`` in a thread; replies timed."""

    def __init__(self, tb: Any, dst: IPv6Address, interval: float = PING_INTERVAL) -> None:
        with tb.inside("cn"):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self.dst, self.interval = dst, interval
        self.ident = (os.getpid() + 8) & 0xFFFF
        self.lock = threading.Lock()
        self.sent: list[float] = []  # index = sequence number (not wrapped)
        self.replies: dict[int, float] = {}
        self.rtt: deque[float] = deque(maxlen=50)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-ping", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= nxt:
                with self.lock:
                    n = len(self.sent)
                    self.sent.append(now)
                pkt = struct.pack("!BBHHH", 128, 0, 0, self.ident, n & 0xFFFF) + b"mip6ctl-demo"
                with contextlib.suppress(OSError):
                    self.sock.sendto(pkt, (str(self.dst), 0))
                nxt += self.interval
                if nxt < now:
                    nxt = now + self.interval
            wait = max(0.0, min(nxt - time.monotonic(), 0.01))
            try:
                if not select.select([self.sock], [], [], wait)[0]:
                    continue
                data = self.sock.recv(2048)
            except (OSError, ValueError):
                return
            t = time.monotonic()
            if len(data) < 8 or data[0] != 129:
                continue
            _t, _c, _k, rid, rseq = struct.unpack_from("!BBHHH", data)
            if rid != self.ident:
                continue
            with self.lock:
                # the newest request with this (wrapped) number
                seq = len(self.sent) - 1 - ((len(self.sent) - 1 - rseq) & 0xFFFF)
                if 0 <= seq < len(self.sent) and seq not in self.replies:
                    self.replies[seq] = t
                    self.rtt.append(t - self.sent[seq])

    def first_reply_after(self, t0: float) -> tuple[int, float] | None:
        """(sequence, reply time) of the first reply to a request sent at or after ``t0``."""
        with self.lock:
            got = [(t, s) for s, t in self.replies.items() if self.sent[s] >= t0]
        if not got:
            return None
        t, s = min(got)
        return s, t

    def lost_between(self, t0: float, seq_end: int) -> int:
        """Requests sent from ``t0`` up to (not including) ``seq_end`` without a reply."""
        with self.lock:
            end = min(seq_end, len(self.sent))  # "all of them" is passed as a huge number
            return sum(1 for s in range(end) if self.sent[s] >= t0 and s not in self.replies)

    def counts(self, settle: float = 0.3) -> tuple[int, int]:
        """(sent, received), leaving out the last ``settle`` s (replies may be in flight)."""
        with self.lock:
            cut = time.monotonic() - settle
            sent = sum(1 for t in self.sent if t < cut)
            got = sum(1 for s in self.replies if s < sent)
        return sent, got

    def history(self, buckets: int, per: int) -> list[float | None]:
        """Fraction answered per group of ``per`` requests, the last ``buckets`` groups."""
        with self.lock:
            end = len(self.sent) - int(0.2 / self.interval)  # the newest are in flight
            out: list[float | None] = []
            for b in range(buckets):
                lo = end - (buckets - b) * per
                if lo < 0:
                    out.append(None)
                    continue
                out.append(sum(1 for s in range(lo, lo + per) if s in self.replies) / per)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


# --------------------------------------------------------------------------- the run


@dataclass
class Move:
    src: str
    dst: str
    at: float
    latency_ms: float | None = None
    lost: int | None = None
    recovered: bool | None = None  # None: still waiting
    care_of_address: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.src,
            "to": self.dst,
            "latency_ms": self.latency_ms,
            "lost": self.lost,
            "recovered": bool(self.recovered),
            "care_of_address": self.care_of_address,
        }


@dataclass
class State:
    """What the dashboard shows; written by the run and the status poller."""

    phase: str = "starting"
    link: str = "home"
    care_of_address: str | None = None
    binding_cache: list[dict[str, Any]] = field(default_factory=list)
    bul: list[dict[str, Any]] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    next_move: float | None = None


class Demo:
    def __init__(self, args: argparse.Namespace, say: Any) -> None:
        self.args, self.say = args, say
        self.state = State()
        self.tb: Any = None
        self.daemons: dict[str, Daemon] = {}
        self.ping: PingStream | None = None
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ---------------------------------------------------------------- set-up
    def setup(self) -> None:
        from mip6ctl.testbed import Testbed

        self.state.phase = "building the testbed"
        self.say("building the reference testbed …")
        self.tb = Testbed.build(prefix=f"m6demo{os.getpid()}-")
        root = self.tb.run_dir / "demo"
        root.mkdir()
        for node, what in ROLES:
            self.daemons[node] = Daemon(self.tb, node, what, root)
        for node, what in ROLES:
            self.state.phase = f"starting the {what}"
            self.say(f"starting the {what} daemon in {self.tb.ns(node)} …")
            self.daemons[node].start()
        self._wait(lambda: self._mn_movement().get("location") == "home", 10.0, "the MN at home")
        self.ping = PingStream(self.tb, HOME_ADDRESS)
        first = self._wait(lambda: self.ping.first_reply_after(0.0), 5.0, "a ping reply at home")
        assert first is not None
        self._poller = threading.Thread(target=self._poll, name="demo-status", daemon=True)
        self._poller.start()

    def _mn_movement(self) -> dict[str, Any]:
        try:
            return self.daemons["mn"].rpc("movement")
        except Exception:
            return {}

    def _wait(self, pred: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_daemons()
            got = pred()
            if got:
                return got
            time.sleep(0.02)
        raise DemoError(f"{what}: not within {timeout:g} s\n{self._tails()}")

    def _tails(self) -> str:
        return "\n".join(f"--- {d.what} log ---\n{d.tail(12)}" for d in self.daemons.values())

    def check_daemons(self) -> None:
        for d in self.daemons.values():
            d.check()

    def _poll(self) -> None:
        while not self._poll_stop.wait(0.25):
            with contextlib.suppress(Exception):
                self.state.binding_cache = self.daemons["ha"].rpc("status")["binding_cache"]["rows"]
            with contextlib.suppress(Exception):
                doc = self.daemons["mn"].rpc("status")
                self.state.bul = (doc.get("binding_update_list") or {}).get("rows") or []
            m = self._mn_movement()
            if m:
                self.state.care_of_address = m.get("care_of_address")

    # ---------------------------------------------------------------- moves
    def run(self) -> None:
        assert self.ping is not None
        targets = itertools.cycle(SCHEDULE)
        count = 0
        prev_end = 0.0
        while self.args.moves is None or count < self.args.moves:
            self.state.phase = "running"
            self.state.next_move = time.monotonic() + self.args.interval
            self._sleep_until(self.state.next_move)
            dst = next(targets)
            move = Move(self.state.link, dst, 0.0)
            move.at = self.tb.move("mn", dst)
            self.state.link = dst
            self.state.next_move = None
            self.state.moves.append(move)
            count += 1
            deadline = move.at + max(RECOVERY_TIMEOUT, self.args.interval)
            first = None
            while time.monotonic() < deadline:
                self.check_daemons()
                first = self.ping.first_reply_after(move.at)
                if first:
                    break
                time.sleep(0.005)
            if first is None:
                move.recovered = False
                move.lost = self.ping.lost_between(max(prev_end, move.at - 1.0), 1 << 62)
                prev_end = time.monotonic()
                self.say(f"move {count}: {move.src} → {dst}: the pings did NOT recover")
                continue
            seq, t = first
            move.latency_ms = round((t - move.at) * 1000, 1)
            move.lost = self.ping.lost_between(max(prev_end, move.at - 1.0), seq)
            move.recovered = True
            prev_end = t
            with contextlib.suppress(Exception):
                move.care_of_address = self._mn_movement().get("care_of_address")
            where = f", care-of address {move.care_of_address}" if dst != "home" else ""
            self.say(
                f"move {count}: {move.src} → {dst}: pings back after {move.latency_ms} ms, "
                f"{move.lost} lost{where}"
            )
        # let the last replies arrive before counting
        self._sleep_until(time.monotonic() + 0.5)

    def _sleep_until(self, t: float) -> None:
        while (left := t - time.monotonic()) > 0:
            self.check_daemons()
            time.sleep(min(left, 0.05))

    # ---------------------------------------------------------------- results
    def summary(self) -> dict[str, Any]:
        sent, got = self.ping.counts() if self.ping is not None else (0, 0)
        moves = [m for m in self.state.moves if m.recovered is not None]
        return {
            "version": 1,
            "testbed": None if self.tb is None else self.tb.prefix,
            "moves": [m.as_dict() for m in moves],
            "pings": {"sent": sent, "received": got},
            "ok": bool(moves) and all(m.recovered for m in moves),
        }

    def teardown(self) -> None:
        self._poll_stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        if self.ping is not None:
            self.ping.close()  # before the namespaces go: a socket keeps its netns alive
        for node in ("mn", "cn", "ha"):
            if node in self.daemons:
                self.daemons[node].stop()
        if self.tb is not None:
            self.tb.teardown()


# --------------------------------------------------------------------------- dashboard

_BARS = " ▁▂▃▄▅▆▇█"


def render(demo: Demo) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    st = demo.state
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    links = Text()
    for link in ("home", "f1", "f2"):
        style = "bold black on green" if link == st.link else "dim"
        links.append(f" {link} ", style=style)
        links.append("  ")
    head.add_row("mobile node on", links)
    head.add_row("home address", str(HOME_ADDRESS))
    head.add_row("care-of address", st.care_of_address or "— (at home)")
    up = time.monotonic() - st.started
    nxt = (
        ""
        if st.next_move is None
        else f", next move in {max(0.0, st.next_move - time.monotonic()):.1f} s"
    )
    head.add_row("status", f"{st.phase}, {up:.0f} s{nxt}   (Ctrl-C ends and cleans up)")

    bc = Table(title="home agent: binding cache", expand=True)
    for col in ("home address", "care-of address", "lifetime left", "seq"):
        bc.add_column(col)
    for r in st.binding_cache:
        bc.add_row(
            r["home_address"], r["care_of_address"], f"{r['lifetime_left_s']} s", str(r["sequence"])
        )
    if not st.binding_cache:
        bc.add_row("(empty: the mobile node is at home)", "", "", "")

    bul = Table(title="mobile node: binding update list", expand=True)
    for col in ("peer", "care-of address", "state", "lifetime left", "seq"):
        bul.add_column(col)
    for r in st.bul:
        left = "—" if r.get("lifetime_left_s") is None else f"{r['lifetime_left_s']} s"
        bul.add_row(
            str(r.get("peer")),
            str(r.get("care_of_address") or "—"),
            r["state"],
            left,
            str(r["sequence"]),
        )

    ping = Text()
    if demo.ping is not None:
        sent, got = demo.ping.counts()
        rtt = list(demo.ping.rtt)
        for frac in demo.ping.history(60, 5):
            if frac is None:
                ping.append(" ")
            elif frac == 0:
                ping.append("·", style="bold red")
            else:
                ping.append(
                    _BARS[max(1, round(frac * 8))], style="green" if frac == 1 else "yellow"
                )
        avg = f", rtt {sum(rtt) / len(rtt) * 1000:.2f} ms" if rtt else ""
        ping.append(f"\nCN → {HOME_ADDRESS} every {PING_INTERVAL * 1000:.0f} ms: ")
        ping.append(f"{sent} sent, {got} answered, {sent - got} lost{avg}")

    mv = Table(title="handovers", expand=True)
    for col in ("#", "move", "latency", "lost", "care-of address"):
        mv.add_column(col)
    for i, m in enumerate(st.moves[-8:], start=max(1, len(st.moves) - 7)):
        if m.recovered is None:
            lat, style = "…", ""
        elif m.recovered:
            lat, style = f"{m.latency_ms} ms", ""
        else:
            lat, style = "not recovered", "bold red"
        mv.add_row(
            str(i),
            f"{m.src} → {m.dst}",
            lat,
            "" if m.lost is None else str(m.lost),
            m.care_of_address or "",
            style=style,
        )
    return Group(
        Panel(head, title="mip6ctl demo — Mobile IPv6 on the reference testbed"),
        bc,
        bul,
        Panel(ping, title="ping (each mark: 100 ms)"),
        mv,
    )


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m mip6ctl.demo",
        description="Live demo: HA, MN and CN daemons on the reference testbed; the MN moves "
        "home → f1 → f2 → f1 → home … while the CN pings its home address.",
    )
    ap.add_argument("--moves", type=int, default=None, help="stop after N moves (default: never)")
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between moves (4)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    ap.add_argument("--no-dashboard", action="store_true", help="one line per move instead")
    args = ap.parse_args(argv)
    if args.moves is not None and args.moves < 1:
        ap.error("--moves must be at least 1")
    if args.interval < 0.5:
        ap.error("--interval must be at least 0.5 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    dashboard = not args.no_dashboard and not args.json and sys.stdout.isatty()
    out = sys.stderr if args.json else sys.stdout

    def say(msg: str) -> None:
        if not dashboard:
            print(msg, file=out, flush=True)

    from mip6ctl.testbed import TestbedError

    problems = check_prerequisites()
    if problems:
        for p in problems:
            print(f"demo: {p}", file=sys.stderr)
        return 2
    demo = Demo(args, say)
    code, interrupted = 0, False
    try:
        demo.setup()
        if dashboard:
            from rich.live import Live

            with Live(get_renderable=lambda: render(demo), refresh_per_second=4, screen=False):
                demo.run()
        else:
            demo.run()
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: tearing down …")
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        code = e.code
    except TestbedError as e:
        print(f"demo: the testbed failed: {e}", file=sys.stderr)
        code = 1
    finally:
        summary = demo.summary()
        with contextlib.suppress(KeyboardInterrupt):
            demo.teardown()
        if dashboard:
            print("torn down: daemons stopped, namespaces, bridges and nftables tables removed")
    if args.json:
        print(json.dumps(summary, indent=2))
    elif summary["moves"]:
        ms = [m["latency_ms"] for m in summary["moves"] if m["recovered"]]
        lost = sum(m["lost"] or 0 for m in summary["moves"])
        p = summary["pings"]
        print(
            f"{len(summary['moves'])} moves, {len(ms)} recovered"
            + (f", latency {min(ms)}–{max(ms)} ms" if ms else "")
            + f", {lost} echo requests lost around moves;"
            + f" pings {p['received']}/{p['sent']} answered"
        )
    if code:
        return code
    if interrupted and args.moves is not None:
        return 130
    return 0 if summary["ok"] or (interrupted and not summary["moves"]) else 1


if __name__ == "__main__":
    sys.exit(main())
