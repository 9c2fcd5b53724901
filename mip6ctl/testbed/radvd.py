"""radvd configurations for the reference testbed.

Every interface advertises fast (MinRtrAdvInterval 0.03 s, MaxRtrAdvInterval
0.07 s, the RFC 6275 §7.5 minimums), so a mobile node notices a move within a
tenth of a second.  radvd accepts intervals that small only with a Mobile IPv6
extension switched on, hence `AdvIntervalOpt on` (RFC 6275 §7.3) everywhere;
it also tells the mobile node how often to expect an RA.  The default router
lifetime is set explicitly: radvd's default, 3 × MaxRtrAdvInterval, rounds
down to 0 s (see TESTBED.md).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

MIN_INTERVAL = 0.03
MAX_INTERVAL = 0.07
DEFAULT_LIFETIME = 30
# Differs from the router lifetime, so radvd sends the Home Agent Information
# option (it leaves it out when lifetime and preference are the defaults).
HA_LIFETIME = 1800


@dataclass(frozen=True, slots=True)
class Advert:
    """What one interface advertises."""

    interface: str
    prefix: str  # as written into the config (the home link's carries the HA's address)
    home_agent: bool = False  # H flag, Home Agent Information option, router address


def find_radvd() -> str | None:
    return shutil.which("radvd") or shutil.which("radvd", path="/usr/sbin:/sbin")


def render(adverts: list[Advert]) -> str:
    """radvd.conf text for one radvd process."""
    out = []
    for a in adverts:
        ha = ""
        if a.home_agent:
            ha = (
                "    AdvHomeAgentFlag on;\n"
                "    AdvHomeAgentInfo on;\n"
                f"    HomeAgentLifetime {HA_LIFETIME};\n"
                "    HomeAgentPreference 0;\n"
            )
        router_addr = "        AdvRouterAddr on;\n" if a.home_agent else ""
        out.append(
            f"interface {a.interface} {{\n"
            "    AdvSendAdvert on;\n"
            f"    MinRtrAdvInterval {MIN_INTERVAL};\n"
            f"    MaxRtrAdvInterval {MAX_INTERVAL};\n"
            f"    MinDelayBetweenRAs {MIN_INTERVAL};\n"
            f"    AdvDefaultLifetime {DEFAULT_LIFETIME};\n"
            "    AdvIntervalOpt on;\n"
            f"{ha}"
            f"    prefix {a.prefix} {{\n"
            "        AdvOnLink on;\n"
            "        AdvAutonomous on;\n"
            f"{router_addr}"
            "    };\n"
            "};\n"
        )
    return "".join(out)
