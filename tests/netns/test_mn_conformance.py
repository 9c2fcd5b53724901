"""The mobile node daemon against scapy playing its home agent (RFC 6275 conformance).

No home agent daemon runs: the testbed's HA namespace (which owns the home
agent address 2001:db8:1::1 on the home link and keeps its radvd) holds a
`FakeHomeAgent` thread instead.  An AF_PACKET socket (all interfaces of that
namespace, kernel receive timestamps) captures the MN's Binding Updates and
the home link's Neighbor Discovery traffic; an IPPROTO_RAW socket sends
whatever Binding Acknowledgements the test's policy builds with scapy.  The
namespace's kernel has no Mobile IPv6: it would answer every BU (a Home
Address option, or a bare Mobility Header) with an ICMPv6 Parameter Problem,
so an nftables prerouting rule drops incoming packets whose IPv6 next header
is Destination Options (60) or Mobility Header (135) before the kernel sees
them (AF_PACKET taps see them first).

The real ``mip6ctl daemon`` (``examples/testbed/mn``, the "userspace"
signalling transport on this kernel) runs in the MN namespace; `Testbed.move`
moves it between links and radvd drives its movement detection.

Every wait is bounded; the testbed and the daemon are torn down on failure.
"""

from __future__ import annotations

import heapq
import itertools
import json
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest
from scapy.compat import raw
from scapy.layers.inet6 import (
    HAO,
    MIP6MH_BA,
    MIP6MH_BU,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrRouting,
)

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import REPO, HaDaemon, ip, mh_checksum_ok

pytestmark = nsutil.NEEDS_RADVD

EXAMPLE_MN = REPO / "examples" / "testbed" / "mn"
HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
WRONG_HOA = IPv6Address("2001:db8:1::999")
PREFIX = {
    "home": IPv6Network("2001:db8:1::/64"),
    "f1": IPv6Network("2001:db8:a::/64"),
    "f2": IPv6Network("2001:db8:b::/64"),
}
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS
MAX_UPDATE_RATE = 3  # RFC 6275 §12
SLACK = 0.02  # s: timestamp slack for the sliding-window check
GRANTED_UNITS = 250  # BA lifetime (4 s units): 1000 s, no refresh during the tests
MOVE_TIMEOUT = 10.0
NFT_RULES = """\
table ip6 mip6test {
    chain pre {
        type filter hook prerouting priority raw; policy accept;
        ip6 nexthdr { 60, 135 } drop
    }
}
"""


# --------------------------------------------------------------------------- the fake home agent


@dataclass(frozen=True)
class Bu:
    """A Binding Update the fake home agent captured."""

    t: float  # kernel receive time (CLOCK_REALTIME)
    src: IPv6Address
    hoa: IPv6Address
    seq: int
    lifetime: int  # 4 s units
    flags: str  # scapy's spelling, e.g. "AH"
    ifname: str


@dataclass(frozen=True)
class Frame:
    """An ND message or outgoing BA on the home link (home0)."""

    t: float
    outgoing: bool
    mac: bytes
    pkt: IPv6


Policy = Callable[[Bu], list[tuple[float, IPv6]]]
"""A captured BU -> packets to send, each after a delay (s)."""


def binding_ack(
    dst: IPv6Address,
    seq: int,
    *,
    status: int = 0,
    lifetime: int = GRANTED_UNITS,
    rh2: IPv6Address | None = None,
) -> IPv6:
    """A BA from the home agent; with a type 2 routing header naming ``rh2`` when given.

    scapy computes the MH checksum over the final destination (the routing
    header's address); `mh_checksum_ok` checks it by two implementations.
    """
    pkt = IPv6(src=str(HA), dst=str(dst), hlim=64)
    if rh2 is not None:
        pkt = pkt / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[str(rh2)])
    pkt = pkt / MIP6MH_BA(status=status, flags=0, seq=seq & 0xFFFF, mhtime=lifetime)
    built = IPv6(raw(pkt))
    assert mh_checksum_ok(built), built.show(dump=True)
    if rh2 is not None:
        r = built[IPv6ExtHdrRouting]
        assert (r.len, r.type, r.segleft) == (2, 2, 1), r.show(dump=True)
    return built


