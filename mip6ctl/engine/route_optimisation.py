"""Mobile node: return routability and correspondent registration (RFC 6275 §11.6, §11.7.2).

Theory of operation
===================

:class:`RouteOptimisation` holds one binding update list entry
(:class:`CorrespondentEntry`) per correspondent the mobile node optimises,
and decides from the home registration when each may run:

* **which correspondents** — ``[[mn.correspondents]]`` is an allow/deny list
  (first match wins, :meth:`RouteOptimisation.policy`): single addresses in
  mode ``always`` are registered proactively while away; everything else that
  is not ``never`` -- unlisted correspondents included -- is *traffic
  triggered*: :class:`~.events.TrafficToCorrespondent` (the kernel's XFRM
  ACQUIRE when the home address sends to a correspondent through the home
  agent, UMIP's way) creates a *dynamic* entry and starts return routability.
  A dynamic entry is refreshed only when it was used since it registered
  (:meth:`RouteOptimisation.used`, from the kernel's state counters, or a
  Binding Refresh Request); otherwise its binding runs out and the entry goes,
  at most :data:`MAX_DYNAMIC` exist at once. Nothing is optimised when the kernel
  cannot carry the route-optimised data path (no XFRM route2/hao states:
  ``route_optimization=False`` here, reported by ``mip6ctl doctor``), so the
  node never ends up half optimised.
* **when** — the Care-of Test Init goes directly from the care-of address as
  soon as the node is away; the Home Test Init goes from the home address
  through the reverse tunnel, so it waits until the home registration for the
  current care-of address is accepted, and so does the Binding Update
  (§11.7.2: a correspondent is never told a care-of address the home agent
  does not know yet). At home each entry with a binding is de-registered
  (lifetime 0, care-of = home address, Kbm from the home token alone).

An entry's states:

================= =====================================================
``idle``          nothing registered, nothing outstanding
``testing``       HoTI and/or CoTI outstanding (retransmitted with backoff)
``registering``   BU with A=1 sent, waiting for its BA
``registered``    the correspondent has (home, care-of); data goes direct
``leaving``       back home; waits for the home de-registration to finish
``deregistering`` lifetime-0 BU sent from home
``fallback``      the correspondent does not do route optimisation (no
                  answer to HoTI/CoTI, ICMP Parameter Problem for the
                  Mobility Header, BE 2, a refusal) or lost the binding
                  repeatedly (BE 1): data goes through the home agent; retried
                  after :data:`FALLBACK_HOLD` seconds, doubled for each
                  fallback in a row up to :data:`MAX_FALLBACK_HOLD` (remembered
                  for dynamic entries too, so traffic cannot make the node probe
                  a correspondent without Mobile IPv6 again before that)
================= =====================================================

Every BU to a correspondent passes the §11.8 rate limit
(:class:`~.common.UpdateRate`): one over ``MAX_UPDATE_RATE`` a second is held
until the window opens.

Every change of state is one row of :data:`TRANSITIONS`, ``(state, event) ->
new state`` (h11's style, like the home registration's table in
:mod:`.mobile_node`); an event in a state the table has no row for raises
:class:`IllegalTransition`, so a path the table does not describe fails
loudly in tests instead of leaving an entry in a state nobody planned.
The events:

============================  ===============================================
``moved``                     the mobile node has a new care-of address
``test``                      return routability starts for a care-of address
                              the correspondent has no binding for
``bu_sent``                   BU with A=1 sent
``bu_sent_unacknowledged``    BU with A=0 sent: it is the registration (§11.7.2)
``accepted``                  BA < 128 for the outstanding BU
``stale_tokens``              BA 136–138 while the correspondent keeps our
                              previous binding: stay registered, test again
``unbound``                   the correspondent holds no binding of ours
                              (lifetime over; 136–138 before any binding;
                              back home with nothing registered)
``leave``                     back home with a binding to remove
``deregister``                the home agent let the home address go
``forget``                    dropped without signalling (home registration
                              lost, correspondent no longer configured)
``fallback``                  the correspondent does not do route optimisation
``retry``                     :data:`FALLBACK_HOLD` passed
============================  ===============================================

Keygen tokens are used while younger than ``MAX_TOKEN_LIFETIME`` minus a
margin (the correspondent only hands out tokens whose nonce lives that long);
a care-of token only for the care-of address it was made for. A refresh
(at 75 % of the granted lifetime, on a Binding Refresh Request) reuses fresh
tokens and re-runs only the tests whose token is stale.

A BA from a correspondent must carry Binding Authorization Data that verifies
under Kbm, else it is discarded (136–138 carry none: they only make the node
re-run a test). The kernel state follows :class:`RouteOptimisationChanged`,
emitted *before* the Binding Update that makes the correspondent send to the
care-of address, and with the entry removed as soon as the care-of address
the correspondent has is no longer ours (a move) or the correspondent refuses.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Literal

from mip6ctl import rfc6275
from mip6ctl.config.model import MnSection
from mip6ctl.wire import rr
from mip6ctl.wire.mh import (
    BAStatus,
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    encode_mh,
    lifetime_units,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices

from .common import UpdateRate, is_routable_unicast
from .events import Action, ParameterProblemReceived, Received, RouteOptimisationChanged, Send

if TYPE_CHECKING:
    from .mobile_node import MobileNode

__all__ = [
    "FALLBACK_HOLD",
    "TRANSITIONS",
    "CorrespondentEntry",
    "CorrespondentEvent",
    "CorrespondentState",
    "IllegalTransition",
    "RouteOptimisation",
    "home_address_option_refused",
    "optimised_peers",
]

RandomBytes = Callable[[int], bytes]

REFRESH_FRACTION = 0.75
TOKEN_MARGIN = 5.0
"""Seconds before MAX_TOKEN_LIFETIME a token is no longer used (transit, clock skew)."""
RR_TRIES = 4
"""Sends of a HoTI/CoTI without any answer before the correspondent counts as not
speaking Mobile IPv6 (1 + 2 + 4 + 8 s with the default timeouts)."""
BE1_TRIES = 3
"""Binding Error 1 in a row (no accepted BA between) before falling back for a while."""
FALLBACK_HOLD = float(rfc6275.MAX_RR_BINDING_LIFETIME)
"""Seconds a correspondent stays on the tunnel after it refused route optimisation."""
MAX_FALLBACK_HOLD = 8 * FALLBACK_HOLD
"""The back-off's cap: a correspondent that keeps refusing is retried once an hour."""
MAX_DYNAMIC = 4096
"""Traffic-triggered entries at most (each costs one binding at a correspondent)."""
MAX_REMEMBERED = 4096
"""Correspondents whose fallback count is remembered after their entry went."""
COOKIE_LEN = 8
IPPROTO_MH = 135
HOME_ADDRESS_OPTION = 0xC9  # §6.3 option type 201


