"""Overlapping prefixes, duplicate home addresses, and the checks at 20,000 mobile nodes."""

from __future__ import annotations

import time
from ipaddress import IPv6Network

import pytest

from mip6ctl.config.checks import _overlaps, named_interfaces
from mip6ctl.config.loader import ConfigError, load_directory

HEAD = """\
[node]
role = "ha"

[ha]
interfaces = ["home0", "home1"]
home_prefixes = [{prefixes}]
accept_mobile_routers = true
"""


def ha(*prefixes: str, extra: str = "") -> str:
    return HEAD.format(prefixes=", ".join(f'"{p}"' for p in prefixes)) + extra


def problems(d):
    with pytest.raises(ConfigError) as e:
        load_directory(d)
    return e.value.problems


def test_equal_home_prefixes_name_both_places(write):
    d = write({"a.toml": ha("2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:1::/64")})
    (p,) = problems(d)
    assert (p.kind, p.line, p.key) == ("conflict", 6, "ha.home_prefixes[2]")
    assert p.message == (
        f"home prefix 2001:db8:1::/64 is the same prefix as home prefix 2001:db8:1::/64 "
        f"at {d / 'a.toml'}:6 (ha.home_prefixes[0])"
    )


def test_home_prefix_inside_another(write):
    d = write({"a.toml": ha("2001:db8:1:5::/64", "2001:db8:1::/48")})
    (p,) = problems(d)
    assert p.key == "ha.home_prefixes[1]"
    assert p.message == (
        "home prefix 2001:db8:1::/48 contains home prefix 2001:db8:1:5::/64 at "
        f"{d / 'a.toml'}:6 (ha.home_prefixes[0]); prefixes must not overlap"
    )
    d = write({"a.toml": ha("2001:db8:1::/48", "2001:db8:1:5::/64")}, d.parent / "other")
    (p,) = problems(d)
    assert p.key == "ha.home_prefixes[1]" and "2001:db8:1:5::/64 lies inside" in p.message


def test_home_prefixes_on_several_lines_point_at_each_line(write):
    text = HEAD.replace(
        "home_prefixes = [{prefixes}]",
        'home_prefixes = [\n  "2001:db8:1::/64",\n  "2001:db8:2::/64",\n  "2001:db8:1::/64",\n]',
    )
    (p,) = problems(write({"a.toml": text}))
    assert (p.line, p.key) == (9, "ha.home_prefixes[2]")
    assert p.message.endswith(":7 (ha.home_prefixes[0])")


def test_disjoint_and_adjacent_prefixes_are_fine(write):
    load_directory(write({"a.toml": ha("2001:db8:1::/64", "2001:db8:1:1::/64", "2001:db8::/64")}))


def test_mobile_network_prefixes_of_two_nodes_overlap_across_files(write):
    d = write(
        {
            "a.toml": ha("2001:db8:1::/64"),
            "b.toml": '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::10"\n'
            'mobile_network_prefixes = ["2001:db8:50::/48"]\n',
            "c.toml": '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::11"\n'
            'mobile_network_prefixes = ["2001:db8:60::/64", "2001:db8:50:7::/64"]\n',
        }
    )
    (p,) = problems(d)
    assert (p.file, p.line, p.key) == (
        str(d / "c.toml"),
        3,
        "ha.mobile_nodes[1].mobile_network_prefixes[1]",
    )
    assert p.message == (
        "mobile network prefix 2001:db8:50:7::/64 lies inside mobile network prefix "
        f"2001:db8:50::/48 at {d / 'b.toml'}:3 (ha.mobile_nodes[0].mobile_network_prefixes[0]); "
        "prefixes must not overlap"
    )


def test_mobile_node_own_prefixes_overlap(write):
    d = write(
        {
            "a.toml": '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
            'home_agent = "2001:db8:1::1"\ninterfaces = [{ name = "eth0" }]\n'
            "mobile_router = true\n"
            'mobile_network_prefixes = ["2001:db8:9::/64", "2001:db8:9::/64"]\n'
        }
    )
    (p,) = problems(d)
    assert p.key == "mn.mobile_network_prefixes[1]" and "is the same prefix as" in p.message


