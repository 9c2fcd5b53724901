"""The reference testbed (mip6ctl.testbed): built by netlink, moves, and leaves nothing behind."""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mip6ctl.testbed import (
    CN_ADDRESS,
    FOREIGN_PREFIXES,
    HA_CORE_ADDRESS,
    HA_HOME_ADDRESS,
    HOME_PREFIX,
    LINK_PREFIXES,
    NotRootError,
    Testbed,
    TestbedError,
    nsops,
    sweep_stale,
    topology,
)
from mip6ctl.testbed.radvd import find_radvd
from tests import nsutil

pytestmark = pytest.mark.skipif(
    find_radvd() is None,
    reason="netns tier: needs radvd (scripts/bootstrap installs it)",
)

REPO = Path(__file__).resolve().parents[2]
OUR_IFNAMES = {"home0", "core0", "ha0", "f1", "f2", "cn0", "mn0", "br-home", "br-f1", "br-f2"}


def leftovers(prefix: str, pids: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Everything a testbed with `prefix` could leave behind, as readable strings."""
    found = [f"netns {n}" for n in nsutil.list_namespaces() if n.startswith(prefix)]
    found += [f"pid {p}" for p in sorted(pids) if nsops.alive(p)]
    for d in (topology.RUN_DIR, Path("/tmp")):
        if d.is_dir():
            found += [f"file {p}" for p in d.iterdir() if p.name.startswith(prefix)]
    return found


def processes_of(tb: Testbed) -> set[int]:
    return {pid for ns in tb.namespaces for pid in nsops.pids_in(ns)}


def host_ifnames() -> set[str]:
    return {name for _i, name in socket.if_nameindex()}


@pytest.fixture
def testbed() -> Iterator[Testbed]:
    with Testbed.build() as tb:
        yield tb
    assert leftovers(tb.prefix) == []


def capture_ra(tb: Testbed, node: str = "mn", timeout: float = 2.0) -> tuple[bytes, str]:
    """One Router Advertisement as `node` receives it (ICMPv6 body, source address)."""
    with tb.inside(node):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with s:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data, addr = s.recvfrom(2048)
            if data and data[0] == 134:
                return data, addr[0]
    raise AssertionError(f"no RA reached {node} within {timeout} s")


def ping_from(
    tb: Testbed, node: str, dst: str, src: str | None = None, timeout: float = 0.1
) -> bool:
    """One ICMPv6 echo from `node` (from source address `src` if given); True on a reply."""
    import struct

    with tb.inside(node):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    with s:
        if src:
            s.bind((src, 0))
        ident, seq = os.getpid() & 0xFFFF, int(time.monotonic() * 1000) & 0xFFFF
        s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"testbed", (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                return False
            data = s.recv(2048)
            if data[0] == 129 and struct.unpack_from("!HH", data, 4) == (ident, seq):
                return True
    return False


def reaches(tb: Testbed, node: str, dst: str, src: str | None = None, within: float = 3.0) -> float:
    """Ping until a reply comes back; return how long it took (fails after `within`)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if ping_from(tb, node, dst, src):
            return time.monotonic() - start
    raise AssertionError(f"{node} cannot reach {dst} from {src} within {within} s")


# ----------------------------------------------------------------------------- build


def test_refuses_to_run_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="must run as root"):
        Testbed.build()


def test_topology_names_addresses_and_reachability(testbed: Testbed) -> None:
    tb = testbed
    assert tb.prefix.startswith(f"m6tb{os.getpid()}-")
    for node in ("ha", "core", "cn", "mn", "sw"):
        assert nsutil.list_namespaces().count(tb.ns(node)) == 1
    assert host_ifnames().isdisjoint(OUR_IFNAMES | {"ha-home0", "core-f1", "mn-mn0"})
    expected = {
        "ha": {"home0", "core0"},
        "core": {"ha0", "f1", "f2", "cn0"},
        "cn": {"core0"},
        "mn": {"mn0"},
        "sw": {"br-home", "br-f1", "br-f2", "ha-home0", "core-f1", "core-f2", "mn-mn0"},
    }
    for node, names in expected.items():
        with tb.ipr(node) as ipr:
            assert {link.get("ifname") for link in ipr.get_links()} - {"lo"} == names
    assert ipaddress.IPv6Interface(f"{HA_HOME_ADDRESS}/64") in tb.addresses("ha", "home0")
    assert ipaddress.IPv6Interface("2001:db8:ff01::ff/64") in tb.addresses("core", "ha0")
    routes = nsutil.ip("-6", "route", "show", "2001:db8:1::/64", ns=tb.ns("core")).stdout
    assert "via 2001:db8:ff01::1" in routes
    assert nsops.read_sysctl(tb.ns("ha"), "net.ipv6.conf.all.forwarding") == "1"
    assert nsops.read_sysctl(tb.ns("mn"), "net.ipv6.conf.mn0.forwarding") == "0"
    assert tb.attachment("mn") == "home"
    # The CN reaches the HA on its core link and, through the core's route, on the home link.
    assert nsutil.ping6(tb.ns("cn"), HA_CORE_ADDRESS, count=2, timeout=1.0) == 2
    assert nsutil.ping6(tb.ns("cn"), HA_HOME_ADDRESS, count=2, timeout=1.0) == 2


