"""mip6ctl.ike.swanctl: configuration -> swanctl/VICI connections, PSK handling."""

from __future__ import annotations

import os
import tomllib
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.config.model import Mip6Config
from mip6ctl.config.problems import ConfigError
from mip6ctl.ike import swanctl
from mip6ctl.ike.swanctl import IkeConfigError

KEY_HEX = "00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef"
HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
COA = IPv6Address("2001:db8:a::100")


def template(
    name: str = "mn1",
    protect: str = '["binding-update", "payload"]',
    reqid: str = "{ to_ha = 1001, to_mn = 1001 }",
    tunnel_reqid: str | None = "{ to_ha = 1002, to_mn = 1002 }",
    psk: str | None = "mn1.psk",
    extra: str = 'encryption = { algorithm = "aes-cbc", key_bits = 256 }\n'
    'authentication = { algorithm = "hmac-sha256" }\n',
) -> str:
    s = f'[ipsec.{name}]\nprotect = {protect}\nkey_management = "ike"\n{extra}'
    if reqid:
        s += f"reqid = {reqid}\n"
    if tunnel_reqid:
        s += f"tunnel_reqid = {tunnel_reqid}\n"
    if psk:
        s += f'psk_file = "{psk}"\n'
    return s


def mn_toml(tpl: str, home_agent: str = str(HA)) -> str:
    return (
        '[node]\nrole = "mn"\n[mn]\n'
        f'home_address = "{HOA}/64"\nhome_agent = "{home_agent}"\n'
        'interfaces = [{ name = "m0" }]\nipsec = "mn1"\n' + tpl
    )


def ha_toml(tpls: str, nodes: tuple[tuple[str, str], ...] = ((str(HOA), "mn1"),)) -> str:
    s = (
        '[node]\nrole = "ha"\n[ha]\ninterfaces = ["h0"]\n'
        f'home_prefixes = ["2001:db8:1::/64"]\naddress = "{HA}"\nrequire_ipsec = true\n'
    )
    for hoa, tpl in nodes:
        s += f'[[ha.mobile_nodes]]\nhome_address = "{hoa}"\nipsec = "{tpl}"\n'
    return s + tpls


def load(tmp_path: Path, toml: str, *, key: str = KEY_HEX, mode: int = 0o600):
    d = tmp_path / "cfg"
    d.mkdir(exist_ok=True)
    (d / "mip6.toml").write_text(toml)
    k = d / "mn1.psk"
    k.write_text(key + "\n")
    k.chmod(mode)
    gen = load_directory(d)
    return gen.config, gen.directory


def unchecked(tmp_path: Path, toml: str, *, key: str = KEY_HEX, mode: int = 0o600):
    """Like `load`, but only the schema: a configuration `validate` refuses (it checks
    the generator's rules too, tests/unit/config/test_ipsec_checks.py), to test that
    the generator still refuses it on its own."""
    d = tmp_path / "cfg"
    d.mkdir(exist_ok=True)
    k = d / "mn1.psk"
    k.write_text(key + "\n")
    k.chmod(mode)
    return Mip6Config.model_validate(tomllib.loads(toml)), d


def test_mobile_node_connection(tmp_path: Path) -> None:
    cfg, base = load(tmp_path, mn_toml(template()))
    c = swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert c is not None
    assert c.name == "mip6-2001-db8-1--100"
    ((name, body),) = c.vici_conn().items()
    assert name == c.name
    assert body["local_addrs"] == [str(COA)] and body["remote_addrs"] == [str(HA)]
    assert body["mobike"] == "no" and body["version"] == "2"
    assert body["local"] == {"auth": "psk", "id": str(HOA)}
    assert body["remote"] == {"auth": "psk", "id": str(HA)}
    mh, tun = body["children"]["mh"], body["children"]["tunnel"]
    assert mh["mode"] == "transport_proxy" and mh["reqid"] == "1001"
    assert mh["local_ts"] == [f"{HOA}/128[135]"] and mh["remote_ts"] == [f"{HA}/128[135]"]
    assert tun["mode"] == "tunnel" and tun["reqid"] == "1002"
    assert tun["local_ts"] == [f"{HOA}/128"] and tun["remote_ts"] == ["::/0"]
    for child in (mh, tun):
        assert child["policies"] == "no"
        assert child["esp_proposals"] == ["aes256-sha256"]
        assert child["start_action"] == "none"
    assert c.reqids == {"mh": 1001, "tunnel": 1002}

    # every leaf is a string or a list of strings (what VICI carries)
    def leaves(d):
        for v in d.values():
            if isinstance(v, dict):
                yield from leaves(v)
            else:
                yield v

    assert all(isinstance(v, str) or all(isinstance(x, str) for x in v) for v in leaves(body))


