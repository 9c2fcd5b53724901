"""The kernel transport's wildcard route-optimisation objects (what UMIP's xfrm_cn_init adds),
rendered as owned static state."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from mip6ctl.kernel.xfrm import encode_policy, encode_state
from mip6ctl.ownership import XFRM_PRIORITY_MAX, XFRM_PRIORITY_MIN
from mip6ctl.state.render import render_signalling
from mip6ctl.state.xfrm import Direction, Level, Mode, XfrmPolicy, XfrmProto, XfrmState


def test_wildcards_are_any_to_any_ro_states_and_one_optional_mh_policy() -> None:
    objs = list(render_signalling("kernel").objects.values())
    states = [o for o in objs if isinstance(o, XfrmState)]
    (policy,) = [o for o in objs if isinstance(o, XfrmPolicy)]
    anyaddr = IPv6Address("::")
    assert {s.proto for s in states} == {XfrmProto.HAO, XfrmProto.ROUTE2}
    for s in states:
        assert (s.src, s.dst, s.coaddr, s.mode) == (anyaddr, anyaddr, anyaddr, Mode.RO)
        assert s.flags & 8  # XFRM_STATE_WILDRECV: the kernel uses a wildcard state only so
        assert s.owned  # reconciled, drift-repaired; the owned mark matches unmarked packets
        assert s.mark.value == 0
        encode_state(s)
    assert policy.direction == Direction.IN and policy.owned
    # behind every more specific owned policy (RFC 3776 BU/BA, route optimisation)
    assert XFRM_PRIORITY_MIN + 0x20 < policy.priority <= XFRM_PRIORITY_MAX
    assert policy.selector.proto == 135 and policy.selector.mh_type is None
    assert policy.selector.src == policy.selector.dst == IPv6Network("::/0")
    assert [(t.proto, t.mode, t.level) for t in policy.templates] == [
        (XfrmProto.HAO, Mode.RO, Level.USE),
        (XfrmProto.ROUTE2, Mode.RO, Level.USE),
    ]
    encode_policy(policy)


def test_userspace_transport_renders_the_drop_chains() -> None:
    d = render_signalling("userspace")
    assert sorted(k[2] for k in d.objects if k[0] == "nft-chain") == [
        "signalling_in",
        "signalling_pre",
    ]
