"""plan(): ordering, determinism, idempotence, conflicts, impact."""

from __future__ import annotations

import random

from mip6ctl.state.objects import ProxyNeighbour, Route, Rule, Seg6Encap, Sysctl, Tunnel
from mip6ctl.state.plan import Origin, plan


def _binding(hoa: str, coa: str) -> dict:
    objs = [
        Route(f"{hoa}/128", oif="home0", encap=Seg6Encap((coa,))),
        ProxyNeighbour("home0", hoa),
    ]
    return {o.key: o for o in objs}


def _origins(objs: dict, origin: Origin) -> dict:
    return dict.fromkeys(objs, origin)


def test_create_from_scratch_in_dependency_order():
    objs = [
        ProxyNeighbour("home0", "2001:db8:1::100"),
        Rule(1001, dst="2001:db8:1::/64"),
        Route("2001:db8:1::100/128", oif="home0", encap=Seg6Encap(("2001:db8:a::1",))),
        Tunnel("m6tabc", "2001:db8::1", "2001:db8:a::1"),
        Sysctl("net/ipv6/conf/all/forwarding", "1"),
    ]
    p = plan({o.key: o for o in objs}, {})
    assert [c.kind for c in p.changes] == ["sysctl", "tunnel", "route", "rule", "proxy"]
    assert {c.action for c in p.changes} == {"create"}


def test_apply_then_plan_is_empty():
    desired = _binding("2001:db8:1::100", "2001:db8:a::100")
    assert plan(desired, dict(desired)).empty


def test_deterministic_whatever_the_input_order():
    desired: dict = {}
    observed: dict = {}
    for i in range(50):
        desired |= _binding(f"2001:db8:1::{i + 1:x}", f"2001:db8:a::{i + 1:x}")
        observed |= _binding(f"2001:db8:1::{i + 30:x}", f"2001:db8:b::{i + 1:x}")
    first = plan(desired, observed)
    for seed in range(5):
        d = list(desired.items())
        o = list(observed.items())
        random.Random(seed).shuffle(d)
        random.Random(seed + 100).shuffle(o)
        assert plan(dict(d), dict(o)).changes == first.changes


def test_moving_binding_is_make_before_break():
    old_t = Tunnel("m6told", "2001:db8:1::1", "2001:db8:a::100")
    new_t = Tunnel("m6tnew", "2001:db8:1::1", "2001:db8:b::100")
    old_r = Route("2001:db8:1::100/128", oif="m6told")
    new_r = Route("2001:db8:1::100/128", oif="m6tnew")
    origin = Origin("binding", "2001:db8:1::100")
    desired = {new_t.key: new_t, new_r.key: new_r}
    observed = {old_t.key: old_t, old_r.key: old_r}
    p = plan(desired, observed, origins=_origins(desired, origin))
    assert [(c.action, c.key) for c in p.changes] == [
        ("create", new_t.key),  # the new tunnel first,
        ("update", new_r.key),  # then the route moves onto it (atomic replace),
        ("delete", old_t.key),  # and only then the old tunnel goes
    ]
    assert p.impact["bindings_moved"] == 1 and p.impact["bindings_dropped"] == 0


def test_deletes_in_reverse_dependency_order():
    t = Tunnel("m6told", "2001:db8:1::1", "2001:db8:a::100")
    r = Route("2001:db8:1::100/128", oif="m6told")
    n = ProxyNeighbour("home0", "2001:db8:1::100")
    p = plan({}, {t.key: t, r.key: r, n.key: n})
    assert [c.kind for c in p.changes] == ["proxy", "route", "tunnel"]


def test_foreign_object_is_a_conflict_not_a_change():
    want = Route("2001:db8:1::100/128", oif="home0", encap=Seg6Encap(("2001:db8:a::1",)))
    theirs = Route("2001:db8:1::100/128", oif="home0", protocol=4)
    p = plan({want.key: want}, {}, foreign={want.key: theirs})
    assert p.empty
    (c,) = p.conflicts
    assert c.foreign == theirs and c.desired == want


def test_scope_limits_the_diff():
    a = _binding("2001:db8:1::100", "2001:db8:a::100")
    b = _binding("2001:db8:1::101", "2001:db8:a::101")
    p = plan(a, b, scope=list(a))
    assert {c.action for c in p.changes} == {"create"}
    assert {c.key for c in p.changes} == set(a)


def test_impact_counts():
    keep = _binding("2001:db8:1::1", "2001:db8:a::1")
    add = _binding("2001:db8:1::2", "2001:db8:a::2")
    drop = _binding("2001:db8:1::3", "2001:db8:a::3")
    move_old = _binding("2001:db8:1::4", "2001:db8:a::4")
    move_new = _binding("2001:db8:1::4", "2001:db8:b::4")
    origins = {}
    for hoa, objs in (("1", keep), ("2", add), ("4", move_new)):
        origins |= _origins(objs, Origin("binding", f"2001:db8:1::{hoa}"))
    desired = keep | add | move_new
    observed = keep | drop | move_old
    drop_origins = _origins(drop, Origin("binding", "2001:db8:1::3"))
    p = plan(desired, observed, origins=origins | drop_origins)
    assert p.impact == {
        "bindings_added": 1,
        "bindings_moved": 1,
        "bindings_dropped": 1,
        "config_objects": 0,
    }
    assert p.counts() == {"create": 2, "migrate": 0, "update": 1, "delete": 2}
