"""The guest kernel has what the host kernel lacks (DESIGN.md, "Kernel facts").

Each assertion fails on a kernel without the feature (CONFIG_IPV6_TUNNEL,
CONFIG_IPV6_MIP6, CONFIG_INET6_ESP): run this file on the host with
MIP6_VM_GUEST=1 to see them fail.  All network state lives in namespaces
created by the test and removed after it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path

import pytest

from tests import nsutil

pytestmark = pytest.mark.usefixtures("mip6_modules")

IPPROTO_MH = 135
HOA = "2001:db8:1::100"  # mobile node's home address
HA = "2001:db8:1::1"  # home agent
COA = "2001:db8:3::100"  # care-of address
CN = "2001:db8:2::1"  # correspondent node
ESP_KEYS = [
    *("enc", "cbc(aes)", "0x" + "11" * 16),
    *("auth-trunc", "hmac(sha256)", "0x" + "22" * 32, "128"),
]


def ip(*args: str, ns: str | None = None) -> str:
    """iproute2 (in namespace `ns`); a failure names the command and the kernel's answer."""
    proc = nsutil.ip(*args, ns=ns, check=False)
    assert proc.returncode == 0, f"ip {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def _xfrm_diagnostics(ns: str) -> str:
    """Non-zero XFRM error counters and IPv6 input errors of namespace `ns`."""
    out = nsutil.run("sh", "-c", "cat /proc/net/xfrm_stat /proc/net/snmp6", ns=ns, check=False)
    bad = [
        line
        for line in out.stdout.splitlines()
        if line.split()[-1] != "0" and ("Xfrm" in line or ("Ip6In" in line and "Err" in line))
    ]
    return "counters: " + ("; ".join(bad) or "none non-zero")


def _type2_rthdr(addr: str) -> bytes:
    """RFC 6275 6.4 type 2 routing header: hdr ext len 2, segments left 1."""
    return struct.pack("!BBBB4x", 0, 2, 2, 1) + socket.inet_pton(socket.AF_INET6, addr)


def test_guest_kernel_has_mip6_built_in_or_loaded():
    assert os.environ.get("MIP6_VM_GUEST") == "1"
    # Debian builds CONFIG_IPV6_MIP6=y: listed in modules.builtin, not in /sys/module.
    builtin = Path(f"/lib/modules/{os.uname().release}/modules.builtin")
    listed = builtin.read_text().split() if builtin.exists() else []
    assert "kernel/net/ipv6/mip6.ko" in listed or Path("/sys/module/mip6").is_dir(), (
        "no mip6 in this kernel (CONFIG_IPV6_MIP6)"
    )


def test_ip6tnl_device_can_be_created(netns):
    ns = netns("tnl")
    ip("-6", "tunnel", "add", "m6t0", "mode", "ip6ip6", "local", HA, "remote", COA, ns=ns)
    ip("link", "set", "m6t0", "up", ns=ns)
    ip("-6", "route", "add", f"{HOA}/128", "dev", "m6t0", ns=ns)
    details = ip("-d", "link", "show", "m6t0", ns=ns)
    assert "ip6tnl ip6ip6" in details
    assert f"remote {COA}" in details
    assert "m6t0" in ip("-6", "route", "show", f"{HOA}/128", ns=ns)


@pytest.mark.parametrize("proto", ["route2", "hao"])
def test_route_optimisation_xfrm_state_with_coa(netns, proto):
    ns = netns(proto)
    # route2: packets to the HoA get a type 2 routing header, sent to the CoA;
    # hao: packets from the HoA carry the Home Address option, source = CoA.
    src, dst = (CN, HOA) if proto == "route2" else (HOA, CN)
    ip("xfrm", "state", "add", "src", src, "dst", dst, "proto", proto,
       "mode", "ro", "coa", COA, ns=ns)  # fmt: skip
    states = ip("xfrm", "state", "list", ns=ns)
    assert f"proto {proto}" in states
    assert f"coa {COA}" in states
    assert "mode ro" in states


def test_esp_transport_state_can_be_added(netns):
    ns = netns("esp")
    ip("xfrm", "state", "add", "src", HOA, "dst", HA, "proto", "esp", "spi", "0x1000",
       "reqid", "1", "mode", "transport", *ESP_KEYS, ns=ns)  # fmt: skip
    states = ip("xfrm", "state", "list", ns=ns)
    assert "proto esp spi 0x00001000" in states
    assert "mode transport" in states


