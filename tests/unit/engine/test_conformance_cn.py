"""RFC 6275 conformance, correspondent node role (§6.1.7, §6.1.8, §9.2–§9.5).

One test per row of docs/conformance.md; each docstring quotes the RFC sentence
it checks (with its section). Everything goes through the public engine API
(``Engine.handle`` / ``handle_timer`` with a fake clock); the mobile node's side
of return routability (tokens, Kbm, authenticator) is computed here with
hmac/hashlib, independently of mip6ctl.wire.rr.
"""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv6Address

import pytest

from mip6ctl.engine import (
    Binding,
    BindingChanged,
    Engine,
    HomeAddressOptionReceived,
    Malformed,
    Send,
    SendParameterProblem,
)
from mip6ctl.engine.events import Action
from mip6ctl.wire.errors import BadPayloadProto, HeaderLenTooShort, UnknownMHType
from mip6ctl.wire.mh import (
    BAStatus,
    BindingAcknowledgement,
    BindingError,
    BindingUpdate,
    BUFlag,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    encode_mh,
)
from mip6ctl.wire.mobopts import AlternateCareofAddress, BindingAuthorizationData, NonceIndices

from .helpers import CN, COA, COA2, HOA, HOA2, KCN, bas, cn_config, only_ba, rx, sends

T0 = 1000.0
UNSPECIFIED = IPv6Address("::")
LINK_LOCAL = IPv6Address("fe80::1")
MULTICAST = IPv6Address("ff0e::1")
A = int(BUFlag.A)


class Counter:
    """Deterministic random bytes (Kcn, nonces)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, k: int) -> bytes:
        self.n += 1
        return (self.n.to_bytes(4, "big") * ((k + 3) // 4))[:k]


def cn_engine(**cn: object) -> Engine:
    return Engine(cn_config(**cn), T0, kcn=KCN, random_bytes=Counter())


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


def keygen_token(address: IPv6Address, nonce: bytes, which: int) -> bytes:
    """§5.2.5: First (64, HMAC_SHA1 (Kcn, (address | nonce | 0 or 1)))."""
    return hmac_sha1(KCN, address.packed + nonce + bytes([which]))[:8]


def run_rr(
    e: Engine, now: float, hoa: IPv6Address = HOA, coa: IPv6Address = COA
) -> tuple[HomeTest, CareofTest]:
    """HoTI from the home address, CoTI from the care-of address; the HoT and CoT."""
    [hot] = sends(e.handle(rx(HomeTestInit(b"H" * 8), hoa, CN), now))
    [cot] = sends(e.handle(rx(CareofTestInit(b"C" * 8), coa, CN), now))
    assert isinstance(hot.message, HomeTest) and isinstance(cot.message, CareofTest)
    return hot.message, cot.message


def signed_bu(
    seq: int,
    home_index: int,
    home_token: bytes,
    careof_index: int,
    careof_token: bytes | None,
    *,
    lifetime: int = 100,
    flags: int = A,
    coa: IPv6Address = COA,
    alt: bool = False,
) -> bytes:
    """The BU a mobile node sends: Kbm from the tokens, authenticator over the MH data."""
    opts = (AlternateCareofAddress(coa),) if alt else ()
    indices = NonceIndices(home_index, careof_index)
    raw = encode_mh(
        BindingUpdate(seq, flags, lifetime, (*opts, indices, BindingAuthorizationData()))
    )
    kbm = hashlib.sha1(home_token + (careof_token or b"")).digest()
    data = raw[:4] + b"\x00\x00" + raw[6:-12]
    return data + hmac_sha1(kbm, coa.packed + CN.packed + data)[:12]


def bu_from(hot: HomeTest, cot: CareofTest | None, seq: int, **kw: object) -> bytes:
    cidx = cot.careof_nonce_index if cot is not None else 0
    ctok = cot.careof_keygen_token if cot is not None else None
    return signed_bu(seq, hot.home_nonce_index, hot.home_keygen_token, cidx, ctok, **kw)  # type: ignore[arg-type]


def kbm_of(hot: HomeTest, cot: CareofTest | None) -> bytes:
    return hashlib.sha1(hot.home_keygen_token + (cot.careof_keygen_token if cot else b"")).digest()


def send_bu(
    e: Engine,
    raw: bytes,
    now: float,
    *,
    src: IPv6Address = COA,
    hoa: IPv6Address | None = HOA,
) -> list[Action]:
    return e.handle(rx(raw, src, CN, hao=hoa), now)


def ba_verifies(ba: BindingAcknowledgement, kbm: bytes, coa: IPv6Address) -> bool:
    raw = encode_mh(ba)
    data = raw[:4] + b"\x00\x00" + raw[6:-12]
    return hmac_sha1(kbm, coa.packed + CN.packed + data)[:12] == raw[-12:]


def registered(e: Engine, seq: int = 10, now: float = T0) -> tuple[HomeTest, CareofTest]:
    """Return routability and an accepted BU for (HOA, COA)."""
    hot, cot = run_rr(e, now)
    assert only_ba(send_bu(e, bu_from(hot, cot, seq), now)).status == 0
    return hot, cot


# --------------------------------------------------------------------------- §6.1.7


def test_6_1_7_ba_copies_the_sequence_number_and_the_k_bit_is_zero() -> None:
    """§6.1.7: "The Sequence Number in the Binding Acknowledgement is copied from the
    Sequence Number field in the Binding Update." ... "Correspondent nodes set the K
    bit to 0." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, bu_from(hot, cot, 4321, flags=int(BUFlag.A | BUFlag.K)), T0))
    assert (ba.status, ba.sequence) == (0, 4321)
    assert ba.flags == 0 and not ba.key_management_mobility