class FakeHomeAgent(threading.Thread):
    """Captures BUs and home-link ND in the HA namespace; answers through ``policy``."""

    def __init__(self, tb: Testbed, mn_mac: bytes) -> None:
        super().__init__(daemon=True, name="fake-ha")
        self.mn_mac = mn_mac
        with tb.inside("ha"):
            self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
            self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.lock = threading.Lock()
        self.policy: Policy | None = None
        self.bus: list[Bu] = []
        self.frames: list[Frame] = []
        self.sent: list[tuple[float, IPv6]] = []
        self.errors: list[str] = []
        self._queue: list[tuple[float, int, IPv6]] = []
        self._n = 0
        self._stop_event = threading.Event()

    # ------------------------------------------------------------ test side

    def reset(self, policy: Policy | None) -> None:
        with self.lock:
            self.policy = policy
            self.bus.clear()
            self.frames.clear()
            self.sent.clear()
            self._queue.clear()

    def send_now(self, pkt: IPv6) -> float:
        """Send ``pkt`` from the test thread; returns time.time() just before sending."""
        with self.lock:
            return self._send(pkt)

    def snapshot(self) -> tuple[list[Bu], list[Frame], list[tuple[float, IPv6]]]:
        with self.lock:
            return list(self.bus), list(self.frames), list(self.sent)

    def summary(self) -> str:
        bus, frames, sent = self.snapshot()
        lines = [f"{len(bus)} BUs, {len(frames)} home-link frames, {len(sent)} sent"]
        lines += [
            f"  BU t={b.t:.3f} {b.src} hoa={b.hoa} seq={b.seq} life={b.lifetime}" for b in bus
        ]
        lines += [f"  sent t={t:.3f} {p.summary()}" for t, p in sent[-10:]]
        lines += [f"  error {e}" for e in self.errors[-5:]]
        return "\n".join(lines)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.rx.close()
        self.tx.close()

    # ------------------------------------------------------------ thread side

    def _send(self, pkt: IPv6) -> float:
        data = raw(pkt)
        t = time.time()
        self.tx.sendto(data, (str(pkt.dst), 0))
        self.sent.append((t, pkt))
        return t

    def run(self) -> None:
        while not self._stop_event.is_set():
            with self.lock:
                due = self._queue[0][0] if self._queue else None
            timeout = 0.05 if due is None else max(0.0, min(0.05, due - time.monotonic()))
            if select.select([self.rx], [], [], timeout)[0]:
                try:
                    self._receive()
                except Exception as e:  # keep capturing; the test reports it
                    self.errors.append(repr(e))
            with self.lock:
                while self._queue and self._queue[0][0] <= time.monotonic():
                    _due, _n, pkt = heapq.heappop(self._queue)
                    try:
                        self._send(pkt)
                    except OSError as e:
                        self.errors.append(f"send {pkt.summary()}: {e}")

    def _receive(self) -> None:
        data, anc, _flags, addr = self.rx.recvmsg(65536, 64)
        t = time.time()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("=qq", value[:16])
                t = sec + nsec / 1e9
        ifname, pkttype, mac = addr[0], addr[2], addr[4]
        outgoing = pkttype == PACKET_OUTGOING
        if len(data) < 41:
            return
        nh = data[6]
        if not outgoing and nh in (60, 135):
            p = IPv6(data)
            if MIP6MH_BU in p and IPv6Address(p.dst) == HA:
                bu = p[MIP6MH_BU]
                hoa = IPv6Address(p[HAO].hoa) if HAO in p else IPv6Address(p.src)
                got = Bu(t, IPv6Address(p.src), hoa, bu.seq, bu.mhtime, str(bu.flags), ifname)
                with self.lock:
                    self.bus.append(got)
                    policy = self.policy
                    answers = policy(got) if policy is not None else []
                    for delay, pkt in answers:
                        self._n += 1
                        heapq.heappush(self._queue, (time.monotonic() + delay, self._n, pkt))
            return
        if ifname != "home0":
            return
        nd = nh == 58 and data[40] in (135, 136)
        ba = outgoing and nh == 135 and len(data) > 42 and data[42] == 6
        if nd or ba:
            with self.lock:
                self.frames.append(Frame(t, outgoing, bytes(mac[:6]), IPv6(data)))


