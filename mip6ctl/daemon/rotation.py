"""Manual-key rotation without a lost packet: old and new SAs side by side for a while.

The two ends of a manual-key template reload at different moments.  If each
replaced its SAs at once, whatever the peer sent between the two reloads
would meet the wrong key.  So a reload that brings new keys *and* new SPIs
(`state.ipsec.rotation_possible`) starts a rotation of that template:

* phase 1, ``rotation_grace`` seconds: the new inbound SAs are installed next
  to the old ones; traffic still leaves on the old outbound SA;
* phase 2, another ``rotation_grace``: traffic leaves on the new outbound SA;
  the old inbound SAs stay for a peer that is still in its phase 1;
* then only the new SAs remain.

The rendered state follows the phase (`HostFacts.retiring`); this module only
keeps the clock.  New keys under the *same* SPIs cannot coexist with the old
ones (an SA is found by destination and SPI): the SAs are replaced in place,
and the log says that packets between the two ends' reloads are lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mip6ctl.config.model import Mip6Config
from mip6ctl.state.ipsec import Retiring, rotation_possible
from mip6ctl.state.render import HostFacts

log = logging.getLogger("mip6ctl.daemon")


@dataclass(frozen=True, slots=True)
class _Active:
    retiring: Retiring
    started: float
    grace: float


class KeyRotations:
    """The templates in rotation and the phase each is in (daemon's monotonic clock)."""

    def __init__(self) -> None:
        self._active: dict[str, _Active] = {}

    def snapshot(self) -> dict[str, _Active]:
        return dict(self._active)

    def restore(self, saved: dict[str, _Active]) -> None:
        """A refused generation: the rotations it started never happened."""
        self._active = dict(saved)

    def start(
        self,
        old_cfg: Mip6Config,
        old_facts: HostFacts,
        new_cfg: Mip6Config,
        new_facts: HostFacts,
        now: float,
    ) -> list[str]:
        """A reload: start a rotation for every template whose keys changed."""
        started = []
        for name in list(self._active):
            if name not in new_cfg.ipsec:
                del self._active[name]
        for name, new in new_cfg.ipsec.items():
            old = old_cfg.ipsec.get(name)
            old_keys, new_keys = old_facts.keys_of(name), new_facts.keys_of(name)
            if old is None or old_keys is None or new_keys is None or old_keys == new_keys:
                continue
            if not rotation_possible(old, new):
                self._active.pop(name, None)
                log.warning(
                    "ipsec.%s: new keys under the same SPIs are replaced in place; packets "
                    "between this reload and the peer's are lost (give new SPIs with new "
                    "keys for a rotation without loss)",
                    name,
                )
                continue
            self._active[name] = _Active(Retiring(old, old_keys), now, new.rotation_grace)
            started.append(name)
            log.info(
                "ipsec.%s: key rotation %s -> %s: new SAs inbound now, outbound in %.1f s",
                name,
                old_keys.fingerprints()["authentication"],
                new_keys.fingerprints()["authentication"],
                new.rotation_grace,
            )
        return started

    def facts(self, facts: HostFacts, now: float) -> HostFacts:
        """`facts` with the retiring SAs of the rotations still running, in their phase."""
        out: dict[str, Retiring] = {}
        for name, a in list(self._active.items()):
            age = now - a.started
            if age >= 2 * a.grace:
                del self._active[name]
                log.info("ipsec.%s: key rotation done, old SAs removed", name)
                continue
            out[name] = replace(a.retiring, phase=1 if age < a.grace else 2)
        return facts.with_retiring(out)

    def next_change(self, now: float) -> float | None:
        """Seconds until a rotation changes phase (None: none running)."""
        ends = [
            a.started + (a.grace if now - a.started < a.grace else 2 * a.grace)
            for a in self._active.values()
        ]
        return max(0.0, min(ends) - now) if ends else None

    def status(self, now: float) -> dict[str, dict[str, object]]:
        return {
            name: {
                "phase": 1 if now - a.started < a.grace else 2,
                "since_s": round(now - a.started, 3),
                "grace_s": a.grace,
            }
            for name, a in self._active.items()
        }