def home_address_option_refused(ev: ParameterProblemReceived) -> bool:
    """Code 2 (unrecognised IPv6 option) pointing at a Home Address option we sent:
    the peer does not support it.  §11.3.5: the mobile node "SHOULD log the error
    and then discard the ICMP message" -- the daemon logs, the engine discards."""
    return (
        ev.code == 2
        and 40 <= ev.pointer < len(ev.invoking)
        and (ev.invoking[ev.pointer] == HOME_ADDRESS_OPTION)
    )


CorrespondentState = Literal[
    "idle", "testing", "registering", "registered", "leaving", "deregistering", "fallback"
]
CorrespondentEvent = Literal[
    "moved",
    "test",
    "bu_sent",
    "bu_sent_unacknowledged",
    "accepted",
    "stale_tokens",
    "unbound",
    "leave",
    "deregister",
    "forget",
    "fallback",
    "retry",
]

_EVERY_STATE: tuple[CorrespondentState, ...] = (
    "idle",
    "testing",
    "registering",
    "registered",
    "leaving",
    "deregistering",
    "fallback",
)
_SENDING: tuple[CorrespondentState, ...] = ("idle", "testing", "registering", "registered")
"""States a BU (or a new test) can go out from while away."""

TRANSITIONS: dict[tuple[CorrespondentState, CorrespondentEvent], CorrespondentState] = {
    # a new care-of address voids an outstanding BU or de-registration
    ("idle", "moved"): "idle",
    ("testing", "moved"): "testing",
    ("registered", "moved"): "registered",
    ("registering", "moved"): "idle",
    ("leaving", "moved"): "idle",
    ("deregistering", "moved"): "idle",
    # tests for a care-of address the correspondent has no binding for (a
    # refresh keeps its state: the binding stays in use meanwhile; a BU in
    # flight always has its care-of address registered, so never from
    # "registering")
    ("idle", "test"): "testing",
    ("registered", "test"): "testing",
    # the BU, with or without a BA to wait for
    **{(s, "bu_sent"): "registering" for s in _SENDING},
    **{(s, "bu_sent_unacknowledged"): "registered" for s in _SENDING},
    ("registering", "accepted"): "registered",
    ("deregistering", "accepted"): "idle",
    # 136-138: the correspondent still has our previous binding
    ("registering", "stale_tokens"): "registered",
    ("registered", "stale_tokens"): "registered",
    **{(s, "unbound"): "idle" for s in _SENDING},
    # home: de-register what the correspondent has, once the home agent is done
    ("registering", "leave"): "leaving",
    ("registered", "leave"): "leaving",
    ("leaving", "deregister"): "deregistering",
    **{(s, "forget"): "idle" for s in _EVERY_STATE},
    **{(s, "fallback"): "fallback" for s in _EVERY_STATE},
    ("fallback", "retry"): "idle",
}
"""Every state change of a :class:`CorrespondentEntry`; see the module docstring."""


