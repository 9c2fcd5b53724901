"""Route optimisation on the wire (RFC 6275 §6.3, §6.4, §9.3; vm tier only).

Four namespaces joined through a router ``rt``::

    mn (mn0: CoA 2001:db8:a::100) --- rt --- cn (cn0: 2001:db8:c::2)
                                       |
                                       +---- ha (home0: 2001:db8:1::1, home link)

Every kernel object comes from ``render`` and goes in through the project's
`Reconciler` (rtnetlink writer + XFRM socket), never from iproute2: the home
agent's static state plus the binding HoA -> CoA (ip6tnl tunnel, proxy ND); the
mobile node away from home (home address on mn0 flagged ``home``, reverse
tunnel) plus, when route-optimised, the objects for the correspondent; the
correspondent's objects for its binding (`render_correspondent_binding`).

With route optimisation an echo request from a socket bound to the home
address leaves mn0 from the care-of address with a Home Address option, the
correspondent's echo reply comes back to the care-of address with a type 2
routing header naming the home address, the socket gets the reply, and the
home agent sees none of it.  Without (the binding removed: every RO object
gone) the same ping goes through the home agent's tunnel both ways.

Captures are AF_PACKET sockets inside the namespaces (no libpcap here), the
headers parsed by hand.  Every wait is bounded; the module fixture deletes
the namespaces (and with them every object) on failure.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.reconciler import Reconciler
from mip6ctl.kernel.writer import Writer
from mip6ctl.kernel.xfrm import XfrmSocket
from mip6ctl.state.render import (
    Capabilities,
    Desired,
    HostFacts,
    MobileNodeView,
    render,
)
from mip6ctl.state.xfrm import XfrmPolicy, XfrmProto, XfrmState
from tests import nsutil

pytestmark = pytest.mark.usefixtures("mip6_modules")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "testbed"
HA_CFG = load_directory(EXAMPLES / "ha").config
MN_CFG = load_directory(EXAMPLES / "mn").config
CN_CFG = load_directory(EXAMPLES / "cn").config
#: ip6tnl as on this kernel's daemons (tests/vm/test_daemons.py): the seg6 reverse
#: tunnel of locally sent packets fails here with ENETDOWN (Debian 6.1)
CAPS = Capabilities(tunnel="ip6tnl", route_optimization=True)

HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
COA = IPv6Address("2001:db8:a::100")
CN = IPv6Address("2001:db8:c::2")
T = HA_CFG.kernel.route_table

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
NH_DSTOPTS, NH_ROUTING, NH_ICMPV6, NH_IPV6, NH_MH = 60, 43, 58, 41, 135
MH_HOTI, MH_HOT = 1, 3
ECHO_REQUEST, ECHO_REPLY = 128, 129
WAIT = 5.0  # s per echo: generous for the emulated guest


@dataclass(frozen=True)
class Binding:
    home_address: IPv6Address
    care_of_address: IPv6Address
    local_address: IPv6Address
    home_registration: bool
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def ip(*args: str, ns: str | None) -> None:
    proc = nsutil.ip(*args, ns=ns, check=False)
    assert proc.returncode == 0, f"ip {' '.join(args)} (in {ns}): {proc.stderr.strip()}"


# --------------------------------------------------------------------------- reconcile


class Node:
    """The project's Reconciler in one namespace (observer, writer, XFRM socket)."""

    def __init__(self, ns: str, sysctls: tuple[str, ...] = ()) -> None:
        self.ns = ns
        with nsutil.inside(ns):
            self.observer = Observer(
                watch_tables=(T, T + 1), sysctls=sysctls, sources=("xfrm", "nft")
            )
            self.writer = Writer()
            self.xfrm = XfrmSocket(timeout=10.0)
        self.rec = Reconciler(observer=self.observer, writer=self.writer, xfrm=self.xfrm)

    def converge(self, desired: Desired) -> None:
        """Plan, apply, verify; then a second plan must be empty (invariant 2).

        A route through an ip6tnl device created in the same pass fails ENODEV
        until the observer has seen the device: retried, as the reconcile loop does."""
        with nsutil.inside(self.ns):  # sysctls go through this thread's /proc/sys
            for _attempt in range(3):
                self.observer.process_pending()
                report = self.rec.apply(self.rec.plan(desired), desired)
                failed = [o for o in report.outcomes if not o.ok]
                if report.ok or any(o.errno != errno.ENODEV for o in failed):
                    break
            assert report.ok, f"{self.ns}: {failed} {report.mismatches} {report.plan.conflicts}"
            self.observer.process_pending()
            again = self.rec.plan(desired)
        assert not again.changes, f"{self.ns}: not converged: {again.changes}"

    def ro_objects(self) -> list[Any]:
        """Owned XFRM objects of a route-optimisation kind in the kernel."""
        pols = [
            p
            for p in self.xfrm.dump_policies(owned_only=True)
            if any(t.proto in (XfrmProto.ROUTE2, XfrmProto.HAO) for t in p.templates)
            or p.selector.proto == 135
        ]
        states = [
            s
            for s in self.xfrm.dump_states(owned_only=True)
            if s.proto in (XfrmProto.ROUTE2, XfrmProto.HAO)
        ]
        return [*pols, *states]

    def close(self) -> None:
        for o in (self.xfrm, self.writer, self.observer):
            o.close()


