"""mip6ctl.ike.vici_client against a fake VICI session (no charon needed)."""

from __future__ import annotations

import socket
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.config.secrets import SecretBytes
from mip6ctl.ike import swanctl
from mip6ctl.ike.swanctl import IkeChild, IkeConnection
from mip6ctl.ike.vici_client import Charon, ViciError, established, parse_list_sa

vici = pytest.importorskip("vici")

EVENT = {
    b"mip6-2001-db8-1--100": {
        b"uniqueid": b"3",
        b"version": b"2",
        b"state": b"ESTABLISHED",
        b"local-host": b"2001:db8:a::100",
        b"remote-host": b"2001:db8:1::1",
        b"local-id": b"2001:db8:1::100",
        b"remote-id": b"2001:db8:1::1",
        b"initiator": b"yes",
        b"initiator-spi": b"5ad1c3b2a1f0e9d8",
        b"responder-spi": b"0102030405060708",
        b"established": b"4",
        b"child-sas": {
            b"mh-5": {
                b"name": b"mh",
                b"uniqueid": b"5",
                b"reqid": b"1001",
                b"state": b"INSTALLED",
                b"mode": b"TRANSPORT",
                b"protocol": b"ESP",
                b"spi-in": b"c1a2b3c4",
                b"spi-out": b"d1e2f3a4",
                b"local-ts": [b"2001:db8:1::100/128[ipv6-mh]"],
                b"remote-ts": [b"2001:db8:1::1/128[ipv6-mh]"],
            },
        },
    }
}


def _str_keys(d: Any) -> Any:
    """vici's Message.deserialize gives str keys and bytes values."""
    if isinstance(d, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _str_keys(v) for k, v in d.items()}
    return d


def test_parse_list_sa() -> None:
    (sa,) = parse_list_sa(_str_keys(EVENT))
    assert sa.name == "mip6-2001-db8-1--100" and sa.state == "ESTABLISHED"
    assert sa.spis == (0x5AD1C3B2A1F0E9D8, 0x0102030405060708)
    assert (sa.local_host, sa.remote_host) == ("2001:db8:a::100", "2001:db8:1::1")
    (c,) = sa.children
    assert (c.name, c.reqid, c.spi_in, c.spi_out) == ("mh", 1001, 0xC1A2B3C4, 0xD1E2F3A4)
    assert c.local_ts == ("2001:db8:1::100/128[ipv6-mh]",)
    assert established(sa, ("mh",)) and not established(sa, ("mh", "tunnel"))
    assert sa.child("mh") is c and sa.child("tunnel") is None


class FakeSession:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.sas: list[dict[str, Any]] = []
        self.fail: str | None = None

    def _rec(self, name: str, msg: Any) -> None:
        self.calls.append((name, msg))
        if self.fail == name:
            raise vici.exception.CommandException("Command failed: nope")

    def version(self) -> dict[str, bytes]:
        return {"daemon": b"charon", "version": b"5.9.8"}

    def load_shared(self, msg: Any) -> None:
        self._rec("load_shared", msg)

    def load_conn(self, msg: Any) -> None:
        self._rec("load_conn", msg)

    def initiate(self, msg: Any):
        self._rec("initiate", msg)
        yield {"msg": b"establishing CHILD_SA " + msg["child"].encode()}

    def terminate(self, msg: Any):
        self._rec("terminate", msg)
        yield {"msg": b"deleting IKE_SA"}

    def list_sas(self, flt: Any):
        self.calls.append(("list_sas", flt))
        yield from self.sas


@pytest.fixture
def charon(tmp_path: Path):
    path = tmp_path / "charon.vici"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    c = Charon(str(path), timeout=2.0)
    fake = FakeSession()
    c._session = fake  # type: ignore[assignment]
    yield c, fake
    c.close()
    server.close()


def conn() -> IkeConnection:
    child = IkeChild("mh", "transport_proxy", 1001, ("a",), ("b",), ("default",))
    tun = IkeChild("tunnel", "tunnel", 1002, ("a",), ("::/0",), ("default",))
    return IkeConnection(
        name=swanctl.connection_name("2001:db8:1::100"),
        role="mn",
        template="mn1",
        home_address=IPv6Address("2001:db8:1::100"),
        home_agent=IPv6Address("2001:db8:1::1"),
        care_of_address=IPv6Address("2001:db8:a::100"),
        local_addrs=("2001:db8:a::100",),
        remote_addrs=("2001:db8:1::1",),
        local_id="2001:db8:1::100",
        remote_id="2001:db8:1::1",
        children=(child, tun),
        psk=SecretBytes(b"k" * 32),
    )


def test_no_socket_is_a_vici_error(tmp_path: Path) -> None:
    with pytest.raises(ViciError, match="cannot connect"):
        Charon(str(tmp_path / "absent.vici"), timeout=1.0)


