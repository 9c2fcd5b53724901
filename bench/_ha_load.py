"""Load generator for bench/ha_daemon.py: pre-built Binding Updates out, BAs in, latency.

Runs in the generator namespace (the caller has entered it and pinned itself
to a CPU).  Binding Updates go out through one IPPROTO_RAW socket; the home
agent's BAs (type 2 routing header to a care-of address this namespace does
not hold, so its kernel would drop them) are captured at the link layer by an
AF_PACKET socket behind the transport's classic BPF Mobility Header filter,
and matched to their BU by (home address, sequence).

Packets: ``build_mh_packet`` once per home address (sequence 0, checksum
computed by mip6ctl's codec); each send patches the sequence and the checksum
incrementally (RFC 1624: the sequence is one aligned 16-bit word of the MH).

Layouts (checked at start-up against the codec):
BU  = IPv6 (40) | Destination Options with HAO (24, address at 48) | MH BU (16, at 64):
      checksum at 68, sequence at 70.
BA  = IPv6 (40) | type 2 routing header (24, home address at 48) | MH BA (at 64):
      MH type at 66, status at 70, sequence at 72.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.kernel.transport import ETH_P_IPV6, attach_filter, mh_filter
from mip6ctl.wire.mh import BindingUpdate, BUFlag
from mip6ctl.wire.packet import build_mh_packet, decode_mh_packet, parse_ipv6

SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
_SEQ_CK = struct.Struct("!HH")


def _fold(x: int) -> int:
    x = (x & 0xFFFF) + (x >> 16)
    return (x & 0xFFFF) + (x >> 16)


@dataclass
class PhaseResult:
    """What one open-loop phase measured (latencies in ms, sorted)."""

    offered_rate: float
    sent: int
    send_seconds: float
    answered: int
    accepted: int
    statuses: dict[int, int]
    latencies_ms: list[float] = field(repr=False)
    unexpected: int = 0
    #: indexes whose BU got no BA 0 (unanswered or refused)
    failed: list[int] = field(default_factory=list, repr=False)

    def quantile(self, q: float) -> float | None:
        lat = self.latencies_ms
        if not lat:
            return None
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    def within(self, ms: float, *, accepted_only: bool = True) -> float:
        """Fraction of the BUs sent that got a BA (status 0) within ``ms``."""
        if not self.sent:
            return 0.0
        import bisect

        return bisect.bisect_right(self.latencies_ms, ms) / self.sent

    def summary(self, bound_ms: float) -> dict[str, Any]:
        return {
            "offered_per_s": round(self.offered_rate, 1),
            "achieved_send_per_s": round(self.sent / self.send_seconds, 1)
            if self.send_seconds
            else None,
            "sent": self.sent,
            "answered": self.answered,
            "accepted": self.accepted,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            f"within_{bound_ms:g}ms": round(self.within(bound_ms), 5),
            "p50_ms": _r(self.quantile(0.50)),
            "p99_ms": _r(self.quantile(0.99)),
            "p999_ms": _r(self.quantile(0.999)),
            "max_ms": _r(self.latencies_ms[-1] if self.latencies_ms else None),
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


class LoadGenerator:
    """Pre-built BUs for home addresses ``hoa_base + i`` from care-of ``coa_base + i``."""

    def __init__(
        self,
        ifname: str,
        ha: IPv6Address,
        hoa_base: IPv6Address,
        coa_base: IPv6Address,
        *,
        lifetime_units: int = 0xFFFF,
        flags: int = int(BUFlag.A | BUFlag.H),
        options_of: Callable[[int], tuple[Any, ...]] | None = None,
    ) -> None:
        """``flags`` / ``options_of(i)``: e.g. R and Mobile Network Prefix options for
        mobile routers (bench/ha_nemo.py); the sequence and checksum stay where they are."""
        self.flags = flags
        self.options_of = options_of
        self.ha = ha
        self.ha_text = str(ha)
        self.hoa_base = int(hoa_base)
        self.coa_base = int(coa_base)
        self.lifetime_units = lifetime_units
        self._hoa_hi = (self.hoa_base >> 64).to_bytes(8, "big")
        self._hoa_lo = self.hoa_base & ((1 << 64) - 1)
        self.pre: list[bytes] = []
        self.post: list[bytes] = []
        self.sum0 = array("l")
        #: last sequence sent per home address index
        self.seq = array("H")
        self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with contextlib.suppress(OSError):
            self.tx.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 << 20)
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        self.rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        attach_filter(self.rx, mh_filter(ifindexes=[socket.if_nametoindex(ifname)]))
        self.rx.bind((ifname, ETH_P_IPV6))
        self.rx.setblocking(False)
        self.unexpected = 0
        self.send_errors = 0

    def close(self) -> None:
        self.tx.close()
        self.rx.close()

    # ------------------------------------------------------------------ packets

    def ensure(self, n: int) -> None:
        """Templates for home address indexes [0, n)."""
        for i in range(len(self.pre), n):
            hoa = IPv6Address(self.hoa_base + i)
            coa = IPv6Address(self.coa_base + i)
            options = self.options_of(i) if self.options_of is not None else ()
            bu = BindingUpdate(0, self.flags, self.lifetime_units, options)
            pkt = build_mh_packet(coa, self.ha, bu, home_address=hoa)
            if i == 0:
                assert parse_ipv6(pkt).payload_offset == 64, "BU layout"
                assert options or len(pkt) == 80, "BU layout"
                assert pkt[48:64] == hoa.packed
            ck = int.from_bytes(pkt[68:70], "big")
            self.pre.append(pkt[:68])
            self.post.append(pkt[72:])
            self.sum0.append((~ck) & 0xFFFF)
            self.seq.append(0)
        if n:
            self._selftest()

    def packet(self, i: int, seq: int) -> bytes:
        ck = (~_fold(self.sum0[i] + seq)) & 0xFFFF
        return self.pre[i] + _SEQ_CK.pack(ck, seq) + self.post[i]

    def _selftest(self) -> None:
        for i, s in ((0, 1), (0, 0xFFFF), (len(self.pre) - 1, 12345)):
            _pkt, msg = decode_mh_packet(self.packet(i, s))
            assert isinstance(msg, BindingUpdate) and msg.sequence == s, "BU patching"

    # ------------------------------------------------------------------ I/O

    def drain(self) -> None:
        """Drop whatever is queued on the capture socket."""
        while True:
            try:
                self.rx.recv(4096)
            except BlockingIOError:
                return

    def run(
        self,
        indexes: range | list[int],
        rate: float,
        *,
        wait: float = 1.0,
        rounds: int = 1,
    ) -> PhaseResult:
        """Send one BU per index (``rounds`` times over ``indexes``, next sequence each
        time) at ``rate``/s, open loop, then wait up to ``wait`` s for the last BAs."""
        idx = list(indexes) * rounds
        total = len(idx)
        seqs = self.seq
        send_t = array("d", bytes(8 * total))
        pending: dict[int, int] = {}
        lat: list[float] = []
        statuses: dict[int, int] = {}
        accepted = 0
        answered = 0
        unexpected = 0
        failed: list[int] = []
        send_errors = 0
        tx, rx = self.tx, self.rx
        ha = (self.ha_text, 0)
        pre, post, sum0 = self.pre, self.post, self.sum0
        pack = _SEQ_CK.pack
        hi = self._hoa_hi
        lo0 = self._hoa_lo
        recv = rx.recv
        clock = time.perf_counter
        from_bytes = int.from_bytes
        sel = select.select
        self.drain()
        sent = 0
        t0 = clock()
        period = 1.0 / rate
        deadline = None
        while True:
            now = clock()
            if sent < total:
                due = min(total, int((now - t0) * rate) + 1)
                while sent < due:
                    i = idx[sent]
                    s = (seqs[i] + 1) & 0xFFFF
                    seqs[i] = s
                    ck = (~_fold(sum0[i] + s)) & 0xFFFF
                    t = clock()
                    try:
                        tx.sendto(pre[i] + pack(ck, s) + post[i], ha)
                    except OSError:  # ENOBUFS & co: counted as unanswered
                        send_errors += 1
                    send_t[sent] = t
                    pending[(i << 16) | s] = sent
                    sent += 1
                if sent == total:
                    send_end = clock()
                    deadline = send_end + wait
            # receive everything queued
            while True:
                try:
                    d = recv(256)
                except BlockingIOError:
                    break
                t = clock()
                if len(d) < 76 or d[66] != 6 or d[48:56] != hi:
                    unexpected += 1
                    continue
                i = from_bytes(d[56:64], "big") - lo0
                j = pending.pop((i << 16) | from_bytes(d[72:74], "big"), None)
                if j is None:
                    unexpected += 1
                    continue
                answered += 1
                st = d[70]
                if st == 0:
                    accepted += 1
                    lat.append((t - send_t[j]) * 1000.0)
                else:
                    statuses[st] = statuses.get(st, 0) + 1
                    failed.append(idx[j])
            if sent == total:
                if not pending or clock() >= deadline:  # type: ignore[operator]
                    break
                sel([rx], [], [], 0.002)
            else:
                nxt = t0 + sent * period
                delay = nxt - clock()
                if delay > 0.0002:
                    sel([rx], [], [], min(delay, 0.001))
        statuses[0] = accepted
        failed.extend(idx[j] for j in pending.values())
        lat.sort()
        self.unexpected += unexpected
        self.send_errors += send_errors
        return PhaseResult(
            rate, total, send_end - t0, answered, accepted, statuses, lat, unexpected, failed
        )
