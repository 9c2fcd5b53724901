"""Automatic keying with strongSwan's charon, configured by mip6ctl (vm tier only).

Two namespaces on one veth link, a charon in each::

    mn (m0: CoA A 2001:db8:a::100, later B ::200, C ::300) --- ha (h0: 2001:db8:a::1,
                                                                   lo: HA 2001:db8:1::1)

Each charon runs in its own mount namespace (``ip netns exec`` + ``unshare -m``
with a private tmpfs on /run: the pid file /var/run/charon.pid is compiled in)
with its own strongswan.conf (``STRONGSWAN_CONF``) naming its own VICI socket and
log file.  The swanctl connections come from `mip6ctl.ike.swanctl` applied to
real mip6ctl configurations (MN and HA directories, a PSK file of mode 0600),
loaded and initiated over VICI with `mip6ctl.ike.vici_client`.

1. Both CHILD_SAs are negotiated and installed by charon with the fixed reqids
   (``mh``: transport_proxy HoA<->HA, reqid 1001; ``tunnel``: CoA<->HA, 1002).
2. Movement with MIGRATE: mip6ctl's tunnel policies (charon runs ``policies =
   no``) are installed with `XfrmSocket`; the MN gets B; `XfrmSocket.migrate`
   with XFRMA_KMADDRESS on both ends (MN in/out, HA in/out/fwd).  charon logs
   "creating migrate job", its IKE_SA shows B with the same IKE SPIs (no new
   IKE_SA_INIT), the kernel's tunnel SAs show B with unchanged SPIs, the
   transport_proxy SAs are untouched; A is removed and a CHILD_SA rekey runs
   over the moved IKE_SA from B.
3. The fallback without MIGRATE: terminate + initiate from C over VICI, timed.
4. Two limits, shown: with only the MN migrated (to D) the HA answers IKE at D
   but keeps its IKE_SA and rekeyed SAs at C until its own MIGRATE; and after
   a tunnel MIGRATE charon cannot find the transport_proxy child for a rekey
   until a transport MIGRATE (old = new addresses) with KMADDRESS re-registers
   it.  docs/ike.md has the findings.

Every wait is bounded; the module fixture kills both charons and deletes the
namespaces on failure.  Timings are from the emulated guest (qemu TCG).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

import pytest

from mip6ctl.config.loader import load_directory
from mip6ctl.ike import swanctl
from mip6ctl.ike.vici_client import IkeSaInfo, established
from mip6ctl.kernel.xfrm import XfrmSocket
from mip6ctl.kernel.xfrm_codec import KmAddress, XfrmMigration
from mip6ctl.state.xfrm import (
    Direction,
    Mode,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmTemplate,
)
from tests import nsutil
from tests.vm.charon_helpers import CHARON, IKE_WAIT, CharonProc, start_charon

pytestmark = pytest.mark.usefixtures("mip6_modules")

HOA = IPv6Address("2001:db8:1::100")
HA = IPv6Address("2001:db8:1::1")
HA_LINK = IPv6Address("2001:db8:a::1")
COA_A = IPv6Address("2001:db8:a::100")
COA_B = IPv6Address("2001:db8:a::200")
COA_C = IPv6Address("2001:db8:a::300")
COA_D = IPv6Address("2001:db8:a::400")
REQID_MH, REQID_TUNNEL = 1001, 1002
TEMPLATE = f"""
[ipsec.mn1]
protect = ["binding-update", "payload"]
key_management = "ike"
encryption = {{ algorithm = "aes-cbc", key_bits = 128 }}
authentication = {{ algorithm = "hmac-sha256" }}
reqid = {{ to_ha = {REQID_MH}, to_mn = {REQID_MH} }}
tunnel_reqid = {{ to_ha = {REQID_TUNNEL}, to_mn = {REQID_TUNNEL} }}
psk_file = "../mn1.psk"
"""
MN_TOML = (
    f"""
