"""RFC 3963 network mobility in the engines: the mobile router's BU, the HA's 140-143.

Mobile router and home agent engines talk through real octets (`wire`), with
a fake clock; every status is the one RFC 3963 prescribes.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from mip6ctl.engine import AtHome, CareOfAddressChanged, Engine, Received
from mip6ctl.engine.events import Action
from mip6ctl.wire.mh import BAStatus, BindingAcknowledgement, BindingUpdate, BUFlag
from mip6ctl.wire.mobopts import MobileNetworkPrefix

from .helpers import COA, HA, HA_FLAGS, HOA, HOA2, ha_config, home_bu, mn_config, rx, sends, wire

T0 = 100.0
MNP = IPv6Network("2001:db8:50::/64")
MNP2 = IPv6Network("2001:db8:51::/56")
R_FLAGS = HA_FLAGS | int(BUFlag.R)


def router_config(**mn: Any):
    return mn_config(mobile_router=True, mobile_network_prefixes=[str(MNP), str(MNP2)], **mn)


def nemo_ha(**ha: Any) -> Engine:
    nodes = [
        {"home_address": str(HOA), "mobile_network_prefixes": [str(MNP), str(MNP2)]},
        {"home_address": str(HOA2)},  # a mobile host only
    ]
    return Engine(ha_config(accept_mobile_routers=True, mobile_nodes=nodes, **ha), T0)


def option(net: IPv6Network) -> MobileNetworkPrefix:
    return MobileNetworkPrefix(net.prefixlen, net.network_address)


def opt(prefix: str) -> MobileNetworkPrefix:
    return option(IPv6Network(prefix))


def raw_opt(length: int, address: str) -> MobileNetworkPrefix:
    return MobileNetworkPrefix(length, IPv6Address(address))


def ba_status(e: Engine, *options: MobileNetworkPrefix, hoa: IPv6Address = HOA) -> int:
    """The BA status for one R = 1 BU, after the reconciler if the HA asks for it."""
    out = e.handle(home_bu(1, flags=R_FLAGS, hoa=hoa, options=options), T0)
    if not sends(out):
        out = e.reconciled(hoa, True, T0)
    [send] = sends(out)
    assert isinstance(send.message, BindingAcknowledgement)
    return send.message.status


# --------------------------------------------------------------------------- mobile router


def test_explicit_mode_bu_has_r_and_one_option_per_prefix() -> None:
    e = Engine(router_config(), T0)
    [send] = sends(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    bu, _raw = wire(send.message)
    assert isinstance(bu, BindingUpdate)
    assert bu.mobile_router and bu.home_registration
    assert [(o.prefix, o.prefix_length) for o in bu.mobile_network_prefixes] == [
        (MNP.network_address, 64),
        (MNP2.network_address, 56),
    ]


def test_implicit_mode_bu_has_r_and_no_prefix_option() -> None:
    e = Engine(router_config(explicit_mode=False), T0)
    [send] = sends(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    bu, _raw = wire(send.message)
    assert isinstance(bu, BindingUpdate)
    assert bu.mobile_router and bu.mobile_network_prefixes == ()


def test_a_mobile_host_sends_neither() -> None:
    e = Engine(mn_config(), T0)
    [send] = sends(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    assert not send.message.mobile_router and send.message.mobile_network_prefixes == ()


def test_ba_without_r_means_the_network_is_not_forwarded() -> None:
    """RFC 3963: a BA accepting the home address but with R = 0."""
    e = Engine(router_config(), T0)
    [send] = sends(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    seq = send.message.sequence
    e.handle(rx(BindingAcknowledgement(0, seq, 100, 0), HA, COA, rh=HOA), T0 + 0.1)
    assert e.mn is not None and e.mn.state == "registered"
    assert e.mn.mobile_router_accepted is False
    assert "not mobile router operation" in (e.mn.last_error or "")


def test_refusal_names_the_nemo_status() -> None:
    e = Engine(router_config(), T0)
    [send] = sends(e.handle(CareOfAddressChanged(COA, "wlan0"), T0))
    refusal = BindingAcknowledgement(142, send.message.sequence, 0, 0)
    e.handle(rx(refusal, HA, COA, rh=HOA), T0 + 0.1)
    assert e.mn is not None and e.mn.state == "failed"
    assert e.mn.last_error == "refused with status 142 (not authorized for prefix)"


# --------------------------------------------------------------------------- home agent


def test_explicit_registration_accepted_with_r_and_the_listed_prefixes() -> None:
    e = nemo_ha()
    out = e.handle(home_bu(1, flags=R_FLAGS, options=(option(MNP),)), T0)
    assert sends(out) == []  # waits for the kernel
    [send] = sends(e.reconciled(HOA, True, T0))
    assert send.message.status == 0 and send.message.mobile_router
    assert e.cache.get(HOA).mobile_network_prefixes == (MNP,)


def test_implicit_registration_gets_every_configured_prefix() -> None:
    e = nemo_ha()
    assert ba_status(e) == 0
    assert set(e.cache.get(HOA).mobile_network_prefixes) == {MNP, MNP2}


@pytest.mark.parametrize(
    ("case", "options", "hoa", "status"),
    [
        ("R flag from a node that is not a mobile router", (), HOA2, 140),
        ("a prefix the node is not listed with", (opt("2001:db8:52::/64"),), HOA, 142),
        ("part of its own prefix", (opt("2001:db8:50::/80"),), HOA, 142),
        ("overlapping another binding's prefix", (opt("2001:db8:50::/48"),), HOA, 142),
        ("a multicast prefix", (MobileNetworkPrefix(16, IPv6Address("ff0e::")),), HOA, 141),
        ("a link-local prefix", (MobileNetworkPrefix(64, IPv6Address("fe80::")),), HOA, 141),
        ("host bits past the length", (raw_opt(48, "2001:db8:50::1"),), HOA, 141),
        ("length 0", (MobileNetworkPrefix(0, IPv6Address("::")),), HOA, 141),
    ],
)
def test_nemo_refusals(
    case: str, options: tuple[MobileNetworkPrefix, ...], hoa: IPv6Address, status: int
) -> None:
    e = nemo_ha()
    assert ba_status(e, *options, hoa=hoa) == status, case
    assert hoa not in e.cache


def test_mobile_routers_not_accepted_140() -> None:
    nodes = [{"home_address": str(HOA), "mobile_network_prefixes": [str(MNP)]}]
    e = Engine(ha_config(mobile_nodes=nodes), T0)
    assert ba_status(e, option(MNP)) == BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED


def test_forwarding_setup_failure_is_143_for_a_mobile_router() -> None:
    e = nemo_ha()
    assert sends(e.handle(home_bu(1, flags=R_FLAGS), T0)) == []
    [send] = sends(e.reconciled(HOA, False, T0))
    assert send.message.status == BAStatus.FORWARDING_SETUP_FAILED


def test_mobile_router_and_home_agent_engines_talk_home_f1_home() -> None:
    mr, ha = Engine(router_config(), T0), nemo_ha()

    def deliver(actions: list[Action], now: float) -> list[Action]:
        out: list[Action] = []
        for s in sends(actions):
            msg, raw = wire(s.message)
            ev = Received(
                msg, s.src, s.dst, s.home_address_option, s.routing_header_address,
                False, None, raw,
            )  # fmt: skip
            out += ha.handle(ev, now) if s.dst == HA else mr.handle(ev, now)
        return out

    deliver(mr.handle(CareOfAddressChanged(COA, "wlan0"), T0), T0)
    deliver(ha.reconciled(HOA, True, T0), T0)
    assert mr.mn is not None and mr.mn.state == "registered" and mr.mn.mobile_router_accepted
    assert set(ha.cache.get(HOA).mobile_network_prefixes) == {MNP, MNP2}
    deliver(mr.handle(AtHome(), T0 + 5), T0 + 5)
    deliver(ha.reconciled(HOA, True, T0 + 5), T0 + 5)
    assert mr.mn.state == "home" and HOA not in ha.cache


def test_reload_drops_a_router_binding_whose_prefix_is_no_longer_granted() -> None:
    e = nemo_ha()
    assert ba_status(e, option(MNP)) == 0
    nodes = [{"home_address": str(HOA), "mobile_network_prefixes": [str(MNP2)]}]
    e.load_config(ha_config(accept_mobile_routers=True, mobile_nodes=nodes), T0 + 1)
    assert HOA not in e.cache
