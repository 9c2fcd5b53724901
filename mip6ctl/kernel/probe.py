"""Kernel capability probing, in one module.

Trying beats reading kernel configs: modules may be missing, built in,
loadable or blocked, and only creating the object tells.

* `probe()` (for `mip6ctl doctor` and the daemon's capability resolution):
  everything runs in a thread that unshares into a fresh namespace
  (mip6ctl.kernel.netns), so the host is never touched and nothing is left
  behind.  rtnetlink features are tried with mip6ctl's own writer (objects
  carry the ownership mark); XFRM features with `xfrm_capabilities`.
* `xfrm_capabilities(target)`: XFRM policy, sub-policy, MIGRATE and
  ESP/route2/hao states tried with throw-away owned objects in a given
  namespace (`XfrmCapability`, `CAPABILITY_NEEDS`).
* `nf_tables_missing()`, `kernel_mip6_missing()`:
  what a signalling transport needs from this process and kernel, asked in
  the calling thread's namespace (a throwaway socket each, nothing sent).

Imports of the kernel writers are lazy: `mip6ctl doctor` imports this module
and must stay light.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mip6ctl import ownership
from mip6ctl.kernel import netns

if TYPE_CHECKING:
    from mip6ctl.kernel.xfrm import XfrmResult, XfrmSocket

_A, _B = "2001:db8:ffff::a", "2001:db8:ffff::b"


@dataclass(frozen=True, slots=True)
class Capability:
    """One probed feature: available or not, how we know, and what it means for mip6ctl."""

    name: str
    available: bool | None  # None: could not be probed
    detail: str
    enables: str
    fallback: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: name -> (kernel option, what it enables, what mip6ctl does without it)
MEANING: dict[str, tuple[str, str, str]] = {
    "mip6": (
        "CONFIG_IPV6_MIP6",
        "kernel MH socket path, route optimisation (XFRM route2/hao states)",
        "userspace signalling (AF_PACKET capture + IPPROTO_RAW send), no route optimisation",
    ),
    "ip6tnl": (
        "CONFIG_IPV6_TUNNEL",
        "ip6tnl tunnel backend (one device per peer, as UMIP)",
        "seg6 tunnel backend (route per binding, encap.red + End.DT6)",
    ),
    "ip6tnl_external": (
        "CONFIG_IPV6_TUNNEL",
        "one external (collect_metadata) ip6tnl device for all bindings",
        "per-peer ip6tnl devices or the seg6 backend",
    ),
    "seg6": (
        "CONFIG_IPV6_SEG6_LWTUNNEL",
        "seg6 tunnel backend: IPv6-in-IPv6 encapsulation per route (encap.red)",
        "ip6tnl backend only",
    ),
    "seg6local": (
        "CONFIG_IPV6_SEG6_LWTUNNEL",
        "seg6 tunnel backend: decapsulation with End.DT6",
        "ip6tnl backend only",
    ),
    "policy_routing_ipproto": (
        "CONFIG_IPV6_MULTIPLE_TABLES",
        "decap rules `to LOCAL ipproto 41`, per-binding tables",
        "no seg6 decapsulation (ip6tnl backend only)",
    ),
    "proxy_ndp": (
        "(always built in)",
        "HA defends home addresses with proxy neighbour entries",
        "HA answers Neighbour Solicitations from the daemon",
    ),
    "proxy_ndp_protocol": (
        "Linux >= 5.9 (NDA_PROTOCOL)",
        "proxy entries carry the ownership mark (protocol 77)",
        "proxy ownership from the daemon's ledger only",
    ),
    "esp": (
        "CONFIG_INET6_ESP",
        "RFC 3776/4877 IPsec protection of signalling and payload",
        "no IPsec: bindings only from configured, unprotected mobile nodes",
    ),
    "sub_policy": (
        "CONFIG_XFRM_SUB_POLICY",
        "MIP6 sub-policies layered over IPsec policies",
        "main policies only (route optimisation and IPsec cannot be combined)",
    ),
    "migrate": (
        "CONFIG_XFRM_MIGRATE",
        "IPsec tunnel endpoints follow the care-of address (XFRM_MSG_MIGRATE)",
        "delete and re-add SAs/policies on movement",
    ),
}


def _explain(err: int, message: str) -> str:
    name = errno.errorcode.get(err, str(err))
    return f"{name}: {message or os.strerror(err)}"


def _rtnl_checks() -> dict[str, tuple[bool, str]]:
    """rtnetlink features, tried with the writer inside the throwaway namespace."""
    from mip6ctl.kernel.observer import Observer
    from mip6ctl.kernel.writer import Writer, create
    from mip6ctl.state.objects import (
        ProxyNeighbour,
        Route,
        Rule,
        Seg6Encap,
        Seg6LocalDecap,
        Tunnel,
    )

    netns.link_up()
    netns.add_veth("m6p0", "m6p1")
    tries = {
        "ip6tnl": Tunnel("m6tprobe", _A, _B),
        "ip6tnl_external": Tunnel("m6tprobex", external=True),
        "seg6": Route(_B, oif="m6p0", encap=Seg6Encap((_B,))),
        "seg6local": Route(_A, table=100, oif="m6p0", encap=Seg6LocalDecap(255)),
        "policy_routing_ipproto": Rule(1000, table=100, dst=_A, ipproto=41),
        "proxy_ndp": ProxyNeighbour("m6p0", _A),
    }
    out: dict[str, tuple[bool, str]] = {}
    with Writer() as w:
        results = w.apply([create(o) for o in tries.values()])
    for (name, obj), r in zip(tries.items(), results, strict=True):
        what = type(obj).__name__
        out[name] = (
            (True, f"created a {what} in a throwaway namespace")
            if r.ok
            else (False, f"creating a {what} failed: {_explain(r.errno, r.message)}")
        )
    if out["proxy_ndp"][0]:
        with Observer(resync_now=True) as obs:
            got = obs.get(tries["proxy_ndp"].key)
        out["proxy_ndp_protocol"] = (
            (True, "proxy entry read back with protocol 77")
            if got is not None
            else (False, "proxy entry read back without its protocol attribute")
        )
    else:
        out["proxy_ndp_protocol"] = (False, "proxy entries could not be created")
    return out


def _xfrm_checks() -> dict[str, tuple[bool | None, str]]:
    try:
        import mip6ctl.kernel.xfrm  # noqa: F401
    except ImportError as e:
        why = f"not probed: XFRM module unavailable ({e})"
        return {k: (None, why) for k in ("mip6", "esp", "sub_policy", "migrate")}
    caps = xfrm_capabilities()

    def one(key: str, what: str) -> tuple[bool, str]:
        c = caps[key]
        return (True, f"{what} succeeded") if c.ok else (False, f"{what}: {c.reason}")

    route2, hao = one("route2_state", "XFRM route2 state"), one("hao_state", "XFRM hao state")
    return {
        "mip6": (route2[0] and hao[0], f"{route2[1]}; {hao[1]}"),
        "esp": one("esp_state", "XFRM ESP state"),
        "sub_policy": one("sub_policy", "XFRM sub-policy"),
        "migrate": one("migrate", "XFRM_MSG_MIGRATE of a tunnel-mode policy"),
    }


def probe(*, timeout: float = 30.0) -> list[Capability]:
    """Probe every capability; never raises for a missing feature."""

    def run() -> dict[str, tuple[bool | None, str]]:
        found: dict[str, tuple[bool | None, str]] = {}
        for part in (_rtnl_checks, _xfrm_checks):
            try:
                found.update(part())
            except OSError as e:
                found[f"_{part.__name__}"] = (None, _explain(e.errno or 0, e.strerror or str(e)))
        return found

    try:
        found = netns.run_isolated(run, timeout=timeout)
    except (OSError, TimeoutError) as e:
        found = {"_namespace": (None, f"cannot create a throwaway namespace: {e}")}
    caps = []
    denied = denied_capabilities()
    for name, (option, enables, fallback) in MEANING.items():
        available, detail = found.get(name, (None, _missing_reason(found)))
        if name in denied and available:
            available, detail = False, f"present, but hidden by {DENY_ENV}"
        caps.append(Capability(name, available, f"{detail} [{option}]", enables, fallback))
    return caps


#: Capabilities to report missing although the kernel has them (comma-separated
#: names of MEANING): to run a daemon as it would run on a smaller kernel — e.g.
#: userspace signalling on a kernel with CONFIG_IPV6_MIP6 built in, which no
#: module blacklist can hide. The vm tier's host profile sets it.
DENY_ENV = "MIP6CTL_PROBE_DENY"


def denied_capabilities() -> frozenset[str]:
    raw = os.environ.get(DENY_ENV, "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _missing_reason(found: dict[str, tuple[bool | None, str]]) -> str:
    errors = [d for k, (_a, d) in found.items() if k.startswith("_")]
    return "not probed: " + ("; ".join(errors) if errors else "no result")


# --------------------------------------------------------------------------- XFRM


@dataclass(frozen=True, slots=True)
class XfrmCapability:
    """Whether one XFRM feature worked when tried; why not, if not."""

    ok: bool
    errno: int = 0
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reason(self) -> str:
        if self.ok:
            return ""
        name = errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {os.strerror(self.errno)}" + (f" ({self.message})" if self.message else "")


#: The first ESP state makes the kernel load its crypto modules (authenc, cbc, aes,
#: sha256) inside the NEWSA call: seconds under emulation, more when two daemons
#: start at once -- a short bound read "no ESP" there (and the daemon refused IPsec).
XFRM_PROBE_TIMEOUT = 20.0

#: What each probed capability needs from the kernel configuration.
CAPABILITY_NEEDS = {
    "policy": "CONFIG_XFRM_USER",
    "sub_policy": "CONFIG_XFRM_SUB_POLICY",
    "migrate": "CONFIG_XFRM_MIGRATE",
    "esp_state": "CONFIG_INET6_ESP",
    "route2_state": "CONFIG_IPV6_MIP6",
    "hao_state": "CONFIG_IPV6_MIP6",
}

_PROBE_A = ipaddress.IPv6Address("2001:db8:ffff::a")
_PROBE_B = ipaddress.IPv6Address("2001:db8:ffff::b")
_PROBE_C = ipaddress.IPv6Address("2001:db8:ffff::c")


def _probe(xs: XfrmSocket) -> dict[str, XfrmCapability]:
    from mip6ctl.kernel.xfrm import XfrmError
    from mip6ctl.kernel.xfrm_codec import XfrmMigration
    from mip6ctl.state.xfrm import (
        Action,
        Direction,
        Mode,
        PolicyType,
        XfrmAlgo,
        XfrmPolicy,
        XfrmProto,
        XfrmSelector,
        XfrmState,
        XfrmTemplate,
    )

    def cap(r: XfrmResult) -> XfrmCapability:
        return XfrmCapability(r.ok, r.error, r.message)

    prio = ownership.XFRM_PRIORITY_MAX
    sel = XfrmSelector.between(f"{_PROBE_A}/128", f"{_PROBE_B}/128", proto=253)
    tun = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=_PROBE_B, src=_PROBE_A, reqid=0xFFFF)
    main = XfrmPolicy(sel, Direction.OUT, priority=prio, templates=(tun,))
    sub = XfrmPolicy(sel, Direction.OUT, PolicyType.SUB, priority=prio, action=Action.ALLOW)
    out: dict[str, XfrmCapability] = {}
    made_pol: list[XfrmPolicy] = []
    made_sa: list[XfrmState] = []
    try:
        r = xs.add_policies([main], replace=True)[0]
        out["policy"] = cap(r)
        if r.ok:
            made_pol.append(main)
        r = xs.add_policies([sub], replace=True)[0]
        out["sub_policy"] = cap(r)
        if r.ok:
            made_pol.append(sub)
        if out["policy"]:
            try:
                xs.migrate(
                    sel,
                    Direction.OUT,
                    [XfrmMigration(_PROBE_B, _PROBE_A, _PROBE_B, _PROBE_C, reqid=0xFFFF)],
                )
                out["migrate"] = XfrmCapability(True)
            except XfrmError as e:
                out["migrate"] = XfrmCapability(False, e.errno or 0, e.kernel_message)
        else:
            out["migrate"] = out["policy"]
        esp = XfrmState(
            dst=_PROBE_B,
            src=_PROBE_A,
            proto=XfrmProto.ESP,
            spi=0x6D36FFFF,
            mode=Mode.TRANSPORT,
            reqid=0xFFFF,
            algorithms=(
                XfrmAlgo.from_config("aes-cbc", os.urandom(16)),
                XfrmAlgo.from_config("hmac-sha256", os.urandom(32)),
            ),
        )
        ro = {
            name: XfrmState(
                dst=_PROBE_B,
                src=_PROBE_A,
                proto=proto,
                mode=Mode.RO,
                coaddr=_PROBE_C,
                selector=XfrmSelector.between(f"{_PROBE_A}/128", f"{_PROBE_B}/128"),
            )
            for name, proto in (("route2_state", XfrmProto.ROUTE2), ("hao_state", XfrmProto.HAO))
        }
        for name, st in (("esp_state", esp), *ro.items()):
            r = xs.add_states([st], replace=True)[0]
            out[name] = cap(r)
            if r.ok:
                made_sa.append(st)
    finally:
        xs.delete_policies(made_pol)
        xs.delete_states(made_sa)
    return out


def xfrm_capabilities(
    target: XfrmSocket | Callable[[], AbstractContextManager[Any]] | None = None,
) -> dict[str, XfrmCapability]:
    """Try each XFRM feature with throw-away owned objects and say what worked.

    `target` is an open `XfrmSocket`, or a callable returning a context
    manager that switches this thread into the namespace to probe (e.g.
    ``lambda: nsutil.inside(name)``), or None for the current namespace.
    Keys: policy, sub_policy, migrate, esp_state, route2_state, hao_state
    (`CAPABILITY_NEEDS` names the kernel option each one needs).  The probe
    objects use documentation addresses and the owned mark, and are deleted
    before returning.
    """
    from mip6ctl.kernel.xfrm import XfrmSocket

    if isinstance(target, XfrmSocket):
        return _probe(target)
    if target is None:
        with XfrmSocket(timeout=XFRM_PROBE_TIMEOUT) as xs:
            return _probe(xs)
    with target():
        xs = XfrmSocket(timeout=XFRM_PROBE_TIMEOUT)
    with xs:
        return _probe(xs)


# --------------------------------------------------------------------------- transports


def nf_tables_missing() -> str | None:
    """Why nf_tables cannot be used from this process, or None when it can."""
    from mip6ctl.kernel.nft import NFT_MSG_GETTABLE, NftSession

    try:
        with NftSession(timeout=2.0) as s:
            list(s.dump(NFT_MSG_GETTABLE))
    except OSError as e:
        if e.errno == errno.EPERM:
            return "nf_tables: not permitted (needs CAP_NET_ADMIN)"
        if e.errno in (errno.EPROTONOSUPPORT, errno.EOPNOTSUPP, errno.ENOENT):
            return f"nf_tables: not available in this kernel (CONFIG_NF_TABLES): {e.strerror}"
        return f"nf_tables: {e.strerror or e}"
    return None


IPPROTO_MH = 135


def kernel_mip6_missing() -> str | None:
    """Why the kernel transport cannot run here (None: it can).

    The check is the one thing the transport needs: a raw IPPROTO_MH socket
    accepting a type 2 routing header, which only a CONFIG_IPV6_MIP6 kernel
    does (EINVAL otherwise).  A throwaway socket, nothing is sent.
    """
    from mip6ctl.wire.exthdr import encode_type2_routing_header

    if "mip6" in denied_capabilities():
        return f"CONFIG_IPV6_MIP6 hidden by {DENY_ENV}"
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
    except PermissionError:
        return "CAP_NET_RAW: a raw IPPROTO_MH socket needs it"
    with s:
        try:
            s.setsockopt(
                socket.IPPROTO_IPV6,
                socket.IPV6_RTHDR,
                encode_type2_routing_header(ipaddress.IPv6Address("2001:db8::1"), 59),
            )
        except OSError as e:
            if e.errno == errno.EINVAL:
                return (
                    "CONFIG_IPV6_MIP6 (capability 'mip6'): this kernel refuses a type 2 "
                    "routing header on a raw IPPROTO_MH socket (EINVAL)"
                )
            return f"CONFIG_IPV6_MIP6 (capability 'mip6'): IPV6_RTHDR type 2: {e.strerror}"
    return None
