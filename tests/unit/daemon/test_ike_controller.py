"""mip6ctl.daemon.ike: charon's connections follow the generation and the mobile node's moves.

A fake charon stands in for the VICI session (`IkeController(charon=...)`):
every call is recorded, failures and hangs are injected, and the controller
must stay bounded, log, set the ``IkeReady`` condition and never raise.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.daemon import ike
from mip6ctl.daemon.ike import IkeController, merge_status, uses_ike
from mip6ctl.ike.vici_client import ChildSaInfo, IkeSaInfo, Recreated, Reinitiated, ViciError

KEY_HEX = "00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef"
HOA = IPv6Address("2001:db8:1::100")
HOA2 = IPv6Address("2001:db8:1::101")
HA = IPv6Address("2001:db8:1::1")
COA_1 = IPv6Address("2001:db8:a::100")
COA_2 = IPv6Address("2001:db8:b::100")
CONN = "mip6-2001-db8-1--100"


def template(name: str = "mn1", reqid: int = 1001) -> str:
    return (
        f'[ipsec.{name}]\nprotect = ["binding-update", "payload"]\nkey_management = "ike"\n'
        f"reqid = {{ to_ha = {reqid}, to_mn = {reqid} }}\n"
        f"tunnel_reqid = {{ to_ha = {reqid + 1}, to_mn = {reqid + 1} }}\n"
        'psk_file = "mn1.psk"\n'
    )


MN_TOML = (
    '[node]\nrole = "mn"\n[mn]\n'
    f'home_address = "{HOA}/64"\nhome_agent = "{HA}"\n'
    'interfaces = [{ name = "m0" }]\nipsec = "mn1"\n' + template()
)


def ha_toml(nodes: tuple[tuple[IPv6Address, str, int], ...] = ((HOA, "mn1", 1001),)) -> str:
    s = (
        '[node]\nrole = "ha"\n[ha]\ninterfaces = ["h0"]\n'
        f'home_prefixes = ["2001:db8:1::/64"]\naddress = "{HA}"\nrequire_ipsec = true\n'
    )
    for hoa, tpl, _ in nodes:
        s += f'[[ha.mobile_nodes]]\nhome_address = "{hoa}"\nipsec = "{tpl}"\n'
    return s + "".join(template(tpl, reqid) for _, tpl, reqid in nodes)


def generation(tmp: Path, text: str) -> Any:
    tmp.mkdir(parents=True, exist_ok=True)
    psk = tmp / "mn1.psk"
    psk.write_text(KEY_HEX + "\n")
    psk.chmod(0o600)
    (tmp / "mip6.toml").write_text(text)
    return load_directory(tmp)


def sa(
    *, local: str, remote: str, spis: tuple[int, int] = (0x1111, 0x2222), uid: int = 1
) -> IkeSaInfo:
    children = tuple(
        ChildSaInfo(
            name, uid, "INSTALLED", mode, "ESP", reqid, 0xC0 + reqid, 0xD0 + reqid, (), (), 0
        )
        for name, mode, reqid in (("mh", "TRANSPORT", 1001), ("tunnel", "TUNNEL", 1002))
    )
    return IkeSaInfo(
        CONN, uid, "ESTABLISHED", local, remote, str(HOA), str(HA), True, *spis, 3, children
    )


@dataclass
class FakeCharon:
    """What charon holds and what was asked of it; shared by every session."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    loaded: dict[str, Any] = field(default_factory=dict)
    sas: list[IkeSaInfo] = field(default_factory=list)
    unreachable: bool = False
    hang: threading.Event | None = None
    #: list-sas calls after which charon shows the MIGRATE's new address (None: never)
    follows_after: int | None = 0
    pending_move: str | None = None
    sessions: int = 0
    #: recreate_child raises this (None: it works)
    recreate_error: str | None = None

    def session(self, path: str, timeout: float) -> FakeCharon:
        if self.unreachable:
            raise ViciError(f"cannot connect to charon's VICI socket {path}: refused")
        self.sessions += 1
        return self

    def close(self) -> None:
        pass

    def load(self, conn: Any) -> None:
        self.calls.append(("load", conn))
        self.loaded[conn.name] = conn

    def unload(self, conn: Any) -> None:
        self.calls.append(("unload", conn.name))
        self.loaded.pop(conn.name, None)

    def list_sas(self, conn: str | None = None) -> list[IkeSaInfo]:
        if self.hang is not None:
            self.hang.wait(5.0)
        if self.pending_move is not None and self.follows_after is not None:
            if self.follows_after <= 0:
                self.sas = [replace(s, local_host=self.pending_move) for s in self.sas]
                self.pending_move = None
            self.follows_after -= 1
        return [s for s in self.sas if conn is None or s.name == conn]

    def bring_up(self, conn: Any, *, timeout: float | None = None) -> list[str]:
        self.calls.append(("bring_up", conn.local_addrs))
        self.loaded[conn.name] = conn
        self.sas = [sa(local=conn.local_addrs[0], remote=str(HA))]
        return []

    def terminate(self, conn: str, *, timeout: float | None = None) -> list[str]:
        self.calls.append(("terminate", conn))
        self.sas = []
        return []

    def recreate_child(self, conn: str, child: str, *, timeout: float | None = None) -> Recreated:
        self.calls.append(("recreate_child", child))
        if self.recreate_error is not None:
            raise ViciError(self.recreate_error)
        (ike_sa,) = [s for s in self.sas if s.name == conn]
        (old,) = [c for c in ike_sa.children if c.name == child]
        new = replace(old, uniqueid=old.uniqueid + 10, spi_in=0xE1, spi_out=0xE2)
        children = tuple(new if c is old else c for c in ike_sa.children)
        self.sas = [replace(ike_sa, children=children)]
        return Recreated(child, (old.uniqueid,), new, ike_sa.spis, 0.05, 0.02, 0.07, ())

    def reinitiate(self, conn: Any, coa: Any, *, timeout: float | None = None) -> Reinitiated:
        self.calls.append(("reinitiate", str(coa)))
        self.sas = [sa(local=str(coa), remote=str(HA), spis=(0x3333, 0x4444), uid=2)]
        return Reinitiated(0.01, 0.01, 0.1, 0.12, self.sas[0], ())


