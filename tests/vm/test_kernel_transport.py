"""The kernel signalling transport on a CONFIG_IPV6_MIP6 kernel (vm tier only).

Two namespaces joined by veth: the mobile node (care-of address on mn0, home
address on lo flagged ``home``) sends a Binding Update with a Home Address
option through :class:`KernelTransport`; the home agent's KernelTransport
receives it and answers with a Binding Acknowledgement carrying a type 2
routing header.  The kernel accepts the option / routing header only with the
XFRM states and inbound policies UMIP also installs (hao on the home agent,
route2 on the mobile node); the test makes them with iproute2, as the
reconciler would.  Both ends check every field of the event.
"""

from __future__ import annotations

import select
import time
from ipaddress import IPv6Address

import pytest

from mip6ctl.engine.events import Received, Send
from mip6ctl.kernel.probe import kernel_mip6_missing
from mip6ctl.kernel.transport import KernelTransport
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate
from tests import nsutil

pytestmark = pytest.mark.usefixtures("mip6_modules")

HA = IPv6Address("2001:db8:1::1")
COA = IPv6Address("2001:db8:1::100")
HOA = IPv6Address("2001:db8:2::100")


def ip(*args: str, ns: str) -> None:
    proc = nsutil.ip(*args, ns=ns, check=False)
    assert proc.returncode == 0, f"ip {' '.join(args)}: {proc.stderr.strip()}"


def collect(t: KernelTransport, timeout: float = 20.0) -> list[object]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([t.fileno()], [], [], left)[0]:
            events = t.read_ready()
            if events:
                return events
    return []


def test_kernel_transport_is_available_in_the_guest() -> None:
    assert kernel_mip6_missing() is None


def test_bu_with_hao_and_ba_with_rh2_between_namespaces(netns) -> None:
    mn, ha = netns("mn"), netns("ha")
    nsutil.ip("link", "add", "mn0", "netns", mn, "type", "veth", "peer", "name", "ha0", "netns", ha)
    ip("-6", "addr", "add", f"{COA}/64", "dev", "mn0", "nodad", ns=mn)
    ip("-6", "addr", "add", f"{HOA}/128", "dev", "lo", "home", "nodad", ns=mn)
    ip("-6", "addr", "add", f"{HA}/64", "dev", "ha0", "nodad", ns=ha)
    ip("link", "set", "mn0", "up", ns=mn)
    ip("link", "set", "ha0", "up", ns=ha)
    # HA: accept a Home Address option HOA from COA; MN: a type 2 RH from HA to HOA via COA.
    ip("xfrm", "state", "add", "src", str(HOA), "dst", str(HA), "proto", "hao",
       "mode", "ro", "coa", str(COA), ns=ha)  # fmt: skip
    ip("xfrm", "policy", "add", "dir", "in", "src", f"{HOA}/128", "dst", f"{HA}/128",
       "tmpl", "src", str(HOA), "dst", str(HA), "proto", "hao", "mode", "ro", "level", "use",
       ns=ha)  # fmt: skip
    ip("xfrm", "state", "add", "src", str(HA), "dst", str(HOA), "proto", "route2",
       "mode", "ro", "coa", str(COA), ns=mn)  # fmt: skip
    ip("xfrm", "policy", "add", "dir", "in", "src", f"{HA}/128", "dst", f"{HOA}/128",
       "tmpl", "src", str(HA), "dst", str(HOA), "proto", "route2", "mode", "ro", "level", "use",
       ns=mn)  # fmt: skip
    # From the HA: the MN would pick its home address as source (RFC 6724 rule 4).
    assert nsutil.ping6(ha, str(COA), count=1, timeout=10) == 1

    with nsutil.inside(ha):
        t_ha = KernelTransport(["ha0"])
    with nsutil.inside(mn):
        t_mn = KernelTransport()
    with t_ha, t_mn:
        bu = BindingUpdate(42, 0xC000, 100)
        t_mn.send(Send(bu, COA, HA, home_address_option=HOA))
        events = collect(t_ha)
        assert len(events) == 1, f"HA got {events}; HA stats {t_ha.stats}"
        ev = events[0]
        assert isinstance(ev, Received)
        assert ev.message == bu
        assert (ev.src, ev.dst) == (COA, HA)  # on-the-wire addresses, as userspace reports them
        assert ev.home_address_option == HOA
        assert ev.routing_header_address is None
        assert ev.ifname == "ha0"

        ba = BindingAcknowledgement(0, 42, 100)
        t_ha.send(Send(ba, HA, COA, routing_header_address=HOA))
        events = collect(t_mn)
        assert len(events) == 1, f"MN got {events}; MN stats {t_mn.stats}"
        ev = events[0]
        assert isinstance(ev, Received)
        assert ev.message == ba
        assert (ev.src, ev.dst) == (HA, COA)
        assert ev.routing_header_address == HOA
        assert ev.home_address_option is None
        assert t_mn.stats.sent == 1 and t_ha.stats.sent == 1
