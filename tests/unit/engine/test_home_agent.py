"""Home agent (§10.3.1) driven with wire messages and a fake clock."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address

import pytest

from mip6ctl.config.model import Mip6Config
from mip6ctl.engine import (
    BindingChanged,
    Engine,
    ForgetBinding,
    HomeAddressOptionReceived,
    Malformed,
    PersistBinding,
    SendParameterProblem,
    StartDad,
)
from mip6ctl.wire.errors import BadChecksum, BadPayloadProto, HeaderLenTooShort, UnknownMHType
from mip6ctl.wire.mh import (
    BAStatus,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    decode_mh,
)
from mip6ctl.wire.mobopts import MobileNetworkPrefix, NonceIndices

from .helpers import (
    COA,
    COA2,
    FOREIGN_HOA,
    HA,
    HA_FLAGS,
    HOA,
    HOA2,
    HOA3,
    bas,
    cn_config,
    ha_config,
    home_bu,
    only_ba,
    register,
    rx,
    sends,
)

T0 = 1000.0


def engine(**ha: object) -> Engine:
    return Engine(ha_config(**ha), T0, kcn=bytes(20))


# --------------------------------------------------------------------------- ordering / statuses


def test_first_registration_waits_for_reconcile_then_persists_before_ba() -> None:
    e = engine()
    out = e.handle(home_bu(1), T0)
    assert bas(out) == []  # no BA 0 before the kernel has proxy ND + tunnel
    [changed] = out
    assert isinstance(changed, BindingChanged) and changed.reason == "registered"
    assert changed.binding is not None and changed.binding.care_of_address == COA
    assert e.reconciled(HOA2, True, T0) == []  # another key: nothing released
    out = e.reconciled(HOA, True, T0 + 0.1)
    assert isinstance(out[0], PersistBinding)  # durable before the BA (invariant 6)
    ba = only_ba(out)
    assert (ba.status, ba.sequence, ba.lifetime) == (0, 1, 100)
    send = sends(out)[0]
    assert (send.src, send.dst, send.routing_header_address) == (HA, COA, HOA)
    assert out.index(out[0]) < out.index(send)


def test_reconcile_failure_rolls_back_and_answers_130() -> None:
    e = engine()
    register(e, 1, T0)
    out = e.handle(home_bu(2, coa=COA2), T0 + 1)  # movement: kernel must change
    assert bas(out) == []
    out = e.reconciled(HOA, False, T0 + 1.5)
    assert isinstance(out[0], BindingChanged) and out[0].reason == "rollback"
    assert out[0].binding is not None and out[0].binding.care_of_address == COA
    assert only_ba(out).status == BAStatus.INSUFFICIENT_RESOURCES
    assert e.cache.get(HOA).care_of_address == COA  # previous binding back
    assert not any(isinstance(a, PersistBinding) for a in out)


def test_reconcile_timeout_is_a_failure() -> None:
    e = engine()
    e.handle(home_bu(1), T0)
    assert e.next_timer() == pytest.approx(T0 + 10)
    out = e.handle_timer(T0 + 10)
    assert only_ba(out).status == 130
    assert HOA not in e.cache


def test_refresh_with_same_care_of_is_answered_at_once() -> None:
    e = engine()
    register(e, 1, T0)
    out = e.handle(home_bu(2), T0 + 50)
    assert [type(a).__name__ for a in out] == ["PersistBinding", "Send"]
    assert only_ba(out).status == 0
    assert e.cache.get(HOA).expires_at == T0 + 50 + 400


def test_ipsec_required_but_unprotected_is_silently_discarded() -> None:
    e = engine(require_ipsec=True)
    assert e.handle(home_bu(1), T0) == []
    assert e.handle(home_bu(1, hoa=FOREIGN_HOA), T0) == []  # discard comes before 132
    assert bas(e.handle(home_bu(1, ipsec=True), T0)) == [] and HOA in e.cache


def test_per_node_ipsec_template_requires_protection() -> None:
    e = engine(mobile_nodes=[{"home_address": str(HOA), "ipsec": "mn1"}])
    assert e.handle(home_bu(1), T0) == []


def test_non_unicast_care_of_is_discarded() -> None:
    e = engine()
    assert e.handle(home_bu(1, coa=IPv6Address("ff0e::1")), T0) == []
    assert e.handle(home_bu(1, coa=IPv6Address("fe80::1")), T0) == []
    assert HOA not in e.cache


def test_not_home_subnet_132_before_129() -> None:
    e = engine()
    ba = only_ba(e.handle(home_bu(1, hoa=FOREIGN_HOA), T0))
    assert ba.status == BAStatus.NOT_HOME_SUBNET


def test_not_allowed_129_and_default_allow() -> None:
    e = engine()
    other = IPv6Address("2001:db8:1::999")
    assert only_ba(e.handle(home_bu(1, hoa=other), T0)).status == 129
    e2 = engine(default_action="allow")
    assert bas(e2.handle(home_bu(1, hoa=other), T0)) == []  # accepted, waiting for reconcile


def test_ba_is_sent_whatever_the_a_flag_says() -> None:
    e = engine()
    ba = only_ba(e.handle(home_bu(1, flags=int(BUFlag.H), hoa=FOREIGN_HOA), T0))
    assert ba.status == 132


def test_home_registration_at_a_correspondent_is_131() -> None:
    e = Engine(cn_config(), T0, kcn=bytes(20))
    assert only_ba(e.handle(home_bu(1), T0)).status == BAStatus.HOME_REGISTRATION_NOT_SUPPORTED
    # Nonce Indices in a home registration at a CN: silently discarded
    assert e.handle(home_bu(1, options=(NonceIndices(1, 2),)), T0) == []


@pytest.mark.parametrize(
    ("last", "new", "accepted"),
    [(15, 16, True), (15, 32783, False), (65535, 0, True), (65535, 32767, False), (7, 7, False)],
)
def test_sequence_window_135_carries_last_accepted(last: int, new: int, accepted: bool) -> None:
    e = engine()
    register(e, last, T0)
    ba = only_ba(e.handle(home_bu(new), T0 + 1))
    if accepted:
        assert (ba.status, ba.sequence) == (0, new)
    else:
        assert (ba.status, ba.sequence) == (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, last)
        assert e.cache.get(HOA).sequence == last


def test_deregistration_without_entry_is_133() -> None:
    e = engine()
    ba = only_ba(e.handle(home_bu(1, lifetime=0), T0))
    assert ba.status == BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE


def test_deregistration_from_home_goes_to_home_address_without_routing_header() -> None:
    e = engine()
    register(e, 1, T0)
    msg = BindingUpdate(2, HA_FLAGS, 0)
    out = e.handle(rx(msg, HOA, HA), T0 + 5)  # CoA = HoA, sent from the home address
    assert out == [BindingChanged(HOA, None, "deregistered")]
    out = e.reconciled(HOA, True, T0 + 5)
    assert out[0] == ForgetBinding(HOA)
    [send] = sends(out)
    assert (send.message.status, send.message.lifetime) == (0, 0)
    assert (send.dst, send.routing_header_address, send.home_address_option) == (HOA, None, None)
    assert HOA not in e.cache


def test_deregistration_with_lifetime_zero_from_care_of() -> None:
    e = engine()
    register(e, 1, T0)
    e.handle(home_bu(2, lifetime=0), T0 + 5)
    [send] = sends(e.reconciled(HOA, True, T0 + 5))
    assert (send.dst, send.routing_header_address) == (COA, HOA)
    assert send.message.status == 0


def test_existing_correspondent_entry_gives_139() -> None:
    e = engine()
    from mip6ctl.engine import Binding

    e.cache.put(Binding(HOA, COA, HA, 100, T0, T0 + 100, 1, 0, False))
    assert only_ba(e.handle(home_bu(2), T0)).status == 139


# --------------------------------------------------------------------------- DAD


def test_dad_parks_first_registration_and_answers_134_on_failure() -> None:
    e = engine(duplicate_address_detection=True)
    out = e.handle(home_bu(1, flags=HA_FLAGS | int(BUFlag.L)), T0)
    assert out == [StartDad(HOA, "home0", IPv6Address("fe80::100"))]
    assert HOA not in e.cache
    assert only_ba(e.dad_result(HOA, False, T0 + 1)).status == 134
    assert HOA not in e.cache


def test_dad_success_continues_to_reconcile_and_ba() -> None:
    e = engine(duplicate_address_detection=True)
    e.handle(home_bu(1), T0)
    out = e.dad_result(HOA, True, T0 + 1)
    assert [type(a) for a in out] == [BindingChanged]
    assert only_ba(e.reconciled(HOA, True, T0 + 1.2)).status == 0
    # a refresh does not run DAD again
    assert only_ba(e.handle(home_bu(2), T0 + 2)).status == 0


def test_dad_parking_does_not_delay_another_node() -> None:
    e = engine(duplicate_address_detection=True)
    from mip6ctl.engine import Binding

    e.restore([Binding(HOA3, COA, HA, 400, T0, T0 + 400, 9, HA_FLAGS, True)], T0)
    assert e.handle(home_bu(1), T0) == [StartDad(HOA, "home0", None)]  # HOA parked on DAD
    # a second node's first registration starts its own DAD at once ...
    assert e.handle(home_bu(1, hoa=HOA2), T0 + 0.01) == [StartDad(HOA2, "home0", None)]
    assert [type(a) for a in e.dad_result(HOA2, True, T0 + 0.5)] == [BindingChanged]
    assert only_ba(e.reconciled(HOA2, True, T0 + 0.6)).status == 0
    # ... and a registered node's refresh is answered immediately
    assert only_ba(e.handle(home_bu(10, hoa=HOA3), T0 + 0.7)).status == 0
    assert HOA not in e.cache  # still waiting for its DAD


def test_bus_of_a_parked_home_address_queue_behind_it() -> None:
    e = engine(duplicate_address_detection=True)
    e.handle(home_bu(1), T0)
    assert e.handle(home_bu(2), T0 + 1) == []  # retransmission queued
    out = e.dad_result(HOA, True, T0 + 1.1)
    # first BU: now waiting for reconcile; second still queued behind it
    assert [type(a) for a in out] == [BindingChanged]
    out = e.reconciled(HOA, True, T0 + 1.2)
    statuses = [(b.status, b.sequence) for b in bas(out)]
    assert statuses == [(0, 1), (0, 2)]  # seq 2 then refreshed the same forwarding


def test_dad_without_answer_is_dropped_at_the_deadline() -> None:
    e = engine(duplicate_address_detection=True)
    e.handle(home_bu(1), T0)
    assert e.handle_timer(T0 + 10) == []
    assert e.handle(home_bu(2), T0 + 11) == [StartDad(HOA, "home0", None)]


# --------------------------------------------------------------------------- lifetimes, options


def test_granted_lifetime_is_capped_by_every_limit() -> None:
    e = engine(
        max_binding_lifetime=300,
        mobile_nodes=[
            {"home_address": str(HOA), "max_binding_lifetime": 200},
            {"home_address": str(HOA2)},
        ],
    )
    assert register(e, 1, T0, lifetime=1000).lifetime_seconds == 200
    assert register(e, 1, T0, lifetime=1000, hoa=HOA2).lifetime_seconds == 300
    assert register(e, 2, T0, lifetime=10, hoa=HOA2).lifetime_seconds == 40  # ≤ requested


def test_prefix_valid_lifetime_hook_caps_lifetime() -> None:
    e = Engine(ha_config(), T0, prefix_valid_lifetime=lambda hoa, now: 61.0)
    assert register(e, 1, T0).lifetime_seconds == 60


def test_binding_refresh_advice_option() -> None:
    e = engine(binding_refresh_advice=100)
    ba = register(e, 1, T0, lifetime=1000)
    assert ba.refresh_advice is not None and ba.refresh_advice.refresh_interval_seconds == 100
    e2 = engine()
    assert register(e2, 1, T0).refresh_advice is None


def test_mobile_router_needs_configuration_140_and_own_prefix_142() -> None:
    flags = HA_FLAGS | int(BUFlag.R)
    mnp = (MobileNetworkPrefix(48, IPv6Address("2001:db8:f::")),)
    e = engine()
    assert only_ba(e.handle(home_bu(1, flags=flags, options=mnp), T0)).status == 140
    e = engine(
        accept_mobile_routers=True,
        mobile_nodes=[{"home_address": str(HOA), "mobile_network_prefixes": ["2001:db8:e::/48"]}],
    )
    assert only_ba(e.handle(home_bu(1, flags=flags, options=mnp), T0)).status == 142
    ok = (MobileNetworkPrefix(48, IPv6Address("2001:db8:e::")),)
    ba = register(e, 1, T0, flags=flags, options=ok)
    assert ba.status == 0 and ba.mobile_router
    assert [str(p) for p in e.cache.get(HOA).mobile_network_prefixes] == ["2001:db8:e::/48"]


# ----------------------------------------------------------------------- timers, config, restore


def test_binding_expires_by_timer() -> None:
    e = engine()
    register(e, 1, T0, lifetime=10)  # 40 s
    assert e.next_timer() == T0 + 40
    assert e.handle_timer(T0 + 39.9) == []
    out = e.handle_timer(T0 + 40)
    assert out == [BindingChanged(HOA, None, "expired"), ForgetBinding(HOA)]
    assert e.next_timer() is None


def test_config_generation_removes_only_disallowed_bindings() -> None:
    e = engine()
    register(e, 1, T0)
    register(e, 1, T0, hoa=HOA2)
    cfg = ha_config(mobile_nodes=[{"home_address": str(HOA2)}], max_binding_lifetime=40)
    out = e.load_config(cfg, T0 + 1)
    assert out == [BindingChanged(HOA, None, "config"), ForgetBinding(HOA)]
    assert e.cache.get(HOA2).lifetime == 400  # lowered maximum waits for the next refresh
    assert only_ba(e.handle(home_bu(2, hoa=HOA2), T0 + 2)).lifetime_seconds == 40


def test_restore_drops_expired_and_keeps_remaining_lifetime() -> None:
    e = engine()
    register(e, 1, T0, lifetime=25)  # 100 s
    register(e, 1, T0, hoa=HOA2, lifetime=5)  # 20 s
    saved = [b.to_dict() for b in e.cache]
    from mip6ctl.engine import Binding

    fresh = engine()
    out = fresh.restore([Binding.from_dict(d) for d in saved], T0 + 30)
    assert BindingChanged(HOA, e.cache.get(HOA), "restored") in out
    assert ForgetBinding(HOA2) in out
    assert fresh.cache.get(HOA).expires_at == T0 + 100
    assert fresh.next_timer() == T0 + 100
    # the restored entry keeps its sequence window
    assert only_ba(fresh.handle(home_bu(1), T0 + 31)).status == 135


# --------------------------------------------------------------------------- errors


def test_binding_error_1_for_home_address_option_without_binding() -> None:
    e = engine()
    out = e.handle(HomeAddressOptionReceived(COA, HA, HOA), T0)
    [send] = sends(out)
    assert isinstance(send.message, BindingError)
    assert (send.message.status, send.message.home_address, send.dst) == (1, HOA, COA)
    register(e, 1, T0)
    assert e.handle(HomeAddressOptionReceived(COA, HA, HOA), T0) == []
    # §9.3.1: a Home Address option in front of a Mobility Header is processed normally
    # (no binding check, no BE 1); a BRR at a home agent is then simply not for it
    out = e.handle(rx(BindingRefreshRequest(), COA2, HA, hao=HOA), T0 + 2)
    assert sends(out) == []


def test_binding_error_2_for_unknown_mh_type_rate_limited_and_unicast_only() -> None:
    e = Engine(ha_config(), T0, binding_error_rate=1.0, binding_error_burst=2)
    raw = bytes([59, 1, 42, 0, 0, 0]) + bytes(10)
    try:
        decode_mh(raw)
    except UnknownMHType as exc:
        err = exc
    ev = Malformed(err, raw, COA, HA, HOA)
    first = sends(e.handle(ev, T0))
    assert first[0].message == BindingError(2, HOA)
    assert (first[0].src, first[0].dst) == (HA, COA)
    assert sends(e.handle(ev, T0))  # burst of 2
    assert e.handle(ev, T0) == []  # limited
    assert sends(e.handle(ev, T0 + 1.0))  # one token per second
    assert e.handle(Malformed(err, raw, IPv6Address("ff02::1"), HA), T0 + 10) == []


def test_malformed_param_problem_carries_pointer_and_discard_is_silent() -> None:
    e = engine()
    raw = bytes([17, 1, 5, 0, 0, 0]) + bytes(10)
    with pytest.raises(BadPayloadProto) as exc:
        decode_mh(raw, base=40)
    pkt = bytes(40) + raw
    [pp] = e.handle(Malformed(exc.value, pkt, COA, HA), T0)
    assert pp == SendParameterProblem(0, 40, pkt, HA, COA)
    with pytest.raises(HeaderLenTooShort) as exc2:
        decode_mh(bytes([59, 0, 3, 0, 0, 0, 0, 0]), base=48)
    [pp2] = e.handle(Malformed(exc2.value, b"x", COA, HA), T0)
    assert isinstance(pp2, SendParameterProblem) and pp2.pointer == 49
    assert e.handle(Malformed(BadChecksum("c", mh_offset=4), b"x", COA, HA), T0) == []


def test_literal_octets_first_registration() -> None:
    """A BU written out by hand: seq 1, A|H, lifetime 100, Alternate CoA option."""
    raw = bytes.fromhex(
        "3b03050000000001c0000064"  # Payload Proto 59, HL 3, type 5; seq 1, A|H, lifetime 100
        "0000"  # Pad1 Pad1 → Alternate CoA at 8n+6
        "0310" + COA.packed.hex()  # Alternate Care-of Address
    )
    e = engine()
    out = e.handle(rx(raw, COA, HA, hao=HOA), T0)
    assert out[0].binding.care_of_address == COA
    assert only_ba(e.reconciled(HOA, True, T0)).lifetime == 100


def _ike_engine(key_mobility: frozenset[str]) -> Engine:
    cfg = Mip6Config.model_validate(
        {
            "node": {"role": "ha"},
            "ha": {
                "interfaces": ["home0"],
                "home_prefixes": ["2001:db8:1::/64"],
                "address": str(HA),
                "duplicate_address_detection": False,
                "mobile_nodes": [{"home_address": str(HOA), "ipsec": "fleet"}],
            },
            "ipsec": {"fleet": {"protect": ["binding-update"], "key_management": "ike"}},
        }
    )
    return Engine(cfg, T0, kcn=bytes(20), key_mobility_templates=key_mobility)


@pytest.mark.parametrize(
    ("bu_k", "survives", "ba_k"),
    [(True, True, True), (True, False, False), (False, True, False)],
)
def test_k_flag_only_when_the_ike_sa_follows_the_move(
    bu_k: bool, survives: bool, ba_k: bool
) -> None:
    """RFC 6275 §10.3.1 / RFC 4877 §5.4: K in the BA iff the BU had it and our IKE SA
    survives movement (IKE keying and XFRM MIGRATE: `key_mobility_templates`)."""
    e = _ike_engine(frozenset({"fleet"}) if survives else frozenset())
    flags = HA_FLAGS | (int(BUFlag.K) if bu_k else 0)
    ev = dataclasses.replace(home_bu(1, flags=flags), ipsec_protected=True)
    e.handle(ev, T0)
    ba = only_ba(e.reconciled(HOA, True, T0 + 0.1))
    assert ba.status == 0 and ba.key_management_mobility is ba_k


def test_a_protected_bu_passes_the_ipsec_step() -> None:
    e = _ike_engine(frozenset())
    assert e.handle(home_bu(1), T0) == []  # the node has a template: unprotected = discard
    ev = dataclasses.replace(home_bu(1), ipsec_protected=True)
    assert e.handle(ev, T0) != []
