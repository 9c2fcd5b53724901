"""Baseline for bench/ha_daemon.py: a trivial Python BU → BA echo over the daemon's sockets.

Opens the userspace signalling transport exactly as the daemon does
(AF_PACKET + the Mobility Header BPF filter + the nf_tables drop table +
IPPROTO_RAW) and answers each Binding Update with a BA (status 0) built from
a per-home-address template (sequence and checksum patched, RFC 1624), with
no decode, no engine, no storage.  What is left is the cost of the sockets
and of a Python loop on this machine: the daemon's rate divided by this one
is comparable across runs on a noisy shared host.

    python bench/_ha_echo.py HA_ADDRESS   (inside the HA namespace; SIGTERM stops it)
"""

from __future__ import annotations

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
from mip6ctl.wire.mh import BindingAcknowledgement
from mip6ctl.wire.packet import build_mh_packet

_SEQ = struct.Struct("!H")


def main() -> int:
    ha = IPv6Address(sys.argv[1])
    stop = False

    def _stop(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # the nf_tables drop the daemon renders for its transport, written the same way
    converge(render_signalling("userspace"))
    t = UserspaceTransport(is_local=lambda a: True)
    rx, tx = t._rx, t._tx
    assert rx is not None and tx is not None
    templates: dict[bytes, tuple[bytes, bytes, int, tuple[str, int]]] = {}
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
                # BU with HAO: home address at 48, MH at 64, sequence at 70
                if len(d) < 80 or d[66] != 5:
                    continue
                hoa = d[48:64]
                tpl = templates.get(hoa)
                if tpl is None:
                    coa = IPv6Address(d[8:24])
                    ba = BindingAcknowledgement(0, 0, 0xFFFF, 0, ())
                    pkt = build_mh_packet(ha, coa, ba, rh2_home_address=IPv6Address(hoa))
                    ck = int.from_bytes(pkt[68:70], "big")
                    tpl = (pkt[:68], pkt[74:], (~ck) & 0xFFFF, (str(coa), 0))
                    templates[hoa] = tpl
                pre, post, s0, dst = tpl
                seq = int.from_bytes(d[70:72], "big")
                x = s0 + seq
                x = (x & 0xFFFF) + (x >> 16)
                x = (x & 0xFFFF) + (x >> 16)
                # checksum(2) status(1) flags(1) sequence(2)
                tx.sendto(pre + struct.pack("!HBBH", (~x) & 0xFFFF, 0, 0, seq) + post, dst)
                answered += 1
    finally:
        t.close()
    print(f"answered {answered}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
