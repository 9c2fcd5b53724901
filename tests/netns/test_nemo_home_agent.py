"""RFC 3963 on the home agent: ``mip6ctl daemon`` with scapy mobile routers (issue 18).

The daemon runs in the reference testbed's HA namespace with a copy of
``examples/testbed/nemo/ha`` (2001:db8:1::100 a mobile router with
2001:db8:50::/64 and 2001:db8:50:1::/64; 2001:db8:1::101 a mobile host);
the copy adds a second mobile router, 2001:db8:1::102 with 2001:db8:50:2::/64.
Scapy on br-f1 plays the mobile routers.  Every NEMO refusal status is
checked on the wire, with nothing left in the kernel; the accepted
registration (routes for the prefixes through the tunnel, the reverse-tunnel
check, status, diff) needs a data path and carries the seg6 marker.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from scapy.layers.inet6 import MIP6MH_BA, MIP6OptMobNetPrefix

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import (
    REPO,
    ROUTE_TABLE,
    HaDaemon,
    Station,
    binding_update,
    ip,
    reverse_tunnel_pairs,
)

pytestmark = nsutil.NEEDS_RADVD

EXAMPLE = REPO / "examples" / "testbed" / "nemo" / "ha"
MR = IPv6Address("2001:db8:1::100")
HOST = IPv6Address("2001:db8:1::101")
MR2 = IPv6Address("2001:db8:1::102")
COA = IPv6Address("2001:db8:a::100")
COA2 = IPv6Address("2001:db8:a::102")
SECOND_ROUTER = """
[[ha.mobile_nodes]]
home_address = "2001:db8:1::102"
mobile_network_prefixes = ["2001:db8:50:2::/64"]
"""
NO_DAD = {"default_action": 'duplicate_address_detection = false\ndefault_action'}


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    f1: Station


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        ha = HaDaemon(
            tb,
            tmp_path_factory.mktemp("ha"),
            example=EXAMPLE,
            replace=NO_DAD,
            files={"second-router.toml": SECOND_ROUTER},
        )
        station: Station | None = None
        try:
            ha.start()
            station = Station(tb, "f1", "f1t", [str(COA), str(COA2)], "2001:db8:a::1")
            yield Bed(tb, ha, station)
            assert ha.proc is not None and ha.proc.poll() is None, "the daemon died:\n" + ha.tail()
        finally:
            ha.stop()
            if station is not None:
                station.close()


def mnp(prefix: str, plen: int) -> MIP6OptMobNetPrefix:
    return MIP6OptMobNetPrefix(plen=plen, prefix=prefix)


def ba(
    bed: Bed,
    home: IPv6Address,
    seq: int,
    *options: MIP6OptMobNetPrefix,
    coa: IPv6Address = COA,
    lifetime: int = 100,
    timeout: float = 5.0,
) -> MIP6MH_BA:
    """The BA for one BU with R = 1 (and `options`) from the scapy mobile router."""
    bu = binding_update(home, coa, seq, lifetime, flags="AHR", options=list(options))
    p = bed.f1.ba(bu, timeout=timeout * nsutil.SLOWDOWN)
    assert p is not None, f"no BA for {home}:\n{bed.ha.tail()}"
    return p[MIP6MH_BA]


def routes(bed: Bed) -> dict[str, str]:
    """Destination -> its route lines in the binding table (a mobile network prefix
    has two while its router is away: the tunnel's and the at-home one behind it)."""
    out = ip(bed.tb, "ha", "-6", "route", "show", "table", str(ROUTE_TABLE))
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.strip():
            lines.setdefault(line.split()[0], []).append(line)
    return {dst: "\n".join(ls) for dst, ls in lines.items()}


def has_data_path() -> bool:
    return nsutil.kernel_lacks("seg6") is None or nsutil.kernel_lacks("ip6tnl") is None


# --------------------------------------------------------------------------- static state


def test_prefixes_are_routed_to_the_binding_table_and_at_home_to_the_router(bed: Bed) -> None:
    rules = ip(bed.tb, "ha", "-6", "rule", "show")
    # one rule for the served_prefixes block, not one per mobile network prefix
    assert f"to 2001:db8:50::/48 lookup {ROUTE_TABLE}" in rules, rules
    assert "to 2001:db8:50::/64" not in rules, rules
    at_home = routes(bed)
    line = at_home["2001:db8:50::/64"]
    assert f"via {MR} dev home0" in line and "metric 2048" in line and "proto 77" in line


# --------------------------------------------------------------------------- refusals


def test_r_flag_from_a_mobile_host_is_140(bed: Bed) -> None:
    status = ba(bed, HOST, 1)
    assert (status.status, status.flags & 0x2) == (140, 0)  # no R in a refusal
    assert str(HOST) not in bed.ha.bindings() and str(HOST) not in routes(bed)


@pytest.mark.parametrize(
    ("case", "option"),
    [
        ("a multicast prefix", mnp("ff0e::", 16)),
        ("a link-local prefix", mnp("fe80::", 64)),
        ("host bits past the prefix length", mnp("2001:db8:50::1", 64)),
        ("prefix length 129", mnp("2001:db8:50::", 129)),
        ("prefix length 0", mnp("::", 0)),
    ],
)
def test_invalid_prefix_is_141(bed: Bed, case: str, option: MIP6OptMobNetPrefix) -> None:
    assert ba(bed, MR, 2, option).status == 141, case
    assert str(MR) not in bed.ha.bindings()


@pytest.mark.parametrize(
    ("case", "home", "option"),
    [
        ("a prefix it is not listed with", MR, mnp("2001:db8:52::", 64)),
        ("a longer prefix inside its own", MR, mnp("2001:db8:50::", 80)),
        ("another mobile router's prefix", MR2, mnp("2001:db8:50::", 64)),
        ("a prefix overlapping another router's", MR2, mnp("2001:db8:50::", 48)),
    ],
)
def test_prefix_not_authorised_is_142(
    bed: Bed, case: str, home: IPv6Address, option: MIP6OptMobNetPrefix
) -> None:
    assert ba(bed, home, 3, option, coa=COA2 if home == MR2 else COA).status == 142, case
    assert str(home) not in bed.ha.bindings()
    assert "encap" not in routes(bed)["2001:db8:50::/64"]  # only the at-home route


@pytest.mark.skipif(has_data_path(), reason="needs a kernel with no IPv6-in-IPv6 data path")
def test_forwarding_setup_failure_is_143(bed: Bed) -> None:
    """This kernel has neither tunnel backend: the binding's tunnel cannot be made (the
    daemon retries for 5 s, RECONCILE_WAIT, before it answers)."""
    status = ba(bed, MR2, 4, mnp("2001:db8:50:2::", 64), coa=COA2, timeout=15.0)
    assert status.status == 143
    assert str(MR2) not in bed.ha.bindings()
    assert routes(bed)["2001:db8:50:2::/64"].count("\n") == 0  # only the at-home route


# --------------------------------------------------------------------------- accepted


def mip6ctl(bed: Bed, *args: str, config: Path | None = None) -> tuple[int, dict]:
    argv = [sys.executable, "-m", "mip6ctl", *args, "-c", str(config or bed.ha.config)]
    out = bed.tb.run("ha", [*argv, "--socket", str(bed.ha.socket), "--json"])
    return out.returncode, json.loads(out.stdout)


@pytest.mark.seg6(auto=True)
def test_explicit_registration_routes_the_prefixes_through_the_tunnel(bed: Bed, tmp_path) -> None:
    got = ba(bed, MR, 10, mnp("2001:db8:50::", 64), mnp("2001:db8:50:1::", 64))
    assert got.status == 0 and got.flags & 0x2, "accepted, with R (RFC 3963)"
    r = routes(bed)
    for prefix in ("2001:db8:1::100/128", "2001:db8:50::/64", "2001:db8:50:1::/64"):
        key = prefix.removesuffix("/128")
        assert "encap seg6" in r[key] and f"[ {COA} ]" in r[key], r
    pairs = reverse_tunnel_pairs(bed.tb)
    assert (COA, MR) in pairs and (COA, IPv6Address("2001:db8:50::")) in pairs
    row = {x["home_address"]: x for x in bed.ha.status_cli()["binding_cache"]["rows"]}[str(MR)]
    assert row["mobile_network_prefixes"] == ["2001:db8:50::/64", "2001:db8:50:1::/64"]
    assert "R" in row["flags"]

    # drift: a mobile network prefix's tunnel route deleted by hand comes back
    ip(bed.tb, "ha", "-6", "route", "del", "2001:db8:50:1::/64", "table", str(ROUTE_TABLE),
       "metric", "1024")  # fmt: skip
    deadline = time.monotonic() + 10.0 * nsutil.SLOWDOWN
    while "encap seg6" not in routes(bed).get("2001:db8:50:1::/64", ""):
        assert time.monotonic() < deadline, f"not repaired: {routes(bed)}\n{bed.ha.tail()}"
        time.sleep(0.1)

    # diff of a candidate that stops granting a prefix: the router's binding and its
    # prefix routes go, each shown with the binding it belongs to
    staged = tmp_path / "staged"
    staged.mkdir()
    for f in bed.ha.config.iterdir():
        text = f.read_text().replace(', "2001:db8:50:1::/64"', "")
        (staged / f.name).write_text(text)
    rc, doc = mip6ctl(bed, "diff", config=staged)
    assert rc == 2, doc
    mine = [c for c in doc["plan"] if c.get("origin") == f"binding {MR}"]
    deleted = {c["before"]["dst"] for c in mine if c["action"] == "delete" and c["kind"] == "route"}
    assert {"2001:db8:50::/64", "2001:db8:50:1::/64", "2001:db8:1::100/128"} <= deleted, doc

    # de-registration: the tunnel routes and elements go, the at-home routes stay
    done = ba(bed, MR, 11, lifetime=0)
    assert done.status == 0
    r = routes(bed)
    assert "2001:db8:1::100" not in r and "encap" not in r["2001:db8:50::/64"]
    assert not [p for p in reverse_tunnel_pairs(bed.tb) if p[0] == COA]


@pytest.mark.seg6(auto=True)
def test_implicit_registration_gets_every_listed_prefix(bed: Bed) -> None:
    got = ba(bed, MR, 20)  # no Mobile Network Prefix option
    assert got.status == 0 and got.flags & 0x2
    r = routes(bed)
    assert "encap seg6" in r["2001:db8:50::/64"] and "encap seg6" in r["2001:db8:50:1::/64"]
    assert ba(bed, MR, 21, lifetime=0).status == 0