# --------------------------------------------------------------------------- §9.2


def test_9_2_unknown_mh_type_is_answered_with_binding_error_2() -> None:
    """§9.2: "The MH Type field MUST have a known value (Section 6.1.1). Otherwise, the
    node MUST discard the message and issue a Binding Error message as described in
    Section 9.3.3, with the Status field set to 2 (unrecognized MH Type value)." """
    e = cn_engine()
    err = UnknownMHType("type 42", mh_type=42, base=40)
    out = e.handle(Malformed(err, b"\x60" + bytes(47), COA, CN), T0)
    assert out == [Send(BindingError(2, UNSPECIFIED), CN, COA)]


def test_9_2_payload_proto_not_59_gets_parameter_problem_pointing_at_it() -> None:
    """§9.2: "The Payload Proto field MUST be IPPROTO_NONE (59 decimal). Otherwise, the
    node MUST discard the message and SHOULD send ICMP Parameter Problem, Code 0,
    directly to the Source Address of the packet as specified in RFC 4443 [17]. Thus,
    no Binding Cache information is used in sending the ICMP message. The Pointer field
    in the ICMP message SHOULD point at the Payload Proto field." """
    e = cn_engine()
    registered(e)  # a binding for HOA exists: it must not be used
    packet = b"\x60" + bytes(55)
    err = BadPayloadProto("payload proto 6", mh_offset=0, base=40)
    out = e.handle(Malformed(err, packet, HOA, CN), T0 + 1)
    assert out == [SendParameterProblem(0, 40, packet, CN, HOA)]


def test_9_2_header_len_below_minimum_gets_parameter_problem_at_header_len() -> None:
    """§9.2: "The Header Len field in the Mobility Header MUST NOT be less than the length
    specified for this particular type of message in Section 6.1. Otherwise, the node
    MUST discard the message and SHOULD send ICMP Parameter Problem, Code 0, directly to
    the Source Address of the packet ... The Pointer field in the ICMP message SHOULD
    point at the Header Len field." """
    e = cn_engine()
    packet = b"\x60" + bytes(47)
    err = HeaderLenTooShort("BU with Header Len 0", mh_offset=1, base=40)
    out = e.handle(Malformed(err, packet, COA, CN), T0)
    assert out == [SendParameterProblem(0, 41, packet, CN, COA)]


# --------------------------------------------------------------------------- §9.3.1


def test_9_3_1_home_address_option_without_binding_is_dropped_with_binding_error_1() -> None:
    """§9.3.1: "Otherwise, the packet MUST be dropped if there is no corresponding Binding
    Cache entry. A corresponding Binding Cache entry MUST have the same home address as
    appears in the Home Address destination option, and the currently registered
    care-of address MUST be equal to the source address of the packet." ... "If the
    packet is dropped due to the above tests, the correspondent node MUST send the
    Binding Error message as described in Section 9.3.3. The Status field in this
    message should be set to 1 (unknown binding for Home Address destination option)." """
    e = cn_engine()
    be1 = [Send(BindingError(1, HOA), CN, COA)]
    assert e.handle(HomeAddressOptionReceived(COA, CN, HOA), T0) == be1
    registered(e)
    assert e.handle(HomeAddressOptionReceived(COA, CN, HOA), T0 + 1) == []  # passes
    # the registered care-of address must be the source
    assert e.handle(HomeAddressOptionReceived(COA2, CN, HOA), T0 + 2) == [
        Send(BindingError(1, HOA), CN, COA2)
    ]