class IllegalTransition(RuntimeError):
    """An event arrived in a state :data:`TRANSITIONS` has no row for (a bug)."""


def optimised_peers(cfg: MnSection) -> tuple[IPv6Address, ...]:
    """Correspondents registered proactively: single-address entries in mode "always"."""
    if not cfg.route_optimization:
        return ()
    return tuple(
        c.prefix.network_address
        for c in cfg.correspondents
        if c.mode == "always" and c.prefix.prefixlen == 128
    )


def traffic_possible(cfg: MnSection) -> bool:
    """Some correspondent may be route-optimised on traffic (the list does not end in a
    catch-all ``never`` before any other mode)."""
    if not cfg.route_optimization:
        return False
    for c in cfg.correspondents:
        if c.mode != "never":
            return True
        if c.prefix.prefixlen == 0:
            return False
    return True


def correspondent_policy(cfg: MnSection, peer: IPv6Address) -> str:
    """``always`` / ``on-traffic`` / ``never`` for ``peer``: the first matching
    ``[[mn.correspondents]]`` entry, else ``on-traffic``; everything ``never`` when
    route optimisation is off, for the home agent and for non-routable addresses."""
    ha = cfg.home_agent
    if (
        not cfg.route_optimization
        or peer == ha
        or peer == cfg.home_address.ip
        or not is_routable_unicast(peer)
    ):
        return "never"
    for c in cfg.correspondents:
        if peer in c.prefix:
            mode = c.mode
            return "on-traffic" if mode == "always" and c.prefix.prefixlen != 128 else mode
    return "on-traffic"


@dataclass(slots=True)
class _Token:
    nonce_index: int
    token: bytes
    received_at: float
    care_of_address: IPv6Address | None = None


