"""render(): the kernel state a configuration and its live bindings require.

Pure: same (configuration, bindings, capabilities, host facts) in, same
objects out, each tagged with its origin — the configuration key or the
binding that wants it — so that a plan can say *why* (DESIGN.md invariant 2).
Nothing here reads the kernel or a file.

What each role needs on a kernel with the seg6 backend (the ip6tnl backend
swaps the encap route for a device per care-of address):

home agent, static (origin: config)
    forwarding on; proxy_ndp on every home link; a rule sending traffic for
    the home prefixes to the binding table (`to PREFIX lookup T`); the
    decapsulation rule and route for tunnelled packets sent to the HA address
    (`to HA ipproto 41 lookup T+1` + `HA encap seg6local End.DT6 table main`),
    with the kernel's local rule moved behind them (see kernel/seg6.py); XFRM
    transport-mode policies for mobile nodes whose BU/BA are IPsec-protected;
    on the seg6 backend the RFC 6275 §10.4.5 reverse-tunnel check (an owned
    nf_tables set of (care-of, home) pairs and a chain dropping IPv6-in-IPv6
    to the HA address whose pair is not in it).
home agent, per binding (origin: binding HoA)
    `HoA/128 encap seg6 encap.red segs CoA` in T (the tunnel), a proxy
    neighbour for HoA on its home link (the defence of the home address), and
    the (CoA, HoA) element of the reverse-tunnel set (seg6 backend).
every role, by signalling transport (origin: config kernel.signalling)
    userspace: nf_tables chains that keep the kernel from answering the
    Mobility Headers the transport captured; kernel: UMIP's wildcard hao /
    route2 XFRM states and inbound Mobility Header policy, without which a
    MIP6 kernel drops every BU with a Home Address option.
mobile node, away from home (origin: binding HoA)
    the home address on the current interface (IFA_F_HOMEADDRESS, no DAD), a
    rule `from HoA lookup T` and `::/0 encap seg6 segs HA` in T (reverse
    tunnel), the decapsulation rule/route for packets tunnelled to the
    care-of address (End.DT6 into the local table), the seg6 tunnel source
    (the care-of address; `::` at home) and a host route to the home agent
    through the router the move was detected from.
correspondent node, per binding (origin: binding HoA; kernels with route2/hao)
    XFRM route optimisation (see `render_correspondent_binding`): packets to
    the home address leave for the care-of address with a type 2 routing
    header, packets from the care-of address with a Home Address option are
    accepted as coming from the home address.  Nothing on a kernel without
    route-optimisation states: traffic keeps going through the home agent.
mobile node, per route-optimised correspondent: the mirror image (hao out,
    route2 in), see `_mn_route_optimisation`.

Every key is a tuple whose first element names the kind (`route`, `rule`,
..., `xfrm-policy`) — `object_key()` makes one for any object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Any, Literal, Protocol

from mip6ctl import ownership
from mip6ctl.config.model import KernelSection, Mip6Config, Role
from mip6ctl.state import ipsec
from mip6ctl.state.ipsec import Retiring, TemplateKeys
from mip6ctl.state.objects import (
    IFA_F_HOMEADDRESS,
    IFA_F_NODAD,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    Address,
    Neighbour,
    NftChain,
    NftSet,
    NftSetElement,
    ProxyNeighbour,
    Route,
    Rule,
    Seg6Encap,
    Seg6LocalDecap,
    Seg6TunnelSource,
    Sysctl,
    Tunnel,
)
from mip6ctl.state.plan import Origin
from mip6ctl.state.xfrm import (
    OWNED_MARK,
    Direction,
    Level,
    Mode,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmTemplate,
)
from mip6ctl.wire.icmp6 import home_agents_anycast

IPPROTO_IPV6 = 41
MH_BU = 5
MH_BA = 6

#: the kernel's default `lookup local` rule, which the seg6 backend moves
DEFAULT_LOCAL_RULE = Rule(priority=0, table=RT_TABLE_LOCAL, protocol=RTPROT_KERNEL)


class BindingLike(Protocol):
    """What render needs of a binding cache entry (engine.binding.Binding fits)."""

    @property
    def home_address(self) -> IPv6Address: ...
    @property
    def care_of_address(self) -> IPv6Address: ...
    @property
    def defended_link_local(self) -> IPv6Address | None:
        """The mobile node's link-local address when its BU had L = 1 (§10.4.1)."""
        ...


