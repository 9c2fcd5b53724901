"""Static neighbour entries (`Neighbour`, RFC 6275 §11.5.5) against this kernel.

Written by the real Writer, seen by the real Observer from RTNLGRP_NEIGH
events, planned/applied/verified by the Reconciler and by the daemon's
ReconcileLoop for a mobile node back home; deleted by hand with `ip neigh del`
and repaired.  Ordinary neighbour-cache entries are never ours.  And the
solicitation the daemon sends instead of the kernel: an NS from ``::`` that a
Linux home agent answers with an NA to all-nodes carrying its link-layer
address, learning nothing about the soliciting node.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.daemon.reconcile_loop import MOBILE, ReconcileLoop
from mip6ctl.kernel.nd import NdSender, hardware_address, icmp6_filter
from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.reconciler import Reconciler
from mip6ctl.kernel.writer import Writer, create, delete
from mip6ctl.kernel.writer import replace as replace_op
from mip6ctl.state.objects import Neighbour
from mip6ctl.state.plan import Origin
from mip6ctl.state.render import Capabilities, Desired, HostFacts, MobileNodeView
from mip6ctl.wire.icmp6 import NeighborAdvertisement, TargetLinkLayerAddress, decode_icmp6
from tests import nsutil

MN_CFG = load_directory(Path(__file__).resolve().parents[2] / "examples" / "testbed" / "mn").config
HA = "2001:db8:ff01::1"
PEER = "2001:db8:ff01::2"
MAC = "02:00:5e:00:53:01"
MAC2 = "02:00:5e:00:53:02"


class Node:
    """A namespace with veth h0 (up, 2001:db8:ff01::10/64) and h1, a writer and an observer."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        nsutil.ip("link", "add", "h0", "type", "veth", "peer", "name", "h1", ns=ns)
        nsutil.ip("link", "set", "h0", "up", ns=ns)
        nsutil.ip("link", "set", "h1", "up", ns=ns)
        nsutil.ip("-6", "addr", "add", "2001:db8:ff01::10/64", "dev", "h0", "nodad", ns=ns)
        with nsutil.inside(ns):
            self.writer = Writer()
            self.obs = Observer()
        self.rec = Reconciler(observer=self.obs, writer=self.writer)

    def ip(self, *args: str) -> str:
        return nsutil.ip(*args, ns=self.ns).stdout

    def neigh(self) -> str:
        return self.ip("-6", "neigh", "show", "dev", "h0")

    def until(self, cond: Callable[[], bool], timeout: float = 1.0) -> float:
        """Process events (only events: no note_applied, no poll) until `cond()` holds."""
        t0 = time.monotonic()
        while not cond():
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                raise AssertionError("observer did not see the change in time")
            self.obs.wait(min(left, 0.01))
        return time.monotonic() - t0

    def close(self) -> None:
        self.writer.close()
        self.obs.close()


@pytest.fixture
def node(netns) -> Iterator[Node]:
    n = Node(netns("neigh"))
    try:
        yield n
    finally:
        n.close()


def _line(text: str, address: str) -> str:
    return next((x for x in text.splitlines() if x.startswith(address + " ")), "")


def test_create_observe_replace_delete_from_events(node: Node) -> None:
    n = Neighbour("h0", HA, MAC)
    (r,) = node.writer.apply([create(n)])
    assert r.status == "ok", r
    node.until(lambda: node.obs.get(n.key) == n)
    line = _line(node.neigh(), HA)
    assert f"lladdr {MAC}" in line and "PERMANENT" in line and "proto 77" in line
    assert [r.status for r in node.writer.apply([create(n)])] == ["exists"]

    moved = Neighbour("h0", HA, MAC2)
    assert [r.status for r in node.writer.apply([replace_op(moved)])] == ["ok"]
    node.until(lambda: node.obs.get(n.key) == moved)
    assert f"lladdr {MAC2}" in _line(node.neigh(), HA)

    # a fresh observer finds it in its initial dump
    with nsutil.inside(node.ns), Observer() as fresh:
        assert fresh.get(n.key) == moved

    assert [r.status for r in node.writer.apply([delete(moved)])] == ["ok"]
    node.until(lambda: node.obs.get(n.key) is None)
    assert _line(node.neigh(), HA) == ""
    assert [r.status for r in node.writer.apply([delete(moved)])] == ["absent"]


