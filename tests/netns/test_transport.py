"""The userspace signalling transport against this kernel (no CONFIG_IPV6_MIP6).

Topology: namespace ``mn`` (scapy plays the mobile node: its packets are built
by scapy and sent through an IPPROTO_RAW socket there, its captures dissected
by scapy) and namespace ``ha`` running :class:`UserspaceTransport`, joined by
a veth pair ``mn0``/``ha0`` on 2001:db8:1::/64.  Everything is bounded in time
and lives in namespaces the ``netns`` fixture deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import shutil
import socket
import struct
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address

import pytest

from mip6ctl.engine.events import Malformed, Received, Send, SendParameterProblem
from mip6ctl.kernel import nft
from mip6ctl.kernel.probe import kernel_mip6_missing
from mip6ctl.kernel.reconciler import converge
from mip6ctl.kernel.transport import (
    KernelTransport,
    TransportUnavailable,
    UserspaceTransport,
)
from mip6ctl.state.render import render_signalling
from mip6ctl.wire.checksum import verify_upper_layer_checksum
from mip6ctl.wire.datagram import ICMPv6Received
from mip6ctl.wire.errors import BadPayloadProto
from mip6ctl.wire.icmp6 import RouterAdvertisement
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate
from tests import nsutil

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
inet6 = pytest.importorskip("scapy.layers.inet6")
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet import UDP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    HAO,
    MIP6MH_BA,
    MIP6MH_BU,
    ICMPv6ND_RA,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
    in6_chksum,
)

HA = IPv6Address("2001:db8:1::1")
COA = IPv6Address("2001:db8:1::100")
HOA = IPv6Address("2001:db8:2::100")
ELSEWHERE = IPv6Address("2001:db8:9::1")  # routed to the HA by the MN, not the HA's
ETH_P_IPV6 = 0x86DD


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def link(netns) -> tuple[str, str]:
    """(mn, ha) namespaces joined by veth mn0/ha0, addresses without DAD, neighbours resolved."""
    mn, ha = netns("mn"), netns("ha")
    nsutil.ip("link", "add", "mn0", "netns", mn, "type", "veth", "peer", "name", "ha0", "netns", ha)
    for ns, dev, addr in ((mn, "mn0", COA), (ha, "ha0", HA)):
        nsutil.ip("-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad", ns=ns)
        nsutil.ip("link", "set", dev, "up", ns=ns)
    nsutil.ip("-6", "route", "add", "2001:db8:9::/64", "via", str(HA), ns=mn)
    assert nsutil.ping6(mn, str(HA), count=1, timeout=5) == 1
    return mn, ha


@contextlib.contextmanager
def transport(ns: str, *, nft: bool = True, **options: object) -> Iterator[UserspaceTransport]:
    """The transport, with the nf_tables drop chains the daemon renders for it (`nft`),
    written through the plan executor as the daemon does, and removed afterwards."""
    chains = render_signalling("userspace")
    with nsutil.inside(ns):
        if nft:
            assert converge(chains).ok
        t = UserspaceTransport(["ha0"], **options)  # type: ignore[arg-type]
    try:
        yield t
    finally:
        t.close()
        if nft:
            with nsutil.inside(ns):
                converge(chains, present=False)


class Mn:
    """The mobile node's side: raw send of scapy packets, capture on mn0."""

    def __init__(self, ns: str) -> None:
        with nsutil.inside(ns):
            self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
            self.rx.bind(("mn0", ETH_P_IPV6))

    def send(self, pkt: object) -> None:
        data = raw(pkt)
        self.tx.sendto(data, (socket.inet_ntop(socket.AF_INET6, data[24:40]), 0))

    def capture(self, match: Callable[[IPv6], bool], timeout: float) -> list[IPv6]:
        """Incoming IPv6 packets on mn0 matching ``match`` until ``timeout`` (stops at first)."""
        found = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and not found:
            if not select.select([self.rx], [], [], left)[0]:
                break
            data, addr = self.rx.recvfrom(65536)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            p = IPv6(data)
            if match(p):
                found.append(p)
        return found

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@pytest.fixture
def mn(link) -> Iterator[Mn]:
    m = Mn(link[0])
    yield m
    m.close()


def collect(t: UserspaceTransport, timeout: float = 3.0, want: int = 1) -> list[object]:
    """Events from the transport until ``want`` arrived or ``timeout`` passed."""
    out: list[object] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and (left := deadline - time.monotonic()) > 0:
        if select.select([t.fileno()], [], [], left)[0]:
            out += t.read_ready()
    return out


def is_param_problem(p: IPv6) -> bool:
    return p.nh == 58 and raw(p.payload)[:1] == b"\x04"


def bu_with_hao(**fields: object) -> IPv6:
    return (
        IPv6(src=str(COA), dst=str(HA))
        / IPv6ExtHdrDestOpt(options=[HAO(hoa=str(HOA))])
        / MIP6MH_BU(seq=7, **fields)
    )


