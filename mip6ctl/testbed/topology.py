"""The `Testbed` class: build the reference topology with netlink, move mobile nodes, tear down.

See the package docstring (`mip6ctl.testbed`) for the picture, the naming and
the cleanup guarantees.  Everything here talks to the kernel through pyroute2
and /proc; nothing shells out to iproute2.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from mip6ctl.testbed import nsops
from mip6ctl.testbed import radvd as radvd_conf

if TYPE_CHECKING:
    from pyroute2 import IPRoute

PREFIX_BASE = "m6tb"
RUN_DIR = Path("/run/mip6ctl-testbed")
STATE_FILE = "state.json"
STATE_VERSION = 1

#: link name (as used by `move`) -> bridge in the switch namespace
LINKS = {"home": "br-home", "f1": "br-f1", "f2": "br-f2"}
HOME_PREFIX = ipaddress.IPv6Network("2001:db8:1::/64")
FOREIGN_PREFIXES = {
    "f1": ipaddress.IPv6Network("2001:db8:a::/64"),
    "f2": ipaddress.IPv6Network("2001:db8:b::/64"),
}
#: the network a mobile node's SLAAC address comes from on each link
LINK_PREFIXES = {"home": HOME_PREFIX, **FOREIGN_PREFIXES}
HA_HOME_ADDRESS = "2001:db8:1::1"
HA_CORE_ADDRESS = "2001:db8:ff01::1"
CORE_HA_ADDRESS = "2001:db8:ff01::ff"
CN_ADDRESS = "2001:db8:c::2"
SWITCH = "sw"
MN_IFNAME = "mn0"

#: static addresses: node -> [(interface, address/prefixlen)]
ADDRESSES: dict[str, list[tuple[str, str]]] = {
    "ha": [("home0", f"{HA_HOME_ADDRESS}/64"), ("core0", f"{HA_CORE_ADDRESS}/64")],
    "core": [
        ("ha0", f"{CORE_HA_ADDRESS}/64"),
        ("f1", "2001:db8:a::1/64"),
        ("f2", "2001:db8:b::1/64"),
        ("cn0", "2001:db8:c::1/64"),
    ],
    "cn": [("core0", f"{CN_ADDRESS}/64")],
}
#: static routes: node -> [(destination, gateway)]
ROUTES: dict[str, list[tuple[str, str]]] = {
    "ha": [("::/0", CORE_HA_ADDRESS)],
    "core": [(str(HOME_PREFIX), HA_CORE_ADDRESS)],
    "cn": [("::/0", "2001:db8:c::1")],
}
#: point-to-point veth pairs between nodes: (node, ifname, peer node, peer ifname)
P2P_LINKS = [("ha", "core0", "core", "ha0"), ("core", "cn0", "cn", "core0")]
#: node interfaces whose peer sits on a bridge in the switch: (node, ifname, link)
BRIDGED = [("ha", "home0", "home"), ("core", "f1", "f1"), ("core", "f2", "f2")]

# Duplicate address detection is off everywhere: every address in the testbed is
# unique by construction, and DAD would hold each new address (static or SLAAC)
# tentative for a second, which is the dominant delay after a move.
_NO_DAD = {"net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0}
_ROUTER = {
    **_NO_DAD,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv6.conf.default.forwarding": 1,
}
_HOST_STATIC = {
    **_NO_DAD,
    "net.ipv6.conf.all.accept_ra": 0,
    "net.ipv6.conf.default.accept_ra": 0,
}
# The mobile node is a host that configures itself from RAs.  Its neighbour
# solicitations are retransmitted every 100 ms (not 1 s) and a stale entry is
# probed at once, so the router it left is found unreachable in ~0.3 s rather
# than ~3-8 s, as the radvd intervals shorten router discovery.
_MOBILE = {
    **_NO_DAD,
    "net.ipv6.conf.all.forwarding": 0,
    "net.ipv6.conf.default.accept_ra": 1,
    "net.ipv6.conf.default.autoconf": 1,
}
# (Per interface: a non-initial namespace has no net.ipv6.neigh.default.)
_MOBILE_IF = {
    f"net.ipv6.conf.{MN_IFNAME}.accept_ra": 1,
    f"net.ipv6.conf.{MN_IFNAME}.autoconf": 1,
    f"net.ipv6.conf.{MN_IFNAME}.accept_dad": 0,
    f"net.ipv6.neigh.{MN_IFNAME}.retrans_time_ms": 100,
    f"net.ipv6.neigh.{MN_IFNAME}.delay_first_probe_time": 0,
}
# The switch namespace is plain layer 2: no IPv6 stack on bridges or ports, so it
# never sends RS, NS or MLD of its own onto the links.
_SWITCH = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}
_SYSCTLS = {"ha": _ROUTER, "core": _ROUTER, "cn": _HOST_STATIC, SWITCH: _SWITCH}

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_AUTO_PREFIX_RE = re.compile(rf"^({PREFIX_BASE}(\d+)-\d+-)")
_seq = itertools.count(1)
_live: dict[str, Testbed] = {}
_live_lock = threading.Lock()
_hooks_installed = False
_hooks_pid = 0


class TestbedError(RuntimeError):
    """The testbed could not be built or used; the message says why."""

    __test__ = False  # not a pytest test class


class NotRootError(TestbedError, PermissionError):
    """Raised instead of half-building a testbed without the needed privileges."""


def check_privileges() -> None:
    """Refuse early and clearly: namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN."""
    if os.geteuid() != 0:
        raise NotRootError(
            "the mip6ctl testbed must run as root: it creates network namespaces "
            "(CAP_SYS_ADMIN) and configures their interfaces (CAP_NET_ADMIN); "
            "try `sudo python -m mip6ctl.testbed up`"
        )


def mobile_node_names(count: int) -> list[str]:
    """`mn`, `mn2`, `mn3`, …: the node names of `count` mobile nodes."""
    return ["mn" if i == 1 else f"mn{i}" for i in range(1, count + 1)]


def home_address(mn: str) -> str:
    """The home address TESTBED.md assigns to mobile node `mn` (not configured by the testbed)."""
    index = 1 if mn == "mn" else int(mn[2:])
    return str(HOME_PREFIX[0x100 + index - 1])


def switch_port(node: str, ifname: str) -> str:
    """Name of the switch-side veth end of `node`'s interface `ifname`."""
    name = f"{node}-{ifname}"
    if len(name) > 15:
        raise TestbedError(f"interface name {name!r} is longer than 15 characters")
    return name


