"""What goes into the engine (inputs) and what comes out (actions).

Small frozen, slotted dataclasses in the style of h11's ``_events.py``: the
daemon turns packets into inputs, feeds them to :class:`~.engine.Engine` with
``now``, and executes the returned actions **in order**.

Contract for executing actions (this is how invariants 1 and 6 are kept):

- :class:`PersistBinding` / :class:`ForgetBinding` must be durable before the
  daemon executes the next action of the same list. The HA always places them
  in front of the Binding Acknowledgement that acknowledges the binding, so a
  binding the HA acknowledged survives a crash. (Persistence is a separate
  action rather than folded into :class:`BindingChanged` because a pure
  lifetime refresh must be persisted but changes no kernel state.)
- :class:`BindingChanged` asks the reconciler to converge the kernel for that
  home address (level-triggered: render from ``binding``, or remove when it is
  None). After reconciling the key the daemon calls
  ``engine.reconciled(home_address, ok, now)``; a home registration's
  Binding Acknowledgement is held until then. Calls for a key with nothing
  waiting are ignored, so the daemon may call it after every reconcile.
- :class:`StartDad` asks for Duplicate Address Detection; the answer comes back
  as ``engine.dad_result(home_address, ok, now)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

from mip6ctl.wire.datagram import (
    HomeAddressOptionReceived,
    Malformed,
    Received,
    Send,
    SendParameterProblem,
)
from mip6ctl.wire.icmp6 import HomeAgentAddressDiscoveryReply, HomeAgentAddressDiscoveryRequest

from .binding import Binding

__all__ = [
    "Action",
    "AdvertiseHomeAddress",
    "AtHome",
    "BindingChanged",
    "CareOfAddressChanged",
    "DhaadReplyReceived",
    "ForgetBinding",
    "HomeAddressOptionReceived",
    "HomeAgentChosen",
    "Input",
    "Malformed",
    "ParameterProblemReceived",
    "PersistBinding",
    "Received",
    "RouteOptimisationChanged",
    "Send",
    "SendDhaadRequest",
    "SendParameterProblem",
    "StartDad",
    "TrafficToCorrespondent",
]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class CareOfAddressChanged:
    """Mobile node: movement detection picked a new primary care-of address.

    ``link_local`` is the node's link-local address on that interface: when it
    has the home address's interface identifier, home registrations carry the
    L bit (RFC 6275 §11.7.1).
    """

    care_of_address: IPv6Address
    ifname: str | None = None
    link_local: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class AtHome:
    """Mobile node: movement detection found the home link."""

    ifname: str | None = None


@dataclass(frozen=True, slots=True)
class ParameterProblemReceived:
    """An ICMPv6 Parameter Problem (RFC 4443 §3.4) about a packet this node sent.

    ``invoking`` is as much of that packet as came back. Code 1 pointing at a
    Next Header of 135 means the peer does not know the Mobility Header: a
    mobile node stops sending it Mobility Header messages (RFC 6275 §11.3.5).
    """

    src: IPv6Address
    code: int
    pointer: int
    invoking: bytes


@dataclass(frozen=True, slots=True)
class TrafficToCorrespondent:
    """Mobile node: the home address sent to ``correspondent`` through the home agent.

    The kernel reports it (an XFRM ACQUIRE of the route-optimisation trigger
    policy, once per flow and ``xfrm_acq_expires``); the engine decides from
    ``[[mn.correspondents]]`` whether return routability starts.
    """

    correspondent: IPv6Address


@dataclass(frozen=True, slots=True)
class DhaadReplyReceived:
    """Mobile node: a DHAAD Reply (ICMPv6 145) arrived from ``src`` (§11.4.1)."""

    reply: HomeAgentAddressDiscoveryReply
    src: IPv6Address


Input = (
    Received
    | Malformed
    | HomeAddressOptionReceived
    | CareOfAddressChanged
    | AtHome
    | ParameterProblemReceived
    | TrafficToCorrespondent
    | DhaadReplyReceived
)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class BindingChanged:
    """The reconciler's trigger: converge the kernel for ``home_address``.

    ``binding`` is the new entry, or None when it is gone. ``reason`` is one of
    ``registered``, ``moved``, ``deregistered``, ``expired``, ``rollback``,
    ``config``, ``restored``.
    """

    home_address: IPv6Address
    binding: Binding | None
    reason: str


@dataclass(frozen=True, slots=True)
class PersistBinding:
    """Store ``binding`` durably before executing the next action."""

    binding: Binding


@dataclass(frozen=True, slots=True)
class ForgetBinding:
    """Remove the stored binding of ``home_address`` before the next action."""

    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class StartDad:
    """Run DAD on the home link for ``home_address`` (and ``link_local`` when L=1)."""

    home_address: IPv6Address
    ifname: str | None
    link_local: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class RouteOptimisationChanged:
    """Mobile node: the correspondents the kernel must route-optimise changed.

    ``correspondents`` is the whole set, as (correspondent address, care-of
    address) pairs: traffic between the home address and each of them goes
    directly (Home Address option out, type 2 routing header in), all other
    traffic through the home agent. Level-triggered: the daemon renders the
    mobile node's kernel state from it, and must have done so before it
    executes the next action (the Binding Update that makes the correspondent
    send to the care-of address comes after it, make before break).
    """

    home_address: IPv6Address
    correspondents: tuple[tuple[IPv6Address, IPv6Address], ...]


@dataclass(frozen=True, slots=True)
class AdvertiseHomeAddress:
    """Mobile node back home: claim the home address on the home link (unsolicited
    Neighbor Advertisements, §11.5.5) -- only once the home agent stopped defending it,
    i.e. after the de-registration's Binding Acknowledgement."""

    home_address: IPv6Address


@dataclass(frozen=True, slots=True)
class SendDhaadRequest:
    """Mobile node: send a DHAAD Request from the care-of address ``src`` to the
    Home-Agents anycast address of the home prefix (§11.4.1)."""

    src: IPv6Address
    dst: IPv6Address
    request: HomeAgentAddressDiscoveryRequest


@dataclass(frozen=True, slots=True)
class HomeAgentChosen:
    """Mobile node: the home registration goes to ``home_agent`` from now on (found by
    DHAAD, or the next one after the current one failed); None: discovering again.
    The daemon moves the reverse tunnel to it."""

    home_agent: IPv6Address | None


Action = (
    Send
    | SendParameterProblem
    | BindingChanged
    | PersistBinding
    | ForgetBinding
    | StartDad
    | RouteOptimisationChanged
    | AdvertiseHomeAddress
    | SendDhaadRequest
    | HomeAgentChosen
)
