"""The status document: what the daemon's ``status`` control method answers.

Why a pure builder: the daemon only gathers its state and calls
:func:`build_status`; the shape lives here, in one place, versioned and
tested, and ``mip6ctl status --json`` prints it as is (inside the usual
``{"version", "command", "changed", "ok"}`` envelope).

Schema, ``status_version`` 1
============================

Every key below is always present (null when it does not apply), keys keep
this order, lists are sorted (stable output, diffable between runs). Times
are RFC 3339 UTC strings (``2026-05-09T07:35:25Z``); durations are seconds.

``status_version``      int, 1; bumped on an incompatible change
``daemon_version``      mip6ctl version of the daemon
``role``                ``"ha"`` | ``"mn"`` | ``"cn"``
``node_name``           ``[node] name`` or the host name
``pid``                 daemon process id
``started_at``          time the daemon started
``uptime_s``            seconds since start (float, ms precision)
``generation``          content hash of the configuration in use (e.g. ``sha256:…``), or null
``generation_number``   int, +1 per configuration generation loaded, or null
``observed_generation`` the generation_number the kernel state and conditions
                        describe (== generation_number when converged), or null
``conditions``          list of {``type``, ``status`` ("True" | "False" |
                        "Unknown"), ``reason`` (CamelCase), ``message``,
                        ``last_transition_time``}; always ConfigValid,
                        KernelInSync, Ready first, in that order (missing ones
                        are reported Unknown / ``NotObserved``), then any other
                        type in name order; a home agent adds
                        ``BindingStoreHealthy`` (False, reason ``WriteFailed``,
                        the error in the message, while writes to the binding
                        cache file fail: BAs are withheld; True, ``Writable``)
``last_reconcile_time`` time of the last completed reconcile, or null
``counters``            {``bus_received``, ``bus_accepted``,
                        ``bus_rejected_by_status`` ({"129": n, …} by BA status
                        code, numeric order), ``bas_sent``, ``bes_sent``,
                        ``drift_repairs``, ``reconcile_failures``}: ints,
                        missing ones 0; extra counters follow in name order
``transport``           Mobility Header transport in use ("kernel", "userspace", …) or null
``tunnel_backend``      "ip6tnl" | "seg6" | … or null
``binding_cache``       {``count``, ``pending``, ``truncated``, ``rows``} for every
                        role (all answer as correspondents); ``pending`` counts
                        the home registrations not acknowledged yet (null when
                        not tracked); rows sorted by home address, at most
                        ``max_rows`` (default 1000) of them:
                        {``home_address``, ``care_of_address``, ``local_address``,
                        ``lifetime_s`` (granted), ``lifetime_left_s`` (int,
                        rounded down), ``sequence``, ``flags`` (BU flag letters
                        "AHLKMR" that are set, e.g. "AH"), ``home_registration``,
                        ``acknowledged`` (home registrations: true once the BA
                        accepting this very entry, same sequence number, went
                        out -- after its durable write -- or it was restored
                        from the binding cache file; false while the engine
                        holds it but the BA waits for DAD, the kernel or the
                        write, or was withheld because the write failed; null
                        for correspondent bindings and when not tracked),
                        ``age_s`` (since registration, int), ``mobile_network_prefixes``}
``binding_update_list`` mobile node only (else null): {``count``, ``rows``},
                        rows {``peer``, ``home_address``, ``care_of_address``,
                        ``state`` (home | registering | registered |
                        deregistering | failed), ``lifetime_left_s`` (int or
                        null), ``sequence``, ``retransmissions``, ``last_status``,
                        ``trigger`` (correspondents: "always" | "on-traffic";
                        null for the home agent)}
``return_routability``  mobile node only (else null): {``enabled``
                        (route optimisation configured), ``rows``}, rows
                        {``peer``, ``state``, ``home_token_age_s``,
                        ``care_of_token_age_s``, ``last_error``, ``retry_in_s``
                        (fallback: seconds until the next try, else null),
                        ``fallbacks`` (refusals in a row: the back-off's exponent)}
``mobile_router``       a mobile router only (else null): {``mode`` (explicit |
                        implicit), ``mobile_network_prefixes``, ``accepted``
                        (the home registration's BA had R = 1; null before one)}
``reconcile``           the reconcile loop's own detail (queue, failing keys),
                        passed through as given, or null
``ipsec``               one row per IPsec-protected mobile node (HA: every
                        listed node with a template; MN: itself): {``home_address``,
                        ``template``, ``key_management`` ("manual" | "ike"),
                        ``protect``, ``transport``/``tunnel`` (bool: BU/BA in
                        ESP transport mode, traffic in ESP tunnel mode), ``spi``
                        and ``tunnel_spi`` ({``to_ha``, ``to_mn``} hex or null),
                        ``fingerprints`` ({``encryption``, ``authentication``}
                        ``sha256:`` digests of the keys -- never the keys -- or
                        null), ``in_kernel`` (its transport-mode policies and SAs
                        are in the kernel as rendered), ``last_migration`` (null,
                        or {``at`` (wall-clock s), ``care_of_address``})}

A reader must ignore keys it does not know (new keys are not a version bump).
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from mip6ctl import __version__
from mip6ctl.daemon.workqueue import Condition, _status_text, rfc3339, set_condition

__all__ = [
    "CONDITION_TYPES",
    "COUNTERS",
    "DEFAULT_MAX_ROWS",
    "STATUS_VERSION",
    "STORE_CONDITION",
    "Acknowledgements",
    "Condition",
    "GenerationInfo",
    "build_status",
    "flag_letters",
    "rfc3339",
    "set_condition",
    "with_store_condition",
]

STATUS_VERSION = 1
#: Binding cache rows in a status document unless the caller asks otherwise: formatting
#: 100k rows takes ~1.4 s of the event loop and makes a 25 MB answer.
DEFAULT_MAX_ROWS = 1000
CONDITION_TYPES = ("ConfigValid", "KernelInSync", "Ready")
#: The home agent's condition for its binding cache file (see ``with_store_condition``).
STORE_CONDITION = "BindingStoreHealthy"
COUNTERS = (
    "bus_received",
    "bus_accepted",
    "bus_rejected_by_status",
    "bas_sent",
    "bes_sent",
    "drift_repairs",
    "reconcile_failures",
)
# BU flag bits, most significant first (RFC 6275 §6.1.7; M RFC 5380, R RFC 3963).
_FLAG_LETTERS = ((0x8000, "A"), (0x4000, "H"), (0x2000, "L"), (0x1000, "K"), (0x0800, "M"),
                 (0x0400, "R"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class GenerationInfo:
    """Which configuration the daemon runs and which one its status describes."""

    generation: str | None = None
    """Content hash of the configuration (e.g. ``sha256:…``)."""
    number: int | None = None
    """Counter bumped on each generation loaded."""
    observed: int | None = None
    """The ``number`` the kernel state / conditions were last computed for."""


class Acknowledgements:
    """Which home registrations have been acknowledged: (home address → sequence of the
    last BA with status < 128 sent for it), so ``status`` tells them from pending ones.

    The daemon calls :meth:`sent` for every accepting BA it sends (the engine
    emits it only after the binding's write committed, invariant 6) and
    :meth:`restored` for the bindings read back from the binding cache file
    (acknowledged before the restart). A binding is acknowledged when its
    sequence number is the acknowledged one: a refresh whose BA is still parked
    (DAD, kernel, write) or was withheld (the write failed) is pending, even
    though the engine already holds it. Entries of addresses no longer in
    ``alive`` (the engine's cache) are dropped now and then, so the map stays
    about as large as the cache.
    """

    __slots__ = ("_alive", "_limit", "_seq")

    def __init__(self, alive: Container[Any] = ()) -> None:
        self._seq: dict[Any, int] = {}
        self._alive = alive
        self._limit = 1024

    def __len__(self) -> int:
        return len(self._seq)

    def sent(self, send: Any) -> None:
        """A ``Send`` of an accepting BA (to the care-of address, type 2 RH = home address)."""
        ba = send.message
        rh = send.routing_header_address
        hoa = send.dst if rh is None else rh
        if ba.lifetime == 0:  # de-registration: nothing left to acknowledge
            self._seq.pop(hoa, None)
            return
        self._seq[hoa] = ba.sequence
        if len(self._seq) > self._limit:
            alive = self._alive
            self._seq = {a: n for a, n in self._seq.items() if a in alive}
            self._limit = max(1024, 2 * len(self._seq))

    def restored(self, bindings: Iterable[Any], alive: Container[Any] | None = None) -> None:
        """Bindings read back from disk were acknowledged before the restart."""
        if alive is not None:
            self._alive = alive
        for b in bindings:
            if b.home_registration:
                self._seq[b.home_address] = b.sequence

    def __call__(self, b: Any) -> bool:
        """Whether ``b`` (a home registration) is the acknowledged entry."""
        return self._seq.get(b.home_address) == b.sequence


def with_store_condition(
    conditions: Iterable[Condition], store: Any, now_wall: float | None = None
) -> list[Condition]:
    """``conditions`` with ``BindingStoreHealthy`` from a binding store's health.

    ``store`` has ``healthy``, ``last_error``, ``write_failures``, ``path`` and
    ``health_changed_at`` (wall clock; the transition time, so the condition
    says when writes started failing, not when somebody asked).
    """
    healthy = bool(getattr(store, "healthy", True))
    error = getattr(store, "last_error", None)
    when = getattr(store, "health_changed_at", None) if now_wall is None else now_wall
    if healthy:
        reason = "Writable"
        message = f"recovered; the last failed write: {error}" if error else ""
    else:
        n = int(getattr(store, "write_failures", 0) or 0)
        reason = "WriteFailed"
        message = (
            f"{getattr(store, 'path', 'binding cache')}: {error or 'write failed'} "
            f"({n} failed write{'s' if n != 1 else ''}); Binding Acknowledgements are "
            "withheld until a write succeeds"
        )
    return set_condition(conditions, STORE_CONDITION, healthy, reason, message, now_wall=when)


def flag_letters(flags: int) -> str:
    """BU flags as letters, e.g. ``0xC000`` → ``"AH"``."""
    return "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _seconds(x: float | None) -> int | None:
    return None if x is None else max(0, int(x))


def _condition_doc(c: Any) -> dict[str, Any]:
    when = _get(c, "last_transition_time")
    if isinstance(when, (int, float)):
        when = rfc3339(float(when))
    status = _get(c, "status")
    return {
        "type": str(_get(c, "type")),
        "status": _status_text(status if isinstance(status, (bool, type(None))) else str(status)),
        "reason": str(_get(c, "reason", "") or ""),
        "message": str(_get(c, "message", "") or ""),
        "last_transition_time": when,
    }


def _conditions(conditions: Iterable[Any]) -> list[dict[str, Any]]:
    by_type = {str(_get(c, "type")): _condition_doc(c) for c in conditions}
    out = []
    for t in CONDITION_TYPES:
        out.append(
            by_type.pop(t, None)
            or {
                "type": t,
                "status": "Unknown",
                "reason": "NotObserved",
                "message": "not evaluated yet",
                "last_transition_time": None,
            }
        )
    out.extend(by_type[t] for t in sorted(by_type))
    return out


def _counters(counters: Mapping[str, Any]) -> dict[str, Any]:
    rejected = counters.get("bus_rejected_by_status") or {}
    out: dict[str, Any] = {}
    for name in COUNTERS:
        if name == "bus_rejected_by_status":
            ordered = sorted(rejected.items(), key=lambda kv: int(kv[0]))
            out[name] = {str(k): int(v) for k, v in ordered}
        else:
            out[name] = int(counters.get(name, 0))
    for name in sorted(set(counters) - set(COUNTERS)):
        out[name] = counters[name]
    return out


def _address_key(b: Any) -> int:
    a = b.home_address
    return int(a) if isinstance(a, IPv6Address) else int(IPv6Address(a))


def _binding_row(
    b: Any, now: float, acknowledged: Callable[[Any], bool] | None = None
) -> dict[str, Any]:
    home = bool(b.home_registration)
    return {
        "home_address": str(b.home_address),
        "care_of_address": str(b.care_of_address),
        "local_address": str(b.local_address),
        "lifetime_s": int(b.lifetime),
        "lifetime_left_s": _seconds(b.expires_at - now),
        "sequence": int(b.sequence),
        "flags": flag_letters(int(b.flags)),
        "home_registration": home,
        "acknowledged": acknowledged(b) if home and acknowledged is not None else None,
        "age_s": _seconds(now - b.registered_at),
        "mobile_network_prefixes": [str(p) for p in b.mobile_network_prefixes],
    }


def _bul_row(e: Any, now: float) -> dict[str, Any]:
    peer = _get(e, "peer") or _get(e, "home_agent")
    expires = _get(e, "expires_at")
    coa = _get(e, "care_of_address")
    hoa = _get(e, "home_address")
    last_status = _get(e, "last_status")
    return {
        "peer": None if peer is None else str(peer),
        "home_address": None if hoa is None else str(hoa),
        "care_of_address": None if coa is None else str(coa),
        "state": str(_get(e, "state", "unknown")),
        "lifetime_left_s": None if expires is None else _seconds(expires - now),
        "sequence": int(_get(e, "sequence", 0)),
        "retransmissions": int(_get(e, "retransmissions", None) or _get(e, "resends", 0) or 0),
        "last_status": None if last_status is None else int(last_status),
        "trigger": _get(e, "trigger"),
    }


def _mobile_router_doc(mn: Any, bul: Iterable[Any]) -> dict[str, Any] | None:
    """RFC 3963: what this mobile router registers, and whether its home agent took it."""
    if mn is None or not getattr(mn, "mobile_router", False):
        return None
    accepted = None
    for e in bul:
        if _get(e, "mobile_router_accepted") is not None:
            accepted = bool(_get(e, "mobile_router_accepted"))
    return {
        "mode": "explicit" if mn.explicit_mode else "implicit",
        "mobile_network_prefixes": [str(p) for p in mn.mobile_network_prefixes],
        "accepted": accepted,
    }


def _rr_row(r: Any) -> dict[str, Any]:
    peer = _get(r, "peer")
    return {
        "peer": None if peer is None else str(peer),
        "state": str(_get(r, "state", "unknown")),
        "home_token_age_s": _seconds(_get(r, "home_token_age_s")),
        "care_of_token_age_s": _seconds(_get(r, "care_of_token_age_s")),
        "last_error": _get(r, "last_error"),
        "retry_in_s": _seconds(_get(r, "retry_in_s")),
        "fallbacks": int(_get(r, "fallbacks", 0) or 0),
    }


def build_status(
    role: str,
    cfg: Any,
    generation: GenerationInfo,
    conditions: Iterable[Any],
    counters: Mapping[str, Any],
    bindings: Iterable[Any],
    bul: Iterable[Any],
    now: float,
    *,
    started_at: float,
    last_reconcile: float | None = None,
    transport: str | None = None,
    tunnel_backend: str | None = None,
    return_routability: Iterable[Any] = (),
    now_wall: float | None = None,
    pid: int | None = None,
    max_rows: int | None = DEFAULT_MAX_ROWS,
    reconcile: Mapping[str, Any] | None = None,
    acknowledged: Callable[[Any], bool] | None = None,
    ipsec: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The status document (schema in the module docstring) from the daemon's state.

    Times ``now``, ``started_at``, ``last_reconcile`` and the bindings' and BUL
    entries' times are the engine's monotonic clock; ``now_wall`` (default
    ``time.time()``) is the same instant in wall-clock time, used to print
    absolute times. ``conditions`` are :class:`Condition` objects or mappings
    with the same keys (``last_transition_time`` wall-clock seconds or an
    RFC 3339 string). ``bindings`` are engine ``Binding`` objects; ``bul``
    entries are objects or mappings with ``peer`` (or ``home_agent``),
    ``home_address``, ``care_of_address``, ``state``, ``expires_at``,
    ``sequence``, ``retransmissions`` (or ``resends``), ``last_status`` — the
    engine's ``MobileNode`` fits. ``max_rows`` caps the binding cache rows at
    the lowest home addresses (``truncated`` says so; ``count`` stays the
    total; None: all rows). ``reconcile`` (e.g.
    the reconcile loop's ``status()``) is included as is. ``acknowledged(b)``
    (e.g. :class:`Acknowledgements`) says whether a home registration's BA
    went out; without it those fields are null.
    """
    role = str(getattr(role, "value", role))
    wall = time.time() if now_wall is None else now_wall
    mono_to_wall = wall - now
    node = getattr(cfg, "node", None)
    name = getattr(node, "name", None) or os.uname().nodename

    chosen = list(bindings)
    count = len(chosen)
    pending = None
    if acknowledged is not None:
        pending = sum(1 for b in chosen if b.home_registration and not acknowledged(b))
    truncated = max_rows is not None and count > max_rows
    if truncated:
        assert max_rows is not None
        chosen = heapq.nsmallest(max_rows, chosen, key=_address_key)
    else:
        chosen.sort(key=_address_key)
    rows = [_binding_row(b, now, acknowledged) for b in chosen]

    bul_doc = rr_doc = router_doc = None
    if role == "mn":
        router_doc = _mobile_router_doc(getattr(cfg, "mn", None), bul)
        bul_rows = sorted(
            (_bul_row(e, now) for e in bul),
            key=lambda r: (r["peer"] or "", r["home_address"] or ""),
        )
        bul_doc = {"count": len(bul_rows), "rows": bul_rows}
        mn = getattr(cfg, "mn", None)
        rr_rows = sorted((_rr_row(r) for r in return_routability), key=lambda r: r["peer"] or "")
        rr_doc = {"enabled": bool(getattr(mn, "route_optimization", False)), "rows": rr_rows}

    return {
        "status_version": STATUS_VERSION,
        "daemon_version": __version__,
        "role": role,
        "node_name": name,
        "pid": os.getpid() if pid is None else pid,
        "started_at": rfc3339(started_at + mono_to_wall),
        "uptime_s": round(max(0.0, now - started_at), 3),
        "generation": generation.generation,
        "generation_number": generation.number,
        "observed_generation": generation.observed,
        "conditions": _conditions(conditions),
        "last_reconcile_time": None
        if last_reconcile is None
        else rfc3339(last_reconcile + mono_to_wall),
        "counters": _counters(counters),
        "transport": transport,
        "tunnel_backend": tunnel_backend,
        "binding_cache": {
            "count": count,
            "pending": pending,
            "truncated": truncated,
            "rows": rows,
        },
        "binding_update_list": bul_doc,
        "return_routability": rr_doc,
        "mobile_router": router_doc,
        "reconcile": None if reconcile is None else dict(reconcile),
        "ipsec": [dict(r) for r in ipsec],
    }
