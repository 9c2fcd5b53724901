"""Home agent: Binding Updates with H=1 (RFC 6275 §10.3.1, RFC 3963 §6.1).

Theory of operation
===================

The home agent is a sans-I/O state machine over the shared
:class:`~.binding.BindingCache`. It never touches a socket, a clock or the
kernel; every call takes ``now`` and returns a list of actions
(:mod:`.events`) for the daemon to execute in order.

A home registration BU is judged by the ordered rule table ``_CHECKS`` (one
small function per rule, first verdict wins, :func:`~.bu_checks.judge`),
which is §10.3.1 in the RFC's order. Rules marked *shared* are the
correspondent's too (:mod:`.bu_checks`); steps 2–4a are the admission policy
(:mod:`.admission`), which also decides the bindings a reload or a restart
keeps:

====  =====================================================  =============
step  rule                                                   verdict
====  =====================================================  =============
1     IPsec required by configuration, packet not protected  silent discard
1a    home / care-of address not routable unicast (shared)   silent discard
2     home address not on a home prefix (admission)          BA 132
3     node not allowed (not listed and default deny) (adm.)  BA 129
4a    R=1, mobile routers not accepted or node not one (a.)  BA 140
4b    prefix invalid (141) or not the node's (142)           BA 141/142
5     existing entry is a correspondent registration (sh.)   BA 139
6     sequence number not newer than the entry's (shared)    BA 135 (last seq)
7     de-registration without a home registration entry      BA 133
====  =====================================================  =============

(H=1 arriving at a node that is not a home agent, BA 131, is decided before
dispatch by :class:`~.engine.Engine`, which also routes H=0 to the
correspondent.)

A BU that passes is one of three transitions, one function each:

- ``_deregister``: lifetime 0 or care-of = home address → remove the entry.
- ``_start_dad``: first registration with DAD configured → emit
  :class:`StartDad` and park the BU; ``dad_result(ok=False)`` answers BA 134,
  ``ok=True`` runs the BU again with DAD done.
- ``_register``: grant ``min(requested, ha.max_binding_lifetime, node max,
  home prefix valid lifetime)`` and store the entry.

Gating on the reconciler (invariant 1): when the new entry needs different
kernel state than the old one (first registration, movement, de-registration,
prefix change) the HA emits :class:`BindingChanged` and *parks* the BA. The
daemon reconciles the key and calls ``reconciled(hoa, ok, now)``:

- ok → ``PersistBinding`` (or ``ForgetBinding``) then the BA, in that order,
  so an acknowledged binding is durable before the BA leaves (invariant 6);
- not ok (or ``reconcile_timeout`` passes) → the cache is rolled back to the
  previous entry (``BindingChanged(reason="rollback")``) and the BA carries
  130 *insufficient resources* (143 *forwarding setup failed* for a mobile
  router, RFC 3963). 130 is the RFC 6275 status closest to "could not set up
  forwarding"; the MN retries with its usual backoff.

A refresh that keeps forwarding unchanged is answered at once with
``PersistBinding`` + BA 0: no kernel work, so the hot path stays cheap.

Parking is per home address: while a BU of one home address waits (DAD or
reconcile), later BUs of *that* address queue behind it (bounded) and are
processed in arrival order when it completes; BUs of every other home
address go straight through. A parked step that gets no answer before its
deadline is resolved by the timer (DAD: dropped silently, the MN
retransmits; reconcile: treated as failure).

The HA always answers a home registration, whatever the A flag says; BAs go
back to the BU's source with a type 2 routing header carrying the home
address (none when the source is the home address).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

from mip6ctl.config.model import HaSection, MobileNodeEntry
from mip6ctl.wire.mh import (
    BAFlag,
    BAStatus,
    BindingAcknowledgement,
    BindingUpdate,
    lifetime_units,
)
from mip6ctl.wire.mobopts import BindingRefreshAdvice, MobilityOption

from . import bu_checks
from .admission import AdmissionPolicy
from .binding import Binding, BindingCache, compatible_link_local
from .common import ba_reply
from .events import (
    Action,
    BindingChanged,
    ForgetBinding,
    PersistBinding,
    Received,
    Send,
    StartDad,
)

__all__ = ["DEFAULT_DAD_TIMEOUT", "DEFAULT_RECONCILE_TIMEOUT", "HomeAgent", "PrefixLifetime"]

DEFAULT_DAD_TIMEOUT = 10.0
"""Seconds a BU may wait for ``dad_result`` (RFC 4862 DAD takes ~1 s per probe)."""
DEFAULT_RECONCILE_TIMEOUT = 10.0
"""Seconds a BA may wait for ``reconciled`` before the registration is rolled back."""
MAX_QUEUED_PER_HOME_ADDRESS = 8
"""BUs of one home address held behind a parked one; more are dropped (the MN retransmits)."""

PrefixLifetime = Callable[[IPv6Address, float], float | None]
"""Hook: remaining valid lifetime (s) of the home prefix holding a home address, None = ∞."""


@dataclass(slots=True)
class _Bu(bu_checks.PendingBindingUpdate):
    """One H=1 BU being judged, with the node's configuration entry and its granted prefixes."""

    node: MobileNodeEntry | None = None
    prefixes: tuple[IPv6Network, ...] = ()


