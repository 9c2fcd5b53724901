"""Dynamic Home Agent Address Discovery, sans I/O (mip6ctl/engine/discovery.py)."""

from __future__ import annotations

import itertools
from ipaddress import IPv6Address as A
from ipaddress import IPv6Network as N

import pytest

from mip6ctl.engine.discovery import (
    MAX_REPLY_ADDRESSES,
    DhaadClient,
    HomeAgentsList,
    home_agents_anycast,
)
from mip6ctl.wire.icmp6 import (
    HomeAgentAddressDiscoveryReply,
    HomeAgentAddressDiscoveryRequest,
    HomeAgentInformation,
    PrefixInformation,
    RouterAdvertisement,
)

HOME = N("2001:db8:1::/64")


def _counter():  # deterministic "random" identifiers: 0x1000, 0x1001, ...
    it = itertools.count(0x1000)
    return lambda n: next(it).to_bytes(n, "big")


H = 0x20  # RA flag: the router is a home agent


def ra(address: str, *, h: bool = True, pref: int | None = None, lifetime: int = 1800,
       router_lifetime: int = 1800) -> RouterAdvertisement:  # fmt: skip
    opts: list = [PrefixInformation(64, PrefixInformation.L | PrefixInformation.R, 86400, 14400,
                                    A(address))]  # fmt: skip
    if pref is not None:
        opts.append(HomeAgentInformation(pref, lifetime))
    return RouterAdvertisement(flags=H if h else 0, router_lifetime=router_lifetime,
                               options=tuple(opts))  # fmt: skip


def test_the_home_agents_anycast_address_rfc_2526() -> None:
    """RFC 2526: "the Mobile IPv6 Home-Agents anycast address" has anycast ID 126; for a
    /64 in EUI-64 format the interface identifier is fdff:ffff:ffff:fffe."""
    assert home_agents_anycast(HOME) == A("2001:db8:1:0:fdff:ffff:ffff:fffe")
    assert home_agents_anycast(N("2001:db8:1::/120")) == A("2001:db8:1::fe")
    with pytest.raises(ValueError):
        home_agents_anycast(N("2001:db8:1::/124"))


def test_reply_orders_by_preference_and_rotates_equal_ones() -> None:
    """§10.5: "the home agent addresses ... SHOULD be ordered by preference"; entries of
    equal preference are rotated so replies spread mobile nodes over them."""
    hal = HomeAgentsList(HOME)
    hal.set_own(A("fe80::1"), A("2001:db8:1::1"), 10)
    assert hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", pref=20), 0.0)
    assert hal.router_advertisement(A("fe80::3"), ra("2001:db8:1::3", pref=10), 0.0)
    req = HomeAgentAddressDiscoveryRequest(0x1234)
    first = hal.reply(req, 1.0)
    assert first.identifier == 0x1234
    assert first.home_agent_addresses[0] == A("2001:db8:1::2")
    second = hal.reply(req, 2.0).home_agent_addresses
    assert set(first.home_agent_addresses[1:]) == set(second[1:]) == {
        A("2001:db8:1::1"), A("2001:db8:1::3")}  # fmt: skip
    assert first.home_agent_addresses[1:] != second[1:]  # rotated


def test_the_list_follows_router_advertisements() -> None:
    """§10.5.1: an RA without H, or with lifetime 0, removes the entry; the HA Information
    lifetime (else the router lifetime) expires it; only link-local sources count."""
    hal = HomeAgentsList(HOME)
    assert not hal.router_advertisement(A("2001:db8:1::9"), ra("2001:db8:1::9", pref=1), 0.0)
    assert hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", pref=5, lifetime=30), 0.0)
    assert not hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", pref=5, lifetime=30), 1)
    assert hal.ordered(29.0) == [A("2001:db8:1::2")]
    assert hal.ordered(31.0) == []  # expired
    hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", router_lifetime=600), 40.0)
    assert hal.entries[A("fe80::2")].preference == 0  # no HA Information: default 0
    assert hal.next_expiry() == 640.0
    assert hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", h=False), 50.0)
    assert hal.ordered(50.0) == []
    hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", pref=5), 60.0)
    assert hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", pref=5, lifetime=0), 61)
    assert hal.entries == {}
    # a prefix outside the home prefix is no home agent address of this link
    assert not hal.router_advertisement(A("fe80::4"), ra("2001:db8:99::4", pref=5), 70.0)


def test_negative_preferences_sort_last() -> None:
    """The Home Agent Preference is a signed 16-bit integer (§7.4)."""
    hal = HomeAgentsList(HOME)
    hal.router_advertisement(A("fe80::2"), ra("2001:db8:1::2", pref=0xFFFF), 0.0)  # -1
    hal.router_advertisement(A("fe80::3"), ra("2001:db8:1::3", pref=0), 0.0)
    assert hal.ordered(1.0) == [A("2001:db8:1::3"), A("2001:db8:1::2")]


def test_reply_fits_the_minimum_mtu() -> None:
    """§10.5: the reply must not exceed the minimum IPv6 MTU: at most 77 addresses."""
    hal = HomeAgentsList(HOME)
    for i in range(1, 100):
        hal.router_advertisement(A(f"fe80::{i:x}"), ra(f"2001:db8:1::{i:x}", pref=i), 0.0)
    rep = hal.reply(HomeAgentAddressDiscoveryRequest(1), 1.0)
    assert len(rep.home_agent_addresses) == MAX_REPLY_ADDRESSES == 77
    assert rep.home_agent_addresses[0] == A("2001:db8:1::63")  # preference 99 first
    assert len(rep.encode()) + 40 <= 1280


