"""IKE-keyed Mobile IPv6 end to end: the real daemons drive strongSwan's charon (RFC 4877).

The reference testbed with the home agent and mobile node of
examples/testbed/ike (template ``mn1``: ``key_management = "ike"``, BU/BA in
a transport_proxy CHILD_SA with reqid 1001, payload in a tunnel CHILD_SA with
reqid 1002, a PSK file), a charon started by the test in the ha and mn
namespaces (tests/vm/charon_helpers.py: own strongswan.conf, VICI socket and
log; private /run), and the daemons, told charon's socket through
``MIP6CTL_VICI_SOCKET``.  mip6ctl renders the policies; `IkeController`
(mip6ctl/daemon/ike.py) loads the connections over VICI and, on the mobile
node, initiates from the care-of address after the move.

* home -> f1: the IKE_SA is established from the care-of address, both
  CHILD_SAs are in ``ip xfrm state`` with the fixed reqids, the BU/BA on the
  wire are ESP under charon's transport SPIs (captured on the MN's
  interface; no Mobility Header in clear), the registration completes,
  pings CN <-> home address travel in charon's tunnel SAs, and the status
  document's ``ipsec`` row carries the IKE_SA (``ike``);
* f1 -> f2: the daemons' XFRM MIGRATEs (seen on the kernel's migrate group
  in both namespaces, XFRMA_KMADDRESS = new CoA and HA) move charon's IKE_SA
  on both ends -- same IKE SPIs and unique id (``list-sas``), no new
  IKE_SA_INIT, "creating migrate job" in both charon logs -- the tunnel SAs
  are at the new care-of address, pings flow, the status shows the move, and
  the HA's binding has the K flag;
* after f2: the MN daemon re-created the transport_proxy child over the moved
  IKE_SA once the registration was done (docs/ike.md, limit 3): a VICI rekey
  of ``mh`` (the test's own session) then succeeds, the IKE SPIs are those of
  the IKE_SA made at f1 (no IKE_SA_INIT since), the kernel holds only the
  current transport pair, and the next BU refresh (binding lifetime 32 s
  here, so a refresh ~24 s after the BA) and its BA are ESP under the
  rekeyed child's SPIs.

Every wait is bounded; the fixture stops daemons and charons (by pid) and
tears the testbed down on failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from mip6ctl.ike.vici_client import IkeSaInfo, established
from mip6ctl.testbed import Testbed
from tests.netns.ha_helpers import REPO, HaDaemon, ip
from tests.netns.test_mobile_node import ping
from tests.vm.charon_helpers import CHARON, CharonProc, start_charon
from tests.vm.daemon_helpers import DEBUG_LOG, wait_for, wait_ready
from tests.vm.ipsec_helpers import (
    HA,
    HOA,
    NH_DSTOPTS,
    NH_ESP,
    NH_IPV6,
    NH_MH,
    NH_ROUTING,
    PREFIX,
    Capture,
    copy_example,
    movement,
    registered,
    with_migrate_events,
)

pytestmark = pytest.mark.usefixtures("mip6_modules")

EXAMPLES = REPO / "examples" / "testbed" / "ike"
CN = IPv6Address("2001:db8:c::2")
CONN = "mip6-2001-db8-1--100"
REQID_MH, REQID_TUNNEL = 1001, 1002
#: the first IKE_SA of a boot took 3.7-5.3 s in the emulated guest (docs/ike.md), and
#: the BUs the kernel held back meanwhile are retransmitted with back-off
IKE_CONVERGE = 120.0
SETTLE = 40.0
BINDING_LIFETIME = 32


def launch(d: HaDaemon, vici: Path) -> None:
    """`tests.vm.daemon_helpers.launch` with charon's VICI socket in the environment."""
    argv = [sys.executable, "-m", "mip6ctl", "daemon", "-c", str(d.config)]
    argv += ["--state-dir", str(d.state), "--socket", str(d.socket)]
    env = {**os.environ, "MIP6CTL_VICI_SOCKET": str(vici)}
    with open(d.log, "ab") as log:
        d.proc = d.tb.exec(d.node, argv, stdout=log, stderr=subprocess.STDOUT, env=env)


