"""One writer, every kind repaired (issue 13): owned objects deleted by hand come back.

The reference testbed with the real home agent and mobile node daemons; the
mobile node moves to f1 and registers.  Then, for each kind of object either
daemon owns, the object is removed with iproute2 or nft inside that node's
namespace -- the way an operator or another tool would -- and must be back
within one second: routes, rules, proxy neighbours and addresses from
rtnetlink events, nf_tables set elements and chains from NFNLGRP_NFTABLES
events, proxy neighbours and the seg6 tunnel source by polling (they raise no
events).  Foreign objects created before the daemons started (an nftables
table, an XFRM policy) are exactly as they were after a registration, the
repairs and a stop with ``flush_on_stop``, which removes every owned object.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address

import pytest

from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import REPO, HaDaemon, ip

pytestmark = [
    nsutil.NEEDS_RADVD,
    pytest.mark.seg6(auto=True),
]

EXAMPLE_MN = REPO / "examples" / "testbed" / "mn"
HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
FLUSH = {"[ha]": "[daemon]\nflush_on_stop = true\n\n[ha]"}
FOREIGN_XFRM = ("src", "2001:db8:77::/64", "dst", "2001:db8:78::/64")


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mn: HaDaemon
    coa: str
    foreign: dict[str, str]


def nft(tb: Testbed, node: str, *args: str) -> str:
    return nsutil.run("nft", *args, ns=tb.ns(node)).stdout


def foreign_state(tb: Testbed) -> dict[str, str]:
    return {
        "nft": nft(tb, "ha", "list", "table", "ip6", "foreign"),
        "xfrm": ip(tb, "ha", "xfrm", "policy", "list", *FOREIGN_XFRM),
    }


def wait(what: str, check: Callable[[], object], timeout: float, bed: Bed | None = None) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            logs = ""
            if bed is not None:
                logs = f"\n--- ha ---\n{bed.ha.tail()}\n--- mn ---\n{bed.mn.tail()}"
            raise AssertionError(f"{what}: not within {timeout} s{logs}")
        time.sleep(0.02)
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        nsutil.run("nft", "add", "table", "ip6", "foreign", ns=tb.ns("ha"))
        nsutil.run("nft", "add", "chain", "ip6", "foreign", "c",
                   "{ type filter hook prerouting priority 0; }", ns=tb.ns("ha"))  # fmt: skip
        nsutil.run("nft", "add", "rule", "ip6", "foreign", "c", "meta", "l4proto", "135",
                   "counter", "accept", ns=tb.ns("ha"))  # fmt: skip
        ip(tb, "ha", "xfrm", "policy", "add", "dir", "out", *FOREIGN_XFRM, "priority", "100")
        foreign = foreign_state(tb)
        ha = HaDaemon(tb, tmp_path_factory.mktemp("ha"), replace=FLUSH)
        mn = HaDaemon(tb, tmp_path_factory.mktemp("mn"), node="mn", example=EXAMPLE_MN)
        try:
            ha.start()
            mn.start()
            tb.move("mn", "f1")
            b = Bed(tb, ha, mn, "", foreign)

            def registered() -> bool:
                m = mn.rpc("movement")
                entry = ha.bindings().get(str(HOA))
                ok = m["location"] == "away" and m["kernel_in_sync"]
                return bool(ok and entry and entry["care_of_address"] == m["care_of_address"])

            wait("the mobile node registered from f1", registered, 20.0, b)
            b.coa = mn.rpc("movement")["care_of_address"]
            yield b
        finally:
            mn.stop()
            ha.stop()


def drift_repairs(d: HaDaemon) -> int:
    return int(d.rpc("status")["counters"]["drift_repairs"])


# node, what, removal (argv after ip/nft), check that it is back
HA_CASES: list[tuple[str, list[str], Callable[[Bed], bool]]] = [
    (
        "binding route (seg6 encap)",
        ["ip", "-6", "route", "del", f"{HOA}/128", "table", "6275"],
        lambda b: f"{HOA} " in ip(b.tb, "ha", "-6", "route", "show", "table", "6275"),
    ),
    (
        "home prefix rule",
        ["ip", "-6", "rule", "del", "pref", "1001"],
        lambda b: "1001:" in ip(b.tb, "ha", "-6", "rule", "show"),
    ),
    (
        "decapsulation rule",
        ["ip", "-6", "rule", "del", "pref", "1000"],
        lambda b: "1000:" in ip(b.tb, "ha", "-6", "rule", "show"),
    ),
    (
        "decapsulation route (seg6local)",
        ["ip", "-6", "route", "del", f"{HA}/128", "table", "6276"],
        lambda b: "End.DT6" in ip(b.tb, "ha", "-6", "route", "show", "table", "6276"),
    ),
    (
        "proxy neighbour",
        ["ip", "-6", "neigh", "del", "proxy", str(HOA), "dev", "home0"],
        lambda b: str(HOA) in ip(b.tb, "ha", "-6", "neigh", "show", "proxy"),
    ),
    (
        "nftables set element (reverse-tunnel check)",
        ["nft", "delete", "element", "ip6", "mip6ctl", "reverse_tunnel_bindings", "{COA . HOA}"],
        lambda b: str(HOA) in nft(b.tb, "ha", "list", "set", "ip6", "mip6ctl",
                                  "reverse_tunnel_bindings"),
    ),
    (
        "nftables chain rules (signalling drop)",
        ["nft", "flush", "chain", "ip6", "mip6ctl", "signalling_pre"],
        lambda b: "mobility-header" in nft(b.tb, "ha", "list", "chain", "ip6", "mip6ctl",
                                           "signalling_pre"),
    ),
    (
        "nftables chain (reverse-tunnel check)",
        ["nft", "delete", "chain", "ip6", "mip6ctl", "reverse_tunnel"],
        lambda b: "reverse tunnel to" in nft(b.tb, "ha", "list", "table", "ip6", "mip6ctl"),
    ),
]


def _argv(b: Bed, argv: list[str]) -> list[str]:
    return [a.replace("{COA . HOA}", f"{{ {b.coa} . {HOA} }}") for a in argv]


@pytest.mark.parametrize(("what", "argv", "back"), HA_CASES, ids=[c[0] for c in HA_CASES])
def test_home_agent_object_deleted_by_hand_is_restored_within_a_second(
    bed: Bed, what: str, argv: list[str], back: Callable[[Bed], bool]
) -> None:
    _removed_and_restored(bed, bed.ha, what, argv, back)


def _removed_and_restored(
    bed: Bed, d: HaDaemon, what: str, argv: list[str], back: Callable[[Bed], bool]
) -> None:
    """Remove by hand; the repair is often faster than a second look, so the proof
    that the removal happened is the daemon's drift-repair counter going up."""
    assert back(bed), f"{what} is not there to begin with"
    before = drift_repairs(d)
    t0 = time.monotonic()
    nsutil.run(*_argv(bed, argv), ns=bed.tb.ns(d.node))
    # the 1-second goal, on the kernel these tests were written for; under emulation
    # (the vm tier, Python ~20x slower) the mechanism is checked with a scaled bound
    bound = 1.0 * nsutil.SLOWDOWN
    wait(f"{what}: the drift seen and repaired", lambda: drift_repairs(d) > before, bound, bed)
    wait(f"{what} restored", lambda: back(bed), bound, bed)
    took = time.monotonic() - t0
    assert took < bound, took
    print(f"\n{what}: restored in {took * 1000:.0f} ms")


