"""`mip6ctl status` against a fake daemon serving a canned status document."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.cli.main import main
from tests.unit.daemon.test_control import ServerThread

#: What a home agent's daemon answers (status_version 1, see mip6ctl/daemon/status.py).
HA_STATUS: dict[str, Any] = {
    "status_version": 1,
    "daemon_version": "0.1.0.dev0",
    "role": "ha",
    "node_name": "ha-1",
    "pid": 4242,
    "started_at": "2027-01-15T07:00:00Z",
    "uptime_s": 3725.5,
    "generation": "sha256:0123456789abcdef0123456789abcdef",
    "generation_number": 3,
    "observed_generation": 3,
    "conditions": [
        {
            "type": "ConfigValid",
            "status": "True",
            "reason": "Valid",
            "message": "",
            "last_transition_time": "2027-01-15T07:00:00Z",
        },
        {
            "type": "KernelInSync",
            "status": "False",
            "reason": "KernelDrift",
            "message": "2 objects differ",
            "last_transition_time": "2027-01-15T07:59:00Z",
        },
        {
            "type": "Ready",
            "status": "Unknown",
            "reason": "Pending",
            "message": "",
            "last_transition_time": None,
        },
    ],
    "last_reconcile_time": "2027-01-15T07:59:58Z",
    "counters": {
        "bus_received": 1200,
        "bus_accepted": 1190,
        "bus_rejected_by_status": {"129": 8, "135": 2},
        "bas_sent": 1200,
        "bes_sent": 3,
        "drift_repairs": 2,
        "reconcile_failures": 0,
    },
    "transport": "userspace",
    "tunnel_backend": "seg6",
    "binding_cache": {
        "count": 2,
        "truncated": False,
        "rows": [
            {
                "home_address": "2001:db8:1::100",
                "care_of_address": "2001:db8:2::100",
                "local_address": "2001:db8:1::1",
                "lifetime_s": 400,
                "lifetime_left_s": 390,
                "sequence": 17,
                "flags": "AH",
                "home_registration": True,
                "age_s": 10,
                "mobile_network_prefixes": [],
            },
            {
                "home_address": "2001:db8:1::200",
                "care_of_address": "2001:db8:3:4:5:6:7:8",
                "local_address": "2001:db8:1::1",
                "lifetime_s": 400,
                "lifetime_left_s": 12,
                "sequence": 65535,
                "flags": "AHR",
                "home_registration": True,
                "age_s": 3700,
                "mobile_network_prefixes": ["2001:db8:9::/48"],
            },
        ],
    },
    "binding_update_list": None,
    "return_routability": None,
    "reconcile": None,
}

MN_STATUS: dict[str, Any] = {
    **copy.deepcopy(HA_STATUS),
    "role": "mn",
    "node_name": "laptop",
    "binding_cache": {"count": 0, "truncated": False, "rows": []},
    "binding_update_list": {
        "count": 1,
        "rows": [
            {
                "peer": "2001:db8:1::1",
                "home_address": "2001:db8:1::100",
                "care_of_address": "2001:db8:2::100",
                "state": "registered",
                "lifetime_left_s": 300,
                "sequence": 9,
                "retransmissions": 1,
                "last_status": 0,
            },
        ],
    },
    "return_routability": {
        "enabled": True,
        "rows": [
            {
                "peer": "2001:db8:0:1::1",
                "state": "ok",
                "home_token_age_s": 12,
                "care_of_token_age_s": 30,
                "last_error": None,
            }
        ],
    },
}


def serve(path: Path, doc: Any) -> ServerThread:
    async def status(params: dict[str, Any]) -> Any:
        return doc

    return ServerThread(path, {"status": status})


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "c.sock"


@pytest.fixture
def ha_daemon(sock: Path) -> Iterator[Path]:
    with serve(sock, HA_STATUS):
        yield sock


def test_human_ha(ha_daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--socket", str(ha_daemon)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("ha ha-1  pid 4242  up 1h02m")
    assert "generation 3 (sha256:0123456789ab…)  observed 3" in out
    assert "not yet applied" not in out
    assert "transport userspace  tunnel seg6" in out
    assert "KernelInSync  False   KernelDrift: 2 objects differ" in out
    assert "Ready         Unknown Pending" in out
    assert "BUs 1200 received, 1190 accepted, 10 rejected (129×8, 135×2)" in out
    assert "Binding cache (2 entries)" in out
    # Addresses are never folded or cut, even through a pipe.
    for text in ("2001:db8:1::100", "2001:db8:3:4:5:6:7:8", "390 s", "65535", "AHR", "1h01m"):
        assert text in out
    assert "\x1b[" not in out  # no colour into a pipe
    assert "Binding update list" not in out


def test_human_colours_conditions(ha_daemon: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["status", "--socket", str(ha_daemon)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[32mTrue" in out and "\x1b[31mFalse" in out and "\x1b[33mUnknown" in out


def test_json_ha(ha_daemon: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json", "--socket", str(ha_daemon)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["version"], doc["command"], doc["changed"], doc["ok"]) == (1, "status", False, True)
    body = {k: v for k, v in doc.items() if k not in ("version", "command", "changed", "ok")}
    assert body == HA_STATUS  # passed through unchanged, key order kept
    assert list(body) == list(HA_STATUS)


def test_human_mn(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(sock, MN_STATUS):
        assert main(["status", "--socket", str(sock)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mn laptop")
    assert "Binding cache: 0 entries" in out
    assert "Binding update list (1)" in out
    assert "registered" in out and "300 s" in out
    assert "Return routability: route optimisation on, 1 peers" in out
    assert "2001:db8:0:1::1 ok  home token 12s old, care-of token 30s old" in out


def test_pending_generation_and_truncation(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = copy.deepcopy(HA_STATUS)
    doc["observed_generation"] = 2
    doc["binding_cache"].update(count=100_000, truncated=True)
    with serve(sock, doc):
        assert main(["status", "--socket", str(sock)]) == 0
    out = capsys.readouterr().out
    assert "observed 2  (not yet applied)" in out
    assert "Binding cache (100000 entries, first 2 shown)" in out


def test_store_failure_and_pending_bindings(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 21: the binding store's condition and the acknowledged / pending bindings."""
    doc = copy.deepcopy(HA_STATUS)
    doc["conditions"].append({
        "type": "BindingStoreHealthy", "status": "False", "reason": "WriteFailed",
        "message": "/var/lib/mip6/binding-cache.sqlite: write failed: database or disk is full",
        "last_transition_time": "2027-01-15T07:59:30Z",
    })  # fmt: skip
    doc["binding_cache"]["pending"] = 1
    doc["binding_cache"]["rows"][0]["acknowledged"] = True
    doc["binding_cache"]["rows"][1]["acknowledged"] = False
    with serve(sock, doc):
        assert main(["status", "--socket", str(sock)]) == 0
        assert main(["status", "--json", "--socket", str(sock)]) == 0
    out, js = capsys.readouterr().out.split("\n{", 1)
    assert "BindingStoreHealthy False   WriteFailed: /var/lib/mip6/binding-cache.sqlite: " \
           "write failed: database or disk is full" in out  # fmt: skip
    assert "KernelInSync        False   KernelDrift" in out  # the columns still line up
    assert "Binding cache (2 entries, 1 pending)" in out
    table = {line.split()[1]: [w for w in line.split() if w in ("yes", "pending")]
             for line in out.splitlines() if "2001:db8:1::" in line}  # fmt: skip
    assert table == {"2001:db8:1::100": ["yes"], "2001:db8:1::200": ["pending"]}
    # a mobile router's row shows its mobile network (issue 18)
    assert "mobile network" in out and "2001:db8:9::/48" in out
    body = json.loads("{" + js)
    assert body["binding_cache"]["pending"] == 1
    assert conditions_by_type(body)["BindingStoreHealthy"]["reason"] == "WriteFailed"


