"""Duplicate Address Detection sockets survive the home interface being re-created.

Two namespaces on a veth pair: "ha" runs `NeighbourDiscovery` on ``home0``,
"peer" holds the address under test (no DAD of its own, so it defends it at
once).  Deleting ``home0`` and creating it again gives it a new ifindex; the
sockets bound to the old one would never see the new link's Neighbor
Advertisements, and DAD would call a defended address free.
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv6Address

from mip6ctl.daemon.neighbour import NeighbourDiscovery
from tests import nsutil

TAKEN = IPv6Address("2001:db8:1::77")
FREE = IPv6Address("2001:db8:1::78")


def _node(ns: str) -> None:
    for knob in ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"):
        nsutil.run("sysctl", "-qw", knob, ns=ns)


def _home_link(ha: str, peer: str) -> None:
    nsutil.ip(
        "link", "add", "home0", "netns", ha, "type", "veth", "peer", "name", "p0", "netns", peer
    )
    nsutil.ip("link", "set", "home0", "up", ns=ha)
    nsutil.ip("link", "set", "p0", "up", ns=peer)
    nsutil.ip("-6", "addr", "add", f"{TAKEN}/64", "dev", "p0", "nodad", ns=peer)


async def _dad(nd: NeighbourDiscovery, address: IPv6Address) -> bool:
    # a link that just came up: give it up to three tries to carry a first NS
    for _ in range(3):
        if not await nd.duplicate_address_detection(address, "home0", timeout=1.0):
            return False
    return True


def test_dad_reports_a_duplicate_after_the_home_interface_is_recreated(netns) -> None:
    ha, peer = netns("ha"), netns("peer")
    for ns in (ha, peer):
        _node(ns)
    _home_link(ha, peer)

    async def main() -> None:
        nd = NeighbourDiscovery(["home0"])
        nd.start(asyncio.get_running_loop())
        try:
            before = socket.if_nametoindex("home0")
            assert await _dad(nd, TAKEN) is False, "the peer defends its address"
            nsutil.ip("link", "del", "home0", ns=ha)
            _home_link(ha, peer)
            assert socket.if_nametoindex("home0") != before
            # no link_changed() call: the next DAD notices the new index itself
            assert await _dad(nd, TAKEN) is False, "DAD on the re-created interface"
            assert await nd.duplicate_address_detection(FREE, "home0", 0.5) is True
            # and the explicit path, as the daemon does on RTM_NEWLINK
            nsutil.ip("link", "del", "home0", ns=ha)
            _home_link(ha, peer)
            nd.link_changed("home0")
            assert await _dad(nd, TAKEN) is False
        finally:
            nd.close()

    with nsutil.inside(ha):
        asyncio.run(main())


def test_a_home_interface_missing_at_start_is_opened_when_it_appears(netns) -> None:
    ha, peer = netns("ha"), netns("peer")
    for ns in (ha, peer):
        _node(ns)

    async def main() -> None:
        nd = NeighbourDiscovery(["home0"])
        nd.start(asyncio.get_running_loop())
        try:
            assert await nd.duplicate_address_detection(TAKEN, "home0", 0.2) is True
            _home_link(ha, peer)
            assert await _dad(nd, TAKEN) is False
        finally:
            nd.close()

    with nsutil.inside(ha):
        asyncio.run(main())
