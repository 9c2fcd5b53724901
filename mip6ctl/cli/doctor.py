"""`mip6ctl doctor`: which kernel features exist here, and what mip6ctl does about each.

The probe runs in a throwaway network namespace, so it needs root (or
CAP_SYS_ADMIN + CAP_NET_ADMIN) but never changes the host.  pyroute2 is not
imported at all; rich only for the human answer.  After the capabilities
it states the decisions `[kernel]`'s "auto" settings lead to on this kernel
(tunnel backend, signalling transport, home address defence, IPsec: ESP,
MIGRATE or delete+re-add on movement, sub-policies) and why.  With a
configuration (`-c DIR`) it also checks it against this kernel: a check that
fails (an IPsec configuration on a kernel without ESP or Mobile IPv6) means
the daemon refuses to start it here, and doctor exits 1; a home agent that
accepts Binding Updates without IPsec is said plainly.
"""

from __future__ import annotations

import argparse
import re
from typing import Any


def decisions(caps: list[Any], kernel: Any) -> dict[str, dict[str, str]]:
    """What `[kernel]` resolves to here, each with the reason."""
    from mip6ctl.kernel.transport import TransportUnavailable, select_transport
    from mip6ctl.state.render import Capabilities, tunnel_problem

    available = {c.name: c.available for c in caps}
    resolved = Capabilities.resolve(available, kernel)
    out: dict[str, dict[str, str]] = {}
    has_ip6tnl = bool(available.get("ip6tnl"))
    tunnel = resolved.tunnel
    why = {
        ("auto", True): "auto: the kernel has ip6tnl",
        ("auto", False): "auto: no ip6tnl (CONFIG_IPV6_TUNNEL); seg6 encap routes instead",
    }.get((kernel.tunnel, has_ip6tnl), f"configured: tunnel = {kernel.tunnel!r}")
    problem = tunnel_problem(available, kernel)
    if problem:
        why = problem
    out["tunnel"] = {"setting": kernel.tunnel, "choice": tunnel, "reason": why}
    try:
        sig = select_transport(kernel.signalling, available)
        if kernel.signalling == "auto":
            reason = (
                "auto: the kernel has CONFIG_IPV6_MIP6 (raw IPPROTO_MH socket)"
                if sig == "kernel"
                else "auto: no CONFIG_IPV6_MIP6; AF_PACKET capture + nftables + IPPROTO_RAW"
            )
        else:
            reason = f"configured: signalling = {kernel.signalling!r}"
    except TransportUnavailable as e:
        sig, reason = "unavailable", str(e)
    out["signalling"] = {"setting": kernel.signalling, "choice": sig, "reason": reason}
    proxy = resolved.proxy_ndp
    out["home_address_defence"] = {
        "setting": kernel.home_address_defence,
        "choice": "proxy-ndp" if proxy else "daemon",
        "reason": "kernel proxy NDP entries"
        if proxy
        else "the daemon answers Neighbor Solicitations",
    }
    ro = resolved.route_optimization
    if not ro:
        why = (
            "no CONFIG_IPV6_MIP6 (XFRM route2/hao): no route optimisation, listed or on "
            "traffic; traffic stays in the tunnel through the home agent"
        )
    elif sig != "kernel":
        why = (
            "XFRM route2/hao states; a mobile node also needs signalling = kernel "
            "(its Home Test arrives through the tunnel), else it keeps the tunnel"
        )
    else:
        why = (
            "XFRM route2/hao states and the kernel signalling transport; on traffic: "
            "XFRM ACQUIRE of the trigger policy starts return routability"
        )
    out["route_optimization"] = {
        "setting": "-",
        "choice": "available" if ro else "unavailable",
        "reason": why,
    }
    return out