def snmp6(ns: str) -> dict[str, int]:
    out = nsutil.run("cat", "/proc/net/snmp6", ns=ns).stdout.splitlines()
    return {k: int(v) for k, v in (line.split() for line in out if line.strip())}


# --------------------------------------------------------------------------- receive


def test_bu_with_hao_arrives_and_the_kernel_stays_silent(link, mn) -> None:
    _, ha = link
    before = snmp6(ha)
    with transport(ha) as t:
        mn.send(bu_with_hao())
        events = collect(t)
        assert len(events) == 1
        ev = events[0]
        assert isinstance(ev, Received)
        assert isinstance(ev.message, BindingUpdate)
        assert (ev.message.sequence, ev.message.flags, ev.message.lifetime) == (7, 0xD000, 3)
        assert (ev.src, ev.dst, ev.home_address_option) == (COA, HA, HOA)
        assert ev.routing_header_address is None and ev.ifname == "ha0"
        assert ev.raw == raw(bu_with_hao()[MIP6MH_BU])
        # No Parameter Problem came back ...
        assert mn.capture(is_param_problem, timeout=1.0) == []
        # ... because the nft rule dropped the packet *after* the packet socket saw
        # it: AF_PACKET taps in __netif_receive_skb, before PREROUTING.
        with nsutil.inside(ha):
            info = nft.describe()
        assert info is not None and info.dropped(nft.CHAIN_PREROUTING) == 1
    after = snmp6(ha)
    for counter in ("Icmp6OutParmProblems", "Ip6InUnknownProtos", "Ip6InHdrErrors"):
        assert after[counter] == before[counter], counter


def test_without_the_nft_rule_the_kernel_answers_with_parameter_problem(link, mn) -> None:
    """The control experiment: same packet, no table → ICMPv6 Parameter Problem, code 2."""
    _, ha = link
    with transport(ha, nft=False) as t:
        mn.send(bu_with_hao())
        assert [type(e) for e in collect(t)] == [Received]  # captured all the same
        got = mn.capture(is_param_problem, timeout=3.0)
    assert got, "the kernel did not answer: the test would not prove the rule matters"
    icmp = raw(got[0].payload)
    code, pointer = icmp[1], struct.unpack("!I", icmp[4:8])[0]
    assert (code, pointer) == (2, 40 + 6)  # unrecognized option: the HAO's type octet


def test_asyncio_recv(link, mn) -> None:
    _, ha = link

    async def main(t: UserspaceTransport) -> list[object]:
        asyncio.get_running_loop().call_later(0.2, mn.send, bu_with_hao())
        return await asyncio.wait_for(t.recv(), 5)

    with transport(ha) as t:
        events = asyncio.run(main(t))
    assert [type(e) for e in events] == [Received]


def test_malformed_payload_proto_points_into_the_packet(link, mn) -> None:
    _, ha = link
    with transport(ha) as t:
        mn.send(bu_with_hao(nh=6))
        (ev,) = collect(t)
    assert isinstance(ev, Malformed)
    assert isinstance(ev.error, BadPayloadProto)
    assert ev.error.pointer == 40 + 24  # IPv6 header + Destination Options, then Payload Proto
    assert (ev.src, ev.dst, ev.home_address_option) == (COA, HA, HOA)
    assert ev.packet == raw(bu_with_hao(nh=6))


def test_bad_checksum_is_dropped_silently(link, mn) -> None:
    _, ha = link
    with transport(ha) as t:
        mn.send(bu_with_hao(cksum=0x1234))
        assert collect(t, timeout=1.0) == []
        assert t.stats.dropped == {"bad checksum": 1}
        assert mn.capture(is_param_problem, timeout=0.5) == []


def test_packets_not_for_us_are_ignored(link, mn) -> None:
    _, ha = link
    with transport(ha) as t:
        mn.send(IPv6(src=str(COA), dst=str(ELSEWHERE)) / MIP6MH_BU(seq=1))
        assert collect(t, timeout=1.0) == []
        assert t.stats.dropped == {"not for us": 1}


def test_bpf_filter_drops_non_mh_traffic_in_the_kernel(link, mn) -> None:
    mn_ns, ha = link
    with nsutil.inside(ha):
        sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with nsutil.inside(mn_ns):
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with sink, udp, transport(ha) as t:
        sink.bind((str(HA), 5000))
        sink.settimeout(5)
        for i in range(200):
            udp.sendto(b"x" * 100 + bytes([i]), (str(HA), 5000))
        mn.send(IPv6(src=str(COA), dst=str(HA)) / UDP(sport=1, dport=5000) / b"raw udp")
        nsutil.ping6(mn_ns, str(HA), count=2, timeout=1)
        got = 0
        with contextlib.suppress(TimeoutError):
            while got < 201:
                sink.recv(2048)
                got += 1
        assert got >= 150  # the traffic really reached the HA
        # Nothing of it was queued on the packet socket: the kernel filter dropped it.
        assert not select.select([t.fileno()], [], [], 0.3)[0]
        assert t.read_ready() == []
        assert t.stats.received == 0 and not t.stats.dropped
        # ... while a Mobility Header still passes.
        mn.send(bu_with_hao())
        assert [type(e) for e in collect(t)] == [Received]