def test_9_3_1_the_check_is_not_done_for_a_binding_update() -> None:
    """§9.3.1: "These tests MUST NOT be done for packets that contain a Home Address
    option and a Binding Update." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    out = send_bu(e, bu_from(hot, cot, 1), T0)  # no binding yet, HAO present
    assert not any(isinstance(s.message, BindingError) for s in sends(out))
    assert only_ba(out).status == 0 and HOA in e.cache


def test_9_3_1_mobility_header_with_home_address_option_is_processed_normally() -> None:
    """§9.3.1: "If the Next Header value of the Destination Option is one of the
    following: {50 (ESP), 51 (AH), 135 (Mobility Header)}, the packet SHOULD be
    processed normally. Otherwise, the packet MUST be dropped if there is no
    corresponding Binding Cache entry." """
    e = cn_engine()
    # a Binding Error from a correspondent that is itself a mobile node (away from home)
    out = e.handle(rx(BindingError(1, HOA), COA2, CN, hao=HOA2), T0)
    assert not any(isinstance(s.message, BindingError) for s in sends(out))


# --------------------------------------------------------------------------- §9.3.2


def test_9_3_2_binding_is_handed_to_the_data_path_and_removed_with_it() -> None:
    """§9.3.2: "If the sending node has a Binding Cache entry for this address, the
    sending node SHOULD use a type 2 routing header to route the packet to this mobile
    node (the destination node) by way of its care-of address." (The engine asks the
    reconciler for the route2 state with BindingChanged.)"""
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    out = send_bu(e, bu_from(hot, cot, 1), T0)
    changed = [a for a in out if isinstance(a, BindingChanged)]
    assert len(changed) == 1 and changed[0].binding is not None
    b = changed[0].binding
    assert (b.home_address, b.care_of_address, b.local_address) == (HOA, COA, CN)
    assert not b.home_registration
    hot2, _ = run_rr(e, T0 + 10)
    out = send_bu(e, bu_from(hot2, None, 2, lifetime=0), T0 + 10)
    assert BindingChanged(HOA, None, "deregistered") in out


# --------------------------------------------------------------------------- §9.3.3


def test_9_3_3_binding_error_goes_to_the_source_with_the_home_address_field() -> None:
    """§9.3.3: "The Binding Error message is sent directly to the address that appeared
    in the IPv6 Source Address field of the offending packet." ... "The Home Address
    field in the Binding Error message MUST be copied from the Home Address field in the
    Home Address destination option of the offending packet, or set to the unspecified
    address if no such option appeared in the packet." """
    e = cn_engine()
    err = UnknownMHType("type 9", mh_type=9, base=64)
    out = e.handle(Malformed(err, b"\x60" + bytes(71), COA, CN, HOA), T0)
    assert out == [Send(BindingError(2, HOA), CN, COA)]
    err = UnknownMHType("type 9", mh_type=9, base=40)
    out = e.handle(Malformed(err, b"\x60" + bytes(47), COA2, CN), T0 + 1)
    assert out == [Send(BindingError(2, UNSPECIFIED), CN, COA2)]


@pytest.mark.parametrize("src", [UNSPECIFIED, MULTICAST])
def test_9_3_3_no_binding_error_to_a_non_unicast_source(src: IPv6Address) -> None:
    """§9.3.3: "If the Source Address field does not contain a unicast address, the
    Binding Error message MUST NOT be sent." """
    e = cn_engine()
    assert e.handle(HomeAddressOptionReceived(src, CN, HOA), T0) == []
    err = UnknownMHType("type 9", mh_type=9, base=40)
    assert e.handle(Malformed(err, b"\x60" + bytes(47), src, CN), T0) == []
    # control: a unicast source is answered
    assert e.handle(HomeAddressOptionReceived(COA, CN, HOA), T0) != []


def test_9_3_3_binding_errors_are_rate_limited() -> None:
    """§9.3.3: "Binding Error messages SHOULD be subject to rate limiting in the same
    manner as is done for ICMPv6 messages [17]." """
    e = cn_engine()
    burst = [e.handle(HomeAddressOptionReceived(COA, CN, HOA), T0) for _ in range(20)]
    assert sum(len(out) for out in burst) == 3  # MAX_UPDATE_RATE tokens
    assert e.handle(HomeAddressOptionReceived(COA, CN, HOA), T0 + 1.0) != []


# --------------------------------------------------------------------------- §9.4


@pytest.mark.parametrize("init", [HomeTestInit(b"H" * 8), CareofTestInit(b"C" * 8)])
def test_9_4_1_9_4_2_test_init_with_home_address_option_is_silently_ignored(
    init: HomeTestInit | CareofTestInit,
) -> None:
    """§9.4.1 / §9.4.2: "The packet MUST NOT include a Home Address destination option.
    Any packet carrying a Home Test Init [Care-of Test Init] message that fails to
    satisfy all of these tests MUST be silently ignored." """
    e = cn_engine()
    src = HOA if isinstance(init, HomeTestInit) else COA
    assert e.handle(rx(init, COA2, CN, hao=src), T0) == []
    assert len(sends(e.handle(rx(init, src, CN), T0))) == 1  # control: answered without


