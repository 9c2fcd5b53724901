"""Helpers of the vm tier's IPsec tests (tests/vm/test_ipsec.py, tests/vm/test_ike_daemons.py):
a capture that walks the extension headers up to ESP, the mobile node's registration
as both daemons see it, and the example configurations with their key files.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, TypeVar

from mip6ctl.testbed import Testbed

HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
PREFIX = {"f1": IPv6Network("2001:db8:a::/64"), "f2": IPv6Network("2001:db8:b::/64")}
NH_DSTOPTS, NH_ROUTING, NH_ESP, NH_MH, NH_IPV6 = 60, 43, 50, 135, 41
ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4
T = TypeVar("T")


def copy_example(src: Path, dst: Path) -> Path:
    """A copy of an example directory with its key files made mode 0600 (git keeps
    0644; the daemon refuses group/other-readable keys)."""
    shutil.copytree(src, dst)
    for k in (dst / "keys").iterdir():
        k.chmod(0o600)
    return dst


@dataclass
class Frame:
    outgoing: bool
    src: IPv6Address
    dst: IPv6Address
    chain: list[int]  # next-header values in order
    hao: IPv6Address | None = None
    rh2: IPv6Address | None = None
    spi: int | None = None


def parse(pkt: bytes, outgoing: bool) -> Frame:
    f = Frame(outgoing, IPv6Address(pkt[8:24]), IPv6Address(pkt[24:40]), [])
    nh, off = pkt[6], 40
    while True:
        f.chain.append(nh)
        if nh in (NH_DSTOPTS, NH_ROUTING, 0) and off + 2 <= len(pkt):
            nxt, hlen = pkt[off], (pkt[off + 1] + 1) * 8
            if nh == NH_ROUTING and pkt[off + 2] == 2:
                f.rh2 = IPv6Address(pkt[off + 8 : off + 24])
            if nh == NH_DSTOPTS:
                i = off + 2
                while i < off + hlen:
                    if pkt[i] == 0:
                        i += 1
                        continue
                    if pkt[i] == 0xC9:
                        f.hao = IPv6Address(pkt[i + 2 : i + 18])
                    i += 2 + pkt[i + 1]
            nh, off = nxt, off + hlen
            continue
        if nh == NH_ESP and off + 4 <= len(pkt):
            f.spi = int.from_bytes(pkt[off : off + 4], "big")
        return f


class Capture:
    """Every IPv6 frame on one interface of a testbed node, both directions."""

    def __init__(self, tb: Testbed, node: str, ifname: str) -> None:
        with tb.inside(node):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)

    def drain(self) -> list[Frame]:
        out = []
        while True:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return out
            if addr[1] == 0x86DD:
                out.append(parse(frame[14:], addr[2] == PACKET_OUTGOING))

    def close(self) -> None:
        self.sock.close()


def movement(bed: Any) -> dict[str, Any]:
    return bed.mn.rpc("movement", timeout=10.0)


def registered(bed: Any, link: str) -> dict[str, Any] | None:
    m = movement(bed)
    coa = m.get("care_of_address")
    if m["location"] != "away" or coa is None or IPv6Address(coa) not in PREFIX[link]:
        return None
    rows = bed.mn.rpc("status", timeout=10.0)["binding_update_list"]["rows"]
    home = [r for r in rows if r["peer"] == str(HA)]
    entry = bed.ha.bindings().get(str(HOA))
    ok = (
        home
        and home[0]["state"] == "registered"
        and home[0]["care_of_address"] == coa
        and entry is not None
        and entry["care_of_address"] == coa
        and m["kernel_in_sync"]
    )
    return {"coa": IPv6Address(coa), "movement": m} if ok else None


def with_migrate_events(
    tb: Testbed, nodes: tuple[str, ...], action: Callable[[], T]
) -> tuple[T, dict[str, list[Any]]]:
    """Run `action` and collect the XFRM MIGRATE events each node's kernel multicast
    meanwhile (what an IKE daemon hears; iproute2 shows none)."""
    from mip6ctl.kernel.xfrm import XfrmEventSocket
    from mip6ctl.kernel.xfrm_codec import XFRMNLGRP_MIGRATE, MigrateEvent

    socks = {}
    for node in nodes:
        with tb.inside(node):
            socks[node] = XfrmEventSocket(groups=(XFRMNLGRP_MIGRATE,))
    try:
        got = action()
        events = {
            n: [e for e in s.wait(10.0) if isinstance(e, MigrateEvent)] for n, s in socks.items()
        }
    finally:
        for s in socks.values():
            s.close()
    return got, events
