"""Signalling transports: Mobility Header (and a few ICMPv6 types) in, engine actions out.

Two implementations behind one interface (:class:`Transport`), chosen by
``[kernel] signalling`` through :func:`select_transport`:

* :class:`UserspaceTransport`, for kernels without CONFIG_IPV6_MIP6 (DESIGN.md,
  "Kernel facts"): such a kernel drops a packet with a Home Address option or a
  type 2 routing header before any socket sees it, so the transport captures
  at the link layer (AF_PACKET, SOCK_DGRAM, ETH_P_IPV6) behind a classic BPF
  filter that passes only Mobility Headers (and the ICMPv6 types asked for),
  relies on the owned nf_tables chains (rendered static state, written by the
  plan executor, see ``state.render._signalling_drop``) to keep the kernel from
  answering, and sends whole IPv6 packets it builds itself (IPPROTO_RAW).
* :class:`KernelTransport`, for kernels with CONFIG_IPV6_MIP6: a raw
  IPPROTO_MH socket; the kernel processes the Home Address option and the type
  2 routing header (given matching XFRM hao/route2 states and inbound policies,
  which the reconciler renders) and reports them as ancillary data.

Both produce the same engine inputs: ``Received.src``/``dst`` are the
addresses *on the wire* (care-of address as source with a Home Address option,
care-of address as destination behind a type 2 routing header) and the home
addresses go into ``home_address_option`` / ``routing_header_address``.

The decode and build steps are pure functions over bytes in
:mod:`mip6ctl.wire.datagram` (``decode_packet`` for captured packets,
``decode_kernel_message`` for a raw socket's message and ancillary data),
unit-tested without sockets; this module only moves the bytes.  Transports are
asyncio-friendly: ``loop.add_reader(t.fileno(), ...)`` then ``t.read_ready()``,
or ``await t.recv()``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import select
import socket
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Literal

from mip6ctl.kernel.links import LocalAddresses
from mip6ctl.kernel.probe import kernel_mip6_missing
from mip6ctl.wire.checksum import NEXT_HEADER_ICMPV6, NEXT_HEADER_MH
from mip6ctl.wire.datagram import (
    Dropped,
    ICMPv6Received,
    InboundEvent,
    Send,
    SendParameterProblem,
    _all_local,
    _cmsg_address,
    build_outgoing,
    build_parameter_problem,
    decode_kernel_message,
    decode_packet,
)
from mip6ctl.wire.errors import MalformedICMPv6, WireError
from mip6ctl.wire.exthdr import encode_hao_destination_options, encode_type2_routing_header
from mip6ctl.wire.icmp6 import ND_TYPES, decode_icmp6
from mip6ctl.wire.packet import build_mh_packet, parse_ipv6

__all__ = [
    "DHAAD_TYPES",
    "KernelTransport",
    "Transport",
    "TransportStats",
    "TransportUnavailable",
    "UserspaceTransport",
    "mh_filter",
    "open_transport",
    "select_transport",
]

IPPROTO_MH = 135
IPPROTO_IPV6_IN_IPV6 = 41
ETH_P_IPV6 = 0x86DD
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
ICMP6_FILTER = 1
ICMPV6_PARAMPROB = 4
#: RFC 4443 §2.4(c): an ICMPv6 error must fit the minimum MTU.
_MIN_MTU = 1280
#: ICMPv6 types a Mobile IPv6 node may want besides the MH: RA (movement
#: detection), NS (home address defence), DHAAD request/reply, Mobile Prefix
#: solicitation/advertisement.
DHAAD_TYPES = frozenset((144, 145, 146, 147))

TransportKind = Literal["kernel", "userspace"]


class TransportUnavailable(OSError):
    """The transport cannot run here; the message names the missing capability."""


@dataclass(slots=True)
class TransportStats:
    """Counters for status/doctor output and tests (``dropped`` by reason)."""

    received: int = 0
    sent: int = 0
    send_errors: int = 0
    dropped: dict[str, int] | None = None

    def drop(self, reason: str) -> None:
        if self.dropped is None:
            self.dropped = {}
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


# --------------------------------------------------------------------------- BPF


# Classic BPF opcodes (linux/filter.h).
BPF_LD, BPF_LDX, BPF_ST, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = (
    0x00,
    0x01,
    0x02,
    0x04,
    0x05,
    0x06,
    0x07,
)
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM = 0x00, 0x20, 0x40, 0x60
BPF_ADD, BPF_AND, BPF_LSH = 0x00, 0x50, 0x60
BPF_JA, BPF_JEQ = 0x00, 0x10
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_TAX = 0x00
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
#: accept: keep the whole packet (SOCK_DGRAM: from the IPv6 header on)
BPF_ACCEPT_LEN = 0x40000

Insn = tuple[int, int, int, int]


class _Asm:
    """A tiny assembler: forward jumps to labels, resolved to 8-bit offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int | str]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int | str = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def jeq(self, k: int, target: str) -> None:
        self.op(BPF_JMP | BPF_JEQ | BPF_K, k, target, 0)

    def ja(self, target: str) -> None:
        self.op(BPF_JMP | BPF_JA, target)

    def assemble(self) -> list[Insn]:
        out: list[Insn] = []
        for pc, (code, jt, jf, k) in enumerate(self.code):
            out.append(
                (
                    code,
                    self._rel(pc, jt, 255),
                    self._rel(pc, jf, 255),
                    self._rel(pc, k, 0xFFFFFFFF) & 0xFFFFFFFF,
                )
            )
        return out

    def _rel(self, pc: int, target: int | str, limit: int) -> int:
        if isinstance(target, int):
            return target
        off = self.labels[target] - pc - 1
        if not 0 <= off <= limit:
            raise ValueError(f"BPF jump to {target} out of range ({off})")
        return off


