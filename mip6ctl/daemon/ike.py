"""The daemon's side of automatic keying: charon's connections follow the generation and the moves.

Theory of operation
-------------------
With ``key_management = "ike"`` in an ``[ipsec.NAME]`` template, mip6ctl owns
the XFRM *policies* (rendered and written by the reconcile loop like every
kernel object) and strongSwan's charon negotiates the SAs with the fixed
reqids (docs/ike.md).  `IkeController` is the glue, attached by the daemon
when the generation has such a template:

* home agent: the responder connections (`mip6ctl.ike.swanctl.ha_connections`)
  are loaded over VICI at start and on every reload (connections of nodes no
  longer listed are unloaded); nothing else -- charon's IKE_SA follows a
  move through the MIGRATE the executor sends when the BU is accepted;
* mobile node: the connection (`mn_connection`) is loaded and initiated from
  the care-of address once the node is away and its kernel state is in sync
  (`moved`, called by the mobile node controller right after the mobile key
  reconciled; independent of the Binding Update, which the kernel holds back
  until charon's SA exists).  On later moves, with CONFIG_XFRM_MIGRATE
  (``caps.migrate``) the executor's MIGRATE of the tunnel-mode policies, with
  XFRMA_KMADDRESS, moves charon's IKE_SA: the controller only checks
  (bounded) that it did, and re-initiates when it did not; without MIGRATE,
  or with a transport-only template (no tunnel policy, so no MIGRATE), it
  re-initiates from the new care-of address (`Charon.reinitiate`: a new
  IKE_SA).

After a move charon followed by MIGRATE, its transport_proxy child (``mh``)
is still registered at the old care-of address: a rekey of it would fail
(docs/ike.md, limit 3).  Once the home registration at the new care-of
address is done (its BU/BA travel in the old transport SAs, HoA<->HA, which a
move does not touch), the controller re-creates that child over the moved
IKE_SA (`Charon.recreate_child`: a DELETE of the old one, then a
CREATE_CHILD_SA -- charon refuses a duplicate while the old one is installed;
no IKE_SA_INIT).  This module never writes the kernel (the one-writer
rule): charon does, over VICI.

Every VICI call runs in a thread (`asyncio.to_thread`) on a session of its
own, bounded by the session's socket timeout and an ``asyncio.wait_for``;
a failure is logged and shown as the ``IkeReady`` condition, never raised
into the daemon.  charon's VICI socket: ``$MIP6CTL_VICI_SOCKET``, else
``/var/run/charon.vici``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from mip6ctl.config.model import Mip6Config, Role
from mip6ctl.ike import swanctl
from mip6ctl.ike.vici_client import DEFAULT_SOCKET, IkeSaInfo, established

log = logging.getLogger("mip6ctl.ike")

__all__ = ["IkeController", "merge_status", "uses_ike", "vici_socket"]

VICI_SOCKET_ENV = "MIP6CTL_VICI_SOCKET"
#: one VICI command (socket timeout)
VICI_TIMEOUT = 10.0
#: one initiate of a child (charon's own bound, passed in the command)
INITIATE_TIMEOUT = 30.0
#: a move with MIGRATE: how long charon's migrate job may take to show the new address
MIGRATE_FOLLOW_WAIT = 10.0
#: a status request waits at most this long for list-sas (else the last snapshot)
STATUS_WAIT = 3.0
#: attempts to bring the mobile node's IKE_SA up from one care-of address
INITIATE_ATTEMPTS = 3
RETRY_DELAY = 2.0
#: charon not reachable / connections not loaded: try again this often
RELOAD_RETRY = 10.0
#: after a followed MIGRATE the mh child is re-created once the home registration at the
#: new care-of address is done, or after this long anyway
REGISTRATION_WAIT = 30.0

CONDITION = "IkeReady"


def vici_socket() -> str:
    return os.environ.get(VICI_SOCKET_ENV) or DEFAULT_SOCKET


def uses_ike(cfg: Mip6Config) -> bool:
    """Whether a template this node uses has ``key_management = "ike"``."""
    names: set[str] = set()
    if cfg.ha is not None:
        names |= {n.ipsec for n in cfg.ha.mobile_nodes if n.ipsec}
    if cfg.mn is not None and cfg.mn.ipsec:
        names.add(cfg.mn.ipsec)
    return any(cfg.ipsec[n].key_management == "ike" for n in names if n in cfg.ipsec)


def _charon(path: str, timeout: float) -> Any:
    from mip6ctl.ike.vici_client import Charon

    return Charon(path, timeout=timeout)


def sa_status(sa: IkeSaInfo) -> dict[str, Any]:
    """An IKE_SA as the status document shows it (no key material: charon sends none)."""
    return {
        "unique_id": sa.uniqueid,
        "state": sa.state,
        "local_host": sa.local_host,
        "remote_host": sa.remote_host,
        "local_id": sa.local_id,
        "remote_id": sa.remote_id,
        "initiator": sa.initiator,
        "ike_spis": {
            "initiator": f"{sa.initiator_spi:016x}",
            "responder": f"{sa.responder_spi:016x}",
        },
        "established_s": sa.established,
        "children": [
            {
                "name": c.name,
                "state": c.state,
                "mode": c.mode,
                "reqid": c.reqid,
                "spi_in": f"{c.spi_in:#x}",
                "spi_out": f"{c.spi_out:#x}",
                "local_ts": list(c.local_ts),
                "remote_ts": list(c.remote_ts),
            }
            for c in sa.children
        ],
    }


def merge_status(
    rows: Iterable[dict[str, Any]], ike_status: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """`Protection.status` rows with an ``ike`` field on each row whose template uses IKE.

    ``ike_status`` is `IkeController.status` (home address -> connection and SAs);
    a row of an IKE template the controller knows nothing of gets ``{"state": None}``."""
    out = []
    for row in rows:
        if row.get("key_management") == "ike":
            row = {**row, "ike": ike_status.get(row["home_address"], {"state": None})}
        out.append(row)
    return out


@dataclass
class _Conn:
    conn: swanctl.IkeConnection
    loaded: bool = False
    sas: tuple[IkeSaInfo, ...] = ()
    sas_at: float | None = None
    last_error: str | None = None
    last_move: dict[str, Any] | None = None


class IkeController:
    """charon's connections for one daemon; see the module docstring."""

    def __init__(
        self,
        cfg: Mip6Config,
        *,
        base: Path | None,
        migrate: bool,
        set_condition: Callable[[str, bool, str, str], None],
        ha_address: IPv6Address | None = None,
        socket_path: str | None = None,
        charon: Callable[[str, float], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        registered_care_of: Callable[[], IPv6Address | None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.base = base
        self.migrate = migrate
        self.ha_address = ha_address
        self.socket_path = socket_path or vici_socket()
        self._charon = charon or _charon
        self._set_condition = set_condition
        self.clock = clock
        #: the care-of address of the mobile node's completed home registration (None:
        #: none); unset, the mh child is re-created as soon as charon followed
        self.registered_care_of = registered_care_of
        self.conns: dict[str, _Conn] = {}  # by connection name
        self.care_of_address: IPv6Address | None = None
        self.config_error: str | None = None
        self._lock = asyncio.Lock()  # loads, initiations, moves: one at a time
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._build(cfg)

    # ----------------------------------------------------------------- daemon glue

    @classmethod
    async def attach(cls, daemon: Any) -> IkeController | None:
        """Build and start a controller for a running `Daemon` (None: no IKE template).

        On a mobile node it is handed to the mobile node controller (``mobile.ike``)
        and, when the node is already away, brought up from its care-of address."""
        cfg = daemon.cfg
        try:
            if not uses_ike(cfg):
                return None
            ctl = cls(
                cfg,
                base=daemon.gen.directory if daemon.gen is not None else None,
                migrate=bool(getattr(daemon.caps, "migrate", False)),
                set_condition=daemon._set_condition,
                ha_address=_ha_address(daemon),
            )
            await ctl.start()
            ctl._hand_to_mobile(daemon)
        except Exception as e:  # a bug here must not keep the node from running
            log.exception("IKE controller not attached")
            daemon._set_condition(CONDITION, False, "Failed", f"controller not attached: {e}")
            return None
        return ctl

    @classmethod
    async def follow(cls, daemon: Any, ctl: IkeController | None) -> IkeController | None:
        """A reload applied: the controller for the new generation (reloaded, attached or
        closed), handed to the mobile node controller again."""
        if ctl is None:
            return await cls.attach(daemon)
        try:
            if not uses_ike(daemon.cfg):
                await ctl.close()
                daemon._set_condition(CONDITION, True, "NotUsed", "no template uses IKE")
                mobile = getattr(daemon, "mobile", None)
                if mobile is not None:
                    mobile.ike = None
                return None
            ctl.ha_address = _ha_address(daemon) or ctl.ha_address
            await ctl.reload(daemon.cfg, daemon.gen.directory if daemon.gen is not None else None)
        except Exception as e:  # keep the controller of the last generation
            log.exception("IKE connections not reloaded")
            daemon._set_condition(CONDITION, False, "Failed", f"not reloaded: {e}")
        return ctl

    def _hand_to_mobile(self, daemon: Any) -> None:
        mobile = getattr(daemon, "mobile", None)
        if mobile is None:
            return
        mobile.ike = self
        engine = getattr(daemon, "engine", None)
        if self.registered_care_of is None and engine is not None:
            self.registered_care_of = lambda: _registered_care_of(engine)
        view = getattr(mobile, "view", None)
        coa = getattr(view, "care_of_address", None)
        if getattr(mobile, "location", None) == "away" and coa is not None:
            self.moved(coa, kernel_in_sync=True)

    # ----------------------------------------------------------------- configuration

    def _build(self, cfg: Mip6Config) -> None:
        """The connections this generation asks for (the MN's at the current care-of address)."""
        self.cfg = cfg
        self._gone: list[swanctl.IkeConnection] = []
        try:
            conns: list[swanctl.IkeConnection] = []
            if cfg.node.role == Role.HA:
                conns = swanctl.ha_connections(cfg, ha_address=self.ha_address, base=self.base)
            elif cfg.node.role == Role.MN:
                mn = swanctl.mn_connection(
                    cfg, care_of_address=self.care_of_address, base=self.base
                )
                conns = [mn] if mn is not None else []
        except (swanctl.IkeConfigError, ValueError) as e:
            self.config_error = str(e)
            log.error("IKE connections not generated: %s", e)
            self._set_condition(CONDITION, False, "ConfigError", str(e))
            return
        self.config_error = None
        old = self.conns
        self.conns = {}
        for c in conns:
            prev = old.get(c.name)
            entry = _Conn(c)
            if prev is not None:
                entry.sas, entry.sas_at, entry.last_move = prev.sas, prev.sas_at, prev.last_move
                entry.loaded = prev.loaded and prev.conn.vici_conn() == c.vici_conn()
                entry.loaded = entry.loaded and prev.conn.psk_fingerprint == c.psk_fingerprint
            self.conns[c.name] = entry
        self._gone = [v.conn for k, v in old.items() if k not in self.conns and v.loaded]

    @property
    def mn_conn(self) -> _Conn | None:
        if self.cfg.node.role != Role.MN:
            return None
        return next(iter(self.conns.values()), None)

    # ----------------------------------------------------------------- VICI, off the loop

    async def _vici(self, what: str, fn: Callable[[Any], Any], *, bound: float) -> Any:
        """``fn(charon)`` in a thread on a session of its own; ViciError/OSError/timeout
        become a ``RuntimeError`` naming `what` (the caller logs it)."""

        def run() -> Any:
            c = self._charon(self.socket_path, VICI_TIMEOUT)
            try:
                return fn(c)
            finally:
                with contextlib.suppress(Exception):
                    c.close()

        try:
            return await asyncio.wait_for(asyncio.to_thread(run), bound)
        except TimeoutError:
            raise RuntimeError(f"{what}: no answer from charon in {bound:.0f} s") from None
        except Exception as e:  # ViciError, OSError, a bug in the driver: never the daemon's
            raise RuntimeError(f"{what}: {e}") from None

    async def _load(self, entries: Iterable[_Conn]) -> bool:
        ok = True
        for entry in entries:
            conn = entry.conn
            try:
                await self._vici(
                    f"load {conn.name}", lambda c, x=conn: c.load(x), bound=VICI_TIMEOUT * 2
                )
            except RuntimeError as e:
                entry.loaded, entry.last_error = False, str(e)
                log.warning("IKE: %s", e)
                ok = False
                continue
            entry.loaded, entry.last_error = True, None
            log.info(
                "IKE: connection %s loaded (%s, children %s, psk %s)",
                conn.name,
                conn.role,
                ", ".join(f"{n}={r}" for n, r in conn.reqids.items()),
                conn.psk_fingerprint,
            )
        return ok

    async def _unload(self, conns: Iterable[swanctl.IkeConnection]) -> None:
        for conn in conns:
            try:
                await self._vici(
                    f"unload {conn.name}", lambda c, x=conn: c.unload(x), bound=VICI_TIMEOUT * 2
                )
                log.info("IKE: connection %s unloaded", conn.name)
            except RuntimeError as e:
                log.warning("IKE: %s", e)

    def _update_condition(self) -> None:
        if self.config_error is not None:
            self._set_condition(CONDITION, False, "ConfigError", self.config_error)
            return
        failed = [e for e in self.conns.values() if not e.loaded]
        if failed:
            self._set_condition(
                CONDITION,
                False,
                "CharonUnreachable" if "connect" in (failed[0].last_error or "") else "LoadFailed",
                failed[0].last_error or "not loaded",
            )
            self._arm_retry()
            return
        mn = self.mn_conn
        if mn is not None and mn.last_error is not None:
            self._set_condition(CONDITION, False, "InitiateFailed", mn.last_error)
            return
        n = len(self.conns)
        self._set_condition(
            CONDITION, True, "Loaded", f"{n} connection(s) loaded into charon at {self.socket_path}"
        )

    def _arm_retry(self) -> None:
        if self._retry is not None or self._closed:
            return
        aio = asyncio.get_running_loop()
        self._retry = aio.call_later(RELOAD_RETRY, lambda: self._spawn(self._retry_load()))

    async def _retry_load(self) -> None:
        self._retry = None
        async with self._lock:
            await self._load([e for e in self.conns.values() if not e.loaded])
            self._update_condition()
        mn = self.mn_conn
        if mn is not None and mn.loaded and self.care_of_address is not None and not mn.sas:
            self.moved(self.care_of_address, kernel_in_sync=True)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        async with self._lock:
            if self.config_error is None:
                await self._load(self.conns.values())
            self._update_condition()

    async def reload(self, cfg: Mip6Config, base: Path | None) -> None:
        """A new generation: load what changed, unload connections no longer wanted."""
        async with self._lock:
            self.base = base
            self._build(cfg)
            if self.config_error is None:
                await self._unload(self._gone)
                await self._load([e for e in self.conns.values() if not e.loaded])
            self._update_condition()

    async def close(self) -> None:
        """Stop (charon keeps its connections and SAs: a restart is hitless, as for XFRM)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    def _spawn(self, coro: Any) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("IKE task failed: %r", task.exception())

    # ----------------------------------------------------------------- movement (MN)

    def moved(self, event_or_coa: Any, kernel_in_sync: bool = True) -> None:
        """The mobile node is at a new care-of address and its kernel state is in place
        (`CareOfAddressChanged` or the address itself; `AtHome` and others are ignored:
        the transport_proxy SAs are between home address and HA, a de-registration
        uses them as they are)."""
        coa = event_or_coa
        if not isinstance(coa, IPv6Address):
            coa = getattr(event_or_coa, "care_of_address", None)
        if not isinstance(coa, IPv6Address) or self.cfg.node.role != Role.MN:
            return
        if not kernel_in_sync:
            log.warning("IKE: kernel state for %s not confirmed; bringing IKE up anyway", coa)
        self._spawn(self._move(coa))

    async def _move(self, coa: IPv6Address) -> None:
        async with self._lock:
            previous = self.care_of_address
            self.care_of_address = coa
            entry = self.mn_conn
            if entry is None:
                return
            entry.conn = replace(entry.conn, care_of_address=coa, local_addrs=(str(coa),))
            t0 = self.clock()
            # only tunnel-mode policies are migrated: a transport-only template's move
            # sends no MIGRATE that charon could follow
            tunnelled = entry.conn.child(swanctl.CHILD_TUNNEL) is not None
            try:
                sas = await self._list(entry.conn.name)
                up = [s for s in sas if s.state == "ESTABLISHED"]
                if up and up[0].local_host == str(coa):
                    # with MIGRATE the executor's message usually got there first
                    moved = previous is not None and previous != coa
                    how = "migrated (charon followed the MIGRATE)" if moved else "established"
                elif up and self.migrate and previous is not None and tunnelled:
                    how = await self._follow_migrate(entry, coa)
                elif up:
                    how = await self._reinitiate(entry, coa)
                else:
                    how = await self._initiate(entry)
            except RuntimeError as e:
                entry.last_error = str(e)
                log.error("IKE from %s failed: %s", coa, e)
                self._update_condition()
                return
            entry.last_error = None
            entry.last_move = {
                "at": round(time.time(), 3),
                "care_of_address": str(coa),
                "how": how,
                "ms": round((self.clock() - t0) * 1000, 1),
            }
            log.info("IKE at %s: %s in %.0f ms", coa, how, entry.last_move["ms"])
            await self._list(entry.conn.name)
            self._update_condition()
            if how.startswith("migrated") and entry.conn.child(swanctl.CHILD_MH) is not None:
                self._spawn(self._renew_mh(coa, t0))

    async def _renew_mh(self, coa: IPv6Address, t0: float) -> None:
        """charon followed the MIGRATE of the tunnel child only: re-create the mh child over
        the moved IKE_SA once the home registration at `coa` is done (docs/ike.md, limit 3)."""
        waited = await self._wait_registered(coa)
        if waited is None:
            return  # moved on meanwhile: that move renews it
        async with self._lock:
            entry = self.mn_conn
            if entry is None or self.care_of_address != coa:
                return
            name = entry.conn.name
            t1 = self.clock()
            try:
                r = await self._vici(
                    f"re-create {name}/{swanctl.CHILD_MH}",
                    lambda c: c.recreate_child(name, swanctl.CHILD_MH, timeout=INITIATE_TIMEOUT),
                    bound=INITIATE_TIMEOUT * 3 + VICI_TIMEOUT,
                )
            except RuntimeError as e:
                entry.last_error = f"mh child not re-created after the move to {coa}: {e}"
                log.error("IKE: %s", entry.last_error)
                self._update_condition()
                return
            entry.last_error = None
            renewed = {
                "how": "re-created over the moved IKE_SA",
                "old_child_ids": list(r.old_ids),
                "child_id": r.new.uniqueid,
                "spi_in": f"{r.new.spi_in:#x}",
                "spi_out": f"{r.new.spi_out:#x}",
                "registration_wait_ms": round(waited * 1000, 1),
                "ms": round((self.clock() - t1) * 1000, 1),
                "initiate_ms": round(r.initiate_s * 1000, 1),
                "terminate_ms": round(r.terminate_s * 1000, 1),
                "after_move_ms": round((self.clock() - t0) * 1000, 1),
            }
            if entry.last_move is not None and entry.last_move.get("care_of_address") == str(coa):
                entry.last_move["mh"] = renewed
            log.info(
                "IKE at %s: mh child re-created (#%s -> #%d, spi %s/%s) in %.0f ms "
                "(after %.0f ms waiting for the home registration)",
                coa,
                ",".join(map(str, r.old_ids)) or "-",
                r.new.uniqueid,
                renewed["spi_in"],
                renewed["spi_out"],
                renewed["ms"],
                renewed["registration_wait_ms"],
            )
            with contextlib.suppress(RuntimeError):
                await self._list(name)
            self._update_condition()

    async def _wait_registered(self, coa: IPv6Address) -> float | None:
        """Seconds until the home registration at `coa` is done (bounded: proceed after
        REGISTRATION_WAIT anyway); None when the node moved on meanwhile."""
        probe = self.registered_care_of
        t0 = self.clock()
        if probe is None:
            return 0.0
        deadline = t0 + REGISTRATION_WAIT
        while self.care_of_address == coa and not self._closed:
            try:
                if probe() == coa:
                    return self.clock() - t0
            except Exception:  # a probe that breaks must not keep the child stale
                log.exception("IKE: home registration probe failed")
                return self.clock() - t0
            if self.clock() >= deadline:
                log.warning(
                    "IKE: no home registration at %s in %.0f s: re-creating the mh child anyway",
                    coa,
                    REGISTRATION_WAIT,
                )
                return self.clock() - t0
            await asyncio.sleep(0.05)
        return None

    async def _list(self, name: str) -> list[IkeSaInfo]:
        sas = await self._vici(f"list-sas {name}", lambda c: c.list_sas(name), bound=VICI_TIMEOUT)
        entry = self.conns.get(name)
        if entry is not None:
            entry.sas, entry.sas_at = tuple(sas), self.clock()
        return list(sas)

    async def _initiate(self, entry: _Conn) -> str:
        """Load the connection at the care-of address and bring every child up (bounded
        attempts; a half-made IKE_SA is terminated before the next)."""
        conn = entry.conn
        children = [c.name for c in conn.children]
        last: str = ""
        for attempt in range(1, INITIATE_ATTEMPTS + 1):
            try:
                await self._vici(
                    f"initiate {conn.name}",
                    lambda c: c.bring_up(conn, timeout=INITIATE_TIMEOUT),
                    bound=INITIATE_TIMEOUT * (len(children) + 1),
                )
                entry.loaded = True
                sas = await self._list(conn.name)
                if any(established(s, children) for s in sas):
                    return "initiated" if attempt == 1 else f"initiated (attempt {attempt})"
                last = f"not established after initiate: {[s.state for s in sas]}"
            except RuntimeError as e:
                last = str(e)
            log.warning("IKE: %s (attempt %d of %d)", last, attempt, INITIATE_ATTEMPTS)
            with contextlib.suppress(RuntimeError):
                await self._vici(
                    f"terminate {conn.name}",
                    lambda c: c.terminate(conn.name, timeout=5.0),
                    bound=VICI_TIMEOUT,
                )
            if attempt < INITIATE_ATTEMPTS:
                await asyncio.sleep(RETRY_DELAY)
        raise RuntimeError(last)

    async def _follow_migrate(self, entry: _Conn, coa: IPv6Address) -> str:
        """With MIGRATE the executor's XFRM_MSG_MIGRATE (KMADDRESS) moves charon's IKE_SA:
        wait for it (bounded); re-initiate when charon did not follow."""
        name = entry.conn.name
        deadline = self.clock() + MIGRATE_FOLLOW_WAIT
        while True:
            sas = await self._list(name)
            if any(s.state == "ESTABLISHED" and s.local_host == str(coa) for s in sas):
                return "migrated (charon followed the MIGRATE)"
            if self.clock() >= deadline:
                break
            await asyncio.sleep(0.1)
        log.warning(
            "IKE: charon's IKE_SA did not follow the MIGRATE to %s in %.0f s: re-initiating",
            coa,
            MIGRATE_FOLLOW_WAIT,
        )
        return await self._reinitiate(entry, coa) + " (MIGRATE not followed)"

    async def _reinitiate(self, entry: _Conn, coa: IPv6Address) -> str:
        conn = entry.conn
        r = await self._vici(
            f"re-initiate {conn.name}",
            lambda c: c.reinitiate(conn, coa, timeout=INITIATE_TIMEOUT),
            bound=INITIATE_TIMEOUT * (len(conn.children) + 2),
        )
        entry.loaded = True
        if r.sa is None or not established(r.sa, [c.name for c in conn.children]):
            raise RuntimeError(f"re-initiation from {coa}: IKE_SA not established")
        return f"re-initiated (new IKE_SA, {r.total_s * 1000:.0f} ms)"

    # ----------------------------------------------------------------- status

    async def rows(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The daemon's ``ipsec`` status rows with the ``ike`` field (`merge_status`)."""
        rows = list(rows)
        try:
            return merge_status(rows, await self.status())
        except Exception as e:  # status must answer whatever happens here
            log.exception("IKE status failed")
            return merge_status(rows, {r["home_address"]: {"state": None, "error": str(e)}
                                       for r in rows})  # fmt: skip

    async def status(self) -> dict[str, dict[str, Any]]:
        """Home address -> connection, charon's IKE_SAs (list-sas, bounded: the last
        snapshot, marked stale, when charon does not answer), last move, last error."""
        stale: str | None = None
        try:
            sas = await self._vici("list-sas", lambda c: c.list_sas(), bound=STATUS_WAIT)
        except RuntimeError as e:
            stale = str(e)
        else:
            now = self.clock()
            for entry in self.conns.values():
                entry.sas = tuple(s for s in sas if s.name == entry.conn.name)
                entry.sas_at = now
        out: dict[str, dict[str, Any]] = {}
        for entry in self.conns.values():
            c = entry.conn
            up = [s for s in entry.sas if s.state == "ESTABLISHED"]
            main = up[0] if up else (entry.sas[0] if entry.sas else None)
            out[str(c.home_address)] = {
                "connection": c.name,
                "role": c.role,
                "loaded": entry.loaded,
                "state": main.state if main is not None else None,
                "local_host": main.local_host if main is not None else None,
                "remote_host": main.remote_host if main is not None else None,
                "ike_spis": sa_status(main)["ike_spis"] if main is not None else None,
                "sas": [sa_status(s) for s in entry.sas],
                "reqids": c.reqids,
                "psk_fingerprint": c.psk_fingerprint,
                "care_of_address": str(self.care_of_address) if self.care_of_address else None,
                "last_move": entry.last_move,
                "last_error": entry.last_error,
                "stale": stale,
            }
        return out


def _registered_care_of(engine: Any) -> IPv6Address | None:
    """The care-of address the home agent accepted last, while the home registration is
    current (`mip6ctl.engine.mobile_node.MobileNode`; read only)."""
    mn = getattr(engine, "mn", None)
    if mn is None or getattr(mn, "state", None) != "registered":
        return None
    coa = getattr(mn, "registered_care_of", None)
    return coa if isinstance(coa, IPv6Address) else None


def _ha_address(daemon: Any) -> IPv6Address | None:
    cfg = daemon.cfg
    if cfg.node.role != Role.HA or cfg.ha is None:
        return None
    if cfg.ha.address is not None:
        return IPv6Address(str(cfg.ha.address))
    loop = getattr(daemon, "loop", None)
    if loop is None:
        return None
    from mip6ctl.state.render import home_agent_address

    return home_agent_address(cfg, loop.facts)