def mn_desired(correspondents: tuple[tuple[IPv6Address, IPv6Address], ...]) -> Desired:
    assert MN_CFG.mn is not None
    view = MobileNodeView(MN_CFG.mn.home_address, HA, COA, "mn0", correspondents=correspondents)
    return render(MN_CFG, (), CAPS, mobile_node=view)


def cn_desired(bindings: list[Binding]) -> Desired:
    return render(CN_CFG, bindings, CAPS)


# --------------------------------------------------------------------------- capture


class Capture:
    """Every frame on one interface of a namespace (both directions), AF_PACKET."""

    def __init__(self, ns: str, ifname: str) -> None:
        with nsutil.inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)

    def drain(self) -> list[tuple[bool, bytes]]:
        """(outgoing, IPv6 packet) for every IPv6 frame captured so far."""
        out = []
        while True:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return out
            if addr[1] == 0x86DD:  # sll_protocol
                out.append((addr[2] == PACKET_OUTGOING, frame[14:]))

    def close(self) -> None:
        self.sock.close()


@dataclass
class Parsed:
    src: IPv6Address
    dst: IPv6Address
    hao: IPv6Address | None = None
    rh2: IPv6Address | None = None
    icmp_type: int | None = None
    ident: int | None = None
    mh_type: int | None = None
    inner: Parsed | None = None  # IPv6-in-IPv6

    @property
    def final(self) -> Parsed:
        return self.inner.final if self.inner is not None else self


def parse(pkt: bytes) -> Parsed:
    """IPv6 + destination options (HAO) / type 2 routing header / ICMPv6 echo / IPv6."""
    nh = pkt[6]
    p = Parsed(IPv6Address(pkt[8:24]), IPv6Address(pkt[24:40]))
    off = 40
    while True:
        if nh in (NH_DSTOPTS, NH_ROUTING, 0):
            nxt, hlen = pkt[off], (pkt[off + 1] + 1) * 8
            if nh == NH_ROUTING and pkt[off + 2] == 2:
                p.rh2 = IPv6Address(pkt[off + 8 : off + 24])
            if nh == NH_DSTOPTS:
                i = off + 2
                while i < off + hlen:
                    if pkt[i] == 0:  # Pad1
                        i += 1
                        continue
                    if pkt[i] == 0xC9:
                        p.hao = IPv6Address(pkt[i + 2 : i + 18])
                    i += 2 + pkt[i + 1]
            nh, off = nxt, off + hlen
        elif nh == NH_ICMPV6:
            p.icmp_type = pkt[off]
            if p.icmp_type in (ECHO_REQUEST, ECHO_REPLY):
                p.ident = struct.unpack_from("!H", pkt, off + 4)[0]
            return p
        elif nh == NH_IPV6:
            p.inner = parse(pkt[off:])
            return p
        elif nh == NH_MH:
            p.mh_type = pkt[off + 2]
            return p
        else:
            return p