def test_duplicate_home_address_names_the_first(write):
    d = write(
        {
            "a.toml": ha("2001:db8:1::/64"),
            "b.toml": '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::10"\n',
            "c.toml": '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1:0::0010"\n',
        }
    )
    (p,) = problems(d)
    assert (p.kind, p.file, p.line) == ("conflict", str(d / "c.toml"), 3)
    assert p.message == (
        f"home address 2001:db8:1::10 is already given to a mobile node at {d / 'b.toml'}:2"
    )


def test_overlaps_reports_each_contained_prefix_once_against_its_container():
    nets = ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:1::/64", "2001:db9::/32"]
    found = list(
        _overlaps(
            [(IPv6Network(n), ("p", i), "prefix") for i, n in enumerate(nets)],
            lambda path: f"f:{path[1]}",
        )
    )
    assert [(f.path, f.message.split(" at ")[1].split(";")[0]) for f in found] == [
        (("p", 1), "f:0 (p[0])"),
        (("p", 2), "f:0 (p[0])"),
    ]


def test_overlap_check_is_not_quadratic():
    # 200,000 disjoint /64s: pairwise comparison would be 2e10 steps
    base = int(IPv6Network("2001:db8::/32").network_address)
    nets = [(IPv6Network((base + (i << 64), 64)), ("p", i), "p") for i in range(200_000)]
    t0 = time.perf_counter()
    assert list(_overlaps(nets[::-1], str)) == []
    assert time.perf_counter() - t0 < 10


def test_twenty_thousand_mobile_nodes_load_fast(write):
    nodes = "".join(
        f'\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::{i + 256:x}"\ndescription = "n{i}"\n'
        for i in range(20_000)
    )
    d = write({"a.toml": ha("2001:db8:1::/64") + nodes})
    load_directory(d)  # warm
    t0 = time.perf_counter()
    gen = load_directory(d)
    # ~0.4 s on the development VM; 47 s before the line map was made linear
    assert time.perf_counter() - t0 < 4
    assert len(gen.config.ha.mobile_nodes) == 20_000
    assert gen.where(("ha", "mobile_nodes", 19_999, "description")) == f"{d / 'a.toml'}:80007"


def test_named_interfaces(write):
    gen = load_directory(write({"a.toml": ha("2001:db8:1::/64")}))
    assert named_interfaces(gen.config) == [
        (("ha", "interfaces", 0), "home0"),
        (("ha", "interfaces", 1), "home1"),
    ]
    mn = load_directory(
        write(
            {
                "a.toml": '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
                'home_agent = "dhaad"\ninterfaces = [{ name = "wlan0" }, { name = "eth1" }]\n'
            },
            gen.directory.parent / "mn",
        )
    )
    assert named_interfaces(mn.config) == [
        (("mn", "interfaces", 0), "wlan0"),
        (("mn", "interfaces", 1), "eth1"),
    ]


def test_mobile_network_prefix_inside_a_home_prefix(write):
    """A mobile network inside a home prefix would be both proxied and routed."""
    extra = (
        '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\n'
        'mobile_network_prefixes = ["2001:db8:1:0:8000::/65"]\n'
    )
    d = write({"a.toml": ha("2001:db8:1::/64", extra=extra)})
    (p,) = problems(d)
    assert p.key == "ha.mobile_nodes[0].mobile_network_prefixes[0]"
    assert "lies inside home prefix 2001:db8:1::/64" in p.message


MR = (
    '[node]\nrole = "mn"\n{kernel}[mn]\nhome_address = "2001:db8:1::100/64"\n'
    'home_agent = "2001:db8:1::1"\ninterfaces = [{{ name = "eth0" }}]\n'
    "mobile_router = true\n"
    'mobile_network_prefixes = ["{mnp}"]\n'
)


def test_mobile_router_refuses_the_seg6_backend(write):
    d = write({"a.toml": MR.format(kernel='[kernel]\ntunnel = "seg6"\n', mnp="2001:db8:9::/64")})
    (p,) = problems(d)
    assert p.key == "kernel.tunnel" and "a mobile router needs tunnel = 'ip6tnl'" in p.message
    ok = write({"a.toml": MR.format(kernel="", mnp="2001:db8:9::/64")}, d.parent / "auto")
    assert load_directory(ok).config.mn.mobile_router


def test_mobile_router_prefix_overlapping_its_home_prefix(write):
    d = write({"a.toml": MR.format(kernel="", mnp="2001:db8:1::/48")})
    (p,) = problems(d)
    assert p.key == "mn.mobile_network_prefixes[0]"
    assert "overlaps the home prefix 2001:db8:1::/64" in p.message
