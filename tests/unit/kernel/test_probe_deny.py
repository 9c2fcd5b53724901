"""MIP6CTL_PROBE_DENY: capabilities reported missing although the kernel has them."""

from __future__ import annotations

import pytest

from mip6ctl.kernel import probe


def test_denied_capabilities_are_reported_missing_with_the_reason(monkeypatch) -> None:
    everything = {name: (True, "worked") for name in probe.MEANING}
    monkeypatch.setattr(probe.netns, "run_isolated", lambda fn, timeout: dict(everything))
    monkeypatch.setenv(probe.DENY_ENV, " mip6 , esp,,")
    caps = {c.name: c for c in probe.probe()}
    assert caps["mip6"].available is False and probe.DENY_ENV in caps["mip6"].detail
    assert caps["esp"].available is False
    assert caps["seg6"].available is True  # not named: untouched
    assert probe.kernel_mip6_missing() == f"CONFIG_IPV6_MIP6 hidden by {probe.DENY_ENV}"


@pytest.mark.parametrize("raw", ["", " ", ","])
def test_nothing_denied_by_default(monkeypatch, raw: str) -> None:
    monkeypatch.setenv(probe.DENY_ENV, raw)
    assert probe.denied_capabilities() == frozenset()
