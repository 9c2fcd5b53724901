"""The reconcile loop against an in-memory kernel: queueing, backoff, conditions, waiting."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.daemon.reconcile_loop import STATIC, ReconcileLoop, binding_key
from mip6ctl.daemon.workqueue import Backoff, WorkQueue
from mip6ctl.kernel.observer import Change
from mip6ctl.kernel.writer import Op, Result
from mip6ctl.state.objects import ProxyNeighbour, Route, Rule, Seg6Encap
from mip6ctl.state.render import Capabilities, HostFacts

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "testbed" / "ha"
CFG = load_directory(EXAMPLE).config
TABLE = CFG.kernel.route_table


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def b(n: int, coa: str = "2001:db8:2::1") -> B:
    return B(IPv6Address(f"2001:db8:1::{0x100 + n:x}"), IPv6Address(coa))


def route_key(hoa: str) -> tuple:
    return ("route", TABLE, f"{hoa}/128", "::/0", 1024)


class FakeObserver:
    """The observer's cache and nothing else: the fake writer edits it directly."""

    def __init__(self) -> None:
        self.owned: dict[tuple, Any] = {}
        self.foreign: dict[tuple, Any] = {}
        self.on_change = None
        self.sysctl_paths: set[str] = set()

    def conflict(self, key: tuple) -> Any:
        return self.foreign.get(key)

    def process_pending(self) -> list:
        return []

    def note_applied(self, results: object) -> list:
        return []

    def resync(self) -> list:
        return []


class FakeWriter:
    """Applies ops to the fake cache; `fail[key] = errno` makes an op fail."""

    def __init__(self, obs: FakeObserver) -> None:
        self.obs = obs
        self.calls: list[list[Op]] = []
        self.fail: dict[tuple, int] = {}

    @property
    def ops(self) -> int:
        return sum(len(c) for c in self.calls)

    def apply(self, ops: Any) -> list[Result]:
        ops = list(ops)
        self.calls.append(ops)
        out = []
        for op in ops:
            k = op.obj.key
            if k in self.fail:
                out.append(Result(op, "error", self.fail[k], "injected"))
            elif op.action == "delete":
                (self.obs.foreign if op.allow_foreign else self.obs.owned).pop(k, None)
                out.append(Result(op, "ok"))
            elif k in self.obs.foreign:
                out.append(Result(op, "conflict", errno.EEXIST, "foreign", self.obs.foreign[k]))
            else:
                self.obs.owned[k] = op.obj
                out.append(Result(op, "ok"))
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**kw: Any) -> tuple[ReconcileLoop, FakeObserver, FakeWriter]:
    obs = FakeObserver()
    w = FakeWriter(obs)
    loop = ReconcileLoop(CFG, Capabilities(), HostFacts(), obs, w, **kw)
    return loop, obs, w


def drain(loop: ReconcileLoop, now: float = 0.0) -> int:
    n = 0
    while (k := loop.step(now)) > 0:
        n += k
    return n


def test_converges_static_and_bindings_then_noop() -> None:
    loop, obs, w = make()
    for i in range(3):
        loop.set_binding(b(i))
    drain(loop)
    for i in range(3):
        hoa = f"2001:db8:1::{0x100 + i:x}"
        assert obs.owned[route_key(hoa)].encap == Seg6Encap(("2001:db8:2::1",))
        assert ("proxy", "home0", hoa) in obs.owned
    assert any(k[0] == "rule" for k in obs.owned)
    st = loop.status()
    assert st["conditions"][0]["status"] == "True"
    assert st["conditions"][0]["reason"] == "Reconciled"
    assert st["observed_generation"] == 1
    json.dumps(st)  # plain data
    ops = w.ops
    loop.set_generation(CFG, 2)
    drain(loop)
    assert w.ops == ops  # nothing to write
    assert loop.status()["observed_generation"] == 2


