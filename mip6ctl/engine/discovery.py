"""Dynamic Home Agent Address Discovery, sans I/O (RFC 6275 §10.5, §11.4.1).

Groundwork for issue 16; the daemon does not use it yet.

Home agent side: the Home Agents List of one home link, learnt from Router
Advertisements with the H bit (§10.5.1) plus this home agent's own entry, and
the DHAAD Reply built from it (§10.5: ordered by preference, equal
preferences in a rotating order so the load spreads, and no more addresses
than fit in the minimum IPv6 MTU).

Mobile node side: `DhaadClient`, the request/retransmit machine of §11.4.1
(INITIAL_DHAAD_TIMEOUT, doubling, DHAAD_RETRIES) and the list of home agents
to try in order, moving to the next after a failure.

Both take the time as an argument and return what to send: tests drive them
with a fake clock and bytes, the daemon owns the sockets.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

from mip6ctl import rfc6275
from mip6ctl.wire.icmp6 import (
    HomeAgentAddressDiscoveryReply,
    HomeAgentAddressDiscoveryRequest,
    RouterAdvertisement,
)
from mip6ctl.wire.icmp6 import home_agents_anycast as wire_anycast

#: addresses that fit in a DHAAD Reply within the IPv6 minimum MTU:
#: (1280 - 40 IPv6 - 8 ICMPv6 header) / 16 (§10.5)
MAX_REPLY_ADDRESSES = (1280 - 40 - 8) // 16

def home_agents_anycast(prefix: IPv6Network) -> IPv6Address:
    """The Mobile IPv6 Home-Agents anycast address of a home prefix (RFC 2526 §3):
    `mip6ctl.wire.icmp6.home_agents_anycast`, refusing a prefix too long to hold the
    7-bit anycast ID and a bit above it."""
    if 128 - prefix.prefixlen < 8:
        raise ValueError(f"{prefix}: too long a prefix for a subnet anycast address")
    return wire_anycast(prefix.network_address, prefix.prefixlen)


@dataclass(slots=True)
class HomeAgentEntry:
    """One home agent on the home link (§10.5.1), keyed by its link-local address."""

    link_local: IPv6Address
    addresses: tuple[IPv6Address, ...]
    preference: int
    expires: float  # engine time; float("inf") for this home agent's own entry


@dataclass
class HomeAgentsList:
    """The Home Agents List of one home link (§10.5.1)."""

    prefix: IPv6Network
    entries: dict[IPv6Address, HomeAgentEntry] = field(default_factory=dict)
    #: rotation of equal-preference entries between replies (§10.5: SHOULD spread)
    _turn: int = 0

    def set_own(self, link_local: IPv6Address, address: IPv6Address, preference: int) -> None:
        """This home agent's own entry, from its configuration; it never expires."""
        self.entries[link_local] = HomeAgentEntry(link_local, (address,), preference, float("inf"))

    def router_advertisement(
        self, source: IPv6Address, ra: RouterAdvertisement, now: float
    ) -> bool:
        """Learn from a Router Advertisement; True when the list changed.

        An RA without the H bit removes the sender (it stopped being a home
        agent); lifetime 0 (Home Agent Information lifetime, else the router
        lifetime) removes it too. Global addresses are the prefixes with the R
        bit inside the home prefix.
        """
        if not source.is_link_local:
            return False  # §10.5.1: the list is built from link-local sources only
        if not ra.home_agent:
            return self.entries.pop(source, None) is not None
        info = ra.home_agent_information
        lifetime = info.lifetime if info is not None else ra.router_lifetime
        preference = info.preference if info is not None else 0
        if lifetime == 0:
            return self.entries.pop(source, None) is not None
        addresses = tuple(
            p.prefix
            for p in ra.prefixes
            if p.router_address and p.prefix in self.prefix and not p.prefix.is_link_local
        )
        if not addresses:
            return False  # nothing to give a mobile node
        old = self.entries.get(source)
        new = HomeAgentEntry(source, addresses, _signed16(preference), now + lifetime)
        self.entries[source] = new
        return old is None or (old.addresses, old.preference) != (new.addresses, new.preference)

    def expire(self, now: float) -> list[IPv6Address]:
        gone = [k for k, e in self.entries.items() if e.expires <= now]
        for k in gone:
            del self.entries[k]
        return gone

    def next_expiry(self) -> float | None:
        times = [e.expires for e in self.entries.values() if e.expires != float("inf")]
        return min(times) if times else None

    def ordered(self, now: float) -> list[IPv6Address]:
        """Global addresses, most preferred home agent first (higher preference first)."""
        self.expire(now)
        by_pref: dict[int, list[HomeAgentEntry]] = {}
        for e in self.entries.values():
            by_pref.setdefault(e.preference, []).append(e)
        out: list[IPv6Address] = []
        for pref in sorted(by_pref, reverse=True):
            group = sorted(by_pref[pref], key=lambda e: e.link_local)
            k = self._turn % len(group)
            for e in group[k:] + group[:k]:
                out.extend(e.addresses)
        self._turn += 1
        return out

    def reply(
        self, request: HomeAgentAddressDiscoveryRequest, now: float
    ) -> HomeAgentAddressDiscoveryReply:
        """The DHAAD Reply to `request` (§10.5): its identifier, at most the addresses
        that fit in the minimum MTU, the best first."""
        addresses = self.ordered(now)[:MAX_REPLY_ADDRESSES]
        return HomeAgentAddressDiscoveryReply(request.identifier, tuple(addresses))


