"""The reconcile loop against this kernel: apply, no-op, drift, conflicts, backoff, removal.

Each test runs the loop in a thread that entered a fresh namespace (the loop
writes sysctls through /proc/sys of its own thread), with veth `home0`
(2001:db8:1::1/64) and `core0` and the testbed home agent's configuration.
`ip` checks the kernel from outside the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.config.model import Mip6Config
from mip6ctl.daemon.reconcile_loop import STATIC, ReconcileLoop, binding_key
from mip6ctl.daemon.workqueue import Backoff
from mip6ctl.kernel.observer import Observer
from mip6ctl.kernel.writer import Writer
from mip6ctl.state.render import Capabilities, HostFacts
from tests import nsutil

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "testbed" / "ha"
CFG = load_directory(EXAMPLE).config
T = CFG.kernel.route_table


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def b(hoa: str, coa: str = "2001:db8:5::1") -> B:
    return B(IPv6Address(hoa), IPv6Address(coa))


class CountingWriter:
    """The real writer, counting the operations it is asked to do (and when)."""

    def __init__(self, inner: Writer) -> None:
        self.inner = inner
        self.ops = 0
        self.log: list[tuple[float, list[tuple]]] = []

    def apply(self, ops: Any) -> list:
        ops = list(ops)
        self.ops += len(ops)
        self.log.append((time.monotonic(), [op.obj.key for op in ops]))
        return self.inner.apply(ops)

    def attempts(self, key: tuple) -> list[float]:
        return [t for t, keys in self.log if key in keys]


class Harness:
    def __init__(self, ns: str, loop: ReconcileLoop, writer: CountingWriter) -> None:
        self.ns, self.loop, self.writer = ns, loop, writer

    async def ip(self, *args: str) -> str:
        out = await asyncio.to_thread(nsutil.ip, *args, ns=self.ns)
        return out.stdout

    async def until(self, pred: Callable[[], Awaitable[bool]], timeout: float = 2.0) -> float:
        """Poll `pred` every 10 ms; return the seconds until it held."""
        t0 = time.monotonic()
        while not await pred():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"condition not reached within {timeout} s")
            await asyncio.sleep(0.01)
        return time.monotonic() - t0

    async def idle(self, timeout: float = 2.0) -> None:
        q = self.loop.queue

        async def quiet() -> bool:
            return q.ready() == 0 and not self.loop._inflight

        await self.until(quiet, timeout)

    async def binding_routes(self) -> str:
        return await self.ip("-6", "route", "show", "table", str(T))

    async def proxies(self) -> str:
        return await self.ip("-6", "neigh", "show", "proxy")

    async def rules(self) -> str:
        return await self.ip("-6", "rule", "show")


def home_link(ns: str) -> None:
    nsutil.ip("link", "add", "home0", "type", "veth", "peer", "name", "core0", ns=ns)
    nsutil.ip("link", "set", "home0", "up", ns=ns)
    nsutil.ip("link", "set", "core0", "up", ns=ns)
    nsutil.ip("-6", "addr", "add", "2001:db8:1::1/64", "dev", "home0", "nodad", ns=ns)


def run(
    ns: str,
    body: Callable[[Harness], Awaitable[None]],
    *,
    cfg: Mip6Config = CFG,
    backoff: Backoff | None = None,
    timeout: float = 30.0,
) -> None:
    """Run `body` with a started loop in a thread inside `ns`; re-raise its failure."""
    timeout *= nsutil.SLOWDOWN  # the vm tier runs Python ~20x slower
    box: dict[str, BaseException] = {}

    async def main() -> None:
        obs = Observer(watch_tables=(T, T + 1))
        writer = CountingWriter(Writer())
        loop = ReconcileLoop(
            cfg, Capabilities(), HostFacts(), obs, writer, backoff=backoff, resync_interval=3600
        )
        loop.start()
        try:
            await asyncio.wait_for(body(Harness(ns, loop, writer)), timeout)
        finally:
            await loop.stop()
            writer.inner.close()
            obs.close()

    def thread() -> None:
        try:
            with nsutil.inside(ns):
                asyncio.run(main())
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=thread, name="reconcile-test", daemon=True)
    t.start()
    t.join(timeout + 10)
    assert not t.is_alive(), "test body did not finish"
    if "error" in box:
        raise box["error"]


HOAS = ["2001:db8:1::100", "2001:db8:1::101", "2001:db8:1::102"]


@pytest.mark.seg6
def test_apply_from_scratch_then_reapply_is_a_noop(netns) -> None:
    ns = netns("ha")
    home_link(ns)

    async def body(h: Harness) -> None:
        loop = h.loop
        assert await loop.wait_reconciled(STATIC, 2.0)
        loop.set_binding(b(HOAS[0]))
        assert await loop.wait_reconciled(binding_key(HOAS[0]), 2.0)
        # wait_reconciled returned: the kernel has the route already
        assert "2001:db8:1::100 " in await h.binding_routes()
        for i, hoa in enumerate(HOAS[1:], 2):
            loop.set_binding(b(hoa, f"2001:db8:5::{i}"))
        for hoa in HOAS:
            assert await loop.wait_reconciled(binding_key(hoa), 2.0)
        routes = await h.binding_routes()
        for i, hoa in enumerate(HOAS, 1):
            line = next(x for x in routes.splitlines() if x.startswith(hoa + " "))
            assert f"segs 1 [ 2001:db8:5::{i} ]" in line and "encap.red" in line
            assert "proto 77" in line and "dev home0" in line
        proxies = await h.proxies()
        assert all(f"{hoa} dev home0" in proxies for hoa in HOAS)
        rules = await h.rules()
        assert f"1001:\tfrom all to 2001:db8:1::/64 lookup {T} proto 77" in rules
        assert f"to 2001:db8:1::1 ipproto ipv6 lookup {T + 1}" in rules
        assert "1099:\tfrom all lookup local proto 77" in rules
        assert "0:\tfrom all lookup local" not in rules  # moved behind the decap rule
        decap = await h.ip("-6", "route", "show", "table", str(T + 1))
        assert "End.DT6" in decap
        sysctl = await asyncio.to_thread(
            nsutil.run, "cat", "/proc/sys/net/ipv6/conf/home0/proxy_ndp", ns=h.ns
        )
        assert sysctl.stdout.strip() == "1"
        cond = loop.status()["conditions"][0]
        assert (cond["status"], cond["reason"]) == ("True", "Reconciled")

        # Re-apply: a new generation, a full resync, a refresh: zero kernel writes.
        ops = h.writer.ops
        loop.set_generation(CFG, 2)
        await h.idle()
        assert loop.observed_generation == 2
        assert loop.resync() == 0
        for i, hoa in enumerate(HOAS, 1):
            assert loop.set_binding(b(hoa, f"2001:db8:5::{i}")) is False
        await h.idle()
        assert h.writer.ops == ops
        assert loop.status()["counters"]["failures"] == 0

    run(ns, body)


@pytest.mark.seg6
def test_drift_is_repaired_within_a_second(netns) -> None:
    ns = netns("ha")
    home_link(ns)

    async def body(h: Harness) -> None:
        loop = h.loop
        for hoa in HOAS:
            loop.set_binding(b(hoa))
        for hoa in HOAS:
            assert await loop.wait_reconciled(binding_key(hoa), 2.0)
        assert await loop.wait_reconciled(STATIC, 2.0)
        t0 = time.monotonic()
        await h.ip("-6", "route", "del", "2001:db8:1::101/128", "table", str(T))
        await h.ip("-6", "rule", "del", "pref", "1001", "to", "2001:db8:1::/64", "table", str(T))

        async def restored() -> bool:
            return "2001:db8:1::101 " in await h.binding_routes() and (
                "1001:\tfrom all to 2001:db8:1::/64" in await h.rules()
            )

        await h.until(restored, 1.0)
        assert time.monotonic() - t0 < 1.0
        assert loop.counters["drift_repairs"] >= 2
        # Proxy entries raise no events: a resync repairs them, or the proxy poll (twice
        # a second) when it sees the gap first (the vm guest runs `ip` slowly enough).
        before = loop.counters["drift_repairs"]
        await h.ip("-6", "neigh", "del", "proxy", "2001:db8:1::102", "dev", "home0")
        queued = loop.resync()
        await h.idle()
        assert "2001:db8:1::102 dev home0" in await h.proxies()
        assert queued in (0, 1) and loop.counters["drift_repairs"] == before + 1, queued
        assert loop.condition().status == "True"

    run(ns, body)


@pytest.mark.seg6
def test_resync_off_loop_repairs_drift_and_keeps_the_cache_whole(netns) -> None:
    """The periodic resync dumps in a worker thread: same repairs as the blocking one,
    and the loop never sees a half-filled cache meanwhile."""
    ns = netns("ha")
    home_link(ns)

    async def body(h: Harness) -> None:
        loop = h.loop
        for hoa in HOAS:
            loop.set_binding(b(hoa))
        for hoa in HOAS:
            assert await loop.wait_reconciled(binding_key(hoa), 2.0)
        assert await loop.wait_reconciled(STATIC, 2.0)
        await h.idle()
        owned_before = len(loop.observer.owned)
        assert await loop.resync_off_loop() == 0  # nothing drifted: nothing queued
        assert len(loop.observer.owned) == owned_before
        # proxy entries raise no events: only a dump sees this one go
        await h.ip("-6", "neigh", "del", "proxy", "2001:db8:1::102", "dev", "home0")
        task = asyncio.ensure_future(loop.resync_off_loop())
        sizes = []
        while not task.done():
            sizes.append(len(loop.observer.owned))
            # not sleep(0): on one (emulated) CPU a spinning loop starves the dump thread
            await asyncio.sleep(0.001)
        assert min(sizes, default=owned_before) >= owned_before - 1
        assert await task == 1
        await h.idle()
        assert "2001:db8:1::102 dev home0" in await h.proxies()
        assert loop.condition().status == "True"
        assert loop.counters["resyncs"] >= 2

    run(ns, body)


@pytest.mark.seg6
def test_foreign_route_is_a_conflict_and_foreign_objects_survive(netns) -> None:
    ns = netns("ha")
    home_link(ns)
    blocker = ["2001:db8:1::103/128", "dev", "home0", "table", str(T), "proto", "static"]
    nsutil.ip("-6", "route", "add", *blocker, ns=ns)
    nsutil.ip(
        "-6",
        "route",
        "add",
        "2001:db8:98::/64",
        "dev",
        "home0",
        "table",
        str(T),
        "proto",
        "static",
        ns=ns,
    )
    nsutil.ip("-6", "route", "add", "2001:db8:99::/64", "dev", "core0", "proto", "static", ns=ns)
    nsutil.ip(
        "-6", "rule", "add", "pref", "1050", "to", "2001:db8:97::/64", "lookup", "main", ns=ns
    )

    def foreign_state() -> list[str]:
        return [
            nsutil.ip("-6", "route", "show", "2001:db8:98::/64", "table", str(T), ns=ns).stdout,
            nsutil.ip("-6", "route", "show", "2001:db8:99::/64", ns=ns).stdout,
            nsutil.ip("-6", "rule", "show", "pref", "1050", ns=ns).stdout,
        ]

    before = foreign_state()
    assert all(before)

    async def body(h: Harness) -> None:
        loop = h.loop
        loop.set_binding(b(HOAS[0]))
        loop.set_binding(b("2001:db8:1::103"))
        assert await loop.wait_reconciled(binding_key(HOAS[0]), 2.0)
        r = await loop.wait_reconciled(binding_key("2001:db8:1::103"), 2.0)
        assert not r and r.reason == "Conflict"
        cond = loop.status()["conditions"][0]
        assert (cond["status"], cond["reason"]) == ("False", "Conflict")
        assert "2001:db8:1::103/128" in cond["message"]
        line = next(
            x for x in (await h.binding_routes()).splitlines() if x.startswith("2001:db8:1::103")
        )
        assert "proto static" in line and "encap" not in line  # never overwritten
        # retried with backoff, still never overwritten; a resync changes nothing
        await asyncio.sleep(0.1)
        loop.resync()
        await h.idle()
        assert loop.condition().reason == "Conflict"
        assert await asyncio.to_thread(foreign_state) == before
        # the foreign route goes away: the event requeues the key, ours goes in
        await h.ip("-6", "route", "del", *blocker)
        assert await loop.wait_reconciled(binding_key("2001:db8:1::103"), 2.0)

        async def ours() -> bool:
            return "2001:db8:1::103 " in await h.binding_routes()

        await h.until(ours, 1.0)
        await h.until(lambda: _true(loop.condition().status == "True"), 1.0)
        loop.remove_binding(HOAS[0])
        assert await loop.wait_reconciled(binding_key(HOAS[0]), 2.0)
        assert await asyncio.to_thread(foreign_state) == before

    run(ns, body)
    assert foreign_state() == before  # the loop stopped; foreign state untouched


async def _true(value: bool) -> bool:
    return value


@pytest.mark.seg6
def test_missing_interface_is_retried_with_backoff_until_it_appears(netns, tmp_path) -> None:
    ns = netns("ha")
    home_link(ns)
    for f in EXAMPLE.glob("*.toml"):
        shutil.copy(f, tmp_path / f.name)
    main = tmp_path / "mip6.toml"
    text = main.read_text()
    text = text.replace('interfaces = ["home0"]', 'interfaces = ["home0", "home1"]')
    text = text.replace(
        'home_prefixes = ["2001:db8:1::/64"]',
        'home_prefixes = ["2001:db8:1::/64", "2001:db8:2::/64"]',
    )
    main.write_text(text)
    cfg = load_directory(tmp_path).config
    hoa = "2001:db8:2::100"
    key = ("route", T, f"{hoa}/128", "::/0", 1024)

    async def body(h: Harness) -> None:
        loop = h.loop
        loop.set_binding(b(hoa))
        r = await loop.wait_reconciled(binding_key(hoa), 0.6)
        assert not r and r.reason == "Timeout"
        attempts = h.writer.attempts(key)
        assert len(attempts) >= 3, attempts
        gaps = [y - x for x, y in itertools.pairwise(attempts)]
        assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
        cond = loop.status()["conditions"][0]
        assert (cond["status"], cond["reason"]) == ("False", "TransientError")
        assert "ENODEV" in cond["message"] or "interface" in cond["message"]
        # the interface appears: the link event retries at once, not at the next backoff
        await h.ip("link", "add", "home1", "type", "veth", "peer", "name", "core1")
        await h.ip("link", "set", "home1", "up")
        t0 = time.monotonic()
        assert await loop.wait_reconciled(binding_key(hoa), 2.0)
        assert time.monotonic() - t0 < 1.0
        assert f"{hoa} " in await h.binding_routes()
        assert f"{hoa} dev home1" in await h.proxies()
        await h.until(lambda: _true(loop.condition().status == "True"), 2.0)

    run(ns, body, cfg=cfg, backoff=Backoff(base=0.05, cap=2.0))


@pytest.mark.seg6
def test_removing_a_binding_deletes_exactly_its_objects(netns) -> None:
    ns = netns("ha")
    home_link(ns)

    def kernel() -> set[str]:
        lines = set()
        for args in (
            ("-6", "route", "show", "table", "all"),
            ("-6", "rule", "show"),
            ("-6", "neigh", "show", "proxy"),
        ):
            lines |= set(nsutil.ip(*args, ns=ns).stdout.splitlines())
        return lines

    async def body(h: Harness) -> None:
        loop = h.loop
        for hoa in HOAS:
            loop.set_binding(b(hoa))
        for hoa in HOAS:
            assert await loop.wait_reconciled(binding_key(hoa), 2.0)
        before = await asyncio.to_thread(kernel)
        loop.remove_binding(HOAS[1])
        assert await loop.wait_reconciled(binding_key(HOAS[1]), 2.0)
        after = await asyncio.to_thread(kernel)
        assert after <= before
        gone = before - after
        assert len(gone) == 2, gone
        assert any(g.startswith("2001:db8:1::101 ") and f"table {T}" in g for g in gone)
        assert any(g.startswith("2001:db8:1::101 dev home0") for g in gone)

    run(ns, body)