[node]
role = "mn"
[mn]
home_address = "{HOA}/64"
home_agent = "{HA}"
interfaces = [{{ name = "m0" }}]
ipsec = "mn1"
key_management_mobility = true
"""
    + TEMPLATE
)
HA_TOML = (
    f"""
[node]
role = "ha"
[ha]
interfaces = ["h0"]
home_prefixes = ["2001:db8:1::/64"]
address = "{HA}"
require_ipsec = true
[[ha.mobile_nodes]]
home_address = "{HOA}"
ipsec = "mn1"
"""
    + TEMPLATE
)


def ip(*args: str, ns: str) -> str:
    proc = nsutil.ip(*args, ns=ns, check=False)
    assert proc.returncode == 0, f"ip {' '.join(args)} (in {ns}): {proc.stderr.strip()}"
    return proc.stdout


@dataclass
class Bed:
    mn_ns: str
    ha_ns: str
    mn: CharonProc
    ha: CharonProc
    mn_conn: swanctl.IkeConnection
    ha_conn: swanctl.IkeConnection
    mn_xfrm: XfrmSocket
    ha_xfrm: XfrmSocket
    figures: dict[str, float] = field(default_factory=dict)

    def states(self, which: str) -> list[XfrmState]:
        xs = self.mn_xfrm if which == "mn" else self.ha_xfrm
        return [s for s in xs.dump_states() if s.proto == XfrmProto.ESP]

    def ip_xfrm_state(self, which: str) -> str:
        """`ip xfrm state` with the (charon-negotiated) keys cut out of the text."""
        ns = self.mn_ns if which == "mn" else self.ha_ns
        text = nsutil.ip("xfrm", "state", ns=ns, check=False).stdout
        return re.sub(r"^(\s+(?:auth-trunc|auth|enc|aead) \S+) 0x[0-9a-f]+", r"\1 <key>", text,
                      flags=re.M)  # fmt: skip

    def log_lines(self, which: str, since: int, *needles: str) -> list[str]:
        c = self.mn if which == "mn" else self.ha
        return [ln for ln in c.log_text()[since:].splitlines() if any(n in ln for n in needles)]

    def log_size(self, which: str) -> int:
        return len((self.mn if which == "mn" else self.ha).log_text())

    def sa(self, which: str) -> IkeSaInfo:
        c = self.mn if which == "mn" else self.ha
        assert c.vici is not None
        sas = c.vici.list_sas(self.mn_conn.name)
        assert len(sas) == 1, f"{which}: IKE_SAs {sas}"
        return sas[0]

    def diagnostics(self) -> str:
        out = []
        for which in ("mn", "ha"):
            out.append(f"--- {which}: ip xfrm state\n{self.ip_xfrm_state(which)}")
            c = self.mn if which == "mn" else self.ha
            log = [ln for ln in c.log_text().splitlines() if "[JOB] watch" not in ln]
            out.append(f"--- {which}: charon.log (tail)\n" + "\n".join(log[-40:]))
        return "\n".join(out)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if not CHARON.exists():
        pytest.skip(
            f"missing capability: {CHARON} (Debian strongswan-charon; scripts/vm-tier installs it)"
        )
    work = tmp_path_factory.mktemp("ike")
    (work / "mn").mkdir()
    (work / "ha").mkdir()
    psk = work / "mn1.psk"
    psk.write_text(os.urandom(32).hex() + "\n")
    psk.chmod(0o600)
    (work / "mn" / "mip6.toml").write_text(MN_TOML)
    (work / "ha" / "mip6.toml").write_text(HA_TOML)
    mn_gen = load_directory(work / "mn")
    ha_gen = load_directory(work / "ha")

    factory = nsutil.NetnsFactory()
    charons: list[CharonProc] = []
    socks: list[XfrmSocket] = []
    try:
        mn_ns, ha_ns = factory("ikemn"), factory("ikeha")
        nsutil.ip("link", "add", "m0", "netns", mn_ns, "type", "veth", "peer", "name", "h0",
                  "netns", ha_ns)  # fmt: skip
        ip("link", "set", "m0", "up", ns=mn_ns)
        ip("link", "set", "h0", "up", ns=ha_ns)
        ip("addr", "add", f"{COA_A}/64", "dev", "m0", "nodad", ns=mn_ns)
        ip("addr", "add", f"{HA_LINK}/64", "dev", "h0", "nodad", ns=ha_ns)
        ip("addr", "add", f"{HA}/128", "dev", "lo", ns=ha_ns)
        ip("route", "add", "2001:db8:1::/64", "via", str(HA_LINK), ns=mn_ns)

        mn_conn = swanctl.mn_connection(mn_gen.config, care_of_address=COA_A, base=mn_gen.directory)
        (ha_conn,) = swanctl.ha_connections(ha_gen.config, base=ha_gen.directory)
        assert mn_conn is not None
        print("\n--- mip6ctl.ike generated (MN end):\n" + swanctl.swanctl_conf([mn_conn]))
        print("--- mip6ctl.ike generated (HA end):\n" + swanctl.swanctl_conf([ha_conn]))

        charons.append(start_charon(mn_ns, work / "charon-mn"))
        charons.append(start_charon(ha_ns, work / "charon-ha"))
        with nsutil.inside(mn_ns):
            socks.append(XfrmSocket(timeout=10.0))
        with nsutil.inside(ha_ns):
            socks.append(XfrmSocket(timeout=10.0))
        b = Bed(mn_ns, ha_ns, charons[0], charons[1], mn_conn, ha_conn, socks[0], socks[1])
        yield b
        if b.figures:
            print("\n--- figures (emulated guest): " + ", ".join(
                f"{k} {v * 1000:.0f} ms" for k, v in b.figures.items()))  # fmt: skip
    finally:
        for s in socks:
            s.close()
        for c in charons:
            c.stop()
        factory.cleanup()


def esp(states: list[XfrmState], reqid: int) -> list[XfrmState]:
    return sorted((s for s in states if s.reqid == reqid), key=lambda s: s.spi)


# --------------------------------------------------------------------------- 1. negotiate


def test_charon_negotiates_both_child_sas_with_the_fixed_reqids(bed: Bed) -> None:
    assert bed.ha.vici is not None and bed.mn.vici is not None
    bed.ha.vici.load(bed.ha_conn)
    t0 = time.monotonic()
    try:
        bed.mn.vici.bring_up(bed.mn_conn, timeout=IKE_WAIT)
    except Exception as e:
        raise AssertionError(f"{e}\n{bed.diagnostics()}") from None
    bed.figures["initial IKE_SA_INIT+IKE_AUTH+CREATE_CHILD_SA"] = time.monotonic() - t0
    mn_sa, ha_sa = bed.sa("mn"), bed.sa("ha")
    assert established(mn_sa, ("mh", "tunnel")), mn_sa
    assert established(ha_sa, ("mh", "tunnel")), ha_sa
    assert mn_sa.spis == ha_sa.spis
    assert (mn_sa.local_host, mn_sa.remote_host) == (str(COA_A), str(HA))
    assert {c.name: c.reqid for c in mn_sa.children} == {"mh": REQID_MH, "tunnel": REQID_TUNNEL}
    print("\n--- MN ip xfrm state after initiate:\n" + bed.ip_xfrm_state("mn"))

    for which in ("mn", "ha"):
        states = bed.states(which)
        mh = esp(states, REQID_MH)
        tun = esp(states, REQID_TUNNEL)
        assert len(mh) == 2 and len(tun) == 2, f"{which}: {states}\n{bed.diagnostics()}"
        # transport_proxy: SA endpoints are the traffic-selector hosts HoA <-> HA
        assert {(s.src, s.dst) for s in mh} == {(HOA, HA), (HA, HOA)}
        assert all(s.mode == Mode.TRANSPORT for s in mh)
        # tunnel: outer endpoints care-of address <-> HA
        assert {(s.src, s.dst) for s in tun} == {(COA_A, HA), (HA, COA_A)}
        assert all(s.mode == Mode.TUNNEL for s in tun)
    # charon's SPIs are the kernel's
    sa = bed.sa("mn")
    kernel_spis = {s.spi for s in bed.states("mn")}
    for c in sa.children:
        assert {c.spi_in, c.spi_out} <= kernel_spis, (c, kernel_spis)
    # Probe: can charon rekey the transport_proxy CHILD_SA on request (VICI rekey)?
    old_mh = sa.child("mh")
    assert old_mh is not None
    mark = bed.log_size("mn")
    bed.mn.vici.rekey_child(bed.mn_conn.name, "mh")
    got = bed.mn.vici.wait_sa(
        bed.mn_conn.name,
        lambda s: any(c.name == "mh" and c.spi_in != old_mh.spi_in for c in s.children),
        timeout=10.0,
    )
    print(
        "\n--- VICI rekey of the transport_proxy child:",
        "rekeyed" if got else "NOT rekeyed in 10 s",
        bed.log_lines("mn", mark, "rekey", "not found"),
    )
    if got is not None:  # let the rekeyed pair go (delete_rekeyed_delay) before moving on
        assert bed.mn.vici.wait_sa(
            bed.mn_conn.name,
            lambda s: (
                sum(c.name == "mh" for c in s.children) == 1
                and len(esp(bed.states("mn"), REQID_MH)) == 2
                and len(esp(bed.states("ha"), REQID_MH)) == 2
            ),
            timeout=IKE_WAIT,
        ), bed.diagnostics()
    print("--- MN ip xfrm state after the mh rekey probe:\n" + bed.ip_xfrm_state("mn"))


# --------------------------------------------------------------------------- 2. MIGRATE


def tunnel_policies(which: str, coa: IPv6Address) -> list[XfrmPolicy]:
    """mip6ctl's tunnel policies for the payload child (what render() would own)."""
    home = IPv6Network(f"{HOA}/128")
    anyn = IPv6Network("::/0")
    to_ha = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=HA, src=coa, reqid=REQID_TUNNEL)
    to_mn = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=coa, src=HA, reqid=REQID_TUNNEL)
    from_mn = XfrmSelector(dst=anyn, src=home)
    to_home = XfrmSelector(dst=home, src=anyn)
    if which == "mn":
        return [
            XfrmPolicy(from_mn, Direction.OUT, templates=(to_ha,)),
            XfrmPolicy(to_home, Direction.IN, templates=(to_mn,)),
        ]
    return [
        XfrmPolicy(to_home, Direction.OUT, templates=(to_mn,)),
        XfrmPolicy(from_mn, Direction.IN, templates=(to_ha,)),
        XfrmPolicy(from_mn, Direction.FWD, templates=(to_ha,)),
    ]