@dataclass
class Bed:
    tb: Testbed
    ha: HaDaemon
    mn: HaDaemon
    charon_ha: CharonProc
    charon_mn: CharonProc
    capture: Capture
    notes: dict[str, Any] = field(default_factory=dict)

    def charon(self, node: str) -> CharonProc:
        return self.charon_ha if node == "ha" else self.charon_mn

    def sas(self, node: str) -> list[IkeSaInfo]:
        c = self.charon(node)
        assert c.vici is not None
        return c.vici.list_sas(CONN)

    def logs(self) -> str:
        out = [f"--- {d.node} daemon log ---\n{d.tail(80)}" for d in (self.mn, self.ha)]
        for d in (self.mn, self.ha):
            try:
                doc = d.rpc("status", timeout=10.0)
                keep = {k: doc.get(k) for k in ("conditions", "ipsec", "binding_update_list")}
                out.append(f"--- {d.node} status ---\n{json.dumps(keep, indent=1)[:6000]}")
            except Exception as e:
                out.append(f"--- {d.node} status --- {e!r}")
        for node in ("mn", "ha"):
            try:
                out.append(f"--- {node}: list-sas --- {self.sas(node)}")
            except Exception as e:
                out.append(f"--- {node}: list-sas --- {e!r}")
            for args in (("-6", "addr", "show"), ("xfrm", "state"), ("xfrm", "policy")):
                try:
                    text = ip(self.tb, node, *args)
                    text = re.sub(r"(\s(?:auth-trunc|auth|enc|aead) \S+) 0x[0-9a-f]+", r"\1 <key>",
                                  text)  # fmt: skip
                    out.append(f"--- {node}: ip {' '.join(args)} ---\n{text}")
                except Exception as e:
                    out.append(f"--- {node}: ip {' '.join(args)} --- {e!r}")
            text = self.charon(node).log_text()
            log = [ln for ln in text.splitlines() if "[JOB] watch" not in ln]
            out.append(f"--- {node}: charon.log (tail) ---\n" + "\n".join(log[-60:]))
        return "\n".join(out)


@pytest.fixture(scope="module")
def bed(mip6_modules: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if not CHARON.exists():
        pytest.skip(
            f"missing capability: {CHARON} (Debian strongswan-charon; scripts/vm-tier installs it)"
        )
    tmp = tmp_path_factory.mktemp("ike-daemons")
    with Testbed.build(timeout=60.0) as tb:
        charons: list[CharonProc] = []
        cap: Capture | None = None
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
            replace={  # a short lifetime: a BU refresh within the test (~24 s after a BA)
                "max_ha_binding_lifetime = 3600": "route_optimization = false\n"
                f"max_ha_binding_lifetime = {BINDING_LIFETIME}"
            },
            extra=DEBUG_LOG,
        )
        try:
            for node in ("ha", "mn"):
                charons.append(
                    start_charon(
                        tb.ns(node),
                        tmp / f"charon-{node}",
                        spawn=lambda argv, node=node, **kw: tb.exec(node, argv, **kw),
                    )
                )
            cap = Capture(tb, "mn", "mn0")
            launch(ha, charons[0].socket)
            launch(mn, charons[1].socket)
            wait_ready((ha, mn))
            b = Bed(tb, ha, mn, charons[0], charons[1], cap)
            wait_for("HA: IkeReady (connection loaded into charon)",
                     lambda: condition(ha, "IkeReady") == "True", b.logs, 60.0)  # fmt: skip
            yield b
            for d in (ha, mn):
                assert d.proc is not None and d.proc.poll() is None, (
                    f"the {d.node} daemon died:\n{d.tail()}"
                )
        finally:
            if cap is not None:
                cap.close()
            for d in (mn, ha):
                d.stop()
            for c in charons:
                c.stop()


def condition(d: HaDaemon, ctype: str) -> str | None:
    doc = d.rpc("status", timeout=10.0)
    return {c["type"]: c["status"] for c in doc["conditions"]}.get(ctype)