def test_9_4_1_kcn_and_a_nonce_are_produced_before_answering() -> None:
    """§9.4.1: "The correspondent node MUST have a secret Kcn and a nonce. If it does not
    have this material yet, it MUST produce it before continuing with the return
    routability procedure." """
    e = Engine(cn_config(), T0, random_bytes=Counter())  # no Kcn given
    [send] = sends(e.handle(rx(HomeTestInit(b"H" * 8), HOA, CN), T0))
    hot = send.message
    assert isinstance(hot, HomeTest)
    kcn = e.cn.kcn
    nonce = e.cn.nonces.get(hot.home_nonce_index, T0)
    assert len(kcn) == 20 and nonce is not None and len(nonce) == 8
    expected = hmac_sha1(kcn, HOA.packed + nonce + b"\x00")[:8]
    assert hot.home_keygen_token == expected


def test_9_4_3_home_test_goes_to_the_home_address_with_the_home_keygen_token() -> None:
    """§9.4.3: "The correspondent node creates a home keygen token and uses the current
    nonce index as the Home Nonce Index. It then creates a Home Test message (Section
    6.1.5) and sends it to the mobile node at the latter's home address." """
    e = cn_engine()
    [send] = sends(e.handle(rx(HomeTestInit(b"cookie-h"), HOA, CN), T0))
    hot = send.message
    assert isinstance(hot, HomeTest)
    assert (send.src, send.dst, send.routing_header_address) == (CN, HOA, None)
    assert hot.home_init_cookie == b"cookie-h"
    nonce = e.cn.nonces.get(hot.home_nonce_index, T0)
    assert nonce is not None
    assert hot.home_keygen_token == keygen_token(HOA, nonce, 0)


def test_9_4_4_care_of_test_goes_to_the_care_of_address_with_the_care_of_token() -> None:
    """§9.4.4: "The correspondent node creates a care-of keygen token and uses the current
    nonce index as the Care-of Nonce Index. It then creates a Care-of Test message
    (Section 6.1.6) and sends it to the mobile node at the latter's care-of address." """
    e = cn_engine()
    [send] = sends(e.handle(rx(CareofTestInit(b"cookie-c"), COA, CN), T0))
    cot = send.message
    assert isinstance(cot, CareofTest)
    assert (send.src, send.dst, send.routing_header_address) == (CN, COA, None)
    assert cot.careof_init_cookie == b"cookie-c"
    nonce = e.cn.nonces.get(cot.careof_nonce_index, T0)
    assert nonce is not None
    assert cot.careof_keygen_token == keygen_token(COA, nonce, 1)


# --------------------------------------------------------------------------- §9.5.1


def _tokens_for(e: Engine, hoa: IPv6Address, coa: IPv6Address) -> tuple[int, bytes, bytes]:
    """Tokens the CN would hand out for any address pair (computed, not asked for)."""
    run_rr(e, T0)  # makes the current nonce
    index = 0
    nonce = e.cn.nonces.get(index, T0)
    assert nonce is not None
    return index, keygen_token(hoa, nonce, 0), keygen_token(coa, nonce, 1)


def test_9_5_1_home_address_must_be_unicast_routable() -> None:
    """§9.5.1: "The packet MUST contain a unicast routable home address, either in the
    Home Address option or in the Source Address, if the Home Address option is not
    present." ... "Packets carrying Binding Updates that fail to satisfy all of these
    tests ... MUST be silently discarded." """
    e = cn_engine()
    idx, htok, ctok = _tokens_for(e, LINK_LOCAL, COA)
    raw = signed_bu(1, idx, htok, idx, ctok, alt=True)
    assert send_bu(e, raw, T0, src=LINK_LOCAL, hoa=None) == []
    assert LINK_LOCAL not in e.cache
    # control: the same BU from a routable home address is accepted
    idx, htok, ctok = _tokens_for(e, HOA2, COA)
    raw = signed_bu(1, idx, htok, idx, ctok, alt=True)
    assert only_ba(send_bu(e, raw, T0, src=HOA2, hoa=None)).status == 0


@pytest.mark.parametrize("coa", [LINK_LOCAL, MULTICAST])
def test_9_5_1_care_of_address_must_be_unicast_routable(coa: IPv6Address) -> None:
    """§9.5.1 (via §9.5.2 / the Alternate Care-of Address): a binding whose care-of
    address is not a unicast routable address is silently discarded ("Packets carrying
    Binding Updates that fail to satisfy all of these tests ... MUST be silently
    discarded")."""
    e = cn_engine()
    idx, htok, ctok = _tokens_for(e, HOA, coa)
    raw = signed_bu(1, idx, htok, idx, ctok, coa=coa, alt=True)
    assert send_bu(e, raw, T0) == []
    assert HOA not in e.cache


