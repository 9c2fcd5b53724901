"""The configuration model: what an operator may declare in /etc/mip6/*.toml.

Strict on purpose: unknown keys are errors (a misspelt knob must not be
silently ignored), booleans are booleans and addresses are strings.  Defaults
are RFC 6275 §12/§13 values or UMIP's, and where we deliberately differ from
UMIP the field description says so.  Cross-field rules (home address inside
its prefix, references that must exist, key files) live in `checks.py`, so
that each problem can be reported with the file and line it comes from.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv6Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from mip6ctl import ownership, rfc6275
from mip6ctl.config.types import (
    FilePath,
    HomeAgentRef,
    IfName,
    IPv6Addr,
    IPv6AddrWithPrefix,
    IPv6Prefix,
    Lifetime,
    Seconds,
)


class _Section(BaseModel):
    # defer_build: only the root model's validator is needed, so sections are not
    # built one by one at import (halves start-up; `mip6ctl validate` must be fast).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Role(StrEnum):
    HA = "ha"
    MN = "mn"
    CN = "cn"


# --------------------------------------------------------------------------- node, kernel


class NodeSection(_Section):
    """Which role this daemon plays. Every node also answers as a correspondent."""

    role: Annotated[Role, Strict(False)] = Field(
        description="'ha' home agent, 'mn' mobile node, 'cn' correspondent node"
    )
    name: str | None = Field(
        default=None, max_length=64, description="free text shown in status and logs"
    )


class KernelSection(_Section):
    """How mip6ctl uses the kernel, and the marks that make its objects its own."""

    tunnel: Literal["auto", "ip6tnl", "seg6"] = Field(
        default="auto",
        description="IPv6-in-IPv6 backend: ip6tnl devices, or seg6 encap routes (no netdev per "
        "binding); 'auto' prefers ip6tnl when the kernel has it",
    )
    signalling: Literal["auto", "kernel", "userspace"] = Field(
        default="auto",
        description="Mobility Header I/O: 'kernel' raw IPPROTO_MH socket (CONFIG_IPV6_MIP6), "
        "'userspace' link-layer capture + IPPROTO_RAW; 'auto' picks from the capability probe",
    )
    home_address_defence: Literal["auto", "proxy-ndp", "daemon"] = Field(
        default="auto",
        description="how an HA answers Neighbor Solicitations for away mobile nodes: kernel "
        "proxy NDP entries, or the daemon itself (scales past ~50k bindings)",
    )
    route_table: int = Field(
        default=ownership.ROUTE_TABLE,
        ge=1,
        le=0xFFFFFFFF,
        description="table for per-binding routes",
    )
    route_protocol: int = Field(
        default=ownership.ROUTE_PROTOCOL,
        ge=5,
        le=255,
        description="rtnetlink protocol number that marks routes and rules as mip6ctl's own",
    )
    rule_priority: int = Field(
        default=ownership.RULE_PRIORITY_MIN,
        ge=1,
        le=32000,
        description="first priority of the 100-wide band of policy-routing rules mip6ctl owns",
    )


# --------------------------------------------------------------------------- daemon, log


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9276"`` / ``"[::1]:9276"`` → (host, port); address literals only.

    Why literals only: a host name may resolve to several addresses, or to a
    public one; the operator must say exactly where the endpoint listens.
    """
    from ipaddress import IPv4Address, IPv6Address

    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not ADDRESS:PORT (e.g. 127.0.0.1:9276 or [::1]:9276)")
    if host.startswith("[") and host.endswith("]"):
        IPv6Address(host[1:-1])  # ValueError names the problem
        return host[1:-1], int(port)
    try:
        IPv4Address(host)
    except ValueError:
        raise ValueError(
            f"{host!r} is not an IPv4 address or a bracketed IPv6 address ([::1])"
        ) from None
    return host, int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value


class MetricsSection(_Section):
    """The optional Prometheus endpoint (GET /metrics); off unless enabled."""

    enabled: bool = Field(default=False, description="serve Prometheus metrics over HTTP")
    listen: Annotated[str, AfterValidator(_listen)] = Field(
        default="127.0.0.1:9276",
        description="ADDRESS:PORT to listen on (IPv6 as [::1]:9276); loopback by default, "
        "the endpoint has no authentication",
    )


