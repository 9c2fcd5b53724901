"""Rules that span fields or files, checked after the schema accepted the shape.

Each rule yields a `Finding` with the key path it is about, so the loader can
point at the file and line where that key was written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from itertools import chain, islice
from pathlib import Path

from mip6ctl.config.ipsec_needs import TRANSPORT_KINDS, TUNNEL_KINDS
from mip6ctl.config.model import HaSection, IpsecTemplate, Mip6Config, Role
from mip6ctl.config.problems import KeyPath, format_path
from mip6ctl.config.secrets import KeyFileError, KeyInfo, key_info, read_psk


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    path: KeyPath
    message: str


Where = Callable[[KeyPath], str]


def _unicast_problem(addr: IPv6Address) -> str | None:
    x = int(addr)  # integer tests: ipaddress's properties cost µs each, ×20,000 nodes
    if x >> 120 == 0xFF:  # ff00::/8
        return "is a multicast address"
    if x >> 118 == 0xFE80 >> 6:  # fe80::/10
        return "is link-local; a global (or unique local) address is needed"
    if x <= 1:  # :: and ::1
        return "is not a unicast routable address"
    return None


def named_interfaces(cfg: Mip6Config) -> list[tuple[KeyPath, str]]:
    """(key path, interface name) of every interface the configuration names."""
    out: list[tuple[KeyPath, str]] = []
    if cfg.ha is not None:
        out += [(("ha", "interfaces", i), n) for i, n in enumerate(cfg.ha.interfaces)]
    if cfg.mn is not None:
        out += [(("mn", "interfaces", i), m.name) for i, m in enumerate(cfg.mn.interfaces)]
    return out


def _overlaps(prefixes: list[tuple[IPv6Network, KeyPath, str]], where: Where) -> Iterator[Finding]:
    """Prefixes that are equal or contain one another, each against the first it meets.

    Sorted by first address, then length, a prefix overlaps an earlier one
    exactly when it starts inside the furthest-reaching one seen (prefixes
    nest or are disjoint): O(n log n), not the O(n²) of comparing pairs.
    The finding is at the one written later, and names the other.
    """
    order = sorted(
        range(len(prefixes)),
        key=lambda i: (int(prefixes[i][0].network_address), prefixes[i][0].prefixlen, i),
    )
    cover: int | None = None
    for i in order:
        net = prefixes[i][0]
        if cover is None or int(net.network_address) > int(prefixes[cover][0].broadcast_address):
            cover = i
            continue
        first, later = sorted((cover, i))
        (a, a_path, a_what), (b, b_path, b_what) = prefixes[first], prefixes[later]
        there = f"{a_what} {a} at {where(a_path)} ({format_path(a_path)})"
        if a == b:
            msg = f"{b_what} {b} is the same prefix as {there}"
        else:
            relation = "lies inside" if b.prefixlen > a.prefixlen else "contains"
            msg = f"{b_what} {b} {relation} {there}; prefixes must not overlap"
        yield Finding("conflict", b_path, msg)


def check(
    cfg: Mip6Config, base: Path, where: Where, limit: int | None = None
) -> tuple[list[Finding], dict[str, KeyInfo]]:
    """All cross-field findings (the first `limit`), plus the fingerprints of the key
    files that checked out."""
    keys: dict[str, KeyInfo] = {}
    every = chain(
        _roles(cfg),
        _home_agent(cfg, where),
        _mobile_node(cfg, where),
        _ipsec(cfg, base, keys, where),
        _daemon(cfg),
    )
    return list(islice(every, limit)), keys


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
    if ha.default_action == "allow" and not ha.require_ipsec and not ha.insecure_allow_unprotected:
        yield Finding(
            "consistency",
            ("ha", "default_action"),
            "'allow' without IPsec (ha.require_ipsec is false): an unprotected home agent "
            "accepts forged Binding Updates from anyone who can reach it, for every home "
            "address of its prefixes; list the mobile nodes and keep 'deny', set "
            "ha.require_ipsec = true, or accept that risk with "
            "ha.insecure_allow_unprotected = true",
        )
    yield from _overlaps(
        [(p, ("ha", "home_prefixes", i), "home prefix") for i, p in enumerate(ha.home_prefixes)],
        where,
    )
    yield from _mobile_nodes(cfg, ha, where)


def _mobile_nodes(cfg: Mip6Config, ha: HaSection, where: Where) -> Iterator[Finding]:
    """The [[ha.mobile_nodes]] entries: one pass, integer tests (there may be 20,000)."""
    prefixes = ", ".join(map(str, ha.home_prefixes))
    # home prefix membership as set look-ups: {(length, address >> (128 - length))}
    lengths = sorted({p.prefixlen for p in ha.home_prefixes})
    homes = {(p.prefixlen, int(p.network_address) >> (128 - p.prefixlen)) for p in ha.home_prefixes}
    anycast = {int(p.network_address) for p in ha.home_prefixes}
    own = int(ha.address) if ha.address is not None else None
    first: dict[int, int] = {}
    template_user: dict[str, int] = {}  # template -> first mobile node using it
    network_prefixes: list[tuple[IPv6Network, KeyPath, str]] = []
    for i, mn in enumerate(ha.mobile_nodes):
        path: KeyPath = ("ha", "mobile_nodes", i)
        hoa = mn.home_address
        x = int(hoa)
        why = _unicast_problem(hoa)
        if why:
            yield Finding("consistency", (*path, "home_address"), f"{hoa} {why}")
        elif not any((n, x >> (128 - n)) in homes for n in lengths):
            yield Finding(
                "consistency",
                (*path, "home_address"),
                f"{hoa} is not inside a home prefix ({prefixes})",
            )
        elif x in anycast:
            yield Finding(
                "consistency",
                (*path, "home_address"),
                f"{hoa} is the subnet-router anycast address of its prefix",
            )
        if x == own:
            yield Finding("consistency", (*path, "home_address"), "is the home agent's own address")
        if x in first:
            yield Finding(
                "conflict",
                (*path, "home_address"),
                f"home address {hoa} is already given to a mobile node at "
                f"{where(('ha', 'mobile_nodes', first[x], 'home_address'))}",
            )
        else:
            first[x] = i
        if mn.ipsec is not None:
            tpl = cfg.ipsec.get(mn.ipsec)
            if tpl is None:
                yield _missing_template((*path, "ipsec"), mn.ipsec, cfg)
            elif mn.ipsec in template_user:
                other = ("ha", "mobile_nodes", template_user[mn.ipsec], "ipsec")
                if tpl.key_management == "manual":
                    why = (
                        "has manual keys and is already used by the mobile node at "
                        f"{where(other)} ({format_path(other)}); its SPIs identify the SAs of "
                        "one mobile node"
                    )
                else:
                    why = (
                        "uses IKE and is already used by the mobile node at "
                        f"{where(other)} ({format_path(other)}); charon's migrate job moves "
                        "every IKE SA with a CHILD_SA of the migrated reqid, so nodes sharing "
                        "a template's reqids would all move to one node's care-of address"
                    )
                yield Finding(
                    "conflict",
                    (*path, "ipsec"),
                    f"template {mn.ipsec} {why}, so give each node its own template",
                )
            else:
                template_user[mn.ipsec] = i
        if ha.require_ipsec and mn.ipsec is None:
            yield Finding(
                "consistency",
                path,
                f"mobile node {hoa} has no ipsec template but ha.require_ipsec is true",
            )
        if not mn.mobile_network_prefixes:
            continue
        if not ha.accept_mobile_routers:
            yield Finding(
                "consistency",
                (*path, "mobile_network_prefixes"),
                "mobile network prefixes need ha.accept_mobile_routers = true",
            )
        for j, mnp in enumerate(mn.mobile_network_prefixes):
            mpath: KeyPath = (*path, "mobile_network_prefixes", j)
            network_prefixes.append((mnp, mpath, "mobile network prefix"))
            if ha.served_prefixes and not any(mnp.subnet_of(s) for s in ha.served_prefixes):
                yield Finding("consistency", mpath, f"{mnp} is outside ha.served_prefixes")
    if network_prefixes:  # a mobile network inside a home prefix would be proxied and routed
        homes_listed = [
            (p, ("ha", "home_prefixes", k), "home prefix") for k, p in enumerate(ha.home_prefixes)
        ]
        network_prefixes = homes_listed + network_prefixes
    yield from _overlaps(network_prefixes, where)


def _missing_template(path: KeyPath, name: str, cfg: Mip6Config) -> Finding:
    known = ", ".join(sorted(cfg.ipsec)) or "none defined"
    return Finding("reference", path, f"no [ipsec.{name}] template (known: {known})")


def _mobile_node(cfg: Mip6Config, where: Where) -> Iterator[Finding]:
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
    for i, c in enumerate(mn.correspondents):
        if c.route_optimization == "always" and c.prefix.prefixlen != 128:
            yield Finding(
                "consistency",
                ("mn", "correspondents", i, "route_optimization"),
                f'"always" registers one correspondent, {c.prefix} is a prefix: use a '
                '/128, or "on-traffic"',
            )
    if mn.ipsec is not None and mn.ipsec not in cfg.ipsec:
        yield _missing_template(("mn", "ipsec"), mn.ipsec, cfg)
    tpl = cfg.ipsec.get(mn.ipsec) if mn.ipsec is not None else None
    if tpl is not None and tpl.key_management != "ike" and mn.home_agent == "dhaad":
        yield Finding(
            "consistency",
            ("mn", "home_agent"),
            "'dhaad' with manually keyed IPsec is not supported (the SAs name the home "
            "agent's address): set the home agent's address, or key_management = 'ike'",
        )
    t = mn.timers
    for name in ("initial_bindack_timeout", "initial_bindack_timeout_first_registration"):
        if getattr(t, name) > t.max_bindack_timeout:
            yield Finding(
                "consistency", ("mn", "timers", name), "is larger than max_bindack_timeout"
            )
    yield from _overlaps(
        [
            (p, ("mn", "mobile_network_prefixes", i), "mobile network prefix")
            for i, p in enumerate(mn.mobile_network_prefixes)
        ],
        where,
    )
    if mn.mobile_network_prefixes and not mn.mobile_router:
        yield Finding(
            "consistency",
            ("mn", "mobile_network_prefixes"),
            "mobile network prefixes need mn.mobile_router = true",
        )
    if mn.mobile_router and cfg.kernel.tunnel == "seg6":
        yield Finding(
            "consistency",
            ("kernel", "tunnel"),
            "a mobile router needs tunnel = 'ip6tnl' (or 'auto'): seg6 End.DT6 "
            "decapsulates into one table, which cannot both deliver to the home address "
            "and forward to the mobile network",
        )
    for i, p in enumerate(mn.mobile_network_prefixes):
        if p.overlaps(mn.home_address.network):
            yield Finding(
                "consistency",
                ("mn", "mobile_network_prefixes", i),
                f"mobile network prefix {p} overlaps the home prefix {mn.home_address.network}",
            )


def _ipsec(
    cfg: Mip6Config, base: Path, keys: dict[str, KeyInfo], where: Where
) -> Iterator[Finding]:
    if not cfg.ipsec:
        return
    used: set[str] = set()
    if cfg.ha is not None:
        used.update(m.ipsec for m in cfg.ha.mobile_nodes if m.ipsec is not None)
    if cfg.mn is not None and cfg.mn.ipsec is not None:
        used.add(cfg.mn.ipsec)
    psks: dict[Path, str | None] = {}  # PSK file -> its problem, read once
    for name, tpl in cfg.ipsec.items():
        yield from _template(name, tpl, base, keys)
        if tpl.key_management == "ike":
            yield from _ike_template(name, tpl, base, psks, where)
        if name not in used:
            yield Finding(
                "reference",
                ("ipsec", name),
                f"template {name} is used by no mobile node: reference it from "
                "ha.mobile_nodes[].ipsec or mn.ipsec, or remove it",
            )
    yield from _spi_collisions(cfg, where)
    yield from _reqid_collisions(cfg, where)


def _repeats(
    cfg: Mip6Config, fields: tuple[str, str], same: int
) -> Iterator[tuple[int, KeyPath, KeyPath]]:
    """(value, path, first path) for each value of the templates' `fields` pairs seen
    before at a path that differs from this one in its first `same` elements."""
    first: dict[int, KeyPath] = {}
    for name, tpl in cfg.ipsec.items():
        for field in fields:
            pair = getattr(tpl, field)
            if pair is None:
                continue
            for side in ("to_ha", "to_mn"):
                value = getattr(pair, side)
                path: KeyPath = ("ipsec", name, field, side)
                seen = first.setdefault(value, path)
                if seen[:same] != path[:same]:
                    yield value, path, seen


def _spi_collisions(cfg: Mip6Config, where: Where) -> Iterator[Finding]:
    """An SPI (of spi or tunnel_spi, any template) given to two SAs: each names the first.

    to_ha = to_mn within one pair is the pair's own finding ("must differ"), not repeated.
    """
    for value, path, seen in _repeats(cfg, ("spi", "tunnel_spi"), 3):
        yield Finding(
            "conflict",
            path,
            f"SPI {value:#x} ({value}) is already used at {where(seen)} "
            f"({format_path(seen)}); every SA needs an SPI of its own",
        )


def _reqid_collisions(cfg: Mip6Config, where: Where) -> Iterator[Finding]:
    """A reqid (of reqid or tunnel_reqid) in two templates: their policies and SAs would
    match each other's.  Within one template sharing is fine (tunnel_reqid defaults to
    reqid, and both directions of a pair may share one, as strongSwan does)."""
    for value, path, seen in _repeats(cfg, ("reqid", "tunnel_reqid"), 2):
        yield Finding(
            "conflict",
            path,
            f"reqid {value} is already used by template {seen[1]} at {where(seen)} "
            f"({format_path(seen)}); fixed reqids must be unique to a template so "
            "that its policies and SAs match only each other",
        )


def _ike_template(
    name: str, tpl: IpsecTemplate, base: Path, psks: dict[Path, str | None], where: Where
) -> Iterator[Finding]:
    """The rules of the strongSwan generator (`mip6ctl.ike.swanctl`), found at validate
    time instead of when the daemon loads the connections into charon."""
    path: KeyPath = ("ipsec", name)
    if tpl.psk_file is None:
        yield Finding(
            "consistency",
            path,
            "key_management = 'ike' needs psk_file: the pre-shared key both ends "
            "authenticate with (hexadecimal text, 128 to 2048 bits, mode 0600)",
        )
    else:
        full = tpl.psk_file if tpl.psk_file.is_absolute() else base / tpl.psk_file
        if full not in psks:
            try:
                read_psk(full)
                psks[full] = None
            except KeyFileError as e:
                psks[full] = str(e)
        problem = psks[full]
        if problem is not None:
            yield Finding("key-file", (*path, "psk_file"), problem)
    kinds = set(tpl.protect)
    both = bool(kinds & TRANSPORT_KINDS) and bool(kinds & TUNNEL_KINDS)
    if tpl.reqid is None:
        more = (
            " and tunnel_reqid = { to_ha, to_mn } (the tunnel CHILD_SA needs its own)"
            if both and tpl.tunnel_reqid is None
            else ""
        )
        yield Finding(
            "consistency",
            path,
            f"key_management = 'ike' needs fixed reqids: reqid = {{ to_ha, to_mn }}{more}, "
            "so that mip6ctl's policies and charon's SAs match whatever starts first",
        )
        return
    equal = True
    for field in ("reqid", "tunnel_reqid"):
        pair = getattr(tpl, field)
        if pair is not None and pair.to_ha != pair.to_mn:
            equal = False
            yield Finding(
                "consistency",
                (*path, field),
                "with key_management = 'ike' to_ha and to_mn must be equal: charon gives "
                "both SAs of a CHILD_SA one reqid",
            )
    if not both:
        return
    if tpl.tunnel_reqid is None:
        transport = ", ".join(str(p) for p in tpl.protect if p in TRANSPORT_KINDS)
        tunnel = ", ".join(str(p) for p in tpl.protect if p in TUNNEL_KINDS)
        yield Finding(
            "consistency",
            path,
            f"key_management = 'ike' with transport-mode ({transport}) and tunnel-mode "
            f"({tunnel}) protection needs tunnel_reqid = {{ to_ha, to_mn }}, different from "
            "reqid: the tunnel CHILD_SA needs a reqid of its own, since charon's migrate job "
            "finds a CHILD_SA by reqid",
        )
    elif equal and tpl.tunnel_reqid.to_ha == tpl.reqid.to_ha:
        there: KeyPath = (*path, "reqid")
        yield Finding(
            "consistency",
            (*path, "tunnel_reqid"),
            f"reqid {tpl.reqid.to_ha} is also the transport CHILD_SA's, at {where(there)} "
            f"({format_path(there)}); with key_management = 'ike' the tunnel CHILD_SA needs "
            "a reqid of its own, since charon's migrate job finds a CHILD_SA by reqid",
        )


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
        tunnelled = [str(p) for p in tpl.protect if p in TUNNEL_KINDS]
        if tunnelled and tpl.tunnel_spi is None:
            yield Finding(
                "consistency",
                path,
                f"manual keying with tunnel-mode protection ({', '.join(tunnelled)}) needs "
                "tunnel_spi = { to_ha, to_mn }: the tunnel-mode SAs need SPIs of their own, "
                "different from spi's",
            )
    if tpl.tunnel_spi is not None and tpl.tunnel_spi.to_ha == tpl.tunnel_spi.to_mn:
        yield Finding("consistency", (*path, "tunnel_spi"), "to_ha and to_mn must differ")
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
