"""Binding Update checks shared by the home agent and the correspondent (RFC 6275 §9.5.1, §10.3.1).

Theory of operation
===================

Both roles judge a Binding Update the same way: an ordered table of small
checks, each ``(role, bu) -> verdict``, where the verdict is ``None`` (pass),
:data:`DISCARD` (drop silently) or a Binding Acknowledgement status; the first
verdict wins (:func:`judge`). Each role's table lives with the role
(``home_agent._CHECKS`` for §10.3.1, ``correspondent._CHECKS`` for §9.5.1);
this module holds what RFC 6275 states once for both, so the two tables cannot
drift apart:

- which addresses a BU is about (:meth:`PendingBindingUpdate.received`:
  home address from the Home Address option, care-of address from the
  Alternate Care-of Address option, each else the source; §9.5.1),
- whether it deletes the binding (lifetime 0 or care-of = home address),
- :func:`check_addresses` — both must be routable unicast, else discard,
- :func:`check_registration_type` — an entry may not switch between home and
  correspondent registration (139),
- :func:`check_sequence` — the 16-bit sequence window (135),
- :func:`ba_sequence` — a 135 carries the entry's last accepted sequence,
- :meth:`PendingBindingUpdate.new_entry` — the cache entry an accepted BU makes.

Like h11's state machine these checks do not know which side they play: the
direction comes from the BU's H flag, so the same function serves both
tables. They are pure (no clock, no cache access): what they need is on the
:class:`PendingBindingUpdate`, which each role extends with its own findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import TypeVar

from mip6ctl.wire.mh import BAStatus, BindingUpdate

from .binding import Binding, sequence_newer
from .common import is_routable_unicast
from .events import Received

__all__ = [
    "DISCARD",
    "Check",
    "PendingBindingUpdate",
    "Verdict",
    "ba_sequence",
    "check_addresses",
    "check_registration_type",
    "check_sequence",
    "home_address_of",
    "judge",
    "registration_type_changes",
]

DISCARD = -1
"""Verdict: drop the BU without an answer (never a BA status, which are 0–255)."""

Verdict = int | None
"""``None`` = this check passes; :data:`DISCARD`; or the BA status to answer with."""

_Role = TypeVar("_Role")
_Bu = TypeVar("_Bu", bound="PendingBindingUpdate")
Check = Callable[[_Role, _Bu], Verdict]
"""One rule of a role's table; the role is passed for the configuration it holds."""


def home_address_of(ev: Received) -> IPv6Address:
    """§9.5.1: the Home Address option's address, else the source (a BU sent from home)."""
    return ev.home_address_option or ev.src


@dataclass(slots=True)
class PendingBindingUpdate:
    """One BU being judged: the event, its addresses and the entry the cache holds for it.

    Built once per BU so the checks of both tables read the same addresses;
    the roles subclass it to record what their own checks learn.
    """

    ev: Received
    bu: BindingUpdate
    home_address: IPv6Address
    care_of_address: IPv6Address
    entry: Binding | None
    now: float
    deregistration: bool
    """Lifetime 0 or care-of = home address: the BU deletes the binding (§9.5.1, §10.3.2)."""

    @classmethod
    def received(
        cls: type[_Bu],
        ev: Received,
        bu: BindingUpdate,
        home_address: IPv6Address,
        entry: Binding | None,
        now: float,
    ) -> _Bu:
        """The BU's addresses and kind (§9.5.1): the care-of address is the Alternate
        Care-of Address option's, else the source."""
        coa = bu.alternate_careof_address or ev.src
        return cls(ev, bu, home_address, coa, entry, now, bu.lifetime == 0 or coa == home_address)

    def new_entry(self, granted: int, prefixes: tuple[IPv6Network, ...] = ()) -> Binding:
        """The binding cache entry an accepted BU makes, for ``granted`` seconds (§9.1).

        Its local address is the one the BU was sent to (the tunnel / route
        optimisation endpoint); its kind is the BU's H flag.
        """
        bu, now = self.bu, self.now
        return Binding(
            self.home_address,
            self.care_of_address,
            self.ev.dst,
            granted,
            now,
            now + granted,
            bu.sequence,
            bu.flags,
            bu.home_registration,
            prefixes,
        )


def judge(checks: Iterable[Check[_Role, _Bu]], role: _Role, c: _Bu) -> Verdict:
    """The first verdict of the ordered rule table (the RFC lists its checks in order)."""
    for check in checks:
        verdict = check(role, c)
        if verdict is not None:
            return verdict
    return None


def check_addresses(role: object, c: PendingBindingUpdate) -> Verdict:
    """§9.5.1: home and care-of address must be routable unicast → else discard.

    A binding to a multicast, loopback or link-local address would make this
    node send on the mobile node's behalf where it cannot be reached.
    """
    if is_routable_unicast(c.care_of_address) and is_routable_unicast(c.home_address):
        return None
    return DISCARD


def registration_type_changes(entry: Binding | None, home_registration: bool) -> bool:
    """§9.5.1, §10.3.1: the entry exists as the other kind of registration (→ 139).

    One table holds both kinds by home address; a correspondent entry turning
    into a home one (or back) would hand the home agent's forwarding to an
    unauthenticated BU, or return routability's to an IPsec-protected one.
    """
    return entry is not None and entry.home_registration != home_registration


def check_registration_type(role: object, c: PendingBindingUpdate) -> Verdict:
    """§9.5.1: H must match the existing entry's kind → else 139 (see above)."""
    if registration_type_changes(c.entry, c.bu.home_registration):
        return BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED
    return None


def check_sequence(role: object, c: PendingBindingUpdate) -> Verdict:
    """§9.5.1: ``0 < (new - last) mod 2^16 < 2^15`` against the entry, if any → else 135.

    Replayed or reordered BUs must not move a binding back; without an entry
    any sequence number is accepted (the mobile node's first BU).
    """
    if c.entry is not None and not sequence_newer(c.bu.sequence, c.entry.sequence):
        return BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
    return None


def ba_sequence(c: PendingBindingUpdate, status: int) -> int:
    """§9.5.1/§11.7.1: a 135 carries the last accepted sequence (the MN resumes from it),
    any other status the BU's own."""
    if status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW and c.entry is not None:
        return c.entry.sequence
    return c.bu.sequence