@dataclass(slots=True)
class _Parked:
    """A BU waiting for DAD or the reconciler, and the BUs queued behind it."""

    stage: str  # "dad" | "reconcile"
    bu: _Bu
    deadline: float
    token: int
    previous: Binding | None = None
    new: Binding | None = None
    queue: deque[tuple[Received, BindingUpdate]] = field(default_factory=deque)


# --------------------------------------------------------------------------- rule table


def _check_ipsec(ha: HomeAgent, c: _Bu) -> int | None:
    """Step 1: RFC 3776/4877 protection required by configuration → else silent discard."""
    if c.ev.ipsec_protected:
        return None
    if ha.cfg.require_ipsec or (c.node is not None and c.node.ipsec is not None):
        return bu_checks.DISCARD
    return None


def _check_admission(ha: HomeAgent, c: _Bu) -> int | None:
    """Steps 2–4a: home subnet (132), listed or default allow (129), mobile routers (140).

    The admission policy's answer, so a reload keeps exactly the bindings a BU
    would be granted (:mod:`.admission`).
    """
    return ha.admission.refusal(c.home_address, c.node, mobile_router=c.bu.mobile_router)


def _check_mobile_network_prefixes(ha: HomeAgent, c: _Bu) -> int | None:
    """Step 4b (RFC 3963 §6.1): a mobile router registers only its own prefixes (141/142)."""
    if not c.bu.mobile_router:
        return None
    mnps = c.bu.mobile_network_prefixes
    allowed = set(c.node.mobile_network_prefixes) if c.node is not None else set()
    nets: list[IPv6Network] = []
    for opt in mnps:
        try:  # strict: host bits set past the length make it no prefix at all
            net = IPv6Network(f"{opt.prefix}/{opt.prefix_length}")
        except ValueError:
            return BAStatus.INVALID_PREFIX
        if not 0 < net.prefixlen < 128 or _not_routable(net):
            return BAStatus.INVALID_PREFIX
        if net not in allowed:
            return BAStatus.NOT_AUTHORIZED_FOR_PREFIX
        nets.append(net)
    # implicit mode (no option): the prefixes configured for this node
    c.prefixes = tuple(nets) if nets else tuple(sorted(allowed))
    return None


def _not_routable(net: IPv6Network) -> bool:
    """No unicast prefix a home agent could route to a mobile router (RFC 3963)."""
    return net.is_multicast or net.is_link_local or net.is_loopback or net.is_unspecified


def _check_deregistration_entry(ha: HomeAgent, c: _Bu) -> int | None:
    """Step 7 (§10.3.2): de-registering a home address we hold no entry for → 133."""
    if c.entry is None and c.deregistration:
        return BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE
    return None


_Check = Callable[["HomeAgent", _Bu], int | None]
_CHECKS: tuple[_Check, ...] = (
    _check_ipsec,
    bu_checks.check_addresses,
    _check_admission,
    _check_mobile_network_prefixes,
    bu_checks.check_registration_type,
    bu_checks.check_sequence,
    _check_deregistration_entry,
)


# --------------------------------------------------------------------------- the HA


