"""A care-of address change moves IPsec tunnel policies by XFRM MIGRATE, through the executor.

This kernel has XFRM policies and MIGRATE but no ESP states, so the template
here uses IKE keying (policies only, as with an IKE daemon that installs the
SAs): render a home agent's binding at one care-of address, converge, render
it at another and converge again.  The plan says ``migrate`` (not replace,
not delete + add), the kernel's policies carry the new endpoint
(`ip xfrm policy` as the independent reader), the kernel announced the move
on its migrate group with the IKE endpoints (what strongSwan listens to),
and planning once more finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address

from mip6ctl.config.model import Mip6Config
from mip6ctl.kernel.reconciler import converge
from mip6ctl.kernel.xfrm import XfrmEventSocket
from mip6ctl.kernel.xfrm_codec import XFRMNLGRP_MIGRATE, MigrateEvent
from mip6ctl.state.render import Capabilities, Desired, HostFacts, render_binding
from mip6ctl.state.xfrm import XfrmPolicy
from tests import nsutil

HOA, HA = IPv6Address("2001:db8:1::100"), IPv6Address("2001:db8:1::1")
COA1, COA2 = IPv6Address("2001:db8:a::100"), IPv6Address("2001:db8:b::100")
CFG = Mip6Config.model_validate(
    {
        "node": {"role": "ha"},
        "kernel": {"tunnel": "ip6tnl", "signalling": "kernel"},
        "ha": {
            "interfaces": ["home0"],
            "home_prefixes": ["2001:db8:1::/64"],
            "address": str(HA),
            "mobile_nodes": [{"home_address": str(HOA), "ipsec": "mn1"}],
        },
        "ipsec": {
            "mn1": {
                "protect": ["return-routability", "payload"],
                "key_management": "ike",
                "reqid": {"to_ha": 21, "to_mn": 22},
            }
        },
    }
)
CAPS = Capabilities(tunnel="ip6tnl", migrate=True)


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    home_registration: bool = True
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def _policies(care_of: IPv6Address) -> Desired:
    """Only the XFRM objects of the binding (its ip6tnl device is not this test's)."""
    d = render_binding(CFG, B(HOA, care_of), CAPS, HostFacts(HA))
    out = Desired()
    for k, obj in d.objects.items():
        if isinstance(obj, XfrmPolicy):
            out.objects[k], out.origins[k] = obj, d.origins[k]
    return out


def test_a_move_is_an_xfrm_migrate(netns: Callable[..., str]) -> None:
    ns = netns("migrate")
    with nsutil.inside(ns):
        first = converge(_policies(COA1))
        assert first.ok, first
        assert {o.change.action for o in first.outcomes} == {"create"}
        before = nsutil.ip("xfrm", "policy", "list", ns=ns).stdout
        assert str(COA1) in before and before.count("mode tunnel") == 6, before

        events = XfrmEventSocket(groups=(XFRMNLGRP_MIGRATE,))
        try:
            moved = converge(_policies(COA2))
            got = [e for e in events.wait(5.0) if isinstance(e, MigrateEvent)]
            deadline = 20
            while len(got) < 6 and deadline:
                got += [e for e in events.wait(0.2) if isinstance(e, MigrateEvent)]
                deadline -= 1
        finally:
            events.close()
        assert moved.ok, moved
        assert [o.change.action for o in moved.outcomes] == ["migrate"] * 6, moved.outcomes
        assert {o.message for o in moved.outcomes} == {"migrated"}, moved.outcomes
        after = nsutil.ip("xfrm", "policy", "list", ns=ns).stdout
        assert str(COA2) in after and str(COA1) not in after, after
        assert after.count("mode tunnel") == 6 and "reqid 21" in after and "reqid 22" in after

        # one MIGRATE per policy, each naming the IKE endpoints after the move
        assert len(got) == 6, got
        assert all(e.kmaddress is not None for e in got)
        assert {(e.kmaddress.local, e.kmaddress.remote) for e in got} == {(HA, COA2)}  # type: ignore[union-attr]
        assert {m.new_dst for e in got for m in e.migrations} | {
            m.new_src for e in got for m in e.migrations
        } == {HA, COA2}

        again = converge(_policies(COA2))
        assert again.ok and again.plan.empty, again.plan.changes
