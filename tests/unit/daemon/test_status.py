"""build_status: engine and loop state → the versioned status document."""

from __future__ import annotations

import json
from ipaddress import IPv6Address, IPv6Network

import pytest

from mip6ctl.config.model import Mip6Config
from mip6ctl.daemon.status import (
    CONDITION_TYPES,
    STATUS_VERSION,
    Acknowledgements,
    Condition,
    GenerationInfo,
    build_status,
    flag_letters,
    rfc3339,
    set_condition,
    with_store_condition,
)
from mip6ctl.engine.binding import Binding
from mip6ctl.engine.mobile_node import MobileNode
from mip6ctl.wire.datagram import Send
from mip6ctl.wire.mh import BindingAcknowledgement

HA = IPv6Address("2001:db8:1::1")
NOW = 1000.0  # engine (monotonic) clock
WALL = 1_800_000_000.0  # the same instant, wall clock

KEYS = [
    "status_version", "daemon_version", "role", "node_name", "pid", "started_at", "uptime_s",
    "generation", "generation_number", "observed_generation", "conditions",
    "last_reconcile_time", "counters", "transport", "tunnel_backend", "binding_cache",
    "binding_update_list", "return_routability", "mobile_router", "reconcile", "ipsec",
]  # fmt: skip


def ha_cfg() -> Mip6Config:
    return Mip6Config.model_validate(
        {
            "node": {"role": "ha", "name": "ha-1"},
            "ha": {"interfaces": ["home0"], "home_prefixes": ["2001:db8:1::/64"]},
        }
    )


def mn_cfg() -> Mip6Config:
    return Mip6Config.model_validate(
        {
            "node": {"role": "mn"},
            "mn": {
                "home_address": "2001:db8:1::100/64",
                "home_agent": str(HA),
                "interfaces": [{"name": "wlan0"}],
            },
        }
    )


def b(i: int, *, age: float = 10.0, left: float = 390.5, flags: int = 0xC000) -> Binding:
    return Binding(
        IPv6Address(f"2001:db8:1::{i:x}"), IPv6Address(f"2001:db8:2::{i:x}"), HA, 400,
        NOW - age, NOW + left, i, flags, bool(flags & 0x4000),
    )  # fmt: skip


def ha_doc(**kw: object) -> dict:
    args: dict = {
        "role": "ha",
        "cfg": ha_cfg(),
        "generation": GenerationInfo("sha256:abc", 3, 2),
        "conditions": [
            Condition("Ready", "False", "KernelDrift", "2 objects differ", WALL - 60),
            {"type": "ConfigValid", "status": True, "reason": "Valid", "message": ""},
        ],
        "counters": {"bus_received": 5, "bus_rejected_by_status": {135: 1, "129": 2}},
        "bindings": [b(0x300), b(0x20, flags=0x8000), b(0x100)],
        "bul": [],
        "now": NOW,
        "started_at": NOW - 3600.25,
        "last_reconcile": NOW - 2,
        "transport": "userspace",
        "tunnel_backend": "seg6",
        "now_wall": WALL,
        "pid": 42,
    }
    args.update(kw)
    return build_status(**args)


def test_ha_document() -> None:
    doc = ha_doc()
    assert list(doc) == KEYS
    assert doc["status_version"] == STATUS_VERSION == 1
    assert (doc["role"], doc["node_name"], doc["pid"]) == ("ha", "ha-1", 42)
    assert doc["uptime_s"] == 3600.25
    assert doc["started_at"] == rfc3339(WALL - 3600.25)
    assert doc["last_reconcile_time"] == "2027-01-15T07:59:58Z"
    assert (doc["generation"], doc["generation_number"], doc["observed_generation"]) == (
        "sha256:abc", 3, 2,
    )  # fmt: skip
    assert (doc["transport"], doc["tunnel_backend"]) == ("userspace", "seg6")
    assert doc["binding_update_list"] is None and doc["return_routability"] is None
    json.dumps(doc)  # plain JSON all the way down


def test_conditions_ordered_and_filled() -> None:
    conds = ha_doc()["conditions"]
    assert [c["type"] for c in conds] == list(CONDITION_TYPES)
    valid, kernel, ready = conds
    assert valid == {
        "type": "ConfigValid", "status": "True", "reason": "Valid", "message": "",
        "last_transition_time": None,
    }  # fmt: skip
    assert kernel["status"] == "Unknown" and kernel["reason"] == "NotObserved"
    assert ready["status"] == "False" and ready["reason"] == "KernelDrift"
    assert ready["last_transition_time"] == rfc3339(WALL - 60)