def test_9_5_1_home_registration_with_nonce_indices_is_discarded() -> None:
    """§9.5.1: "If the Home Registration (H) bit is set, the Nonce Indices mobility option
    MUST NOT be present." """
    e = cn_engine()
    flags = int(BUFlag.A | BUFlag.H)
    bu = BindingUpdate(1, flags, 100, (NonceIndices(0, 0),))
    assert e.handle(rx(bu, COA, CN, hao=HOA), T0) == []
    assert only_ba(e.handle(rx(BindingUpdate(1, flags, 100), COA, CN, hao=HOA), T0)).status


def test_9_5_1_home_registration_at_a_correspondent_is_rejected_with_131() -> None:
    """§10.3.1 (referred to by §9.5.1): "If the node implements only correspondent node
    functionality, or has not been configured to act as a home agent, then the node MUST
    reject the Binding Update. The node MUST also return a Binding Acknowledgement to the
    mobile node, in which the Status field is set to 131 (home registration not
    supported)." """
    e = cn_engine()
    for flags in (int(BUFlag.A | BUFlag.H), int(BUFlag.H)):  # whatever A says
        out = e.handle(rx(BindingUpdate(7, flags, 100), COA, CN, hao=HOA), T0)
        [send] = sends(out)
        ba = send.message
        assert isinstance(ba, BindingAcknowledgement)
        assert (ba.status, ba.sequence) == (BAStatus.HOME_REGISTRATION_NOT_SUPPORTED, 7)
        assert (send.dst, send.routing_header_address) == (COA, HOA)
    assert HOA not in e.cache


def test_9_5_1_nonce_indices_and_authorization_data_are_required() -> None:
    """§9.5.1: "When the Home Registration (H) bit is not set, the following are also
    required: A Nonce Indices mobility option MUST be present ..." ... "The Binding
    Authorization Data mobility option MUST be present, and its contents MUST satisfy
    rules presented in Section 5.2.6." """
    e = cn_engine()
    run_rr(e, T0)
    assert e.handle(rx(BindingUpdate(1, A, 100), COA, CN, hao=HOA), T0) == []
    no_auth = BindingUpdate(1, A, 100, (NonceIndices(0, 0),))
    assert e.handle(rx(no_auth, COA, CN, hao=HOA), T0) == []
    assert HOA not in e.cache


def test_9_5_1_expired_nonce_indices_get_136_137_138() -> None:
    """§9.5.1: "If the receiving node no longer recognizes the Home Nonce Index value,
    Care-of Nonce Index value, or both values from the Binding Update, then the receiving
    node MUST send back a Binding Acknowledgement with status code 136, 137, or 138,
    respectively." """
    e = cn_engine()
    old_hot, old_cot = run_rr(e, T0)
    new_hot, new_cot = run_rr(e, T0 + 200)  # a younger nonce
    now = T0 + 241  # the first nonce is no longer valid
    cases = [(old_hot, new_cot, 136), (new_hot, old_cot, 137), (old_hot, old_cot, 138)]
    for seq, (hot, cot, status) in enumerate(cases, 1):
        ba = only_ba(send_bu(e, bu_from(hot, cot, seq), now))
        assert ba.status == status
    assert HOA not in e.cache


def test_9_5_1_authenticator_must_verify_else_silent_discard() -> None:
    """§9.5.1: "The correspondent node MUST re-generate the home keygen token and the
    care-of keygen token from the information contained in the packet. It then generates
    the binding management key Kbm and uses it to verify the authenticator field in the
    Binding Authorization Data option" ... "Packets carrying Binding Updates that fail to
    satisfy all of these tests for any reason other than insufficiency of the Sequence
    Number, registration type change, or expired nonce index values, MUST be silently
    discarded." """
    e = cn_engine()
    hot, cot = registered(e, seq=100)
    bad = bytearray(bu_from(hot, cot, 101))
    bad[-1] ^= 1
    assert send_bu(e, bytes(bad), T0 + 1) == []
    # an unauthenticated BU with an old sequence number: discarded, not 135
    stale = bytearray(bu_from(hot, cot, 50))
    stale[-1] ^= 1
    assert send_bu(e, bytes(stale), T0 + 1) == []
    # made for another care-of address than the source
    assert send_bu(e, bu_from(hot, cot, 102), T0 + 1, src=COA2) == []
    assert e.cache.get(HOA).sequence == 100


