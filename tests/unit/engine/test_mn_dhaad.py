"""The mobile node with ``home_agent = "dhaad"`` (RFC 6275 §11.4.1), engines and a fake clock.

Discovery from the care-of address, the reply's order, retransmission and
giving up, moving to the next home agent when the registered one stops
answering or refuses, and no going back to a home agent that returns.
"""

from __future__ import annotations

import itertools
from ipaddress import IPv6Address

from mip6ctl.engine import AtHome, CareOfAddressChanged, Engine
from mip6ctl.engine.events import (
    Action,
    DhaadReplyReceived,
    HomeAgentChosen,
    SendDhaadRequest,
)
from mip6ctl.wire.icmp6 import HomeAgentAddressDiscoveryReply
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate

from .helpers import COA, HOA, mn_config, rx, sends

T0 = 100.0
HA1 = IPv6Address("2001:db8:1::1")
HA2 = IPv6Address("2001:db8:1::2")
ANYCAST = IPv6Address("2001:db8:1::fdff:ffff:ffff:fffe")


def engine(**mn: object) -> Engine:
    counter = itertools.count(0x4000)
    return Engine(
        mn_config(home_agent="dhaad", **mn),
        T0,
        random_bytes=lambda n: next(counter).to_bytes(n, "big")[-n:],
    )


def of(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def discover(e: Engine, now: float = T0) -> SendDhaadRequest:
    (req,) = of(e.handle(CareOfAddressChanged(COA, "wlan0"), now), SendDhaadRequest)
    return req


def reply(e: Engine, req: SendDhaadRequest, *agents: IPv6Address, now: float = T0) -> list:
    ev = DhaadReplyReceived(HomeAgentAddressDiscoveryReply(req.request.identifier, agents), HA1)
    return e.handle(ev, now)


def ba(e: Engine, seq: int, src: IPv6Address, status: int = 0, now: float = T0) -> list:
    return e.handle(rx(BindingAcknowledgement(status, seq, 100, 0), src, COA, rh=HOA), now)


def test_first_move_away_sends_a_request_from_the_care_of_address_to_the_anycast() -> None:
    e = engine()
    req = discover(e)
    assert (req.src, req.dst) == (COA, ANYCAST)
    assert e.mn is not None and e.mn.state == "discovering" and e.mn.home_agent is None
    assert e.next_timer() == T0 + 3.0  # INITIAL_DHAAD_TIMEOUT


def test_the_reply_picks_the_first_home_agent_and_registers_with_it() -> None:
    e = engine()
    req = discover(e)
    out = reply(e, req, HA2, HA1)
    assert of(out, HomeAgentChosen) == [HomeAgentChosen(HA2)]
    (send,) = sends(out)
    assert isinstance(send.message, BindingUpdate) and send.dst == HA2 and send.src == COA
    ba(e, send.message.sequence, HA2)
    assert e.mn is not None and e.mn.state == "registered" and e.mn.home_agent == HA2


def test_a_reply_with_another_identifier_is_ignored() -> None:
    e = engine()
    req = discover(e)
    wrong = HomeAgentAddressDiscoveryReply((req.request.identifier + 1) & 0xFFFF, (HA1,))
    assert e.handle(DhaadReplyReceived(wrong, HA1), T0) == []
    assert e.mn is not None and e.mn.home_agent is None


def test_requests_are_retransmitted_3_6_12_24_s_then_given_up() -> None:
    e = engine()
    first = discover(e)
    now, gaps, ids = T0, [], {first.request.identifier}
    while (nxt := e.next_timer()) is not None:
        gaps.append(round(nxt - now, 6))
        now = nxt
        for r in of(e.handle_timer(now), SendDhaadRequest):
            ids.add(r.request.identifier)
    assert gaps == [3.0, 6.0, 12.0, 24.0, 48.0]  # four retransmissions, then the last wait
    assert len(ids) == 1  # the same request, retransmitted
    assert e.mn is not None and e.mn.state == "failed"
    assert "no DHAAD Reply" in (e.mn.last_error or "")
    # the next move starts a new discovery, with a new identifier
    again = discover(e, now + 1)
    assert again.request.identifier not in ids


def test_no_binding_acknowledgement_moves_to_the_next_home_agent() -> None:
    e = engine(max_ha_consecutive_resends=2)
    req = discover(e)
    (send,) = sends(reply(e, req, HA1, HA2))
    assert send.dst == HA1
    now = T0
    out: list = []
    for _ in range(3):  # two retransmissions, then the third timeout gives up on HA1
        now = e.next_timer()
        out = e.handle_timer(now)
    assert of(out, HomeAgentChosen) == [HomeAgentChosen(HA2)]
    (bu,) = sends(out)
    assert bu.dst == HA2 and now - T0 == 1.5 + 3.0 + 6.0
    ba(e, bu.message.sequence, HA2, now=now)
    assert e.mn is not None and e.mn.state == "registered" and e.mn.home_agent == HA2
    assert "trying 2001:db8:1::2" in (e.mn.last_error or "")


def test_a_refusal_moves_on_and_the_last_failure_rediscovers() -> None:
    e = engine()
    req = discover(e)
    (send,) = sends(reply(e, req, HA1, HA2))
    out = ba(e, send.message.sequence, HA1, status=129)
    assert of(out, HomeAgentChosen) == [HomeAgentChosen(HA2)]
    (send2,) = sends(out)
    out = ba(e, send2.message.sequence, HA2, status=133)
    assert of(out, HomeAgentChosen) == [HomeAgentChosen(None)]
    (again,) = of(out, SendDhaadRequest)
    assert again.dst == ANYCAST and again.request.identifier != req.request.identifier


def test_refreshes_stay_with_the_home_agent_registered_with() -> None:
    """No flapping: a more preferred home agent appearing later changes nothing; the
    refresh goes to the one that holds the binding."""
    e = engine()
    req = discover(e)
    (send,) = sends(reply(e, req, HA2, HA1))
    ba(e, send.message.sequence, HA2)
    refresh_at = e.next_timer()
    assert refresh_at is not None
    (refresh,) = sends(e.handle_timer(refresh_at))
    assert refresh.dst == HA2


def test_going_home_deregisters_with_the_discovered_home_agent() -> None:
    e = engine()
    req = discover(e)
    (send,) = sends(reply(e, req, HA1))
    ba(e, send.message.sequence, HA1)
    (dereg,) = sends(e.handle(AtHome(), T0 + 5))
    assert dereg.dst == HA1 and dereg.message.lifetime == 0
    ba(e, dereg.message.sequence, HA1, now=T0 + 5)
    assert e.mn is not None and e.mn.state == "home" and e.mn.home_agent == HA1  # kept


def test_reset_dhaad_at_home_forgets_the_home_agent() -> None:
    e = engine(reset_dhaad_at_home=True)
    req = discover(e)
    (send,) = sends(reply(e, req, HA1))
    ba(e, send.message.sequence, HA1)
    (dereg,) = sends(e.handle(AtHome(), T0 + 5))
    out = ba(e, dereg.message.sequence, HA1, now=T0 + 5)
    assert HomeAgentChosen(None) in out
    assert e.mn is not None and e.mn.home_agent is None
    assert discover(e, T0 + 10).dst == ANYCAST
