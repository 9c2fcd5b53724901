"""The userspace transport's classic BPF program, run by a tiny cBPF interpreter.

The interpreter implements the instructions the program uses (and a few more)
with the kernel's semantics: loads past the end of the packet stop the program
with 0 (drop), ancillary loads read pkttype/ifindex.  The kernel's own checker
is exercised too: every variant is attached to a socket (no root needed).
The netns tier checks the same program in the kernel with real traffic.
"""

from __future__ import annotations

import itertools
import socket
import struct
from ipaddress import IPv6Address

import pytest

from mip6ctl.kernel.transport import (
    BPF_ACCEPT_LEN,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    PACKET_OUTGOING,
    Insn,
    attach_filter,
    mh_filter,
)
from mip6ctl.wire.exthdr import encode_hao_destination_options, encode_type2_routing_header
from mip6ctl.wire.mh import BindingAcknowledgement, BindingUpdate
from mip6ctl.wire.packet import build_ipv6, build_mh_packet

A = IPv6Address("2001:db8::1")
B = IPv6Address("2001:db8::2")
H = IPv6Address("2001:db8:1::100")


def _alu(op: int, a: int, src: int) -> int:
    import operator

    ops = {
        0x00: operator.add, 0x10: operator.sub, 0x20: operator.mul, 0x30: operator.floordiv,
        0x40: operator.or_, 0x50: operator.and_, 0x60: operator.lshift, 0x70: operator.rshift,
        0x90: operator.mod, 0xA0: operator.xor,
    }  # fmt: skip
    return (-a if op == 0x80 else ops[op](a, src)) & 0xFFFFFFFF


def run_bpf(prog: list[Insn], pkt: bytes, *, pkttype: int = PACKET_HOST, ifindex: int = 2) -> int:
    """Classic BPF semantics (net/core/filter.c), enough for socket filters."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    m32 = 0xFFFFFFFF
    for _ in range(10_000):
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD, LDX
            size, mode = code & 0x18, code & 0xE0
            if mode == 0x00:
                val = k
            elif mode == 0x60:
                val = mem[k]
            elif mode == 0x80:
                val = len(pkt)
            elif mode in (0x20, 0x40):
                off = k if mode == 0x20 else (x + k) & m32
                if mode == 0x20 and k >= 0xFFFFF000:
                    anc = k - 0xFFFFF000
                    val = {4: pkttype, 8: ifindex, 0: 0x86DD}[anc]
                else:
                    n = {0x00: 4, 0x08: 2, 0x10: 1}[size]
                    if off + n > len(pkt):
                        return 0
                    val = int.from_bytes(pkt[off : off + n], "big")
            elif mode == 0xA0:  # ldxb 4*([k]&0xf)
                if k >= len(pkt):
                    return 0
                val = (pkt[k] & 0xF) * 4
            else:
                raise AssertionError(f"load mode {mode:#x}")
            if cls == 0x00:
                a = val
            else:
                x = val
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:
            src = x if code & 0x08 else k
            a = _alu(code & 0xF0, a, src)
        elif cls == 0x05:
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            src = x if code & 0x08 else k
            cond = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[op]
            pc += jt if cond else jf
        elif cls == 0x06:
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
    raise AssertionError("BPF program did not terminate")


# --- packets ------------------------------------------------------------------------------


def mh(**kw: object) -> bytes:
    return build_mh_packet(A, B, BindingUpdate(1, 0x8000, 10), **kw)  # type: ignore[arg-type]


def with_chain(headers: list[bytes], upper: int, payload: bytes) -> bytes:
    """IPv6 | headers... | upper layer; each header's Next Header fixed up here."""
    chain = b""
    nh = upper
    for h in reversed(headers):
        chain = bytes((nh,)) + h[1:] + chain
        nh = {0: 0, 1: 60, 2: 43}[h[0]]
    body = chain + payload
    return struct.pack("!IHBB", 6 << 28, len(body), nh, 64) + A.packed + B.packed + body


HBH = bytes((0, 0, 1, 4, 0, 0, 0, 0))  # first octet: kind marker for with_chain (0 = HBH)
DST = bytes((1, 0, 1, 4, 0, 0, 0, 0))  # 1 = Destination Options
RTH = bytes((2, 0, 0, 0, 0, 0, 0, 0))  # 2 = Routing (type 0, segments left 0)
MH_BODY = bytes((59, 0, 0, 0, 0, 0, 0, 0))
UDP_BODY = bytes(8)

ACCEPT = BPF_ACCEPT_LEN


