"""RFC 6275 conformance of ``mip6ctl daemon`` as correspondent node, end to end.

Same setup as tests/netns/test_correspondent.py (whose helpers this module
imports): the daemon runs in the testbed's CN namespace (2001:db8:c::2) with a
copy of ``examples/testbed/cn``; scapy plays the mobile node from two tester
namespaces, ``rhm`` on br-home holding the home addresses (HoTI/HoT) and
``rf1`` on br-f1 holding the care-of address 2001:db8:a::1a0 (CoTI/CoT,
BU/BA, payload with a Home Address option, Binding Refresh Requests).

Checked here, each against the daemon's answers on the wire and its status:

* §5.2.8 / §9.5.1: a BU captured before a deletion and replayed afterwards gets
  BA 135 with the deletion's sequence number and re-creates nothing;
* §9.5.5: a binding in use (payload with a Home Address option from its care-of
  address) gets one Binding Refresh Request shortly before it expires, one
  without traffic none;
* §9.3.1: a Home Address option naming a multicast or link-local address is
  dropped without a Binding Error (an unbound unicast one gets BE 1).

This host's kernel has no CONFIG_IPV6_MIP6: the daemon's userspace transport
captures packets with a Home Address option at the link layer and the owned
nf_tables chain drops them before the kernel's stack, so "accepted as bound
traffic" shows as the absence of a Binding Error (no echo reply is looked for).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address

import pytest
from scapy.compat import raw
from scapy.layers.inet6 import (
    MIP6MH_BA,
    MIP6MH_BE,
    MIP6MH_BRR,
    IPv6,
    IPv6ExtHdrRouting,
)

from mip6ctl.testbed import Testbed
from tests.netns.ha_helpers import EXAMPLE_CN, HaDaemon, Station, ba_home_address, mh_checksum_ok
from tests.netns.test_correspondent import (
    CN,
    COA,
    Bed,
    ba_authenticator_ok,
    bu_mh,
    checksum,
    echo_with_hao,
    hoa,
    is_be,
    kbm_of,
    return_routability,
    send_bu,
)

#: this module's home addresses (test_correspondent.py uses ::1a0 .. ::1af)
HOME_ADDRESSES = [hoa(n) for n in range(0x1C0, 0x1C8)]
NO_ANSWER = 2.0  # seconds to wait for an answer that must not come


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build(radvd=False) as tb:
        cn = HaDaemon(tb, tmp_path_factory.mktemp("cn"), node="cn", example=EXAMPLE_CN)
        stations: list[Station] = []
        try:
            cn.start()
            stations = [
                Station(tb, "home", "rhm", [str(a) for a in HOME_ADDRESSES], "2001:db8:1::1"),
                Station(tb, "f1", "rf1", [str(COA)], "2001:db8:a::1"),
            ]
            yield Bed(tb, cn, *stations)
            assert cn.proc is not None and cn.proc.poll() is None, "the daemon died:\n" + cn.tail()
        finally:
            cn.stop()
            for s in stations:
                s.close()


def counters(bed: Bed) -> dict[str, int]:
    return bed.cn.rpc("status")["counters"]


# --------------------------------------------------------------------------- a) §5.2.8 replay


def test_replayed_bu_after_deletion_gets_135_and_no_binding(bed: Bed) -> None:
    """§5.2.8: "Correspondent nodes must retain bindings and the associated sequence
    number information at least as long as the nonces used in the authorization of the
    binding are still valid." §9.5.1: "If the mobile node sends a sequence number which
    is not greater than the sequence number from the last valid Binding Update for this
    home address, then the receiving node MUST send back a Binding Acknowledgement with
    status code 135, and the last accepted sequence number in the Sequence Number field
    of the Binding Acknowledgement."

    The nonces that authorised the binding are still valid (well inside
    MAX_NONCE_LIFETIME), so the captured BU still verifies: only the sequence number
    the CN kept after the deletion can refuse it."""
    home = HOME_ADDRESSES[0]
    t = return_routability(bed, home)
    original = bu_mh(home, 1000, 50, kbm=t.kbm, indices=t.indices)
    p = send_bu(bed, home, original)
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (0, 1000)
    assert bed.cn.bindings()[str(home)]["sequence"] == 1000

    # deletion: lifetime 0, Kbm = SHA1(home token) (§5.2.5)
    kbm_del = kbm_of(t.home_token, None)
    deletion = bu_mh(home, 1001, 0, kbm=kbm_del, indices=t.indices)
    p = send_bu(bed, home, deletion)
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq, p[MIP6MH_BA].mhtime) == (0, 1001, 0)
    assert str(home) not in bed.cn.bindings()

    # the original BU, byte for byte: 135 with the deletion's sequence number
    p = send_bu(bed, home, original)
    assert p is not None, "no BA to the replayed BU:\n" + bed.cn.tail()
    ba = p[MIP6MH_BA]
    assert (ba.status, ba.seq) == (135, 1001), (ba.status, ba.seq)
    assert ba_home_address(p) == str(home) and mh_checksum_ok(p)
    assert ba_authenticator_ok(p, t.kbm)  # the replay verified: the 135 is authenticated
    assert str(home) not in bed.cn.bindings(), "the replay re-created the binding"
    rows = {r["home_address"] for r in bed.cn.status_cli()["binding_cache"]["rows"]}
    assert str(home) not in rows

    # the deletion replayed: also 135, still nothing
    p = send_bu(bed, home, deletion)
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (135, 1001)
    assert str(home) not in bed.cn.bindings()

    # a newer sequence number with fresh tokens is accepted
    t2 = return_routability(bed, home)
    p = send_bu(bed, home, bu_mh(home, 1002, 50, kbm=t2.kbm, indices=t2.indices))
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq, p[MIP6MH_BA].mhtime) == (0, 1002, 50)
    assert ba_authenticator_ok(p, t2.kbm)
    row = bed.cn.bindings()[str(home)]
    assert (row["sequence"], row["care_of_address"]) == (1002, str(COA))


# --------------------------------------------------------------------------- b) §9.5.5 BRR

LIFETIME_UNITS = 3  # 12 s
BRR_LEAD = 2.0  # max(2 s, 10 % of 12 s)
SLACK = 0.3
ECHO_INTERVAL = 0.5


def is_brr_or_be(p: IPv6) -> bool:
    return MIP6MH_BRR in p or MIP6MH_BE in p


def brr_checksum_ok(p: IPv6, home: IPv6Address) -> bool:
    """§6.1.1: behind a type 2 routing header the pseudo-header carries the home address."""
    mh = bytearray(raw(p[MIP6MH_BRR]))
    mh = mh[: (mh[1] + 1) * 8]
    field = int.from_bytes(mh[4:6], "big")
    mh[4:6] = b"\0\0"
    return field == checksum(IPv6Address(p.src), home, bytes(mh))


def traffic(
    bed: Bed,
    home: IPv6Address,
    send_until: float,
    deadline: float,
    stop: Callable[[list[tuple[float, IPv6]]], bool] = lambda _got: False,
) -> list[tuple[float, IPv6]]:
    """Echo requests with a Home Address option for ``home`` from the care-of address
    every ECHO_INTERVAL s until ``send_until`` (or until ``stop`` says so); BRRs and BEs
    captured until ``deadline`` (monotonic clock), each with its arrival time."""
    got: list[tuple[float, IPv6]] = []
    ident, next_echo, sending = 0x6000, 0.0, True
    bed.f1.drain()
    while (now := time.monotonic()) < deadline:
        sending = sending and not stop(got) and now < send_until
        if sending and now >= next_echo:
            ident += 1
            bed.f1.send(echo_with_hao(home, ident))  # bound traffic: no BE, BRR scheduled
            next_echo = now + ECHO_INTERVAL
        wait = min(next_echo - now, deadline - now) if sending else deadline - now
        got += [(time.monotonic(), p) for p in bed.f1.capture(is_brr_or_be, max(wait, 0.01))]
    return got


def test_brr_before_expiry_only_for_a_binding_in_use(bed: Bed) -> None:
    """§9.5.5: "If the sender knows that the Binding Cache entry is still in active use,
    it MAY send a Binding Refresh Request message to the mobile node in an attempt to
    avoid this overhead and latency due to deleting and recreating the Binding Cache
    entry. This message is always sent to the home address of the mobile node."

    Two bindings registered together for 12 s; echo requests with a Home Address option
    use one of them every 0.5 s. That one gets a single BRR (to the care-of address, a
    type 2 routing header naming the home address: §9.3.2) at expiry − max(2 s, 10 %);
    the other one, unused, gets none and simply expires. The mobile node (this test)
    never answers, so both bindings are gone afterwards."""
    used, idle = HOME_ADDRESSES[1], HOME_ADDRESSES[2]
    brrs_before = counters(bed)["brrs_sent"]
    window: dict[IPv6Address, tuple[float, float]] = {}
    bus: dict[IPv6Address, bytes] = {}
    for home in (used, idle):
        t = return_routability(bed, home)
        bus[home] = bu_mh(home, 7, LIFETIME_UNITS, kbm=t.kbm, indices=t.indices)
        sent_at = time.monotonic()
        p = send_bu(bed, home, bus[home])
        acked_at = time.monotonic()
        assert p is not None, bed.cn.tail()
        assert (p[MIP6MH_BA].status, p[MIP6MH_BA].mhtime) == (0, LIFETIME_UNITS)
        lifetime = p[MIP6MH_BA].mhtime * 4.0
        window[home] = (sent_at + lifetime, acked_at + lifetime)  # bounds of its expiry
        row = bed.cn.bindings()[str(home)]
        assert row["lifetime_s"] == lifetime and row["lifetime_left_s"] <= lifetime

    earliest_expiry, latest_expiry = window[used]
    deadline = max(w[1] for w in window.values()) + 1.0
    got = traffic(
        bed,
        used,
        earliest_expiry - 0.5,
        deadline,
        stop=lambda g: any(MIP6MH_BRR in p for _, p in g),
    )

    bes = [p for _, p in got if MIP6MH_BE in p]
    assert bes == [], "Binding Error to bound traffic: " + repr([p[MIP6MH_BE].status for p in bes])
    brrs = [(at, p) for at, p in got if MIP6MH_BRR in p]
    assert len(brrs) == 1, f"{len(brrs)} BRRs:\n" + bed.cn.tail()
    at, p = brrs[0]
    assert (p.src, p.dst) == (str(CN), str(COA))
    assert IPv6ExtHdrRouting in p and p[IPv6ExtHdrRouting].type == 2
    assert [str(a) for a in p[IPv6ExtHdrRouting].addresses] == [str(used)], "BRR for the idle one"
    assert brr_checksum_ok(p, used)
    assert at < latest_expiry, f"BRR {at - latest_expiry:.2f} s after the binding expired"
    assert at >= earliest_expiry - BRR_LEAD - SLACK, (
        f"BRR {earliest_expiry - at:.2f} s before expiry (lead {BRR_LEAD} s)"
    )
    assert at <= latest_expiry - BRR_LEAD + 1.0, "BRR late"
    assert counters(bed)["brrs_sent"] - brrs_before == 1
    rows = bed.cn.bindings()
    assert str(used) not in rows and str(idle) not in rows, "not expired"

    # §5.2.8 after expiry too: the expired binding's sequence number outlives it while
    # its nonces are valid, so its own BU replayed gets 135 and re-creates nothing
    p = send_bu(bed, idle, bus[idle])
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (135, 7)
    assert str(idle) not in bed.cn.bindings()


def test_continued_traffic_after_the_brr_gets_no_second_brr(bed: Bed) -> None:
    """§9.5.5: "The correspondent node MAY retransmit Binding Refresh Request messages as
    long as the rate limitation is applied." mip6ctl sends ONE BRR per binding lifetime
    (correspondent.py: "a used entry gets one BRR ... before it expires"): traffic that
    goes on after that BRR, the mobile node not answering, must not draw more of them
    (at the 0.5 s echo interval here, at every data packet on a busy flow)."""
    home = HOME_ADDRESSES[5]
    t = return_routability(bed, home)
    sent_at = time.monotonic()
    p = send_bu(bed, home, bu_mh(home, 7, LIFETIME_UNITS, kbm=t.kbm, indices=t.indices))
    acked_at = time.monotonic()
    assert p is not None and p[MIP6MH_BA].status == 0, bed.cn.tail()
    lifetime = p[MIP6MH_BA].mhtime * 4.0
    got = traffic(bed, home, sent_at + lifetime - 0.3, acked_at + lifetime + 0.5)
    assert [q for _, q in got if MIP6MH_BE in q] == []
    brrs = [at for at, q in got if MIP6MH_BRR in q]
    assert brrs, "no BRR at all:\n" + bed.cn.tail()
    assert len(brrs) == 1, (
        f"{len(brrs)} BRRs, {[round(acked_at + lifetime - x, 2) for x in brrs]} s before expiry"
    )


# --------------------------------------------------------------------------- c) §9.3.1


@pytest.mark.parametrize("bad", ["ff02::1", "fe80::1c0"])
def test_non_unicast_home_address_option_gets_no_binding_error(bed: Bed, bad: str) -> None:
    """§9.3.1: "Packets containing a Home Address option MUST be dropped if the given
    home address is not a unicast routable address." Such a packet names no binding a
    Binding Error could be about: dropped silently. In contrast an unbound unicast home
    address: "the packet MUST be dropped if there is no corresponding Binding Cache
    entry ... the correspondent node MUST send the Binding Error message ... The Status
    field in this message should be set to 1"."""
    bed.f1.drain()
    got: list[IPv6] = []
    # spread over NO_ANSWER seconds: the Binding Error rate limit (3/s) refills meanwhile,
    # so an earlier test's errors cannot hide one here
    for i in range(5):
        bed.f1.send(echo_with_hao(IPv6Address(bad), 0x7000 + i))
        got += bed.f1.capture(is_be, NO_ANSWER / 5, count=1)
    assert got == [], f"Binding Error about {bad}: {got[0][MIP6MH_BE].ha}"

    # the Binding Error path works (and is not rate limited just now)
    home = HOME_ADDRESSES[3]
    assert str(home) not in bed.cn.bindings()
    p = bed.f1.exchange(echo_with_hao(home, 0x7100), is_be, 3.0)
    assert p is not None, bed.cn.tail()
    be = p[MIP6MH_BE]
    assert (p.src, p.dst, be.status, be.ha) == (str(CN), str(COA), 1, str(home))
    assert mh_checksum_ok(p)
