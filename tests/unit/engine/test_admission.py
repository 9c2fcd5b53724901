"""The admission policy: which home addresses may hold a home registration.

One rule for the home agent (BUs, reload, restart) and the control socket's
candidate plan; the last tests check that the plan keeps exactly the bindings
the reload keeps (they used to differ: the plan kept mobile router bindings
after ``accept_mobile_routers`` was turned off, and listed nodes outside every
home prefix).
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from types import SimpleNamespace
from typing import Any

import pytest

from mip6ctl.config.model import Mip6Config
from mip6ctl.daemon.rpc import _kept_bindings
from mip6ctl.engine import Engine
from mip6ctl.engine.admission import AdmissionPolicy, kept_home_registrations
from mip6ctl.engine.binding import Binding
from mip6ctl.wire.mh import BAStatus

from .helpers import CN, COA, FOREIGN_HOA, HA, HOA, HOA2, HOA3, cn_config, ha_config

T0 = 1000.0
UNLISTED = IPv6Address("2001:db8:1::999")
MNP = IPv6Network("2001:db8:100::/48")


def policy(**ha: Any) -> AdmissionPolicy:
    cfg = ha_config(**ha).ha
    assert cfg is not None
    return AdmissionPolicy(cfg)


def binding(
    hoa: IPv6Address,
    *,
    prefixes: tuple[IPv6Network, ...] = (),
    home_registration: bool = True,
) -> Binding:
    return Binding(hoa, COA, HA, 100, T0, T0 + 100, 1, 0, home_registration, prefixes)


# --------------------------------------------------------------------------- the rule


def refusal(p: AdmissionPolicy, hoa: IPv6Address, *, mobile_router: bool = False) -> Any:
    return p.refusal(hoa, p.node(hoa), mobile_router=mobile_router)


def test_listed_node_on_a_home_prefix_is_admitted() -> None:
    assert refusal(policy(), HOA) is None
    assert policy().node(HOA) is not None and policy().node(UNLISTED) is None
    assert policy().permits(HOA) and not policy().permits(UNLISTED)


def test_unlisted_node_needs_default_allow() -> None:
    assert refusal(policy(), UNLISTED) == BAStatus.ADMINISTRATIVELY_PROHIBITED
    assert refusal(policy(default_action="allow"), UNLISTED) is None
    assert policy(default_action="allow").permits(UNLISTED)


def test_home_subnet_is_checked_first_even_for_listed_nodes_and_default_allow() -> None:
    listed_outside = policy(mobile_nodes=[{"home_address": str(FOREIGN_HOA)}])
    assert refusal(listed_outside, FOREIGN_HOA) == BAStatus.NOT_HOME_SUBNET
    assert refusal(policy(default_action="allow"), FOREIGN_HOA) == BAStatus.NOT_HOME_SUBNET
    assert not listed_outside.on_home_subnet(FOREIGN_HOA)


def test_mobile_router_needs_accept_mobile_routers() -> None:
    assert refusal(policy(), HOA, mobile_router=True) == (
        BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    )
    router = {"home_address": str(HOA), "mobile_router": True}
    accepting = policy(accept_mobile_routers=True, mobile_nodes=[router])
    assert refusal(accepting, HOA, mobile_router=True) is None


def test_mobile_router_must_be_configured_as_one_140() -> None:
    """RFC 3963: R = 1 from a node the home agent does not know as a mobile router."""
    plain = policy(accept_mobile_routers=True)  # HOA listed, no prefixes, no mobile_router
    assert refusal(plain, HOA, mobile_router=True) == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    assert refusal(plain, HOA) is None
    off = policy(
        accept_mobile_routers=True,
        mobile_nodes=[{"home_address": str(HOA), "mobile_router": False}],
    )
    assert refusal(off, HOA, mobile_router=True) == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    by_prefixes = policy(
        accept_mobile_routers=True,
        mobile_nodes=[{"home_address": str(HOA), "mobile_network_prefixes": [str(MNP)]}],
    )
    assert refusal(by_prefixes, HOA, mobile_router=True) is None
    unlisted = policy(accept_mobile_routers=True, default_action="allow")
    assert refusal(unlisted, UNLISTED, mobile_router=True) == (
        BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    )
    # refusals in §10.3.1 order: 129 before 140
    assert refusal(policy(), UNLISTED, mobile_router=True) == (
        BAStatus.ADMINISTRATIVELY_PROHIBITED
    )


def test_admits_a_binding_like_a_bu_for_it() -> None:
    p = policy()
    assert p.admits(binding(HOA))
    assert not p.admits(binding(UNLISTED))
    assert not p.admits(binding(HOA, prefixes=(MNP,)))  # a mobile router binding
    router = {"home_address": str(HOA), "mobile_network_prefixes": [str(MNP)]}
    assert policy(accept_mobile_routers=True, mobile_nodes=[router]).admits(
        binding(HOA, prefixes=(MNP,))
    )
    # a prefix the configuration no longer grants: the binding goes, as its BU would
    other = {"home_address": str(HOA), "mobile_network_prefixes": ["2001:db8:200::/48"]}
    assert not policy(accept_mobile_routers=True, mobile_nodes=[other]).admits(
        binding(HOA, prefixes=(MNP,))
    )


def test_kept_home_registrations_leaves_out_correspondent_entries_and_non_home_agents() -> None:
    cfg = ha_config(default_action="allow").ha
    kept = kept_home_registrations(
        cfg, [binding(HOA), binding(UNLISTED), binding(HOA2, home_registration=False)]
    )
    assert [b.home_address for b in kept] == [HOA, UNLISTED]
    assert kept_home_registrations(None, [binding(HOA)]) == []


def test_home_agent_still_allowed_is_the_policy() -> None:
    e = Engine(ha_config(), T0, kcn=bytes(20))
    assert e.ha is not None
    for b in (binding(HOA), binding(UNLISTED), binding(FOREIGN_HOA), binding(HOA, prefixes=(MNP,))):
        assert e.ha.still_allowed(b) is e.ha.admission.admits(b)


# --------------------------------------------------------------------------- plan == reload


def _permissive() -> Mip6Config:
    """Everything in the binding set below is allowed."""
    return ha_config(
        home_prefixes=["2001:db8:1::/64", "2001:db8:99::/64"],
        default_action="allow",
        accept_mobile_routers=True,
        mobile_nodes=[
            {"home_address": str(HOA)},
            {"home_address": str(HOA2), "mobile_network_prefixes": [str(MNP)]},
            {"home_address": str(HOA3)},
            {"home_address": str(FOREIGN_HOA)},
        ],
    )


_BINDINGS = (
    binding(HOA),
    binding(HOA2, prefixes=(MNP,)),  # a mobile router
    binding(FOREIGN_HOA),  # on the second home prefix
    binding(UNLISTED),  # admitted by default_action = "allow" only
    binding(CN, home_registration=False),  # a correspondent registration
)

_CANDIDATES = {
    # the old control-socket rule kept HOA2: it never looked at mobile routers
    "mobile routers turned off": ha_config(
        home_prefixes=["2001:db8:1::/64", "2001:db8:99::/64"],
        default_action="allow",
        mobile_nodes=[{"home_address": str(a)} for a in (HOA, HOA2, FOREIGN_HOA)],
    ),
    # the old rule kept FOREIGN_HOA: under "deny" it only looked at the list
    "listed node off the home prefixes": ha_config(
        mobile_nodes=[{"home_address": str(a)} for a in (HOA, FOREIGN_HOA)],
    ),
    "default deny": ha_config(
        home_prefixes=["2001:db8:1::/64", "2001:db8:99::/64"],
        accept_mobile_routers=True,
        mobile_nodes=[
            {"home_address": str(HOA)},
            {"home_address": str(HOA2), "mobile_network_prefixes": [str(MNP)]},
        ],
    ),
    "unchanged": _permissive(),
    "no longer a home agent": cn_config(),
}


@pytest.mark.parametrize("name", sorted(_CANDIDATES))
def test_candidate_plan_keeps_exactly_the_bindings_the_reload_keeps(name: str) -> None:
    candidate = _CANDIDATES[name]
    e = Engine(_permissive(), T0, kcn=bytes(20))
    e.restore(_BINDINGS, T0)
    assert len(e.cache) == len(_BINDINGS)

    planned = {b.home_address for b in _kept_bindings(SimpleNamespace(engine=e), candidate)}
    e.load_config(candidate, T0 + 1)
    reloaded = {b.home_address for b in e.cache if b.home_registration}

    assert planned == reloaded, name


def test_restart_keeps_what_the_policy_admits() -> None:
    cfg = _CANDIDATES["mobile routers turned off"]
    e = Engine(cfg, T0, kcn=bytes(20))
    e.restore(_BINDINGS, T0)
    assert cfg.ha is not None
    kept = {b.home_address for b in e.cache if b.home_registration}
    assert kept == {b.home_address for b in kept_home_registrations(cfg.ha, _BINDINGS)}
    assert HOA2 not in kept and HOA in kept and UNLISTED in kept
