"""Hot reload: watch the configuration directory and call the daemon's ``reload()``.

Why this shape (DECLARATIVE-ANCHORS §2(b)5, DESIGN invariant 5):

* Files arrive in several ways: Ansible and most tools write a hidden temporary
  file and rename it over the real one (``IN_MOVED_TO``), editors write in
  place (one or many ``IN_MODIFY`` then ``IN_CLOSE_WRITE``), people add and
  delete files.  Every one of them is "the directory may have changed".
* A burst of events is one change: reload only once nothing happened for
  ``debounce`` seconds, but never later than ``max_delay`` after the first
  event, so that a steady stream of writes is still applied within about a
  second.
* One reload runs at a time.  Events during a reload set a dirty flag; when it
  ends the watcher reloads once more.  A thousand edits make a handful of
  reloads, never two at once.
* Only files the loader reads count (``config_files()``' rule: ``*.toml``, not
  hidden), so an editor's ``.x.toml.swp`` or ``x.toml~`` or Ansible's
  ``.ansible_tmp…x.toml`` triggers nothing by itself.
* Before calling back, the watcher hashes the directory exactly the way the
  loader computes ``Generation.digest``; when it did not change (``touch``,
  a rewrite with the same bytes, a file written and removed again) there is no
  reload.  Whether the new content is *valid* is the daemon's business: its
  ``reload()`` keeps the last good generation when it is not.

watchdog calls the handler in its observer thread; everything else runs in the
daemon's event loop (``loop.call_soon_threadsafe``), so no state is shared
between threads except through that call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from mip6ctl.config.loader import DirectoryDigest, config_files

__all__ = ["ConfigWatcher", "WatchStats", "directory_digest", "is_config_name"]

log = logging.getLogger("mip6ctl.daemon.watch")

#: Event kinds that can change what the loader reads.  Opened / closed-without-write
#: are left out on purpose: the watcher's own hashing and the loader open the files,
#: and listening to that would wake the watcher up after every reload.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileClosedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
#: How often to look for the directory again after it was deleted.
_REARM_INTERVAL = 1.0


def is_config_name(name: str) -> bool:
    """True for a file name the loader would read (same rule as ``config_files()``)."""
    return name.endswith(".toml") and not name.startswith(".")


def directory_digest(directory: Path) -> str:
    """The loader's ``Generation.digest`` of ``directory``, without parsing anything.

    A file that cannot be read hashes as a marker, so that "unreadable" differs
    from both "absent" and any content.
    """
    whole = DirectoryDigest()
    for path in config_files(directory) if directory.is_dir() else []:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raw = f"\0unreadable: {e.errno}".encode()
        whole.add(path.name, raw)
    return whole.hexdigest()


@dataclass(slots=True)
class WatchStats:
    """Counters for status and metrics."""

    events: int = 0
    """file system events that concern configuration files"""
    ignored: int = 0
    """events for other files (hidden, backups, other suffixes)"""
    checks: int = 0
    """debounced content checks (each hashes the directory)"""
    reloads: int = 0
    """calls of the reload callback"""
    unchanged: int = 0
    """checks that found the same content hash: no reload"""
    failures: int = 0
    """reload callbacks that raised"""

    def as_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "ignored": self.ignored,
            "checks": self.checks,
            "reloads": self.reloads,
            "unchanged": self.unchanged,
            "failures": self.failures,
        }


class _Handler(FileSystemEventHandler):
    """Runs in watchdog's observer thread: filter, then hand over to the event loop."""

    def __init__(self, watcher: ConfigWatcher) -> None:
        self._w = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        w = self._w
        directory = w.directory_str
        if event.is_directory:
            if event.event_type in ("deleted", "moved") and _fs(event.src_path) == directory:
                w._threadsafe(w._on_directory_gone)
            return
        for p in (event.src_path, getattr(event, "dest_path", "")):
            path = _fs(p)
            if (
                path
                and os.path.dirname(path) == directory
                and is_config_name(os.path.basename(path))
            ):
                w._threadsafe(w._on_event)
                return
        w._threadsafe(w._on_ignored)


def _fs(p: str | bytes) -> str:
    return os.fsdecode(p) if p else ""


