"""RFC 3963 on the seg6 backend: the reverse-tunnel check admits a mobile network.

The nf_tables objects render() makes for a home agent with a mobile router
binding, written by the plan executor into a namespace of this kernel, read
back by the observer equal to what was rendered, and tested with real
IPv6-in-IPv6 packets from a second namespace: the drop counter of the check
says which packets it let through.  (The decapsulation itself needs seg6local;
the check sits before it in prerouting and does not.)
"""

from __future__ import annotations

import logging
import socket
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.kernel import nft, nft_state
from mip6ctl.kernel.reconciler import converge
from mip6ctl.state.objects import NftChain, NftSet, NftSetElement
from mip6ctl.state.render import CHAIN_REVERSE_TUNNEL, Capabilities, Desired, render
from tests import nsutil

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
pytest.importorskip("scapy.layers.inet6")
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet import UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HA_CFG = load_directory(REPO / "examples" / "testbed" / "nemo" / "ha").config
HA = IPv6Address("2001:db8:1::1")
HOA = IPv6Address("2001:db8:1::100")
COA = IPv6Address("2001:db8:a::100")
OTHER_COA = IPv6Address("2001:db8:a::200")
MNP = IPv6Network("2001:db8:50::/64")
MNP1 = IPv6Network("2001:db8:50:1::/64")


class _Router:
    home_address = HOA
    care_of_address = COA
    mobile_network_prefixes = (MNP, MNP1)
    defended_link_local = None


def nft_objects(bindings: list) -> Desired:
    """Only the nf_tables part of the home agent's rendered state (seg6 backend)."""
    full = render(HA_CFG, bindings, Capabilities(tunnel="seg6", nftables=True))
    out = Desired()
    for key, obj in full.objects.items():
        if isinstance(obj, NftSet | NftChain | NftSetElement):
            out.add(obj, full.origins[key])
    return out


def converge_in(ns: str, desired: Desired, *, present: bool = True) -> None:
    with nsutil.inside(ns):
        report = converge(desired, present=present)
    assert report.ok, (report.outcomes, report.mismatches)


def test_mobile_network_passes_the_reverse_tunnel_check_only_from_its_care_of(netns) -> None:
    mr, ha = netns("mr"), netns("ha")
    nsutil.ip("link", "add", "mr0", "netns", mr, "type", "veth", "peer", "name", "ha0", "netns", ha)
    for ns, dev, addrs in ((mr, "mr0", (COA, OTHER_COA)), (ha, "ha0", (HA,))):
        for a in addrs:
            nsutil.ip("-6", "addr", "add", f"{a}/64", "dev", dev, "nodad", ns=ns)
        nsutil.ip("link", "set", dev, "up", ns=ns)
    nsutil.ip("-6", "route", "add", f"{HA}/128", "dev", "mr0", ns=mr)
    nsutil.ip("-6", "route", "add", "2001:db8:a::/64", "dev", "ha0", ns=ha)
    assert nsutil.ping6(mr, str(HA), count=1, timeout=5) == 1

    desired = nft_objects([_Router()])
    converge_in(ha, desired)
    with nsutil.inside(ha):
        s = nft.NftSession()
    with s:
        assert {o.key: o for o in nft_state.read_table(s)} == desired.objects
        converge_in(ha, desired)  # a second pass has nothing to do
        with nsutil.inside(mr):
            tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)

        def dropped() -> int:
            info = nft.describe(session=s)
            assert info is not None
            return info.dropped(CHAIN_REVERSE_TUNNEL)

        def passes(outer: IPv6Address, inner: IPv6Address) -> bool:
            before = dropped()
            pkt = (
                IPv6(src=str(outer), dst=str(HA), nh=41)
                / IPv6(src=str(inner), dst="2001:db8:c::2")
                / UDP(sport=4000, dport=5000)
            )
            tx.sendto(raw(pkt), (str(HA), 0))
            deadline = time.monotonic() + 2.0 * nsutil.SLOWDOWN
            while time.monotonic() < deadline:  # a drop is counted synchronously on receive
                if dropped() != before:
                    return False
                time.sleep(0.05)
            return True

        with tx:
            assert passes(COA, HOA)  # the home address, as before
            assert passes(COA, IPv6Address("2001:db8:50::2"))  # a host of the first prefix
            assert passes(COA, IPv6Address("2001:db8:50:1:ffff::9"))  # and of the second
            assert not passes(OTHER_COA, IPv6Address("2001:db8:50::2"))  # another care-of
            assert not passes(COA, IPv6Address("2001:db8:50:2::2"))  # outside its prefixes
            assert not passes(COA, IPv6Address("2001:db8:1::999"))  # another home address

            # de-registration: the elements go, the sets and the accept rule stay
            elements = Desired()
            for key, obj in desired.objects.items():
                if isinstance(obj, NftSetElement):
                    elements.add(obj, desired.origins[key])
            converge_in(ha, elements, present=False)
            assert not passes(COA, IPv6Address("2001:db8:50::2"))
            left = [o for o in nft_state.read_table(s) if isinstance(o, NftSetElement)]
            assert left == []
        nft.remove_table(session=s)
