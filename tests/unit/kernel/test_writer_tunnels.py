"""How the writer decides an ip6tnl tunnel op against the link dump (no kernel needed)."""

from __future__ import annotations

import errno

from mip6ctl.kernel import netlink as nl
from mip6ctl.kernel import writer as wr
from mip6ctl.kernel.writer import Op, Result, Writer, create, delete, replace
from mip6ctl.state.objects import Tunnel

PEER = Tunnel("m6t1", "2001:db8::1", "2001:db8:a::1")
EXT = Tunnel("m6tx", external=True)


def decide(op: Op, *present: Tunnel) -> tuple[list[str], Result | None]:
    """(messages the writer would send, the verdict it settled or armed for EEXIST)."""
    w = Writer.__new__(Writer)  # no socket: only the decision is under test
    w._tunnels = {t.name: t for t in present}
    w._link_names = set(w._tunnels)
    w._checked = {}
    sent: list[str] = []
    results: list[Result | None] = [None]

    def new(flags: int = wr._NEW) -> None:
        sent.append("new-excl" if flags & nl.NLM_F_EXCL else "changelink")

    def dele(target: Tunnel, role: str = "del") -> None:
        sent.append(f"del {target.name}")

    w._queue_tunnel(0, op, results, new, dele)
    return sent, results[0] or w._checked.get(0)


def test_create_is_exclusive_and_eexist_means_the_holder_conflicts() -> None:
    foreign = Tunnel("other6", PEER.local, PEER.remote)
    sent, verdict = decide(create(PEER), foreign)
    assert sent == ["new-excl"]
    assert verdict is not None and verdict.status == "conflict"
    assert verdict.errno == errno.EEXIST and verdict.foreign == foreign
    _sent, verdict = decide(create(EXT), Tunnel("fext", external=True))
    assert verdict is not None and verdict.foreign == Tunnel("fext", external=True)


def test_identical_tunnel_exists_without_a_message() -> None:
    for op in (create(PEER), replace(PEER)):
        sent, verdict = decide(op, PEER)
        assert sent == [] and verdict is not None and verdict.status == "exists"


def test_create_over_a_different_owned_tunnel_says_so() -> None:
    other = Tunnel("m6t1", "2001:db8::1", "2001:db8:b::1")
    sent, verdict = decide(create(PEER), other)
    assert sent == [] and verdict is not None
    assert verdict.status == "exists" and "differs" in verdict.message


def test_replace_changes_endpoints_in_place() -> None:
    sent, _verdict = decide(replace(PEER), Tunnel("m6t1", "2001:db8::1", "2001:db8:b::1"))
    assert sent == ["changelink"]


def test_switching_between_per_peer_and_external_recreates() -> None:
    peer = Tunnel("m6tx", "2001:db8::1", "2001:db8::2")
    assert decide(replace(EXT), peer)[0] == ["del m6tx", "new-excl"]
    assert decide(replace(peer), EXT)[0] == ["del m6tx", "new-excl"]


def test_delete_is_by_name() -> None:
    sent, verdict = decide(delete(EXT))
    assert sent == ["del m6tx"] and verdict is None