class CorrespondentEntry:
    """One correspondent's BUL entry and its return-routability state."""

    def __init__(
        self,
        peer: IPv6Address,
        home_address: IPv6Address,
        cfg: MnSection,
        random_bytes: RandomBytes,
        *,
        dynamic: bool = False,
        fallbacks: int = 0,
        sequence: int | None = None,
    ) -> None:
        self.peer = peer
        self.dynamic = dynamic
        """Created by traffic (on-traffic), not by the configuration (always)."""
        self.fallbacks = fallbacks
        """Fallbacks in a row (no accepted BA between): the back-off's exponent."""
        self.used_at: float | None = None
        """Last time traffic to the correspondent was seen (dynamic entries' refresh)."""
        self.registered_at: float | None = None
        self.retry_at: float | None = None
        self._rate = UpdateRate(rfc6275.MAX_UPDATE_RATE)
        self._held_at: float | None = None
        self.bus_held = 0
        self.home_address = home_address
        self.cfg = cfg
        self._random = random_bytes
        self.state: CorrespondentState = "idle"
        self.sequence = int.from_bytes(random_bytes(2), "big") if sequence is None else sequence
        """Of the last BU sent; a re-created dynamic entry goes on from its predecessor's
        (the correspondent keeps a deleted binding's number for a while, §5.2.8)."""
        self.care_of_address: IPv6Address | None = None
        """The care-of address return routability / the BU runs for."""
        self.registered_care_of: IPv6Address | None = None
        """The care-of address the correspondent has: route optimisation is on."""
        self.expires_at: float | None = None
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.resends = 0
        self.timeout = 0.0
        self._home: _Token | None = None
        self._careof: _Token | None = None
        self._home_cookie: bytes | None = None
        self._careof_cookie: bytes | None = None
        self._sends = {"home": 0, "careof": 0}
        """Sends of each test since its last answer (RR_TRIES of them: no Mobile IPv6)."""
        self._kbm: bytes | None = None
        self._bu_care_of: IPv6Address | None = None
        self._retransmit_at: float | None = None
        self._refresh_at: float | None = None
        self._retry_at: float | None = None
        self._be1 = 0
        self.home_lifetime_left = 0.0
        """Seconds left of the home registration (set by RouteOptimisation.sync)."""

    # ----------------------------------------------------------------- state

    def _to(self, event: CorrespondentEvent) -> None:
        """Take the transition of :data:`TRANSITIONS` for ``event`` in the current state."""
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            raise IllegalTransition(f"{self.peer}: {event!r} in state {self.state!r}")
        self.state = new

    # ----------------------------------------------------------------- views

    def token_age(self, which: str, now: float) -> float | None:
        tok = self._home if which == "home" else self._careof
        return None if tok is None else now - tok.received_at

    def next_timer(self) -> float | None:
        ts = [
            t
            for t in (self._retransmit_at, self._refresh_at, self._retry_at, self._held_at)
            if t is not None
        ]
        if self.registered_care_of is not None and self.expires_at is not None:
            ts.append(self.expires_at)
        return min(ts) if ts else None

    def _fresh(self, tok: _Token | None, now: float, coa: IPv6Address | None = None) -> bool:
        if tok is None or now - tok.received_at >= rfc6275.MAX_TOKEN_LIFETIME - TOKEN_MARGIN:
            return False
        return coa is None or tok.care_of_address == coa

    # ----------------------------------------------------------------- driving

    def run(self, coa: IPv6Address, home_ready: bool, now: float) -> list[Action]:
        """Register ``coa`` (or keep it registered): tests that are due, then the BU.

        ``home_ready``: the home agent has this care-of address, so the HoTI
        can go through the tunnel and the correspondent may be told. Called
        after every change of the home registration, so it sends only what is
        new (a test without an outstanding cookie, the BU once both tokens are
        in hand); retransmissions are the timer's.
        """
        if self.state == "fallback":
            self.care_of_address = coa
            return []
        if coa != self.care_of_address:
            self.care_of_address = coa
            self._careof_cookie = None
            if self.state in ("registering", "deregistering", "leaving"):
                self._retransmit_at = None
            self._to("moved")
        if self.state == "registering" or (
            self.state == "registered" and self.registered_care_of == coa
        ):
            return []
        if self.state == "testing":
            if self._ready(now, home_ready):
                return self._bu(now)
            return self._tests(now, home_ready, resend=False)
        return self._start(now, home_ready)

    def _start(self, now: float, home_ready: bool) -> list[Action]:
        self._refresh_at = None
        self.resends = 0
        self.timeout = self.cfg.timers.initial_bindack_timeout
        if self._ready(now, home_ready):
            return self._bu(now)
        if self.registered_care_of is None:  # a refresh keeps the binding in use meanwhile
            self._to("test")
        out = self._tests(now, home_ready, resend=False)
        self._retransmit_at = now + self.timeout if out else None
        return out

    def _ready(self, now: float, home_ready: bool) -> bool:
        return (
            home_ready
            and self.care_of_address is not None
            and self._fresh(self._home, now)
            and self._fresh(self._careof, now, self.care_of_address)
        )

    def _tests(self, now: float, home_ready: bool, *, resend: bool) -> list[Action]:
        """HoTI / CoTI for each stale token: new ones always, outstanding ones on ``resend``."""
        out: list[Action] = []
        if home_ready and not self._fresh(self._home, now):
            if self._home_cookie is None:
                out.append(self._new_hoti())
            elif resend:
                out.append(self._hoti())
        coa = self.care_of_address
        if coa is not None and not self._fresh(self._careof, now, coa):
            if self._careof_cookie is None:
                self._careof_cookie = self._random(COOKIE_LEN)
                self._sends["careof"] = 0
                out.append(self._coti(coa))
            elif resend:
                out.append(self._coti(coa))
        if out and self._retransmit_at is None:
            self._retransmit_at = now + self.timeout
        return out

    def _new_hoti(self) -> Send:
        self._home_cookie = self._random(COOKIE_LEN)
        self._sends["home"] = 0
        return self._hoti()

    def _hoti(self) -> Send:
        assert self._home_cookie is not None
        self._sends["home"] += 1
        return Send(HomeTestInit(self._home_cookie), self.home_address, self.peer)

    def _coti(self, coa: IPv6Address) -> Send:
        assert self._careof_cookie is not None
        self._sends["careof"] += 1
        return Send(CareofTestInit(self._careof_cookie), coa, self.peer)

    def _unanswered(self) -> bool:
        """A test went out RR_TRIES times without an answer."""
        return (self._home_cookie is not None and self._sends["home"] >= RR_TRIES) or (
            self._careof_cookie is not None and self._sends["careof"] >= RR_TRIES
        )

    def _bu(self, now: float) -> list[Action]:
        """Send the BU for ``care_of_address`` (or a de-registration) with tokens in hand."""
        assert self._home is not None
        wait = self._rate.wait(now)
        if wait > 0:  # §11.8: held; handle_timer sends it when the window opens
            self._held_at = now + wait
            self.bus_held += 1
            return []
        self._rate.sent(now)
        self._held_at = None
        deregister = self.state == "deregistering"
        coa = self.home_address if deregister else self.care_of_address
        assert coa is not None
        if deregister:
            kbm = rr.binding_management_key(self._home.token)
            indices = NonceIndices(self._home.nonce_index, 0)
            units = 0
        else:
            assert self._careof is not None
            kbm = rr.binding_management_key(self._home.token, self._careof.token)
            indices = NonceIndices(self._home.nonce_index, self._careof.nonce_index)
            units = lifetime_units(self._lifetime(now))
            if units == 0:
                return []
        self.sequence = (self.sequence + 1) & 0xFFFF
        ack = deregister or self.cfg.cn_binding_ack
        flags = int(BUFlag.A) if ack else 0
        unsigned = BindingUpdate(self.sequence, flags, units, (indices, BindingAuthorizationData()))
        auth = rr.authenticator(kbm, coa, self.peer, rr.mh_data(unsigned.encode()))
        bu = BindingUpdate(self.sequence, flags, units, (indices, BindingAuthorizationData(auth)))
        self._kbm = kbm
        self._bu_care_of = coa
        self._home_cookie = self._careof_cookie = None
        self._retransmit_at = None
        if deregister:
            self._retransmit_at = now + self.timeout
            return [Send(bu, self.home_address, self.peer)]
        granted = units * 4
        if ack:
            self._to("bu_sent")
            self._retransmit_at = now + self.timeout
        else:  # no BA will come: the BU is the registration (§11.7.2)
            self._to("bu_sent_unacknowledged")
            self._registered(granted, now)
        self.registered_care_of = coa  # route-optimise from now on: the state is in place first
        self.expires_at = now + granted
        return [Send(bu, coa, self.peer, self.home_address)]

    def _lifetime(self, now: float) -> float:
        """≤ max_cn_binding_lifetime and ≤ what is left of the home registration (§11.7.2)."""
        return min(self.cfg.max_cn_binding_lifetime, self.home_lifetime_left)

    def _registered(self, granted: int, now: float) -> None:
        """The correspondent has the binding for ``granted`` seconds: refresh at 75 %."""
        self.registered_at = now
        self.expires_at = now + granted
        self._refresh_at = now + granted * REFRESH_FRACTION
        self._retransmit_at = None
        self.resends = 0

    def leave(self) -> None:
        """Back on the home link: route optimisation off now, de-register once the
        home agent has let the home address go (``leaving`` until then)."""
        had = self.registered_care_of is not None or self.state in ("registering", "registered")
        self.care_of_address = None
        self.registered_care_of = None
        self.expires_at = None
        self._refresh_at = self._retransmit_at = None
        self._home_cookie = self._careof_cookie = None
        if self.state == "fallback":
            return
        self._to("leave" if had else "unbound")

    def deregister(self, now: float) -> list[Action]:
        """At home: tell the correspondent to drop the binding (lifetime 0 from home)."""
        if self.state != "leaving":
            return []
        self._to("deregister")
        self.resends = 0
        self.timeout = self.cfg.timers.initial_bindack_timeout
        return self._deregistration(now)

    def _deregistration(self, now: float) -> list[Action]:
        """The lifetime-0 BU when the home token is fresh, else a new Home Test first."""
        if self._fresh(self._home, now):
            return self._bu(now)
        self._retransmit_at = now + self.timeout
        return [self._new_hoti()]

    def drop(self) -> None:
        """Forget the binding without signalling (home registration lost)."""
        self._clear()
        self._to("forget")

    def _clear(self) -> None:
        """No binding, no care-of address, nothing outstanding (the state is the caller's)."""
        self.registered_care_of = None
        self.expires_at = None
        self.care_of_address = None
        self._retransmit_at = self._refresh_at = None
        self._home_cookie = self._careof_cookie = None

    def _fallback(self, reason: str, now: float) -> None:
        self._clear()
        self._to("fallback")
        self.last_error = reason
        hold = min(FALLBACK_HOLD * 2**self.fallbacks, MAX_FALLBACK_HOLD)
        self.fallbacks += 1
        self._retry_at = self.retry_at = now + hold

    # ----------------------------------------------------------------- messages

    def home_test(self, msg: HomeTest, now: float, home_ready: bool) -> list[Action]:
        if self._home_cookie is None or msg.home_init_cookie != self._home_cookie:
            return []
        self._home = _Token(msg.home_nonce_index, msg.home_keygen_token, now)
        self._home_cookie = None
        self._sends["home"] = 0
        return self._answered(now, home_ready)

    def careof_test(self, msg: CareofTest, now: float, home_ready: bool) -> list[Action]:
        if self._careof_cookie is None or msg.careof_init_cookie != self._careof_cookie:
            return []
        self._careof = _Token(
            msg.careof_nonce_index, msg.careof_keygen_token, now, self.care_of_address
        )
        self._careof_cookie = None
        self._sends["careof"] = 0
        return self._answered(now, home_ready)

    def _answered(self, now: float, home_ready: bool) -> list[Action]:
        if self.state == "deregistering":
            return self._bu(now) if self._fresh(self._home, now) else []
        if self._ready(now, home_ready):
            return self._bu(now)
        return []

    def acknowledgement(
        self, ev: Received, ba: BindingAcknowledgement, now: float, home_ready: bool
    ) -> list[Action]:
        if self.state not in ("registering", "deregistering", "registered"):
            return []
        if ba.status != BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW and ba.sequence != self.sequence:
            return []
        if ba.status not in (136, 137, 138) and not self._authentic(ev, ba):
            return []  # §11.7.3: without an authenticator that verifies, a BA is ignored
        self.last_status = ba.status
        if ba.status < 128:
            self._be1 = 0
            self.fallbacks = 0
            if self.state == "deregistering":
                self._clear()
                self._to("accepted")
                return []
            if self.state == "registering":
                self._to("accepted")
                self._registered(ba.lifetime_seconds, now)
            return []
        if ba.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW:
            self.sequence = ba.sequence  # §11.7.3: go on from the correspondent's
            if self.state == "registered" and self.registered_care_of is not None:
                # the refused BU had A=0 (it counted as the registration): send it again
                if self._ready(now, home_ready):
                    return self._bu(now)
                return self._start(now, home_ready)
            return self._resend(now, home_ready)
        if ba.status in (136, 137, 138):
            if ba.status in (136, 138):
                self._home = None
            if ba.status in (137, 138):
                self._careof = None
            if self.state == "deregistering":
                return [self._new_hoti()]
            self._to("unbound" if self.registered_care_of is None else "stale_tokens")
            return self._start(now, home_ready)
        self._fallback(f"refused with status {ba.status}", now)
        return []

    def _authentic(self, ev: Received, ba: BindingAcknowledgement) -> bool:
        if self._kbm is None or self._bu_care_of is None or ba.authorization_data is None:
            return False
        raw = ev.raw if ev.raw is not None else encode_mh(ba)
        return rr.BindingAuthenticator(self._kbm).verify(raw, self._bu_care_of, self.peer)

    def refresh_request(self, now: float, home_ready: bool) -> list[Action]:
        """BRR (§11.7.4): the correspondent uses the binding -- re-register."""
        if self.state != "registered":
            return []
        self.used_at = now
        return self._start(now, home_ready)

    def binding_error(self, status: int, now: float, home_ready: bool) -> list[Action]:
        """BE 1: the correspondent lost our binding; BE 2: it does not know the MH type."""
        if status == 2:
            self._fallback("binding error 2: the correspondent does not do route optimisation", now)
            return []
        if status != 1 or self.registered_care_of is None:
            return []
        self._be1 += 1
        if self._be1 >= BE1_TRIES:
            self._fallback("binding error 1 repeatedly: the correspondent keeps no binding", now)
            return []
        coa = self.care_of_address
        self.drop()
        self.last_error = "binding error 1: registering again"
        if coa is None:
            return []
        self.care_of_address = coa
        return self._start(now, home_ready)

    # ----------------------------------------------------------------- timers

    def handle_timer(self, now: float, home_ready: bool) -> list[Action]:
        out: list[Action] = []
        if self._held_at is not None and self._held_at <= now:
            self._held_at = None
            if self.state == "deregistering":
                if self._fresh(self._home, now):
                    out += self._bu(now)
            elif self.state in ("idle", "testing", "registered") and self._ready(now, home_ready):
                out += self._bu(now)
        if self._retry_at is not None and self._retry_at <= now:
            self._retry_at = self.retry_at = None
            if self.state == "fallback":
                self._to("retry")
                self._be1 = 0
        if (
            self.registered_care_of is not None
            and self.expires_at is not None
            and self.expires_at <= now
        ):
            self.registered_care_of = None
            self.expires_at = None
            self._to("unbound")
        if self._retransmit_at is not None and self._retransmit_at <= now:
            out += self._resend(now, home_ready, timer=True)
        if self._refresh_at is not None and self._refresh_at <= now:
            self._refresh_at = None
            if self.idle_since_registered():
                return out  # traffic-triggered and unused: let the binding run out
            out += self._start(now, home_ready)
        return out

    def idle_since_registered(self) -> bool:
        """A dynamic entry nobody sent to since it registered (not worth a refresh)."""
        return self.dynamic and (
            self.used_at is None
            or (self.registered_at is not None and self.used_at < self.registered_at)
        )

    def _resend(self, now: float, home_ready: bool, *, timer: bool = False) -> list[Action]:
        limit = self.cfg.max_cn_consecutive_resends
        if timer:
            self.resends += 1
            self.timeout = min(self.timeout * 2, self.cfg.timers.max_bindack_timeout)
        outstanding_tests = self._home_cookie is not None or self._careof_cookie is not None
        if outstanding_tests:
            if self._unanswered():
                if self.state == "deregistering":
                    self.drop()  # the correspondent's entry expires by itself
                    return []
                self._fallback("no answer to return routability: no Mobile IPv6 there", now)
                return []
            self._retransmit_at = now + self.timeout
            if self.state == "deregistering":
                return [self._hoti()]
            return self._tests(now, home_ready, resend=True)
        if limit and self.resends > limit:
            if self.state == "deregistering":
                self.drop()
                return []
            self._fallback(f"no Binding Acknowledgement after {limit} retransmissions", now)
            return []
        if self.state == "deregistering":
            return self._deregistration(now)
        if self.state != "registering":
            self._retransmit_at = None
            return []
        if self._ready(now, home_ready):
            return self._bu(now)
        return self._start(now, home_ready)


