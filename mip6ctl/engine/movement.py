"""Movement detection for a mobile node (RFC 6275 §11.5.1), sans I/O.

`MovementDetector` is fed what the daemon observes — Router Advertisements
(`router_advertisement`), carrier changes (`link`), global addresses
appearing or going (`address`) and the clock (`handle_timer`) — and answers
with what the mobile node must do:

* `SendRS(ifname)`: solicit a router now (the link just came up: a new link
  is found in one RA round trip instead of waiting for the next unsolicited
  RA), retransmitted every `rs_interval` up to `rs_count` times while no RA
  came;
* `ProbeRouter(ifname, router)`: on link up, also ask each router this
  interface has seen before whether it is here (a Neighbor Solicitation for
  its link-local address, the "simple DNA" of RFC 4436): its Neighbor
  Advertisement (`neighbor_advertisement`) comes back in about a millisecond
  and restores that link's remembered router and prefixes, whereas radvd
  rate-limits its answer to the RS to one RA per MinDelayBetweenRAs; the next
  RA confirms or corrects it;
* `Moved(ifname, care_of_address, router)`: the primary care-of address
  changed (new default router or new on-link prefix on the chosen interface,
  and the SLAAC address on the new prefix exists);
* `AtHome(ifname, router)`: the chosen interface is on the home link (an RA
  there advertises the home prefix as on-link).

Per interface it keeps the current default router (the last RA source with
a non-zero router lifetime), the autonomous prefixes that router advertises,
whether one of them is the home prefix, and the interface's global
addresses.  An RA from *another* router replaces the interface's router and
prefixes (movement); a link that goes down forgets them, and a link that
comes up starts afresh (it may be another link) with a Router Solicitation.
A router is forgotten when it has been silent for three advertisement
intervals (Advertisement Interval option, §7.3) or, without that option,
for its router lifetime.

Among the interfaces with a usable attachment (home, or a router plus a
care-of address on one of its prefixes) the one with the best (lowest)
``preference`` wins, ties broken by configuration order; an output is
produced only when that choice changes.  The care-of address is the
interface's address inside the first advertised autonomous prefix; until
the kernel has configured it (SLAAC) nothing is reported, and its
RTM_NEWADDR completes the move.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

__all__ = [
    "AtHome",
    "Moved",
    "MovementDetector",
    "Output",
    "PrefixAdvert",
    "ProbeRouter",
    "SendRS",
]

#: A router without the Advertisement Interval option is kept this long at most.
DEFAULT_ROUTER_TIMEOUT = 30.0
#: Silent intervals before a router advertising its interval is forgotten.
MISSED_ADVERTISEMENTS = 3


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class SendRS:
    """Send a Router Solicitation on ``ifname``."""

    ifname: str


@dataclass(frozen=True, slots=True)
class ProbeRouter:
    """Send a Neighbor Solicitation for ``router`` (a link-local address) on ``ifname``."""

    ifname: str
    router: IPv6Address


@dataclass(frozen=True, slots=True)
class Moved:
    """The primary care-of address is now ``care_of_address`` on ``ifname`` (via ``router``)."""

    ifname: str
    care_of_address: IPv6Address
    router: IPv6Address


@dataclass(frozen=True, slots=True)
class AtHome:
    """The mobile node is attached to its home link through ``ifname``."""

    ifname: str
    router: IPv6Address | None = None


Output = SendRS | ProbeRouter | Moved | AtHome


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class PrefixAdvert:
    """What movement detection needs of one Prefix Information option."""

    prefix: IPv6Network
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = 0xFFFFFFFF

    @classmethod
    def from_option(cls, opt: object) -> PrefixAdvert:
        """From a `mip6ctl.wire.icmp6.PrefixInformation` (host bits of an R-flag prefix dropped)."""
        net = IPv6Network(
            (getattr(opt, "prefix"), getattr(opt, "prefix_length")),  # noqa: B009
            strict=False,
        )
        return cls(
            net,
            bool(getattr(opt, "on_link")),  # noqa: B009
            bool(getattr(opt, "autonomous")),  # noqa: B009
            int(getattr(opt, "valid_lifetime")),  # noqa: B009
        )


# --------------------------------------------------------------------------- state


@dataclass
class _Link:
    name: str
    preference: int
    order: int
    up: bool = True
    router: IPv6Address | None = None
    router_expires: float = 0.0
    prefixes: tuple[IPv6Network, ...] = ()
    home: bool = False
    addresses: set[IPv6Address] = field(default_factory=set)
    rs_left: int = 0
    rs_at: float | None = None
    #: routers seen on this interface before: router -> (prefixes, home), for DNA probes
    known: dict[IPv6Address, tuple[tuple[IPv6Network, ...], bool]] = field(default_factory=dict)

    def forget_router(self) -> None:
        self.router = None
        self.prefixes = ()
        self.home = False

    def care_of_address(self) -> IPv6Address | None:
        for net in self.prefixes:
            found = sorted(a for a in self.addresses if a in net)
            if found:
                return found[0]
        return None


_Choice = tuple[str, str, IPv6Address | None, IPv6Address | None]  # kind, ifname, coa, router


class MovementDetector:
    """See the module docstring.  All methods take ``now`` (seconds, any monotonic clock)."""

    def __init__(
        self,
        home_prefix: IPv6Network,
        interfaces: Sequence[tuple[str, int]],
        *,
        home_address: IPv6Address | None = None,
        rs_interval: float = 1.0,
        rs_count: int = 3,
        router_timeout: float = DEFAULT_ROUTER_TIMEOUT,
    ) -> None:
        self.home_prefix = home_prefix
        self.home_address = home_address
        self.rs_interval = rs_interval
        self.rs_count = rs_count
        self.router_timeout = router_timeout
        self.links: dict[str, _Link] = {
            name: _Link(name, pref, i) for i, (name, pref) in enumerate(interfaces)
        }
        self.current: _Choice | None = None

    # ----------------------------------------------------------------- inputs

    def link(self, ifname: str, up: bool, now: float) -> list[Output]:
        """Carrier went up or down on ``ifname``."""
        lk = self.links.get(ifname)
        if lk is None or lk.up == up:
            return []
        lk.up = up
        lk.forget_router()
        if not up:
            lk.rs_left, lk.rs_at = 0, None
            return self._choose()
        lk.rs_left = self.rs_count - 1
        lk.rs_at = now + self.rs_interval if lk.rs_left > 0 else None
        probes = [ProbeRouter(ifname, r) for r in lk.known]
        return [SendRS(ifname), *probes, *self._choose()]

    def neighbor_advertisement(self, ifname: str, target: IPv6Address, now: float) -> list[Output]:
        """A Neighbor Advertisement for ``target`` arrived on ``ifname`` (answer to a probe).

        When the interface has no router since it came up and ``target`` is a
        router remembered for it, that link is taken as the current one until
        an RA says otherwise (the router is kept for ``router_timeout`` at most).
        """
        lk = self.links.get(ifname)
        if lk is None or not lk.up or lk.router is not None or target not in lk.known:
            return []
        lk.router = target
        lk.prefixes, lk.home = lk.known[target]
        lk.router_expires = now + min(self.router_timeout, 3.0)
        return self._choose()

    def address(self, ifname: str, address: IPv6Address, present: bool, now: float) -> list[Output]:
        """A global address appeared on (or left) ``ifname`` (RTM_NEWADDR / RTM_DELADDR)."""
        lk = self.links.get(ifname)
        if lk is None or address == self.home_address:
            return []
        if present:
            if address in lk.addresses:
                return []
            lk.addresses.add(address)
        else:
            if address not in lk.addresses:
                return []
            lk.addresses.discard(address)
        return self._choose()

    def router_advertisement(
        self,
        ifname: str,
        router: IPv6Address,
        router_lifetime: int,
        prefixes: Iterable[PrefixAdvert],
        now: float,
        *,
        interval: float | None = None,
    ) -> list[Output]:
        """An RA from ``router`` (its link-local source) arrived on ``ifname``.

        ``interval`` is the Advertisement Interval option in seconds, if present.
        """
        lk = self.links.get(ifname)
        if lk is None:
            return []
        lk.up = True  # an RA is proof enough that the link works
        on_link = [p for p in prefixes if p.valid_lifetime > 0]
        home = any(p.on_link and p.prefix == self.home_prefix for p in on_link)
        if router_lifetime == 0 and not home:
            if router == lk.router:  # the router says it is no longer a default router
                lk.forget_router()
                return self._choose()
            return []
        auto = tuple(p.prefix for p in on_link if p.autonomous and p.prefix.prefixlen == 64)
        if router != lk.router or auto != lk.prefixes or home != lk.home:
            lk.router = router
            lk.prefixes = auto
            lk.home = home
        timeout = interval * MISSED_ADVERTISEMENTS if interval else self.router_timeout
        if router_lifetime:
            timeout = min(timeout, float(router_lifetime))
        lk.router_expires = now + timeout
        lk.rs_left, lk.rs_at = 0, None
        lk.known[router] = (lk.prefixes, lk.home)
        return self._choose()

    # ----------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        times = [lk.rs_at for lk in self.links.values() if lk.rs_at is not None]
        times += [lk.router_expires for lk in self.links.values() if lk.router is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        expired = False
        for lk in self.links.values():
            if lk.rs_at is not None and lk.rs_at <= now:
                out.append(SendRS(lk.name))
                lk.rs_left -= 1
                lk.rs_at = now + self.rs_interval if lk.rs_left > 0 else None
            if lk.router is not None and lk.router_expires <= now:
                lk.forget_router()
                expired = True
        if expired:
            out += self._choose()
        return out

    # ----------------------------------------------------------------- choice

    def _candidate(self, lk: _Link) -> _Choice | None:
        if not lk.up or lk.router is None:
            return None
        if lk.home:
            return ("home", lk.name, None, lk.router)
        coa = lk.care_of_address()
        if coa is None:
            return None
        return ("away", lk.name, coa, lk.router)

    def pending(self) -> bool:
        """The best interface has a router but not yet its care-of address."""
        for lk in sorted(self.links.values(), key=lambda x: (x.preference, x.order)):
            if lk.up and lk.router is not None:
                return self._candidate(lk) is None
        return False

    def _choose(self) -> list[Output]:
        best: _Choice | None = None
        for lk in sorted(self.links.values(), key=lambda x: (x.preference, x.order)):
            if lk.up and lk.router is not None:
                best = self._candidate(lk)
                if best is not None:
                    break
                # the preferred interface has a router but no address yet: wait for it
                # rather than falling back to a worse interface for a few milliseconds
                return []
        if best is None or best == self.current:
            return []
        self.current = best
        kind, ifname, coa, router = best
        if kind == "home":
            return [AtHome(ifname, router)]
        assert coa is not None and router is not None
        return [Moved(ifname, coa, router)]
