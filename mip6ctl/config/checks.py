"""Rules that span fields or files, checked after the schema accepted the shape.

Each rule yields a `Finding` with the key path it is about, so the loader can
point at the file and line where that key was written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from mip6ctl.config.model import IpsecTemplate, Mip6Config, Role
from mip6ctl.config.problems import KeyPath
from mip6ctl.config.secrets import KeyFileError, KeyInfo, key_info


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    path: KeyPath
    message: str


Where = Callable[[KeyPath], str]


def _unicast_problem(addr: IPv6Address) -> str | None:
    if addr.is_multicast:
        return "is a multicast address"
    if addr.is_link_local:
        return "is link-local; a global (or unique local) address is needed"
    if addr.is_unspecified or addr.is_loopback:
        return "is not a unicast routable address"
    return None


def check(cfg: Mip6Config, base: Path, where: Where) -> tuple[list[Finding], dict[str, KeyInfo]]:
    """All cross-field findings, plus the fingerprints of the key files that checked out."""
    keys: dict[str, KeyInfo] = {}
    findings = [
        *_roles(cfg),
        *_home_agent(cfg, where),
        *_mobile_node(cfg),
        *_ipsec(cfg, base, keys),
        *_daemon(cfg),
    ]
    return findings, keys


def _roles(cfg: Mip6Config) -> Iterator[Finding]:
    role = cfg.node.role
    for section, owner in (("ha", Role.HA), ("mn", Role.MN)):
        present = getattr(cfg, section) is not None
        if role == owner and not present:
            yield Finding(
                "consistency",
                ("node", "role"),
                f"role '{role}' needs a [{section}] section",
            )
        elif role != owner and present:
            yield Finding(
                "consistency",
                (section,),
                f"section [{section}] is for role '{owner}', but node.role is '{role}'; "
                "remove it or change the role",
            )


def _in_any(addr: IPv6Address, prefixes: list[IPv6Network]) -> bool:
    return any(addr in p for p in prefixes)


def _duplicates(names: list[str], path: KeyPath, what: str) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            yield Finding("consistency", (*path, i), f"{what} {n!r} is listed twice")
        seen.setdefault(n, i)


def _home_agent(cfg: Mip6Config, where: Where) -> Iterator[Finding]:
    ha = cfg.ha
    if ha is None:
        return
    yield from _duplicates(ha.interfaces, ("ha", "interfaces"), "interface")
    for i, p in enumerate(ha.home_prefixes):
        why = _unicast_problem(p.network_address)
        if why:
            yield Finding("consistency", ("ha", "home_prefixes", i), f"prefix {p} {why}")
        if p.prefixlen > 64:
            yield Finding(
                "consistency",
                ("ha", "home_prefixes", i),
                f"prefix {p} is longer than /64; stateless autoconfiguration and the home "
                "agents anycast address need a /64",
            )
    if ha.address is not None and not _in_any(ha.address, ha.home_prefixes):
        yield Finding(
            "consistency",
            ("ha", "address"),
            f"{ha.address} is not on any home prefix ({', '.join(map(str, ha.home_prefixes))})",
        )
    if (
        ha.binding_refresh_advice is not None
        and ha.binding_refresh_advice > ha.max_binding_lifetime
    ):
        yield Finding(
            "consistency",
            ("ha", "binding_refresh_advice"),
            "refresh advice is longer than max_binding_lifetime",
        )
    mpa = ha.mobile_prefix_advertisements
    if mpa.min_interval > mpa.max_interval:
        yield Finding(
            "consistency",
            ("ha", "mobile_prefix_advertisements", "min_interval"),
            "min_interval is larger than max_interval",
        )
    first: dict[IPv6Address, int] = {}
    for i, mn in enumerate(ha.mobile_nodes):
        path: KeyPath = ("ha", "mobile_nodes", i)
        hoa = mn.home_address
        why = _unicast_problem(hoa)
        if why:
            yield Finding("consistency", (*path, "home_address"), f"{hoa} {why}")
        elif not _in_any(hoa, ha.home_prefixes):
            yield Finding(
                "consistency",
                (*path, "home_address"),
                f"{hoa} is not inside a home prefix ({', '.join(map(str, ha.home_prefixes))})",
            )
        elif any(hoa == p.network_address for p in ha.home_prefixes):
            yield Finding(
                "consistency",
                (*path, "home_address"),
                f"{hoa} is the subnet-router anycast address of its prefix",
            )
        if ha.address is not None and hoa == ha.address:
            yield Finding("consistency", (*path, "home_address"), "is the home agent's own address")
        if hoa in first:
            yield Finding(
                "conflict",
                (*path, "home_address"),
                f"home address {hoa} is already given to a mobile node at "
                f"{where(('ha', 'mobile_nodes', first[hoa], 'home_address'))}",
            )
        else:
            first[hoa] = i
        if mn.ipsec is not None and mn.ipsec not in cfg.ipsec:
            yield _missing_template((*path, "ipsec"), mn.ipsec, cfg)
        if ha.require_ipsec and mn.ipsec is None:
            yield Finding(
                "consistency",
                path,
                f"mobile node {hoa} has no ipsec template but ha.require_ipsec is true",
            )
        if mn.mobile_network_prefixes and not ha.accept_mobile_routers:
            yield Finding(
                "consistency",
                (*path, "mobile_network_prefixes"),
                "mobile network prefixes need ha.accept_mobile_routers = true",
            )
        for j, mnp in enumerate(mn.mobile_network_prefixes):
            if ha.served_prefixes and not any(mnp.subnet_of(s) for s in ha.served_prefixes):
                yield Finding(
                    "consistency",
                    (*path, "mobile_network_prefixes", j),
                    f"{mnp} is outside ha.served_prefixes",
                )


def _missing_template(path: KeyPath, name: str, cfg: Mip6Config) -> Finding:
    known = ", ".join(sorted(cfg.ipsec)) or "none defined"
    return Finding("reference", path, f"no [ipsec.{name}] template (known: {known})")


def _mobile_node(cfg: Mip6Config) -> Iterator[Finding]:
    mn = cfg.mn
    if mn is None:
        return
    hoa = mn.home_address
    why = _unicast_problem(hoa.ip)
    if why:
        yield Finding("consistency", ("mn", "home_address"), f"{hoa.ip} {why}")
    if hoa.ip == hoa.network.network_address:
        yield Finding(
            "consistency",
            ("mn", "home_address"),
            f"{hoa.ip} is the subnet-router anycast address of {hoa.network}",
        )
    if hoa.network.prefixlen > 64:
        yield Finding(
            "consistency",
            ("mn", "home_address"),
            f"home prefix {hoa.network} is longer than /64",
        )
    if isinstance(mn.home_agent, IPv6Address):
        if mn.home_agent not in hoa.network:
            yield Finding(
                "consistency",
                ("mn", "home_agent"),
                f"home agent {mn.home_agent} is not on the home prefix {hoa.network}",
            )
        if mn.home_agent == hoa.ip:
            yield Finding("consistency", ("mn", "home_agent"), "is the home address itself")
    yield from _duplicates([i.name for i in mn.interfaces], ("mn", "interfaces"), "interface")
    if mn.ipsec is not None and mn.ipsec not in cfg.ipsec:
        yield _missing_template(("mn", "ipsec"), mn.ipsec, cfg)
    t = mn.timers
    for name in ("initial_bindack_timeout", "initial_bindack_timeout_first_registration"):
        if getattr(t, name) > t.max_bindack_timeout:
            yield Finding(
                "consistency", ("mn", "timers", name), "is larger than max_bindack_timeout"
            )
    if mn.mobile_network_prefixes and not mn.mobile_router:
        yield Finding(
            "consistency",
            ("mn", "mobile_network_prefixes"),
            "mobile network prefixes need mn.mobile_router = true",
        )


def _ipsec(cfg: Mip6Config, base: Path, keys: dict[str, KeyInfo]) -> Iterator[Finding]:
    for name, tpl in cfg.ipsec.items():
        yield from _template(name, tpl, base, keys)


def _template(
    name: str, tpl: IpsecTemplate, base: Path, keys: dict[str, KeyInfo]
) -> Iterator[Finding]:
    path: KeyPath = ("ipsec", name)
    if tpl.key_management == "manual":
        if tpl.authentication is None:
            yield Finding(
                "consistency",
                path,
                "manual keying needs [authentication]: RFC 3776 requires ESP with integrity",
            )
        if tpl.spi is None:
            yield Finding("consistency", path, "manual keying needs spi = { to_ha, to_mn }")
        elif tpl.spi.to_ha == tpl.spi.to_mn:
            yield Finding("consistency", (*path, "spi"), "to_ha and to_mn must differ")
    for section in ("encryption", "authentication"):
        alg = getattr(tpl, section)
        if alg is None:
            continue
        spath: KeyPath = (*path, section, "key_file")
        if tpl.key_management == "ike":
            if alg.key_file is not None:
                yield Finding(
                    "consistency",
                    spath,
                    "key files are for manual keying; with key_management = 'ike' the IKE "
                    "daemon owns the keys",
                )
            continue
        if alg.algorithm == "null":
            continue
        if alg.key_file is None:
            yield Finding("consistency", spath, f"{alg.algorithm} needs a key_file")
            continue
        try:
            info = key_info(alg.key_file, alg.algorithm, base=base)
        except KeyFileError as e:
            yield Finding("key-file", spath, str(e))
            continue
        bits = getattr(alg, "key_bits", None)
        if bits is not None and bits != info.length * 8 - (32 if alg.algorithm == "aes-ctr" else 0):
            yield Finding(
                "key-file", spath, f"key_bits = {bits} but the key file holds another size"
            )
            continue
        keys[f"ipsec.{name}.{section}"] = info


def _daemon(cfg: Mip6Config) -> Iterator[Finding]:
    for key in ("state_dir", "control_socket"):
        if not getattr(cfg.daemon, key).is_absolute():
            yield Finding("consistency", ("daemon", key), "must be an absolute path")
    if (
        cfg.ha is not None
        and cfg.ha.binding_cache is not None
        and not cfg.ha.binding_cache.is_absolute()
    ):
        yield Finding("consistency", ("ha", "binding_cache"), "must be an absolute path")
