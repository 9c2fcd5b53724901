"""What the kernel's data path tells the engine: traffic that wants route optimisation,
packets that name a binding nobody has, and bindings in use.

Only on a kernel with Mobile IPv6 and the kernel signalling transport (the data
path is XFRM route2/hao there); nothing here writes kernel state.

* **XFRM ACQUIRE** (mobile node): the route-optimisation trigger policy
  (`state.render.route_optimisation_trigger`) found no hao state for a packet
  from the home address -> `TrafficToCorrespondent(destination)`; the engine
  decides whether return routability starts (`[[mn.correspondents]]`).
* **XFRM REPORT** (correspondent, home agent): a packet with a Home Address option
  matched no binding (the kernel's ``mip6_destopt_reject``, rate limited there) ->
  `HomeAddressOptionReceived`, which the engine answers with Binding Error 1 to
  the care-of address (§9.3.1). The kernel already dropped the packet.
* **Usage poll** (every ``interval`` seconds): one dump of the owned route2/hao
  states, their packet counters compared with the last dump. A correspondent
  reports the home addresses whose binding carried packets
  (`Engine.binding_used`: a Binding Refresh Request before it expires, §9.5.5),
  a mobile node the correspondents it still talks to (`Engine.correspondent_used`:
  a traffic-triggered registration is refreshed only then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.engine.events import HomeAddressOptionReceived, TrafficToCorrespondent

log = logging.getLogger("mip6ctl.daemon.traffic")

#: seconds between two usage polls: well inside the shortest BRR lead (2 s of a
#: short binding, 42 s of a 420 s one) is not needed -- use only has to be seen once
#: per binding lifetime, before the BRR is due
DEFAULT_INTERVAL = 10.0
IPPROTO_DSTOPTS = 60
IPPROTO_ROUTING = 43

Feed = Callable[[list[Any]], None]


def notifications(events: list[Any], home_address: IPv6Address | None) -> list[Any]:
    """Engine inputs for decoded XFRM ACQUIRE / REPORT messages (sans-I/O, tested alone).

    ``home_address``: a mobile node's (only its own flows trigger route
    optimisation); None on a correspondent or home agent, which use the reports.
    """
    from mip6ctl.kernel.xfrm_codec import AcquireEvent, ReportEvent
    from mip6ctl.state.xfrm import XfrmProto

    out: list[Any] = []
    for ev in events:
        if type(ev) is AcquireEvent:
            if home_address is None or ev.proto != XfrmProto.HAO:
                continue
            if ev.src == home_address and isinstance(ev.dst, IPv6Address):
                out.append(TrafficToCorrespondent(ev.dst))
        elif type(ev) is ReportEvent:
            if ev.proto != IPPROTO_DSTOPTS or ev.coaddr is None:
                continue
            sel = ev.selector
            hoa, dst = sel.src.network_address, sel.dst.network_address
            if isinstance(hoa, IPv6Address) and isinstance(dst, IPv6Address):
                out.append(HomeAddressOptionReceived(IPv6Address(ev.coaddr), dst, hoa))
    return out


class UsageTracker:
    """Packet counters of the route2/hao states between two polls -> addresses in use.

    A mobile node (``home_address`` set) reports the correspondent of each used
    state, a correspondent the home address of its binding.
    """

    def __init__(self, home_address: IPv6Address | None = None) -> None:
        self.home_address = home_address
        self._last: dict[tuple[bytes, bytes, int], int] = {}
        self.polls = 0

    def update(self, usage: dict[tuple[bytes, bytes, int], int]) -> set[IPv6Address]:
        last = self._last
        # the address that names the binding: a correspondent's route2 (to the HoA) and
        # hao (from it) both name the home address, a mobile node's the correspondent;
        # raw octets first, one IPv6Address per distinct address
        pick_dst = IPPROTO_DSTOPTS if self.home_address is not None else IPPROTO_ROUTING
        raw: set[bytes] = set()
        for key, packets in usage.items():
            if packets and packets != last.get(key):
                dst, src, proto = key
                raw.add(dst if proto == pick_dst else src)
        self._last = usage
        self.polls += 1
        return {IPv6Address(a) for a in raw}


class KernelTraffic:
    """The ACQUIRE/REPORT subscriber and the usage poll of one daemon."""

    def __init__(
        self,
        engine: Any,
        feed: Feed,
        clock: Callable[[], float],
        *,
        home_address: IPv6Address | None,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.engine = engine
        self.feed = feed
        self.clock = clock
        self.home_address = home_address
        self.interval = interval
        self.usage = UsageTracker(home_address)
        self.counters = {"acquires": 0, "reports": 0, "used": 0}
        self._sock: Any = None
        self._poll: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        from mip6ctl.kernel import xfrm
        from mip6ctl.kernel import xfrm_codec as xc

        groups = (xc.XFRMNLGRP_ACQUIRE,) if self.home_address is not None else ()
        groups += (xc.XFRMNLGRP_REPORT,)
        self._sock = xfrm.XfrmEventSocket(groups=groups)
        self._poll = xfrm.XfrmSocket(timeout=30)
        aio = asyncio.get_running_loop()
        aio.add_reader(self._sock.fileno(), self._on_events)
        if self.interval > 0:
            self._task = aio.create_task(self._poll_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
        if self._poll is not None:
            self._poll.close()

    def _on_events(self) -> None:
        try:
            events = self._sock.read()
        except OSError as e:
            log.warning("XFRM notifications: %s", e)
            return
        inputs = notifications(events, self.home_address)
        for i in inputs:
            key = "acquires" if type(i) is TrafficToCorrespondent else "reports"
            self.counters[key] += 1
            log.debug("kernel: %s", i)
        if inputs:
            self.feed(inputs)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                usage = await asyncio.to_thread(self._poll.ro_usage)
            except Exception as e:  # a failed read skips one round, never the daemon
                log.warning("reading XFRM state counters failed: %s", e)
                continue
            self.note_usage(usage)

    def note_usage(self, usage: dict[tuple[bytes, bytes, int], int]) -> None:
        used = self.usage.update(usage)
        if not used:
            return
        now = self.clock()
        self.counters["used"] += len(used)
        if self.home_address is not None:
            for peer in used:
                self.engine.correspondent_used(peer, now)
        else:
            for addr in used:
                self.engine.binding_used(addr, now)
        self.feed([])  # the BRR timers may have moved: re-arm

    def status(self) -> dict[str, Any]:
        return {**self.counters, "polls": self.usage.polls, "interval_s": self.interval}
