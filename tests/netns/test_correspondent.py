"""The correspondent node end to end (issue 7): ``mip6ctl daemon`` as the testbed's CN.

The daemon runs in the testbed's CN namespace (2001:db8:c::2) with a copy of
``examples/testbed/cn``; scapy plays the mobile node from two tester
namespaces (`ha_helpers.Station`):

* ``chm`` on br-home holds the home addresses (a HoTI leaves from the home
  address and the HoT comes back to it, as if through the home agent's tunnel),
* ``cf1`` on br-f1 holds the care-of address 2001:db8:a::1a0 (CoTI/CoT, BU/BA).

The keygen tokens cannot be checked against Kcn (the daemon's secret), so
they are checked for *consistency*: Kbm and the authenticators are computed
here with hmac/hashlib, independently of ``mip6ctl.wire.rr``, and the CN must
accept a BU made from them and answer with a BA whose authenticator verifies
under the same Kbm (a token off by one bit: silently discarded).

Each test uses its own home address, so the tests do not depend on each
other's order.  The 139 test runs a home agent daemon too (an HA also answers
as a correspondent).  Nonce expiry over time is covered with a fake clock in
tests/unit/engine/test_correspondent.py; here an index the CN never handed
out stands for an expired one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.inet6 import (
    HAO,
    MIP6MH_BA,
    MIP6MH_BE,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
    MIP6MH_CoT,
    MIP6MH_CoTI,
    MIP6MH_HoT,
    MIP6MH_HoTI,
)
from scapy.packet import Raw

from mip6ctl.testbed import Testbed
from tests.netns.ha_helpers import (
    EXAMPLE_CN,
    HA,
    HaDaemon,
    Station,
    ba_home_address,
    binding_update,
    ip,
    mh_checksum_ok,
)

CN = IPv6Address("2001:db8:c::2")
COA = IPv6Address("2001:db8:a::1a0")
NO_ANSWER = 0.7  # seconds to wait for an answer that must not come


def hoa(n: int) -> IPv6Address:
    """Home address 2001:db8:1::<n in hex>."""
    return IPv6Address(int(IPv6Address("2001:db8:1::")) + n)


HOME_ADDRESSES = [hoa(n) for n in range(0x1A0, 0x1B0)]


# --------------------------------------------------------------------------- crypto (independent)


def _hmac_sha1(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha1).digest()


def kbm_of(home_token: bytes, careof_token: bytes | None) -> bytes:
    """Kbm = SHA1(home token | care-of token); a deletion: SHA1(home token) (§5.2.5)."""
    return hashlib.sha1(home_token + (careof_token or b"")).digest()


def authenticator(kbm: bytes, coa: IPv6Address, cn: IPv6Address, mh: bytes) -> bytes:
    """First96(HMAC_SHA1(Kbm, care-of | correspondent | MH data)); ``mh`` ends in the
    Binding Authorization Data option, its authenticator field is left out."""
    data = mh[:4] + b"\0\0" + mh[6:-12]
    return _hmac_sha1(kbm, coa.packed + cn.packed + data)[:12]


def checksum(src: IPv6Address, dst: IPv6Address, mh: bytes) -> int:
    """Internet checksum over the IPv6 pseudo-header (next header 135) and ``mh``."""
    data = src.packed + dst.packed + struct.pack("!I3xB", len(mh), 135) + mh
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF or 0xFFFF


def bu_mh(
    home: IPv6Address,
    seq: int,
    lifetime: int,
    *,
    kbm: bytes | None,
    coa: IPv6Address = COA,
    cn: IPv6Address = CN,
    ack: bool = True,
    indices: tuple[int, int] | None = (0, 0),
    auth: bool = True,
) -> bytes:
    """A correspondent BU (H=0): Nonce Indices (offset 12, 2n) then Binding
    Authorization Data (offset 18, 8n+2, last), signed with ``kbm`` (zeros when None)."""
    body = struct.pack("!HHH", seq & 0xFFFF, 0x8000 if ack else 0, lifetime)
    if indices is not None:
        body += struct.pack("!BBHH", 4, 4, *indices)
    if auth:
        if indices is None:  # keep 8n+2: PadN of 4 octets
            body += b"\x01\x04\0\0\0\0"
        body += b"\x05\x0c" + b"\0" * 12
    else:
        body += b"\0" * (-(len(body) + 6) % 8)  # Pad1s (only without the last option)
    mh = bytearray(struct.pack("!BBBBH", 59, (len(body) + 6) // 8 - 1, 5, 0, 0) + body)
    if auth and kbm is not None:
        mh[-12:] = authenticator(kbm, coa, cn, bytes(mh))
    mh[4:6] = struct.pack("!H", checksum(home, cn, bytes(mh)))
    return bytes(mh)


def bu_packet(home: IPv6Address, mh: bytes, coa: IPv6Address = COA, cn: IPv6Address = CN) -> IPv6:
    """The BU from the care-of address with a Home Address option."""
    return (
        IPv6(src=str(coa), dst=str(cn))
        / IPv6ExtHdrDestOpt(nh=135, options=[HAO(hoa=str(home))])
        / Raw(mh)
    )


def ba_mh(p: IPv6) -> bytes:
    layer = raw(p[MIP6MH_BA])
    return layer[: (layer[1] + 1) * 8]


def ba_authenticated(p: IPv6) -> bool:
    """The BA's last option is Binding Authorization Data."""
    mh = ba_mh(p)
    return len(mh) >= 26 and mh[-14:-12] == b"\x05\x0c"


