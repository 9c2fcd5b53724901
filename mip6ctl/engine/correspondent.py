"""Correspondent node: return routability and Binding Updates with H=0 (RFC 6275 §9).

Theory of operation
===================

Every node answers as a correspondent (DESIGN.md). The correspondent keeps
no per-mobile-node state until a Binding Update is authorised: return
routability (§5.2) is stateless on its side.

Keys and nonces
---------------
``Kcn`` (20 octets, injected for tests, random otherwise) keys the keygen
tokens. :class:`NonceTable` holds a small array of 8-octet nonces with 16-bit
indices. A nonce *index is valid* for ``MAX_NONCE_LIFETIME`` (240 s) after its
nonce was made; tokens are only *handed out* from a nonce that can still live
``MAX_TOKEN_LIFETIME`` (210 s), so a fresh nonce is made (lazily, on the next
HoTI/CoTI) once the current one is older than 240 − 210 = 30 s. Time is passed
in; rotation needs no timer.

HoTI → HoT to the home address (the source of the HoTI, which arrives through
the home agent), CoTI → CoT to the care-of address. Either one carrying a Home
Address option is discarded (§9.4.1, §9.4.2).

Binding Updates (H=0)
---------------------
Judged by the ordered rule table ``_CHECKS`` (§9.5.1 in the RFC's order; one
function per rule, first verdict wins, :func:`~.bu_checks.judge`). Rules
marked *shared* are the home agent's too (:mod:`.bu_checks`):

====  =====================================================  ==========================
step  rule                                                   verdict
====  =====================================================  ==========================
1     home / care-of address not routable unicast (shared)    discard
1b    source address not routable unicast                      discard
1c    route optimisation off, or ``cn.policies`` deny          discard (local policy)
3     Nonce Indices and Binding Authorization Data (last)      discard when missing
4     nonce index no longer valid                              136 / 137 / 138 (no auth)
5     authenticator (Kbm from the tokens) does not verify      discard
5a    existing entry is a home registration (H=1) (shared)     139
6     sequence not newer than the entry's (shared)             135 (last accepted seq)
====  =====================================================  ==========================

Step 2 (H=1 at a correspondent → 131, or 139 when an H=0 entry exists, and
discard when Nonce Indices are present) is :meth:`Correspondent.home_registration`,
used by the engine when this node is not a home agent.

A BU that passes deletes the entry (lifetime 0 or care-of = home address;
care-of nonce not checked and ``Kbm = SHA1(home token)`` then) or creates /
refreshes it with ``lifetime ≤ min(requested, cn.max_binding_lifetime,
MAX_RR_BINDING_LIFETIME)``. A full cache answers 130.

A BA is sent when A=1, and regardless of A for 135–138 and 130 (and always
for the H=1 refusals 131/139: a home registration is always answered). Once
the BU has been authenticated, the BA carries Binding Authorization Data
computed with the same Kbm; 136–138 carry none (there is no Kbm).

Correspondent entries are not persisted (they live ≤ 420 s and the MN
re-runs return routability after a restart); the reconciler is told through
:class:`BindingChanged` when forwarding changes (route optimisation state),
but the BA is not held for it.

Replays after a deletion (§5.2.8, §9.5.3): a deleted or expired entry leaves a
*tombstone* -- its last accepted sequence number -- for ``MAX_NONCE_LIFETIME``,
as long as the nonces that authorised it can still verify a BU. A BU for that
home address must then be newer than the tombstone (else 135 with the
tombstone's sequence number), so a captured BU cannot re-create the binding.

Binding Refresh Request: the daemon reports traffic with
``binding_used(hoa, now)``; a used entry gets one BRR ``max(2 s, 10 % of its
lifetime)`` before it expires (§9.5.5), unless it was refreshed meanwhile -- one
per lifetime: more traffic after it asks nothing more.
"""

from __future__ import annotations

import heapq
import hmac
import secrets
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address

