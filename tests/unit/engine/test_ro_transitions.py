"""The correspondent entry's transition table (route_optimisation.TRANSITIONS), walked."""

from __future__ import annotations

import itertools
from ipaddress import IPv6Address
from typing import get_args

import pytest

from mip6ctl.engine import route_optimisation as ro
from mip6ctl.engine.events import Received, Send
from mip6ctl.engine.route_optimisation import (
    TRANSITIONS,
    CorrespondentEntry,
    CorrespondentEvent,
    CorrespondentState,
    IllegalTransition,
)
from mip6ctl.wire import rr
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData

from .helpers import CN, COA, HOA, mn_config

STATES: tuple[CorrespondentState, ...] = get_args(CorrespondentState)
EVENTS: tuple[CorrespondentEvent, ...] = get_args(CorrespondentEvent)


def entry(**mn: object) -> CorrespondentEntry:
    cfg = mn_config(correspondents=[{"prefix": f"{CN}/128"}], **mn).mn
    assert cfg is not None
    return CorrespondentEntry(CN, HOA, cfg, lambda n: bytes(range(1, n + 1)))


# --------------------------------------------------------------------------- the table itself


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS))
def test_every_row_takes_the_entry_to_its_new_state(
    state: CorrespondentState, event: CorrespondentEvent
) -> None:
    e = entry()
    e.state = state
    e._to(event)
    assert e.state == TRANSITIONS[state, event]


def test_every_pair_without_a_row_is_illegal_and_changes_nothing() -> None:
    missing = [p for p in itertools.product(STATES, EVENTS) if p not in TRANSITIONS]
    assert missing  # the table is not "anything goes"
    for state, event in missing:
        e = entry()
        e.state = state
        with pytest.raises(IllegalTransition):
            e._to(event)
        assert e.state == state


def test_the_table_speaks_only_of_declared_states_and_events() -> None:
    for (state, event), new in TRANSITIONS.items():
        assert state in STATES and new in STATES and event in EVENTS
    assert {e for _, e in TRANSITIONS} == set(EVENTS)  # no declared event without a row


def _reachable(start: CorrespondentState, *, reverse: bool = False) -> set[CorrespondentState]:
    edges = [(s, n) for (s, _), n in TRANSITIONS.items()]
    if reverse:
        edges = [(n, s) for s, n in edges]
    seen = {start}
    todo = [start]
    while todo:
        here = todo.pop()
        for s, n in edges:
            if s == here and n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def test_every_state_is_reachable_from_idle_and_leads_back_to_it() -> None:
    assert _reachable("idle") == set(STATES)
    assert _reachable("idle", reverse=True) == set(STATES)  # no state is a dead end


def test_forget_and_fallback_apply_in_every_state() -> None:
    for s in STATES:
        assert TRANSITIONS[s, "forget"] == "idle"
        assert TRANSITIONS[s, "fallback"] == "fallback"


def test_the_module_docstring_names_every_state_and_event() -> None:
    doc = ro.__doc__ or ""
    for name in (*STATES, *EVENTS):
        assert f"``{name}``" in doc, name


# --------------------------------------------------------------------------- a walk with messages


def _hot(e: CorrespondentEntry, init: HomeTestInit) -> HomeTest:
    return HomeTest(1, init.home_init_cookie, bytes(8))


def _cot(e: CorrespondentEntry, init: CareofTestInit) -> CareofTest:
    return CareofTest(2, init.careof_init_cookie, bytes(range(8)))


def _ba(e: CorrespondentEntry, status: int = 0, lifetime: int = 25) -> Received:
    """A BA for the entry's last BU, authenticated with its Kbm like a correspondent's."""
    assert e._kbm is not None and e._bu_care_of is not None
    unsigned = BindingAcknowledgement(
        status, e.sequence, lifetime, 0, (BindingAuthorizationData(),)
    )
    auth = rr.BindingAuthenticator(e._kbm).compute(
        e._bu_care_of, CN, rr.mh_data(encode_mh(unsigned))
    )
    raw = encode_mh(
        BindingAcknowledgement(status, e.sequence, lifetime, 0, (BindingAuthorizationData(auth),))
    )
    return Received(decode_mh(raw), CN, HOA, None, e._bu_care_of, False, None, raw)


def _acknowledge(e: CorrespondentEntry, now: float, status: int = 0, lifetime: int = 25) -> None:
    ev = _ba(e, status, lifetime)
    assert isinstance(ev.message, BindingAcknowledgement)
    e.acknowledgement(ev, ev.message, now, True)


def _tests_answered(e: CorrespondentEntry, now: float) -> list[object]:
    """Start return routability for COA and answer both tests: the BU's actions."""
    hoti, coti = (s.message for s in e.run(COA, True, now))
    assert isinstance(hoti, HomeTestInit) and isinstance(coti, CareofTestInit)
    assert e.state == "testing"
    assert e.home_test(_hot(e, hoti), now, True) == []  # still waiting for the CoT
    return list(e.careof_test(_cot(e, coti), now, True))


def test_walk_away_register_go_home_deregister() -> None:
    """idle → testing → registering → registered → leaving → deregistering → idle."""
    e = entry(cn_binding_ack=True)
    e.home_lifetime_left = 400.0
    now = 0.0
    assert e.state == "idle"

    [bu] = _tests_answered(e, now)
    assert isinstance(bu, Send) and isinstance(bu.message, BindingUpdate)
    assert e.state == "registering"

    _acknowledge(e, now)
    assert e.state == "registered" and e.registered_care_of == COA

    e.leave()
    assert e.state == "leaving" and e.registered_care_of is None
    [dereg] = e.deregister(now + 1)  # the home token is still fresh: the BU at once
    assert isinstance(dereg.message, BindingUpdate) and dereg.message.lifetime == 0
    assert e.state == "deregistering"

    _acknowledge(e, now + 1, lifetime=0)
    assert e.state == "idle"


def test_walk_without_a_ba_the_bu_is_the_registration() -> None:
    """§11.7.2, A=0: idle → testing → registered, no BA awaited."""
    e = entry(cn_binding_ack=False)
    e.home_lifetime_left = 400.0
    [bu] = _tests_answered(e, 0.0)
    assert isinstance(bu, Send) and isinstance(bu.message, BindingUpdate) and not bu.message.ack
    assert e.state == "registered" and e.registered_care_of == COA


def test_walk_stale_tokens_keep_the_binding_and_expiry_unbinds() -> None:
    e = entry(cn_binding_ack=True)
    e.home_lifetime_left = 400.0
    _tests_answered(e, 0.0)
    _acknowledge(e, 0.0)
    assert e.state == "registered"

    # a refresh whose BU is refused for a stale care-of nonce: the old binding stays
    e.refresh_request(10.0, True)
    assert e.state == "registering"
    _acknowledge(e, 10.0, status=137)
    assert e.state == "registered" and e.registered_care_of == COA

    assert e.expires_at is not None
    e.handle_timer(e.expires_at, False)  # lifetime over, nothing renewed it
    assert e.state == "idle" and e.registered_care_of is None


def test_walk_fallback_and_retry() -> None:
    e = entry()
    e.run(COA, True, 0.0)
    assert e.state == "testing"
    e.binding_error(2, 1.0, True)  # the correspondent does not know the MH type
    assert e.state == "fallback"
    assert e.run(IPv6Address("2001:db8:3::1"), True, 2.0) == []  # fallback ignores moves
    e.handle_timer(1.0 + ro.FALLBACK_HOLD, True)
    assert e.state == "idle"