def echoes(captured: list[tuple[bool, bytes]], ident: int) -> list[tuple[bool, Parsed]]:
    out = []
    for outgoing, raw in captured:
        p = parse(raw)
        if p.final.ident == ident:
            out.append((outgoing, p))
    return out


# --------------------------------------------------------------------------- ping


def ping_from_home(ns: str, ident: int) -> bool:
    """One echo request HoA -> CN from a socket bound to the home address; True when
    that socket gets the reply (from CN, to HoA as the socket sees it)."""
    with nsutil.inside(ns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with s:
        s.bind((str(HOA), 0))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        s.sendto(struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, 1) + b"mip6ctl-ro", (str(CN), 0))
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                return False
            data, anc, _flags, addr = s.recvmsg(2048, 256)
            if len(data) >= 8 and data[0] == ECHO_REPLY:
                rid = struct.unpack_from("!H", data, 4)[0]
                if rid == ident and IPv6Address(addr[0]) == CN:
                    dst = {t: d for _l, t, d in anc}.get(socket.IPV6_PKTINFO, b"")[:16]
                    return IPv6Address(dst) == HOA if dst else True
    return False


def send_mh(ns: str, src: IPv6Address, dst: IPv6Address, mh: bytes) -> None:
    """A Mobility Header message from `src` (raw MH socket: the kernel fills the checksum)."""
    with nsutil.inside(ns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, NH_MH)
    with s:
        s.bind((str(src), 0))
        s.sendto(mh, (str(dst), 0))


# --------------------------------------------------------------------------- topology


@dataclass
class Bed:
    mn: Node
    cn: Node
    ha: Node
    mn_cap: Capture
    ha_cap: Capture


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    factory = nsutil.NetnsFactory()
    opened: list[Any] = []
    try:
        mn, rt, cn, ha = (factory(t) for t in ("romn", "rort", "rocn", "roha"))
        for a, ns_a, b_, ns_b in (
            ("mn0", mn, "r-mn", rt),
            ("cn0", cn, "r-cn", rt),
            ("home0", ha, "r-ha", rt),
        ):
            ip("link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b_, "netns", ns_b,
               ns=None)  # fmt: skip
        for ns, dev, addr in (
            (mn, "mn0", "2001:db8:a::100/64"),
            (rt, "r-mn", "2001:db8:a::1/64"),
            (rt, "r-cn", "2001:db8:c::1/64"),
            (rt, "r-ha", "2001:db8:1::2/64"),
            (cn, "cn0", "2001:db8:c::2/64"),
            (ha, "home0", "2001:db8:1::1/64"),
        ):
            ip("-6", "addr", "add", addr, "dev", dev, "nodad", ns=ns)
            ip("link", "set", dev, "up", ns=ns)
        for ns, gw in ((mn, "2001:db8:a::1"), (cn, "2001:db8:c::1"), (ha, "2001:db8:1::2")):
            ip("-6", "route", "add", "default", "via", gw, ns=ns)
        nsutil.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=rt)

        nodes = {
            "mn": Node(mn),
            "cn": Node(cn),
            "ha": Node(ha, ("net/ipv6/conf/all/forwarding", "net/ipv6/conf/home0/proxy_ndp")),
        }
        opened += nodes.values()
        # The home agent: static state + the home registration HoA -> CoA (ip6tnl).
        ha_binding = Binding(HOA, COA, HA, True)
        nodes["ha"].converge(render(HA_CFG, [ha_binding], CAPS, HostFacts(HA)))
        # The mobile node away from home, no correspondent yet.
        nodes["mn"].converge(mn_desired(()))
        mn_cap, ha_cap = Capture(mn, "mn0"), Capture(ha, "home0")
        opened += [mn_cap, ha_cap]
        yield Bed(nodes["mn"], nodes["cn"], nodes["ha"], mn_cap, ha_cap)
    finally:
        for o in reversed(opened):
            o.close()
        factory.cleanup()


