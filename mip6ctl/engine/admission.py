"""Which home addresses may hold a home registration: the home agent's admission policy.

RFC 6275 §10.3.1 leaves "is this mobile node allowed to use this home agent"
to configuration; with RFC 3963 §6.1 for mobile routers, mip6ctl's rule is
(in the order the BU checks apply it, first refusal wins):

====  ==========================================================  ======
step  rule                                                        refusal
====  ==========================================================  ======
2     the home address is on one of ``ha.home_prefixes``          132
3     it is listed in ``ha.mobile_nodes``, or ``default_action``  129
      is ``"allow"``
4     a mobile router (R=1, or a binding with mobile network      140
      prefixes) needs ``ha.accept_mobile_routers`` and a listed
      entry that is a mobile router (``mobile_router``, or
      ``mobile_network_prefixes``)
====  ==========================================================  ======

Every place that decides whether a home registration may exist asks
:class:`AdmissionPolicy`: the home agent for each Binding Update, for the
bindings it keeps across a configuration reload and a restart, and the
control socket for the bindings a candidate configuration's plan keeps —
so a plan never shows a binding the reload then drops, or the other way
round. (Before, the control socket had its own rule: it skipped the home
prefix check for listed nodes and the mobile router check.)

The policy is pure: built from one :class:`~mip6ctl.config.model.HaSection`
(one configuration generation), with the lookups the BU hot path needs
precomputed; it never sees the binding cache or the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv6Address

from mip6ctl.config.model import HaSection, MobileNodeEntry
from mip6ctl.wire.mh import BAStatus

from .binding import Binding

__all__ = ["AdmissionPolicy", "kept_home_registrations"]


class AdmissionPolicy:
    """The admission rule of one ``[ha]`` configuration generation (see the module docstring)."""

    __slots__ = ("_default_allow", "_nodes", "_prefix_ints", "accept_mobile_routers", "cfg")

    def __init__(self, cfg: HaSection) -> None:
        self.cfg = cfg
        self._nodes: dict[IPv6Address, MobileNodeEntry] = {
            n.home_address: n for n in cfg.mobile_nodes
        }
        # (network, mask) integers: the subnet test runs for every BU, and integer
        # masking avoids building IPv6Network containment checks on that path
        self._prefix_ints = [(int(p.network_address), int(p.netmask)) for p in cfg.home_prefixes]
        self._default_allow = cfg.default_action == "allow"
        self.accept_mobile_routers = cfg.accept_mobile_routers

    def node(self, home_address: IPv6Address) -> MobileNodeEntry | None:
        """The ``[[ha.mobile_nodes]]`` entry of ``home_address`` (its limits, IPsec, prefixes)."""
        return self._nodes.get(home_address)

    def on_home_subnet(self, home_address: IPv6Address) -> bool:
        """Step 2: a home agent only defends (proxy ND) and tunnels its own home prefixes."""
        n = int(home_address)
        for net, mask in self._prefix_ints:  # noqa: SIM110 - a generator costs more per BU
            if n & mask == net:
                return True
        return False

    def permits(self, home_address: IPv6Address) -> bool:
        """Step 3: listed nodes, and any other only when ``default_action = "allow"``."""
        return self._default_allow or home_address in self._nodes

    def refusal(
        self,
        home_address: IPv6Address,
        node: MobileNodeEntry | None,
        *,
        mobile_router: bool = False,
    ) -> BAStatus | None:
        """The BA status refusing a home registration of ``home_address`` (steps 2–4), or None.

        ``node`` is :meth:`node` of ``home_address``: the BU path has looked it
        up already (IPsec, lifetime limits), and hashing an address again
        costs about as much as the rest of this test. ``mobile_router``: the BU
        has R=1 (or the binding carries mobile network prefixes). Which
        prefixes a mobile router may register (141/142) is the home agent's BU
        check: it depends on the BU's options, not only on configuration.
        """
        if not self.on_home_subnet(home_address):
            return BAStatus.NOT_HOME_SUBNET
        if node is None and not self._default_allow:  # permits(), without a second lookup
            return BAStatus.ADMINISTRATIVELY_PROHIBITED
        if mobile_router and (
            not self.accept_mobile_routers or node is None or not node.is_mobile_router
        ):
            return BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
        return None

    def admits(self, binding: Binding) -> bool:
        """Would a BU for this existing home registration still pass steps 2–4?

        The test for keeping a binding across a reload or a restart: a
        configuration that would refuse the BU must not keep its binding either.
        """
        hoa = binding.home_address
        prefixes = binding.mobile_network_prefixes
        node = self.node(hoa)
        if self.refusal(hoa, node, mobile_router=bool(prefixes)) is not None:
            return False
        # 142 for a prefix the configuration stopped granting
        return not prefixes or (
            node is not None and set(prefixes) <= set(node.mobile_network_prefixes)
        )


def kept_home_registrations(cfg: HaSection | None, bindings: Iterable[Binding]) -> list[Binding]:
    """The home registrations among ``bindings`` that configuration ``cfg`` keeps.

    No ``[ha]`` section: this node is no home agent, so it keeps none.
    Correspondent registrations (H=0) are not this policy's business and are
    left out.
    """
    if cfg is None:
        return []
    policy = AdmissionPolicy(cfg)
    return [b for b in bindings if b.home_registration and policy.admits(b)]
