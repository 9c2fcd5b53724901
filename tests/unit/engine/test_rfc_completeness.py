"""RFC 6275 MUSTs that issue 15 found missing, one test per rule, each quoting the RFC.

Driven through the public engine API with a fake clock; the three-engine network
(HA, CN, MN) is the in-memory one of test_route_optimisation.py. See
docs/conformance.md for the whole table.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address
from typing import Any

from mip6ctl import rfc6275
from mip6ctl.config.model import Mip6Config
from mip6ctl.engine import Engine, Received, Send
from mip6ctl.engine.binding import compatible_link_local
from mip6ctl.engine.events import (
    AdvertiseHomeAddress,
    AtHome,
    CareOfAddressChanged,
    HomeAddressOptionReceived,
    Malformed,
    ParameterProblemReceived,
    StartDad,
    TrafficToCorrespondent,
)
from mip6ctl.engine.route_optimisation import (
    FALLBACK_HOLD,
    correspondent_policy,
    home_address_option_refused,
)
from mip6ctl.state.objects import ProxyNeighbour
from mip6ctl.state.render import Capabilities, HostFacts, render_binding
from mip6ctl.wire.errors import UnknownMHType
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    CareofTestInit,
    HomeTestInit,
    decode_mh,
    encode_mh,
)

from .helpers import (
    CN,
    COA,
    HA,
    HA_FLAGS,
    HOA,
    KCN,
    bas,
    cn_config,
    ha_config,
    home_bu,
    mn_config,
    only_ba,
)
from .test_route_optimisation import Counter, Net, away, make_net

MULTICAST = IPv6Address("ff02::1")
LINK_LOCAL = IPv6Address("fe80::1")
OTHER = IPv6Address("2001:db8:1::999")


def mn_engine(**mn: Any) -> Engine:
    return Engine(mn_config(**mn), 0.0, random_bytes=Counter())


def bus(actions: list[Any]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and isinstance(a.message, BindingUpdate)]


def ba_from_ha(seq: int, status: int = 0, rh2: IPv6Address | None = HOA) -> Received:
    return Received(BindingAcknowledgement(status, seq, 100), HA, COA, None, rh2)


# --------------------------------------------------------------------------- §6.4 RH2


def test_type2_routing_header_must_name_our_home_address() -> None:
    """§6.4: "... the mobile node MUST verify that the address contained within the
    routing header is the mobile node's home address" -- else the packet is dropped."""
    e = mn_engine()
    bu = bus(e.handle(CareOfAddressChanged(COA, "wlan0"), 0.0))[0]
    seq = bu.message.sequence
    assert e.handle(ba_from_ha(seq, rh2=OTHER), 0.1) == []
    assert e.mn is not None and e.mn.state == "registering"
    e.handle(ba_from_ha(seq, rh2=HOA), 0.2)
    assert e.mn.state == "registered"


def test_type2_routing_header_at_a_node_that_is_no_mobile_node_is_dropped() -> None:
    """§6.4: the type 2 routing header is "for a mobile node's home address"; a
    correspondent has none, so a message carrying one is not processed."""
    e = Engine(cn_config(), 0.0, kcn=KCN)
    hoti = Received(HomeTestInit(b"12345678"), HOA, CN, None, HOA)
    assert e.handle(hoti, 0.0) == []
    assert e.handle(Received(HomeTestInit(b"12345678"), HOA, CN), 0.0)  # without: a HoT


# --------------------------------------------------------------------------- §9.3.1 HAO


def test_home_address_option_with_a_non_unicast_address_is_dropped_silently() -> None:
    """§9.3.1: "If the Home Address option ... contains an address that is not a
    routable unicast address, the packet MUST be silently discarded" -- no Binding
    Error, on every path: payload, Mobility Header, malformed messages."""
    e = Engine(cn_config(), 0.0, kcn=KCN)
    for bad in (MULTICAST, LINK_LOCAL, IPv6Address("::1")):
        assert e.handle(HomeAddressOptionReceived(COA, CN, bad), 0.0) == []
        brr = Received(BindingRefreshRequest(), COA, CN, bad)
        assert e.handle(brr, 0.0) == []
        err = UnknownMHType("type 99", mh_type=99)
        assert e.handle(Malformed(err, b"\x00" * 48, COA, CN, bad), 0.0) == []
    be = e.handle(HomeAddressOptionReceived(COA, CN, HOA), 1.0)  # unicast: BE 1
    assert [type(a.message) for a in be] == [BindingError] and be[0].message.status == 1