def migrations(
    policy: XfrmPolicy, new_coa: IPv6Address, old_coa: IPv6Address | None = None
) -> list[XfrmMigration]:
    """The policy's template endpoints (old CoA <-> HA) -> new CoA <-> HA."""
    (t,) = policy.templates
    assert t.src is not None and t.dst is not None
    src = old_coa if old_coa is not None and t.src != HA else t.src
    dst = old_coa if old_coa is not None and t.dst != HA else t.dst
    new_src = new_coa if src != HA else src
    new_dst = new_coa if dst != HA else dst
    return [XfrmMigration(dst, src, new_dst, new_src, reqid=t.reqid)]


def test_migrate_with_kmaddress_moves_the_ike_sa_and_keeps_every_spi(bed: Bed) -> None:
    assert bed.ha.vici is not None and bed.mn.vici is not None
    for which, xs in (("mn", bed.mn_xfrm), ("ha", bed.ha_xfrm)):
        for r in xs.add_policies(tunnel_policies(which, COA_A)):
            r.raise_for_error()
    before_mn, before_ha = bed.sa("mn"), bed.sa("ha")
    states_before = {w: bed.states(w) for w in ("mn", "ha")}
    inits_before = (bed.mn.count("IKE_SA_INIT"), bed.ha.count("IKE_SA_INIT"))
    jobs_before = (bed.mn.count("creating migrate job"), bed.ha.count("creating migrate job"))
    marks = {w: bed.log_size(w) for w in ("mn", "ha")}

    ip("addr", "add", f"{COA_B}/64", "dev", "m0", "nodad", ns=bed.mn_ns)
    t0 = time.monotonic()
    for which, xs, km in (
        ("mn", bed.mn_xfrm, KmAddress(local=COA_B, remote=HA)),
        ("ha", bed.ha_xfrm, KmAddress(local=HA, remote=COA_B)),
    ):
        for pol in tunnel_policies(which, COA_A):
            moved = xs.migrate(pol.selector, pol.direction, migrations(pol, COA_B), kmaddress=km)
            assert moved is not None
    t_kernel = time.monotonic() - t0
    # charon's migrate jobs run asynchronously: wait (bounded) for both IKE_SAs to show B
    mn_sa = bed.mn.vici.wait_sa(
        bed.mn_conn.name, lambda s: s.local_host == str(COA_B), timeout=IKE_WAIT, interval=0.02
    )
    ha_sa = bed.ha.vici.wait_sa(
        bed.mn_conn.name, lambda s: s.remote_host == str(COA_B), timeout=IKE_WAIT, interval=0.02
    )
    t_charon = time.monotonic() - t0
    bed.figures["MIGRATE x5 (kernel)"] = t_kernel
    bed.figures["MIGRATE -> both IKE_SAs at B (VICI)"] = t_charon
    assert mn_sa is not None and ha_sa is not None, bed.diagnostics()
    jobs = (bed.mn.count("creating migrate job"), bed.ha.count("creating migrate job"))
    print(
        f"\n--- migrate jobs logged (mn, ha): {jobs[0] - jobs_before[0]},"
        f" {jobs[1] - jobs_before[1]}"
    )
    for w in ("mn", "ha"):
        print(f"--- {w} charon.log on MIGRATE:")
        print("\n".join(bed.log_lines(w, marks[w], "migrate", "MIGRATE", "SAD entry", "CHILD_SA")))
    print(
        f"--- IKE SPIs before {before_mn.spis[0]:016x}_i {before_mn.spis[1]:016x}_r, after "
        f"{mn_sa.spis[0]:016x}_i {mn_sa.spis[1]:016x}_r; MN IKE_SA {mn_sa.local_host} <-> "
        f"{mn_sa.remote_host}, HA IKE_SA {ha_sa.local_host} <-> {ha_sa.remote_host}"
    )
    assert jobs[0] - jobs_before[0] == 2 and jobs[1] - jobs_before[1] == 3, bed.diagnostics()
    # the IKE_SA moved, it was not re-created
    assert mn_sa.spis == before_mn.spis and ha_sa.spis == before_ha.spis
    assert (mn_sa.local_host, mn_sa.remote_host) == (str(COA_B), str(HA))
    assert (ha_sa.local_host, ha_sa.remote_host) == (str(HA), str(COA_B))
    assert (bed.mn.count("IKE_SA_INIT"), bed.ha.count("IKE_SA_INIT")) == inits_before
    assert mn_sa.uniqueid == before_mn.uniqueid
    print("--- MN ip xfrm state after MIGRATE:\n" + bed.ip_xfrm_state("mn"))
    for which in ("mn", "ha"):
        now = bed.states(which)
        old_t, new_t = esp(states_before[which], REQID_TUNNEL), esp(now, REQID_TUNNEL)
        assert [s.spi for s in new_t] == [s.spi for s in old_t], which  # migrated, not re-keyed
        assert {COA_B} == {a for s in new_t for a in (s.src, s.dst) if a != HA}, (which, new_t)
        # transport_proxy SAs (HoA <-> HA) are left alone by MIGRATE
        assert esp(now, REQID_MH) == esp(states_before[which], REQID_MH), which
    # charon's view of the CHILD_SA SPIs is unchanged too
    assert [(c.name, c.spi_in, c.spi_out) for c in mn_sa.children] == [
        (c.name, c.spi_in, c.spi_out) for c in before_mn.children
    ]

    # The old address goes; the IKE_SA works from B: a CHILD_SA rekey over it.
    ip("addr", "del", f"{COA_A}/64", "dev", "m0", ns=bed.mn_ns)
    old = {c.name: c.spi_in for c in mn_sa.children}
    t1 = time.monotonic()
    bed.mn.vici.rekey_child(bed.mn_conn.name, "tunnel")
    rekeyed = bed.mn.vici.wait_sa(
        bed.mn_conn.name,
        lambda s: any(
            c.name == "tunnel" and c.state == "INSTALLED" and c.spi_in != old["tunnel"]
            for c in s.children
        ),
        timeout=IKE_WAIT,
        interval=0.02,
    )
    bed.figures["CHILD_SA rekey over the moved IKE_SA"] = time.monotonic() - t1
    assert rekeyed is not None, bed.diagnostics()
    # charon keeps the rekeyed inbound SA for charon.delete_rekeyed_delay (5 s) first
    gone = bed.mn.vici.wait_sa(
        bed.mn_conn.name,
        lambda s: sum(c.name == "tunnel" for c in s.children) == 1,
        timeout=IKE_WAIT,
    )
    bed.figures["rekeyed CHILD_SA deleted (delete_rekeyed_delay)"] = time.monotonic() - t1
    assert gone is not None, bed.diagnostics()
    assert rekeyed.spis == before_mn.spis
    assert (bed.mn.count("IKE_SA_INIT"), bed.ha.count("IKE_SA_INIT")) == inits_before
    for which in ("mn", "ha"):
        tun = esp(bed.states(which), REQID_TUNNEL)
        print(
            f"--- {which} tunnel SAs after rekey:",
            [(hex(s.spi), str(s.src), str(s.dst)) for s in tun],
        )
        assert len(tun) == 2, (which, tun, bed.diagnostics())  # old pair deleted, no leak
        assert {COA_B} == {a for s in tun for a in (s.src, s.dst) if a != HA}, (which, tun)