def test_home_agent_end_mirrors_the_mobile_node(tmp_path: Path) -> None:
    cfg, base = load(tmp_path, ha_toml(template()))
    (c,) = swanctl.ha_connections(cfg, base=base)
    ((_, body),) = c.vici_conn().items()
    assert body["local_addrs"] == [str(HA)] and body["remote_addrs"] == ["%any"]
    assert body["local"]["id"] == str(HA) and body["remote"]["id"] == str(HOA)
    assert body["unique"] == "replace"
    assert body["children"]["mh"]["local_ts"] == [f"{HA}/128[135]"]
    assert body["children"]["tunnel"]["local_ts"] == ["::/0"]
    assert body["children"]["tunnel"]["remote_ts"] == [f"{HOA}/128"]
    assert c.care_of_address is None
    shared = c.vici_shared()
    assert shared["owners"] == [str(HA), str(HOA)] and shared["type"] == "IKE"
    assert shared["data"] == bytes.fromhex(KEY_HEX)


def test_both_ends_share_name_psk_and_reqids(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "h").mkdir()
    mcfg, mbase = load(tmp_path / "m", mn_toml(template()))
    hcfg, hbase = load(tmp_path / "h", ha_toml(template()))
    m = swanctl.mn_connection(mcfg, care_of_address=None, base=mbase)
    (h,) = swanctl.ha_connections(hcfg, base=hbase)
    assert m is not None and m.name == h.name and m.reqids == h.reqids
    assert m.psk_fingerprint == h.psk_fingerprint
    assert m.local_addrs == ("%any6",)
    assert swanctl.connections(mcfg, base=mbase)[0].name == m.name


@pytest.mark.parametrize(
    ("protect", "mh_ts", "tunnel_ts"),
    [
        ('["binding-update"]', [f"{HOA}/128[135]"], None),
        ('["any"]', [f"{HOA}/128"], None),
        ('["mobility-header", "icmp"]', [f"{HOA}/128[135]", f"{HOA}/128[58]"], None),
        ('["return-routability"]', None, [f"{HOA}/128[135]"]),
        ('["binding-update", "return-routability"]', [f"{HOA}/128[135]"], [f"{HOA}/128[135]"]),
        ('["payload", "tunnel-mobility-header"]', None, [f"{HOA}/128"]),
    ],
)
def test_protect_kinds_pick_children_and_selectors(tmp_path, protect, mh_ts, tunnel_ts) -> None:
    cfg, base = load(tmp_path, mn_toml(template(protect=protect)))
    c = swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert c is not None
    mh, tun = c.child("mh"), c.child("tunnel")
    assert (mh.local_ts if mh else None) == (tuple(mh_ts) if mh_ts else None)
    assert (tun.local_ts if tun else None) == (tuple(tunnel_ts) if tunnel_ts else None)


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ("", ("default",)),
        ('encryption = { algorithm = "aes-cbc" }\n', ("aes128-sha256",)),
        ('authentication = { algorithm = "hmac-sha1" }\n', ("null-sha1",)),
        (
            'encryption = { algorithm = "aes-ctr", key_bits = 192 }\n'
            'authentication = { algorithm = "hmac-sha512" }\n',
            ("aes192ctr-sha512",),
        ),
        ('encryption = { algorithm = "3des-cbc" }\n', ("3des-sha256",)),
    ],
)
def test_esp_proposals_follow_the_template_algorithms(tmp_path, extra, want) -> None:
    cfg, base = load(tmp_path, mn_toml(template(extra=extra)))
    c = swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert c is not None and all(ch.esp_proposals == want for ch in c.children)


def test_manual_template_gives_no_connection(tmp_path: Path) -> None:
    tpl = (
        '[ipsec.mn1]\nprotect = ["binding-update"]\n'
        'authentication = { algorithm = "hmac-sha256", key_file = "mn1.psk" }\n'
        "spi = { to_ha = 4097, to_mn = 4098 }\n"
    )
    cfg, base = load(tmp_path, mn_toml(tpl))
    assert swanctl.mn_connection(cfg, care_of_address=COA, base=base) is None
    cfg, base = load(tmp_path, ha_toml(tpl))
    assert swanctl.ha_connections(cfg, base=base) == []


ERRORS = [
    # (template, generator's key path, its words, validate's key path)
    (template(psk=None), "ipsec.mn1", "needs psk_file", "ipsec.mn1"),
    (template(reqid=""), "ipsec.mn1", "fixed reqids", "ipsec.mn1"),
    (
        template(reqid="{ to_ha = 1, to_mn = 2 }"),
        "ipsec.mn1.reqid",
        "must be equal",
        "ipsec.mn1.reqid",
    ),
    (
        template(tunnel_reqid="{ to_ha = 7, to_mn = 8 }"),
        "ipsec.mn1.tunnel_reqid",
        "must be equal",
        "ipsec.mn1.tunnel_reqid",
    ),
    (template(tunnel_reqid=None), "ipsec.mn1.reqid", "its own reqid", "ipsec.mn1"),
    (
        template(tunnel_reqid="{ to_ha = 1001, to_mn = 1001 }"),
        "ipsec.mn1.tunnel_reqid",
        "its own reqid",
        "ipsec.mn1.tunnel_reqid",
    ),
    (template(psk="missing.psk"), "ipsec.mn1.psk_file", "does not exist", "ipsec.mn1.psk_file"),
]


