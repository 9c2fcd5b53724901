"""The return-routability test vector of PROTOCOL.md, reproduced octet for octet."""

from __future__ import annotations

from ipaddress import IPv6Address

from mip6ctl.wire import rr
from mip6ctl.wire.mh import BindingUpdate, BUFlag, decode_mh, encode_mh
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices

KCN = bytes(range(20))
HOME_NONCE = bytes.fromhex("a1a2a3a4a5a6a7a8")
CAREOF_NONCE = bytes.fromhex("b1b2b3b4b5b6b7b8")
HOA = IPv6Address("2001:db8:0:104::100")
COA = IPv6Address("2001:db8:0:101::100")
CN = IPv6Address("2001:db8:0:1::1")
HOME_TOKEN = bytes.fromhex("bec63a373a9d46f2")
CAREOF_TOKEN = bytes.fromhex("41ca7fa30c70b913")
KBM = bytes.fromhex("9efc95d286cbb5498c37894fb359314de4fb6fad")
MH_DATA = bytes.fromhex("3b0305000000271080000064040400010002050c")
AUTH = bytes.fromhex("829a3cebb232508f85ed1b6a")


def vector_bu() -> BindingUpdate:
    return BindingUpdate(
        sequence=10000,
        flags=BUFlag.A,
        lifetime=100,
        options=(NonceIndices(1, 2), BindingAuthorizationData()),
    )


def test_keygen_tokens_one_shot_and_generator() -> None:
    assert rr.home_keygen_token(KCN, HOA, HOME_NONCE) == HOME_TOKEN
    assert rr.careof_keygen_token(KCN, COA, CAREOF_NONCE) == CAREOF_TOKEN
    gen = rr.KeygenTokenGenerator(KCN)
    for _ in range(2):  # the keyed object must be reusable
        assert gen.home_keygen_token(HOA, HOME_NONCE) == HOME_TOKEN
        assert gen.careof_keygen_token(COA.packed, CAREOF_NONCE) == CAREOF_TOKEN


def test_kbm_and_delete_form() -> None:
    assert rr.binding_management_key(HOME_TOKEN, CAREOF_TOKEN) == KBM
    import hashlib

    assert rr.binding_management_key(HOME_TOKEN) == hashlib.sha1(HOME_TOKEN).digest()
    assert rr.binding_management_key(HOME_TOKEN) != KBM


def test_mh_data_and_authenticator() -> None:
    raw = encode_mh(vector_bu())
    assert rr.mh_data(raw) == MH_DATA
    assert rr.authenticator(KBM, COA, CN, MH_DATA) == AUTH
    auth = rr.BindingAuthenticator(KBM)
    signed = auth.sign(raw, COA, CN)
    assert signed[-12:] == AUTH
    assert signed[:-12] == MH_DATA
    assert auth.verify(signed, COA, CN)
    decoded = decode_mh(signed)
    assert isinstance(decoded, BindingUpdate)
    assert decoded.authorization_data == BindingAuthorizationData(AUTH)
    assert decoded.nonce_indices == NonceIndices(1, 2)


def test_verify_ignores_checksum_but_not_content() -> None:
    auth = rr.BindingAuthenticator(KBM)
    signed = auth.sign(encode_mh(vector_bu()), COA, CN)
    with_checksum = encode_mh(decode_mh(signed), src=COA, dst=CN, home_address=HOA)
    assert with_checksum[4:6] != b"\x00\x00"
    assert auth.verify(with_checksum, COA, CN)  # checksum is zeroed for MH data
    tampered = bytearray(with_checksum)
    tampered[7] ^= 1  # sequence number
    assert not auth.verify(bytes(tampered), COA, CN)
    assert not auth.verify(with_checksum, CN, COA)
    assert not auth.verify(with_checksum[:10], COA, CN)