class Conditions:
    def __init__(self) -> None:
        self.last: dict[str, tuple[bool, str, str]] = {}

    def __call__(self, ctype: str, status: bool, reason: str, message: str) -> None:
        self.last[ctype] = (status, reason, message)


def controller(
    gen: Any,
    fake: FakeCharon,
    conds: Conditions,
    *,
    migrate: bool = True,
    registered: Any = None,
) -> IkeController:
    return IkeController(
        gen.config,
        base=gen.directory,
        migrate=migrate,
        set_condition=conds,
        socket_path="/nonexistent/charon.vici",
        charon=fake.session,
        registered_care_of=registered,
    )


async def settle(ctl: IkeController) -> None:
    for _ in range(200):
        if not ctl._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("controller tasks did not finish")


# --------------------------------------------------------------------------- configuration


def test_uses_ike_only_for_a_template_in_use(tmp_path: Path) -> None:
    assert uses_ike(generation(tmp_path / "mn", MN_TOML).config)
    assert uses_ike(generation(tmp_path / "ha", ha_toml()).config)
    manual = generation(tmp_path / "cn", '[node]\nrole = "cn"\n').config
    assert not uses_ike(manual)


def test_vici_socket_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ike.VICI_SOCKET_ENV, raising=False)
    assert ike.vici_socket() == "/var/run/charon.vici"
    monkeypatch.setenv(ike.VICI_SOCKET_ENV, "/run/test/charon.vici")
    assert ike.vici_socket() == "/run/test/charon.vici"


# --------------------------------------------------------------------------- home agent