def ba_authenticator_ok(p: IPv6, kbm: bytes, coa: IPv6Address = COA, cn: IPv6Address = CN) -> bool:
    mh = ba_mh(p)
    return ba_authenticated(p) and hmac.compare_digest(mh[-12:], authenticator(kbm, coa, cn, mh))


def test_bu_builder_matches_the_project_test_vector() -> None:
    """The test's own Kbm / authenticator code against PROTOCOL.md's vector."""
    kbm = kbm_of(bytes.fromhex("bec63a373a9d46f2"), bytes.fromhex("41ca7fa30c70b913"))
    assert kbm.hex() == "9efc95d286cbb5498c37894fb359314de4fb6fad"
    home, coa = IPv6Address("2001:db8:0:104::100"), IPv6Address("2001:db8:0:101::100")
    mh = bu_mh(
        home, 10000, 100, kbm=kbm, coa=coa, cn=IPv6Address("2001:db8:0:1::1"), indices=(1, 2)
    )
    assert (mh[:4] + b"\0\0" + mh[6:-12]).hex() == "3b0305000000271080000064040400010002050c"
    assert mh[-12:].hex() == "829a3cebb232508f85ed1b6a"


# --------------------------------------------------------------------------- fixtures


@dataclass
class Bed:
    tb: Testbed
    cn: HaDaemon
    home: Station
    f1: Station


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    with Testbed.build(radvd=False) as tb:
        cn = HaDaemon(tb, tmp_path_factory.mktemp("cn"), node="cn", example=EXAMPLE_CN)
        stations: list[Station] = []
        try:
            cn.start()
            stations = [
                Station(tb, "home", "chm", [str(a) for a in HOME_ADDRESSES], "2001:db8:1::1"),
                Station(tb, "f1", "cf1", [str(COA)], "2001:db8:a::1"),
            ]
            yield Bed(tb, cn, *stations)
            assert cn.proc is not None and cn.proc.poll() is None, "the daemon died:\n" + cn.tail()
        finally:
            cn.stop()
            for s in stations:
                s.close()


@dataclass
class Tokens:
    home_index: int
    home_token: bytes
    careof_index: int
    careof_token: bytes

    @property
    def kbm(self) -> bytes:
        return kbm_of(self.home_token, self.careof_token)

    @property
    def indices(self) -> tuple[int, int]:
        return self.home_index, self.careof_index


