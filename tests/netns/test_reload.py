"""Hot reload with a running home agent (issue 9): watcher, SIGHUP, SIGTERM, metrics.

One testbed and one ``mip6ctl daemon`` (HA namespace) serve the module.  The
configuration is a copy of ``examples/testbed/ha`` with DAD off, a metrics
endpoint on 127.0.0.1 and the mobile nodes 2001:db8:1::110–11f in one file
each (``50-mn-110.toml`` …), so that a test can break, rewrite or delete the
file of one node.  Every edit is an atomic rename (``x.toml.tmp`` then
``os.rename``), as Ansible writes files; the daemon's watcher (debounce
150 ms, at most 1 s) picks it up.  Each test uses its own home addresses and
its own files, so the order of the tests does not matter; the SIGTERM test
restarts the shared daemon.

Scapy plays the mobile nodes from a tester namespace on br-f1 (care-of
address 2001:db8:a::100).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, TypeVar

import pytest
from scapy.layers.inet6 import MIP6MH_BA, IPv6

from mip6ctl.config.loader import load_directory
from mip6ctl.testbed import Testbed
from tests import nsutil
from tests.netns.ha_helpers import (
    ROUTE_TABLE,
    HaDaemon,
    KernelEvents,
    PingStream,
    Station,
    arrived_sequences,
    atomic_write,
    binding_update,
    conditions,
    ip,
    kernel_snapshot,
    mip6_objects,
)

pytestmark = nsutil.NEEDS_RADVD

COA1 = IPv6Address("2001:db8:a::100")
T = TypeVar("T")


def hoa(n: int) -> IPv6Address:
    """Home address 2001:db8:1::<n in hex>."""
    return IPv6Address(int(IPv6Address("2001:db8:1::")) + n)


def mn_file(n: int) -> str:
    return f"50-mn-{n:x}.toml"


def mn_text(n: int, extra: str = "") -> str:
    """One mobile node per file; ``home_address`` is on line 3."""
    return f'# mobile node {hoa(n)}\n[[ha.mobile_nodes]]\nhome_address = "{hoa(n)}"\n{extra}'


# --------------------------------------------------------------------------- fixtures


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    f1: Station
    metrics_port: int

    @property
    def config(self) -> Path:
        return self.ha.config


def free_port(tb: Testbed, node: str) -> int:
    with tb.inside(node):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build() as tb:
        port = free_port(tb, "ha")
        ha = HaDaemon(
            tb,
            tmp_path_factory.mktemp("reload"),
            replace={
                'default_action = "deny"': 'default_action = "deny"\n'
                "duplicate_address_detection = false"
            },
            extra=f'\n[daemon.metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n',
            files={mn_file(n): mn_text(n) for n in range(0x110, 0x120)},
        )
        f1: Station | None = None
        try:
            ha.start()
            f1 = Station(tb, "f1", "f1t", [str(COA1)], "2001:db8:a::1")
            yield Bed(tb, ha, f1, port)
            assert ha.proc is not None and ha.proc.poll() is None, "the daemon died:\n" + ha.tail()
        finally:
            ha.stop()
            if f1 is not None:
                f1.close()


# --------------------------------------------------------------------------- helpers


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, bed: Bed) -> T:
    """Poll ``probe`` (every 10 ms) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s\n{bed.ha.tail(15)}")
        time.sleep(0.01)


def status(bed: Bed) -> dict[str, Any]:
    return bed.ha.rpc("status")


def config_valid(doc: dict[str, Any]) -> dict[str, Any]:
    return conditions(doc)["ConfigValid"]


def digest(bed: Bed) -> str:
    """The generation hash of what the configuration directory holds now."""
    return load_directory(bed.config).digest


def wait_generation(bed: Bed, after: int, timeout: float = 5.0) -> dict[str, Any]:
    """The first status document with a generation number above ``after`` and ConfigValid."""

    def probe() -> dict[str, Any] | None:
        doc = status(bed)
        ok = doc["generation_number"] > after and config_valid(doc)["status"] == "True"
        return doc if ok else None

    return wait_for(f"a generation after {after}", probe, timeout, bed)