def test_home_agent_loads_its_connections_and_reports_them(tmp_path: Path) -> None:
    gen = generation(tmp_path, ha_toml())
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds)
        await ctl.start()
        fake.sas = [sa(local=str(HA), remote=str(COA_1))]
        out = await ctl.status()
        await ctl.close()
        return out

    status = asyncio.run(run())
    assert list(fake.loaded) == [CONN]
    assert fake.loaded[CONN].role == "ha"
    assert conds.last["IkeReady"][:2] == (True, "Loaded")
    row = status[str(HOA)]
    assert row["state"] == "ESTABLISHED" and row["remote_host"] == str(COA_1)
    assert row["ike_spis"] == {"initiator": f"{0x1111:016x}", "responder": f"{0x2222:016x}"}
    assert [c["reqid"] for c in row["sas"][0]["children"]] == [1001, 1002]
    assert row["psk_fingerprint"].startswith("sha256:")
    assert KEY_HEX not in repr(status)


def test_merge_status_adds_ike_to_ike_rows_only() -> None:
    rows = [
        {"home_address": str(HOA), "key_management": "ike"},
        {"home_address": str(HOA2), "key_management": "manual"},
        {"home_address": "2001:db8:1::102", "key_management": "ike"},
    ]
    out = merge_status(rows, {str(HOA): {"state": "ESTABLISHED"}})
    assert out[0]["ike"] == {"state": "ESTABLISHED"}
    assert "ike" not in out[1]
    assert out[2]["ike"] == {"state": None}
    assert "ike" not in rows[0]  # the caller's rows are not changed


def test_charon_unreachable_is_a_condition_and_a_retry_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ike, "RELOAD_RETRY", 0.05)
    gen = generation(tmp_path, ha_toml())
    fake, conds = FakeCharon(unreachable=True), Conditions()

    async def run() -> None:
        ctl = controller(gen, fake, conds)
        await ctl.start()
        assert conds.last["IkeReady"][:2] == (False, "CharonUnreachable")
        assert "refused" in conds.last["IkeReady"][2]
        status = await ctl.status()
        assert status[str(HOA)]["loaded"] is False and status[str(HOA)]["stale"]
        fake.unreachable = False  # charon comes up: the retry loads
        for _ in range(100):
            await asyncio.sleep(0.02)
            if conds.last["IkeReady"][0]:
                break
        await ctl.close()

    asyncio.run(run())
    assert conds.last["IkeReady"][:2] == (True, "Loaded")
    assert list(fake.loaded) == [CONN]


def test_reload_loads_what_changed_and_unloads_what_went(tmp_path: Path) -> None:
    two = ((HOA, "mn1", 1001), (HOA2, "mn2", 1011))
    gen1 = generation(tmp_path / "g1", ha_toml(two))
    gen2 = generation(tmp_path / "g2", ha_toml(((HOA, "mn1", 1001),)))
    gen3 = generation(tmp_path / "g3", ha_toml(((HOA, "mn1", 2001),)))
    fake, conds = FakeCharon(), Conditions()

    async def run() -> None:
        ctl = controller(gen1, fake, conds)
        await ctl.start()
        assert sorted(fake.loaded) == sorted([CONN, "mip6-2001-db8-1--101"])
        fake.calls.clear()
        await ctl.reload(gen2.config, gen2.directory)
        assert fake.calls == [("unload", "mip6-2001-db8-1--101")]  # mn1 unchanged: not reloaded
        fake.calls.clear()
        await ctl.reload(gen3.config, gen3.directory)
        assert [c[0] for c in fake.calls] == ["load"]
        assert fake.loaded[CONN].reqids == {"mh": 2001, "tunnel": 2002}
        await ctl.close()

    asyncio.run(run())
    assert conds.last["IkeReady"][0] is True


def test_a_bad_psk_is_a_condition(tmp_path: Path) -> None:
    gen = generation(tmp_path, ha_toml())
    (tmp_path / "mn1.psk").chmod(0o644)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> None:
        ctl = controller(gen, fake, conds)
        await ctl.start()
        await ctl.close()

    asyncio.run(run())
    status, reason, message = conds.last["IkeReady"]
    assert (status, reason) == (False, "ConfigError") and "chmod 600" in message
    assert not fake.loaded and KEY_HEX not in message