def return_routability(
    bed: Bed, home: IPv6Address, peer: IPv6Address = CN, daemon: HaDaemon | None = None
) -> Tokens:
    """HoTI from the home address, CoTI from the care-of address; both answers checked."""
    log = (daemon or bed.cn).tail
    cookie = os.urandom(8)
    hoti = IPv6(src=str(home), dst=str(peer)) / MIP6MH_HoTI(cookie=cookie)
    hot = bed.home.exchange(hoti, lambda p: MIP6MH_HoT in p and p.dst == str(home))
    assert hot is not None, "no HoT:\n" + log()
    assert (hot.src, hot[MIP6MH_HoT].cookie) == (str(peer), cookie)
    assert IPv6ExtHdrRouting not in hot and IPv6ExtHdrDestOpt not in hot
    cookie = os.urandom(8)
    coti = IPv6(src=str(COA), dst=str(peer)) / MIP6MH_CoTI(cookie=cookie)
    cot = bed.f1.exchange(coti, lambda p: MIP6MH_CoT in p and p.dst == str(COA))
    assert cot is not None, "no CoT:\n" + log()
    assert (cot.src, cot[MIP6MH_CoT].cookie) == (str(peer), cookie)
    h, c = hot[MIP6MH_HoT], cot[MIP6MH_CoT]
    assert len(h.token) == len(c.token) == 8
    return Tokens(h.index, bytes(h.token), c.index, bytes(c.token))


def send_bu(bed: Bed, home: IPv6Address, mh: bytes, timeout: float = 3.0) -> IPv6 | None:
    """Send a BU (raw MH), return the BA for ``home`` or None."""
    return bed.f1.ba(bu_packet(home, mh), timeout)


def register(bed: Bed, home: IPv6Address, seq: int = 1, lifetime: int = 50) -> tuple[Tokens, IPv6]:
    t = return_routability(bed, home)
    p = send_bu(bed, home, bu_mh(home, seq, lifetime, kbm=t.kbm, indices=t.indices))
    assert p is not None, bed.cn.tail()
    assert p[MIP6MH_BA].status == 0, p[MIP6MH_BA].status
    return t, p


# --------------------------------------------------------------------------- 1, 2. RR and BA 0


def test_return_routability_tokens_authorise_a_binding(bed: Bed) -> None:
    home = HOME_ADDRESSES[0]
    t = return_routability(bed, home)
    p = send_bu(bed, home, bu_mh(home, 7, 50, kbm=t.kbm, indices=t.indices))
    assert p is not None, bed.cn.tail()
    ba = p[MIP6MH_BA]
    assert (p.src, p.dst, ba_home_address(p)) == (str(CN), str(COA), str(home))
    assert p[IPv6ExtHdrRouting].type == 2
    assert (ba.status, ba.seq, ba.mhtime) == (0, 7, 50)
    assert mh_checksum_ok(p)
    assert ba_authenticator_ok(p, t.kbm)
    row = bed.cn.bindings()[str(home)]
    assert (row["care_of_address"], row["home_registration"], row["sequence"]) == (
        str(COA),
        False,
        7,
    )