def test_extra_conditions_follow_in_name_order() -> None:
    conds = ha_doc(conditions=[Condition("Zeta", "True", "Z"), Condition("Alpha", "True", "A")])
    assert [c["type"] for c in conds["conditions"]] == [*CONDITION_TYPES, "Alpha", "Zeta"]


def test_counters_complete_and_ordered() -> None:
    c = ha_doc(counters={"bus_rejected_by_status": {135: 1, "129": 2}, "zz_extra": 7})["counters"]
    assert list(c) == [
        "bus_received", "bus_accepted", "bus_rejected_by_status", "bas_sent", "bes_sent",
        "drift_repairs", "reconcile_failures", "zz_extra",
    ]  # fmt: skip
    assert c["bus_rejected_by_status"] == {"129": 2, "135": 1}
    assert list(c["bus_rejected_by_status"]) == ["129", "135"]
    assert c["bus_received"] == 0 and c["zz_extra"] == 7


def test_binding_rows() -> None:
    bc = ha_doc()["binding_cache"]
    assert bc["count"] == 3 and bc["truncated"] is False
    assert [r["home_address"] for r in bc["rows"]] == ["2001:db8:1::20", "2001:db8:1::100",
                                                       "2001:db8:1::300"]  # fmt: skip
    row = bc["rows"][1]
    assert row == {
        "home_address": "2001:db8:1::100",
        "care_of_address": "2001:db8:2::100",
        "local_address": "2001:db8:1::1",
        "lifetime_s": 400,
        "lifetime_left_s": 390,
        "sequence": 0x100,
        "flags": "AH",
        "home_registration": True,
        "acknowledged": None,  # not tracked by this caller
        "age_s": 10,
        "mobile_network_prefixes": [],
    }
    assert bc["rows"][0]["flags"] == "A" and bc["rows"][0]["home_registration"] is False
    assert bc["pending"] is None


def test_expired_but_not_yet_collected_shows_zero() -> None:
    (row,) = ha_doc(bindings=[b(1, left=-3)])["binding_cache"]["rows"]
    assert row["lifetime_left_s"] == 0


def test_max_rows_truncates_but_counts_all() -> None:
    bc = ha_doc(bindings=[b(i) for i in range(1, 11)], max_rows=4)["binding_cache"]
    assert bc["count"] == 10 and bc["truncated"] is True and len(bc["rows"]) == 4


def test_mobile_network_prefixes() -> None:
    nemo = Binding(
        IPv6Address("2001:db8:1::5"), IPv6Address("2001:db8:2::5"), HA, 400, NOW, NOW + 400, 1,
        0xC400, True, (IPv6Network("2001:db8:9::/48"),),
    )  # fmt: skip
    (row,) = ha_doc(bindings=[nemo])["binding_cache"]["rows"]
    assert row["flags"] == "AHR" and row["mobile_network_prefixes"] == ["2001:db8:9::/48"]


def test_mn_document_from_engine_mobile_node() -> None:
    cfg = mn_cfg()
    assert cfg.mn is not None
    mn = MobileNode(cfg.mn, NOW - 5)
    from mip6ctl.engine.events import CareOfAddressChanged

    mn.handle(CareOfAddressChanged(IPv6Address("2001:db8:2::100")), NOW - 5)
    doc = build_status(
        "mn", cfg, GenerationInfo(), [], {}, [], [mn], NOW, started_at=NOW - 10, now_wall=WALL,
        return_routability=[{"peer": "2001:db8:0:1::1", "state": "ok", "home_token_age_s": 12.7}],
    )  # fmt: skip
    assert list(doc) == KEYS
    (row,) = doc["binding_update_list"]["rows"]
    assert row == {
        "peer": "2001:db8:1::1",
        "home_address": "2001:db8:1::100",
        "care_of_address": "2001:db8:2::100",
        "state": "registering",
        "lifetime_left_s": None,
        "sequence": mn.sequence,
        "retransmissions": 0,
        "last_status": None,
        "trigger": None,
    }
    rr = doc["return_routability"]
    assert rr["enabled"] is True  # route_optimization defaults on
    assert rr["rows"] == [
        {
            "peer": "2001:db8:0:1::1", "state": "ok", "home_token_age_s": 12,
            "care_of_token_age_s": None, "last_error": None, "retry_in_s": None,
            "fallbacks": 0,
        }
    ]  # fmt: skip
    assert doc["binding_cache"] == {"count": 0, "pending": None, "truncated": False, "rows": []}
    assert doc["generation"] is None and doc["last_reconcile_time"] is None


