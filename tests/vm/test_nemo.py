"""Network mobility end to end (issue 18, vm tier): a mobile router and the host behind it.

The reference testbed with one more namespace, ``mnet``, behind the mobile
node: the mobile node is a mobile router (``examples/testbed/nemo/mr``) whose
mobile network 2001:db8:50::/64 is its interface ``mr1``; ``mnet`` is a host
on it (2001:db8:50::2, its default route from the router's Router
Advertisements: radvd on ``mr1``, which stays on through every move).  The core router has a
static route for 2001:db8:50::/48 via the home agent (``examples/testbed/nemo/ha``),
as it has for the home prefix (docs/nemo.md).

The router moves home -> f1 -> f2 -> home; after every move the CN and the
host behind the router ping each other, through the home agent.  Two runs:

* explicit mode, the home agent on ip6tnl: the BU lists the prefix;
* implicit mode, the home agent on seg6 (its End.DT6 decapsulation and the
  nf_tables reverse-tunnel check admitting the mobile network): the BU lists
  nothing and the HA routes every prefix it has for the router.

The mobile router always tunnels with ip6tnl (see `Capabilities.resolve`);
signalling is the kernel's on both.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.testbed import Testbed, radvd
from tests import nsutil
from tests.netns.ha_helpers import REPO, HaDaemon, ip
from tests.vm.daemon_helpers import (
    CONVERGE,
    DEBUG_LOG,
    kernel_dump,
    launch,
    wait_for,
    wait_ready,
)
from tests.vm.test_daemons import CN, HA, HOA

pytestmark = pytest.mark.usefixtures("mip6_modules")

EXAMPLES = REPO / "examples" / "testbed" / "nemo"
HOST = IPv6Address("2001:db8:50::2")
MNP = IPv6Network("2001:db8:50::/64")
PREFIX = {"f1": IPv6Network("2001:db8:a::/64"), "f2": IPv6Network("2001:db8:b::/64")}
SIGNALLING = {'signalling = "auto"': 'signalling = "kernel"'}


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mr: HaDaemon
    mnet: str
    mode: str
    ha_tunnel: str

    def logs(self) -> str:
        out = [f"--- {d.node} log ---\n{d.tail(40)}" for d in (self.mr, self.ha)]
        for what, get in (
            ("mr status", lambda: self.mr.rpc("status", timeout=10.0)),
            ("ha status", lambda: self.ha.rpc("status", timeout=10.0)),
        ):
            try:
                out.append(f"--- {what} ---\n{json.dumps(get(), indent=1)[:4000]}")
            except Exception as e:
                out.append(f"--- {what} --- {e!r}")
        return "\n".join(out + kernel_dump(self.tb, ("mn", "ha")))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _router_adverts(tb: Testbed, tmp: Path) -> subprocess.Popen[bytes]:
    """radvd on the router's mobile network interface (the operator's, not mip6ctl's):
    the host behind it takes its default route from these RAs, through every move."""
    binary = radvd.find_radvd()
    assert binary is not None, "the vm tier installs radvd"
    conf = tmp / "radvd-mr1.conf"
    conf.write_text(radvd.render([radvd.Advert("mr1", str(MNP))]))
    argv = [binary, "--nodaemon", "--config", str(conf), "--pidfile", str(tmp / "radvd.pid")]
    log = open(tmp / "radvd-mr1.log", "wb")  # noqa: SIM115 - lives as long as radvd
    return tb.exec("mn", [*argv, "--logmethod", "stderr_clean"], stdout=log, stderr=log)


def host_default_route(bed: Bed) -> str | None:
    """The mobile network host's default route when it came from the router's RAs."""
    out = subprocess.run(["ip", "-n", bed.mnet, "-6", "route", "show", "default"],
                         capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    return out if "proto ra" in out and "via fe80:" in out else None


def _mobile_network(tb: Testbed) -> str:
    """The host behind the mobile router, and the core's route to the mobile network."""
    mnet = f"{tb.ns('mn')}-net"
    _ip("netns", "add", mnet)
    _ip("link", "add", "mr1", "netns", tb.ns("mn"), "type", "veth", "peer", "name", "eth0",
        "netns", mnet)  # fmt: skip
    _ip("-n", tb.ns("mn"), "-6", "addr", "add", "2001:db8:50::1/64", "dev", "mr1", "nodad")
    _ip("-n", tb.ns("mn"), "link", "set", "mr1", "up")
    _ip("-n", mnet, "-6", "addr", "add", f"{HOST}/64", "dev", "eth0", "nodad")
    _ip("-n", mnet, "link", "set", "eth0", "up")
    _ip("-n", mnet, "link", "set", "lo", "up")
    _ip("-n", tb.ns("core"), "-6", "route", "add", "2001:db8:50::/48", "via", "2001:db8:ff01::1")
    return mnet


@pytest.fixture(scope="module", params=[("explicit", "ip6tnl"), ("implicit", "seg6")],
                ids=["explicit-ha-ip6tnl", "implicit-ha-seg6"])  # fmt: skip
