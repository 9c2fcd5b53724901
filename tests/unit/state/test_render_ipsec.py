"""RFC 3776/4877 objects: what each end renders, and a move that plans as an XFRM MIGRATE."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.state import ipsec
from mip6ctl.state.objects import RT_TABLE_MAIN, Rule
from mip6ctl.state.plan import plan
from mip6ctl.state.render import (
    Capabilities,
    HostFacts,
    MobileNodeView,
    render,
    render_mobile_node,
)
from mip6ctl.state.xfrm import (
    Direction,
    Level,
    Mode,
    XfrmPolicy,
    XfrmProto,
    XfrmState,
)

ROOT = Path(__file__).resolve().parents[3]
HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
COA1 = IPv6Address("2001:db8:f1::100")
COA2 = IPv6Address("2001:db8:f2::100")
ENC = bytes(range(16))
AUTH = bytes(range(100, 132))
CAPS = Capabilities(tunnel="ip6tnl", signalling="kernel", esp=True, migrate=True)

PROTECT = ["binding-update", "return-routability", "payload"]


def _config(tmp_path: Path, role: str, protect: list[str] = PROTECT) -> object:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    for name, key in (("enc", ENC), ("auth", AUTH)):
        f = keys / name
        f.write_text(key.hex() + "\n")
        f.chmod(0o600)
    node = (
        '[ha]\ninterfaces = ["home0"]\nhome_prefixes = ["2001:db8:1::/64"]\n'
        'address = "2001:db8:1::1"\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\n'
        'ipsec = "mn1"\n'
        if role == "ha"
        else '[mn]\nhome_address = "2001:db8:1::100/64"\nhome_agent = "2001:db8:1::1"\n'
        'interfaces = [{ name = "mn0" }]\nipsec = "mn1"\n'
    )
    (tmp_path / "mip6.toml").write_text(
        f'[node]\nrole = "{role}"\n[kernel]\nsignalling = "kernel"\ntunnel = "ip6tnl"\n'
        + node
        + f"[ipsec.mn1]\nprotect = {PROTECT if protect is None else protect!r}\n".replace("'", '"')
        + 'encryption = { algorithm = "aes-cbc", key_file = "keys/enc" }\n'
        'authentication = { algorithm = "hmac-sha256", key_file = "keys/auth" }\n'
        "spi = { to_ha = 0x1001, to_mn = 0x1002 }\n"
        "reqid = { to_ha = 11, to_mn = 12 }\n"
        "tunnel_spi = { to_ha = 0x2001, to_mn = 0x2002 }\n"
    )
    return load_directory(tmp_path).config


def _facts(cfg: object) -> HostFacts:
    keys = ipsec.keyring(
        cfg.ipsec,  # type: ignore[attr-defined]
        {"mn1": {"encryption": ENC, "authentication": AUTH}},
    )
    return HostFacts(HA).with_keys(keys)


@dataclass(frozen=True)
class B:
    home_address: IPv6Address
    care_of_address: IPv6Address
    home_registration: bool = True
    defended_link_local: IPv6Address | None = None  # L = 1 (render_binding)


def _xfrm(objs: object) -> tuple[list[XfrmPolicy], list[XfrmState]]:
    vals = list(objs)  # type: ignore[call-overload]
    return (
        [o for o in vals if isinstance(o, XfrmPolicy)],
        [o for o in vals if isinstance(o, XfrmState)],
    )


def test_home_agent_transport_mode_bu_ba(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ha")
    pols, states = _xfrm(render(cfg, (), CAPS, _facts(cfg)).objects.values())  # type: ignore[arg-type]
    bu_in = next(p for p in pols if p.direction == Direction.IN and p.selector.mh_type == 5)
    assert [(t.proto, t.mode, t.level, t.reqid) for t in bu_in.templates] == [
        (XfrmProto.ESP, Mode.TRANSPORT, Level.REQUIRED, 11),
        (XfrmProto.HAO, Mode.RO, Level.USE, 0),  # matched first against the HAO state
    ]
    assert str(bu_in.selector.src) == f"{HOA}/128"  # selectors use the home address
    ba_out = next(p for p in pols if p.direction == Direction.OUT and p.selector.mh_type == 6)
    assert [t.reqid for t in ba_out.templates] == [12]
    esp = {(s.dst, s.spi): s for s in states if s.proto == XfrmProto.ESP}
    assert set(esp) == {(HA, 0x1001), (HOA, 0x1002)}
    assert all(s.mode == Mode.TRANSPORT for s in esp.values())
    algos = esp[(HA, 0x1001)].algorithms
    assert [a.name for a in algos] == ["cbc(aes)", "hmac(sha256)"]
    assert ENC.hex() not in repr(algos) and AUTH.hex() not in repr(algos)


def test_no_keys_means_policies_without_sas(tmp_path: Path) -> None:
    """A template whose keys could not be read: the kernel then drops, never sends clear."""
    cfg = _config(tmp_path, "ha")
    pols, states = _xfrm(render(cfg, (), CAPS, HostFacts(HA)).objects.values())  # type: ignore[arg-type]
    esp_pols = [p for p in pols if any(t.proto == XfrmProto.ESP for t in p.templates)]
    assert len(esp_pols) == 2 and not [s for s in states if s.proto == XfrmProto.ESP]


def test_home_agent_binding_tunnel_mode(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ha")
    d = render(cfg, [B(HOA, COA1)], CAPS, _facts(cfg))  # type: ignore[arg-type]
    pols, states = _xfrm(d.objects.values())
    tun = [p for p in pols if p.templates and p.templates[0].mode == Mode.TUNNEL]
    # HoTI/HoT and payload, each out + fwd + in
    assert len(tun) == 6
    assert {p.direction for p in tun} == {Direction.OUT, Direction.FWD, Direction.IN}
    out = [p for p in tun if p.direction == Direction.OUT]
    assert all((p.templates[0].src, p.templates[0].dst) == (HA, COA1) for p in out)
    hot = next(p for p in out if p.selector.mh_type == 3)
    payload = next(p for p in out if p.selector.proto == 0)
    assert hot.priority < payload.priority  # HoT wins over the payload policy
    sas = {(s.src, s.dst, s.spi) for s in states if s.mode == Mode.TUNNEL}
    assert sas == {(COA1, HA, 0x2001), (HA, COA1, 0x2002)}
    assert all(
        d.origins[k].kind == "binding"
        for k in d.objects
        if k[0] == "xfrm-state" and d.objects[k].mode == Mode.TUNNEL
    )


def test_a_move_plans_as_migrate_with_spis_kept(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ha")
    facts = _facts(cfg)
    before = render(cfg, [B(HOA, COA1)], CAPS, facts)  # type: ignore[arg-type]
    after = render(cfg, [B(HOA, COA2)], CAPS, facts)  # type: ignore[arg-type]
    p = plan(after.objects, before.objects, origins=after.origins)
    xfrm = [c for c in p.changes if c.kind.startswith("xfrm")]
    assert {c.action for c in xfrm} == {"migrate"}, [(c.action, c.key) for c in xfrm]
    moved_states = [c for c in xfrm if isinstance(c.desired, XfrmState)]
    assert {(c.observed.spi, c.desired.spi) for c in moved_states} == {
        (0x2001, 0x2001),
        (0x2002, 0x2002),
    }
    # policies first: their MIGRATE carries the SAs along
    kinds = [c.kind for c in xfrm]
    assert kinds == sorted(kinds, key=lambda k: k != "xfrm-policy")
    assert p.impact["bindings_moved"] == 1 and p.counts()["migrate"] == len(xfrm)


def test_a_key_change_is_not_a_migration(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ha")
    old = render(cfg, [B(HOA, COA1)], CAPS, _facts(cfg))  # type: ignore[arg-type]
    rotated = ipsec.keyring(
        cfg.ipsec,  # type: ignore[attr-defined]
        {"mn1": {"encryption": bytes(16), "authentication": AUTH}},
    )
    new = render(cfg, [B(HOA, COA2)], CAPS, HostFacts(HA).with_keys(rotated))  # type: ignore[arg-type]
    p = plan(new.objects, old.objects)
    states = [c for c in p.changes if isinstance(c.desired or c.observed, XfrmState)]
    assert states and all(c.action != "migrate" for c in states)


def _view(care_of: IPv6Address | None) -> MobileNodeView:
    return MobileNodeView(IPv6Interface(f"{HOA}/64"), HA, care_of, "mn0")


def test_mobile_node_mirror_image(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "mn")
    facts = _facts(cfg)
    static = render(cfg, (), CAPS, facts)  # type: ignore[arg-type]
    pols, states = _xfrm(static.objects.values())
    bu_out = next(p for p in pols if p.direction == Direction.OUT and p.selector.mh_type == 5)
    # the kernel adds the HAO (hao state, coaddr = CoA) before ESP encrypts
    assert [t.proto for t in bu_out.templates] == [XfrmProto.HAO, XfrmProto.ESP]
    ba_in = next(p for p in pols if p.direction == Direction.IN and p.selector.mh_type == 6)
    assert [t.proto for t in ba_in.templates] == [XfrmProto.ESP, XfrmProto.ROUTE2]
    assert {(s.dst, s.spi) for s in states if s.proto == XfrmProto.ESP} == {
        (HA, 0x1001),
        (HOA, 0x1002),
    }

    away = render_mobile_node(cfg, _view(COA1), CAPS, facts)  # type: ignore[arg-type]
    pols, states = _xfrm(away.objects.values())
    hao = [s for s in states if s.proto == XfrmProto.HAO]
    assert [(s.dst, s.src, s.coaddr) for s in hao] == [(HA, HOA, COA1)]
    assert Rule(1001, RT_TABLE_MAIN, f"{HOA}/128", f"{HA}/128", 135) in away.objects.values()
    tun = {(s.src, s.dst, s.spi) for s in states if s.mode == Mode.TUNNEL}
    assert tun == {(COA1, HA, 0x2001), (HA, COA1, 0x2002)}
    assert {p.direction for p in pols} == {Direction.OUT, Direction.IN}

    home = render_mobile_node(cfg, _view(None), CAPS, facts)  # type: ignore[arg-type]
    assert not _xfrm(home.objects.values())[1]  # at home: transport mode only (static)


@pytest.mark.parametrize("protect", [["binding-update"], ["payload"]])
def test_only_what_is_protected_is_rendered(tmp_path: Path, protect: list[str]) -> None:
    cfg = _config(tmp_path, "ha", protect)
    d = render(cfg, [B(HOA, COA1)], CAPS, _facts(cfg))  # type: ignore[arg-type]
    _, states = _xfrm(d.objects.values())
    modes = {s.mode for s in states if s.proto == XfrmProto.ESP}
    assert modes == ({Mode.TRANSPORT} if protect == ["binding-update"] else {Mode.TUNNEL})


def test_mobile_prefix_discovery_is_protected_too(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ha", ["binding-update", "mobile-prefix-discovery"])
    pols, _ = _xfrm(render(cfg, (), CAPS, _facts(cfg)).objects.values())  # type: ignore[arg-type]
    icmp = {(p.direction, p.selector.sport) for p in pols if p.selector.proto == 58}
    assert icmp == {(Direction.IN, 146), (Direction.OUT, 147)}  # MPS in, MPA out
    mh = [p for p in pols if p.selector.proto == 135 and p.selector.mh_type in (5, 6)]
    assert all(p.priority < min(q.priority for q in pols if q.selector.proto == 58) for p in mh)


def _rotated(cfg: object) -> tuple[object, HostFacts]:
    """The same template with new SPIs and a new authentication key."""
    tpl = cfg.ipsec["mn1"]  # type: ignore[attr-defined]
    new_tpl = tpl.model_copy(
        update={
            "spi": tpl.spi.model_copy(update={"to_ha": 0x1101, "to_mn": 0x1102}),
            "tunnel_spi": tpl.tunnel_spi.model_copy(update={"to_ha": 0x2101, "to_mn": 0x2102}),
        }
    )
    new_cfg = cfg.model_copy(update={"ipsec": {"mn1": new_tpl}})  # type: ignore[attr-defined]
    keys = ipsec.keyring(new_cfg.ipsec, {"mn1": {"encryption": ENC, "authentication": bytes(32)}})
    return new_cfg, HostFacts(HA).with_keys(keys)


@pytest.mark.parametrize("side", ["ha", "mn"])
def test_a_rotation_keeps_old_sas_in_two_phases(tmp_path: Path, side: str) -> None:
    cfg = _config(tmp_path, side)
    old_keys = _facts(cfg).keys_of("mn1")
    new_cfg, facts = _rotated(cfg)
    assert ipsec.rotation_possible(cfg.ipsec["mn1"], new_cfg.ipsec["mn1"])  # type: ignore[attr-defined]
    me = HA if side == "ha" else HOA

    def spis(phase: int | None) -> set[tuple[int, bool]]:
        f = facts
        if phase is not None:
            f = facts.with_retiring({"mn1": ipsec.Retiring(cfg.ipsec["mn1"], old_keys, phase)})  # type: ignore[arg-type, attr-defined]
        d = render(new_cfg, (), CAPS, f)  # type: ignore[arg-type]
        return {
            (s.spi, s.dst == me)  # (SPI, inbound here)
            for s in d.objects.values()
            if isinstance(s, XfrmState) and s.mode == Mode.TRANSPORT
        }

    inbound_old, inbound_new = (0x1001, 0x1101) if side == "ha" else (0x1002, 0x1102)
    outbound_old, outbound_new = (0x1002, 0x1102) if side == "ha" else (0x1001, 0x1101)
    assert spis(1) == {(inbound_new, True), (inbound_old, True), (outbound_old, False)}
    assert spis(2) == {(inbound_new, True), (inbound_old, True), (outbound_new, False)}
    assert spis(None) == {(inbound_new, True), (outbound_new, False)}


def test_new_keys_under_the_same_spis_cannot_rotate(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "ha")
    tpl = cfg.ipsec["mn1"]  # type: ignore[attr-defined]
    assert not ipsec.rotation_possible(tpl, tpl)
