"""Mobile node binding update list: retransmission backoff, 135 recovery, refresh, going home."""

from __future__ import annotations

import pytest

from mip6ctl.engine import AtHome, CareOfAddressChanged, Engine, Received, Send
from mip6ctl.engine.events import Action
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate, BUFlag
from mip6ctl.wire.mobopts import BindingRefreshAdvice

from .helpers import COA, COA2, HA, HOA, ha_config, mn_config, rx, sends, wire

T0 = 100.0


def bu_of(actions: list[Action]) -> tuple[Send, BindingUpdate]:
    [send] = sends(actions)
    assert isinstance(send.message, BindingUpdate)
    return send, send.message


def ba(seq: int, status: int = 0, lifetime: int = 100, options: tuple = ()) -> Received:
    return rx(BindingAcknowledgement(status, seq, lifetime, 0, options), HA, COA, rh=HOA)


def test_first_bu_addressing_and_options() -> None:
    e = Engine(mn_config(), T0)
    send, bu = bu_of(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    assert (send.src, send.dst, send.home_address_option) == (COA, HA, HOA)
    assert bu.flags == BUFlag.A | BUFlag.H
    assert bu.alternate_careof_address == COA
    assert bu.lifetime == 0xFFFF
    assert e.next_timer() == T0 + 1.5  # first home registration


def test_retransmission_doubles_to_32_s_with_new_sequence_each_time() -> None:
    e = Engine(mn_config(max_ha_consecutive_resends=0), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    seqs = [bu.sequence]
    now, gaps = T0, []
    for _ in range(8):
        nxt = e.next_timer()
        assert nxt is not None
        gaps.append(round(nxt - now, 6))
        now = nxt
        _, bu = bu_of(e.handle_timer(now))
        seqs.append(bu.sequence)
    assert gaps == [1.5, 3.0, 6.0, 12.0, 24.0, 32.0, 32.0, 32.0]
    assert len(set(seqs)) == len(seqs) and seqs == sorted(seqs)


def test_gives_up_after_max_consecutive_resends() -> None:
    e = Engine(mn_config(max_ha_consecutive_resends=2), T0)
    e.handle(CareOfAddressChanged(COA), T0)
    assert sends(e.handle_timer(T0 + 1.5))
    assert sends(e.handle_timer(T0 + 4.5))
    assert e.handle_timer(T0 + 10.5) == []
    assert e.mn is not None and e.mn.state == "failed"


def test_refresh_uses_one_second_initial_timeout() -> None:
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    e.handle(ba(bu.sequence, lifetime=100), T0 + 0.2)  # 400 s, refresh at 75 %
    assert e.next_timer() == pytest.approx(T0 + 0.2 + 300)
    _, bu2 = bu_of(e.handle_timer(T0 + 300.2))
    assert bu2.sequence == bu.sequence + 1
    assert e.next_timer() == pytest.approx(T0 + 301.2)


def test_refresh_at_binding_refresh_advice_interval() -> None:
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    e.handle(ba(bu.sequence, options=(BindingRefreshAdvice(10),)), T0 + 1)
    assert e.next_timer() == T0 + 41


def test_ba_135_next_bu_uses_ba_sequence_plus_one() -> None:
    e = Engine(mn_config(), T0)
    e.handle(CareOfAddressChanged(COA), T0)
    _, bu = bu_of(e.handle(ba(40000, status=135), T0 + 0.1))
    assert bu.sequence == 40001


def test_ba_with_other_sequence_is_ignored_and_error_stops() -> None:
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    assert e.handle(ba(bu.sequence + 7), T0 + 0.1) == []
    assert e.mn is not None and e.mn.state == "registering"
    e.handle(ba(bu.sequence, status=129), T0 + 0.2)
    assert e.mn.state == "failed" and e.next_timer() is None


def test_deregistration_when_home() -> None:
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    e.handle(ba(bu.sequence), T0 + 0.1)
    send, dereg = bu_of(e.handle(AtHome("eth0"), T0 + 10))
    assert (send.src, send.dst, send.home_address_option) == (HOA, HA, None)
    assert dereg.lifetime == 0 and dereg.alternate_careof_address is None
    assert e.next_timer() == T0 + 11
    ack = rx(BindingAcknowledgement(0, dereg.sequence, 0), HA, HOA)
    e.handle(ack, T0 + 10.1)
    assert e.mn is not None and e.mn.state == "home" and e.next_timer() is None


def test_mobile_node_and_home_agent_engines_talk() -> None:
    """MN's BU → HA engine → BA → MN engine, moving once, then home."""
    mn = Engine(mn_config(), T0)
    ha = Engine(ha_config(), T0)

    def deliver(actions: list[Action], now: float) -> list[Action]:
        out: list[Action] = []
        for s in sends(actions):
            msg, raw = wire(s.message)
            ev = Received(msg, s.src, s.dst, s.home_address_option, s.routing_header_address,
                          False, None, raw)
            out += ha.handle(ev, now) if s.dst == HA else mn.handle(ev, now)
        return out

    for coa in (COA, COA2):
        to_ha = mn.handle(CareOfAddressChanged(coa), T0)
        assert sends(deliver(to_ha, T0)) == []  # HA waits for the reconciler
        back = ha.reconciled(HOA, True, T0)
        deliver(back, T0)
        assert mn.mn is not None and mn.mn.state == "registered"
        assert ha.cache.get(HOA).care_of_address == coa
    deliver(mn.handle(AtHome(), T0 + 5), T0 + 5)
    deliver(ha.reconciled(HOA, True, T0 + 5), T0 + 5)
    assert mn.mn.state == "home" and HOA not in ha.cache
