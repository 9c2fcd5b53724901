"""The owned nf_tables table against this kernel: typed objects through the plan executor.

`nft` (when installed) is only used to look at the result and to make foreign
objects; the product code never runs it.  Everything happens in namespaces.
"""

from __future__ import annotations

import errno
import logging
import shutil
import socket
from ipaddress import IPv6Address

import pytest

from mip6ctl.kernel import nft, nft_state, seg6
from mip6ctl.kernel.reconciler import converge
from mip6ctl.kernel.writer import Writer, create
from mip6ctl.state.objects import NftChain, NftSet, NftSetElement
from mip6ctl.state.plan import Origin
from mip6ctl.state.render import (
    CHAIN_REVERSE_TUNNEL,
    NFT_HOOK_PREROUTING,
    NFT_PRIORITY_RAW,
    NFT_TYPE_IPV6_PAIR,
    REVERSE_TUNNEL_SET,
    Desired,
    render_signalling,
)
from tests import nsutil

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
pytest.importorskip("scapy.layers.inet6")
from scapy.compat import raw  # noqa: E402
from scapy.layers.inet import UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402

HA = IPv6Address("2001:db8:1::1")
COA = IPv6Address("2001:db8:1::100")
HOA = IPv6Address("2001:db8:2::100")
OTHER_HOA = IPv6Address("2001:db8:2::200")

needs_nft = pytest.mark.skipif(shutil.which("nft") is None, reason="needs the nft binary to look")


def session(ns: str) -> nft.NftSession:
    with nsutil.inside(ns):
        return nft.NftSession()


def nft_cli(ns: str, *args: str) -> str:
    return nsutil.run("nft", *args, ns=ns).stdout


def converge_in(ns: str, desired: Desired, *, present: bool = True) -> None:
    """Through the plan executor, as the daemon writes them."""
    with nsutil.inside(ns):
        report = converge(desired, present=present)
    assert report.ok, (report.outcomes, report.mismatches)


def reverse_check(*pairs: tuple[IPv6Address, IPv6Address]) -> Desired:
    d = Desired()
    origin = Origin("config", "test")
    d.add(NftSet(REVERSE_TUNNEL_SET, NFT_TYPE_IPV6_PAIR, 32), origin)
    d.add(
        NftChain(
            CHAIN_REVERSE_TUNNEL,
            NFT_HOOK_PREROUTING,
            NFT_PRIORITY_RAW,
            (("reverse-tunnel", str(HA)),),
        ),
        origin,
    )
    for coa, hoa in pairs:
        d.add(NftSetElement(str(coa), str(hoa), REVERSE_TUNNEL_SET), origin)
    return d


def read(ns: str) -> dict[tuple, object]:
    with session(ns) as s:
        return {o.key: o for o in nft_state.read_table(s)}


@needs_nft
def test_chains_are_written_idempotently_and_drift_is_repaired(netns) -> None:
    ns = netns("nft")
    chains = render_signalling("userspace")
    converge_in(ns, chains)
    first = read(ns)
    assert first == chains.objects  # read back exactly as rendered (rules by comment)
    converge_in(ns, chains)
    assert read(ns) == first
    with session(ns) as s:
        info = nft.describe(session=s)
    assert info is not None and len(info.rules) == 4
    listing = nft_cli(ns, "list", "table", "ip6", "mip6ctl")
    assert "type filter hook prerouting priority raw" in listing
    assert "meta l4proto mobility-header fib daddr type local counter" in listing
    assert "rt type 2 fib daddr type local counter" in listing
    # drift: someone deletes a rule and adds one of their own to our chain
    handle = next(r.handle for r in info.rules if "type 2" in r.comment)
    nft_cli(ns, "delete", "rule", "ip6", "mip6ctl", nft.CHAIN_PREROUTING,
            "handle", str(handle))  # fmt: skip
    nft_cli(ns, "add", "rule", "ip6", "mip6ctl", nft.CHAIN_PREROUTING, "accept")
    drifted = read(ns)
    assert drifted != first  # the observer's reading sees both the loss and the stranger
    converge_in(ns, chains)
    assert read(ns) == first
    converge_in(ns, chains, present=False)
    with session(ns) as s:
        assert nft.describe(session=s) is None  # the table goes with its last chain


@needs_nft
def test_foreign_tables_are_never_touched(netns) -> None:
    ns = netns("nft")
    nft_cli(ns, "add", "table", "ip6", "foreign")
    nft_cli(
        ns, "add", "chain", "ip6", "foreign", "c", "{ type filter hook prerouting priority 0; }"
    )
    nft_cli(ns, "add", "table", "inet", "mip6ctl")  # same name, other family: not ours either
    before = nft_cli(ns, "list", "table", "ip6", "foreign")
    converge_in(ns, render_signalling("userspace"))
    assert all(o.table == "mip6ctl" for o in read(ns).values())
    converge_in(ns, render_signalling("userspace"), present=False)
    with session(ns) as s:
        nft.remove_table(session=s)  # absent is fine
    tables = nft_cli(ns, "list", "tables")
    assert "table ip6 foreign" in tables and "table inet mip6ctl" in tables
    assert "table ip6 mip6ctl" not in tables
    assert nft_cli(ns, "list", "table", "ip6", "foreign") == before


