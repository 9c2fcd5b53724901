"""§11.3.5: a Parameter Problem code 2 for the Home Address option is logged, not
acted on -- and logged once a minute per peer, since it comes back per packet."""

from __future__ import annotations

import logging
from ipaddress import IPv6Address

import pytest

from mip6ctl.daemon.app import HAO_REFUSED_LOG_INTERVAL, Counters, Daemon

CN = IPv6Address("2001:db8:c::1")
OTHER = IPv6Address("2001:db8:c::2")


def test_logged_once_per_interval_per_peer_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    d = Daemon.__new__(Daemon)  # only the counters and the log memory are used
    d.counters = Counters()
    d._hao_refused_logged = {}
    with caplog.at_level(logging.WARNING, logger="mip6ctl.daemon"):
        for t in (0.0, 1.0, 30.0):
            d._log_hao_refused(CN, t)
        d._log_hao_refused(OTHER, 31.0)
        d._log_hao_refused(CN, HAO_REFUSED_LOG_INTERVAL + 0.5)
    lines = [r.getMessage() for r in caplog.records if "Home Address option" in r.getMessage()]
    assert [str(CN) in m for m in lines] == [True, False, True], lines
    assert "§11.3.5" in lines[0]
    assert d.counters.home_address_option_refused == 5
    assert d.counters.as_dict(None)["home_address_option_refused"] == 5