def test_client_retransmits_with_back_off_then_gives_up() -> None:
    """§11.4.1: retransmit after INITIAL_DHAAD_TIMEOUT, doubling, at most DHAAD_RETRIES
    times."""
    c = DhaadClient(HOME, random_bytes=_counter())
    (sent,) = c.start(0.0)
    assert sent.destination == home_agents_anycast(HOME)
    times, now = [], 0.0
    while not c.failed and now < 200:
        now += 0.5
        if c.timer(now):
            times.append(now)
    assert times == [3.0, 9.0, 21.0, 45.0]  # 3, 6, 12, 24 s apart: 4 retransmissions
    assert c.failed and c.current() is None


def test_client_takes_only_the_matching_reply_and_moves_on_after_failures() -> None:
    c = DhaadClient(HOME, random_bytes=_counter())
    (sent,) = c.start(0.0)
    ident = sent.request.identifier
    wrong = HomeAgentAddressDiscoveryReply((ident + 1) & 0xFFFF, (A("2001:db8:1::66"),))
    assert not c.reply(wrong)
    bad = HomeAgentAddressDiscoveryReply(ident, (A("ff02::1"), A("fe80::1")))
    assert not c.reply(bad)  # nothing usable: still waiting
    good = HomeAgentAddressDiscoveryReply(ident, (A("2001:db8:1::2"), A("2001:db8:1::1")))
    assert c.reply(good)
    assert c.current() == A("2001:db8:1::2")
    assert c.timer(100.0) == []  # answered: no more retransmissions
    assert c.give_up_on_current(101.0) == []
    assert c.current() == A("2001:db8:1::1")
    (again,) = c.give_up_on_current(102.0)  # none left: discover again
    assert again.request.identifier == ident + 1  # a new identifier for the new request
    assert c.current() is None and not c.reply(good)  # the old identifier is stale


# --------------------------------------------------------------------------- the HA service


def _service(preference: int = 10):
    from mip6ctl.engine.discovery import HomeAgentDiscovery, HomeLink

    return HomeAgentDiscovery([HomeLink("home0", HOME)], A("2001:db8:1::1"), preference)


ANYCAST = A("2001:db8:1:0:fdff:ffff:ffff:fffe")
COA = A("2001:db8:a::100")


def test_service_answers_only_requests_to_the_anycast_address_from_unicast() -> None:
    """§10.5: a request sent to the Home-Agents anycast address of a home prefix is
    answered, from this home agent, to the requester; anything else is discarded."""
    from mip6ctl.engine.discovery import Discard, SendReply

    svc = _service()
    req = HomeAgentAddressDiscoveryRequest(0x77)
    out = svc.request(req, COA, ANYCAST, 0.0)
    assert isinstance(out, SendReply)
    assert (out.destination, out.source, out.reply.identifier) == (COA, A("2001:db8:1::1"), 0x77)
    assert out.reply.home_agent_addresses == (A("2001:db8:1::1"),)
    for src, dst in (
        (COA, A("2001:db8:1::1")),  # to a unicast address of this node
        (COA, None),  # destination unknown
        (COA, A("2001:db8:2:0:fdff:ffff:ffff:fffe")),  # another prefix's anycast
        (A("ff0e::1"), ANYCAST),  # multicast source
        (A("fe80::1"), ANYCAST),  # link-local: a reply could not leave the link
        (A("::"), ANYCAST),
    ):
        assert isinstance(svc.request(req, src, dst, 0.0), Discard), (src, dst)


def test_service_learns_other_home_agents_but_not_its_own_ras() -> None:
    svc = _service(preference=10)
    assert svc.router_advertisement("home0", A("fe80::2"), ra("2001:db8:1::2", pref=20), 0.0)
    assert not svc.router_advertisement("other0", A("fe80::3"), ra("2001:db8:1::3", pref=30), 0.0)
    # radvd on this node advertises the home agent's own address: the configuration wins
    assert not svc.router_advertisement("home0", A("fe80::1"), ra("2001:db8:1::1", pref=99), 0.0)
    out = svc.request(HomeAgentAddressDiscoveryRequest(1), COA, ANYCAST, 1.0)
    assert out.reply.home_agent_addresses == (A("2001:db8:1::2"), A("2001:db8:1::1"))
    rows = svc.rows(1.0)
    assert [h["self"] for h in rows[0]["home_agents"]] == [False, True]


def test_reload_keeps_learnt_home_agents_and_takes_the_new_preference() -> None:
    from mip6ctl.engine.discovery import HomeLink

    svc = _service(preference=10)
    svc.router_advertisement("home0", A("fe80::2"), ra("2001:db8:1::2", pref=20), 0.0)
    svc.configure([HomeLink("home0", HOME)], A("2001:db8:1::1"), 30)
    out = svc.request(HomeAgentAddressDiscoveryRequest(2), COA, ANYCAST, 1.0)
    assert out.reply.home_agent_addresses == (A("2001:db8:1::1"), A("2001:db8:1::2"))