class RouteOptimisation:
    """The mobile node's correspondent registrations; see the module docstring."""

    def __init__(
        self,
        cfg: MnSection,
        *,
        enabled: bool,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        self.enabled = enabled
        self._random = random_bytes
        self.entries: dict[IPv6Address, CorrespondentEntry] = {}
        self._announced: tuple[tuple[IPv6Address, IPv6Address], ...] = ()
        self._fallbacks: dict[IPv6Address, int] = {}
        self._sequences: dict[IPv6Address, int] = {}
        #: route optimisations started by traffic, and triggers over MAX_DYNAMIC
        self.triggered = 0
        self.dropped_triggers = 0
        self.configure(cfg)

    def configure(self, cfg: MnSection) -> None:
        self.cfg = cfg
        self.home_address = cfg.home_address.ip
        wanted = set(optimised_peers(cfg)) if self.enabled else set()
        for peer in list(self.entries):
            e = self.entries[peer]
            keep = peer in wanted or (
                self.enabled and e.dynamic and correspondent_policy(cfg, peer) != "never"
            )
            if not keep:
                e.drop()
                del self.entries[peer]
                self._remember(peer, e)
            else:
                e.cfg = cfg
                e.dynamic = peer not in wanted
        for peer in wanted:
            if peer not in self.entries:
                self.entries[peer] = CorrespondentEntry(
                    peer,
                    self.home_address,
                    cfg,
                    self._random,
                    fallbacks=self._fallbacks.pop(peer, 0),
                    sequence=self._sequences.pop(peer, None),
                )

    def policy(self, peer: IPv6Address) -> str:
        """``always`` / ``on-traffic`` / ``never`` for ``peer`` (see correspondent_policy)."""
        return correspondent_policy(self.cfg, peer) if self.enabled else "never"

    # ----------------------------------------------------------------- traffic

    def traffic(self, peer: IPv6Address, home: MobileNode, now: float) -> list[Action]:
        """The home address sent to ``peer`` through the home agent (XFRM ACQUIRE).

        Starts return routability for an on-traffic correspondent the node has no
        entry for, or one whose entry is idle; a correspondent in fallback (no
        Mobile IPv6 there) is left alone until its back-off ends.
        """
        if self.policy(peer) == "never":
            return []
        e = self.entries.get(peer)
        if e is None:
            if sum(1 for x in self.entries.values() if x.dynamic) >= MAX_DYNAMIC:
                self.dropped_triggers += 1
                return []
            e = CorrespondentEntry(
                peer,
                self.home_address,
                self.cfg,
                self._random,
                dynamic=True,
                fallbacks=self._fallbacks.pop(peer, 0),
                sequence=self._sequences.pop(peer, None),
            )
            self.entries[peer] = e
        e.used_at = now
        coa = home.care_of_address
        if e.state != "idle" or coa is None or home.state == "failed":
            return []
        self.triggered += 1
        return self._announce(e.run(coa, _home_ready(home), now))

    def used(self, peer: IPv6Address, now: float) -> None:
        """Route-optimised traffic to ``peer`` was seen (kernel state counters)."""
        e = self.entries.get(peer)
        if e is not None:
            e.used_at = now

    def _prune(self) -> None:
        """Dynamic entries with nothing registered or outstanding go; a fallback count
        is remembered (bounded) so traffic cannot cut a back-off short."""
        for peer, e in list(self.entries.items()):
            if not e.dynamic or e.state != "idle" or e.next_timer() is not None:
                continue
            del self.entries[peer]
            self._remember(peer, e)

    def _remember(self, peer: IPv6Address, e: CorrespondentEntry) -> None:
        if e.fallbacks:
            self._fallbacks[peer] = e.fallbacks
        self._sequences[peer] = e.sequence
        for memory in (self._fallbacks, self._sequences):
            while len(memory) > MAX_REMEMBERED:
                del memory[next(iter(memory))]

    # ----------------------------------------------------------------- from the home registration

    def sync(self, home: MobileNode, now: float) -> list[Action]:
        """Follow the home registration: run, move, de-register or drop each entry."""
        out: list[Action] = []
        coa = home.care_of_address
        ready = _home_ready(home)
        left = max(0.0, (home.expires_at or now) - now) if ready else 0.0
        for e in self.entries.values():
            e.home_lifetime_left = left
            if coa is None:  # at home (or home registration given up below)
                if home.state in ("home", "deregistering"):
                    if e.state not in ("leaving", "deregistering"):
                        e.leave()
                    if home.state == "home":
                        out += e.deregister(now)
                else:
                    e.drop()
            elif home.state == "failed":
                e.drop()
            elif e.dynamic and e.state == "idle":
                continue  # waits for traffic
            else:
                if e.registered_care_of is not None and e.registered_care_of != coa:
                    e.registered_care_of = None  # the old care-of address is gone: tunnel
                    e.expires_at = None
                out += e.run(coa, ready, now)
        return self._announce(out)

    def _announce(self, out: list[Action]) -> list[Action]:
        self._prune()
        current = tuple(
            sorted(
                (e.peer, e.registered_care_of)
                for e in self.entries.values()
                if e.registered_care_of is not None
            )
        )
        if current == self._announced:
            return out
        self._announced = current
        return [RouteOptimisationChanged(self.home_address, current), *out]

    # ----------------------------------------------------------------- messages

    def received(self, ev: Received, home: MobileNode, now: float) -> list[Action]:
        """HoT, CoT, and BA / BRR / BE from a correspondent."""
        e = self.entries.get(ev.src)
        if e is None:
            return []
        msg = ev.message
        ready = _home_ready(home) or home.state == "home"
        out: list[Action]
        t = type(msg)
        if t is HomeTest:
            if ev.dst != self.home_address or ev.home_address_option is not None:
                return []
            out = e.home_test(msg, now, ready)  # type: ignore[arg-type]
        elif t is CareofTest:
            if ev.dst != e.care_of_address:
                return []
            out = e.careof_test(msg, now, ready)  # type: ignore[arg-type]
        elif t is BindingAcknowledgement:
            out = e.acknowledgement(ev, msg, now, ready)  # type: ignore[arg-type]
        elif t is BindingRefreshRequest:
            out = e.refresh_request(now, ready)
        elif t is BindingError:
            be: BindingError = msg  # type: ignore[assignment]
            if be.home_address not in (self.home_address, IPv6Address(0)):
                return []
            out = e.binding_error(be.status, now, ready)
        else:
            return []
        return self._announce(out)

    def parameter_problem(self, ev: ParameterProblemReceived, now: float) -> list[Action]:
        """§11.3.5: "unrecognised Next Header" 135 from a correspondent → tunnel only."""
        data = ev.invoking
        if home_address_option_refused(ev):
            return []  # discarded, nothing changes (§11.3.5)
        if ev.code != 1 or len(data) < 40 or not 6 <= ev.pointer < len(data):
            return []
        if data[ev.pointer] != IPPROTO_MH:
            return []
        e = self.entries.get(IPv6Address(data[24:40]))
        if e is None or e.state == "fallback":
            return []
        e._fallback("ICMP Parameter Problem: the correspondent does not know Mobile IPv6", now)
        return self._announce([])

    # ----------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        ts = [t for e in self.entries.values() if (t := e.next_timer()) is not None]
        return min(ts) if ts else None

    def handle_timer(self, home: MobileNode, now: float) -> list[Action]:
        ready = _home_ready(home) or home.state == "home"
        out: list[Action] = []
        for e in self.entries.values():
            due = e.next_timer()
            if due is not None and due <= now:
                out += e.handle_timer(now, ready)
        return self._announce(out)

    def status(self, now: float) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """(BUL rows, return-routability rows) for ``mip6ctl status``."""
        bul: list[dict[str, object]] = []
        rrs: list[dict[str, object]] = []
        for e in self.entries.values():
            bul.append(
                {
                    "peer": e.peer,
                    "home_address": e.home_address,
                    "care_of_address": e.registered_care_of or e.care_of_address,
                    "state": e.state,
                    "trigger": "on-traffic" if e.dynamic else "always",
                    "expires_at": e.expires_at,
                    "sequence": e.sequence,
                    "retransmissions": e.resends,
                    "last_status": e.last_status,
                }
            )
            rrs.append(
                {
                    "peer": e.peer,
                    "state": e.state,
                    "home_token_age_s": e.token_age("home", now),
                    "care_of_token_age_s": e.token_age("careof", now),
                    "last_error": e.last_error,
                    "retry_in_s": None if e.retry_at is None else max(0.0, e.retry_at - now),
                    "fallbacks": e.fallbacks,
                }
            )
        return bul, rrs


def _home_ready(home: MobileNode) -> bool:
    """The home agent has the current care-of address (registered, or refreshing it)."""
    return (
        home.care_of_address is not None
        and home.registered_care_of == home.care_of_address
        and home.state in ("registered", "registering")
    )