def move(bed: Bed, link: str) -> IPv6Address:
    wait_for("previous move settled", lambda: movement(bed)["kernel_in_sync"], bed.logs, SETTLE)
    t0 = time.monotonic()
    bed.tb.move("mn", link)
    got = wait_for(f"MN registered on {link}", lambda: registered(bed, link), bed.logs,
                   IKE_CONVERGE)  # fmt: skip
    print(f"\n--- registered on {link} {time.monotonic() - t0:.1f} s after the move (emulated)")
    return got["coa"]  # type: ignore[no-any-return]


def esp_states(bed: Bed, node: str) -> dict[int, tuple[str, str, int, str]]:
    """SPI -> (src, dst, reqid, mode) of the node's ESP states (``ip xfrm state``)."""
    out = {}
    for block in re.split(r"\n(?=src )", ip(bed.tb, node, "xfrm", "state")):
        m = re.match(
            r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+) reqid (\d+) mode (\w+)", block
        )
        if m:
            out[int(m.group(3), 16)] = (m.group(1), m.group(2), int(m.group(4)), m.group(5))
    return out


def one_sa(bed: Bed, node: str, coa: IPv6Address) -> IkeSaInfo | None:
    """The node's single established IKE_SA with both children, at `coa` (else None)."""
    sas = bed.sas(node)
    if len(sas) != 1 or not established(sas[0], ("mh", "tunnel")):
        return None
    sa = sas[0]
    peer = sa.local_host if node == "mn" else sa.remote_host
    return sa if peer == str(coa) else None