def mh_filter(
    *,
    ifindexes: Collection[int] = (),
    icmp_types: Collection[int] = (),
    home_address_packets: bool = False,
    decapsulate: bool = True,
    max_headers: int = 6,
) -> list[Insn]:
    """The classic BPF program of the userspace transport's packet socket.

    Runs in the kernel on each IPv6 packet (offset 0 = IPv6 header) and keeps
    it only when: it was received, not sent (pkttype host/broadcast/multicast,
    so outgoing copies and other hosts' frames in promiscuous mode are
    dropped); it arrived on one of ``ifindexes`` (all when empty); and its
    header chain leads to a Mobility Header -- walking up to ``max_headers``
    Hop-by-Hop, Routing and Destination Options headers (X holds the current
    header's offset; each step loads Next Header and Hdr Ext Len from it) --
    or to ICMPv6 of one of ``icmp_types``.  With ``decapsulate`` an outer
    header with next header 41 (RFC 2473, as the seg6 backend sends) is
    stepped over once, so tunnelled signalling (HoT via the home agent) passes.
    ``home_address_packets`` also keeps any packet with a Destination Options
    header (for Home Address options on payload).  Out-of-bounds loads end the
    program with "drop", so truncated packets never pass.
    """
    a = _Asm()
    a.op(BPF_LD | BPF_W | BPF_ABS, (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF)
    for t in (PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST):
        a.jeq(t, "pkttype_ok")
    a.ja("drop")
    a.label("pkttype_ok")
    if ifindexes:
        a.op(BPF_LD | BPF_W | BPF_ABS, (SKF_AD_OFF + SKF_AD_IFINDEX) & 0xFFFFFFFF)
        for idx in sorted(set(ifindexes)):
            a.jeq(idx, "if_ok")
        a.ja("drop")
        a.label("if_ok")
    a.op(BPF_LD | BPF_B | BPF_ABS, 0)
    a.op(BPF_ALU | BPF_AND | BPF_K, 0xF0)
    a.jeq(0x60, "v6")
    a.ja("drop")
    a.label("v6")
    a.op(BPF_LD | BPF_B | BPF_ABS, 6)  # A = next header
    a.op(BPF_LDX | BPF_W | BPF_IMM, 40)  # X = offset of the header A names
    for i in range(max_headers + 1):
        a.label(f"hdr{i}")
        a.jeq(NEXT_HEADER_MH, "accept")
        if icmp_types:
            a.jeq(NEXT_HEADER_ICMPV6, "icmp")
        if i == max_headers:  # walked max_headers extension headers: give up
            break
        a.jeq(60, "accept" if home_address_packets else f"ext{i}")
        a.jeq(43, f"ext{i}")
        a.jeq(0, f"ext{i}")
        if decapsulate and i == 0:
            a.jeq(IPPROTO_IPV6_IN_IPV6, "tunnel")
        a.ja("drop")
        a.label(f"ext{i}")
        a.op(BPF_LD | BPF_B | BPF_IND, 0)  # this header's Next Header ...
        a.op(BPF_ST, 0)  # ... kept in M[0]
        a.op(BPF_LD | BPF_B | BPF_IND, 1)  # Hdr Ext Len: (n + 1) * 8 octets
        a.op(BPF_ALU | BPF_ADD | BPF_K, 1)
        a.op(BPF_ALU | BPF_LSH | BPF_K, 3)
        a.op(BPF_ALU | BPF_ADD | BPF_X)
        a.op(BPF_MISC | BPF_TAX)  # X = next header's offset
        a.op(BPF_LD | BPF_MEM, 0)  # A = its type
        a.ja(f"hdr{i + 1}")
        if decapsulate and i == 0:
            a.label("tunnel")
            a.op(BPF_LD | BPF_B | BPF_ABS, 40 + 6)  # inner Next Header
            a.op(BPF_LDX | BPF_W | BPF_IMM, 80)
            a.ja("hdr1")
    a.ja("drop")
    if icmp_types:
        a.label("icmp")
        a.op(BPF_LD | BPF_B | BPF_IND, 0)  # ICMPv6 type
        for t in sorted(set(icmp_types)):
            a.jeq(t, "accept")
        a.ja("drop")
    a.label("accept")
    a.op(BPF_RET | BPF_K, BPF_ACCEPT_LEN)
    a.label("drop")
    a.op(BPF_RET | BPF_K, 0)
    return a.assemble()


DROP_ALL: list[Insn] = [(BPF_RET | BPF_K, 0, 0, 0)]


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter)))


