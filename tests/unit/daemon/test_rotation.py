"""The key-rotation clock: phases by time, a rotation only where old and new SAs can coexist."""

from __future__ import annotations

from mip6ctl.config.model import Mip6Config
from mip6ctl.daemon.rotation import KeyRotations
from mip6ctl.state import ipsec
from mip6ctl.state.render import HostFacts


def _cfg(spi: int, grace: float = 5.0) -> Mip6Config:
    return Mip6Config.model_validate(
        {
            "node": {"role": "cn"},
            "ipsec": {
                "mn1": {
                    "protect": ["binding-update"],
                    "encryption": {"algorithm": "aes-cbc"},
                    "authentication": {"algorithm": "hmac-sha256"},
                    "spi": {"to_ha": spi, "to_mn": spi + 1},
                    "rotation_grace": grace,
                }
            },
        }
    )


def _facts(cfg: Mip6Config, auth: bytes) -> HostFacts:
    keys = {"encryption": bytes(16), "authentication": auth}
    return HostFacts().with_keys(ipsec.keyring(cfg.ipsec, {"mn1": keys}))


def test_phases_follow_the_clock() -> None:
    old, new = _cfg(0x1000), _cfg(0x2000)
    r = KeyRotations()
    assert r.start(old, _facts(old, bytes(32)), new, _facts(new, b"\1" * 32), 100.0) == ["mn1"]
    base = _facts(new, b"\1" * 32)
    phase = lambda t: dict(r.facts(base, t).retiring).get("mn1")  # noqa: E731
    assert phase(100.0).phase == 1 and r.next_change(100.0) == 5.0  # type: ignore[union-attr]
    assert phase(104.9).phase == 1  # type: ignore[union-attr]
    assert phase(105.0).phase == 2 and r.next_change(105.0) == 5.0  # type: ignore[union-attr]
    assert phase(110.0) is None and r.next_change(110.0) is None  # done: only new SAs
    assert r.status(110.0) == {}


def test_same_spis_or_same_keys_start_nothing() -> None:
    old = _cfg(0x1000)
    r = KeyRotations()
    assert r.start(old, _facts(old, bytes(32)), old, _facts(old, b"\1" * 32), 0.0) == []
    new = _cfg(0x2000)
    assert r.start(old, _facts(old, bytes(32)), new, _facts(new, bytes(32)), 0.0) == []


def test_a_refused_generation_restores_the_rotations() -> None:
    old, new = _cfg(0x1000), _cfg(0x2000)
    r = KeyRotations()
    saved = r.snapshot()
    r.start(old, _facts(old, bytes(32)), new, _facts(new, b"\1" * 32), 0.0)
    r.restore(saved)
    assert r.next_change(0.0) is None