def test_esp_transport_protects_traffic_between_namespaces(netns):
    """Two namespaces over veth; UDP between them goes through ESP states both ways."""
    a, b = netns("espa"), netns("espb")
    ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
    for ns, dev, addr in ((a, "va", HOA), (b, "vb", HA)):
        ip("-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad", ns=ns)
        ip("link", "set", dev, "up", ns=ns)
    for ns in (a, b):
        for src, dst, spi in ((HOA, HA, "0x1000"), (HA, HOA, "0x1001")):
            ip("xfrm", "state", "add", "src", src, "dst", dst, "proto", "esp", "spi", spi,
               "mode", "transport", *ESP_KEYS, ns=ns)  # fmt: skip
    for ns, me, peer in ((a, HOA, HA), (b, HA, HOA)):
        for d, s_, t in (("out", me, peer), ("in", peer, me)):
            ip("xfrm", "policy", "add", "dir", d, "src", f"{s_}/128", "dst", f"{t}/128",
               "proto", "udp", "tmpl", "src", s_, "dst", t, "proto", "esp",
               "mode", "transport", ns=ns)  # fmt: skip
    with nsutil.inside(b):
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with nsutil.inside(a):
        tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind((HA, 4000))
        rx.settimeout(10)
        tx.sendto(b"binding-update", (HA, 4000))
        data, peer = rx.recvfrom(100)
    assert data == b"binding-update" and peer[0] == HOA
    # The packet really went through ESP: the outbound state counted it.
    stats = ip("-s", "xfrm", "state", "get", "src", HOA, "dst", HA, "proto", "esp",
               "spi", "0x1000", ns=a)  # fmt: skip
    assert "1(packets)" in stats.replace(" ", ""), stats


def test_mh_raw_socket_accepts_type2_routing_header(netns):
    """Sticky IPV6_RTHDR of type 2 is accepted only with CONFIG_IPV6_MIP6 (EINVAL otherwise)."""
    ns = netns("mh")
    with nsutil.inside(ns):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
    with s:
        # The kernel fills the MH checksum (IPV6_CHECKSUM offset 4) for this protocol.
        assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_CHECKSUM) == 4
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, _type2_rthdr(HOA))
        except OSError as exc:  # pragma: no cover - the failure this test exists for
            assert exc.errno != errno.EINVAL, "type 2 routing header refused: no CONFIG_IPV6_MIP6"
            raise


def test_type2_routing_header_is_delivered_to_the_home_address(netns):
    """The route-optimised receive path: CN -> CoA with a type 2 RH carrying the HoA.

    The kernel processes the type 2 routing header only when the HoA is a local
    `home` address and a route2 XFRM state (src CN, dst HoA, coa CoA) exists;
    then it delivers the Mobility Header to raw IPPROTO_MH sockets with the HoA
    as destination.  The host kernel drops such packets (DESIGN.md).
    """
    ns = netns("rh2")
    ip("-6", "addr", "add", f"{HOA}/128", "dev", "lo", "home", "nodad", ns=ns)
    for addr in (COA, CN):
        ip("-6", "addr", "add", f"{addr}/128", "dev", "lo", "nodad", ns=ns)
    ip("xfrm", "state", "add", "src", CN, "dst", HOA, "proto", "route2",
       "mode", "ro", "coa", COA, ns=ns)  # fmt: skip
    # Without an inbound policy naming it, a packet that went through a
    # non-transport (ro) state is rejected by the policy check (XfrmInNoPols).
    ip("xfrm", "policy", "add", "dir", "in", "src", f"{CN}/128", "dst", f"{HOA}/128",
       "tmpl", "src", CN, "dst", HOA, "proto", "route2", "mode", "ro", "level", "use",
       ns=ns)  # fmt: skip
    with nsutil.inside(ns):
        rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
    with rx, tx:
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVRTHDR, 1)
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        rx.settimeout(10)
        tx.bind((CN, 0))
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RTHDR, _type2_rthdr(COA))
        # Binding Refresh Request: payload proto 59 (none), length 0, type 0; the
        # kernel fills the checksum (offset 4) over the final destination, the HoA.
        brr = struct.pack("!BBBBHH", 59, 0, 0, 0, 0, 0)
        tx.sendto(brr, (HOA, 0))
        try:
            data, anc, _flags, peer = rx.recvmsg(128, 256)
        except TimeoutError:
            pytest.fail("no MH delivered to the HoA; " + _xfrm_diagnostics(ns))
    assert data[:4] == brr[:4] and peer[0] == CN
    cmsgs = {t: d for _lvl, t, d in anc}
    dst = socket.inet_ntop(socket.AF_INET6, cmsgs[socket.IPV6_PKTINFO][:16])
    assert dst == HOA
    rthdr = cmsgs[socket.IPV6_RTHDR]
    assert rthdr[2] == 2 and rthdr[3] == 0, rthdr.hex()  # type 2, segments left 0
    assert socket.inet_ntop(socket.AF_INET6, rthdr[8:24]) == COA
