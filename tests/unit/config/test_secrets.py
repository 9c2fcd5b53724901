"""Key material never leaves mip6ctl: only fingerprints are shown."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mip6ctl.cli.main import main
from mip6ctl.config.loader import ConfigError, load_directory
from mip6ctl.config.secrets import KeyFileError, SecretBytes, fingerprint, read_key, read_psk

from .conftest import HA_MIN

ENC = bytes(range(0xA0, 0xB0))  # 16 bytes
AUTH = bytes(range(0xC0, 0xE0))  # 32 bytes

IPSEC = """
[[ha.mobile_nodes]]
home_address = "2001:db8:1::100"
ipsec = "mn1"

[ipsec.mn1]
protect = ["binding-update", "payload"]
encryption = { algorithm = "aes-cbc", key_file = "keys/enc" }
authentication = { algorithm = "hmac-sha256", key_file = "keys/auth" }
spi = { to_ha = 4097, to_mn = 4098 }
tunnel_spi = { to_ha = 4099, to_mn = 4100 }
"""


@pytest.fixture
def ipsec_dir(write) -> Path:
    d = write({"a.toml": HA_MIN + IPSEC, "keys/enc": ENC.hex() + "\n", "keys/auth": AUTH})
    for k in ("enc", "auth"):
        os.chmod(d / "keys" / k, 0o600)
    return d


def _forms(key: bytes) -> list[str]:
    return [key.hex(), key.hex().upper(), key[:6].hex(), repr(key)[2:14]]


def test_fingerprints_in_summary_and_no_key_bytes(ipsec_dir, capsys):
    gen = load_directory(ipsec_dir)
    assert gen.keys["ipsec.mn1.encryption"].fingerprint == fingerprint(ENC)
    assert gen.keys["ipsec.mn1.authentication"].fingerprint == fingerprint(AUTH)
    assert main(["validate", "-c", str(ipsec_dir)]) == 0
    human = capsys.readouterr()
    assert main(["validate", "-c", str(ipsec_dir), "--json"]) == 0
    machine = capsys.readouterr()
    doc = json.loads(machine.out)
    assert doc["summary"]["ipsec"]["mn1"]["keys"] == {
        "encryption": fingerprint(ENC),
        "authentication": fingerprint(AUTH),
    }
    everything = human.out + human.err + machine.out + machine.err + repr(gen)
    assert fingerprint(ENC) in human.out
    for key in (ENC, AUTH):
        for form in _forms(key):
            assert form not in everything


def test_key_errors_do_not_leak(write, capsys):
    bad = bytes(range(0xD0, 0xDA))  # 10 bytes: wrong length for aes-cbc
    d = write({"a.toml": HA_MIN + IPSEC, "keys/enc": bad.hex(), "keys/auth": AUTH})
    os.chmod(d / "keys" / "enc", 0o600)
    os.chmod(d / "keys" / "auth", 0o644)
    assert main(["validate", "-c", str(d), "--json"]) == 1
    out = capsys.readouterr()
    doc = json.loads(out.out)
    messages = " ".join(e["message"] for e in doc["errors"])
    assert "80-bit key" in messages and "mode 0644" in messages
    for key in (bad, AUTH):
        for form in _forms(key):
            assert form not in out.out + out.err


def test_secret_bytes_repr(tmp_path):
    p = tmp_path / "k"
    p.write_text("0x" + ENC.hex())
    p.chmod(0o600)
    key = read_key(p, "aes-cbc")
    assert key.reveal() == ENC
    assert ENC.hex() not in repr(key) and ENC.hex() not in str(key)
    assert repr(key) == f"SecretBytes({fingerprint(ENC)})"
    assert isinstance(key, SecretBytes)


@pytest.mark.parametrize(
    ("content", "mode", "alg", "text"),
    [
        (b"zz", 0o600, "aes-cbc", "neither hexadecimal"),
        (b"abc", 0o600, "aes-cbc", "odd number"),
        (ENC.hex().encode(), 0o640, "aes-cbc", "mode 0640"),
        (ENC.hex().encode(), 0o600, "hmac-sha1", "needs 160 bits"),
        (ENC, 0o600, "aes-cbc", None),
        (b" " + ENC.hex().encode() + b"\n", 0o600, "aes-cbc", None),
    ],
)
def test_read_key_cases(tmp_path, content, mode, alg, text):
    p = tmp_path / "k"
    p.write_bytes(content)
    p.chmod(mode)
    if text is None:
        assert read_key(p, alg).reveal() == ENC
    else:
        with pytest.raises(KeyFileError, match=text):
            read_key(p, alg)


def test_ike_templates_must_not_name_key_files(write):
    d = write(
        {
            "a.toml": HA_MIN + '\n[ipsec.x]\nprotect = ["any"]\nkey_management = "ike"\n'
            'authentication = { algorithm = "hmac-sha1", key_file = "k" }\n'
            'psk_file = "x.psk"\nreqid = { to_ha = 1, to_mn = 1 }\n'
            '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\nipsec = "x"\n',
            "x.psk": AUTH.hex() + "\n",
        }
    )
    (d / "x.psk").chmod(0o600)
    with pytest.raises(ConfigError) as e:
        load_directory(d)
    (p,) = e.value.problems
    assert p.key == "ipsec.x.authentication.key_file" and p.line == 11


@pytest.mark.parametrize(
    ("content", "mode", "text"),
    [
        (AUTH.hex() + "\n", 0o600, None),
        ("0x" + ENC.hex().upper(), 0o600, None),
        (bytes(256).hex(), 0o600, None),  # 2048 bits, the largest
        (AUTH.hex(), 0o640, "has mode 0640: group/other may access it"),
        (ENC.hex()[:30], 0o600, "holds 120 bits; a PSK needs 128 to 2048 bits"),
        (bytes(257).hex(), 0o600, "holds 2056 bits"),
        (AUTH.hex() + "0", 0o600, "odd number of hexadecimal digits"),
        ("", 0o600, "is not hexadecimal text"),
        (AUTH, 0o600, "is not hexadecimal text"),  # raw bytes: a PSK file is text
    ],
)
def test_read_psk_cases(tmp_path, content, mode, text):
    p = tmp_path / "psk"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    p.chmod(mode)
    if text is None:
        assert len(read_psk(p)) in (16, 32, 256)
        return
    with pytest.raises(KeyFileError, match=text) as e:
        read_psk(p)
    for key in (ENC, AUTH):
        assert key.hex() not in str(e.value).lower()


def test_read_psk_file_rules_are_the_key_files(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        read_psk(Path("nope.psk"), base=tmp_path)
    with pytest.raises(KeyFileError, match="is not a regular file"):
        read_psk(tmp_path)
    big = tmp_path / "big"
    big.write_text("00" * 4096)
    big.chmod(0o600)
    with pytest.raises(KeyFileError, match="a key file holds at most 4,096"):
        read_psk(big)