def _signed16(v: int) -> int:
    """The Home Agent Information preference is a signed 16-bit integer."""
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


# --------------------------------------------------------------------------- mobile node


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send a DHAAD Request from the care-of address to `destination`."""

    destination: IPv6Address
    request: HomeAgentAddressDiscoveryRequest


@dataclass
class DhaadClient:
    """The mobile node's discovery of its home agents (§11.4.1)."""

    home_prefix: IPv6Network
    #: the identifier's randomness (§11.4.1), injected so tests are deterministic
    random_bytes: Callable[[int], bytes] = secrets.token_bytes
    initial_timeout: float = rfc6275.INITIAL_DHAAD_TIMEOUT
    retries: int = rfc6275.DHAAD_RETRIES
    #: home agents to try, best first; empty until a reply arrives
    candidates: list[IPv6Address] = field(default_factory=list)
    identifier: int | None = None
    attempts: int = 0
    due: float | None = None
    failed: bool = False

    def start(self, now: float) -> list[SendRequest]:
        self.candidates, self.failed, self.attempts = [], False, 0
        self.identifier = int.from_bytes(self.random_bytes(2), "big")
        return self._send(now)

    def _send(self, now: float) -> list[SendRequest]:
        assert self.identifier is not None
        # §11.4.1: the first after INITIAL_DHAAD_TIMEOUT, doubling each retransmission
        self.due = now + self.initial_timeout * (2**self.attempts)
        self.attempts += 1
        return [
            SendRequest(
                home_agents_anycast(self.home_prefix),
                HomeAgentAddressDiscoveryRequest(self.identifier),
            )
        ]

    def timer(self, now: float) -> list[SendRequest]:
        """Retransmit when due; give up after DHAAD_RETRIES retransmissions."""
        if self.due is None or now < self.due or self.candidates:
            return []
        if self.attempts > self.retries:
            self.due, self.failed = None, True
            return []
        return self._send(now)

    def reply(self, reply: HomeAgentAddressDiscoveryReply) -> bool:
        """Accept a reply to the outstanding request; others are ignored (§11.4.1)."""
        if self.identifier is None or reply.identifier != self.identifier:
            return False
        fresh = [a for a in dict.fromkeys(reply.home_agent_addresses) if _usable(a)]
        if not fresh:
            return False
        self.candidates, self.due, self.identifier = fresh, None, None
        return True

    def current(self) -> IPv6Address | None:
        return self.candidates[0] if self.candidates else None

    def give_up_on_current(self, now: float) -> list[SendRequest]:
        """The current home agent failed (no BA, or rejected): try the next; when
        none is left, discover again."""
        if self.candidates:
            self.candidates.pop(0)
        return [] if self.candidates else self.start(now)


def _usable(a: IPv6Address) -> bool:
    return not (a.is_multicast or a.is_unspecified or a.is_loopback or a.is_link_local)