def test_ordinary_entries_are_ignored_and_foreign_static_ones_are_conflicts(node: Node) -> None:
    node.ip("-6", "neigh", "add", PEER, "lladdr", MAC2, "dev", "h0", "nud", "reachable")
    node.ip("-6", "neigh", "add", "2001:db8:ff01::3", "lladdr", MAC2, "dev", "h0", "nud", "stale")
    node.ip(
        "-6", "neigh", "add", "2001:db8:ff01::4", "lladdr", MAC2, "dev", "h0", "nud", "permanent"
    )
    node.obs.wait(0.2)
    node.obs.resync()
    assert not [k for k in (*node.obs.owned, *node.obs.foreign) if k[0] == "neigh"]

    # a foreign static entry (an operator's) is never overwritten nor deleted
    foreign = Neighbour("h0", "2001:db8:ff01::4", MAC)
    (r,) = node.writer.apply([create(foreign)])
    assert r.status == "conflict" and r.foreign == Neighbour("h0", foreign.address, MAC2, 0)
    (r,) = node.writer.apply([delete(foreign)])
    assert r.status == "absent" and r.foreign is not None
    assert f"lladdr {MAC2}" in _line(node.neigh(), foreign.address)

    # an entry the kernel resolved itself is its cache, not a foreign object: replaced
    ours = Neighbour("h0", "2001:db8:ff01::3", MAC)
    assert [r.status for r in node.writer.apply([create(ours)])] == ["ok"]
    node.until(lambda: node.obs.get(ours.key) == ours)
    assert "PERMANENT proto 77" in _line(node.neigh(), ours.address)

    # ours turned dynamic by hand (`nud reachable` keeps the protocol) is not what we want
    node.ip("-6", "neigh", "change", ours.address, "dev", "h0", "nud", "reachable")
    node.until(lambda: node.obs.get(ours.key) is None)
    assert [r.status for r in node.writer.apply([create(ours)])] == ["ok"]
    node.until(lambda: node.obs.get(ours.key) == ours)


def test_reconciler_applies_verifies_and_repairs_drift(node: Node) -> None:
    want = Desired()
    want.add(Neighbour("h0", HA, MAC), Origin("binding", "2001:db8:1::100"))
    p = node.rec.plan(want)
    assert [(c.action, c.key) for c in p.changes] == [("create", ("neigh", "h0", HA))]
    report = node.rec.apply(p, want)
    assert report.ok and not report.mismatches, report
    assert node.rec.plan(want).empty

    node.ip("-6", "neigh", "del", HA, "dev", "h0")
    node.until(lambda: not node.rec.plan(want).empty)
    report = node.rec.apply(node.rec.plan(want), want)
    assert report.ok and [o.change.action for o in report.outcomes] == ["create"]
    assert "PERMANENT proto 77" in _line(node.neigh(), HA)
    assert node.rec.plan(want).empty

    gone = node.rec.apply(node.rec.plan(Desired()), Desired())
    assert gone.ok and [o.change.action for o in gone.outcomes] == ["delete"]
    assert _line(node.neigh(), HA) == ""