# --------------------------------------------------------------------------- §5.2.8 replay


def _registered(net: Net) -> None:
    away(net)
    net.advance(5.0)
    assert net.cn.cache.get(HOA) is not None


def test_correspondent_refuses_a_replayed_bu_after_the_binding_was_deleted() -> None:
    """§5.2.8: "Correspondent nodes must retain bindings and the associated sequence
    number information at least as long as the nonces used in the authorization of the
    binding are still valid." A BU captured before a deletion gets 135, no binding."""
    net = make_net()
    _registered(net)
    bu = net.sent("mn", BindingUpdate)
    original = [s for s in bu if s.dst == CN][-1]
    net.mn_event(AtHome("wlan0"))
    net.advance(10.0)
    assert net.cn.cache.get(HOA) is None
    deletion = [s for s in net.sent("mn", BindingUpdate) if s.dst == CN][-1]
    assert deletion.message.lifetime == 0
    raw = encode_mh(original.message)
    replay = Received(
        decode_mh(raw), original.src, CN, original.home_address_option, None, False, "e", raw
    )
    out = net.cn.handle(replay, net.now)
    assert net.cn.cache.get(HOA) is None, "the replay re-created the binding"
    bas = [a.message for a in out if isinstance(a.message, BindingAcknowledgement)]
    assert [ba.status for ba in bas] == [135]
    assert bas[0].sequence == deletion.message.sequence


def test_tombstone_also_after_expiry_and_only_while_nonces_live() -> None:
    """§9.5.3/§5.2.8: the sequence number outlives an expired binding while its nonces
    are valid (MAX_NONCE_LIFETIME), and no longer."""
    net = make_net(cn_binding_ack=True, max_cn_binding_lifetime=8)
    _registered(net)
    b = net.cn.cache.get(HOA)
    assert b is not None
    cn = net.cn.cn
    net.mn.ro = None  # the MN goes quiet: the binding expires at the CN
    net.advance(b.expires_at + 0.5)
    assert net.cn.cache.get(HOA) is None
    assert cn.tombstone(HOA, net.now) == b.sequence
    assert cn.tombstone(HOA, net.now + rfc6275.MAX_NONCE_LIFETIME + 1) is None


# --------------------------------------------------------------------------- §11.8 rate


def test_mobile_node_sends_no_more_than_max_update_rate_bus_a_second() -> None:
    """§11.8: "... the mobile node MUST NOT send Binding Updates about the same binding
    to the same node more than MAX_UPDATE_RATE times a second" -- a home agent that
    answers every BU with 135 gets three a second, not a flood."""
    e = mn_engine()
    out = e.handle(CareOfAddressChanged(COA, "wlan0"), 0.0)
    times: list[float] = [0.0]
    now = 0.0
    for _ in range(40):
        seq = bus(out)[-1].message.sequence if bus(out) else e.mn.sequence  # type: ignore[union-attr]
        out = e.handle(ba_from_ha(seq, status=135), now)
        if not bus(out):
            due = e.next_timer()
            assert due is not None and due > now
            now = due
            out = e.handle_timer(now)
        if bus(out):
            times.append(now)
    for i in range(len(times) - rfc6275.MAX_UPDATE_RATE):
        assert times[i + rfc6275.MAX_UPDATE_RATE] - times[i] >= 1.0 - 1e-9, times
    assert e.mn is not None and e.mn.bus_held > 0
    assert times[-1] < 20.0  # held, never dropped: they keep going at the limit


def test_held_bu_goes_out_with_a_new_sequence_number() -> None:
    """§11.8/§11.7.1: a BU over the rate is sent later, not lost, with "a Sequence
    Number value greater than that used for the previous Binding Update"."""
    e = mn_engine()
    seqs = [bus(e.handle(CareOfAddressChanged(COA, "wlan0"), 0.0))[0].message.sequence]
    for i in range(1, 3):
        seqs += [b.message.sequence for b in bus(e.handle(ba_from_ha(seqs[-1], 135), i * 0.1))]
    assert bus(e.handle(ba_from_ha(seqs[-1], 135), 0.3)) == []
    due = e.next_timer()
    assert due is not None and abs(due - 1.0) < 1e-9
    late = bus(e.handle_timer(due))
    assert len(late) == 1 and late[0].message.sequence == (seqs[-1] + 1) & 0xFFFF