def test_9_5_1_alternate_care_of_address_is_used_to_verify() -> None:
    """§9.5.1: "When such a message is received and the return routability procedure is
    used as an authorization method, the correspondent node MUST verify the authenticator
    by using the address within the Alternate Care-of Address in the computations." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)  # care-of token for COA
    out = send_bu(e, bu_from(hot, cot, 1, coa=COA, alt=True), T0, src=COA2)
    assert only_ba(out).status == 0
    assert e.cache.get(HOA).care_of_address == COA


def test_9_5_1_without_an_entry_any_sequence_number_is_accepted() -> None:
    """§9.5.1: "If the receiving node has no Binding Cache entry for the indicated home
    address, it MUST accept any Sequence Number value in a received Binding Update from
    this mobile node." """
    for seq in (0, 32768, 65535):
        e = cn_engine()
        hot, cot = run_rr(e, T0)
        assert only_ba(send_bu(e, bu_from(hot, cot, seq), T0)).status == 0


@pytest.mark.parametrize(
    ("last", "new", "accepted"),
    [
        (15, 16, True),
        (15, 15, False),
        (15, 0, False),
        (15, 32783, False),
        (15, 32782, True),
        (65535, 0, True),
        (65535, 65535, False),
    ],
)
def test_9_5_1_sequence_number_window_modulo_2_16_and_135(
    last: int, new: int, accepted: bool
) -> None:
    """§9.5.1: "A Sequence Number in a received Binding Update is considered less than or
    equal to the last received number if its value lies in the range of the last received
    number and the preceding 32768 values, inclusive." ... "then the receiving node MUST
    send back a Binding Acknowledgement with status code 135, and the last accepted
    sequence number in the Sequence Number field of the Binding Acknowledgement." """
    e = cn_engine()
    hot, cot = registered(e, seq=last)
    ba = only_ba(send_bu(e, bu_from(hot, cot, new), T0 + 1))
    if accepted:
        assert ba.status == 0 and e.cache.get(HOA).sequence == new
    else:
        assert (ba.status, ba.sequence) == (135, last)
        assert e.cache.get(HOA).sequence == last


def test_9_5_1_registration_type_change_is_139_and_the_flag_is_kept() -> None:
    """§9.5.1: "If a binding already exists for the given home address and the home
    registration flag has a different value than the Home Registration (H) bit in the
    Binding Update, then the receiving node MUST send back a Binding Acknowledgement with
    status code 139 (registration type change disallowed). The home registration flag
    stored in the Binding Cache entry MUST NOT be changed." """
    e = cn_engine()
    e.cache.put(Binding(HOA, COA, CN, 1000, T0, T0 + 1000, 1, int(BUFlag.A | BUFlag.H), True))
    hot, cot = run_rr(e, T0)
    assert only_ba(send_bu(e, bu_from(hot, cot, 2), T0 + 1)).status == 139
    assert e.cache.get(HOA).home_registration
    # and the other way round
    e2 = cn_engine()
    registered(e2, seq=1)
    h1 = BindingUpdate(2, int(BUFlag.A | BUFlag.H), 100)
    assert only_ba(e2.handle(rx(h1, COA, CN, hao=HOA), T0 + 1)).status == 139
    assert not e2.cache.get(HOA).home_registration


def test_9_5_1_accepted_sequence_number_is_stored() -> None:
    """§9.5.1: "The Sequence Number value received from a mobile node in a Binding Update
    is stored by the receiving node in its Binding Cache entry for the given home
    address." """
    e = cn_engine()
    hot, cot = registered(e, seq=40000)
    assert e.cache.get(HOA).sequence == 40000
    send_bu(e, bu_from(hot, cot, 40007), T0 + 1)
    assert e.cache.get(HOA).sequence == 40007


def test_9_5_1_deletion_ignores_the_care_of_nonce_and_uses_the_home_token_only() -> None:
    """§9.5.1: "If the Lifetime specified in the Binding Update is zero or the specified
    care-of address matches the home address for the binding, then this is a request to
    delete the cached binding for the home address. In this case, the Binding Update MUST
    include a valid home nonce index, and the care-of nonce index MUST be ignored by the
    correspondent node. The generation of the binding management key depends then
    exclusively on the home keygen token (Section 5.2.5)." """
    e = cn_engine()
    registered(e, seq=1)
    hot, _ = run_rr(e, T0 + 10)
    # from home: source = care-of = home address, a care-of index that never existed
    raw = signed_bu(2, hot.home_nonce_index, hot.home_keygen_token, 999, None, coa=HOA)
    out = send_bu(e, raw, T0 + 10, src=HOA, hoa=None)
    assert only_ba(out).status == 0 and HOA not in e.cache
    assert ba_verifies(only_ba(out), hashlib.sha1(hot.home_keygen_token).digest(), HOA)


def test_9_5_1_deletion_needs_a_valid_home_nonce_index() -> None:
    """§9.5.1: "In this case, the Binding Update MUST include a valid home nonce index"
    (an expired one gets 136)."""
    e = cn_engine()
    hot, _ = registered(e, seq=1)
    raw = bu_from(hot, None, 2, lifetime=0)
    ba = only_ba(send_bu(e, raw, T0 + 241))
    assert ba.status == BAStatus.EXPIRED_HOME_NONCE_INDEX


