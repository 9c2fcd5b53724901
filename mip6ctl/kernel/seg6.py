"""The seg6 tunnel backend: RFC 2473 IPv6-in-IPv6 without a netdev per binding.

Sending end: one route per binding, `HOA/128 encap seg6 mode encap.red segs
COA dev X`: with a single segment and the reduced mode the kernel writes an
outer IPv6 header (next header 41) and no SRH.

Receiving end: the outer destination is a local address, so a plain lookup
ends in the local table.  A rule `to LOCAL ipproto 41 lookup T` sends the
tunnelled packets to table T instead, where `LOCAL encap seg6local action
End.DT6 table I` strips the outer header and looks the inner packet up in I
(255 = deliver locally on a mobile node, 254 = forward on a home agent).

Rule priority detail: the kernel's own `lookup local` rule sits at priority
0, and a new rule with an equal priority is inserted *after* the existing
ones, so no rule can precede it.  The receiving end therefore moves the local
lookup into the owned band: an owned `lookup local` rule at
RULE_PRIORITY_MAX is added first, then the priority-0 rule is deleted (the
one documented takeover of a foreign object, `allow_foreign=True`); decap
rules use priorities below RULE_PRIORITY_MAX.  Between the two operations
both local rules exist, so local delivery never stops.  `restore_local_rule_ops`
undoes it.  Consequence an operator must know: host rules with priorities
1..RULE_PRIORITY_MAX-1 now run before the local lookup.
"""

from __future__ import annotations

from mip6ctl import ownership
from mip6ctl.kernel.writer import Op, create, delete
from mip6ctl.state.objects import (
    RT_TABLE_LOCAL,
    RTPROT_KERNEL,
    KernelObject,
    Route,
    Rule,
    Seg6Encap,
    Seg6LocalDecap,
)

IPPROTO_IPV6 = 41

#: the kernel's default local-table rule (foreign: protocol kernel, priority 0)
DEFAULT_LOCAL_RULE = Rule(priority=0, table=RT_TABLE_LOCAL, protocol=RTPROT_KERNEL)
#: its owned replacement, after every decap rule
MOVED_LOCAL_RULE = Rule(priority=ownership.RULE_PRIORITY_MAX, table=RT_TABLE_LOCAL)


def encap_route(
    dst: str, endpoint: str, oif: str, *, table: int = ownership.ROUTE_TABLE, src: str = "::/0"
) -> Route:
    """Tunnel `dst` (a home address, or ::/0 from a home address) to `endpoint`."""
    return Route(dst, table=table, src=src, oif=oif, encap=Seg6Encap((endpoint,), "encap.red"))


def decap_objects(
    local: str,
    oif: str,
    *,
    table: int,
    inner_table: int,
    priority: int = ownership.RULE_PRIORITY_MIN,
) -> list[KernelObject]:
    """Rule + route that decapsulate IPv6-in-IPv6 sent to `local` (this node's address)."""
    if priority >= MOVED_LOCAL_RULE.priority:
        raise ValueError("decap rules must precede the moved local rule")
    return [
        Rule(priority, table=table, dst=local, ipproto=IPPROTO_IPV6),
        Route(local, table=table, oif=oif, encap=Seg6LocalDecap(inner_table)),
    ]


def relocate_local_rule_ops() -> list[Op]:
    """Move the local-table lookup from priority 0 into the owned band (order matters)."""
    return [create(MOVED_LOCAL_RULE), Op("delete", DEFAULT_LOCAL_RULE, allow_foreign=True)]


def restore_local_rule_ops() -> list[Op]:
    """Put the local-table lookup back at priority 0, then drop the owned copy."""
    return [Op("create", DEFAULT_LOCAL_RULE, allow_foreign=True), delete(MOVED_LOCAL_RULE)]
