"""IPsec-protected Mobile IPv6 with manual keys, the real daemons on the full kernel (issue 14).

The reference testbed with the home agent and mobile node of
examples/testbed/ipsec (RFC 3776 template ``mn1``: BU/BA in ESP transport
mode, HoTI/HoT and payload in ESP tunnel mode through the HA), on Debian's
kernel (ESP, MIP6, ip6tnl, XFRM MIGRATE):

* the registration from f1 is ESP on the wire both ways (captured on the
  MN's interface: the BU leaves from the care-of address with a Home Address
  option *before* ESP, the BA comes back with a type 2 routing header before
  ESP; no Mobility Header in clear); the Home Test Init of return
  routability with the CN leaves the MN in the ESP tunnel and appears in
  clear only behind the HA; pings CN <-> home address travel in ESP tunnel
  mode between care-of address and HA (no ip6tnl packets);
* a scapy tester on f1 sends a Binding Update for the MN's home address,
  valid in every other respect: unprotected, and with ESP under a wrong
  key -- the HA answers neither, its binding stays the MN's, and the kernel's
  counters say why (policy / ESP integrity);
* the MN moves to f2: both ends' tunnel-mode SAs and policies are at the new
  care-of address with the SPIs they had, moved by XFRM MIGRATE (seen on the
  kernel's migrate group in both namespaces, with the IKE endpoints in
  XFRMA_KMADDRESS), and pings flow again;
* no key byte in any output: status of both daemons, their plans, their logs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

import pytest

from mip6ctl.testbed import Testbed
from tests.netns.ha_helpers import REPO, HaDaemon, Station, binding_update, ip
from tests.netns.test_mobile_node import ping
from tests.vm.daemon_helpers import (
    CONVERGE,
    DEBUG_LOG,
    kernel_dump,
    launch,
    wait_for,
    wait_ready,
)
from tests.vm.ipsec_helpers import (
    HA,
    HOA,
    NH_DSTOPTS,
    NH_ESP,
    NH_IPV6,
    NH_MH,
    NH_ROUTING,
    Capture,
    Frame,
    copy_example,
    movement,
    registered,
    with_migrate_events,
)

pytestmark = pytest.mark.usefixtures("mip6_modules")

EXAMPLES = REPO / "examples" / "testbed" / "ipsec"
CN = IPv6Address("2001:db8:c::2")
SPI_TO_HA, SPI_TO_MN = 0x2001, 0x2002
TUNNEL_SPI_TO_HA, TUNNEL_SPI_TO_MN = 0x2003, 0x2004
FORGER_COA = IPv6Address("2001:db8:a::bad")


def _keys() -> list[bytes]:
    out = []
    for f in sorted((EXAMPLES / "ha" / "keys").iterdir()):
        out.append(bytes.fromhex(f.read_text().strip()))
    return out


# --------------------------------------------------------------------------- the bed


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mn: HaDaemon
    f1: Station
    capture: Capture
    core: Capture  # the HA's interface towards the CN: what left the tunnel, decrypted

    def logs(self) -> str:
        out = [f"--- {d.node} log ---\n{d.tail(60)}" for d in (self.mn, self.ha)]
        for d in (self.mn, self.ha):
            try:
                doc = d.rpc("status", timeout=10.0)
                out.append(f"--- {d.node} status ---\n{json.dumps(doc, indent=1)[:5000]}")
            except Exception as e:
                out.append(f"--- {d.node} status --- {e!r}")
        out += kernel_dump(self.tb, ("mn", "ha"))
        return "\n".join(out)


def xfrm_stat(tb: Testbed, node: str) -> dict[str, int]:
    r = tb.run(node, ["cat", "/proc/net/xfrm_stat"], timeout=30)
    out = {}
    for line in r.stdout.splitlines():
        name, _, value = line.partition(" ")
        if value.strip().isdigit() and int(value) > 0:
            out[name] = int(value)
    return out


@pytest.fixture(scope="module")
def bed(mip6_modules: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    tmp = tmp_path_factory.mktemp("ipsec")
    with Testbed.build(timeout=60.0) as tb:
        ha = HaDaemon(
            tb,
            tmp_path_factory.mktemp("ha"),
            example=copy_example(EXAMPLES / "ha", tmp / "ha-example"),
            extra=DEBUG_LOG,
        )
        mn = HaDaemon(
            tb,
            tmp_path_factory.mktemp("mn"),
            node="mn",
            example=copy_example(EXAMPLES / "mn", tmp / "mn-example"),
            # route optimisation with the CN (no daemon there): the MN sends a HoTI,
            # which must leave through the ESP tunnel
            replace={
                "max_ha_binding_lifetime": "route_optimization = true\n"
                f'correspondents = [{{ prefix = "{CN}/128" }}]\nmax_ha_binding_lifetime'
            },
            extra=DEBUG_LOG,
        )
        for d in (ha, mn):  # copytree keeps the modes set above
            for k in (d.config / "keys").iterdir():
                assert k.stat().st_mode & 0o077 == 0, k
        f1: Station | None = None
        cap: Capture | None = None
        core: Capture | None = None
        try:
            # the CN has no Mobile IPv6: it drops Mobility Headers silently instead of
            # answering the CoTI with a Parameter Problem (which would end return
            # routability before the HoTI, sent once the home registration is done)
            for rule in (
                ("add", "table", "ip6", "nomip"),
                ("add", "chain", "ip6", "nomip", "in", "{ type filter hook input priority 0 ; }"),
                ("add", "rule", "ip6", "nomip", "in", "meta", "l4proto", "135", "drop"),
            ):
                r = tb.run("cn", ["nft", *rule], timeout=30)
                assert r.returncode == 0, r.stderr
            cap = Capture(tb, "mn", "mn0")
            core = Capture(tb, "ha", "core0")
            for d in (ha, mn):
                launch(d)
            wait_ready((ha, mn))
            f1 = Station(tb, "f1", "vf1", [str(FORGER_COA)], "2001:db8:a::1")
            yield Bed(tb, ha, mn, f1, cap, core)
            for d in (ha, mn):
                assert d.proc is not None and d.proc.poll() is None, (
                    f"the {d.node} daemon died:\n{d.tail()}"
                )
        finally:
            if f1 is not None:
                f1.close()
            for c in (cap, core):
                if c is not None:
                    c.close()
            for d in (mn, ha):
                d.stop()


def move(bed: Bed, link: str) -> IPv6Address:
    wait_for("previous move settled", lambda: movement(bed)["kernel_in_sync"], bed.logs, CONVERGE)
    bed.tb.move("mn", link)
    got = wait_for(f"MN registered on {link}", lambda: registered(bed, link), bed.logs, CONVERGE)
    return got["coa"]  # type: ignore[no-any-return]


def esp_states(bed: Bed, node: str) -> dict[int, tuple[str, str, str]]:
    """SPI -> (src, dst, mode) of the node's ESP states (``ip xfrm state``)."""
    out = {}
    text = ip(bed.tb, node, "xfrm", "state", "show")
    for block in re.split(r"\n(?=src )", text):
        m = re.match(r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+).*?mode (\w+)", block, re.S)
        if m:
            out[int(m.group(3), 16)] = (m.group(1), m.group(2), m.group(4))
    return out


