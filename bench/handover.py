"""Benchmark: mobile node handover latency on the reference testbed (issue 7).

The real daemons — home agent (examples/testbed/ha) in the HA namespace,
mobile node (examples/testbed/mn) in the MN namespace — on
`mip6ctl.testbed.Testbed` with radvd on every link (RAs every 30–70 ms).
The MN is moved home → f1 once (first registration, which includes the
home agent's ~1 s DAD for the home address and is reported apart), then
``--moves`` times between f1 and f2.

Handover latency = from the link move (`Testbed.move` returning: the switch
port is attached to the new bridge and up) to the first ICMPv6 echo reply,
at the CN, to an echo request sent after the move — such a reply can only
have travelled through the new care-of address (HA → tunnel → MN → reverse
tunnel → HA → CN).  The CN sends echo requests to the home address every
``--interval`` (2 ms) throughout, so the figure has that resolution.  Also
recorded per move: detection (move → the MN daemon's ``Moved`` decision, same
CLOCK_MONOTONIC across processes, from its ``movement`` status) and the echo
requests lost.

Modes (``--mode``):

* ``carrier`` (default): the port goes down and up (Wi-Fi re-association):
  the MN sees the carrier come back and sends a Router Solicitation at once
  (the link-up RS path);
* ``ra-only``: only the bridge changes, the MN learns of the move from the
  next unsolicited RA (RFC 6275 §11.5.1 movement detection without link
  events);
* ``both``: one series of each.

Goals (issue 7): median ≤ 60 ms and p95 ≤ 100 ms over ≥ 50 moves; with the
link-up RS path p95 ≤ 25 ms.

    sudo .venv/bin/python bench/handover.py [--moves 50] [--mode both] [--json]
        [--out bench/results/handover.json] [--plot bench/results/handover.png]

Bounded (``--budget`` seconds); the testbed and both daemons are removed on
any exit.  Needs root and radvd.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import select
import shlex
import signal
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mip6ctl.testbed import Testbed  # noqa: E402
from tests.netns.ha_helpers import HaDaemon  # noqa: E402

EXAMPLE_MN = REPO / "examples" / "testbed" / "mn"
HOA = IPv6Address("2001:db8:1::100")
PREFIX = {"f1": IPv6Network("2001:db8:a::/64"), "f2": IPv6Network("2001:db8:b::/64")}
GOALS = {"median_ms": 60.0, "p95_ms": 100.0, "p95_rs_path_ms": 25.0}


class Stream:
    """Echo requests from the CN to the home address every ``interval``; replies timed."""

    def __init__(self, tb: Testbed, interval: float) -> None:
        with tb.inside("cn"):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        self.interval = interval
        self.ident = (os.getpid() + 23) & 0xFFFF
        self.lock = threading.Lock()
        self.sent: dict[int, float] = {}
        self.replies: dict[int, float] = {}
        self.seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= nxt:
                self.seq += 1
                seq = self.seq & 0xFFFF
                with self.lock:
                    self.sent[seq] = now
                    self.replies.pop(seq, None)
                with contextlib.suppress(OSError):
                    self.sock.sendto(
                        struct.pack("!BBHHH", 128, 0, 0, self.ident, seq) + b"handover",
                        (str(HOA), 0),
                    )
                nxt += self.interval
                if nxt < now:
                    nxt = now + self.interval
            wait = max(0.0, min(nxt - time.monotonic(), 0.01))
            if select.select([self.sock], [], [], wait)[0]:
                data, _ = self.sock.recvfrom(2048)
                t = time.monotonic()
                if len(data) >= 8 and data[0] == 129:
                    _t, _c, _k, rid, rseq = struct.unpack_from("!BBHHH", data)
                    if rid == self.ident:
                        with self.lock:
                            self.replies.setdefault(rseq, t)

    def first_reply_after(self, t0: float) -> float | None:
        with self.lock:
            times = [r for s, r in self.replies.items() if self.sent.get(s, 0) >= t0]
        return min(times) if times else None

    def lost_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for s, t in self.sent.items() if t0 <= t < t1 and s not in self.replies)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def registered_on(mn: HaDaemon, link: str) -> dict[str, Any] | None:
    m = mn.rpc("movement")
    rows = mn.rpc("status")["binding_update_list"]["rows"]
    coa = m.get("care_of_address")
    if m["location"] != "away" or coa is None or IPv6Address(coa) not in PREFIX[link]:
        return None
    if not rows or rows[0]["state"] != "registered" or rows[0]["care_of_address"] != coa:
        return None
    return m


def wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.005)
    raise TimeoutError(f"{what} not within {timeout} s")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def series(tb: Testbed, mn: HaDaemon, stream: Stream, moves: int, carrier: bool) -> list[dict]:
    out = []
    here = tb.attachment("mn")
    for _ in range(moves):
        target = "f2" if here == "f1" else "f1"
        time.sleep(random.uniform(0.15, 0.3))  # decorrelate from the RA schedule
        t0 = tb.move("mn", target, carrier_loss=carrier)
        reply = wait(
            lambda t0=t0: stream.first_reply_after(t0), 5.0, f"reply after move to {target}"
        )
        m = wait(lambda target=target: registered_on(mn, target), 5.0, f"registered on {target}")
        time.sleep(0.05)
        at = (m.get("last_move") or {}).get("at")
        out.append(
            {
                "to": target,
                "latency_ms": round((reply - t0) * 1000, 2),
                "detection_ms": None if at is None else round((at - t0) * 1000, 2),
                "lost": stream.lost_between(t0 - 0.05, reply),
            }
        )
        here = target
    return out


def summarize(rows: list[dict]) -> dict[str, Any]:
    lat = [r["latency_ms"] for r in rows]
    det = [r["detection_ms"] for r in rows if r["detection_ms"] is not None]
    return {
        "moves": len(rows),
        "latency_ms": {
            "min": min(lat),
            "median": round(statistics.median(lat), 2),
            "p95": round(pct(lat, 0.95), 2),
            "max": max(lat),
        },
        "detection_ms": {
            "median": round(statistics.median(det), 2) if det else None,
            "p95": round(pct(det, 0.95), 2) if det else None,
        },
        "lost_per_move": {
            "median": statistics.median([r["lost"] for r in rows]),
            "max": max(r["lost"] for r in rows),
        },
    }


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for mode, res in results["modes"].items():
        lat = sorted(r["latency_ms"] for r in res["rows"])
        ys = [(i + 1) / len(lat) for i in range(len(lat))]
        s = res["summary"]["latency_ms"]
        ax.step(lat, ys, where="post", label=f"{mode}: median {s['median']} ms, p95 {s['p95']} ms")
    ax.axvline(GOALS["median_ms"], color="grey", ls=":", lw=1)
    ax.axvline(GOALS["p95_ms"], color="grey", ls="--", lw=1)
    ax.axvline(GOALS["p95_rs_path_ms"], color="grey", ls="-.", lw=1)
    ax.set_xlabel("link move → first echo reply through the new care-of address (ms)")
    ax.set_ylabel("fraction of moves")
    ax.set_title(f"mip6ctl handover latency, f1 ↔ f2, {results['moves_per_mode']} moves per mode")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.text(0.01, 0.01, results["command"], fontsize=6, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--mode", choices=("carrier", "ra-only", "both"), default="both")
    ap.add_argument("--interval", type=float, default=0.002, help="echo request interval (s)")
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--json", action="store_true", help="print the JSON document")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "handover.json")
    ap.add_argument("--plot", type=Path, default=REPO / "bench" / "results" / "handover.png")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2

    def watchdog(_sig: int, _frame: Any) -> None:
        raise TimeoutError(f"budget of {args.budget:g} s exhausted")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(int(args.budget))
    modes = ["carrier", "ra-only"] if args.mode == "both" else [args.mode]
    command = "sudo .venv/bin/python bench/handover.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    results: dict[str, Any] = {
        "command": command.strip(),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count()},
        "moves_per_mode": args.moves,
        "interval_ms": args.interval * 1000,
        "goals": GOALS,
        "modes": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="mip6ctl-handover-"))
    with Testbed.build() as tb:
        (tmp / "ha").mkdir()
        (tmp / "mn").mkdir()
        ha = HaDaemon(tb, tmp / "ha")
        mn = HaDaemon(tb, tmp / "mn", node="mn", example=EXAMPLE_MN)
        stream = None
        try:
            ha.start()
            mn.start()
            wait(lambda: mn.rpc("movement")["location"] == "home", 10.0, "MN at home")
            stream = Stream(tb, args.interval)
            time.sleep(0.3)
            t0 = tb.move("mn", "f1")
            reply = wait(lambda: stream.first_reply_after(t0), 10.0, "first registration")
            results["first_registration_ms"] = round((reply - t0) * 1000, 1)
            wait(lambda: registered_on(mn, "f1"), 5.0, "registered on f1")
            for mode in modes:
                rows = series(tb, mn, stream, args.moves, carrier=mode == "carrier")
                results["modes"][mode] = {"summary": summarize(rows), "rows": rows}
        finally:
            if stream is not None:
                stream.close()
            mn.stop()
            ha.stop()
    signal.alarm(0)

    goals = {}
    for mode, res in results["modes"].items():
        s = res["summary"]["latency_ms"]
        goals[mode] = {
            "median_le_60": s["median"] <= GOALS["median_ms"],
            "p95_le_100": s["p95"] <= GOALS["p95_ms"],
        }
        if mode == "carrier":
            goals[mode]["p95_le_25_rs_path"] = s["p95"] <= GOALS["p95_rs_path_ms"]
    results["goals_met"] = goals
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plotted = plot(results, args.plot)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"first registration (home → f1, includes the HA's DAD): "
            f"{results['first_registration_ms']} ms"
        )
        print(
            f"{'mode':8} {'moves':>5} {'min':>7} {'median':>7} {'p95':>7} {'max':>7} "
            f"{'detect p50':>10} {'lost p50/max':>12}  (ms)"
        )
        for mode, res in results["modes"].items():
            s = res["summary"]
            lat, det, lost = s["latency_ms"], s["detection_ms"], s["lost_per_move"]
            print(
                f"{mode:8} {s['moves']:>5} {lat['min']:>7} {lat['median']:>7} {lat['p95']:>7} "
                f"{lat['max']:>7} {det['median']!s:>10} {lost['median']!s:>5}/{lost['max']!s:<6}"
            )
        print(f"goals: {json.dumps(goals)}")
        print(
            f"written: {args.out}" + (f", {args.plot}" if plotted else " (no matplotlib: no plot)")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
