"""render() for a mobile node that finds its home agent by DHAAD (RFC 6275 §11.4.1)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any

from mip6ctl.config.loader import load_directory
from mip6ctl.state.objects import Route
from mip6ctl.state.render import Capabilities, MobileNodeView, render

ROOT = Path(__file__).resolve().parents[3]
COA = IPv6Address("2001:db8:a::100")


def objects(cfg: Any, view: MobileNodeView) -> set:
    return set(render(cfg, (), Capabilities(tunnel="ip6tnl"), mobile_node=view).objects.values())


def test_dhaad_mobile_node_reaches_the_anycast_address_through_the_router() -> None:
    """A home-prefix route left from the home link would send the DHAAD Request on-link:
    the anycast address gets a host route via the current router, and until a home agent
    is found there is no reverse tunnel."""
    mn = load_directory(ROOT / "examples" / "testbed" / "mn").config
    assert mn.mn is not None
    dhaad = mn.model_copy(update={"mn": mn.mn.model_copy(update={"home_agent": "dhaad"})})
    router = IPv6Address("fe80::1")
    unknown = MobileNodeView(IPv6Interface("2001:db8:1::100/64"), None, COA, "mn0", router=router)
    objs = objects(dhaad, unknown)
    anycast = Route("2001:db8:1::fdff:ffff:ffff:fffe/128", table=254, oif="mn0", gateway="fe80::1")
    assert anycast in objs
    assert not [o for o in objs if isinstance(o, Route) and o.dst == "::/0"]  # no tunnel yet
    found = MobileNodeView(
        IPv6Interface("2001:db8:1::100/64"), IPv6Address("2001:db8:1::1"), COA, "mn0", router=router
    )
    objs = objects(dhaad, found)
    assert anycast in objs and [o for o in objs if isinstance(o, Route) and o.dst == "::/0"]
    configured = objects(mn, found)
    assert anycast not in configured
