"""IPsec configuration errors (issue 14): each at file:line with its key path, nothing applied.

Key files (missing, wrong length, group/world-readable), tunnel-mode SPIs,
SPI and reqid collisions, templates no node uses, a manual-key template
shared by two nodes, the IKE rules of the strongSwan generator (psk_file,
fixed and equal reqids, tunnel_reqid, one node per template), and a home
agent that would accept forged Binding Updates; then
`mip6ctl.config.ipsec_needs` and the no-key-byte-in-any-output test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mip6ctl.cli.main import main
from mip6ctl.config.ipsec_needs import (
    TUNNEL_KINDS,
    IpsecNeeds,
    kernel_problems,
    kernel_warnings,
    needs,
    unprotected_warning,
)
from mip6ctl.config.loader import ConfigError, load_directory
from mip6ctl.config.model import Mip6Config
from mip6ctl.config.secrets import fingerprint

ENC = bytes(range(0x10, 0x20))  # aes-cbc 128
AUTH = bytes(range(0x40, 0x60))  # hmac-sha256
PSK = bytes(range(0x80, 0xA0))  # IKE pre-shared key, 256 bits

NODE = """\
[node]
role = "ha"

[ha]
interfaces = ["home0"]
home_prefixes = ["2001:db8:1::/64"]

[[ha.mobile_nodes]]
home_address = "2001:db8:1::100"
ipsec = "mn1"
"""
# line numbers of 20-ipsec.toml, used by the assertions below
IPSEC = """\
[ipsec.mn1]
protect = ["binding-update", "return-routability", "payload"]
encryption = { algorithm = "aes-cbc", key_file = "keys/mn1.enc" }
authentication = { algorithm = "hmac-sha256", key_file = "keys/mn1.auth" }
spi = { to_ha = 0x1001, to_mn = 0x1002 }
tunnel_spi = { to_ha = 0x1003, to_mn = 0x1004 }
reqid = { to_ha = 1, to_mn = 2 }
"""
# a second node and template, in a file of their own
MN2 = """\
[[ha.mobile_nodes]]
home_address = "2001:db8:1::200"
ipsec = "mn2"