def ipsec_decisions(caps: list[Any], cfg: Any | None) -> dict[str, dict[str, str]]:
    """IPsec on this kernel: ESP, how tunnel-mode SAs follow movement, sub-policies.

    With a configuration (`cfg`), for the templates it uses; without, what the
    kernel offers.
    """
    from mip6ctl.config.ipsec_needs import IpsecNeeds, needs

    available = {c.name: c.available for c in caps}
    n = needs(cfg) if cfg is not None else IpsecNeeds()
    esp, migrate, sub = (available.get(k) for k in ("esp", "migrate", "sub_policy"))
    modes = sorted({cfg.ipsec[t].key_management for t in n.templates}) if n.templates else []
    out: dict[str, dict[str, str]] = {}
    if n.requires_esp:
        reason = (
            f"{n.describe()}: ESP SAs and policies on the kernel signalling transport"
            if esp and available.get("mip6")
            else f"{n.describe()}: this kernel lacks "
            + " and ".join(
                o
                for o, ok in (
                    ("CONFIG_INET6_ESP", esp),
                    ("CONFIG_IPV6_MIP6", available.get("mip6")),
                )
                if not ok
            )
            + "; the daemon refuses to start"
        )
        choice = "esp" if esp and available.get("mip6") else "unavailable"
    elif cfg is not None:
        choice, reason = "none", "no [ipsec.*] template is used by a mobile node"
    else:
        choice = "available" if esp else "unavailable"
        reason = (
            "CONFIG_INET6_ESP: manual keys and IKE (ESP SAs need the kernel signalling transport)"
            if esp
            else "no CONFIG_INET6_ESP: a configuration that uses an [ipsec.*] template cannot "
            "run here"
        )
    out["ipsec"] = {"setting": ", ".join(modes) or "-", "choice": choice, "reason": reason}
    if migrate:
        mv_choice, mv_reason = "migrate", "XFRM_MSG_MIGRATE moves tunnel-mode SAs and policies"
    else:
        mv_choice = "delete+re-add"
        mv_reason = "no CONFIG_XFRM_MIGRATE: manual-key tunnel-mode SAs are deleted and re-added"
        if n.requires_migrate:
            mv_choice = "unavailable"
            mv_reason += "; IKE templates with tunnel-mode protection cannot follow movement"
    if n.requires_esp and not n.tunnel:
        mv_reason += " (no template in use protects tunnel-mode kinds: nothing to move)"
    out["ipsec_movement"] = {"setting": "-", "choice": mv_choice, "reason": mv_reason}
    out["sub_policies"] = {
        "setting": "-",
        "choice": "available" if sub else "unavailable",
        "reason": "CONFIG_XFRM_SUB_POLICY: route-optimisation policies layered over IPsec ones"
        if sub
        else "no CONFIG_XFRM_SUB_POLICY: route optimisation and IPsec cannot be combined"
        + (" (mn.route_optimization asks for both)" if n.requires_sub_policy else ""),
    }
    return out


def checks(caps: list[Any], cfg: Any | None) -> list[dict[str, str]]:
    """What this host means for the configuration: {check, status, message}, status one of
    "ok", "warning", "failed".  Failed: the daemon refuses to start it here."""
    if cfg is None:
        return []
    from mip6ctl.config.ipsec_needs import (
        kernel_problems,
        kernel_warnings,
        needs,
        unprotected_warning,
    )

    available = {c.name: c.available for c in caps}
    out: list[dict[str, str]] = []
    if needs(cfg).requires_esp:
        problems = kernel_problems(cfg, available)
        out += [
            {"check": "ipsec", "status": "failed", "message": f"{p}: the daemon refuses to start"}
            for p in problems
        ]
        out += [
            {"check": "ipsec", "status": "warning", "message": w}
            for w in kernel_warnings(cfg, available)
        ]
        if not problems:
            out.append(
                {"check": "ipsec", "status": "ok", "message": "this kernel can run its IPsec"}
            )
    text = unprotected_warning(cfg)
    if text is not None:
        out.append({"check": "protection", "status": "warning", "message": text})
    if cfg.node.role != "cn":  # home agents and mobile nodes tunnel; correspondents do not
        from mip6ctl.state.render import is_mobile_router, tunnel_problem

        problem = tunnel_problem(available, cfg.kernel, mobile_router=is_mobile_router(cfg))
        if problem:
            out.append({"check": "tunnel", "status": "warning", "message": problem})
    return out


def _load(config_dir: str | None) -> tuple[Any, Any | None, str | None]:
    """([kernel] section, whole configuration or None, what the decisions are for)."""
    from mip6ctl.config.loader import ConfigError, load_directory
    from mip6ctl.config.model import KernelSection

    if not config_dir:
        return KernelSection(), None, None
    try:
        cfg = load_directory(config_dir).config
    except ConfigError as e:
        return (
            KernelSection(),
            None,
            f"{config_dir} is invalid ({len(e.problems)} problem(s)); showing the defaults",
        )
    return cfg.kernel, cfg, config_dir


def run(args: argparse.Namespace) -> int:
    from mip6ctl.cli.output import console, emit_json
    from mip6ctl.kernel.probe import probe

    caps = probe()
    kernel, cfg, source = _load(getattr(args, "config_dir", None))
    chosen = decisions(caps, kernel) | ipsec_decisions(caps, cfg)
    found = checks(caps, cfg)
    ok = not any(c["status"] == "failed" for c in found)
    if args.json:
        emit_json(
            "doctor",
            {
                "ok": ok,
                "capabilities": [c.as_dict() for c in caps],
                "config": source,
                "decisions": chosen,
                "checks": found,
            },
        )
        return 0 if ok else 1

    render(console(), caps, chosen, found, source)
    return 0 if ok else 1


