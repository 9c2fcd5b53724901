"""Which signalling the kernel protects: learned from the kernel's policies, never from packets.

RFC 3776 protection is the kernel's: an inbound policy at level ``required``
for a mobile node's Binding Updates makes the kernel drop every BU from that
home address that did not come through the ESP SA the policy names, before a
raw socket sees it (``xfrm6_policy_check`` in the raw receive path).  So on
the kernel signalling transport a BU that *arrived* from a home address whose
policy the observer sees in the kernel, as rendered, was protected -- nothing
in the packet claims it.  The userspace transport captures at the link layer,
in front of IPsec: nothing it delivers is ever protected.

Outbound the same: the mobile node sends a BU its template protects only
while the kernel holds the BU policy and, with manual keys, the SA; the
kernel would otherwise drop it silently (no SA: larval drop), and the node
would retransmit into nothing without saying why.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.config.model import Mip6Config, Role
from mip6ctl.state import ipsec
from mip6ctl.state.render import HostFacts, home_agent_address, object_key
from mip6ctl.state.xfrm import Direction, Level, XfrmPolicy, XfrmProto, XfrmState


def _required_esp(p: XfrmPolicy) -> bool:
    return any(t.proto == XfrmProto.ESP and t.level == Level.REQUIRED for t in p.templates)


class Protection:
    """Answers from the observer's cache (`owned`, object key -> object) for one generation."""

    def __init__(self, cfg: Mip6Config, facts: HostFacts, transport_kind: str) -> None:
        self.cfg = cfg
        self.facts = facts
        self.kernel_transport = transport_kind == "kernel"
        #: home address -> (template name, the static objects its protection needs)
        self._static: dict[IPv6Address, tuple[str, tuple[XfrmPolicy | XfrmState, ...]]] = {}
        self._build()
        #: per home address, the inbound policies requiring ESP (looked up per BU)
        self._inbound = {
            home: tuple(
                o
                for o in objs
                if isinstance(o, XfrmPolicy) and o.direction == Direction.IN and _required_esp(o)
            )
            for home, (_name, objs) in self._static.items()
        }
        #: home address -> last MIGRATE (status)
        self.migrations: dict[str, dict[str, Any]] = {}

    def _build(self) -> None:
        cfg = self.cfg
        if cfg.node.role == Role.HA and cfg.ha is not None:
            addr = home_agent_address(cfg, self.facts)
            if addr is None:
                return
            for mn in cfg.ha.mobile_nodes:
                tpl = cfg.ipsec.get(mn.ipsec) if mn.ipsec else None
                if tpl is not None:
                    name = mn.ipsec or ""
                    objs = ipsec.transport(
                        "ha",
                        tpl,
                        mn.home_address,
                        addr,
                        self.facts.keys_of(name),
                        self.facts.retiring_of(name),
                    )
                    self._static[mn.home_address] = (mn.ipsec or "", tuple(objs))
        elif cfg.node.role == Role.MN and cfg.mn is not None and cfg.mn.ipsec in cfg.ipsec:
            ha = cfg.mn.home_agent
            if isinstance(ha, IPv6Address):
                name = cfg.mn.ipsec or ""
                objs = ipsec.transport(
                    "mn",
                    cfg.ipsec[name],
                    cfg.mn.home_address.ip,
                    ha,
                    self.facts.keys_of(name),
                    self.facts.retiring_of(name),
                )
                self._static[cfg.mn.home_address.ip] = (name, tuple(objs))

    @classmethod
    def none(cls) -> Protection:
        """Before the first generation is applied: nothing protected."""
        from mip6ctl.config.model import Mip6Config

        return cls(Mip6Config.model_validate({"node": {"role": "cn"}}), HostFacts(), "none")

    @property
    def active(self) -> bool:
        return bool(self._static)

    def _present(self, owned: Mapping[tuple, Any], objs: Iterable[Any]) -> bool:
        return all(owned.get(object_key(o)) == o for o in objs)

    def signalling_protected(self, owned: Mapping[tuple, Any], home: IPv6Address) -> bool:
        """A BU from `home` (home agent) or a BA to `home` (mobile node) that reached
        the kernel transport's socket came through ESP: the inbound policy at level
        required is in the kernel."""
        inbound = self._inbound.get(home)
        if not inbound or not self.kernel_transport:
            return False
        return self._present(owned, inbound)

    def may_send_bu(self, owned: Mapping[tuple, Any]) -> tuple[bool, str]:
        """Mobile node: (send?, why not) for a BU to the home agent."""
        if not self._static:
            return True, ""
        if not self.kernel_transport:
            return False, "IPsec needs the kernel signalling transport"
        name, objs = next(iter(self._static.values()))
        tpl = self.cfg.ipsec[name]
        out = [o for o in objs if not (isinstance(o, XfrmPolicy) and o.direction == Direction.IN)]
        if not self._present(owned, out):
            return False, f"the kernel does not hold the [ipsec.{name}] BU policy/SA yet"
        if tpl.key_management == "manual" and not any(isinstance(o, XfrmState) for o in objs):
            return False, f"[ipsec.{name}] has no usable keys"
        return True, ""

    def hao_by_xfrm(self) -> frozenset[tuple[IPv6Address, IPv6Address]]:
        """Mobile node: (home address, home agent) whose BUs get their Home Address
        option from the kernel's hao state (rendered by `state.ipsec`), not the socket."""
        cfg = self.cfg
        if cfg.node.role != Role.MN or cfg.mn is None or not self._static:
            return frozenset()
        name = cfg.mn.ipsec or ""
        if not ipsec.protects_signalling(cfg.ipsec[name]):
            return frozenset()
        ha = cfg.mn.home_agent
        assert isinstance(ha, IPv6Address)
        return frozenset({(cfg.mn.home_address.ip, ha)})

    def note_outcomes(self, outcomes: Iterable[Any]) -> None:
        """Executor outcomes of XFRM MIGRATEs: the last move per home address (the SA
        that moved names the new care-of address: its end that is not the HA)."""
        ha = self._ha_addresses()
        for o in outcomes:
            c = o.change
            if not o.ok or c.origin is None or c.origin.kind != "binding":
                continue
            row = self.migrations.setdefault(c.origin.ref, {})
            row["at"] = round(time.time(), 3)
            row["how"] = o.message
            if isinstance(c.desired, XfrmState):
                st = c.desired
                row["care_of_address"] = str(st.src if st.dst in ha else st.dst)

    def _ha_addresses(self) -> set[IPv6Address]:
        cfg = self.cfg
        if cfg.node.role == Role.HA:
            a = home_agent_address(cfg, self.facts)
            return {a} if a is not None else set()
        if cfg.mn is not None and isinstance(cfg.mn.home_agent, IPv6Address):
            return {cfg.mn.home_agent}
        return set()

    def status(self, owned: Mapping[tuple, Any]) -> list[dict[str, Any]]:
        """Per protected mobile node: mode, SPIs, key fingerprints, kernel presence."""
        rows: list[dict[str, Any]] = []
        for home, (name, objs) in sorted(self._static.items()):
            tpl = self.cfg.ipsec[name]
            keys = self.facts.keys_of(name)
            hoa = str(home)
            row: dict[str, Any] = {
                "home_address": hoa,
                "template": name,
                "key_management": tpl.key_management,
                "protect": [str(p) for p in tpl.protect],
                "transport": ipsec.protects_signalling(tpl),
                "tunnel": ipsec.tunnels(tpl),
                "spi": _spis(tpl.spi),
                "tunnel_spi": _spis(tpl.tunnel_spi),
                "fingerprints": keys.fingerprints() if keys is not None else None,
                "in_kernel": self._present(owned, objs),
                "last_migration": self.migrations.get(hoa),
            }
            rows.append(row)
        return rows


def with_generation_keys(gen: Any, facts: HostFacts) -> HostFacts:
    """`facts` with the manual IPsec keys of generation `gen`, read from its key files
    (the daemon at start and reload, a plan of a candidate generation, `mip6ctl diff`)."""
    from mip6ctl.config.keyring import read_template_keys

    cfg = gen.config
    if not cfg.ipsec:
        return facts.with_keys({})
    return facts.with_keys(ipsec.keyring(cfg.ipsec, read_template_keys(cfg, gen.directory)))


def _spis(pair: Any) -> dict[str, str] | None:
    if pair is None:
        return None
    return {"to_ha": f"{pair.to_ha:#x}", "to_mn": f"{pair.to_mn:#x}"}


__all__ = ["Protection", "with_generation_keys"]
