"""The daemon: transports ↔ sans-I/O engine ↔ reconcile loop, with clocks, timers and storage.

Theory of operation
-------------------
Everything runs in one asyncio event loop, in the network namespace the
process was started in (sockets are bound to it).  The engine
(`mip6ctl.engine.Engine`) is the only place protocol decisions are made; this
module executes its actions and feeds it events:

* packets: the signalling transport is readable → decode a burst → each
  event goes to `engine.handle(event, now)`;
* time: one `call_at` timer follows `engine.next_timer()`;
* actions, executed per burst in order, with two rules that keep the RFC's
  promises:
  - `BindingChanged` for a home registration goes to the reconcile loop, and
    a task awaits `loop.wait_reconciled(key)` before telling the engine
    (`engine.reconciled`) — the BA that the engine parked goes out only once
    the tunnel route and proxy entry exist (invariant 1);
  - `PersistBinding` / `ForgetBinding` are written through the write-behind
    store (group commit), and every `Send` that follows them in the same
    action list waits for that commit (invariant 6).  All the writes of a
    burst are queued before its first BA waits, so a burst of refresh BUs
    costs one commit, not one per BU; under load the store spaces commits
    ~1 ms apart (adaptive gathering, persistence.py).
* DAD runs as a task per home address (`neighbour.py`), never blocking
  other Binding Updates.
* Nothing here writes the kernel: every kernel object (routes, rules, proxy
  entries, tunnels, XFRM, the nf_tables signalling drop and §10.4.5
  reverse-tunnel check with its per-binding set elements, the seg6 tunnel
  source) is rendered by `mip6ctl.state.render` and written by the reconcile
  loop's plan executor (`mip6ctl.kernel.executor`).

Start-up order adopts rather than rebuilds: load the configuration (refuse
to start on errors), probe the kernel, open the binding store and restore the
engine's cache, hand the bindings to the reconcile loop *before* it starts
(so their kernel objects are adopted, not deleted as orphans), start the
loop, open the transport and the control socket, tell systemd READY.
Stop keeps kernel state (a restart is hitless) unless `flush_on_stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from mip6ctl import __version__
from mip6ctl.config.loader import ConfigError, Generation, load_directory
from mip6ctl.config.model import Role
from mip6ctl.daemon import sdnotify
from mip6ctl.daemon.protection import Protection, with_generation_keys
from mip6ctl.daemon.rotation import KeyRotations
from mip6ctl.engine.engine import Engine
from mip6ctl.engine.events import (
    AdvertiseHomeAddress,
    BindingChanged,
    ForgetBinding,
    HomeAgentChosen,
    ParameterProblemReceived,
    PersistBinding,
    RouteOptimisationChanged,
    Send,
    SendDhaadRequest,
    SendParameterProblem,
    StartDad,
)
from mip6ctl.engine.route_optimisation import home_address_option_refused
from mip6ctl.wire.mh import BindingAcknowledgement, BindingError, BindingUpdate

log = logging.getLogger("mip6ctl.daemon")

ICMP6_PARAMETER_PROBLEM = 4

#: How long the engine may wait for the kernel before a BA fails (130).
RECONCILE_WAIT = 5.0
HAO_REFUSED_LOG_INTERVAL = 60.0
"""s between two log lines about one peer refusing the Home Address option."""
#: How long a reload waits for its static state before it is rolled back.
RELOAD_APPLY_WAIT = 5.0


_GC_THRESHOLD = (10_000, 10, 1000)
"""gc.set_threshold after start-up (default 700, 10, 10): measured at 100k bindings and
300k refreshes (engine + codec), the default ran a full collection of ~90 ms; this
runs none, and young collections stay under ~10 ms (a gen-0 threshold of 50,000
made them ~25 ms: every refresh leaves a new Binding alive)."""


_SWITCH_INTERVAL = 0.0002
"""sys.setswitchinterval (default 5 ms): a thread that wants the GIL back after a
system call waits up to this long while another thread computes.  The event loop
makes several such calls per burst (recvfrom, sendto, epoll), so while the periodic
resync computes in its thread (reconcile_loop.py) each BA was late by a few
intervals: 5 ms made that tens of ms, 0.2 ms keeps it around a millisecond."""


@dataclass
class Counters:
    bus_received: int = 0
    bus_accepted: int = 0
    bus_rejected_by_status: Counter = field(default_factory=Counter)
    bas_sent: int = 0
    bes_sent: int = 0
    parameter_problems_sent: int = 0
    malformed_received: int = 0
    #: mobile node: BUs not sent because the kernel lacked their IPsec policy or SA
    bus_unprotected_held: int = 0
    #: mobile node: Parameter Problems code 2 for a Home Address option (§11.3.5)
    home_address_option_refused: int = 0

    def as_dict(
        self, loop_status: dict[str, Any] | None, icmp_errors_suppressed: int = 0
    ) -> dict[str, Any]:
        counters = (loop_status or {}).get("counters", {})
        return {
            "bus_received": self.bus_received,
            "bus_accepted": self.bus_accepted,
            "bus_rejected_by_status": {
                str(k): v for k, v in sorted(self.bus_rejected_by_status.items())
            },
            "bas_sent": self.bas_sent,
            "bes_sent": self.bes_sent,
            "parameter_problems_sent": self.parameter_problems_sent,
            "icmp_errors_rate_limited": icmp_errors_suppressed,
            "malformed_received": self.malformed_received,
            "bus_unprotected_held": self.bus_unprotected_held,
            "home_address_option_refused": self.home_address_option_refused,
            "drift_repairs": counters.get("drift_repairs", 0),
            "reconcile_failures": counters.get("failures", 0),
        }


class Daemon:
    """One mip6ctl daemon process (home agent, mobile node or correspondent node)."""

    def __init__(
        self,
        config_dir: str | Path,
        *,
        state_dir: str | Path | None = None,
        control_socket: str | Path | None = None,
    ) -> None:
        self.config_dir = Path(config_dir)
        self.state_dir = Path(state_dir) if state_dir else None
        self.control_socket = Path(control_socket) if control_socket else None
        self.clock = time.monotonic
        self.counters = Counters()
        self._hao_refused_logged: dict[IPv6Address, float] = {}
        self.started_at = self.clock()
        self.generation_number = 0
        self.gen: Generation | None = None
        self.conditions: list[Any] = []
        self._stop = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None  # the engine deadline _timer was armed for
        self._tasks: set[asyncio.Task[Any]] = set()
        self._home_registered: set[IPv6Address] = set()
        self.transport: Any = None
        self.loop: Any = None
        self.store: Any = None
        self.writer_behind: Any = None
        self.nd: Any = None
        #: DHAAD (daemon/discovery.py), home agents with dynamic_home_agent_discovery
        self.discovery: Any = None
        self.control: Any = None
        self.engine: Engine | None = None
        self.protection: Protection = Protection.none()
        self.rotations = KeyRotations()  # manual-key rotations in progress
        self._rotation_timer: asyncio.TimerHandle | None = None
        self.transport_kind = "none"
        self.traffic: Any = None  # XFRM ACQUIRE/REPORT + usage poll (kernel_traffic.py)
        self.caps: Any = None
        self.watcher: Any = None  # hot reload (daemon/watch.py)
        self.metrics: Any = None  # optional Prometheus endpoint (daemon/metrics.py)
        self._keepalive: asyncio.Task[None] | None = None  # systemd watchdog pings
        self._reload_lock = asyncio.Lock()  # SIGHUP, control socket and watcher: one at a time
        from mip6ctl.daemon.status import Acknowledgements

        self.acks = Acknowledgements()  # issue 21: status tells acknowledged from pending
        # issue 19: kept generations, `apply --confirm-timeout`, `rollback`
        self.history: Any = None
        self.pending: Any = None  # history.Pending while a change awaits `confirm`
        self._confirm_task: asyncio.Task[Any] | None = None
        self.last_rollback: dict[str, Any] | None = None
        self.confirmed_number = 0  # the kept generation `mip6ctl confirm` last confirmed
        self._start_source = "start"
        self._source_hint: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        try:
            self.gen = load_directory(self.config_dir)
        except ConfigError as e:
            for p in e.problems:
                log.error("configuration: %s", p)
            log.error("refusing to start: the configuration in %s is invalid", self.config_dir)
            return 1
        self._open_history()
        self.started_cfg = self.cfg  # what restart-only settings are in effect
        self.generation_number = 1
        self._set_condition("ConfigValid", True, "Loaded", f"generation {self.gen.digest[:19]}")
        try:
            await self._start()
        except Exception as e:
            log.error("cannot start: %s", e)
            await self._shutdown()
            return 1
        self._record_generation(self._start_source)
        sdnotify.ready(self._status_line())
        self._keepalive = sdnotify.keepalive()
        log.info(
            "mip6ctl %s running as %s (%s)", __version__, self.cfg.node.role, self.transport_kind
        )
        await self._stop.wait()
        await sdnotify.cancel(self._keepalive)
        sdnotify.stopping()
        await self._shutdown()
        return 0

    @property
    def cfg(self) -> Any:
        assert self.gen is not None
        return self.gen.config

    # ------------------------------------------------------------------ generation history

    def _open_history(self) -> None:
        """Open the kept generations; undo a change the daemon stopped before confirming.

        A generation applied with ``--confirm-timeout`` whose daemon stopped (crash,
        restart, power loss) before ``mip6ctl confirm`` was never confirmed: like a
        NETCONF confirmed commit whose session dropped, it is rolled back before the
        daemon starts on it.
        """
        from mip6ctl.daemon.history import History

        base = self.state_dir if self.state_dir is not None else Path(self.cfg.daemon.state_dir)
        try:
            self.history = History(base / "generations", keep=self.cfg.daemon.keep_generations)
            pending = self.history.load_pending()
        except OSError as e:
            log.warning("generation history unavailable (%s): no rollback, no history", e)
            self.history = None
            return
        if pending is None:
            return
        target = self.history.get(pending.rollback_to)
        try:
            if target is None:
                raise ValueError(f"generation {pending.rollback_to} is no longer kept")
            self.history.restore_files(target, self.config_dir)
            self.gen = load_directory(self.config_dir)
        except (OSError, ValueError, ConfigError) as e:
            log.error(
                "generation %d was never confirmed, but rolling back failed (%s): "
                "starting on the files as they are",
                pending.number,
                e,
            )
        else:
            log.warning(
                "generation %d was applied with --confirm-timeout and the daemon stopped "
                "before it was confirmed: rolled back to generation %d",
                pending.number,
                target.number,
            )
            self.last_rollback = {
                "from": pending.number,
                "to": target.number,
                "reason": "daemon stopped before confirmation",
                "at": time.time(),
            }
            self._start_source = "rollback"
        self.history.save_pending(None)

    def _record_generation(self, source: str) -> Any:
        """Keep the running generation (once per digest change) for `history`/`rollback`."""
        if self.history is None or self.gen is None:
            return None
        self.history.keep = self.cfg.daemon.keep_generations  # hot: applies from this one
        last = self.history.records[-1] if self.history.records else None
        if last is not None and last.digest == self.gen.digest and source == "start":
            return last  # restarted on what already ran last
        try:
            return self.history.record(self.gen.digest, self.gen.files, source)
        except OSError as e:
            log.warning("generation history: cannot keep generation %s: %s", self.gen.digest, e)
            return None

    async def _start(self) -> None:
        from mip6ctl.daemon.control import ControlServer
        from mip6ctl.daemon.persistence import BindingStore, WriteBehind, binding_cache_path
        from mip6ctl.daemon.reconcile_loop import ReconcileLoop
        from mip6ctl.daemon.rpc import (
            rpc_apply,
            rpc_confirm,
            rpc_history,
            rpc_plan,
            rpc_rollback,
        )
        from mip6ctl.kernel.executor import Executor
        from mip6ctl.kernel.observer import Observer
        from mip6ctl.kernel.probe import probe
        from mip6ctl.kernel.transport import open_transport, select_transport
        from mip6ctl.kernel.writer import Writer
        from mip6ctl.state.render import Capabilities, HostFacts, is_mobile_router, tunnel_problem

        cfg = self.cfg
        aio = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            aio.add_signal_handler(sig, self._stop.set)
        aio.add_signal_handler(signal.SIGHUP, self._reload_soon)

        from mip6ctl.config.ipsec_needs import kernel_problems, unprotected_warning

        probed = probe()
        available = {c.name: c.available for c in probed}
        router = is_mobile_router(cfg)
        self.caps = Capabilities.resolve(available, cfg.kernel, mobile_router=router)
        # Never run unprotected what the configuration protects (issue 14).
        refused = kernel_problems(cfg, available)
        if refused:
            detail = [
                f"{c.name}: {c.detail}" for c in probed if c.name in ("esp", "mip6", "migrate")
            ]
            raise RuntimeError("; ".join(refused) + " (probe: " + "; ".join(detail) + ")")
        self.transport_kind = select_transport(cfg.kernel.signalling, available)
        no_tunnel = (
            tunnel_problem(available, cfg.kernel, mobile_router=router)
            if cfg.node.role != Role.CN
            else None
        )
        if no_tunnel:
            log.error("%s", no_tunnel)
        self._set_condition(
            "DataPathAvailable",
            not no_tunnel,
            "BackendMissing" if no_tunnel else self.caps.tunnel,
            no_tunnel or "",
        )
        warning = unprotected_warning(cfg)
        if warning:
            log.warning("%s", warning)
        now = self.clock()
        ike = frozenset(n for n, t in cfg.ipsec.items() if t.key_management == "ike")
        self.engine = Engine(
            cfg,
            now,
            route_optimization=self._route_optimization(cfg),
            key_mobility_templates=ike if self.caps.migrate else frozenset(),
        )

        restored: list[Any] = []
        if cfg.node.role == Role.HA:
            path = binding_cache_path(cfg, self.state_dir)
            self.store = BindingStore(path)
            restored = self.store.load(engine_now=now)
            self.writer_behind = WriteBehind(self.store)
            log.info("binding cache %s: %d binding(s) restored", path, len(restored))
        actions = self.engine.restore(restored, now)
        self.acks.restored(restored, self.engine.cache)  # acknowledged before the restart

        tables = (cfg.kernel.route_table, cfg.kernel.route_table + 1)
        sources = ["nft", "xfrm"]
        if cfg.node.role == Role.MN and self.caps.tunnel == "seg6":
            sources.append("seg6-tunsrc")
        observer = Observer(watch_tables=tables, sources=sources)
        facts = HostFacts.observe(cfg, [*observer.owned.values(), *observer.foreign.values()])
        facts = with_generation_keys(self.gen, facts)
        self.protection = Protection(cfg, facts, self.transport_kind)
        writer = Writer()
        self.loop = ReconcileLoop(
            cfg,
            self.caps,
            facts,
            observer,
            writer,
            executor=Executor.in_namespace(writer),
            generation=1,
        )
        self.loop.reconciler.on_migrated = lambda outs: self.protection.note_outcomes(outs)
        for a in actions:
            if isinstance(a, BindingChanged) and a.binding is not None:
                self._home_registered.add(a.home_address)
                self.loop.set_binding(a.binding)
        self.loop.start()
        await self._execute([a for a in actions if not isinstance(a, BindingChanged)])
        static = await self.loop.wait_reconciled(("static",), 10.0)
        self._set_condition(
            "KernelInSync",
            bool(static),
            "Reconciled" if static else "NotReconciled",
            "" if static else str(getattr(static, "message", "")),
        )

        mobile = cfg.node.role == Role.MN  # movement detection (daemon/mobile.py): RA, NA
        # RA, NA for movement detection; Parameter Problem: a correspondent without MIPv6
        icmp_types = (ICMP6_PARAMETER_PROBLEM, 134, 136) if mobile else ()
        # the transport's kernel objects (nf_tables drop, XFRM wildcards) are rendered
        # static state, in place since the static key reconciled above
        options: dict[str, Any] = {"icmp_types": icmp_types}
        if self.transport_kind == "userspace" and not mobile:
            # Acting as correspondent (HA, CN): payload carrying a Home Address
            # option without a binding gets Binding Error 1 (RFC 6275 §9.3.1).
            options["home_address_packets"] = True
        if self.transport_kind == "userspace" and mobile and cfg.mn is not None:
            # §11.3.3: tunnelled signalling (the Home Test) only from the home agent
            ha = cfg.mn.home_agent
            options["tunnel_from"] = (ha,) if isinstance(ha, IPv6Address) else None
        if self.transport_kind == "kernel":
            # a protected BU leaves from the home address; XFRM adds the HAO before ESP
            options["hao_by_xfrm"] = self.protection.hao_by_xfrm()
        self.transport = open_transport(self.transport_kind, **options)
        aio.add_reader(self.transport.fileno(), self._on_packets)
        if cfg.node.role == Role.HA and cfg.ha is not None:
            from mip6ctl.daemon.neighbour import NeighbourDiscovery

            self.nd = NeighbourDiscovery(list(cfg.ha.interfaces))
            self.nd.start(aio)
            self._start_discovery(aio)

        sock = self.control_socket or cfg.daemon.control_socket
        self.control = ControlServer(sock)
        self.control.register("status", self._rpc_status)
        self.control.register("reload", self._rpc_reload)
        self.control.register("plan", lambda params: rpc_plan(self, params))
        self.control.register("apply", lambda params: rpc_apply(self, params))
        self.control.register("confirm", lambda params: rpc_confirm(self, params))
        self.control.register("rollback", lambda params: rpc_rollback(self, params))
        self.control.register("history", lambda params: rpc_history(self, params))
        await self.control.start()
        if mobile:
            from mip6ctl.daemon.mobile import MobileNodeController

            self.mobile = await MobileNodeController.attach(self)
        from mip6ctl.daemon.ike import IkeController

        self.ike = await IkeController.attach(self)  # charon over VICI; None without IKE
        self._start_kernel_traffic()
        self._start_watch_and_metrics(aio)
        self._set_condition("Ready", True, "Running", "")
        self._arm_timer()
        # GC: the start-up objects (configuration, restored bindings, modules) never
        # die, so move them out of the collector's way (gc.freeze), and make full
        # collections rare: each walks every binding (~90 ms at 100k bindings, paid
        # by every BA waiting behind it). Bindings are acyclic, refcounting frees them.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*_GC_THRESHOLD)
        sys.setswitchinterval(_SWITCH_INTERVAL)

    def _start_watch_and_metrics(self, aio: asyncio.AbstractEventLoop) -> None:
        """Hot reload, and metrics if enabled; neither may keep the node from running."""
        from mip6ctl.daemon.watch import ConfigWatcher

        assert self.gen is not None
        self.watcher = ConfigWatcher(
            self.config_dir, aio, self.reload, initial_digest=self.gen.digest
        )
        try:
            self.watcher.start()
        except OSError as e:
            log.error("not watching %s for changes: %s", self.config_dir, e)
            self.watcher = None
        metrics = self.cfg.daemon.metrics
        if metrics.enabled:
            from mip6ctl.daemon.metrics import MetricsServer, loop_provider

            self.metrics = MetricsServer.from_listen(
                metrics.listen, loop_provider(aio, lambda: self._rpc_status({}))
            )
            try:
                self.metrics.start()
            except OSError as e:
                log.error("metrics endpoint %s not started: %s", metrics.listen, e)
                self.metrics = None

    async def _shutdown(self) -> None:
        aio = asyncio.get_running_loop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self._timer is not None:
            self._timer.cancel()
        if self._rotation_timer is not None:
            self._rotation_timer.cancel()
        for t in list(self._tasks):
            t.cancel()
        if self.control is not None:
            with contextlib.suppress(Exception):
                await self.control.close()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                aio.remove_reader(self.transport.fileno())
            self.transport.close()
        if self.nd is not None:
            self.nd.close()
        if self.discovery is not None:
            self.discovery.close()
        if getattr(self, "mobile", None) is not None:
            await self.mobile.stop()
        if getattr(self, "ike", None) is not None:
            await self.ike.close()
        if getattr(self, "traffic", None) is not None:
            await self.traffic.close()
        if self.loop is not None:
            await self.loop.stop()
            if self.gen is not None and self.cfg.daemon.flush_on_stop:
                self.loop.flush()
        if self.store is not None:
            self.store.close()
        log.info("stopped")

    # ------------------------------------------------------------------ reload

    def _reload_soon(self) -> None:
        self._spawn(self.reload())

    async def reload(self, source: str = "reload") -> dict[str, Any]:
        """Load the directory again; apply it whole, or keep the last good generation."""
        async with self._reload_lock:
            result = await self._reload()
            if result.get("applied"):
                # a rollback's restored files may reach the watcher first: still a rollback
                source, self._source_hint = self._source_hint or source, None
                # off the event loop, like the load: a large directory is copied
                rec = await asyncio.to_thread(self._record_generation, source)
                if rec is not None:
                    result["history_number"] = rec.number
        sdnotify.status(self._status_line())
        return result

    async def _reload(self) -> dict[str, Any]:
        try:
            # Off the event loop: a large directory must not stall signalling.
            gen = await asyncio.to_thread(load_directory, self.config_dir)
        except ConfigError as e:
            return self._refuse("InvalidConfig", e.problems)
        # The key files count too: rotating a key with the TOML unchanged is a change.
        if self.gen is not None and gen.digest == self.gen.digest and gen.keys == self.gen.keys:
            self._set_condition("ConfigValid", True, "Unchanged", "")
            return {"applied": False, "generation": gen.digest, "unchanged": True}
        missing = self._missing_interfaces(gen.config)
        if missing:
            return self._refuse("MissingInterface", missing)
        from mip6ctl.config.restart import restart_only_changes
        from mip6ctl.daemon.logsetup import configure_logging
        from mip6ctl.daemon.reconcile_loop import STATIC

        pending_restart = restart_only_changes(self.cfg, gen.config)
        if pending_restart:
            log.warning(
                "read only at start, takes effect after a restart: %s", ", ".join(pending_restart)
            )
        # The kernel first: a generation whose static state the kernel refuses is
        # rolled back before the engine (and the binding cache) ever sees it.
        old_cfg, number = self.cfg, self.generation_number + 1
        old_facts = self.loop.facts
        facts = with_generation_keys(gen, old_facts)
        now = self.clock()
        saved = self.rotations.snapshot()
        self.rotations.start(old_cfg, old_facts, gen.config, facts, now)
        facts = self.rotations.facts(facts, now)
        self.loop.set_generation(gen.config, number, facts=facts)
        static = await self.loop.wait_reconciled(STATIC, RELOAD_APPLY_WAIT)
        if not static:
            self.rotations.restore(saved)
            self.loop.set_generation(old_cfg, number + 1, facts=old_facts)
            await self.loop.wait_reconciled(STATIC, RELOAD_APPLY_WAIT)
            self.generation_number = number + 1
            return self._refuse("ApplyFailed", [f"{static.reason}: {static.message}"])
        lg = gen.config.log
        if lg != self.cfg.log:
            configure_logging(lg.level, lg.format, str(lg.file) if lg.file else None)
        self.gen = gen
        self.generation_number = number
        self._set_protection(gen.config, facts)
        self._arm_rotation()
        assert self.engine is not None
        actions = self.engine.load_config(gen.config, self.clock())
        await self._execute(actions)
        from mip6ctl.daemon.ike import IkeController

        self.ike = await IkeController.follow(self, getattr(self, "ike", None))
        self._follow_discovery(old_cfg)
        self._set_condition("ConfigValid", True, "Loaded", f"generation {gen.digest[:19]}")
        log.info(
            "configuration generation %d applied (%s)", self.generation_number, gen.digest[:19]
        )
        return {
            "applied": True,
            "generation": gen.digest,
            "generation_number": self.generation_number,
            "restart_required": pending_restart,
        }

    def _refuse(self, reason: str, problems: list[Any]) -> dict[str, Any]:
        """Keep the running generation; say why the new one was refused."""
        msg = "; ".join(str(p) for p in problems[:5])
        self._set_condition("ConfigValid", False, reason, msg)
        log.error(
            "reload refused (%s), keeping generation %d: %s", reason, self.generation_number, msg
        )
        errors = [
            p.as_dict() if hasattr(p, "as_dict") else {"kind": reason, "message": str(p)}
            for p in problems
        ]
        return {"applied": False, "reason": reason, "errors": errors}

    def _missing_interfaces(self, cfg: Any) -> list[str]:
        """Interfaces a candidate configuration names that this host does not have
        (the daemon's own reload: an error; `mip6ctl validate` off-box only warns)."""
        from mip6ctl.config.checks import named_interfaces
        from mip6ctl.config.problems import format_path

        have = self.loop.observer.link_names() if self.loop is not None else frozenset()
        return [
            f"{format_path(where)}: no interface {name!r} on this host"
            for where, name in named_interfaces(cfg)
            if name not in have
        ]

    # ------------------------------------------------------------------ packets and timers

    def _on_packets(self) -> None:
        assert self.engine is not None
        events = self.transport.read_ready()
        if not events:
            return
        now = self.clock()
        self.loop.activity = now  # the periodic resync's thread steps aside (reconcile_loop)
        actions: list[Any] = []
        for ev in events:
            msg = getattr(ev, "message", None)
            if isinstance(msg, BindingUpdate):
                self.counters.bus_received += 1
            elif type(ev).__name__ == "Malformed":
                self.counters.malformed_received += 1
            elif type(ev).__name__ == "ICMPv6Received":
                if getattr(self, "mobile", None) is None:
                    continue
                if getattr(ev.message, "icmp_type", None) != ICMP6_PARAMETER_PROBLEM:
                    self.mobile.icmp(ev)
                    continue
                ev = _parameter_problem(ev)  # about a packet we sent: the engine decides
                if ev is None:
                    continue
                if home_address_option_refused(ev):
                    self._log_hao_refused(ev.src, now)
            if isinstance(msg, BindingUpdate | BindingAcknowledgement) and self.protection.active:
                ev = self._protected(ev)
            try:
                actions += self.engine.handle(ev, now)
            except Exception:  # a bug must not take the home agent down
                log.exception("engine failed on %r", ev)
        if actions:
            self._execute_now(actions, 0, [])
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Follow ``engine.next_timer()``; a deadline already armed is kept as it is
        (a refresh rarely moves the earliest expiry: no cancel + new handle per burst)."""
        assert self.engine is not None
        due = self.engine.next_timer()
        if self._timer is not None:
            if due == self._timer_due:
                return
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is None:
            return
        aio = asyncio.get_running_loop()
        delay = max(0.0, due - self.clock())
        self._timer = aio.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        assert self.engine is not None
        self._timer = None
        actions = self.engine.handle_timer(self.clock())
        if actions:
            self._spawn(self._execute(actions))
        self._arm_timer()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed: %r", task.exception())

    # ------------------------------------------------------------------ actions

    async def _execute(self, actions: list[Any]) -> None:
        """Run actions in order; a Send after a persistence action waits for its commit.

        Every write is queued first (:meth:`_queue_writes`), so all of them
        join one transaction; a Send suspends only while a write before it is
        still uncommitted -- once per commit, not once per BA.
        """
        writes = self._queue_writes(actions)
        pending: list[Any] = []
        for i, a in enumerate(actions):
            t = type(a)
            if t is PersistBinding or t is ForgetBinding:
                f = writes.get(i)
                if f is not None and (not pending or pending[-1] is not f):
                    pending.append(f)
            elif t is Send or t is SendParameterProblem:
                if pending:
                    waits, pending = pending, []
                    failed: BaseException | None = None
                    for f in waits:
                        try:
                            await f  # returns at once when already committed
                        except Exception as e:  # not durable: the BA must not go out
                            failed = e
                    if failed is not None:
                        log.error("binding cache write failed, BA withheld: %s", failed)
                        continue
                self._send(a)
            else:
                self._effect(a)
                if t is RouteOptimisationChanged:
                    await self._mobile_reconciled()
        for f in pending:
            try:
                await f
            except Exception as e:
                log.error("binding cache write failed: %s", e)

    def _effect(self, a: Any) -> None:
        """The actions that neither write nor send (shared by both executors)."""
        t = type(a)
        if t is BindingChanged:
            self._binding_changed(a)
        elif t is StartDad:
            self._spawn(self._dad(a))
        elif t is RouteOptimisationChanged:
            self._route_optimisation_changed(a)
        elif t is AdvertiseHomeAddress:
            mobile = getattr(self, "mobile", None)
            if mobile is not None:
                mobile.home_address_free()
        elif t is SendDhaadRequest or t is HomeAgentChosen:
            mobile = getattr(self, "mobile", None)
            if mobile is None:
                log.warning("%s before the mobile node controller started", t.__name__)
            elif t is SendDhaadRequest:
                mobile.send_dhaad_request(a)
            else:
                mobile.home_agent_chosen(a.home_agent)

    def _queue_writes(self, actions: list[Any]) -> dict[int, Any]:
        """Queue every write of a burst at once: {action index: its commit future}.

        Queued up front, not as the walk reaches them: a walk parked on the
        first BA's commit would otherwise queue the next binding only after
        that commit, one transaction per BU of the burst instead of one for
        the burst. Writes keep their order, and a BA still waits for every
        write before it (futures resolve in queue order).
        """
        wb = self.writer_behind
        if wb is None:
            return {}
        writes: dict[int, Any] = {}
        for i, a in enumerate(actions):
            t = type(a)
            if t is PersistBinding:
                writes[i] = wb.put(a.binding)
            elif t is ForgetBinding:
                writes[i] = wb.delete(a.home_address)
        return writes

    def _execute_now(
        self,
        actions: list[Any],
        start: int,
        pending: list[Any],
        writes: dict[int, Any] | None = None,
    ) -> None:
        """:meth:`_execute` for the packet path, without a task per burst.

        Runs ``actions[start:]`` in order; the burst's writes are queued first
        (:meth:`_queue_writes`). A Send that must wait for a write before it
        (``pending``) parks the rest on that write's future and resumes from
        its done callback -- once per commit, not once per BA. Same rules as
        :meth:`_execute`: a BA goes out only once every write queued before it
        is committed, and is withheld when one failed.
        """
        if writes is None:
            writes = self._queue_writes(actions)
        n = len(actions)
        i = start
        while i < n:
            a = actions[i]
            t = type(a)
            if t is PersistBinding or t is ForgetBinding:
                f = writes.get(i)
                if f is not None and (not pending or pending[-1] is not f):
                    pending.append(f)  # puts of a burst mostly share one future
            elif t is Send or t is SendParameterProblem:
                if pending:
                    for f in pending:
                        if not f.done():
                            f.add_done_callback(
                                lambda _f, i=i, p=pending: self._resume(actions, i, p, writes)
                            )
                            return
                    waits, pending = pending, []
                    failed = _failure(waits)
                    if failed is not None:  # not durable: the BA must not go out
                        log.error("binding cache write failed, BA withheld: %s", failed)
                        i += 1
                        continue
                self._send(a)
            else:
                self._effect(a)
                if t is RouteOptimisationChanged:  # the rest once the kernel has it
                    self._spawn(self._execute_after_mobile(actions[i + 1 :]))
                    return
            i += 1
        for f in pending:
            if f.done():
                _log_write_failure(f)
            else:
                f.add_done_callback(_log_write_failure)

    def _resume(
        self, actions: list[Any], start: int, pending: list[Any], writes: dict[int, Any]
    ) -> None:
        if self._stop.is_set():  # shutting down: the transport may be gone
            return
        try:
            self._execute_now(actions, start, pending, writes)
        except Exception:
            log.exception("executing actions failed")

    def _ipsec_rows(self) -> list[dict[str, Any]]:
        if not self.protection.active:
            return []
        rows = self.protection.status(self.loop.observer.owned)
        rotating = self.rotations.status(self.clock())
        for r in rows:
            r["rotation"] = rotating.get(r["template"])
        return rows

    def _set_protection(self, cfg: Any, facts: Any) -> None:
        migrations = self.protection.migrations
        self.protection = Protection(cfg, facts, self.transport_kind)
        self.protection.migrations = migrations

    def _arm_rotation(self) -> None:
        """Wake up when a key rotation changes phase (daemon/rotation.py)."""
        if self._rotation_timer is not None:
            self._rotation_timer.cancel()
            self._rotation_timer = None
        delay = self.rotations.next_change(self.clock())
        if delay is not None:
            aio = asyncio.get_running_loop()
            self._rotation_timer = aio.call_later(delay + 0.01, self._rotation_step)

    def _rotation_step(self) -> None:
        self._rotation_timer = None
        facts = self.rotations.facts(self.loop.facts, self.clock())
        self.loop.set_generation(self.cfg, self.generation_number, facts=facts)
        self._set_protection(self.cfg, facts)
        self._arm_rotation()

    def _log_hao_refused(self, peer: IPv6Address, now: float) -> None:
        """§11.3.5: log it (once a minute per peer: ICMP errors come per packet)."""
        self.counters.home_address_option_refused += 1
        last = self._hao_refused_logged.get(peer)
        if last is not None and now - last < HAO_REFUSED_LOG_INTERVAL:
            return
        if len(self._hao_refused_logged) >= 1024:
            self._hao_refused_logged.clear()
        self._hao_refused_logged[peer] = now
        log.warning(
            "%s answered a Home Address option with ICMPv6 Parameter Problem code 2"
            " (it does not support the option); the message was discarded (RFC 6275 §11.3.5)",
            peer,
        )

    def _protected(self, ev: Any) -> Any:
        """A BU (home agent) or BA (mobile node) the kernel's IPsec policy let through
        is protected (daemon/protection.py)."""
        owned = self.loop.observer.owned
        msg = ev.message
        if self.cfg.node.role == Role.HA and isinstance(msg, BindingUpdate):
            home = ev.home_address_option or ev.src
            if self.protection.signalling_protected(owned, home):
                return dataclasses.replace(ev, ipsec_protected=True)
        elif (
            self.cfg.node.role == Role.MN
            and self.cfg.mn is not None
            and isinstance(msg, BindingAcknowledgement)
            and ev.src == self.cfg.mn.home_agent
            and self.protection.signalling_protected(owned, self.cfg.mn.home_address.ip)
        ):  # the kernel's inbound BA policy (level required) let it through
            return dataclasses.replace(ev, ipsec_protected=True)
        return ev

    def _send(self, a: Send | SendParameterProblem) -> None:
        if (
            isinstance(a, Send)
            and isinstance(a.message, BindingUpdate)
            and self.protection.active
            and self.cfg.node.role == Role.MN
        ):
            ok, why = self.protection.may_send_bu(self.loop.observer.owned)
            if not ok:
                self.counters.bus_unprotected_held += 1
                log.warning("Binding Update to %s not sent unprotected: %s", a.dst, why)
                return
        if isinstance(a, SendParameterProblem):
            self.counters.parameter_problems_sent += 1
        elif isinstance(a.message, BindingAcknowledgement):
            self.counters.bas_sent += 1
            if a.message.status < 128:
                self.counters.bus_accepted += 1
                self.acks.sent(a)
            else:
                self.counters.bus_rejected_by_status[a.message.status] += 1
        elif isinstance(a.message, BindingError):
            self.counters.bes_sent += 1
        try:
            self.transport.send(a)
        except OSError as e:
            log.warning("send to %s failed: %s", a.dst, e)

    def _binding_changed(self, a: BindingChanged) -> None:
        b = a.binding
        hoa = a.home_address
        if b is not None and b.home_registration:
            first = hoa not in self._home_registered
            self._home_registered.add(hoa)
            self.loop.set_binding(b)
            self._spawn(self._await_kernel(hoa, announce=first))
        elif b is None and hoa in self._home_registered:
            self._home_registered.discard(hoa)
            self.loop.remove_binding(hoa)
            self._spawn(self._await_kernel(hoa, announce=False))
        elif b is not None:
            # A correspondent binding (route optimisation, RFC 6275 9.5): its own
            # reconcile key with the XFRM route2/hao objects, only where the kernel
            # has them. Never awaited: the correspondent's BA is not held for the
            # kernel (traffic keeps the home agent path until the states exist).
            if self.caps is not None and self.caps.route_optimization:
                self.loop.set_correspondent(b)
        else:
            self.loop.remove_correspondent(hoa)  # a no-op for a binding it never had

    async def _await_kernel(self, hoa: IPv6Address, *, announce: bool) -> None:
        from mip6ctl.daemon.reconcile_loop import binding_key

        assert self.engine is not None
        result = await self.loop.wait_reconciled(binding_key(hoa), RECONCILE_WAIT)
        ok = bool(result)
        if not ok:
            log.warning(
                "kernel state for %s not in place: %s", hoa, getattr(result, "message", result)
            )
        actions = self.engine.reconciled(hoa, ok, self.clock())
        if ok and announce and self.nd is not None and self.cfg.ha is not None:
            link = self._home_link(hoa)
            self.nd.advertise(hoa, link)
            b = self.engine.cache.get(hoa)
            if b is not None and b.defended_link_local is not None:
                self.nd.advertise(b.defended_link_local, link)
        await self._execute(actions)
        self._arm_timer()

    def _start_kernel_traffic(self) -> None:
        """XFRM ACQUIRE / REPORT and the usage poll (daemon/kernel_traffic.py): only where
        the kernel carries the route-optimised data path and signalling."""
        if self.transport_kind != "kernel" or not self.caps.route_optimization:
            return
        from mip6ctl.daemon.kernel_traffic import KernelTraffic

        mn = self.cfg.mn if self.cfg.node.role == Role.MN else None
        self.traffic = KernelTraffic(
            self.engine,
            self.feed_events,
            self.clock,
            home_address=None if mn is None else mn.home_address.ip,
            interval=self.cfg.daemon.binding_use_interval,
        )
        try:
            self.traffic.start()
        except OSError as e:
            log.error("no XFRM notifications (route optimisation on traffic, BRRs): %s", e)
            self.traffic = None

    def feed_events(self, events: list[Any]) -> None:
        """Engine inputs from outside the signalling transport (kernel notifications)."""
        assert self.engine is not None
        now = self.clock()
        actions: list[Any] = []
        for ev in events:
            try:
                actions += self.engine.handle(ev, now)
            except Exception:  # a bug must not take the node down
                log.exception("engine failed on %r", ev)
        if actions:
            self._spawn(self._execute(actions))
        self._arm_timer()

    def traffic_trigger(self, cfg: Any) -> bool:
        """Whether a mobile node renders the route-optimisation trigger policy: its
        engine route-optimises, some correspondent may be on-traffic, and no IPsec
        payload protection claims the home address's traffic (its tunnel-mode policy
        wins over the trigger, and route-optimised payload would bypass it)."""
        from mip6ctl.config.model import Protect
        from mip6ctl.engine.route_optimisation import traffic_possible

        mn = cfg.mn
        if mn is None or not self._route_optimization(cfg, quiet=True):
            return False
        template = cfg.ipsec.get(mn.ipsec) if mn.ipsec else None
        if template is not None and Protect.PAYLOAD in template.protect:
            return False
        return traffic_possible(mn)

    def _route_optimization(self, cfg: Any, *, quiet: bool = False) -> bool:
        """Whether this node may route-optimise: the kernel carries the data path
        (XFRM route2/hao), and a mobile node also receives its Home Test, which
        comes through the tunnel, only on the kernel signalling transport."""
        ro = bool(self.caps.route_optimization)
        if cfg.node.role == Role.MN:
            ro = ro and self.transport_kind == "kernel"
            if quiet:
                return ro
            log.info(
                "route optimisation with correspondents: %s",
                "on"
                if ro
                else "off (needs XFRM route2/hao states and the kernel signalling transport; "
                "traffic stays in the tunnel through the home agent)",
            )
        return ro

    async def _mobile_reconciled(self) -> None:
        from mip6ctl.daemon.reconcile_loop import MOBILE

        result = await self.loop.wait_reconciled(MOBILE, RECONCILE_WAIT)
        if not result:
            log.warning("route optimisation state not in place: %s", result.message)

    async def _execute_after_mobile(self, actions: list[Any]) -> None:
        await self._mobile_reconciled()
        await self._execute(actions)

    def _route_optimisation_changed(self, a: RouteOptimisationChanged) -> None:
        """The mobile node's kernel state follows, before the next action (the BU) runs."""
        mobile = getattr(self, "mobile", None)
        if mobile is not None:
            mobile.route_optimisation(a.correspondents)

    def _home_link(self, hoa: IPv6Address) -> str:
        ha = self.cfg.ha
        for ifname, prefix in zip(ha.interfaces, ha.home_prefixes, strict=False):
            if hoa in prefix:
                return ifname
        return ha.interfaces[0]

    async def _dad(self, a: StartDad) -> None:
        assert self.engine is not None
        ok = True
        if self.nd is not None:
            ok = await self.nd.duplicate_address_detection(a.home_address, a.ifname)
            if ok and a.link_local is not None:
                ok = await self.nd.duplicate_address_detection(a.link_local, a.ifname)
        actions = self.engine.dad_result(a.home_address, ok, self.clock())
        await self._execute(actions)
        self._arm_timer()

    # ------------------------------------------------------------------ status

    def _set_condition(self, ctype: str, status: bool, reason: str, message: str) -> None:
        from mip6ctl.daemon.status import set_condition

        self.conditions = set_condition(self.conditions, ctype, status, reason, message)

    def _status_line(self) -> str:
        n = len(self.engine.cache) if self.engine is not None else 0
        return f"{self.cfg.node.role}: {n} binding(s), generation {self.generation_number}"

    def _start_discovery(self, aio: asyncio.AbstractEventLoop) -> None:
        """DHAAD on the home links (RFC 6275 §10.5); a failure costs only DHAAD."""
        from mip6ctl.daemon.discovery import DiscoveryService
        from mip6ctl.state.render import home_agent_address

        ha = self.cfg.ha
        assert ha is not None
        address = home_agent_address(self.cfg, self.loop.facts)
        if not ha.dynamic_home_agent_discovery or address is None:
            return
        try:
            self.discovery = DiscoveryService(ha, address, self.clock)
        except OSError as e:
            log.warning("dynamic home agent address discovery not available: %s", e)
            return
        self.discovery.start(aio)

    def _follow_discovery(self, old_cfg: Any) -> None:
        """A reload: a new preference is taken in place; other home links or prefixes
        (other anycast addresses to join), or DHAAD turned on or off, re-open it."""
        ha, old = self.cfg.ha, old_cfg.ha
        if ha is None or self.cfg.node.role != Role.HA:
            return
        same_links = old is not None and old.prefix_links() == ha.prefix_links()
        if self.discovery is not None and same_links and ha.dynamic_home_agent_discovery:
            from mip6ctl.state.render import home_agent_address

            address = home_agent_address(self.cfg, self.loop.facts)
            if address is not None:
                self.discovery.configure(ha, address)
                return
        if self.discovery is not None:
            self.discovery.close()
            self.discovery = None
        self._start_discovery(asyncio.get_running_loop())

    async def _rpc_status(self, params: dict[str, Any]) -> dict[str, Any]:
        from mip6ctl.daemon.status import GenerationInfo, build_status, with_store_condition

        assert self.engine is not None and self.gen is not None
        if self.store is not None:  # issue 21: failing binding cache writes show here
            self.conditions = with_store_condition(self.conditions, self.store)
        loop_status = self.loop.status() if self.loop is not None else None
        for cond in (loop_status or {}).get("conditions", []):
            if cond.get("type") == "KernelInSync":
                status = {"True": True, "False": False}.get(cond.get("status", ""))
                self._set_condition(
                    "KernelInSync", status, cond.get("reason", ""), cond.get("message", "")
                )
        now = self.clock()
        bul: list[Any] = [self.engine.mn] if self.engine.mn is not None else []
        rr_rows: list[Any] = []
        if self.engine.ro is not None:
            ro_bul, rr_rows = self.engine.ro.status(now)
            bul += ro_bul
        doc = build_status(
            str(self.cfg.node.role),
            self.cfg,
            GenerationInfo(
                generation=self.gen.digest,
                number=self.generation_number,
                observed=(loop_status or {}).get("observed_generation"),
            ),
            self.conditions,
            self._counters(loop_status),
            list(self.engine.cache),
            bul,
            now,
            started_at=self.started_at,
            transport=self.transport_kind,
            tunnel_backend=self.caps.tunnel if self.caps else None,
            return_routability=rr_rows,
            reconcile=loop_status,
            acknowledged=self.acks,
            ipsec=await self.ike.rows(self._ipsec_rows())
            if getattr(self, "ike", None) is not None
            else self._ipsec_rows(),
        )
        doc["confirmation"] = self.confirmation_status()
        if self.cfg.node.role == Role.HA:
            doc["home_agent_discovery"] = (
                self.discovery.status() if self.discovery is not None else {"enabled": False}
            )
        return doc

    def confirmation_status(self) -> dict[str, Any]:
        """`apply --confirm-timeout` as status shows it: pending (with seconds left) or not."""
        h = self.history
        out: dict[str, Any] = {
            "history_number": h.records[-1].number if h is not None and h.records else None,
            "pending": None,
            "last_rollback": self.last_rollback,
        }
        if self.pending is not None:
            out["pending"] = {
                **self.pending.as_dict(),
                "seconds_left": round(max(0.0, self.pending.deadline - time.time()), 1),
            }
        return out

    def _counters(self, loop_status: dict[str, Any] | None) -> dict[str, Any]:
        """The status counters: the daemon's, the engine's (§9.5.5 BRRs, §11.8 held BUs,
        traffic triggers) and the kernel notifications'."""
        e = self.engine
        assert e is not None
        out = self.counters.as_dict(loop_status, e.icmp_errors_suppressed)
        out["brrs_sent"] = e.cn.brrs_sent
        if e.mn is not None:
            out["bas_unprotected_ignored"] = e.mn.bas_unprotected
        out["bus_rate_limited"] = (e.mn.bus_held if e.mn is not None else 0) + (
            sum(x.bus_held for x in e.ro.entries.values()) if e.ro is not None else 0
        )
        if e.ro is not None:
            out["route_optimisations_triggered"] = e.ro.triggered
        if self.traffic is not None:
            t = self.traffic.status()
            out["xfrm_acquires"] = t["acquires"]
            out["xfrm_reports"] = t["reports"]
            out["route_optimised_in_use"] = t["used"]  # addresses seen used, all polls
        return out

    async def _rpc_reload(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.reload()


def _parameter_problem(ev: Any) -> ParameterProblemReceived | None:
    """The engine input for an ICMPv6 Parameter Problem (pointer, then the invoking packet)."""
    body = ev.message.body
    if len(body) < 4:
        return None
    return ParameterProblemReceived(
        ev.src, ev.message.code, int.from_bytes(body[:4], "big"), bytes(body[4:])
    )


def _failure(futures: list[Any]) -> BaseException | None:
    """The last exception among done write futures (None: all committed)."""
    failed: BaseException | None = None
    for f in futures:
        if f.cancelled():
            failed = asyncio.CancelledError()
        elif f.exception() is not None:
            failed = f.exception()
    return failed


def _log_write_failure(f: Any) -> None:
    if not f.cancelled() and f.exception() is not None:
        log.error("binding cache write failed: %s", f.exception())


def run_daemon(config_dir: str, *, state_dir: str | None, control_socket: str | None) -> int:
    from mip6ctl.daemon.logsetup import configure_logging

    configure_logging()
    try:  # the configured log settings, when the configuration loads at all
        cfg = load_directory(config_dir).config
        configure_logging(
            cfg.log.level, cfg.log.format, str(cfg.log.file) if cfg.log.file else None
        )
    except ConfigError:
        pass
    daemon = Daemon(config_dir, state_dir=state_dir, control_socket=control_socket)
    return asyncio.run(daemon.run())