# --------------------------------------------------------------------------- §11.5.5 home


def _registered_mn() -> Engine:
    e = mn_engine()
    bu = bus(e.handle(CareOfAddressChanged(COA, "wlan0"), 0.0))[0]
    e.handle(ba_from_ha(bu.message.sequence), 0.1)
    return e


def test_home_address_is_advertised_only_after_the_deregistration_ba() -> None:
    """§11.5.5: "... the mobile node MUST NOT ... send unsolicited Neighbor
    Advertisements for its home address until ... it has received the Binding
    Acknowledgement" of the de-registration (the home agent defends it until then)."""
    e = _registered_mn()
    out = e.handle(AtHome("wlan0"), 5.0)
    assert not [a for a in out if isinstance(a, AdvertiseHomeAddress)]
    dereg = bus(out)[0]
    assert dereg.src == HOA and dereg.message.lifetime == 0
    ba = Received(BindingAcknowledgement(0, dereg.message.sequence, 0), HA, HOA)
    assert e.handle(ba, 5.1) == [AdvertiseHomeAddress(HOA)]


def test_home_address_advertised_at_once_without_a_binding_and_after_a_refusal() -> None:
    """§11.5.5: with no binding at the home agent nothing defends the home address;
    a refusal of the de-registration (133: not this MN's home agent) means the same."""
    e = mn_engine()
    assert e.handle(AtHome("wlan0"), 0.0) == [AdvertiseHomeAddress(HOA)]
    e = _registered_mn()
    dereg = bus(e.handle(AtHome("wlan0"), 5.0))[0]
    ba = Received(BindingAcknowledgement(133, dereg.message.sequence, 0), HA, HOA)
    assert e.handle(ba, 5.1) == [AdvertiseHomeAddress(HOA)]


# --------------------------------------------------------------------------- §11.3.6 BE


def test_binding_error_1_from_the_home_agent_makes_the_mobile_node_register_again() -> None:
    """§11.3.6: status 1 says the home agent has no binding for the home address in
    the packet; the mobile node "SHOULD" re-register (send a Binding Update)."""
    e = _registered_mn()
    be = Received(BindingError(1, HOA), HA, COA)
    sent = bus(e.handle(be, 10.0))
    assert len(sent) == 1 and sent[0].dst == HA
    assert e.mn is not None and e.mn.state == "registering"
    other = Received(BindingError(1, OTHER), HA, COA)
    assert bus(e.handle(other, 11.0)) == []


# --------------------------------------------------------------------------- §9.5.5 BRR


def test_correspondent_sends_a_brr_only_for_a_binding_in_use() -> None:
    """§9.5.5: "If the correspondent node is using the binding ... it MAY send a
    Binding Refresh Request" before it expires; with no traffic it sends none."""
    net = make_net(cn_binding_ack=True)
    _registered(net)
    b = net.cn.cache.get(HOA)
    assert b is not None
    net.mn.ro = None  # no refresh from the MN: only the CN's timers run
    cn = net.cn
    lead = max(2.0, b.lifetime * 0.1)
    assert cn.handle_timer(b.expires_at - lead - 1) == []
    cn.handle(HomeAddressOptionReceived(b.care_of_address, CN, HOA), net.now)  # traffic
    out = cn.handle_timer(b.expires_at - lead)
    brr = [a for a in out if isinstance(a, Send) and isinstance(a.message, BindingRefreshRequest)]
    assert len(brr) == 1 and brr[0].dst == b.care_of_address
    assert brr[0].routing_header_address == HOA
    assert cn.cn.brrs_sent == 1


def test_unused_binding_gets_no_brr() -> None:
    """§9.5.5: the BRR is for a binding "that is in active use"."""
    net = make_net(cn_binding_ack=True)
    _registered(net)
    b = net.cn.cache.get(HOA)
    assert b is not None
    assert [a for a in net.cn.handle_timer(b.expires_at - 1.0) if isinstance(a, Send)] == []


# --------------------------------------------------------------------------- on traffic


def _away_registered(net: Net) -> None:
    away(net)
    net.advance(3.0)
    assert net.mn.mn is not None and net.mn.mn.state == "registered"


