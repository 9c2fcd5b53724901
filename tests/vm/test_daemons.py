"""The real daemons on the full Mobile IPv6 kernel (issue 8, vm tier only).

The reference testbed (mip6ctl.testbed, radvd on every link) with three
``mip6ctl daemon`` processes configured for that kernel's own machinery:
``[kernel] signalling = "kernel"`` (raw IPPROTO_MH sockets, HAO / type 2
routing header through ancillary data and the kernel's mip6 code) and
``tunnel = "ip6tnl"`` (one ip6tnl device per peer, as UMIP):

* the home agent (examples/testbed/ha) and the mobile node
  (examples/testbed/mn): the MN starts at home, moves f1 -> f2 -> home; at
  each step both status documents agree, the tunnel devices follow the
  care-of address (the old one is gone, de-registration removes them, each
  is created with ``encaplimit none``) and pings CN <-> home address work;
* the correspondent (examples/testbed/cn) answers return routability
  through the kernel transport: scapy stations send HoTI/CoTI, the tokens
  authorise a BU (sent with a Home Address option) whose BA (sent back with a
  type 2 routing header) verifies under the Kbm computed here independently;
* two bindings sharing one care-of address share the home agent's ip6tnl
  device: de-registering one keeps it for the other.

Every wait is bounded (generously: the guest's CPU is emulated); the module
fixture stops the daemons (by pid) and tears the testbed down on failure.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest
from scapy.layers.inet6 import MIP6MH_BA

from mip6ctl.state.render import tunnel_name
from mip6ctl.testbed import Testbed
from tests.netns.ha_helpers import (
    EXAMPLE_CN,
    REPO,
    HaDaemon,
    Station,
    atomic_write,
    binding_update,
    ip,
)
from tests.netns.test_correspondent import (
    COA as RR_COA,
)
from tests.netns.test_correspondent import (
    ba_authenticator_ok,
    bu_mh,
    bu_packet,
    return_routability,
)
from tests.netns.test_mobile_node import ping
from tests.vm.daemon_helpers import (
    CONVERGE,
    DEBUG_LOG,
    HA_KERNEL,
    KERNEL_SECTION,
    ip6tnl_devices,
    kernel_dump,
    launch,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.usefixtures("mip6_modules")

EXAMPLE_MN = REPO / "examples" / "testbed" / "mn"
HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
CN = IPv6Address("2001:db8:c::2")
PREFIX = {
    "home": IPv6Network("2001:db8:1::/64"),
    "f1": IPv6Network("2001:db8:a::/64"),
    "f2": IPv6Network("2001:db8:b::/64"),
}
RR_HOME = IPv6Address("2001:db8:1::1a0")  # the scapy "mobile node" of the CN test
SHARED_COA = IPv6Address("2001:db8:a::1b0")
SHARED = (IPv6Address("2001:db8:1::102"), IPv6Address("2001:db8:1::103"))


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mn: HaDaemon
    cn: HaDaemon
    home: Station
    f1: Station

    def logs(self) -> str:
        """The daemons' logs, status and kernel state, for a failure message."""
        out = [f"--- {d.node} log ---\n{d.tail(40)}" for d in (self.mn, self.ha, self.cn)]
        for what, get in (
            ("mn movement", lambda: self.mn.rpc("movement", timeout=10.0)),
            ("mn status", lambda: self.mn.rpc("status", timeout=10.0)),
            ("ha status", lambda: self.ha.rpc("status", timeout=10.0)),
        ):
            try:
                out.append(f"--- {what} ---\n{json.dumps(get(), indent=1)[:4000]}")
            except Exception as e:
                out.append(f"--- {what} --- {e!r}")
        out += kernel_dump(self.tb, ("mn", "ha"))
        return "\n".join(out)