@dataclass(frozen=True, slots=True)
class _Owner:
    pid: int
    start: int | None

    @classmethod
    def me(cls) -> _Owner:
        return cls(os.getpid(), nsops.start_time(os.getpid()))

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start}

    def alive(self) -> bool:
        if not nsops.alive(self.pid):
            return False
        return self.start is None or nsops.start_time(self.pid) == self.start


class Testbed:
    """One running instance of the reference testbed (see `mip6ctl.testbed`).

    Build it with `Testbed.build()`; use it as a context manager or call
    `teardown()`.  Nodes are addressed by their short names (`ha`, `core`,
    `cn`, `mn`, `mn2`, …, `sw`); `ns(node)` gives the namespace name.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        prefix: str,
        mobile_nodes: Sequence[str],
        *,
        radvd: bool = True,
        testers: dict[str, str] | None = None,
        owner: _Owner | None = None,
    ) -> None:
        self.prefix = prefix
        self.mobile_nodes = list(mobile_nodes)
        self.radvd = radvd
        self.testers: dict[str, str] = dict(testers or {})  # tester node -> its interface
        self.run_dir = RUN_DIR / prefix
        self._owner = owner
        # Forked children (pyroute2 forks helpers that carry this object along)
        # must never tear down their parent's testbed: only this pid may.
        self._pid = os.getpid()
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.RLock()
        self._closing = False  # teardown started: no new processes, moves or nodes
        self._torn_down = False
        # Namespaces this object made (or, attached from a run file, was told it
        # owns): teardown never deletes a namespace it did not create.
        self._created: set[str] = set()
        self._own_run_dir = False

    # ---------------------------------------------------------------- naming
    @property
    def nodes(self) -> list[str]:
        """All nodes, the switch first."""
        return [SWITCH, "ha", "core", "cn", *self.mobile_nodes, *self.testers]

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(n) for n in self.nodes]

    def ns(self, node: str) -> str:
        """The network namespace name of `node`."""
        return self.prefix + node

    @property
    def detached(self) -> bool:
        return self._owner is None

    # ---------------------------------------------------------------- build
    @classmethod
    def build(
        cls,
        prefix: str | None = None,
        radvd: bool = True,
        mobile_nodes: int = 1,
        *,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> Testbed:
        """Build the testbed; with radvd and `wait`, return once every MN has a home SLAAC address.

        On any failure (or Ctrl-C) during the build, whatever was built is torn
        down before the exception propagates.
        """
        check_privileges()
        if radvd and radvd_conf.find_radvd() is None:
            raise TestbedError("radvd is not installed (Debian: apt-get install radvd)")
        if not 1 <= mobile_nodes <= 99:
            raise TestbedError("mobile_nodes must be between 1 and 99")
        prefix = _choose_prefix(prefix)
        tb = cls(prefix, mobile_node_names(mobile_nodes), radvd=radvd, owner=_Owner.me())
        _install_hooks()
        with _live_lock:
            _live[prefix] = tb
        try:
            tb._build(wait=wait, timeout=timeout)
        except BaseException:
            tb.teardown()
            raise
        return tb

    def _build(self, *, wait: bool, timeout: float) -> None:
        # The run file comes first, so that a crash at any later point leaves
        # something `sweep_stale()` can find and attribute.
        self.run_dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        self._own_run_dir = True
        self._save()
        for node in self.nodes:
            nsops.create(self.ns(node))
            self._created.add(self.ns(node))
        for node in self.nodes:
            values = _MOBILE if node in self.mobile_nodes else _SYSCTLS[node]
            nsops.write_sysctls(self.ns(node), values)

        from pyroute2 import IPRoute

        iprs: dict[str, IPRoute] = {}
        try:
            for node in self.nodes:
                iprs[node] = IPRoute(netns=self.ns(node))
                _up(iprs[node], "lo")
            sw = iprs[SWITCH]
            for bridge in LINKS.values():
                sw.link(
                    "add",
                    ifname=bridge,
                    kind="bridge",
                    br_stp_state=0,
                    br_forward_delay=0,
                    # Flood all multicast: a port that moves between bridges
                    # never has to re-report its groups to be reachable.
                    br_mcast_snooping=0,
                )
                _up(sw, bridge)
            for a, a_if, b, b_if in P2P_LINKS:
                self._veth(iprs[a], a_if, b, b_if)
                _up(iprs[a], a_if)
                _up(iprs[b], b_if)
            attach = [*BRIDGED, *((mn, MN_IFNAME, "home") for mn in self.mobile_nodes)]
            for node, ifname, link in attach:
                port = switch_port(node, ifname)
                self._veth(iprs[node], ifname, SWITCH, port)
                sw.link("set", index=_index(sw, port), master=_index(sw, LINKS[link]))
                _up(sw, port)
                if node in self.mobile_nodes:
                    nsops.write_sysctls(self.ns(node), _MOBILE_IF)
                _up(iprs[node], ifname)
            for node, addrs in ADDRESSES.items():
                for ifname, cidr in addrs:
                    addr, plen = cidr.split("/")
                    iprs[node].addr(
                        "add", index=_index(iprs[node], ifname), address=addr, prefixlen=int(plen)
                    )
            for node, routes in ROUTES.items():
                for dst, gw in routes:
                    iprs[node].route("add", dst=dst, gateway=gw, family=socket.AF_INET6)
        finally:
            for ipr in iprs.values():
                ipr.close()
        if self.radvd:
            self._start_radvd()
        self._save()
        if self.radvd and wait:
            for mn in self.mobile_nodes:
                self.wait_address(mn, HOME_PREFIX, timeout=timeout)

    def _veth(self, ipr: IPRoute, ifname: str, peer_node: str, peer_ifname: str) -> None:
        """Create a veth pair whose two ends are born in their namespaces (never on the host)."""
        fd = os.open(nsops.path(self.ns(peer_node)), os.O_RDONLY)
        try:
            ipr.link(
                "add", ifname=ifname, kind="veth", peer={"ifname": peer_ifname, "net_ns_fd": fd}
            )
        finally:
            os.close(fd)

    def _start_radvd(self) -> None:
        binary = radvd_conf.find_radvd()
        assert binary is not None
        core = [radvd_conf.Advert("f1", str(FOREIGN_PREFIXES["f1"]))]
        core.append(radvd_conf.Advert("f2", str(FOREIGN_PREFIXES["f2"])))
        home = [radvd_conf.Advert("home0", f"{HA_HOME_ADDRESS}/64", home_agent=True)]
        for node, adverts in (("core", core), ("ha", home)):
            conf = self.run_dir / f"radvd-{node}.conf"
            conf.write_text(radvd_conf.render(adverts))
            log = self.run_dir / f"radvd-{node}.log"
            argv = [binary, "--nodaemon", "--config", str(conf)]
            argv += ["--pidfile", str(self.run_dir / f"radvd-{node}.pid")]
            argv += ["--logmethod", "stderr_clean"]
            with open(log, "wb") as out:
                proc = self.exec(node, argv, stdout=out, stderr=subprocess.STDOUT)
            # radvd writes its pid file once it has parsed the config and opened its socket.
            pidfile, deadline = self.run_dir / f"radvd-{node}.pid", time.monotonic() + 5.0
            while not pidfile.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is not None:
                raise TestbedError(f"radvd in {self.ns(node)} exited: {log.read_text().strip()}")

    # ---------------------------------------------------------------- processes
    def exec(self, node: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `node`'s namespace; it is killed at teardown.

        Keyword arguments go to `subprocess.Popen`.  The process gets its own
        session (a terminal's Ctrl-C reaches only this process, which then
        tears down in order) unless `start_new_session=False` is passed.
        """
        self._check_alive()
        ns = self.ns(node)
        if not nsops.exists(ns):
            raise TestbedError(f"no node {node!r} in testbed {self.prefix}")
        popen.setdefault("start_new_session", True)
        popen.setdefault("stdin", subprocess.DEVNULL)
        preexec = nsops.SetnsPreexec(ns)
        try:
            proc = subprocess.Popen(list(argv), preexec_fn=preexec, **popen)
        finally:
            preexec.close()
        with self._lock:
            self._procs.append(proc)
        return proc

    def run(
        self, node: str, argv: Sequence[str], *, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in `node`'s namespace to completion (bounded); capture its output as text."""
        proc = self.exec(node, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check:
            result.check_returncode()
        return result

    @contextlib.contextmanager
    def inside(self, node: str) -> Iterator[None]:
        """Switch the calling thread into `node`'s namespace for the block (for sockets)."""
        with nsops.inside(self.ns(node)):
            yield

    def ipr(self, node: str) -> IPRoute:
        """A pyroute2 `IPRoute` bound to `node`'s namespace (close it, or use `with`)."""
        from pyroute2 import IPRoute

        return IPRoute(netns=self.ns(node))

    # ---------------------------------------------------------------- observing
    def addresses(self, node: str, ifname: str | None = None) -> list[ipaddress.IPv6Interface]:
        """Global IPv6 addresses of `node` (of one interface when `ifname` is given)."""
        with self.ipr(node) as ipr:
            kwargs: dict[str, Any] = {"family": socket.AF_INET6}
            if ifname is not None:
                kwargs["index"] = _index(ipr, ifname)
            found = []
            for msg in ipr.get_addr(**kwargs):
                if msg["scope"] != 0:
                    continue
                flags = msg.get("IFA_FLAGS") or msg["flags"]
                if flags & 0x40:  # IFA_F_TENTATIVE: not usable yet
                    continue
                found.append(
                    ipaddress.IPv6Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
                )
            return found

    def wait_address(
        self,
        node: str,
        network: ipaddress.IPv6Network | str,
        *,
        ifname: str | None = None,
        timeout: float = 5.0,
    ) -> ipaddress.IPv6Address:
        """Wait until `node` has a usable address in `network`; return it."""
        net = ipaddress.IPv6Network(network)
        if ifname is None and node in self.mobile_nodes:
            ifname = MN_IFNAME
        deadline = time.monotonic() + timeout
        while True:
            for a in self.addresses(node, ifname):
                if a.ip in net:
                    return a.ip
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"{self.ns(node)} got no address in {net} within {timeout} s"
                    + self._radvd_hint()
                )
            time.sleep(0.01)

    def care_of_address(self, mn: str = "mn", *, timeout: float = 5.0) -> ipaddress.IPv6Address:
        """Wait for `mn`'s SLAAC address on the link it is attached to now."""
        return self.wait_address(mn, LINK_PREFIXES[self.attachment(mn)], timeout=timeout)

    def attachment(self, mn: str = "mn") -> str:
        """The link (`home`, `f1`, `f2`) `mn`'s interface is attached to, read from the kernel."""
        by_index = {}
        with self.ipr(SWITCH) as sw:
            for link, bridge in LINKS.items():
                by_index[_index(sw, bridge)] = link
            msg = sw.link("get", index=_index(sw, switch_port(mn, MN_IFNAME)))[0]
        master = msg.get("IFLA_MASTER")
        if master not in by_index:
            raise TestbedError(f"{mn} is attached to no link")
        return by_index[master]

    def _radvd_hint(self) -> str:
        logs = sorted(self.run_dir.glob("radvd-*.log")) if self.radvd else []
        text = [f"{p.name}: {p.read_text()[-500:].strip()}" for p in logs if p.stat().st_size]
        return ("; " + "; ".join(text)) if text else ""

    # ---------------------------------------------------------------- movement
    def move(self, mn: str, link: str, *, carrier_loss: bool = True) -> float:
        """Re-attach `mn`'s interface to `link` (`home`, `f1`, `f2`); return when (monotonic).

        The MN's switch port is taken down, given the new bridge as master and
        brought up again (netlink requests in the switch namespace), so the MN
        sees a short carrier loss, as with a Wi-Fi re-association or a cable
        moved to another socket.  Its kernel then flushes neighbour entries,
        solicits routers, and finds the old default router unreachable in about
        0.3 s.  With `carrier_loss=False` only the master changes: the MN's link
        stays up and it learns of the move from RAs alone, while its kernel keeps
        sending through the old router until neighbour unreachability detection
        gives up on it (up to ~45 s with the kernel's reachable time); that is
        the case an MN's movement detection (RFC 6275 §11.5.1) must handle itself.
        The returned time is when the port was attached (and up) on the new link.
        """
        self._check_alive()
        if link not in LINKS:
            raise TestbedError(f"unknown link {link!r}; choose one of {', '.join(LINKS)}")
        if mn not in self.mobile_nodes:
            raise TestbedError(f"unknown mobile node {mn!r}; this testbed has {self.mobile_nodes}")
        with self.ipr(SWITCH) as sw:
            port, bridge = _index(sw, switch_port(mn, MN_IFNAME)), _index(sw, LINKS[link])
            if carrier_loss:
                sw.link("set", index=port, state="down")
                # One request: the kernel applies the master before the flags.
                sw.link("set", index=port, master=bridge, state="up")
            else:
                sw.link("set", index=port, master=bridge)
            return time.monotonic()

    def add_tester(self, link: str, tag: str = "tst") -> str:
        """Add a host namespace `<prefix><tag>` with interface `<tag>0` on `link`; return its name.

        For tests that inject or capture packets (TESTBED.md).  It has only a
        link-local address and ignores RAs; it is torn down with the testbed.
        """
        self._check_alive()
        if link not in LINKS:
            raise TestbedError(f"unknown link {link!r}")
        if tag in self.nodes or not re.fullmatch(r"[a-z][a-z0-9]{0,5}", tag):
            raise TestbedError(f"bad or duplicate tester tag {tag!r}")
        from pyroute2 import IPRoute

        ifname = f"{tag}0"
        with self._lock:
            self.testers[tag] = ifname
            self._save()
        nsops.create(self.ns(tag))
        self._created.add(self.ns(tag))
        nsops.write_sysctls(self.ns(tag), _HOST_STATIC)
        with IPRoute(netns=self.ns(tag)) as ipr, IPRoute(netns=self.ns(SWITCH)) as sw:
            _up(ipr, "lo")
            port = switch_port(tag, ifname)
            self._veth(ipr, ifname, SWITCH, port)
            sw.link("set", index=_index(sw, port), master=_index(sw, LINKS[link]))
            _up(sw, port)
            _up(ipr, ifname)
        return self.ns(tag)

    # ---------------------------------------------------------------- teardown
    def teardown(self) -> None:
        """Kill every process in the namespaces, delete them, remove the run directory.

        Idempotent: a second call does nothing, and one interrupted half-way
        (it blocks SIGINT/SIGTERM/SIGHUP while it runs, so only a hard kill can
        interrupt it) can simply be repeated, or left to `sweep_stale()`.
        Only namespaces this testbed created are deleted.
        """
        if os.getpid() != self._pid:
            return
        with self._lock, _signals_deferred():
            if self._torn_down:
                return
            self._closing = True
            owned = [ns for ns in self.namespaces if ns in self._created]
            pids = {p.pid for p in self._procs if p.returncode is None}
            for ns in owned:
                pids.update(nsops.pids_in(ns))
            nsops.kill_all(sorted(pids), reap=self._reap)
            for proc in self._procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
            for ns in owned:
                nsops.remove(ns)
            if self._own_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            self._torn_down = True
        with _live_lock:
            _live.pop(self.prefix, None)

    def _reap(self) -> None:
        for proc in self._procs:
            proc.poll()

    def _check_alive(self) -> None:
        if self._closing or self._torn_down:
            raise TestbedError(f"testbed {self.prefix} has been torn down")

    def detach(self) -> None:
        """Leave the testbed running after this process exits (for the CLI's `up`).

        It is no longer torn down at exit, and `sweep_stale()` leaves it alone;
        `Testbed.attach(prefix).teardown()` (`python -m mip6ctl.testbed down`)
        removes it.
        """
        with self._lock:
            self._owner = None
            self._save()
        with _live_lock:
            _live.pop(self.prefix, None)

    @classmethod
    def attach(cls, prefix: str) -> Testbed:
        """Take hold of a running testbed from its run file (to move in it or tear it down)."""
        state = _load_state(RUN_DIR / prefix)
        if state is None:
            raise TestbedError(f"no testbed with prefix {prefix!r} (no {RUN_DIR / prefix})")
        return cls._from_state(prefix, state)

    @classmethod
    def _from_state(cls, prefix: str, state: dict[str, Any]) -> Testbed:
        owner = state.get("owner")
        tb = cls(
            prefix,
            state.get("mobile_nodes", []),
            radvd=bool(state.get("radvd")),
            testers=state.get("testers", {}),
            owner=_Owner(owner["pid"], owner.get("start")) if owner else None,
        )
        tb._created = set(state.get("namespaces", []))
        tb._own_run_dir = True
        return tb

    def _save(self) -> None:
        state = {
            "version": STATE_VERSION,
            "prefix": self.prefix,
            "owner": None if self._owner is None else self._owner.as_dict(),
            "mobile_nodes": self.mobile_nodes,
            "testers": self.testers,
            "radvd": self.radvd,
            "namespaces": self.namespaces,
        }
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.run_dir / STATE_FILE)

    def describe(self) -> dict[str, Any]:
        """What was built: namespaces, interfaces, addresses (for humans and `status --json`)."""
        return {
            "prefix": self.prefix,
            "run_dir": str(self.run_dir),
            "detached": self.detached,
            "namespaces": {node: self.ns(node) for node in self.nodes},
            "links": {link: f"{bridge} in {self.ns(SWITCH)}" for link, bridge in LINKS.items()},
            "addresses": {
                node: [f"{ifname} {cidr}" for ifname, cidr in addrs]
                for node, addrs in ADDRESSES.items()
            },
            "mobile_nodes": {
                mn: {"interface": MN_IFNAME, "home_address": home_address(mn)}
                for mn in self.mobile_nodes
            },
            "radvd": self.radvd,
        }

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> Testbed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def __repr__(self) -> str:
        state = "torn down" if self._torn_down else "detached" if self.detached else "live"
        return f"<Testbed {self.prefix} {state} mobile_nodes={self.mobile_nodes}>"


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM/SIGHUP for the block (they are delivered right after)."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise TestbedError(f"no interface {ifname}")
    return int(found[0])


