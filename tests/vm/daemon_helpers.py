"""Helpers for the vm tier's daemon tests (tests/vm/test_daemons.py).

The daemons are the real ``mip6ctl daemon`` processes of tests/netns
(`tests.netns.ha_helpers.HaDaemon`), started in parallel: under emulation a
Python start-up with pydantic and pyroute2 takes many seconds, so the guest
launches every daemon first and then waits for all of them (bounded).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from tests.netns.ha_helpers import HaDaemon, ip

#: guest bounds (emulated CPU, ~20x slower Python than the host)
START_TIMEOUT = 180.0
CONVERGE = 40.0

KERNEL_SECTION = '\n[kernel]\ntunnel = "ip6tnl"\nsignalling = "kernel"\n'
DEBUG_LOG = '\n[log]\nlevel = "debug"\n'
HA_KERNEL = {'tunnel = "auto"': 'tunnel = "ip6tnl"', 'signalling = "auto"': 'signalling = "kernel"'}


def launch(d: HaDaemon) -> None:
    """Start ``d`` without waiting for it (see `wait_ready`)."""
    argv = [sys.executable, "-m", "mip6ctl", "daemon", "-c", str(d.config)]
    argv += ["--state-dir", str(d.state), "--socket", str(d.socket)]
    with open(d.log, "ab") as log:
        d.proc = d.tb.exec(d.node, argv, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(daemons: Iterable[HaDaemon], timeout: float = START_TIMEOUT) -> None:
    """Every daemon answers ``status`` with Ready=True, or AssertionError with its log."""
    pending = list(daemons)
    deadline = time.monotonic() + timeout
    while pending:
        for d in list(pending):
            assert d.proc is not None
            if d.proc.poll() is not None:
                raise AssertionError(
                    f"the {d.node} daemon exited ({d.proc.returncode}):\n{d.tail()}"
                )
            try:
                doc = d.rpc("status", timeout=2.0)
            except Exception:
                continue
            ready = {c["type"]: c["status"] for c in doc["conditions"]}.get("Ready")
            if ready == "True":
                pending.remove(d)
        if not pending:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {d.node} ---\n{d.tail()}" for d in pending)
            raise AssertionError(f"not ready in {timeout} s: {[d.node for d in pending]}\n{logs}")
        time.sleep(0.2)


def wait_for(what: str, check: Callable[[], Any], logs: Callable[[], str], timeout: float) -> Any:
    """Poll ``check`` until it returns something true (bounded); fail with the logs."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # a daemon busy under emulation: retry until the bound
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s; last {last!r}\n{logs()}")


def ip6tnl_devices(out: str) -> dict[str, str]:
    """``ip -d -o link show type ip6tnl`` output -> name: its line (owned ones, m6t*)."""
    devs = {}
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            name = parts[1].strip().split("@", 1)[0]
            if name.startswith("m6t"):
                devs[name] = parts[2]
    return devs


#: `ip xfrm state` prints SA keys as ``enc cbc(aes) 0x...``, ``auth-trunc hmac(sha256) 0x...``
_KEYS = re.compile(r"((?:enc|auth|auth-trunc|aead|comp) \S+ )0x[0-9a-fA-F]+")

#: what a failure message shows of a node's kernel state
KERNEL_VIEWS = (
    ("-d", "link", "show"),
    ("-6", "addr", "show"),
    ("-6", "rule", "show"),
    ("-6", "route", "show", "table", "all"),
    ("xfrm", "state", "show"),
    ("xfrm", "policy", "show"),
)


def kernel_dump(tb: Any, nodes: Iterable[str]) -> list[str]:
    """`ip` views and the non-zero XFRM / IPv6 counters of each node, for a failure message."""
    out = []
    for node in nodes:
        for args in KERNEL_VIEWS:
            try:
                text = _KEYS.sub(r"\1<key>", ip(tb, node, *args))  # never print key material
                out.append(f"--- {node}: ip {' '.join(args)} ---\n{text}")
            except Exception as e:
                out.append(f"--- {node}: ip {' '.join(args)} --- {e!r}")
        r = tb.run(node, ["cat", "/proc/net/xfrm_stat", "/proc/net/snmp6"], timeout=30)
        kept = [x for x in r.stdout.splitlines() if not x.rstrip().endswith(" 0")]
        out.append(f"--- {node}: counters ---\n" + "\n".join(kept))
    return out