[ipsec.mn2]
protect = ["binding-update"]
encryption = { algorithm = "aes-cbc", key_file = "keys/mn1.enc" }
authentication = { algorithm = "hmac-sha256", key_file = "keys/mn1.auth" }
spi = { to_ha = 0x2001, to_mn = 0x2002 }
reqid = { to_ha = 3, to_mn = 4 }
"""


def _dir(write, ipsec: str = IPSEC, node: str = NODE, extra: dict | None = None) -> Path:
    d = write({"10-node.toml": node, "20-ipsec.toml": ipsec, **(extra or {})})
    keys = d / "keys"
    keys.mkdir(exist_ok=True)
    for name, key in (("mn1.enc", ENC), ("mn1.auth", AUTH), ("mn1.psk", PSK)):
        f = keys / name
        if not f.exists():
            f.write_text(key.hex() + "\n")
            f.chmod(0o600)
    return d


def _problems(d: Path) -> list[tuple[str, int | None, str, str, str]]:
    """(file name, line, key, kind, message) of every problem; asserts nothing loaded."""
    with pytest.raises(ConfigError) as e:
        load_directory(d)
    return [
        (Path(p.file).name if p.file else "", p.line, p.key, p.kind, p.message)
        for p in e.value.problems
    ]


# an IKE template: line numbers of 20-ipsec.toml, used by the assertions below
IKE = """\
[ipsec.mn1]
protect = ["binding-update", "payload"]
key_management = "ike"
psk_file = "keys/mn1.psk"
reqid = { to_ha = 1001, to_mn = 1001 }
tunnel_reqid = { to_ha = 1002, to_mn = 1002 }
"""


def _only(d: Path) -> tuple[str, int | None, str, str, str]:
    (p,) = _problems(d)
    return p


def _refused_by_validate(d: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """validate exits 1, says nothing applied, and its JSON lists the errors."""
    assert main(["validate", "-c", str(d)]) == 1
    assert "nothing applied" in capsys.readouterr().err
    assert main(["validate", "-c", str(d), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False
    return doc["errors"]


def test_the_base_configuration_is_valid(write):
    gen = load_directory(_dir(write))
    assert gen.keys["ipsec.mn1.encryption"].fingerprint == fingerprint(ENC)
    assert gen.keys["ipsec.mn1.authentication"].fingerprint == fingerprint(AUTH)


# --------------------------------------------------------------------------- key files


def test_missing_key_file(write, capsys):
    d = _dir(write)
    (d / "keys" / "mn1.auth").unlink()
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == (
        "20-ipsec.toml",
        4,
        "ipsec.mn1.authentication.key_file",
        "key-file",
    )
    assert msg == f"key file {d / 'keys' / 'mn1.auth'} does not exist"
    (err,) = _refused_by_validate(d, capsys)
    assert (Path(err["file"]).name, err["line"], err["key"]) == (name, line, key)


@pytest.mark.parametrize(
    ("file", "content", "line", "text"),
    [
        ("mn1.enc", bytes(10).hex(), 3, "holds a 80-bit key; aes-cbc needs 128, 192 or 256 bits"),
        ("mn1.auth", ENC.hex(), 4, "holds a 128-bit key; hmac-sha256 needs 256 bits"),
        ("mn1.auth", bytes(20), 4, "neither hexadecimal text nor a raw key of a valid length"),
    ],
)
def test_key_of_the_wrong_length(write, capsys, file, content, line, text):
    d = _dir(write)
    f = d / "keys" / file
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    name, got_line, key, kind, msg = _only(d)
    section = "encryption" if file.endswith("enc") else "authentication"
    assert (name, got_line, key, kind) == (
        "20-ipsec.toml",
        line,
        f"ipsec.mn1.{section}.key_file",
        "key-file",
    )
    assert text in msg
    assert len(_refused_by_validate(d, capsys)) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606])
def test_group_or_world_readable_key_file(write, capsys, mode):
    d = _dir(write)
    f = d / "keys" / "mn1.enc"
    f.chmod(mode)
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == (
        "20-ipsec.toml",
        3,
        "ipsec.mn1.encryption.key_file",
        "key-file",
    )
    assert f"has mode {mode:04o}: group/other may access it; run `chmod 600 {f}`" in msg
    assert len(_refused_by_validate(d, capsys)) == 1


# --------------------------------------------------------------------------- tunnel SPIs


@pytest.mark.parametrize("kind", sorted(str(k) for k in TUNNEL_KINDS))
def test_tunnel_kinds_with_manual_keys_need_tunnel_spi(write, capsys, kind):
    ipsec = IPSEC.replace('"return-routability", "payload"', f'"{kind}"').replace(
        "tunnel_spi = { to_ha = 0x1003, to_mn = 0x1004 }\n", ""
    )
    name, line, key, kind_, msg = _only(_dir(write, ipsec))
    assert (name, line, key, kind_) == ("20-ipsec.toml", 1, "ipsec.mn1", "consistency")
    assert f"tunnel-mode protection ({kind}) needs tunnel_spi" in msg
    assert len(_refused_by_validate(_dir(write, ipsec), capsys)) == 1


def test_transport_kinds_or_ike_need_no_tunnel_spi(write):
    transport = IPSEC.replace('"return-routability", "payload"', '"mobility-header"').replace(
        "tunnel_spi = { to_ha = 0x1003, to_mn = 0x1004 }\n", ""
    )
    load_directory(_dir(write, transport))
    load_directory(_dir(write, IKE))


def test_tunnel_spi_pair_must_differ(write):
    ipsec = IPSEC.replace("to_mn = 0x1004", "to_mn = 0x1003")
    assert _only(_dir(write, ipsec))[:4] == (
        "20-ipsec.toml",
        6,
        "ipsec.mn1.tunnel_spi",
        "consistency",
    )


def test_tunnel_spi_must_differ_from_spi(write, capsys):
    d = _dir(write, IPSEC.replace("to_mn = 0x1004", "to_mn = 0x1001"))
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 6, "ipsec.mn1.tunnel_spi.to_mn", "conflict")
    assert msg.startswith(
        f"SPI 0x1001 (4097) is already used at {d / '20-ipsec.toml'}:5 (ipsec.mn1.spi.to_ha)"
    )
    assert len(_refused_by_validate(d, capsys)) == 1


# --------------------------------------------------------------------------- collisions


def test_spi_collision_between_two_templates_names_both_places(write, capsys):
    d = _dir(write, extra={"30-mn2.toml": MN2.replace("to_mn = 0x2002", "to_mn = 0x1004")})
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("30-mn2.toml", 9, "ipsec.mn2.spi.to_mn", "conflict")
    assert f"is already used at {d / '20-ipsec.toml'}:6 (ipsec.mn1.tunnel_spi.to_mn)" in msg
    (err,) = _refused_by_validate(d, capsys)
    assert (Path(err["file"]).name, err["line"], err["key"]) == (name, line, key)


def test_every_spi_of_a_template_may_collide(write):
    mn2 = MN2.replace("to_ha = 0x2001, to_mn = 0x2002", "to_ha = 0x1002, to_mn = 0x1003")
    got = [p[:4] for p in _problems(_dir(write, extra={"30-mn2.toml": mn2}))]
    assert got == [
        ("30-mn2.toml", 9, "ipsec.mn2.spi.to_ha", "conflict"),
        ("30-mn2.toml", 9, "ipsec.mn2.spi.to_mn", "conflict"),
    ]


def test_reqid_collision_between_two_templates(write, capsys):
    d = _dir(write, extra={"30-mn2.toml": MN2.replace("to_ha = 3", "to_ha = 2")})
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("30-mn2.toml", 10, "ipsec.mn2.reqid.to_ha", "conflict")
    assert f"reqid 2 is already used by template mn1 at {d / '20-ipsec.toml'}:7" in msg
    assert len(_refused_by_validate(d, capsys)) == 1


def test_tunnel_reqid_collides_too_but_not_within_its_template(write):
    # within mn1: tunnel_reqid equal to reqid (its default), both directions sharing one
    same = IPSEC + "tunnel_reqid = { to_ha = 1, to_mn = 1 }\n"
    load_directory(_dir(write, same))
    other = IPSEC + "tunnel_reqid = { to_ha = 9, to_mn = 4 }\n"
    d = _dir(write, other, extra={"30-mn2.toml": MN2})
    name, line, key, kind, _msg = _only(d)
    # mn1's files come first: the later template, mn2, carries the finding
    assert (name, line, key, kind) == ("30-mn2.toml", 10, "ipsec.mn2.reqid.to_mn", "conflict")


def test_distinct_templates_are_fine(write):
    load_directory(_dir(write, extra={"30-mn2.toml": MN2}))


def test_manual_template_shared_by_two_mobile_nodes(write, capsys):
    node = NODE + '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::101"\nipsec = "mn1"\n'
    d = _dir(write, node=node)
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == (
        "10-node.toml",
        14,
        "ha.mobile_nodes[1].ipsec",
        "conflict",
    )
    assert f"already used by the mobile node at {d / '10-node.toml'}:10" in msg
    assert len(_refused_by_validate(d, capsys)) == 1


def test_ike_template_shared_by_two_mobile_nodes(write, capsys):
    node = NODE + '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::101"\nipsec = "mn1"\n'
    d = _dir(write, IKE, node)
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("10-node.toml", 14, "ha.mobile_nodes[1].ipsec", "conflict")
    assert msg.startswith(
        f"template mn1 uses IKE and is already used by the mobile node at "
        f"{d / '10-node.toml'}:10 (ha.mobile_nodes[0].ipsec); charon's migrate job moves "
        "every IKE SA"
    )
    assert msg.endswith("give each node its own template")
    (err,) = _refused_by_validate(d, capsys)
    assert (Path(err["file"]).name, err["line"], err["key"]) == (name, line, key)


def test_ike_templates_one_per_mobile_node(write):
    # its own template and reqids; one PSK file may serve both
    tpl = IKE.replace("[ipsec.mn1]", "[ipsec.mn2]").replace("100", "200")
    mn2 = '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::200"\nipsec = "mn2"\n' + tpl
    load_directory(_dir(write, IKE, extra={"30-mn2.toml": mn2}))


# --------------------------------------------------------------------------- IKE templates


def test_the_ike_configuration_is_valid(write):
    load_directory(_dir(write, IKE))


def test_ike_needs_psk_file(write, capsys):
    d = _dir(write, IKE.replace('psk_file = "keys/mn1.psk"\n', ""))
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 1, "ipsec.mn1", "consistency")
    assert msg.startswith("key_management = 'ike' needs psk_file")
    (err,) = _refused_by_validate(d, capsys)
    assert (Path(err["file"]).name, err["line"], err["key"]) == (name, line, key)


@pytest.mark.parametrize(
    ("content", "mode", "text"),
    [
        (None, 0o600, "key file {f} does not exist"),
        (PSK.hex(), 0o644, "key file {f} has mode 0644: group/other may access it"),
        (PSK.hex(), 0o660, "has mode 0660"),
        (PSK.hex()[:30], 0o600, "PSK file {f} holds 120 bits; a PSK needs 128 to 2048 bits"),
        ("not a key at all", 0o600, "PSK file {f} is not hexadecimal text"),
        (PSK.hex() + "a", 0o600, "odd number of hexadecimal digits"),
        (PSK, 0o600, "is not hexadecimal text"),  # raw bytes: a PSK file is text
    ],
)
def test_ike_psk_file_problems(write, capsys, content, mode, text):
    d = _dir(write, IKE)
    f = d / "keys" / "mn1.psk"
    if content is None:
        f.unlink()
    else:
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        f.chmod(mode)
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 4, "ipsec.mn1.psk_file", "key-file")
    assert text.format(f=f) in msg
    assert PSK.hex() not in msg.lower() and PSK.hex()[:12] not in msg.lower()
    (err,) = _refused_by_validate(d, capsys)
    assert (Path(err["file"]).name, err["line"], err["key"]) == (name, line, key)


def test_ike_needs_fixed_reqids(write, capsys):
    d = _dir(write, IKE.replace("reqid = { to_ha = 1001, to_mn = 1001 }\n", ""))
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 1, "ipsec.mn1", "consistency")
    assert msg.startswith("key_management = 'ike' needs fixed reqids: reqid = { to_ha, to_mn },")
    assert len(_refused_by_validate(d, capsys)) == 1


def test_ike_without_any_reqid_says_both_once(write):
    ipsec = "".join(x for x in IKE.splitlines(keepends=True) if "reqid" not in x)
    name, line, key, kind, msg = _only(_dir(write, ipsec))
    assert (name, line, key, kind) == ("20-ipsec.toml", 1, "ipsec.mn1", "consistency")
    assert "reqid = { to_ha, to_mn } and tunnel_reqid = { to_ha, to_mn }" in msg


@pytest.mark.parametrize(("field", "line"), [("reqid", 5), ("tunnel_reqid", 6)])
def test_ike_reqid_pairs_must_be_equal(write, capsys, field, line):
    value = "1001" if field == "reqid" else "1002"
    ipsec = IKE.replace(
        f"{field} = {{ to_ha = {value}, to_mn = {value} }}",
        f"{field} = {{ to_ha = {value}, to_mn = 77 }}",
    )
    d = _dir(write, ipsec)
    name, got_line, key, kind, msg = _only(d)
    assert (name, got_line, key, kind) == (
        "20-ipsec.toml",
        line,
        f"ipsec.mn1.{field}",
        "consistency",
    )
    assert msg == (
        "with key_management = 'ike' to_ha and to_mn must be equal: charon gives both SAs "
        "of a CHILD_SA one reqid"
    )
    assert len(_refused_by_validate(d, capsys)) == 1


def test_manual_reqid_pairs_may_differ(write):
    load_directory(_dir(write))  # IPSEC: reqid = { to_ha = 1, to_mn = 2 }


@pytest.mark.parametrize(
    "protect",
    [
        '["binding-update", "payload"]',
        '["mobility-header", "return-routability"]',
        '["any", "tunnel-mobility-header"]',
        '["icmp", "mobile-prefix-discovery", "payload"]',
    ],
)
def test_ike_transport_and_tunnel_kinds_need_tunnel_reqid(write, capsys, protect):
    ipsec = IKE.replace('["binding-update", "payload"]', protect).replace(
        "tunnel_reqid = { to_ha = 1002, to_mn = 1002 }\n", ""
    )
    d = _dir(write, ipsec)
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 1, "ipsec.mn1", "consistency")
    assert "protection needs tunnel_reqid = { to_ha, to_mn }, different from reqid" in msg
    assert len(_refused_by_validate(d, capsys)) == 1


def test_ike_tunnel_reqid_must_differ_from_reqid(write, capsys):
    d = _dir(write, IKE.replace("to_ha = 1002, to_mn = 1002", "to_ha = 1001, to_mn = 1001"))
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 6, "ipsec.mn1.tunnel_reqid", "consistency")
    assert msg.startswith(
        f"reqid 1001 is also the transport CHILD_SA's, at {d / '20-ipsec.toml'}:5 "
        "(ipsec.mn1.reqid); with key_management = 'ike' the tunnel CHILD_SA needs a reqid "
        "of its own"
    )
    (err,) = _refused_by_validate(d, capsys)
    assert (Path(err["file"]).name, err["line"], err["key"]) == (name, line, key)


@pytest.mark.parametrize("protect", ['["binding-update", "icmp"]', '["payload"]'])
def test_ike_with_one_mode_needs_no_tunnel_reqid(write, protect):
    ipsec = IKE.replace('["binding-update", "payload"]', protect).replace(
        "tunnel_reqid = { to_ha = 1002, to_mn = 1002 }\n", ""
    )
    load_directory(_dir(write, ipsec))


def test_ike_rules_hold_on_a_mobile_node_too(write):
    node = (
        '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
        'home_agent = "2001:db8:1::1"\ninterfaces = [{ name = "mn0" }]\nipsec = "mn1"\n'
    )
    load_directory(_dir(write, IKE, node))
    d = _dir(write, IKE.replace("to_mn = 1001", "to_mn = 1"), node)
    assert _only(d)[:4] == ("20-ipsec.toml", 5, "ipsec.mn1.reqid", "consistency")


# --------------------------------------------------------------------------- references


def test_template_used_by_no_mobile_node(write, capsys):
    spare = (
        '\n[ipsec.spare]\nprotect = ["binding-update"]\nkey_management = "ike"\n'
        'psk_file = "keys/mn1.psk"\nreqid = { to_ha = 9, to_mn = 9 }\n'
    )
    d = _dir(write, IPSEC + spare)
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("20-ipsec.toml", 9, "ipsec.spare", "reference")
    assert msg.startswith("template spare is used by no mobile node")
    assert len(_refused_by_validate(d, capsys)) == 1


def test_mn_ipsec_counts_as_a_use(write):
    node = (
        '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
        'home_agent = "2001:db8:1::1"\ninterfaces = [{ name = "mn0" }]\nipsec = "mn1"\n'
    )
    load_directory(_dir(write, node=node))


def test_a_template_on_an_ha_without_nodes_is_unused(write):
    node = NODE.split("[[ha.mobile_nodes]]")[0]
    assert _only(_dir(write, node=node))[:4] == (
        "20-ipsec.toml",
        1,
        "ipsec.mn1",
        "reference",
    )


# --------------------------------------------------------------------------- unprotected HA

ALLOW = """\
[node]
role = "ha"