def test_bring_up_loads_psk_then_conn_then_initiates_each_child(charon) -> None:
    c, fake = charon
    log = c.bring_up(conn(), timeout=3.0)
    names = [n for n, _ in fake.calls]
    assert names == ["load_shared", "load_conn", "initiate", "initiate"]
    assert [m["child"] for n, m in fake.calls if n == "initiate"] == ["mh", "tunnel"]
    assert fake.calls[2][1]["timeout"] == "3000"
    assert log == ["establishing CHILD_SA mh", "establishing CHILD_SA tunnel"]
    assert c.version()["version"] == "5.9.8"


def test_refusal_is_a_vici_error_naming_the_command(charon) -> None:
    c, fake = charon
    fake.fail = "load_conn"
    with pytest.raises(ViciError, match="load-conn mip6-2001-db8-1--100"):
        c.load(conn())


def test_reinitiate_terminates_reloads_from_the_new_address_and_initiates(charon) -> None:
    c, fake = charon
    fake.sas = [_str_keys(EVENT)]
    r = c.reinitiate(conn(), "2001:db8:a::300", timeout=2.0)
    names = [n for n, _ in fake.calls]
    assert names[:2] == ["list_sas", "terminate"]
    assert names[2:] == ["load_shared", "load_conn", "initiate", "initiate", "list_sas"]
    term = fake.calls[1][1]
    assert term["ike"] == conn().name and term["force"] == "yes"
    (body,) = fake.calls[3][1].values()
    assert body["local_addrs"] == ["2001:db8:a::300"]
    assert r.total_s >= r.initiate_s >= 0 and r.sa is not None


def test_wait_sa_is_bounded(charon) -> None:
    c, fake = charon
    assert c.wait_sa("x", lambda s: True, timeout=0.2, interval=0.05) is None
    fake.sas = [_str_keys(EVENT)]
    sa = c.wait_sa("x", lambda s: s.state == "ESTABLISHED", timeout=0.2)
    assert sa is not None and sa.uniqueid == 3


def _with_mh(uid: int, spi_in: str, *, ike_uid: str = "3", ike_spi: str = "5ad1c3b2a1f0e9d8"):
    ev = _str_keys(EVENT)
    (body,) = ev.values()
    body["uniqueid"], body["initiator-spi"] = ike_uid.encode(), ike_spi.encode()
    (mh,) = body["child-sas"].values()
    body["child-sas"] = {f"mh-{uid}": {**mh, "uniqueid": str(uid).encode(),
                                       "spi-in": spi_in.encode()}}  # fmt: skip
    return ev


def test_recreate_child_deletes_the_old_one_then_initiates_over_the_ike_sa(charon) -> None:
    c, fake = charon
    fake.sas = [_with_mh(5, "c1a2b3c4")]
    initiate = fake.initiate

    def initiate_and_install(msg: Any):
        fake.sas = [_with_mh(9, "e1e2e3e4")]
        yield from initiate(msg)

    fake.initiate = initiate_and_install  # type: ignore[method-assign]
    r = c.recreate_child("mip6-2001-db8-1--100", "mh", timeout=2.0)
    names = [n for n, _ in fake.calls]
    assert names == ["list_sas", "terminate", "initiate", "list_sas"]
    term = fake.calls[1][1]
    assert term["child-id"] == "5" and "ike" not in term and "force" not in term
    assert term["timeout"] == "2000"
    assert fake.calls[2][1]["child"] == "mh" and fake.calls[2][1]["ike"] == "mip6-2001-db8-1--100"
    assert r.old_ids == (5,) and r.new.uniqueid == 9 and r.new.spi_in == 0xE1E2E3E4
    assert r.ike_spis == (0x5AD1C3B2A1F0E9D8, 0x0102030405060708)
    assert r.total_s >= r.initiate_s >= 0 and r.terminate_s >= 0


def test_recreate_child_refuses_when_nothing_new_lands_on_the_ike_sa(charon) -> None:
    c, fake = charon
    with pytest.raises(ViciError, match="no established IKE_SA"):
        c.recreate_child("mip6-2001-db8-1--100", "mh")
    fake.sas = [_with_mh(5, "c1a2b3c4")]
    with pytest.raises(ViciError, match="no new CHILD_SA installed"):
        c.recreate_child("mip6-2001-db8-1--100", "mh")  # initiate changed nothing, twice
    assert [n for n, _ in fake.calls].count("initiate") == 2
    initiate = fake.initiate

    def new_ike_sa(msg: Any):
        fake.sas = [_with_mh(5, "c1a2b3c4"), _with_mh(9, "e1e2e3e4", ike_uid="4", ike_spi="77")]
        yield from initiate(msg)

    fake.initiate = new_ike_sa  # type: ignore[method-assign]
    with pytest.raises(ViciError, match=r"another IKE_SA \[4\]"):
        c.recreate_child("mip6-2001-db8-1--100", "mh")