def ike_row(d: HaDaemon) -> dict[str, Any]:
    (row,) = d.rpc("status", timeout=15.0)["ipsec"]
    assert row["key_management"] == "ike" and "ike" in row, row
    return row["ike"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- tests


def test_registration_from_f1_is_keyed_by_charon(bed: Bed) -> None:
    wait_for("MN at home", lambda: movement(bed)["location"] == "home", bed.logs, SETTLE)
    inits = bed.charon_mn.count("IKE_SA_INIT")
    bed.capture.drain()
    coa = move(bed, "f1")
    frames = bed.capture.drain()

    # the IKE_SA from the care-of address, both CHILD_SAs with the fixed reqids
    mn_sa = wait_for("MN IKE_SA at the CoA", lambda: one_sa(bed, "mn", coa), bed.logs, 30.0)
    ha_sa = wait_for("HA IKE_SA at the CoA", lambda: one_sa(bed, "ha", coa), bed.logs, 30.0)
    assert mn_sa.spis == ha_sa.spis and mn_sa.remote_host == str(HA), (mn_sa, ha_sa)
    assert {c.name: c.reqid for c in mn_sa.children} == {"mh": REQID_MH, "tunnel": REQID_TUNNEL}
    assert bed.charon_mn.count("IKE_SA_INIT") > inits, "no IKE_SA_INIT from the MN"
    mh, tun = mn_sa.child("mh"), mn_sa.child("tunnel")
    assert mh is not None and tun is not None
    for node in ("mn", "ha"):
        states = esp_states(bed, node)
        print(f"--- {node} ESP states after f1: {states}")
        got = {(src, dst, reqid, mode) for src, dst, reqid, mode in states.values()}
        assert {
            (str(HOA), str(HA), REQID_MH, "transport"),
            (str(HA), str(HOA), REQID_MH, "transport"),
            (str(coa), str(HA), REQID_TUNNEL, "tunnel"),
            (str(HA), str(coa), REQID_TUNNEL, "tunnel"),
        } <= got, (node, states, bed.logs())
    mn_states = esp_states(bed, "mn")
    assert {mh.spi_in, mh.spi_out, tun.spi_in, tun.spi_out} <= set(mn_states), mn_states

    # BU/BA on the wire: ESP under charon's transport_proxy SAs, no Mobility Header in clear
    sig = [f for f in frames if {f.src, f.dst} & {HA} or f.hao or f.rh2]
    bus = [f for f in sig if f.outgoing and f.dst == HA and f.hao == HOA]
    assert bus, f"no BU with a Home Address option from the MN: {sig}\n{bed.logs()}"
    assert all(f.src == coa and f.chain[:2] == [NH_DSTOPTS, NH_ESP] for f in bus), bus
    assert {f.spi for f in bus} == {mh.spi_out}, (bus, mh)
    bas = [f for f in sig if not f.outgoing and f.src == HA and f.rh2 == HOA]
    assert bas and all(f.dst == coa and f.chain[:2] == [NH_ROUTING, NH_ESP] for f in bas), sig
    assert {f.spi for f in bas} == {mh.spi_in}, (bas, mh)
    bed.notes["ike_spis"] = mn_sa.spis
    clear = [f for f in frames if NH_MH in f.chain and HA in (f.src, f.dst)]
    assert not clear, f"Mobility Header in clear between MN and HA: {clear}"
    print(f"--- {len(bus)} BU(s) and {len(bas)} BA(s) on the wire, all ESP; MN daemon: "
          f"{ike_log(bed.mn)}; HA daemon: {ike_log(bed.ha)}")  # fmt: skip

    # status: the ipsec row of each daemon carries charon's IKE_SA
    for d, sa in ((bed.mn, mn_sa), (bed.ha, ha_sa)):
        row = ike_row(d)
        print(f"--- {d.node} status ipsec[0].ike: {json.dumps(row)[:1500]}")
        assert row["state"] == "ESTABLISHED" and row["connection"] == CONN, row
        assert row["ike_spis"] == {
            "initiator": f"{sa.initiator_spi:016x}",
            "responder": f"{sa.responder_spi:016x}",
        }, row
        assert row["reqids"] == {"mh": REQID_MH, "tunnel": REQID_TUNNEL}, row
        assert row["psk_fingerprint"].startswith("sha256:"), row
    assert ike_row(bed.mn)["local_host"] == str(coa)
    assert condition(bed.mn, "IkeReady") == "True"

    # payload in charon's tunnel SAs, not in ip6tnl
    bed.capture.drain()
    assert ping(bed.tb, "cn", HOA) >= 2, "CN -> home address\n" + bed.logs()
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2, "home address -> CN\n" + bed.logs()
    frames = bed.capture.drain()
    spis = {f.spi for f in frames if f.chain[0] == NH_ESP and {f.src, f.dst} == {coa, HA}}
    assert {tun.spi_in, tun.spi_out} <= spis, (spis, tun)
    assert not [f for f in frames if f.chain[0] == NH_IPV6], "payload went through ip6tnl"


def test_move_to_f2_migrates_charons_ike_sa(bed: Bed) -> None:
    old = bed.ha.bindings()[str(HOA)]["care_of_address"]
    before = {n: bed.sas(n) for n in ("mn", "ha")}
    assert all(len(v) == 1 for v in before.values()), before
    inits = {n: bed.charon(n).count("IKE_SA_INIT") for n in ("mn", "ha")}
    jobs = {n: bed.charon(n).count("creating migrate job") for n in ("mn", "ha")}
    coa, events = with_migrate_events(bed.tb, ("ha", "mn"), lambda: move(bed, "f2"))
    assert str(coa) != old
    for node, evs in events.items():  # the daemons' MIGRATEs, naming the IKE endpoints
        km = [e.kmaddress for e in evs if e.kmaddress is not None]
        pairs = sorted({(str(k.local), str(k.remote)) for k in km})
        print(f"--- {node}: {len(evs)} MIGRATE(s), KMADDRESS (local, remote) {pairs}")
        assert km and all({k.local, k.remote} == {coa, HA} for k in km), (node, evs)
    after = {
        n: wait_for(f"{n} IKE_SA at {coa}", lambda n=n: one_sa(bed, n, coa), bed.logs, 30.0)
        for n in ("mn", "ha")
    }
    for n in ("mn", "ha"):
        b, a = before[n][0], after[n]
        print(
            f"--- {n}: IKE SPIs {b.spis[0]:016x}_i {b.spis[1]:016x}_r -> "
            f"{a.spis[0]:016x}_i {a.spis[1]:016x}_r; {a.local_host} <-> {a.remote_host}; "
            f"migrate jobs +{bed.charon(n).count('creating migrate job') - jobs[n]}"
        )
        assert a.spis == b.spis and a.uniqueid == b.uniqueid, (n, b, a)  # moved, not re-made
        assert bed.charon(n).count("IKE_SA_INIT") == inits[n], f"{n}: a new IKE_SA_INIT"
        assert bed.charon(n).count("creating migrate job") > jobs[n], bed.logs()
        tunnel = {
            (src, dst)
            for src, dst, reqid, _m in esp_states(bed, n).values()
            if reqid == REQID_TUNNEL
        }
        assert tunnel == {(str(coa), str(HA)), (str(HA), str(coa))}, (n, tunnel, bed.logs())
    tun_b, tun_a = before["mn"][0].child("tunnel"), after["mn"].child("tunnel")
    assert tun_b is not None and tun_a is not None
    assert (tun_a.spi_in, tun_a.spi_out) == (tun_b.spi_in, tun_b.spi_out)  # same CHILD_SA

    bed.capture.drain()
    assert ping(bed.tb, "cn", HOA) >= 2, "CN -> home address after the move\n" + bed.logs()
    assert ping(bed.tb, "mn", CN, src=HOA) >= 2, "home address -> CN after the move\n" + bed.logs()
    spis = {f.spi for f in bed.capture.drain() if f.chain[0] == NH_ESP and coa in (f.src, f.dst)}
    assert {tun_a.spi_in, tun_a.spi_out} <= spis, spis

    row = wait_for(
        "MN status: IKE at the new CoA",
        lambda: (r := ike_row(bed.mn))["local_host"] == str(coa) and r["last_move"] and r,
        bed.logs,
        30.0,
    )
    print(f"--- MN status ipsec[0].ike after f2: {json.dumps(row)[:1500]}")
    assert row["last_move"]["care_of_address"] == str(coa), row
    assert row["last_move"]["how"].startswith("migrated"), row
    assert ike_row(bed.ha)["remote_host"] == str(coa)
    flags = bed.ha.bindings()[str(HOA)]["flags"]
    print(f"--- HA binding flags {flags!r}; MN daemon: {ike_log(bed.mn)}")
    assert "K" in flags, flags  # IKE template + MIGRATE: the IKE SA survives movement


def ike_log(d: HaDaemon) -> list[str]:
    lines = (d.tail(400) or "").splitlines()
    return [ln[-160:] for ln in lines if "IKE" in ln and ("loaded" in ln or " at " in ln)]


def mh_pairs(bed: Bed, node: str) -> set[tuple[int, str, str]]:
    """(SPI, src, dst) of the node's transport SAs with the mh reqid."""
    return {
        (spi, src, dst)
        for spi, (src, dst, reqid, mode) in esp_states(bed, node).items()
        if reqid == REQID_MH and mode == "transport"
    }


def test_mh_child_recreated_after_the_move_rekeys_and_protects_the_refresh(
    bed: Bed, record_testsuite_property: Callable[[str, object], None]
) -> None:
    """The figures also go into junit.xml (``record_testsuite_property``)."""
    coa = IPv6Address(movement(bed)["care_of_address"])
    assert coa in PREFIX["f2"], coa
    inits = {n: bed.charon(n).count("IKE_SA_INIT") for n in ("mn", "ha")}

    # the MN daemon re-created mh over the moved IKE_SA once the registration at f2 was done
    row = wait_for(
        "MN status: mh re-created after the move",
        lambda: (r := ike_row(bed.mn))["last_move"] and r["last_move"].get("mh") and r,
        bed.logs,
        60.0,
    )
    mh_doc = row["last_move"]["mh"]
    print(f"--- MN daemon: mh after the move to f2: {json.dumps(mh_doc)}")
    record_testsuite_property("mh_recreated", json.dumps(mh_doc))
    assert row["last_error"] is None, row
    assert mh_doc["how"] == "re-created over the moved IKE_SA", mh_doc
    mn_sa = wait_for("MN IKE_SA at f2", lambda: one_sa(bed, "mn", coa), bed.logs, 30.0)
    ha_sa = wait_for("HA IKE_SA at f2", lambda: one_sa(bed, "ha", coa), bed.logs, 30.0)
    mh = mn_sa.child("mh")
    assert mh is not None and mh.uniqueid == mh_doc["child_id"], (mn_sa, mh_doc)
    assert mh.uniqueid not in mh_doc["old_child_ids"]
    assert [c.name for c in mn_sa.children].count("mh") == 1, mn_sa  # the old one deleted
    assert mn_sa.spis == ha_sa.spis == bed.notes.get("ike_spis", mn_sa.spis), (mn_sa, ha_sa)
    ha_mh = ha_sa.child("mh")
    assert ha_mh is not None and (ha_mh.spi_in, ha_mh.spi_out) == (mh.spi_out, mh.spi_in)
    want = {(mh.spi_out, str(HOA), str(HA)), (mh.spi_in, str(HA), str(HOA))}
    for node in ("mn", "ha"):  # only the new transport pair in the kernel
        wait_for(f"{node}: the old mh pair deleted",
                 lambda n=node: mh_pairs(bed, n) == want, bed.logs, 30.0)  # fmt: skip
        print(f"--- {node}: mh transport SAs after the re-creation {sorted(want)}")

    # a rekey of mh over the moved IKE_SA: charon finds the child now
    vici = bed.charon_mn.vici
    assert vici is not None
    mark = len(bed.charon_mn.log_text())
    t0 = time.monotonic()
    vici.rekey_child(CONN, "mh")
    rekeyed = vici.wait_sa(
        CONN,
        lambda s: any(
            c.name == "mh" and c.state == "INSTALLED" and c.spi_in not in (mh.spi_in, 0)
            for c in s.children
        ),
        timeout=60.0,
        interval=0.02,
    )
    took = time.monotonic() - t0
    refused = [ln for ln in bed.charon_mn.log_text()[mark:].splitlines() if "not found" in ln]
    verdict = "rekeyed" if rekeyed else "NOT rekeyed"
    print(f"--- VICI rekey of mh after the re-creation: {verdict} in {took * 1000:.0f} ms", refused)
    record_testsuite_property("mh_rekey_ms", round(took * 1000))
    assert rekeyed is not None and not refused, (refused, bed.logs())
    assert rekeyed.spis == mn_sa.spis and rekeyed.uniqueid == mn_sa.uniqueid, (rekeyed, mn_sa)
    new = next(c for c in rekeyed.children if c.name == "mh" and c.spi_in != mh.spi_in)
    for n in ("mn", "ha"):
        assert bed.charon(n).count("IKE_SA_INIT") == inits[n], f"{n}: a new IKE_SA_INIT"

    # the next BU refresh and its BA: ESP under the rekeyed child's SPIs, nothing in clear
    bed.capture.drain()
    frames: list[Any] = []

    def refreshed() -> bool:
        frames.extend(bed.capture.drain())
        return any(f.outgoing and f.dst == HA and f.hao == HOA for f in frames) and any(
            not f.outgoing and f.src == HA and f.rh2 == HOA for f in frames
        )

    t1 = time.monotonic()
    wait_for("a BU refresh and its BA", refreshed, bed.logs, BINDING_LIFETIME * 2.0)
    bus = [f for f in frames if f.outgoing and f.dst == HA and f.hao == HOA]
    bas = [f for f in frames if not f.outgoing and f.src == HA and f.rh2 == HOA]
    record_testsuite_property("refresh_after_rekey_s", round(time.monotonic() - t1, 1))
    spis = f"BU {sorted({f.spi for f in bus})} BA {sorted({f.spi for f in bas})}"
    record_testsuite_property("refresh_spis", f"{spis} mh {new.spi_out:#x}/{new.spi_in:#x}")
    print(f"--- BU refresh {time.monotonic() - t1:.1f} s after the rekey: {len(bus)} BU(s) "
          f"SPI {sorted({f.spi for f in bus})}, {len(bas)} BA(s) SPI {sorted({f.spi for f in bas})}"
          f"; mh now {new.spi_out:#x}/{new.spi_in:#x}")  # fmt: skip
    assert all(f.src == coa and f.chain[:2] == [NH_DSTOPTS, NH_ESP] for f in bus), bus
    assert {f.spi for f in bus} == {new.spi_out}, (bus, new)
    assert all(f.dst == coa and f.chain[:2] == [NH_ROUTING, NH_ESP] for f in bas), bas
    assert {f.spi for f in bas} == {new.spi_in}, (bas, new)
    clear = [f for f in frames if NH_MH in f.chain and HA in (f.src, f.dst)]
    assert not clear, f"Mobility Header in clear between MN and HA: {clear}"
    assert registered(bed, "f2") is not None, bed.logs()