def test_removing_the_signalling_chains_keeps_the_reverse_tunnel_check(netns) -> None:
    ns = netns("nft")
    converge_in(ns, render_signalling("userspace"))
    converge_in(ns, reverse_check((COA, HOA)))
    converge_in(ns, render_signalling("userspace"), present=False)
    with session(ns) as s:
        info = nft.describe(session=s)
    assert info is not None
    assert info.chains == (nft.CHAIN_REVERSE_TUNNEL,)
    assert info.elements == {nft.REVERSE_TUNNEL_SET: 1}
    converge_in(ns, reverse_check((COA, HOA)))  # re-writing the chain keeps the bindings
    got = read(ns)
    assert NftSetElement(str(COA), str(HOA), REVERSE_TUNNEL_SET).key in got
    converge_in(ns, reverse_check((COA, HOA)), present=False)
    with session(ns) as s:
        assert nft.describe(session=s) is None


def test_nf_tables_is_available_here() -> None:
    assert nft.nf_tables_missing() is None


@pytest.mark.seg6
def test_reverse_tunnel_source_check(netns) -> None:
    """RFC 6275 §10.4.5 on the seg6 backend: only (care-of, home) pairs of bindings pass.

    The HA decapsulates IPv6-in-IPv6 with End.DT6 into its local table; the
    inner packet is UDP to the HA itself, so delivery to a socket is what
    "passed" means.
    """
    mn, ha = netns("mn"), netns("ha")
    nsutil.ip("link", "add", "mn0", "netns", mn, "type", "veth", "peer", "name", "ha0", "netns", ha)
    for ns, dev, addr in ((mn, "mn0", COA), (ha, "ha0", HA)):
        nsutil.ip("-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad", ns=ns)
        nsutil.ip("link", "set", dev, "up", ns=ns)
    with nsutil.inside(ha):
        w = Writer()
    with w:
        ops = [*seg6.relocate_local_rule_ops()]
        ops += [create(o) for o in seg6.decap_objects(str(HA), "ha0", table=100, inner_table=255)]
        results = w.apply(ops)
    assert all(r.ok for r in results), results
    assert nsutil.ping6(mn, str(HA), count=1, timeout=5) == 1

    with nsutil.inside(ha):
        sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s = nft.NftSession()
    with nsutil.inside(mn):
        tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sink.bind((str(HA), 5000))
    sink.settimeout(1.0)

    def tunnelled(inner_src: IPv6Address, tag: bytes) -> bool:
        pkt = (
            IPv6(src=str(COA), dst=str(HA), nh=41)
            / IPv6(src=str(inner_src), dst=str(HA))
            / UDP(sport=4000, dport=5000)
            / tag
        )
        tx.sendto(raw(pkt), (str(HA), 0))
        try:
            while True:
                if sink.recv(100) == tag:
                    return True
        except TimeoutError:
            return False

    with sink, tx, s:
        assert tunnelled(HOA, b"no check yet")  # the decap path works at all
        converge_in(ha, reverse_check())
        assert not tunnelled(HOA, b"no binding")
        converge_in(ha, reverse_check((COA, HOA)))
        assert tunnelled(HOA, b"binding")
        assert not tunnelled(OTHER_HOA, b"spoofed inner source")
        element = Desired()
        element.add(NftSetElement(str(COA), str(HOA), REVERSE_TUNNEL_SET), Origin("config", "t"))
        converge_in(ha, element, present=False)  # the element goes, the check stays
        converge_in(ha, element, present=False)  # absent is fine
        assert not tunnelled(HOA, b"binding gone")
        assert not [k for k in read(ha) if k[0] == "nft-element"]
        info = nft.describe(session=s)
        assert info is not None and info.dropped(nft.CHAIN_REVERSE_TUNNEL) == 3
        nft.remove_table(session=s)


def _pairs(n: int, base: int = 0) -> list[tuple[IPv6Address, IPv6Address]]:
    return [(COA + base + i, HOA + base + i) for i in range(n)]


def test_a_large_batch_is_acknowledged_and_a_refused_request_in_it_is_named(netns) -> None:
    """3,000 element requests in one transaction: an ack per request used to overflow
    the socket (lost acks, a 5 s timeout); a refused one in the middle is still named
    and aborts the whole batch."""
    ns = netns("nft")
    converge_in(ns, reverse_check())
    with session(ns) as s:
        reqs = [
            r
            for coa, hoa in _pairs(3000)
            for r in nft_state.create_requests(
                NftSetElement(str(coa), str(hoa), REVERSE_TUNNEL_SET)
            )
        ]
        s.batch(reqs)
        assert len([o for o in nft_state.read_table(s) if isinstance(o, NftSetElement)]) == 3000
        bad = nft_state.create_requests(NftSetElement(str(COA), str(HOA), "no_such_set"))
        more = [
            r
            for coa, hoa in _pairs(1000, base=5000)
            for r in nft_state.create_requests(
                NftSetElement(str(coa), str(hoa), REVERSE_TUNNEL_SET)
            )
        ]
        with pytest.raises(nft.NftError) as err:
            s.batch(more[:500] + bad + more[500:])
        assert err.value.errno == errno.ENOENT and "add element" in str(err.value)
        # atomic: none of the batch's other 1,000 elements went in
        assert len([o for o in nft_state.read_table(s) if isinstance(o, NftSetElement)]) == 3000