def diagnostics(bed: Bed) -> str:
    """What the kernels hold, and their non-zero XFRM error counters (for failures)."""
    out = []
    for ns in (bed.mn.ns, bed.cn.ns, bed.ha.ns):
        for cmd in (("-6", "rule"), ("-6", "route", "show", "table", "all"), ("xfrm", "policy"),
                    ("xfrm", "state"), ("-6", "addr")):  # fmt: skip
            out.append(
                f"--- {ns}: ip {' '.join(cmd)}\n" + nsutil.ip(*cmd, ns=ns, check=False).stdout
            )
        stat = nsutil.run("cat", "/proc/net/xfrm_stat", ns=ns, check=False).stdout.splitlines()
        out.append(f"--- {ns}: " + "; ".join(x for x in stat if not x.endswith(" 0")))
    return "\n".join(out)


def ro_on(bed: Bed) -> None:
    bed.cn.converge(cn_desired([Binding(HOA, COA, CN, False)]))
    bed.mn.converge(mn_desired(((CN, COA),)))


def ro_off(bed: Bed) -> None:
    bed.cn.converge(cn_desired([]))
    bed.mn.converge(mn_desired(()))


def _ident() -> int:
    return int.from_bytes(os.urandom(2), "big") | 1


# --------------------------------------------------------------------------- tests


def test_rendered_route_optimisation_objects_are_in_both_kernels(bed: Bed) -> None:
    ro_on(bed)
    mn, cn = bed.mn.ro_objects(), bed.cn.ro_objects()
    for objs, sent, received in ((mn, XfrmProto.HAO, XfrmProto.ROUTE2),
                                 (cn, XfrmProto.ROUTE2, XfrmProto.HAO)):  # fmt: skip
        states = {s.proto: s for s in objs if isinstance(s, XfrmState)}
        assert set(states) == {sent, received}
        assert all(s.coaddr == COA for s in states.values())
        assert len([p for p in objs if isinstance(p, XfrmPolicy)]) == 3


def test_echo_goes_direct_with_hao_and_type2_routing_header(bed: Bed) -> None:
    ro_on(bed)
    bed.mn_cap.drain()
    bed.ha_cap.drain()
    ident = _ident()
    got = ping_from_home(bed.mn.ns, ident)
    time.sleep(0.2)
    seen = echoes(bed.mn_cap.drain(), ident)
    assert got, f"no echo reply on the HoA socket; mn0 saw {seen}\n{diagnostics(bed)}"
    requests = [p for out, p in seen if out and p.final.icmp_type == ECHO_REQUEST]
    replies = [p for out, p in seen if not out and p.final.icmp_type == ECHO_REPLY]
    assert requests and replies, seen
    req, rep = requests[0], replies[0]
    # MN -> CN: from the care-of address, the home address in a Home Address option
    assert (req.src, req.dst, req.hao, req.rh2, req.inner) == (COA, CN, HOA, None, None), req
    # CN -> MN: to the care-of address, the home address in a type 2 routing header
    assert (rep.src, rep.dst, rep.rh2, rep.hao, rep.inner) == (CN, COA, HOA, None, None), rep
    # the home agent saw none of it
    assert echoes(bed.ha_cap.drain(), ident) == []