# --------------------------------------------------------------------------- §9.5.2


def test_9_5_2_lifetime_not_above_the_request_nor_max_rr_binding_lifetime() -> None:
    """§9.5.2: "the lifetime for the Binding Cache entry MUST NOT be greater than the
    Lifetime value specified in the Binding Update." (and §5.2.6 / §12: a correspondent
    registration lives at most MAX_RR_BINDING_LIFETIME, 420 s)"""
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, bu_from(hot, cot, 1, lifetime=0xFFFF), T0))
    assert ba.lifetime_seconds <= 420
    assert e.cache.get(HOA).expires_at <= T0 + 420
    ba = only_ba(send_bu(e, bu_from(hot, cot, 2, lifetime=3), T0 + 1))  # 12 s asked
    assert ba.lifetime_seconds == 12
    assert e.cache.get(HOA).expires_at == T0 + 1 + 12


def test_9_5_2_refused_for_lack_of_resources_with_130_even_without_a() -> None:
    """§9.5.2: "The correspondent node MAY refuse to accept a new Binding Cache entry if it
    does not have sufficient resources." ... §9.5.4: "If the node rejects the Binding
    Update due to ... insufficiency of resources (Section 9.5.2), a Binding
    Acknowledgement MUST be sent." """
    e = Engine(cn_config(), T0, kcn=KCN, max_cache_entries=0)
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, bu_from(hot, cot, 1, flags=0), T0))
    assert ba.status == BAStatus.INSUFFICIENT_RESOURCES and HOA not in e.cache


# --------------------------------------------------------------------------- §9.5.3


def test_9_5_3_deletion_removes_the_entry() -> None:
    """§9.5.3: "Any existing binding for the given home address MUST be deleted." """
    e = cn_engine()
    hot, _ = registered(e, seq=1)
    out = send_bu(e, bu_from(hot, None, 2, lifetime=0), T0 + 1)  # Kbm from the home token
    assert only_ba(out).status == 0
    assert HOA not in e.cache
    assert BindingChanged(HOA, None, "deregistered") in out


def test_9_5_3_deletion_never_creates_an_entry() -> None:
    """§9.5.3: "A Binding Cache entry for the home address MUST NOT be created in response
    to receiving the Binding Update." """
    e = cn_engine()
    hot, _ = run_rr(e, T0)
    out = send_bu(e, bu_from(hot, None, 1, lifetime=0), T0)
    assert only_ba(out).status == 0 and HOA not in e.cache
    assert not any(isinstance(a, BindingChanged) and a.binding is not None for a in out)
    # care-of = home address is a deletion too
    hot_h, _ = run_rr(e, T0)
    raw = signed_bu(2, hot_h.home_nonce_index, hot_h.home_keygen_token, 0, None, coa=HOA)
    send_bu(e, raw, T0, src=HOA, hoa=None)
    assert HOA not in e.cache


# --------------------------------------------------------------------------- §9.5.4


def test_9_5_4_discarded_binding_update_gets_no_acknowledgement() -> None:
    """§9.5.4: "If the Binding Update was discarded as described in Sections 9.2 or 9.5.1,
    a Binding Acknowledgement MUST NOT be sent." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    bad = bytearray(bu_from(hot, cot, 1))  # A=1
    bad[-2] ^= 0x80
    assert bas(send_bu(e, bytes(bad), T0)) == []


def test_9_5_4_a_flag_set_means_an_acknowledgement() -> None:
    """§9.5.4: "If the Acknowledge (A) bit is set in the Binding Update, a Binding
    Acknowledgement MUST be sent." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    assert only_ba(send_bu(e, bu_from(hot, cot, 1, flags=A), T0)).status == 0
    assert only_ba(send_bu(e, bu_from(hot, None, 2, flags=A, lifetime=0), T0)).status == 0


def test_9_5_4_rejections_are_acknowledged_even_without_a() -> None:
    """§9.5.4: "If the node rejects the Binding Update due to an expired nonce index,
    sequence number being out of window (Section 9.5.1), or insufficiency of resources
    (Section 9.5.2), a Binding Acknowledgement MUST be sent." """
    e = cn_engine()
    hot, cot = registered(e, seq=10)
    assert only_ba(send_bu(e, bu_from(hot, cot, 9, flags=0), T0 + 1)).status == 135
    _, cot2 = run_rr(e, T0 + 200)
    assert only_ba(send_bu(e, bu_from(hot, cot2, 11, flags=0), T0 + 241)).status == 136


def test_9_5_4_accepted_without_a_gets_no_acknowledgement() -> None:
    """§9.5.4: "If the node accepts the Binding Update, the Binding Acknowledgement SHOULD
    NOT be sent." (when A is not set)"""
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    out = send_bu(e, bu_from(hot, cot, 1, flags=0), T0)
    assert bas(out) == [] and e.cache.get(HOA) is not None