# --------------------------------------------------------------------------- mobile node


def test_first_move_initiates_from_the_care_of_address(tmp_path: Path) -> None:
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds)
        await ctl.start()
        assert fake.loaded[CONN].local_addrs == ("%any6",)  # loaded, not initiated, at home
        ctl.moved(COA_1)
        await settle(ctl)
        out = await ctl.status()
        await ctl.close()
        return out

    row = asyncio.run(run())[str(HOA)]
    assert ("bring_up", (str(COA_1),)) in fake.calls
    assert row["local_host"] == str(COA_1) and row["state"] == "ESTABLISHED"
    assert row["last_move"]["how"] == "initiated" and row["last_move"]["care_of_address"] == str(
        COA_1
    )
    assert conds.last["IkeReady"][0] is True


def test_move_with_migrate_waits_for_charon_to_follow(tmp_path: Path) -> None:
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds, migrate=True)
        await ctl.start()
        ctl.moved(COA_1)
        await settle(ctl)
        fake.calls.clear()
        fake.pending_move, fake.follows_after = str(COA_2), 2  # the migrate job runs late
        ctl.moved(COA_2)
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    # no terminate, no initiate of the IKE_SA: charon followed; only mh is re-created over it
    assert [c[0] for c in fake.calls] == ["recreate_child"]
    assert row["local_host"] == str(COA_2) and row["ike_spis"]["initiator"] == f"{0x1111:016x}"
    assert row["last_move"]["how"].startswith("migrated")


def test_move_after_charon_already_followed_is_a_migration(tmp_path: Path) -> None:
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds, migrate=True)
        ctl.moved(COA_1)
        await settle(ctl)
        fake.sas = [replace(s, local_host=str(COA_2)) for s in fake.sas]  # the MIGRATE came first
        fake.calls.clear()
        ctl.moved(COA_2)
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert fake.calls == [("recreate_child", "mh")]
    assert row["last_move"]["how"] == "migrated (charon followed the MIGRATE)"


def test_move_with_migrate_not_followed_reinitiates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ike, "MIGRATE_FOLLOW_WAIT", 0.2)
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds, migrate=True)
        ctl.moved(COA_1)
        await settle(ctl)
        fake.pending_move, fake.follows_after = str(COA_2), None  # never
        ctl.moved(COA_2)
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert ("reinitiate", str(COA_2)) in fake.calls
    assert "MIGRATE not followed" in row["last_move"]["how"]


def test_followed_migrate_recreates_mh_after_the_home_registration(tmp_path: Path) -> None:
    """docs/ike.md limit 3: charon re-registers only the tunnel child on a MIGRATE; the
    controller re-creates mh over the moved IKE_SA (same IKE SPIs), once the home
    registration at the new care-of address is done (BU/BA keep the old transport SAs)."""
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()
    registered: list[IPv6Address | None] = [COA_1]

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds, registered=lambda: registered[0])
        ctl.moved(COA_1)
        await settle(ctl)
        assert fake.calls == [("bring_up", (str(COA_1),))]  # initiated: mh is fresh
        fake.calls.clear()
        fake.sas = [replace(s, local_host=str(COA_2)) for s in fake.sas]  # charon followed
        ctl.moved(COA_2)
        for _ in range(20):  # registration at COA_2 not yet done: the child is left alone
            await asyncio.sleep(0.01)
        assert fake.calls == [] and ctl._tasks
        registered[0] = COA_2  # the BA at COA_2 arrived
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert fake.calls == [("recreate_child", "mh")]
    mh = row["last_move"]["mh"]
    assert mh["how"] == "re-created over the moved IKE_SA" and mh["old_child_ids"] == [1]
    assert mh["child_id"] == 11 and mh["spi_in"] == "0xe1" and mh["registration_wait_ms"] > 0
    assert row["ike_spis"]["initiator"] == f"{0x1111:016x}"  # the same IKE_SA
    children = {c["name"]: c for c in row["sas"][0]["children"]}
    assert (
        children["mh"]["spi_out"] == "0xe2" and children["tunnel"]["spi_in"] == f"{0xC0 + 1002:#x}"
    )
    assert row["last_error"] is None and conds.last["IkeReady"][0] is True