# --------------------------------------------------------------------------- fixtures


@dataclass
class Bed:
    tb: Testbed
    mn: HaDaemon
    ha: FakeHomeAgent
    results: dict[str, Any] = field(default_factory=dict)


def _mac(tb: Testbed, node: str, ifname: str) -> bytes:
    doc = json.loads(ip(tb, node, "-j", "link", "show", "dev", ifname))
    return bytes.fromhex(doc[0]["address"].replace(":", ""))


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        subprocess.run(
            ["ip", "netns", "exec", tb.ns("ha"), "nft", "-f", "-"],
            input=NFT_RULES,
            text=True,
            check=True,
            timeout=30,
            capture_output=True,
        )
        fake = FakeHomeAgent(tb, _mac(tb, "mn", "mn0"))
        fake.start()
        mn = HaDaemon(tb, tmp_path_factory.mktemp("mn"), node="mn", example=EXAMPLE_MN)
        try:
            mn.start()
            yield Bed(tb, mn, fake)
            assert mn.proc is not None and mn.proc.poll() is None, (
                f"the mobile node daemon died:\n{mn.tail()}"
            )
            assert not fake.errors, fake.errors
        finally:
            mn.stop()
            fake.stop()


def bul(bed: Bed) -> dict[str, Any]:
    rows = bed.mn.rpc("status")["binding_update_list"]["rows"]
    assert len(rows) == 1, rows
    return rows[0]


def movement(bed: Bed) -> dict[str, Any]:
    return bed.mn.rpc("movement")


def wait_for(what: str, check: Callable[[], Any], bed: Bed, timeout: float) -> Any:
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
        f"--- fake HA ---\n{bed.ha.summary()}\n--- mn log ---\n{bed.mn.tail()}"
    )


def move_away(bed: Bed, link: str) -> IPv6Address:
    """Move the MN to ``link``; return its care-of address there once it uses it."""
    bed.tb.move("mn", link)

    def away() -> IPv6Address | None:
        m = movement(bed)
        coa = m["care_of_address"]
        if m["location"] == "away" and coa is not None and IPv6Address(coa) in PREFIX[link]:
            return IPv6Address(coa)
        return None

    return wait_for(f"MN away on {link}", away, bed, MOVE_TIMEOUT)


def accept_all(bu: Bu) -> list[tuple[float, IPv6]]:
    """A well-behaved home agent: BA 0 for every registration (de-registrations too)."""
    if bu.hoa != HOA:
        return []
    if bu.lifetime == 0 or bu.src == HOA:
        return [(0.0, binding_ack(HOA, bu.seq, lifetime=0))]
    return [(0.0, binding_ack(bu.src, bu.seq, rh2=HOA))]


def increasing(seqs: list[int]) -> list[int]:
    """``seqs`` if each is newer than the one before (mod 2**16, §9.5.1), else []."""
    ok = all((b - a) & 0xFFFF in range(1, 0x8000) for a, b in itertools.pairwise(seqs))
    return seqs if ok else []


def away_bus(bus: list[Bu], coa: IPv6Address) -> list[Bu]:
    return [b for b in bus if b.hoa == HOA and b.src == coa and b.lifetime > 0]


# --------------------------------------------------------------------------- tests


