"""How mip6ctl marks the kernel objects it owns (DESIGN.md invariant 3).

Every object the reconciler creates carries one of these marks, and the
observer only reports marked objects as ours.  Anything without the mark is
foreign: never changed, never deleted, and reported as a conflict when it
blocks a desired object.  The values are defaults; `[kernel]` in the
configuration may move them (e.g. when another daemon already uses the
protocol number).
"""

from __future__ import annotations

#: rtnetlink protocol number stamped on owned routes and rules
#: (unused in iproute2's rt_protos; name it "mip6" in /etc/iproute2/rt_protos.d/).
ROUTE_PROTOCOL = 77

#: Routing table holding per-binding routes (RFC 6275 number, easy to recognise).
ROUTE_TABLE = 6275

#: Owned policy-routing rules live in [RULE_PRIORITY_MIN, RULE_PRIORITY_MAX].
RULE_PRIORITY_MIN = 1000
RULE_PRIORITY_MAX = 1099

#: Tunnel devices mip6ctl creates are named with this prefix (ip6tnl backend).
TUNNEL_PREFIX = "m6t"

#: XFRM policies mip6ctl owns carry priorities in this band ...
XFRM_PRIORITY_MIN = 0x6D00
XFRM_PRIORITY_MAX = 0x6DFF
#: ... and this mark (value/mask) so that equal-shaped foreign policies differ
#: (the kernel's policy identity includes the mark, not the priority).
#: A policy/SA applies to a packet only when ``(skb_mark & mask) == value``, so
#: the value must be 0 or unmarked traffic would bypass our policies (checked
#: on Linux 6.18: a 0x6D360000/0xFFFF0000 block policy let unmarked packets
#: through, 0/mask blocked them).  A single mask bit keeps the side effect
#: small: only packets whose fwmark has this bit set skip mip6ctl's XFRM
#: policies (usable on purpose, e.g. for an IKE daemon's own traffic).
XFRM_MARK = 0
XFRM_MARK_MASK = 0x00200000

#: nf_tables table (family ip6) owned by mip6ctl (mip6ctl.kernel.nft).
NFT_TABLE = "mip6ctl"
