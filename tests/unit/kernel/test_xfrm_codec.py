"""XFRM netlink codec: literal bytes for the fixed structs, round trips for every message.

Layouts are those of include/uapi/linux/xfrm.h on a little-endian 64-bit
host (x86_64); the literal byte strings were checked by hand against the
header's field offsets, and the MH selector also against what Linux 6.18
dumps back for the same policy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
import sys

import pytest

from mip6ctl import ownership
from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import xfrm_codec as K
from mip6ctl.state.xfrm import (
    IPPROTO_MH,
    OWNED_MARK,
    Action,
    Direction,
    Level,
    Mark,
    Mode,
    PolicyType,
    XfrmAlgo,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmTemplate,
)

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="literal layouts are for little-endian hosts"
)

A = ipaddress.ip_address
HOA = "2001:db8:1::100"
HA = "2001:db8:1::1"
COA = A("2001:db8::1")
HA_OUTER = A("2001:db8::2")

MH_SEL = XfrmSelector.mobility(f"{HOA}/128", f"{HA}/128", 5)
MH_SEL_BYTES = bytes.fromhex(
    "20010db8000100000000000000000001"  # daddr
    "20010db8000100000000000000000100"  # saddr
    "0000 0000"  # dport, dport_mask (be16)
    "0005 ffff"  # sport = MH type 5 (be16), sport_mask
    "0a00"  # family AF_INET6 (host order)
    "80 80 87"  # prefixlen_d, prefixlen_s, proto 135
    "000000"  # padding
    "00000000 00000000"  # ifindex, user
)
TUN = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=HA_OUTER, src=COA, reqid=7)
TUN_BYTES = bytes.fromhex(
    "20010db8000000000000000000000002"  # id.daddr
    "00000000 32 000000"  # id.spi, id.proto 50, pad
    "0a00 0000"  # family, pad
    "20010db8000000000000000000000001"  # saddr
    "07000000"  # reqid
    "01 00 00 00"  # mode tunnel, share, optional, pad
    "ffffffff ffffffff ffffffff"  # aalgos ealgos calgos
)


def test_struct_sizes_match_uapi() -> None:
    assert K.SIZEOF_SELECTOR == 56
    assert K.SIZEOF_TMPL == 64
    assert K.SIZEOF_USERPOLICY_INFO == 168
    assert K.SIZEOF_USERSA_INFO == 224
    assert K.SIZEOF_USERPOLICY_ID == 64
    assert K.SIZEOF_USERSA_ID == 24
    assert K.SIZEOF_USER_MIGRATE == 76
    assert K.SIZEOF_USER_KMADDRESS == 40
    assert K.SIZEOF_USER_ACQUIRE == 280
    assert K.SIZEOF_USER_REPORT == 60


def test_selector_mh_type_in_sport() -> None:
    assert K.encode_selector(MH_SEL) == MH_SEL_BYTES
    back = K.decode_selector(MH_SEL_BYTES)
    assert back == MH_SEL
    assert back.mh_type == 5
    assert XfrmSelector.mobility("::/0", "::/0").mh_type is None


def test_selector_ipv4() -> None:
    sel = XfrmSelector.between("192.0.2.0/24", "198.51.100.7/32", proto=17)
    raw = K.encode_selector(sel)
    assert raw[:4] == bytes([198, 51, 100, 7]) and raw[4:16] == bytes(12)
    assert raw[40:45] == bytes([2, 0, 32, 24, 17])
    assert K.decode_selector(raw) == sel


def test_template_literal() -> None:
    assert K.encode_tmpl(TUN, 10) == TUN_BYTES
    assert K.decode_tmpl(TUN_BYTES) == TUN


def test_template_without_endpoints_takes_policy_family() -> None:
    ro = XfrmTemplate(XfrmProto.ROUTE2, Mode.RO, level=Level.USE)
    pol = XfrmPolicy(MH_SEL, Direction.OUT, PolicyType.SUB, templates=(ro,))
    assert pol.templates[0].family == 10
    raw = K.encode_tmpl(pol.templates[0], 10)
    assert raw[20] == 43 and raw[24:26] == b"\x0a\x00" and raw[48:51] == b"\x02\x00\x01"


def test_userpolicy_info_literal() -> None:
    pol = XfrmPolicy(MH_SEL, Direction.OUT, templates=(TUN,))
    raw = K.encode_userpolicy_info(pol)
    assert len(raw) == 168
    assert raw[:56] == MH_SEL_BYTES
    assert raw[56:88] == b"\xff" * 32  # byte/packet limits: XFRM_INF
    assert raw[88:152] == bytes(64)  # no time limits, zero current lifetime
    assert raw[152:168] == bytes.fromhex(
        "006d0000 00000000 01 00 00 00 00000000"  # priority index dir action flags share pad
    )


def _attrs(raw: bytes, off: int) -> dict[int, bytes]:
    return {k: raw[a:b] for k, a, b in nl.iter_attrs(raw, off, len(raw))}


def test_policy_message_attributes_and_round_trip() -> None:
    pol = XfrmPolicy(MH_SEL, Direction.OUT, PolicyType.SUB, priority=0x6D01, templates=(TUN,))
    body = K.encode_policy(pol)
    attrs = _attrs(body, 168)
    assert attrs[K.XFRMA_TMPL] == TUN_BYTES
    assert attrs[K.XFRMA_POLICY_TYPE] == bytes.fromhex("010000000000")
    assert attrs[K.XFRMA_MARK] == struct.pack("=II", OWNED_MARK.value, OWNED_MARK.mask)
    assert K.decode_policy(body) == pol
    msg = nl.message(K.XFRM_MSG_NEWPOLICY, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 42, body)
    assert msg[:16] == struct.pack("=IHHII", 16 + len(body), 0x13, 5, 42, 0)


def test_unmarked_policy_sends_no_mark() -> None:
    pol = XfrmPolicy(MH_SEL, Direction.IN, mark=Mark(), priority=1, action=Action.BLOCK)
    body = K.encode_policy(pol)
    assert K.XFRMA_MARK not in _attrs(body, 168)
    assert K.decode_policy(body) == pol


def test_policy_id_carries_full_identity() -> None:
    pol = XfrmPolicy(MH_SEL, Direction.FWD, PolicyType.SUB, templates=(TUN,))
    body = K.encode_policy_id(pol)
    assert body[:56] == MH_SEL_BYTES
    assert body[56:64] == bytes.fromhex("0000000002000000")
    attrs = _attrs(body, 64)
    assert attrs[K.XFRMA_POLICY_TYPE][0] == 1
    assert K.XFRMA_MARK in attrs


def test_policy_identity_and_ownership() -> None:
    a = XfrmPolicy(MH_SEL, Direction.OUT, templates=(TUN,))
    b = dataclasses.replace(a, priority=ownership.XFRM_PRIORITY_MAX, index=9)
    assert a.key == b.key and a != b
    assert set(a.diff(b)) == {"priority"}
    assert a.owned and b.owned
    assert not dataclasses.replace(a, mark=Mark()).owned
    assert not dataclasses.replace(a, priority=ownership.XFRM_PRIORITY_MAX + 1).owned
    assert dataclasses.replace(a, mark=Mark()).key != a.key
    assert hash(a) == hash(dataclasses.replace(a, index=3))


def test_mark_is_normalised_like_the_kernel() -> None:
    assert Mark(0x5, 0x1) == Mark(0x1, 0x1)
    with pytest.raises(ValueError):
        Mark(1 << 32, 0)


def _esp_state() -> XfrmState:
    return XfrmState(
        dst=HA_OUTER,
        src=COA,
        proto=XfrmProto.ESP,
        spi=0x1234,
        mode=Mode.TRANSPORT,
        reqid=7,
        selector=MH_SEL,
        algorithms=(
            XfrmAlgo.from_config("aes-cbc", bytes(range(16))),
            XfrmAlgo.from_config("hmac-sha256", bytes(range(32))),
        ),
        replay_window=32,
    )


def test_usersa_info_layout_and_round_trip() -> None:
    st = _esp_state()
    info = K.encode_usersa_info(st)
    assert len(info) == 224
    assert info[:56] == MH_SEL_BYTES
    assert info[56:80] == HA_OUTER.packed + bytes.fromhex(
        "00001234 32 000000"
    )  # spi (be32), proto, pad
    assert info[80:96] == COA.packed
    assert info[208:217] == bytes.fromhex("07000000 0a00 00 20 00")  # reqid fam mode rw flags
    body = K.encode_state(st)
    attrs = _attrs(body, 224)
    crypt = attrs[K.XFRMA_ALG_CRYPT]
    assert crypt[:8] == b"cbc(aes)" and crypt[64:68] == struct.pack("=I", 128)
    auth = attrs[K.XFRMA_ALG_AUTH_TRUNC]
    assert auth[64:72] == struct.pack("=II", 256, 128) and auth[72:] == bytes(range(32))
    back = K.decode_state(body)
    assert back == st
    assert back.algorithms[1].key == bytes(range(32))


def test_key_bytes_never_in_repr() -> None:
    st = _esp_state()
    text = repr(st) + str(st.algorithms[0])
    assert bytes(range(16)).hex() not in text and "000102030405" not in text
    assert st.algorithms[0].fingerprint in text
    assert st.algorithms[0].fingerprint.startswith("sha256:")
    other = dataclasses.replace(
        st, algorithms=(XfrmAlgo.from_config("aes-cbc", bytes(16)), st.algorithms[1])
    )
    assert set(st.diff(other)) == {"algorithms"}


def test_route2_state_key_and_id() -> None:
    st = XfrmState(dst=A(HA), src=A(HOA), proto=XfrmProto.ROUTE2, mode=Mode.RO, coaddr=COA)
    assert st.key.spi == 0 and st.key.src == A(HOA)
    body = K.encode_state(st)
    assert _attrs(body, 224)[K.XFRMA_COADDR] == COA.packed
    assert K.decode_state(body) == st
    sid = K.encode_state_id(st)
    assert sid[:24] == A(HA).packed + bytes.fromhex("00000000 0a00 2b 00")  # spi fam proto pad
    assert _attrs(sid, 24)[K.XFRMA_SRCADDR] == A(HOA).packed
    esp = K.encode_state_id(_esp_state())
    assert K.XFRMA_SRCADDR not in _attrs(esp, 24)


MIG = K.XfrmMigration(HA_OUTER, COA, HA_OUTER, A("2001:db8::9"), reqid=7)
MIG_BYTES = (
    HA_OUTER.packed
    + COA.packed
    + HA_OUTER.packed
    + A("2001:db8::9").packed
    + bytes.fromhex("32 01 0000 07000000 0a00 0a00")
)


def test_migrate_request_layout() -> None:
    km = K.KmAddress(A("2001:db8::9"), HA_OUTER)
    body = K.encode_migrate(MH_SEL, Direction.OUT, [MIG, MIG], kmaddress=km)
    assert body[:56] == MH_SEL_BYTES and body[60] == 1
    attrs = _attrs(body, 64)
    assert attrs[K.XFRMA_MIGRATE] == MIG_BYTES * 2  # one attribute, an array
    assert attrs[K.XFRMA_KMADDRESS] == km.local.packed + km.remote.packed + bytes.fromhex(
        "00000000 0a00 0000"
    )
    with pytest.raises(ValueError):
        K.encode_migrate(MH_SEL, Direction.OUT, [])


def test_migrate_flow_selector() -> None:
    flow = K.migrate_flow_selector(MH_SEL)
    assert K.encode_selector(flow)[32:34] == b"\x05\x00"  # fl6_mh_type is dport's first byte
    assert K.migrate_flow_selector(XfrmSelector.mobility("::/0", "::/0")) == XfrmSelector.mobility(
        "::/0", "::/0"
    )


def test_decode_migrate_event_one_attribute_per_entry() -> None:
    km = K.KmAddress(A("2001:db8::9"), HA_OUTER)
    body = MH_SEL_BYTES + bytes.fromhex("00000000 01000000")  # index, dir out
    kmraw = km.local.packed + km.remote.packed + struct.pack("=IH2x", 0, 10)
    body += nl.attr(K.XFRMA_KMADDRESS, kmraw)
    body += nl.attr(K.XFRMA_POLICY_TYPE, bytes(6))
    body += nl.attr(K.XFRMA_MIGRATE, MIG_BYTES) + nl.attr(K.XFRMA_MIGRATE, MIG_BYTES)
    (ev,) = K.decode_events(nl.message(K.XFRM_MSG_MIGRATE, 0, 0, body))
    assert isinstance(ev, K.MigrateEvent)
    assert ev.selector == MH_SEL and ev.direction == Direction.OUT
    assert ev.migrations == (MIG, MIG) and ev.kmaddress == km


def test_decode_policy_events() -> None:
    pol = XfrmPolicy(MH_SEL, Direction.OUT, templates=(TUN,), index=17)
    new = nl.message(K.XFRM_MSG_NEWPOLICY, 0, 0, K.encode_policy(pol))
    upd = nl.message(K.XFRM_MSG_UPDPOLICY, 0, 0, K.encode_policy(pol))
    # DELPOLICY notifications: userpolicy_id + XFRMA_POLICY + tmpl/type/mark
    delbody = K.encode_selector(MH_SEL) + struct.pack("=IB3x", 0, 1)
    delbody += nl.attr(K.XFRMA_POLICY, K.encode_userpolicy_info(pol))
    delbody += K.encode_policy(pol)[168:]
    dele = nl.message(K.XFRM_MSG_DELPOLICY, 0, 0, delbody)
    flush = nl.message(
        K.XFRM_MSG_FLUSHPOLICY, 0, 0, nl.attr(K.XFRMA_POLICY_TYPE, b"\x01" + bytes(5))
    )
    evs = K.decode_events(new + upd + dele + flush)
    assert [type(e).__name__ for e in evs] == [
        "PolicyEvent",
        "PolicyEvent",
        "PolicyEvent",
        "PolicyFlushEvent",
    ]
    assert [e.kind for e in evs[:3]] == ["new", "update", "delete"]  # type: ignore[union-attr]
    assert all(e.policy == pol for e in evs[:3])  # type: ignore[union-attr]
    assert evs[3] == K.PolicyFlushEvent(PolicyType.SUB)


def test_decode_state_events() -> None:
    st = _esp_state()
    new = nl.message(K.XFRM_MSG_NEWSA, 0, 0, K.encode_state(st))
    delbody = K.encode_state_id(st)[:24] + nl.attr(K.XFRMA_SA, K.encode_usersa_info(st))
    delbody += K.encode_state(st)[224:]
    dele = nl.message(K.XFRM_MSG_DELSA, 0, 0, delbody)
    exp = nl.message(K.XFRM_MSG_EXPIRE, 0, 0, K.encode_usersa_info(st) + b"\x01" + bytes(7))
    evs = K.decode_events(new + dele + exp)
    assert [(e.kind, e.state.key) for e in evs] == [  # type: ignore[union-attr]
        ("new", st.key),
        ("delete", st.key),
        ("expire", dataclasses.replace(st.key, mark=Mark())),
    ]
    assert evs[2].hard  # type: ignore[union-attr]
    assert evs[1] == K.StateEvent("delete", st)


def test_decode_acquire_and_report() -> None:
    pol = XfrmPolicy(MH_SEL, Direction.OUT, templates=(TUN,))
    body = struct.pack("=16sIB3x", HA_OUTER.packed, 0, 50) + COA.packed + MH_SEL_BYTES
    body += K.encode_userpolicy_info(pol) + struct.pack("=IIII", 0, 0, 0, 99)
    body += K.encode_policy(pol)[168:]
    (acq,) = K.decode_events(nl.message(K.XFRM_MSG_ACQUIRE, 0, 0, body))
    assert acq == K.AcquireEvent(HA_OUTER, COA, XfrmProto.ESP, MH_SEL, pol, 99)

    rep = bytes([43, 0, 0, 0]) + MH_SEL_BYTES + nl.attr(K.XFRMA_COADDR, COA.packed)
    (ev,) = K.decode_events(nl.message(K.XFRM_MSG_REPORT, 0, 0, rep))
    assert ev == K.ReportEvent(43, MH_SEL, COA)


def test_unknown_and_truncated_messages_are_skipped() -> None:
    good = nl.message(K.XFRM_MSG_FLUSHSA, 0, 0, b"\x32\x00\x00\x00")
    junk = nl.message(0x7F, 0, 0, b"\x00" * 8)
    assert K.decode_events(junk + good + good[:10]) == [K.StateFlushEvent(50)]


def test_error_ack_with_extended_message() -> None:
    orig = struct.pack("=IHHII", 300, 0x13, 5, 7, 0)
    tlv = nl.attr(nl.NLMSGERR_ATTR_MSG, b"Requested type not found\0")
    msg = nl.message(nl.NLMSG_ERROR, nl.NLM_F_ACK_TLVS, 7, struct.pack("=i", -93) + orig + tlv)
    ((kind, flags, seq, a, b),) = list(nl.iter_messages(msg))
    assert (kind, seq) == (nl.NLMSG_ERROR, 7)
    assert nl.parse_error(msg, a, b, flags) == (93, 7, "Requested type not found")


def test_policy_selector_uses_ipproto_mh() -> None:
    assert MH_SEL.proto == IPPROTO_MH == 135
