"""The Prometheus endpoint: a real HTTP scrape of a fake status provider."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from ipaddress import IPv6Address
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mip6ctl.config.model import Mip6Config, parse_listen
from mip6ctl.daemon.metrics import MetricsServer, loop_provider
from mip6ctl.daemon.status import GenerationInfo, build_status, set_condition

NOW = 1000.0


def _binding(n: int) -> Any:
    return SimpleNamespace(
        home_address=IPv6Address(f"2001:db8:1::{n:x}"),
        care_of_address=IPv6Address(f"2001:db8:99::{n:x}"),
        local_address=IPv6Address("2001:db8:1::1"),
        lifetime=420,
        expires_at=NOW + 400,
        sequence=n,
        flags=0xC000,
        home_registration=True,
        registered_at=NOW - 20,
        mobile_network_prefixes=[],
    )


def _status(role: str = "ha", bul: list[Any] | None = None) -> dict[str, Any]:
    conds = set_condition([], "ConfigValid", False, "InvalidConfig", "x", now_wall=1_700_000_000)
    conds = set_condition(conds, "Ready", True, "Running", "", now_wall=1_700_000_100)
    return build_status(
        role,
        SimpleNamespace(node=SimpleNamespace(name="ha1"), mn=None),
        GenerationInfo("sha256:abc", number=3, observed=2),
        conds,
        {
            "bus_received": 10,
            "bus_accepted": 7,
            "bus_rejected_by_status": {"129": 2, "130": 1},
            "bas_sent": 10,
            "bes_sent": 4,
            "drift_repairs": 5,
            "reconcile_failures": 1,
            "parameter_problems_sent": 6,
        },
        [_binding(1), _binding(2)],
        bul or [],
        NOW,
        started_at=NOW - 60,
        last_reconcile=NOW - 1,
        transport="userspace",
        tunnel_backend="seg6",
        now_wall=1_700_000_200,
        reconcile={"queue": {"ready": 1, "in_flight": 0, "waiting_retry": 2}, "failing_keys": 2},
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _scrape(server: MetricsServer) -> Samples:
    host, port = server.address
    host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return _parse(r.read().decode())


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, list[int]]]:
    calls: list[int] = []

    def provider() -> Mapping[str, Any]:
        calls.append(1)
        return _status()

    srv = MetricsServer("127.0.0.1", 0, provider)
    assert calls == []  # registering does not query the daemon
    srv.start()
    try:
        yield srv, calls
    finally:
        srv.stop()


def test_scrape_has_the_status_counters(server: tuple[MetricsServer, list[int]]) -> None:
    srv, calls = server
    assert srv.address[0] == "127.0.0.1" and srv.address[1] > 0
    s = _scrape(srv)
    assert calls == [1]  # one status query per scrape
    assert _get(s, "mip6ctl_status_up") == 1
    assert _get(s, "mip6ctl_binding_updates_received_total") == 10
    assert _get(s, "mip6ctl_binding_updates_accepted_total") == 7
    assert _get(s, "mip6ctl_binding_updates_rejected_total", status="129") == 2
    assert _get(s, "mip6ctl_binding_updates_rejected_total", status="130") == 1
    assert _get(s, "mip6ctl_binding_acknowledgements_sent_total") == 10
    assert _get(s, "mip6ctl_binding_errors_sent_total") == 4
    assert _get(s, "mip6ctl_drift_repairs_total") == 5
    assert _get(s, "mip6ctl_reconcile_failures_total") == 1
    assert _get(s, "mip6ctl_parameter_problems_sent_total") == 6  # an extra counter
    assert _get(s, "mip6ctl_binding_cache_entries") == 2
    assert _get(s, "mip6ctl_config_generation") == 3
    assert _get(s, "mip6ctl_config_observed_generation") == 2
    assert _get(s, "mip6ctl_reconcile_queue", state="waiting_retry") == 2
    assert _get(s, "mip6ctl_reconcile_failing_keys") == 2
    assert _get(s, "mip6ctl_start_time_seconds") == 1_700_000_200 - 60
    assert _get(s, "mip6ctl_last_reconcile_timestamp_seconds") == 1_700_000_200 - 1
    assert any(name.startswith("process_") for name, _ in s)
    _scrape(srv)
    assert calls == [1, 1]


def test_conditions_one_series_per_status(server: tuple[MetricsServer, list[int]]) -> None:
    s = _scrape(server[0])
    assert _get(s, "mip6ctl_condition", type="ConfigValid", status="false") == 1
    assert _get(s, "mip6ctl_condition", type="ConfigValid", status="true") == 0
    assert _get(s, "mip6ctl_condition", type="Ready", status="true") == 1
    # never evaluated: reported Unknown by the status document
    assert _get(s, "mip6ctl_condition", type="KernelInSync", status="unknown") == 1
    ts = "mip6ctl_condition_last_transition_timestamp_seconds"
    assert _get(s, ts, type="ConfigValid") == 1_700_000_000


def test_info_labels(server: tuple[MetricsServer, list[int]]) -> None:
    s = _scrape(server[0])
    info = [labels for name, labels in s if name == "mip6ctl_info"]
    assert len(info) == 1
    labels = dict(info[0])
    assert labels["role"] == "ha" and labels["node"] == "ha1"
    assert labels["transport"] == "userspace" and labels["tunnel_backend"] == "seg6"
    assert labels["version"]


def test_mobile_node_binding_update_list_by_state() -> None:
    bul = [
        {"peer": "2001:db8:1::1", "home_address": "2001:db8:1::10", "state": "registered"},
        {"peer": "2001:db8:2::5", "home_address": "2001:db8:1::10", "state": "registering"},
        {"peer": "2001:db8:2::6", "home_address": "2001:db8:1::10", "state": "registering"},
    ]
    srv = MetricsServer("127.0.0.1", 0, lambda: _status("mn", bul), process_metrics=False)
    s = _parse(srv.render().decode())
    assert _get(s, "mip6ctl_binding_update_list_entries", state="registering") == 2
    assert _get(s, "mip6ctl_binding_update_list_entries", state="registered") == 1
    assert not any(name.startswith("process_") for name, _ in s)


def test_provider_failure_reports_down() -> None:
    def broken() -> Mapping[str, Any]:
        raise TimeoutError("daemon busy")

    srv = MetricsServer("127.0.0.1", 0, broken, process_metrics=False)
    s = _parse(srv.render().decode())
    assert s == {("mip6ctl_status_up", frozenset()): 0}


def test_loop_provider_asks_the_event_loop_and_times_out() -> None:
    async def main() -> tuple[Samples, Samples]:
        loop = asyncio.get_running_loop()
        threads: list[Any] = []

        async def status() -> Mapping[str, Any]:
            threads.append(threading.current_thread())
            return _status()

        async def stuck() -> Mapping[str, Any]:
            await asyncio.sleep(5)
            return {}

        good = MetricsServer("127.0.0.1", 0, loop_provider(loop, status), process_metrics=False)
        slow = MetricsServer(
            "127.0.0.1", 0, loop_provider(loop, stuck, timeout=0.2), process_metrics=False
        )
        for srv in (good, slow):
            srv.start()
        try:
            ok = await asyncio.to_thread(_scrape, good)
            down = await asyncio.to_thread(_scrape, slow)
        finally:
            for srv in (good, slow):
                srv.stop()
        assert threads == [threading.main_thread()]  # status ran in the loop's thread
        return ok, down

    ok, down = asyncio.run(main())
    assert _get(ok, "mip6ctl_binding_cache_entries") == 2
    assert _get(down, "mip6ctl_status_up") == 0


def test_loop_provider_refuses_to_deadlock() -> None:
    async def main() -> None:
        async def status() -> Mapping[str, Any]:
            return {}

        provide = loop_provider(asyncio.get_running_loop(), status)
        with pytest.raises(RuntimeError, match="deadlock"):
            provide()

    asyncio.run(main())


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback address (::1) in this environment")
    srv = MetricsServer("::1", 0, _status, process_metrics=False)
    srv.start()
    try:
        assert srv.address[0] == "::1"
        assert _get(_scrape(srv), "mip6ctl_status_up") == 1
    finally:
        srv.stop()
    srv.stop()  # idempotent


def test_config_defaults_off_and_loopback() -> None:
    cfg = Mip6Config.model_validate({"node": {"role": "cn"}})
    assert cfg.daemon.metrics.enabled is False
    assert parse_listen(cfg.daemon.metrics.listen) == ("127.0.0.1", 9276)
    srv = MetricsServer.from_listen("[::1]:9300", _status)
    assert (srv.host, srv.port) == ("::1", 9300)


@pytest.mark.parametrize(
    "listen", ["localhost:9276", "9276", ":9276", "::1:9276", "[::1]:0", "127.0.0.1:65536"]
)
def test_listen_must_be_an_address_literal_and_port(listen: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"daemon\.metrics\.listen"):
        Mip6Config.model_validate(
            {"node": {"role": "cn"}, "daemon": {"metrics": {"enabled": True, "listen": listen}}}
        )