@pytest.mark.parametrize(("tpl", "path", "words", "_checked"), ERRORS)
def test_configuration_errors_name_the_key(tmp_path, tpl, path, words, _checked) -> None:
    cfg, base = unchecked(tmp_path, mn_toml(tpl))
    with pytest.raises(IkeConfigError) as e:
        swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert ".".join(map(str, e.value.path)) == path
    assert words in str(e.value)


@pytest.mark.parametrize(("tpl", "_path", "_words", "checked"), ERRORS)
def test_validate_refuses_what_the_generator_refuses(tmp_path, tpl, _path, _words, checked):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, mn_toml(tpl))
    assert [p.key for p in e.value.problems] == [checked]


@pytest.mark.parametrize(
    ("key", "mode", "words"),
    [
        (KEY_HEX, 0o644, "mode 0644"),
        ("00112233", 0o600, "holds 32 bits"),
        ("not a key at all", 0o600, "not hexadecimal"),
        ("abc", 0o600, "odd number"),
    ],
)
def test_bad_psk_files_are_refused_without_showing_the_key(tmp_path, key, mode, words) -> None:
    cfg, base = unchecked(tmp_path, mn_toml(template()), key=key, mode=mode)
    with pytest.raises(IkeConfigError) as e:
        swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert e.value.path == ("ipsec", "mn1", "psk_file")
    assert words in str(e.value)
    assert key not in str(e.value) or len(key) < 8
    with pytest.raises(ConfigError) as v:  # validate: the same words at the same key
        load(tmp_path, mn_toml(template()), key=key, mode=mode)
    ((k, msg),) = [(p.key, p.message) for p in v.value.problems]
    assert k == "ipsec.mn1.psk_file" and words in msg


def test_dhaad_needs_the_discovered_home_agent(tmp_path: Path) -> None:
    cfg, base = load(tmp_path, mn_toml(template(), home_agent="dhaad"))
    with pytest.raises(IkeConfigError, match="DHAAD"):
        swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    c = swanctl.mn_connection(cfg, care_of_address=COA, home_agent="2001:db8:1::2", base=base)
    assert c is not None and c.remote_addrs == ("2001:db8:1::2",)


def test_home_agent_refuses_a_reqid_shared_by_two_mobile_nodes(tmp_path: Path) -> None:
    nodes = ((str(HOA), "mn1"), ("2001:db8:1::101", "mn1"))
    cfg, base = unchecked(tmp_path, ha_toml(template(), nodes))
    with pytest.raises(IkeConfigError, match="its own reqids") as e:
        swanctl.ha_connections(cfg, base=base)
    assert e.value.path == ("ha", "mobile_nodes", 1, "ipsec")
    # one template per node works
    tpls = template() + template(
        name="mn2",
        reqid="{ to_ha = 2001, to_mn = 2001 }",
        tunnel_reqid="{ to_ha = 2002, to_mn = 2002 }",
    )
    nodes = ((str(HOA), "mn1"), ("2001:db8:1::101", "mn2"))
    cfg, base = load(tmp_path, ha_toml(tpls, nodes))
    conns = swanctl.ha_connections(cfg, base=base)
    assert [c.reqids for c in conns] == [
        {"mh": 1001, "tunnel": 1002},
        {"mh": 2001, "tunnel": 2002},
    ]


def test_no_output_contains_key_bytes(tmp_path: Path) -> None:
    cfg, base = load(tmp_path, mn_toml(template()))
    c = swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert c is not None
    texts = [swanctl.swanctl_conf([c]), repr(c), str(c.describe()), str(c.vici_conn()), repr(c.psk)]
    for t in texts:
        assert KEY_HEX not in t.lower()
        assert KEY_HEX[:16] not in t.lower()
        assert repr(bytes.fromhex(KEY_HEX)) not in t
    assert c.psk_fingerprint.startswith("sha256:")
    assert c.psk_fingerprint in swanctl.swanctl_conf([c])
    assert c.describe()["psk_fingerprint"] == c.psk_fingerprint


def test_swanctl_text_shape(tmp_path: Path) -> None:
    cfg, base = load(tmp_path, mn_toml(template()))
    c = swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    assert c is not None
    text = swanctl.swanctl_conf([c])
    assert text.count("{") == text.count("}")
    assert "mode = transport_proxy" in text and "policies = no" in text
    assert f"local_addrs = {COA}" in text
    assert "mobike = no" in text


def test_psk_file_relative_to_the_configuration_directory(tmp_path: Path) -> None:
    cfg, base = load(tmp_path, mn_toml(template()))
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        c = swanctl.mn_connection(cfg, care_of_address=COA, base=base)
    finally:
        os.chdir(here)
    assert c is not None and c.psk_path == Path("mn1.psk")