@pytest.fixture(scope="module")
def prog() -> list[Insn]:
    return mh_filter()


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(mh(), id="plain"),
        pytest.param(mh(home_address=H), id="hao"),
        pytest.param(mh(rh2_home_address=H), id="rh2"),
        pytest.param(mh(home_address=H, rh2_home_address=H), id="rh2+hao"),
        pytest.param(with_chain([HBH, DST, RTH, DST], 135, MH_BODY), id="hbh+dst+rt+dst"),
        pytest.param(build_mh_packet(A, B, BindingAcknowledgement(0, 1)) + b"\0" * 20,
                     id="link-layer padding"),
    ],
)  # fmt: skip
def test_mobility_headers_pass(prog: list[Insn], packet: bytes) -> None:
    assert run_bpf(prog, packet) == ACCEPT


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(build_ipv6(A, B, 17, UDP_BODY), id="udp"),
        pytest.param(build_ipv6(A, B, 6, bytes(20)), id="tcp"),
        pytest.param(build_ipv6(A, B, 58, bytes((128, 0, 0, 0, 0, 1, 0, 1))), id="echo"),
        pytest.param(build_ipv6(A, B, 17, UDP_BODY, home_address=H), id="udp+hao"),
        pytest.param(build_ipv6(A, B, 50, bytes(16)), id="esp"),
        pytest.param(with_chain([DST] * 7, 135, MH_BODY), id="too many headers"),
        pytest.param(mh(home_address=H)[:41], id="truncated chain"),
        pytest.param(b"\x45" + mh()[1:], id="not version 6"),
        pytest.param(build_ipv6(A, B, 41, build_ipv6(A, B, 41, mh())), id="tunnel in tunnel"),
    ],
)
def test_everything_else_is_dropped(prog: list[Insn], packet: bytes) -> None:
    assert run_bpf(prog, packet) == 0


@pytest.mark.parametrize("pkttype", [PACKET_OUTGOING, PACKET_OTHERHOST])
def test_outgoing_and_other_hosts_frames_are_dropped(prog: list[Insn], pkttype: int) -> None:
    assert run_bpf(prog, mh(), pkttype=pkttype) == 0
    assert run_bpf(prog, mh(), pkttype=PACKET_MULTICAST) == ACCEPT


def test_interface_filter() -> None:
    p = mh_filter(ifindexes=[3, 7])
    assert [run_bpf(p, mh(), ifindex=i) for i in (2, 3, 7, 8)] == [0, ACCEPT, ACCEPT, 0]


def test_icmpv6_types_only_when_asked() -> None:
    ra = build_ipv6(A, B, 58, bytes((134, 0, 0, 0)) + bytes(12))
    ns = with_chain([HBH], 58, bytes((135, 0, 0, 0)) + bytes(20))
    echo = build_ipv6(A, B, 58, bytes((128, 0, 0, 0, 0, 1, 0, 1)))
    assert run_bpf(mh_filter(), ra) == 0
    p = mh_filter(icmp_types={134, 135})
    assert [run_bpf(p, x) for x in (ra, ns, echo, mh())] == [ACCEPT, ACCEPT, 0, ACCEPT]


def test_tunnelled_mh_only_with_decapsulation() -> None:
    inner = mh(home_address=H)
    outer = build_ipv6(B, A, 41, inner)
    assert run_bpf(mh_filter(), outer) == ACCEPT
    assert run_bpf(mh_filter(decapsulate=False), outer) == 0
    udp = build_ipv6(B, A, 41, build_ipv6(A, B, 17, UDP_BODY))
    assert run_bpf(mh_filter(), udp) == 0


def test_home_address_packets_option() -> None:
    udp_hao = build_ipv6(A, B, 17, UDP_BODY, home_address=H)
    assert run_bpf(mh_filter(), udp_hao) == 0
    assert run_bpf(mh_filter(home_address_packets=True), udp_hao) == ACCEPT


@pytest.mark.parametrize("n", range(7))
def test_header_walk_depth(prog: list[Insn], n: int) -> None:
    """Up to max_headers (6) extension headers of any mix pass; one more does not."""
    for kinds in itertools.islice(itertools.product((HBH, DST, RTH), repeat=n), 20):
        packet = with_chain(list(kinds), 135, MH_BODY)
        assert run_bpf(prog, packet) == (ACCEPT if n <= 6 else 0)


def test_every_variant_passes_the_kernel_checker() -> None:
    variants = [
        mh_filter(),
        mh_filter(ifindexes=range(1, 40), icmp_types=range(128, 160), home_address_packets=True),
        mh_filter(decapsulate=False, max_headers=0),
        mh_filter(max_headers=8),
    ]
    for p in variants:
        assert len(p) < 4096
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            attach_filter(s, p)


def test_rh2_with_hao_needs_walk_of_two(prog: list[Insn]) -> None:
    packet = build_ipv6(
        A, B, 43,
        encode_type2_routing_header(H, 60) + encode_hao_destination_options(H, 135) + MH_BODY,
        checksum_offset=None,
    )  # fmt: skip
    assert run_bpf(prog, packet) == ACCEPT