def attach_filter(sock: socket.socket, program: Sequence[Insn]) -> None:
    """SO_ATTACH_FILTER: replace the socket's filter atomically (the kernel checks it)."""
    arr = (_SockFilter * len(program))(*(_SockFilter(c, t, f, k) for c, t, f, k in program))
    prog = _SockFprog(len(program), ctypes.cast(arr, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


# --------------------------------------------------------------------------- interface


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Transport(abc.ABC):
    """What the daemon needs from a signalling transport.

    ``fileno()`` becomes readable when ``read_ready()`` has something to do;
    ``read_ready()`` never blocks and returns the engine inputs decoded from
    the packets waiting (a bounded batch); ``send()`` executes one engine
    action; ``close()`` releases sockets and whatever the transport
    installed in the kernel.
    """

    kind: TransportKind
    stats: TransportStats

    @abc.abstractmethod
    def fileno(self) -> int: ...

    @abc.abstractmethod
    def read_ready(self) -> list[InboundEvent]: ...

    @abc.abstractmethod
    def send(self, action: Send | SendParameterProblem) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    async def recv(self) -> list[InboundEvent]:
        """Wait until at least one event is decoded (asyncio)."""
        loop = asyncio.get_running_loop()
        while True:
            events = self.read_ready()
            if events:
                return events
            fut: asyncio.Future[None] = loop.create_future()
            fd = self.fileno()
            loop.add_reader(fd, _wake, fut)
            try:
                await fut
            finally:
                loop.remove_reader(fd)

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _ifindexes(names: Iterable[str]) -> dict[int, str]:
    out = {}
    for name in names:
        try:
            out[socket.if_nametoindex(name)] = name
        except OSError as e:
            raise TransportUnavailable(errno.ENODEV, f"interface {name!r} not found") from e
    return out


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _bind_packet_all(sock: socket.socket, proto: int, ifindex: int = 0) -> None:
    """bind(sockaddr_ll) with ifindex 0 (all interfaces): Python's tuple form cannot say that."""
    addr = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(proto), ifindex, 0, 0, 0, b"")
    buf = ctypes.create_string_buffer(addr, len(addr))
    if _libc.bind(sock.fileno(), buf, len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind(AF_PACKET): {os.strerror(err)}")


class UserspaceTransport(Transport):
    """AF_PACKET capture + in-kernel BPF filter + IPPROTO_RAW send.

    ``interfaces`` restricts capture (all interfaces when empty); ``is_local``
    decides which destinations are ours (default: :class:`LocalAddresses`);
    ``icmp_types`` adds ICMPv6 types to the capture.  The nf_tables chains
    that keep the kernel from answering what was captured are not this
    class's business: they are rendered static state (the daemon has them in
    place before it opens the transport; `reconciler.converge` for others).
    Sockets live in the calling thread's network namespace.
    """

    kind: TransportKind = "userspace"

    def __init__(
        self,
        interfaces: Sequence[str] = (),
        *,
        is_local: Callable[[IPv6Address], bool] | None = None,
        icmp_types: Collection[int] = (),
        home_address_packets: bool = False,
        decapsulate: bool = True,
        tunnel_from: Collection[IPv6Address] | None = None,
        batch: int = 64,
        rcvbuf: int = 4 << 20,
    ) -> None:
        self.stats = TransportStats()
        self.icmp_types = frozenset(icmp_types)
        self.home_address_packets = home_address_packets
        self.decapsulate = decapsulate
        #: outer sources whose IPv6-in-IPv6 is decapsulated (None: any)
        self.tunnel_from = None if tunnel_from is None else frozenset(tunnel_from)
        self.batch = batch
        self._own_local = is_local is None
        self._rx: socket.socket | None = None
        self._tx: socket.socket | None = None
        self._interfaces: dict[int, str] = {}
        self.is_local: Callable[[IPv6Address], bool] = _all_local
        try:
            self._interfaces = _ifindexes(interfaces)
            self.is_local = is_local if is_local is not None else LocalAddresses()
            try:
                # Protocol 0: the socket receives nothing until bind, so no packet
                # can slip in before the filter is attached.
                self._rx = socket.socket(
                    socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0
                )
                self._tx = socket.socket(
                    socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_RAW
                )
            except PermissionError as e:
                raise TransportUnavailable(
                    e.errno,
                    "userspace signalling transport needs CAP_NET_RAW "
                    "(AF_PACKET capture, IPPROTO_RAW send)",
                ) from e
            with contextlib.suppress(OSError):
                self._rx.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            try:  # as root, past net.core.rmem_max: a burst must not overflow the queue
                self._rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                with contextlib.suppress(OSError):
                    self._rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            attach_filter(self._rx, self._program())
            _bind_packet_all(self._rx, ETH_P_IPV6)
            self._rx.setblocking(False)
        except BaseException:
            self.close()
            raise

    def _program(self) -> list[Insn]:
        return mh_filter(
            ifindexes=self._interfaces,
            icmp_types=self.icmp_types,
            home_address_packets=self.home_address_packets,
            decapsulate=self.decapsulate,
        )

    def set_interfaces(self, interfaces: Sequence[str]) -> None:
        """Capture on other interfaces (re-resolves indexes; swaps the filter atomically)."""
        assert self._rx is not None
        self._interfaces = _ifindexes(interfaces)
        attach_filter(self._rx, self._program())

    def fileno(self) -> int:
        assert self._rx is not None, "transport closed"
        return self._rx.fileno()

    def read_ready(self) -> list[InboundEvent]:
        assert self._rx is not None, "transport closed"
        out: list[InboundEvent] = []
        for _ in range(self.batch):
            try:
                data, addr = self._rx.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. ENETDOWN: report, never kill the daemon's loop
                self.stats.drop(f"socket error {errno.errorcode.get(e.errno or 0, e.errno)}")
                break
            ifname, _proto, pkttype = addr[0], addr[1], addr[2]
            if pkttype in (PACKET_OUTGOING, PACKET_OTHERHOST):  # belt and braces: BPF drops them
                self.stats.drop("outgoing")
                continue
            ev = decode_packet(
                data,
                ifname=ifname,
                is_local=self.is_local,
                icmp_types=self.icmp_types,
                decapsulate=self.decapsulate,
                tunnel_from=self.tunnel_from,
            )
            if isinstance(ev, Dropped):
                self.stats.drop(ev.reason)
                continue
            self.stats.received += 1
            out.append(ev)
        return out

    def _scope(self, dst: IPv6Address) -> int:
        if len(self._interfaces) != 1:
            return 0
        p = dst.packed
        # link-local (fe80::/10) or multicast (ff00::/8)
        if p[0] == 0xFF or (p[0] == 0xFE and p[1] & 0xC0 == 0x80):
            return next(iter(self._interfaces))
        return 0

    def send_packet(self, packet: bytes, first_hop: IPv6Address) -> None:
        """Send a whole IPv6 packet (header included) towards its header's destination."""
        assert self._tx is not None, "transport closed"
        try:
            target = socket.inet_ntop(socket.AF_INET6, first_hop.packed)
            self._tx.sendto(packet, (target, 0, 0, self._scope(first_hop)))
        except OSError:
            self.stats.send_errors += 1
            raise
        self.stats.sent += 1

    def send(self, action: Send | SendParameterProblem) -> None:
        if isinstance(action, SendParameterProblem):
            self.send_packet(build_parameter_problem(action), action.dst)
        else:
            self.send_packet(*build_outgoing(action))
        if isinstance(self.is_local, LocalAddresses):
            self.is_local.sent_from(action.src)

    def close(self) -> None:
        for s in (self._rx, self._tx):
            if s is not None:
                s.close()
        self._rx = self._tx = None
        if self._own_local and isinstance(self.is_local, LocalAddresses):
            self.is_local.close()
            self.is_local = _all_local


# --------------------------------------------------------------------------- kernel transport


def _pktinfo(src: IPv6Address, ifindex: int = 0) -> tuple[int, int, bytes]:
    return socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, src.packed + struct.pack("=I", ifindex)


def _icmp6_filter(types: Collection[int]) -> bytes:
    """struct icmp6_filter: a set bit blocks that type (Linux semantics)."""
    words = [0xFFFFFFFF] * 8
    for t in types:
        words[t >> 5] &= ~(1 << (t & 31))
    return struct.pack("=8I", *words)


class KernelTransport(Transport):
    """Raw IPPROTO_MH socket on a CONFIG_IPV6_MIP6 kernel.

    Receive: IPV6_CHECKSUM 4 (the kernel verifies, with the home-address
    pseudo-header after it processed the HAO/RH2), IPV6_RECVPKTINFO,
    IPV6_RECVDSTOPTS, IPV6_RECVRTHDR; see :func:`decode_kernel_message`.
    The kernel accepts a Home Address option or type 2 routing header only
    when an XFRM hao/route2 state and an inbound policy allow it (UMIP's
    wildcard states), and a type 2 RH only to an address flagged ``home``.
    Send: a second MH socket with the kernel's checksum off (it would use
    the care-of source with a HAO) and a drop-all receive filter; the HAO
    goes as IPV6_DSTOPTS, the type 2 RH as IPV6_RTHDR (RFC 3542: sent to
    the home address, the RH naming the care-of address as the first hop),
    the source as IPV6_PKTINFO.  ICMPv6 (``icmp_types``, Parameter Problem)
    uses a raw ICMPv6 socket.  ``fileno()`` is an epoll descriptor over the
    receiving sockets.

    The kernel accepts a HAO / type 2 RH only with UMIP's wildcard hao/route2
    states and an inbound MH policy: rendered static state
    (``state.render._kernel_transport_wildcards``), not this class's business.
    """

    kind: TransportKind = "kernel"

    def __init__(
        self,
        interfaces: Sequence[str] = (),
        *,
        icmp_types: Collection[int] = (),
        batch: int = 64,
        hao_by_xfrm: Collection[tuple[IPv6Address, IPv6Address]] = (),
    ) -> None:
        self.stats = TransportStats()
        self.batch = batch
        self.icmp_types = frozenset(icmp_types)
        #: (home address, peer): the Home Address option of MH sent from that home
        #: address to that peer comes from an XFRM hao state (RFC 3776: the BU's ESP
        #: SA selects on the home address, so the flow must carry it), not IPV6_DSTOPTS
        self.hao_by_xfrm = frozenset(hao_by_xfrm)
        self._socks: list[socket.socket] = []
        self._epoll: select.epoll | None = None
        try:
            missing = kernel_mip6_missing()
            if missing:
                raise TransportUnavailable(
                    errno.EOPNOTSUPP,
                    f"kernel signalling transport unavailable: {missing}; "
                    'use signalling = "userspace"',
                )
            self._interfaces = _ifindexes(interfaces)
            self._rx = self._open(IPPROTO_MH)
            self._rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, 4)
            for opt in (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVDSTOPTS, socket.IPV6_RECVRTHDR):
                self._rx.setsockopt(socket.IPPROTO_IPV6, opt, 1)
            self._tx = self._open(IPPROTO_MH)
            attach_filter(self._tx, DROP_ALL)
            self._tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM, -1)
            self._icmp = self._open(socket.IPPROTO_ICMPV6)
            self._icmp.setsockopt(
                socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter(self.icmp_types)
            )
            for opt in (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVHOPLIMIT):
                self._icmp.setsockopt(socket.IPPROTO_IPV6, opt, 1)
            self._epoll = select.epoll()
            self._epoll.register(self._rx.fileno(), select.EPOLLIN)
            if self.icmp_types:
                self._epoll.register(self._icmp.fileno(), select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def _open(self, proto: int) -> socket.socket:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto)
        self._socks.append(s)
        s.setblocking(False)
        return s

    def fileno(self) -> int:
        assert self._epoll is not None, "transport closed"
        return self._epoll.fileno()

    def _ifname(self, ancillary: list[tuple[int, int, bytes]]) -> tuple[bool, str | None]:
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
                idx = struct.unpack_from("=I", data, 16)[0]
                if self._interfaces and idx not in self._interfaces:
                    return False, None
                try:
                    return True, self._interfaces.get(idx) or socket.if_indextoname(idx)
                except OSError:
                    return True, None
        return True, None

    def read_ready(self) -> list[InboundEvent]:
        assert self._epoll is not None, "transport closed"
        out: list[InboundEvent] = []
        for _ in range(self.batch):
            progressed = False
            for sock, is_mh in ((self._rx, True), (self._icmp, False)):
                if not is_mh and not self.icmp_types:
                    continue
                try:
                    data, anc, _flags, addr = sock.recvmsg(65536, 1024)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:  # report, never kill the daemon's loop
                    self.stats.drop(f"socket error {errno.errorcode.get(e.errno or 0, e.errno)}")
                    continue
                progressed = True
                ok, ifname = self._ifname(anc)
                if not ok:
                    self.stats.drop("other interface")
                    continue
                ev = (
                    decode_kernel_message(
                        data, IPv6Address(addr[0].split("%")[0]), anc, ifname=ifname
                    )
                    if is_mh
                    else self._icmp_event(data, addr, anc, ifname)
                )
                if isinstance(ev, Dropped):
                    self.stats.drop(ev.reason)
                    continue
                self.stats.received += 1
                out.append(ev)
            if not progressed:
                break
        return out

    @staticmethod
    def _icmp_event(
        data: bytes, addr: tuple, anc: list[tuple[int, int, bytes]], ifname: str | None
    ) -> ICMPv6Received | Dropped:
        dst: IPv6Address | None = None
        hop = 0
        for level, kind, d in anc:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                dst = _cmsg_address(d)
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT:
                hop = struct.unpack("=i", d[:4])[0]
        if dst is None:
            return Dropped("no IPV6_PKTINFO")
        try:
            msg = decode_icmp6(data)
            if data[0] in ND_TYPES and hop != 255:
                raise MalformedICMPv6("ND message with Hop Limit != 255", mh_offset=7)
        except WireError:
            return Dropped("bad ICMPv6")
        return ICMPv6Received(msg, IPv6Address(addr[0].split("%")[0]), dst, hop, ifname)

    def send(self, action: Send | SendParameterProblem) -> None:
        try:
            if isinstance(action, SendParameterProblem):
                pkt = build_parameter_problem(action)
                self._icmp.sendmsg([pkt[40:]], [_pktinfo(action.src)], 0, (str(action.dst), 0))
            else:
                self._send_mh(action)
        except OSError:
            self.stats.send_errors += 1
            raise
        self.stats.sent += 1

    def _send_mh(self, action: Send) -> None:
        # The MH with its checksum, computed by us under the HAO/RH2 pseudo-header rule.
        pkt = build_mh_packet(
            action.src,
            action.dst,
            action.message,
            home_address=action.home_address_option,
            rh2_home_address=action.routing_header_address,
        )
        mh = parse_ipv6(pkt).payload
        hoa = action.home_address_option
        if hoa is not None and (hoa, action.dst) in self.hao_by_xfrm:
            # same MH (its checksum already uses the home address), sent from the home
            # address: the kernel's hao state swaps in the care-of address, then ESP
            self._tx.sendmsg([mh], [_pktinfo(hoa)], 0, (str(action.dst), 0))
            return
        anc = [_pktinfo(action.src)]
        target = action.dst
        if action.home_address_option is not None:
            anc.append(
                (
                    socket.IPPROTO_IPV6,
                    socket.IPV6_DSTOPTS,
                    encode_hao_destination_options(action.home_address_option, IPPROTO_MH),
                )
            )
        if action.routing_header_address is not None:
            # RFC 3542: send to the final destination (home address); the routing
            # header names the first hop (care-of address), the kernel swaps them.
            anc.append(
                (
                    socket.IPPROTO_IPV6,
                    socket.IPV6_RTHDR,
                    encode_type2_routing_header(action.dst, IPPROTO_MH),
                )
            )
            target = action.routing_header_address
        self._tx.sendmsg([mh], anc, 0, (str(target), 0))

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for s in self._socks:
            s.close()
        self._socks = []


