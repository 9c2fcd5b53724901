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
* `Moved(ifname, coa, router)` → *make before break*: set the seg6 tunnel
  source to the new care-of address, apply the away state, and only then
  give the engine `CareOfAddressChanged` (its Binding Update goes out with
  the new tunnel, decapsulation and home address already in place):
  ``render_mobile_node`` (home address with IFA_F_HOMEADDRESS on the current
  interface, ``from HoA lookup T``, ``::/0 encap seg6 segs HA`` in T,
  ``to CoA ipproto 41 lookup T+1`` + End.DT6 into the local table) plus a
  host route to the home agent through the router the move was detected
  from, so that the BU and the tunnelled packets leave through the new
  router at once instead of after the kernel's neighbour unreachability
  detection gives up on the old default router;
* `AtHome(ifname)` → apply the home state (the away objects go; the home
  address stays, as an ordinary address of the home link), give the
  engine `AtHome` (de-registration from the home address), and reclaim the
  home address with unsolicited Neighbor Advertisements to all-nodes
  (Override, Target Link-Layer Address), RFC 6275 §11.5.4, three times.

Kernel state goes through the synchronous `Reconciler` with ``scope=`` the
keys this controller rendered now and before (plus the kernel's local rule
takeover), so creates/updates run before deletes and one apply replaces the
whole away state atomically per object.  The daemon's reconcile loop knows
only home-agent bindings: its static key would delete owned objects it did
not render, so on a mobile node the controller stops it after its initial
static pass and owns the kernel state from then on, re-applying the current
state every ``daemon.reconcile_interval`` (level-triggered drift repair).

Why the tunnel source is set per namespace: with a single segment the seg6
encap takes its outer source from ``seg6 tunsrc`` or, when that is unset,
from source address selection towards the home agent, which on a kernel
without CONFIG_IPV6_MIP6 picks the home address (longest match) — the HA's
§10.4.5 reverse-tunnel check wants (care-of address, home address).  The
controller sets it with the SEG6 generic netlink family (SEG6_CMD_SET_TUNSRC)
on every move and clears it at home.

Not done here yet: source address selection preferring the home address for
unbound sockets (the kernel's rule 4 needs CONFIG_IPV6_MIP6; applications
bind to the home address), deprecating the addresses of links left, route
optimisation with correspondents, DHAAD and mobile prefix discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.engine import events as ev
from mip6ctl.engine.movement import (
    AtHome,
    Moved,
    MovementDetector,
    Output,
    PrefixAdvert,
    ProbeRouter,
    SendRS,
)
from mip6ctl.kernel import netlink as nl
from mip6ctl.state.objects import RT_TABLE_MAIN, Route
from mip6ctl.state.plan import Origin
from mip6ctl.state.render import Capabilities, Desired, MobileNodeView, render_mobile_node
from mip6ctl.wire.icmp6 import (
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterAdvertisement,
    RouterSolicitation,
    SourceLinkLayerAddress,
    TargetLinkLayerAddress,
    encode_icmp6,
)

log = logging.getLogger("mip6ctl.mobile")

__all__ = ["MobileNodeController", "set_seg6_tunsrc"]

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
IFLA_IFNAME = 3
SIOCGIFHWADDR = 0x8927
ICMP6_FILTER = 1
ALL_ROUTERS = "ff02::2"
ALL_NODES = "ff02::1"
#: unsolicited Neighbor Advertisements for the home address (RFC 4861 MAX_NEIGHBOR_ADVERTISEMENT)
NA_DELAYS = (0.0, 0.5, 1.0)


# --------------------------------------------------------------------------- seg6 tunnel source

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
SEG6_CMD_SET_TUNSRC = 3
SEG6_ATTR_DST = 1
_GENLHDR = struct.Struct("=BBH")


def _genl_request(sock: socket.socket, kind: int, seq: int, payload: bytes) -> bytes:
    sock.send(nl.message(kind, nl.NLM_F_REQUEST | nl.NLM_F_ACK, seq, payload))
    data = b""
    while True:
        buf = sock.recv(65536)
        for mkind, flags, mseq, a, b in nl.iter_messages(buf):
            if mseq != seq:
                continue
            if mkind == nl.NLMSG_ERROR:
                code, _s, text = nl.parse_error(buf, a, b, flags)
                if code:
                    raise OSError(code, text)
                return data
            data = bytes(buf[a:b])


