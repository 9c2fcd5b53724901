"""Builders shared by the engine tests: configurations, addresses, wire round trips."""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

from mip6ctl.config.model import Mip6Config
from mip6ctl.engine import Engine, Received, Send
from mip6ctl.engine.events import Action
from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingUpdate,
    BUFlag,
    MobilityMessage,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import AlternateCareofAddress

HA = IPv6Address("2001:db8:1::1")
HOA = IPv6Address("2001:db8:1::100")
HOA2 = IPv6Address("2001:db8:1::200")
HOA3 = IPv6Address("2001:db8:1::300")
COA = IPv6Address("2001:db8:2::100")
COA2 = IPv6Address("2001:db8:3::100")
FOREIGN_HOA = IPv6Address("2001:db8:99::100")
CN = IPv6Address("2001:db8:0:1::1")
KCN = bytes(range(20))

HA_FLAGS = int(BUFlag.A | BUFlag.H)


def ha_config(**ha: Any) -> Mip6Config:
    """An HA configuration for 2001:db8:1::/64 with HOA, HOA2, HOA3 allowed, DAD off."""
    section: dict[str, Any] = {
        "interfaces": ["home0"],
        "home_prefixes": ["2001:db8:1::/64"],
        "address": str(HA),
        "duplicate_address_detection": False,
        "mobile_nodes": [{"home_address": str(a)} for a in (HOA, HOA2, HOA3)],
    }
    section.update(ha)
    return Mip6Config.model_validate({"node": {"role": "ha"}, "ha": section})


def cn_config(**cn: Any) -> Mip6Config:
    """A correspondent-only configuration."""
    return Mip6Config.model_validate({"node": {"role": "cn"}, "cn": cn})


def mn_config(**mn: Any) -> Mip6Config:
    """A mobile node whose home address is HOA and home agent HA."""
    section: dict[str, Any] = {
        "home_address": f"{HOA}/64",
        "home_agent": str(HA),
        "interfaces": [{"name": "wlan0"}],
    }
    section.update(mn)
    return Mip6Config.model_validate({"node": {"role": "mn"}, "mn": section})


def wire(msg: MobilityMessage) -> tuple[MobilityMessage, bytes]:
    """Encode and decode again: the engine sees what the decoder makes of real octets."""
    raw = encode_mh(msg)
    return decode_mh(raw), raw


def rx(
    msg: MobilityMessage | bytes,
    src: IPv6Address,
    dst: IPv6Address,
    *,
    hao: IPv6Address | None = None,
    rh: IPv6Address | None = None,
    ipsec: bool = False,
) -> Received:
    """A Received event for a message (or literal MH octets) after a wire round trip."""
    if isinstance(msg, bytes):
        raw = msg
        decoded = decode_mh(raw)
    else:
        decoded, raw = wire(msg)
    return Received(decoded, src, dst, hao, rh, ipsec, "eth0", raw)


def home_bu(
    seq: int,
    *,
    lifetime: int = 100,
    flags: int = HA_FLAGS,
    hoa: IPv6Address = HOA,
    coa: IPv6Address = COA,
    alt_coa: bool = True,
    ipsec: bool = False,
    options: tuple[Any, ...] = (),
) -> Received:
    """A home registration BU from ``coa`` to the HA with a Home Address option."""
    opts = ((AlternateCareofAddress(coa),) if alt_coa else ()) + options
    return rx(BindingUpdate(seq, flags, lifetime, opts), coa, HA, hao=hoa, ipsec=ipsec)


def sends(actions: list[Action]) -> list[Send]:
    """The Send actions."""
    return [a for a in actions if isinstance(a, Send)]


def bas(actions: list[Action]) -> list[BindingAcknowledgement]:
    """The Binding Acknowledgements among the actions."""
    return [a.message for a in sends(actions) if isinstance(a.message, BindingAcknowledgement)]


def only_ba(actions: list[Action]) -> BindingAcknowledgement:
    """Exactly one BA was sent; return it."""
    found = bas(actions)
    assert len(found) == 1, actions
    return found[0]


def register(engine: Engine, seq: int, now: float, **kw: Any) -> BindingAcknowledgement:
    """Run a home registration to completion (reconcile ok), return the BA."""
    out = engine.handle(home_bu(seq, **kw), now)
    if not bas(out):
        out = engine.reconciled(kw.get("hoa", HOA), True, now)
    return only_ba(out)
