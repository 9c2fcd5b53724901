"""Correspondent node (§9.4, §9.5.1): return routability, nonce rotation, authorised BUs.

The mobile node's side (tokens, Kbm, authenticator) is computed here with
hmac/hashlib directly, independently of mip6ctl.wire.rr.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from ipaddress import IPv6Address

import pytest

from mip6ctl.engine import Binding, BindingChanged, Engine, ForgetBinding, NonceTable, Send
from mip6ctl.engine.events import Action
from mip6ctl.wire.mh import (
    BAStatus,
    BindingAcknowledgement,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    encode_mh,
)
from mip6ctl.wire.mobopts import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    NonceIndices,
)

from .helpers import KCN, bas, cn_config, only_ba, rx, sends

HOA = IPv6Address("2001:db8:0:104::100")
COA = IPv6Address("2001:db8:0:101::100")
COA2 = IPv6Address("2001:db8:0:102::100")
CN = IPv6Address("2001:db8:0:1::1")
HOME_NONCE = bytes.fromhex("a1a2a3a4a5a6a7a8")
CAREOF_NONCE = bytes.fromhex("b1b2b3b4b5b6b7b8")
T0 = 5000.0


def fixed_random(*chunks: bytes) -> Callable[[int], bytes]:
    """Hands out the given nonces in order, then counter-made ones."""
    queue = list(chunks)
    counter = [0xC0]

    def rnd(n: int) -> bytes:
        if queue:
            return queue.pop(0)
        counter[0] += 1
        return bytes([counter[0]]) * n

    return rnd


def cn_engine(*nonces: bytes, first_index: int = 0, **cn: object) -> Engine:
    rnd = fixed_random(*nonces)
    e = Engine(cn_config(**cn), T0, kcn=KCN, random_bytes=rnd)
    e.cn.nonces = NonceTable(rnd, first_index=first_index)
    return e


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


def run_rr(e: Engine, now: float, hoa: IPv6Address = HOA, coa: IPv6Address = COA,
           careof_at: float | None = None) -> tuple[HomeTest, CareofTest]:
    """HoTI (from the home address, via the HA) and CoTI (from the care-of address)."""
    [hot_send] = e.handle(rx(HomeTestInit(b"H" * 8), hoa, CN), now)
    [cot_send] = e.handle(rx(CareofTestInit(b"C" * 8), coa, CN), careof_at or now)
    assert isinstance(hot_send, Send) and isinstance(cot_send, Send)
    assert (hot_send.src, hot_send.dst) == (CN, hoa)  # HoT goes to the home address
    assert (cot_send.src, cot_send.dst) == (CN, coa)
    hot, cot = hot_send.message, cot_send.message
    assert isinstance(hot, HomeTest) and isinstance(cot, CareofTest)
    assert hot.home_init_cookie == b"H" * 8 and cot.careof_init_cookie == b"C" * 8
    return hot, cot


def signed_bu(seq: int, hot: HomeTest, cot: CareofTest | None, *, lifetime: int = 100,
              flags: int = int(BUFlag.A), coa: IPv6Address = COA, alt: bool = False) -> bytes:
    """What a mobile node sends: Kbm from the tokens, authenticator over the MH data."""
    opts = (AlternateCareofAddress(coa),) if alt else ()
    cidx = cot.careof_nonce_index if cot is not None else 0
    indices = NonceIndices(hot.home_nonce_index, cidx)
    bu = BindingUpdate(seq, flags, lifetime, (*opts, indices, BindingAuthorizationData()))
    raw = encode_mh(bu)
    tokens = hot.home_keygen_token + (cot.careof_keygen_token if cot is not None else b"")
    kbm = hashlib.sha1(tokens).digest()
    data = raw[:4] + b"\x00\x00" + raw[6:-12]
    return data + hmac_sha1(kbm, coa.packed + CN.packed + data)[:12]


def send_bu(e: Engine, raw: bytes, now: float, *, src: IPv6Address = COA,
            hoa: IPv6Address | None = HOA) -> list[Action]:
    return e.handle(rx(raw, src, CN, hao=hoa), now)


def ba_authenticator_ok(ba: BindingAcknowledgement, kbm: bytes, coa: IPv6Address) -> bool:
    raw = encode_mh(ba)
    data = raw[:4] + b"\x00\x00" + raw[6:-12]
    return hmac_sha1(kbm, coa.packed + CN.packed + data)[:12] == raw[-12:]


# --------------------------------------------------------------------------- the vector


def test_project_vector_bu_is_accepted_and_ba_authenticator_verifies() -> None:
    e = cn_engine(HOME_NONCE, CAREOF_NONCE, first_index=1)
    hot, cot = run_rr(e, T0, careof_at=T0 + 31)  # 31 s later: a new nonce (index 2)
    assert (hot.home_nonce_index, cot.careof_nonce_index) == (1, 2)
    assert hot.home_keygen_token == bytes.fromhex("bec63a373a9d46f2")
    assert cot.careof_keygen_token == bytes.fromhex("41ca7fa30c70b913")
    raw = signed_bu(10000, hot, cot)
    assert raw.hex() == "3b0305000000271080000064040400010002050c" + "829a3cebb232508f85ed1b6a"
    out = send_bu(e, raw, T0 + 32)
    assert out[0] == BindingChanged(HOA, e.cache.get(HOA), "registered")
    [send] = sends(out)
    ba = send.message
    assert isinstance(ba, BindingAcknowledgement)
    assert (ba.status, ba.sequence, ba.lifetime) == (0, 10000, 100)
    assert (send.src, send.dst, send.routing_header_address) == (CN, COA, HOA)
    kbm = bytes.fromhex("9efc95d286cbb5498c37894fb359314de4fb6fad")
    assert ba_authenticator_ok(ba, kbm, COA)
    assert not ba_authenticator_ok(ba, hashlib.sha1(b"other").digest(), COA)
    b = e.cache.get(HOA)
    assert (b.care_of_address, b.local_address, b.home_registration) == (COA, CN, False)


def test_tokens_match_an_independent_computation() -> None:
    e = cn_engine(HOME_NONCE, CAREOF_NONCE)
    hot, cot = run_rr(e, T0)
    assert hot.home_nonce_index == cot.careof_nonce_index == 0  # one nonce serves both
    assert hot.home_keygen_token == hmac_sha1(KCN, HOA.packed + HOME_NONCE + b"\x00")[:8]
    assert cot.careof_keygen_token == hmac_sha1(KCN, COA.packed + HOME_NONCE + b"\x01")[:8]


def test_hoti_or_coti_with_home_address_option_is_discarded() -> None:
    e = cn_engine()
    assert e.handle(rx(HomeTestInit(b"H" * 8), COA, CN, hao=HOA), T0) == []
    assert e.handle(rx(CareofTestInit(b"C" * 8), COA, CN, hao=HOA), T0) == []


# --------------------------------------------------------------------------- nonces


def test_nonce_rotation_every_30_seconds_and_validity_240() -> None:
    table = NonceTable(fixed_random())
    i0, n0 = table.current(0.0)
    assert table.current(29.9) == (i0, n0)  # a token from it can still live 210 s
    i1, n1 = table.current(30.1)
    assert i1 == i0 + 1 and n1 != n0
    assert table.get(i0, 240.0) == n0
    assert table.get(i0, 240.1) is None
    assert table.get(i1, 270.0) == n1


def test_expired_home_nonce_136_sent_without_a_flag_and_without_authorization() -> None:
    e = cn_engine()
    hot, _ = run_rr(e, T0)
    _, cot = run_rr(e, T0 + 200)  # fresh care-of nonce
    raw = signed_bu(1, hot, cot, flags=0)
    ba = only_ba(send_bu(e, raw, T0 + 241))
    assert ba.status == BAStatus.EXPIRED_HOME_NONCE_INDEX
    assert ba.authorization_data is None
    assert HOA not in e.cache


def test_expired_careof_nonce_137() -> None:
    e = cn_engine()
    _, cot = run_rr(e, T0)
    hot, _ = run_rr(e, T0 + 200)
    ba = only_ba(send_bu(e, signed_bu(1, hot, cot), T0 + 241))
    assert ba.status == BAStatus.EXPIRED_CAREOF_NONCE_INDEX


def test_both_expired_138() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, signed_bu(1, hot, cot), T0 + 240.5))
    assert ba.status == BAStatus.EXPIRED_NONCES


def test_just_inside_nonce_lifetime_is_accepted() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    assert only_ba(send_bu(e, signed_bu(1, hot, cot), T0 + 240)).status == 0


def test_deletion_ignores_the_careof_nonce_and_uses_home_token_only() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    send_bu(e, signed_bu(1, hot, cot), T0 + 1)
    hot2, _ = run_rr(e, T0 + 239)
    # from home: source = home address, no HAO, care-of = home address
    raw = signed_bu(2, hot2, None, lifetime=0, coa=HOA)
    out = send_bu(e, raw, T0 + 250, src=HOA, hoa=None)
    assert out[0] == BindingChanged(HOA, None, "deregistered")
    [send] = sends(out)
    assert (send.dst, send.routing_header_address) == (HOA, None)
    assert ba_authenticator_ok(send.message, hashlib.sha1(hot2.home_keygen_token).digest(), HOA)


# --------------------------------------------------------------------------- rules


def test_bad_authenticator_is_discarded() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    raw = bytearray(signed_bu(1, hot, cot))
    raw[-1] ^= 1
    assert send_bu(e, bytes(raw), T0 + 1) == []
    # authenticator made for another care-of address
    assert send_bu(e, signed_bu(1, hot, cot), T0 + 1, src=COA2) == []
    assert HOA not in e.cache


def test_missing_nonce_indices_or_authorization_is_discarded() -> None:
    e = cn_engine()
    run_rr(e, T0)
    plain = BindingUpdate(1, int(BUFlag.A), 100)
    assert e.handle(rx(plain, COA, CN, hao=HOA), T0) == []
    no_auth = BindingUpdate(1, int(BUFlag.A), 100, (NonceIndices(0, 0),))
    assert e.handle(rx(no_auth, COA, CN, hao=HOA), T0) == []


def test_link_local_care_of_is_discarded() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    ll = IPv6Address("fe80::1")
    assert send_bu(e, signed_bu(1, hot, cot, coa=ll, alt=True), T0) == []


def test_sequence_out_of_window_135_is_authenticated_and_sent_without_a() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    send_bu(e, signed_bu(15, hot, cot), T0 + 1)
    ba = only_ba(send_bu(e, signed_bu(32783, hot, cot, flags=0), T0 + 2))
    assert (ba.status, ba.sequence) == (135, 15)
    kbm = hashlib.sha1(hot.home_keygen_token + cot.careof_keygen_token).digest()
    assert ba_authenticator_ok(ba, kbm, COA)


def test_success_without_a_flag_sends_no_ba() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    out = send_bu(e, signed_bu(1, hot, cot, flags=0), T0 + 1)
    assert bas(out) == [] and HOA in e.cache


def test_existing_home_registration_gives_139() -> None:
    e = cn_engine()
    e.cache.put(Binding(HOA, COA, CN, 100, T0, T0 + 1000, 1, 0xC000, True))
    hot, cot = run_rr(e, T0)
    assert only_ba(send_bu(e, signed_bu(2, hot, cot), T0 + 1)).status == 139


def test_home_registration_over_correspondent_entry_gives_139() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    send_bu(e, signed_bu(1, hot, cot), T0 + 1)
    bu = BindingUpdate(2, int(BUFlag.A | BUFlag.H), 100)
    assert only_ba(e.handle(rx(bu, COA, CN, hao=HOA), T0 + 2)).status == 139


def test_lifetime_capped_by_configuration() -> None:
    e = cn_engine(max_binding_lifetime=100)
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, signed_bu(1, hot, cot, lifetime=0xFFFF), T0 + 1))
    assert ba.lifetime_seconds == 100
    e2 = cn_engine()
    hot, cot = run_rr(e2, T0)
    assert only_ba(send_bu(e2, signed_bu(1, hot, cot, lifetime=0xFFFF), T0)).lifetime == 105


def test_full_cache_answers_130_even_without_a() -> None:
    e = Engine(cn_config(), T0, kcn=KCN, max_cache_entries=0)
    hot, cot = run_rr(e, T0)
    assert only_ba(send_bu(e, signed_bu(1, hot, cot, flags=0), T0)).status == 130


@pytest.mark.parametrize(
    "cn",
    [
        {"route_optimization": False},
        {"default_action": "deny"},
        {"policies": [{"home_prefix": "2001:db8:0:104::/64", "action": "deny"}]},
    ],
)
def test_local_policy_refuses_route_optimisation(cn: dict[str, object]) -> None:
    e = Engine(cn_config(**cn), T0, kcn=KCN)
    assert e.handle(rx(HomeTestInit(b"H" * 8), HOA, CN), T0) == []
    allow_all = Engine(cn_config(), T0, kcn=KCN)
    hot, cot = run_rr(allow_all, T0)
    e.cn.nonces = allow_all.cn.nonces  # tokens valid, policy still says no
    assert send_bu(e, signed_bu(1, hot, cot), T0) == []


def test_policy_first_match_wins() -> None:
    e = Engine(cn_config(default_action="deny", policies=[
        {"home_prefix": "2001:db8:0:104::/64", "action": "allow"},
        {"home_prefix": "2001:db8::/32", "action": "deny"},
    ]), T0, kcn=KCN)
    run_rr(e, T0)


# --------------------------------------------------------------------------- timers


def test_binding_refresh_request_before_expiry_of_a_used_entry() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    send_bu(e, signed_bu(1, hot, cot), T0)  # 400 s granted
    assert e.next_timer() == T0 + 400  # expiry only: not used yet
    e.binding_used(HOA, T0 + 10)
    assert e.next_timer() == pytest.approx(T0 + 360)
    out = e.handle_timer(T0 + 360)
    assert out == [Send(BindingRefreshRequest(), CN, COA, None, HOA)]
    assert e.handle_timer(T0 + 399) == []  # once
    assert e.handle_timer(T0 + 400) == [BindingChanged(HOA, None, "expired")]  # no Forget


def test_no_refresh_request_when_refreshed_meanwhile() -> None:
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    send_bu(e, signed_bu(1, hot, cot), T0)
    e.binding_used(HOA, T0 + 1)
    hot, cot = run_rr(e, T0 + 100)
    send_bu(e, signed_bu(2, hot, cot), T0 + 100)
    out = e.handle_timer(T0 + 360)
    assert not any(isinstance(a, Send) for a in out)
    assert not any(isinstance(a, ForgetBinding) for a in out)