def test_9_5_4_status_below_128_only_when_the_entry_is_created_or_updated() -> None:
    """§9.5.4: "If the node accepts the Binding Update and creates or updates an entry for
    this binding, the Status field in the Binding Acknowledgement MUST be set to a value
    less than 128. Otherwise, the Status field MUST be set to a value greater than or
    equal to 128." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, bu_from(hot, cot, 5), T0))
    assert ba.status < 128 and e.cache.get(HOA).sequence == 5
    ba = only_ba(send_bu(e, bu_from(hot, cot, 5), T0 + 1))  # not newer: no update
    assert ba.status >= 128 and e.cache.get(HOA).registered_at == T0


def test_9_5_4_authorization_data_present_except_for_136_to_138() -> None:
    """§9.5.4: "If the Status field in the Binding Acknowledgement contains the value 136
    (expired home nonce index), 137 (expired care-of nonce index), or 138 (expired
    nonces), then the message MUST NOT include the Binding Authorization Data mobility
    option. Otherwise, the Binding Authorization Data mobility option MUST be included,
    and MUST meet the specific authentication requirements for Binding Acknowledgements
    as defined in Section 5.2." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    kbm = kbm_of(hot, cot)
    ok = only_ba(send_bu(e, bu_from(hot, cot, 10), T0))
    assert ok.authorization_data is not None and ba_verifies(ok, kbm, COA)
    old = only_ba(send_bu(e, bu_from(hot, cot, 3), T0 + 1))
    assert old.status == 135 and ba_verifies(old, kbm, COA)
    expired = only_ba(send_bu(e, bu_from(hot, cot, 11), T0 + 250))
    assert expired.status == 138 and expired.authorization_data is None


@pytest.mark.parametrize("src", [MULTICAST, UNSPECIFIED])
def test_9_5_4_non_unicast_source_gets_no_acknowledgement(src: IPv6Address) -> None:
    """§9.5.4: "If the Source Address field of the IPv6 header that carried the Binding
    Update does not contain a unicast address, the Binding Acknowledgement MUST NOT be
    sent and the Binding Update packet MUST be silently discarded." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    raw = bu_from(hot, cot, 1, coa=COA, alt=True)  # the care-of address is valid
    assert send_bu(e, raw, T0, src=src) == []
    assert HOA not in e.cache


def test_9_5_4_acknowledgement_addressing() -> None:
    """§9.5.4: "Otherwise, the acknowledgement MUST be sent to the Source Address. ...
    If the Source Address is the home address of the mobile node, i.e., the Binding
    Update did not contain a Home Address destination option, then the Binding
    Acknowledgement MUST be sent to that address and the routing header MUST NOT be used.
    Otherwise, the Binding Acknowledgement MUST be sent using a type 2 routing header
    that contains the mobile node's home address." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    [send] = sends(send_bu(e, bu_from(hot, cot, 1), T0))
    assert (send.src, send.dst, send.home_address_option, send.routing_header_address) == (
        CN,
        COA,
        None,
        HOA,
    )
    raw = signed_bu(2, hot.home_nonce_index, hot.home_keygen_token, 0, None, coa=HOA)
    [send] = sends(send_bu(e, raw, T0 + 1, src=HOA, hoa=None))
    assert (send.dst, send.routing_header_address) == (HOA, None)


def test_9_5_4_acknowledgement_addressing_does_not_use_the_binding_cache() -> None:
    """§9.5.4: "Unlike the treatment of regular packets, this addressing procedure does not
    use information from the Binding Cache." """
    e = cn_engine()
    registered(e, seq=10)  # the cache says COA
    hot2, cot2 = run_rr(e, T0 + 1, coa=COA2)
    [send] = sends(send_bu(e, bu_from(hot2, cot2, 10, coa=COA2), T0 + 1, src=COA2))
    assert isinstance(send.message, BindingAcknowledgement) and send.message.status == 135
    assert send.dst == COA2


# --------------------------------------------------------------------------- §9.5.6


def test_9_5_6_entry_is_deleted_when_its_lifetime_expires() -> None:
    """§9.5.2: "Any Binding Cache entry MUST be deleted after the expiration of its
    lifetime." """
    e = cn_engine()
    hot, cot = run_rr(e, T0)
    ba = only_ba(send_bu(e, bu_from(hot, cot, 1, lifetime=5), T0))  # 20 s
    assert e.next_timer() == T0 + ba.lifetime_seconds
    assert e.handle_timer(T0 + 19.9) == [] and HOA in e.cache
    out = e.handle_timer(T0 + 20)
    assert BindingChanged(HOA, None, "expired") in out and HOA not in e.cache
