"""Reliability under bad input (issue 21), against a running home agent daemon.

* A flood of malformed Mobility Headers gets at most ``[daemon] icmp_error_rate``
  ICMPv6 Parameter Problems per second (plus the burst), RFC 4443 §2.4(f): they
  leave on a raw socket, where the kernel's own ICMPv6 rate limit does not apply.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from scapy.compat import raw
from scapy.layers.inet6 import ICMPv6ParamProblem

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import HaDaemon, Station, binding_update

pytestmark = nsutil.NEEDS_RADVD

RATE, BURST = 50, 10
PACKETS = 100_000


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HaDaemon, Station]]:
    with Testbed.build() as tb:
        ha = HaDaemon(
            tb,
            tmp_path_factory.mktemp("ha"),
            replace={"[ha]": f"[daemon]\nicmp_error_rate = {RATE}\n"
                     f"icmp_error_burst = {BURST}\n\n[ha]"},
        )
        station = None
        try:
            ha.start()
            station = Station(tb, "f1", "f1r", ["2001:db8:a::150"], "2001:db8:a::1")
            yield ha, station
        finally:
            ha.stop()
            if station is not None:
                station.close()


@pytest.mark.seg6(auto=True)
@pytest.mark.skipif(
    nsutil.EMULATED,
    reason="a figure (an ICMP error rate per second)"
    " is not meaningful under emulation (qemu without KVM)",
)
def test_a_flood_of_malformed_packets_is_answered_at_the_configured_rate(bed) -> None:
    ha, station = bed
    # Payload Proto 17 instead of 59 (RFC 6275 §9.2): ICMPv6 Parameter Problem, code 0
    bad = raw(binding_update("2001:db8:1::150", "2001:db8:a::150", 1, nh=17))
    station.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    station.drain()
    t0 = time.monotonic()
    for _ in range(PACKETS):
        try:
            station.send(bad)
        except BlockingIOError:
            time.sleep(0.0005)
    sent_for = time.monotonic() - t0
    got = station.capture(lambda p: ICMPv6ParamProblem in p, timeout=2.0, count=10**9)
    elapsed = time.monotonic() - t0
    assert got, f"no Parameter Problem at all: the test would prove nothing\n{ha.tail()}"
    assert len(got) <= BURST + RATE * elapsed + 1, (len(got), elapsed, sent_for)
    counters = ha.rpc("status")["counters"]
    assert counters["icmp_errors_rate_limited"] > 0, counters
    assert counters["parameter_problems_sent"] == len(got), (counters, len(got))
    # and the daemon still answers a good Binding Update
    ba = station.ba(binding_update("2001:db8:1::100", "2001:db8:a::150", 7))
    assert ba is not None, ha.tail()
