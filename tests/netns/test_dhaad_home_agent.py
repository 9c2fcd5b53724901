"""Dynamic Home Agent Address Discovery on the home agent (issue 16, RFC 6275 §10.5).

``mip6ctl daemon`` runs in the reference testbed's HA namespace with
``examples/testbed/ha`` (preference raised to 10); scapy plays a mobile node
on f1 (DHAAD Requests from its care-of address, routed through the core to
the Home-Agents anycast address 2001:db8:1::fdff:ffff:ffff:fffe) and a second
home agent on the home link (Router Advertisements with the H bit and a Home
Agent Information option).  Needs no tunnel backend: signalling only.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address

import pytest
from scapy.compat import raw
from scapy.layers.inet6 import (
    ICMPv6HAADReply,
    ICMPv6HAADRequest,
    ICMPv6ND_RA,
    ICMPv6NDOptHAInfo,
    ICMPv6NDOptPrefixInfo,
    IPv6,
    in6_chksum,
)

from mip6ctl.testbed import Testbed
from mip6ctl.testbed.radvd import find_radvd
from tests import nsutil
from tests.netns.ha_helpers import HaDaemon, Station, ip

pytestmark = nsutil.NEEDS_RADVD

HA = IPv6Address("2001:db8:1::1")
OTHER_HA = IPv6Address("2001:db8:1::2")
ANYCAST = IPv6Address("2001:db8:1::fdff:ffff:ffff:fffe")
COA = IPv6Address("2001:db8:a::100")
WAIT = 3.0 * nsutil.SLOWDOWN


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mn: Station
    home: Station


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        ha = HaDaemon(tb, tmp_path_factory.mktemp("ha"), extra="", replace={
            'default_action = "deny"': 'default_action = "deny"\npreference = 10',
        })  # fmt: skip
        stations: list[Station] = []
        try:
            ha.start()
            stations = [
                Station(tb, "f1", "f1t", [str(COA)], "2001:db8:a::1"),
                Station(tb, "home", "hmt", [str(OTHER_HA)]),
            ]
            yield Bed(tb, ha, *stations)
            assert ha.proc is not None and ha.proc.poll() is None, "the daemon died:\n" + ha.tail()
        finally:
            ha.stop()
            for s in stations:
                s.close()


def request(bed: Bed, ident: int, *, dst: IPv6Address = ANYCAST) -> ICMPv6HAADReply | None:
    """One DHAAD Request from the care-of address; the reply, if any."""
    pkt = IPv6(src=str(COA), dst=str(dst)) / ICMPv6HAADRequest(id=ident)
    got = bed.mn.exchange(pkt, lambda p: ICMPv6HAADReply in p, WAIT)
    return None if got is None else got[ICMPv6HAADReply]


def discovery(bed: Bed) -> dict:
    return bed.ha.rpc("status")["home_agent_discovery"]


def link_local(bed: Bed, station: Station) -> str:
    args = ("-6", "-o", "addr", "show", "dev", station.ifname, "scope", "link")
    out = ip(bed.tb, station.tag, *args)
    return out.split()[3].split("/")[0]


def advertise(bed: Bed, *, preference: int, lifetime: int = 1800) -> None:
    """A Router Advertisement of a second home agent, to all nodes on the home link."""
    ra = (
        IPv6(src=link_local(bed, bed.home), dst="ff02::1", hlim=255)
        / ICMPv6ND_RA(H=1, routerlifetime=1800)
        / ICMPv6NDOptHAInfo(pref=preference, lifetime=lifetime)
        / ICMPv6NDOptPrefixInfo(prefix=str(OTHER_HA), prefixlen=64, L=1, A=1, R=1)
    )
    with bed.tb.inside(bed.home.tag):
        index = socket.if_nametoindex(bed.home.ifname)
    bed.home.tx.sendto(raw(ra), ("ff02::1", 0, 0, index))


def wait_for(check, what: str, bed: Bed):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what}: {discovery(bed)}\n{bed.ha.tail()}")


def test_anycast_joined_and_own_entry_listed(bed: Bed) -> None:
    doc = discovery(bed)
    assert doc["enabled"] and doc["anycast_joined"] == [f"{ANYCAST}%home0"], doc
    (lst,) = doc["lists"]
    assert lst["prefix"] == "2001:db8:1::/64" and lst["anycast"] == str(ANYCAST)
    assert [(h["addresses"], h["preference"], h["self"]) for h in lst["home_agents"]] == [
        ([str(HA)], 10, True)
    ]
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "status", "--socket", str(bed.ha.socket)],
        capture_output=True, text=True, timeout=60, env={"COLUMNS": "120", "PATH": "/usr/bin"},
    ).stdout  # fmt: skip
    assert "Home agents on home0 2001:db8:1::/64: 2001:db8:1::1 (10, this one)" in out, out


def test_request_to_the_anycast_address_is_answered_with_the_identifier(bed: Bed) -> None:
    reply = request(bed, 0x1234)
    assert reply is not None, bed.ha.tail()
    assert reply.id == 0x1234 and str(HA) in reply.addresses


def test_other_home_agents_are_ordered_by_preference_and_expire(bed: Bed) -> None:
    advertise(bed, preference=20)
    wait_for(lambda: len(discovery(bed)["lists"][0]["home_agents"]) == 2, "RA learnt", bed)
    reply = request(bed, 0x2222)
    assert reply is not None and reply.addresses == [str(OTHER_HA), str(HA)], reply
    advertise(bed, preference=5)
    wait_for(lambda: request(bed, 0x2223).addresses == [str(HA), str(OTHER_HA)], "reordered", bed)
    advertise(bed, preference=5, lifetime=0)  # §10.5.1: lifetime 0 takes it off the list
    wait_for(lambda: request(bed, 0x2224).addresses == [str(HA)], "removed", bed)


def test_request_to_a_unicast_address_gets_no_reply(bed: Bed) -> None:
    before = discovery(bed)["counters"].get("discarded", 0)
    assert request(bed, 0x3333, dst=HA) is None
    wait_for(lambda: discovery(bed)["counters"].get("discarded", 0) == before + 1, "counted", bed)


def test_truncated_request_gets_no_reply(bed: Bed) -> None:
    body = bytes([144, 0, 0, 0, 0x44, 0x44])  # 6 octets: no reserved field
    hdr = IPv6(src=str(COA), dst=str(ANYCAST), nh=58, plen=len(body))
    ck = in6_chksum(58, hdr, body)
    data = raw(hdr) + body[:2] + ck.to_bytes(2, "big") + body[4:]
    before = discovery(bed)["counters"].get("discarded", 0)
    bed.mn.drain()
    bed.mn.send(data)
    assert not bed.mn.capture(lambda p: ICMPv6HAADReply in p, WAIT)
    wait_for(lambda: discovery(bed)["counters"].get("discarded", 0) == before + 1, "counted", bed)


def test_request_from_a_multicast_source_gets_no_reply(bed: Bed) -> None:
    """From the home link straight to the home agent (no router forwards it)."""
    mac = ip(bed.tb, "ha", "-o", "link", "show", "home0").split("link/ether ")[1].split()[0]
    with bed.tb.inside(bed.home.tag):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
    with s:
        pkt = IPv6(src="ff0e::1", dst=str(ANYCAST)) / ICMPv6HAADRequest(id=0x5555)
        s.sendto(raw(pkt), (bed.home.ifname, 0x86DD, 0, 0, bytes.fromhex(mac.replace(":", ""))))
    replies = bed.home.capture(lambda p: ICMPv6HAADReply in p, WAIT)
    assert not replies
    assert request(bed, 0x5556) is not None  # still answering


def test_a_second_home_agent_advertised_by_radvd_from_mip6ctl_radvd(bed: Bed, tmp_path) -> None:
    """`mip6ctl radvd` renders a second home agent's radvd.conf from its own mip6ctl
    configuration (preference 30); the real radvd advertises it on the home link and
    the daemon's DHAAD replies put it first."""
    import subprocess
    import sys

    from tests.netns.ha_helpers import EXAMPLE_HA

    cfg = tmp_path / "ha2"
    cfg.mkdir()
    text = (EXAMPLE_HA / "mip6.toml").read_text()
    text = text.replace('interfaces = ["home0"]', f'interfaces = ["{bed.home.ifname}"]')
    text = text.replace('address = "2001:db8:1::1"', f'address = "{OTHER_HA}"')
    text = text.replace('default_action = "deny"', 'default_action = "deny"\npreference = 30')
    (cfg / "mip6.toml").write_text(text)
    conf = tmp_path / "radvd.conf"
    out = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "radvd", "-c", str(cfg), "-o", str(conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "HomeAgentPreference 30;" in conf.read_text()
    radvd = find_radvd()
    assert radvd is not None
    argv = [radvd, "--nodaemon", "--config", str(conf), "--pidfile", str(tmp_path / "pid")]
    proc = bed.tb.exec(bed.home.tag, [*argv, "--logmethod", "stderr"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(lambda: (r := request(bed, 0x6666)) is not None
                 and r.addresses == [str(OTHER_HA), str(HA)], "radvd's home agent first", bed)
        lists = discovery(bed)["lists"][0]["home_agents"]
        assert [(h["preference"], h["self"]) for h in lists] == [(30, False), (10, True)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