# --------------------------------------------------------------------------- home agent service


@dataclass(frozen=True, slots=True)
class SendReply:
    """Send a DHAAD Reply from `source` (this home agent) to `destination`."""

    destination: IPv6Address
    source: IPv6Address
    reply: HomeAgentAddressDiscoveryReply


@dataclass(frozen=True, slots=True)
class Discard:
    """A request silently discarded, and why (counted and logged at debug)."""

    reason: str


@dataclass(frozen=True, slots=True)
class HomeLink:
    """One home prefix of the home agent on its link."""

    ifname: str
    prefix: IPv6Network

    @property
    def anycast(self) -> IPv6Address:
        return home_agents_anycast(self.prefix)


class HomeAgentDiscovery:
    """The home agent's side of DHAAD (§10.5): a Home Agents List per home prefix,
    learnt from the home links' Router Advertisements plus this home agent's own
    entry, and the replies to requests sent to the Home-Agents anycast address.

    A request is answered only when it was sent to the anycast address of one
    of the home prefixes (§10.5; a request to a unicast address is no DHAAD
    Request) from a unicast source a reply can be routed to (the mobile node's
    care-of address); anything else is discarded without a reply.
    """

    #: this home agent's own entry in each list (keyed apart from every link-local)
    OWN = IPv6Address("::")

    def __init__(self, links: list[HomeLink], address: IPv6Address, preference: int) -> None:
        self.lists: dict[IPv6Address, tuple[HomeLink, HomeAgentsList]] = {}
        self.configure(links, address, preference)

    def configure(self, links: list[HomeLink], address: IPv6Address, preference: int) -> None:
        """A configuration generation: keep what other home agents advertised on the
        links that stay, put this home agent's entry (address, preference) in each."""
        old = self.lists
        self.address, self.preference = address, preference
        self.lists = {}
        for link in links:
            kept = old.get(link.anycast)
            hal = kept[1] if kept is not None else HomeAgentsList(link.prefix)
            if address in link.prefix:
                hal.set_own(self.OWN, address, preference)
            else:
                hal.entries.pop(self.OWN, None)
            self.lists[link.anycast] = (link, hal)

    def router_advertisement(
        self, ifname: str, source: IPv6Address, ra: RouterAdvertisement, now: float
    ) -> bool:
        """An RA heard on `ifname`: update the lists of that link's prefixes.

        Our own RAs (radvd on this node, looped back) name our address: this home
        agent's entry comes from its configuration, not from them."""
        if any(p.router_address and p.prefix == self.address for p in ra.prefixes):
            return False
        changed = False
        for link, hal in self.lists.values():
            if link.ifname == ifname:
                changed |= hal.router_advertisement(source, ra, now)
        return changed

    def request(
        self,
        req: HomeAgentAddressDiscoveryRequest,
        source: IPv6Address,
        destination: IPv6Address | None,
        now: float,
    ) -> SendReply | Discard:
        found = self.lists.get(destination) if destination is not None else None
        if found is None:
            return Discard("not sent to a Home-Agents anycast address of a home prefix")
        if not _usable(source):
            return Discard(f"source {source} is no unicast address a reply could go to")
        _link, hal = found
        reply = hal.reply(req, now)
        return SendReply(source, self.address, reply)

    def rows(self, now: float) -> list[dict[str, object]]:
        """The lists for `mip6ctl status`: per home prefix, the home agents in reply order."""
        out: list[dict[str, object]] = []
        for anycast, (link, hal) in sorted(self.lists.items()):
            hal.expire(now)
            entries = sorted(hal.entries.values(), key=lambda e: (-e.preference, e.link_local))
            out.append(
                {
                    "interface": link.ifname,
                    "prefix": str(link.prefix),
                    "anycast": str(anycast),
                    "home_agents": [
                        {
                            "addresses": [str(a) for a in e.addresses],
                            "preference": e.preference,
                            "self": e.link_local == self.OWN,
                            "link_local": None if e.link_local == self.OWN else str(e.link_local),
                            "expires_in_s": None
                            if e.expires == float("inf")
                            else max(0, int(e.expires - now)),
                        }
                        for e in entries
                    ],
                }
            )
        return out