class DaemonSection(_Section):
    """Where the daemon keeps state and listens, and what it does on stop."""

    state_dir: FilePath = Field(
        default=Path("/var/lib/mip6"), description="persistent state (binding cache database)"
    )
    control_socket: FilePath = Field(
        default=Path("/run/mip6/control.sock"), description="Unix control socket, created mode 0600"
    )
    flush_on_stop: bool = Field(
        default=False,
        description="remove mip6ctl's kernel objects on SIGTERM; off keeps them so that a "
        "restart is hitless",
    )
    reconcile_interval: Seconds = Field(
        default=60.0, description="period of the full kernel resync (drift repair between events)"
    )
    icmp_error_rate: float = Field(
        default=10.0,
        gt=0,
        le=100_000,
        description="ICMPv6 error messages (Parameter Problem) the daemon sends per second at "
        "most (RFC 4443 2.4 f; a token bucket)",
    )
    icmp_error_burst: float = Field(
        default=10.0, ge=1, le=100_000, description="ICMPv6 errors that may be sent at once"
    )
    binding_use_interval: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="seconds between reads of the route-optimisation states' packet "
        "counters (Binding Refresh Requests for bindings in use, refreshes of "
        "traffic-triggered ones); 0 = never",
    )
    metrics: MetricsSection = Field(
        default_factory=MetricsSection, description="Prometheus metrics endpoint"
    )
    keep_generations: int = Field(
        default=10,
        ge=2,
        le=1000,
        description="configuration generations kept under state_dir/generations for "
        "`mip6ctl history` and `rollback` (files and hashes; key files are not copied)",
    )


class LogSection(_Section):
    """Replaces UMIP's DebugLevel / DebugLogFile."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "text", "json"] = Field(
        default="auto", description="'auto': human text on a terminal, JSON lines otherwise"
    )
    file: FilePath | None = Field(default=None, description="log file; default standard error")


# --------------------------------------------------------------------------- correspondent


class CnPolicy(_Section):
    """One entry of UMIP's CnBindingPolicySet."""

    home_prefix: IPv6Prefix = Field(description="mobile nodes whose home address is in here")
    correspondent: IPv6Addr | None = Field(
        default=None, description="only for this local address (default: any)"
    )
    action: Literal["allow", "deny"]


class CnSection(_Section):
    """Correspondent node behaviour; applies to every role (RFC 6275 §9)."""

    route_optimization: bool = Field(
        default=True,
        description="answer return routability and accept bindings (UMIP DoRouteOptimizationCN)",
    )
    max_binding_lifetime: int = Field(
        default=rfc6275.MAX_RR_BINDING_LIFETIME,
        ge=4,
        le=rfc6275.MAX_RR_BINDING_LIFETIME,
        description="largest lifetime granted to a correspondent binding (≤ 420 s)",
    )
    policies: list[CnPolicy] = Field(default_factory=list, description="first match wins")
    default_action: Literal["allow", "deny"] = "allow"


# --------------------------------------------------------------------------- home agent


class MobileNodeEntry(_Section):
    """A mobile node allowed to register with this home agent (UMIP BindingAclPolicy)."""

    home_address: IPv6Addr
    ipsec: str | None = Field(
        default=None, description="name of an [ipsec.NAME] template protecting its signalling"
    )
    max_binding_lifetime: Lifetime | None = Field(
        default=None, description="tighter limit than [ha].max_binding_lifetime for this node"
    )
    mobile_router: bool | None = Field(
        default=None,
        description="RFC 3963: this node may register as a mobile router (R flag); "
        "default: true when it has mobile_network_prefixes",
    )
    mobile_network_prefixes: list[IPv6Prefix] = Field(
        default_factory=list,
        description="RFC 3963 prefixes this node may register as a mobile router "
        "(explicit mode: those in its BU; implicit mode: all of them)",
    )
    description: str | None = Field(default=None, max_length=200)

    @property
    def is_mobile_router(self) -> bool:
        """May register with R = 1 (``mobile_router``, or implied by its prefixes)."""
        if self.mobile_router is None:
            return bool(self.mobile_network_prefixes)
        return self.mobile_router