def test_mobile_router_section() -> None:
    """RFC 3963: what the router registers, and whether the home agent took it (R = 1)."""
    from mip6ctl.engine.events import CareOfAddressChanged, Received
    from mip6ctl.wire.mh import BAFlag, BindingAcknowledgement

    cfg = mn_cfg()
    assert cfg.mn is not None
    router = cfg.mn.model_copy(
        update={"mobile_router": True, "explicit_mode": False,
                "mobile_network_prefixes": [IPv6Network("2001:db8:50::/64")]}
    )  # fmt: skip
    cfg = cfg.model_copy(update={"mn": router})
    mn = MobileNode(router, NOW - 5)
    coa = IPv6Address("2001:db8:2::100")
    mn.handle(CareOfAddressChanged(coa), NOW - 5)

    def doc() -> dict:
        return build_status("mn", cfg, GenerationInfo(), [], {}, [], [mn], NOW, started_at=NOW)

    want = {"mode": "implicit", "mobile_network_prefixes": ["2001:db8:50::/64"]}
    assert doc()["mobile_router"] == {**want, "accepted": None}
    ba = BindingAcknowledgement(0, mn.sequence, 100, int(BAFlag.R))
    mn.received(Received(ba, HA, coa, None, IPv6Address("2001:db8:1::100")), NOW)
    assert doc()["mobile_router"] == {**want, "accepted": True}
    assert ha_doc()["mobile_router"] is None  # a home agent has none
    plain = build_status("mn", mn_cfg(), GenerationInfo(), [], {}, [], [], NOW, started_at=NOW)
    assert plain["mobile_router"] is None


def test_bul_mapping_rows() -> None:
    entry = {"peer": HA, "state": "registered", "expires_at": NOW + 99.9, "sequence": 7,
             "retransmissions": 2, "last_status": 0}  # fmt: skip
    doc = build_status("mn", None, GenerationInfo(), [], {}, [], [entry], NOW, started_at=NOW)
    (row,) = doc["binding_update_list"]["rows"]
    assert (row["lifetime_left_s"], row["retransmissions"], row["last_status"]) == (99, 2, 0)
    assert doc["return_routability"]["enabled"] is False  # no configuration


def test_reconcile_loop_condition_objects_are_accepted() -> None:
    """The reconcile loop's conditions (the one Condition type) go straight in."""
    from mip6ctl.daemon import workqueue

    c = workqueue.Condition("KernelInSync", "True", "Reconciled", "ok", WALL - 1)
    doc = ha_doc(conditions=[c], reconcile={"queue": {"ready": 0}})
    assert doc["conditions"][1]["reason"] == "Reconciled"
    assert doc["reconcile"] == {"queue": {"ready": 0}}


def test_deterministic() -> None:
    assert json.dumps(ha_doc()) == json.dumps(ha_doc())


def test_flag_letters() -> None:
    assert flag_letters(0) == ""
    assert flag_letters(0xFC00) == "AHLKMR"
    assert flag_letters(0x1000) == "K"


def test_set_condition_moves_transition_time_only_on_change() -> None:
    cs = set_condition([], "Ready", False, "Pending", "starting", now_wall=100.0)
    cs = set_condition(cs, "Ready", False, "KernelDrift", "x", now_wall=200.0)
    assert cs == [Condition("Ready", "False", "KernelDrift", "x", 100.0)]
    cs = set_condition(cs, "Ready", True, "Reconciled", now_wall=300.0)
    cs = set_condition(cs, "ConfigValid", None, "Loading", now_wall=300.0)
    assert cs == [
        Condition("Ready", "True", "Reconciled", "", 300.0),
        Condition("ConfigValid", "Unknown", "Loading", "", 300.0),
    ]
    with pytest.raises(ValueError):
        set_condition(cs, "Ready", "yes", "X")  # type: ignore[arg-type]


def test_default_row_cap() -> None:
    bc = ha_doc(bindings=[b(i) for i in range(1, 1003)])["binding_cache"]
    assert (bc["count"], bc["truncated"], len(bc["rows"])) == (1002, True, 1000)
    assert bc["rows"][0]["home_address"] == "2001:db8:1::1"


# --------------------------------------------------------------- issue 21: acknowledged, store