def test_ba_with_foreign_routing_header_address_is_ignored(bed: Bed) -> None:
    """RFC 6275 §6.4 / §11.3.3: a type 2 routing header carries the home address
    of the destination mobile node, and a mobile node processes one only when
    that address is one of its own home addresses; otherwise the packet is
    dropped.  (Paraphrased from memory: the exact sentences were not at hand
    when this was written; PROTOCOL.md puts it as "Receivers drop it unless
    length = 2, segments left = 1 and the address is one of their own home
    addresses".)

    A BA that is right in every field but names 2001:db8:1::999 in its routing
    header must not register the binding: the MN keeps retransmitting (new
    sequence numbers, §11.8).  The same BA with the home address in the routing
    header, for the latest BU's sequence number, then registers it.
    """
    wait_for("MN at home", lambda: movement(bed)["location"] == "home", bed, MOVE_TIMEOUT)

    def wrong_rh2(bu: Bu) -> list[tuple[float, IPv6]]:
        if bu.hoa != HOA or bu.lifetime == 0:
            return []
        return [(0.0, binding_ack(bu.src, bu.seq, rh2=WRONG_HOA))]

    bed.ha.reset(wrong_rh2)
    coa = move_away(bed, "f1")
    states: list[str] = []

    def two_answered() -> bool:
        states.append(bul(bed)["state"])
        bus, _f, sent = bed.ha.snapshot()
        return len(away_bus(bus, coa)) >= 2 and len(sent) >= 2

    wait_for("two BUs answered with a foreign RH2 address", two_answered, bed, 8.0)
    time.sleep(0.5)  # the second bad BA has long arrived
    row = bul(bed)
    states.append(row["state"])
    bus, _f, sent = bed.ha.snapshot()
    mine = away_bus(bus, coa)
    assert "registered" not in states, (states, bed.ha.summary())
    assert row["state"] == "registering" and row["peer"] == str(HA), row
    assert increasing(seqs := [b.seq for b in mine]), seqs
    assert all(ba_pkt[IPv6ExtHdrRouting].addresses[0] == str(WRONG_HOA) for _t, ba_pkt in sent)

    bed.ha.reset(None)  # from now on only the BA below answers
    latest = max(mine, key=lambda b: b.t)
    bed.ha.send_now(binding_ack(coa, latest.seq, rh2=HOA))

    def registered() -> dict[str, Any] | None:
        r = bul(bed)
        return r if r["state"] == "registered" else None

    row = wait_for("registered after the correct BA", registered, bed, 1.0)
    assert row["care_of_address"] == str(coa) and row["peer"] == str(HA), row
    assert row["last_status"] == 0, row
    # that BA, not a later exchange, registered it: no BU went out after it
    assert not away_bus(bed.ha.snapshot()[0], coa), bed.ha.summary()
    bed.ha.reset(accept_all)


def test_max_update_rate_against_status_135(bed: Bed) -> None:
    """RFC 6275 §11.8: the mobile node must not send Binding Updates to one node
    more than MAX_UPDATE_RATE (3, §12) times a second (wording from memory);
    §11.1, quoted: the Binding Update List keeps "The time at which a Binding
    Update was last sent to this destination, as needed to implement the rate
    limiting restriction for sending Binding Updates."

    A home agent answering every BU with status 135 (sequence number out of
    window) and the BU's own sequence number would make a naive node resend at
    once, forever; over ~3 s no sliding 1 s window may hold more than three BUs.
    """
    held_before = bed.mn.rpc("status")["counters"]["bus_rate_limited"]

    def always_135(bu: Bu) -> list[tuple[float, IPv6]]:
        if bu.hoa != HOA or bu.lifetime == 0:
            return []
        return [(0.0, binding_ack(bu.src, bu.seq, status=135, rh2=HOA))]

    bed.ha.reset(always_135)
    coa = move_away(bed, "f2")
    first = wait_for(
        "first BU from f2", lambda: away_bus(bed.ha.snapshot()[0], coa), bed, MOVE_TIMEOUT
    )[0]
    # 3.2 s of kernel time after the first BU (the receive timestamps are realtime)
    time.sleep(max(0.0, first.t + 3.2 - time.time()))
    bus, _f, _s = bed.ha.snapshot()
    bed.ha.reset(accept_all)
    counters = bed.mn.rpc("status")["counters"]
    mine = sorted((b for b in away_bus(bus, coa) if b.t <= first.t + 3.0), key=lambda b: b.t)
    times = [b.t for b in mine]
    worst = max(sum(1 for u in times if t <= u < t + 1.0 - SLACK) for t in times)
    record = {
        "bus": len(mine),
        "worst_window": worst,
        "offsets": [round(t - times[0], 3) for t in times],
    }
    bed.results["rate"] = record
    print(f"\nBUs against status 135 over 3 s: {json.dumps(record)}")
    assert worst <= MAX_UPDATE_RATE, (record, bed.ha.summary())
    # the limit was exercised: more than one window's worth, each with a new sequence number
    assert len(mine) > MAX_UPDATE_RATE, (record, bed.mn.tail())
    assert increasing(seqs := [b.seq for b in mine]), seqs
    assert counters["bus_rate_limited"] > held_before, counters

    # leave the MN registered on f2 (accept_all answers its next BU)
    def registered() -> bool:
        r = bul(bed)
        return r["state"] == "registered" and r["care_of_address"] == str(coa)

    wait_for("registered on f2 once the HA accepts", registered, bed, 8.0)