[ha]
interfaces = ["home0"]
home_prefixes = ["2001:db8:1::/64"]
default_action = "allow"
"""


def test_default_allow_without_ipsec_is_refused(write, capsys):
    d = write({"a.toml": ALLOW})
    name, line, key, kind, msg = _only(d)
    assert (name, line, key, kind) == ("a.toml", 7, "ha.default_action", "consistency")
    assert (
        "an unprotected home agent accepts forged Binding Updates from anyone who can reach it"
        in msg
    )
    assert "ha.insecure_allow_unprotected = true" in msg
    assert len(_refused_by_validate(d, capsys)) == 1


@pytest.mark.parametrize("knob", ["insecure_allow_unprotected = true", "require_ipsec = true"])
def test_default_allow_with_an_explicit_choice(write, knob):
    cfg = load_directory(write({"a.toml": ALLOW + knob + "\n"})).config
    assert cfg.ha is not None and cfg.ha.default_action == "allow"


# --------------------------------------------------------------------------- ipsec_needs


def _cfg(write, ipsec: str = IPSEC, node: str = NODE, **extra: str) -> Mip6Config:
    return load_directory(_dir(write, ipsec, node, extra or None)).config


FULL = {"esp": True, "mip6": True, "migrate": True, "sub_policy": True}


def test_needs_of_a_config_without_templates(write):
    n = needs(load_directory(write({"a.toml": NODE.split("[[")[0]})).config)
    assert n == IpsecNeeds() and not n.requires_esp and not n.requires_migrate


def test_needs_names_the_references(write):
    cfg = _cfg(write, **{"30-mn2.toml": MN2})
    n = needs(cfg)
    assert n.templates == ("mn1", "mn2")
    assert n.esp == (("ha", "mobile_nodes", 0, "ipsec"), ("ha", "mobile_nodes", 1, "ipsec"))
    assert n.tunnel == (("ha", "mobile_nodes", 0, "ipsec"),)
    assert n.migrate == () and n.migrate_optional == (("ha", "mobile_nodes", 0, "ipsec"),)
    assert n.requires_esp and not n.requires_migrate and not n.requires_sub_policy
    assert n.describe() == (
        "ipsec.mn1, ipsec.mn2 for ha.mobile_nodes[0].ipsec, ha.mobile_nodes[1].ipsec"
    )


def test_ike_tunnel_templates_need_migrate(write):
    cfg = _cfg(write, IKE.replace('"binding-update", ', ""))
    n = needs(cfg)
    assert n.requires_migrate and n.migrate == (("ha", "mobile_nodes", 0, "ipsec"),)
    assert kernel_problems(cfg, FULL) == []
    (p,) = kernel_problems(cfg, {**FULL, "migrate": False})
    assert "ipsec.mn1 for ha.mobile_nodes[0].ipsec" in p and "CONFIG_XFRM_MIGRATE" in p


def test_manual_tunnel_templates_without_migrate_only_warn(write):
    cfg = _cfg(write)
    avail = {**FULL, "migrate": False}
    assert kernel_problems(cfg, avail) == []
    (w,) = kernel_warnings(cfg, avail)
    assert "deleted and re-added on every movement" in w
    assert kernel_warnings(cfg, FULL) == []


def test_kernel_problems_on_this_projects_host_kernel(write):
    cfg = _cfg(write)  # signalling "auto"
    problems = kernel_problems(cfg, {"esp": False, "mip6": False, "migrate": True})
    assert problems == [
        "this configuration requires IPsec (ipsec.mn1 for ha.mobile_nodes[0].ipsec); this "
        "kernel has no CONFIG_INET6_ESP",
        "this configuration requires IPsec (ipsec.mn1 for ha.mobile_nodes[0].ipsec), which "
        "needs the kernel signalling transport; this kernel has no CONFIG_IPV6_MIP6 ('auto' "
        "would fall back to the userspace transport, which cannot see through ESP)",
    ]


def test_unknown_capabilities_count_as_missing(write):
    cfg = _cfg(write)
    problems = kernel_problems(cfg, {})
    assert len(problems) == 2
    assert all("could not be probed" in p for p in problems)


def test_userspace_signalling_cannot_carry_ipsec(write):
    node = NODE + '\n[kernel]\nsignalling = "userspace"\n'
    (p,) = kernel_problems(_cfg(write, node=node), FULL)
    assert "kernel.signalling = 'userspace'" in p and "cannot see through ESP" in p


def test_no_templates_no_kernel_problems(write):
    cfg = load_directory(write({"a.toml": ALLOW + "insecure_allow_unprotected = true\n"})).config
    assert kernel_problems(cfg, {}) == [] and kernel_warnings(cfg, {}) == []


def test_mobile_node_route_optimisation_over_ipsec_needs_sub_policies(write):
    node = (
        '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
        'home_agent = "2001:db8:1::1"\ninterfaces = [{ name = "mn0" }]\nipsec = "mn1"\n'
        '[[mn.correspondents]]\nprefix = "2001:db8:c::2/128"\n'
    )
    cfg = _cfg(write, node=node)
    assert needs(cfg).sub_policy == (("mn", "route_optimization"),)
    (w,) = kernel_warnings(cfg, {**FULL, "sub_policy": False})
    assert "CONFIG_XFRM_SUB_POLICY" in w


def test_unprotected_warning(write, tmp_path):
    allow = write({"a.toml": ALLOW + "insecure_allow_unprotected = true\n"}, tmp_path / "a")
    text = unprotected_warning(load_directory(allow).config)
    assert text is not None and "default_action = 'allow'" in text
    assert "an unprotected home agent accepts forged Binding Updates from anyone" in text
    bare = write({"10-node.toml": NODE.replace('ipsec = "mn1"\n', "")}, tmp_path / "b")
    text = unprotected_warning(load_directory(bare).config)
    assert text is not None and "1 of its 1 listed mobile nodes" in text
    assert "2001:db8:1::100" in text
    assert unprotected_warning(_cfg(write)) is None  # every listed node protected, deny


def test_require_ipsec_is_protected(write):
    node = NODE.replace('["home0"]', '["home0"]\nrequire_ipsec = true\ndefault_action = "allow"')
    assert unprotected_warning(_cfg(write, node=node)) is None


# --------------------------------------------------------------------------- no key bytes


def _forms(key: bytes) -> list[str]:
    forms = [key.hex(), key.hex().upper(), key.hex()[:12], key.hex().upper()[:12]]
    return [*forms, repr(key)[2:14]]


def test_no_key_byte_in_any_output(write, capsys):
    """validate, validate --json and diff --json, on a valid and a broken configuration:
    the keys show as fingerprints only, never as hex (either case) or raw bytes."""
    d = _dir(write)
    (d / "keys" / "mn1.auth").write_bytes(AUTH)  # raw, not hex
    outputs = []
    assert main(["validate", "-c", str(d)]) == 0
    outputs.append(capsys.readouterr())
    assert main(["validate", "-c", str(d), "--json"]) == 0
    outputs.append(capsys.readouterr())
    doc = json.loads(outputs[-1].out)
    assert doc["summary"]["ipsec"]["mn1"]["keys"] == {
        "encryption": fingerprint(ENC),
        "authentication": fingerprint(AUTH),
    }
    assert fingerprint(ENC) in outputs[0].out and fingerprint(AUTH) in outputs[0].out
    # broken: the tunnel SPI collides and the encryption key is world-readable
    (d / "20-ipsec.toml").write_text(IPSEC.replace("to_mn = 0x1004", "to_mn = 0x1001"))
    os.chmod(d / "keys" / "mn1.enc", 0o644)
    for argv in (["validate"], ["validate", "--json"], ["diff", "--json"]):
        assert main([*argv, "-c", str(d)]) == 1
        outputs.append(capsys.readouterr())
    assert "mode 0644" in outputs[-1].out and "SPI 0x1001" in outputs[-1].out
    everything = "".join(o.out + o.err for o in outputs)
    for key in (ENC, AUTH):
        for form in _forms(key):
            assert form not in everything, form
    raw = everything.encode("utf-8", "surrogateescape")
    assert ENC not in raw and AUTH not in raw
