"""Benchmark: the correspondent's Binding Refresh Request cost at 10k bindings (sans-I/O).

No sockets and no kernel: an `Engine` for a correspondent (``role = "cn"``,
``route_optimization=True``) gets ``--bindings`` correspondent bindings through
real return routability and Binding Updates fed to ``engine.handle`` (HoTI →
HoT, CoTI → CoT, BU signed with Kbm from the two tokens → BA 0; fixed Kcn and
fixed "random" nonces; the mobile nodes' signing is untimed), the BUs arriving
evenly over 1 s as real ones would (distinct expiry times). Lifetime 420 s,
so every BRR is due at expiry − 42 s (`max(2 s, 10 %)`, §9.5.5). Then, median
of ``--runs`` runs (each on a freshly built engine):

1. ``binding_used``: ``engine.binding_used(hoa, now)`` for every bound home
   address -- the first call schedules the BRR (heap push), the repeated call
   is the "already scheduled for this expiry" fast path; ns per call;
2. ``handle_timer``: ``engine.handle_timer(t)`` at the time all BRRs are due:
   the ``--bindings`` BRR ``Send`` actions, ms in all and µs per BRR; and
   ``handle_timer_ties`` the same for bindings all made at one instant (one
   expiry time: the BRR heap's entries then tie on their time; a counter breaks the
   tie -- it used to be an ``IPv6Address`` compared in Python, 7.0 µs per BRR);
3. ``encode``: each BRR to wire octets with what the userspace transport calls
   (``mip6ctl.wire.datagram.build_outgoing``: IPv6 header, type 2 routing
   header, Mobility Header with checksum); µs per BRR;
4. ``usage poll`` (the kernel-signalling CN's BRR trigger, daemon/kernel_traffic.py):
   a synthetic XFRM dump of 2 × ``--bindings`` route2/hao states (what
   `render_correspondent_binding` installs: route2 CN → HoA and hao HoA → CN,
   mode RO, care-of address, owned mark; NEWSA messages, every packet counter
   moved since the last poll, so every binding counts as used), decoded with
   ``xfrm_codec.decode_ro_usage`` as ``XfrmSocket.ro_usage`` does, plus
   ``UsageTracker.update`` → ms per poll; ``poll_to_engine``: the
   ``binding_used`` calls `KernelTraffic.note_usage` then makes for the used
   addresses (BRRs already scheduled: the fast path); and, as the baseline in
   the same process, the same dump through the full ``decode_state``
   (``ratio`` = full decode / lean decode). The tracker reports each home address once.

``second_poll_brrs``: after the BRRs went out, the bindings are used once more
(the next usage poll, before the mobile nodes answer) and the timer runs again:
how many BRRs it sends a second time for the same expiry: 0 (one per binding
lifetime; it was N before issue 15's fix -- a BRR per use until the refresh).

Every timed section starts after ``gc.collect()``.

Memory (child processes, so that nothing else in the interpreter counts):
RSS growth (``/proc/self/statm``) and peak RSS growth (VmHWM, reset through
``/proc/self/clear_refs`` first) of a process building the bindings -- the
mobile nodes' messages included -- and scheduling their BRRs, and
tracemalloc's retained bytes per binding, and per scheduled BRR on top.

    .venv/bin/python bench/cn_brr.py [--bindings 10000] [--runs 5] [--json] [--out F]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import os
import platform
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import cpu_model  # noqa: E402  (bench/_machine.py)

from mip6ctl.config.model import Mip6Config  # noqa: E402
from mip6ctl.daemon.kernel_traffic import UsageTracker  # noqa: E402
from mip6ctl.engine import Engine, Received, Send  # noqa: E402
from mip6ctl.kernel import netlink as nl  # noqa: E402
from mip6ctl.kernel import xfrm_codec as xc  # noqa: E402
from mip6ctl.state.xfrm import OWNED_MARK, Mode, XfrmProto, XfrmSelector, XfrmState  # noqa: E402
from mip6ctl.wire.datagram import build_outgoing  # noqa: E402
from mip6ctl.wire.mh import (  # noqa: E402
    BindingAcknowledgement,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlag,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    decode_mh,
    encode_mh,
)
from mip6ctl.wire.mobopts import BindingAuthorizationData, NonceIndices  # noqa: E402

CN = IPv6Address("2001:db8:c::2")
HOME_BASE = int(IPv6Address("2001:db8:1::1:0"))
COA_BASE = int(IPv6Address("2001:db8:a::1:0"))
KCN = bytes(range(20))
LIFETIME_UNITS = 105  # 420 s, MAX_RR_BINDING_LIFETIME
T0 = 1000.0
SPREAD = 1.0  # seconds over which the BUs arrive: distinct expiry (and BRR) times
LEAD = 42.0  # max(2 s, 10 % of 420 s)
CFG = Mip6Config.model_validate({"node": {"role": "cn"}, "cn": {"route_optimization": True}})


def fixed_random() -> Callable[[int], bytes]:
    """Deterministic nonces: a counter, repeated to the length asked for."""
    counter = [0]

    def rnd(n: int) -> bytes:
        counter[0] += 1
        return (counter[0].to_bytes(4, "big") * (n // 4 + 1))[:n]

    return rnd


def addresses(n: int) -> tuple[list[IPv6Address], list[IPv6Address]]:
    return (
        [IPv6Address(HOME_BASE + i) for i in range(n)],
        [IPv6Address(COA_BASE + i) for i in range(n)],
    )


def signed_bu(seq: int, hot: HomeTest, cot: CareofTest, coa: IPv6Address) -> bytes:
    """The mobile node's BU: Kbm = SHA1(home token | care-of token), authenticator =
    First96(HMAC_SHA1(Kbm, care-of | correspondent | MH data)) -- hmac/hashlib directly."""
    bu = BindingUpdate(
        seq,
        int(BUFlag.A),
        LIFETIME_UNITS,
        (NonceIndices(hot.home_nonce_index, cot.careof_nonce_index), BindingAuthorizationData()),
    )
    raw = encode_mh(bu)
    kbm = hashlib.sha1(hot.home_keygen_token + cot.careof_keygen_token).digest()
    data = raw[:4] + b"\0\0" + raw[6:-12]
    return data + hmac.new(kbm, coa.packed + CN.packed + data, hashlib.sha1).digest()[:12]


def build_engine(
    n: int, spread: float = SPREAD
) -> tuple[Engine, list[IPv6Address], dict[str, float]]:
    """A correspondent engine with n bindings made by return routability + BUs, the BUs
    arriving evenly over ``spread`` seconds after T0 (0: all at once, one expiry time)."""
    rnd = fixed_random()
    e = Engine(CFG, T0, kcn=KCN, random_bytes=rnd, route_optimization=True)
    hoas, coas = addresses(n)
    t = time.perf_counter()
    hots = [e.handle(Received(HomeTestInit(b"h" * 8), h, CN), T0)[0] for h in hoas]
    cots = [e.handle(Received(CareofTestInit(b"c" * 8), c, CN), T0)[0] for c in coas]
    rr_s = time.perf_counter() - t
    events = []
    for h, c, hs, cs in zip(hoas, coas, hots, cots, strict=True):  # the MNs' work: untimed
        assert isinstance(hs, Send) and isinstance(cs, Send)
        hot, cot = hs.message, cs.message
        assert isinstance(hot, HomeTest) and isinstance(cot, CareofTest)
        raw = signed_bu(1, hot, cot, c)
        events.append(Received(decode_mh(raw), c, CN, h, None, False, None, raw))
    t = time.perf_counter()
    step = spread / n
    for i, ev in enumerate(events):
        out = e.handle(ev, T0 + i * step)
    bu_s = time.perf_counter() - t
    ba = out[-1]
    assert isinstance(ba, Send) and isinstance(ba.message, BindingAcknowledgement)
    assert ba.message.status == 0 and ba.message.lifetime == LIFETIME_UNITS, ba.message
    if len(e.cache) != n:
        raise RuntimeError(f"{len(e.cache)} bindings, not {n}")
    return e, hoas, {"rr_s": rr_s, "bu_s": bu_s}


# --------------------------------------------------------------------------- XFRM dump


def ro_states(hoas: list[IPv6Address], coas: list[IPv6Address]) -> list[XfrmState]:
    """The CN's route2 (CN → HoA) and hao (HoA → CN) states, as render installs them."""
    out = []
    cn_net = IPv6Network((CN, 128))
    for h, c in zip(hoas, coas, strict=True):
        h_net = IPv6Network((h, 128))
        out.append(
            XfrmState(
                h,
                CN,
                XfrmProto.ROUTE2,
                mode=Mode.RO,
                selector=XfrmSelector(dst=h_net, src=cn_net),
                coaddr=c,
            )
        )
        out.append(
            XfrmState(
                CN,
                h,
                XfrmProto.HAO,
                mode=Mode.RO,
                selector=XfrmSelector(dst=cn_net, src=h_net),
                coaddr=c,
            )
        )
    return out


