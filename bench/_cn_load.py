"""Load generator for bench/cn_daemon.py: mobile nodes running return routability + BU.

Runs in the generator namespace (the caller has entered it and pinned itself
to a CPU).  One *exchange* for home address ``hoa_base + i`` / care-of
address ``coa_base + i``:

1. HoTI from the home address and CoTI from the care-of address (both
   pre-built: constant packets, one per ``i``);
2. the HoT (to the home address) and the CoT (to the care-of address) are
   captured at the link layer (AF_PACKET + the transport's BPF Mobility
   Header filter; this namespace holds neither address, so its kernel then
   drops them);
3. when both are in: Kbm = SHA1(home token | care-of token), a BU (HAO,
   Nonce Indices, Binding Authorization Data) signed with it, checksum
   computed, sent from the care-of address;
4. the BA (to the care-of address, type 2 routing header) must be status 0
   and its authenticator must verify under the same Kbm (every
   ``verify_every``-th BA; 1 = all).

Closed loop: ``window`` exchanges in flight; a finished (or timed-out)
exchange starts the next home address round robin.  An exchange not done
within ``timeout`` s counts as lost.

Speed: everything that does not depend on the tokens is pre-built per
``i``.  The Internet checksum uses ``int.from_bytes(x) % 0xFFFF`` (a sum of
big-endian 16-bit words modulo 2^16 - 1 is the number itself modulo
2^16 - 1), so each BU costs one SHA1, one HMAC-SHA1 and one bigint reduction.

Layouts (checked at start-up against mip6ctl's codec):
HoTI/CoTI = IPv6 (40) | MH (16).
HoT/CoT   = IPv6 (40) | MH (24): type at 42, nonce index 46:48, cookie 48:56, token 56:64.
BU        = IPv6 (40) | DestOpt HAO (24) | MH (32, at 64): checksum 68:70, sequence 70:72,
            Nonce Indices 78:82, authenticator 84:96.
BA        = IPv6 (40) | RH2 (24, home address at 48) | MH (at 64): type 66, status 70,
            sequence 72:74; Binding Authorization Data last.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import select
import socket
import struct
import time
from array import array
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.kernel.transport import ETH_P_IPV6, attach_filter, mh_filter
from mip6ctl.wire.mh import (
    BindingUpdate,
    BUFlag,
    CareofTestInit,
    HomeTestInit,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices
from mip6ctl.wire.packet import build_mh_packet, decode_mh_packet

SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
_H = struct.Struct("!H")
_IDX = struct.Struct("!HH")
_M = 0xFFFF
_SHA1 = hashlib.sha1
_HMAC = hmac.digest


def ck_sum(b: bytes) -> int:
    """One's-complement sum of ``b`` (even length) modulo 0xFFFF."""
    return int.from_bytes(b, "big") % _M


def pseudo(src: IPv6Address, dst: IPv6Address, length: int) -> bytes:
    return src.packed + dst.packed + struct.pack("!I3xB", length, 135)


@dataclass
class RunResult:
    """One closed-loop run."""

    window: int
    seconds: float
    started: int
    completed: int
    lost: int
    statuses: dict[int, int]
    verified: int
    bad_auth: int
    latencies_ms: list[float] = field(repr=False)
    unexpected: int = 0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float | None:
        lat = self.latencies_ms
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    def summary(self) -> dict[str, Any]:
        r = lambda x: None if x is None else round(x, 3)  # noqa: E731
        return {
            "window": self.window,
            "seconds": round(self.seconds, 3),
            "exchanges_per_s": round(self.rate, 1),
            "started": self.started,
            "completed": self.completed,
            "lost": self.lost,
            "ba_statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "ba_authenticators_verified": self.verified,
            "ba_authenticators_bad": self.bad_auth,
            "unexpected_packets": self.unexpected,
            "exchange_p50_ms": r(self.quantile(0.5)),
            "exchange_p99_ms": r(self.quantile(0.99)),
        }


