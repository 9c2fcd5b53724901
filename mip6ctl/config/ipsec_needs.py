"""What a configuration generation needs from the kernel for IPsec, and what it leaves open.

Pure functions of a validated `Mip6Config` (and, for `kernel_problems`, of
the capability map the daemon builds from the probe): no kernel access, no
key files read.  `mip6ctl validate` and `mip6ctl doctor` use them to say
whether a configuration can run on this host, the daemon uses them to refuse
to start one that would run unprotected instead.

* `needs(cfg) -> IpsecNeeds`: which templates are in use, and which
  references (key paths) ask for ESP, sub-policies and XFRM MIGRATE.
* `kernel_problems(cfg, available) -> list[str]`: why this generation cannot
  run on a kernel with these capabilities (empty: it can).  `available` is
  ``{c.name: c.available for c in mip6ctl.kernel.probe.probe()}``; a
  capability that is absent or ``None`` (could not be probed) counts as
  missing: a daemon that cannot tell whether it can protect its signalling
  must not start unprotected.
* `kernel_warnings(cfg, available) -> list[str]`: what works, but degraded
  (manual-key tunnel SAs re-added instead of migrated; no sub-policies).
* `unprotected_warning(cfg) -> str | None`: the sentence the daemon logs at
  start and `doctor` prints when a home agent accepts Binding Updates
  without IPsec.

Why `signalling = "kernel"`: the userspace transport captures Mobility
Headers at the link layer (AF_PACKET) and sends them with IPPROTO_RAW, so it
sees ESP packets still encrypted and cannot put its own messages through an
SA; only the kernel's IPPROTO_MH socket path runs through XFRM.  "auto"
resolves to the kernel transport only where the kernel has CONFIG_IPV6_MIP6.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mip6ctl.config.model import IpsecTemplate, Mip6Config, Protect
from mip6ctl.config.problems import KeyPath, format_path

#: Kinds protected by ESP in tunnel mode through the home agent (RFC 3776 §4.2, 4877):
#: their SAs use `tunnel_spi` / `tunnel_reqid` and their outer endpoint is the care-of
#: address, so they move with the mobile node.
TUNNEL_KINDS: frozenset[Protect] = frozenset(
    {Protect.RETURN_ROUTABILITY, Protect.TUNNEL_MOBILITY_HEADER, Protect.PAYLOAD}
)
#: Kinds protected by ESP in transport mode between home address and home agent:
#: their SAs use `spi` / `reqid` and do not move (the selectors use the home address).
TRANSPORT_KINDS: frozenset[Protect] = frozenset(Protect) - TUNNEL_KINDS

#: How many key paths a message names before "and N more".
_SHOWN = 3


@dataclass(frozen=True, slots=True)
class IpsecNeeds:
    """What the IPsec templates in use ask of the kernel, and who asks (key paths).

    A template is *in use* when `ha.mobile_nodes[].ipsec` or `mn.ipsec` names
    it; the key paths are those references (``("ha", "mobile_nodes", 3,
    "ipsec")``), in configuration order, so a caller can locate them to
    file:line (`Generation.locate`) or print them (`format_path`).
    """

    #: names of the templates in use, in the order of their first reference
    templates: tuple[str, ...] = ()
    #: every reference to a template in use: each needs ESP (CONFIG_INET6_ESP),
    #: the kernel MH socket path (CONFIG_IPV6_MIP6) and signalling = "kernel"
    esp: tuple[KeyPath, ...] = ()
    #: references whose template protects tunnel-mode kinds (TUNNEL_KINDS)
    tunnel: tuple[KeyPath, ...] = ()
    #: key paths that layer route-optimisation policies over IPsec ones: these need
    #: sub-policies (CONFIG_XFRM_SUB_POLICY), as UMIP did
    sub_policy: tuple[KeyPath, ...] = ()
    #: references whose tunnel-mode SAs are IKE-negotiated: movement must reach the
    #: IKE daemon as XFRM_MSG_MIGRATE (CONFIG_XFRM_MIGRATE)
    migrate: tuple[KeyPath, ...] = ()
    #: references whose tunnel-mode SAs have manual keys: migrated when the kernel has
    #: MIGRATE, else deleted and re-added on every movement
    migrate_optional: tuple[KeyPath, ...] = ()

    @property
    def requires_esp(self) -> bool:
        """The generation installs ESP SAs/policies: needs ESP, MIP6 and kernel signalling."""
        return bool(self.esp)

    @property
    def requires_sub_policy(self) -> bool:
        return bool(self.sub_policy)

    @property
    def requires_migrate(self) -> bool:
        return bool(self.migrate)

    def describe(self) -> str:
        """Which templates, used where: ``ipsec.mn1 for ha.mobile_nodes[0].ipsec``."""
        return _who(self.templates, self.esp)


def _references(cfg: Mip6Config) -> list[tuple[KeyPath, str]]:
    """(key path, template name) of every reference to a template that exists."""
    out: list[tuple[KeyPath, str]] = []
    if cfg.ha is not None:
        out += [
            (("ha", "mobile_nodes", i, "ipsec"), m.ipsec)
            for i, m in enumerate(cfg.ha.mobile_nodes)
            if m.ipsec is not None and m.ipsec in cfg.ipsec
        ]
    if cfg.mn is not None and cfg.mn.ipsec is not None and cfg.mn.ipsec in cfg.ipsec:
        out.append((("mn", "ipsec"), cfg.mn.ipsec))
    return out


def has_tunnel_kinds(tpl: IpsecTemplate) -> bool:
    """True when the template protects a kind carried by tunnel-mode SAs."""
    return any(p in TUNNEL_KINDS for p in tpl.protect)


def needs(cfg: Mip6Config) -> IpsecNeeds:
    """What the IPsec templates in use need from the kernel; pure, O(mobile nodes)."""
    refs = _references(cfg)
    if not refs:
        return IpsecNeeds()
    templates = tuple(dict.fromkeys(name for _path, name in refs))
    tunnel = {name for name in templates if has_tunnel_kinds(cfg.ipsec[name])}
    ike = {name for name in templates if cfg.ipsec[name].key_management == "ike"}
    sub: list[KeyPath] = []
    mn = cfg.mn
    if (
        mn is not None
        and mn.ipsec in cfg.ipsec
        and mn.route_optimization
        and any(c.mode == "always" for c in mn.correspondents)
    ):
        # the mobile node's route2/hao policies towards correspondents overlap the
        # IPsec policies of its home address: the kernel combines them only as
        # sub-policies over the main ones
        sub.append(("mn", "route_optimization"))
    return IpsecNeeds(
        templates=templates,
        esp=tuple(path for path, _name in refs),
        tunnel=tuple(path for path, name in refs if name in tunnel),
        sub_policy=tuple(sub),
        migrate=tuple(path for path, name in refs if name in tunnel and name in ike),
        migrate_optional=tuple(path for path, name in refs if name in tunnel and name not in ike),
    )


def _paths(paths: tuple[KeyPath, ...] | list[KeyPath]) -> str:
    shown = ", ".join(format_path(p) for p in paths[:_SHOWN])
    more = len(paths) - _SHOWN
    return f"{shown} and {more:,} more" if more > 0 else shown


def _who(templates: tuple[str, ...] | list[str], paths: tuple[KeyPath, ...]) -> str:
    names = ", ".join(f"ipsec.{t}" for t in templates[:_SHOWN])
    if len(templates) > _SHOWN:
        names += f" and {len(templates) - _SHOWN:,} more"
    return f"{names} for {_paths(paths)}"


def _lacks(available: Mapping[str, bool | None], name: str, option: str) -> str | None:
    """Why capability `name` cannot be used, or None when the probe found it."""
    value = available.get(name)
    if value is True:
        return None
    if value is None:
        return f"whether this kernel has {option} could not be probed"
    return f"this kernel has no {option}"


def located_kernel_problems(
    cfg: Mip6Config, available: Mapping[str, bool | None]
) -> list[tuple[KeyPath, str]]:
    """`kernel_problems`, each with the key path of the reference it is about."""
    n = needs(cfg)
    if not n.requires_esp:
        return []
    out: list[tuple[KeyPath, str]] = []
    first = n.esp[0]
    head = f"this configuration requires IPsec ({n.describe()})"
    why = _lacks(available, "esp", "CONFIG_INET6_ESP")
    if why:
        out.append((first, f"{head}; {why}"))
    signalling = cfg.kernel.signalling
    if signalling == "userspace":
        out.append(
            (
                first,
                f"{head}, but kernel.signalling = 'userspace': that transport captures Mobility "
                "Headers at the link layer and cannot see through ESP; set signalling = 'kernel'",
            )
        )
    else:
        why = _lacks(available, "mip6", "CONFIG_IPV6_MIP6")
        if why:
            fallback = (
                " ('auto' would fall back to the userspace transport, which cannot see through ESP)"
                if signalling == "auto"
                else ""
            )
            out.append(
                (
                    first,
                    f"{head}, which needs the kernel signalling transport; {why}{fallback}",
                )
            )
    if n.requires_migrate:
        why = _lacks(available, "migrate", "CONFIG_XFRM_MIGRATE")
        if why:
            names = tuple(dict.fromkeys(_name_at(cfg, p) for p in n.migrate))
            out.append(
                (
                    n.migrate[0],
                    f"{_who(names, n.migrate)}: key_management = 'ike' with tunnel-mode "
                    "protection, whose SAs must follow the mobile node with XFRM_MSG_MIGRATE "
                    f"(the IKE daemon learns of the move from it); {why}",
                )
            )
    return out


def _name_at(cfg: Mip6Config, path: KeyPath) -> str:
    if path[0] == "mn":
        assert cfg.mn is not None and cfg.mn.ipsec is not None
        return cfg.mn.ipsec
    assert cfg.ha is not None
    name = cfg.ha.mobile_nodes[path[2]].ipsec  # type: ignore[index]
    assert name is not None
    return name


def kernel_problems(cfg: Mip6Config, available: Mapping[str, bool | None]) -> list[str]:
    """Why `cfg` cannot run on a kernel with capabilities `available`; [] when it can.

    `available` maps probe names ("esp", "mip6", "migrate", "sub_policy", ...)
    to True / False / None (None: could not be probed, counted as missing).
    A generation with an IPsec template in use needs "esp", "mip6" and
    `kernel.signalling` "kernel" (or "auto" where "mip6" exists); IKE
    templates with tunnel-mode kinds also need "migrate".  Each message is
    one sentence naming the templates and references concerned.
    """
    return [msg for _path, msg in located_kernel_problems(cfg, available)]


def located_kernel_warnings(
    cfg: Mip6Config, available: Mapping[str, bool | None]
) -> list[tuple[KeyPath, str]]:
    """`kernel_warnings`, each with the key path it is about."""
    n = needs(cfg)
    out: list[tuple[KeyPath, str]] = []
    if n.migrate_optional and available.get("migrate") is not True:
        names = tuple(dict.fromkeys(_name_at(cfg, p) for p in n.migrate_optional))
        why = _lacks(available, "migrate", "CONFIG_XFRM_MIGRATE")
        out.append(
            (
                n.migrate_optional[0],
                f"{_who(names, n.migrate_optional)}: {why}: the manual-key tunnel-mode SAs "
                "and policies are deleted and re-added on every movement instead of migrated",
            )
        )
    if n.requires_sub_policy and available.get("sub_policy") is not True:
        out.append(
            (
                n.sub_policy[0],
                "route optimisation with IPsec needs sub-policies (the route2/hao policies "
                f"are layered over the IPsec ones); "
                f"{_lacks(available, 'sub_policy', 'CONFIG_XFRM_SUB_POLICY')}",
            )
        )
    return out


def kernel_warnings(cfg: Mip6Config, available: Mapping[str, bool | None]) -> list[str]:
    """What runs on this kernel, but degraded; [] when nothing is.

    Manual-key tunnel-mode SAs without "migrate" are deleted and re-added on
    movement; route optimisation over IPsec without "sub_policy" cannot layer
    its policies over the IPsec ones.
    """
    return [msg for _path, msg in located_kernel_warnings(cfg, available)]


def unprotected_warning(cfg: Mip6Config) -> str | None:
    """The sentence to log (daemon start) and print (doctor) when a home agent accepts
    Binding Updates without IPsec; None when it accepts none unprotected (or is no HA).

    Unprotected: `default_action = "allow"` without `require_ipsec` (every home
    address of the home prefixes), or listed mobile nodes without an `ipsec`
    template.
    """
    ha = cfg.ha
    if ha is None or ha.require_ipsec:
        return None
    bare = [m for m in ha.mobile_nodes if m.ipsec is None]
    prefixes = ", ".join(map(str, ha.home_prefixes))
    if ha.default_action == "allow":
        who = f"for every home address of {prefixes} (default_action = 'allow')"
    elif bare:
        n = len(bare)
        who = (
            f"for {n:,} of its {len(ha.mobile_nodes):,} listed mobile nodes, which have no "
            f"ipsec template ({', '.join(str(m.home_address) for m in bare[:_SHOWN])}"
            + (", …" if n > _SHOWN else "")
            + ")"
        )
    else:
        return None
    return (
        f"this home agent accepts Binding Updates without IPsec {who}: an unprotected home "
        "agent accepts forged Binding Updates from anyone who can reach it, who can then "
        "register, move or de-register those home addresses and take their traffic"
    )


__all__ = [
    "TRANSPORT_KINDS",
    "TUNNEL_KINDS",
    "IpsecNeeds",
    "has_tunnel_kinds",
    "kernel_problems",
    "kernel_warnings",
    "located_kernel_problems",
    "located_kernel_warnings",
    "needs",
    "unprotected_warning",
]