def bed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    mode, ha_tunnel = request.param
    with Testbed.build(timeout=60.0) as tb:
        mnet = _mobile_network(tb)
        adverts = _router_adverts(tb, tmp_path_factory.mktemp("radvd"))
        ha = HaDaemon(
            tb,
            tmp_path_factory.mktemp("ha"),
            example=EXAMPLES / "ha",
            replace={**SIGNALLING, 'tunnel = "auto"': f'tunnel = "{ha_tunnel}"'},
            extra=DEBUG_LOG,
        )
        mr_replace = {**SIGNALLING}
        if mode == "implicit":
            mr_replace["explicit_mode = true"] = "explicit_mode = false"
        mr = HaDaemon(
            tb,
            tmp_path_factory.mktemp("mr"),
            node="mn",
            example=EXAMPLES / "mr",
            replace=mr_replace,
            extra=DEBUG_LOG,
        )
        try:
            for d in (ha, mr):
                launch(d)
            wait_ready((ha, mr))
            yield Bed(tb, ha, mr, mnet, mode, ha_tunnel)
            for d in (ha, mr):
                assert d.proc is not None and d.proc.poll() is None, f"{d.node} died:\n{d.tail()}"
        finally:
            for d in (mr, ha):
                d.stop()
            adverts.terminate()
            adverts.wait(timeout=30)
            subprocess.run(["ip", "netns", "del", mnet], capture_output=True, timeout=30)


# --------------------------------------------------------------------------- observations


def router_state(bed: Bed, link: str) -> dict[str, Any] | None:
    """Both ends agree the router is on `link`, with its prefix (or none at home)."""
    m = bed.mr.rpc("movement", timeout=10.0)
    doc = bed.mr.rpc("status", timeout=10.0)
    (row,) = [r for r in doc["binding_update_list"]["rows"] if r["peer"] == str(HA)]
    cache = bed.ha.bindings()
    if not m["kernel_in_sync"]:
        return None
    if link == "home":
        ok = m["location"] == "home" and row["state"] == "home" and str(HOA) not in cache
        return {"movement": m, "row": row} if ok else None
    coa = m["care_of_address"]
    entry = cache.get(str(HOA))
    ok = (
        m["location"] == "away"
        and coa is not None
        and IPv6Address(coa) in PREFIX[link]
        and row["state"] == "registered"
        and entry is not None
        and entry["care_of_address"] == coa
        and entry["mobile_network_prefixes"] == [str(MNP)] + (
            ["2001:db8:50:1::/64"] if bed.mode == "implicit" else []
        )
        and doc["mobile_router"]["accepted"] is True
    )
    return {"movement": m, "row": row, "entry": entry, "coa": coa} if ok else None


def move(bed: Bed, link: str) -> dict[str, Any]:
    bed.tb.move("mn", link)
    return wait_for(f"router on {link}", lambda: router_state(bed, link), bed.logs, CONVERGE)


def pings(bed: Bed, link: str) -> None:
    """CN <-> the host behind the router, both ways (a few tries: emulated CPU); the host
    still routes by the router's Router Advertisements."""
    wait_for("host default route from the RAs", lambda: host_default_route(bed), bed.logs,
             CONVERGE)  # fmt: skip
    for src, dst in ((bed.tb.ns("cn"), HOST), (bed.mnet, CN)):
        got = 0
        for _ in range(3):
            got = nsutil.ping6(src, str(dst), count=3, timeout=3.0)
            if got:
                break
        assert got, f"{src} -> {dst} on {link}: no reply\n{bed.logs()}"


# --------------------------------------------------------------------------- the test


def test_mobile_router_moves_home_f1_f2_home_and_its_network_stays_reachable(bed: Bed) -> None:
    wait_for("router at home", lambda: router_state(bed, "home"), bed.logs, CONVERGE)
    # at home the router is an ordinary router of the home link: the HA's at-home route
    assert "via 2001:db8:1::100" in ip(bed.tb, "ha", "-6", "route", "show", "table", "6275")
    pings(bed, "home")
    for link in ("f1", "f2"):
        got = move(bed, link)
        routes = ip(bed.tb, "ha", "-6", "route", "show", "table", "6275")
        line = next(x for x in routes.splitlines() if x.startswith(f"{MNP} ") and "1024" in x)
        assert ("encap seg6" if bed.ha_tunnel == "seg6" else "dev m6t") in line, routes
        rules = ip(bed.tb, "mn", "-6", "rule", "show")
        assert f"from {MNP} lookup 6275" in rules, rules
        bu_prefixes = got["entry"]["mobile_network_prefixes"]
        assert str(MNP) in bu_prefixes
        pings(bed, link)
    move(bed, "home")
    rules = ip(bed.tb, "mn", "-6", "rule", "show")
    assert f"from {MNP} lookup" not in rules, rules  # at home: no reverse tunnel
    pings(bed, "home")
