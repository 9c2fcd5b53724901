"""A small driver for strongSwan's charon over VICI (the ``vici`` package, imported lazily).

Blocking and bounded: every call waits at most ``timeout`` seconds (the
socket's timeout; ``initiate``/``terminate`` also pass it to charon, in ms).
Run it off the event loop (``asyncio.to_thread``) from the daemon.

What mip6ctl needs and nothing more:

* `Charon.load` -- ``load-shared`` (the PSK) + ``load-conn``;
* `Charon.initiate` / `Charon.terminate` -- bring CHILD_SAs up, tear an IKE_SA down;
* `Charon.list_sas` -- typed IKE_SA/CHILD_SA snapshots (SPIs, hosts, reqids);
* `Charon.reinitiate` -- the movement fallback where the kernel has no
  ``CONFIG_XFRM_MIGRATE``: terminate the IKE_SA and initiate it again from the
  new care-of address (a full IKE exchange; the K flag is 0);
* `Charon.recreate_child` -- a CHILD_SA deleted by its unique id and made
  again over the existing IKE_SA (CREATE_CHILD_SA, no IKE_SA_INIT): after a
  tunnel MIGRATE charon no longer finds the transport_proxy child for a rekey
  (docs/ike.md, limit 3); the new one is registered at the IKE_SA's current
  address.

Key material goes to charon only through `IkeConnection.vici_shared`; nothing
here logs or returns it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from typing import Any

from mip6ctl.ike.swanctl import IkeConnection

DEFAULT_SOCKET = "/var/run/charon.vici"


class ViciError(RuntimeError):
    """charon refused a command, or the VICI socket failed / timed out."""


def _s(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)


def _list(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, list):
        return tuple(_s(x) for x in v)
    return (_s(v),)


def _hex(v: Any) -> int:
    s = _s(v)
    return int(s, 16) if s else 0


@dataclass(frozen=True, slots=True)
class ChildSaInfo:
    name: str
    uniqueid: int
    state: str  # INSTALLED, REKEYING, ...
    mode: str  # TUNNEL, TRANSPORT, ...
    protocol: str
    reqid: int
    spi_in: int
    spi_out: int
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    install_time: int


@dataclass(frozen=True, slots=True)
class IkeSaInfo:
    name: str  # connection name
    uniqueid: int
    state: str  # ESTABLISHED, CONNECTING, ...
    local_host: str
    remote_host: str
    local_id: str
    remote_id: str
    initiator: bool
    initiator_spi: int
    responder_spi: int
    established: int  # seconds since establishment
    children: tuple[ChildSaInfo, ...]

    @property
    def spis(self) -> tuple[int, int]:
        """(initiator SPI, responder SPI): the IKE_SA's identity; new ones = new IKE_SA_INIT."""
        return (self.initiator_spi, self.responder_spi)

    def child(self, name: str) -> ChildSaInfo | None:
        return next((c for c in self.children if c.name == name), None)


def _child(d: dict[str, Any]) -> ChildSaInfo:
    return ChildSaInfo(
        name=_s(d.get("name")),
        uniqueid=int(_s(d.get("uniqueid")) or 0),
        state=_s(d.get("state")),
        mode=_s(d.get("mode")),
        protocol=_s(d.get("protocol")),
        reqid=int(_s(d.get("reqid")) or 0),
        spi_in=_hex(d.get("spi-in")),
        spi_out=_hex(d.get("spi-out")),
        local_ts=_list(d.get("local-ts")),
        remote_ts=_list(d.get("remote-ts")),
        install_time=int(_s(d.get("install-time")) or 0),
    )