# --------------------------------------------------------------------------- 3. fallback


def test_fallback_without_migrate_reinitiates_from_the_new_care_of_address(bed: Bed) -> None:
    """No MIGRATE (Ubuntu's kernels): terminate + initiate from C over VICI, timed."""
    assert bed.mn.vici is not None
    before = bed.sa("mn")
    inits_before = bed.mn.count("generating IKE_SA_INIT request")
    ip("addr", "add", f"{COA_C}/64", "dev", "m0", "nodad", ns=bed.mn_ns)
    r = bed.mn.vici.reinitiate(bed.mn_conn, COA_C, timeout=IKE_WAIT)
    bed.figures["fallback terminate"] = r.terminate_s
    bed.figures["fallback load-conn"] = r.load_s
    bed.figures["fallback initiate (2 children)"] = r.initiate_s
    bed.figures["fallback total"] = r.total_s
    print(
        f"\n--- fallback: terminate {r.terminate_s * 1000:.0f} ms, load {r.load_s * 1000:.0f} ms,"
        f" initiate {r.initiate_s * 1000:.0f} ms, total {r.total_s * 1000:.0f} ms (emulated)"
    )
    sa = r.sa
    assert sa is not None and established(sa, ("mh", "tunnel")), bed.diagnostics()
    assert sa.spis != before.spis  # a new IKE_SA: the full exchange ran again
    assert bed.mn.count("generating IKE_SA_INIT request") == inits_before + 1
    assert (sa.local_host, sa.remote_host) == (str(COA_C), str(HA))
    ha_sa = bed.ha.vici.wait_sa(  # type: ignore[union-attr]
        bed.mn_conn.name, lambda s: s.spis == sa.spis and established(s, ("mh", "tunnel")),
        timeout=IKE_WAIT,
    )  # fmt: skip
    assert ha_sa is not None and ha_sa.remote_host == str(COA_C), bed.diagnostics()
    assert len(bed.ha.vici.list_sas(bed.mn_conn.name)) == 1  # type: ignore[union-attr]
    for which in ("mn", "ha"):
        tun = esp(bed.states(which), REQID_TUNNEL)
        mh = esp(bed.states(which), REQID_MH)
        assert len(tun) == 2 and len(mh) == 2, (which, bed.diagnostics())
        assert {COA_C} == {a for s in tun for a in (s.src, s.dst) if a != HA}, (which, tun)
    print("--- MN ip xfrm state after the fallback:\n" + bed.ip_xfrm_state("mn"))


