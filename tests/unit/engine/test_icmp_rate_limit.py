"""RFC 4443 §2.4(f): the ICMPv6 errors the engine asks for are rate limited (token bucket)."""

from __future__ import annotations

import pytest

from mip6ctl.engine import Engine
from mip6ctl.engine.events import Malformed, SendParameterProblem
from mip6ctl.wire.errors import BadPayloadProto
from mip6ctl.wire.mh import decode_mh

from .helpers import COA, HA, ha_config

T0 = 1000.0


def _malformed() -> Malformed:
    raw = bytes([17, 1, 5, 0, 0, 0]) + bytes(10)  # Payload Proto 17: Parameter Problem
    with pytest.raises(BadPayloadProto) as exc:
        decode_mh(raw, base=40)
    return Malformed(exc.value, bytes(40) + raw, COA, HA)


def test_a_flood_gets_at_most_burst_plus_rate_per_second() -> None:
    e = Engine(ha_config(), T0, icmp_error_rate=5.0, icmp_error_burst=3)
    ev = _malformed()
    sent = 0
    for i in range(10_000):  # 10,000 malformed packets over 2 s
        out = e.handle(ev, T0 + i * 0.0002)
        sent += sum(isinstance(a, SendParameterProblem) for a in out)
    assert sent <= 3 + 5 * 2 + 1
    assert sent >= 3 + 5 * 2 - 1  # the limiter still lets the allowed ones through
    assert e.icmp_errors_suppressed == 10_000 - sent


def test_the_configured_default_applies() -> None:
    e = Engine(ha_config(), T0)
    ev = _malformed()
    burst = [e.handle(ev, T0) for _ in range(100)]
    n = sum(len(o) for o in burst)
    assert n == int(ha_config().daemon.icmp_error_burst)