@pytest.fixture(scope="module")
def bed(mip6_modules: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build(timeout=60.0) as tb:
        ha = HaDaemon(tb, tmp_path_factory.mktemp("ha"), replace=HA_KERNEL, extra=DEBUG_LOG)
        mn = HaDaemon(
            tb,
            tmp_path_factory.mktemp("mn"),
            node="mn",
            example=EXAMPLE_MN,
            extra=KERNEL_SECTION + DEBUG_LOG,
        )
        cn = HaDaemon(
            tb,
            tmp_path_factory.mktemp("cn"),
            node="cn",
            example=EXAMPLE_CN,
            extra=KERNEL_SECTION + DEBUG_LOG,
        )
        stations: list[Station] = []
        try:
            for d in (ha, mn, cn):
                launch(d)
            wait_ready((ha, mn, cn))
            stations = [
                Station(tb, "home", "vhm", [str(RR_HOME)], str(HA)),
                Station(tb, "f1", "vf1", [str(RR_COA), str(SHARED_COA)], "2001:db8:a::1"),
            ]
            yield Bed(tb, ha, mn, cn, *stations)
            for d in (ha, mn, cn):
                assert d.proc is not None and d.proc.poll() is None, (
                    f"the {d.node} daemon died:\n{d.tail()}"
                )
        finally:
            for s in stations:
                s.close()
            for d in (mn, cn, ha):
                d.stop()


# --------------------------------------------------------------------------- observations


def movement(bed: Bed) -> dict[str, Any]:
    return bed.mn.rpc("movement", timeout=10.0)


def bul(bed: Bed) -> dict[str, Any]:
    """The MN's binding update list entry for its home agent."""
    rows = bed.mn.rpc("status", timeout=10.0)["binding_update_list"]["rows"]
    home = [r for r in rows if r["peer"] == str(HA)]
    assert len(home) == 1, rows
    return home[0]


def converged(bed: Bed, link: str) -> dict[str, Any] | None:
    """HA's binding cache and MN's binding update list agree on where the MN is."""
    m = movement(bed)
    row = bul(bed)
    cache = bed.ha.bindings()
    if link == "home":
        ok = m["location"] == "home" and row["state"] == "home" and str(HOA) not in cache
        return {"movement": m, "bul": row, "cache": cache} if ok and m["kernel_in_sync"] else None
    coa = m["care_of_address"]
    if m["location"] != "away" or coa is None or IPv6Address(coa) not in PREFIX[link]:
        return None
    entry = cache.get(str(HOA))
    ok = (
        row["state"] == "registered"
        and row["care_of_address"] == coa
        and entry is not None
        and entry["care_of_address"] == coa
        and m["kernel_in_sync"]
    )
    return {"movement": m, "bul": row, "cache": cache, "coa": coa} if ok else None


def tunnels(bed: Bed, node: str) -> dict[str, str]:
    return ip6tnl_devices(ip(bed.tb, node, "-d", "-o", "link", "show", "type", "ip6tnl"))


def status_cli(d: HaDaemon) -> dict[str, Any]:
    """``mip6ctl status --socket S --json`` (the user-facing command), parsed; bounded
    for the guest, where a Python start-up takes many seconds."""
    out = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "status", "--socket", str(d.socket), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def ha_tunnels_are(bed: Bed, names: set[str]) -> dict[str, str] | None:
    t = tunnels(bed, "ha")
    return t if set(t) == names else None


def move(bed: Bed, link: str) -> dict[str, Any]:
    wait_for("previous move settled", lambda: movement(bed)["kernel_in_sync"], bed.logs, CONVERGE)
    bed.tb.move("mn", link)
    return wait_for(f"MN registered on {link}", lambda: converged(bed, link), bed.logs, CONVERGE)


def pings_both_ways(bed: Bed) -> None:
    assert ping(bed.tb, "cn", HOA) >= 2, "CN -> home address\n" + bed.logs()
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2, "home address -> CN\n" + bed.logs()


# --------------------------------------------------------------------------- HA + MN


def test_daemons_run_the_kernel_transport_and_ip6tnl(bed: Bed) -> None:
    for d in (bed.ha, bed.mn, bed.cn):
        doc = d.rpc("status", timeout=10.0)
        assert doc["transport"] == "kernel", (d.node, doc["transport"])
    # UMIP's wildcard route-optimisation states, installed by the kernel transport
    for node in ("ha", "mn", "cn"):
        states = ip(bed.tb, node, "xfrm", "state", "show")
        assert "proto hao" in states and "proto route2" in states, (node, states)
        assert states.count("wildrecv") == 2, (node, states)
        pol = ip(bed.tb, node, "xfrm", "policy", "show", "dir", "in")
        assert "proto mobility-header" in pol or "proto 135" in pol, (node, pol)
    wait_for("MN at home", lambda: converged(bed, "home"), bed.logs, CONVERGE)
    assert not tunnels(bed, "ha") and not tunnels(bed, "mn")
    pings_both_ways(bed)


def test_register_from_f1(bed: Bed) -> None:
    got = move(bed, "f1")
    coa = got["coa"]
    # the user-facing status command on both ends
    ha_doc = status_cli(bed.ha)
    rows = {r["home_address"]: r for r in ha_doc["binding_cache"]["rows"]}
    assert rows[str(HOA)]["care_of_address"] == coa and rows[str(HOA)]["home_registration"]
    mn_doc = status_cli(bed.mn)
    (row,) = mn_doc["binding_update_list"]["rows"]
    assert (row["state"], row["care_of_address"], row["last_status"]) == ("registered", coa, 0)

    # the tunnels: HA -> care-of address, MN -> HA, neither adding an encapsulation limit
    want = {tunnel_name(IPv6Address(coa))}
    ha_t = wait_for("HA tunnel", lambda: ha_tunnels_are(bed, want), bed.logs, CONVERGE)
    line = ha_t[tunnel_name(IPv6Address(coa))]
    assert f"remote {coa}" in line and f"local {HA}" in line and "encaplimit none" in line, line
    mn_t = tunnels(bed, "mn")
    assert list(mn_t) == [tunnel_name(HA)], mn_t
    line = mn_t[tunnel_name(HA)]
    assert f"remote {HA}" in line and f"local {coa}" in line and "encaplimit none" in line, line
    table = ip(bed.tb, "ha", "-6", "route", "show", "table", "6275")
    assert f"{HOA} dev {tunnel_name(IPv6Address(coa))}" in table, table
    pings_both_ways(bed)


def test_move_to_f2_tunnel_follows(bed: Bed) -> None:
    old = list(tunnels(bed, "ha"))
    got = move(bed, "f2")
    coa = IPv6Address(got["coa"])
    name = tunnel_name(coa)

    t = wait_for("HA tunnel moved", lambda: ha_tunnels_are(bed, {name}), bed.logs, CONVERGE)
    assert f"remote {coa}" in t[name] and not set(old) & set(t), (old, t)
    mn_t = tunnels(bed, "mn")
    assert f"local {coa}" in mn_t[tunnel_name(HA)], mn_t
    pings_both_ways(bed)


# --------------------------------------------------------------------------- CN


def test_correspondent_answers_return_routability_through_the_kernel(bed: Bed) -> None:
    t = return_routability(bed, RR_HOME)  # type: ignore[arg-type]
    p = bed.f1.ba(bu_packet(RR_HOME, bu_mh(RR_HOME, 9, 50, kbm=t.kbm, indices=t.indices)), 10.0)
    assert p is not None, "no BA from the CN\n" + bed.cn.tail()
    assert p[MIP6MH_BA].status == 0, p[MIP6MH_BA].status
    assert ba_authenticator_ok(p, t.kbm), "BA authenticator does not verify under Kbm"
    rows = bed.cn.rpc("status", timeout=10.0)["binding_cache"]["rows"]
    entry = {r["home_address"]: r for r in rows}[str(RR_HOME)]
    assert entry["care_of_address"] == str(RR_COA) and not entry["home_registration"]


# --------------------------------------------------------------------------- shared care-of


def _register(bed: Bed, hoa: IPv6Address, seq: int, lifetime: int) -> None:
    p = bed.f1.ba(binding_update(hoa, SHARED_COA, seq, lifetime), 15.0)
    assert p is not None, f"no BA for {hoa}\n{bed.ha.tail()}"
    assert p[MIP6MH_BA].status < 128, p[MIP6MH_BA].status


def test_bindings_sharing_a_care_of_address_share_the_tunnel(bed: Bed) -> None:
    name = tunnel_name(SHARED_COA)
    for hoa in SHARED:
        _register(bed, hoa, 1, 100)
    wait_for("shared tunnel", lambda: name in tunnels(bed, "ha"), bed.logs, CONVERGE)
    table = ip(bed.tb, "ha", "-6", "route", "show", "table", "6275")
    assert all(f"{h} dev {name}" in table for h in SHARED), table

    _register(bed, SHARED[0], 2, 0)  # de-register the first
    wait_for("first binding gone", lambda: str(SHARED[0]) not in bed.ha.bindings(), bed.logs, 15)
    route = f"{SHARED[0]} dev {name}"
    wait_for(
        "first binding's route gone",
        lambda: route not in ip(bed.tb, "ha", "-6", "route", "show", "table", "6275"),
        bed.logs,
        CONVERGE,
    )
    time.sleep(1.0)  # a reconcile that deleted the tunnel would have been seen by now
    assert name in tunnels(bed, "ha"), "the shared tunnel was deleted under the other binding"
    table = ip(bed.tb, "ha", "-6", "route", "show", "table", "6275")
    assert f"{SHARED[1]} dev {name}" in table and str(SHARED[0]) not in table, table

    _register(bed, SHARED[1], 2, 0)
    wait_for("shared tunnel gone", lambda: name not in tunnels(bed, "ha"), bed.logs, CONVERGE)


# --------------------------------------------------------------------------- home again


def test_back_home_removes_the_tunnels(bed: Bed) -> None:
    move(bed, "home")
    wait_for("HA tunnels gone", lambda: not tunnels(bed, "ha"), bed.logs, CONVERGE)
    wait_for("MN tunnel gone", lambda: not tunnels(bed, "mn"), bed.logs, CONVERGE)
    pings_both_ways(bed)


# --------------------------------------------------------------------------- route optimisation

#: the MN registers with this correspondent directly (issue 7, shown on the wire for issue 8)
RO_CONFIG = f'[[mn.correspondents]]\nprefix = "{CN}/128"\n'
IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_ICMPV6 = 43, 60, 58
HAO_TYPE = 201
ETH_P_ALL = 3


def ro_row(bed: Bed) -> dict[str, Any] | None:
    """The MN's binding update list entry for the correspondent, once registered."""
    doc = bed.mn.rpc("status", timeout=10.0)
    rows = [r for r in doc["binding_update_list"]["rows"] if r["peer"] == str(CN)]
    return rows[0] if rows and rows[0]["state"] == "registered" else None


def forwarded(bed: Bed) -> int:
    """The HA's Ip6OutForwDatagrams: anything routed through the home agent counts."""
    r = bed.tb.run("ha", ["cat", "/proc/net/snmp6"], timeout=30)
    for line in r.stdout.splitlines():
        if line.startswith("Ip6OutForwDatagrams"):
            return int(line.split()[1])
    raise AssertionError(r.stdout)


def mobility_headers(data: bytes) -> tuple[int | None, IPv6Address | None, IPv6Address | None]:
    """(ICMPv6 type, type 2 routing header address, Home Address option) of one packet."""
    nh, off = data[6], 40
    rh2 = hao = None
    while nh in (IPPROTO_ROUTING, IPPROTO_DSTOPTS, 0) and off + 8 <= len(data):
        hlen = (data[off + 1] + 1) * 8
        if nh == IPPROTO_ROUTING and data[off + 2] == 2:
            rh2 = IPv6Address(data[off + 8 : off + 24])
        elif nh == IPPROTO_DSTOPTS:
            i = off + 2
            while i < off + hlen:
                t = data[i]
                if t == 0:  # Pad1
                    i += 1
                    continue
                if t == HAO_TYPE and data[i + 1] == 16:
                    hao = IPv6Address(data[i + 2 : i + 18])
                i += 2 + data[i + 1]
        nh, off = data[off], off + hlen
    icmp = data[off] if nh == IPPROTO_ICMPV6 and off < len(data) else None
    return icmp, rh2, hao


def test_route_optimisation_with_the_correspondent_daemon(bed: Bed) -> None:
    """Return routability through the HA, then CN <-> home address directly: the CN's
    packets carry a type 2 routing header, the MN's a Home Address option, and the home
    agent forwards none of them; back home the CN's binding is deleted."""
    atomic_write(bed.mn.config / "60-correspondent.toml", RO_CONFIG)
    res = bed.mn.rpc("reload", timeout=60.0)
    assert res.get("applied"), res
    coa = IPv6Address(move(bed, "f1")["coa"])
    row = wait_for("MN registered with the CN", lambda: ro_row(bed), bed.logs, CONVERGE)
    assert row["care_of_address"] == str(coa), row
    entry = wait_for(
        "CN binding", lambda: bed.cn.bindings().get(str(HOA)), bed.logs, CONVERGE
    )
    assert entry["care_of_address"] == str(coa) and not entry["home_registration"], entry
    rr_rows = bed.mn.rpc("status", timeout=10.0)["return_routability"]["rows"]
    assert [r["peer"] for r in rr_rows] == [str(CN)] and rr_rows[0]["home_token_age_s"] is not None

    with bed.tb.inside("cn"):  # ETH_P_ALL: a socket bound to ETH_P_IPV6 misses outgoing packets
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    try:
        cap.bind(("core0", ETH_P_ALL))
        cap.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        before = forwarded(bed)
        assert ping(bed.tb, "cn", HOA) >= 2, "CN -> home address\n" + bed.logs()
        assert ping(bed.tb, "mn", CN, src=HOA) >= 2, "home address -> CN\n" + bed.logs()
        through_ha = forwarded(bed) - before
        seen: list[tuple[str, str, tuple[Any, ...]]] = []
        while select.select([cap], [], [], 0.2)[0]:
            data = cap.recv(65536)
            if len(data) < 40 or data[0] >> 4 != 6:
                continue
            src, dst = IPv6Address(data[8:24]), IPv6Address(data[24:40])
            seen.append((str(src), str(dst), mobility_headers(data)))
    finally:
        cap.close()
    echoes = [x for x in seen if x[2][0] in (128, 129)]
    from_cn = [x for x in echoes if x[0] == str(CN)]
    from_mn = [x for x in echoes if x[1] == str(CN)]
    assert from_cn and from_mn, seen
    # CN -> MN: to the care-of address, type 2 routing header naming the home address
    assert all(x[1] == str(coa) and x[2][1] == HOA for x in from_cn), from_cn
    # MN -> CN: from the care-of address, Home Address option naming the home address
    assert all(x[0] == str(coa) and x[2][2] == HOA for x in from_mn), from_mn
    assert through_ha == 0, f"{through_ha} packets went through the home agent"

    move(bed, "home")
    wait_for(
        "CN binding deleted", lambda: str(HOA) not in bed.cn.bindings(), bed.logs, CONVERGE
    )
    pings_both_ways(bed)