def test_traffic_to_an_unlisted_correspondent_starts_return_routability() -> None:
    """§11.3.1 lets the mobile node decide when to optimise; mip6ctl does on traffic
    (the kernel's ACQUIRE) for every correspondent its list does not deny."""
    net = make_net(correspondents=[])
    _away_registered(net)
    assert net.sent("mn", HomeTestInit) == []
    mark = len(net.log)
    net.run(net.mn.handle(TrafficToCorrespondent(CN), net.now), "mn")
    kinds = {type(s.message) for w, s in net.log[mark:] if w == "mn"}
    assert {HomeTestInit, CareofTestInit} <= kinds
    net.advance(net.now + 3.0)
    e = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    assert e.state == "registered" and e.dynamic
    assert net.cn.cache.get(HOA) is not None


def test_never_and_the_home_agent_are_not_optimised_on_traffic() -> None:
    """A ``never`` entry (first match wins) and the home agent stay on the tunnel."""
    deny = [{"prefix": "2001:db8:0:1::/64", "route_optimization": "never"}]
    net = make_net(correspondents=deny)
    _away_registered(net)
    for peer in (CN, HA, MULTICAST):
        assert net.mn.handle(TrafficToCorrespondent(peer), net.now) == []
    cfg = mn_config(correspondents=deny).mn
    assert cfg is not None
    assert correspondent_policy(cfg, CN) == "never"
    assert correspondent_policy(cfg, IPv6Address("2001:db8:0:2::1")) == "on-traffic"


def test_unused_traffic_triggered_registration_runs_out_and_goes() -> None:
    """A traffic-triggered binding is refreshed only if used since it registered;
    otherwise it expires (the correspondent drops it too) and the entry is removed."""
    net = make_net(correspondents=[], max_cn_binding_lifetime=40)
    _away_registered(net)
    net.run(net.mn.handle(TrafficToCorrespondent(CN), net.now), "mn")
    net.advance(net.now + 3.0)
    ro = net.mn.ro
    assert ro is not None and ro.entries[CN].state == "registered"
    mark = len(net.log)
    net.advance(net.now + 45.0)
    assert [s for w, s in net.log[mark:] if w == "mn" and s.dst == CN] == []
    assert CN not in ro.entries
    assert net.kernel[-1] == ()


def test_used_traffic_triggered_registration_is_refreshed() -> None:
    """The same binding, used (kernel counters), is refreshed before it expires."""
    net = make_net(correspondents=[], max_cn_binding_lifetime=40)
    _away_registered(net)
    net.run(net.mn.handle(TrafficToCorrespondent(CN), net.now), "mn")
    net.advance(net.now + 3.0)
    t0 = net.now
    net.mn.correspondent_used(CN, t0 + 10)
    mark = len(net.log)
    net.advance(t0 + 35.0)
    assert [s for w, s in net.log[mark:] if w == "mn" and isinstance(s.message, BindingUpdate)]
    assert net.mn.ro is not None and net.mn.ro.entries[CN].state == "registered"


def _param_problem_for(peer: IPv6Address) -> ParameterProblemReceived:
    invoking = bytearray(48)
    invoking[6] = 135
    invoking[8:24] = COA.packed
    invoking[24:40] = peer.packed
    return ParameterProblemReceived(peer, 1, 6, bytes(invoking))


def test_correspondent_without_mobile_ipv6_is_not_probed_again_before_the_backoff() -> None:
    """§11.3.5: after an ICMP Parameter Problem for the Mobility Header the mobile node
    "SHOULD NOT attempt to use route optimization with that correspondent" for a while;
    traffic meanwhile starts nothing, and a second refusal doubles the wait."""
    net = make_net(correspondents=[])
    net.drop = {HomeTestInit, CareofTestInit}
    _away_registered(net)
    net.run(net.mn.handle(TrafficToCorrespondent(CN), net.now), "mn")
    net.run(net.mn.handle(_param_problem_for(CN), net.now), "mn")
    ro = net.mn.ro
    assert ro is not None and ro.entries[CN].state == "fallback"
    mark = len(net.log)
    for t in (10.0, 100.0, FALLBACK_HOLD - 5):
        net.advance(net.now + 0.0 if net.now >= t else t)
        net.run(net.mn.handle(TrafficToCorrespondent(CN), net.now), "mn")
    assert [s for w, s in net.log[mark:] if w == "mn" and s.dst == CN] == []
    start = net.now
    net.advance(start + 10.0)  # hold over: idle, then pruned (the count is remembered)
    net.run(net.mn.handle(TrafficToCorrespondent(CN), net.now), "mn")
    assert [s for w, s in net.log[mark:] if w == "mn" and s.dst == CN], "no retry after the hold"
    net.run(net.mn.handle(_param_problem_for(CN), net.now), "mn")
    e = ro.entries[CN]
    assert e.state == "fallback" and e.fallbacks == 2
    assert e.retry_at is not None and abs(e.retry_at - net.now - 2 * FALLBACK_HOLD) < 1e-6


