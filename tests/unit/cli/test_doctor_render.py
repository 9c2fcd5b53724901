"""`mip6ctl doctor`'s human output reads well on narrow terminals (issue 19).

The probe is replaced by the capabilities this project's host kernel reports
(the real detail strings, with their long errno explanations), so every long
reason of the decisions and checks is there.  At 60, 80 and 120 columns no
line may be wider than the terminal, and no text may be laid out in a narrow
column: each reason, check message and capability note must read as one
paragraph (its words in order, nothing between them but line breaks and the
hanging indent), every word intact.  The old five-column table failed all
three (cells folded mid-word into 14-character columns, check lines wider
than the terminal).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from rich.cells import cell_len

from mip6ctl.cli import doctor
from mip6ctl.cli.main import main
from mip6ctl.config.loader import load_directory
from mip6ctl.kernel import probe

ROOT = Path(__file__).resolve().parents[3]
TESTBED = ROOT / "examples" / "testbed"

_ERR = "EPROTONOSUPPORT: Protocol not supported (Requested type not found)"
#: name -> (available, detail as the probe words it), as on this project's host kernel
_HOST = {
    "mip6": (False, f"XFRM route2 state: {_ERR}; XFRM hao state: {_ERR}"),
    "ip6tnl": (False, "creating a Tunnel failed: ENOTSUP: Unknown device type"),
    "ip6tnl_external": (False, "creating a Tunnel failed: ENOTSUP: Unknown device type"),
    "seg6": (False, "creating a Route failed: ENOTSUP: lwt encapsulation type not supported"),
    "seg6local": (
        False,
        "creating a Route failed: ENOTSUP: lwt encapsulation type not supported",
    ),
    "policy_routing_ipproto": (True, "created a Rule in a throwaway namespace"),
    "proxy_ndp": (True, "created a ProxyNeighbour in a throwaway namespace"),
    "proxy_ndp_protocol": (None, "not probed: cannot create a throwaway namespace: EPERM"),
    "esp": (False, f"XFRM ESP state: {_ERR}"),
    "sub_policy": (True, "XFRM sub-policy succeeded"),
    "migrate": (True, "XFRM_MSG_MIGRATE of a tunnel-mode policy succeeded"),
}


def _host_caps() -> list[probe.Capability]:
    out = []
    for name, (option, enables, fallback) in probe.MEANING.items():
        available, detail = _HOST[name]
        out.append(probe.Capability(name, available, f"{detail} [{option}]", enables, fallback))
    return out


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> list[probe.Capability]:
    caps = _host_caps()
    monkeypatch.setattr(probe, "probe", lambda **_kw: caps)
    return caps


@pytest.fixture
def ipsec_ha(tmp_path: Path) -> Path:
    d = tmp_path / "ha"
    shutil.copytree(TESTBED / "ipsec" / "ha", d)
    for k in (d / "keys").iterdir():
        k.chmod(0o600)
    return d


def _flat(text: str) -> str:
    return " ".join(text.split())


def _render(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], width: int,
            *argv: str) -> str:  # fmt: skip
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.delenv("MIP6_CONFIG_DIR", raising=False)
    main(["doctor", *argv])
    return capsys.readouterr().out


def _prose(caps: list[probe.Capability], cfg_dir: Path | None) -> list[str]:
    """Every text the human output must show as a paragraph of its own."""
    cfg = load_directory(cfg_dir).config if cfg_dir else None
    kernel = cfg.kernel if cfg is not None else doctor._load(None)[0]
    chosen = doctor.decisions(caps, kernel) | doctor.ipsec_decisions(caps, cfg)
    texts = [d["reason"] for d in chosen.values()]
    texts += [c["message"] for c in doctor.checks(caps, cfg)]
    for c in caps:
        texts.append(c.enables if c.available else c.fallback)
        if not c.available:
            texts.append(re.sub(r"\s*\[[^\]]*\]$", "", c.detail))
    return texts


def _assert_reads_well(out: str, width: int, texts: list[str]) -> None:
    lines = out.splitlines()
    too_wide = [ln for ln in lines if cell_len(ln) > width]
    assert not too_wide, f"{len(too_wide)} line(s) wider than {width}: {too_wide[:3]}"
    flat = _flat(out)
    tokens = set(flat.split())
    for text in texts:
        for word in text.split():
            assert word in tokens, f"{word!r} was split (width {width})"
        # a paragraph, not a column beside other columns (nor folded mid-word)
        assert _flat(text) in flat, f"not one paragraph at width {width}: {text!r}"


@pytest.mark.parametrize("width", [60, 80, 120])
def test_plain_home_agent_reads_well(width, host, monkeypatch, capsys):
    out = _render(monkeypatch, capsys, width, "-c", str(TESTBED / "ha"))
    _assert_reads_well(out, width, _prose(host, TESTBED / "ha"))
    for c in host:  # the compact capability list: name and kernel option on one line
        option = probe.MEANING[c.name][0]
        (line,) = [ln for ln in out.splitlines() if re.match(rf"\s*[✓✗?] {c.name} ", ln)]
        assert line.rstrip().endswith(f" {option}")


@pytest.mark.parametrize("width", [60, 80, 120])
def test_ipsec_home_agent_reads_well(width, host, ipsec_ha, monkeypatch, capsys):
    out = _render(monkeypatch, capsys, width, "-c", str(ipsec_ha))
    _assert_reads_well(out, width, _prose(host, ipsec_ha))
    assert "✗ failed ipsec: this configuration requires IPsec" in out


@pytest.mark.parametrize("width", [60, 80, 120])
def test_defaults_read_well(width, host, monkeypatch, capsys):
    out = _render(monkeypatch, capsys, width)
    _assert_reads_well(out, width, _prose(host, None))


def test_marks_and_decision_lines(host, monkeypatch, capsys):
    out = _render(monkeypatch, capsys, 80, "-c", str(TESTBED / "ha"))
    lines = out.splitlines()
    assert any(re.match(r"\s*✓ migrate\s+CONFIG_XFRM_MIGRATE$", ln) for ln in lines)
    assert any(re.match(r"\s*✗ mip6\s+CONFIG_IPV6_MIP6$", ln) for ln in lines)
    assert any(re.match(r"\s*\? proxy_ndp_protocol\s+Linux >= 5\.9", ln) for ln in lines)
    assert any(re.match(r"\s*signalling \(auto\): userspace — auto: no", ln) for ln in lines)
    assert any(re.match(r"\s*sub_policies: available — CONFIG_XFRM_SUB_POLICY", ln) for ln in lines)


def test_json_is_not_affected_by_the_terminal_width(host, monkeypatch, capsys):
    out = [_render(monkeypatch, capsys, w, "-c", str(TESTBED / "ha"), "--json") for w in (60, 200)]
    assert out[0] == out[1]
    doc = json.loads(out[0])
    assert doc["capabilities"] == [c.as_dict() for c in host]
    assert json.dumps(doc, indent=2) + "\n" == out[0]