class HomeAgent:
    """Home registrations in the shared binding cache; see the module docstring."""

    def __init__(
        self,
        cfg: HaSection,
        cache: BindingCache,
        *,
        prefix_valid_lifetime: PrefixLifetime | None = None,
        dad_timeout: float = DEFAULT_DAD_TIMEOUT,
        reconcile_timeout: float = DEFAULT_RECONCILE_TIMEOUT,
        key_mobility_templates: frozenset[str] = frozenset(),
    ) -> None:
        self.cache = cache
        self.key_mobility_templates = key_mobility_templates
        self.prefix_valid_lifetime = prefix_valid_lifetime
        self.dad_timeout = dad_timeout
        self.reconcile_timeout = reconcile_timeout
        self._parked: dict[IPv6Address, _Parked] = {}
        self._deadlines: list[tuple[float, int, IPv6Address]] = []
        self._token = 0
        self.configure(cfg)

    def configure(self, cfg: HaSection) -> None:
        """Take a configuration generation (precomputes the lookups the hot path needs)."""
        self.cfg = cfg
        self.admission = AdmissionPolicy(cfg)

    # ----------------------------------------------------------------- inputs

    def binding_update(self, ev: Received, bu: BindingUpdate, now: float) -> list[Action]:
        """A BU with H=1 (§10.3.1). The home address is the HAO's, else the source."""
        hoa = bu_checks.home_address_of(ev)
        parked = self._parked.get(hoa)
        if parked is not None:
            if len(parked.queue) < MAX_QUEUED_PER_HOME_ADDRESS:
                parked.queue.append((ev, bu))
            return []
        return self._process(ev, bu, hoa, now, dad_done=False)

    def dad_result(self, home_address: IPv6Address, ok: bool, now: float) -> list[Action]:
        """DAD finished for ``home_address``: continue the parked BU, or answer 134."""
        p = self._parked.get(home_address)
        if p is None or p.stage != "dad":
            return []
        del self._parked[home_address]
        c = p.bu
        if ok:
            out = self._process(c.ev, c.bu, home_address, now, dad_done=True)
        else:
            out = [self._ba(c, BAStatus.DUPLICATE_ADDRESS_DETECTION_FAILED)]
        return out + self._drain(home_address, p, now)

    def reconciled(self, home_address: IPv6Address, ok: bool, now: float) -> list[Action]:
        """The reconciler converged ``home_address``: release (or roll back) the parked BA."""
        p = self._parked.get(home_address)
        if p is None or p.stage != "reconcile":
            return []
        del self._parked[home_address]
        out = self._commit(p, now) if ok else self._rollback(p, now)
        return out + self._drain(home_address, p, now)

    def load_config(self, cfg: HaSection, now: float) -> list[Action]:
        """New generation: drop home registrations no longer allowed; keep the rest as is.

        Lowered lifetimes apply at the next refresh (the granted lifetime was a
        promise to the MN).
        """
        self.configure(cfg)
        out: list[Action] = []
        for b in self.cache:
            if b.home_registration and not self.still_allowed(b):
                self.cache.remove(b.home_address)
                out.append(BindingChanged(b.home_address, None, "config"))
                out.append(ForgetBinding(b.home_address))
        return out

    def still_allowed(self, b: Binding) -> bool:
        """Would a BU for this binding still pass the configuration checks (132/129/140)?"""
        return self.admission.admits(b)

    def drop_all(self) -> list[Action]:
        """This node stopped being a home agent: remove every home registration."""
        out: list[Action] = []
        for b in self.cache:
            if b.home_registration:
                self.cache.remove(b.home_address)
                out.append(BindingChanged(b.home_address, None, "config"))
                out.append(ForgetBinding(b.home_address))
        self._parked.clear()
        return out

    # ----------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        """Earliest deadline of a parked BU."""
        dl, parked = self._deadlines, self._parked
        while dl:
            when, token, hoa = dl[0]
            p = parked.get(hoa)
            if p is not None and p.token == token:
                return when
            heapq.heappop(dl)
        return None

    def handle_timer(self, now: float) -> list[Action]:
        """Resolve parked BUs whose deadline passed (DAD: drop; reconcile: roll back)."""
        out: list[Action] = []
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, token, hoa = heapq.heappop(dl)
            p = self._parked.get(hoa)
            if p is None or p.token != token:
                continue
            del self._parked[hoa]
            if p.stage == "reconcile":
                out += self._rollback(p, now)
            out += self._drain(hoa, p, now)
        return out

    # ----------------------------------------------------------------- transitions

    def _process(
        self, ev: Received, bu: BindingUpdate, hoa: IPv6Address, now: float, *, dad_done: bool
    ) -> list[Action]:
        c = _Bu.received(ev, bu, hoa, self.cache.get(hoa), now)
        c.node = self.admission.node(hoa)
        verdict = bu_checks.judge(_CHECKS, self, c)
        if verdict is not None:
            return [] if verdict == bu_checks.DISCARD else [self._ba(c, verdict)]
        if c.deregistration:
            return self._deregister(c)
        if c.entry is None and self.cfg.duplicate_address_detection and not dad_done:
            return self._start_dad(c)
        return self._register(c)

    def _deregister(self, c: _Bu) -> list[Action]:
        prev = self.cache.remove(c.home_address)
        self._park("reconcile", c, self.reconcile_timeout, previous=prev, new=None)
        return [BindingChanged(c.home_address, None, "deregistered")]

    def _start_dad(self, c: _Bu) -> list[Action]:
        ifname = self.cfg.interfaces[0] if self.cfg.interfaces else None
        ll = compatible_link_local(c.home_address) if c.bu.link_local_compatibility else None
        self._park("dad", c, self.dad_timeout)
        return [StartDad(c.home_address, ifname, ll)]

    def _register(self, c: _Bu) -> list[Action]:
        granted = self._grant(c)
        if granted <= 0:
            # configuration (or an exhausted home prefix) leaves nothing to grant
            return [self._ba(c, BAStatus.ADMINISTRATIVELY_PROHIBITED)]
        b = c.new_entry(granted, c.prefixes)
        prev = self.cache.put(b)
        if b.same_forwarding(prev):
            return [PersistBinding(b), self._ba(c, BAStatus.ACCEPTED, b)]
        self._park("reconcile", c, self.reconcile_timeout, previous=prev, new=b)
        return [BindingChanged(c.home_address, b, "registered" if prev is None else "moved")]

    def _commit(self, p: _Parked, now: float) -> list[Action]:
        c, hoa = p.bu, p.bu.home_address
        if self.cache.get(hoa) is not p.new:
            # removed under us (expired, configuration) while the kernel was converging
            return [self._ba(c, BAStatus.REASON_UNSPECIFIED)]
        if p.new is None:
            return [ForgetBinding(hoa), self._ba(c, BAStatus.ACCEPTED)]
        return [PersistBinding(p.new), self._ba(c, BAStatus.ACCEPTED, p.new)]

    def _rollback(self, p: _Parked, now: float) -> list[Action]:
        c, hoa = p.bu, p.bu.home_address
        restored = p.previous if p.previous is not None and p.previous.expires_at > now else None
        if self.cache.get(hoa) is p.new:
            if restored is None:
                self.cache.remove(hoa)
            else:
                self.cache.put(restored)
        status = (
            BAStatus.FORWARDING_SETUP_FAILED
            if c.bu.mobile_router
            else BAStatus.INSUFFICIENT_RESOURCES
        )
        return [BindingChanged(hoa, restored, "rollback"), self._ba(c, status)]

    def _drain(self, hoa: IPv6Address, p: _Parked, now: float) -> list[Action]:
        """Process the BUs queued behind a finished parked one, in order."""
        out: list[Action] = []
        while p.queue:
            ev, bu = p.queue.popleft()
            out += self.binding_update(ev, bu, now)
            nxt = self._parked.get(hoa)
            if nxt is not None:  # parked again: the rest waits behind the new one
                nxt.queue.extend(p.queue)
                break
        return out

    # ----------------------------------------------------------------- helpers

    def _grant(self, c: _Bu) -> int:
        """Granted lifetime (s), a multiple of 4: ≤ requested, HA max, node max, prefix."""
        granted: float = min(c.bu.lifetime_seconds, self.cfg.max_binding_lifetime)
        if c.node is not None and c.node.max_binding_lifetime is not None:
            granted = min(granted, c.node.max_binding_lifetime)
        if self.prefix_valid_lifetime is not None:
            valid = self.prefix_valid_lifetime(c.home_address, c.now)
            if valid is not None:
                granted = min(granted, valid)
        return lifetime_units(granted) * 4

    def _park(
        self,
        stage: str,
        c: _Bu,
        timeout: float,
        *,
        previous: Binding | None = None,
        new: Binding | None = None,
    ) -> None:
        self._token += 1
        deadline = c.now + timeout
        self._parked[c.home_address] = _Parked(stage, c, deadline, self._token, previous, new)
        heapq.heappush(self._deadlines, (deadline, self._token, c.home_address))

    def _ba(self, c: _Bu, status: int, b: Binding | None = None) -> Send:
        """The BA for ``c`` (sequence: the entry's for 135, else the BU's)."""
        seq = bu_checks.ba_sequence(c, status)
        units = b.lifetime // 4 if b is not None else 0
        flags = 0
        options: tuple[MobilityOption, ...] = ()
        if status < 128:
            if c.bu.mobile_router:
                flags |= BAFlag.R
            if (  # RFC 6275 §10.3.1, RFC 4877 §5.4: K only if our IKE SA follows the move
                c.bu.key_management_mobility
                and c.node is not None
                and c.node.ipsec in self.key_mobility_templates
            ):
                flags |= BAFlag.K
            advice = self.cfg.binding_refresh_advice
            if b is not None and advice is not None and 0 < advice < b.lifetime:
                options = (BindingRefreshAdvice(max(1, lifetime_units(advice))),)
        ba = BindingAcknowledgement(int(status), seq, units, int(flags), options)
        return ba_reply(c.ev, c.home_address, ba)