def set_seg6_tunsrc(address: IPv6Address | None) -> None:
    """``ip sr tunsrc set ADDRESS`` (None: ``::``, i.e. source address selection), netlink only."""
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_GENERIC
    ) as s:
        s.bind((0, 0))
        s.settimeout(2.0)
        hdr = _GENLHDR.pack(CTRL_CMD_GETFAMILY, 1, 0)
        reply = _genl_request(s, GENL_ID_CTRL, 1, hdr + nl.attr_str(CTRL_ATTR_FAMILY_NAME, "SEG6"))
        at = nl.attrs(reply, _GENLHDR.size, len(reply))
        if CTRL_ATTR_FAMILY_ID not in at:
            raise OSError(2, "no SEG6 generic netlink family (kernel without IPv6 segment routing)")
        a, _b = at[CTRL_ATTR_FAMILY_ID]
        family = nl.U16.unpack_from(reply, a)[0]
        packed = (address or IPv6Address("::")).packed
        body = _GENLHDR.pack(SEG6_CMD_SET_TUNSRC, 1, 0) + nl.attr(SEG6_ATTR_DST, packed)
        _genl_request(s, family, 2, body)


# --------------------------------------------------------------------------- netlink events


@dataclass(frozen=True, slots=True)
class _LinkEvent:
    ifname: str
    up: bool


@dataclass(frozen=True, slots=True)
class _AddrEvent:
    ifname: str
    address: IPv6Address
    present: bool


class LinkWatch:
    """Carrier and global IPv6 address changes of this namespace (rtnetlink, no pyroute2)."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.events = nl.open_socket(
            groups=(nl.RTNLGRP_LINK, nl.RTNLGRP_IPV6_IFADDR), rcvbuf=4 << 20
        )
        self.events.setblocking(False)
        self._seq = 0

    def fileno(self) -> int:
        return self.events.fileno()

    def dump(self, attempts: int = 10) -> list[_LinkEvent | _AddrEvent]:
        """Current links and addresses (the event socket is subscribed already).

        A dump the kernel marks interrupted (NLM_F_DUMP_INTR: addresses changed
        under it, e.g. SLAAC at start-up) is started over."""
        for attempt in range(attempts):
            try:
                return self._dump_once()
            except OSError as e:
                if e.errno != errno.EINTR or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _dump_once(self) -> list[_LinkEvent | _AddrEvent]:
        out: list[_LinkEvent | _AddrEvent] = []
        with contextlib.closing(nl.open_socket(rcvbuf=1 << 20)) as s:
            for kind, payload in (
                (nl.RTM_GETLINK, nl.IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)),
                (nl.RTM_GETADDR, nl.IFADDRMSG.pack(socket.AF_INET6, 0, 0, 0, 0)),
            ):
                self._seq += 1
                req = nl.message(kind, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, self._seq, payload)
                for buf in nl.dump(s, req, self._seq):
                    out += self.parse(buf)
        return out

    def read(self) -> list[_LinkEvent | _AddrEvent]:
        out: list[_LinkEvent | _AddrEvent] = []
        while True:
            try:
                buf = self.events.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:  # ENOBUFS: events lost, start from a dump
                log.warning("netlink events lost (%s): re-reading links and addresses", e)
                out += self.dump()
                continue
            out += self.parse(buf)

    def parse(self, buf: bytes) -> list[_LinkEvent | _AddrEvent]:
        out: list[_LinkEvent | _AddrEvent] = []
        for kind, _flags, _seq, a, b in nl.iter_messages(buf):
            if kind in (nl.RTM_NEWLINK, nl.RTM_DELLINK):
                _fam, _type, index, flags, _change = nl.IFINFOMSG.unpack_from(buf, a)
                at = nl.attrs(buf, a + nl.IFINFOMSG.size, b)
                if IFLA_IFNAME in at:
                    x, y = at[IFLA_IFNAME]
                    self.names[index] = bytes(buf[x:y]).rstrip(b"\0").decode()
                name = self.names.get(index)
                if name is None:
                    continue
                up = kind == nl.RTM_NEWLINK and bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
                out.append(_LinkEvent(name, up))
                if kind == nl.RTM_DELLINK:
                    self.names.pop(index, None)
            elif kind in (nl.RTM_NEWADDR, nl.RTM_DELADDR):
                fam, _plen, flags8, scope, index = nl.IFADDRMSG.unpack_from(buf, a)
                if fam != socket.AF_INET6 or scope != 0 or index not in self.names:
                    continue
                at = nl.attrs(buf, a + nl.IFADDRMSG.size, b)
                key = IFA_LOCAL if IFA_LOCAL in at else IFA_ADDRESS
                if key not in at:
                    continue
                x, y = at[key]
                addr = IPv6Address(bytes(buf[x:y]))
                flags = flags8
                if IFA_FLAGS in at:
                    flags = nl.U32.unpack_from(buf, at[IFA_FLAGS][0])[0]
                usable = not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
                present = kind == nl.RTM_NEWADDR and usable
                out.append(_AddrEvent(self.names[index], addr, present))
        return out

    def close(self) -> None:
        self.events.close()


# --------------------------------------------------------------------------- ND sending


class NdSender:
    """Router Solicitations and unsolicited Neighbor Advertisements (raw ICMPv6, hop limit 255)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 58)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        # send only: block every ICMPv6 type on receive
        self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)
        self.sock.setblocking(False)

    def router_solicitation(self, ifname: str) -> None:
        self.sock.sendto(
            RouterSolicitation().encode(), (ALL_ROUTERS, 0, 0, socket.if_nametoindex(ifname))
        )

    def neighbor_solicitation(self, ifname: str, target: IPv6Address) -> None:
        """NS for ``target`` to its solicited-node group, with our link-layer address."""
        index = socket.if_nametoindex(ifname)
        ns = NeighborSolicitation(target, (SourceLinkLayerAddress(hardware_address(ifname)),))
        group = IPv6Address(int(IPv6Address("ff02::1:ff00:0")) | (int(target) & 0xFFFFFF))
        self.sock.sendto(encode_icmp6(ns), (str(group), 0, 0, index))

    def neighbor_advertisement(self, ifname: str, target: IPv6Address) -> None:
        index = socket.if_nametoindex(ifname)
        na = NeighborAdvertisement(
            target, NeighborAdvertisement.O, (TargetLinkLayerAddress(hardware_address(ifname)),)
        )
        pktinfo = target.packed + struct.pack("=I", index)
        self.sock.sendmsg(
            [encode_icmp6(na)],
            [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)],
            0,
            (ALL_NODES, 0, 0, index),
        )

    def close(self) -> None:
        self.sock.close()