def test_mn_autoconfigures_at_home_from_the_home_agents_ra(testbed: Testbed) -> None:
    from scapy.layers.inet6 import (
        ICMPv6ND_RA,
        ICMPv6NDOptAdvInterval,
        ICMPv6NDOptHAInfo,
        ICMPv6NDOptPrefixInfo,
    )

    tb = testbed
    home = [a for a in tb.addresses("mn", "mn0") if a.ip in HOME_PREFIX]
    assert home, "no SLAAC address in the home prefix"
    data, src = capture_ra(tb)
    assert data[5] & 0x20, "RA without the Home Agent (H) flag"
    ra = ICMPv6ND_RA(data)
    assert ra.H == 1 and ra.routerlifetime == 30
    assert ra[ICMPv6NDOptPrefixInfo].prefix == HA_HOME_ADDRESS  # AdvRouterAddr: full address
    assert ra[ICMPv6NDOptPrefixInfo].R == 1 and ra[ICMPv6NDOptPrefixInfo].A == 1
    assert ra.haslayer(ICMPv6NDOptHAInfo) and ra.haslayer(ICMPv6NDOptAdvInterval)
    ha_lladdrs = {str(a.ip) for a in map(ipaddress.IPv6Interface, _lladdrs(tb, "ha", "home0"))}
    assert src.split("%")[0] in ha_lladdrs


def _lladdrs(tb: Testbed, node: str, ifname: str) -> list[str]:
    with tb.ipr(node) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        return [
            f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
            for m in ipr.get_addr(family=socket.AF_INET6, index=idx)
            if m["scope"] == 253
        ]


def test_move_gives_a_care_of_address_and_reaches_the_cn(testbed: Testbed) -> None:
    tb = testbed
    assert reaches(tb, "mn", CN_ADDRESS) < 3.0  # from home, through the HA
    timings = {}
    # The MN keeps the addresses of links it left (valid for a day), and the kernel's
    # source address selection does not know which link is current: ping from the
    # address of the link the MN is on, as a mobile node sends from its care-of address.
    for step, link in enumerate(("f1", "f2", "home", "f1")):
        moved = tb.move("mn", link)
        assert tb.attachment("mn") == link
        # radvd advertises every 30-70 ms: an address takes ~50 ms; the bounds leave
        # room for a loaded CI machine without letting a broken move pass.
        addr = tb.wait_address("mn", LINK_PREFIXES[link], timeout=3.0)
        usable = time.monotonic() - moved
        reach = reaches(tb, "mn", CN_ADDRESS, src=str(addr), within=5.0)
        timings[f"{step}:{link}"] = (
            f"address {usable * 1000:.0f} ms, CN reached {reach * 1000:.0f} ms later"
        )
        assert usable < 3.0
    print("after move():", timings)


def test_move_without_carrier_loss_is_seen_through_ras_only(testbed: Testbed) -> None:
    tb = testbed
    moved = tb.move("mn", "f2", carrier_loss=False)
    tb.wait_address("mn", FOREIGN_PREFIXES["f2"], timeout=3.0)
    assert time.monotonic() - moved < 3.0
    with tb.ipr("mn") as ipr:
        assert ipr.link("get", ifname="mn0")[0].get("IFLA_OPERSTATE") == "UP"