def test_mh_recreation_failure_is_shown_not_raised(tmp_path: Path) -> None:
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds)
        ctl.moved(COA_1)
        await settle(ctl)
        fake.sas = [replace(s, local_host=str(COA_2)) for s in fake.sas]
        fake.recreate_error = "initiate mip6-2001-db8-1--100/mh: establishing CHILD_SA 'mh' failed"
        ctl.moved(COA_2)
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert ("recreate_child", "mh") in fake.calls
    assert row["last_move"]["how"].startswith("migrated") and "mh" not in row["last_move"]
    assert "mh child not re-created" in row["last_error"], row
    assert "establishing CHILD_SA 'mh' failed" in row["last_error"]
    assert conds.last["IkeReady"][:2] == (False, "InitiateFailed")
    assert row["state"] == "ESTABLISHED"  # the IKE_SA and the tunnel child are untouched


def test_mh_not_recreated_for_a_care_of_address_left_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ike, "REGISTRATION_WAIT", 0.3)
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()
    registered: list[IPv6Address | None] = [None]
    coa_3 = IPv6Address("2001:db8:c::100")

    async def run() -> None:
        ctl = controller(gen, fake, conds, registered=lambda: registered[0])
        ctl.moved(COA_1)
        await settle(ctl)
        fake.calls.clear()
        fake.sas = [replace(s, local_host=str(COA_2)) for s in fake.sas]
        ctl.moved(COA_2)
        await asyncio.sleep(0.1)
        fake.sas = [replace(s, local_host=str(coa_3)) for s in fake.sas]
        ctl.moved(coa_3)  # before the registration at COA_2: only coa_3 renews mh
        await settle(ctl)  # no registration at coa_3 either: after REGISTRATION_WAIT anyway

    asyncio.run(run())
    assert fake.calls == [("recreate_child", "mh")]


def test_move_without_migrate_reinitiates_from_the_new_address(tmp_path: Path) -> None:
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds, migrate=False)
        ctl.moved(COA_1)
        await settle(ctl)
        ctl.moved(COA_2)
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert ("reinitiate", str(COA_2)) in fake.calls
    assert row["local_host"] == str(COA_2) and row["ike_spis"]["initiator"] == f"{0x3333:016x}"
    assert row["last_move"]["how"].startswith("re-initiated")


def test_transport_only_template_reinitiates_even_with_migrate(tmp_path: Path) -> None:
    text = MN_TOML.replace('["binding-update", "payload"]', '["binding-update"]')
    text = text.replace("tunnel_reqid = { to_ha = 1002, to_mn = 1002 }\n", "")
    gen = generation(tmp_path, text)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds, migrate=True)
        ctl.moved(COA_1)
        await settle(ctl)
        ctl.moved(COA_2)  # no tunnel policy: the executor sends no MIGRATE to follow
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert ("reinitiate", str(COA_2)) in fake.calls
    assert row["reqids"] == {"mh": 1001}
    assert row["last_move"]["how"].startswith("re-initiated")


def test_at_home_and_other_events_are_ignored(tmp_path: Path) -> None:
    from mip6ctl.engine.events import AtHome, CareOfAddressChanged

    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    async def run() -> None:
        ctl = controller(gen, fake, conds)
        ctl.moved(AtHome("m0"))
        await settle(ctl)
        assert not fake.calls
        ctl.moved(CareOfAddressChanged(COA_1, "m0"), False)
        await settle(ctl)

    asyncio.run(run())
    assert ("bring_up", (str(COA_1),)) in fake.calls


