"""`validate` and `doctor` on an IPsec configuration: what this kernel lacks, said plainly.

The probe is replaced by fixed capability lists (unit tests never probe the
kernel): this project's host kernel (no ESP, no MIP6; sub-policies and
MIGRATE), Debian's full kernel, and a probe that could not run (no root).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from mip6ctl.cli import doctor, exitcodes, validate
from mip6ctl.cli.main import main
from mip6ctl.config.loader import load_directory
from mip6ctl.kernel import probe

ROOT = Path(__file__).resolve().parents[3]
TESTBED = ROOT / "examples" / "testbed"
UNPROTECTED = "an unprotected home agent accepts forged Binding Updates from anyone"


@dataclass(frozen=True)
class Cap:
    name: str
    available: bool | None
    detail: str = "probed"
    enables: str = ""
    fallback: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "available": self.available, "detail": self.detail}


def _caps(**avail: bool | None) -> list[Cap]:
    return [Cap(k, v) for k, v in avail.items()]


HOST = _caps(mip6=False, ip6tnl=False, esp=False, sub_policy=True, migrate=True, proxy_ndp=True)
DEBIAN = _caps(mip6=True, ip6tnl=True, esp=True, sub_policy=True, migrate=True, proxy_ndp=True)
NO_ROOT = [
    Cap(n, None, "not probed: cannot create a throwaway namespace: [Errno 1] EPERM")
    for n in ("mip6", "ip6tnl", "esp", "sub_policy", "migrate", "proxy_ndp")
]


@pytest.fixture
def ipsec_ha(tmp_path: Path) -> Path:
    d = tmp_path / "ha"
    shutil.copytree(TESTBED / "ipsec" / "ha", d)
    for k in (d / "keys").iterdir():
        k.chmod(0o600)
    return d


@pytest.fixture
def plain_ha(tmp_path: Path) -> Path:
    d = tmp_path / "plain"
    shutil.copytree(TESTBED / "ha", d)
    return d


def _kernel(monkeypatch: pytest.MonkeyPatch, caps: list[Cap]) -> None:
    monkeypatch.setattr(validate, "kernel_capabilities", lambda: caps)
    monkeypatch.setattr(probe, "probe", lambda **_kw: caps)
    monkeypatch.setattr(validate, "interface_exists", lambda name: True)


# --------------------------------------------------------------------------- validate


def test_validate_warns_that_this_kernel_cannot_run_it(ipsec_ha, monkeypatch, capsys):
    _kernel(monkeypatch, HOST)
    assert main(["validate", "-c", str(ipsec_ha), "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["errors"] == []
    esp, mip6 = doc["warnings"]
    where = (str(ipsec_ha / "mip6.toml"), 28, "ha.mobile_nodes[0].ipsec")
    for w in (esp, mip6):
        assert (w["kind"], w["file"], w["line"], w["key"]) == ("host", *where)
        assert w["message"].endswith(": a daemon here refuses to start")
    assert esp["message"] == (
        "this configuration requires IPsec (ipsec.mn1 for ha.mobile_nodes[0].ipsec); this "
        "kernel has no CONFIG_INET6_ESP: a daemon here refuses to start"
    )
    assert "CONFIG_IPV6_MIP6" in mip6["message"]
    assert main(["validate", "-c", str(ipsec_ha)]) == exitcodes.OK
    err = capsys.readouterr().err
    assert f"warning: {ipsec_ha / 'mip6.toml'}:28: ha.mobile_nodes[0].ipsec: " in err
    assert "this kernel has no CONFIG_INET6_ESP: a daemon here refuses to start" in err


def test_validate_is_quiet_on_a_kernel_with_esp_and_mip6(ipsec_ha, monkeypatch, capsys):
    _kernel(monkeypatch, DEBIAN)
    assert main(["validate", "-c", str(ipsec_ha), "--json"]) == exitcodes.OK
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_validate_says_the_check_was_skipped_without_root(ipsec_ha, monkeypatch, capsys):
    _kernel(monkeypatch, NO_ROOT)
    assert main(["validate", "-c", str(ipsec_ha), "--json"]) == exitcodes.OK
    (w,) = json.loads(capsys.readouterr().out)["warnings"]
    assert w["kind"] == "host" and w["line"] == 28
    assert "was skipped: the probe needs root" in w["message"]
    assert "EPERM" in w["message"]


def test_validate_does_not_probe_without_ipsec(plain_ha, monkeypatch, capsys):
    def boom() -> list[Cap]:
        raise AssertionError("probed")

    monkeypatch.setattr(validate, "kernel_capabilities", boom)
    monkeypatch.setattr(validate, "interface_exists", lambda name: True)
    assert main(["validate", "-c", str(plain_ha), "--json"]) == exitcodes.OK
    (w,) = json.loads(capsys.readouterr().out)["warnings"]  # the unprotected nodes only
    assert w["kind"] == "security" and w["key"] == "ha.mobile_nodes[0]"
    assert UNPROTECTED in w["message"]


def test_a_failing_probe_is_a_warning_not_a_traceback(ipsec_ha, monkeypatch, capsys):
    def broken() -> list[Cap]:
        raise OSError("no netlink")

    monkeypatch.setattr(validate, "kernel_capabilities", broken)
    monkeypatch.setattr(validate, "interface_exists", lambda name: True)
    assert main(["validate", "-c", str(ipsec_ha), "--json"]) == exitcodes.OK
    (w,) = json.loads(capsys.readouterr().out)["warnings"]
    assert "skipped" in w["message"] and "no netlink" in w["message"]


# --------------------------------------------------------------------------- doctor


def test_doctor_fails_the_ipsec_check_on_this_kernel(ipsec_ha, monkeypatch, capsys):
    _kernel(monkeypatch, HOST)
    assert main(["doctor", "-c", str(ipsec_ha), "--json"]) == exitcodes.ERROR
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    failed = [c for c in doc["checks"] if c["status"] == "failed"]
    assert [c["check"] for c in failed] == ["ipsec", "ipsec"]
    assert "no CONFIG_INET6_ESP: the daemon refuses to start" in failed[0]["message"]
    d = doc["decisions"]
    assert d["ipsec"]["choice"] == "unavailable" and d["ipsec"]["setting"] == "manual"
    assert d["ipsec_movement"]["choice"] == "migrate"
    assert d["sub_policies"]["choice"] == "available"
    assert main(["doctor", "-c", str(ipsec_ha)]) == exitcodes.ERROR
    out = capsys.readouterr().out
    assert "✗ failed ipsec: this configuration requires IPsec" in out
    assert "ipsec_movement" in out and "sub_policies" in out


def test_doctor_passes_on_a_full_kernel(ipsec_ha, monkeypatch, capsys):
    _kernel(monkeypatch, DEBIAN)
    assert main(["doctor", "-c", str(ipsec_ha), "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["checks"] == [
        {"check": "ipsec", "status": "ok", "message": "this kernel can run its IPsec"}
    ]
    assert doc["decisions"]["ipsec"]["choice"] == "esp"


def test_doctor_states_that_an_unprotected_ha_accepts_forged_bus(plain_ha, monkeypatch, capsys):
    _kernel(monkeypatch, HOST)
    assert main(["doctor", "-c", str(plain_ha), "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    (c,) = doc["checks"]
    assert (c["check"], c["status"]) == ("protection", "warning")
    assert UNPROTECTED in c["message"]
    assert doc["decisions"]["ipsec"]["choice"] == "none"
    assert main(["doctor", "-c", str(plain_ha)]) == exitcodes.OK
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert UNPROTECTED in out


def test_doctor_without_a_configuration_reports_migrate_and_sub_policies(monkeypatch, capsys):
    monkeypatch.delenv("MIP6_CONFIG_DIR", raising=False)
    _kernel(monkeypatch, _caps(esp=False, migrate=False, sub_policy=False))
    assert main(["doctor", "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["checks"] == []
    d = doc["decisions"]
    assert d["ipsec"]["choice"] == "unavailable"
    assert d["ipsec_movement"]["choice"] == "delete+re-add"
    assert "CONFIG_XFRM_MIGRATE" in d["ipsec_movement"]["reason"]
    assert d["sub_policies"]["choice"] == "unavailable"
    assert "CONFIG_XFRM_SUB_POLICY" in d["sub_policies"]["reason"]


def test_ike_tunnel_templates_fail_without_migrate(ipsec_ha, tmp_path):
    f = ipsec_ha / "mip6.toml"
    head, _, _tpl = f.read_text().partition("[ipsec.mn1]")
    f.write_text(
        head + '[ipsec.mn1]\nprotect = ["payload"]\nkey_management = "ike"\n'
        'psk_file = "keys/mn1.psk"\nreqid = { to_ha = 1001, to_mn = 1001 }\n'
    )
    (ipsec_ha / "keys" / "mn1.psk").write_text("00" * 32 + "\n")
    (ipsec_ha / "keys" / "mn1.psk").chmod(0o600)
    cfg = load_directory(ipsec_ha).config
    caps = _caps(mip6=True, esp=True, sub_policy=True, migrate=False)
    (failed,) = [c for c in doctor.checks(caps, cfg) if c["status"] == "failed"]
    assert "CONFIG_XFRM_MIGRATE" in failed["message"]
    assert doctor.ipsec_decisions(caps, cfg)["ipsec_movement"]["choice"] == "unavailable"


def test_manual_tunnel_sas_without_migrate_are_a_warning(tmp_path):
    d = tmp_path / "mn"
    shutil.copytree(TESTBED / "ipsec" / "mn", d)
    for k in (d / "keys").iterdir():
        k.chmod(0o600)
    cfg = load_directory(d).config
    caps = _caps(mip6=True, esp=True, sub_policy=True, migrate=False)
    found = doctor.checks(caps, cfg)
    assert [c["status"] for c in found] == ["warning", "ok"]
    assert "deleted and re-added on every movement" in found[0]["message"]
    assert doctor.ipsec_decisions(caps, cfg)["ipsec_movement"]["choice"] == "delete+re-add"


def test_doctor_warns_when_a_home_agent_has_no_tunnel_backend(plain_ha, monkeypatch, capsys):
    """Neither ip6tnl nor the seg6 lwtunnel (the CI machines' kernel): doctor says the
    bindings cannot be tunnelled and names both kernel options."""
    bare = [*HOST, Cap("seg6", False, "ENOTSUP"), Cap("seg6local", False, "ENOTSUP")]
    _kernel(monkeypatch, bare)
    assert main(["doctor", "-c", str(plain_ha), "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    (c,) = [c for c in doc["checks"] if c["check"] == "tunnel"]
    assert c["status"] == "warning"
    assert "CONFIG_IPV6_TUNNEL" in c["message"] and "CONFIG_IPV6_SEG6_LWTUNNEL" in c["message"]
    assert doc["decisions"]["tunnel"]["reason"] == c["message"]
    # with the seg6 lwtunnel present the same kernel can tunnel: no tunnel check
    _kernel(monkeypatch, [*HOST, Cap("seg6", True, "ok"), Cap("seg6local", True, "ok")])
    assert main(["doctor", "-c", str(plain_ha), "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)
    assert [c for c in doc["checks"] if c["check"] == "tunnel"] == []
