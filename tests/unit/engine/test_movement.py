"""Movement detection (mip6ctl.engine.movement), with a fake clock."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from mip6ctl.engine.movement import (
    AtHome,
    Moved,
    MovementDetector,
    PrefixAdvert,
    ProbeRouter,
    SendRS,
)
from mip6ctl.wire.icmp6 import PrefixInformation

HOME = IPv6Network("2001:db8:1::/64")
F1 = IPv6Network("2001:db8:a::/64")
F2 = IPv6Network("2001:db8:b::/64")
R_HOME = IPv6Address("fe80::1")
R1 = IPv6Address("fe80::a")
R2 = IPv6Address("fe80::b")
COA1 = IPv6Address("2001:db8:a::5")
COA2 = IPv6Address("2001:db8:b::5")
HOA = IPv6Address("2001:db8:1::100")


def md(interfaces=(("mn0", 1),)) -> MovementDetector:
    return MovementDetector(HOME, list(interfaces), home_address=HOA)


def ra(d: MovementDetector, router, prefix, now, ifname="mn0", lifetime=30, interval=None):
    return d.router_advertisement(
        ifname, router, lifetime, [PrefixAdvert(prefix)], now, interval=interval
    )


def test_home_then_away_waits_for_the_slaac_address() -> None:
    d = md()
    assert ra(d, R_HOME, HOME, 0.0) == [AtHome("mn0", R_HOME)]
    assert ra(d, R_HOME, HOME, 0.05) == []  # same router, same prefixes: nothing
    assert ra(d, R1, F1, 1.0) == []  # new router, but no address on F1 yet
    assert d.pending()
    assert d.address("mn0", COA1, True, 1.02) == [Moved("mn0", COA1, R1)]
    assert ra(d, R1, F1, 1.05) == []


def test_address_already_there_moves_at_once_and_old_addresses_are_ignored() -> None:
    d = md()
    d.address("mn0", COA1, True, 0.0)
    d.address("mn0", COA2, True, 0.0)
    assert ra(d, R1, F1, 0.1) == [Moved("mn0", COA1, R1)]
    assert ra(d, R2, F2, 0.2) == [Moved("mn0", COA2, R2)]
    assert ra(d, R1, F1, 0.3) == [Moved("mn0", COA1, R1)]
    assert ra(d, R_HOME, HOME, 0.4) == [AtHome("mn0", R_HOME)]


def test_home_address_is_not_a_care_of_address() -> None:
    d = md()
    assert d.address("mn0", HOA, True, 0.0) == []
    assert ra(d, R_HOME, HOME, 0.1) == [AtHome("mn0", R_HOME)]


def test_link_up_solicits_and_retransmits_until_an_ra() -> None:
    d = md()
    d.address("mn0", COA1, True, 0.0)
    assert ra(d, R1, F1, 0.0) == [Moved("mn0", COA1, R1)]
    assert d.link("mn0", False, 1.0) == []
    assert d.link("mn0", True, 1.1) == [SendRS("mn0"), ProbeRouter("mn0", R1)]
    assert d.next_timer() == 2.1
    assert d.handle_timer(2.1) == [SendRS("mn0")]
    assert d.handle_timer(3.1) == [SendRS("mn0")]
    assert d.next_timer() is None  # three in all
    assert d.link("mn0", False, 4.0) == []
    assert d.link("mn0", True, 4.1) == [SendRS("mn0"), ProbeRouter("mn0", R1)]
    assert ra(d, R2, F2, 4.12) == []
    assert d.next_timer() is not None and d.next_timer() > 4.12  # only the router timeout
    assert d.address("mn0", COA2, True, 4.15) == [Moved("mn0", COA2, R2)]


def test_link_up_probes_known_routers_and_an_answer_restores_that_link() -> None:
    """RFC 4436-style DNA: an NA from a remembered router moves before any RA comes."""
    d = md()
    d.address("mn0", COA1, True, 0.0)
    d.address("mn0", COA2, True, 0.0)
    assert ra(d, R_HOME, HOME, 0.0) == [AtHome("mn0", R_HOME)]
    assert ra(d, R1, F1, 0.5) == [Moved("mn0", COA1, R1)]
    assert ra(d, R2, F2, 1.0) == [Moved("mn0", COA2, R2)]
    d.link("mn0", False, 2.0)
    out = d.link("mn0", True, 2.01)
    assert out[0] == SendRS("mn0")
    assert set(out[1:]) == {ProbeRouter("mn0", r) for r in (R_HOME, R1, R2)}
    assert d.neighbor_advertisement("mn0", R1, 2.012) == [Moved("mn0", COA1, R1)]
    assert d.neighbor_advertisement("mn0", R2, 2.013) == []  # a router is known again
    assert ra(d, R1, F1, 2.05) == []  # the RA confirms it
    d.link("mn0", False, 3.0)
    d.link("mn0", True, 3.01)
    assert d.neighbor_advertisement("mn0", R_HOME, 3.012) == [AtHome("mn0", R_HOME)]
    assert d.neighbor_advertisement("mn0", IPv6Address("fe80::99"), 3.1) == []


def test_return_to_the_same_link_after_a_carrier_loss_is_no_move() -> None:
    d = md()
    d.address("mn0", COA1, True, 0.0)
    assert ra(d, R1, F1, 0.0) == [Moved("mn0", COA1, R1)]
    d.link("mn0", False, 1.0)
    d.link("mn0", True, 1.1)
    assert ra(d, R1, F1, 1.15) == []


def test_router_lifetime_zero_is_not_a_default_router() -> None:
    d = md()
    d.address("mn0", COA1, True, 0.0)
    assert ra(d, R1, F1, 0.0, lifetime=0) == []
    assert ra(d, R1, F1, 0.1) == [Moved("mn0", COA1, R1)]


def test_silent_router_expires_and_a_worse_interface_takes_over() -> None:
    d = md((("wlan0", 1), ("eth0", 5)))
    d.address("wlan0", COA1, True, 0.0)
    d.address("eth0", COA2, True, 0.0)
    assert ra(d, R2, F2, 0.0, ifname="eth0", interval=0.07) == [Moved("eth0", COA2, R2)]
    assert ra(d, R1, F1, 0.01, ifname="wlan0", interval=0.07) == [Moved("wlan0", COA1, R1)]
    ra(d, R2, F2, 0.2, ifname="eth0", interval=0.07)
    due = d.next_timer()
    assert due is not None and abs(due - 0.22) < 1e-9  # wlan0's router: 3 x 70 ms
    assert d.handle_timer(due) == [Moved("eth0", COA2, R2)]


def test_preferred_interface_down_falls_back() -> None:
    d = md((("wlan0", 1), ("eth0", 5)))
    d.address("wlan0", COA1, True, 0.0)
    d.address("eth0", COA2, True, 0.0)
    ra(d, R1, F1, 0.0, ifname="wlan0")
    ra(d, R2, F2, 0.0, ifname="eth0")
    assert d.current is not None and d.current[1] == "wlan0"
    assert d.link("wlan0", False, 1.0) == [Moved("eth0", COA2, R2)]
    assert d.link("wlan0", True, 2.0) == [SendRS("wlan0"), ProbeRouter("wlan0", R1)]
    assert ra(d, R_HOME, HOME, 2.05, ifname="wlan0") == [AtHome("wlan0", R_HOME)]


def test_prefix_advert_from_wire_option_with_router_address() -> None:
    opt = PrefixInformation(64, 0xE0, 86400, 14400, IPv6Address("2001:db8:1::1"))
    p = PrefixAdvert.from_option(opt)
    assert p == PrefixAdvert(HOME, True, True, 86400)


def test_unknown_interface_is_ignored() -> None:
    d = md()
    assert ra(d, R1, F1, 0.0, ifname="eth9") == []
    assert d.link("eth9", True, 0.0) == []
    assert d.address("eth9", COA1, True, 0.0) == []