def test_exec_runs_inside_the_node_and_is_killed_at_teardown() -> None:
    tb = Testbed.build(radvd=False)
    try:
        out = tb.run("cn", [sys.executable, "-c", "import socket; print(socket.if_nameindex())"])
        assert "core0" in out.stdout and "home0" not in out.stdout
        sleeper = tb.exec("mn", ["sleep", "60"])
        pids = processes_of(tb) | {sleeper.pid}
        assert sleeper.pid in nsops.pids_in(tb.ns("mn"))
    finally:
        tb.teardown()
    assert sleeper.returncode is not None
    assert leftovers(tb.prefix, pids) == []
    tb.teardown()  # idempotent
    with pytest.raises(TestbedError, match="torn down"):
        tb.move("mn", "f1")


# ----------------------------------------------------------------------------- cleanup


def test_teardown_leaves_nothing() -> None:
    tb = Testbed.build()
    pids = processes_of(tb)
    assert len(pids) >= 2, "radvd should run in core and ha"
    assert leftovers(tb.prefix) != []
    started = time.monotonic()
    tb.teardown()
    print(f"teardown took {time.monotonic() - started:.3f} s")
    assert leftovers(tb.prefix, pids) == []


def test_teardown_after_an_exception_in_the_body_leaves_nothing() -> None:
    pids: set[int] = set()
    with pytest.raises(RuntimeError, match="test body failed"), Testbed.build() as tb:
        pids = processes_of(tb)
        raise RuntimeError("test body failed")
    assert pids and leftovers(tb.prefix, pids) == []


def test_failed_build_tears_down_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topology.radvd_conf, "find_radvd", lambda: "/bin/false")
    prefix = f"m6tb{os.getpid()}-failed-"
    with pytest.raises(TestbedError, match=r"radvd in .* exited"):
        Testbed.build(prefix)
    assert leftovers(prefix) == []


def test_two_testbeds_coexist_with_several_mobile_nodes() -> None:
    with Testbed.build(mobile_nodes=2) as a, Testbed.build() as b:
        assert a.prefix != b.prefix
        assert not a.prefix.startswith(b.prefix) and not b.prefix.startswith(a.prefix)
        assert a.mobile_nodes == ["mn", "mn2"]
        a.move("mn2", "f1")
        a.wait_address("mn2", FOREIGN_PREFIXES["f1"], timeout=3.0)
        assert a.attachment("mn") == "home" and b.attachment("mn") == "home"
        b.teardown()
        assert nsutil.ping6(a.ns("cn"), HA_HOME_ADDRESS, count=1, timeout=1.0) == 1
    assert leftovers(a.prefix) == [] and leftovers(b.prefix) == []


_CHILD = """
import os, signal, sys, time
from mip6ctl.testbed import Testbed
tb = Testbed.build()
print(tb.prefix, flush=True)
if sys.argv[1] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(30)
"""


def _child(mode: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the KeyboardInterrupt traceback of the SIGINT case
        text=True,
    )
    assert proc.stdout is not None
    ready, _w, _x = select.select([proc.stdout], [], [], 15)
    assert ready, "child did not build its testbed"
    prefix = proc.stdout.readline().strip()
    assert prefix.startswith(f"m6tb{proc.pid}-")
    return proc, prefix


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_tears_the_testbed_down(sig: signal.Signals) -> None:
    proc, prefix = _child("wait")
    try:
        pids = {
            p for n in nsutil.list_namespaces() if n.startswith(prefix) for p in nsops.pids_in(n)
        }
        assert pids
        proc.send_signal(sig)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert leftovers(prefix, pids) == []


def test_sweep_stale_removes_what_a_killed_run_left() -> None:
    proc, prefix = _child("crash")
    assert proc.wait(timeout=10) == -signal.SIGKILL
    names = [n for n in nsutil.list_namespaces() if n.startswith(prefix)]
    pids = {p for n in names for p in nsops.pids_in(n)}
    assert len(names) == 5 and pids  # namespaces and radvd outlived their owner
    assert prefix in sweep_stale()
    assert leftovers(prefix, pids) == []


def test_cli_up_status_move_down() -> None:
    prefix = f"m6tb{os.getpid()}-cli-"

    def cli(*args: str) -> str:
        cmd = [sys.executable, "-m", "mip6ctl.testbed", *args]
        return subprocess.run(
            cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        assert f"testbed {prefix} is up" in cli("up", "--prefix", prefix)
        assert "mn: on home" in cli("status")
        assert "moved to f1; address 2001:db8:a:" in cli("move", "f1", "--prefix", prefix)
        assert "torn down" in cli("down", "--prefix", prefix)
    finally:
        if (topology.RUN_DIR / prefix).exists():
            Testbed.attach(prefix).teardown()
    assert leftovers(prefix) == []