class MobilePrefixAdvertisements(_Section):
    """Mobile Prefix Discovery (RFC 6275 §10.6, UMIP SendMobPfxAdvs and friends)."""

    enabled: bool = True
    unsolicited: bool = True
    min_interval: int = Field(default=rfc6275.MIN_MOB_PFX_ADV_INTERVAL, ge=1)
    max_interval: int = Field(default=rfc6275.MAX_MOB_PFX_ADV_INTERVAL, ge=1)


class HaSection(_Section):
    """Home agent: home links, served prefixes and who may register."""

    interfaces: list[IfName] = Field(min_length=1, description="home links")
    home_prefixes: list[IPv6Prefix] = Field(min_length=1)
    address: IPv6Addr | None = Field(
        default=None,
        description="this HA's address on the home link (default: the first global address "
        "found on a home link inside a home prefix)",
    )
    max_binding_lifetime: Lifetime = Field(
        default=rfc6275.DEFAULT_MAX_HA_BINDING_LIFETIME,
        description="largest lifetime granted (UMIP HaMaxBindingLife)",
    )
    binding_refresh_advice: Lifetime | None = Field(
        default=None,
        description="seconds; when set, BAs carry a Binding Refresh Advice option",
    )
    duplicate_address_detection: bool = Field(
        default=True, description="run DAD for a home address before its first registration"
    )
    default_action: Literal["allow", "deny"] = Field(
        default="deny",
        description="what to do with a mobile node not listed in mobile_nodes: 'deny' answers "
        "BA 129 (UMIP's DefaultBindingAclPolicy defaulted to allow; we fail closed)",
    )
    mobile_nodes: list[MobileNodeEntry] = Field(
        default_factory=list,
        description="one [[ha.mobile_nodes]] table per node; may be spread over files",
    )
    require_ipsec: bool = Field(
        default=False,
        description="refuse every mobile node without an ipsec template (UMIP UseMnHaIPsec)",
    )
    insecure_allow_unprotected: bool = Field(
        default=False,
        description="accept default_action = 'allow' without IPsec: anyone who reaches the "
        "home agent can then register or de-register any home address of its prefixes",
    )
    accept_mobile_routers: bool = Field(
        default=False, description="RFC 3963 network mobility (UMIP HaAcceptMobRtr)"
    )
    served_prefixes: list[IPv6Prefix] = Field(
        default_factory=list, description="prefixes delegated to mobile routers (HaServedPrefix)"
    )
    preference: int = Field(
        default=0,
        ge=-32768,
        le=32767,
        description="this home agent's preference in DHAAD replies; higher first (the Home "
        "Agent Information option's, RFC 6275 §7.4; advertise the same in radvd)",
    )
    dynamic_home_agent_discovery: bool = Field(
        default=True,
        description="answer DHAAD Requests sent to the Home-Agents anycast address of each "
        "home prefix (RFC 6275 §10.5)",
    )
    mobile_prefix_advertisements: MobilePrefixAdvertisements = Field(
        default_factory=MobilePrefixAdvertisements
    )
    binding_cache: FilePath | None = Field(
        default=None,
        description="SQLite file for the binding cache (default: STATE_DIR/binding-cache.sqlite)",
    )

    def prefix_links(self) -> list[tuple[str, IPv6Network]]:
        """(home link, home prefix): the i-th prefix is on the i-th interface, prefixes
        beyond the interfaces on the first one."""
        links = self.interfaces
        return [
            (links[i] if i < len(links) else links[0], p) for i, p in enumerate(self.home_prefixes)
        ]


# --------------------------------------------------------------------------- mobile node


class MnInterface(_Section):
    """An interface the mobile node may attach through (UMIP MnIfPreference)."""

    name: IfName
    preference: int = Field(default=5, ge=1, le=10, description="1 is most preferred")


RoMode = Literal["always", "on-traffic", "never"]


class MnCorrespondent(_Section):
    """Per-correspondent route optimisation choice (UMIP MnRoPolicy).

    ``always``: registered as soon as the node is away (single addresses only);
    ``on-traffic``: once the home address sends to it through the home agent (the
    kernel's XFRM ACQUIRE); ``never``: always through the home agent. ``true`` is
    ``always`` for a /128 and ``on-traffic`` for a wider prefix, ``false`` is ``never``.
    """

    prefix: IPv6Prefix
    route_optimization: bool | RoMode = True

    @property
    def mode(self) -> RoMode:
        ro = self.route_optimization
        if ro is True:
            return "always" if self.prefix.prefixlen == 128 else "on-traffic"
        if ro is False:
            return "never"
        return ro


