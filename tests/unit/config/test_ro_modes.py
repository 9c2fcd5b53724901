"""[[mn.correspondents]] route_optimization: modes, the boolean shorthand, bad values."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from mip6ctl.config.loader import ConfigError, load_directory
from mip6ctl.engine.route_optimisation import correspondent_policy, traffic_possible

MN = """\
[node]
role = "mn"

[mn]
home_address = "2001:db8:1::100/64"
home_agent = "2001:db8:1::1"
interfaces = [{{ name = "mn0" }}]
{extra}
"""


def entry(prefix: str, ro: str) -> str:
    return f'[[mn.correspondents]]\nprefix = "{prefix}"\nroute_optimization = {ro}\n'


def test_modes_and_shorthand(write) -> None:
    d = write(
        {
            "mn.toml": MN.format(
                extra=entry("2001:db8:c::2/128", "true")
                + entry("2001:db8:c::/48", "true")
                + entry("2001:db8:bad::/48", "false")
                + entry("2001:db8:e::/48", '"never"')
            )
        }
    )
    mn = load_directory(d).config.mn
    assert mn is not None
    assert [c.mode for c in mn.correspondents] == ["always", "on-traffic", "never", "never"]
    assert correspondent_policy(mn, IPv6Address("2001:db8:c::2")) == "always"
    assert correspondent_policy(mn, IPv6Address("2001:db8:c::9")) == "on-traffic"
    assert correspondent_policy(mn, IPv6Address("2001:db8:bad::1")) == "never"
    assert correspondent_policy(mn, IPv6Address("2001:db8:f::1")) == "on-traffic"  # unlisted
    assert correspondent_policy(mn, IPv6Address("2001:db8:1::1")) == "never"  # the HA
    assert traffic_possible(mn)


def test_catch_all_never_turns_traffic_triggering_off(write) -> None:
    d = write({"mn.toml": MN.format(extra=entry("::/0", '"never"'))})
    mn = load_directory(d).config.mn
    assert mn is not None and not traffic_possible(mn)


def test_always_on_a_prefix_is_refused_with_its_place(write) -> None:
    d = write({"mn.toml": MN.format(extra=entry("2001:db8:c::/48", '"always"'))})
    with pytest.raises(ConfigError) as e:
        load_directory(d)
    (p,) = e.value.problems
    assert p.key == "mn.correspondents[0].route_optimization" and "/128" in p.message


def test_unknown_mode_is_refused(write) -> None:
    d = write({"mn.toml": MN.format(extra=entry("2001:db8:c::/48", '"sometimes"'))})
    with pytest.raises(ConfigError):
        load_directory(d)
