"""Kernel objects as one line for people and as a dict for JSON — never with key bytes."""

from __future__ import annotations

import dataclasses
import enum
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Any

from mip6ctl.state.objects import (
    Address,
    Neighbour,
    ProxyNeighbour,
    Route,
    Rule,
    Seg6Encap,
    Seg6LocalDecap,
    Sysctl,
    Tunnel,
)
from mip6ctl.state.xfrm import XfrmAlgo, XfrmPolicy, XfrmState


def to_json(obj: Any) -> Any:
    """Plain JSON values; algorithms show their fingerprint, never their key."""
    if isinstance(obj, XfrmAlgo):
        return {"name": obj.name, "key": obj.fingerprint}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            if f.compare is False:
                continue
            out[f.name] = to_json(getattr(obj, f.name))
        return out
    if isinstance(obj, enum.Enum):
        return obj.name.lower()
    if isinstance(obj, tuple | list):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, IPv6Address | IPv6Network | IPv4Network):
        return str(obj)
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    return obj


def key_text(key: tuple) -> str:
    if key and key[0] in ("xfrm-policy", "xfrm-state"):
        return f"{key[0]} {key[1]}"
    return " ".join(str(p) for p in key)


def summary(obj: Any) -> str:
    """One line, the way `ip` would print the object."""
    if isinstance(obj, Route):
        s = f"route {obj.dst}"
        if obj.src != "::/0":
            s += f" from {obj.src}"
        s += f" table {obj.table}"
        if obj.type != "unicast":
            s = f"{obj.type} {s}"
        if isinstance(obj.encap, Seg6Encap):
            s += f" encap seg6 {obj.encap.mode} segs {','.join(obj.encap.segs)}"
        elif isinstance(obj.encap, Seg6LocalDecap):
            s += f" encap seg6local {obj.encap.action} table {obj.encap.table}"
        if obj.gateway:
            s += f" via {obj.gateway}"
        if obj.oif:
            s += f" dev {obj.oif}"
        if obj.metric != 1024:
            s += f" metric {obj.metric}"
        return s
    if isinstance(obj, Rule):
        s = f"rule {obj.priority}"
        if obj.src != "::/0":
            s += f" from {obj.src}"
        if obj.dst != "::/0":
            s += f" to {obj.dst}"
        if obj.ipproto:
            s += f" ipproto {obj.ipproto}"
        if obj.iif:
            s += f" iif {obj.iif}"
        return s + (f" lookup {obj.table}" if obj.action == "lookup" else f" {obj.action}")
    if isinstance(obj, Address):
        return f"address {obj.address}/{obj.prefixlen} dev {obj.ifname}"
    if isinstance(obj, ProxyNeighbour):
        return f"proxy neighbour {obj.address} dev {obj.ifname}"
    if isinstance(obj, Neighbour):
        return f"neighbour {obj.address} lladdr {obj.lladdr} dev {obj.ifname} permanent"
    if isinstance(obj, Tunnel):
        if obj.external:
            return f"tunnel {obj.name} ip6tnl external"
        return f"tunnel {obj.name} ip6tnl {obj.local} -> {obj.remote}"
    if isinstance(obj, Sysctl):
        return f"sysctl {obj.path.replace('/', '.')} = {obj.value}"
    if isinstance(obj, XfrmPolicy):
        tmpl = ", ".join(f"{t.proto.name.lower()}/{t.mode.name.lower()}" for t in obj.templates)
        return f"xfrm policy {obj.direction.name.lower()} {obj.selector}" + (
            f" [{tmpl}]" if tmpl else ""
        )
    if isinstance(obj, XfrmState):
        return f"xfrm state {obj.proto.name.lower()} {obj.src} -> {obj.dst} spi {obj.spi:#x}"
    return repr(obj)


def change_doc(c: Any, outcome: Any = None) -> dict[str, Any]:
    """One planned change as the stable JSON of `mip6ctl diff/apply --json`."""
    obj = c.desired if c.desired is not None else c.observed
    doc: dict[str, Any] = {
        "action": c.action,
        "kind": c.kind,
        "key": key_text(c.key),
        "summary": summary(obj),
        "origin": str(c.origin) if c.origin else None,
        "before": to_json(c.observed),
        "after": to_json(c.desired),
    }
    if outcome is not None:
        doc["result"] = outcome.status
        if outcome.message:
            doc["message"] = outcome.message
    return doc
