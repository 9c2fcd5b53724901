"""RFC 6275 conformance, mobile node role (§6.1.7, §11.3, §11.5.5, §11.6–§11.8).

One test per row of docs/conformance.md; each docstring quotes the RFC sentence
it checks (with its section). Home registration tests drive a mobile node
engine alone; return routability runs the mobile node, home agent and
correspondent engines over the in-memory network of test_route_optimisation
(fake clock, every message through a wire round trip).
"""

from __future__ import annotations

from functools import partial
from ipaddress import IPv6Address
from itertools import pairwise
from typing import Any

import pytest

from mip6ctl.engine import AtHome, CareOfAddressChanged, Engine, Received, Send
from mip6ctl.engine.events import Action, ParameterProblemReceived
from mip6ctl.engine.route_optimisation import FALLBACK_HOLD
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData, BindingRefreshAdvice, NonceIndices

from .helpers import CN, COA, COA2, HA, HOA, mn_config, rx, sends
from .test_route_optimisation import CN2, Net, away, cn_binding, make_net

T0 = 100.0


def bu_of(actions: list[Action]) -> tuple[Send, BindingUpdate]:
    [send] = sends(actions)
    assert isinstance(send.message, BindingUpdate)
    return send, send.message


def ba(seq: int, status: int = 0, lifetime: int = 100, options: tuple[Any, ...] = ()) -> Received:
    """A Binding Acknowledgement from the home agent to the care-of address."""
    return rx(BindingAcknowledgement(status, seq, lifetime, 0, options), HA, COA, rh=HOA)


