"""The mobile node's side of the daemon: movement detection, kernel state, RS/NA (issue 7).

Theory of operation
-------------------
`MobileNodeController` runs in the daemon's event loop and namespace.  The
protocol decisions stay in the engine (`mip6ctl.engine.mobile_node`: binding
update list, retransmission, refresh, de-registration); this module decides
*where the node is* and keeps the kernel in the matching shape:

* inputs — Router Advertisements from the signalling transport
  (``icmp_types={134}``; the daemon hands every `ICMPv6Received` to
  `icmp()`), carrier and global-address changes from an rtnetlink event
  socket (RTNLGRP_LINK, RTNLGRP_IPV6_IFADDR; dumped once at start), and a
  timer; all go through the sans-I/O `MovementDetector` (movement.py);
* `SendRS` → a Router Solicitation from a raw ICMPv6 socket (hop limit 255);
  `ProbeRouter` → a Neighbor Solicitation for a router seen on that interface
  before (RFC 4436 DNA; its Neighbor Advertisement, ICMPv6 type 136 from the
  transport, identifies the link before radvd's rate-limited RA does);
* `Moved(ifname, coa, router)` → *make before break*: hand the reconcile
  loop the new `MobileNodeView`, wait until its ``("mobile",)`` key is in
  sync, and only then give the engine `CareOfAddressChanged` (its Binding
  Update goes out with the new tunnel, decapsulation, tunnel source and home
  address already in place; see ``render_mobile_node``: home address with
  IFA_F_HOMEADDRESS on the current interface, ``from HoA lookup T``, ``::/0
  encap seg6 segs HA`` in T, ``to CoA ipproto 41 lookup T+1`` + End.DT6 into
  the local table, the seg6 tunnel source, and a host route to the home
  agent through the router the move was detected from, so that the BU and
  the tunnelled packets leave through the new router at once instead of
  after the kernel's neighbour unreachability detection gives up on the old
  default router);
* `AtHome(ifname)` → apply the home state (the away objects go; the home
  address stays, as an ordinary address of the home link), give the
  engine `AtHome` (de-registration from the home address), and reclaim the
  home address with unsolicited Neighbor Advertisements to all-nodes
  (Override, Target Link-Layer Address), RFC 6275 §11.5.4, three times.
  Returning home (it was away), §11.5.5: until the de-registration's BA the
  home agent still defends the home address, so the home agent's
  link-layer address must not be solicited from it (Linux would: an NS
  takes the source of the packet that needs it).  Before the engine hears
  `AtHome` the controller sends an NS from ``::`` for the home agent
  (`NdSender.neighbor_solicitation_unspecified`), takes the Target
  Link-Layer Address of the NA the home agent multicasts back (it reaches
  `icmp()` like every NA), renders it as a static neighbour entry
  (``MobileNodeView.home_agent_lladdr``) and waits for the mobile key, so
  the kernel sends the de-registration without resolving.  No answer within
  `HA_RESOLVE_TIMEOUT`: a warning, and the engine is told anyway.  The
  entry goes with the engine's `AdvertiseHomeAddress` (`home_address_free`)
  or a move away.

This module writes nothing to the kernel: the daemon's one reconcile loop
renders the view (its ``("mobile",)`` key), writes it through the plan
executor, verifies it and repairs drift like any other key.

Not done here yet: source address selection preferring the home address for
unbound sockets (the kernel's rule 4 needs CONFIG_IPV6_MIP6; applications
bind to the home address), deprecating the addresses of links left, route
optimisation with correspondents, DHAAD and mobile prefix discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.engine import events as ev
from mip6ctl.engine.binding import compatible_link_local
from mip6ctl.engine.movement import (
    AtHome,
    Moved,
    MovementDetector,
    Output,
    PrefixAdvert,
    ProbeRouter,
    SendRS,
)
from mip6ctl.kernel.links import AddrEvent, LinkEvent, LinkLocalEvent, LinkWatch
from mip6ctl.kernel.nd import NdSender
from mip6ctl.state.render import Capabilities, MobileNodeView
from mip6ctl.wire.icmp6 import (
    HomeAgentAddressDiscoveryReply,
    NeighborAdvertisement,
    RouterAdvertisement,
    TargetLinkLayerAddress,
    decode_icmp6,
    encode_icmp6,
)

log = logging.getLogger("mip6ctl.mobile")

__all__ = ["MobileNodeController"]

#: unsolicited Neighbor Advertisements for the home address (RFC 4861 MAX_NEIGHBOR_ADVERTISEMENT)
NA_DELAYS = (0.0, 0.5, 1.0)
#: how long a move waits for the kernel state before telling the engine anyway
KERNEL_WAIT = 5.0
#: returning home: how long the NS from ``::`` for the home agent waits for its NA
#: (§11.5.5), and how many NSs are sent in that time (RFC 4861 MAX_MULTICAST_SOLICIT)
HA_RESOLVE_TIMEOUT = 1.0
HA_RESOLVE_SOLICITS = 3


# --------------------------------------------------------------------------- the controller


class MobileNodeController:
    """Movement detection + the mobile node's kernel state; see the module docstring.

    ``feed(event)`` hands `CareOfAddressChanged` / `AtHome` to the engine
    and executes its actions; ``loop`` is the daemon's `ReconcileLoop`.
    """

    def __init__(
        self,
        cfg: Any,
        *,
        loop: Any,
        caps: Capabilities,
        feed: Callable[[Any], None],
        clock: Callable[[], float] = time.monotonic,
        traffic_trigger: bool = False,
    ) -> None:
        mn = cfg.mn
        assert mn is not None, "needs [mn]"
        self.cfg = cfg
        self.mn = mn
        self.loop = loop
        self.caps = caps
        self.feed = feed
        self.clock = clock
        self.traffic_trigger = traffic_trigger
        """Render the route-optimisation trigger policy while away (kernel_traffic.py)."""
        #: the configured home agent, or the one DHAAD found (None: not yet; engine's
        #: `HomeAgentChosen` sets it, `home_agent_chosen`)
        self.home_agent: IPv6Address | None = (
            mn.home_agent if isinstance(mn.home_agent, IPv6Address) else None
        )
        self._dhaad: Any = None
        """The DHAAD socket (kernel/dhaad.py) when ``home_agent = "dhaad"``."""
        self.detector = MovementDetector(
            mn.home_address.network,
            [(i.name, i.preference) for i in mn.interfaces],
            home_address=mn.home_address.ip,
        )
        self.view: MobileNodeView | None = None
        self.correspondents: tuple[tuple[IPv6Address, IPv6Address], ...] = ()
        """(correspondent, care-of address) pairs the engine route-optimises."""
        self.router: IPv6Address | None = None
        self.location = "unknown"
        self.moves = 0
        self.advertised = 0
        """Rounds of unsolicited NAs for the home address (status, tests)."""
        self.last_move: dict[str, Any] | None = None
        self._watch: LinkWatch | None = None
        self._link_locals: dict[str, set[IPv6Address]] = {}
        """Usable link-local addresses per interface (the L bit, RFC 6275 §11.7.1)."""
        self._nd: NdSender | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0
        """Counts moves (either way): a returning-home task superseded by a newer move
        does not tell the engine."""
        self._ha_waiter: tuple[str, asyncio.Future[bytes]] | None = None
        self.home_agent_resolution: dict[str, Any] | None = None
        """The last §11.5.5 resolution of the home agent from ``::`` (status)."""

    # ----------------------------------------------------------------- daemon glue

    @classmethod
    async def attach(cls, daemon: Any) -> MobileNodeController:
        """Build, start and wire a controller into a running `Daemon` (the app.py hook)."""

        def feed(event: Any) -> None:
            actions = daemon.engine.handle(event, daemon.clock())
            if actions:
                daemon._spawn(daemon._execute(actions))
            daemon._arm_timer()

        ctl = cls(
            daemon.cfg,
            loop=daemon.loop,
            caps=daemon.caps,
            feed=feed,
            clock=daemon.clock,
            traffic_trigger=daemon.traffic_trigger(daemon.cfg),
        )
        ctl.start()
        if daemon.control is not None:
            daemon.control.register("movement", lambda _params: ctl._status_async())
        return ctl

    async def _status_async(self) -> dict[str, Any]:
        return self.status()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        aio = asyncio.get_running_loop()
        self._nd = NdSender()
        self._watch = LinkWatch()
        now = self.clock()
        outs: list[Output] = []
        for e in self._watch.dump():
            outs += self._netlink_event(e, now, initial=True)
        aio.add_reader(self._watch.fileno(), self._on_netlink)
        for i in self.mn.interfaces:  # find the link at once rather than at the next RA
            with contextlib.suppress(OSError):
                self._nd.router_solicitation(i.name)
        if self.mn.home_agent == "dhaad":
            from mip6ctl.kernel.dhaad import ICMPV6_DHAAD_REPLY, DiscoverySocket

            self._dhaad = DiscoverySocket(types=(ICMPV6_DHAAD_REPLY,))
            aio.add_reader(self._dhaad.fileno(), self._dhaad_readable)
        self._run(outs)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        for t in list(self._tasks):
            t.cancel()
        if self._watch is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._watch.fileno())
            self._watch.close()
            self._watch = None
        if self._nd is not None:
            self._nd.close()
            self._nd = None
        if self._dhaad is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._dhaad.fileno())
            self._dhaad.close()
            self._dhaad = None

    # ----------------------------------------------------------------- DHAAD (§11.4.1)

    def _dhaad_readable(self) -> None:
        from mip6ctl.wire.errors import WireError

        assert self._dhaad is not None
        for d in self._dhaad.receive():
            try:
                msg = decode_icmp6(d.data)
            except WireError as e:
                log.debug("DHAAD Reply from %s malformed: %s", d.src, e)
                continue
            if isinstance(msg, HomeAgentAddressDiscoveryReply):
                log.info(
                    "DHAAD Reply from %s: %s", d.src,
                    ", ".join(map(str, msg.home_agent_addresses)) or "no home agent",
                )  # fmt: skip
                self.feed(ev.DhaadReplyReceived(msg, d.src))

    def send_dhaad_request(self, a: Any) -> None:
        """The engine's `SendDhaadRequest`, from the care-of address."""
        if self._dhaad is None:
            return
        try:
            self._dhaad.send(encode_icmp6(a.request), a.dst, a.src)
        except OSError as e:
            log.warning("DHAAD Request to %s: %s", a.dst, e)
            return
        log.info("DHAAD Request %#06x from %s to %s", a.request.identifier, a.src, a.dst)

    def home_agent_chosen(self, home_agent: IPv6Address | None) -> None:
        """The engine's `HomeAgentChosen`: the reverse tunnel follows (make before the BU:
        the engine's BU goes out as the kernel state follows, like after a move)."""
        if home_agent == self.home_agent:
            return
        log.info("home agent: %s", home_agent or "discovering")
        self.home_agent = home_agent
        if self.view is not None:
            self.view = replace(self.view, home_agent=home_agent)
            self._apply()

    # ----------------------------------------------------------------- inputs

    def icmp(self, event: Any) -> None:
        """An `ICMPv6Received` from the transport (only RAs are used so far)."""
        msg = event.message
        if event.ifname is None or event.hop_limit != 255:
            return  # RFC 4861 §6.1.2, §7.1.2
        if type(msg) is NeighborAdvertisement:
            self._home_agent_advertised(event.ifname, msg)
            self._run(self.detector.neighbor_advertisement(event.ifname, msg.target, self.clock()))
            return
        if type(msg) is not RouterAdvertisement or not event.src.is_link_local:
            return
        interval = msg.advertisement_interval
        outs = self.detector.router_advertisement(
            event.ifname,
            event.src,
            msg.router_lifetime,
            [PrefixAdvert.from_option(p) for p in msg.prefixes],
            self.clock(),
            interval=interval.interval_ms / 1000 if interval is not None else None,
        )
        self._run(outs)

    def _on_netlink(self) -> None:
        assert self._watch is not None
        now = self.clock()
        outs: list[Output] = []
        for e in self._watch.read():
            outs += self._netlink_event(e, now)
        self._run(outs)

    def _netlink_event(
        self, e: LinkEvent | AddrEvent | LinkLocalEvent, now: float, *, initial: bool = False
    ) -> list[Output]:
        if isinstance(e, LinkLocalEvent):
            have = self._link_locals.setdefault(e.ifname, set())
            (have.add if e.present else have.discard)(e.address)
            return []
        if isinstance(e, LinkEvent):
            out = self.detector.link(e.ifname, e.up, now)
            return [o for o in out if not isinstance(o, SendRS | ProbeRouter)] if initial else out
        return self.detector.address(e.ifname, e.address, e.present, now)

    def _on_timer(self) -> None:
        self._timer = None
        self._run(self.detector.handle_timer(self.clock()))

    # ----------------------------------------------------------------- outputs

    def _run(self, outs: list[Output]) -> None:
        for o in outs:
            try:
                if isinstance(o, SendRS):
                    self._send_rs(o.ifname)
                elif isinstance(o, ProbeRouter):
                    if self._nd is not None:
                        self._nd.neighbor_solicitation(o.ifname, o.router)
                elif isinstance(o, Moved):
                    self._moved(o)
                elif isinstance(o, AtHome):
                    self._at_home(o)
            except Exception:  # a bug or a kernel refusal must not stop movement detection
                log.exception("movement output %r failed", o)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.detector.next_timer()
        if due is not None:
            delay = max(0.0, due - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _send_rs(self, ifname: str) -> None:
        if self._nd is None:
            return
        try:
            self._nd.router_solicitation(ifname)
        except OSError as e:
            log.debug("router solicitation on %s: %s", ifname, e)

    def _moved(self, o: Moved) -> None:
        t0 = self.clock()
        self._generation += 1
        self._cancel_ha_waiter()
        # correspondents registered with another care-of address go back to the tunnel
        self.correspondents = tuple(c for c in self.correspondents if c[1] == o.care_of_address)
        view = MobileNodeView(
            self.mn.home_address,
            self.home_agent,
            o.care_of_address,
            o.ifname,
            correspondents=self.correspondents,
            router=o.router,
            traffic_trigger=self.traffic_trigger,
        )
        self.view, self.router, self.location = view, o.router, "away"
        self._apply()
        self.moves += 1
        self.last_move = {
            "at": t0,
            "to": "away",
            "ifname": o.ifname,
            "care_of_address": str(o.care_of_address),
            "router": str(o.router),
            "kernel_ms": round((self.clock() - t0) * 1000, 3),
        }
        log.info("moved: care-of address %s on %s via %s", o.care_of_address, o.ifname, o.router)
        link_local = self.link_local(o.ifname)
        self._after_kernel(ev.CareOfAddressChanged(o.care_of_address, o.ifname, link_local), t0)

    def link_local(self, ifname: str) -> IPv6Address | None:
        """The link-local address of ``ifname`` the engine tests for the L bit: the one
        with the home address's interface identifier if there is one."""
        have = self._link_locals.get(ifname)
        if not have:
            return None
        same = compatible_link_local(self.mn.home_address.ip)
        return same if same in have else min(have)

    def _at_home(self, o: AtHome) -> None:
        t0 = self.clock()
        was_away = self.location == "away"
        self._generation += 1
        self._cancel_ha_waiter()
        self.correspondents = ()
        self.view = MobileNodeView(self.mn.home_address, self.home_agent, None, o.ifname)
        self.router, self.location = o.router, "home"
        self._apply()
        self.moves += 1
        self.last_move = {
            "at": t0,
            "to": "home",
            "ifname": o.ifname,
            "router": None if o.router is None else str(o.router),
            "kernel_ms": round((self.clock() - t0) * 1000, 3),
        }
        log.info("at home on %s%s", o.ifname, " (returning)" if was_away else "")
        if was_away and self.mn.return_home and self._nd is not None:
            self._spawn(self._return_home(ev.AtHome(o.ifname), o.ifname, t0, self._generation))
        else:
            self._after_kernel(ev.AtHome(o.ifname), t0)

    def _after_kernel(self, event: Any, t0: float) -> None:
        """Make before break: the engine hears of the move once the kernel matches it."""
        self._spawn(self._feed_when_ready(event, t0))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- returning home (§11.5.5)

    async def _return_home(self, event: Any, ifname: str, t0: float, generation: int) -> None:
        """Resolve the home agent from ``::``, hand the kernel the answer as a static
        neighbour entry, then tell the engine (its de-registration leaves from the home
        address and must find the home agent's link-layer address already known)."""
        started = self.clock()
        lladdr = await self._resolve_home_agent(ifname) if self.home_agent is not None else None
        if generation != self._generation:
            return  # moved again meanwhile: that move tells the engine
        result = {
            "at": started,
            "ifname": ifname,
            "home_agent": str(self.home_agent),
            "lladdr": lladdr,
            "resolved": lladdr is not None,
            "ms": round((self.clock() - started) * 1000, 3),
        }
        self.home_agent_resolution = result
        if lladdr is None:
            log.warning(
                "returning home: no Neighbor Advertisement for the home agent %s on %s within"
                " %g s of a solicitation from ::; the kernel resolves it (from the home address)",
                self.home_agent,
                ifname,
                HA_RESOLVE_TIMEOUT,
            )
        elif self.view is not None and self.view.ifname == ifname:
            log.info("returning home: home agent %s at %s on %s", self.home_agent, lladdr, ifname)
            self.view = replace(self.view, home_agent_lladdr=lladdr)
            self._apply()
        await self._feed_when_ready(event, t0)

    async def _resolve_home_agent(self, ifname: str) -> str | None:
        """NSs from ``::`` for the home agent; its NA's Target Link-Layer Address, or None."""
        if self._nd is None or self.home_agent is None:
            return None
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._ha_waiter = (ifname, fut)
        try:
            for _ in range(HA_RESOLVE_SOLICITS):
                try:
                    self._nd.neighbor_solicitation_unspecified(ifname, self.home_agent)
                except OSError as e:
                    log.warning("NS from :: for the home agent on %s: %s", ifname, e)
                    return None
                with contextlib.suppress(TimeoutError):
                    raw = await asyncio.wait_for(
                        asyncio.shield(fut), HA_RESOLVE_TIMEOUT / HA_RESOLVE_SOLICITS
                    )
                    return ":".join(f"{b:02x}" for b in raw)
                if fut.cancelled():
                    return None
            return None
        except asyncio.CancelledError:
            if fut.cancelled():
                return None  # a newer move ended the wait (the task itself goes on)
            raise
        finally:
            if self._ha_waiter is not None and self._ha_waiter[1] is fut:
                self._ha_waiter = None

    def _home_agent_advertised(self, ifname: str, na: NeighborAdvertisement) -> None:
        """An NA: the answer the returning-home resolution waits for, if it is one."""
        w = self._ha_waiter
        if w is None or w[0] != ifname or w[1].done() or na.target != self.home_agent:
            return
        for opt in na.options:
            if type(opt) is TargetLinkLayerAddress and opt.address:
                w[1].set_result(bytes(opt.address))
                return

    def _cancel_ha_waiter(self) -> None:
        if self._ha_waiter is not None:
            self._ha_waiter[1].cancel()
            self._ha_waiter = None

    async def _feed_when_ready(self, event: Any, t0: float) -> None:
        from mip6ctl.daemon.reconcile_loop import MOBILE

        result = await self.loop.wait_reconciled(MOBILE, KERNEL_WAIT)
        if not result:
            log.warning("mobile node kernel state not in place yet: %s", result.message)
        if self.last_move is not None and self.last_move.get("at") == t0:
            self.last_move["kernel_ms"] = round((self.clock() - t0) * 1000, 3)
        ike = getattr(self, "ike", None)  # daemon/ike.py: charon from the new care-of address
        if ike is not None:
            ike.moved(event, bool(result))
        self.feed(event)

    def home_address_free(self) -> None:
        """The engine's `AdvertiseHomeAddress`: the home agent no longer defends the
        home address (§11.5.5) -- claim it with unsolicited Neighbor Advertisements.
        The static entry for the home agent goes: normal resolution is fine now."""
        if self.view is not None and self.view.home_agent_lladdr is not None:
            self.view = replace(self.view, home_agent_lladdr=None)
            self._apply()
        if self.location != "home" or self.view is None or self.view.ifname is None:
            return
        ifname = self.view.ifname
        self.advertised += 1
        aio = asyncio.get_running_loop()
        for delay in NA_DELAYS:
            aio.call_later(delay, self._advertise_home_address, ifname)

    def route_optimisation(
        self, correspondents: tuple[tuple[IPv6Address, IPv6Address], ...]
    ) -> None:
        """The engine's `RouteOptimisationChanged`: apply before its Binding Update goes.

        Only pairs for the current care-of address are rendered (a pair for a
        care-of address just left would be a half state); the engine drops
        those itself on the move.
        """
        self.correspondents = correspondents
        if self.view is None or self.view.care_of_address is None:
            return
        coa = self.view.care_of_address
        mine = tuple(c for c in correspondents if c[1] == coa)
        if mine == self.view.correspondents:
            return
        self.view = replace(self.view, correspondents=mine)
        self._apply()  # the daemon waits for the mobile key before the BU (app.py)
        log.info(
            "route optimisation: %s",
            ", ".join(str(cn) for cn, _ in mine) or "none (all traffic through the home agent)",
        )

    def _advertise_home_address(self, ifname: str) -> None:
        if self._nd is None or self.location != "home":
            return
        try:
            self._nd.neighbor_advertisement(ifname, self.mn.home_address.ip)
        except OSError as e:
            log.warning("unsolicited NA for %s on %s: %s", self.mn.home_address.ip, ifname, e)

    # ----------------------------------------------------------------- kernel state

    def _apply(self) -> None:
        """The reconcile loop's mobile key follows the view (level-triggered there)."""
        self.loop.set_mobile_node(self.view)

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        cur = self.detector.current
        return {
            "location": self.location,
            "interface": None if cur is None else cur[1],
            "care_of_address": None if cur is None or cur[2] is None else str(cur[2]),
            "router": None if self.router is None else str(self.router),
            "home_agent": None if self.home_agent is None else str(self.home_agent),
            "home_agent_by": "configuration" if isinstance(self.mn.home_agent, IPv6Address)
            else "dhaad",
            "moves": self.moves,
            "home_address_advertised": self.advertised,
            "traffic_trigger": self.traffic_trigger,
            "last_move": self.last_move,
            "home_agent_resolved_with_unspecified_source": (
                None
                if self.home_agent_resolution is None
                else self.home_agent_resolution["resolved"]
            ),
            "home_agent_resolution": self.home_agent_resolution,
            "home_agent_lladdr": None if self.view is None else self.view.home_agent_lladdr,
            "waiting_for_address": self.detector.pending(),
            "kernel_in_sync": self._kernel_in_sync(),
            "kernel_message": self._kernel_message(),
            "interfaces": {
                name: {
                    "up": lk.up,
                    "preference": lk.preference,
                    "router": None if lk.router is None else str(lk.router),
                    "prefixes": [str(p) for p in lk.prefixes],
                    "home": lk.home,
                }
                for name, lk in self.detector.links.items()
            },
        }

    def _kernel_result(self) -> Any:
        from mip6ctl.daemon.reconcile_loop import MOBILE

        return self.loop.key_result(MOBILE) if self.view is not None else None

    def _kernel_in_sync(self) -> bool | None:
        r = self._kernel_result()
        return None if r is None else bool(r)

    def _kernel_message(self) -> str:
        r = self._kernel_result()
        return "" if r is None or r else f"{r.reason}: {r.message}"