def test_ipsec_rows(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: per protected node its template, keying, SPIs, fingerprints, last move."""
    doc = copy.deepcopy(HA_STATUS)
    doc["ipsec"] = [{
        "home_address": "2001:db8:1::100", "template": "mn1", "key_management": "ike",
        "spi": None, "tunnel_spi": None, "in_kernel": True, "rotation": {"phase": 2},
        "fingerprints": None, "ike": {"state": "ESTABLISHED"},
        "last_migration": {"at": 1.0, "care_of_address": "2001:db8:b::100", "how": "migrated"},
    }, {
        "home_address": "2001:db8:1::200", "template": "mn2", "key_management": "manual",
        "spi": {"to_ha": "0x2001", "to_mn": "0x2002"}, "tunnel_spi": None, "in_kernel": False,
        "fingerprints": {"encryption": "sha256:0123456789abcdef",
                         "authentication": "sha256:fedcba9876543210"},
        "last_migration": None, "rotation": None,
    }]  # fmt: skip
    with serve(sock, doc):
        assert main(["status", "--socket", str(sock)]) == 0
    out = capsys.readouterr().out
    assert "IPsec (2)" in out
    row1 = next(line for line in out.splitlines() if "2001:db8:1::100" in line and "mn1" in line)
    assert "ike (ESTABLISHED), rotating (phase 2)" in row1 and "2001:db8:b::100" in row1
    row2 = next(line for line in out.splitlines() if "mn2" in line)
    assert "→ha 0x2001 →mn 0x2002" in row2 and "sha256:0123456789abcdef" in row2
    assert "pending" in row2


def conditions_by_type(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in doc["conditions"]}


def test_newer_status_version_is_shown_best_effort(
    sock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {**copy.deepcopy(HA_STATUS), "status_version": 2, "new_thing": {"x": 1}}
    with serve(sock, doc):
        assert main(["status", "--socket", str(sock)]) == 0
    cap = capsys.readouterr()
    assert "status version 2 is newer" in cap.err
    assert "Binding cache (2 entries)" in cap.out


def test_markup_in_daemon_strings_is_not_interpreted(
    sock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(HA_STATUS)
    doc["node_name"] = "[bold red]evil[/]"
    with serve(sock, doc):
        assert main(["status", "--socket", str(sock)]) == 0
    assert "[bold red]evil[/]" in capsys.readouterr().out


def test_no_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.sock"
    assert main(["status", "--socket", str(path)]) == 1
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err == (
        f"mip6ctl status: no daemon is listening on {path} (is `mip6ctl daemon` running?)\n"
    )


def test_no_daemon_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json", "--socket", str(tmp_path / "absent.sock")]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["command"] == "status"
    assert doc["errors"][0]["kind"] == "NoDaemon"
    assert "is `mip6ctl daemon` running?" in doc["errors"][0]["message"]


def test_socket_from_environment(
    ha_daemon: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIP6_CONTROL_SOCKET", str(ha_daemon))
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "ha"


def test_permission_denied(
    ha_daemon: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: socket.socket, addr: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", denied)
    assert main(["status", "--socket", str(ha_daemon)]) == 1
    err = capsys.readouterr().err
    assert f"permission denied on {ha_daemon}" in err and "root" in err
    assert main(["status", "--json", "--socket", str(ha_daemon)]) == 1
    assert json.loads(capsys.readouterr().out)["errors"][0]["kind"] == "PermissionDenied"


def test_daemon_error_answer(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread(sock, {}):  # answers, but has no "status" method
        assert main(["status", "--socket", str(sock)]) == 1
        assert "MethodNotFound" in capsys.readouterr().err
        assert main(["status", "--json", "--socket", str(sock)]) == 1
        assert json.loads(capsys.readouterr().out)["errors"][0]["kind"] == "RemoteError"


def test_non_object_answer(sock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(sock, [1, 2, 3]):
        assert main(["status", "--socket", str(sock)]) == 1
    assert "not an object" in capsys.readouterr().err


def test_import_stays_light() -> None:
    """`mip6ctl status` must not pay for pydantic, pyroute2, rich or asyncio before it renders."""
    code = (
        "import sys, mip6ctl.cli.main, mip6ctl.cli.status; "
        "print(sorted(m for m in ('pydantic', 'pyroute2', 'rich', 'asyncio', 'sqlite3') "
        "if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"


def test_help_is_fast_path() -> None:
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "status", "--help"],
        capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0 and "--json" in out.stdout and "--socket" in out.stdout


def test_human_shows_a_pending_confirmation_and_the_last_rollback(
    sock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        **HA_STATUS,
        "confirmation": {
            "history_number": 8,
            "pending": {"number": 8, "rollback_to": 7, "seconds_left": 2.5, "timeout": 3},
            "last_rollback": {"from": 6, "to": 5, "reason": "not confirmed within 3 s"},
        },
    }
    with serve(sock, doc):
        assert main(["status", "--socket", str(sock)]) == 0
    out = capsys.readouterr().out
    assert "awaiting confirmation: generation 8 rolls back to 7 in 2.5 s" in out
    assert "last rollback: generation 6 → 5 (not confirmed within 3 s)" in out
    with serve(sock, HA_STATUS):  # no confirmation section (an older daemon): nothing said
        assert main(["status", "--socket", str(sock)]) == 0
    assert "confirmation" not in capsys.readouterr().out
