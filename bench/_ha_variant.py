"""Run ``mip6ctl daemon`` under cProfile, or as a named variant (bench/ha_daemon.py).

    python bench/_ha_variant.py [--profile OUT.pstats] [--variant NAME] daemon -c CFG ...

The stats are written when the daemon exits.  A variant patches the daemon
before it starts, for A/B runs of one setting (``--variants`` of
bench/ha_daemon.py); every variant also logs, on stderr with
``time.monotonic()`` stamps comparable to the bench's, each garbage collection
of 2 ms or more and each periodic resync -- the usual suspects of a latency tail.

Variants: ``base`` (as shipped), ``sw5ms`` (the default GIL switch interval,
5 ms), ``gather0`` (no adaptive group-commit gathering), ``oldcache`` (the
binding cache's expiry heap as before lower-bound items), ``nothrottle`` (the
periodic resync's thread never steps aside for the loop); ``a+b`` combines.
"""

from __future__ import annotations

import cProfile
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _diagnostics() -> None:
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started["t"] = time.monotonic()
            return
        t0 = started.get("t")
        if t0 is not None:
            ms = (time.monotonic() - t0) * 1000
            if ms >= 2.0:
                sys.stderr.write(
                    f"[variant] {t0:.3f} gc gen {info['generation']} {ms:.1f} ms"
                    f" collected {info['collected']}\n"
                )

    gc.callbacks.append(on_gc)
    from mip6ctl.daemon import reconcile_loop

    orig = reconcile_loop.ReconcileLoop.resync_off_loop

    async def resync_off_loop(self):  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        try:
            return await orig(self)
        finally:
            sys.stderr.write(f"[variant] {t0:.3f} resync {time.monotonic() - t0:.3f} s\n")

    reconcile_loop.ReconcileLoop.resync_off_loop = resync_off_loop  # type: ignore[method-assign]


def _old_binding_cache() -> None:
    """The binding cache's expiry heap before lower-bound items: a push per refresh,
    a rebuild from every entry when stale items outnumber live ones (logged)."""
    import heapq

    from mip6ctl.engine.binding import BindingCache

    def put(self, binding):  # type: ignore[no-untyped-def]
        hoa = binding.home_address
        prev = self._entries.get(hoa)
        self._entries[hoa] = binding
        if prev is None or prev.expires_at != binding.expires_at:
            heapq.heappush(self._heap, (binding.expires_at, hoa))
            if len(self._heap) > 2 * len(self._entries) + 1024:
                t0 = time.monotonic()
                self._compact()
                ms = (time.monotonic() - t0) * 1000
                sys.stderr.write(f"[variant] {t0:.3f} heap rebuilt {ms:.1f} ms\n")
        return prev

    def next_expiry(self):  # type: ignore[no-untyped-def]
        heap, entries = self._heap, self._entries
        while heap:
            when, hoa = heap[0]
            b = entries.get(hoa)
            if b is not None and b.expires_at == when:
                return when
            heapq.heappop(heap)
        return None

    def expire(self, now):  # type: ignore[no-untyped-def]
        out = []
        heap, entries = self._heap, self._entries
        while heap and heap[0][0] <= now:
            when, hoa = heapq.heappop(heap)
            b = entries.get(hoa)
            if b is not None and b.expires_at == when:
                del entries[hoa]
                out.append(b)
        return out

    BindingCache.put = put  # type: ignore[method-assign]
    BindingCache.next_expiry = next_expiry  # type: ignore[method-assign]
    BindingCache.expire = expire  # type: ignore[method-assign]


def _apply(variant: str) -> None:
    from mip6ctl.daemon import app, persistence, reconcile_loop

    _diagnostics()
    for v in variant.split("+"):
        if v == "base":
            pass
        elif v == "sw5ms":
            app._SWITCH_INTERVAL = 0.005
        elif v.startswith("sw") and v.endswith("us"):  # e.g. sw50us
            app._SWITCH_INTERVAL = float(v[2:-2]) * 1e-6
        elif v == "nothrottle":  # the resync thread never steps aside
            reconcile_loop.ReconcileLoop.__init__.__kwdefaults__["resync_pause"] = 0.0
        elif v == "oldcache":
            _old_binding_cache()
        elif v == "gather0":
            persistence.WriteBehind.__init__.__kwdefaults__["gather"] = 0.0
        else:
            raise SystemExit(f"unknown variant {v!r}")
    sys.stderr.write(f"[variant] {variant}\n")


def main() -> int:
    args = sys.argv[1:]
    profile = None
    if args[:1] == ["--profile"]:
        profile, args = args[1], args[2:]
    if args[:1] == ["--variant"]:
        _apply(args[1])
        args = args[2:]
    from mip6ctl.cli.main import main as cli_main

    if profile is None:
        return int(cli_main(args) or 0)
    prof = cProfile.Profile()
    try:
        return int(prof.runcall(cli_main, args) or 0)
    finally:
        prof.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main())