def test_initiate_failures_are_bounded_retried_and_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ike, "RETRY_DELAY", 0.01)
    gen = generation(tmp_path, MN_TOML)
    fake, conds = FakeCharon(), Conditions()

    def refuse(conn: Any, *, timeout: float | None = None) -> list[str]:
        fake.calls.append(("bring_up", conn.local_addrs))
        raise ViciError("initiate mip6-2001-db8-1--100/mh: establishing CHILD_SA failed")

    fake.bring_up = refuse  # type: ignore[method-assign]

    async def run() -> dict[str, Any]:
        ctl = controller(gen, fake, conds)
        await ctl.start()
        ctl.moved(COA_1)
        await settle(ctl)
        return (await ctl.status())[str(HOA)]

    row = asyncio.run(run())
    assert [c[0] for c in fake.calls].count("bring_up") == ike.INITIATE_ATTEMPTS
    assert [c[0] for c in fake.calls].count("terminate") == ike.INITIATE_ATTEMPTS
    assert conds.last["IkeReady"][:2] == (False, "InitiateFailed")
    assert "establishing CHILD_SA failed" in row["last_error"]


def test_a_hanging_charon_bounds_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ike, "STATUS_WAIT", 0.1)
    gen = generation(tmp_path, ha_toml())
    fake, conds = FakeCharon(), Conditions()

    async def run() -> tuple[dict[str, Any], float]:
        ctl = controller(gen, fake, conds)
        await ctl.start()
        fake.hang = threading.Event()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await ctl.status()
        took = loop.time() - t0
        fake.hang.set()
        return out, took

    status, took = asyncio.run(run())
    assert took < 1.0
    assert "no answer from charon" in status[str(HOA)]["stale"]


# --------------------------------------------------------------------------- daemon glue


@dataclass
class FakeDaemon:
    cfg: Any
    gen: Any
    caps: Any
    conds: Conditions
    mobile: Any = None
    loop: Any = None

    def _set_condition(self, ctype: str, status: bool, reason: str, message: str) -> None:
        self.conds(ctype, status, reason, message)


def test_attach_hands_itself_to_the_mobile_node_and_follows_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    fake = FakeCharon()
    monkeypatch.setattr(ike, "_charon", fake.session)
    gen = generation(tmp_path / "g1", MN_TOML)
    mobile = SimpleNamespace(location="away", view=SimpleNamespace(care_of_address=COA_1))
    d = FakeDaemon(gen.config, gen, SimpleNamespace(migrate=True), Conditions(), mobile=mobile)

    async def run() -> None:
        ctl = await IkeController.attach(d)
        assert ctl is not None and mobile.ike is ctl  # type: ignore[attr-defined]
        await settle(ctl)  # already away at start: brought up at once
        assert ("bring_up", (str(COA_1),)) in fake.calls
        same = await IkeController.follow(d, ctl)
        assert same is ctl
        plain = generation(tmp_path / "g2", '[node]\nrole = "cn"\n')
        d.cfg, d.gen = plain.config, plain
        assert await IkeController.follow(d, ctl) is None
        assert mobile.ike is None  # type: ignore[attr-defined]
        assert ctl._closed

    asyncio.run(run())
    assert d.conds.last["IkeReady"][:2] == (True, "NotUsed")


def test_attach_without_ike_is_none_and_a_broken_config_is_a_condition(tmp_path: Path) -> None:
    from types import SimpleNamespace

    plain = generation(tmp_path / "cn", '[node]\nrole = "cn"\n')
    d = FakeDaemon(plain.config, plain, SimpleNamespace(migrate=True), Conditions())
    assert asyncio.run(IkeController.attach(d)) is None
    assert "IkeReady" not in d.conds.last
    gen = generation(tmp_path / "ha", ha_toml())
    d = FakeDaemon(gen.config, gen, None, Conditions())  # no caps at all: still no exception
    (tmp_path / "ha" / "mn1.psk").unlink()

    async def run() -> Any:
        ctl = await IkeController.attach(d)
        if ctl is not None:
            await ctl.close()
        return ctl

    assert asyncio.run(run()) is not None
    assert d.conds.last["IkeReady"][:2] == (False, "ConfigError")
