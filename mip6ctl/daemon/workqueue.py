"""The reconcile machinery, controller-runtime's, for one process: keys, a work queue,
per-key backoff, key results and status conditions.

Nothing here knows what a key stands for or touches the kernel; the reconcile
loop (`daemon/reconcile_loop.py`) gives the keys their meaning (static,
binding, correspondent, mobile node) and the daemon its conditions.

*Work queue* (client-go's): a FIFO of keys plus a ``dirty`` set and a
``processing`` set.  A key queued twice before it is picked is reconciled
once; a key triggered while being reconciled is not handed out again until
that reconcile is done, then exactly once more.  Failed keys go to a delay
heap with per-key exponential backoff (`Backoff`).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "OK",
    "Backoff",
    "Condition",
    "KeyResult",
    "WorkQueue",
    "rfc3339",
    "set_condition",
]


@dataclass(frozen=True, slots=True)
class KeyResult:
    """What the last reconcile of a key did.  Truthy when the key is in sync."""

    ok: bool
    reason: str = "Reconciled"
    message: str = ""
    #: the loop retries this key with backoff (transient error, conflict, mismatch)
    retry: bool = False

    def __bool__(self) -> bool:
        return self.ok

    @property
    def definitive(self) -> bool:
        """Worth telling a waiter now: success, a terminal failure, or a conflict
        (a foreign object rarely goes away within a Binding Update's patience)."""
        return self.ok or not self.retry or self.reason == "Conflict"


OK = KeyResult(True)


class Backoff:
    """Per-key exponential backoff: base * factor**failures, capped (client-go's
    ItemExponentialFailureRateLimiter).  `forget` on success resets the key."""

    def __init__(self, base: float = 0.005, cap: float = 30.0, factor: float = 2.0) -> None:
        self.base, self.cap, self.factor = base, cap, factor
        self._failures: dict[Hashable, int] = {}

    def next_delay(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return min(self.cap, self.base * self.factor ** min(n, 64))

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """client-go's workqueue without threads: FIFO + dirty + processing + delay heap.

    Invariants: a key is in the FIFO at most once (iff dirty and not processing);
    a key being processed is never handed out again before `done`.  Times are
    passed in (`now`), so backoff is testable with a fake clock.
    """

    def __init__(self) -> None:
        self._fifo: deque[Hashable] = deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._tie = itertools.count()

    def add(self, key: Hashable) -> bool:
        """Queue `key` now; False when it was already waiting (coalesced)."""
        self._due.pop(key, None)  # an immediate add supersedes a pending retry
        if key in self._dirty:
            return False
        self._dirty.add(key)
        if key not in self._processing:
            self._fifo.append(key)
        return True

    def add_at(self, key: Hashable, due: float) -> None:
        """Queue `key` at time `due` (a retry); an earlier pending time wins."""
        if key in self._dirty:
            return
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._tie), key))

    def pop_ready(self, now: float, limit: int) -> list[Hashable]:
        """Hand out up to `limit` keys due by `now`; they are processing until `done`."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            due, _tie, key = heapq.heappop(delayed)
            if self._due.get(key) == due:  # else superseded (lazy deletion)
                del self._due[key]
                self.add(key)
        out = []
        fifo = self._fifo
        while fifo and len(out) < limit:
            key = fifo.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            out.append(key)
        return out

    def done(self, key: Hashable) -> None:
        """Processing of `key` ended; if it was triggered meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._fifo.append(key)

    def forget(self, key: Hashable) -> None:
        """Drop a pending retry of `key`."""
        self._due.pop(key, None)

    def next_due(self) -> float | None:
        """Earliest pending retry time (stale heap items only make it early)."""
        while self._delayed and self._due.get(self._delayed[0][2]) != self._delayed[0][0]:
            heapq.heappop(self._delayed)
        return self._delayed[0][0] if self._delayed else None

    def due_at(self, key: Hashable) -> float | None:
        return self._due.get(key)

    def ready(self) -> int:
        return len(self._fifo)

    def waiting(self) -> int:
        return len(self._due)

    def processing(self, key: Hashable) -> bool:
        return key in self._processing

    def pending(self, key: Hashable) -> bool:
        """Queued, being processed, or waiting for a retry."""
        return key in self._dirty or key in self._processing or key in self._due


@dataclass(frozen=True, slots=True)
class Condition:
    """A Kubernetes-style status condition; ``last_transition_time`` in wall-clock
    Unix seconds (None: never transitioned, e.g. a placeholder)."""

    type: str
    status: Literal["True", "False", "Unknown"] | str
    reason: str
    message: str = ""
    last_transition_time: float | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "last_transition_time": rfc3339(self.last_transition_time),
        }


_STATUSES = ("True", "False", "Unknown")


def set_condition(
    conditions: Iterable[Condition],
    type: str,
    status: str | bool | None,
    reason: str,
    message: str = "",
    now_wall: float | None = None,
) -> list[Condition]:
    """Conditions with ``type`` set; ``last_transition_time`` moves only when ``status`` changes.

    ``status`` may be a bool (True/False) or None (Unknown). Pure: returns a new list.
    """
    st = _status_text(status)
    now = time.time() if now_wall is None else now_wall
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type:
            out.append(c)
            continue
        found = True
        when = c.last_transition_time if c.status == st else now
        out.append(Condition(type, st, reason, message, when))
    if not found:
        out.append(Condition(type, st, reason, message, now))
    return out


def _status_text(status: str | bool | None) -> str:
    if status is None:
        return "Unknown"
    if isinstance(status, bool):
        return "True" if status else "False"
    if status not in _STATUSES:
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    return status


def rfc3339(wall: float | None) -> str | None:
    """Unix seconds → ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), None stays None."""
    if wall is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))