def hardware_address(ifname: str) -> bytes:
    """The interface's MAC (SIOCGIFHWADDR in this namespace; /sys may show another one)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    return ifreq[18:24]


# --------------------------------------------------------------------------- the controller


class MobileNodeController:
    """Movement detection + the mobile node's kernel state; see the module docstring.

    ``feed(event, now)`` hands `CareOfAddressChanged` / `AtHome` to the
    engine and executes its actions; ``reconciler`` is a sync `Reconciler`
    in this namespace.
    """

    def __init__(
        self,
        cfg: Any,
        *,
        reconciler: Any,
        caps: Capabilities,
        feed: Callable[[Any], None],
        clock: Callable[[], float] = time.monotonic,
        set_tunsrc: Callable[[IPv6Address | None], None] = set_seg6_tunsrc,
    ) -> None:
        mn = cfg.mn
        assert mn is not None and isinstance(mn.home_agent, IPv6Address), "needs [mn] home_agent"
        self.cfg = cfg
        self.mn = mn
        self.reconciler = reconciler
        self.caps = caps
        self.feed = feed
        self.clock = clock
        self.set_tunsrc = set_tunsrc
        self.home_agent: IPv6Address = mn.home_agent
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
        self.last_move: dict[str, Any] | None = None
        self.kernel_ok: bool | None = None
        self.kernel_message = ""
        self._keys: set[tuple] = set()
        self._watch: LinkWatch | None = None
        self._nd: NdSender | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._resync: asyncio.TimerHandle | None = None
        self._tunsrc: IPv6Address | bool | None = False  # False: never set
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = 0.0

    # ----------------------------------------------------------------- daemon glue

    @classmethod
    async def attach(cls, daemon: Any) -> MobileNodeController:
        """Build, start and wire a controller into a running `Daemon` (the app.py hook)."""
        from mip6ctl.kernel.reconciler import Reconciler

        loop = daemon.loop
        await loop.stop()  # see the module docstring: the MN owns its kernel state
        reconciler = Reconciler(observer=loop.observer, writer=loop.writer, xfrm=loop.xfrm)

        def feed(event: Any) -> None:
            actions = daemon.engine.handle(event, daemon.clock())
            if actions:
                daemon._spawn(daemon._execute(actions))
            daemon._arm_timer()

        ctl = cls(
            daemon.cfg, reconciler=reconciler, caps=daemon.caps, feed=feed, clock=daemon.clock
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
        self._run(outs)
        self._schedule_resync()

    async def stop(self) -> None:
        for h in (self._timer, self._resync, self._retry):
            if h is not None:
                h.cancel()
        self._timer = self._resync = self._retry = None
        if self._watch is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._watch.fileno())
            self._watch.close()
            self._watch = None
        if self._nd is not None:
            self._nd.close()
            self._nd = None

    # ----------------------------------------------------------------- inputs

    def icmp(self, event: Any) -> None:
        """An `ICMPv6Received` from the transport (only RAs are used so far)."""
        msg = event.message
        if event.ifname is None or event.hop_limit != 255:
            return  # RFC 4861 §6.1.2, §7.1.2
        if type(msg) is NeighborAdvertisement:
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
        self, e: _LinkEvent | _AddrEvent, now: float, *, initial: bool = False
    ) -> list[Output]:
        if isinstance(e, _LinkEvent):
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
        self._tunnel_source(o.care_of_address)
        # correspondents registered with another care-of address go back to the tunnel
        self.correspondents = tuple(c for c in self.correspondents if c[1] == o.care_of_address)
        view = MobileNodeView(
            self.mn.home_address, self.home_agent, o.care_of_address, o.ifname,
            correspondents=self.correspondents,
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
        self.feed(ev.CareOfAddressChanged(o.care_of_address, o.ifname))

    def _at_home(self, o: AtHome) -> None:
        t0 = self.clock()
        was_away = self.location == "away"
        self.correspondents = ()
        self.view = MobileNodeView(self.mn.home_address, self.home_agent, None, o.ifname)
        self.router, self.location = o.router, "home"
        self._apply()
        self._tunnel_source(None)
        self.moves += 1
        self.last_move = {
            "at": t0,
            "to": "home",
            "ifname": o.ifname,
            "router": None if o.router is None else str(o.router),
            "kernel_ms": round((self.clock() - t0) * 1000, 3),
        }
        log.info("at home on %s%s", o.ifname, " (returning)" if was_away else "")
        self.feed(ev.AtHome(o.ifname))
        aio = asyncio.get_running_loop()
        for delay in NA_DELAYS:
            aio.call_later(delay, self._advertise_home_address, o.ifname)

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
        self._apply()
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

    def _tunnel_source(self, coa: IPv6Address | None) -> None:
        if self.caps.tunnel != "seg6" or self._tunsrc == coa:
            return
        try:
            self.set_tunsrc(coa)
            self._tunsrc = coa
        except OSError as e:
            log.warning("seg6 tunnel source not set to %s: %s", coa, e)

    # ----------------------------------------------------------------- kernel state

    def desired(self) -> Desired:
        """What the kernel must hold for the current location."""
        if self.view is None:
            return Desired()
        d = render_mobile_node(self.cfg, self.view, self.caps)
        if self.view.care_of_address is not None and self.router is not None:
            # the home agent through the router the move was detected from (see docstring)
            d.add(
                Route(
                    f"{self.home_agent}/128",
                    table=RT_TABLE_MAIN,
                    oif=self.view.ifname,
                    gateway=str(self.router),
                ),
                Origin("binding", str(self.mn.home_address.ip)),
            )
        return d

    def _apply(self) -> bool:
        d = self.desired()
        rec = self.reconciler
        with contextlib.suppress(OSError):
            rec.observer.process_pending()
        scope = set(d.objects) | self._keys
        p = rec.plan(d, scope=scope)
        report = rec.apply(p, d) if p.changes else None
        self._keys = set(d.objects)
        problems = [f"{c.key}: held by {c.foreign!r}" for c in p.conflicts]
        if report is not None:
            problems += [
                f"{o.change.key}: {o.status} {o.message}" for o in report.outcomes if not o.ok
            ]
            problems += [f"{m.key}: kernel has {m.observed!r}" for m in report.mismatches]
        self.kernel_ok = not problems
        self.kernel_message = "; ".join(problems[:5])
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if problems:
            # Level-triggered retry with backoff.  Also covers a read-back race: the
            # kernel announces a NODAD address from its DAD work queue, i.e. possibly
            # after the netlink ack, so an immediate verification may not see it yet.
            self._retry_delay = min(self._retry_delay * 2, 5.0) if self._retry_delay else 0.02
            log.log(
                logging.WARNING if self._retry_delay >= 0.16 else logging.DEBUG,
                "mobile node kernel state not in place (retry in %g s): %s",
                self._retry_delay,
                self.kernel_message,
            )
            with contextlib.suppress(RuntimeError):
                self._retry = asyncio.get_running_loop().call_later(
                    self._retry_delay, self._reapply
                )
        else:
            self._retry_delay = 0.0
        return self.kernel_ok

    def _reapply(self) -> None:
        self._retry = None
        try:
            self._apply()
        except Exception:
            log.exception("re-applying the mobile node kernel state failed")

    def _schedule_resync(self) -> None:
        interval = float(getattr(self.cfg.daemon, "reconcile_interval", 60) or 60)

        def tick() -> None:
            with contextlib.suppress(Exception):
                if self.view is not None:
                    self._apply()
            self._schedule_resync()

        self._resync = asyncio.get_running_loop().call_later(interval, tick)

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        cur = self.detector.current
        return {
            "location": self.location,
            "interface": None if cur is None else cur[1],
            "care_of_address": None if cur is None or cur[2] is None else str(cur[2]),
            "router": None if self.router is None else str(self.router),
            "moves": self.moves,
            "last_move": self.last_move,
            "waiting_for_address": self.detector.pending(),
            "kernel_in_sync": self.kernel_ok,
            "kernel_message": self.kernel_message,
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