class CnLoad:
    """Pre-built return routability + BU packets for ``n`` mobile nodes."""

    def __init__(
        self,
        ifname: str,
        cn: IPv6Address,
        hoa_base: IPv6Address,
        coa_base: IPv6Address,
        n: int,
        *,
        lifetime_units: int = 105,
    ) -> None:
        self.cn = cn
        self.cn_text = str(cn)
        self.n = n
        self.hoa_base, self.coa_base = int(hoa_base), int(coa_base)
        self.hoa_lo = self.hoa_base & ((1 << 64) - 1)
        self.coa_lo = self.coa_base & ((1 << 64) - 1)
        self.hoti: list[bytes] = []
        self.coti: list[bytes] = []
        self.bu_head: list[bytes] = []  # IPv6 + HAO (64 octets)
        self.bu_psum: list[int] = []  # pseudo-header (home address, CN, 32, 135) sum
        self.mac_head: list[bytes] = []  # care-of | CN (authenticator prefix)
        self.seq = array("H", bytes(2 * n))
        flags = int(BUFlag.A)
        self._mh_fixed = struct.pack("!HH", flags, lifetime_units) + b"\x04\x04"
        for i in range(n):
            hoa, coa = IPv6Address(self.hoa_base + i), IPv6Address(self.coa_base + i)
            cookie = i.to_bytes(8, "big")
            self.hoti.append(build_mh_packet(hoa, cn, HomeTestInit(cookie)))
            self.coti.append(build_mh_packet(coa, cn, CareofTestInit(cookie)))
            if i == 0:
                bu = BindingUpdate(
                    0,
                    flags,
                    lifetime_units,
                    (NonceIndices(0, 0), BindingAuthorizationData(bytes(12))),
                )
                pkt = build_mh_packet(coa, cn, bu, home_address=hoa)
                assert len(pkt) == 96 and pkt[48:64] == hoa.packed and pkt[66] == 5, "BU layout"
                assert pkt[72:78] == self._mh_fixed and pkt[82:84] == b"\x05\x0c", "BU layout"
                head = pkt[:64]
                self._hao_tail = pkt[40:48]
                self._ip_tmpl = pkt[:8]
            self.bu_head.append(
                self._ip_tmpl + coa.packed + cn.packed + self._hao_tail + hoa.packed
            )
            self.bu_psum.append(ck_sum(pseudo(hoa, cn, 32)))
            self.mac_head.append(coa.packed + cn.packed)
        assert self.bu_head[0] == head
        self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with contextlib.suppress(OSError):
            self.tx.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 << 20)
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        self.rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        attach_filter(self.rx, mh_filter(ifindexes=[socket.if_nametoindex(ifname)]))
        self.rx.bind((ifname, ETH_P_IPV6))
        self.rx.setblocking(False)
        self._selftest()

    def bu_packet(self, i: int, seq: int, hidx: int, cidx: int, kbm: bytes) -> bytes:
        """The signed BU for ``i`` (the generator's inner loop inlines this)."""
        data = b"\x3b\x03\x05\x00\x00\x00" + _H.pack(seq) + self._mh_fixed
        data += _IDX.pack(hidx, cidx) + b"\x05\x0c"
        mh = data + _HMAC(kbm, self.mac_head[i] + data, "sha1")[:12]
        c = (-(self.bu_psum[i] + int.from_bytes(mh, "big"))) % _M or _M
        return self.bu_head[i] + mh[:4] + _H.pack(c) + mh[6:]

    def _selftest(self) -> None:
        from mip6ctl.wire import rr

        kbm = bytes(range(20))
        for i in (0, self.n - 1):
            pkt = self.bu_packet(i, 77, 3, 4, kbm)
            _dec, msg = decode_mh_packet(pkt)  # verifies the checksum
            assert isinstance(msg, BindingUpdate) and msg.sequence == 77, "BU build"
            assert msg.nonce_indices == NonceIndices(3, 4), "BU build"
            coa = IPv6Address(self.coa_base + i)
            assert rr.BindingAuthenticator(kbm).verify(pkt[64:], coa, self.cn), "BU authenticator"
            for p in (self.hoti[i], self.coti[i]):
                decode_mh_packet(p)

    def close(self) -> None:
        self.tx.close()
        self.rx.close()

    def drain(self) -> None:
        while True:
            try:
                self.rx.recv(4096)
            except BlockingIOError:
                return

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        seconds: float,
        window: int,
        *,
        start: int = 0,
        count: int | None = None,
        verify_every: int = 1,
        timeout: float = 1.0,
    ) -> tuple[RunResult, int]:
        """Closed loop for ``seconds`` (or until ``count`` exchanges started and ended).

        Returns the result and the next home address index (round robin from ``start``).
        """
        n = self.n
        tx, rx = self.tx, self.rx
        sendto = tx.sendto
        dst = (self.cn_text, 0)
        recv = rx.recv
        hoti, coti = self.hoti, self.coti
        bu_head, bu_psum, mac_head = self.bu_head, self.bu_psum, self.mac_head
        seqs = self.seq
        fixed = self._mh_fixed
        hpack, ipack = _H.pack, _IDX.pack
        sha1, mac = _SHA1, _HMAC
        from_bytes = int.from_bytes
        clock = time.perf_counter
        sel = select.select
        hoa_lo, coa_lo = self.hoa_lo, self.coa_lo
        m = _M
        # per in-flight exchange: [t0, home index, home token, care-of index, care-of token, kbm]
        flight: dict[int, list[Any]] = {}
        lat: list[float] = []
        statuses: dict[int, int] = {}
        started = completed = lost = verified = bad = unexpected = 0
        nxt = start
        limit = count if count is not None else 1 << 62
        self.drain()
        t0 = clock()
        end = t0 + seconds if count is None else float("inf")
        last_scan = t0

        def begin(now: float) -> None:
            nonlocal nxt, started
            i = nxt
            nxt = (nxt + 1) % n
            if i in flight:  # wrapped onto a slow one: count it lost
                return
            flight[i] = [now, None, None, None, None]
            sendto(hoti[i], dst)
            sendto(coti[i], dst)
            started += 1

        for _ in range(min(window, limit)):
            begin(clock())
        while True:
            now = clock()
            if now >= end or (started >= limit and not flight):
                break
            got = 0
            while True:
                try:
                    d = recv(256)
                except BlockingIOError:
                    break
                got += 1
                t = d[42]
                if t == 3 or t == 4:  # HoT / CoT
                    i = from_bytes(d[32:40], "big") - (hoa_lo if t == 3 else coa_lo)
                    st = flight.get(i)
                    if st is None or len(d) < 64:
                        unexpected += 1
                        continue
                    if t == 3:
                        st[1], st[2] = from_bytes(d[46:48], "big"), d[56:64]
                    else:
                        st[3], st[4] = from_bytes(d[46:48], "big"), d[56:64]
                    if st[2] is None or st[4] is None:
                        continue
                    kbm = sha1(st[2] + st[4]).digest()
                    st.append(kbm)
                    s = (seqs[i] + 1) & 0xFFFF
                    seqs[i] = s
                    data = b"\x3b\x03\x05\x00\x00\x00" + hpack(s) + fixed + ipack(st[1], st[3])
                    data += b"\x05\x0c"
                    mh = data + mac(kbm, mac_head[i] + data, "sha1")[:12]
                    c = (-(bu_psum[i] + from_bytes(mh, "big"))) % m or m
                    sendto(bu_head[i] + mh[:4] + hpack(c) + mh[6:], dst)
                elif len(d) >= 96 and d[66] == 6:  # BA (RH2: home address at 48)
                    i = from_bytes(d[56:64], "big") - hoa_lo
                    st = flight.get(i)
                    if st is None or len(st) < 6:
                        unexpected += 1
                        continue
                    status = d[70]
                    if status == 0 and from_bytes(d[72:74], "big") != seqs[i]:
                        unexpected += 1
                        continue
                    del flight[i]
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 0:
                        ok = True
                        if verify_every and (completed + lost) % verify_every == 0:
                            mh = d[64 : 64 + (d[65] + 1) * 8]
                            covered = mac_head[i] + mh[:4] + b"\0\0" + mh[6:-12]
                            want = mac(st[5], covered, "sha1")[:12]
                            ok = len(mh) >= 26 and mh[-14:-12] == b"\x05\x0c" and want == mh[-12:]
                            verified += 1
                            if not ok:
                                bad += 1
                        if ok:
                            completed += 1
                            lat.append((clock() - st[0]) * 1000.0)
                    else:
                        lost += 1
                    if started < limit:
                        begin(clock())
                else:
                    unexpected += 1
            now = clock()
            if now - last_scan > 0.05:
                last_scan = now
                stale = [i for i, st in flight.items() if now - st[0] > timeout]
                for i in stale:
                    del flight[i]
                    lost += 1
                    if started < limit:
                        begin(now)
            if not got:
                sel([rx], [], [], 0.002)
        dt = clock() - t0
        lat.sort()
        res = RunResult(
            window, dt, started, completed, lost, statuses, verified, bad, lat, unexpected
        )
        return res, nxt