class ConfigWatcher:
    """Debounced, coalesced, content-checked reloads of one configuration directory.

    ``on_change`` is awaited in ``loop``; it is never running twice at once.
    ``initial_digest`` is the digest of the generation the daemon runs
    (``Generation.digest``); when the directory already differs at
    :meth:`start`, a reload follows at once, so nothing written between the
    daemon's load and the watcher's start is lost.
    """

    def __init__(
        self,
        directory: str | Path,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[], Awaitable[Any]],
        *,
        debounce: float = 0.15,
        max_delay: float = 1.0,
        initial_digest: str | None = None,
    ) -> None:
        if debounce < 0 or max_delay < debounce:
            raise ValueError("need 0 <= debounce <= max_delay")
        self.directory = Path(directory).absolute()
        self.directory_str = str(self.directory)
        self.loop = loop
        self.on_change = on_change
        self.debounce = debounce
        self.max_delay = max_delay
        self.stats = WatchStats()
        self.digest = initial_digest
        self._observer: Any = None
        self._watch: Any = None
        self._first: float | None = None  # loop time of the first event of a burst
        self._last = 0.0  # loop time of the latest event
        self._timer: asyncio.TimerHandle | None = None
        self._rearm: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._stopped = True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start watching, from the loop's thread.  OSError if the directory is gone."""
        if not self._stopped:
            return
        self._stopped = False
        self._observer = Observer()
        self._observer.daemon = True
        self._schedule()
        self._observer.start()
        if self.digest is None:
            self.digest = directory_digest(self.directory)
        else:  # changed between the daemon's load and now: check at once
            self._on_event()

    def stop(self) -> None:
        """Stop watching; a reload in flight is cancelled.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for handle in (self._timer, self._rearm):
            if handle is not None:
                handle.cancel()
        self._timer = self._rearm = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    @property
    def running(self) -> bool:
        """A reload callback is in flight."""
        return self._task is not None and not self._task.done()

    def _schedule(self) -> None:
        self._watch = self._observer.schedule(
            _Handler(self), self.directory_str, recursive=False, event_filter=_EVENT_FILTER
        )

    # ------------------------------------------------------------------ from the observer thread

    def _threadsafe(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self.loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------------ in the event loop

    def _on_ignored(self) -> None:
        self.stats.ignored += 1

    def _on_event(self) -> None:
        """A configuration file may have changed: (re)arm the debounce timer."""
        if self._stopped:
            return
        self.stats.events += 1
        now = self.loop.time()
        self._last = now
        if self._first is None:
            self._first = now
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline(), self._on_timer)

    def _deadline(self) -> float:
        assert self._first is not None
        return min(self._last + self.debounce, self._first + self.max_delay)

    def _on_timer(self) -> None:
        # One timer per burst, moved forward lazily: a thousand events cost a
        # thousand integer updates, not a thousand timer handles.
        self._timer = None
        if self._stopped or self._first is None:
            return
        deadline = self._deadline()
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._first = None
        if self.running:
            self._dirty = True  # picked up when the reload in flight ends
            return
        self._task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._dirty = False
            self.stats.checks += 1
            digest = await asyncio.to_thread(directory_digest, self.directory)
            if digest == self.digest:
                self.stats.unchanged += 1
            else:
                self.digest = digest
                self.stats.reloads += 1
                log.info("configuration directory %s changed, reloading", self.directory)
                try:
                    result = await self.on_change()
                    # The daemon loads the files a moment after they were hashed here;
                    # what it loaded is what runs. When that differs, the files changed
                    # meanwhile: remember the loaded digest and look once more, or a
                    # burst ending on the hashed content would never be applied.
                    loaded = result.get("generation") if isinstance(result, dict) else None
                    if isinstance(loaded, str) and loaded != digest:
                        self.digest = loaded
                        self._dirty = True
                except asyncio.CancelledError:
                    raise
                except Exception:  # the daemon reports its own errors; keep watching
                    self.stats.failures += 1
                    log.exception("reload after a change in %s failed", self.directory)
            if not self._dirty or self._stopped:
                return

    def _on_directory_gone(self) -> None:
        """The watched directory was deleted or renamed: reload, then wait for it to return."""
        if self._stopped:
            return
        log.warning("configuration directory %s disappeared", self.directory)
        self._on_event()  # the reload fails and the daemon keeps its generation
        if self._rearm is None:
            self._rearm = self.loop.call_later(_REARM_INTERVAL, self._try_rearm)

    def _try_rearm(self) -> None:
        self._rearm = None
        if self._stopped:
            return
        if not self.directory.is_dir():
            self._rearm = self.loop.call_later(_REARM_INTERVAL, self._try_rearm)
            return
        with contextlib.suppress(KeyError, OSError):
            self._observer.unschedule(self._watch)
        try:
            self._schedule()
        except OSError as e:
            log.warning("cannot watch %s again: %s", self.directory, e)
            self._rearm = self.loop.call_later(_REARM_INTERVAL, self._try_rearm)
            return
        log.info("watching configuration directory %s again", self.directory)
        self._on_event()