# --------------------------------------------------------------------------- 4. the order


def mh_policies(which: str) -> list[XfrmPolicy]:
    """mip6ctl's transport-mode policies for the mh child (BU/BA: HoA <-> HA, MH)."""
    home, agent = f"{HOA}/128", f"{HA}/128"
    to_ha = XfrmTemplate(XfrmProto.ESP, Mode.TRANSPORT, dst=HA, src=HOA, reqid=REQID_MH)
    to_mn = XfrmTemplate(XfrmProto.ESP, Mode.TRANSPORT, dst=HOA, src=HA, reqid=REQID_MH)
    up, down = XfrmSelector.mobility(home, agent), XfrmSelector.mobility(agent, home)
    if which == "mn":
        return [
            XfrmPolicy(up, Direction.OUT, templates=(to_ha,)),
            XfrmPolicy(down, Direction.IN, templates=(to_mn,)),
        ]
    return [
        XfrmPolicy(down, Direction.OUT, templates=(to_mn,)),
        XfrmPolicy(up, Direction.IN, templates=(to_ha,)),
    ]


def rekey_and_wait(bed: Bed, child: str, timeout: float) -> tuple[IkeSaInfo | None, float]:
    assert bed.mn.vici is not None
    old = bed.sa("mn").child(child)
    assert old is not None
    t0 = time.monotonic()
    bed.mn.vici.rekey_child(bed.mn_conn.name, child)
    done = bed.mn.vici.wait_sa(
        bed.mn_conn.name,
        lambda s: any(
            c.name == child and c.state == "INSTALLED" and c.spi_in != old.spi_in
            for c in s.children
        ),
        timeout=timeout,
        interval=0.02,
    )
    return done, time.monotonic() - t0


