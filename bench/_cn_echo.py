"""Baseline for bench/cn_daemon.py: a minimal Python correspondent over the daemon's sockets.

Opens the userspace signalling transport exactly as the daemon does
(AF_PACKET + the Mobility Header BPF filter + the nf_tables drop table +
IPPROTO_RAW) and answers HoTI → HoT, CoTI → CoT and BU → BA 0 with the real
RFC 6275 cryptography (keygen tokens under a Kcn, one nonce, Kbm, the BU's
authenticator verified, the BA's computed), so the generator's checks pass
-- but with fixed packet offsets, no decode, no policy, no binding cache, no
engine.  What is left is the cost of the sockets, the crypto and a Python
loop on this machine: the daemon's rate divided by this one compares across
runs on a noisy shared host.

    python bench/_cn_echo.py CN_ADDRESS   (inside the CN namespace; SIGTERM stops it)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import select
import signal
import struct
import sys
from ipaddress import IPv6Address

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mip6ctl.kernel.reconciler import converge
from mip6ctl.kernel.transport import UserspaceTransport
from mip6ctl.state.render import render_signalling

_M = 0xFFFF
NONCE_INDEX = 1


def main() -> int:
    cn = IPv6Address(sys.argv[1]).packed
    stop = False

    def _stop(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    kcn, nonce = os.urandom(20), os.urandom(8)
    # the nf_tables drop the daemon renders for its transport, written the same way
    converge(render_signalling("userspace"))
    t = UserspaceTransport(is_local=lambda a: True)
    rx, tx = t._rx, t._tx
    assert rx is not None and tx is not None
    mac = hmac.digest
    sha1 = hashlib.sha1
    from_bytes = int.from_bytes
    ntop = lambda b: (str(IPv6Address(b)), 0)  # noqa: E731
    hdr_test = struct.pack("!IHBB", 6 << 28, 24, 135, 64)
    hdr_ba = struct.pack("!IHBB", 6 << 28, 24 + 32, 43, 64)
    rh2 = b"\x87\x02\x02\x01\x00\x00\x00\x00"
    idx = struct.pack("!H", NONCE_INDEX)
    ps_test = struct.pack("!I3xB", 24, 135)
    ps_ba = struct.pack("!I3xB", 32, 135)
    print("ready", flush=True)
    answered = 0
    try:
        while not stop:
            if not select.select([rx], [], [], 0.2)[0]:
                continue
            for _ in range(64):
                try:
                    d = rx.recv(4096)
                except BlockingIOError:
                    break
                if len(d) >= 56 and d[6] == 135 and d[42] in (1, 2):  # HoTI / CoTI
                    peer = d[8:24]
                    kind = d[42]
                    token = mac(kcn, peer + nonce + (b"\0" if kind == 1 else b"\1"), "sha1")[:8]
                    mh = bytes((59, 2, kind + 2, 0, 0, 0)) + idx + d[48:56] + token
                    c = (-from_bytes(cn + peer + ps_test + mh, "big")) % _M or _M
                    pkt = hdr_test + cn + peer + mh[:4] + c.to_bytes(2, "big") + mh[6:]
                    tx.sendto(pkt, ntop(peer))
                    answered += 1
                elif len(d) >= 96 and d[6] == 60 and d[66] == 5:  # BU with HAO
                    hoa, coa, mh = d[48:64], d[8:24], d[64:96]
                    if mh[78 - 64 : 82 - 64] != idx + idx:
                        continue
                    ht = mac(kcn, hoa + nonce + b"\0", "sha1")[:8]
                    ct = mac(kcn, coa + nonce + b"\1", "sha1")[:8]
                    kbm = sha1(ht + ct).digest()
                    data = mh[:4] + b"\0\0" + mh[6:-12]
                    if mac(kbm, coa + cn + data, "sha1")[:12] != mh[-12:]:
                        continue
                    # BA: status 0, flags 0, sequence, lifetime, PadN(4), BAD
                    ba = (
                        b"\x3b\x03\x06\x00\x00\x00\x00\x00"
                        + mh[6:8]
                        + mh[10:12]
                        + b"\x01\x04\0\0\0\0\x05\x0c"
                    )
                    ba += mac(kbm, coa + cn + ba, "sha1")[:12]
                    c = (-from_bytes(cn + hoa + ps_ba + ba, "big")) % _M or _M
                    pkt = hdr_ba + cn + coa + rh2 + hoa + ba[:4] + c.to_bytes(2, "big") + ba[6:]
                    tx.sendto(pkt, ntop(coa))
                    answered += 1
    finally:
        t.close()
    print(f"answered {answered}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