# --------------------------------------------------------------------------- selection


def _capability_map(
    capabilities: Mapping[str, bool | None] | Iterable[object],
) -> dict[str, bool | None]:
    if isinstance(capabilities, Mapping):
        return dict(capabilities)
    return {c.name: c.available for c in capabilities}  # type: ignore[attr-defined]


def select_transport(
    signalling: str, capabilities: Mapping[str, bool | None] | Iterable[object]
) -> TransportKind:
    """``[kernel] signalling`` + probed capabilities (``probe()`` or name → available) → kind.

    ``auto`` takes the kernel transport only where the probe found MIP6.
    """
    caps = _capability_map(capabilities)
    mip6 = caps.get("mip6") is True
    if signalling == "userspace":
        return "userspace"
    if signalling == "kernel":
        if not mip6:
            raise TransportUnavailable(
                errno.EOPNOTSUPP,
                'signalling = "kernel" needs CONFIG_IPV6_MIP6 (capability '
                '\'mip6\'), which this kernel lacks; use "userspace" or "auto"',
            )
        return "kernel"
    if signalling == "auto":
        return "kernel" if mip6 else "userspace"
    raise ValueError(f"unknown signalling transport {signalling!r}")


def open_transport(
    kind: TransportKind, interfaces: Sequence[str] = (), **options: object
) -> Transport:
    """Open the transport of ``kind`` in the calling thread's network namespace."""
    if kind == "kernel":
        return KernelTransport(interfaces, **options)  # type: ignore[arg-type]
    return UserspaceTransport(interfaces, **options)  # type: ignore[arg-type]