class MnTimers(_Section):
    """Mobile node timers, RFC 6275 §12 defaults (UMIP names in the descriptions)."""

    initial_bindack_timeout_first_registration: Seconds = Field(
        default=rfc6275.INITIAL_BINDACK_TIMEOUT_FIRSTREG,
        description="InitialBindackTimeoutFirstReg",
    )
    initial_bindack_timeout: Seconds = Field(
        default=rfc6275.INITIAL_BINDACK_TIMEOUT, description="InitialBindackTimeoutReReg"
    )
    max_bindack_timeout: Seconds = Field(default=rfc6275.MAX_BINDACK_TIMEOUT)
    initial_solicit_timer: Seconds = Field(default=rfc6275.INITIAL_SOLICIT_TIMER)
    interface_initial_delay: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="wait after an interface appears before using it (UMIP "
        "InterfaceInitialInitDelay, 2.0 there; we send a Router Solicitation instead)",
    )
    router_probes: int = Field(
        default=0, ge=0, le=10, description="probe the old router before declaring movement"
    )
    router_probe_timeout: float = Field(default=0.0, ge=0, le=10)


class MnSection(_Section):
    """Mobile node: home address, home agent and the interfaces it may roam over."""

    home_address: IPv6AddrWithPrefix = Field(description="home address with home prefix length")
    home_link: IfName | None = Field(
        default=None, description="interface of the home link when at home (UMIP MnHomeLink)"
    )
    home_agent: HomeAgentRef = Field(
        description="home agent address, or 'dhaad' to discover it (UMIP HomeAgentAddress ::)"
    )
    interfaces: list[MnInterface] = Field(min_length=1)
    use_all_interfaces: bool = Field(default=False, description="MnUseAllInterfaces")
    ipsec: str | None = Field(default=None, description="[ipsec.NAME] protecting BU/BA to the HA")
    route_optimization: bool = Field(
        default=True,
        description="DoRouteOptimizationMN: off, no correspondent is route-optimised",
    )
    correspondents: list[MnCorrespondent] = Field(
        default_factory=list,
        description="allow/deny list, first match wins; unlisted correspondents: on-traffic",
    )
    use_alternate_care_of_address: bool = Field(default=True, description="UseAltCoa")
    key_management_mobility: bool = Field(
        default=False, description="set the K flag: the IKE SA survives movement"
    )
    max_ha_binding_lifetime: Lifetime = Field(default=rfc6275.DEFAULT_MAX_HA_BINDING_LIFETIME)
    max_cn_binding_lifetime: int = Field(
        default=rfc6275.MAX_RR_BINDING_LIFETIME, ge=4, le=rfc6275.MAX_RR_BINDING_LIFETIME
    )
    max_ha_consecutive_resends: int = Field(
        default=5, ge=0, description="then try the next home agent (0 = forever)"
    )
    max_cn_consecutive_resends: int = Field(default=0, ge=0, description="0 = forever")
    cn_binding_ack: bool = Field(default=False, description="ask correspondents for a BA (A flag)")
    send_mobile_prefix_solicitations: bool = Field(default=True, description="SendMobPfxSols")
    optimistic_handoff: bool = False
    return_home: bool = Field(
        default=True, description="deregister when back on the home link (UMIP NoHomeReturn off)"
    )
    reset_dhaad_at_home: bool = Field(default=False, description="MnResetDhaadAtHome")
    flush_all_at_home: bool = Field(default=False, description="MnFlushAllAtHome")
    discard_ha_parameter_problem: bool = Field(default=False, description="MnDiscardHaParamProb")
    mobile_router: bool = Field(default=False, description="RFC 3963 (IsMobRtr)")
    mobile_network_prefixes: list[IPv6Prefix] = Field(default_factory=list)
    explicit_mode: bool = Field(default=True, description="MobRtrUseExplicitMode")
    timers: MnTimers = Field(default_factory=MnTimers)


# --------------------------------------------------------------------------- IPsec