def test_returning_home_advertises_after_deregistration_ba(bed: Bed) -> None:
    """RFC 6275 §11.5.5: "After receiving the Binding Acknowledgement for its
    Binding Update to its home agent, the mobile node MUST multicast onto the home
    link (to the all-nodes multicast address) a Neighbor Advertisement, to
    advertise the mobile node's own link-layer address for its own home address."
    (Quoted from memory.)  Also checked, quoted: "In this home registration, the
    mobile node MUST set the Acknowledge (A) and Home Registration (H) bits, set
    the Lifetime field to zero, ..." and "The mobile node MUST use its home
    address as the source address in the Binding Update."

    Registered on f1, the MN moves home; the fake home agent holds its BA to the
    de-registration (lifetime 0, from the home address) for 1.5 s.  No unsolicited
    NA for the home address may leave the MN before that BA is on the home link;
    at least one must follow it.
    """
    bed.ha.reset(accept_all)
    coa = move_away(bed, "f1")

    def registered() -> bool:
        r = bul(bed)
        return r["state"] == "registered" and r["care_of_address"] == str(coa)

    wait_for("registered on f1", registered, bed, 8.0)
    rounds_before = movement(bed)["home_address_advertised"]
    bed.ha.reset(None)  # de-registrations are answered below, late
    t_move = time.time()
    bed.tb.move("mn", "home")

    def dereg_bus() -> list[Bu]:
        bus = bed.ha.snapshot()[0]
        return [b for b in bus if b.src == HOA and b.hoa == HOA and b.lifetime == 0]

    first = wait_for("de-registration BU from home", dereg_bus, bed, MOVE_TIMEOUT)[0]
    time.sleep(max(0.0, first.t + 1.5 - time.time()))
    rounds_held = movement(bed)["home_address_advertised"]
    latest = max(dereg_bus(), key=lambda b: b.t)
    t_ba_sent = bed.ha.send_now(binding_ack(HOA, latest.seq, lifetime=0))

    def home() -> bool:
        return bul(bed)["state"] == "home"

    wait_for("BUL home after the BA", home, bed, 5.0)
    time.sleep(1.6)  # NA rounds go at 0, 0.5 and 1.0 s
    rounds_after = movement(bed)["home_address_advertised"]
    bus, frames, _sent = bed.ha.snapshot()
    mac = bed.ha.mn_mac
    ba_out = [f.t for f in frames if f.outgoing and MIP6MH_BA in f.pkt and f.pkt.dst == str(HOA)]
    t_ba = min(ba_out) if ba_out else t_ba_sent
    nas = [
        f
        for f in frames
        if not f.outgoing
        and f.mac == mac
        and f.t >= t_move
        and ICMPv6ND_NA in f.pkt
        and f.pkt[ICMPv6ND_NA].tgt == str(HOA)
        and not f.pkt[ICMPv6ND_NA].S
    ]
    ns = [
        f
        for f in frames
        if not f.outgoing
        and f.mac == mac
        and f.t >= t_move
        and ICMPv6ND_NS in f.pkt
        and f.pkt[ICMPv6ND_NS].tgt == str(HA)
    ]
    record = {
        "dereg_bus": [round(b.t - t_move, 3) for b in bus if b.src == HOA],
        "ba_on_link": round(t_ba - t_move, 3),
        "unsolicited_nas": [round(f.t - t_move, 3) for f in nas],
        "na_rounds": [rounds_before, rounds_held, rounds_after],
        "ns_for_ha_sources": [f.pkt.src for f in ns],
        "ns_for_ha_times": [round(f.t - t_move, 3) for f in ns],
    }
    bed.results["home"] = record
    print(f"\nreturning home (s after the move): {json.dumps(record)}")
    dereg = [b for b in bus if b.src == HOA and b.hoa == HOA]
    assert all(b.lifetime == 0 and {"A", "H"} <= set(b.flags) for b in dereg), bed.ha.summary()
    early = [f for f in nas if f.t < t_ba]
    assert not early, ("unsolicited NA for the home address before the BA", record)
    assert [f for f in nas if f.t >= t_ba], ("no unsolicited NA after the BA", record)
    assert rounds_held == rounds_before, record
    assert rounds_after == rounds_before + 1, record
    for f in nas:
        assert f.pkt.dst == "ff02::1" and f.pkt[ICMPv6ND_NA].O == 1, f.pkt.show(dump=True)


