"""LinkWatch.dump starts over when the kernel marks the dump interrupted (NLM_F_DUMP_INTR).

Seen in the vm tier: the mobile node daemon died at start-up with "dump
interrupted by concurrent change" while SLAAC was adding addresses.
"""

from __future__ import annotations

import errno

import pytest

from mip6ctl.daemon.mobile import LinkWatch


def _watch(outcomes: list[object]) -> LinkWatch:
    w = LinkWatch.__new__(LinkWatch)  # no sockets: only the retry logic is under test

    def once() -> list:
        o = outcomes.pop(0)
        if isinstance(o, BaseException):
            raise o
        return o  # type: ignore[return-value]

    w._dump_once = once  # type: ignore[method-assign]
    return w


def test_interrupted_dump_is_retried() -> None:
    intr = OSError(errno.EINTR, "dump interrupted by concurrent change")
    assert _watch([intr, intr, ["done"]]).dump() == ["done"]


def test_other_errors_and_endless_interruption_propagate() -> None:
    with pytest.raises(OSError) as e:
        _watch([OSError(errno.ENOBUFS, "x")]).dump()
    assert e.value.errno == errno.ENOBUFS
    intr = OSError(errno.EINTR, "again")
    with pytest.raises(OSError):
        _watch([intr] * 3).dump(attempts=3)