# --------------------------------------------------------------------------- human output
#
# Plain lines, wrapped here to the console's width: the capabilities as a compact list
# (mark, name, kernel option) each with one note, the decisions as
# "name (setting): choice — reason" and the checks as "✗ failed name: message", every
# long text a paragraph with a hanging indent.  A table folds its cells into columns
# of a dozen characters on an 80-column terminal.

#: (mark, style) per Capability.available
_CAP_MARKS: dict[bool | None, tuple[str, str]] = {
    True: ("✓", "green"),
    False: ("✗", "red"),
    None: ("?", "yellow"),
}
_CHECK_MARKS = {
    "ok": ("✓ ok", "green"),
    "warning": ("! warning", "yellow"),
    "failed": ("✗ failed", "red"),
}
#: hanging indent of a paragraph's continuation lines under an item at column 2
_HANG = 6


def _words(text: str, style: str = "") -> list[tuple[str, str]]:
    return [(w, style) for w in text.split()]


def _wrap(tokens: list[tuple[str, str]], width: int, lead: int = 2, hang: int = _HANG) -> list[Any]:
    """Greedy word wrap of (word, style) tokens into rich Texts no wider than `width`.

    The first line starts after `lead` spaces, the others after `hang`; a word longer
    than a whole line is cut (nothing is ever wider than `width`).  A token may
    contain spaces (padding of an aligned column): it is kept whole.
    """
    from rich.cells import cell_len
    from rich.text import Text

    width = max(width, hang + 10)
    lines: list[Any] = []
    line, used, empty = Text(" " * lead), lead, True
    for word, style in tokens:
        while word:
            need = cell_len(word) + (0 if empty else 1)
            if used + need <= width:
                if not empty:
                    line.append(" ")
                line.append(word, style)
                used, empty = used + need, False
                break
            if empty:  # longer than a whole line: cut it
                room = max(width - used, 1)
                line.append(word[:room], style)
                word = word[room:]
                used, empty = width, False
            line.rstrip()
            lines.append(line)
            line, used, empty = Text(" " * hang), hang, True
    if not empty:
        line.rstrip()
        lines.append(line)
    return lines


def _option(c: Any) -> tuple[str, str]:
    """(kernel option, what the probe said without it): probe() ends the detail with
    " [OPTION]"."""
    m = re.fullmatch(r"(.*?)\s*\[([^\[\]]*)\]", c.detail or "", re.S)
    if m:
        return m.group(2), m.group(1)
    from mip6ctl.kernel.probe import MEANING

    return MEANING.get(c.name, ("-",))[0], c.detail or ""


def render(
    con: Any,
    caps: list[Any],
    chosen: dict[str, dict[str, str]],
    found: list[dict[str, str]],
    source: str | None,
) -> None:
    """The human answer of `mip6ctl doctor`, fitted to `con.width`."""
    width = con.width

    def out(lines: list[Any]) -> None:
        for line in lines:
            con.print(line, soft_wrap=True)

    def heading(text: str) -> None:
        out(_wrap(_words(text, "bold"), width, lead=0, hang=2))

    heading("mip6ctl doctor: kernel capabilities (✓ available, ✗ missing, ? not probed)")
    name_width = max((len(c.name) for c in caps), default=0)
    previous = None
    for c in caps:
        mark, style = _CAP_MARKS.get(c.available, _CAP_MARKS[None])
        option, detail = _option(c)
        out(_wrap([(mark, style), (c.name.ljust(name_width + 1), "bold"), *_words(option)], width))
        if c.available:
            out(_wrap(_words(c.enables, "dim"), width, lead=_HANG))
            continue
        out(_wrap([("without it:", "bold"), *_words(c.fallback)], width, lead=_HANG))
        if detail:
            said = "as above" if detail == previous else detail
            out(_wrap([("probe:", "dim"), *_words(said, "dim")], width, lead=_HANG))
            previous = detail

    con.print()
    heading(f"decisions for {source}" if source else "decisions with the [kernel] defaults")
    for name, d in chosen.items():
        label = name if d["setting"] in ("-", "") else f"{name} ({d['setting']})"
        tokens = [(f"{label}:", ""), (d["choice"], "bold"), ("—", ""), *_words(d["reason"])]
        out(_wrap(tokens, width))

    if found:
        con.print()
        heading(f"checks of {source}")
    for c in found:
        mark, style = _CHECK_MARKS.get(c["status"], (c["status"], "yellow"))
        tokens = [*_words(mark, style), (f"{c['check']}:", "bold"), *_words(c["message"])]
        out(_wrap(tokens, width))
