"""strongSwan's charon for the vm tier's IKE tests (tests/vm/test_ike.py, test_ike_daemons.py).

One charon per network namespace: its own strongswan.conf (``STRONGSWAN_CONF``)
naming its own VICI socket and log file, in a mount namespace of its own with a
private tmpfs on /run (5.9.8's pid file /var/run/charon.pid is compiled in), so
two charons coexist on one host.  `start_charon` waits (bounded) until the VICI
socket answers; `CharonProc.stop` is SIGTERM, then SIGKILL, by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mip6ctl.ike.vici_client import Charon

CHARON = Path("/usr/lib/ipsec/charon")
#: bounds for the emulated guest (charon and its DH are ~10x slower there)
START_WAIT, IKE_WAIT = 60.0, 60.0

PLUGINS = (
    "random nonce openssl aes sha1 sha2 hmac kdf gmp pem pkcs1 x509 pubkey "
    "kernel-netlink socket-default vici"
)

#: spawn(argv, env=..., stdout=..., stderr=...) -> Popen, inside the namespace
Spawn = Callable[..., "subprocess.Popen[bytes]"]


@dataclass
class CharonProc:
    ns: str
    dir: Path
    proc: subprocess.Popen[bytes]
    vici: Charon | None = None

    @property
    def log(self) -> Path:
        return self.dir / "charon.log"

    @property
    def socket(self) -> Path:
        return self.dir / "charon.vici"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count(self, needle: str) -> int:
        return self.log_text().count(needle)

    def stop(self) -> None:
        if self.vici is not None:
            with contextlib.suppress(Exception):
                self.vici.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def _ip_netns_exec(ns: str) -> Spawn:
    def spawn(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        # ip netns exec gives a mount namespace of its own as well
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **popen)

    return spawn


def start_charon(ns: str, workdir: Path, *, spawn: Spawn | None = None) -> CharonProc:
    """charon in network namespace `ns` (``ip netns exec``, or `spawn` already inside it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "strongswan.conf"
    sock = workdir / "charon.vici"
    conf.write_text(
        "charon {\n"
        "  load_modular = no\n"
        f"  load = {PLUGINS}\n"
        "  install_routes = no\n"
        "  install_virtual_ip = no\n"
        "  filelog {\n"
        "    log {\n"
        f"      path = {workdir / 'charon.log'}\n"
        "      default = 1\n      knl = 2\n      job = 2\n      ike = 1\n"
        "      flush_line = yes\n"
        "    }\n"
        "  }\n"
        f"  plugins {{\n    vici {{\n      socket = unix://{sock}\n    }}\n  }}\n"
        "}\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "STRONGSWAN_CONF": str(conf),
    }
    # /run (the compiled-in pid file's directory) becomes a private tmpfs in a
    # mount namespace of charon's own, so two charons coexist.
    cmd = [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", f"mount -t tmpfs tmpfs /run && exec {CHARON}",
    ]  # fmt: skip
    out = (workdir / "stdout").open("wb")
    proc = (spawn or _ip_netns_exec(ns))(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    cp = CharonProc(ns, workdir, proc)
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"charon in {ns} exited {proc.returncode}: "
                f"{(workdir / 'stdout').read_text(errors='replace')[-2000:]}"
            )
        if sock.exists():
            with contextlib.suppress(Exception):
                cp.vici = Charon(str(sock), timeout=IKE_WAIT + 10)
                cp.vici.version()
                return cp
        time.sleep(0.2)
    cp.stop()
    raise AssertionError(
        f"charon in {ns}: no VICI socket after {START_WAIT}s: {cp.log_text()[-2000:]}"
    )