def test_link_local_proxy_of_an_l_bit_binding_belongs_to_that_binding() -> None:
    """L = 1: the home agent defends fe80::<interface id> too (RFC 6275 §10.4.1).
    That proxy entry names no home address, so it must not pass for an orphan
    binding's object (deleted, re-added, forever) -- it is the binding's own, and
    goes with the L bit or the binding."""
    loop, obs, w = make()
    hoa, ll = "2001:db8:1::100", "fe80::100"
    with_l = B(IPv6Address(hoa), IPv6Address("2001:db8:2::1"), IPv6Address(ll))
    loop.set_binding(with_l)
    drain(loop)
    assert {("proxy", "home0", hoa), ("proxy", "home0", ll)} <= set(obs.owned)
    ops = w.ops
    loop.set_generation(CFG, 2)
    drain(loop)
    assert w.ops == ops, w.calls[-1]  # converged: nothing deleted and put back
    loop.set_binding(b(0))  # a refresh without L
    drain(loop)
    assert ("proxy", "home0", ll) not in obs.owned
    assert ("proxy", "home0", hoa) in obs.owned
    loop.set_binding(with_l)
    drain(loop)
    assert ("proxy", "home0", ll) in obs.owned
    loop.remove_binding(hoa)
    drain(loop)
    assert not [k for k in obs.owned if k[0] == "proxy"], obs.owned


def test_burst_coalesces_into_one_reconcile() -> None:
    loop, _obs, _w = make()
    drain(loop)
    before = loop.counters["reconciles"]
    loop.set_binding(b(0))
    for _ in range(5):
        loop.enqueue(binding_key("2001:db8:1::100"))
    assert loop.step(0.0) == 1
    assert loop.counters["reconciles"] == before + 1
    assert loop.step(0.0) == 0


def test_workqueue_hands_a_key_to_one_worker_at_a_time() -> None:
    q = WorkQueue()
    q.add("a")
    assert not q.add("a")  # coalesced
    assert q.pop_ready(0, 10) == ["a"]
    q.add("a")  # triggered while in flight: dirty, not handed out again
    assert q.pop_ready(0, 10) == []
    q.done("a")
    assert q.pop_ready(0, 10) == ["a"]  # exactly once more
    q.done("a")
    assert q.pop_ready(0, 10) == []


def test_workqueue_delayed_and_superseded() -> None:
    q = WorkQueue()
    q.add_at("a", 1.0)
    q.add_at("a", 0.5)  # earlier wins
    assert q.next_due() == 0.5
    assert q.pop_ready(0.4, 10) == []
    assert q.pop_ready(0.5, 10) == ["a"]
    q.done("a")
    q.add_at("b", 2.0)
    q.add("b")  # an immediate trigger supersedes the pending retry
    assert q.pop_ready(0.0, 10) == ["b"]
    q.done("b")
    assert q.pop_ready(5.0, 10) == []