def test_returning_home_ns_source_is_not_home_address(bed: Bed) -> None:
    """RFC 6275 §11.5.5: "the mobile node is unable to use its home address as the
    Source Address in the Neighbor Solicitation until the home agent stops
    defending the home address."

    Every NS the MN sent for the home agent's address after the move home (in the
    previous test, before and around the delayed BA) must come from another
    source address (e.g. the unspecified address).
    """
    record = bed.results.get("home")
    if record is None:
        pytest.skip("the returning-home capture did not run")
    sources = record["ns_for_ha_sources"]
    assert sources, ("the MN sent no NS for the home agent's address after returning", record)
    assert str(HOA) not in sources, record


def test_l_bit_follows_the_link_local_address(bed: Bed) -> None:
    """RFC 6275 §11.7.1: the Link-Local Address Compatibility (L) bit "MUST be set
    if the home address has the same interface identifier as the mobile node's
    link-local address" (wording from memory; §6.1.7 defines the bit the same way).

    The MN's own link-local (EUI-64, from its MAC) differs from the home
    address's interface identifier ::100, so its home registrations carry no L.
    Given fe80::100 on its interface as well, the next home registration (from
    f1) carries L; with that address removed again, the one from f2 does not.
    """
    bed.ha.reset(accept_all)
    wait_for("MN at home", lambda: movement(bed)["location"] == "home", bed, MOVE_TIMEOUT)
    ip(bed.tb, "mn", "addr", "add", "fe80::100/64", "dev", "mn0", "nodad")
    try:
        coa = move_away(bed, "f1")
        with_l = wait_for(
            "home registration from f1", lambda: away_bus(bed.ha.snapshot()[0], coa), bed, 8.0
        )
    finally:
        ip(bed.tb, "mn", "addr", "del", "fe80::100/64", "dev", "mn0")
    assert all("L" in b.flags for b in with_l), [b.flags for b in with_l]
    bed.ha.reset(accept_all)
    coa = move_away(bed, "f2")
    without = wait_for(
        "home registration from f2", lambda: away_bus(bed.ha.snapshot()[0], coa), bed, 8.0
    )
    assert all("L" not in b.flags and "H" in b.flags for b in without), [b.flags for b in without]