from mip6ctl import rfc6275
from mip6ctl.config.model import CnSection
from mip6ctl.wire import rr
from mip6ctl.wire.mh import (
    BAStatus,
    BindingAcknowledgement,
    BindingRefreshRequest,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    encode_mh,
    lifetime_units,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices

from . import bu_checks
from .binding import Binding, BindingCache
from .common import ba_reply, is_routable_unicast
from .events import Action, BindingChanged, Received, Send

__all__ = ["DEFAULT_MAX_CACHE_ENTRIES", "Correspondent", "NonceTable"]

DEFAULT_MAX_CACHE_ENTRIES = 1_000_000
"""Above this many binding cache entries a new correspondent registration gets 130."""
BRR_MIN_LEAD = 2.0
BRR_LEAD_FRACTION = 0.1

RandomBytes = Callable[[int], bytes]


class NonceTable:
    """Rotating nonces (§5.2.2): index → (nonce, made at), each valid MAX_NONCE_LIFETIME."""

    __slots__ = ("_current", "_nonces", "_order", "_random", "lifetime", "token_lifetime")

    def __init__(
        self,
        random_bytes: RandomBytes = secrets.token_bytes,
        *,
        lifetime: float = rfc6275.MAX_NONCE_LIFETIME,
        token_lifetime: float = rfc6275.MAX_TOKEN_LIFETIME,
        first_index: int = 0,
    ) -> None:
        self._random = random_bytes
        self.lifetime = lifetime
        self.token_lifetime = token_lifetime
        self._nonces: dict[int, tuple[bytes, float]] = {}
        self._order: deque[int] = deque()
        self._current = (first_index - 1) & 0xFFFF

    def current(self, now: float) -> tuple[int, bytes]:
        """The (index, nonce) to build tokens from; rotates when a token could outlive it."""
        entry = self._nonces.get(self._current)
        if entry is None or entry[1] + self.lifetime - now < self.token_lifetime:
            self._prune(now)
            self._current = (self._current + 1) & 0xFFFF
            entry = (self._random(rr.NONCE_LEN), now)
            self._nonces[self._current] = entry
            self._order.append(self._current)
        return self._current, entry[0]

    def get(self, index: int, now: float) -> bytes | None:
        """The nonce of ``index`` while it is valid, else None."""
        entry = self._nonces.get(index)
        if entry is None or now - entry[1] > self.lifetime:
            return None
        return entry[0]

    def _prune(self, now: float) -> None:
        while self._order:
            made = self._nonces[self._order[0]][1]
            if now - made <= self.lifetime:
                break
            del self._nonces[self._order.popleft()]


@dataclass(slots=True)
class _CnBu(bu_checks.PendingBindingUpdate):
    """One H=0 BU being judged, and what return routability's checks learned about it."""

    indices: NonceIndices | None = None
    kbm: bytes | None = None
    tombstone: int | None = None
    """The last sequence number of a deleted entry whose nonces may still verify."""


# --------------------------------------------------------------------------- rule table


def _check_source(cn: Correspondent, c: _CnBu) -> int | None:
    """Step 1b: the source must be routable unicast too, even with an Alternate Care-of
    Address option: the BA and the Binding Refresh Requests go back to it."""
    return None if is_routable_unicast(c.ev.src) else bu_checks.DISCARD


def _check_policy(cn: Correspondent, c: _CnBu) -> int | None:
    """Local policy (``cn.route_optimization``, ``cn.policies``): refused BUs are dropped."""
    return None if cn.allowed(c.home_address, c.ev.dst) else bu_checks.DISCARD


def _check_options(cn: Correspondent, c: _CnBu) -> int | None:
    """Step 3: Nonce Indices and Binding Authorization Data (last) are mandatory."""
    c.indices = c.bu.nonce_indices
    if c.indices is None or c.bu.authorization_data is None:
        return bu_checks.DISCARD
    return None


def _check_nonces(cn: Correspondent, c: _CnBu) -> int | None:
    """Step 4: 136 home, 137 care-of, 138 both (care-of not checked for a deletion)."""
    assert c.indices is not None
    home_ok = cn.nonces.get(c.indices.home_nonce_index, c.now) is not None
    careof_ok = c.deregistration or cn.nonces.get(c.indices.careof_nonce_index, c.now) is not None
    if home_ok and careof_ok:
        return None
    if not home_ok and not careof_ok:
        return BAStatus.EXPIRED_NONCES
    return BAStatus.EXPIRED_HOME_NONCE_INDEX if not home_ok else BAStatus.EXPIRED_CAREOF_NONCE_INDEX


def _check_authenticator(cn: Correspondent, c: _CnBu) -> int | None:
    """Step 5: recompute the tokens, Kbm and the authenticator; mismatch → discard."""
    assert c.indices is not None
    home_nonce = cn.nonces.get(c.indices.home_nonce_index, c.now)
    assert home_nonce is not None
    home_token = cn.keygen.home_keygen_token(c.home_address, home_nonce)
    if c.deregistration:
        kbm = rr.binding_management_key(home_token)
    else:
        careof_nonce = cn.nonces.get(c.indices.careof_nonce_index, c.now)
        assert careof_nonce is not None
        kbm = rr.binding_management_key(
            home_token, cn.keygen.careof_keygen_token(c.care_of_address, careof_nonce)
        )
    raw = c.ev.raw if c.ev.raw is not None else encode_mh(c.bu)
    # one-shot HMAC (C): no per-Kbm HMAC object to key and copy for a single use
    if len(raw) < 8 + rr.AUTHENTICATOR_LEN or not hmac.compare_digest(
        rr.authenticator(kbm, c.care_of_address, c.ev.dst, rr.mh_data(raw)),
        raw[-rr.AUTHENTICATOR_LEN :],
    ):
        return bu_checks.DISCARD
    c.kbm = kbm
    return None


def _check_replay(cn: Correspondent, c: _CnBu) -> int | None:
    """§5.2.8: a deleted binding's sequence number outlives it while its nonces are
    valid, so a replayed BU (or the deletion itself, replayed) gets 135."""
    if c.entry is not None:
        return None
    c.tombstone = cn.tombstone(c.home_address, c.now)
    if c.tombstone is not None and not bu_checks.sequence_newer(c.bu.sequence, c.tombstone):
        return BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
    return None


_Check = Callable[["Correspondent", _CnBu], int | None]
_CHECKS: tuple[_Check, ...] = (
    bu_checks.check_addresses,
    _check_source,
    _check_policy,
    _check_options,
    _check_nonces,
    _check_authenticator,
    bu_checks.check_registration_type,
    bu_checks.check_sequence,
    _check_replay,
)

_BA_FIXED = struct.Struct("!BBBBHBBHH")
"""A BA's fixed part: next header, length, type, reserved, checksum, status, flags, seq,
lifetime."""
_BA_AUTH_ENCODED = BindingAcknowledgement(0, 0, 0, 0, (BindingAuthorizationData(),)).encode()
_BA_AUTH_HL = _BA_AUTH_ENCODED[1]
_BA_AUTH_OPTS = _BA_AUTH_ENCODED[_BA_FIXED.size : -rr.AUTHENTICATOR_LEN]
"""Padding and the Binding Authorization Data option up to its authenticator."""

_ALWAYS_ACK = frozenset({130, 135, 136, 137, 138})
"""Statuses acknowledged even without the A flag (§9.5.1)."""


class Correspondent:
    """Return routability and correspondent registrations; see the module docstring."""

    def __init__(
        self,
        cfg: CnSection,
        cache: BindingCache,
        now: float,
        *,
        kcn: bytes | None = None,
        random_bytes: RandomBytes = secrets.token_bytes,
        max_cache_entries: int = DEFAULT_MAX_CACHE_ENTRIES,
    ) -> None:
        self.cache = cache
        self.kcn = kcn if kcn is not None else random_bytes(rr.KCN_LEN)
        if len(self.kcn) != rr.KCN_LEN:
            raise ValueError(f"Kcn must be {rr.KCN_LEN} octets")
        self.keygen = rr.KeygenTokenGenerator(self.kcn)
        self.nonces = NonceTable(random_bytes)
        self.max_cache_entries = max_cache_entries
        self._brr: list[tuple[float, int, IPv6Address, float]] = []
        """(due, tie-breaker, home address, expiry): a counter, not the address, breaks
        ties -- bindings made at one instant share ``due``, and comparing IPv6Address
        objects made the heap 2.5x slower (bench/cn_brr.py)"""
        self._brr_n = 0
        self._brr_scheduled: dict[IPv6Address, float] = {}
        self._brr_sent: dict[IPv6Address, float] = {}
        """Home address -> the expiry a BRR was sent for: one BRR per lifetime."""
        self._tombstones: dict[IPv6Address, tuple[int, float]] = {}
        self._tombstone_order: deque[tuple[float, IPv6Address]] = deque()
        #: Binding Refresh Requests sent (status, metrics)
        self.brrs_sent = 0
        self.configure(cfg)

    def configure(self, cfg: CnSection) -> None:
        """Take a configuration generation."""
        self.cfg = cfg
        self._max_lifetime = min(cfg.max_binding_lifetime, rfc6275.MAX_RR_BINDING_LIFETIME)

    def allowed(self, home_address: IPv6Address, local: IPv6Address) -> bool:
        """Route optimisation enabled and ``cn.policies`` (first match) / default allow it."""
        if not self.cfg.route_optimization:
            return False
        for p in self.cfg.policies:
            if home_address in p.home_prefix and (
                p.correspondent is None or p.correspondent == local
            ):
                return p.action == "allow"
        return self.cfg.default_action == "allow"

    # ----------------------------------------------------------------- return routability

    def home_test_init(self, ev: Received, msg: HomeTestInit, now: float) -> list[Action]:
        """HoTI → HoT to the home address (the HoTI's source) with the home keygen token."""
        hoa = ev.src
        if ev.home_address_option is not None or not is_routable_unicast(hoa):
            return []
        if not self.allowed(hoa, ev.dst):
            return []
        index, nonce = self.nonces.current(now)
        token = self.keygen.home_keygen_token(hoa, nonce)
        return [Send(HomeTest(index, msg.home_init_cookie, token), ev.dst, hoa)]

    def careof_test_init(self, ev: Received, msg: CareofTestInit, now: float) -> list[Action]:
        """CoTI → CoT to the care-of address (the CoTI's source) with the care-of token."""
        coa = ev.src
        if ev.home_address_option is not None or not is_routable_unicast(coa):
            return []
        if not self.cfg.route_optimization:
            return []
        index, nonce = self.nonces.current(now)
        token = self.keygen.careof_keygen_token(coa, nonce)
        return [Send(CareofTest(index, msg.careof_init_cookie, token), ev.dst, coa)]

    # ----------------------------------------------------------------- binding updates

    def home_registration(self, ev: Received, bu: BindingUpdate, now: float) -> list[Action]:
        """Step 2: H=1 at a node that is not a home agent → 131 (139 over an H=0 entry)."""
        if bu.nonce_indices is not None:
            return []
        hoa = bu_checks.home_address_of(ev)
        status = (
            BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED
            if bu_checks.registration_type_changes(self.cache.get(hoa), True)
            else BAStatus.HOME_REGISTRATION_NOT_SUPPORTED
        )
        return [ba_reply(ev, hoa, BindingAcknowledgement(int(status), bu.sequence))]

    def binding_update(self, ev: Received, bu: BindingUpdate, now: float) -> list[Action]:
        """A BU with H=0 (§9.5.1)."""
        hoa = bu_checks.home_address_of(ev)
        c = _CnBu.received(ev, bu, hoa, self.cache.get(hoa), now)
        verdict = bu_checks.judge(_CHECKS, self, c)
        if verdict is not None:
            return [] if verdict == bu_checks.DISCARD else self._ack(c, verdict)
        if c.deregistration:
            return self._delete(c)
        return self._register(c)

    def _delete(self, c: _CnBu) -> list[Action]:
        out: list[Action] = []
        if self.cache.remove(c.home_address) is not None:
            self._brr_scheduled.pop(c.home_address, None)
            self._brr_sent.pop(c.home_address, None)
            out.append(BindingChanged(c.home_address, None, "deregistered"))
        self._bury(c.home_address, c.bu.sequence, c.now)
        return out + self._ack(c, BAStatus.ACCEPTED)

    # ----------------------------------------------------------------- tombstones

    def _bury(self, home_address: IPv6Address, sequence: int, now: float) -> None:
        until = now + self.nonces.lifetime
        self._tombstones[home_address] = (sequence, until)
        self._tombstone_order.append((until, home_address))
        self._prune_tombstones(now)

    def tombstone(self, home_address: IPv6Address, now: float) -> int | None:
        """The last sequence number of a deleted entry whose nonces may still be valid."""
        t = self._tombstones.get(home_address)
        if t is None or t[1] < now:
            return None
        return t[0]

    def _prune_tombstones(self, now: float) -> None:
        order = self._tombstone_order
        while order and order[0][0] < now:
            until, hoa = order.popleft()
            t = self._tombstones.get(hoa)
            if t is not None and t[1] == until:
                del self._tombstones[hoa]

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    def _register(self, c: _CnBu) -> list[Action]:
        if c.entry is None and len(self.cache) >= self.max_cache_entries:
            return self._ack(c, BAStatus.INSUFFICIENT_RESOURCES)
        if c.tombstone is not None:
            self._tombstones.pop(c.home_address, None)  # the new entry carries the sequence
        granted = lifetime_units(min(c.bu.lifetime_seconds, self._max_lifetime)) * 4
        b = c.new_entry(granted)
        prev = self.cache.put(b)
        out: list[Action] = []
        if not b.same_forwarding(prev):
            out.append(BindingChanged(c.home_address, b, "registered" if prev is None else "moved"))
        return out + self._ack(c, BAStatus.ACCEPTED, granted)

    def _ack(self, c: _CnBu, status: int, granted: int = 0) -> list[Action]:
        """The BA if one is due, authenticated with Kbm when the BU was authenticated."""
        if not (c.bu.ack or status in _ALWAYS_ACK):
            return []
        seq = bu_checks.ba_sequence(c, status)
        if status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW and c.entry is None:
            seq = c.tombstone if c.tombstone is not None else seq
        units = granted // 4
        if c.kbm is None:
            ba = BindingAcknowledgement(int(status), seq, units)
        else:
            # the authenticated octets of BindingAcknowledgement(status, seq, units, 0,
            # (BindingAuthorizationData(),)).encode(): only the fixed fields vary
            data = _BA_FIXED.pack(59, _BA_AUTH_HL, 6, 0, 0, status, 0, seq, units) + _BA_AUTH_OPTS
            auth = rr.authenticator(c.kbm, c.care_of_address, c.ev.dst, data)
            ba = BindingAcknowledgement(
                int(status), seq, units, 0, (BindingAuthorizationData(auth),)
            )
        return [ba_reply(c.ev, c.home_address, ba)]

    # ----------------------------------------------------------------- refresh requests

    def binding_used(self, home_address: IPv6Address, now: float) -> None:
        """Traffic used this correspondent entry: schedule one BRR before it expires."""
        b = self.cache.get(home_address)
        if b is None or b.home_registration:
            return
        expires = b.expires_at
        if self._brr_scheduled.get(home_address) == expires:
            return
        if self._brr_sent.get(home_address) == expires:
            return  # asked once for this lifetime; the next BU is the MN's answer
        self._brr_scheduled[home_address] = expires
        lead = max(BRR_MIN_LEAD, b.lifetime * BRR_LEAD_FRACTION)
        self._brr_n += 1
        heapq.heappush(self._brr, (expires - lead, self._brr_n, home_address, expires))

    def next_timer(self) -> float | None:
        """When the next Binding Refresh Request is due."""
        while self._brr:
            when, _n, hoa, expires = self._brr[0]
            if self._brr_scheduled.get(hoa) == expires:
                return when
            heapq.heappop(self._brr)
        return None

    def handle_timer(self, now: float) -> list[Action]:
        """Send the BRRs that are due, for entries not refreshed since they were used."""
        out: list[Action] = []
        while self._brr and self._brr[0][0] <= now:
            _, _n, hoa, expires = heapq.heappop(self._brr)
            if self._brr_scheduled.get(hoa) != expires:
                continue
            del self._brr_scheduled[hoa]
            self._brr_sent[hoa] = expires
            b = self.cache.get(hoa)
            if b is None or b.expires_at != expires or b.expires_at <= now:
                continue
            out.append(Send(BindingRefreshRequest(), b.local_address, b.care_of_address, None, hoa))
        self.brrs_sent += len(out)
        return out

    def forget(self, home_address: IPv6Address) -> None:
        """The entry is gone (expiry, configuration): no BRR for it."""
        self._brr_scheduled.pop(home_address, None)
        self._brr_sent.pop(home_address, None)

    def retire(self, b: Binding, now: float) -> None:
        """``b`` left the cache without a BU (expiry, configuration): no BRR for it, and
        a correspondent entry's sequence number stays as a tombstone (§5.2.8)."""
        self.forget(b.home_address)
        if not b.home_registration:
            self._bury(b.home_address, b.sequence, now)

    def load_config(self, cfg: CnSection, now: float) -> list[Action]:
        """New generation: drop correspondent entries local policy no longer allows."""
        self.configure(cfg)
        out: list[Action] = []
        for b in self.cache:
            if not b.home_registration and not self.allowed(b.home_address, b.local_address):
                self.cache.remove(b.home_address)
                self.retire(b, now)
                out.append(BindingChanged(b.home_address, None, "config"))
        return out