def test_mobile_node_back_home_through_the_reconcile_loop(netns) -> None:
    """The daemon's path: the at-home view with the home agent's link-layer address
    renders the entry; `ip neigh del` is repaired from the event; the view without
    it (after the de-registration's BA) removes it."""
    ns = netns("mn")
    nsutil.ip("link", "add", "mn0", "type", "veth", "peer", "name", "br0", ns=ns)
    for dev in ("mn0", "br0"):
        nsutil.ip("link", "set", dev, "up", ns=ns)
    assert MN_CFG.mn is not None
    ha = str(MN_CFG.mn.home_agent)
    view = MobileNodeView(MN_CFG.mn.home_address, MN_CFG.mn.home_agent, None, "mn0")  # type: ignore[arg-type]
    box: dict[str, BaseException] = {}

    def neigh() -> str:
        return _line(nsutil.ip("-6", "neigh", "show", "dev", "mn0", ns=ns).stdout, ha)

    async def until(cond: Callable[[], bool], timeout: float = 1.0) -> None:
        t0 = time.monotonic()
        while not await asyncio.to_thread(cond):
            assert time.monotonic() - t0 < timeout, "not within the bound"
            await asyncio.sleep(0.01)

    async def main() -> None:
        obs = Observer()
        writer = Writer()
        caps = Capabilities(tunnel="ip6tnl")  # the at-home state without seg6 objects
        loop = ReconcileLoop(MN_CFG, caps, HostFacts(), obs, writer, resync_interval=3600)
        loop.start()
        try:
            loop.set_mobile_node(replace(view, home_agent_lladdr=MAC))
            assert await loop.wait_reconciled(MOBILE, 3.0)
            assert f"lladdr {MAC}" in neigh() and "PERMANENT" in neigh()
            await asyncio.to_thread(nsutil.ip, "-6", "neigh", "del", ha, "dev", "mn0", ns=ns)
            await until(lambda: "PERMANENT proto 77" in neigh())
            assert loop.status()["counters"]["drift_events"] >= 1
            loop.set_mobile_node(view)
            assert await loop.wait_reconciled(MOBILE, 3.0)
            await until(lambda: "PERMANENT" not in neigh())
        finally:
            await loop.stop()
            writer.close()
            obs.close()

    def thread() -> None:
        try:
            with nsutil.inside(ns):
                asyncio.run(main())
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=thread, name="neighbour-loop", daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "test body did not finish"
    if "error" in box:
        raise box["error"]


def test_solicitation_from_the_unspecified_address_is_answered_to_all_nodes(netns) -> None:
    ha_ns, mn_ns = netns("ha"), netns("mn")
    nsutil.ip("link", "add", "x0", "type", "veth", "peer", "name", "y0", ns=ha_ns)
    nsutil.ip("link", "set", "y0", "netns", mn_ns, ns=ha_ns)
    nsutil.ip("link", "set", "x0", "up", ns=ha_ns)
    nsutil.ip("link", "set", "y0", "up", ns=mn_ns)
    nsutil.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "x0", "nodad", ns=ha_ns)
    nsutil.ip("-6", "addr", "add", "2001:db8:1::100/64", "dev", "y0", "nodad", ns=mn_ns)
    with nsutil.inside(ha_ns):
        ha_mac = hardware_address("x0")
    with nsutil.inside(mn_ns):
        listen = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        nd = NdSender()
    with listen, contextlib.closing(nd):
        listen.setsockopt(socket.IPPROTO_ICMPV6, 1, icmp6_filter((136,)))
        listen.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        target = IPv6Address("2001:db8:1::1")
        na: NeighborAdvertisement | None = None
        dst = None
        deadline = time.monotonic() + 3.0
        while na is None and time.monotonic() < deadline:
            with nsutil.inside(mn_ns):  # interface names are looked up in this namespace
                nd.neighbor_solicitation_unspecified("y0", target)  # the link may be coming up
            if not select.select([listen], [], [], 0.3)[0]:
                continue
            data, anc, _f, _addr = listen.recvmsg(2048, 256)
            msg = decode_icmp6(data)
            if isinstance(msg, NeighborAdvertisement) and msg.target == target:
                na = msg
                dst = next(IPv6Address(d[:16]) for _lvl, t, d in anc if t == socket.IPV6_PKTINFO)
        assert na is not None, "no NA for the home agent"
        assert dst == IPv6Address("ff02::1")  # RFC 4861 §7.2.4: source :: -> all-nodes
        assert TargetLinkLayerAddress(ha_mac) in na.options
        assert not na.flags & NeighborAdvertisement.S
    # the home agent learnt nothing about the soliciting node (no entry for its address)
    assert "2001:db8:1::100" not in nsutil.ip("-6", "neigh", "show", ns=ha_ns).stdout