# --------------------------------------------------------------------------- tests


def test_registration_and_traffic_are_esp(bed: Bed) -> None:
    wait_for("MN at home", lambda: movement(bed)["location"] == "home", bed.logs, CONVERGE)
    bed.capture.drain()
    coa = move(bed, "f1")
    frames = bed.capture.drain()
    sig = [f for f in frames if {f.src, f.dst} & {HA} or f.hao or f.rh2]
    bus = [f for f in sig if f.outgoing and f.dst == HA and f.hao == HOA]
    assert bus, f"no BU with a Home Address option from the MN: {sig}\n{bed.logs()}"
    assert all(f.src == coa and f.chain[:2] == [NH_DSTOPTS, NH_ESP] for f in bus), bus
    assert {f.spi for f in bus} == {SPI_TO_HA}, bus
    bas = [f for f in sig if not f.outgoing and f.src == HA and f.rh2 == HOA]
    assert bas and all(f.dst == coa and f.chain[:2] == [NH_ROUTING, NH_ESP] for f in bas), sig
    assert {f.spi for f in bas} == {SPI_TO_MN}, bas
    clear = [f for f in frames if NH_MH in f.chain and HA in (f.src, f.dst)]
    assert not clear, f"Mobility Header in clear between MN and HA: {clear}"

    # the Home Test Init: ESP tunnel CoA -> HA on the MN's link, in clear only behind the HA
    def hoti_left_the_ha() -> list[Frame]:
        return [f for f in bed.core.drain() if f.src == HOA and f.dst == CN and NH_MH in f.chain]

    wait_for("HoTI forwarded by the HA", hoti_left_the_ha, bed.logs, CONVERGE)
    frames += bed.capture.drain()
    assert not [f for f in frames if f.src == HOA and NH_MH in f.chain and f.dst == CN], (
        "a HoTI left the MN outside the tunnel"
    )
    assert any(f.spi == TUNNEL_SPI_TO_HA and f.src == coa for f in frames), frames

    # the kernel holds what the status says, with fingerprints only
    doc = bed.ha.rpc("status", timeout=10.0)
    (row,) = doc["ipsec"]
    assert row["home_address"] == str(HOA) and row["in_kernel"], row
    assert row["spi"] == {"to_ha": hex(SPI_TO_HA), "to_mn": hex(SPI_TO_MN)}, row
    assert set(row["fingerprints"]) == {"encryption", "authentication"}, row
    assert all(v.startswith("sha256:") for v in row["fingerprints"].values()), row

    bed.capture.drain()
    assert ping(bed.tb, "cn", HOA) >= 2, "CN -> home address\n" + bed.logs()
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2, "home address -> CN\n" + bed.logs()
    frames = bed.capture.drain()
    tunnelled = [f for f in frames if f.chain[0] == NH_ESP and {f.src, f.dst} == {coa, HA}]
    spis = {f.spi for f in tunnelled}
    assert {TUNNEL_SPI_TO_HA, TUNNEL_SPI_TO_MN} <= spis, (spis, frames)
    assert not [f for f in frames if f.chain[0] == NH_IPV6], "payload went through ip6tnl"