class Protect(StrEnum):
    """What an IPsec template protects (UMIP IPsecPolicy types in comments)."""

    BINDING_UPDATE = "binding-update"  # HomeRegBinding: BU/BA, ESP transport
    MOBILITY_HEADER = "mobility-header"  # Mh: all MH between MN and HA
    MOBILE_PREFIX_DISCOVERY = "mobile-prefix-discovery"  # MobPfxDisc
    ICMP = "icmp"  # ICMP
    ANY = "any"  # any
    RETURN_ROUTABILITY = "return-routability"  # TunnelHomeTesting: HoTI/HoT in the tunnel
    TUNNEL_MOBILITY_HEADER = "tunnel-mobility-header"  # TunnelMh
    PAYLOAD = "payload"  # TunnelPayload


class Encryption(_Section):
    algorithm: Literal["aes-cbc", "aes-ctr", "3des-cbc", "null"]
    key_file: FilePath | None = Field(default=None, description="hexadecimal key; mode 0600")
    key_bits: int | None = Field(
        default=None, description="expected key size (AES: 128, 192 or 256; default any)"
    )


class Authentication(_Section):
    algorithm: Literal["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"]
    key_file: FilePath | None = Field(default=None, description="hexadecimal key; mode 0600")


class SpiPair(_Section):
    to_ha: int = Field(ge=256, le=0xFFFFFFFF, description="SPI of the SA towards the HA")
    to_mn: int = Field(ge=256, le=0xFFFFFFFF, description="SPI of the SA towards the MN")


class ReqidPair(_Section):
    to_ha: int = Field(ge=1, le=0xFFFFFFFF)
    to_mn: int = Field(ge=1, le=0xFFFFFFFF)


class IpsecTemplate(_Section):
    """RFC 3776/4877 protection of one MN-HA pair's traffic (UMIP IPsecPolicySet)."""

    protect: list[Annotated[Protect, Strict(False)]] = Field(min_length=1)
    key_management: Literal["manual", "ike"] = Field(
        default="manual",
        description="'manual': keys from key files; 'ike': an IKE daemon negotiates SAs "
        "(mip6ctl installs policies and sends MIGRATE)",
    )
    encryption: Encryption | None = None
    authentication: Authentication | None = None
    spi: SpiPair | None = Field(
        default=None, description="SPIs of the BU/BA transport-mode SAs; required with manual keys"
    )
    reqid: ReqidPair | None = Field(
        default=None, description="reqids of the transport-mode SAs and policies"
    )
    tunnel_spi: SpiPair | None = Field(
        default=None,
        description="SPIs of the tunnel-mode SAs (return-routability, tunnel-mobility-header, "
        "payload); required with manual keys when one of those is protected",
    )
    tunnel_reqid: ReqidPair | None = Field(
        default=None, description="reqids of the tunnel-mode SAs and policies (default: reqid)"
    )
    rotation_grace: float = Field(
        default=10.0,
        ge=0.5,
        le=3600.0,
        description="manual keys: a reload with new keys *and* new SPIs keeps the old SAs "
        "this many seconds (inbound at once, outbound switched after one grace, old inbound "
        "removed after two), so the two ends need not reload at the same moment",
    )
    psk_file: FilePath | None = Field(
        default=None,
        description="pre-shared key for IKE (key_management = 'ike'): hexadecimal text, "
        "at least 128 bits, mode 0600; shown only as a fingerprint",
    )

    @property
    def protects_signalling(self) -> bool:
        """BU/BA go through ESP transport mode with this template."""
        return bool(_SIGNALLING & set(self.protect))


_SIGNALLING = {Protect.BINDING_UPDATE, Protect.MOBILITY_HEADER, Protect.ANY}


# --------------------------------------------------------------------------- the whole


class Mip6Config(_Section):
    """One configuration generation: every *.toml of the directory merged."""

    node: NodeSection
    kernel: KernelSection = Field(default_factory=KernelSection)
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    log: LogSection = Field(default_factory=LogSection)
    cn: CnSection = Field(default_factory=CnSection)
    ha: HaSection | None = None
    mn: MnSection | None = None
    ipsec: dict[str, IpsecTemplate] = Field(default_factory=dict)


# The root is what the loader validates: build it now, once, eagerly.
Mip6Config.model_rebuild(force=True)