MN_CASES: list[tuple[str, list[str], Callable[[Bed], bool]]] = [
    (
        "home address",
        ["ip", "-6", "addr", "del", f"{HOA}/128", "dev", "mn0"],
        lambda b: f"{HOA}/128" in ip(b.tb, "mn", "-6", "addr", "show", "dev", "mn0"),
    ),
    (
        "home address source rule",
        ["ip", "-6", "rule", "del", "from", f"{HOA}", "lookup", "6275"],
        lambda b: f"from {HOA} lookup 6275" in ip(b.tb, "mn", "-6", "rule", "show"),
    ),
    (
        "reverse tunnel route",
        ["ip", "-6", "route", "del", "default", "table", "6275"],
        lambda b: f"segs 1 [ {HA} ]" in ip(b.tb, "mn", "-6", "route", "show", "table", "6275"),
    ),
    (
        "host route to the home agent",
        ["ip", "-6", "route", "del", f"{HA}/128"],
        lambda b: f"{HA} via" in ip(b.tb, "mn", "-6", "route", "show"),
    ),
    (
        "seg6 tunnel source",
        ["ip", "sr", "tunsrc", "set", "::"],
        lambda b: b.coa in ip(b.tb, "mn", "sr", "tunsrc", "show"),
    ),
]


@pytest.mark.parametrize(("what", "argv", "back"), MN_CASES, ids=[c[0] for c in MN_CASES])
def test_mobile_node_object_deleted_by_hand_is_restored_within_a_second(
    bed: Bed, what: str, argv: list[str], back: Callable[[Bed], bool]
) -> None:
    _removed_and_restored(bed, bed.mn, what, argv, back)
    wait("the kernel in sync again", lambda: bed.mn.rpc("movement")["kernel_in_sync"], 2.0, bed)
    assert nsutil.ping6(bed.tb.ns("cn"), str(HOA), count=2, timeout=2.0) >= 1


def mip6ctl_diff(bed: Bed, d: HaDaemon) -> tuple[int, dict]:
    argv = [sys.executable, "-m", "mip6ctl", "diff", "-c", str(d.config)]
    argv += ["--socket", str(d.socket), "--json"]
    out = bed.tb.run(d.node, argv)
    return out.returncode, json.loads(out.stdout)


@pytest.mark.parametrize("node", ["ha", "mn"])
def test_diff_through_the_daemon_knows_every_kind_it_owns(bed: Bed, node: str) -> None:
    """In a steady state the daemon's plan is empty: it renders its nftables, XFRM and
    mobile-node objects too (else they would show as deletes)."""
    d = bed.ha if node == "ha" else bed.mn
    rc, doc = mip6ctl_diff(bed, d)
    assert (rc, doc["plan"]) == (0, []), doc


def test_static_diff_without_a_daemon_lists_the_nftables_objects(bed: Bed) -> None:
    """Last test of the module: stops the home agent.  With no daemon the static plan
    shows a missing nftables chain and leaves binding objects alone; the stop with
    flush_on_stop removed every owned object and no foreign one."""
    bed.ha.stop()
    assert "table ip6 mip6ctl" not in nft(bed.tb, "ha", "list", "tables")
    assert f"{HOA} " not in ip(bed.tb, "ha", "-6", "route", "show", "table", "6275")
    assert foreign_state(bed.tb) == bed.foreign
    argv = [sys.executable, "-m", "mip6ctl", "diff", "-c", str(bed.ha.config), "--json"]
    out = bed.tb.run("ha", argv)
    doc = json.loads(out.stdout)
    assert out.returncode == 2, doc
    kinds = {c["kind"] for c in doc["plan"]}
    assert {"nft-chain", "nft-set"} <= kinds, kinds
    assert all(c["action"] == "create" for c in doc["plan"] if c["kind"].startswith("nft")), doc