def _forged(seq: int) -> Any:
    return binding_update(HOA, FORGER_COA, seq, 100)


def test_unprotected_and_wrongly_keyed_bus_are_dropped(bed: Bed) -> None:
    from scapy.layers.inet6 import MIP6MH_BA
    from scapy.layers.ipsec import ESP, SecurityAssociation

    before = bed.ha.bindings()[str(HOA)]["care_of_address"]
    stat0 = xfrm_stat(bed.tb, "ha")
    # valid in every other respect, sequence far ahead
    reply = bed.f1.exchange(_forged(30000), lambda p: MIP6MH_BA in p, timeout=5.0)
    assert reply is None, f"the HA answered an unprotected BU: {reply!r}"
    sa = SecurityAssociation(
        ESP,
        spi=SPI_TO_HA,
        crypt_algo="AES-CBC",
        crypt_key=b"\x11" * 16,
        auth_algo="SHA2-256-128",
        auth_key=b"\x22" * 32,
        seq_num=1 << 20,  # ahead of the replay window: the integrity check is what fails
    )
    reply = bed.f1.exchange(
        sa.encrypt(_forged(30001)), lambda p: MIP6MH_BA in p or ESP in p, timeout=5.0
    )
    assert reply is None, f"the HA answered a BU under a wrong key: {reply!r}"
    assert bed.ha.bindings()[str(HOA)]["care_of_address"] == before
    stat1 = xfrm_stat(bed.tb, "ha")
    grew = {k: stat1[k] - stat0.get(k, 0) for k in stat1 if stat1[k] > stat0.get(k, 0)}
    # the unprotected one fails the inbound policy; the other one ESP's integrity check
    assert grew.get("XfrmInTmplMismatch", 0) + grew.get("XfrmInNoStates", 0) >= 1 or grew.get(
        "XfrmInPolBlock", 0
    ), grew
    assert grew.get("XfrmInStateProtoError", 0) >= 1, grew
    assert ping(bed.tb, "cn", HOA) >= 2, "the MN's binding suffered\n" + bed.logs()


def test_move_migrates_the_tunnel_sas(bed: Bed) -> None:

    old = bed.ha.bindings()[str(HOA)]["care_of_address"]
    ha_before, mn_before = esp_states(bed, "ha"), esp_states(bed, "mn")
    assert ha_before[TUNNEL_SPI_TO_MN][1] == old, ha_before
    coa, events = with_migrate_events(bed.tb, ("ha", "mn"), lambda: move(bed, "f2"))
    for node, evs in events.items():
        assert evs, f"no MIGRATE on {node}\n{bed.logs()}"
        km = [e.kmaddress for e in evs if e.kmaddress is not None]
        assert km and all(coa in (k.local, k.remote) and HA in (k.local, k.remote) for k in km), evs
    ha_after, mn_after = esp_states(bed, "ha"), esp_states(bed, "mn")
    # same SPIs, tunnel endpoints at the new care-of address; transport SAs untouched
    assert set(ha_after) == set(ha_before) and set(mn_after) == set(mn_before)
    assert ha_after[TUNNEL_SPI_TO_MN] == (str(HA), str(coa), "tunnel"), ha_after
    assert ha_after[TUNNEL_SPI_TO_HA] == (str(coa), str(HA), "tunnel"), ha_after
    assert mn_after[TUNNEL_SPI_TO_HA] == (str(coa), str(HA), "tunnel"), mn_after
    assert ha_after[SPI_TO_HA] == ha_before[SPI_TO_HA], (ha_before, ha_after)
    pol = ip(bed.tb, "ha", "xfrm", "policy", "show")
    assert str(coa) in pol and old not in pol, pol
    row = bed.mn.rpc("status", timeout=10.0)["ipsec"][0]
    assert row["last_migration"] and row["last_migration"]["care_of_address"] == str(coa), row
    assert row["last_migration"]["how"] == "migrated", row
    bed.capture.drain()
    assert ping(bed.tb, "cn", HOA) >= 2, "CN -> home address after the move\n" + bed.logs()
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2, "home address -> CN after the move\n" + bed.logs()
    spis = {f.spi for f in bed.capture.drain() if f.chain[0] == NH_ESP and coa in (f.src, f.dst)}
    assert {TUNNEL_SPI_TO_HA, TUNNEL_SPI_TO_MN} <= spis, spis


