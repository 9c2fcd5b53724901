"""Helpers shared by the HA, CN and MN halves: address classes, rate limiting, BA addressing."""

from __future__ import annotations

from ipaddress import IPv6Address

from mip6ctl.wire.mh import BindingAcknowledgement

from .events import Received, Send

__all__ = ["TokenBucket", "UpdateRate", "ba_reply", "is_routable_unicast", "is_unicast"]

UNSPECIFIED = IPv6Address(0)


def is_unicast(address: IPv6Address) -> bool:
    """A unicast address an error message may be sent to (not ::, multicast, loopback)."""
    # integer tests, equal to not (is_multicast or is_unspecified or is_loopback) but
    # ~10x cheaper: this runs twice per Binding Update
    n = int(address)
    return n > 1 and n >> 120 != 0xFF


def is_routable_unicast(address: IPv6Address) -> bool:
    """Unicast and beyond the link: what a home / care-of address must be (§9.5.1 step 1)."""
    n = int(address)
    return n > 1 and n >> 120 != 0xFF and n >> 118 != 0x3FA  # not fe80::/10


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; time is passed in."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class UpdateRate:
    """§11.8: at most ``rate`` Binding Updates to one node in any second.

    A sliding window of the last ``rate`` send times: :meth:`wait` says how long
    the next BU must be held (0: send now). The mobile node holds, never drops:
    the held BU goes out, with a fresh sequence number, when the window opens.
    """

    __slots__ = ("_sent", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = max(1, int(rate))
        self._sent: list[float] = []

    def wait(self, now: float) -> float:
        """Seconds until one more BU may go (0.0 now)."""
        sent = self._sent
        if len(sent) < self.rate:
            return 0.0
        return max(0.0, sent[-self.rate] + 1.0 - now)

    def sent(self, now: float) -> None:
        self._sent.append(now)
        if len(self._sent) > self.rate:
            del self._sent[: -self.rate]


def ba_reply(ev: Received, home_address: IPv6Address, ba: BindingAcknowledgement) -> Send:
    """Address a BA like §9.5.4 / §10.3.1 say: back to the BU's source.

    From the HA/CN address the BU was sent to, to the source of the BU, with a
    type 2 routing header carrying the home address unless the source *is* the
    home address (a de-registration from home goes out without one).
    """
    rh = None if ev.src == home_address else home_address
    return Send(ba, ev.dst, ev.src, None, rh)
