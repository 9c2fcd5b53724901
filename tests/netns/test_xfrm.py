"""XFRM over netlink against the real kernel, in throw-away namespaces.

`ip -n NS xfrm ...` is the independent check: what we wrote must be what
iproute2 reads back.  States (ESP, route2, hao) need kernel options this
tier may lack; those tests try in the namespace and skip naming the option.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from mip6ctl import ownership
from mip6ctl.kernel.probe import CAPABILITY_NEEDS, xfrm_capabilities
from mip6ctl.kernel.xfrm import XfrmError, XfrmEventSocket, XfrmSocket
from mip6ctl.kernel.xfrm_codec import KmAddress, MigrateEvent, PolicyEvent, XfrmMigration
from mip6ctl.state.xfrm import (
    Action,
    Direction,
    Level,
    Mark,
    Mode,
    PolicyType,
    XfrmAlgo,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmTemplate,
)
from tests import nsutil

A = ipaddress.ip_address
HOA, HA = "2001:db8:1::100", "2001:db8:1::1"
COA, COA2, HA_OUTER = A("2001:db8::1"), A("2001:db8::9"), A("2001:db8::2")
BU_SEL = XfrmSelector.mobility(f"{HOA}/128", f"{HA}/128", 5)
TUN = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=HA_OUTER, src=COA, reqid=7)


@pytest.fixture
def xns(netns: Callable[..., str]) -> Iterator[tuple[str, XfrmSocket]]:
    ns = netns("xfrm")
    with nsutil.inside(ns):
        xs = XfrmSocket(timeout=5.0)
    try:
        yield ns, xs
    finally:
        xs.close()


def ip_policies(ns: str) -> str:
    return nsutil.ip("xfrm", "policy", "list", ns=ns).stdout


def test_main_and_sub_policies_add_dump_update_delete(xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    main = XfrmPolicy(BU_SEL, Direction.OUT, templates=(TUN,))
    ro = XfrmTemplate(XfrmProto.ROUTE2, Mode.RO, level=Level.USE)
    sub = XfrmPolicy(BU_SEL, Direction.OUT, PolicyType.SUB, templates=(ro,))
    results = xs.add_policies([main, sub])
    assert [r.ok for r in results] == [True, True]
    out = ip_policies(ns)
    assert out.count("proto mobility-header type 5") == 2
    assert "ptype sub" in out and "ptype main" in out and "proto route2" in out
    assert f"mark 0/{ownership.XFRM_MARK_MASK:#x}" in out

    dumped = {p.key: p for p in xs.dump_policies()}
    assert dumped == {main.key: dumped[main.key], sub.key: dumped[sub.key]}
    assert dumped[main.key] == main and dumped[sub.key] == sub
    assert xs.get_policy(sub.key) == sub

    moved = XfrmPolicy(BU_SEL, Direction.OUT, priority=0x6D10, templates=(TUN,))
    xs.update_policy(moved)
    assert f"priority {0x6D10}" in ip_policies(ns)
    assert xs.get_policy(main.key) == moved

    assert all(r.ok for r in xs.delete_policies([main, sub]))
    assert ip_policies(ns).strip() == ""


def test_add_and_delete_are_idempotent(xns: tuple[str, XfrmSocket]) -> None:
    _ns, xs = xns
    pol = XfrmPolicy(BU_SEL, Direction.IN, templates=(TUN,))
    first, again = xs.add_policies([pol, pol])
    assert first.ok and not first.noop
    assert again.ok and again.noop
    gone, absent = xs.delete_policies([pol, pol])
    assert gone.ok and not gone.noop and absent.ok and absent.noop
    assert xs.get_policy(pol.key) is None


def test_batch_reports_each_object(xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    good = [
        XfrmPolicy(XfrmSelector.between(f"2001:db8:5::{i:x}/128", "::/0"), Direction.OUT)
        for i in range(1, 301)
    ]
    too_deep = XfrmPolicy(BU_SEL, Direction.OUT, templates=(TUN,) * 7)  # > XFRM_MAX_DEPTH
    results = xs.add_policies([*good[:150], too_deep, *good[150:]])
    assert [r.ok for r in results].count(False) == 1
    bad = results[150]
    assert bad.target is too_deep and bad.error == errno.EINVAL
    with pytest.raises(XfrmError):
        bad.raise_for_error()
    assert len(xs.dump_policies(owned_only=True)) == 300
    assert ip_policies(ns).count("dir out") == 300


def test_foreign_policies_are_never_touched(xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    # identical shape and an owned-band priority, but no mark
    nsutil.ip(
        "xfrm", "policy", "add", "src", f"{HOA}/128", "dst", f"{HA}/128", "proto", "135",
        "type", "5", "dir", "out", "priority", str(ownership.XFRM_PRIORITY_MIN),
        "tmpl", "src", str(COA), "dst", str(HA_OUTER), "proto", "esp", "mode", "tunnel",
        ns=ns,
    )  # fmt: skip
    # our mask, a priority outside the band
    nsutil.ip(
        "xfrm", "policy", "add", "src", f"{HOA}/128", "dst", f"{HA}/128", "dir", "in",
        "priority", "10", "mark", "0", "mask", hex(ownership.XFRM_MARK_MASK), ns=ns,
    )  # fmt: skip
    ours = XfrmPolicy(BU_SEL, Direction.OUT, templates=(TUN,))
    assert xs.add_policy(ours).ok and xs.add_policy(ours).noop
    assert [p.key for p in xs.dump_policies(owned_only=True)] == [ours.key]
    assert len(xs.dump_policies()) == 3

    xs.delete_policy(ours)
    assert xs.delete_policy(ours).noop  # already gone; the foreign twin is not hit
    xs.add_policy(ours)
    pols, sas = xs.flush_owned()
    assert [r.ok for r in pols] == [True] and sas == []
    left = xs.dump_policies()
    assert len(left) == 2 and not any(p.owned for p in left)
    out = ip_policies(ns)
    assert "proto mobility-header type 5" in out and "priority 10" in out


def test_owned_mark_still_applies_to_unmarked_traffic(xns: tuple[str, XfrmSocket]) -> None:
    """The owned mark is value 0 / one mask bit, so it matches packets with no fwmark."""
    ns, xs = xns
    nsutil.ip("-6", "addr", "add", "2001:db8:7::1/64", "dev", "lo", "nodad", ns=ns)
    sel = XfrmSelector.between("::/0", "2001:db8:7::2/128")
    xs.add_policy(XfrmPolicy(sel, Direction.OUT, action=Action.BLOCK))
    with nsutil.inside(ns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with s, pytest.raises(PermissionError):
        s.sendto(b"x", ("2001:db8:7::2", 9))


def test_migrate_tunnel_policy_and_event(xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    with nsutil.inside(ns):
        events = XfrmEventSocket()
    with events:
        pol = XfrmPolicy(BU_SEL, Direction.OUT, templates=(TUN,))
        xs.add_policy(pol)
        km = KmAddress(COA2, HA_OUTER)
        mig = XfrmMigration(HA_OUTER, COA, HA_OUTER, COA2, reqid=7)
        after = xs.migrate(BU_SEL, Direction.OUT, [mig], kmaddress=km)
        assert after is not None and after.templates[0].src == COA2
        out = ip_policies(ns)
        assert f"tmpl src {COA2} dst {HA_OUTER}" in out and f"src {COA} " not in out

        got: list[object] = []
        for _ in range(20):
            got += events.wait(0.5)
            if any(isinstance(e, MigrateEvent) for e in got):
                break
        assert any(isinstance(e, PolicyEvent) and e.kind == "new" for e in got)
        (ev,) = [e for e in got if isinstance(e, MigrateEvent)]
        assert ev.direction == Direction.OUT and ev.kmaddress == km
        assert ev.migrations == (mig,)
        assert ev.selector.mh_type == 5


def test_migrate_refuses_when_an_unmarked_twin_exists(xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    xs.add_policy(XfrmPolicy(BU_SEL, Direction.OUT, templates=(TUN,)))
    twin = XfrmPolicy(BU_SEL, Direction.OUT, priority=1, mark=Mark(), templates=(TUN,))
    xs.add_policy(twin)  # stands in for a foreign policy of the same shape
    mig = XfrmMigration(HA_OUTER, COA, HA_OUTER, COA2, reqid=7)
    with pytest.raises(XfrmError) as exc:
        xs.migrate(BU_SEL, Direction.OUT, [mig])
    assert exc.value.errno == errno.EEXIST
    assert str(COA2) not in ip_policies(ns)


def test_policy_events_new_and_delete(xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    with nsutil.inside(ns):
        events = XfrmEventSocket()
    with events:
        pol = XfrmPolicy(BU_SEL, Direction.FWD, PolicyType.SUB, templates=(TUN,))
        xs.add_policy(pol)
        xs.delete_policy(pol)
        got: list[object] = []
        for _ in range(20):
            got += events.wait(0.5)
            if len(got) >= 2:
                break
    kinds = [(e.kind, e.policy) for e in got if isinstance(e, PolicyEvent)]
    assert [k for k, _ in kinds] == ["new", "delete"]
    assert all(p == pol for _, p in kinds)


def test_capability_probe(netns: Callable[..., str]) -> None:
    ns = netns("probe")
    caps = xfrm_capabilities(lambda: nsutil.inside(ns))
    assert set(caps) == set(CAPABILITY_NEEDS)
    assert caps["policy"] and caps["sub_policy"] and caps["migrate"]
    for name, cap in caps.items():
        assert cap.ok or cap.errno, name
    assert ip_policies(ns).strip() == ""
    assert nsutil.ip("xfrm", "state", "list", ns=ns).stdout.strip() == ""


def _esp() -> XfrmState:
    return XfrmState(
        dst=HA_OUTER,
        src=COA,
        proto=XfrmProto.ESP,
        spi=0x1001,
        mode=Mode.TRANSPORT,
        reqid=7,
        algorithms=(
            XfrmAlgo.from_config("aes-cbc", bytes(range(16))),
            XfrmAlgo.from_config("hmac-sha256", bytes(range(32))),
        ),
    )


def _ro(proto: XfrmProto) -> XfrmState:
    sel = XfrmSelector.between(f"{HOA}/128", f"{HA}/128")
    return XfrmState(dst=A(HA), src=A(HOA), proto=proto, mode=Mode.RO, coaddr=COA, selector=sel)


STATES = {
    "esp": (_esp, "ESP (CONFIG_INET6_ESP)", "proto esp spi 0x00001001"),
    "route2": (lambda: _ro(XfrmProto.ROUTE2), "XFRM route2 states (CONFIG_IPV6_MIP6)", "route2"),
    "hao": (lambda: _ro(XfrmProto.HAO), "XFRM hao states (CONFIG_IPV6_MIP6)", "hao"),
}


@pytest.mark.parametrize("kind", sorted(STATES))
def test_states(kind: str, xns: tuple[str, XfrmSocket]) -> None:
    ns, xs = xns
    make, capability, ip_text = STATES[kind]
    st = make()
    (r,) = xs.add_states([st])
    if r.error in (errno.EPROTONOSUPPORT, errno.ENOPROTOOPT, errno.ENOSYS, errno.ENOENT):
        pytest.skip(f"missing capability: {capability} ({errno.errorcode[r.error]}: {r.message})")
    r.raise_for_error()
    out = nsutil.ip("xfrm", "state", "list", ns=ns).stdout
    assert ip_text in out
    assert "000102030405" not in repr(st)
    (got,) = xs.dump_states(owned_only=True)
    assert got.key == st.key and got.diff(st) == {}
    assert xs.get_state(st.key) == st
    assert xs.add_states([st])[0].noop
    xs.delete_state(st)
    assert xs.delete_state(st).noop
    assert nsutil.ip("xfrm", "state", "list", ns=ns).stdout.strip() == ""


def _changed(st: XfrmState) -> XfrmState:
    """What an update changes: the CoA for route2/hao, the keys and reqid for ESP."""
    if st.proto.uses_spi:
        algos = (
            XfrmAlgo.from_config("aes-cbc", bytes(range(16, 32))),
            XfrmAlgo.from_config("hmac-sha256", bytes(range(32, 64))),
        )
        return replace(st, algorithms=algos, reqid=8)
    return replace(st, coaddr=COA2)


@pytest.mark.parametrize("kind", sorted(STATES))
def test_state_update_adds_then_replaces(kind: str, xns: tuple[str, XfrmSocket]) -> None:
    """update_states is add-or-replace: UPDSA alone fails (ESRCH) for a missing SA
    and leaves keys, algorithms and reqid as they were."""
    ns, xs = xns
    make, capability, _ip_text = STATES[kind]
    st = make()
    (r,) = xs.update_states([st])
    if r.error in (errno.EPROTONOSUPPORT, errno.ENOPROTOOPT, errno.ENOSYS, errno.ENOENT):
        pytest.skip(f"missing capability: {capability} ({errno.errorcode[r.error]}: {r.message})")
    r.raise_for_error()
    assert xs.get_state(st.key) == st
    new = _changed(st)
    assert [r.ok for r in xs.update_states([new])] == [True]
    got = xs.get_state(st.key)
    assert got is not None and got.diff(new) == {}
    assert len(xs.dump_states()) == 1
    xs.delete_state(new)
    assert xs.get_state(st.key) is None
    assert nsutil.ip("xfrm", "state", "list", ns=ns).stdout.strip() == ""
