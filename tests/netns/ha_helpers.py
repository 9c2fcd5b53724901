"""Helpers for the home agent's netns tests: the daemon in the testbed, scapy mobile nodes.

`HaDaemon` runs ``mip6ctl daemon`` inside the testbed's HA namespace with a
copy of ``examples/testbed/ha`` (optionally edited), a state directory and a
control socket in a temporary directory, and kills it (and only it) on
``stop()``.  `Station` is a tester namespace on one of the testbed's bridges
holding static addresses (a care-of address on br-f1/br-f2, a home address on
br-home): scapy builds packets, an IPPROTO_RAW socket opened inside the
namespace sends them, an AF_PACKET socket bound to the tester's interface
captures what comes back (scapy has no libpcap here), and scapy dissects.
Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, ClassVar

from mip6ctl.testbed import Testbed
from mip6ctl.testbed.process import stop_process, tail_lines
from tests import nsutil

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    HAO,
    MIP6MH_BA,
    MIP6MH_BE,
    MIP6MH_BU,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_HA = REPO / "examples" / "testbed" / "ha"
EXAMPLE_CN = REPO / "examples" / "testbed" / "cn"
HA = IPv6Address("2001:db8:1::1")
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
ROUTE_TABLE = 6275  # [kernel] route_table default: the binding routes live here


# --------------------------------------------------------------------------- packets


def binding_update(
    hoa: IPv6Address | str,
    coa: IPv6Address | str,
    seq: int,
    lifetime: int = 100,
    *,
    dst: IPv6Address | str = HA,
    flags: str = "AH",
    **mh: Any,
) -> IPv6:
    """A BU from ``coa`` with a Home Address option (none when coa == hoa).

    ``lifetime`` in 4 s units; ``flags`` as scapy spells them; ``mh`` sets
    any other MIP6MH_BU field (``nh``, ``len``, ``cksum`` for malformed ones).
    """
    pkt = IPv6(src=str(coa), dst=str(dst))
    if IPv6Address(hoa) != IPv6Address(coa):
        pkt = pkt / IPv6ExtHdrDestOpt(options=[HAO(hoa=str(hoa))])
    return pkt / MIP6MH_BU(seq=seq % 65536, flags=flags, mhtime=lifetime, **mh)


def ba_home_address(p: IPv6) -> str:
    """The home address a BA is for: its type 2 routing header's, else its destination."""
    if IPv6ExtHdrRouting in p and p[IPv6ExtHdrRouting].type == 2:
        return str(p[IPv6ExtHdrRouting].addresses[0])
    return str(p.dst)


def mh_checksum_ok(p: IPv6) -> bool:
    """The MH checksum is right, by two implementations: the project's and scapy's.

    RFC 6275 §6.1.1: the pseudo-header carries the final destination, i.e. the
    type 2 routing header's address when there is one.
    """
    from scapy.layers.inet6 import in6_chksum

    from mip6ctl.wire.checksum import verify_upper_layer_checksum

    dst = IPv6Address(p.dst)
    if IPv6ExtHdrRouting in p and p[IPv6ExtHdrRouting].type == 2:
        dst = IPv6Address(p[IPv6ExtHdrRouting].addresses[0])
    layer = p[MIP6MH_BA] if MIP6MH_BA in p else p[MIP6MH_BE]
    zeroed = bytearray(raw(layer))
    zeroed[4:6] = b"\0\0"
    scapy_ok = layer.cksum == in6_chksum(135, layer, bytes(zeroed))
    return scapy_ok and verify_upper_layer_checksum(IPv6Address(p.src), dst, 135, raw(layer))


