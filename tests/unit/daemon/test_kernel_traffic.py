"""The kernel's data-path reports as engine inputs (daemon/kernel_traffic.py), sans-I/O."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from typing import Any

from mip6ctl.daemon.kernel_traffic import KernelTraffic, UsageTracker, notifications
from mip6ctl.engine.events import HomeAddressOptionReceived, TrafficToCorrespondent
from mip6ctl.kernel.xfrm_codec import AcquireEvent, ReportEvent
from mip6ctl.state.xfrm import Direction, XfrmPolicy, XfrmProto, XfrmSelector

HOA = IPv6Address("2001:db8:1::100")
CN = IPv6Address("2001:db8:c::2")
COA = IPv6Address("2001:db8:a::100")
HOA_RAW, CN_RAW = HOA.packed, CN.packed


def _acquire(src: IPv6Address, dst: IPv6Address, proto: XfrmProto) -> AcquireEvent:
    sel = XfrmSelector(dst=IPv6Network((dst, 128)), src=IPv6Network((src, 128)))
    return AcquireEvent(dst, src, proto, sel, XfrmPolicy(sel, Direction.OUT), 1)


def _report(hoa: IPv6Address, dst: IPv6Address, coa: IPv6Address | None, proto: int = 60) -> Any:
    sel = XfrmSelector(dst=IPv6Network((dst, 128)), src=IPv6Network((hoa, 128)))
    return ReportEvent(proto, sel, coa)


def test_acquire_of_the_trigger_policy_is_traffic_to_that_correspondent() -> None:
    got = notifications([_acquire(HOA, CN, XfrmProto.HAO)], HOA)
    assert got == [TrafficToCorrespondent(CN)]
    # not our home address, not a hao template, or not a mobile node: nothing
    assert notifications([_acquire(COA, CN, XfrmProto.HAO)], HOA) == []
    assert notifications([_acquire(HOA, CN, XfrmProto.ESP)], HOA) == []
    assert notifications([_acquire(HOA, CN, XfrmProto.HAO)], None) == []


def test_report_of_a_home_address_option_without_binding_is_checked_by_the_engine() -> None:
    """mip6_destopt_reject: selector src = home address (swapped in), coaddr = CoA."""
    got = notifications([_report(HOA, CN, COA)], None)
    assert got == [HomeAddressOptionReceived(COA, CN, HOA)]
    assert notifications([_report(HOA, CN, None)], None) == []
    assert notifications([_report(HOA, CN, COA, proto=43)], None) == []


def test_usage_reports_the_binding_address_once_per_change() -> None:
    cn = UsageTracker()
    first = {(HOA_RAW, CN_RAW, 43): 5, (CN_RAW, HOA_RAW, 60): 0}
    assert cn.update(first) == {HOA}  # route2 to the home address carried packets
    assert cn.update(first) == set()  # unchanged counters: not in use since
    assert cn.update({(HOA_RAW, CN_RAW, 43): 5, (CN_RAW, HOA_RAW, 60): 2}) == {HOA}
    mn = UsageTracker(HOA)
    assert mn.update({(CN_RAW, HOA_RAW, 60): 3}) == {CN}  # hao out: dst = correspondent
    assert mn.update({(CN_RAW, HOA_RAW, 60): 3, (HOA_RAW, CN_RAW, 43): 1}) == {CN}


class _Engine:
    def __init__(self) -> None:
        self.used: list[tuple[str, IPv6Address]] = []

    def binding_used(self, hoa: IPv6Address, now: float) -> None:
        self.used.append(("cn", hoa))

    def correspondent_used(self, peer: IPv6Address, now: float) -> None:
        self.used.append(("mn", peer))


def test_note_usage_tells_the_engine_and_rearms_its_timer() -> None:
    engine, fed = _Engine(), []
    kt = KernelTraffic(engine, fed.append, lambda: 1.0, home_address=None)
    kt.note_usage({(HOA_RAW, CN_RAW, 43): 1})
    assert engine.used == [("cn", HOA)] and fed == [[]]
    kt.note_usage({(HOA_RAW, CN_RAW, 43): 1})
    assert len(fed) == 1  # nothing new: no re-arm
    mn = KernelTraffic(engine, fed.append, lambda: 1.0, home_address=HOA)
    mn.note_usage({(CN_RAW, HOA_RAW, 60): 4})
    assert engine.used[-1] == ("mn", CN)
    assert kt.status()["used"] == 1