def test_bus_to_a_correspondent_are_rate_limited_too() -> None:
    """§11.8: the limit holds per destination, for correspondents as for the home
    agent: a correspondent that sends a burst of Binding Refresh Requests gets at most
    three BUs a second, the rest held and sent when the window opens."""
    net = make_net()
    _registered(net)
    e = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    sent: list[float] = []
    now = net.now
    for k in range(12):
        now = net.now + k * 0.05
        brr = Received(BindingRefreshRequest(), CN, COA, None, HOA)
        sent += [now for _ in bus(net.mn.handle(brr, now))]
        while (due := e.next_timer()) is not None and due <= now:
            sent += [due for _ in bus(net.mn.handle_timer(due))]
    due = e.next_timer()
    assert due is not None
    sent += [due for _ in bus(net.mn.handle_timer(due))]
    assert len(sent) >= 4, sent
    for i in range(len(sent) - rfc6275.MAX_UPDATE_RATE):
        assert sent[i + rfc6275.MAX_UPDATE_RATE] - sent[i] >= 1.0 - 1e-9, sent
    assert e.bus_held > 0


def test_one_brr_per_lifetime_however_much_traffic_follows() -> None:
    """§9.5.5: the BRR may be retransmitted only "as long as the rate limitation is
    applied"; mip6ctl asks once per binding lifetime -- more traffic after the BRR
    (every packet with a Home Address option reports use) asks nothing more."""
    net = make_net(cn_binding_ack=True)
    _registered(net)
    b = net.cn.cache.get(HOA)
    assert b is not None
    net.mn.ro = None
    cn = net.cn
    lead = max(2.0, b.lifetime * 0.1)
    cn.handle(HomeAddressOptionReceived(b.care_of_address, CN, HOA), net.now)
    first = cn.handle_timer(b.expires_at - lead)
    again: list[Any] = []
    for k in range(5):
        t = b.expires_at - lead + 0.2 * (k + 1)
        cn.handle(HomeAddressOptionReceived(b.care_of_address, CN, HOA), t)
        again += cn.handle_timer(t)
    brr = [a for a in first + again if isinstance(a, Send)]
    assert len(brr) == 1 and cn.cn.brrs_sent == 1


def test_135_to_an_unacknowledged_bu_makes_the_mobile_node_send_it_again() -> None:
    """§11.7.3: on status 135 the mobile node "SHOULD" resend with a Sequence Number
    greater than the one in the BA -- also when the refused BU had A=0 (it had counted
    as the registration): else the node believes in a binding the correspondent has
    not got (a correspondent's tombstone after a deletion answers just so)."""
    net = make_net()  # cn_binding_ack false: A=0
    _registered(net)
    e = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    cn = net.cn.cn
    b = net.cn.cache.get(HOA)
    assert b is not None
    net.cn.cache.remove(HOA)  # the CN lost it and keeps a tombstone far ahead
    cn._bury(HOA, (b.sequence + 0x4000) & 0xFFFF, net.now)
    mark = len(net.log)
    net.mn.correspondent_used(CN, net.now)
    net.run(net.mn.handle(Received(BindingRefreshRequest(), CN, COA, None, HOA), net.now), "mn")
    net.advance(net.now + 3.0)
    statuses = [s.message.status for w, s in net.log[mark:] if w == "cn" and s.dst == COA]
    assert 135 in statuses, statuses
    assert net.cn.cache.get(HOA) is not None, "the mobile node did not send the BU again"
    assert e.state == "registered"


# --------------------------------------------------------------------------- §11.7.1 L bit


def _l_bit(link_local: IPv6Address | None) -> bool:
    e = mn_engine()
    bu = bus(e.handle(CareOfAddressChanged(COA, "wlan0", link_local), 0.0))[0]
    return bool(bu.message.flags & BUFlag.L)


def test_l_bit_set_when_the_link_local_address_shares_the_interface_identifier() -> None:
    """§11.7.1: "The Link-Local Address Compatibility (L) bit MUST be set if the
    home address reported by the mobile node has the same interface identifier
    as the mobile node's link-local address" (wording from memory) -- and only
    then: a node whose link-local differs has nothing for the HA to defend."""
    assert _l_bit(compatible_link_local(HOA)), "same interface identifier: L"
    assert not _l_bit(IPv6Address("fe80::1")), "another interface identifier: no L"
    assert not _l_bit(None), "no link-local known: no L"


