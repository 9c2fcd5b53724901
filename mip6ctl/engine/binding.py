"""Binding cache (RFC 6275 §9.1): one entry per home address, expiry by a lazy heap.

The cache is shared by the home agent and the correspondent halves of a node:
an entry is either a home registration (H=1, created by the HA rules of
§10.3.1) or a correspondent registration (H=0, §9.5.1), and RFC 6275 keeps
both in one table keyed by home address (that is how status 139,
"registration type change disallowed", can be detected).

Scale: 100k entries must be cheap, so the cache is a ``dict`` plus a binary
heap of ``(time, home_address)``.  A heap item is a *lower bound*: every entry
has an item at or before its ``expires_at``.  A refresh that moves the expiry
later (the common case) touches no heap item; when a lower-bound item reaches
the top it is moved to the entry's real expiry (one ``heapreplace``), and items
of removed entries are dropped there (lazy deletion).  Only an expiry moved
*earlier* or a new entry pushes an item.  Before, every refresh pushed one and
the heap was rebuilt from all entries whenever stale items outnumbered live
ones: at 100k bindings a ~50 ms stall of the event loop every ~100k refreshes
(and a surviving tuple per refresh for the garbage collector to walk).

Times are the engine's clock (``now`` passed in). Bindings persisted across a
restart must be stored in a clock that survives it (wall time), see
:meth:`Binding.to_dict`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from mip6ctl.wire.mh import BUFlag

__all__ = [
    "SEQUENCE_MODULO",
    "Binding",
    "BindingCache",
    "compatible_link_local",
    "sequence_newer",
]

SEQUENCE_MODULO = 1 << 16
_HALF = 1 << 15
_LINK_LOCAL = int(IPv6Address("fe80::"))
_IID_MASK = (1 << 64) - 1


def compatible_link_local(address: IPv6Address) -> IPv6Address:
    """``fe80::`` with ``address``'s interface identifier (the L bit's link-local, §6.1.7)."""
    return IPv6Address(_LINK_LOCAL | (int(address) & _IID_MASK))


def sequence_newer(new: int, last: int) -> bool:
    """True when sequence ``new`` is ahead of ``last`` in the 16-bit window (§9.5.1).

    ``0 < (new - last) mod 2**16 < 2**15``: equal is not newer, and exactly half
    the space away is treated as old.
    """
    return 0 < ((new - last) & 0xFFFF) < _HALF


@dataclass(frozen=True, slots=True)
class Binding:
    """One binding cache entry: home address → care-of address until ``expires_at``.

    ``local_address`` is the address of this node the Binding Update was sent
    to (the HA or CN address); the reconciler needs it as the tunnel / route
    optimisation endpoint. ``lifetime`` is the granted lifetime in seconds (a
    multiple of 4, as the Binding Acknowledgement carries it).
    """

    home_address: IPv6Address
    care_of_address: IPv6Address
    local_address: IPv6Address
    lifetime: int
    registered_at: float
    expires_at: float
    sequence: int
    flags: int
    home_registration: bool
    mobile_network_prefixes: tuple[IPv6Network, ...] = ()

    @property
    def defended_link_local(self) -> IPv6Address | None:
        """The link-local address the home agent also defends (L = 1, §10.4.1), else None."""
        if self.home_registration and self.flags & BUFlag.L:
            return compatible_link_local(self.home_address)
        return None

    def remaining(self, now: float) -> float:
        """Seconds of lifetime left (never negative)."""
        return max(0.0, self.expires_at - now)

    def same_forwarding(self, other: Binding | None) -> bool:
        """True when ``other`` needs the same kernel state (only the lifetime differs).

        A refresh that keeps forwarding unchanged need not wait for the reconciler.
        """
        return (
            other is not None
            and self.care_of_address == other.care_of_address
            and self.local_address == other.local_address
            and self.home_registration == other.home_registration
            and self.mobile_network_prefixes == other.mobile_network_prefixes
            and not (self.flags ^ other.flags) & BUFlag.L  # the defended link-local
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the daemon's persistent store."""
        return {
            "home_address": str(self.home_address),
            "care_of_address": str(self.care_of_address),
            "local_address": str(self.local_address),
            "lifetime": self.lifetime,
            "registered_at": self.registered_at,
            "expires_at": self.expires_at,
            "sequence": self.sequence,
            "flags": self.flags,
            "home_registration": self.home_registration,
            "mobile_network_prefixes": [str(p) for p in self.mobile_network_prefixes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Binding:
        """Inverse of :meth:`to_dict`."""
        return cls(
            home_address=IPv6Address(d["home_address"]),
            care_of_address=IPv6Address(d["care_of_address"]),
            local_address=IPv6Address(d["local_address"]),
            lifetime=int(d["lifetime"]),
            registered_at=float(d["registered_at"]),
            expires_at=float(d["expires_at"]),
            sequence=int(d["sequence"]),
            flags=int(d["flags"]),
            home_registration=bool(d["home_registration"]),
            mobile_network_prefixes=tuple(
                IPv6Network(p) for p in d.get("mobile_network_prefixes", ())
            ),
        )

    def shifted(self, delta: float) -> Binding:
        """The same binding with its times moved by ``delta`` (clock translation on restore)."""
        return replace(
            self, registered_at=self.registered_at + delta, expires_at=self.expires_at + delta
        )


class BindingCache:
    """Bindings by home address with O(log n) expiry scheduling (lazy-deletion heap)."""

    __slots__ = ("_entries", "_heap")

    def __init__(self) -> None:
        self._entries: dict[IPv6Address, Binding] = {}
        self._heap: list[tuple[float, IPv6Address]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, home_address: object) -> bool:
        return home_address in self._entries

    def __iter__(self) -> Iterator[Binding]:
        return iter(list(self._entries.values()))

    def get(self, home_address: IPv6Address) -> Binding | None:
        """The entry for ``home_address``, or None."""
        return self._entries.get(home_address)

    def put(self, binding: Binding) -> Binding | None:
        """Insert or replace; returns the previous entry."""
        hoa = binding.home_address
        prev = self._entries.get(hoa)
        self._entries[hoa] = binding
        # prev's item is at or before prev.expires_at: still a lower bound if the
        # expiry did not move earlier
        if prev is None or binding.expires_at < prev.expires_at:
            heapq.heappush(self._heap, (binding.expires_at, hoa))
            if len(self._heap) > 2 * len(self._entries) + 1024:
                self._compact()
        return prev

    def remove(self, home_address: IPv6Address) -> Binding | None:
        """Delete and return the entry (its heap item goes stale)."""
        return self._entries.pop(home_address, None)

    def _settle_top(self) -> None:
        """Until the top item is exact (an entry expiring at that instant) or the heap
        is empty: move lower-bound items to their entry's expiry, drop dead ones."""
        heap, entries = self._heap, self._entries
        while heap:
            when, hoa = heap[0]
            b = entries.get(hoa)
            if b is None:
                heapq.heappop(heap)
            elif b.expires_at == when:
                return
            else:  # a lower bound (the entry was refreshed): move it to the real expiry
                heapq.heapreplace(heap, (b.expires_at, hoa))

    def next_expiry(self) -> float | None:
        """Earliest ``expires_at`` of a live entry."""
        self._settle_top()
        return self._heap[0][0] if self._heap else None

    def expire(self, now: float) -> list[Binding]:
        """Remove and return every entry with ``expires_at <= now``."""
        out: list[Binding] = []
        heap, entries = self._heap, self._entries
        while True:
            self._settle_top()
            if not heap or heap[0][0] > now:
                return out
            _, hoa = heapq.heappop(heap)
            out.append(entries.pop(hoa))

    def _compact(self) -> None:
        self._heap = [(b.expires_at, b.home_address) for b in self._entries.values()]
        heapq.heapify(self._heap)
