"""Time from the first packet to a new correspondent until route optimisation is in place.

Engine + kernel + real daemons, inside the vm tier's Debian kernel (emulated: qemu
without KVM, Python ~20x slower than the host). Not a test: a pytest module the vm
tier can be pointed at (the guest runs pytest only):

    scripts/vm-tier --results /var/cache/mip6ctl-vm/results-bench -- -s bench/vm_ro_trigger.py

The HA, MN and CN daemons of tests/vm/test_daemons.py; the MN moves to f1 and its
configuration lists no correspondent (all ``on-traffic``). The CN namespace gets
``MIP6_BENCH_PEERS`` (default 5) extra addresses, each a correspondent the MN has
never talked to; for each, the home address sends one echo request every 50 ms and
the bench records, from the first echo:

* ``acquire_to_registered_ms`` -- until the MN's status shows the correspondent
  registered (the trigger's ACQUIRE, HoTI/CoTI, HoT/CoT, the kernel's RO state,
  the BU): polled every 50 ms, so ±50 ms;
* ``first_direct_reply_ms`` -- until the first echo reply that arrives at the care-of
  address with a type 2 routing header (the CN's kernel has the binding too).

Prints ``BENCH {json}`` with per-peer figures and medians, labelled emulated.
CI never collects it (bench/ is not a test directory).
"""

from __future__ import annotations

import json
import os
import select
import socket
import statistics
import struct
import threading
import time
from ipaddress import IPv6Address
from typing import Any

import pytest

from tests.netns.ha_helpers import ip
from tests.netns.test_mobile_node import _icmp_socket
from tests.vm import conftest as vm_conftest
from tests.vm import test_daemons
from tests.vm.test_daemons import ETH_P_ALL, HOA, Bed, mobility_headers, move

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("mip6_modules")]

bed = test_daemons.bed
mip6_modules = vm_conftest.mip6_modules  # tests/vm/conftest.py is not this file's conftest
PEERS = int(os.environ.get("MIP6_BENCH_PEERS", "5"))
LIMIT = 120.0  # s per peer (emulated)


def _registered(b: Bed, peer: IPv6Address) -> bool:
    rows = b.mn.rpc("status", timeout=10.0)["binding_update_list"]["rows"]
    return any(r["peer"] == str(peer) and r["state"] == "registered" for r in rows)


def _watch_direct(b: Bed, peer: IPv6Address, coa: IPv6Address, out: dict[str, float]) -> Any:
    """A thread timestamping the first echo reply from ``peer`` with a type 2 RH."""
    with b.tb.inside("mn"):
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    cap.bind(("mn0", ETH_P_ALL))
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                if not select.select([cap], [], [], 0.1)[0]:
                    continue
                data = cap.recv(65536)
                if len(data) < 40 or IPv6Address(data[8:24]) != peer:
                    continue
                if IPv6Address(data[24:40]) != coa:
                    continue
                kind, rh2, _hao = mobility_headers(data)
                if kind == 129 and rh2 == HOA:
                    out.setdefault("direct", time.monotonic())
                    return
        finally:
            cap.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return stop, t


def _one(b: Bed, peer: IPv6Address, coa: IPv6Address) -> dict[str, float | None]:
    seen: dict[str, float] = {}
    stop, thread = _watch_direct(b, peer, coa, seen)
    sock = _icmp_socket(b.tb, "mn", HOA)
    t0 = time.monotonic()
    registered: float | None = None
    seq = 0
    try:
        while time.monotonic() - t0 < LIMIT:
            seq += 1
            sock.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x5254, seq) + b"bench", (str(peer), 0))
            while select.select([sock], [], [], 0)[0]:
                sock.recvfrom(2048)
            if registered is None and _registered(b, peer):
                registered = time.monotonic()
            if registered is not None and "direct" in seen:
                break
            time.sleep(0.05)
    finally:
        sock.close()
        stop.set()
        thread.join(2.0)
    ms = lambda t: None if t is None else round((t - t0) * 1000, 1)  # noqa: E731
    return {
        "peer": str(peer),
        "acquire_to_registered_ms": ms(registered),
        "first_direct_reply_ms": ms(seen.get("direct")),
        "echoes_sent": seq,
    }


def test_time_to_route_optimisation(bed: Bed) -> None:
    coa = IPv6Address(move(bed, "f1")["coa"])
    peers = [IPv6Address(f"2001:db8:c::{0x100 + i:x}") for i in range(PEERS)]
    for p in peers:
        ip(bed.tb, "cn", "-6", "addr", "add", f"{p}/64", "dev", "core0", "nodad")
    rows = [_one(bed, p, coa) for p in peers]
    done = [r for r in rows if r["first_direct_reply_ms"] is not None]
    doc: dict[str, Any] = {
        "bench": "vm_ro_trigger",
        "emulated": True,
        "kernel": os.uname().release,
        "peers": rows,
        "completed": len(done),
    }
    for key in ("acquire_to_registered_ms", "first_direct_reply_ms"):
        vals = [r[key] for r in rows if r[key] is not None]
        doc[f"median_{key}"] = statistics.median(vals) if vals else None
    print("BENCH " + json.dumps(doc))
    assert done, rows