#: curlft.packets inside a NEWSA message (16-octet netlink header first)
_PACKETS_IN_MSG = 16 + xc._PACKETS_AT


def dump(states: list[XfrmState], packets: Callable[[int], int]) -> memoryview:
    """One buffer of NEWSA messages (NLM_F_MULTI), as the kernel answers a GETSA dump,
    with the packet counter of state i set to packets(i)."""
    parts = []
    for i, s in enumerate(states):
        msg = bytearray(nl.message(xc.XFRM_MSG_NEWSA, nl.NLM_F_MULTI, 7, xc.encode_state(s)))
        struct.pack_into("=Q", msg, _PACKETS_IN_MSG, packets(i))
        parts.append(bytes(msg))
    parts.append(nl.message(nl.NLMSG_DONE, nl.NLM_F_MULTI, 7, b"\0\0\0\0"))
    return memoryview(b"".join(parts))


MARK = (OWNED_MARK.value, OWNED_MARK.mask)


def lean_decode(buf: memoryview) -> dict[tuple[bytes, bytes, int], int]:
    """XfrmSocket.ro_usage's loop over one received buffer."""
    out: dict[tuple[bytes, bytes, int], int] = {}
    decode = xc.decode_ro_usage
    for kind, _flags, _seq, a, b in nl.iter_messages(buf):
        if kind != xc.XFRM_MSG_NEWSA:
            continue
        u = decode(buf, a, b, MARK)
        if u is not None:
            out[u[0], u[1], u[2]] = u[3]
    return out