def _up(ipr: IPRoute, ifname: str) -> None:
    ipr.link("set", index=_index(ipr, ifname), state="up")


def _choose_prefix(prefix: str | None) -> str:
    if prefix is not None:
        if not _PREFIX_RE.match(prefix):
            raise TestbedError(f"bad testbed prefix {prefix!r} (letters, digits, _.-; ≤ 32)")
        if (RUN_DIR / prefix).exists() or any(
            nsops.exists(prefix + n) for n in (SWITCH, "ha", "core", "cn", "mn")
        ):
            raise TestbedError(f"a testbed with prefix {prefix!r} exists; tear it down first")
        return prefix
    while True:
        candidate = f"{PREFIX_BASE}{os.getpid()}-{next(_seq)}-"
        names = nsops.list_names()
        if not (RUN_DIR / candidate).exists() and not any(n.startswith(candidate) for n in names):
            return candidate


def _load_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def live_testbeds() -> list[Testbed]:
    """Testbeds this process built and has not torn down or detached."""
    with _live_lock:
        return list(_live.values())


def list_testbeds() -> list[dict[str, Any]]:
    """Run files of all testbeds on this machine (any process), with whether the owner lives."""
    out = []
    for run_dir in sorted(RUN_DIR.glob("*")) if RUN_DIR.is_dir() else []:
        state = _load_state(run_dir)
        if state is None:
            continue
        owner = state.get("owner")
        state["owner_alive"] = bool(owner) and _Owner(owner["pid"], owner.get("start")).alive()
        state["namespaces_present"] = [n for n in state.get("namespaces", []) if nsops.exists(n)]
        out.append(state)
    return out


