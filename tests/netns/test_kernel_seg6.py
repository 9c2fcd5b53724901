"""The seg6 IPv6-in-IPv6 data path, end to end, with kernel objects made by the writer.

Topology (addresses from TESTBED.md): CN --cn0-- core --ha0-- HA, core --f1-- MN.
The core routes the home prefix to the HA, as in the testbed; the MN sits on
f1 with its home address on lo.  A ping from the CN to the home address goes
CN -> core -> HA -> (seg6 encap.red, outer next header 41) -> core -> MN,
where the MN decapsulates it (rule to CoA ipproto 41, End.DT6 table local);
the reply takes the reverse tunnel MN -> HA, the HA decapsulates it (End.DT6
table main) and forwards it to the CN.  HA counters prove both directions.

Note: End.DT6 looks the inner packet up in one table only, so inner packets
addressed to the HA itself would need table local there (or End.DX6 with nh6
::, which does a full policy lookup); the HA here only forwards.
"""

from __future__ import annotations

import pytest

from mip6ctl.kernel import seg6
from mip6ctl.kernel.writer import Writer, create
from mip6ctl.state.objects import Address, Rule
from tests import nsutil

HA, HA_CORE = "2001:db8:ff01::1", "2001:db8:ff01::ff"
COA, F1 = "2001:db8:a::100", "2001:db8:a::1"
CN, CORE_C = "2001:db8:c::2", "2001:db8:c::1"
HOA = "2001:db8:1::100"
DECAP_TABLE = 100


def _node(ns: str) -> None:
    for knob in ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"):
        nsutil.run("sysctl", "-qw", knob, ns=ns)


def _link(a: str, a_if: str, b: str, b_if: str) -> None:
    nsutil.ip("link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b)
    nsutil.ip("link", "set", a_if, "up", ns=a)
    nsutil.ip("link", "set", b_if, "up", ns=b)


def _snmp6(ns: str) -> dict[str, int]:
    out = nsutil.run("cat", "/proc/net/snmp6", ns=ns).stdout.split("\n")
    return {k: int(v) for k, v in (line.split() for line in out if line.strip())}


def _apply(ns: str, ops: list) -> None:
    with nsutil.inside(ns):
        w = Writer()
    with w:
        results = w.apply(ops)
    bad = [r for r in results if not r.ok]
    assert not bad, bad


@pytest.mark.seg6
def test_seg6_encap_red_tunnel_carries_a_ping_both_ways(netns) -> None:
    ha, core, mn, cn = netns("ha"), netns("core"), netns("mn"), netns("cn")
    for ns in (ha, core, mn, cn):
        _node(ns)
    _link(ha, "core0", core, "ha0")
    _link(core, "f1", mn, "mn0")
    _link(core, "cn0", cn, "core0")
    for ns in (core, ha):
        nsutil.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=ns)
    nsutil.ip("-6", "addr", "add", f"{CORE_C}/64", "dev", "cn0", "nodad", ns=core)
    nsutil.ip("-6", "addr", "add", f"{CN}/64", "dev", "core0", "nodad", ns=cn)
    nsutil.ip("-6", "route", "add", "default", "via", CORE_C, ns=cn)
    nsutil.ip("-6", "addr", "add", f"{HA}/64", "dev", "core0", "nodad", ns=ha)
    nsutil.ip("-6", "route", "add", "default", "via", HA_CORE, ns=ha)
    nsutil.ip("-6", "addr", "add", f"{HA_CORE}/64", "dev", "ha0", "nodad", ns=core)
    nsutil.ip("-6", "route", "add", "2001:db8:1::/64", "via", HA, ns=core)
    nsutil.ip("-6", "addr", "add", f"{F1}/64", "dev", "f1", "nodad", ns=core)
    nsutil.ip("-6", "addr", "add", f"{COA}/64", "dev", "mn0", "nodad", ns=mn)
    nsutil.ip("-6", "route", "add", "default", "via", F1, ns=mn)

    # HA: home address -> care-of address tunnel; decapsulate the reverse tunnel.
    _apply(
        ha,
        [
            *seg6.relocate_local_rule_ops(),
            create(Rule(1001, dst=f"{HOA}/128")),
            create(seg6.encap_route(HOA, COA, "core0")),
            *[
                create(o)
                for o in seg6.decap_objects(HA, "core0", table=DECAP_TABLE, inner_table=254)
            ],
        ],
    )
    # MN: home address, decapsulation at the care-of address, reverse tunnel to the HA.
    _apply(
        mn,
        [
            create(Address("lo", HOA, 128)),
            *seg6.relocate_local_rule_ops(),
            *[
                create(o)
                for o in seg6.decap_objects(COA, "mn0", table=DECAP_TABLE, inner_table=255)
            ],
            create(Rule(1001, src=f"{HOA}/128")),
            create(seg6.encap_route("::/0", HA, "mn0", src=f"{HOA}/128")),
        ],
    )

    rules = nsutil.ip("-6", "rule", "show", ns=mn).stdout
    assert "lookup local" in rules and not rules.startswith("0:"), rules
    route = nsutil.ip("-6", "route", "show", "table", "6275", ns=ha).stdout
    assert "encap seg6 mode encap.red" in route, route

    before_ha, before_mn = _snmp6(ha), _snmp6(mn)
    assert nsutil.ping6(cn, HOA, count=3) == 3
    ha_stats, mn_stats = _snmp6(ha), _snmp6(mn)
    # The MN answered the echoes itself, and the HA forwarded every packet twice:
    # the request (encapsulated towards the CoA) and the reply (decapsulated, to the CN).
    assert mn_stats["Icmp6InEchos"] - before_mn["Icmp6InEchos"] == 3
    assert ha_stats["Ip6OutForwDatagrams"] - before_ha["Ip6OutForwDatagrams"] >= 6
