"""Optional Prometheus endpoint: the status document, as metrics, at scrape time.

Why a collector over the status document instead of metric objects updated
where things happen: the hot path (a Binding Update every few microseconds at
scale) stays free of metric bookkeeping, and the numbers Prometheus sees are
by construction the ones ``mip6ctl status`` shows (`mip6ctl.daemon.status`
is the one place their meaning is defined).

Threads: prometheus-client's WSGI app is served by a stdlib server in its own
thread (not ``start_http_server``: that one does a reverse DNS lookup when it
binds and cannot be stopped quickly).  The daemon's state belongs to its
event loop, so :func:`loop_provider` turns the daemon's async status method
into a call that runs *in the loop* and waits for it (with a timeout); a
scrape never reads engine state from another thread.

A private :class:`CollectorRegistry` keeps the process-global default registry
(and whatever a library registers there) out of the endpoint.  It is off by
default (``[daemon.metrics] enabled``) and listens on loopback unless told
otherwise: it has no authentication.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import make_wsgi_app

__all__ = ["COUNTER_METRICS", "MetricsServer", "StatusCollector", "loop_provider"]

log = logging.getLogger("mip6ctl.daemon.metrics")

StatusProvider = Callable[[], Mapping[str, Any]]

#: status counter → (metric name without _total, help).  Counters not listed
#: here (ints the daemon adds later) are exported as mip6ctl_<name>_total.
COUNTER_METRICS: dict[str, tuple[str, str]] = {
    "bus_received": ("mip6ctl_binding_updates_received", "Binding Updates received"),
    "bus_accepted": (
        "mip6ctl_binding_updates_accepted",
        "Binding Updates answered with a Binding Acknowledgement status < 128",
    ),
    "bas_sent": ("mip6ctl_binding_acknowledgements_sent", "Binding Acknowledgements sent"),
    "bes_sent": ("mip6ctl_binding_errors_sent", "Binding Error messages sent"),
    "icmp_errors_rate_limited": (
        "mip6ctl_icmp_errors_rate_limited",
        "ICMPv6 errors not sent because of [daemon] icmp_error_rate (RFC 4443 2.4 f)",
    ),
    "drift_repairs": (
        "mip6ctl_drift_repairs",
        "kernel objects the reconcile loop put back after they drifted",
    ),
    "reconcile_failures": ("mip6ctl_reconcile_failures", "failed reconcile attempts"),
}
_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _timestamp(text: Any) -> float | None:
    """RFC 3339 ``…Z`` (the status document's format) → Unix seconds."""
    if not isinstance(text, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


class StatusCollector:
    """Builds every metric from one call of ``provider`` per scrape."""

    def __init__(self, provider: StatusProvider) -> None:
        self.provider = provider
        self._failing = False

    def describe(self) -> list[Metric]:
        # Nothing at registration: describing would call the provider.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mip6ctl_status_up", "1 if the daemon answered the status query of this scrape"
        )
        try:
            doc = self.provider()
        except Exception as e:  # a stuck or stopping daemon: say so, don't fail the scrape
            if not self._failing:
                log.warning("metrics: status not available: %r", e)
            self._failing = True
            up.add_metric([], 0)
            yield up
            return
        self._failing = False
        up.add_metric([], 1)
        yield up
        yield from self._from_status(doc)

    def _from_status(self, doc: Mapping[str, Any]) -> Iterator[Metric]:
        info = InfoMetricFamily("mip6ctl", "daemon version, role and data path")
        info.add_metric(
            [],
            {
                "version": str(doc.get("daemon_version") or ""),
                "role": str(doc.get("role") or ""),
                "node": str(doc.get("node_name") or ""),
                "transport": str(doc.get("transport") or ""),
                "tunnel_backend": str(doc.get("tunnel_backend") or ""),
            },
        )
        yield info

        for key, name, text in (
            ("started_at", "mip6ctl_start_time_seconds", "daemon start, Unix time"),
            (
                "last_reconcile_time",
                "mip6ctl_last_reconcile_timestamp_seconds",
                "last completed reconcile, Unix time",
            ),
        ):
            ts = _timestamp(doc.get(key))
            if ts is not None:
                yield GaugeMetricFamily(name, text, value=ts)

        for key, name, text in (
            (
                "generation_number",
                "mip6ctl_config_generation",
                "configuration generations loaded (+1 per applied change)",
            ),
            (
                "observed_generation",
                "mip6ctl_config_observed_generation",
                "the generation the kernel state and conditions describe",
            ),
        ):
            value = doc.get(key)
            if isinstance(value, int):
                yield GaugeMetricFamily(name, text, value=value)

        yield from self._conditions(doc.get("conditions") or [])
        yield from self._counters(doc.get("counters") or {})
        yield from self._bindings(doc)
        yield from self._reconcile(doc.get("reconcile"))

    @staticmethod
    def _conditions(conditions: list[Mapping[str, Any]]) -> Iterator[Metric]:
        # kube-state-metrics style: one series per (type, status), 1 on the current status.
        cond = GaugeMetricFamily(
            "mip6ctl_condition",
            "daemon conditions (ConfigValid, KernelInSync, Ready, …): 1 on the current status",
            labels=["type", "status"],
        )
        since = GaugeMetricFamily(
            "mip6ctl_condition_last_transition_timestamp_seconds",
            "when the condition last changed status, Unix time",
            labels=["type"],
        )
        for c in conditions:
            ctype = str(c.get("type"))
            current = str(c.get("status", "Unknown")).lower()
            for status in ("true", "false", "unknown"):
                cond.add_metric([ctype, status], 1 if status == current else 0)
            ts = _timestamp(c.get("last_transition_time"))
            if ts is not None:
                since.add_metric([ctype], ts)
        yield cond
        yield since

    @staticmethod
    def _counters(counters: Mapping[str, Any]) -> Iterator[Metric]:
        rejected = CounterMetricFamily(
            "mip6ctl_binding_updates_rejected",
            "Binding Updates refused, by Binding Acknowledgement status code (>= 128)",
            labels=["status"],
        )
        for code, n in (counters.get("bus_rejected_by_status") or {}).items():
            rejected.add_metric([str(code)], int(n))
        yield rejected
        for key, value in counters.items():
            if key == "bus_rejected_by_status" or isinstance(value, bool):
                continue
            if not isinstance(value, int):
                continue
            name, text = COUNTER_METRICS.get(
                key, ("mip6ctl_" + _NAME.sub("_", key), f"status counter {key}")
            )
            yield CounterMetricFamily(name, text, value=value)

    @staticmethod
    def _bindings(doc: Mapping[str, Any]) -> Iterator[Metric]:
        cache = doc.get("binding_cache") or {}
        if isinstance(cache.get("count"), int):
            yield GaugeMetricFamily(
                "mip6ctl_binding_cache_entries",
                "bindings in the binding cache",
                value=cache["count"],
            )
        bul = doc.get("binding_update_list")
        if isinstance(bul, Mapping):
            by_state: dict[str, int] = {}
            for row in bul.get("rows") or []:
                state = str(row.get("state", "unknown"))
                by_state[state] = by_state.get(state, 0) + 1
            g = GaugeMetricFamily(
                "mip6ctl_binding_update_list_entries",
                "mobile node binding update list entries, by state",
                labels=["state"],
            )
            for state in sorted(by_state):
                g.add_metric([state], by_state[state])
            yield g

    @staticmethod
    def _reconcile(rec: Any) -> Iterator[Metric]:
        if not isinstance(rec, Mapping):
            return
        queue = rec.get("queue")
        if isinstance(queue, Mapping):
            g = GaugeMetricFamily(
                "mip6ctl_reconcile_queue", "reconcile keys, by queue state", labels=["state"]
            )
            for state in sorted(queue):
                if isinstance(queue[state], int):
                    g.add_metric([state], queue[state])
            yield g
        if isinstance(rec.get("failing_keys"), int):
            yield GaugeMetricFamily(
                "mip6ctl_reconcile_failing_keys",
                "reconcile keys whose last attempt failed",
                value=rec["failing_keys"],
            )


def loop_provider(
    loop: asyncio.AbstractEventLoop,
    status: Callable[[], Awaitable[Mapping[str, Any]]],
    timeout: float = 2.0,
) -> StatusProvider:
    """A thread-safe provider that runs the async ``status()`` inside ``loop``.

    Called from the HTTP thread; raises TimeoutError when the loop does not
    answer within ``timeout`` (the collector then reports ``mip6ctl_status_up 0``).
    """

    def provide() -> Mapping[str, Any]:
        if loop.is_closed():
            raise RuntimeError("event loop closed")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("loop_provider called inside its own loop (would deadlock)")
        fut = asyncio.run_coroutine_threadsafe(_call(status), loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    return provide


async def _call(status: Callable[[], Awaitable[Mapping[str, Any]]]) -> Mapping[str, Any]:
    return await status()


class MetricsServer:
    """``GET /metrics`` on ``host:port`` from a private registry, served by a daemon thread."""

    def __init__(
        self, host: str, port: int, provider: StatusProvider, *, process_metrics: bool = True
    ) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = StatusCollector(provider)
        self.registry.register(self.collector)
        if process_metrics:  # process_* (CPU, memory, fds, start time) from /proc/self
            ProcessCollector(registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_listen(cls, listen: str, provider: StatusProvider) -> MetricsServer:
        """From ``[daemon.metrics] listen`` (``"127.0.0.1:9276"``, ``"[::1]:9276"``)."""
        from mip6ctl.config.model import parse_listen

        host, port = parse_listen(listen)
        return cls(host, port, provider)

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when started with port 0)."""
        if self._server is None:
            return self.host, self.port
        sockaddr = self._server.server_address
        return str(sockaddr[0]), int(sockaddr[1])

    def start(self) -> tuple[str, int]:
        """Bind and serve; raises OSError (address in use, …) for the daemon to report."""
        if self._server is None:
            server_class = _Server6 if ":" in self.host else _Server
            self._server = make_server(
                self.host,
                self.port,
                make_wsgi_app(self.registry),
                server_class=server_class,
                handler_class=_QuietHandler,
            )
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},  # stop() waits at most this long
                name="mip6ctl-metrics",
                daemon=True,
            )
            self._thread.start()
            log.info("metrics on http://%s/metrics", _url_host(*self.address))
        return self.address

    def stop(self) -> None:
        """Stop serving and close the socket.  Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def render(self) -> bytes:
        """The text exposition, as a scrape would get it (for tests and debugging)."""
        return generate_latest(self.registry)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per scrape; daemon threads, so a stuck client never blocks exit."""

    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(): a reverse DNS lookup, in
        # the daemon's event loop at start-up.  The WSGI environ needs no name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on standard error (that is the daemon's JSON log)."""


def _url_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
