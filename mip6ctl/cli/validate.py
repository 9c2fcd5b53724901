"""`mip6ctl validate`: check a configuration directory without touching anything.

Exit 0 when the directory forms a valid generation (a one-screen summary),
1 with every problem as `file:line: key.path: message` otherwise.  Meant for
humans and for Ansible's `template ... validate:`; key material never shows,
only fingerprints.  Warnings (an interface this host does not have, or a
kernel without the ESP / Mobile IPv6 support an IPsec configuration needs:
the daemon here would refuse the generation, another host may be its
target; a home agent that accepts Binding Updates without IPsec) are shown
too, in `warnings` with --json, and leave the exit code alone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mip6ctl.cli import exitcodes
from mip6ctl.cli.output import Painter, emit_json


def summary(gen: Any) -> dict[str, Any]:
    """What a generation declares, in a few lines (no secrets: fingerprints only)."""
    cfg = gen.config
    out: dict[str, Any] = {
        "role": str(cfg.node.role),
        "name": cfg.node.name,
        "kernel": {"tunnel": cfg.kernel.tunnel, "signalling": cfg.kernel.signalling},
        "correspondent": {
            "route_optimization": cfg.cn.route_optimization,
            "max_binding_lifetime": cfg.cn.max_binding_lifetime,
            "policies": len(cfg.cn.policies),
        },
    }
    if cfg.ha is not None:
        out["home_agent"] = {
            "interfaces": list(cfg.ha.interfaces),
            "home_prefixes": [str(p) for p in cfg.ha.home_prefixes],
            "address": str(cfg.ha.address) if cfg.ha.address else None,
            "mobile_nodes": len(cfg.ha.mobile_nodes),
            "default_action": cfg.ha.default_action,
            "max_binding_lifetime": cfg.ha.max_binding_lifetime,
            "mobile_routers": (
                sum(1 for n in cfg.ha.mobile_nodes if n.is_mobile_router)
                if cfg.ha.accept_mobile_routers
                else 0
            ),
        }
    if cfg.mn is not None:
        out["mobile_node"] = {
            "home_address": str(cfg.mn.home_address),
            "home_agent": str(cfg.mn.home_agent),
            "interfaces": [{"name": i.name, "preference": i.preference} for i in cfg.mn.interfaces],
            "route_optimization": cfg.mn.route_optimization,
            "mobile_router": (
                {
                    "mode": "explicit" if cfg.mn.explicit_mode else "implicit",
                    "mobile_network_prefixes": [str(x) for x in cfg.mn.mobile_network_prefixes],
                }
                if cfg.mn.mobile_router
                else None
            ),
        }
    if cfg.ipsec:
        out["ipsec"] = {
            name: {
                "protect": [str(p) for p in tpl.protect],
                "key_management": tpl.key_management,
                "keys": {
                    section: gen.keys[f"ipsec.{name}.{section}"].fingerprint
                    for section in ("encryption", "authentication")
                    if f"ipsec.{name}.{section}" in gen.keys
                },
            }
            for name, tpl in cfg.ipsec.items()
        }
    return out


def host_warnings(gen: Any) -> list[Any]:
    """Problems of this host rather than of the files: interfaces that do not exist here,
    and a kernel that cannot run the IPsec the configuration requires."""
    from mip6ctl.config.checks import named_interfaces
    from mip6ctl.config.problems import Problem

    out = []
    for path, name in named_interfaces(gen.config):
        if not interface_exists(name):
            file, line = gen.locate(path)
            out.append(
                Problem(
                    "host",
                    f"no interface {name!r} on this host (a daemon here refuses this "
                    "configuration until it exists)",
                    file,
                    line,
                    path,
                )
            )
    return out + ipsec_host_warnings(gen) + security_warnings(gen)


#: Capabilities the IPsec check of `validate` reads from the probe.
IPSEC_CAPABILITIES = ("esp", "mip6", "migrate", "sub_policy")


def kernel_capabilities() -> list[Any]:
    """This kernel's capabilities, probed the way `mip6ctl doctor` does (needs root: the
    probe runs in a throwaway network namespace; without privileges every capability
    comes back None, "not probed")."""
    from mip6ctl.kernel.probe import probe

    return probe()


def ipsec_host_warnings(gen: Any) -> list[Any]:
    """When the configuration requires IPsec: what this kernel lacks for it.

    Warnings, like the interface ones (the files may target another host), each
    located at the reference that asks for IPsec.  Only probed when needed.
    """
    from mip6ctl.config.ipsec_needs import (
        located_kernel_problems,
        located_kernel_warnings,
        needs,
    )
    from mip6ctl.config.problems import Problem

    cfg = gen.config
    n = needs(cfg)
    if not n.requires_esp:
        return []
    try:
        caps = kernel_capabilities()
    except Exception as e:  # the probe never should; a report, not a traceback
        caps = []
        failure = f"{type(e).__name__}: {e}"
    else:
        failure = None
    available = {c.name: c.available for c in caps}
    if failure is not None or any(available.get(c) is None for c in ("esp", "mip6")):
        detail = failure or next(
            (c.detail for c in caps if c.name == "esp" and c.available is None), "not probed"
        )
        file, line = gen.locate(n.esp[0])
        return [
            Problem(
                "host",
                f"this configuration requires IPsec ({n.describe()}); the check that this "
                f"kernel can run it was skipped: the probe needs root ({detail}); "
                "`mip6ctl doctor -c DIR` as root tells",
                file,
                line,
                n.esp[0],
            )
        ]
    out = []
    for path, message in located_kernel_problems(cfg, available):
        file, line = gen.locate(path)
        out.append(Problem("host", f"{message}: a daemon here refuses to start", file, line, path))
    for path, message in located_kernel_warnings(cfg, available):
        file, line = gen.locate(path)
        out.append(Problem("host", message, file, line, path))
    return out


def security_warnings(gen: Any) -> list[Any]:
    """A home agent that accepts Binding Updates without IPsec (kind "security")."""
    from mip6ctl.config.ipsec_needs import unprotected_warning
    from mip6ctl.config.problems import Problem

    cfg = gen.config
    text = unprotected_warning(cfg)
    if text is None or cfg.ha is None:
        return []
    if cfg.ha.default_action == "allow":
        path: tuple[str | int, ...] = ("ha", "default_action")
    else:
        first = next(i for i, m in enumerate(cfg.ha.mobile_nodes) if m.ipsec is None)
        path = ("ha", "mobile_nodes", first)
    file, line = gen.locate(path)
    return [Problem("security", text, file, line, path)]


def interface_exists(name: str) -> bool:
    """True when this host (network namespace) has an interface of that name."""
    # the C module behind `socket`, which is already loaded; `socket` costs ~7 ms
    from _socket import if_nametoindex

    try:
        if_nametoindex(name)
    except (OSError, ValueError):
        return False
    return True


def _print_warnings(warnings: list[Any]) -> None:
    p = Painter(sys.stderr)
    for w in warnings:
        parts = [p("warning", "bold", "yellow")]
        if w.location():
            parts.append(p(w.location(), "yellow"))
        if w.key:
            parts.append(p(w.key, "bold"))
        p.line(": ".join([*parts, w.message]))


def _routers(h: dict[str, Any]) -> str:
    n = h.get("mobile_routers") or 0
    return f" ({n} mobile router{'s' if n != 1 else ''})" if n else ""


def _print_valid(body: dict[str, Any]) -> None:
    p = Painter(sys.stdout)
    s = body["summary"]
    files = len(body["files"])
    p.line(
        f"{p('✓', 'bold', 'green')} {body['directory']}: valid — generation "
        f"{p(body['generation'][:19], 'cyan')} ({files} file{'s' if files != 1 else ''})"
    )

    def row(label: str, text: str) -> None:
        p.line(f"  {p(label.ljust(14), 'bold')} {text}")

    row("role", s["role"] + (f" ({s['name']})" if s.get("name") else ""))
    k = s["kernel"]
    row("kernel", f"tunnel {k['tunnel']}, signalling {k['signalling']}")
    if "home_agent" in s:
        h = s["home_agent"]
        row(
            "home agent",
            f"links {', '.join(h['interfaces'])} · prefixes {', '.join(h['home_prefixes'])} · "
            f"{h['mobile_nodes']} mobile node(s){_routers(h)}, others {h['default_action']} · "
            f"max lifetime {h['max_binding_lifetime']} s",
        )
    if "mobile_node" in s:
        m = s["mobile_node"]
        ifs = ", ".join(f"{i['name']}({i['preference']})" for i in m["interfaces"])
        ro = "on" if m["route_optimization"] else "off"
        row(
            "mobile node",
            f"{m['home_address']} · home agent {m['home_agent']} · interfaces {ifs} · "
            f"route optimisation {ro}",
        )
        mr = m.get("mobile_router")
        if mr:
            nets = ", ".join(mr["mobile_network_prefixes"]) or "none"
            row("mobile router", f"{mr['mode']} mode · mobile network {nets}")
    cn = s["correspondent"]
    n = cn["policies"]
    row(
        "correspondent",
        f"route optimisation {'on' if cn['route_optimization'] else 'off'} · bindings ≤ "
        f"{cn['max_binding_lifetime']} s · {n} polic{'y' if n == 1 else 'ies'}",
    )
    for name, t in s.get("ipsec", {}).items():
        keys = " ".join(f"{sec} {fp}" for sec, fp in t["keys"].items())
        row(
            f"ipsec {name}",
            f"{', '.join(t['protect'])} · {t['key_management']}" + (f" · {keys}" if keys else ""),
        )


def _print_invalid(directory: str, problems: list[Any]) -> None:
    p = Painter(sys.stderr)
    for prob in problems:
        parts = []
        if prob.location():
            parts.append(p(prob.location(), "red"))
        if prob.key:
            parts.append(p(prob.key, "bold"))
        p.line(": ".join([*parts, prob.message]))
    n = len(problems)
    p.line(
        f"{p('✗', 'bold', 'red')} {directory}: {n} problem{'s' if n != 1 else ''}; nothing applied"
    )


def run(args: argparse.Namespace) -> int:
    from mip6ctl.config.loader import ConfigError, load_directory

    directory = args.config_dir
    try:
        gen = load_directory(directory)
    except ConfigError as e:
        if args.json:
            emit_json(
                "validate",
                {
                    "valid": False,
                    "directory": str(directory),
                    "errors": [p.as_dict() for p in e.problems],
                    "warnings": [],
                },
            )
        else:
            _print_invalid(str(directory), e.problems)
        return exitcodes.ERROR
    warnings = host_warnings(gen)
    body = {
        "valid": True,
        "directory": str(directory),
        "generation": gen.digest,
        "files": [{"path": str(f.path), "sha256": f.sha256} for f in gen.files],
        "summary": summary(gen),
        "errors": [],
        "warnings": [w.as_dict() for w in warnings],
    }
    if args.json:
        emit_json("validate", body)
    else:
        _print_warnings(warnings)
        _print_valid(body)
    sys.stdout.flush()
    return exitcodes.OK
