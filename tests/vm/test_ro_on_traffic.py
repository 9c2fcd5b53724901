"""Route optimisation started by traffic (issue 15, vm tier only).

The real daemons of tests/vm/test_daemons.py (HA, MN, CN on the reference
testbed, kernel signalling, ip6tnl); the mobile node's configuration lists no
correspondent, so every correspondent is ``on-traffic``:

* the home address pings the CN: the first echoes go through the home agent
  (the kernel's route-optimisation trigger policy finds no hao state and sends
  an XFRM ACQUIRE), return routability follows without any configuration
  change, later echoes go directly -- on the CN's link they come from the
  care-of address with a Home Address option, and the replies go to the
  care-of address with a type 2 routing header;
* the home address pings the core router, which runs no Mobile IPv6 (its
  kernel answers the Care-of / Home Test Init with an ICMP Parameter
  Problem): the MN falls back to the tunnel, keeps pinging through it, and
  sends the router no further Mobility Header message before the back-off.

Every wait is bounded (the guest's CPU is emulated).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv6Address
from typing import Any

import pytest

from tests.netns.test_mobile_node import _icmp_socket
from tests.vm import test_daemons
from tests.vm.daemon_helpers import CONVERGE, wait_for
from tests.vm.test_daemons import CN, ETH_P_ALL, HOA, Bed, mobility_headers, move, movement

pytestmark = pytest.mark.usefixtures("mip6_modules")

bed = test_daemons.bed  # the module fixture: HA, MN and CN daemons of their own
ROUTER = IPv6Address("2001:db8:c::1")  # the core router: no Mobile IPv6 there
NH_IPV6, NH_MH = 41, 135


def rr_row(bed: Bed, peer: IPv6Address) -> dict[str, Any] | None:
    rows = bed.mn.rpc("status", timeout=10.0)["return_routability"]["rows"]
    hit = [r for r in rows if r["peer"] == str(peer)]
    return hit[0] if hit else None


def bul_row(bed: Bed, peer: IPv6Address) -> dict[str, Any] | None:
    rows = bed.mn.rpc("status", timeout=10.0)["binding_update_list"]["rows"]
    hit = [r for r in rows if r["peer"] == str(peer)]
    return hit[0] if hit else None


@contextmanager
def capture(bed: Bed, node: str, ifname: str) -> Iterator[socket.socket]:
    with bed.tb.inside(node):  # ETH_P_ALL: an ETH_P_IPV6 socket misses outgoing packets
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    try:
        cap.bind((ifname, ETH_P_ALL))
        cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        yield cap
    finally:
        cap.close()


def drain(cap: socket.socket) -> list[bytes]:
    """What the capture holds now (bounded: the links carry Router Advertisements
    every few tens of milliseconds, so "until quiet" never comes)."""
    out: list[bytes] = []
    time.sleep(0.2)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and select.select([cap], [], [], 0)[0]:
        data = cap.recv(65536)
        if len(data) >= 40 and data[0] >> 4 == 6:
            out.append(data)
    return out


class Pinger:
    """Echo requests from the home address, one every ``interval``; replies counted."""

    def __init__(self, bed: Bed, dst: IPv6Address) -> None:
        self.sock = _icmp_socket(bed.tb, "mn", HOA)
        self.dst = dst
        self.ident = 0x4D36
        self.seq = 0
        self.replies: set[int] = set()

    def run(self, seconds: float, interval: float = 0.25, until: Any = None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.seq += 1
            hdr = struct.pack("!BBHHH", 128, 0, 0, self.ident, self.seq)
            self.sock.sendto(hdr + b"mip6ctl-ro", (str(self.dst), 0))
            stop = time.monotonic() + interval
            while (left := stop - time.monotonic()) > 0:
                if not select.select([self.sock], [], [], left)[0]:
                    break
                data, _addr = self.sock.recvfrom(2048)
                if len(data) >= 8 and data[0] == 129:
                    _t, _c, _k, rid, rseq = struct.unpack_from("!BBHHH", data)
                    if rid == self.ident:
                        self.replies.add(rseq)
            if until is not None and until():
                return

    def close(self) -> None:
        self.sock.close()


def echo_seq(data: bytes, off: int) -> int | None:
    return struct.unpack_from("!H", data, off + 6)[0] if off + 8 <= len(data) else None


def icmp_offset(data: bytes) -> int | None:
    """Offset of the ICMPv6 header after the extension headers mobility_headers knows."""
    nh, off = data[6], 40
    while nh in (43, 60, 0) and off + 8 <= len(data):
        nh, off = data[off], off + (data[off + 1] + 1) * 8
    return off if nh == 58 else None


def test_traffic_to_an_unlisted_correspondent_is_route_optimised(bed: Bed) -> None:
    """The first echoes to a correspondent the configuration does not name go through
    the home agent; return routability follows from the kernel's ACQUIRE; later echoes
    and their replies go directly, with the Home Address option / type 2 routing header."""
    coa = IPv6Address(move(bed, "f1")["coa"])
    assert bul_row(bed, CN) is None, "the correspondent is registered before any traffic"
    pinger = Pinger(bed, CN)
    try:
        with capture(bed, "cn", "core0") as cap:
            pinger.run(
                CONVERGE, until=lambda: (bul_row(bed, CN) or {}).get("state") == "registered"
            )
            row = bul_row(bed, CN)
            assert row is not None and row["state"] == "registered", bed.logs()
            pinger.run(3.0)  # now direct
            seen = drain(cap)
    finally:
        pinger.close()
    assert row["trigger"] == "on-traffic" and row["care_of_address"] == str(coa), row
    counters = bed.mn.rpc("status", timeout=10.0)["counters"]
    assert counters.get("xfrm_acquires", 0) >= 1, counters
    assert counters.get("route_optimisations_triggered", 0) >= 1, counters
    requests: list[tuple[int, str, Any]] = []  # (seq, source, HAO) at the CN
    replies: list[tuple[int, str, Any]] = []  # (seq, destination, RH2)
    for data in seen:
        off = icmp_offset(data)
        if off is None:
            continue
        kind, rh2, hao = mobility_headers(data)
        src, dst = IPv6Address(data[8:24]), IPv6Address(data[24:40])
        seq = echo_seq(data, off)
        if kind == 128 and dst == CN and seq is not None:
            requests.append((seq, str(src), hao))
        elif kind == 129 and src == CN and seq is not None:
            replies.append((seq, str(dst), rh2))
    requests.sort()
    assert requests, f"no echo request captured at the CN\n{bed.logs()}"
    first, last = requests[0], requests[-1]
    # the first through the home agent: from the home address, no Home Address option
    assert first[1] == str(HOA) and first[2] is None, requests[:5]
    # the later ones directly: from the care-of address, Home Address option = HoA
    assert last[1] == str(coa) and last[2] == HOA, requests[-5:]
    late = [r for r in replies if r[0] >= last[0] - 2]
    assert late and all(r[1] == str(coa) and r[2] == HOA for r in late), replies[-5:]
    assert len(pinger.replies) >= pinger.seq // 2, (pinger.seq, len(pinger.replies))
    entry = bed.cn.bindings().get(str(HOA))
    assert entry is not None and entry["care_of_address"] == str(coa), entry
    # the correspondent's usage poll (every 10 s) reads the route2/hao counters
    seen_used = wait_for(
        "CN saw its binding in use",
        lambda: bed.cn.rpc("status", timeout=10.0)["counters"].get("route_optimised_in_use"),
        bed.logs,
        CONVERGE,
    )
    assert seen_used >= 1


def mh_to(seen: list[bytes], peer: IPv6Address) -> int:
    """Mobility Header packets to ``peer``: direct (CoTI) or inside the tunnel (HoTI)."""
    n = 0
    for data in seen:
        inner = data
        if data[6] == NH_IPV6 and len(data) >= 80:
            inner = data[40:]
        if IPv6Address(inner[24:40]) != peer:
            continue
        nh, off = inner[6], 40
        while nh in (0, 43, 60) and off + 8 <= len(inner):
            nh, off = inner[off], off + (inner[off + 1] + 1) * 8
        n += nh == NH_MH
    return n


def test_a_correspondent_without_mobile_ipv6_stays_on_the_tunnel(bed: Bed) -> None:
    """A correspondent that answers return routability with an ICMP Parameter Problem
    is used through the home agent and not probed again before the back-off ends."""
    if movement(bed)["location"] != "away":
        move(bed, "f1")
    pinger = Pinger(bed, ROUTER)
    try:
        with capture(bed, "mn", "mn0") as cap:
            pinger.run(
                CONVERGE, until=lambda: (rr_row(bed, ROUTER) or {}).get("state") == "fallback"
            )
            row = rr_row(bed, ROUTER)
            assert row is not None and row["state"] == "fallback", bed.logs()
            probes = mh_to(drain(cap), ROUTER)
            assert probes >= 1, "no return routability was tried"
            assert row["retry_in_s"] is not None and row["retry_in_s"] > 300, row
            assert "Parameter Problem" in (row["last_error"] or ""), row
            before = len(pinger.replies)
            pinger.run(6.0)  # more traffic: more ACQUIREs, and no new probe
            again = mh_to(drain(cap), ROUTER)
    finally:
        pinger.close()
    assert again == 0, f"{again} Mobility Header packets to the router during the back-off"
    assert len(pinger.replies) - before >= 10, "pings through the home agent failed"
    row = rr_row(bed, ROUTER)
    assert row is not None and row["state"] == "fallback" and row["fallbacks"] == 1, row
    wait_for("still in sync", lambda: movement(bed)["kernel_in_sync"], bed.logs, CONVERGE)
