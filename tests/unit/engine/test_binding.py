"""Binding cache: sequence window arithmetic, lazy-heap expiry, persistence form."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from mip6ctl.engine.binding import Binding, BindingCache, sequence_newer

from .helpers import COA, HA, HOA, HOA2


def make(hoa: IPv6Address = HOA, *, at: float = 0.0, lifetime: int = 100, seq: int = 1) -> Binding:
    return Binding(hoa, COA, HA, lifetime, at, at + lifetime, seq, 0xC000, True)


@pytest.mark.parametrize(
    ("new", "last", "newer"),
    [
        (16, 15, True),
        (32783, 15, False),  # exactly 2^15 ahead: outside the window
        (32782, 15, True),
        (15, 15, False),
        (14, 15, False),
        (0, 65535, True),  # wrap-around
        (32766, 65535, True),
        (32767, 65535, False),
    ],
)
def test_sequence_window(new: int, last: int, newer: bool) -> None:
    assert sequence_newer(new, last) is newer


def test_expiry_in_time_order_and_lazy_deletion_of_refreshed_entries() -> None:
    cache = BindingCache()
    cache.put(make(HOA, lifetime=10))
    cache.put(make(HOA2, lifetime=20))
    assert cache.next_expiry() == 10
    cache.put(make(HOA, at=5, lifetime=30, seq=2))  # refresh: old heap item goes stale
    assert cache.next_expiry() == 20
    assert cache.expire(19.9) == []
    assert [b.home_address for b in cache.expire(20)] == [HOA2]
    assert cache.next_expiry() == 35
    assert [b.sequence for b in cache.expire(100)] == [2]
    assert len(cache) == 0 and cache.next_expiry() is None


def test_removed_entry_never_expires() -> None:
    cache = BindingCache()
    cache.put(make(HOA, lifetime=10))
    assert cache.remove(HOA) is not None
    assert cache.expire(1000) == []


def test_heap_is_compacted_under_many_refreshes() -> None:
    cache = BindingCache()
    for i in range(5000):
        cache.put(make(HOA, at=float(i), lifetime=100, seq=i))
    assert len(cache._heap) <= 2 * len(cache) + 1024
    assert cache.next_expiry() == 4999 + 100


def test_persistence_round_trip() -> None:
    b = Binding(HOA, COA, HA, 100, 1.5, 101.5, 7, 0xC400, True,
                (IPv6Network("2001:db8:f::/48"),))
    assert Binding.from_dict(b.to_dict()) == b
    assert b.shifted(10).expires_at == 111.5


def test_refresh_to_a_later_expiry_pushes_no_heap_item() -> None:
    """A refresh keeps the old item as a lower bound: no growth, no rebuild at scale."""
    cache = BindingCache()
    cache.put(make(HOA, lifetime=10))
    cache.put(make(HOA2, lifetime=20))
    for i in range(1, 3000):
        cache.put(make(HOA, at=float(i), lifetime=10, seq=i))
    assert len(cache._heap) == 2
    assert cache.next_expiry() == 20  # HOA's item moved to 3009 on its way to the top
    assert [b.home_address for b in cache.expire(20)] == [HOA2]
    assert cache.next_expiry() == 2999 + 10
    assert cache.expire(3008.9) == []
    assert [b.sequence for b in cache.expire(3009)] == [2999]
    assert cache.next_expiry() is None and not cache._heap


def test_expiry_moved_earlier_and_re_registration_after_removal() -> None:
    cache = BindingCache()
    cache.put(make(HOA, lifetime=100))
    cache.put(make(HOA, at=1, lifetime=10, seq=2))  # earlier: a new item
    assert cache.next_expiry() == 11
    cache.remove(HOA)
    cache.put(make(HOA, at=2, lifetime=200, seq=3))  # the old items are stale
    assert cache.next_expiry() == 202
    assert cache.expire(201) == []
    assert [b.sequence for b in cache.expire(202)] == [3]
    assert cache.next_expiry() is None and len(cache) == 0
