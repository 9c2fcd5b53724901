"""`mip6ctl doctor`: which kernel features exist here, and what mip6ctl does about each.

The probe runs in a throwaway network namespace, so it needs root (or
CAP_SYS_ADMIN + CAP_NET_ADMIN) but never changes the host.  pyroute2 is not
imported at all; rich only when a table is printed.  After the capabilities
it states the decisions `[kernel]`'s "auto" settings lead to on this kernel
(tunnel backend, signalling transport, home address defence) and why.
"""

from __future__ import annotations

import argparse
from typing import Any


def decisions(caps: list[Any], kernel: Any) -> dict[str, dict[str, str]]:
    """What `[kernel]` resolves to here, each with the reason."""
    from mip6ctl.kernel.transport import TransportUnavailable, select_transport
    from mip6ctl.state.render import Capabilities

    available = {c.name: c.available for c in caps}
    resolved = Capabilities.resolve(available, kernel)
    out: dict[str, dict[str, str]] = {}
    has_ip6tnl = bool(available.get("ip6tnl"))
    tunnel = resolved.tunnel
    why = {
        ("auto", True): "auto: the kernel has ip6tnl",
        ("auto", False): "auto: no ip6tnl (CONFIG_IPV6_TUNNEL); seg6 encap routes instead",
    }.get((kernel.tunnel, has_ip6tnl), f"configured: tunnel = {kernel.tunnel!r}")
    if kernel.tunnel == "ip6tnl" and not has_ip6tnl:
        why = "configured ip6tnl, but this kernel has none: the daemon will fail to tunnel"
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
        why = "no CONFIG_IPV6_MIP6: traffic stays in the tunnel through the home agent"
    elif sig != "kernel":
        why = (
            "XFRM route2/hao states; a mobile node also needs signalling = kernel "
            "(its Home Test arrives through the tunnel), else it keeps the tunnel"
        )
    else:
        why = "XFRM route2/hao states and the kernel signalling transport"
    out["route_optimization"] = {
        "setting": "-",
        "choice": "available" if ro else "unavailable",
        "reason": why,
    }
    return out


def _kernel_section(config_dir: str | None) -> tuple[Any, str | None]:
    from mip6ctl.config.loader import ConfigError, load_directory
    from mip6ctl.config.model import KernelSection

    if not config_dir:
        return KernelSection(), None
    try:
        return load_directory(config_dir).config.kernel, config_dir
    except ConfigError as e:
        return (
            KernelSection(),
            f"{config_dir} is invalid ({len(e.problems)} problem(s)); showing the defaults",
        )


def run(args: argparse.Namespace) -> int:
    from mip6ctl.cli.output import console, emit_json
    from mip6ctl.kernel.probe import probe

    caps = probe()
    kernel, source = _kernel_section(getattr(args, "config_dir", None))
    chosen = decisions(caps, kernel)
    if args.json:
        emit_json(
            "doctor",
            {
                "ok": True,
                "capabilities": [c.as_dict() for c in caps],
                "config": source,
                "decisions": chosen,
            },
        )
        return 0

    from rich.table import Table

    table = Table(title="mip6ctl doctor: kernel capabilities", show_lines=True)
    for col in ("capability", "available", "how detected", "enables", "without it"):
        table.add_column(col, overflow="fold")
    marks = {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]unknown[/]"}
    for c in caps:
        table.add_row(c.name, marks[c.available], c.detail, c.enables, c.fallback)
    con = console()
    con.print(table)
    title = f"decisions for {source}" if source else "decisions with the [kernel] defaults"
    out = Table(title=title)
    for col in ("setting", "configured", "in use here", "why"):
        out.add_column(col, overflow="fold")
    for name, d in chosen.items():
        out.add_row(name, d["setting"], f"[bold]{d['choice']}[/]", d["reason"])
    con.print(out)
    return 0