def wait_config_valid(bed: Bed, key: str, value: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first status document whose ConfigValid condition has ``key`` == ``value``."""

    def probe() -> dict[str, Any] | None:
        doc = status(bed)
        return doc if config_valid(doc)[key] == value else None

    return wait_for(f"ConfigValid {key} {value}", probe, timeout, bed)


def wait_refused(bed: Bed) -> dict[str, Any]:
    return wait_config_valid(bed, "status", "False")


def register(bed: Bed, home: IPv6Address, seq: int = 1, lifetime: int = 100) -> IPv6:
    """A home registration that must succeed (BA 0); returns the BA."""
    p = bed.f1.ba(binding_update(home, COA1, seq, lifetime))
    assert p is not None, f"no BA for {home}:\n{bed.ha.tail()}"
    assert p[MIP6MH_BA].status == 0, (home, p[MIP6MH_BA].status)
    return p


def binding_view(bed: Bed) -> dict[str, tuple[str, int]]:
    """Home address -> (care-of address, sequence): the bindings minus their running clocks."""
    return {h: (r["care_of_address"], r["sequence"]) for h, r in bed.ha.bindings().items()}


def routes(bed: Bed) -> dict[str, str]:
    out = ip(bed.tb, "ha", "-6", "route", "show", "table", str(ROUTE_TABLE))
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


def proxies(bed: Bed) -> dict[str, str]:
    out = ip(bed.tb, "ha", "-6", "neigh", "show", "proxy")
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


def kernel_state(bed: Bed) -> tuple[list[str], ...]:
    """Binding routes, proxies, rules, the reverse-tunnel set and the decap table."""
    decap = ip(bed.tb, "ha", "-6", "route", "show", "table", str(ROUTE_TABLE + 1)).splitlines()
    return (*kernel_snapshot(bed.tb), sorted(decap))


def log_mark(bed: Bed) -> int:
    return bed.ha.log.stat().st_size


def log_since(bed: Bed, mark: int) -> list[str]:
    with open(bed.ha.log, "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace").splitlines()


WATCHER_RELOAD = "changed, reloading"  # daemon/watch.py, once per reload callback
APPLIED = re.compile(r"configuration generation (\d+) applied")
REFUSED = "reload refused"


# --------------------------------------------------------------------------- 1. atomic rename


@pytest.mark.seg6(auto=True)
def test_atomic_rename_is_applied_within_one_second(bed: Bed) -> None:
    # changed keys: max_binding_lifetime 3600 -> 1000 s (and the refresh advice below it)
    main = bed.config / "mip6.toml"
    text = main.read_text()
    edits = {"max_binding_lifetime = 3600": "max_binding_lifetime = 1000"}
    edits["binding_refresh_advice = 1800"] = "binding_refresh_advice = 500"
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    before = status(bed)["generation_number"]
    t0 = time.monotonic()
    atomic_write(main, text)
    doc = wait_generation(bed, before, timeout=2.0)
    key_s = time.monotonic() - t0
    assert doc["generation"] == digest(bed)
    assert doc["generation_number"] == before + 1

    # a new mobile node in a new file: refused before, accepted after
    new = hoa(0x120)
    p = bed.f1.ba(binding_update(new, COA1, 1))
    assert p is not None and p[MIP6MH_BA].status == 129, "an unlisted node got through"
    t0 = time.monotonic()
    atomic_write(bed.config / "60-mn-120.toml", mn_text(0x120))
    doc = wait_generation(bed, before + 1, timeout=2.0)
    node_s = time.monotonic() - t0
    print(
        f"\natomic rename -> applied: max_binding_lifetime {key_s:.3f} s, new node {node_s:.3f} s"
    )
    assert key_s < 1.0 and node_s < 1.0

    cli = bed.ha.status_cli()  # what `mip6ctl status --json` shows
    assert cli["generation"] == digest(bed) and cli["generation_number"] == before + 2
    assert config_valid(cli)["status"] == "True" and config_valid(cli)["reason"] == "Loaded"
    # the new generation is the one serving: the node registers, with the new maximum
    p = register(bed, new, seq=2, lifetime=2000)  # asks for 8000 s
    assert 0 < p[MIP6MH_BA].mhtime * 4 <= 1000


# --------------------------------------------------------------------------- 2. broken edits


@pytest.mark.seg6(auto=True)
def test_broken_edit_is_refused_and_the_old_generation_keeps_serving(bed: Bed) -> None:
    x = hoa(0x111)
    register(bed, x)
    doc = status(bed)
    gen, number = doc["generation"], doc["generation_number"]
    bindings = binding_view(bed)
    kernel = kernel_state(bed)

    # (a) a syntax error in one file: an unterminated string on line 3
    syntax = bed.config / mn_file(0x114)
    good_syntax = syntax.read_text()
    watch = KernelEvents(bed.tb)
    try:
        atomic_write(syntax, good_syntax.replace('114"', "114"))
        doc = wait_refused(bed)
        time.sleep(0.2)  # anything the refused edit wrote would show by now
        events = mip6_objects(watch.read())
    finally:
        watch.close()
    cond = config_valid(doc)
    assert cond["reason"] == "InvalidConfig", cond
    assert f"{mn_file(0x114)}:3" in cond["message"], cond
    assert (doc["generation"], doc["generation_number"]) == (gen, number)
    assert binding_view(bed) == bindings
    assert not watch.overflow and events == [], events
    assert kernel_state(bed) == kernel
    # the old generation keeps serving: the node whose file is broken still registers
    register(bed, hoa(0x114))

    # the file back as it was: the running generation again, nothing to apply
    atomic_write(syntax, good_syntax)
    doc = wait_config_valid(bed, "status", "True")
    assert config_valid(doc)["reason"] == "Unchanged"
    assert doc["generation_number"] == number

    # (b) a schema error in another file: not an IPv6 address, line 3
    schema = bed.config / mn_file(0x115)
    good_schema = schema.read_text()
    atomic_write(schema, good_schema.replace(f'"{hoa(0x115)}"', '"not-an-address"'))
    doc = wait_refused(bed)
    cond = config_valid(doc)
    assert cond["reason"] == "InvalidConfig", cond
    assert f"{mn_file(0x115)}:3" in cond["message"], cond
    assert (doc["generation"], doc["generation_number"]) == (gen, number)
    assert register(bed, x, seq=2)[MIP6MH_BA].status == 0  # a refresh, old generation

    # (c) the next good edit applies
    atomic_write(schema, mn_text(0x115, 'description = "fixed"\n'))
    doc = wait_generation(bed, number)
    assert doc["generation_number"] == number + 1 and doc["generation"] == digest(bed)
    assert config_valid(doc)["reason"] == "Loaded"
    assert {str(x), str(hoa(0x114))} <= set(bed.ha.bindings())


def raw_request(bed: Bed, line: bytes) -> dict[str, Any]:
    """One raw line to the control socket, its one-line answer parsed."""
    import json

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5.0)
        s.connect(str(bed.ha.socket))
        s.sendall(line + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            assert chunk, "the daemon closed the connection without an answer"
            buf += chunk
    return json.loads(buf)


@pytest.mark.seg6(auto=True)
def test_hostile_files_and_requests_are_refused_with_their_documented_errors(bed: Bed) -> None:
    """Overlapping home prefixes and a deeply nested value are refused reloads (no
    traceback, the generation kept); deep JSON and a wrong type on the control socket
    get their documented error codes; the daemon keeps answering."""
    x = hoa(0x11A)
    register(bed, x)
    number = status(bed)["generation_number"]
    kernel = kernel_state(bed)
    main = bed.config / "mip6.toml"
    good_main = main.read_text()
    mark = log_mark(bed)
    try:
        # (a) overlapping home prefixes (2001:db8:1::/48 contains 2001:db8:1::/64)
        old = 'home_prefixes = ["2001:db8:1::/64"]'
        assert old in good_main
        atomic_write(main, good_main.replace(old, old.replace('"]', '", "2001:db8:1::/48"]')))
        cond = config_valid(wait_refused(bed))
        assert cond["reason"] == "InvalidConfig", cond
        assert "2001:db8:1::/48" in cond["message"] and "2001:db8:1::/64" in cond["message"], cond
        atomic_write(main, good_main)
        wait_config_valid(bed, "status", "True")
        # (b) a value nested 100,000 deep in a file of its own
        deep = bed.config / "70-deep.toml"
        atomic_write(deep, "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
        cond = config_valid(wait_refused(bed))
        assert "70-deep.toml:1" in cond["message"] and "nesting too deep" in cond["message"], cond
        deep.unlink()
        wait_config_valid(bed, "status", "True")
    finally:
        atomic_write(main, good_main)
        (bed.config / "70-deep.toml").unlink(missing_ok=True)
    # (c) the control socket: deep JSON, a wrong type, a line that is not JSON at all
    deep = b"[" * 20_000 + b"]" * 20_000  # past the parser's recursion, under MAX_REQUEST
    deep_json = b'{"id": 1, "method": "status", "params": ' + deep + b"}"
    assert raw_request(bed, deep_json)["error"]["code"] == "ParseError"
    huge = raw_request(bed, b'{"id": 1, "params": "' + b"x" * 100_000 + b'"}')
    assert huge["error"]["code"] == "RequestTooLarge"
    wrong = raw_request(bed, b'{"id": 2, "method": "status", "params": "all"}')
    assert wrong["error"]["code"] in ("InvalidRequest", "InvalidParams"), wrong
    assert raw_request(bed, b"\xff\xfe{")["error"]["code"] == "ParseError"
    doc = status(bed)
    assert doc["generation_number"] == number
    assert register(bed, x, seq=2)[MIP6MH_BA].status == 0
    assert kernel_state(bed) == kernel
    assert not [line for line in log_since(bed, mark) if "Traceback" in line]


# --------------------------------------------------------------------------- 3. delete a file


@pytest.mark.seg6(auto=True)
def test_deleting_a_node_file_removes_exactly_its_binding(bed: Bed) -> None:
    x, y = hoa(0x112), hoa(0x113)
    register(bed, x)
    register(bed, y)
    before = binding_view(bed)
    route_y, proxy_y = routes(bed)[str(y)], proxies(bed)[str(y)]
    assert str(x) in routes(bed) and str(x) in proxies(bed)
    number = status(bed)["generation_number"]

    watch = KernelEvents(bed.tb)
    try:
        os.unlink(bed.config / mn_file(0x112))
        wait_generation(bed, number)
        wait_for(
            f"{x}'s binding, route and proxy entry gone",
            lambda: (
                str(x) not in bed.ha.bindings()
                and str(x) not in routes(bed)
                and str(x) not in proxies(bed)
            ),
            5.0,
            bed,
        )
        time.sleep(0.3)  # a stray write for y would show by now
        events = mip6_objects(watch.read())
    finally:
        watch.close()

    expected = dict(before)
    del expected[str(x)]
    assert binding_view(bed) == expected
    assert routes(bed)[str(y)] == route_y and proxies(bed)[str(y)] == proxy_y
    assert not watch.overflow
    assert events, "no netlink notification for the removed binding"
    assert {e[1] for e in events} == {str(x)}, f"writes beyond {x}: {events}"
    assert all(e[0].startswith("del") for e in events), events


# --------------------------------------------------------------------------- 4. rapid edits


N_EDITS = 1000


def test_a_thousand_rapid_edits_coalesce(bed: Bed) -> None:
    path = bed.config / mn_file(0x117)
    contents = [mn_text(0x117, f'description = "edit {k}"\n') for k in "ab"]
    number = status(bed)["generation_number"]
    mark = log_mark(bed)
    t0 = time.monotonic()
    for i in range(N_EDITS):
        atomic_write(path, contents[i % 2])
    burst_s = time.monotonic() - t0
    final = digest(bed)
    assert path.read_text() == contents[(N_EDITS - 1) % 2]

    def settled() -> dict[str, Any] | None:
        doc = status(bed)
        return doc if doc["generation"] == final else None

    wait_for("the final content applied", settled, 5.0, bed)
    time.sleep(1.2)  # > max_delay: a pending re-check would have run
    doc = status(bed)
    lines = log_since(bed, mark)
    reloads = sum(WATCHER_RELOAD in line for line in lines)
    applied = [int(m.group(1)) for line in lines if (m := APPLIED.search(line))]
    errors = [line for line in lines if '"level": "error"' in line or REFUSED in line]
    print(
        f"\n{N_EDITS} atomic renames in {burst_s:.2f} s: {reloads} watcher reload(s), "
        f"{len(applied)} generation(s) applied ({number} -> {doc['generation_number']})"
    )
    assert errors == [], errors
    assert doc["generation"] == final
    assert config_valid(doc)["status"] == "True"
    assert 1 <= reloads <= 20, reloads
    assert 1 <= doc["generation_number"] - number == len(applied) <= reloads


# --------------------------------------------------------------------------- 5. SIGHUP


@pytest.mark.seg6(auto=True)
def test_sighup(bed: Bed) -> None:
    assert bed.ha.proc is not None
    pid = bed.ha.proc.pid

    # (a) an edit, then SIGHUP at once: applied (before the watcher's debounce ends)
    number = status(bed)["generation_number"]
    mark = log_mark(bed)
    atomic_write(bed.config / "60-mn-121.toml", mn_text(0x121))
    t0 = time.monotonic()
    os.kill(pid, signal.SIGHUP)
    doc = wait_generation(bed, number, timeout=2.0)
    hup_s = time.monotonic() - t0
    assert doc["generation"] == digest(bed)
    time.sleep(1.2)  # the watcher sees the same edit: nothing more to apply
    assert status(bed)["generation_number"] == number + 1
    # the SIGHUP applied it, not the watcher (whose debounce alone is 150 ms)
    lines = log_since(bed, mark)
    first = [i for i, line in enumerate(lines) if APPLIED.search(line) or WATCHER_RELOAD in line]
    assert first and APPLIED.search(lines[first[0]]), lines
    register(bed, hoa(0x121))

    # (b) SIGHUP with nothing changed: "Unchanged", no kernel write.  First an
    # edit the watcher applies (reason Loaded); only a reload can turn that into
    # Unchanged, and with no file touched only the SIGHUP can cause one.
    atomic_write(bed.config / mn_file(0x116), mn_text(0x116, 'description = "hup"\n'))
    doc = wait_generation(bed, number + 1)
    time.sleep(1.2)  # the watcher is done with that burst
    doc = status(bed)
    assert config_valid(doc)["reason"] == "Loaded", config_valid(doc)
    number, kernel = doc["generation_number"], kernel_state(bed)
    watch = KernelEvents(bed.tb)
    try:
        os.kill(pid, signal.SIGHUP)
        doc = wait_config_valid(bed, "reason", "Unchanged", timeout=3.0)
        time.sleep(0.3)
        events = mip6_objects(watch.read())
    finally:
        watch.close()
    print(f"\nedit + SIGHUP -> applied in {hup_s:.3f} s")
    assert config_valid(doc)["status"] == "True"
    assert doc["generation_number"] == number
    assert not watch.overflow and events == [], events
    assert kernel_state(bed) == kernel


# --------------------------------------------------------------------------- 6. SIGTERM + restart


@pytest.mark.seg6(auto=True)
@pytest.mark.skipif(
    nsutil.EMULATED,
    reason="a figure (no loss across a restart at 100 pings/s)"
    " is not meaningful under emulation (qemu without KVM)",
)
def test_sigterm_and_restart_keep_traffic_flowing(bed: Bed) -> None:
    home = hoa(0x110)
    register(bed, home, lifetime=250)
    kernel = kernel_state(bed)
    stream = PingStream(bed.tb, "cn", home)
    watch = KernelEvents(bed.tb)
    try:
        bed.f1.drain()
        stream.start()
        time.sleep(0.3)  # traffic flows before the stop
        stopped_at = time.monotonic()
        bed.ha.stop()  # SIGTERM (and wait): kernel state stays
        down_s = time.monotonic() - stopped_at
        bed.ha.start()
        ready_at = time.monotonic()
        time.sleep(0.5)  # and after the restart
        events = mip6_objects(watch.read())
    finally:
        stream.stop()
        watch.close()
    arrived = arrived_sequences(bed.f1, stream.echo_id)
    sent = stream.sent
    lost = [s for s in range(len(sent)) if s not in arrived]
    window = [s for s in range(len(sent)) if stopped_at <= sent[s] <= ready_at]
    print(
        f"\nSIGTERM + restart: stop {down_s:.2f} s, stop -> ready {ready_at - stopped_at:.2f} s; "
        f"pings sent {len(sent)}, {len(window)} meanwhile, lost {len(lost)}"
    )
    assert len(window) > 0 and lost == [], f"lost {len(lost)} of {len(sent)}: {lost[:20]}"
    doc = bed.ha.status_cli()
    row = {r["home_address"]: r for r in doc["binding_cache"]["rows"]}.get(str(home))
    assert row is not None and row["care_of_address"] == str(COA1), doc["binding_cache"]
    assert conditions(doc)["KernelInSync"]["status"] == "True", doc["conditions"]
    assert kernel_state(bed) == kernel
    assert not watch.overflow and events == [], f"kernel writes across the restart: {events}"


# --------------------------------------------------------------------------- 7. metrics


def scrape(bed: Bed) -> dict[str, float]:
    """``GET /metrics`` from inside the HA namespace: sample name (with labels) -> value."""
    url = f"http://127.0.0.1:{bed.metrics_port}/metrics"
    with bed.tb.inside("ha"), urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.mark.seg6(auto=True)
def test_metrics_endpoint(bed: Bed) -> None:
    register(bed, hoa(0x118))
    m = scrape(bed)
    assert m["mip6ctl_status_up"] == 1
    assert m["mip6ctl_binding_cache_entries"] == len(bed.ha.bindings()) >= 1
    assert m["mip6ctl_config_generation"] == status(bed)["generation_number"]
    received = m["mip6ctl_binding_updates_received_total"]
    register(bed, hoa(0x118), seq=2)
    after = scrape(bed)
    assert after["mip6ctl_binding_updates_received_total"] == received + 1
    assert (
        after["mip6ctl_binding_updates_accepted_total"]
        >= m["mip6ctl_binding_updates_accepted_total"] + 1
    )


# --------------------------------------------------------------------------- refused by the host


@pytest.mark.seg6(auto=True)
def test_a_generation_the_host_cannot_hold_is_refused_and_the_kernel_left_as_it_was(
    bed: Bed,
) -> None:
    """Issue 21: a configuration naming an interface the host lacks is refused before
    anything is written; one whose static state the kernel refuses (a foreign route
    holds the new decapsulation route's key) is rolled back to the running generation.
    Either way the kernel is exactly as before and refreshes keep getting BA 0."""
    x = hoa(0x11C)
    register(bed, x)
    main = bed.config / "mip6.toml"
    good = main.read_text()
    kernel, bindings = kernel_state(bed), binding_view(bed)
    rules = ip(bed.tb, "ha", "-6", "rule", "show")

    atomic_write(main, good.replace('interfaces = ["home0"]', 'interfaces = ["nosuch0"]'))
    try:
        doc = wait_refused(bed)
        cond = config_valid(doc)
        assert cond["reason"] == "MissingInterface", cond
        assert "nosuch0" in cond["message"], cond
        time.sleep(0.3)
        assert kernel_state(bed) == kernel
        assert register(bed, x, seq=2)[MIP6MH_BA].status == 0
    finally:
        atomic_write(main, good)
    wait_config_valid(bed, "status", "True")

    # the kernel refuses: a foreign route already holds the new HA address's decap key
    ip(bed.tb, "ha", "-6", "route", "add", "2001:db8:1::2/128", "dev", "home0",
       "table", str(ROUTE_TABLE + 1), "proto", "static")  # fmt: skip
    mark = log_mark(bed)
    try:
        atomic_write(main, good.replace('address = "2001:db8:1::1"', 'address = "2001:db8:1::2"'))
        doc = wait_refused(bed)
        cond = config_valid(doc)
        assert cond["reason"] == "ApplyFailed", cond
        assert "Conflict" in cond["message"], cond
        time.sleep(0.3)
        assert ip(bed.tb, "ha", "-6", "rule", "show") == rules
        decap = ip(bed.tb, "ha", "-6", "route", "show", "table", str(ROUTE_TABLE + 1))
        assert "2001:db8:1::1 " in decap and "2001:db8:1::2 dev home0 proto static" in decap
        assert binding_view(bed) == {**bindings, str(x): (str(COA1), 2)}
        assert register(bed, x, seq=3)[MIP6MH_BA].status == 0
        assert any(REFUSED in line for line in log_since(bed, mark))
    finally:
        atomic_write(main, good)
        ip(bed.tb, "ha", "-6", "route", "del", "2001:db8:1::2/128", "dev", "home0",
           "table", str(ROUTE_TABLE + 1), "proto", "static")  # fmt: skip
    wait_config_valid(bed, "status", "True")
