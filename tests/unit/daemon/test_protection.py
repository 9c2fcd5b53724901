"""Protection is learned from the kernel's policies (the observer's cache), never from packets."""

from __future__ import annotations

from ipaddress import IPv6Address

from mip6ctl.config.model import Mip6Config
from mip6ctl.daemon.protection import Protection
from mip6ctl.state import ipsec
from mip6ctl.state.render import HostFacts, object_key
from mip6ctl.state.xfrm import XfrmPolicy, XfrmState

HOA, HA = IPv6Address("2001:db8:1::100"), IPv6Address("2001:db8:1::1")
TEMPLATE = {
    "protect": ["binding-update"],
    "encryption": {"algorithm": "aes-cbc"},
    "authentication": {"algorithm": "hmac-sha256"},
    "spi": {"to_ha": 0x1001, "to_mn": 0x1002},
}
KEYS = {"encryption": bytes(16), "authentication": bytes(range(32))}


def _ha() -> tuple[Mip6Config, HostFacts]:
    cfg = Mip6Config.model_validate(
        {
            "node": {"role": "ha"},
            "ha": {
                "interfaces": ["home0"],
                "home_prefixes": ["2001:db8:1::/64"],
                "address": str(HA),
                "mobile_nodes": [{"home_address": str(HOA), "ipsec": "mn1"}],
            },
            "ipsec": {"mn1": TEMPLATE},
        }
    )
    return cfg, HostFacts(HA).with_keys(ipsec.keyring(cfg.ipsec, {"mn1": KEYS}))


def _mn() -> tuple[Mip6Config, HostFacts]:
    cfg = Mip6Config.model_validate(
        {
            "node": {"role": "mn"},
            "mn": {
                "home_address": f"{HOA}/64",
                "home_agent": str(HA),
                "interfaces": [{"name": "mn0"}],
                "ipsec": "mn1",
            },
            "ipsec": {"mn1": TEMPLATE},
        }
    )
    return cfg, HostFacts().with_keys(ipsec.keyring(cfg.ipsec, {"mn1": KEYS}))


def _kernel(side: str, cfg: Mip6Config, facts: HostFacts) -> dict[tuple, object]:
    keys = facts.keys_of("mn1")
    return {object_key(o): o for o in ipsec.transport(side, cfg.ipsec["mn1"], HOA, HA, keys)}  # type: ignore[arg-type]


def test_a_bu_is_protected_only_while_the_kernel_enforces_the_policy() -> None:
    cfg, facts = _ha()
    p = Protection(cfg, facts, "kernel")
    owned = _kernel("ha", cfg, facts)
    assert p.active and p.signalling_protected(owned, HOA)
    assert not p.signalling_protected(owned, IPv6Address("2001:db8:1::200"))  # not protected at all
    inbound = next(k for k, o in owned.items() if isinstance(o, XfrmPolicy) and o.direction == 0)
    assert not p.signalling_protected({k: v for k, v in owned.items() if k != inbound}, HOA)
    # the userspace transport captures in front of IPsec: never protected
    assert not Protection(cfg, facts, "userspace").signalling_protected(owned, HOA)


def test_a_ba_is_protected_only_while_the_mobile_node_kernel_enforces_the_policy() -> None:
    """§11.7.3: the home agent's BA must come through IPsec; the mobile node's kernel
    holding the inbound BA policy at level required is what says it did."""
    cfg, facts = _mn()
    p = Protection(cfg, facts, "kernel")
    owned = _kernel("mn", cfg, facts)
    assert p.active and p.signalling_protected(owned, HOA)
    inbound = next(k for k, o in owned.items() if isinstance(o, XfrmPolicy) and o.direction == 0)
    assert not p.signalling_protected({k: v for k, v in owned.items() if k != inbound}, HOA)
    assert not Protection(cfg, facts, "userspace").signalling_protected(owned, HOA)


def test_status_shows_fingerprints_never_keys() -> None:
    cfg, facts = _ha()
    p = Protection(cfg, facts, "kernel")
    (row,) = p.status(_kernel("ha", cfg, facts))
    assert row["in_kernel"] and row["spi"] == {"to_ha": "0x1001", "to_mn": "0x1002"}
    assert all(v.startswith("sha256:") for v in row["fingerprints"].values())
    text = repr(row)
    assert KEYS["authentication"].hex() not in text and KEYS["encryption"].hex() not in text


def test_the_mobile_node_holds_its_bu_until_the_kernel_can_protect_it() -> None:
    cfg, facts = _mn()
    p = Protection(cfg, facts, "kernel")
    owned = _kernel("mn", cfg, facts)
    assert p.may_send_bu(owned) == (True, "")
    sa = next(k for k, o in owned.items() if isinstance(o, XfrmState) and o.dst == HA)
    ok, why = p.may_send_bu({k: v for k, v in owned.items() if k != sa})
    assert not ok and "ipsec.mn1" in why
    assert not Protection(cfg, facts, "userspace").may_send_bu(owned)[0]
    assert p.hao_by_xfrm() == frozenset({(HOA, HA)})
    # no keys read: policies alone, the BU is not sent (the kernel would drop it)
    bare = Protection(cfg, HostFacts(), "kernel")
    assert not bare.may_send_bu(_kernel("mn", cfg, HostFacts()))[0]
