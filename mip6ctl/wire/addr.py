"""Interned IPv6Address objects for the decode hot path.

Why: ``IPv6Address(packed)`` costs ~1 µs of Python, and a Binding Update
carries three or four addresses.  The same few addresses (this node's, the
mobile nodes' home and care-of addresses) come back with every refresh, so a
dict from the 16 packed octets to one shared object turns each into a
~0.1 µs lookup -- and equal addresses become the *same* object, so dict
lookups keyed by them (binding cache, configuration) match on identity
without a Python-level ``__eq__``.

The table is bounded: past :data:`MAX_ENTRIES` it is emptied and refills
with what is in use (addresses are immutable, so a dropped entry only costs
one more construction).
"""

from __future__ import annotations

from ipaddress import IPv6Address

__all__ = ["MAX_ENTRIES", "address"]

MAX_ENTRIES = 1 << 18
"""About 2.5 bindings' worth of addresses for a 100k-binding home agent (home +
care-of), ~20 MB at most besides the address objects the bindings hold anyway."""

_table: dict[bytes, IPv6Address] = {}


def address(packed: bytes) -> IPv6Address:
    """The IPv6Address for 16 packed octets (``bytes``; shared, never mutated)."""
    a = _table.get(packed)
    if a is None:
        if len(_table) >= MAX_ENTRIES:
            _table.clear()
        a = _table[packed] = IPv6Address(packed)
    return a
