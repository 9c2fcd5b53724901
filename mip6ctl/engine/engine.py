"""The engine façade: one entry point per node, dispatching to the HA, CN and MN halves.

Like aioquic's ``QuicConnection``: the daemon calls :meth:`Engine.handle` with
an input event and ``now``, :meth:`Engine.handle_timer` when
:meth:`Engine.next_timer` comes due, and the completion calls
(:meth:`~Engine.dad_result`, :meth:`~Engine.reconciled`) when the work it was
asked to do is done; each returns the actions to execute in order
(see :mod:`.events` for the contract).

Dispatch (``_DISPATCH`` by message class):

- BU with H=1 → the home agent, or when this node is none, the correspondent's
  refusal (131 / 139); BU with H=0 → the correspondent;
- HoTI / CoTI → the correspondent; BA / BRR from the home agent → the mobile
  node's home registration; HoT / CoT, and BA / BRR / BE from anyone else →
  its correspondent registrations (:mod:`.route_optimisation`), which follow
  the home registration after every mobile-node input and timer;
- a Home Address option in front of a Mobility Header message is processed
  normally (§9.3.1: only other payload needs a binding for (home address,
  care-of = source); without one, :class:`HomeAddressOptionReceived` gets
  Binding Error 1), but it must hold a routable unicast address, and a type 2
  routing header must name this mobile node's home address, or the message is
  dropped silently;
- :class:`Malformed` → the reaction its error carries (Parameter Problem with
  the pointer, Binding Error 2, or nothing).

Binding Errors go only to unicast sources and are rate limited by one token
bucket per node (default ``MAX_UPDATE_RATE`` per second, burst of the same).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address

from mip6ctl import rfc6275
from mip6ctl.config.model import Mip6Config, Role
from mip6ctl.wire.errors import Reaction
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    MobilityMessage,
)

from .binding import Binding, BindingCache
from .common import UNSPECIFIED, TokenBucket, is_routable_unicast, is_unicast
from .correspondent import DEFAULT_MAX_CACHE_ENTRIES, Correspondent, RandomBytes
from .events import (
    Action,
    AtHome,
    BindingChanged,
    CareOfAddressChanged,
    DhaadReplyReceived,
    ForgetBinding,
    HomeAddressOptionReceived,
    Input,
    Malformed,
    ParameterProblemReceived,
    Received,
    Send,
    SendParameterProblem,
    TrafficToCorrespondent,
)
from .home_agent import (
    DEFAULT_DAD_TIMEOUT,
    DEFAULT_RECONCILE_TIMEOUT,
    HomeAgent,
    PrefixLifetime,
)
from .mobile_node import MobileNode
from .route_optimisation import RouteOptimisation

__all__ = ["Engine"]


class Engine:
    """One node's Mobile IPv6 protocol engine (HA and/or CN, or MN and CN)."""

    def __init__(
        self,
        cfg: Mip6Config,
        now: float,
        *,
        kcn: bytes | None = None,
        random_bytes: RandomBytes = secrets.token_bytes,
        prefix_valid_lifetime: PrefixLifetime | None = None,
        binding_error_rate: float = rfc6275.MAX_UPDATE_RATE,
        binding_error_burst: float = rfc6275.MAX_UPDATE_RATE,
        icmp_error_rate: float | None = None,
        icmp_error_burst: float | None = None,
        dad_timeout: float = DEFAULT_DAD_TIMEOUT,
        reconcile_timeout: float = DEFAULT_RECONCILE_TIMEOUT,
        max_cache_entries: int = DEFAULT_MAX_CACHE_ENTRIES,
        route_optimization: bool = False,
        key_mobility_templates: frozenset[str] = frozenset(),
    ) -> None:
        """``route_optimization``: the kernel can carry the route-optimised data path
        (XFRM route2/hao); without it a mobile node never registers with correspondents.
        ``key_mobility_templates``: the [ipsec.NAME] templates whose IKE SAs survive a
        move (IKE keying on a kernel with XFRM MIGRATE): their nodes' BAs carry K."""
        self.cfg = cfg
        self._key_mobility = key_mobility_templates
        self._random = random_bytes
        self._route_optimization = route_optimization
        self.cache = BindingCache()
        self._prefix_valid_lifetime = prefix_valid_lifetime
        self._dad_timeout = dad_timeout
        self._reconcile_timeout = reconcile_timeout
        self.cn = Correspondent(
            cfg.cn,
            self.cache,
            now,
            kcn=kcn,
            random_bytes=random_bytes,
            max_cache_entries=max_cache_entries,
        )
        self.ha: HomeAgent | None = self._make_ha(cfg)
        self.mn: MobileNode | None = None
        self.ro: RouteOptimisation | None = None
        if cfg.node.role == Role.MN and cfg.mn is not None:
            self._make_mn(cfg, now)
        self.binding_errors = TokenBucket(binding_error_rate, binding_error_burst, now)
        # RFC 4443 §2.4(f): ICMPv6 errors are rate limited.  They leave on a raw
        # socket, where the kernel's own icmpv6 ratelimit does not apply.
        d = cfg.daemon
        self.icmp_errors = TokenBucket(
            d.icmp_error_rate if icmp_error_rate is None else icmp_error_rate,
            d.icmp_error_burst if icmp_error_burst is None else icmp_error_burst,
            now,
        )
        #: ICMPv6 errors not sent because of the rate limit (status, metrics)
        self.icmp_errors_suppressed = 0

    def _make_mn(self, cfg: Mip6Config, now: float) -> None:
        assert cfg.mn is not None
        self.mn = MobileNode(
            cfg.mn, now, protected_signalling=_protected_signalling(cfg), random_bytes=self._random
        )
        self.ro = RouteOptimisation(
            cfg.mn, enabled=self._route_optimization, random_bytes=self._random
        )

    def _mn_sync(self, out: list[Action], now: float) -> list[Action]:
        """The correspondent registrations follow every change of the home registration."""
        if self.ro is None or self.mn is None:
            return out
        return out + self.ro.sync(self.mn, now)

    def _make_ha(self, cfg: Mip6Config) -> HomeAgent | None:
        if cfg.node.role != Role.HA or cfg.ha is None:
            return None
        return HomeAgent(
            cfg.ha,
            self.cache,
            prefix_valid_lifetime=self._prefix_valid_lifetime,
            dad_timeout=self._dad_timeout,
            reconcile_timeout=self._reconcile_timeout,
            key_mobility_templates=self._key_mobility,
        )

    # ----------------------------------------------------------------- inputs

    def handle(self, event: Input, now: float) -> list[Action]:
        """Process one input event."""
        if type(event) is Received:
            if not self._addresses_acceptable(event):
                return []
            handler = _DISPATCH.get(type(event.message))
            if handler is not None:
                return handler(self, event, event.message, now)
            return []  # decode_mh only yields the eight known classes
        if type(event) is Malformed:
            hoa = event.home_address_option
            if hoa is not None and not is_routable_unicast(hoa):
                return []  # §9.3.1: silently, never an error about such an address
            return self._malformed(event, now)
        if type(event) is HomeAddressOptionReceived:
            return self._hao_check(event.src, event.dst, event.home_address, now) or []
        if type(event) is ParameterProblemReceived:
            return self.ro.parameter_problem(event, now) if self.ro is not None else []
        if isinstance(event, CareOfAddressChanged | AtHome):
            if self.mn is None:
                return []
            return self._mn_sync(self.mn.handle(event, now), now)
        if type(event) is DhaadReplyReceived:
            if self.mn is None:
                return []
            return self._mn_sync(self.mn.dhaad_reply(event.reply, now), now)
        if type(event) is TrafficToCorrespondent:
            if self.ro is None or self.mn is None:
                return []
            return self.ro.traffic(event.correspondent, self.mn, now)
        raise TypeError(f"not an engine input: {event!r}")

    def _addresses_acceptable(self, ev: Received) -> bool:
        """§6.4 / §9.3.1: the headers that name a home address must name a real one.

        A type 2 routing header is only for a mobile node, and only with its own
        home address in it (the kernel's route2 state checks the same on the data
        path); a Home Address option must hold a routable unicast address. Either
        failing: dropped silently, on every message type.
        """
        rh = ev.routing_header_address
        if rh is not None and (self.mn is None or rh != self.mn.home_address):
            return False
        hoa = ev.home_address_option
        return hoa is None or is_routable_unicast(hoa)

    def dad_result(self, home_address: IPv6Address, ok: bool, now: float) -> list[Action]:
        """Duplicate Address Detection finished for a parked home registration."""
        return self.ha.dad_result(home_address, ok, now) if self.ha is not None else []

    def reconciled(self, home_address: IPv6Address, ok: bool, now: float) -> list[Action]:
        """The reconciler converged ``home_address`` (call after every BindingChanged)."""
        return self.ha.reconciled(home_address, ok, now) if self.ha is not None else []

    def binding_used(self, home_address: IPv6Address, now: float) -> None:
        """Traffic used the correspondent entry of ``home_address`` (drives BRRs)."""
        self.cn.binding_used(home_address, now)

    def correspondent_used(self, correspondent: IPv6Address, now: float) -> None:
        """Mobile node: route-optimised traffic went to ``correspondent`` (keeps a
        traffic-triggered registration refreshed)."""
        if self.ro is not None:
            self.ro.used(correspondent, now)

    def load_config(self, cfg: Mip6Config, now: float) -> list[Action]:
        """Switch to a new configuration generation (already validated, applied whole)."""
        self.cfg = cfg
        out = self.cn.load_config(cfg.cn, now)
        if cfg.node.role == Role.HA and cfg.ha is not None:
            if self.ha is None:
                self.ha = self._make_ha(cfg)
            else:
                out += self.ha.load_config(cfg.ha, now)
        elif self.ha is not None:
            out += self.ha.drop_all()
            self.ha = None
        if self.mn is not None and cfg.mn is not None and cfg.node.role == Role.MN:
            self.mn.configure(cfg.mn, protected_signalling=_protected_signalling(cfg))
            if self.ro is not None:
                self.ro.configure(cfg.mn)
            out = self._mn_sync(out, now)
        elif cfg.node.role == Role.MN and cfg.mn is not None:
            self._make_mn(cfg, now)
        else:
            self.mn = None
            self.ro = None
        return out

    def restore(self, bindings: Iterable[Binding], now: float) -> list[Action]:
        """Re-create the cache from persisted bindings after a restart (invariant 6).

        Expired bindings and home registrations the configuration no longer
        allows are dropped (``ForgetBinding``); the others keep their
        ``expires_at`` (same clock as ``now``) and are announced with
        ``BindingChanged(reason="restored")`` so the reconciler adopts their
        kernel state.
        """
        out: list[Action] = []
        for b in bindings:
            keep = b.expires_at > now and (
                not b.home_registration or (self.ha is not None and self.ha.still_allowed(b))
            )
            if not keep:
                if b.home_registration:
                    out.append(ForgetBinding(b.home_address))
                continue
            self.cache.put(b)
            out.append(BindingChanged(b.home_address, b, "restored"))
        return out

    # ----------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: nothing scheduled)."""
        times = [self.cache.next_expiry(), self.cn.next_timer()]
        if self.ha is not None:
            times.append(self.ha.next_timer())
        if self.mn is not None:
            times.append(self.mn.next_timer())
        if self.ro is not None:
            times.append(self.ro.next_timer())
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> list[Action]:
        """Everything due at ``now``: binding expiry, parked-BU deadlines, BRRs, MN timers."""
        out: list[Action] = []
        for b in self.cache.expire(now):
            self.cn.retire(b, now)
            out.append(BindingChanged(b.home_address, None, "expired"))
            if b.home_registration:
                out.append(ForgetBinding(b.home_address))
        if self.ha is not None:
            out += self.ha.handle_timer(now)
        out += self.cn.handle_timer(now)
        if self.mn is not None:
            mn_out = self.mn.handle_timer(now)
            if self.ro is not None:
                mn_out += self.ro.handle_timer(self.mn, now)
            out += self._mn_sync(mn_out, now)
        return out

    # ----------------------------------------------------------------- dispatch targets

    def _binding_update(self, ev: Received, msg: MobilityMessage, now: float) -> list[Action]:
        assert isinstance(msg, BindingUpdate)
        if msg.home_registration:
            if self.ha is not None:
                return self.ha.binding_update(ev, msg, now)
            return self.cn.home_registration(ev, msg, now)
        return self.cn.binding_update(ev, msg, now)

    def _hoti(self, ev: Received, msg: MobilityMessage, now: float) -> list[Action]:
        assert isinstance(msg, HomeTestInit)
        return self.cn.home_test_init(ev, msg, now)

    def _coti(self, ev: Received, msg: MobilityMessage, now: float) -> list[Action]:
        assert isinstance(msg, CareofTestInit)
        return self.cn.careof_test_init(ev, msg, now)

    def _to_mn(self, ev: Received, msg: MobilityMessage, now: float) -> list[Action]:
        # §9.3.1: a Home Address option in front of a Mobility Header is processed
        # normally -- no binding check (the sender may itself be a mobile node away)
        mn = self.mn
        if mn is None:
            return []
        if self.ro is not None and (ev.src != mn.home_agent or type(msg) in (HomeTest, CareofTest)):
            return self.ro.received(ev, mn, now)
        return self._mn_sync(mn.received(ev, now), now)

    def _hao_check(
        self, src: IPv6Address, dst: IPv6Address, hoa: IPv6Address | None, now: float
    ) -> list[Action] | None:
        """§9.3.1: a Home Address option needs a binding with care-of = source → else BE 1.

        Returns None when the packet may proceed, else the (possibly empty) answer.
        """
        if hoa is None:
            return None
        if not is_routable_unicast(hoa):
            return []  # §9.3.1: dropped silently, no Binding Error about it
        b = self.cache.get(hoa)
        if b is not None and b.care_of_address == src:
            if not b.home_registration:
                self.cn.binding_used(hoa, now)  # §9.5.5: this binding is in use
            return None
        return self._binding_error(1, hoa, dst, src, now)

    def _malformed(self, ev: Malformed, now: float) -> list[Action]:
        err = ev.error
        if err.reaction is Reaction.PARAM_PROBLEM:
            if not (is_unicast(ev.src) and err.pointer is not None):
                return []
            if not self.icmp_errors.allow(now):
                self.icmp_errors_suppressed += 1
                return []
            return [
                SendParameterProblem(err.icmp_code or 0, err.pointer, ev.packet, ev.dst, ev.src)
            ]
        if err.reaction is Reaction.BINDING_ERROR:
            status = err.be_status or 2
            return self._binding_error(status, ev.home_address_option, ev.dst, ev.src, now)
        return []

    def _binding_error(
        self,
        status: int,
        hoa: IPv6Address | None,
        src: IPv6Address,
        dst: IPv6Address,
        now: float,
    ) -> list[Action]:
        """BE to ``dst``: never to a non-unicast address, never above the rate limit."""
        if not (is_unicast(dst) and is_unicast(src)):
            return []
        if not self.binding_errors.allow(now):
            return []
        return [Send(BindingError(status, hoa or UNSPECIFIED), src, dst)]


_Handler = Callable[[Engine, Received, MobilityMessage, float], list[Action]]
_DISPATCH: dict[type, _Handler] = {
    BindingUpdate: Engine._binding_update,
    HomeTestInit: Engine._hoti,
    CareofTestInit: Engine._coti,
    BindingAcknowledgement: Engine._to_mn,
    BindingRefreshRequest: Engine._to_mn,
    HomeTest: Engine._to_mn,
    CareofTest: Engine._to_mn,
    BindingError: Engine._to_mn,
}


def _protected_signalling(cfg: Mip6Config) -> bool:
    """The mobile node's [ipsec.NAME] puts BU/BA under ESP: an unprotected BA is ignored."""
    tpl = cfg.ipsec.get(cfg.mn.ipsec) if cfg.mn is not None and cfg.mn.ipsec else None
    return tpl is not None and tpl.protects_signalling