def test_lifetime_is_capped_at_max_rr_binding_lifetime(bed: Bed) -> None:
    home = HOME_ADDRESSES[1]
    t = return_routability(bed, home)
    p = send_bu(bed, home, bu_mh(home, 1, 1000, kbm=t.kbm, indices=t.indices))
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].mhtime) == (0, 420 // 4)
    assert ba_authenticator_ok(p, t.kbm)


@pytest.mark.parametrize("which", ["home", "careof"])
def test_token_off_by_one_bit_is_silently_discarded(bed: Bed, which: str) -> None:
    home = HOME_ADDRESSES[2]
    t = return_routability(bed, home)
    flip = bytearray(t.home_token if which == "home" else t.careof_token)
    flip[7] ^= 0x01
    bad = (
        kbm_of(bytes(flip), t.careof_token)
        if which == "home"
        else kbm_of(t.home_token, bytes(flip))
    )
    assert send_bu(bed, home, bu_mh(home, 1, 50, kbm=bad, indices=t.indices), NO_ANSWER) is None
    assert str(home) not in bed.cn.bindings()


def test_care_of_token_is_bound_to_the_care_of_address(bed: Bed) -> None:
    """The same tokens signed for another care-of address (Alternate CoA absent, so the
    CN takes the source) do not verify: discarded."""
    home = HOME_ADDRESSES[2]
    t = return_routability(bed, home)
    other = IPv6Address("2001:db8:a::1a1")
    mh = bu_mh(home, 1, 50, kbm=t.kbm, indices=t.indices, coa=other)
    assert send_bu(bed, home, mh, NO_ANSWER) is None


# --------------------------------------------------------------------------- 3. rejections


def test_home_registration_at_a_correspondent_131(bed: Bed) -> None:
    home = HOME_ADDRESSES[3]
    p = bed.f1.ba(binding_update(home, COA, 9, 100, dst=CN))
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (131, 9)
    assert ba_home_address(p) == str(home) and mh_checksum_ok(p)
    assert not ba_authenticated(p)


def test_home_registration_with_nonce_indices_is_discarded(bed: Bed) -> None:
    home = HOME_ADDRESSES[3]
    mh = bytearray(bu_mh(home, 9, 100, kbm=None, indices=(0, 0)))
    mh[8:10] = struct.pack("!H", 0xC000)  # A and H
    mh[4:6] = b"\0\0"
    mh[4:6] = struct.pack("!H", checksum(home, CN, bytes(mh)))
    assert send_bu(bed, home, bytes(mh), NO_ANSWER) is None


def test_sequence_window_135_carries_the_last_accepted_sequence(bed: Bed) -> None:
    home = HOME_ADDRESSES[4]
    t, _ = register(bed, home, seq=100)
    for seq, ack in ((100, True), (99, True), (100 + 0x8000, False)):
        p = send_bu(bed, home, bu_mh(home, seq, 50, kbm=t.kbm, indices=t.indices, ack=ack))
        assert p is not None, f"no BA 135 for sequence {seq}:\n{bed.cn.tail()}"
        assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (135, 100)
        assert ba_authenticator_ok(p, t.kbm)  # the BU was authenticated: so is the BA
    p = send_bu(bed, home, bu_mh(home, 101, 50, kbm=t.kbm, indices=t.indices))
    assert p is not None and (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (0, 101)
    assert bed.cn.bindings()[str(home)]["sequence"] == 101


@pytest.mark.parametrize(
    ("bad_home", "bad_careof", "status"),
    [(True, False, 136), (False, True, 137), (True, True, 138)],
)
def test_nonce_index_never_handed_out_is_expired(
    bed: Bed, bad_home: bool, bad_careof: bool, status: int
) -> None:
    """An index far from the current one is not in the CN's nonce array: "expired".
    The BA is due even without the A flag and carries no authorization data."""
    home = HOME_ADDRESSES[5]
    t = return_routability(bed, home)
    hi = (t.home_index + 1000) & 0xFFFF if bad_home else t.home_index
    ci = (t.careof_index + 1000) & 0xFFFF if bad_careof else t.careof_index
    p = send_bu(bed, home, bu_mh(home, 3, 50, kbm=t.kbm, indices=(hi, ci), ack=False))
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (status, 3)
    assert not ba_authenticated(p) and mh_checksum_ok(p)
    assert str(home) not in bed.cn.bindings()


@pytest.mark.parametrize("missing", ["nonce indices", "authorization data"])
def test_missing_options_on_a_correspondent_bu_are_discarded(bed: Bed, missing: str) -> None:
    home = HOME_ADDRESSES[6]
    t = return_routability(bed, home)
    if missing == "nonce indices":
        mh = bu_mh(home, 1, 50, kbm=t.kbm, indices=None)
    else:
        mh = bu_mh(home, 1, 50, kbm=None, indices=t.indices, auth=False)
    assert send_bu(bed, home, mh, NO_ANSWER) is None
    assert str(home) not in bed.cn.bindings()


# --------------------------------------------------------------------------- 4. Binding Error 1


def echo_with_hao(home: IPv6Address, ident: int) -> IPv6:
    return (
        IPv6(src=str(COA), dst=str(CN))
        / IPv6ExtHdrDestOpt(options=[HAO(hoa=str(home))])
        / ICMPv6EchoRequest(id=ident, seq=1)
    )


def is_be(p: IPv6) -> bool:
    return MIP6MH_BE in p


def test_home_address_option_without_binding_gets_binding_error_1(bed: Bed) -> None:
    # with a binding (care-of = source) the option is fine: no Binding Error
    bound = HOME_ADDRESSES[7]
    register(bed, bound)
    assert bed.f1.exchange(echo_with_hao(bound, 1), is_be, NO_ANSWER) is None

    home = HOME_ADDRESSES[8]
    p = bed.f1.exchange(echo_with_hao(home, 2), is_be)
    assert p is not None, bed.cn.tail()
    be = p[MIP6MH_BE]
    assert (p.src, p.dst, be.status, be.ha) == (str(CN), str(COA), 1, str(home))
    assert mh_checksum_ok(p)

    # rate limited (MAX_UPDATE_RATE, 3/s): a burst of 20 gets a handful at most
    bed.f1.drain()
    for i in range(20):
        bed.f1.send(echo_with_hao(home, 100 + i))
    got = bed.f1.capture(is_be, 0.5, count=20)
    assert 1 <= len(got) <= 6, len(got)


# --------------------------------------------------------------------------- 5. de-registration


def test_deregistration_removes_the_binding(bed: Bed) -> None:
    home = HOME_ADDRESSES[9]
    t, _ = register(bed, home, seq=20)
    rows = {r["home_address"]: r for r in bed.cn.status_cli()["binding_cache"]["rows"]}
    assert rows[str(home)]["care_of_address"] == str(COA)
    kbm = kbm_of(t.home_token, None)  # deletion: Kbm = SHA1(home token)
    p = send_bu(bed, home, bu_mh(home, 21, 0, kbm=kbm, indices=t.indices))
    assert p is not None, bed.cn.tail()
    assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq, p[MIP6MH_BA].mhtime) == (0, 21, 0)
    assert ba_authenticator_ok(p, kbm)
    rows = {r["home_address"]: r for r in bed.cn.status_cli()["binding_cache"]["rows"]}
    assert str(home) not in rows


# --------------------------------------------------------------------------- 139 (an HA as CN)


@pytest.mark.seg6(auto=True)
def test_correspondent_bu_over_a_home_registration_139(bed: Bed, tmp_path: Path) -> None:
    """The HA answers as a correspondent too: return routability with the HA first
    (the home address is still at home), then a home registration, then an H=0 BU
    with the tokens → 139."""
    home = hoa(0x100)  # examples/testbed/ha lists 2001:db8:1::100
    ha = HaDaemon(bed.tb, tmp_path, node="ha")
    try:
        bed.home.add_address(home)
        ha.start()
        t = return_routability(bed, home, HA, ha)
        bed.home.del_address(home)  # else the HA's DAD finds it: 134
        p = bed.f1.ba(binding_update(home, COA, 1, 100))
        assert p is not None and p[MIP6MH_BA].status == 0, ha.tail()
        mh = bu_mh(home, 2, 50, kbm=t.kbm, indices=t.indices, cn=HA)
        p = bed.f1.ba(bu_packet(home, mh, cn=HA))
        assert p is not None, ha.tail()
        assert (p[MIP6MH_BA].status, p[MIP6MH_BA].seq) == (139, 2)
        assert ha.bindings()[str(home)]["home_registration"] is True
    finally:
        ha.stop()
        if home in addresses(bed.home):
            bed.home.del_address(home)


def addresses(station: Station) -> list[IPv6Address]:
    out = ip(station.tb, station.tag, "-6", "-o", "addr", "show", "dev", station.ifname)
    return [IPv6Address(line.split()[3].split("/")[0]) for line in out.splitlines()]


# ------------------------------------------------------------------ no RO kernel state here


def test_no_route_optimisation_state_on_a_kernel_without_route2_hao(bed: Bed) -> None:
    """This kernel has no route2/hao XFRM states (no CONFIG_IPV6_MIP6): an accepted
    correspondent binding renders nothing and the CN's kernel holds no XFRM object;
    the CN keeps sending to the home address (through the home agent).  The vm tier
    (tests/vm/test_route_optimisation.py) covers the kernel that has them."""
    from mip6ctl.kernel.probe import kernel_mip6_missing

    if kernel_mip6_missing() is None:
        pytest.skip("this kernel has CONFIG_IPV6_MIP6: the vm tier tests route optimisation")
    home = HOME_ADDRESSES[15]
    register(bed, home)
    doc = bed.cn.rpc("status")
    assert str(home) in {r["home_address"] for r in doc["binding_cache"]["rows"]}
    assert doc["reconcile"]["correspondents"] == 0
    for what in ("policy", "state"):
        out = ip(bed.tb, "cn", "xfrm", what, "list")
        assert out.strip() == "", f"xfrm {what}s on the CN: {out}"