def full_decode(buf: memoryview) -> dict[tuple[bytes, bytes, int], int]:
    """The baseline: every state through decode_state (dump_states), then the same filter.
    (decode_state drops curlft, so the packet counts are read beside it.)"""
    out: dict[tuple[bytes, bytes, int], int] = {}
    packets = struct.Struct("=Q").unpack_from
    for kind, _flags, _seq, a, b in nl.iter_messages(buf):
        if kind != xc.XFRM_MSG_NEWSA:
            continue
        s = xc.decode_state(buf, a, b)
        if s.mode == Mode.RO and s.coaddr is not None and s.mark == OWNED_MARK:
            key = (s.dst.packed, s.src.packed, int(s.proto))
            out[key] = packets(buf, a + xc._PACKETS_AT)[0]
    return out


# --------------------------------------------------------------------------- one run


def start() -> float:
    """A timed section starts: collect garbage first, so that no earlier section's
    garbage is collected on this one's clock."""
    gc.collect()
    return time.perf_counter()


def one_run(n: int, dumps: tuple[memoryview, memoryview]) -> dict[str, float]:
    gc.collect()
    e, hoas, out = build_engine(n)
    now = T0 + SPREAD + 1.0
    used = e.binding_used

    t = start()
    for h in hoas:
        used(h, now)
    out["used_first_s"] = time.perf_counter() - t
    t = start()
    for h in hoas:
        used(h, now)
    out["used_again_s"] = time.perf_counter() - t
    first = e.next_timer()
    if first != T0 + 420 - LEAD:
        raise RuntimeError(f"first BRR due at T0 + {first and first - T0}, not T0 + 378")
    due = T0 + SPREAD + 420 - LEAD  # every BRR is due, no binding has expired

    # the usage poll: decode + tracker, then the engine calls note_usage makes
    tracker = UsageTracker()
    tracker.update(lean_decode(dumps[0]))  # the previous poll
    t = start()
    usage = lean_decode(dumps[1])
    out["poll_decode_s"] = time.perf_counter() - t
    t = start()
    addrs = tracker.update(usage)
    out["poll_update_s"] = time.perf_counter() - t
    if len(usage) != 2 * n or len(addrs) != n:  # every home address, once
        raise RuntimeError(f"usage poll: {len(usage)} states, {len(addrs)} addresses")
    t = start()
    for a in addrs:
        used(a, now)
    out["poll_to_engine_s"] = time.perf_counter() - t
    t = start()
    full = full_decode(dumps[1])
    out["full_decode_s"] = time.perf_counter() - t
    if full != usage:
        raise RuntimeError("full and lean decode disagree")

    if e.handle_timer(first - 0.001):
        raise RuntimeError("something was due before the BRRs")
    t = start()
    actions = e.handle_timer(due)
    out["timer_s"] = time.perf_counter() - t
    brrs = [a for a in actions if type(a) is Send and type(a.message) is BindingRefreshRequest]
    if len(brrs) != n or len(actions) != n:
        raise RuntimeError(f"{len(brrs)} BRRs of {len(actions)} actions, not {n}")
    a0 = brrs[0]
    if (a0.src, a0.dst, a0.routing_header_address) != (CN, IPv6Address(COA_BASE), hoas[0]):
        raise RuntimeError(f"BRR addressed wrongly: {a0}")

    t = start()
    packets = [build_outgoing(a) for a in brrs]
    out["encode_s"] = time.perf_counter() - t
    pkt, first_hop = packets[0]
    # IPv6 40 + type 2 routing header 24 + BRR 8; next header 43, RH type 2, MH type 0
    if len(pkt) != 72 or pkt[6] != 43 or pkt[42] != 2 or pkt[64 + 2] != 0:
        raise RuntimeError(f"unexpected BRR packet {pkt.hex()}")
    if first_hop != IPv6Address(COA_BASE) or IPv6Address(pkt[48:64]) != hoas[0]:
        raise RuntimeError("BRR packet addressed wrongly")

    # traffic still seen after the BRRs went out (next usage poll, the mobile nodes not
    # answered yet): how many more BRRs the next timer sends (one per binding lifetime
    # is the design; see the module docstring)
    for h in hoas:
        used(h, due + 0.5)
    out["brrs_again"] = len(e.handle_timer(due + 0.5))

    # the same with every binding made at the same instant: one expiry time, so the
    # BRR heap's (when, home address, expires) entries tie on `when`
    del e, actions, brrs, packets
    gc.collect()
    e, hoas, _ = build_engine(n, spread=0.0)
    for h in hoas:
        e.binding_used(h, now)
    t = start()
    actions = e.handle_timer(T0 + 420 - LEAD)
    out["timer_ties_s"] = time.perf_counter() - t
    if len(actions) != n:
        raise RuntimeError(f"{len(actions)} BRRs with one expiry time, not {n}")
    return out