def test_before_the_home_agent_migrates_and_the_transport_proxy_child(bed: Bed) -> None:
    """Two limits of charon with MIGRATE, measured.

    (a) Only the MN has migrated (to D) when its IKE traffic reaches the HA:
    charon answers at the request's source (D), so IKE works, but without
    MOBIKE/NAT it does not move its IKE_SA (remote stays C) and installs the
    rekeyed tunnel CHILD_SA towards C; the HA's own MIGRATE moves them to D.
    (b) charon's migrate job updates only the CHILD_SA of the migrated reqid;
    the transport_proxy child stays registered under the old IKE address and
    a VICI rekey of it then fails ("not found for rekey").  A MIGRATE of the
    transport policy (old = new addresses HoA/HA, reqid of mh) with
    KMADDRESS makes charon re-register it: the rekey works again."""
    assert bed.mn.vici is not None and bed.ha.vici is not None
    for which, xs in (("mn", bed.mn_xfrm), ("ha", bed.ha_xfrm)):
        for r in xs.update_policies(tunnel_policies(which, COA_C)):
            r.raise_for_error()
        for r in xs.add_policies(mh_policies(which)):
            r.raise_for_error()
    ip("addr", "add", f"{COA_D}/64", "dev", "m0", "nodad", ns=bed.mn_ns)
    before = bed.sa("mn")
    km_mn = KmAddress(local=COA_D, remote=HA)
    for pol in tunnel_policies("mn", COA_C):
        bed.mn_xfrm.migrate(
            pol.selector, pol.direction, migrations(pol, COA_D, COA_C), kmaddress=km_mn
        )
    assert bed.mn.vici.wait_sa(
        bed.mn_conn.name, lambda s: s.local_host == str(COA_D), timeout=IKE_WAIT, interval=0.02
    )  # fmt: skip
    assert bed.sa("ha").remote_host == str(COA_C)  # the HA has not moved yet
    ip("addr", "del", f"{COA_C}/64", "dev", "m0", ns=bed.mn_ns)  # C is gone: the MN moved

    # (a)
    mark = bed.log_size("ha")
    done, took = rekey_and_wait(bed, "tunnel", IKE_WAIT)
    bed.figures["tunnel rekey from D before the HA migrated"] = took
    assert done is not None, bed.diagnostics()
    deadline = time.monotonic() + 10.0  # charon's log line may trail the packet
    while True:
        lines = bed.log_lines("ha", mark, "received packet", "sending packet", "retransmit")
        if any("sending packet" in ln for ln in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print("\n--- HA charon.log while only the MN had migrated:\n" + "\n".join(lines))
    assert done.spis == before.spis
    sent = [ln for ln in lines if "sending packet" in ln]
    assert sent and all(f"to {COA_D}[" in ln for ln in sent), lines  # answered at D
    ha_sa = bed.sa("ha")
    new_t = done.child("tunnel")
    assert new_t is not None
    ha_new = [s for s in bed.states("ha") if s.spi in (new_t.spi_in, new_t.spi_out)]
    print(
        f"--- HA IKE_SA remote {ha_sa.remote_host}; MN's new tunnel SPIs in {new_t.spi_in:#x} "
        f"out {new_t.spi_out:#x}; HA tunnel SAs:",
        [(hex(s.spi), str(s.src), str(s.dst)) for s in esp(bed.states("ha"), REQID_TUNNEL)],
    )
    assert ha_sa.remote_host == str(COA_C)  # charon did not follow the request's source
    assert {a for s in ha_new for a in (s.src, s.dst) if a != HA} == {COA_C}, ha_new
    for pol in tunnel_policies("ha", COA_C):
        bed.ha_xfrm.migrate(
            pol.selector, pol.direction, migrations(pol, COA_D, COA_C),
            kmaddress=KmAddress(local=HA, remote=COA_D),
        )  # fmt: skip
    ha_sa2 = bed.ha.vici.wait_sa(
        bed.mn_conn.name, lambda s: s.remote_host == str(COA_D), timeout=IKE_WAIT
    )
    assert ha_sa2 is not None and ha_sa2.spis == before.spis
    ha_moved = [s for s in bed.states("ha") if s.spi in (new_t.spi_in, new_t.spi_out)]
    print(
        "--- HA tunnel SAs after its MIGRATE:",
        [(hex(s.spi), str(s.src), str(s.dst)) for s in esp(bed.states("ha"), REQID_TUNNEL)],
    )
    assert {a for s in ha_moved for a in (s.src, s.dst) if a != HA} == {COA_D}, ha_moved

    # (b)
    mark = bed.log_size("mn")
    done, took = rekey_and_wait(bed, "mh", 10.0)
    refused = bed.log_lines("mn", mark, "not found for rekey")
    print("--- VICI rekey of mh after MIGRATE:", "rekeyed" if done else "NOT rekeyed", refused)
    assert done is None and refused, bed.diagnostics()
    for pol in mh_policies("mn"):
        (t,) = pol.templates
        assert t.src is not None and t.dst is not None
        mig = [XfrmMigration(t.dst, t.src, t.dst, t.src, mode=Mode.TRANSPORT, reqid=t.reqid)]
        bed.mn_xfrm.migrate(pol.selector, pol.direction, mig, kmaddress=km_mn, guard=False)
    time.sleep(1.0)  # the migrate job is asynchronous
    done, took = rekey_and_wait(bed, "mh", IKE_WAIT)
    print(
        "--- VICI rekey of mh after a transport MIGRATE (old = new) with KMADDRESS:",
        "rekeyed" if done else "NOT rekeyed",
        f"{took * 1000:.0f} ms",
    )
    assert done is not None, bed.diagnostics()
    assert done.spis == before.spis