def ip(tb: Testbed, node: str, *args: str) -> str:
    """``ip -n <ns> ...`` output (bounded)."""
    out = subprocess.run(
        ["ip", "-n", tb.ns(node), *args], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout


# --------------------------------------------------------------------------- stations


class Station:
    """A tester namespace on ``link`` with static addresses, a raw sender and a capture."""

    def __init__(
        self,
        tb: Testbed,
        link: str,
        tag: str,
        addresses: Iterable[str] = (),
        gateway: str | None = None,
    ) -> None:
        self.tb, self.tag, self.ifname = tb, tag, f"{tag}0"
        self.ns = tb.add_tester(link, tag)
        self.addresses = [IPv6Address(a) for a in addresses]
        for a in self.addresses:
            self.add_address(a)
        if gateway is not None:
            ip(tb, tag, "-6", "route", "add", "default", "via", gateway, "dev", self.ifname)
        with tb.inside(tag):
            self.tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
            self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            self.rx.bind((self.ifname, ETH_P_IPV6))

    @property
    def address(self) -> IPv6Address:
        return self.addresses[0]

    def add_address(self, addr: IPv6Address | str, plen: int = 64) -> None:
        ip(self.tb, self.tag, "-6", "addr", "add", f"{addr}/{plen}", "dev", self.ifname, "nodad")

    def del_address(self, addr: IPv6Address | str, plen: int = 64) -> None:
        ip(self.tb, self.tag, "-6", "addr", "del", f"{addr}/{plen}", "dev", self.ifname)

    def send(self, pkt: IPv6 | bytes) -> None:
        data = pkt if isinstance(pkt, bytes) else raw(pkt)
        self.tx.sendto(data, (socket.inet_ntop(socket.AF_INET6, data[24:40]), 0))

    def drain(self) -> None:
        while select.select([self.rx], [], [], 0)[0]:
            self.rx.recv(65536)

    def capture(self, match: Callable[[IPv6], bool], timeout: float, count: int = 1) -> list[IPv6]:
        """Incoming packets matching ``match`` until ``count`` came or ``timeout`` passed."""
        found: list[IPv6] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and (left := deadline - time.monotonic()) > 0:
            if not select.select([self.rx], [], [], left)[0]:
                break
            data, addr = self.rx.recvfrom(65536)
            if addr[2] == PACKET_OUTGOING:
                continue
            p = IPv6(data)
            if match(p):
                found.append(p)
        return found

    def exchange(
        self, pkt: IPv6, match: Callable[[IPv6], bool], timeout: float = 5.0
    ) -> IPv6 | None:
        """Send ``pkt``, return the first matching answer (None after ``timeout``)."""
        self.drain()
        self.send(pkt)
        got = self.capture(match, timeout)
        return got[0] if got else None

    def ba(self, pkt: IPv6, timeout: float = 5.0) -> IPv6 | None:
        """Send a BU, return the BA for its home address (not matched on the sequence
        number: a BA 135 carries the last accepted one)."""
        hoa = pkt[HAO].hoa if HAO in pkt else pkt.src
        return self.exchange(pkt, lambda p: MIP6MH_BA in p and ba_home_address(p) == hoa, timeout)

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


# --------------------------------------------------------------------------- the daemon


class HaDaemon:
    """``mip6ctl daemon`` in ``node``'s namespace with a copied, optionally edited configuration."""

    def __init__(
        self,
        tb: Testbed,
        tmp: Path,
        *,
        node: str = "ha",
        example: Path = EXAMPLE_HA,
        extra: str = "",
        replace: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.tb, self.node = tb, node
        self.config = tmp / "config"
        shutil.copytree(example, self.config)
        main = self.config / "mip6.toml"
        text = main.read_text()
        for old, new in (replace or {}).items():
            assert old in text, f"{old!r} not in {main}"
            text = text.replace(old, new)
        main.write_text(text + extra)
        for name, content in (files or {}).items():
            (self.config / name).write_text(content)
        self.state = tmp / "state"
        self.state.mkdir()
        self.socket = tmp / "control.sock"
        self.log = tmp / "daemon.log"
        self.proc: subprocess.Popen[Any] | None = None

    def argv(self) -> list[str]:
        """The daemon's command line (a subclass may wrap it, e.g. in ``unshare``)."""
        argv = [sys.executable, "-m", "mip6ctl", "daemon", "-c", str(self.config)]
        return [*argv, "--state-dir", str(self.state), "--socket", str(self.socket)]

    def start(self, timeout: float = 20.0) -> HaDaemon:
        with open(self.log, "ab") as log:
            self.proc = self.tb.exec(self.node, self.argv(), stdout=log, stderr=subprocess.STDOUT)
        timeout *= nsutil.SLOWDOWN
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                doc = self.rpc("status", timeout=1.0)
            except Exception:
                time.sleep(0.05)
                continue
            ready = {c["type"]: c["status"] for c in doc["conditions"]}.get("Ready")
            if ready == "True":
                return self
            time.sleep(0.05)
        raise AssertionError(f"the daemon did not become ready in {timeout} s:\n{self.tail()}")

    def rpc(self, method: str, params: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
        from mip6ctl.daemon.control import call

        return call(self.socket, method, params or {}, timeout=timeout)

    def status_cli(self) -> dict[str, Any]:
        """``mip6ctl status --socket S --json`` (the user-facing command), parsed."""
        out = subprocess.run(
            [sys.executable, "-m", "mip6ctl", "status", "--socket", str(self.socket), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)

    def bindings(self) -> dict[str, dict[str, Any]]:
        rows = self.rpc("status")["binding_cache"]["rows"]
        return {r["home_address"]: r for r in rows}

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; only this process, by its pid."""
        proc, self.proc = self.proc, None
        stop_process(proc, 10.0)

    def tail(self, n: int = 40) -> str:
        lines = tail_lines(self.log, n)
        return "(no log)" if lines is None else "\n".join(lines)


# --------------------------------------------------------------------------- configuration edits


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` the way Ansible does: a temporary file in the same directory
    (``<name>.tmp``, which the loader and the watcher ignore), then ``rename`` over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def conditions(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A status document's conditions by type."""
    return {c["type"]: c for c in doc["conditions"]}


# --------------------------------------------------------------- kernel and traffic watchers


class KernelEvents:
    """rtnetlink notifications of one namespace: IPv6 routes, neighbours and IPv6 rules.

    Opened (and subscribed) at construction, so nothing between construction
    and `read()` is missed; a receive-buffer overflow is reported, never hidden.
    """

    RTMGRP_NEIGH, RTMGRP_IPV6_ROUTE, RTNLGRP_IPV6_RULE = 0x4, 0x400, 19
    NAMES: ClassVar[dict[int, str]] = {
        24: "newroute",
        25: "delroute",
        28: "newneigh",
        29: "delneigh",
        32: "newrule",
        33: "delrule",
    }

    def __init__(self, tb: Testbed, node: str = "ha") -> None:
        with tb.inside(node):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
        self.sock.bind((0, self.RTMGRP_NEIGH | self.RTMGRP_IPV6_ROUTE))
        self.sock.setsockopt(270, 1, self.RTNLGRP_IPV6_RULE)  # NETLINK_ADD_MEMBERSHIP
        self.sock.setblocking(False)
        self.overflow = False

    def read(self) -> list[tuple[str, str, int | None, bool]]:
        """(kind, destination, table, proxy) of every notification so far."""
        out = []
        while True:
            try:
                buf = self.sock.recv(1 << 20)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.overflow = True
                continue
            off = 0
            while off + 16 <= len(buf):
                length, kind = struct.unpack_from("=IH", buf, off)
                if length < 16:
                    break
                if kind in self.NAMES:
                    out.append(self._parse(kind, buf[off + 16 : off + length]))
                off += (length + 3) & ~3

    def _parse(self, kind: int, body: bytes) -> tuple[str, str, int | None, bool]:
        name = self.NAMES[kind]
        attrs: dict[int, bytes] = {}
        off = 12  # rtmsg, ndmsg and fib_rule_hdr are all 12 octets
        while off + 4 <= len(body):
            alen, atype = struct.unpack_from("=HH", body, off)
            if alen < 4:
                break
            attrs[atype & 0x3FFF] = body[off + 4 : off + alen]
            off += (alen + 3) & ~3
        dst = attrs.get(1, b"")
        addr = str(IPv6Address(dst)) if len(dst) == 16 else "-"
        table = struct.unpack("=I", attrs[15])[0] if 15 in attrs and "neigh" not in name else None
        proxy = "neigh" in name and bool(body[10] & 0x08)  # ndm_flags & NTF_PROXY
        return name, addr, table, proxy

    def close(self) -> None:
        self.sock.close()


def mip6_objects(events: list[tuple[str, str, int | None, bool]]) -> list[tuple]:
    """Notifications about the daemon's objects: binding/decap routes, rules, proxy entries."""
    ours = (ROUTE_TABLE, ROUTE_TABLE + 1)
    return [
        e
        for e in events
        if ("route" in e[0] and e[2] in ours) or "rule" in e[0] or ("neigh" in e[0] and e[3])
    ]


def icmp_socket(tb: Testbed, node: str) -> socket.socket:
    with tb.inside(node):
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setblocking(False)
    return s


def echo(ident: int, seq: int, tag: bytes) -> bytes:
    return struct.pack("!BBHHH", 128, 0, 0, ident, seq) + tag  # the kernel fills the checksum


def received_echo(s: socket.socket, tag: bytes, timeout: float) -> str | None:
    """Source address of an echo request carrying ``tag`` seen by ``s`` within ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            return None
        data, addr = s.recvfrom(2048)
        if data[:1] == b"\x80" and data[8:] == tag:
            return addr[0]
    return None


class PingStream(threading.Thread):
    """Echo requests from ``node`` to ``dst`` every ``interval`` s, each seq's send time kept."""

    def __init__(self, tb: Testbed, node: str, dst: IPv6Address, interval: float = 0.005):
        super().__init__(daemon=True)
        self.sock = icmp_socket(tb, node)
        self.dst, self.interval = dst, interval
        self.echo_id = (os.getpid() + 1) & 0xFFFF
        self.sent: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set() and len(self.sent) < 65535:
            seq = len(self.sent)
            self.sent.append(time.monotonic())
            with contextlib.suppress(OSError):
                self.sock.sendto(echo(self.echo_id, seq, b"stream"), (str(self.dst), 0))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.sock.close()


def routes_of(tb: Testbed) -> list[str]:
    out = ip(tb, "ha", "-6", "route", "show", "table", str(ROUTE_TABLE))
    return [line for line in out.splitlines() if line.strip()]


def reverse_tunnel_pairs(tb: Testbed) -> set[tuple[IPv6Address, IPv6Address]]:
    """(care-of, home) pairs in the HA's §10.4.5 nf_tables set."""
    from mip6ctl.kernel import nft, nft_state

    with tb.inside("ha"):
        session = nft.NftSession()
    with session:
        return {
            (IPv6Address(o.care_of), IPv6Address(o.home))
            for o in nft_state.read_table(session)
            if o.key[0] == "nft-element"
        }


def kernel_snapshot(tb: Testbed) -> tuple[list[str], ...]:
    """Binding routes, proxy entries, rules and reverse-tunnel pairs, sorted: what a
    restart must leave alone."""
    proxy = ip(tb, "ha", "-6", "neigh", "show", "proxy").splitlines()
    rules = ip(tb, "ha", "-6", "rule", "show").splitlines()
    pairs = [f"{c} {h}" for c, h in reverse_tunnel_pairs(tb)]
    return sorted(routes_of(tb)), sorted(proxy), sorted(rules), sorted(pairs)


def arrived_sequences(station: Station, ident: int) -> set[int]:
    """Sequence numbers of the stream's echo requests that reached the care-of address
    tunnelled (outer next header 41, inner ICMPv6 echo request with ``ident``)."""
    seqs: set[int] = set()
    # radvd's RAs never let the link go quiet: stop 0.3 s after the last echo request
    last, deadline = time.monotonic(), time.monotonic() + 10.0
    while (now := time.monotonic()) < deadline and now - last < 0.3:
        if not select.select([station.rx], [], [], 0.3)[0]:
            break
        data = station.rx.recv(65536)
        if len(data) >= 88 and data[6] == 41 and data[46] == 58 and data[80] == 128:
            rid, rseq = struct.unpack_from("!HH", data, 84)
            if rid == ident:
                seqs.add(rseq)
                last = time.monotonic()
    return seqs
