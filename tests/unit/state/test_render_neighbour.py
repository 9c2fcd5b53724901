"""The mobile node's static neighbour entry for its home agent (RFC 6275 §11.5.5)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.state.objects import Neighbour
from mip6ctl.state.plan import KIND_ORDER, Origin, plan
from mip6ctl.state.render import Capabilities, MobileNodeView, render, render_mobile_node

ROOT = Path(__file__).resolve().parents[3]
MN = load_directory(ROOT / "examples" / "testbed" / "mn").config
assert MN.mn is not None
HOME = MobileNodeView(MN.mn.home_address, MN.mn.home_agent, None, "mn0")  # type: ignore[arg-type]
LLADDR = "02:00:5e:00:53:01"
WANT = Neighbour("mn0", "2001:db8:1::1", LLADDR)


def neighbours(view: MobileNodeView, caps: Capabilities | None = None) -> dict:
    d = render_mobile_node(MN, view, caps or Capabilities())
    return {k: (o, d.origins[k]) for k, o in d.objects.items() if isinstance(o, Neighbour)}


@pytest.mark.parametrize("tunnel", ["seg6", "ip6tnl"])
def test_at_home_with_the_home_agent_resolved(tunnel: str) -> None:
    got = neighbours(replace(HOME, home_agent_lladdr=LLADDR.upper()), Capabilities(tunnel=tunnel))  # type: ignore[arg-type]
    assert got == {WANT.key: (WANT, Origin("binding", "2001:db8:1::100"))}


def test_not_at_home_without_the_lladdr_nor_away_nor_without_an_interface() -> None:
    assert neighbours(HOME) == {}
    coa = IPv6Address("2001:db8:a::5")
    away = replace(HOME, care_of_address=coa, home_agent_lladdr=LLADDR)
    assert neighbours(away) == {}
    assert neighbours(replace(HOME, ifname=None, home_agent_lladdr=LLADDR)) == {}
    # the lead's field stays next to it
    assert replace(HOME, traffic_trigger=True, home_agent_lladdr=LLADDR).traffic_trigger


def test_through_render_and_plan_the_entry_comes_and_goes() -> None:
    caps = Capabilities()
    resolved = render(MN, (), caps, mobile_node=replace(HOME, home_agent_lladdr=LLADDR))
    plain = render(MN, (), caps, mobile_node=HOME)
    assert set(resolved.objects) - set(plain.objects) == {WANT.key}
    p = plan(resolved.objects, plain.objects, origins=resolved.origins)
    assert [(c.action, c.key) for c in p.changes] == [("create", WANT.key)]
    p = plan(plain.objects, resolved.objects)
    assert [(c.action, c.key) for c in p.changes] == [("delete", WANT.key)]
    other = render(MN, (), caps, mobile_node=replace(HOME, home_agent_lladdr="02:00:5e:00:53:02"))
    p = plan(other.objects, resolved.objects)
    assert [(c.action, c.key) for c in p.changes] == [("update", WANT.key)]
    assert KIND_ORDER["proxy"] < KIND_ORDER["neigh"] < KIND_ORDER["xfrm-state"]
