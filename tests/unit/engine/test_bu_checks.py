"""The Binding Update checks both roles share (§9.5.1, §10.3.1), as pure functions."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from mip6ctl.engine import bu_checks, correspondent, home_agent
from mip6ctl.engine.binding import Binding
from mip6ctl.engine.bu_checks import (
    DISCARD,
    PendingBindingUpdate,
    ba_sequence,
    check_addresses,
    check_registration_type,
    check_sequence,
    home_address_of,
    judge,
    registration_type_changes,
)
from mip6ctl.wire.mh import BAStatus, BindingUpdate, BUFlag
from mip6ctl.wire.mobopts import AlternateCareofAddress

from .helpers import COA, COA2, HA, HOA, rx

LINK_LOCAL = IPv6Address("fe80::1")
MULTICAST = IPv6Address("ff02::1")
T0 = 1000.0


def entry(sequence: int = 10, *, home_registration: bool = True) -> Binding:
    return Binding(HOA, COA, HA, 100, T0, T0 + 100, sequence, 0, home_registration)


def pending(
    sequence: int = 11,
    *,
    flags: int = int(BUFlag.A | BUFlag.H),
    lifetime: int = 25,
    src: IPv6Address = COA,
    hao: IPv6Address | None = HOA,
    alt: IPv6Address | None = None,
    existing: Binding | None = None,
) -> PendingBindingUpdate:
    opts = (AlternateCareofAddress(alt),) if alt is not None else ()
    ev = rx(BindingUpdate(sequence, flags, lifetime, opts), src, HA, hao=hao)
    assert isinstance(ev.message, BindingUpdate)
    return PendingBindingUpdate.received(ev, ev.message, home_address_of(ev), existing, T0)


# --------------------------------------------------------------------------- addresses


def test_home_address_is_the_home_address_option_else_the_source() -> None:
    assert pending(hao=HOA).home_address == HOA
    assert pending(hao=None, src=HOA).home_address == HOA  # sent from home


def test_care_of_address_is_the_alternate_care_of_option_else_the_source() -> None:
    assert pending(src=COA).care_of_address == COA
    assert pending(src=COA, alt=COA2).care_of_address == COA2


@pytest.mark.parametrize(
    ("lifetime", "src", "alt", "deregistration"),
    [
        (25, COA, None, False),
        (0, COA, None, True),  # lifetime 0
        (25, HOA, None, True),  # care-of = home address (from home)
        (25, COA, HOA, True),  # care-of = home address (alternate care-of)
    ],
)
def test_deregistration_is_lifetime_zero_or_care_of_equal_home(
    lifetime: int, src: IPv6Address, alt: IPv6Address | None, deregistration: bool
) -> None:
    assert pending(lifetime=lifetime, src=src, alt=alt).deregistration is deregistration


@pytest.mark.parametrize(
    ("src", "hao", "alt", "verdict"),
    [
        (COA, HOA, None, None),
        (LINK_LOCAL, HOA, None, DISCARD),  # care-of (the source) link-local
        (COA, HOA, MULTICAST, DISCARD),  # alternate care-of multicast
        (COA, MULTICAST, None, DISCARD),  # home address multicast
        (COA, IPv6Address("::1"), None, DISCARD),
        # only the care-of address counts: a link-local source with a routable
        # alternate care-of address passes this check (the CN adds its own)
        (LINK_LOCAL, HOA, COA2, None),
    ],
)
def test_addresses_must_be_routable_unicast(
    src: IPv6Address, hao: IPv6Address, alt: IPv6Address | None, verdict: int | None
) -> None:
    assert check_addresses(None, pending(src=src, hao=hao, alt=alt)) == verdict


# --------------------------------------------------------------------------- registration type


@pytest.mark.parametrize(
    ("flags", "entry_is_home", "verdict"),
    [
        (int(BUFlag.A | BUFlag.H), True, None),
        (int(BUFlag.A | BUFlag.H), False, BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED),
        (int(BUFlag.A), False, None),
        (int(BUFlag.A), True, BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED),
    ],
)
def test_registration_type_may_not_change(
    flags: int, entry_is_home: bool, verdict: int | None
) -> None:
    c = pending(flags=flags, existing=entry(home_registration=entry_is_home))
    assert check_registration_type(None, c) == verdict


def test_no_entry_no_registration_type_change() -> None:
    assert not registration_type_changes(None, True)
    assert not registration_type_changes(None, False)
    assert check_registration_type(None, pending(existing=None)) is None


# --------------------------------------------------------------------------- sequence window


@pytest.mark.parametrize(
    ("last", "new", "ok"),
    [
        (10, 11, True),
        (10, 10, False),  # equal is not newer
        (10, 9, False),
        (10, 10 + (1 << 15) - 1, True),
        (10, 10 + (1 << 15), False),  # exactly half the space away counts as old
        (0xFFFF, 0, True),  # wraps
        (0, 0xFFFF, False),
    ],
)
def test_sequence_window(last: int, new: int, ok: bool) -> None:
    c = pending(new, existing=entry(last))
    assert check_sequence(None, c) == (None if ok else BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW)


def test_any_sequence_without_an_entry() -> None:
    assert check_sequence(None, pending(0, existing=None)) is None


def test_ba_135_carries_the_last_accepted_sequence() -> None:
    c = pending(5, existing=entry(10))
    assert ba_sequence(c, BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW) == 10
    assert ba_sequence(c, BAStatus.ACCEPTED) == 5
    assert ba_sequence(c, BAStatus.ADMINISTRATIVELY_PROHIBITED) == 5
    no_entry = pending(5, existing=None)
    assert ba_sequence(no_entry, BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW) == 5


# --------------------------------------------------------------------------- the rule tables


def test_judge_returns_the_first_verdict_in_table_order() -> None:
    seen: list[str] = []

    def passes(role: object, c: PendingBindingUpdate) -> int | None:
        seen.append("passes")
        return None

    def refuses(role: object, c: PendingBindingUpdate) -> int | None:
        seen.append("refuses")
        return 129

    def never(role: object, c: PendingBindingUpdate) -> int | None:
        raise AssertionError("checked after a verdict")

    assert judge((passes, refuses, never), None, pending()) == 129
    assert seen == ["passes", "refuses"]
    assert judge((passes, passes), None, pending()) is None


@pytest.mark.parametrize("table", [home_agent._CHECKS, correspondent._CHECKS])
def test_both_roles_judge_with_the_shared_checks_in_rfc_order(
    table: tuple[object, ...],
) -> None:
    shared = [
        bu_checks.check_addresses,
        bu_checks.check_registration_type,
        bu_checks.check_sequence,
    ]
    positions = [table.index(check) for check in shared]
    assert positions == sorted(positions)  # §9.5.1: addresses, …, type (139), sequence (135)