@dataclass(frozen=True, slots=True)
class MobileNodeView:
    """Where a mobile node is: at home (care_of_address None) or away on `ifname`."""

    home_address: IPv6Interface
    #: None: ``home_agent = "dhaad"`` and none found yet (no reverse tunnel until then)
    home_agent: IPv6Address | None
    care_of_address: IPv6Address | None = None
    ifname: str | None = None
    #: (correspondent address, care-of address registered with it): route-optimised peers
    correspondents: tuple[tuple[IPv6Address, IPv6Address], ...] = ()
    #: the router the move was detected from: the home agent is reached through it at
    #: once, instead of after neighbour unreachability detection gives up on the old one
    router: IPv6Address | None = None
    #: route optimisation on traffic: the trigger policy whose ACQUIREs start it
    traffic_trigger: bool = False
    #: returning home (RFC 6275 §11.5.5): the home agent's link-layer address, resolved
    #: from ``::`` by the daemon, as a static neighbour entry until the de-registration's
    #: Binding Acknowledgement (the kernel would solicit it from the home address)
    home_agent_lladdr: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The kernel features render may use, already resolved against `[kernel]`."""

    tunnel: Literal["seg6", "ip6tnl"] = "seg6"
    route_optimization: bool = False
    esp: bool = False
    #: XFRM_MSG_MIGRATE moves tunnel-mode SAs and templates (else delete + add)
    migrate: bool = False
    proxy_ndp: bool = True
    #: the signalling transport's kernel objects to render (None: none, e.g. unit tests)
    signalling: Literal["kernel", "userspace"] | None = None
    #: nf_tables objects may be rendered (the §10.4.5 reverse-tunnel check)
    nftables: bool = False

    @classmethod
    def resolve(
        cls,
        available: Mapping[str, bool | None],
        kernel: KernelSection,
        *,
        mobile_router: bool = False,
    ) -> Capabilities:
        """Choose backends from probe results (`mip6ctl doctor` names) and `[kernel]`.

        ``mobile_router``: auto always takes ip6tnl -- End.DT6 decapsulates into one
        table, and a mobile router needs both local delivery (its home address) and
        forwarding (its mobile network) for what the home agent tunnels to it."""
        want = kernel.tunnel
        has_ip6tnl = bool(available.get("ip6tnl"))
        # With neither backend, auto takes ip6tnl: it needs no static objects (seg6
        # needs a decap rule and route at start), so static state and signalling come
        # up and only each binding's tunnel fails (tunnel_problem says why).
        no_seg6 = _lacks_seg6(available)
        tunnel: Literal["seg6", "ip6tnl"] = (
            "ip6tnl"
            if want == "ip6tnl"
            or (want == "auto" and (has_ip6tnl or no_seg6 or mobile_router))
            else "seg6"
        )
        defence = kernel.home_address_defence
        mip6 = bool(available.get("mip6"))
        signalling: Literal["kernel", "userspace"] = (
            "kernel"
            if kernel.signalling == "kernel" or (kernel.signalling == "auto" and mip6)
            else "userspace"
        )
        return cls(
            signalling=signalling,
            nftables=available.get("nftables", True) is not False,
            tunnel=tunnel,
            route_optimization=bool(available.get("mip6")),
            esp=bool(available.get("esp")),
            migrate=bool(available.get("migrate")),
            proxy_ndp=defence != "daemon" and available.get("proxy_ndp", True) is not False,
        )


def _lacks_seg6(available: Mapping[str, bool | None]) -> bool:
    """The probe found the seg6 encap or its decapsulation missing (not merely unprobed)."""
    return available.get("seg6") is False or available.get("seg6local") is False


def is_mobile_router(cfg: Mip6Config) -> bool:
    return cfg.node.role == Role.MN and cfg.mn is not None and cfg.mn.mobile_router


def tunnel_problem(
    available: Mapping[str, bool | None], kernel: KernelSection, *, mobile_router: bool = False
) -> str | None:
    """Why the tunnel backend `[kernel] tunnel` resolves to cannot run here, or None.

    Only a capability the probe found missing (False) counts: one it could not
    probe (None) is given the benefit of the doubt, the executor reports it.
    """
    no_ip6tnl = available.get("ip6tnl") is False
    no_seg6 = _lacks_seg6(available)
    if mobile_router and no_ip6tnl and kernel.tunnel != "seg6":
        return (
            "a mobile router tunnels with ip6tnl only, and this kernel has no ip6tnl "
            "(CONFIG_IPV6_TUNNEL; `modprobe ip6_tunnel`): the home registration works, "
            "but neither the home address nor the mobile network is reachable away from home"
        )
    if kernel.tunnel == "auto" and no_ip6tnl and no_seg6:
        return (
            "tunnel = auto: no ip6tnl (CONFIG_IPV6_TUNNEL; `modprobe ip6_tunnel`) and no "
            "seg6 lwtunnel (CONFIG_IPV6_SEG6_LWTUNNEL): this kernel has no IPv6-in-IPv6 "
            "data path. Signalling and static state still come up (auto takes ip6tnl, "
            "which needs no static objects); each binding's tunnel fails"
        )
    if kernel.tunnel == "ip6tnl" and no_ip6tnl:
        return (
            "tunnel = ip6tnl, but the kernel has no ip6tnl (CONFIG_IPV6_TUNNEL; "
            "`modprobe ip6_tunnel`): each binding's tunnel fails"
        )
    if kernel.tunnel == "seg6" and no_seg6:
        return (
            "tunnel = seg6, but the kernel has no seg6 lwtunnel (CONFIG_IPV6_SEG6_LWTUNNEL): "
            "the decapsulation route and each binding's tunnel fail"
        )
    return None


@dataclass(frozen=True, slots=True)
class HostFacts:
    """Facts about the host render needs but cannot derive from configuration."""

    #: this node's own address on the home link (HA) when [ha].address is not set
    home_agent_address: IPv6Address | None = None
    #: manual IPsec keys per [ipsec.NAME] template, read from the key files by the
    #: caller (`config.secrets.template_keys`); compared and shown by digest only
    ipsec_keys: tuple[tuple[str, TemplateKeys], ...] = ()
    #: templates in a key rotation: their previous SAs and the phase (`state.ipsec.Retiring`)
    retiring: tuple[tuple[str, Retiring], ...] = ()

    def keys_of(self, template: str) -> TemplateKeys | None:
        for name, keys in self.ipsec_keys:
            if name == template:
                return keys
        return None

    def retiring_of(self, template: str) -> Retiring | None:
        for name, r in self.retiring:
            if name == template:
                return r
        return None

    @classmethod
    def observe(cls, cfg: Mip6Config, objects: Iterable[Any]) -> HostFacts:
        """Facts from the kernel's addresses: the HA address is `[ha].address`, else the
        first global address inside a home prefix on a home link (links in configured order)."""
        if cfg.ha is None:
            return cls()
        if cfg.ha.address is not None:
            return cls(home_agent_address=cfg.ha.address)
        addresses = [o for o in objects if isinstance(o, Address)]
        for ifname in cfg.ha.interfaces:
            for obj in addresses:
                if obj.ifname == ifname:
                    addr = IPv6Address(obj.address)
                    if any(addr in p for p in cfg.ha.home_prefixes):
                        return cls(home_agent_address=addr)
        return cls()

    def with_keys(self, keys: Mapping[str, TemplateKeys]) -> HostFacts:
        return dataclasses.replace(self, ipsec_keys=tuple(sorted(keys.items())))

    def with_retiring(self, retiring: Mapping[str, Retiring]) -> HostFacts:
        return dataclasses.replace(self, retiring=tuple(sorted(retiring.items())))


@dataclass
class Desired:
    """Objects by key, the origin of each, and why something could not be rendered."""

    objects: dict[tuple, Any] = field(default_factory=dict)
    origins: dict[tuple, Origin] = field(default_factory=dict)
    #: foreign objects that must be gone once the owned ones exist (the local rule)
    takeovers: dict[tuple, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, obj: Any, origin: Origin) -> None:
        key = object_key(obj)
        self.objects[key] = obj
        self.origins.setdefault(key, origin)

    def merge(self, other: Desired) -> None:
        for key, obj in other.objects.items():
            self.objects[key] = obj
            self.origins.setdefault(key, other.origins[key])
        self.takeovers.update(other.takeovers)
        self.problems.extend(other.problems)


def object_key(obj: Any) -> tuple:
    """A tuple key for any kernel object, its kind first (XFRM keys are wrapped)."""
    if isinstance(obj, XfrmPolicy):
        return ("xfrm-policy", obj.key)
    if isinstance(obj, XfrmState):
        return ("xfrm-state", obj.key)
    return obj.key


def _text(addr: IPv6Address) -> str:
    """Canonical text of an address; `inet_ntop` is what the objects normalise to
    anyway and ~20x faster than `str(IPv6Address)` (render of 100k bindings)."""
    return socket.inet_ntop(socket.AF_INET6, addr.packed)


def binding_table(cfg: Mip6Config) -> int:
    return cfg.kernel.route_table


def decap_table(cfg: Mip6Config) -> int:
    """Table of the decapsulation route; must differ from the binding table, whose
    rule matches all traffic to home prefixes and would decapsulate anything."""
    return cfg.kernel.route_table + 1


def _prio(cfg: Mip6Config, offset: int) -> int:
    return cfg.kernel.rule_priority + offset


def _moved_local_rule(cfg: Mip6Config) -> Rule:
    return Rule(priority=_prio(cfg, 99), table=RT_TABLE_LOCAL)


def tunnel_name(care_of: IPv6Address) -> str:
    """Deterministic ip6tnl name per care-of address (≤ 15 characters)."""
    return ownership.TUNNEL_PREFIX + hashlib.sha1(care_of.packed).hexdigest()[:10]


# --------------------------------------------------------------------------- entry points


def render(
    cfg: Mip6Config,
    bindings: Iterable[BindingLike] = (),
    caps: Capabilities | None = None,
    facts: HostFacts | None = None,
    *,
    mobile_node: MobileNodeView | None = None,
) -> Desired:
    """Everything the configuration and live bindings require."""
    caps = caps or Capabilities()
    facts = facts or HostFacts()
    out = render_static(cfg, caps, facts)
    role = cfg.node.role
    if role == Role.HA:
        for b in bindings:
            if getattr(b, "home_registration", True):
                out.merge(render_binding(cfg, b, caps, facts))
            else:
                out.merge(render_correspondent_binding(cfg, b, caps))  # type: ignore[arg-type]
    elif role == Role.CN:
        for b in bindings:
            out.merge(render_correspondent_binding(cfg, b, caps))  # type: ignore[arg-type]
    elif role == Role.MN and mobile_node is not None:
        out.merge(render_mobile_node(cfg, mobile_node, caps, facts))
    return out


def home_agent_address(cfg: Mip6Config, facts: HostFacts) -> IPv6Address | None:
    if cfg.ha is not None and cfg.ha.address is not None:
        return cfg.ha.address
    return facts.home_agent_address


def render_static(cfg: Mip6Config, caps: Capabilities, facts: HostFacts) -> Desired:
    out = Desired()
    if cfg.node.role == Role.HA and cfg.ha is not None:
        _ha_static(cfg, caps, facts, out)
    elif cfg.node.role == Role.MN and cfg.mn is not None:
        _ipsec_mn(cfg, facts, out)
        _mobile_router_static(cfg, out)
    if caps.signalling == "userspace":
        _signalling_drop(out)
    elif caps.signalling == "kernel":
        _kernel_transport_wildcards(out)
    return out


# --------------------------------------------------------------------------- signalling transport
#
# nf_tables rules are named by (kind, argument); the kernel layer
# (kernel/nft_state.py) knows their expressions and the comment each carries.

NFT_HOOK_PREROUTING, NFT_HOOK_INPUT = 0, 1
NFT_PRIORITY_RAW = -300
CHAIN_SIGNALLING_PRE = "signalling_pre"
CHAIN_SIGNALLING_IN = "signalling_in"
CHAIN_REVERSE_TUNNEL = "reverse_tunnel"
REVERSE_TUNNEL_SET = "reverse_tunnel_bindings"
#: nft datatype of (ipv6_addr . ipv6_addr): (TYPE_IPV6ADDR << 6) | TYPE_IPV6ADDR
NFT_TYPE_IPV6_PAIR = (8 << 6) | 8
#: priority of the kernel transport's wildcard MH policy: the end of the owned band,
#: behind every more specific owned policy (RFC 3776 BU/BA, route optimisation)
WILDCARD_POLICY_PRIORITY = ownership.XFRM_PRIORITY_MAX - 0xF
#: xfrm.h: a state that may match any address (the wildcard hao/route2 states)
XFRM_STATE_WILDRECV = 8


def render_signalling(kind: Literal["kernel", "userspace"]) -> Desired:
    """Only the objects a signalling transport of `kind` needs (tests, benchmarks)."""
    out = Desired()
    (_signalling_drop if kind == "userspace" else _kernel_transport_wildcards)(out)
    return out


def _signalling_drop(out: Desired) -> None:
    """The userspace transport captured these at the link layer: the kernel must not
    answer them with a Parameter Problem (see kernel/nft.py for the rules)."""
    origin = Origin("config", "kernel.signalling")
    out.add(
        NftChain(
            CHAIN_SIGNALLING_PRE,
            NFT_HOOK_PREROUTING,
            NFT_PRIORITY_RAW,
            (("mh-to-local", ""), ("hao-to-local", ""), ("rh2-to-local", "")),
        ),
        origin,
    )
    out.add(
        NftChain(CHAIN_SIGNALLING_IN, NFT_HOOK_INPUT, NFT_PRIORITY_RAW, (("mh-decapsulated", ""),)),
        origin,
    )


def _kernel_transport_wildcards(out: Desired) -> None:
    """UMIP's xfrm_cn_init: wildcard route-optimisation states (flag wildrecv, the only
    way xfrm6_input_addr falls back to a wildcard) and an inbound MH policy with both as
    optional templates, so that signalling with a HAO or type 2 RH reaches the socket."""
    origin = Origin("config", "kernel.signalling")
    anyaddr, anynet = IPv6Address("::"), IPv6Network("::/0")
    for proto in (XfrmProto.HAO, XfrmProto.ROUTE2):
        out.add(
            XfrmState(
                anyaddr,
                anyaddr,
                proto,
                mode=Mode.RO,
                mark=OWNED_MARK,
                coaddr=anyaddr,
                flags=XFRM_STATE_WILDRECV,
            ),
            origin,
        )
    out.add(
        XfrmPolicy(
            XfrmSelector.mobility(anynet, anynet),
            Direction.IN,
            priority=WILDCARD_POLICY_PRIORITY,
            templates=tuple(
                XfrmTemplate(proto, Mode.RO, level=Level.USE)
                for proto in (XfrmProto.HAO, XfrmProto.ROUTE2)
            ),
        ),
        origin,
    )


def _reverse_tunnel_check(cfg: Mip6Config, ha_address: IPv6Address, out: Desired) -> None:
    """RFC 6275 §10.4.5 on the seg6 backend: End.DT6 decapsulates whatever is
    tunnelled to the HA address, so packets whose (outer source, inner source) is not
    (care-of, home address) of a binding are dropped before it.  A mobile router's
    packets come from its mobile network prefixes (RFC 3963): per prefix length
    L in use, a set of (care-of, prefix) pairs and a rule accepting a packet whose
    (outer source, inner source masked to L) is in it, ahead of the drop."""
    origin = Origin("config", "ha.address")
    ha = _text(ha_address)
    out.add(NftSet(REVERSE_TUNNEL_SET, NFT_TYPE_IPV6_PAIR, 32), origin)
    lengths = sorted({p.prefixlen for ps in mobile_network_prefixes(cfg).values() for p in ps})
    for length in lengths:
        out.add(NftSet(mnp_set(length), NFT_TYPE_IPV6_PAIR, 32), origin)
    rules = tuple(("reverse-tunnel-mnp", f"{ha}/{n}") for n in lengths)
    out.add(
        NftChain(
            CHAIN_REVERSE_TUNNEL,
            NFT_HOOK_PREROUTING,
            NFT_PRIORITY_RAW,
            (*rules, ("reverse-tunnel", ha)),
        ),
        origin,
    )


def _ha_static(cfg: Mip6Config, caps: Capabilities, facts: HostFacts, out: Desired) -> None:
    ha = cfg.ha
    assert ha is not None
    out.add(Sysctl("net/ipv6/conf/all/forwarding", "1"), Origin("config", "node.role"))
    if caps.proxy_ndp:
        for i, ifname in enumerate(ha.interfaces):
            out.add(
                Sysctl(f"net/ipv6/conf/{ifname}/proxy_ndp", "1"),
                Origin("config", f"ha.interfaces[{i}]"),
            )
    for i, prefix in enumerate(ha.home_prefixes):
        out.add(
            Rule(_prio(cfg, 1), table=binding_table(cfg), dst=str(prefix)),
            Origin("config", f"ha.home_prefixes[{i}]"),
        )
    _nemo_static(cfg, out)
    addr = home_agent_address(cfg, facts)
    if addr is None:
        out.problems.append(
            "the home agent address is unknown: set ha.address or give a home link a "
            "global address inside a home prefix"
        )
    elif caps.tunnel == "seg6":
        _seg6_decap(cfg, addr, ha.interfaces[0], RT_TABLE_MAIN, out, Origin("config", "ha.address"))
        if caps.nftables:
            _reverse_tunnel_check(cfg, addr, out)
    if addr is not None and cfg.ipsec:
        _ipsec_ha(cfg, addr, facts, out)


def _seg6_decap(
    cfg: Mip6Config, local: IPv6Address, ifname: str, inner: int, out: Desired, origin: Origin
) -> None:
    out.add(
        Rule(_prio(cfg, 0), table=decap_table(cfg), dst=str(local), ipproto=IPPROTO_IPV6),
        origin,
    )
    out.add(
        Route(str(local), table=decap_table(cfg), oif=ifname, encap=Seg6LocalDecap(inner)),
        origin,
    )
    moved = _moved_local_rule(cfg)
    out.add(moved, Origin("config", "kernel.tunnel"))
    out.takeovers[DEFAULT_LOCAL_RULE.key] = DEFAULT_LOCAL_RULE


def _home_link(cfg: Mip6Config, hoa: IPv6Address) -> str:
    ha = cfg.ha
    assert ha is not None
    for ifname, prefix in zip(ha.interfaces, ha.home_prefixes, strict=False):
        if hoa in prefix:
            return ifname
    return ha.interfaces[0]


def render_binding(
    cfg: Mip6Config, b: BindingLike, caps: Capabilities, facts: HostFacts
) -> Desired:
    """The objects of one home-agent binding (incremental reconcile, invariant 4)."""
    out = Desired()
    if b.care_of_address == b.home_address:
        return out  # at home: nothing to intercept
    home = _text(b.home_address)
    care_of = _text(b.care_of_address)
    origin = Origin("binding", home)
    link = _home_link(cfg, b.home_address)
    hoa = f"{home}/128"
    # RFC 3963: a mobile router's prefixes go through the same tunnel
    mnps: tuple[IPv6Network, ...] = getattr(b, "mobile_network_prefixes", ())
    if caps.tunnel == "seg6":
        encap = Seg6Encap((care_of,), "encap.red")
        out.add(Route(hoa, table=binding_table(cfg), oif=link, encap=encap), origin)
        for mnp in mnps:
            out.add(Route(str(mnp), table=binding_table(cfg), oif=link, encap=encap), origin)
        if caps.nftables and home_agent_address(cfg, facts) is not None:  # render_static's check
            out.add(NftSetElement(care_of, home, REVERSE_TUNNEL_SET), origin)
            for mnp in mnps:
                out.add(
                    NftSetElement(care_of, _text(mnp.network_address), mnp_set(mnp.prefixlen)),
                    origin,
                )
    else:
        name = tunnel_name(b.care_of_address)
        local = home_agent_address(cfg, facts) or IPv6Address("::")
        out.add(Tunnel(name, local=str(local), remote=care_of), origin)
        out.add(Route(hoa, table=binding_table(cfg), oif=name), origin)
        for mnp in mnps:
            out.add(Route(str(mnp), table=binding_table(cfg), oif=name), origin)
    if caps.proxy_ndp:
        out.add(ProxyNeighbour(link, home), origin)
        link_local = b.defended_link_local
        if link_local is not None:  # L = 1: its link-local is defended too (§10.4.1)
            out.add(ProxyNeighbour(link, _text(link_local)), origin)
    if cfg.ipsec:
        name = _templates_by_home(cfg).get(b.home_address)
        ha_addr = home_agent_address(cfg, facts)
        if name is not None and ha_addr is not None:
            tpl = cfg.ipsec[name]
            for obj in ipsec.tunnel(
                "ha",
                tpl,
                b.home_address,
                ha_addr,
                b.care_of_address,
                facts.keys_of(name),
                facts.retiring_of(name),
            ):
                out.add(obj, origin)
    return out


def binding_keys(cfg: Mip6Config, hoa: IPv6Address, caps: Capabilities) -> list[tuple]:
    """Keys a binding for `hoa` may own, whatever its care-of address (for deletes)."""
    home = _text(hoa)
    keys = [("route", binding_table(cfg), f"{home}/128", "::/0", 1024)]
    keys += mnp_route_keys(cfg, home)
    if caps.proxy_ndp:
        keys.append(("proxy", _home_link(cfg, hoa), home))
    return keys


# --------------------------------------------------------------------------- network mobility
#
# RFC 3963 on the home agent: per listed mobile router (``mobile_router`` or
# ``mobile_network_prefixes``, with ``ha.accept_mobile_routers``), static
#   * ``to MNP lookup T`` (the binding table, like the home prefixes) -- one
#     ``to BLOCK lookup T`` per ``ha.served_prefixes`` block instead when set, and
#   * ``MNP via HoA dev HOME-LINK metric 2048`` in T: the mobile router at home
#     is an ordinary router on the home link (RFC 3963 leaves routing at
#     home to the operator; this is the static route that needs no protocol);
# per binding, ``MNP`` through the binding's tunnel at the usual metric, which
# wins over the at-home route while the router is away.  On the mobile router:
# forwarding, RAs still accepted on its egress interfaces (accept_ra = 2: with
# forwarding on the kernel otherwise ignores them and the care-of address
# would never be configured), and away from home ``from MNP lookup T`` behind
# the local table, so the mobile network's traffic leaves through the reverse
# tunnel (RFC 3963), with ``to MNP lookup main`` first so traffic between
# two of its own prefixes stays local.

#: metric of the at-home route for a mobile network prefix: behind the binding's (1024)
MNP_AT_HOME_METRIC = 2048
#: prefix of the reverse-tunnel sets of mobile network prefixes (one per prefix length)
MNP_SET_PREFIX = "reverse_tunnel_mnp"

_mnp_cache: tuple[object, dict[str, tuple[IPv6Network, ...]], dict[str, str]] | None = None


def mnp_set(length: int) -> str:
    return f"{MNP_SET_PREFIX}{length}"


def mobile_network_prefixes(cfg: Mip6Config) -> dict[str, tuple[IPv6Network, ...]]:
    """Home address (canonical text) -> the prefixes its mobile router may register.

    Only listed mobile routers of a home agent accepting them; computed once per
    configuration generation (the reconciler asks for every binding it plans)."""
    return _mnp_index(cfg)[0]


def _mnp_index(cfg: Mip6Config) -> tuple[dict[str, tuple[IPv6Network, ...]], dict[str, str]]:
    """(home address -> prefixes, prefix text -> home address), once per generation."""
    global _mnp_cache
    ha = cfg.ha
    if ha is None or not ha.accept_mobile_routers:
        return {}, {}
    cached = _mnp_cache
    if cached is not None and cached[0] is ha:
        return cached[1], cached[2]
    index = {
        _text(n.home_address): tuple(n.mobile_network_prefixes)
        for n in ha.mobile_nodes
        if n.is_mobile_router and n.mobile_network_prefixes
    }
    owners = {str(p): home for home, prefixes in index.items() for p in prefixes}
    _mnp_cache = (ha, index, owners)
    return index, owners


def mnp_route_keys(cfg: Mip6Config, home: str) -> list[tuple]:
    """Keys of the tunnel routes a binding of mobile router `home` may own."""
    table = binding_table(cfg)
    prefixes = mobile_network_prefixes(cfg).get(home, ())
    return [("route", table, str(p), "::/0", 1024) for p in prefixes]


def _nemo_static(cfg: Mip6Config, out: Desired) -> None:
    ha = cfg.ha
    assert ha is not None
    if not ha.accept_mobile_routers:
        return
    # The kernel walks policy rules one by one for every route lookup: with
    # served_prefixes (every mobile network prefix inside them, `validate` checks) one
    # rule per block, not one per prefix -- 10,000 mobile routers would be 20,000 rules.
    served = bool(ha.served_prefixes)
    for i, block in enumerate(ha.served_prefixes):
        out.add(
            Rule(_prio(cfg, 1), table=binding_table(cfg), dst=str(block)),
            Origin("config", f"ha.served_prefixes[{i}]"),
        )
    for i, n in enumerate(ha.mobile_nodes):
        if not n.is_mobile_router:
            continue
        home = _text(n.home_address)
        link = _home_link(cfg, n.home_address)
        for j, mnp in enumerate(n.mobile_network_prefixes):
            origin = Origin("config", f"ha.mobile_nodes[{i}].mobile_network_prefixes[{j}]")
            if not served:
                out.add(Rule(_prio(cfg, 1), table=binding_table(cfg), dst=str(mnp)), origin)
            out.add(
                Route(
                    str(mnp),
                    table=binding_table(cfg),
                    metric=MNP_AT_HOME_METRIC,
                    oif=link,
                    gateway=home,
                ),
                origin,
            )


def _mobile_router_static(cfg: Mip6Config, out: Desired) -> None:
    mn = cfg.mn
    assert mn is not None
    if not mn.mobile_router:
        return
    origin = Origin("config", "mn.mobile_router")
    out.add(Sysctl("net/ipv6/conf/all/forwarding", "1"), origin)
    for i, itf in enumerate(mn.interfaces):
        where = Origin("config", f"mn.interfaces[{i}]")
        out.add(Sysctl(f"net/ipv6/conf/{itf.name}/accept_ra", "2"), where)


def _mobile_router_away(cfg: Mip6Config, out: Desired, origin: Origin) -> None:
    mn = cfg.mn
    assert mn is not None
    if not mn.mobile_router:
        return
    # a mobile router runs ip6tnl only, where the kernel's local rule stays at 0: these
    # come after it inside the owned band, behind the home address's own rule
    for mnp in mn.mobile_network_prefixes:
        out.add(Rule(_prio(cfg, 3), table=RT_TABLE_MAIN, dst=str(mnp)), origin)
        out.add(Rule(_prio(cfg, 4), table=binding_table(cfg), src=str(mnp)), origin)


def render_mobile_node(
    cfg: Mip6Config,
    view: MobileNodeView,
    caps: Capabilities,
    facts: HostFacts | None = None,
) -> Desired:
    """A mobile node away from home: home address kept, traffic reverse-tunnelled.

    At home on a known interface (``care_of_address`` None, ``ifname`` set) the
    home address is an ordinary address of the home link (§11.5.4: reclaimed
    after the de-registration) -- the same key as away, so a move home or away
    only changes its flags and sockets bound to it never see it disappear --
    and on the seg6 backend the relocated local-table rule stays, so that
    returning home never leaves the node without its local lookup.  While
    ``home_agent_lladdr`` is set (returning home, until the de-registration is
    acknowledged) a static neighbour entry for the home agent, so the kernel
    sends the de-registration without soliciting from the home address
    (§11.5.5).  With no interface known nothing is rendered.
    """
    out = Desired()
    origin = Origin("binding", str(view.home_address.ip))
    hoa = str(view.home_address.ip)
    if view.care_of_address is None:
        if view.ifname is not None:
            out.add(Address(view.ifname, hoa, 128, flags=IFA_F_NODAD), origin)
            if view.home_agent_lladdr is not None and view.home_agent is not None:
                out.add(
                    Neighbour(view.ifname, _text(view.home_agent), view.home_agent_lladdr),
                    origin,
                )
            if caps.tunnel == "seg6":
                out.add(_moved_local_rule(cfg), Origin("config", "kernel.tunnel"))
                out.takeovers[DEFAULT_LOCAL_RULE.key] = DEFAULT_LOCAL_RULE
                out.add(Seg6TunnelSource(), origin)  # source address selection again
        return out
    if view.ifname is None:
        return out
    out.add(
        Address(view.ifname, hoa, 128, flags=IFA_F_HOMEADDRESS | IFA_F_NODAD),
        origin,
    )
    if cfg.mn is not None and cfg.mn.home_agent == "dhaad" and view.router is not None:
        # DHAAD Requests go to the home prefix's anycast address through the router of
        # the current link, not on-link by a home-prefix route left from the home link
        home = view.home_address.network
        _via_router(view, home_agents_anycast(home.network_address, home.prefixlen), out, origin)
    if view.home_agent is None:
        return out  # DHAAD under way: the tunnel comes with the home agent it finds
    out.add(Rule(_prio(cfg, 2), table=binding_table(cfg), src=f"{hoa}/128"), origin)
    if caps.tunnel == "seg6":
        out.add(
            Route(
                "::/0",
                table=binding_table(cfg),
                oif=view.ifname,
                encap=Seg6Encap((str(view.home_agent),), "encap.red"),
            ),
            origin,
        )
        _seg6_decap(cfg, view.care_of_address, view.ifname, RT_TABLE_LOCAL, out, origin)
        # With one segment the encap's outer source is `seg6 tunsrc`, else source
        # selection towards the HA, which (no CONFIG_IPV6_MIP6) picks the home address;
        # the HA's §10.4.5 check wants (care-of, home address).
        out.add(Seg6TunnelSource(_text(view.care_of_address)), origin)
    else:
        name = tunnel_name(view.home_agent)
        out.add(Tunnel(name, local=str(view.care_of_address), remote=str(view.home_agent)), origin)
        out.add(Route("::/0", table=binding_table(cfg), oif=name), origin)
    if view.router is not None:
        _via_router(view, view.home_agent, out, origin)
    _mobile_router_away(cfg, out, origin)
    if caps.route_optimization:
        for cn, care_of in view.correspondents:
            _mn_route_optimisation(view.home_address.ip, cn, care_of, out)
        if view.traffic_trigger:
            out.add(route_optimisation_trigger(view.home_address.ip), origin)
    _ipsec_mn_away(cfg, view, facts or HostFacts(), out, origin)
    return out


def _via_router(view: MobileNodeView, address: IPv6Address, out: Desired, origin: Origin) -> None:
    """A host route to `address` through the router the move was detected from."""
    assert view.router is not None and view.ifname is not None
    route = Route(
        f"{_text(address)}/128", table=RT_TABLE_MAIN, oif=view.ifname, gateway=_text(view.router)
    )
    out.add(route, origin)


# --------------------------------------------------------------------------- route optimisation
#
# RFC 6275 route optimisation the way the kernel (CONFIG_IPV6_MIP6) and UMIP do
# it: XFRM states in mode ROUTEOPTIMIZATION whose XFRMA_COADDR is the care-of
# address -- route2 (IPPROTO_ROUTING) writes/accepts the type 2 routing header,
# hao (IPPROTO_DSTOPTS) the Home Address option -- and policies naming them:
#
# * out: a policy (local/128 -> peer/128) with a route2/hao template makes the
#   kernel apply the state; without the policy or the state the packet simply
#   keeps normal addressing (through the home agent).  Level "use" (UMIP's
#   tmpl.optional = 1): a packet sent while the state is missing takes that
#   path instead of being held for an ACQUIRE nobody answers.
# * in: the kernel takes a type 2 routing header / Home Address option only
#   with a matching state (else dropped: XfrmInNoStates), and the packet then
#   carries a non-transport secpath entry, rejected by the inbound policy
#   check (XfrmInNoPols) unless an "in" policy has a template matching that
#   state; level "use", so plain packets between the same addresses pass.
#   Template addresses are the state's.  (Measured on Debian 6.1 in
#   tests/vm/test_route_optimisation.py, each object left out in turn.)
# * Mobility Header bypass (out, higher precedence = lower priority value):
#   Home Test Init / Home Test travel between the home address and the
#   correspondent through the home agent and must never be route-optimised
#   (RFC 6275 5.2.5; without it the HoTI left from the care-of address with a
#   Home Address option and the HoT went to it with a type 2 routing header).
#   BU/BA/BRR carry their extension headers themselves (the signalling
#   transport adds them, from/to the care-of address).

#: priorities inside the owned band: the MH bypass wins over the data policy
RO_SIGNALLING_PRIORITY = ownership.XFRM_PRIORITY_MIN + 0x10
RO_DATA_PRIORITY = ownership.XFRM_PRIORITY_MIN + 0x20
#: the traffic trigger: behind every other owned policy but the kernel transport's
#: wildcard, so IPsec (payload protection) and the per-correspondent policies win
RO_TRIGGER_PRIORITY = WILDCARD_POLICY_PRIORITY - 0x10
IPPROTO_MH = 135


def route_optimisation_trigger(hoa: IPv6Address) -> XfrmPolicy:
    """UMIP's way of noticing traffic worth optimising (RFC 6275 §11.3.1 leaves it open).

    Out, home address -> anything, one *optional* hao template: a packet to a
    correspondent with no hao state (no binding there) finds none, so the kernel
    sends an XFRM ACQUIRE naming the destination (at most once per
    ``net.core.xfrm_acq_expires``, 30 s, per destination: a larval state stands
    for it) and the packet goes on unchanged, through the home agent.  The larval
    state has no care-of address: the observer ignores it, and the executor's
    UPDSA replaces it with the real hao state once return routability is done.
    """
    return XfrmPolicy(
        XfrmSelector(dst=IPv6Network("::/0"), src=_host(hoa)),
        Direction.OUT,
        priority=RO_TRIGGER_PRIORITY,
        templates=(XfrmTemplate(XfrmProto.HAO, Mode.RO, level=Level.USE),),
    )


class CorrespondentBindingLike(BindingLike, Protocol):
    """A correspondent binding: also the local address the Binding Update went to."""

    @property
    def local_address(self) -> IPv6Address: ...


def _host(addr: IPv6Address) -> IPv6Network:
    return IPv6Network((addr, 128))


def _ro_pair(
    local: IPv6Address,
    peer: IPv6Address,
    care_of: IPv6Address,
    send: XfrmProto,
    recv: XfrmProto,
) -> list[XfrmPolicy | XfrmState]:
    """The RO objects between `local` and `peer` (one of them the home address).

    ``send`` is the header this end adds (CN: route2 to the HoA; MN: hao from
    the HoA), ``recv`` the one it accepts; both states carry `care_of`."""
    lo, pe = _host(local), _host(peer)
    out_sel = XfrmSelector(dst=pe, src=lo)
    in_sel = XfrmSelector(dst=lo, src=pe)
    return [
        XfrmPolicy(
            XfrmSelector(dst=pe, src=lo, proto=IPPROTO_MH),
            Direction.OUT,
            priority=RO_SIGNALLING_PRIORITY,
        ),
        XfrmPolicy(
            out_sel,
            Direction.OUT,
            priority=RO_DATA_PRIORITY,
            templates=(XfrmTemplate(send, Mode.RO, dst=peer, src=local, level=Level.USE),),
        ),
        XfrmState(dst=peer, src=local, proto=send, mode=Mode.RO, selector=out_sel, coaddr=care_of),
        XfrmState(dst=local, src=peer, proto=recv, mode=Mode.RO, selector=in_sel, coaddr=care_of),
        XfrmPolicy(
            in_sel,
            Direction.IN,
            priority=RO_DATA_PRIORITY,
            templates=(XfrmTemplate(recv, Mode.RO, dst=local, src=peer, level=Level.USE),),
        ),
    ]


def render_correspondent_binding(
    cfg: Mip6Config, b: CorrespondentBindingLike, caps: Capabilities
) -> Desired:
    """The route-optimisation objects of one correspondent binding (CN side).

    With ``caps.route_optimization``: out, CN -> HoA gets a type 2 routing
    header and goes to the care-of address (route2 state, coaddr CoA, and an
    out policy with a route2 template) except Mobility Header traffic (the
    Home Test goes to the home address); in, HoA's Home Address option from
    the care-of address is accepted (hao state + in policy, template level
    use).  Without it nothing: the CN keeps sending to the home address,
    through the home agent.  A deletion (CoA = HoA) renders nothing either.
    """
    out = Desired()
    if not caps.route_optimization or b.care_of_address == b.home_address:
        return out
    origin = Origin("binding", _text(b.home_address))
    for obj in _ro_pair(
        b.local_address, b.home_address, b.care_of_address, XfrmProto.ROUTE2, XfrmProto.HAO
    ):
        out.add(obj, origin)
    return out


def correspondent_binding_keys(
    cfg: Mip6Config, hoa: IPv6Address, local: IPv6Address, caps: Capabilities
) -> list[tuple]:
    """Keys a correspondent binding for `hoa` at `local` may own, whatever its
    care-of address (for deletes; the CoA is in no key)."""
    return [object_key(o) for o in _ro_pair(local, hoa, hoa, XfrmProto.ROUTE2, XfrmProto.HAO)]


def _mn_route_optimisation(
    hoa: IPv6Address, cn: IPv6Address, care_of: IPv6Address, out: Desired
) -> None:
    """MN side of route optimisation with `cn` (registered care-of address `care_of`):
    out, HoA -> CN leaves from the care-of address with a Home Address option
    (hao state + out policy, MH excepted: the Home Test Init goes through the
    home agent); in, CN's type 2 routing header to the care-of address is
    delivered to the HoA (route2 state + in policy, template level use)."""
    origin = Origin("binding", _text(hoa))
    for obj in _ro_pair(hoa, cn, care_of, XfrmProto.HAO, XfrmProto.ROUTE2):
        out.add(obj, origin)


# --------------------------------------------------------------------------- IPsec (RFC 3776)
#
# The objects are `state.ipsec`'s; here: which template protects whom.

_TEMPLATES: list[Any] = [None, {}]


def _templates_by_home(cfg: Mip6Config) -> dict[IPv6Address, str]:
    """Home address -> template name of the listed mobile nodes (once per generation:
    render_binding runs per binding, a scan of 100k entries each would be quadratic)."""
    if _TEMPLATES[0] is not cfg:
        ha = cfg.ha
        index = {
            mn.home_address: mn.ipsec
            for mn in (ha.mobile_nodes if ha is not None else ())
            if mn.ipsec is not None and mn.ipsec in cfg.ipsec
        }
        _TEMPLATES[:] = [cfg, index]
    return _TEMPLATES[1]  # type: ignore[no-any-return]


def _ipsec_ha(cfg: Mip6Config, addr: IPv6Address, facts: HostFacts, out: Desired) -> None:
    ha = cfg.ha
    assert ha is not None
    for i, mn in enumerate(ha.mobile_nodes):
        tpl = cfg.ipsec.get(mn.ipsec) if mn.ipsec else None
        if tpl is None:
            continue
        origin = Origin("config", f"ha.mobile_nodes[{i}].ipsec")
        name: str = mn.ipsec  # type: ignore[assignment]
        keys, old = facts.keys_of(name), facts.retiring_of(name)
        for obj in ipsec.transport("ha", tpl, mn.home_address, addr, keys, old):
            out.add(obj, origin)


def _mn_template(cfg: Mip6Config) -> tuple[Any, IPv6Address] | tuple[None, None]:
    mn = cfg.mn
    if mn is None or mn.ipsec is None or mn.ipsec not in cfg.ipsec:
        return None, None
    if not isinstance(mn.home_agent, IPv6Address):
        return None, None  # found by DHAAD: objects follow the discovered address at run time
    return cfg.ipsec[mn.ipsec], mn.home_agent


def _ipsec_mn(cfg: Mip6Config, facts: HostFacts, out: Desired) -> None:
    tpl, ha = _mn_template(cfg)
    if tpl is None or ha is None:
        return
    assert cfg.mn is not None and cfg.mn.ipsec is not None
    keys, old = facts.keys_of(cfg.mn.ipsec), facts.retiring_of(cfg.mn.ipsec)
    for obj in ipsec.transport("mn", tpl, cfg.mn.home_address.ip, ha, keys, old):
        out.add(obj, Origin("config", "mn.ipsec"))


def _ipsec_mn_away(
    cfg: Mip6Config, view: MobileNodeView, facts: HostFacts, out: Desired, origin: Origin
) -> None:
    """Away from home: the hao state of the protected BU and the tunnel-mode objects."""
    tpl, ha = _mn_template(cfg)
    if tpl is None or ha is None or view.care_of_address is None:
        return
    assert cfg.mn is not None and cfg.mn.ipsec is not None
    home = view.home_address.ip
    if ipsec.protects_signalling(tpl):
        out.add(ipsec.home_address_option(home, ha, view.care_of_address), origin)
        # The protected BU leaves from the home address (the hao state swaps in the
        # care-of address): past `from HoA lookup T`, whose tunnel it must not take.
        out.add(
            Rule(
                _prio(cfg, 1),
                table=RT_TABLE_MAIN,
                src=f"{_text(home)}/128",
                dst=f"{_text(ha)}/128",
                ipproto=IPPROTO_MH,
            ),
            origin,
        )
    keys, old = facts.keys_of(cfg.mn.ipsec), facts.retiring_of(cfg.mn.ipsec)
    for obj in ipsec.tunnel("mn", tpl, home, ha, view.care_of_address, keys, old):
        out.add(obj, origin)


def classify(obj: Any, cfg: Mip6Config) -> Origin | None:
    """Best-effort origin of an observed owned object that is no longer desired."""
    if isinstance(obj, Route) and obj.table == binding_table(cfg):
        if obj.dst.endswith("/128"):
            return Origin("binding", obj.dst[:-4])
        # a prefix's tunnel route is its router's binding's; the at-home one is static
        return _mnp_owner(cfg, obj.dst) if obj.metric != MNP_AT_HOME_METRIC else None
    if isinstance(obj, ProxyNeighbour):
        return Origin("binding", obj.address)
    if isinstance(obj, NftSetElement):
        if obj.set.startswith(MNP_SET_PREFIX):
            return _mnp_owner(cfg, f"{obj.home}/{obj.set[len(MNP_SET_PREFIX) :]}")
        return Origin("binding", obj.home)
    return None


def _mnp_owner(cfg: Mip6Config, prefix: str) -> Origin | None:
    home = _mnp_index(cfg)[1].get(prefix)
    return Origin("binding", home) if home is not None else None
