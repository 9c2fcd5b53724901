"""Neighbour Discovery on the home link: DAD for home addresses, unsolicited NAs.

RFC 6275 §10.3.1: before accepting a first home registration the home agent
runs Duplicate Address Detection for the home address on the home link (a
Neighbor Solicitation from ``::`` to the solicited-node group, then silence
for RetransTimer means the address is free).  §10.4.1: once it intercepts
for the mobile node it multicasts a Neighbor Advertisement with the Override
flag so that neighbours update their caches to the home agent's link-layer
address.  UMIP blocked a thread per Binding Update for that second; here each
DAD is an asyncio task, so other Binding Updates keep flowing.

The sockets are mip6ctl.kernel.nd's (`DadSockets`, one pair per home link);
this module keeps the asyncio side.  A home link deleted and re-created
(same name, new ifindex) would leave sockets bound to the dead index that
never see the new link's packets: before each DAD and NA the interface's
index is checked and the sockets re-opened when it changed (also on
ENODEV/ENXIO from a send), and `link_changed(ifname)` / `reopen(ifname)`
let the daemon do it at once on an RTM_NEWLINK.  Re-opening happens in the
calling thread's network namespace, i.e. the daemon's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from ipaddress import IPv6Address

from mip6ctl.kernel.nd import ICMPV6_NA, ICMPV6_NS, DadSockets, hardware_address, solicited_node

log = logging.getLogger("mip6ctl.neighbour")

__all__ = ["RETRANS_TIMER", "NeighbourDiscovery", "solicited_node"]

ALL_NODES = IPv6Address("ff02::1")
#: RFC 4861 RetransTimer default: how long DAD listens for a defender.
RETRANS_TIMER = 1.0
#: How long an interface's link-layer address is reused for NAs: a socket and an
#: ioctl per registration cost ~5 % of a 100k-binding registration burst.
LLADDR_MAX_AGE = 1.0
#: send errors meaning "the interface this socket is bound to is gone"
_GONE = (errno.ENODEV, errno.ENXIO)


def _link_address(ifname: str) -> bytes | None:
    try:
        return hardware_address(ifname)
    except OSError:
        return None


class NeighbourDiscovery:
    """DAD and unsolicited NAs on the home links, one `DadSockets` pair per link."""

    def __init__(self, interfaces: list[str]) -> None:
        self.interfaces = list(interfaces)
        self._socks: dict[str, DadSockets] = {}
        self._waiters: dict[tuple[str, IPv6Address], asyncio.Future[bool]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lladdr: dict[str, tuple[float, bytes | None]] = {}
        for ifname in self.interfaces:
            try:
                self._socks[ifname] = DadSockets(ifname)
            except OSError as e:
                log.warning("neighbour discovery on %s not available yet: %s", ifname, e)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for ifname, s in self._socks.items():
            loop.add_reader(s.fileno(), self._readable, ifname, s)

    def close(self) -> None:
        for ifname in list(self._socks):
            self._drop(ifname)

    def _drop(self, ifname: str) -> None:
        s = self._socks.pop(ifname, None)
        if s is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(s.fileno())
        s.close()

    def reopen(self, ifname: str) -> bool:
        """Close and re-open `ifname`'s sockets on its current index; False if it is absent."""
        self._drop(ifname)
        try:
            s = DadSockets(ifname)
        except OSError as e:
            log.warning("neighbour discovery on %s: cannot re-open: %s", ifname, e)
            return False
        self._socks[ifname] = s
        if self._loop is not None:
            self._loop.add_reader(s.fileno(), self._readable, ifname, s)
        log.info("neighbour discovery on %s re-opened (ifindex %d)", ifname, s.ifindex)
        return True

    def link_changed(self, ifname: str) -> None:
        """A link event for `ifname`: re-open if its index changed (or it was missing)."""
        if ifname not in self.interfaces:
            return
        s = self._socks.get(ifname)
        if s is None or s.stale():
            self.reopen(ifname)

    def _current(self, ifname: str) -> DadSockets | None:
        s = self._socks.get(ifname)
        if s is None or s.stale():
            return self._socks[ifname] if self.reopen(ifname) else None
        return s

    def _readable(self, ifname: str, s: DadSockets) -> None:
        for kind, target, src in s.receive():
            fut = self._waiters.get((ifname, target))
            if fut is None or fut.done():
                continue
            # A defender (NA for the target), or another node doing DAD for it
            # (NS from ::): either way the address is not free.
            if kind == ICMPV6_NA or (kind == ICMPV6_NS and src == IPv6Address("::")):
                fut.set_result(False)

    def _send(self, ifname: str, what: str, send: str, *args: object) -> bool:
        """Call DadSockets.<send>(*args) on the current sockets, re-opening once if gone."""
        for attempt in (0, 1):
            s = self._current(ifname)
            if s is None:
                log.warning("%s on %s: interface not available", what, ifname)
                return False
            try:
                getattr(s, send)(*args)
                return True
            except OSError as e:
                if e.errno in _GONE and attempt == 0:
                    self.reopen(ifname)
                    continue
                log.warning("%s on %s failed: %s", what, ifname, e)
                return False
        return False

    async def duplicate_address_detection(
        self, address: IPv6Address, ifname: str | None, timeout: float = RETRANS_TIMER
    ) -> bool:
        """True when nobody defends `address` on the link within `timeout`."""
        if not self.interfaces:
            return True
        ifname = ifname if ifname in self.interfaces else self.interfaces[0]
        loop = asyncio.get_running_loop()
        key = (ifname, address)
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters[key] = fut
        try:
            self._send(ifname, f"DAD for {address}: NS", "send_dad_probe", address)
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                return True
        finally:
            self._waiters.pop(key, None)

    def advertise(self, address: IPv6Address, ifname: str) -> None:
        """Unsolicited NA (Override set, Router and Solicited clear) to all nodes."""
        if ifname not in self.interfaces:
            return
        now = time.monotonic()
        at, lladdr = self._lladdr.get(ifname, (-1e9, None))
        if now - at > LLADDR_MAX_AGE:
            lladdr = _link_address(ifname)
            self._lladdr[ifname] = (now, lladdr)
        self._send(ifname, f"unsolicited NA for {address}", "send_unsolicited_na", address, lladdr)