def registered_mn(**mn: Any) -> tuple[Engine, BindingUpdate]:
    e = Engine(mn_config(**mn), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    e.handle(ba(bu.sequence), T0 + 0.1)
    assert e.mn is not None and e.mn.state == "registered"
    return e, bu


def cn_bus(net: Net, since: int = 0) -> list[Send]:
    return [
        s
        for w, s in net.log[since:]
        if w == "mn" and s.dst == CN and isinstance(s.message, BindingUpdate)
    ]


def intercept_cn_bas(net: Net) -> list[Received]:
    """Keep the correspondent's BAs away from the mobile node; returns what was held."""
    held: list[Received] = []
    real = net.mn.handle

    def handle(ev: Any, now: float) -> list[Action]:
        if (
            isinstance(ev, Received)
            and ev.src == CN
            and isinstance(ev.message, BindingAcknowledgement)
        ):
            held.append(ev)
            return []
        return real(ev, now)

    net.mn.handle = handle  # type: ignore[method-assign]
    return held


# --------------------------------------------------------------------------- §6.1.7


def test_6_1_7_lifetime_of_a_rejection_is_ignored() -> None:
    """§6.1.7: "The value of this field is undefined if the Status field indicates that
    the Binding Update was rejected." (the mobile node ignores a refused BA's Lifetime)"""
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    e.handle(ba(bu.sequence, status=129, lifetime=100), T0 + 0.1)
    assert e.mn is not None and e.mn.expires_at is None and e.mn.registered_lifetime == 0
    assert e.next_timer() is None  # no refresh scheduled from it


# --------------------------------------------------------------------------- §11.3


def test_11_3_1_route_optimised_only_towards_correspondents_holding_the_binding() -> None:
    """§11.3.1: route optimisation (care-of address as source, Home Address option) is
    used only with a correspondent that has a binding for the current care-of address;
    all other traffic is reverse tunnelled through the home agent (paraphrase of "the
    mobile node ... MUST ... use reverse tunneling ... unless it has a binding")."""
    net = make_net()
    net.drop = {HomeTestInit}  # return routability cannot finish
    away(net)
    assert net.mn.mn is not None and net.mn.mn.state == "registered"
    assert net.kernel == []  # nothing route-optimised: the tunnel carries everything
    net.drop = set()
    net.advance(1.5)  # HoTI retransmitted, answered: BU to the correspondent
    assert net.kernel == [((CN, COA),)]
    net.now = 20.0
    net.drop = {CareofTestInit}
    away(net, COA2)  # the correspondent's binding names a care-of address we left
    assert net.kernel[-1] == ()


def test_11_3_5_no_binding_update_list_entry_from_an_icmp_error() -> None:
    """§11.3.5: "New Binding Update List entries MUST NOT be created as a result of
    receiving ICMP error messages." """
    net = make_net()
    away(net)
    ro = net.mn.ro
    assert ro is not None
    invoking = bytes((0x60, 0, 0, 0, 0, 8, 135, 64)) + COA.packed + CN2.packed + bytes(8)
    out = net.mn.handle(ParameterProblemReceived(CN2, 1, 6, invoking), net.now)
    assert out == [] and set(ro.entries) == {CN}


def test_11_3_5_mobility_header_unknown_stops_then_retries_after_a_while() -> None:
    """§11.3.5: "If the mobile node receives such an ICMP error message in response to a
    return routability procedure or Binding Update, it SHOULD record in its Binding Update
    List that future Binding Updates SHOULD NOT be sent to this destination. Such Binding
    Update List entries SHOULD be removed after a period of time in order to allow for
    retrying route optimization." """
    net = make_net()
    net.drop = {HomeTestInit, CareofTestInit}
    away(net)
    invoking = bytes((0x60, 0, 0, 0, 0, 8, 135, 64)) + COA.packed + CN.packed + bytes(8)
    net.run(net.mn.handle(ParameterProblemReceived(CN, 1, 6, invoking), 0.5), "mn")
    n = len(net.sent("mn", CareofTestInit))
    net.advance(FALLBACK_HOLD - 1)
    assert len(net.sent("mn", CareofTestInit)) == n and not cn_bus(net)
    net.drop = set()
    net.advance(FALLBACK_HOLD + 2)
    assert len(net.sent("mn", CareofTestInit)) > n  # retried
    assert cn_binding(net) is not None


def test_11_3_5_parameter_problem_for_the_home_address_option_is_discarded() -> None:
    """§11.3.5: "If a mobile node receives an ICMP Parameter Problem, Code 2, message from
    some node indicating that it does not support the Home Address option, the mobile
    node SHOULD log the error and then discard the ICMP message." """
    net = make_net()
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    assert entry.state == "registered"
    # IPv6 header, Destination Options (PadN 4, then the HAO at offset 46), payload
    dstopts = bytes((135, 2, 1, 2, 0, 0, 0xC9, 16)) + HOA.packed
    invoking = bytes((0x60, 0, 0, 0, 0, 32, 60, 64)) + COA.packed + CN.packed + dstopts
    assert net.mn.handle(ParameterProblemReceived(CN, 2, 46, invoking), net.now) == []
    assert entry.state == "registered" and net.kernel[-1] == ((CN, COA),)


# --------------------------------------------------------------------------- §11.5.5


def test_11_5_5_deregistration_from_home() -> None:
    """§11.5.5: "In this Binding Update, the mobile node MUST set the Acknowledge (A) and
    Home Registration (H) bits, set the Lifetime field to zero, and set the care-of
    address for the binding to the mobile node's own home address. The mobile node MUST
    use its home address as the source address in the Binding Update." """
    e, first = registered_mn()
    send, dereg = bu_of(e.handle(AtHome("eth0"), T0 + 10))
    assert (send.src, send.dst, send.home_address_option) == (HOA, HA, None)
    assert dereg.ack and dereg.home_registration and dereg.lifetime == 0
    assert dereg.alternate_careof_address in (None, HOA)  # care-of = source = home
    assert dereg.sequence == (first.sequence + 1) & 0xFFFF


def test_11_5_5_deregistration_is_retransmitted_until_acknowledged() -> None:
    """§11.8: "If the mobile node fails to receive a valid matching response within the
    selected initial retransmission interval, the mobile node SHOULD retransmit the
    message until a response is received." (here: the de-registration of §11.5.5)"""
    e, _ = registered_mn()
    _, d1 = bu_of(e.handle(AtHome("eth0"), T0 + 10))
    assert e.next_timer() == pytest.approx(T0 + 11)
    _, d2 = bu_of(e.handle_timer(T0 + 11))
    assert d2.lifetime == 0 and d2.sequence == (d1.sequence + 1) & 0xFFFF
    e.handle(rx(BindingAcknowledgement(0, d2.sequence, 0), HA, HOA), T0 + 11.5)
    assert e.mn is not None and e.mn.state == "home" and e.next_timer() is None


def test_11_5_5_correspondents_are_deregistered_with_the_home_token_only() -> None:
    """§11.6.1: "If the mobile node intends to send a Binding Update with the Lifetime set
    to zero and the care-of address equal to its home address -- such as when returning
    home -- sending a Home Test Init message is sufficient. In this case, generation of
    the binding management key depends exclusively on the home keygen token (Section
    5.2.5)." """
    net = make_net()
    away(net)
    assert cn_binding(net) is not None
    net.advance(250.0)  # the tokens are too old to use now
    idx = len(net.log)
    net.mn_event(AtHome("eth0"))
    hotis = net.sent("mn", HomeTestInit, idx)
    assert len(hotis) == 1 and net.sent("mn", CareofTestInit, idx) == []
    [dereg] = cn_bus(net, idx)
    assert (dereg.src, dereg.home_address_option) == (HOA, None)
    assert isinstance(dereg.message, BindingUpdate) and dereg.message.lifetime == 0
    assert cn_binding(net) is None  # the correspondent verified it with Kbm(home token)


# --------------------------------------------------------------------------- §11.6


def test_11_6_1_home_test_init_from_the_home_address_care_of_test_init_from_the_coa() -> None:
    """§11.6.1: "A Home Test Init message MUST be created as described in Section 6.1.3."
    (§6.1.3: sent from the home address through the home agent; §6.1.4: the Care-of Test
    Init from the care-of address directly; neither carries a Home Address option, §6.1:
    "Mobility Header messages also MUST NOT be used with a Home Address destination
    option, except as described in Sections 11.7.1 and 11.7.2 for Binding Update.")"""
    net = make_net()
    away(net)
    [hoti] = net.sent("mn", HomeTestInit)
    [coti] = net.sent("mn", CareofTestInit)
    assert (hoti.src, hoti.dst, hoti.home_address_option, hoti.routing_header_address) == (
        HOA,
        CN,
        None,
        None,
    )
    assert (coti.src, coti.dst, coti.home_address_option) == (COA, CN, None)


def test_11_6_1_recent_tokens_are_reused() -> None:
    """§11.6.1: "However, if the mobile node has recently received (see Section 5.2.7) one
    or both home or care-of keygen tokens, and associated nonce indices for the desired
    addresses, it MAY reuse them." """
    net = make_net()
    away(net)
    net.now = 20.0
    idx = len(net.log)
    away(net, COA2)
    assert net.sent("mn", HomeTestInit, idx) == []  # the home token still serves
    [coti] = net.sent("mn", CareofTestInit, idx)  # the care-of token is per address
    assert coti.src == COA2
    assert cn_binding(net).care_of_address == COA2


def _testing_net() -> tuple[Net, HomeTest, CareofTest]:
    """Return routability under way, the correspondent's HoT and CoT held back."""
    net = make_net()
    net.drop = {HomeTest, CareofTest}
    away(net)
    [hot] = [s.message for s in net.sent("cn", HomeTest)]
    [cot] = [s.message for s in net.sent("cn", CareofTest)]
    assert isinstance(hot, HomeTest) and isinstance(cot, CareofTest)
    net.drop = set()
    return net, hot, cot


def test_11_6_2_home_and_care_of_tests_must_match_or_are_ignored() -> None:
    """§11.6.2: "The Source Address of the packet belongs to a correspondent node for which
    the mobile node has a Binding Update List entry with a state indicating that return
    routability procedure is in progress." ... "The Destination Address of the packet has
    the home address of the mobile node" ... "The Home Init Cookie field in the message
    matches the value stored in the Binding Update List." ... "Any Home Test message not
    satisfying all of these tests MUST be silently ignored." (and likewise for the
    Care-of Test, whose destination must be the current care-of address)"""
    net, hot, cot = _testing_net()
    wrong_cookie = HomeTest(hot.home_nonce_index, b"\xee" * 8, hot.home_keygen_token)
    bad = [
        rx(wrong_cookie, CN, HOA),
        rx(hot, CN, COA),  # HoT to the care-of address
        rx(hot, CN2, HOA),  # from a node without such an entry
        rx(CareofTest(cot.careof_nonce_index, b"\xee" * 8, cot.careof_keygen_token), CN, COA),
        rx(cot, CN, HOA),  # CoT to the home address
    ]
    for ev in bad:
        net.run(net.mn.handle(ev, net.now), "mn")
    net.run(net.mn.handle(rx(cot, CN, COA), net.now), "mn")  # CoT alone: no BU yet
    assert cn_bus(net) == [] and net.mn.ro.entries[CN].state == "testing"  # type: ignore[union-attr]
    net.run(net.mn.handle(rx(hot, CN, HOA), net.now), "mn")
    assert len(cn_bus(net)) == 1 and cn_binding(net) is not None


def test_11_6_2_tokens_and_nonce_indices_are_recorded_and_used() -> None:
    """§11.6.2: "Otherwise, the mobile node MUST record the Home Nonce Index and home keygen
    token in the Binding Update List." (the BU carries the indices, and its authenticator
    made from the tokens verifies at the correspondent)"""
    net, hot, cot = _testing_net()
    net.run(net.mn.handle(rx(hot, CN, HOA), net.now), "mn")
    net.run(net.mn.handle(rx(cot, CN, COA), net.now), "mn")
    [bu] = cn_bus(net)
    assert isinstance(bu.message, BindingUpdate)
    assert bu.message.nonce_indices == NonceIndices(hot.home_nonce_index, cot.careof_nonce_index)
    assert cn_binding(net) is not None and cn_binding(net).care_of_address == COA


# --------------------------------------------------------------------------- §11.7.1


def test_11_7_1_home_registration_flags_and_addresses() -> None:
    """§11.7.1: "The Acknowledge (A) bit MUST be set to request a Binding Acknowledgement
    be returned. The Home Registration (H) bit MUST be set." ... "The packet MUST contain
    a Home Address destination option, giving the mobile node's home address for the
    binding." ... "The care-of address for the binding MUST be used as the Source Address
    in the packet's IPv6 header, unless an Alternate Care-of Address mobility option is
    included in the Binding Update. This option MUST be included in all home
    registrations, as the ESP protocol will not be able to protect care-of addresses in
    the IPv6 header." """
    e = Engine(mn_config(), T0)
    send, bu = bu_of(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    assert (send.src, send.dst, send.home_address_option) == (COA, HA, HOA)
    assert bu.ack and bu.home_registration and bu.nonce_indices is None
    assert bu.alternate_careof_address == COA


def test_11_7_1_sequence_numbers_increase_for_every_binding_update() -> None:
    """§11.7.1 / §11.8: every Binding Update to the home agent -- a retransmission, a
    refresh, a move -- carries a Sequence Number greater (modulo 2**16) than the previous
    one ("the mobile node MUST use a Sequence Number greater than ..." paraphrased)."""
    e = Engine(mn_config(), T0)
    _, b1 = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    _, b2 = bu_of(e.handle_timer(T0 + 1.5))  # retransmission
    e.handle(ba(b2.sequence), T0 + 2)
    _, b3 = bu_of(e.handle(CareOfAddressChanged(COA2), T0 + 3))  # move
    seqs = [b1.sequence, b2.sequence, b3.sequence]
    assert all(0 < (b - a) & 0xFFFF < 0x8000 for a, b in pairwise(seqs))


@pytest.mark.parametrize("k", [True, False])
def test_11_7_1_key_management_mobility_bit(k: bool) -> None:
    """§11.7.1: "The Key Management Mobility Capability (K) bit is set or cleared, as
    discussed in Section 11.7.1" -- set only when the IKE SA can survive movement
    (paraphrase of §6.1.7 / §11.7.1)."""
    e = Engine(mn_config(key_management_mobility=k), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    assert bool(bu.flags & BUFlag.K) is k


# --------------------------------------------------------------------------- §11.7.2


def test_11_7_2_correspondent_binding_update_contents() -> None:
    """§11.7.2: "The Home Registration (H) bit MUST NOT be set." ... "The packet MUST
    contain a Home Address destination option, giving the mobile node's home address for
    the binding." ... "The Binding Update MUST include a Nonce Indices option and a
    Binding Authorization Data option" (the latter last, §6.2.7)."""
    net = make_net()
    away(net)
    [send] = cn_bus(net)
    bu = send.message
    assert isinstance(bu, BindingUpdate)
    assert (send.src, send.home_address_option) == (COA, HOA)
    assert not bu.home_registration and bu.lifetime > 0
    assert bu.nonce_indices is not None
    assert isinstance(bu.options[-1], BindingAuthorizationData)


def test_11_7_2_correspondents_are_told_only_after_the_home_agent() -> None:
    """§11.7.2: the correspondent registration for a care-of address follows the home
    registration of that care-of address (the Home Test Init goes through the home agent's
    tunnel, so "the mobile node ... first register[s] its care-of address with its home
    agent" -- paraphrase)."""
    net = make_net()
    net.drop = {BindingAcknowledgement}
    away(net)
    assert net.sent("mn", HomeTestInit) == [] and cn_bus(net) == []
    net.drop = set()
    net.advance(1.6)
    assert net.trace[-1] == "cn-bu" and "ha-bu" in net.trace[: net.trace.index("cn-bu")]


def test_11_7_2_lifetime_within_home_registration_and_max_rr_binding_lifetime() -> None:
    """§11.7.2 / §5.2.6: the Lifetime of a correspondent registration is at most
    MAX_RR_BINDING_LIFETIME and SHOULD NOT exceed what remains of the home registration
    (paraphrase)."""
    net = make_net(max_ha_binding_lifetime=100)
    away(net)
    [send] = cn_bus(net)
    assert isinstance(send.message, BindingUpdate)
    assert 0 < send.message.lifetime_seconds <= 100
    net2 = make_net()
    away(net2)
    [send] = cn_bus(net2)
    assert isinstance(send.message, BindingUpdate)
    assert send.message.lifetime_seconds <= 420


# --------------------------------------------------------------------------- §11.7.3


def test_11_7_3_home_agent_ba_with_another_sequence_number_is_ignored() -> None:
    """§11.7.3: "The Sequence Number field matches the Sequence Number sent by the mobile
    node to this destination address in an outstanding Binding Update." ... "Any Binding
    Acknowledgement not satisfying all of these tests MUST be silently ignored." """
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    assert e.handle(ba((bu.sequence - 1) & 0xFFFF), T0 + 0.1) == []
    assert e.mn is not None and e.mn.state == "registering"
    assert e.next_timer() == pytest.approx(T0 + 1.5)  # still retransmitting


def test_11_7_3_correspondent_ba_without_valid_authorization_is_ignored() -> None:
    """§11.7.3: "If the Binding Update was sent to the correspondent node, the Binding
    Authorization Data mobility option MUST be present and have a valid value." ... "Any
    Binding Acknowledgement not satisfying all of these tests MUST be silently ignored." """
    net = make_net(cn_binding_ack=True)
    held = intercept_cn_bas(net)
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    [genuine] = held
    msg = genuine.message
    assert isinstance(msg, BindingAcknowledgement) and entry.state == "registering"
    stripped = BindingAcknowledgement(msg.status, msg.sequence, msg.lifetime)
    forged = BindingAcknowledgement(
        msg.status, msg.sequence, msg.lifetime, 0, (BindingAuthorizationData(b"\x00" * 12),)
    )
    mn = partial(Engine.handle, net.mn)  # the engine itself, past the interception
    for fake in (stripped, forged):
        raw = encode_mh(fake)
        mn(Received(decode_mh(raw), CN, COA, None, HOA, False, "eth0", raw), net.now)
        assert entry.state == "registering"
    mn(genuine, net.now)
    assert entry.state == "registered" and entry.last_status == 0


def test_11_7_3_accepted_ba_stops_retransmission_and_sets_the_granted_lifetime() -> None:
    """§11.7.3: "If the Status field indicates that the Binding Update was accepted, the
    mobile node MUST update the corresponding entry in its Binding Update List to
    indicate that the Binding Update has been acknowledged; the mobile node MUST then stop
    retransmitting the Binding Update. In addition, if the value specified in the
    Lifetime field in the Binding Acknowledgement is less than the Lifetime value sent in
    the Binding Update being acknowledged, the mobile node MUST subtract the difference
    between these two Lifetime values from the remaining lifetime for the binding" """
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    assert bu.lifetime > 25
    e.handle(ba(bu.sequence, lifetime=25), T0 + 0.5)  # 100 s granted
    assert e.mn is not None and e.mn.expires_at == pytest.approx(T0 + 100.5)
    nxt = e.next_timer()
    assert nxt is not None and nxt > T0 + 1.5  # no retransmission
    assert nxt < T0 + 100.5  # refreshed before the granted lifetime runs out
    assert e.handle_timer(T0 + 1.5) == []


def test_11_7_3_binding_refresh_advice_sets_the_refresh_interval() -> None:
    """§6.2.4 / §11.7.3: "the mobile node SHOULD attempt to refresh its home registration
    at the indicated shorter interval" (Binding Refresh Advice in the home agent's BA)."""
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    e.handle(ba(bu.sequence, options=(BindingRefreshAdvice(10),)), T0 + 1)
    assert e.next_timer() == pytest.approx(T0 + 41)
    _, refresh = bu_of(e.handle_timer(T0 + 41))
    assert refresh.sequence == (bu.sequence + 1) & 0xFFFF


def test_11_7_3_expired_care_of_nonce_137_reruns_only_the_care_of_test() -> None:
    """§11.7.3: if the correspondent answers 136, 137 or 138 (expired nonce indices) the
    mobile node gets new keygen tokens for the expired ones -- Home Test, Care-of Test or
    both -- and sends the Binding Update again (paraphrase; §9.5.1 defines the codes)."""
    net = make_net(cn_binding_ack=True)
    held = intercept_cn_bas(net)
    away(net)
    [genuine] = held
    assert isinstance(genuine.message, BindingAcknowledgement)
    seq = genuine.message.sequence
    idx = len(net.log)
    mn = partial(Engine.handle, net.mn)
    net.run(mn(rx(BindingAcknowledgement(137, seq), CN, COA, rh=HOA), net.now), "mn")
    assert net.sent("mn", HomeTestInit, idx) == []
    assert len(net.sent("mn", CareofTestInit, idx)) == 1
    assert len(cn_bus(net, idx)) == 1  # after the new Care-of Test: the BU again


# --------------------------------------------------------------------------- §11.7.4


def test_11_7_4_binding_refresh_request_from_the_home_agent_refreshes() -> None:
    """§11.7.4: a Binding Refresh Request from a node the Binding Update List has an entry
    for is answered with a new Binding Update ("the mobile node should be careful to not
    respond to Binding Refresh Requests for addresses not in the Binding Update List to
    avoid being subjected to a denial of service attack")."""
    e, bu = registered_mn()
    stranger = IPv6Address("2001:db8:77::1")
    assert e.handle(rx(BindingRefreshRequest(), stranger, COA, rh=HOA), T0 + 5) == []
    send, refresh = bu_of(e.handle(rx(BindingRefreshRequest(), HA, COA, rh=HOA), T0 + 5))
    assert send.dst == HA and refresh.home_registration
    assert refresh.sequence == (bu.sequence + 1) & 0xFFFF


# --------------------------------------------------------------------------- §11.8


def test_11_8_initial_timeouts_first_registration_and_later() -> None:
    """§11.8: "When the mobile node sends a Binding Update, it MUST use the value
    InitialBindackTimeoutFirstReg seconds as an initial retransmission timer for the
    first registration" ... otherwise INITIAL_BINDACK_TIMEOUT (paraphrase; §13: 1.5 s
    and 1 s)."""
    e = Engine(mn_config(), T0)
    _, bu = bu_of(e.handle(CareOfAddressChanged(COA), T0))
    assert e.next_timer() == pytest.approx(T0 + 1.5)
    e.handle(ba(bu.sequence), T0 + 1)
    bu_of(e.handle(CareOfAddressChanged(COA2), T0 + 2))  # not the first any more
    assert e.next_timer() == pytest.approx(T0 + 3)


def test_11_8_exponential_back_off_up_to_max_bindack_timeout() -> None:
    """§11.8: "The retransmissions by the mobile node MUST use an exponential back-off
    process in which the timeout period is doubled upon each retransmission, until either
    the node receives a response or the timeout period reaches the value
    MAX_BINDACK_TIMEOUT. The mobile node MAY continue to send these messages at this
    slower rate indefinitely." """
    e = Engine(mn_config(max_ha_consecutive_resends=0), T0)
    e.handle(CareOfAddressChanged(COA), T0)
    now, gaps, seqs = T0, [], []
    for _ in range(8):
        nxt = e.next_timer()
        assert nxt is not None
        gaps.append(round(nxt - now, 6))
        now = nxt
        seqs.append(bu_of(e.handle_timer(now))[1].sequence)
    assert gaps == [1.5, 3.0, 6.0, 12.0, 24.0, 32.0, 32.0, 32.0]
    assert len(set(seqs)) == len(seqs)  # a new sequence number each time


def test_11_8_return_routability_retransmissions_back_off() -> None:
    """§11.8: the Home Test Init / Care-of Test Init messages are retransmitted with the
    same exponential back-off when no Home Test / Care-of Test arrives (paraphrase: "the
    mobile node SHOULD retransmit the message until a response is received")."""
    net = make_net()
    net.drop = {CareofTestInit}
    stamps: list[float] = []
    real_run = net.run

    def spy(actions: list[Any], origin: str) -> None:
        stamps.extend(
            net.now
            for a in actions
            if origin == "mn" and isinstance(a, Send) and isinstance(a.message, CareofTestInit)
        )
        real_run(actions, origin)

    net.run = spy  # type: ignore[method-assign]
    away(net)
    net.advance(10.0)
    assert stamps[:4] == pytest.approx([0.0, 1.0, 3.0, 7.0])
