"""Mobile node return routability + correspondent registration against the real HA and CN
engines, over an in-memory network with a fake clock (every message takes a wire round trip)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

import pytest

from mip6ctl import rfc6275
from mip6ctl.engine import Engine, Received, Send
from mip6ctl.engine.events import (
    AtHome,
    BindingChanged,
    CareOfAddressChanged,
    RouteOptimisationChanged,
)
from mip6ctl.engine.route_optimisation import FALLBACK_HOLD, RR_TRIES, optimised_peers
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareofTestInit,
    HomeTestInit,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices

from .helpers import CN, COA, COA2, HA, HOA, KCN, cn_config, ha_config, mn_config

CN2 = IPv6Address("2001:db8:0:2::1")


def mn_ro_config(**mn: Any) -> Any:
    mn.setdefault("correspondents", [{"prefix": f"{CN}/128"}])
    return mn_config(**mn)


class Counter:
    """Deterministic random bytes (cookies, first sequence numbers)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, k: int) -> bytes:
        self.n += 1
        return (self.n.to_bytes(4, "big") * ((k + 3) // 4))[:k]


@dataclass
class Net:
    """HA, CN and MN engines; sends are delivered by destination address."""

    mn: Engine
    ha: Engine
    cn: Engine
    now: float = 0.0
    log: list[tuple[str, Send]] = field(default_factory=list)
    kernel: list[tuple[tuple[IPv6Address, IPv6Address], ...]] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    """The mobile node's kernel updates and Binding Updates, in execution order."""
    drop: set[type] = field(default_factory=set)
    """Message classes lost on the way (e.g. a correspondent without Mobile IPv6)."""

    def node_of(self, dst: IPv6Address) -> tuple[str, Engine] | None:
        if dst == HA:
            return "ha", self.ha
        if dst in (CN,):
            return "cn", self.cn
        if dst in (HOA, COA, COA2):
            return "mn", self.mn
        return None

    def run(self, actions: list[Any], origin: str) -> None:
        """Execute actions like the daemon does, delivering sends until quiet."""
        queue: list[tuple[str, Any]] = [(origin, a) for a in actions]
        while queue:
            who, a = queue.pop(0)
            if isinstance(a, RouteOptimisationChanged):
                self.kernel.append(a.correspondents)
                self.trace.append("kernel")
            elif isinstance(a, BindingChanged) and who == "ha":
                queue += [("ha", x) for x in self.ha.reconciled(a.home_address, True, self.now)]
            elif isinstance(a, Send):
                self.log.append((who, a))
                if who == "mn" and isinstance(a.message, BindingUpdate):
                    self.trace.append("cn-bu" if a.dst == CN else "ha-bu")
                if type(a.message) in self.drop:
                    continue
                target = self.node_of(a.dst)
                if target is None:
                    continue
                name, engine = target
                raw = encode_mh(a.message)
                ev = Received(
                    decode_mh(raw), a.src, a.dst, a.home_address_option,
                    a.routing_header_address, False, "eth0", raw,
                )
                queue += [(name, x) for x in engine.handle(ev, self.now)]

    def mn_event(self, ev: Any) -> None:
        self.run(self.mn.handle(ev, self.now), "mn")

    def advance(self, to: float) -> None:
        """Run every timer of every engine up to ``to``."""
        while True:
            due = [
                (t, n, e)
                for n, e in (("mn", self.mn), ("ha", self.ha), ("cn", self.cn))
                if (t := e.next_timer()) is not None and t <= to
            ]
            if not due:
                break
            t, name, engine = min(due, key=lambda x: x[0])
            self.now = max(self.now, t)
            self.run(engine.handle_timer(self.now), name)
        self.now = to

    def sent(self, who: str, cls: type, since: int = 0) -> list[Send]:
        return [s for w, s in self.log[since:] if w == who and isinstance(s.message, cls)]


def make_net(*, enabled: bool = True, **mn: Any) -> Net:
    rnd = Counter()
    return Net(
        mn=Engine(mn_ro_config(**mn), 0.0, random_bytes=rnd, route_optimization=enabled),
        ha=Engine(ha_config(), 0.0, kcn=KCN),
        cn=Engine(cn_config(), 0.0, kcn=KCN),
    )


def away(net: Net, coa: IPv6Address = COA) -> None:
    net.mn_event(CareOfAddressChanged(coa, "wlan0"))


def cn_binding(net: Net) -> Any:
    return net.cn.cache.get(HOA)


# --------------------------------------------------------------------------- happy path


def test_registers_with_the_correspondent_after_the_home_registration() -> None:
    net = make_net()
    away(net)
    assert net.mn.mn is not None and net.mn.mn.state == "registered"
    b = cn_binding(net)
    assert b is not None and not b.home_registration
    assert b.care_of_address == COA and b.local_address == CN
    # HoTI from the home address (through the tunnel), CoTI from the care-of address
    (hoti,) = net.sent("mn", HomeTestInit)
    (coti,) = net.sent("mn", CareofTestInit)
    assert (hoti.src, hoti.dst, hoti.home_address_option) == (HOA, CN, None)
    assert (coti.src, coti.dst, coti.home_address_option) == (COA, CN, None)
    # the BU: from the care-of address with a Home Address option, nonce indices, auth data
    bus = [s for s in net.sent("mn", BindingUpdate) if s.dst == CN]
    assert len(bus) == 1
    bu = bus[0]
    assert (bu.src, bu.home_address_option) == (COA, HOA)
    msg = bu.message
    assert isinstance(msg, BindingUpdate) and not msg.home_registration
    assert msg.option(NonceIndices) is not None
    assert isinstance(msg.options[-1], BindingAuthorizationData)
    assert msg.lifetime_seconds <= rfc6275.MAX_RR_BINDING_LIFETIME
    assert net.kernel == [((CN, COA),)]
    rows, rr_rows = net.mn.ro.status(net.now)  # type: ignore[union-attr]
    assert rows[0]["state"] == "registered" and rows[0]["care_of_address"] == COA
    assert rr_rows[0]["home_token_age_s"] == 0.0


def test_kernel_state_comes_before_the_binding_update() -> None:
    """Make before break: the route2 state must exist before the CN may use the CoA."""
    net = make_net()
    away(net)
    assert net.trace == ["ha-bu", "kernel", "cn-bu"]


def test_hoti_waits_for_the_home_registration_coti_does_not() -> None:
    net = make_net()
    net.drop = {BindingAcknowledgement}  # the HA's BA is lost for now
    away(net)
    assert net.sent("mn", CareofTestInit) and not net.sent("mn", HomeTestInit)
    assert cn_binding(net) is None
    net.drop = set()
    net.advance(1.6)  # home BU retransmitted, accepted → HoTI, then the BU
    assert len(net.sent("mn", HomeTestInit)) == 1
    assert cn_binding(net) is not None


def test_nothing_happens_without_kernel_support_or_configuration() -> None:
    for net in (make_net(enabled=False), make_net(correspondents=[{"prefix": "2001:db8::/32"}])):
        away(net)
        assert net.mn.mn is not None and net.mn.mn.state == "registered"
        assert not net.sent("mn", HomeTestInit) and not net.sent("mn", CareofTestInit)
        assert cn_binding(net) is None and net.kernel == []


def test_optimised_peers_are_single_address_entries_with_ro_on() -> None:
    cfg = mn_config(
        correspondents=[
            {"prefix": f"{CN}/128"},
            {"prefix": f"{CN2}/128", "route_optimization": False},
            {"prefix": "2001:db8:5::/48"},
        ]
    )
    assert optimised_peers(cfg.mn) == (CN,)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- acknowledgements


def test_ack_requested_ba_is_verified_and_a_forged_one_ignored() -> None:
    net = make_net(cn_binding_ack=True)
    real_handle = net.mn.handle

    def tamper(ev: Any, now: float) -> list[Any]:
        if isinstance(ev, Received) and ev.src == CN and isinstance(
            ev.message, BindingAcknowledgement
        ):
            raw = ev.raw[:-1] + bytes([ev.raw[-1] ^ 1])  # type: ignore[index]
            ev = Received(decode_mh(raw), ev.src, ev.dst, None, ev.routing_header_address,
                          False, "eth0", raw)
        return real_handle(ev, now)

    net.mn.handle = tamper  # type: ignore[method-assign]
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    assert entry.state == "registering"  # the BA did not verify
    net.mn.handle = real_handle  # type: ignore[method-assign]
    n = len(net.sent("mn", BindingUpdate))
    net.advance(net.now + 1.0)  # retransmitted BU, genuine BA
    assert len(net.sent("mn", BindingUpdate)) == n + 1
    assert entry.state == "registered" and entry.last_status == 0


def test_correspondent_restart_gives_138_and_both_tests_are_run_again() -> None:
    net = make_net(cn_binding_ack=True)
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    assert entry.state == "registered"
    net.cn = Engine(cn_config(), net.now, kcn=bytes(20))  # new Kcn, new nonce indices
    n_hoti, n_coti = len(net.sent("mn", HomeTestInit)), len(net.sent("mn", CareofTestInit))
    idx = len(net.log)
    net.run(net.mn.handle(Received(BindingRefreshRequest(), CN, COA, None, HOA), net.now), "mn")
    # fresh tokens are reused: the BU goes at once, the CN cannot find the nonces → 138,
    # then both tests again and a BU the new CN accepts
    statuses = [s.message.status for w, s in net.log[idx:]
                if w == "cn" and isinstance(s.message, BindingAcknowledgement)]
    assert statuses == [138, 0]
    assert entry.last_status == 0
    assert len(net.sent("mn", HomeTestInit)) == n_hoti + 1
    assert len(net.sent("mn", CareofTestInit)) == n_coti + 1
    assert entry.state == "registered" and cn_binding(net) is not None


def test_refresh_reuses_fresh_tokens_and_renews_stale_ones() -> None:
    net = make_net(max_cn_binding_lifetime=200)
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    n_tests = len(net.sent("mn", HomeTestInit)) + len(net.sent("mn", CareofTestInit))
    n_bu = len([s for s in net.sent("mn", BindingUpdate) if s.dst == CN])
    net.advance(150.5)  # 75 % of 200 s: tokens 150 s old, still usable
    assert len(net.sent("mn", HomeTestInit)) + len(net.sent("mn", CareofTestInit)) == n_tests
    assert len([s for s in net.sent("mn", BindingUpdate) if s.dst == CN]) == n_bu + 1
    net.advance(300.5)  # next refresh: tokens now > MAX_TOKEN_LIFETIME - margin → new tests
    assert len(net.sent("mn", HomeTestInit)) + len(net.sent("mn", CareofTestInit)) == n_tests + 2
    assert entry.state == "registered"
    assert cn_binding(net) is not None and cn_binding(net).expires_at > net.now


def test_binding_refresh_request_triggers_a_new_registration() -> None:
    net = make_net()
    away(net)
    seq = cn_binding(net).sequence
    brr = Received(BindingRefreshRequest(), CN, COA, None, HOA)
    net.run(net.mn.handle(brr, net.now + 10), "mn")
    assert cn_binding(net).sequence == (seq + 1) & 0xFFFF


# --------------------------------------------------------------------------- fall back


def test_correspondent_without_mobile_ipv6_falls_back_to_the_tunnel() -> None:
    net = make_net()
    net.drop = {HomeTestInit, CareofTestInit}
    away(net)
    net.advance(60.0)
    assert len(net.sent("mn", HomeTestInit)) == RR_TRIES  # 1 + 3 retransmissions, then give up
    assert len(net.sent("mn", CareofTestInit)) == RR_TRIES
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    assert entry.state == "fallback" and "no Mobile IPv6" in (entry.last_error or "")
    assert net.kernel == []  # never optimised
    net.drop = set()
    net.advance(60.0 + FALLBACK_HOLD + 1)
    assert entry.state == "registered"


def test_retransmissions_back_off_exponentially() -> None:
    net = make_net()
    net.drop = {CareofTestInit}
    stamps: list[float] = []
    real_run = net.run

    def spy(actions: list[Any], origin: str) -> None:
        if origin == "mn":
            stamps.extend(
                net.now for a in actions
                if isinstance(a, Send) and isinstance(a.message, CareofTestInit)
            )
        real_run(actions, origin)

    net.run = spy  # type: ignore[method-assign]
    away(net)
    net.advance(30.0)
    assert stamps == pytest.approx([0.0, 1.0, 3.0, 7.0])


def test_binding_error_2_falls_back_and_binding_error_1_reregisters() -> None:
    net = make_net()
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    be1 = Received(BindingError(1, HOA), CN, COA)
    n = len([s for s in net.sent("mn", BindingUpdate) if s.dst == CN])
    net.run(net.mn.handle(be1, net.now), "mn")
    # the tokens are fresh: registered again at once, the kernel state never left
    assert entry.state == "registered"
    assert len([s for s in net.sent("mn", BindingUpdate) if s.dst == CN]) == n + 1
    assert net.kernel == [((CN, COA),)]
    net.run(net.mn.handle(Received(BindingError(2, HOA), CN, COA), net.now), "mn")
    assert entry.state == "fallback" and net.kernel[-1] == ()


def test_repeated_binding_error_1_falls_back() -> None:
    net = make_net()
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    for _ in range(3):
        net.run(net.mn.handle(Received(BindingError(1, HOA), CN, COA), net.now), "mn")
    assert entry.state == "fallback" and net.kernel[-1] == ()


def test_binding_error_for_another_home_address_is_ignored() -> None:
    net = make_net()
    away(net)
    other = IPv6Address("2001:db8:1::999")
    net.run(net.mn.handle(Received(BindingError(2, other), CN, COA), net.now), "mn")
    assert net.mn.ro.entries[CN].state == "registered"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- movement


def test_move_switches_to_the_tunnel_then_registers_the_new_care_of_address() -> None:
    net = make_net()
    away(net)
    n_hoti = len(net.sent("mn", HomeTestInit))
    net.now = 20.0
    away(net, COA2)
    assert net.kernel[-2:] == [(), ((CN, COA2),)]
    assert len(net.sent("mn", HomeTestInit)) == n_hoti  # home token still fresh
    assert cn_binding(net).care_of_address == COA2


def test_return_home_deregisters_after_the_home_agent() -> None:
    net = make_net()
    away(net)
    assert cn_binding(net) is not None
    net.now = 30.0
    idx = len(net.log)
    net.mn_event(AtHome("eth0"))
    assert net.kernel[-1] == ()
    assert net.mn.mn is not None and net.mn.mn.state == "home"
    dereg = [s for w, s in net.log[idx:] if w == "mn" and s.dst == CN
             and isinstance(s.message, BindingUpdate)]
    assert len(dereg) == 1
    assert (dereg[0].src, dereg[0].home_address_option) == (HOA, None)
    assert dereg[0].message.lifetime == 0  # type: ignore[union-attr]
    # the home de-registration went first
    ha_dereg = [i for i, (w, s) in enumerate(net.log[idx:]) if w == "mn" and s.dst == HA]
    cn_dereg = [i for i, (w, s) in enumerate(net.log[idx:]) if w == "mn" and s.dst == CN]
    assert ha_dereg[0] < cn_dereg[0]
    assert cn_binding(net) is None
    assert net.mn.ro.entries[CN].state == "idle"  # type: ignore[union-attr]


def test_home_registration_failure_drops_route_optimisation() -> None:
    net = make_net()
    away(net)
    mn = net.mn.mn
    assert mn is not None
    ba = BindingAcknowledgement(129, mn.sequence)
    mn.state = "registering"
    net.run(net.mn.handle(Received(ba, HA, COA, None, HOA), net.now), "mn")
    assert mn.state == "failed" and net.kernel[-1] == ()


def test_configuration_change_removes_a_correspondent() -> None:
    net = make_net()
    away(net)
    actions = net.mn.load_config(mn_ro_config(correspondents=[]), net.now)
    net.run(actions, "mn")
    assert net.kernel[-1] == () and net.mn.ro.entries == {}  # type: ignore[union-attr]


def _invoking(src: IPv6Address, dst: IPv6Address, next_header: int) -> bytes:
    """The first 48 octets of a packet this node sent (IPv6 header + 8 payload octets)."""
    return (
        bytes((0x60, 0, 0, 0, 0, 8, next_header, 64)) + src.packed + dst.packed + bytes(8)
    )


def test_parameter_problem_for_the_mobility_header_falls_back_at_once() -> None:
    """RFC 6275 §11.3.5: unrecognised Next Header 135 → no more Mobility Headers to it."""
    from mip6ctl.engine.events import ParameterProblemReceived

    net = make_net()
    net.drop = {HomeTestInit, CareofTestInit}  # the CN ignores them, then answers with ICMP
    away(net)
    entry = net.mn.ro.entries[CN]  # type: ignore[union-attr]
    assert entry.state == "testing"
    # other errors change nothing: wrong code, a pointer at something else, unknown peer
    for pp in (
        ParameterProblemReceived(CN, 0, 6, _invoking(COA, CN, 135)),
        ParameterProblemReceived(CN, 1, 6, _invoking(COA, CN, 17)),
        ParameterProblemReceived(CN2, 1, 6, _invoking(COA, CN2, 135)),
        ParameterProblemReceived(CN, 1, 60, _invoking(COA, CN, 135)),
    ):
        assert net.mn.handle(pp, net.now) == []
        assert entry.state == "testing"
    net.run(net.mn.handle(ParameterProblemReceived(CN, 1, 6, _invoking(COA, CN, 135)), 0.5), "mn")
    assert entry.state == "fallback" and "Parameter Problem" in (entry.last_error or "")
    n = len(net.sent("mn", CareofTestInit))
    net.advance(60.0)
    assert len(net.sent("mn", CareofTestInit)) == n  # nothing more to that correspondent