def parse_list_sa(event: dict[str, Any]) -> list[IkeSaInfo]:
    """One ``list-sa`` event ({conn name: {...}}) -> IkeSaInfo (pure, for tests)."""
    out = []
    for name, d in event.items():
        children = d.get("child-sas") or {}
        out.append(
            IkeSaInfo(
                name=_s(name),
                uniqueid=int(_s(d.get("uniqueid")) or 0),
                state=_s(d.get("state")),
                local_host=_s(d.get("local-host")),
                remote_host=_s(d.get("remote-host")),
                local_id=_s(d.get("local-id")),
                remote_id=_s(d.get("remote-id")),
                initiator=_s(d.get("initiator")) == "yes",
                initiator_spi=_hex(d.get("initiator-spi")),
                responder_spi=_hex(d.get("responder-spi")),
                established=int(_s(d.get("established")) or 0),
                children=tuple(_child(c) for c in children.values()),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Recreated:
    """What `Charon.recreate_child` did (seconds, monotonic clock)."""

    child: str
    old_ids: tuple[int, ...]  # CHILD_SA unique ids deleted
    new: ChildSaInfo
    ike_spis: tuple[int, int]  # unchanged: the same IKE_SA
    terminate_s: float  # the old child's DELETE (from here on the kernel has no such SA)
    initiate_s: float  # CREATE_CHILD_SA until the new one is installed
    total_s: float
    log: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reinitiated:
    """What `Charon.reinitiate` did, with its timings (seconds, monotonic clock)."""

    terminate_s: float
    load_s: float
    initiate_s: float
    total_s: float
    sa: IkeSaInfo | None
    log: tuple[str, ...]


class Charon:
    """A VICI session with one charon (its socket path: ``charon.plugins.vici.socket``)."""

    def __init__(self, path: str = DEFAULT_SOCKET, *, timeout: float = 10.0) -> None:
        try:
            import vici  # lazy: only IKE users pay for it
        except ImportError as e:  # pragma: no cover - a dependency of the project
            raise ViciError("the 'vici' package is not installed (pip install vici)") from e
        self._vici = vici
        self.path = path
        self.timeout = timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise ViciError(f"cannot connect to charon's VICI socket {path}: {e}") from e
        self._sock = sock
        self._session = vici.Session(sock=sock)

    # -- plumbing --

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Charon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (self._vici.exception.CommandException, self._vici.exception.SessionException) as e:
            raise ViciError(f"{what}: {e}") from None
        except OSError as e:  # socket.timeout included
            raise ViciError(f"{what}: VICI socket {self.path}: {e}") from None

    def _stream(self, what: str, gen: Any) -> list[str]:
        """Drain a streamed command's control-log events into lines."""
        lines: list[str] = []

        def drain() -> None:
            for ev in gen:
                lines.append(_s(ev.get("msg")))

        try:
            self._call(what, drain)
        except ViciError as e:
            tail = "; ".join(lines[-5:])
            raise ViciError(f"{e}{' -- ' + tail if tail else ''}") from None
        return lines

    # -- commands --

    def version(self) -> dict[str, str]:
        return {k: _s(v) for k, v in self._call("version", self._session.version).items()}

    def load(self, conn: IkeConnection) -> None:
        """Load the connection's PSK and the connection (replacing one of that name)."""
        self._call(f"load-shared {conn.shared_id}", self._session.load_shared, conn.vici_shared())
        self._call(f"load-conn {conn.name}", self._session.load_conn, conn.vici_conn())

    def unload(self, conn: IkeConnection | str) -> None:
        name = conn if isinstance(conn, str) else conn.name
        self._call(f"unload-conn {name}", self._session.unload_conn, {"name": name})
        if not isinstance(conn, str):
            self._call(
                f"unload-shared {conn.shared_id}",
                self._session.unload_shared,
                {"id": conn.shared_id},
            )

    def initiate(self, conn: str, child: str, *, timeout: float | None = None) -> list[str]:
        """Bring `child` of `conn` up (creating the IKE_SA first when there is none)."""
        t = self.timeout if timeout is None else timeout
        msg = {
            "ike": conn,
            "child": child,
            "timeout": str(int(t * 1000)),
            "init-limits": "no",
            "loglevel": "1",
        }
        return self._stream(f"initiate {conn}/{child}", self._session.initiate(msg))

    def terminate(
        self,
        conn: str | None = None,
        *,
        ike_id: int | None = None,
        force: bool = True,
        timeout: float | None = None,
    ) -> list[str]:
        """Delete the IKE_SA(s) of `conn` (or one by unique id), their CHILD_SAs with them.

        ``force`` does not wait for the peer's answer past `timeout` (the old
        care-of address may already be gone)."""
        t = self.timeout if timeout is None else timeout
        msg: dict[str, str] = {"timeout": str(int(t * 1000)), "loglevel": "1"}
        if ike_id is not None:
            msg["ike-id"] = str(ike_id)
        elif conn is not None:
            msg["ike"] = conn
        else:
            raise ValueError("terminate: name a connection or an IKE_SA id")
        if force:
            msg["force"] = "yes"
        return self._stream(f"terminate {conn or ike_id}", self._session.terminate(msg))

    def terminate_child(self, child_id: int, *, timeout: float | None = None) -> list[str]:
        """Delete one CHILD_SA by its unique id (an INFORMATIONAL DELETE to the peer)."""
        t = self.timeout if timeout is None else timeout
        msg = {"child-id": str(child_id), "timeout": str(int(t * 1000)), "loglevel": "1"}
        return self._stream(f"terminate CHILD_SA #{child_id}", self._session.terminate(msg))

    def recreate_child(self, conn: str, child: str, *, timeout: float | None = None) -> Recreated:
        """`child` of the established IKE_SA of `conn` deleted by its unique id, then
        initiated again over the same IKE_SA (one CREATE_CHILD_SA, the child's fixed
        reqid; no IKE_SA_INIT).

        Break before make: charon 5.9.8 refuses to initiate a CHILD_SA while an
        installed one of the same config and reqid exists ("not establishing
        CHILD_SA ... due to existing duplicate"), and a rekey cannot be asked for
        a child charon no longer finds (docs/ike.md, limit 3).  ``initiate``
        reuses the IKE_SA as long as the connection was not loaded again since
        it was made (charon's ``checkout_by_config`` compares the configs).
        `ViciError` when there is no such IKE_SA, or when no new CHILD_SA is
        installed on it (two initiate attempts) or it landed on another IKE_SA."""
        t0 = time.monotonic()
        first = self.list_sas(conn)
        known = {s.uniqueid for s in first}
        up = [s for s in first if s.state == "ESTABLISHED"]
        if not up:
            raise ViciError(f"re-create {conn}/{child}: no established IKE_SA")
        ike = up[0]
        old = tuple(c.uniqueid for c in ike.children if c.name == child)
        log: list[str] = []
        for uid in old:
            log += self.terminate_child(uid, timeout=timeout)
        t1 = time.monotonic()
        new: list[ChildSaInfo] = []
        for attempt in (1, 2):
            try:
                log += self.initiate(conn, child, timeout=timeout)
            except ViciError:
                if attempt == 2:
                    raise
                continue
            every = self.list_sas(conn)
            others = sorted(s.uniqueid for s in every if s.uniqueid not in known)
            if others:
                raise ViciError(
                    f"re-create {conn}/{child}: charon made it on another IKE_SA {others}"
                    f" (not #{ike.uniqueid}; was the connection loaded again?)"
                )
            sas = [s for s in every if s.uniqueid == ike.uniqueid]
            if not sas or sas[0].spis != ike.spis:
                raise ViciError(f"re-create {conn}/{child}: the IKE_SA #{ike.uniqueid} is gone")
            new = [c for c in sas[0].children if c.name == child and c.state == "INSTALLED"]
            new = [c for c in new if c.uniqueid not in old]
            if new:
                break
        if not new:
            raise ViciError(f"re-create {conn}/{child}: no new CHILD_SA installed")
        t2 = time.monotonic()
        return Recreated(
            child=child,
            old_ids=old,
            new=new[-1],
            ike_spis=ike.spis,
            terminate_s=t1 - t0,
            initiate_s=t2 - t1,
            total_s=t2 - t0,
            log=tuple(log),
        )

    def rekey_child(self, conn: str, child: str) -> None:
        self._call(f"rekey {conn}/{child}", self._session.rekey, {"child": child, "ike": conn})

    def list_sas(self, conn: str | None = None) -> list[IkeSaInfo]:
        flt = {"ike": conn} if conn else None
        events = self._call("list-sas", lambda: list(self._session.list_sas(flt)))
        out: list[IkeSaInfo] = []
        for ev in events:
            out.extend(parse_list_sa(ev))
        return out

    def wait_sa(
        self,
        conn: str,
        predicate: Any,
        *,
        timeout: float | None = None,
        interval: float = 0.1,
    ) -> IkeSaInfo | None:
        """Poll list-sas until an IKE_SA of `conn` satisfies `predicate` (bounded)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for sa in self.list_sas(conn):
                if predicate(sa):
                    return sa
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval)

    def bring_up(self, conn: IkeConnection, *, timeout: float | None = None) -> list[str]:
        """Load `conn` and initiate every child (the first creates the IKE_SA)."""
        self.load(conn)
        log: list[str] = []
        for c in conn.children:
            log += self.initiate(conn.name, c.name, timeout=timeout)
        return log

    def reinitiate(
        self,
        conn: IkeConnection,
        care_of_address: IPv6Address | str,
        *,
        timeout: float | None = None,
    ) -> Reinitiated:
        """The fallback without MIGRATE: terminate, reload from the new CoA, initiate again.

        Returns the new IKE_SA (its SPIs differ: a full IKE_SA_INIT + IKE_AUTH)
        and how long each step took."""
        t0 = time.monotonic()
        log: list[str] = []
        if self.list_sas(conn.name):
            log += self.terminate(conn.name, timeout=timeout)
        t1 = time.monotonic()
        moved = replace(
            conn,
            care_of_address=IPv6Address(str(care_of_address)),
            local_addrs=(str(IPv6Address(str(care_of_address))),),
        )
        self.load(moved)
        t2 = time.monotonic()
        for c in moved.children:
            log += self.initiate(moved.name, c.name, timeout=timeout)
        t3 = time.monotonic()
        sas = self.list_sas(moved.name)
        return Reinitiated(
            terminate_s=t1 - t0,
            load_s=t2 - t1,
            initiate_s=t3 - t2,
            total_s=t3 - t0,
            sa=sas[0] if sas else None,
            log=tuple(log),
        )


def established(sa: IkeSaInfo, children: Iterable[str] = ()) -> bool:
    """IKE_SA established and every named CHILD_SA installed."""
    if sa.state != "ESTABLISHED":
        return False
    installed = {c.name for c in sa.children if c.state == "INSTALLED"}
    return all(name in installed for name in children)
