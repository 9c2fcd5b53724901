"""The reference testbed (TESTBED.md): namespaces, links and radvd, built with netlink.

Used by the netns tests, the demo and the benchmarks, so that all of them speak
of the same network (``<p>`` is the per-run prefix, see Naming)::

  <p>ha                          <p>core (router)                        <p>cn
  core0 2001:db8:ff01::1 ─veth── ha0 2001:db8:ff01::ff
                                 cn0 2001:db8:c::1 ─────veth───── core0 2001:db8:c::2
  home0 2001:db8:1::1            f1  2001:db8:a::1   radvd
    radvd: H flag, HA info       f2  2001:db8:b::1   radvd
     │                            │                   │
  ┌──┴─────────── <p>sw: layer 2 only, IPv6 off ──────┴─────────────┐
  │  br-home ← ha-home0      br-f1 ← core-f1      br-f2 ← core-f2   │
  │  mn-mn0, mn2-mn0, … sit on one of the three; `move()` swaps it  │
  └──┬──────────────────────────────────────────────────────────────┘
     mn0 of <p>mn (<p>mn2, …): SLAAC from the link it is on

Where things live:

* One namespace per node: ``<p>ha``, ``<p>core``, ``<p>cn``, ``<p>mn``
  (``<p>mn2``, … for further mobile nodes) and ``<p>sw``, the switch.  The
  three bridges br-home, br-f1 and br-f2 sit in the switch namespace, not in
  the core: the core stays a plain router whose ``f1``/``f2`` are ordinary
  ports on those links, and the switch has IPv6 disabled, so it adds no
  traffic of its own.  Switch-side veth ends are named ``<node>-<ifname>``
  (``ha-home0``, ``core-f1``, ``mn-mn0``); node-side names are those of
  TESTBED.md.  Bridges run without STP delay and without multicast snooping.
* Every veth end is created directly inside its namespace: nothing is ever
  created on, or changed in, the host's own namespace.
* radvd runs inside ``<p>core`` (f1, f2) and ``<p>ha`` (home0, with
  AdvHomeAgentFlag, AdvHomeAgentInfo and AdvRouterAddr), all at the RFC 6275
  minimum intervals 0.03–0.07 s with AdvDefaultLifetime 30 (see `radvd`).
* Mobile nodes autoconfigure (accept_ra 1, autoconf 1, no forwarding).  DAD is
  off in every namespace (accept_dad 0): all addresses are unique by
  construction, and a tentative address would be unusable for ~1 s after each
  move.  Optimistic DAD was not chosen: it needs CONFIG_IPV6_OPTIMISTIC_DAD,
  and Linux avoids an optimistic address as a source unless use_optimistic is
  also set.  The MN retransmits neighbour solicitations every 100 ms and
  probes a stale entry at once, so a router it left is found dead in ~0.3 s.
  The home address (2001:db8:1::100, ::101, …) is left to the MN daemon.
* Beyond TESTBED.md, every RA carries the Advertisement Interval option (radvd
  accepts sub-second intervals only with a Mobile IPv6 option on), and the
  home link's Home Agent Information option says lifetime 1800 s (radvd omits
  the option when lifetime and preference equal the defaults).

Moving: `Testbed.move(mn, link)` takes the MN's switch port down, makes the
new bridge its master and brings it up (a short carrier loss, as in a Wi-Fi
re-association); the MN has a SLAAC address on the new link some 15–80 ms
later and reaches the CN through the new router within ~1 s.
``carrier_loss=False`` changes only the master, leaving movement detection to
RAs alone (the kernel then keeps the old default router until NUD gives up
on it).  The MN keeps the addresses of links it left, valid for a day:
deprecating them is the MN daemon's business, so without one, send from the
address of the current link.

Naming: the per-run prefix ``<p>`` is ``m6tb<pid>-<n>-`` (pid of the building
process, n counting testbeds within it), or one the caller chooses.  Interface
names never include it, so they stay within 15 characters.

Cleanup guarantees:

* `Testbed.teardown()` kills every process whose network namespace is one of
  the testbed's (radvd, anything from `Testbed.exec`, strays), deletes the
  namespaces, which removes every veth and bridge with them, and removes the
  run directory ``/run/mip6ctl-testbed/<p>`` (radvd configs, logs, pid files,
  ``state.json``).  It is idempotent.
* A failure or Ctrl-C during `Testbed.build()` tears down what was built
  before the exception propagates; the context manager tears down on exit;
  an atexit hook tears down whatever this process still owns, and SIGTERM and
  SIGHUP (when nobody else handles them) turn into SystemExit so those paths
  run.  Forked children never tear down their parent's testbed.
* `sweep_stale()` removes testbeds whose owning process died without cleaning
  up (SIGKILL, a crash): the run file records the owner's
  pid and start time; namespaces without a run file are attributed by the pid
  in their name.  Testbeds left running on purpose (`Testbed.detach()`, the
  CLI's ``up``) are only removed by ``down``.
* Building refuses to start without root, saying why (`NotRootError`).

Command line: ``python -m mip6ctl.testbed up|down|status|move LINK``.
"""

from mip6ctl.testbed.topology import (
    CN_ADDRESS,
    FOREIGN_PREFIXES,
    HA_CORE_ADDRESS,
    HA_HOME_ADDRESS,
    HOME_PREFIX,
    LINK_PREFIXES,
    LINKS,
    NotRootError,
    Testbed,
    TestbedError,
    home_address,
    list_testbeds,
    sweep_stale,
)

__all__ = [
    "CN_ADDRESS",
    "FOREIGN_PREFIXES",
    "HA_CORE_ADDRESS",
    "HA_HOME_ADDRESS",
    "HOME_PREFIX",
    "LINKS",
    "LINK_PREFIXES",
    "NotRootError",
    "Testbed",
    "TestbedError",
    "home_address",
    "list_testbeds",
    "sweep_stale",
]