def test_backoff_doubles_and_caps() -> None:
    bo = Backoff(base=0.005, cap=30.0)
    delays = [bo.next_delay("k") for _ in range(15)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 30.0
    bo.forget("k")
    assert bo.next_delay("k") == 0.005


def test_transient_failure_retries_with_growing_delay_on_fake_clock() -> None:
    clock = Clock()
    loop, obs, w = make(clock=clock)
    drain(loop)
    key = route_key("2001:db8:1::100")
    w.fail[key] = errno.ENODEV
    loop.set_binding(b(0))
    attempts = []
    for _ in range(5):
        assert loop.step(clock.now) == 1
        attempts.append(clock.now)
        due = loop.queue.next_due()
        assert due is not None
        assert loop.step(due - 1e-4) == 0  # not before its time
        clock.now = due
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    assert gaps == [0.005, 0.01, 0.02, 0.04]
    st = loop.status()
    cond = st["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "TransientError")
    assert "ENODEV" in cond["message"]
    assert st["failing"][0]["attempts"] == 5
    del w.fail[key]
    assert loop.step(clock.now) == 1
    assert key in obs.owned
    assert loop.backoff.failures(binding_key("2001:db8:1::100")) == 0
    assert loop.condition().status == "True"


def test_terminal_failure_is_not_retried() -> None:
    loop, _obs, w = make()
    drain(loop)
    w.fail[route_key("2001:db8:1::100")] = errno.EINVAL
    loop.set_binding(b(0))
    drain(loop)
    assert loop.condition().reason == "ApplyFailed"
    assert loop.queue.waiting() == 0
    assert loop.counters["failures"] == 1


def test_foreign_object_is_a_conflict_never_overwritten() -> None:
    loop, obs, w = make()
    drain(loop)
    key = route_key("2001:db8:1::100")
    theirs = Route("2001:db8:1::100/128", table=TABLE, protocol=4, oif="home0")
    obs.foreign[key] = theirs
    loop.set_binding(b(0))
    drain(loop)
    cond = loop.condition()
    assert (cond.status, cond.reason) == ("False", "Conflict")
    assert not any(op.obj.key == key for call in w.calls for op in call)
    assert obs.foreign[key] is theirs
    assert loop.queue.waiting() == 1  # retried with backoff
    del obs.foreign[key]
    drain(loop, 1.0)
    assert key in obs.owned and loop.condition().status == "True"


def test_drift_events_map_to_keys_and_echoes_are_ignored() -> None:
    loop, obs, _w = make()
    loop.set_binding(b(0))
    drain(loop)
    hoa = "2001:db8:1::100"
    mine = obs.owned[route_key(hoa)]
    # echo of our own write: cache equals desired -> nothing queued
    loop._on_kernel_changes([Change(route_key(hoa), None, mine, True)])
    assert loop.queue.ready() == 0
    # someone deleted it
    del obs.owned[route_key(hoa)]
    loop._on_kernel_changes([Change(route_key(hoa), mine, None, True)])
    assert list(loop.queue._fifo) == [binding_key(hoa)]
    # an owned rule nobody desires -> static; a foreign route elsewhere -> ignored
    stray = Rule(1050, table=TABLE, dst="2001:db8:99::/64")
    obs.owned[stray.key] = stray
    other = Route("2001:db8:77::/64", table=TABLE, protocol=4, oif="home0")
    loop._on_kernel_changes([Change(stray.key, None, stray, True)])
    loop._on_kernel_changes([Change(other.key, None, other, False)])
    assert list(loop.queue._fifo) == [binding_key(hoa), STATIC]
    assert loop.counters["drift_events"] == 2
    drain(loop)
    assert route_key(hoa) in obs.owned and stray.key not in obs.owned
    assert loop.counters["drift_repairs"] == 2


def test_remove_binding_deletes_exactly_its_objects() -> None:
    loop, obs, _w = make()
    for i in range(3):
        loop.set_binding(b(i))
    drain(loop)
    before = set(obs.owned)
    loop.remove_binding("2001:db8:1::101")
    drain(loop)
    gone = before - set(obs.owned)
    assert gone == {route_key("2001:db8:1::101"), ("proxy", "home0", "2001:db8:1::101")}


def test_orphans_are_removed_at_a_generation() -> None:
    loop, obs, _w = make()
    orphan = Route("2001:db8:1::999/128", table=TABLE, oif="home0")
    proxy = ProxyNeighbour("home0", "2001:db8:1::999")
    obs.owned[orphan.key] = orphan
    obs.owned[proxy.key] = proxy
    loop.set_generation(CFG, 2)
    drain(loop)
    assert orphan.key not in obs.owned and proxy.key not in obs.owned


def test_refresh_with_same_care_of_costs_nothing() -> None:
    loop, _obs, _w = make()
    loop.set_binding(b(0))
    drain(loop)
    n = loop.counters["reconciles"]
    assert loop.set_binding(b(0)) is False
    assert loop.step(0) == 0 and loop.counters["reconciles"] == n
    assert loop.set_binding(b(0, "2001:db8:2::2")) is True


def test_out_of_sync_finds_drift_in_the_cache() -> None:
    loop, obs, _w = make()
    for i in range(3):
        loop.set_binding(b(i))
    drain(loop)
    assert loop.out_of_sync() == set()
    del obs.owned[("proxy", "home0", "2001:db8:1::101")]
    stray = Route("2001:db8:1::555/128", table=TABLE, oif="home0")
    obs.owned[stray.key] = stray
    assert loop.out_of_sync() == {binding_key("2001:db8:1::101"), binding_key("2001:db8:1::555")}


def test_resync_thread_steps_aside_while_the_loop_is_busy(monkeypatch) -> None:
    """`_throttled`: after resync_work of steps it sleeps resync_pause, but only when
    the loop saw work within resync_pause (note_activity); the result is unchanged."""
    import mip6ctl.daemon.reconcile_loop as rl

    loop, _obs, _w = make()
    clock = [100.0]
    sleeps: list[float] = []
    monkeypatch.setattr(rl.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(rl.time, "sleep", sleeps.append)

    def steps():  # each step "takes" 1 ms
        for _ in range(10):
            clock[0] += 0.001
            yield
        return "done"

    assert loop._throttled(steps()) == "done" and sleeps == []  # idle loop: no pause
    loop.note_activity(clock[0])
    assert loop._throttled(steps()) == "done"
    assert sleeps and all(s == loop.resync_pause for s in sleeps)


def test_wait_reconciled() -> None:
    async def main() -> None:
        loop, obs, w = make(backoff=Backoff(base=0.01, cap=0.05), resync_interval=3600)
        loop.start()
        try:
            assert await loop.wait_reconciled(STATIC, 1.0)
            loop.set_binding(b(0))
            r = await loop.wait_reconciled(binding_key("2001:db8:1::100"), 1.0)
            assert r and route_key("2001:db8:1::100") in obs.owned
            # transient: waits across retries until the failure clears
            key = route_key("2001:db8:1::101")
            w.fail[key] = errno.ENODEV
            loop.set_binding(b(1))
            asyncio.get_running_loop().call_later(0.05, w.fail.clear)
            r = await loop.wait_reconciled(binding_key("2001:db8:1::101"), 2.0)
            assert r.ok and key in obs.owned
            # conflict: answered at once, not at the timeout
            k2 = route_key("2001:db8:1::102")
            obs.foreign[k2] = Route("2001:db8:1::102/128", table=TABLE, protocol=4)
            loop.set_binding(b(2))
            t0 = asyncio.get_running_loop().time()
            r = await loop.wait_reconciled(binding_key("2001:db8:1::102"), 2.0)
            assert not r and r.reason == "Conflict"
            assert asyncio.get_running_loop().time() - t0 < 0.5
            # timeout
            w.fail[route_key("2001:db8:1::103")] = errno.ENODEV
            loop.set_binding(b(3))
            r = await loop.wait_reconciled(binding_key("2001:db8:1::103"), 0.05)
            assert not r and r.reason == "Timeout"
        finally:
            await loop.stop()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_render_problem_is_terminal_condition() -> None:
    cfg = CFG.model_copy(update={"ha": CFG.ha.model_copy(update={"address": None})})
    obs = FakeObserver()
    loop = ReconcileLoop(cfg, Capabilities(), HostFacts(), obs, FakeWriter(obs))
    drain(loop)
    cond = loop.condition()
    assert (cond.status, cond.reason) == ("False", "RenderProblem")
    assert "home agent address" in cond.message


@pytest.mark.parametrize("n", [1, 50])
def test_batches_are_bounded(n: int) -> None:
    loop, obs, _w = make(max_batch=n)
    for i in range(60):
        loop.set_binding(b(i))
    first = loop.step(0)
    assert first == min(n, 61)
    drain(loop)
    assert sum(1 for k in obs.owned if k[0] == "route" and k[1] == TABLE) == 60


def test_ip6tnl_tunnel_shared_by_two_bindings_outlives_the_first() -> None:
    """Two bindings with one care-of address render the same ip6tnl device (the kernel
    allows one device per endpoint pair): removing or moving one keeps it for the other."""
    from dataclasses import replace

    from mip6ctl.state.objects import Tunnel
    from mip6ctl.state.render import tunnel_name

    obs = FakeObserver()
    w = FakeWriter(obs)
    caps = replace(Capabilities(), tunnel="ip6tnl")
    loop = ReconcileLoop(CFG, caps, HostFacts(), obs, w)
    coa = "2001:db8:a::7"
    name = tunnel_name(IPv6Address(coa))
    tkey = ("tunnel", name)
    for i in range(3):
        loop.set_binding(b(i, coa))
    drain(loop)
    assert isinstance(obs.owned[tkey], Tunnel) and obs.owned[tkey].remote == coa

    loop.remove_binding("2001:db8:1::100")
    drain(loop)
    assert tkey in obs.owned and route_key("2001:db8:1::100") not in obs.owned
    loop.set_binding(b(1, "2001:db8:b::7"))  # moves away from the shared care-of address
    drain(loop)
    assert tkey in obs.owned, "still used by the third binding"
    assert ("tunnel", tunnel_name(IPv6Address("2001:db8:b::7"))) in obs.owned
    loop.remove_binding("2001:db8:1::102")
    drain(loop)
    assert tkey not in obs.owned, "the last user is gone"


def test_many_keys_failing_and_recovering_log_one_line_each_way(caplog) -> None:
    """After an ENOMEM burst thousands of keys recover together: one INFO line, not one each."""
    import logging

    clock = Clock()
    loop, _obs, w = make(clock=clock)
    drain(loop)
    n = 40
    for i in range(n):
        w.fail[route_key(f"2001:db8:1::{0x100 + i:x}")] = errno.ENOMEM
        loop.set_binding(b(i))
    caplog.set_level(logging.DEBUG, logger="mip6ctl")
    assert loop.step(clock.now) == n
    w.fail.clear()
    clock.now = loop.queue.next_due() or clock.now
    caplog.clear()
    drain(loop, clock.now)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert info == [f"{n} key(s) in sync again"], info
    assert loop.condition().status == "True"