NEW_SPIS = {
    "spi = { to_ha = 0x2001, to_mn = 0x2002 }": "spi = { to_ha = 0x2101, to_mn = 0x2102 }",
    "tunnel_spi = { to_ha = 0x2003, to_mn = 0x2004 }": (
        "tunnel_spi = { to_ha = 0x2103, to_mn = 0x2104 }"
    ),
}
NEW_KEYS = {"mn1.enc": bytes(range(0xA0, 0xB0)), "mn1.auth": bytes(range(0x40, 0x60))}


def _rotate_files(d: HaDaemon) -> None:
    """New keys (mode 0600, renamed into place) and new SPIs, as an operator would."""
    for name, key in NEW_KEYS.items():
        tmp = d.config / "keys" / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        os.replace(tmp, d.config / "keys" / name)
    main = d.config / "mip6.toml"
    text = main.read_text()
    for a, b in NEW_SPIS.items():
        assert a in text, a
        text = text.replace(a, b)
    tmp = main.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, main)


def test_key_rotation_by_reload_loses_no_ping(bed: Bed) -> None:
    from tests.netns.test_mobile_node import PingStream

    coa = IPv6Address(bed.ha.bindings()[str(HOA)]["care_of_address"])
    grace = 10.0  # the template's rotation_grace (default)
    with PingStream(bed.tb, "cn", HOA, 0.1) as stream:
        time.sleep(2.0)
        t0 = time.monotonic()
        for d in (bed.ha, bed.mn):  # one after the other, seconds apart under emulation
            _rotate_files(d)
            r = d.rpc("reload", timeout=120.0)
            assert r.get("applied") or r.get("unchanged"), r
        spread = time.monotonic() - t0
        rows = {d.node: d.rpc("status", timeout=10.0)["ipsec"][0] for d in (bed.ha, bed.mn)}
        assert all(r["rotation"] is not None for r in rows.values()), rows
        done = lambda: all(  # noqa: E731
            set(esp_states(bed, n)) == {0x2101, 0x2102, 0x2103, 0x2104} for n in ("ha", "mn")
        )
        wait_for("old SAs removed", done, bed.logs, 2 * grace + spread + 30)
        time.sleep(1.0)
    got = stream.summary(t0)
    assert got["sent"] > 50 and got["lost"] == 0, (got, spread, bed.logs())
    # the new SAs carry the traffic, at the care-of address of the binding
    assert esp_states(bed, "ha")[0x2104] == (str(HA), str(coa), "tunnel")
    for d in (bed.ha, bed.mn):
        (row,) = d.rpc("status", timeout=10.0)["ipsec"]
        assert row["rotation"] is None and row["in_kernel"], row
        assert row["spi"] == {"to_ha": "0x2101", "to_mn": "0x2102"}, row
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2


def test_no_key_byte_in_any_output(bed: Bed) -> None:
    outputs = []
    for d in (bed.ha, bed.mn):
        outputs.append(json.dumps(d.rpc("status", timeout=10.0)))
        outputs.append(json.dumps(d.rpc("plan", timeout=30.0)))
        outputs.append(d.log.read_text(errors="replace"))
    cli = subprocess.run(
        [sys.executable, "-m", "mip6ctl", "status", "--socket", str(bed.ha.socket), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    outputs += [cli.stdout, cli.stderr]
    text = "\n".join(outputs)
    for key in [*_keys(), *NEW_KEYS.values()]:
        for form in (key.hex(), key.hex().upper()):
            assert form not in text, "a key appears in an output"
    assert "sha256:" in text
