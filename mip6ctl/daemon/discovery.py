"""The home agent's DHAAD service: the discovery socket (kernel/dhaad.py) and the engine's
`HomeAgentDiscovery` (engine/discovery.py), glued to the event loop.

Requests are answered at once, on the event loop: building a reply is a list
walk, far cheaper than a Binding Update.  Everything dropped is counted by
reason (`counters`), and shown by `mip6ctl status` with the home agents lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.config.model import HaSection
from mip6ctl.engine.discovery import Discard, HomeAgentDiscovery, HomeLink
from mip6ctl.kernel.dhaad import DiscoverySocket
from mip6ctl.wire.errors import WireError
from mip6ctl.wire.icmp6 import (
    HomeAgentAddressDiscoveryRequest,
    RouterAdvertisement,
    decode_icmp6,
    encode_icmp6,
)

log = logging.getLogger("mip6ctl.discovery")

__all__ = ["DiscoveryService", "home_links"]


def home_links(ha: HaSection) -> list[HomeLink]:
    """Each home prefix with the home link it is on (the first link when unpaired)."""
    return [HomeLink(ifname, prefix) for ifname, prefix in ha.prefix_links()]


class DiscoveryService:
    """DHAAD for one home agent; see the module docstring."""

    def __init__(
        self, ha: HaSection, address: IPv6Address, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        links = home_links(ha)
        self.engine = HomeAgentDiscovery(links, address, ha.preference)
        self.counters: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sock = DiscoverySocket((link.ifname, link.anycast) for link in links)
        for (ifname, addr), why in self.sock.join_errors.items():
            log.warning("DHAAD: cannot join %s on %s: %s", addr, ifname, why)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def configure(self, ha: HaSection, address: IPv6Address) -> None:
        """A reload with the same home links and prefixes: a new preference or address
        (other links or prefixes re-open the service: `Daemon._follow_discovery`)."""
        self.engine.configure(home_links(ha), address, ha.preference)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        now = self.clock()
        for d in self.sock.receive():
            try:
                msg = decode_icmp6(d.data)
            except WireError as e:
                self._discard(f"malformed: {e}", d.src)
                continue
            if isinstance(msg, RouterAdvertisement):
                # §10.5.1: only RAs that stayed on the link (hop limit 255, link-local)
                if d.hop_limit == 255:
                    ifname = _ifname(d.ifindex)
                    if ifname is not None and self.engine.router_advertisement(
                        ifname, d.src, msg, now
                    ):
                        log.info("home agents list of %s changed (RA from %s)", ifname, d.src)
                continue
            if not isinstance(msg, HomeAgentAddressDiscoveryRequest):
                continue
            self.counters["requests"] += 1
            out = self.engine.request(msg, d.src, d.dst, now)
            if isinstance(out, Discard):
                self._discard(out.reason, d.src)
                continue
            try:
                self.sock.send(encode_icmp6(out.reply), out.destination, out.source)
            except OSError as e:
                self.counters["send_errors"] += 1
                log.warning("DHAAD Reply to %s: %s", out.destination, e)
                continue
            self.counters["replies"] += 1
            log.debug(
                "DHAAD Reply to %s: %s", out.destination,
                ", ".join(map(str, out.reply.home_agent_addresses)),
            )  # fmt: skip

    def _discard(self, reason: str, src: IPv6Address) -> None:
        self.counters["discarded"] += 1
        log.debug("DHAAD Request from %s discarded: %s", src, reason)

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "anycast_joined": [f"{a}%{i}" for i, a in self.sock.joined],
            "lists": self.engine.rows(self.clock()),
            "counters": dict(self.counters),
        }


def _ifname(index: int) -> str | None:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None
