"""The observer's other sources on this kernel: XFRM and nf_tables events, polled kinds.

Every kind the executor writes must be seen when it changes by hand, or drift
repair is blind to it: objects are written through the executor (`converge`),
changed with iproute2 / nft, and the observer's cache must follow.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from ipaddress import IPv6Network

import pytest

from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.reconciler import converge
from mip6ctl.kernel.xfrm import XfrmSocket
from mip6ctl.state.objects import NftSetElement, Seg6TunnelSource
from mip6ctl.state.plan import Origin
from mip6ctl.state.render import REVERSE_TUNNEL_SET, Desired, object_key, render_signalling
from mip6ctl.state.xfrm import Direction, XfrmPolicy, XfrmSelector
from tests import nsutil

needs_nft = pytest.mark.skipif(shutil.which("nft") is None, reason="needs the nft binary")


def until(obs: Observer, cond: Callable[[], bool], timeout: float = 1.0) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("the observer did not see the change within 1 s")
        obs.wait(0.02)
        obs.poll()
    return time.monotonic() - t0


def observer(ns: str, *sources: str) -> Observer:
    with nsutil.inside(ns):
        return Observer(sources=sources)


def test_xfrm_policies_are_observed_from_events_and_foreign_ones_are_not_ours(netns) -> None:
    ns = netns("x")
    policy = XfrmPolicy(
        XfrmSelector(dst=IPv6Network("2001:db8:8::/64"), src=IPv6Network("2001:db8:9::/64")),
        Direction.OUT,
    )
    d = Desired()
    d.add(policy, Origin("config", "test"))
    with observer(ns, "xfrm") as obs:
        with nsutil.inside(ns):
            assert converge(d).ok
        until(obs, lambda: obs.get(object_key(policy)) == policy)
        nsutil.ip("xfrm", "policy", "add", "dir", "out", "src", "2001:db8:77::/64",
                  "dst", "2001:db8:78::/64", "priority", "100", ns=ns)  # fmt: skip
        # another actor deletes it (iproute2 6.x cannot name a policy whose mark value
        # is 0 with a mask: its delete answers ENOENT), through a socket of its own
        with nsutil.inside(ns):
            other = XfrmSocket()
        with other:
            assert all(r.ok for r in other.delete_policies([policy]))
        until(obs, lambda: obs.get(object_key(policy)) is None)
        assert all(k[0] != "xfrm-policy" for k in obs.owned)  # the foreign one is not ours
        out = nsutil.ip("xfrm", "policy", "list", ns=ns).stdout
        assert "2001:db8:77::/64" in out


@needs_nft
def test_nft_set_elements_and_chains_are_observed_from_events(netns) -> None:
    ns = netns("n")
    chains = render_signalling("userspace")
    with observer(ns, "nft") as obs:
        with nsutil.inside(ns):
            assert converge(chains).ok
        for k, want in chains.objects.items():
            until(obs, lambda k=k, want=want: obs.get(k) == want)
        nsutil.run("nft", "flush", "chain", "ip6", "mip6ctl", "signalling_pre", ns=ns)
        key = ("nft-chain", "mip6ctl", "signalling_pre")
        until(obs, lambda: obs.get(key) is not None and obs.get(key).rules == ())
        nsutil.run("nft", "add", "table", "ip6", "foreign", ns=ns)
        nsutil.run("nft", "add", "set", "ip6", "foreign", "s",
                   "{ type ipv6_addr . ipv6_addr; }", ns=ns)  # fmt: skip
        nsutil.run("nft", "add", "set", "ip6", "mip6ctl", REVERSE_TUNNEL_SET,
                   "{ type ipv6_addr . ipv6_addr; }", ns=ns)  # fmt: skip
        nsutil.run("nft", "add", "element", "ip6", "foreign", "s",
                   "{ 2001:db8::1 . 2001:db8::2 }", ns=ns)  # fmt: skip
        e = NftSetElement("2001:db8:a::1", "2001:db8:1::100", REVERSE_TUNNEL_SET)
        elem = Desired()
        elem.add(e, Origin("binding", "2001:db8:1::100"))
        with nsutil.inside(ns):
            assert converge(elem).ok
        until(obs, lambda: obs.get(e.key) == e)
        nsutil.run("nft", "delete", "element", "ip6", "mip6ctl", REVERSE_TUNNEL_SET,
                   "{ 2001:db8:a::1 . 2001:db8:1::100 }", ns=ns)  # fmt: skip
        until(obs, lambda: obs.get(e.key) is None)
        assert all(getattr(o, "table", "mip6ctl") == "mip6ctl" for o in obs.owned.values())
        nsutil.run("nft", "delete", "table", "ip6", "mip6ctl", ns=ns)
        until(obs, lambda: not [k for k in obs.owned if k[0].startswith("nft-")])


def test_the_seg6_tunnel_source_is_polled(netns) -> None:
    ns = netns("t")
    want = Desired()
    want.add(Seg6TunnelSource("2001:db8:a::5"), Origin("binding", "2001:db8:1::100"))
    with observer(ns, "seg6-tunsrc") as obs:
        with nsutil.inside(ns):
            assert converge(want, sources=("seg6-tunsrc",)).ok
        until(obs, lambda: obs.get(("seg6-tunsrc",)) == Seg6TunnelSource("2001:db8:a::5"))
        nsutil.ip("sr", "tunsrc", "set", "::", ns=ns)
        until(obs, lambda: obs.get(("seg6-tunsrc",)) == Seg6TunnelSource())