def test_tunnelled_mh_is_decapsulated(link, mn) -> None:
    """IPv6-in-IPv6 (as the seg6 backend tunnels HoT/HoTI): the inner MH is the event."""
    _, ha = link
    inner = IPv6(src=str(HOA), dst=str(HA)) / MIP6MH_BU(seq=9)
    with transport(ha) as t:
        mn.send(IPv6(src=str(COA), dst=str(HA), nh=41) / inner)
        (ev,) = collect(t)
    assert isinstance(ev, Received)
    assert (ev.src, ev.dst, ev.message.sequence) == (HOA, HA, 9)


def test_icmpv6_types_on_request(link, mn) -> None:
    _, ha = link
    ll = nsutil.ip("-6", "-o", "addr", "show", "dev", "mn0", "scope", "link", ns=link[0]).stdout
    src = ll.split("inet6 ")[1].split("/")[0]
    ra = IPv6(src=src, dst="ff02::1", hlim=255) / ICMPv6ND_RA(routerlifetime=0)
    with transport(ha, icmp_types={134}) as t:
        with nsutil.inside(link[0]):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
        with s:
            s.sendto(raw(ra), ("mn0", ETH_P_IPV6, 0, 0, b"\x33\x33\x00\x00\x00\x01"))
        events = [e for e in collect(t) if isinstance(e, ICMPv6Received)]
    assert events and isinstance(events[0].message, RouterAdvertisement)
    assert events[0].dst == IPv6Address("ff02::1") and events[0].hop_limit == 255


# --------------------------------------------------------------------------- send


def test_ba_with_rh2_is_dissected_by_scapy_with_a_valid_checksum(link, mn) -> None:
    _, ha = link
    ba = BindingAcknowledgement(0, 7, 100, 0)
    with transport(ha) as t:
        t.send(Send(ba, HA, COA, routing_header_address=HOA))
        got = mn.capture(lambda p: MIP6MH_BA in p, timeout=3.0)
        assert t.stats.sent == 1
        assert collect(t, timeout=0.3) == []  # our own outgoing copy is not an event
    assert got, "no Binding Acknowledgement reached the MN"
    p = got[0]
    assert (p.src, p.dst) == (str(HA), str(COA))
    rh = p[IPv6ExtHdrRouting]
    assert (rh.type, rh.segleft, rh.addresses) == (2, 1, [str(HOA)])
    m = p[MIP6MH_BA]
    assert (m.status, m.seq, m.mhtime, m.nh) == (0, 7, 100, 59)
    zeroed = bytearray(raw(m))
    zeroed[4:6] = b"\0\0"
    assert m.cksum == in6_chksum(135, m, bytes(zeroed))  # scapy: final destination = HoA
    assert verify_upper_layer_checksum(HA, HOA, 135, raw(m))  # and ours agrees


def test_parameter_problem_is_sent(link, mn) -> None:
    _, ha = link
    invoking = raw(bu_with_hao(nh=6))
    with transport(ha) as t:
        t.send(SendParameterProblem(0, 64, invoking, HA, COA))
        got = mn.capture(is_param_problem, timeout=3.0)
    assert got
    icmp = raw(got[0].payload)
    assert icmp[1] == 0 and struct.unpack("!I", icmp[4:8])[0] == 64
    assert icmp[8:] == invoking
    assert verify_upper_layer_checksum(HA, COA, 58, icmp)


# --------------------------------------------------------------------------- lifecycle


def test_removing_the_rendered_chains_removes_only_the_owned_table(link) -> None:
    _, ha = link
    if shutil.which("nft") is None:
        pytest.skip("needs the nft binary to create a foreign table")
    nsutil.run("nft", "add", "table", "ip6", "foreign", ns=ha)
    with transport(ha):
        tables = nsutil.run("nft", "list", "tables", ns=ha).stdout
        assert "table ip6 mip6ctl" in tables
        ruleset = nsutil.run("nft", "list", "table", "ip6", "mip6ctl", ns=ha).stdout
        assert "meta l4proto mobility-header fib daddr type local" in ruleset
        assert "rt type 2 fib daddr type local" in ruleset
    tables = nsutil.run("nft", "list", "tables", ns=ha).stdout
    assert "mip6ctl" not in tables and "table ip6 foreign" in tables


def test_kernel_transport_fails_here_naming_the_capability(netns) -> None:
    if kernel_mip6_missing() is None:
        pytest.skip("this kernel has CONFIG_IPV6_MIP6: the kernel transport works here")
    ns = netns("kt")
    with nsutil.inside(ns), pytest.raises(TransportUnavailable, match="CONFIG_IPV6_MIP6"):
        KernelTransport()
