"""The mobile node end to end (issue 7): home → f1 → f2 → f1 → home on the reference testbed.

Two ``mip6ctl daemon`` processes: the home agent (``examples/testbed/ha``) in
the HA namespace and the mobile node (``examples/testbed/mn``) in the MN
namespace, radvd on every link.  The MN starts at home; after each
`Testbed.move` the test waits (bounded) until the HA's binding cache and the
MN's binding update list agree on the new care-of address (or on none, back
home), then checks pings CN → home address and home address → CN.  A stream
of echo requests from the CN every 20 ms runs across each move; the losses
per move are recorded (``record_property`` and the test's output) and
bounded loosely — the handover latency goal is the benchmark's business
(bench/handover.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import REPO, HaDaemon, ip

pytestmark = nsutil.NEEDS_RADVD

EXAMPLE_MN = REPO / "examples" / "testbed" / "mn"
HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
CN = IPv6Address("2001:db8:c::2")
PREFIX = {
    "home": IPv6Network("2001:db8:1::/64"),
    "f1": IPv6Network("2001:db8:a::/64"),
    "f2": IPv6Network("2001:db8:b::/64"),
}
CONVERGE = 10.0  # s: bound for a move to show in both status documents
STREAM_INTERVAL = 0.02


# --------------------------------------------------------------------------- pings


def _icmp_socket(tb: Testbed, node: str, src: IPv6Address | None = None) -> socket.socket:
    with tb.inside(node):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    if src is not None:
        s.bind((str(src), 0))
    return s


def ping(
    tb: Testbed, node: str, dst: IPv6Address, *, src: IPv6Address | None = None, count: int = 3
) -> int:
    """Echo requests from ``node`` (bound to ``src``); how many replies came (1 s each)."""
    ident = (os.getpid() + 7) & 0xFFFF
    got = 0
    with _icmp_socket(tb, node, src) as s:
        for seq in range(1, count + 1):
            s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"mip6ctl-mn", (str(dst), 0))
            deadline = time.monotonic() + 1.0
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                data, addr = s.recvfrom(2048)
                if len(data) >= 8 and data[0] == 129:
                    _t, _c, _k, rid, rseq = struct.unpack_from("!BBHHH", data)
                    if rid == ident and rseq == seq and IPv6Address(addr[0]) == dst:
                        got += 1
                        break
    return got


class PingStream:
    """Echo requests from ``node`` to ``dst`` every ``interval`` in a thread; replies timed."""

    def __init__(self, tb: Testbed, node: str, dst: IPv6Address, interval: float) -> None:
        self.sock = _icmp_socket(tb, node)
        self.dst, self.interval = dst, interval
        self.ident = (os.getpid() + 11) & 0xFFFF
        self.sent: dict[int, float] = {}
        self.replies: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PingStream:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        seq = 0
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                seq = (seq + 1) & 0xFFFF
                pkt = struct.pack("!BBHHH", 128, 0, 0, self.ident, seq) + b"stream"
                self.sent[seq] = now
                with contextlib.suppress(OSError):
                    self.sock.sendto(pkt, (str(self.dst), 0))
                next_send += self.interval
            timeout = max(0.0, min(next_send - time.monotonic(), 0.05))
            if select.select([self.sock], [], [], timeout)[0]:
                data, _ = self.sock.recvfrom(2048)
                if len(data) >= 8 and data[0] == 129:
                    _t, _c, _k, rid, rseq = struct.unpack_from("!BBHHH", data)
                    if rid == self.ident and rseq in self.sent:
                        self.replies.setdefault(rseq, time.monotonic())

    def summary(self, moved_at: float) -> dict[str, Any]:
        """Requests, replies, losses; the first reply to a request sent after the move."""
        after = [t for s, t in self.replies.items() if self.sent[s] >= moved_at]
        first = min(after) - moved_at if after else None
        # the stream is stopped well after convergence: the last 0.2 s may still be in flight
        settled = {s: t for s, t in self.sent.items() if t < max(self.sent.values()) - 0.2}
        lost = [s for s in settled if s not in self.replies]
        return {
            "sent": len(settled),
            "received": len(settled) - len(lost),
            "lost": len(lost),
            "loss_ms": round(len(lost) * self.interval * 1000),
            "first_reply_after_move_ms": None if first is None else round(first * 1000, 1),
        }


# --------------------------------------------------------------------------- fixtures


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mn: HaDaemon
    losses: dict[str, Any]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        ha = HaDaemon(tb, tmp_path_factory.mktemp("ha"))
        mn = HaDaemon(tb, tmp_path_factory.mktemp("mn"), node="mn", example=EXAMPLE_MN)
        try:
            ha.start()
            mn.start()
            yield Bed(tb, ha, mn, {})
            for d, name in ((ha, "home agent"), (mn, "mobile node")):
                assert d.proc is not None and d.proc.poll() is None, (
                    f"the {name} daemon died:\n{d.tail()}"
                )
        finally:
            mn.stop()
            ha.stop()


def movement(bed: Bed) -> dict[str, Any]:
    return bed.mn.rpc("movement")


def bul(bed: Bed) -> dict[str, Any]:
    rows = bed.mn.rpc("status")["binding_update_list"]["rows"]
    assert len(rows) == 1, rows
    return rows[0]


def wait_for(what: str, check: Any, bed: Bed, timeout: float = CONVERGE) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(
        f"{what} not reached in {timeout} s; last {last!r}\n"
        f"movement: {json.dumps(movement(bed), indent=1)}\n"
        f"--- mn log ---\n{bed.mn.tail()}\n--- ha log ---\n{bed.ha.tail()}"
    )


def converged(bed: Bed, link: str) -> dict[str, Any] | None:
    """Both sides agree on where the MN is; returns the evidence or None."""
    m = movement(bed)
    row = bul(bed)
    cache = bed.ha.bindings()
    if link == "home":
        ok = (
            m["location"] == "home"
            and row["state"] == "home"
            and str(HOA) not in cache
            and m["kernel_in_sync"]
        )
        return {"movement": m, "bul": row, "cache": cache} if ok else None
    coa = m["care_of_address"]
    if m["location"] != "away" or coa is None or IPv6Address(coa) not in PREFIX[link]:
        return None
    entry = cache.get(str(HOA))
    ok = (
        row["state"] == "registered"
        and row["care_of_address"] == coa
        and entry is not None
        and entry["care_of_address"] == coa
        and m["kernel_in_sync"]
    )
    return {"movement": m, "bul": row, "cache": cache} if ok else None


# --------------------------------------------------------------------------- tests


def test_starts_at_home(bed: Bed) -> None:
    got = wait_for("MN at home", lambda: converged(bed, "home"), bed)
    assert got["bul"]["care_of_address"] is None
    addrs = ip(bed.tb, "mn", "-6", "addr", "show", "dev", "mn0")
    assert f"{HOA}/128" in addrs and "home" not in addrs.split(str(HOA))[1].split("\n")[0]
    assert ping(bed.tb, "cn", HOA) == 3
    assert ping(bed.tb, "mn", CN, src=HOA) == 3


@pytest.mark.seg6(auto=True)
@pytest.mark.parametrize("link", ["f1", "f2", "f1", "home"], ids=["f1", "f2", "f1-again", "home"])
def test_move(bed: Bed, link: str, record_property: Any) -> None:
    tb = bed.tb
    wait_for("previous move settled", lambda: movement(bed)["kernel_in_sync"], bed)
    with PingStream(tb, "cn", HOA, STREAM_INTERVAL) as stream:
        time.sleep(0.2)
        moved_at = tb.move("mn", link)
        got = wait_for(f"MN registered on {link}", lambda: converged(bed, link), bed)
        time.sleep(0.5)
    loss = stream.summary(moved_at)
    key = f"{len(bed.losses) + 1}:{link}"
    bed.losses[key] = loss
    record_property(f"loss_{key}", json.dumps(loss))
    print(f"\nmove to {link}: {json.dumps(loss)}")

    # the HA's binding cache and the MN's binding update list
    cache, row = got["cache"], got["bul"]
    if link == "home":
        assert str(HOA) not in cache
        assert row["state"] == "home" and row["care_of_address"] is None
    else:
        coa = got["movement"]["care_of_address"]
        entry = cache[str(HOA)]
        assert entry["care_of_address"] == coa and entry["home_registration"] is True
        assert row["peer"] == str(HA) and row["home_address"] == str(HOA)
        assert row["care_of_address"] == coa and row["last_status"] == 0
        assert row["lifetime_left_s"] > 0

    # kernel state on the MN
    addrs = ip(tb, "mn", "-6", "addr", "show", "dev", "mn0")
    hoa_line = next(line for line in addrs.splitlines() if f"{HOA}/128" in line)
    rules = ip(tb, "mn", "-6", "rule", "show")
    table = ip(tb, "mn", "-6", "route", "show", "table", "6275")
    if link == "home":
        assert "home" not in hoa_line.split(str(HOA))[1]
        assert f"from {HOA}" not in rules and "encap seg6" not in table
    else:
        assert "home" in hoa_line  # IFA_F_HOMEADDRESS
        assert f"from {HOA} lookup 6275" in rules
        assert f"segs 1 [ {HA} ]" in table

    # traffic both ways through the (new) path
    assert ping(tb, "cn", HOA) == 3, "CN → home address"
    assert ping(tb, "mn", CN, src=HOA) == 3, "home address → CN"
    assert loss["first_reply_after_move_ms"] is not None, loss


@pytest.mark.seg6(auto=True)
def test_loss_report(bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every move was measured (the figures are printed and kept with the test results)."""
    assert len(bed.losses) == 4, bed.losses
    out = Path(tmp_path_factory.getbasetemp()) / "mobile_node_losses.json"
    out.write_text(json.dumps(bed.losses, indent=2))
    print("\npacket loss per move (20 ms stream CN → home address):")
    for k, v in bed.losses.items():
        print(f"  {k:10} {json.dumps(v)}")