def sweep_stale() -> list[str]:
    """Tear down testbeds left by processes that are gone; return their prefixes.

    A testbed is stale when its run file names an owner that no longer runs
    (pid gone, or reused by a process that started later), or, with no run
    file, when its namespaces are named `m6tb<pid>-<n>-…` for a pid that is
    gone.  Detached testbeds (CLI `up`) are never swept.
    """
    check_privileges()
    removed = []
    for state in list_testbeds():
        if state.get("owner") and not state["owner_alive"]:
            prefix = state["prefix"]
            Testbed._from_state(prefix, state).teardown()
            removed.append(prefix)
    orphans: dict[str, list[str]] = {}
    for name in nsops.list_names():
        m = _AUTO_PREFIX_RE.match(name)
        if m and not (RUN_DIR / m.group(1)).exists() and not nsops.alive(int(m.group(2))):
            orphans.setdefault(m.group(1), []).append(name)
    for prefix, names in orphans.items():
        pids = [pid for name in names for pid in nsops.pids_in(name)]
        nsops.kill_all(pids)
        for name in names:
            nsops.remove(name)
        removed.append(prefix)
    return removed


def teardown_all() -> None:
    """Tear down every testbed this process owns (atexit and signal path)."""
    if os.getpid() != _hooks_pid:
        return
    for tb in live_testbeds():
        with contextlib.suppress(Exception):
            tb.teardown()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _hooks_pid:
        # A forked child (pyroute2 forks helpers, then SIGTERMs them) inherited
        # this handler: die the default way, never unwind the parent's stack.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # Turn the signal into an exception: `with` blocks and `finally` clauses
    # tear down on the way out, and atexit catches whatever is left.
    raise SystemExit(128 + signum)


def _install_hooks() -> None:
    """atexit always; SIGTERM/SIGHUP only where nobody installed a handler already.

    Ctrl-C needs no handler: Python's KeyboardInterrupt unwinds through the
    same `with`/`finally`/atexit path.
    """
    global _hooks_installed, _hooks_pid
    with _live_lock:
        if _hooks_installed and _hooks_pid == os.getpid():
            return
        _hooks_installed, _hooks_pid = True, os.getpid()
    atexit.register(teardown_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_signal)
