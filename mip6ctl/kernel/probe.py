"""Kernel capability probe: try each feature in a throwaway network namespace.

Trying beats reading kernel configs: modules may be missing, built in,
loadable or blocked, and only creating the object tells.  Everything runs in
a thread that unshares into a fresh namespace (mip6ctl.kernel.netns), so the
host is never touched and nothing is left behind.  rtnetlink features are
tried with mip6ctl's own writer (objects carry the ownership mark); XFRM
features are delegated to `mip6ctl.kernel.xfrm.xfrm_capabilities`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import asdict, dataclass

from mip6ctl.kernel import netns

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
        from mip6ctl.kernel.xfrm import xfrm_capabilities
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
    for name, (option, enables, fallback) in MEANING.items():
        available, detail = found.get(name, (None, _missing_reason(found)))
        caps.append(Capability(name, available, f"{detail} [{option}]", enables, fallback))
    return caps


def _missing_reason(found: dict[str, tuple[bool | None, str]]) -> str:
    errors = [d for k, (_a, d) in found.items() if k.startswith("_")]
    return "not probed: " + ("; ".join(errors) if errors else "no result")