def test_removing_the_binding_removes_every_ro_object_and_traffic_uses_the_tunnel(
    bed: Bed,
) -> None:
    ro_on(bed)
    assert bed.mn.ro_objects() and bed.cn.ro_objects()
    ro_off(bed)
    assert bed.mn.ro_objects() == [] and bed.cn.ro_objects() == []
    # the MN's other away state is still there (only the RO objects went)
    with nsutil.inside(bed.mn.ns):
        bed.mn.observer.process_pending()
    assert any(k[0] == "address" for k in bed.mn.observer.owned)
    bed.mn_cap.drain()
    bed.ha_cap.drain()
    ident = _ident()
    try:
        got = ping_from_home(bed.mn.ns, ident)
    except OSError as e:
        raise AssertionError(f"{e}\n{diagnostics(bed)}") from e
    time.sleep(0.2)
    seen = echoes(bed.mn_cap.drain(), ident)
    assert got, f"no echo reply through the home agent; mn0 saw {seen}\n{diagnostics(bed)}"
    requests = [p for out, p in seen if out and p.final.icmp_type == ECHO_REQUEST]
    replies = [p for out, p in seen if not out and p.final.icmp_type == ECHO_REPLY]
    assert requests and replies, seen
    req, rep = requests[0], replies[0]
    # reverse tunnel to the HA: no Home Address option, inner packet from the HoA
    assert (req.dst, req.hao, req.rh2) == (HA, None, None), req
    assert req.inner is not None and (req.inner.src, req.inner.dst, req.inner.hao) == (
        HOA,
        CN,
        None,
    )
    # tunnelled by the HA to the care-of address: no type 2 routing header
    assert (rep.src, rep.dst, rep.rh2) == (HA, COA, None), rep
    assert rep.inner is not None and (rep.inner.src, rep.inner.dst, rep.inner.rh2) == (
        CN,
        HOA,
        None,
    )
    ha_seen = echoes(bed.ha_cap.drain(), ident)
    assert {p.final.icmp_type for _out, p in ha_seen} == {ECHO_REQUEST, ECHO_REPLY}


def test_home_test_signalling_keeps_the_home_agent_path(bed: Bed) -> None:
    """Home Test Init (HoA -> CN) and Home Test (CN -> HoA) travel through the home
    agent even while data is route-optimised (RFC 6275 5.2.5: the home keygen token
    must reach the home address): the Mobility Header bypass policies on both ends."""
    ro_on(bed)
    bed.mn_cap.drain()
    cookie = os.urandom(8)
    send_mh(bed.mn.ns, HOA, CN, struct.pack("!BBBBHH", 59, 1, MH_HOTI, 0, 0, 0) + cookie)
    send_mh(bed.cn.ns, CN, HOA, struct.pack("!BBBBHH", 59, 2, MH_HOT, 0, 0, 1) + cookie * 2)
    hoti = hot = None
    deadline = time.monotonic() + WAIT
    while (hoti is None or hot is None) and time.monotonic() < deadline:
        for outgoing, raw in bed.mn_cap.drain():
            p = parse(raw)
            if outgoing and p.final.mh_type == MH_HOTI:
                hoti = p
            elif not outgoing and p.final.mh_type == MH_HOT:
                hot = p
        time.sleep(0.05)
    assert hoti is not None and hot is not None, (hoti, hot, diagnostics(bed))
    # reverse-tunnelled to the HA, from the home address, no Home Address option
    assert (hoti.dst, hoti.hao, hoti.inner and hoti.inner.hao) == (HA, None, None), hoti
    assert hoti.inner is not None and (hoti.inner.src, hoti.inner.dst) == (HOA, CN), hoti
    # tunnelled by the HA to the care-of address, no type 2 routing header
    assert (hot.src, hot.dst, hot.rh2) == (HA, COA, None), hot
    assert hot.inner is not None and (hot.inner.src, hot.inner.dst, hot.inner.rh2) == (
        CN,
        HOA,
        None,
    )