def ba_send(binding: Binding, *, status: int = 0, seq: int | None = None,
            lifetime: int = 100, from_home: bool = False) -> Send:  # fmt: skip
    """The Send of a BA as the home agent addresses it (engine.common.ba_reply)."""
    ba = BindingAcknowledgement(status, binding.sequence if seq is None else seq, lifetime)
    if from_home:
        return Send(ba, HA, binding.home_address, None, None)
    return Send(ba, HA, binding.care_of_address, None, binding.home_address)


def test_acknowledged_rows_and_pending_count() -> None:
    acked, refreshed, parked, cn = b(0x10), b(0x20), b(0x30), b(0x40, flags=0x8000)
    acks = Acknowledgements()
    acks.sent(ba_send(acked))
    acks.sent(ba_send(refreshed, seq=refreshed.sequence - 1))  # BA of the previous entry
    acks.sent(ba_send(cn))  # a correspondent binding: never "pending"
    doc = ha_doc(bindings=[acked, refreshed, parked, cn], acknowledged=acks)
    bc = doc["binding_cache"]
    rows = {r["home_address"]: r["acknowledged"] for r in bc["rows"]}
    assert rows == {
        "2001:db8:1::10": True,
        "2001:db8:1::20": False,  # the engine holds a newer entry than the one acknowledged
        "2001:db8:1::30": False,  # BA still parked (or withheld)
        "2001:db8:1::40": None,
    }
    assert bc["pending"] == 2
    assert list(bc) == ["count", "pending", "truncated", "rows"]


def test_pending_counts_beyond_the_rows_shown() -> None:
    bindings = [b(i) for i in range(1, 11)]
    acks = Acknowledgements()
    for x in bindings[:3]:
        acks.sent(ba_send(x))
    bc = ha_doc(bindings=bindings, acknowledged=acks, max_rows=2)["binding_cache"]
    assert (bc["count"], bc["pending"], len(bc["rows"])) == (10, 7, 2)


def test_rejecting_ba_does_not_acknowledge_and_deregistration_forgets() -> None:
    x = b(0x10)
    acks = Acknowledgements()
    acks.sent(ba_send(x))
    assert acks(x)
    acks.sent(ba_send(x, lifetime=0, from_home=True))  # de-registration from home: no RH
    assert not acks(x) and len(acks) == 0


def test_restored_bindings_are_acknowledged_and_the_map_is_pruned() -> None:
    alive: set[IPv6Address] = set()
    acks = Acknowledgements()
    restored = [b(i) for i in range(1, 4)]
    acks.restored(restored, alive)
    assert all(acks(x) for x in restored)
    alive.add(restored[0].home_address)
    for i in range(0x1000, 0x1000 + 1100):  # many registrations that went away again
        acks.sent(ba_send(b(i)))
    assert len(acks) < 200  # pruned down to what the cache still holds (+ the latest)
    assert acks(restored[0]) and not acks(restored[1])


class FakeStore:
    def __init__(self, healthy: bool, error: str | None, since: float, failures: int = 0):
        self.healthy, self.last_error, self.health_changed_at = healthy, error, since
        self.write_failures, self.path = failures, "/var/lib/mip6/binding-cache.sqlite"


def test_store_condition_follows_the_store_with_its_transition_time() -> None:
    cs = with_store_condition([], FakeStore(True, None, WALL - 100))
    assert cs == [Condition("BindingStoreHealthy", "True", "Writable", "", WALL - 100)]
    cs = with_store_condition(cs, FakeStore(False, "write failed: database or disk is full",
                                            WALL - 5, failures=3))  # fmt: skip
    (c,) = cs
    assert (c.status, c.reason, c.last_transition_time) == ("False", "WriteFailed", WALL - 5)
    assert c.message.startswith("/var/lib/mip6/binding-cache.sqlite: write failed: database or")
    assert "3 failed writes" in c.message and "withheld" in c.message
    # asked again later while still failing: the transition time stays
    (c,) = with_store_condition(cs, FakeStore(False, "write failed: x", WALL - 5, 4), WALL)
    assert c.last_transition_time == WALL - 5
    (c,) = with_store_condition(cs, FakeStore(True, "write failed: x", WALL - 1, 4))
    assert (c.status, c.reason, c.last_transition_time) == ("True", "Writable", WALL - 1)
    assert "recovered" in c.message
    doc = ha_doc(conditions=cs)
    assert [x["type"] for x in doc["conditions"]] == [*CONDITION_TYPES, "BindingStoreHealthy"]