def test_home_agent_defends_the_link_local_address_of_an_l_bit_registration() -> None:
    """§10.4.1 / §10.3.1: with L = 1 the home agent also runs DAD for, and then
    defends (proxy ND), the mobile node's link-local address -- fe80:: with the
    home address's interface identifier; without L it touches no link-local."""
    ll = compatible_link_local(HOA)
    for flags, want in ((HA_FLAGS | int(BUFlag.L), ll), (HA_FLAGS, None)):
        e = Engine(ha_config(), 0.0)
        out = e.handle(home_bu(1, flags=flags), 0.0)
        dad = [a for a in out if isinstance(a, StartDad)]
        if dad:
            assert dad[0].link_local == want, dad
            out = e.dad_result(HOA, True, 0.1)
        if not bas(out):
            out = e.reconciled(HOA, True, 0.2)
        assert only_ba(out).status == 0
        b = e.cache.get(HOA)
        assert b is not None and b.defended_link_local == want, b
        objs = render_binding(
            ha_config(), b, Capabilities(tunnel="seg6", proxy_ndp=True), HostFacts()
        ).objects.values()
        proxied = {o.address for o in objs if isinstance(o, ProxyNeighbour)}
        assert proxied == ({str(HOA), str(ll)} if want else {str(HOA)}), proxied


# --------------------------------------------------------------------------- §11.7.3 IPsec


def _mn_with_ipsec(protect: list[str]) -> Engine:
    cfg = Mip6Config.model_validate(
        {
            "node": {"role": "mn"},
            "mn": {
                "home_address": f"{HOA}/64",
                "home_agent": str(HA),
                "interfaces": [{"name": "wlan0"}],
                "ipsec": "ha1",
            },
            "ipsec": {
                "ha1": {
                    "protect": protect,
                    "key_management": "ike",
                }
            },
        }
    )
    return Engine(cfg, 0.0, random_bytes=Counter())


def test_unprotected_ba_from_the_home_agent_is_ignored_when_ipsec_is_configured() -> None:
    """§11.7.3: "The mobile node MUST ... silently ignore the Binding Acknowledgement"
    unless it was protected by IPsec when it came from the home agent (wording from
    memory; RFC 3776/4877 make the BU/BA protection mandatory).  Without IPsec for
    BU/BA in the configuration the same BA registers."""
    e = _mn_with_ipsec(["binding-update"])
    seq = bus(e.handle(CareOfAddressChanged(COA, "wlan0"), 0.0))[0].message.sequence
    assert e.handle(ba_from_ha(seq), 0.1) == []
    assert e.mn is not None and e.mn.state == "registering" and e.mn.bas_unprotected == 1
    e.handle(replace(ba_from_ha(seq), ipsec_protected=True), 0.2)
    assert e.mn.state == "registered"
    e = _mn_with_ipsec(["payload"])  # IPsec, but not for the signalling
    seq = bus(e.handle(CareOfAddressChanged(COA, "wlan0"), 0.0))[0].message.sequence
    e.handle(ba_from_ha(seq), 0.1)
    assert e.mn is not None and e.mn.state == "registered"


def test_parameter_problem_code_2_for_the_home_address_option_is_recognised() -> None:
    """§11.3.5: "If a mobile node receives an ICMP Parameter Problem, Code 2, message
    from some node indicating that it does not support the Home Address option, the
    mobile node SHOULD log the error and then discard the ICMP message."  The engine
    names it (the daemon logs it) and changes nothing; code 2 for another option, or
    code 1, is not this case."""
    dstopts = bytes((135, 2, 1, 2, 0, 0, 0xC9, 16)) + HOA.packed
    invoking = bytes((0x60, 0, 0, 0, 0, 32, 60, 64)) + COA.packed + CN.packed + dstopts
    assert home_address_option_refused(ParameterProblemReceived(CN, 2, 46, invoking))
    assert not home_address_option_refused(ParameterProblemReceived(CN, 2, 44, invoking))
    assert not home_address_option_refused(ParameterProblemReceived(CN, 1, 46, invoking))
    assert not home_address_option_refused(ParameterProblemReceived(CN, 2, 99, invoking))