# --------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """VmHWM: the RSS high-water mark since the last reset (ru_maxrss without one)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(n: int, trace: bool) -> dict[str, float]:
    """In a fresh interpreter: what n bindings and their scheduled BRRs hold."""
    build_engine(10)  # warm: imports, caches, the first allocations of every kind
    gc.collect()
    if trace:
        tracemalloc.start()
    if not trace and not reset_peak_rss():
        raise RuntimeError("cannot reset the RSS high-water mark (/proc/self/clear_refs)")
    rss0 = rss_bytes()
    e, hoas, _ = build_engine(n)
    gc.collect()
    mid = tracemalloc.get_traced_memory()[0] if trace else 0
    rss1 = rss_bytes()
    for h in hoas:
        e.binding_used(h, T0 + 1.0)
    gc.collect()
    if trace:
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {
            "traced_bindings_b": mid,
            "traced_brrs_b": cur - mid,
            "traced_peak_b": peak,
        }
    return {
        "rss_bindings_b": rss1 - rss0,
        "rss_total_b": rss_bytes() - rss0,
        "peak_rss_delta_b": peak_rss_bytes() - rss0,
    }


def _child(n: int, trace: bool) -> dict[str, float]:
    flag = "--trace-child" if trace else "--rss-child"
    r = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), flag, str(n)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode:
        raise RuntimeError(f"memory child failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


# --------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run(n: int, runs: int) -> dict[str, Any]:
    hoas, coas = addresses(n)
    states = ro_states(hoas, coas)
    dumps = (dump(states, lambda i: 100 + i), dump(states, lambda i: 200 + i))
    rows = [one_run(n, dumps) for _ in range(runs)]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    rss = [_child(n, trace=False) for _ in range(min(runs, 3))]
    traced = _child(n, trace=True)
    rss_med = {k: statistics.median(r[k] for r in rss) for k in rss[0]}
    mb = 1e6
    return {
        "bindings": n,
        "xfrm_states_per_poll": len(states),
        "dump_octets": len(dumps[1]),
        "build_rr_ms": round(med["rr_s"] * 1e3, 1),
        "build_bu_ms": round(med["bu_s"] * 1e3, 1),
        "binding_used_first_ns": round(med["used_first_s"] / n * 1e9),
        "binding_used_again_ns": round(med["used_again_s"] / n * 1e9),
        "handle_timer_ms": round(med["timer_s"] * 1e3, 2),
        "handle_timer_us_per_brr": round(med["timer_s"] / n * 1e6, 2),
        "handle_timer_ties_ms": round(med["timer_ties_s"] * 1e3, 2),
        "handle_timer_ties_us_per_brr": round(med["timer_ties_s"] / n * 1e6, 2),
        "second_poll_brrs": int(med["brrs_again"]),
        "encode_ms": round(med["encode_s"] * 1e3, 2),
        "encode_us_per_brr": round(med["encode_s"] / n * 1e6, 2),
        "poll_decode_ms": round(med["poll_decode_s"] * 1e3, 2),
        "poll_update_ms": round(med["poll_update_s"] * 1e3, 2),
        "poll_ms": round((med["poll_decode_s"] + med["poll_update_s"]) * 1e3, 2),
        "poll_to_engine_ms": round(med["poll_to_engine_s"] * 1e3, 2),
        "full_decode_ms": round(med["full_decode_s"] * 1e3, 2),
        "ratio_full_over_lean_decode": round(med["full_decode_s"] / med["poll_decode_s"], 1),
        "rss_bindings_mb": round(rss_med["rss_bindings_b"] / mb, 2),
        "rss_bindings_and_brrs_mb": round(rss_med["rss_total_b"] / mb, 2),
        "peak_rss_delta_mb": round(rss_med["peak_rss_delta_b"] / mb, 2),
        "traced_bytes_per_binding": round(traced["traced_bindings_b"] / n),
        "traced_bytes_per_scheduled_brr": round(traced["traced_brrs_b"] / n),
        "traced_peak_mb": round(traced["traced_peak_b"] / mb, 2),
        "all_runs": [{k: round(v, 6) for k, v in r.items()} for r in rows],
    }


LABELS = {
    "build_rr_ms": "build: 2 × N HoTI/CoTI → HoT/CoT (ms)",
    "build_bu_ms": "build: N BUs → BA 0 (ms)",
    "binding_used_first_ns": "binding_used, first call: schedules (ns/call)",
    "binding_used_again_ns": "binding_used, repeated: no-op (ns/call)",
    "handle_timer_ms": "handle_timer at the due time: N BRRs (ms)",
    "handle_timer_us_per_brr": "  per BRR (µs)",
    "handle_timer_ties_ms": "  the same, all N made at one instant (ms)",
    "handle_timer_ties_us_per_brr": "    per BRR (µs)",
    "second_poll_brrs": "BRRs again after more use, same expiry (design: 0)",
    "encode_ms": "build_outgoing of the N BRRs (ms)",
    "encode_us_per_brr": "  per BRR (µs)",
    "poll_decode_ms": "usage poll: decode_ro_usage of the dump (ms)",
    "poll_update_ms": "usage poll: UsageTracker.update (ms)",
    "poll_ms": "usage poll: decode + update (ms/poll)",
    "poll_to_engine_ms": "usage poll: binding_used of the used set (ms)",
    "full_decode_ms": "baseline: decode_state of the same dump (ms)",
    "ratio_full_over_lean_decode": "  ratio full / lean decode",
    "rss_bindings_mb": "RSS growth: N bindings (MB)",
    "rss_bindings_and_brrs_mb": "RSS growth: + N scheduled BRRs (MB)",
    "peak_rss_delta_mb": "peak RSS growth while building (VmHWM, MB)",
    "traced_bytes_per_binding": "tracemalloc: bytes per binding (incl. RR state)",
    "traced_bytes_per_scheduled_brr": "tracemalloc: bytes per scheduled BRR",
    "traced_peak_mb": "tracemalloc: peak while building (MB)",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bindings", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--out", help="also write the JSON here (e.g. bench/results/cn_brr.json)")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--trace-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child or args.trace_child:
        n = args.rss_child or args.trace_child
        json.dump(memory_child(n, trace=bool(args.trace_child)), sys.stdout)
        return 0
    doc = {"machine": machine(), "runs": args.runs, "results": run(args.bindings, args.runs)}
    text = json.dumps(doc, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
        return 0
    m, r = doc["machine"], doc["results"]
    print(
        f"{m['host']}, {m['cpu']}, {m['cpus']} cpu, Linux {m['kernel']}, Python {m['python']}, "
        f"load {', '.join(str(x) for x in m['loadavg_at_start'])}"
    )
    print(
        f"\nCN with {r['bindings']:,} correspondent bindings (BUs over {SPREAD:g} s), lifetime "
        f"420 s, BRR lead {LEAD:g} s; "
        f"usage poll over {r['xfrm_states_per_poll']:,} route2/hao states "
        f"({r['dump_octets']:,} octets); medians of {args.runs} runs"
    )
    for k, label in LABELS.items():
        v = r[k]
        print(f"  {label:50} {v:>12,}" if isinstance(v, int) else f"  {label:50} {v:>12,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
