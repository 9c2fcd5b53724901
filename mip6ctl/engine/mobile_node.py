"""Mobile node: the binding update list entry for the home registration (§11.7.1, §11.5.4).

Theory of operation
===================

One Binding Update List (BUL) entry, for the home agent, as a small state
machine whose transitions are the table ``_TRANSITIONS[(state, input)]``:

=============  ==========================  ==============================
state          input                       → action, new state
=============  ==========================  ==============================
home/away      CareOfAddressChanged(coa)   send BU, ``registering``
registering    BA accepted                 ``registered`` (refresh timer)
registering    BA 135                      BU with BA's sequence + 1
registering    BA other error              stop, ``failed``
registering    retransmit timer            BU with a new sequence, timeout×2
registered     refresh timer / BRR         BU, ``registering``
any but home   AtHome                      de-registration BU, ``deregistering``
deregistering  BA accepted                 ``home``
=============  ==========================  ==============================

Retransmission (§11.8): the first BU of a first home registration waits
``initial_bindack_timeout_first_registration`` (1.5 s), any other
``initial_bindack_timeout`` (1 s); each retransmission doubles it, capped at
``max_bindack_timeout`` (32 s), and carries a new sequence number. After
``max_ha_consecutive_resends`` retransmissions (0 = forever) the entry gives up
(``failed``). A registration is refreshed at the Binding Refresh Advice
interval when the BA carried one (and it is shorter than the lifetime), else
at 75 % of the granted lifetime.

Rate limit (§11.8): every BU to the home agent passes :class:`~.common.UpdateRate`
(``MAX_UPDATE_RATE`` a second); one over it is *held* and sent, with a new
sequence number, when the window opens -- a home agent answering every BU with
135, or a link that flaps, cannot make the node flood it.

Returning home (§11.5.5): the home address is claimed on the home link
(:class:`~.events.AdvertiseHomeAddress`, unsolicited Neighbor Advertisements)
only once the home agent stopped defending it: after the de-registration's BA
(or a refusal, which means it holds no binding), or at once when there was no
binding to remove. A Binding Error 1 from the home agent (it lost our binding,
§11.3.6) starts a new registration.

BUs go from the care-of address to the home agent with a Home Address option
and (``use_alternate_care_of_address``) an Alternate Care-of Address option.
The de-registration from home goes from the home address, care-of = home
address, lifetime 0, without a Home Address option. With ``home_agent =
"dhaad"`` (§11.4.1) the first registration away from home starts with a DHAAD
Request from the care-of address to the Home-Agents anycast address
(retransmitted after 3, 6, 12, 24 s); the reply's first home agent is used
(:class:`~.events.HomeAgentChosen`), and when it does not answer after
``max_ha_consecutive_resends`` or refuses, the next one, then discovery again.
A home agent that comes back later does not take the node back: it stays with
the one it is registered with. A mobile router (RFC 3963)
sets R and, in explicit mode, lists its prefixes as Mobile Network Prefix
options; an accepting BA without R means only the home address is forwarded
(``mobile_router_accepted`` False).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from ipaddress import IPv6Address

from mip6ctl import rfc6275
from mip6ctl.config.model import MnSection
from mip6ctl.wire.icmp6 import HomeAgentAddressDiscoveryReply
from mip6ctl.wire.mh import (
    BAStatus,
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    lifetime_units,
)
from mip6ctl.wire.mobopts import AlternateCareofAddress, MobileNetworkPrefix, MobilityOption

from .binding import compatible_link_local
from .common import UpdateRate
from .discovery import DhaadClient, SendRequest
from .events import (
    Action,
    AdvertiseHomeAddress,
    AtHome,
    CareOfAddressChanged,
    HomeAgentChosen,
    Received,
    Send,
    SendDhaadRequest,
)

__all__ = ["MobileNode"]

REFRESH_FRACTION = 0.75


class MobileNode:
    """The home registration's BUL entry; see the module docstring."""

    def __init__(
        self,
        cfg: MnSection,
        now: float,
        *,
        first_sequence: int = 0,
        protected_signalling: bool = False,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.state = "home"
        self._random_bytes = random_bytes
        #: ``home_agent = "dhaad"``: the discovery and the home agents it found (§11.4.1)
        self.dhaad: DhaadClient | None = None
        self.home_agent: IPv6Address | None = None
        self.sequence = first_sequence & 0xFFFF
        """Sequence number of the last BU sent."""
        self.care_of_address: IPv6Address | None = None
        self.link_local: IPv6Address | None = None
        """The link-local address on the care-of interface (the L bit's test)."""
        self.registered_care_of: IPv6Address | None = None
        """The care-of address the home agent accepted last (None: no binding there)."""
        self.last_status: int | None = None
        self.registered_lifetime = 0
        self.expires_at: float | None = None
        self.timeout = 0.0
        self.resends = 0
        self._retransmit_at: float | None = None
        self._refresh_at: float | None = None
        self._ha_has_binding = False
        self._rate = UpdateRate(rfc6275.MAX_UPDATE_RATE)
        self._held_at: float | None = None
        #: BUs held back by the rate limit (status)
        self.bus_held = 0
        #: BAs from the home agent ignored for lacking the configured IPsec protection
        self.bas_unprotected = 0
        self.last_error: str | None = None
        #: a mobile router's last accepted BA had R = 1 (None: none yet, or no router)
        self.mobile_router_accepted: bool | None = None
        self.configure(cfg, protected_signalling=protected_signalling)

    def configure(self, cfg: MnSection, *, protected_signalling: bool = False) -> None:
        """Take a configuration generation.

        ``protected_signalling``: an IPsec template puts BU/BA under ESP, so a BA
        from the home agent that did not come through it is ignored (§11.7.3)."""
        self.cfg = cfg
        self.protected_signalling = protected_signalling
        self.home_address: IPv6Address = cfg.home_address.ip
        ha = cfg.home_agent
        if isinstance(ha, IPv6Address):
            self.home_agent = ha
            self.dhaad = None
        elif self.dhaad is None or self.dhaad.home_prefix != cfg.home_address.network:
            # "dhaad": a home agent found before this generation stays (RFC 6275 leaves
            # when to rediscover to the node: at a failure, or at home with reset)
            self._new_discovery()

    def _new_discovery(self) -> None:
        self.dhaad = DhaadClient(self.cfg.home_address.network, random_bytes=self._random_bytes)
        self.home_agent = None

    # ----------------------------------------------------------------- inputs

    def handle(self, event: CareOfAddressChanged | AtHome, now: float) -> list[Action]:
        """Movement detection input."""
        if type(event) is CareOfAddressChanged:
            if event.care_of_address == self.home_address:
                return self._at_home(now)
            if event.care_of_address == self.care_of_address and self.state in (
                "registering",
                "registered",
            ):
                return []
            self.care_of_address = event.care_of_address
            self.link_local = event.link_local
            return self._register(now)
        return self._at_home(now)

    def dhaad_reply(self, reply: HomeAgentAddressDiscoveryReply, now: float) -> list[Action]:
        """§11.4.1: a reply to our request names the home agents, best first; register
        with the first (the others are the fallbacks)."""
        if self.dhaad is None or not self.dhaad.reply(reply):
            return []
        self.home_agent = self.dhaad.current()
        self._ha_has_binding = False
        return [HomeAgentChosen(self.home_agent), *self._register(now)]

    def _discover(self, now: float) -> list[Action]:
        assert self.dhaad is not None
        if self.care_of_address is None or self.dhaad.due is not None:
            return []  # not away, or a request is already out
        self.state = "discovering"
        return self._requests(self.dhaad.start(now))

    def _requests(self, sends: list[SendRequest]) -> list[Action]:
        if self.care_of_address is None:
            return []
        return [SendDhaadRequest(self.care_of_address, r.destination, r.request) for r in sends]

    def _next_home_agent(self, now: float, why: str) -> list[Action]:
        """The current home agent failed: the next one found, else discover again."""
        assert self.dhaad is not None
        failed = self.home_agent
        sends = self.dhaad.give_up_on_current(now)
        self.home_agent = self.dhaad.current()
        self._ha_has_binding = False
        self.registered_care_of = None
        self.last_error = f"{why} from {failed}; " + (
            f"trying {self.home_agent}" if self.home_agent else "discovering again"
        )
        if self.home_agent is not None:
            return [HomeAgentChosen(self.home_agent), *self._register(now)]
        self.state = "discovering"
        return [HomeAgentChosen(None), *self._requests(sends)]

    def received(self, ev: Received, now: float) -> list[Action]:
        """A BA or BRR from the home agent (others are not this entry's business)."""
        if self.home_agent is None or ev.src != self.home_agent:
            return []
        msg = ev.message
        if type(msg) is BindingRefreshRequest:
            return self._register(now) if self.state == "registered" else []
        if type(msg) is BindingError:
            return self._binding_error(msg, now)
        if type(msg) is not BindingAcknowledgement:
            return []
        if self.protected_signalling and not ev.ipsec_protected:
            self.bas_unprotected += 1  # §11.7.3: "silently ignored"
            return []
        if msg.status == 135:  # carries the HA's last accepted sequence, not ours
            return self._ba_135(msg, now)
        if msg.sequence != self.sequence:
            return []
        handler = _TRANSITIONS.get((self.state, "ba_ok" if msg.accepted else "ba_error"))
        return handler(self, msg, now) if handler is not None else []

    # ----------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        """Retransmission, refresh or held-BU time."""
        ts = [t for t in (self._retransmit_at, self._refresh_at, self._held_at) if t is not None]
        if self.dhaad is not None and self.dhaad.due is not None:
            ts.append(self.dhaad.due)
        return min(ts) if ts else None

    def handle_timer(self, now: float) -> list[Action]:
        """Send a held BU, retransmit (backoff) or refresh, whichever is due."""
        d = self.dhaad
        if d is not None and d.due is not None and d.due <= now:
            out = self._requests(d.timer(now))
            if d.failed:
                self.state = "failed"
                self.last_error = (
                    f"no DHAAD Reply after {d.retries} retransmissions (RFC 6275 §11.4.1)"
                )
            return out
        if self._held_at is not None and self._held_at <= now:
            self._held_at = None
            return self._send(now)
        if self._retransmit_at is not None and self._retransmit_at <= now:
            limit = self.cfg.max_ha_consecutive_resends
            if limit and self.resends >= limit:
                self._retransmit_at = None
                leaving = self.state == "deregistering"
                why = f"no Binding Acknowledgement after {limit} retransmissions"
                if self.dhaad is not None and not leaving:
                    return self._next_home_agent(now, why)
                self.state = "failed"
                self.last_error = why
                # the home agent is unreachable: claim the home address anyway
                return [AdvertiseHomeAddress(self.home_address)] if leaving else []
            self.resends += 1
            self.timeout = min(self.timeout * 2, self.cfg.timers.max_bindack_timeout)
            return self._send(now)
        if self._refresh_at is not None and self._refresh_at <= now:
            self._refresh_at = None
            return self._register(now)
        return []

    # ----------------------------------------------------------------- transitions

    def _register(self, now: float) -> list[Action]:
        if self.care_of_address is None:
            return []
        if self.home_agent is None:
            return self._discover(now) if self.dhaad is not None else []
        t = self.cfg.timers
        first = not self._ha_has_binding
        self.timeout = (
            t.initial_bindack_timeout_first_registration if first else (t.initial_bindack_timeout)
        )
        self.resends = 0
        self.state = "registering"
        self._refresh_at = None
        return self._send(now)

    def _at_home(self, now: float) -> list[Action]:
        self.care_of_address = None
        self._refresh_at = None
        self._held_at = None
        if not self._ha_has_binding and self.state != "registering":
            self.state = "home"
            self._retransmit_at = None
            return [AdvertiseHomeAddress(self.home_address)]
        if not self.cfg.return_home or self.home_agent is None:
            self.state = "home"
            self._retransmit_at = None
            return [AdvertiseHomeAddress(self.home_address)]
        self.state = "deregistering"
        self.timeout = self.cfg.timers.initial_bindack_timeout
        self.resends = 0
        return self._send(now)

    def _accepted(self, ba: BindingAcknowledgement, now: float) -> list[Action]:
        self.last_status = ba.status
        self._retransmit_at = None
        self._ha_has_binding = True
        self.registered_care_of = self.care_of_address
        self.state = "registered"
        self.registered_lifetime = ba.lifetime_seconds
        self.expires_at = now + ba.lifetime_seconds
        if self.cfg.mobile_router:
            # RFC 3963: R = 0 in the BA -- registered as a mobile *host* only;
            # the home agent will not forward the mobile network prefixes
            self.mobile_router_accepted = ba.mobile_router
            if not ba.mobile_router:
                self.last_error = (
                    "the home agent accepted the home address but not mobile router "
                    "operation (BA without the R flag): the mobile network is not forwarded"
                )
        refresh = ba.lifetime_seconds * REFRESH_FRACTION
        advice = ba.refresh_advice
        if advice is not None and 0 < advice.refresh_interval_seconds < ba.lifetime_seconds:
            refresh = advice.refresh_interval_seconds
        self._refresh_at = now + refresh
        return []

    def _deregistered(self, ba: BindingAcknowledgement, now: float) -> list[Action]:
        self.last_status = ba.status
        self._retransmit_at = None
        self._ha_has_binding = False
        self.registered_care_of = None
        self.state = "home"
        self.expires_at = None
        out: list[Action] = [AdvertiseHomeAddress(self.home_address)]  # §11.5.5
        if self.dhaad is not None and self.cfg.reset_dhaad_at_home:  # UMIP MnResetDhaadAtHome
            self._new_discovery()
            out.append(HomeAgentChosen(None))
        return out

    def _refused(self, ba: BindingAcknowledgement, now: float) -> list[Action]:
        leaving = self.state == "deregistering"
        self.last_status = ba.status
        why = f"refused with status {ba.status}{_status_name(ba.status)}"
        self.last_error = why
        self._retransmit_at = None
        self.registered_care_of = None
        self.state = "failed"
        if leaving:  # e.g. 133: the home agent holds no binding, nothing defends the address
            self._ha_has_binding = False
            return [AdvertiseHomeAddress(self.home_address)]
        if self.dhaad is not None:  # a discovered home agent refused: try the next one
            return self._next_home_agent(now, why)
        return []

    def _binding_error(self, be: BindingError, now: float) -> list[Action]:
        """§11.3.6: status 1 from the home agent -- it has no binding for our home
        address any more -- means register again; status 2 is only recorded."""
        if be.home_address not in (self.home_address, IPv6Address(0)):
            return []
        self.last_error = f"binding error {be.status} from the home agent"
        if be.status == 1 and self.state == "registered":
            self._ha_has_binding = False
            return self._register(now)
        return []

    def _ba_135(self, ba: BindingAcknowledgement, now: float) -> list[Action]:
        """§11.7.1: resend at once using the HA's last accepted sequence + 1."""
        if self.state not in ("registering", "deregistering"):
            return []
        self.last_status = ba.status
        self.sequence = ba.sequence  # _send adds one
        return self._send(now)

    def _send(self, now: float) -> list[Action]:
        assert self.home_agent is not None
        wait = self._rate.wait(now)
        if wait > 0:  # §11.8: held, not dropped; the timer sends it
            self._held_at = now + wait
            self._retransmit_at = None
            self.bus_held += 1
            return []
        self._rate.sent(now)
        self._held_at = None
        self.sequence = (self.sequence + 1) & 0xFFFF
        self._retransmit_at = now + self.timeout
        flags = BUFlag.A | BUFlag.H
        if self.cfg.key_management_mobility:
            flags |= BUFlag.K
        if self.cfg.mobile_router:
            flags |= BUFlag.R
        if self.link_local is not None and self.link_local == compatible_link_local(
            self.home_address
        ):  # §11.7.1: L "MUST be set" when the interface identifiers agree
            flags |= BUFlag.L
        if self.state == "deregistering":
            bu = BindingUpdate(self.sequence, int(flags), 0)
            return [Send(bu, self.home_address, self.home_agent)]
        assert self.care_of_address is not None
        options: tuple[MobilityOption, ...] = ()
        if self.cfg.use_alternate_care_of_address:
            options = (AlternateCareofAddress(self.care_of_address),)
        if self.cfg.mobile_router and self.cfg.explicit_mode:  # RFC 3963
            options += tuple(
                MobileNetworkPrefix(p.prefixlen, p.network_address)
                for p in self.cfg.mobile_network_prefixes
            )
        units = lifetime_units(self.cfg.max_ha_binding_lifetime)
        bu = BindingUpdate(self.sequence, int(flags), units, options)
        return [Send(bu, self.care_of_address, self.home_agent, self.home_address)]


def _status_name(status: int) -> str:
    try:
        return f" ({BAStatus(status).name.lower().replace('_', ' ')})"
    except ValueError:
        return ""


_Transition = Callable[[MobileNode, BindingAcknowledgement, float], list[Action]]
_TRANSITIONS: dict[tuple[str, str], _Transition] = {
    ("registering", "ba_ok"): MobileNode._accepted,
    ("registering", "ba_error"): MobileNode._refused,
    ("deregistering", "ba_ok"): MobileNode._deregistered,
    ("deregistering", "ba_error"): MobileNode._refused,
}
