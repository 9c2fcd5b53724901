"""The mobile node finds its home agent by DHAAD (issue 16, RFC 6275 §11.4.1).

The real home agent (``examples/testbed/ha``) and the real mobile node
(``examples/testbed/mn`` with ``home_agent = "dhaad"``) on the reference
testbed.  Away on f1 the mobile node sends a DHAAD Request from its care-of
address to the Home-Agents anycast address, registers with the home agent the
reply names, and the data path works (CN <-> home address); back home it
de-registers with that home agent.  Needs a data path (seg6 marker).
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import HaDaemon, ip
from tests.netns.test_mobile_node import (
    CN,
    EXAMPLE_MN,
    HOA,
    Bed,
    converged,
    movement,
    ping,
    wait_for,
)

pytestmark = [nsutil.NEEDS_RADVD, pytest.mark.seg6(auto=True)]

HA = IPv6Address("2001:db8:1::1")


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        ha = HaDaemon(tb, tmp_path_factory.mktemp("ha"))
        mn = HaDaemon(
            tb,
            tmp_path_factory.mktemp("mn"),
            node="mn",
            example=EXAMPLE_MN,
            replace={'home_agent = "2001:db8:1::1"': 'home_agent = "dhaad"'},
        )
        try:
            ha.start()
            mn.start()
            yield Bed(tb, ha, mn, {})
            for d in (ha, mn):
                assert d.proc is not None and d.proc.poll() is None, f"died:\n{d.tail()}"
        finally:
            mn.stop()
            ha.stop()


def test_discovers_the_home_agent_away_and_registers_with_it(bed: Bed) -> None:
    wait_for("MN at home", lambda: converged(bed, "home"), bed)
    assert movement(bed)["home_agent"] is None  # nothing to discover at home
    bed.tb.move("mn", "f1")
    try:
        got = wait_for("registered through DHAAD", lambda: converged(bed, "f1"), bed)
    except AssertionError as e:  # say where the discovery stopped
        local = ip(bed.tb, "ha", "-6", "route", "show", "table", "local")
        doc = bed.ha.rpc("status")["home_agent_discovery"]
        raise AssertionError(f"{e}\nHA discovery: {doc}\nHA local table:\n{local}") from None
    assert got["bul"]["peer"] == str(HA)
    assert movement(bed)["home_agent"] == str(HA)
    dhaad = bed.ha.rpc("status")["home_agent_discovery"]["counters"]
    assert dhaad.get("requests", 0) >= 1 and dhaad.get("replies", 0) >= 1, dhaad
    assert "DHAAD Reply from" in bed.mn.tail(200)
    assert ping(bed.tb, "cn", HOA) >= 2, bed.mn.tail()
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2


def test_returns_home_and_deregisters_with_the_discovered_home_agent(bed: Bed) -> None:
    bed.tb.move("mn", "home")
    wait_for("MN at home", lambda: converged(bed, "home"), bed)
    assert movement(bed)["home_agent"] == str(HA)  # kept for the next time away
    assert ping(bed.tb, "cn", HOA) >= 2
