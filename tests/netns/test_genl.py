"""Generic netlink (mip6ctl.kernel.genl) against the real kernel, in a throwaway namespace.

`ip -n NS sr tunsrc show` is the independent check of what the SEG6 family
stores; the host namespace's tunnel source must not move.
"""

from __future__ import annotations

import errno
from ipaddress import IPv6Address

import pytest

from mip6ctl.kernel import genl
from tests import nsutil

ADDR = IPv6Address("2001:db8:a::100")


def _ip_tunsrc(ns: str) -> str:
    return nsutil.ip("sr", "tunsrc", "show", ns=ns).stdout.split()[-1]


def test_seg6_tunnel_source_set_read_back_and_cleared(netns) -> None:
    ns = netns("genl")
    before_host = genl.get_seg6_tunsrc()
    with nsutil.inside(ns):
        assert genl.get_seg6_tunsrc() is None
        genl.set_seg6_tunsrc(ADDR)
        assert genl.get_seg6_tunsrc() == ADDR
    assert _ip_tunsrc(ns) == str(ADDR)
    assert genl.get_seg6_tunsrc() == before_host, "the host namespace must not change"
    with nsutil.inside(ns):
        genl.set_seg6_tunsrc("::")
        assert genl.get_seg6_tunsrc() is None
        genl.set_seg6_tunsrc(str(ADDR))
        genl.set_seg6_tunsrc(None)
        assert genl.get_seg6_tunsrc() is None
    assert _ip_tunsrc(ns) == "::"


def test_family_resolution_is_cached_and_unknown_families_are_enoent(netns) -> None:
    ns = netns("genl")
    with nsutil.inside(ns):
        s = genl.GenlSocket()
    with s:
        seg6 = s.family("SEG6")
        assert seg6 >= 0x10 and s.family("SEG6") == seg6
        assert s.family("nlctrl") == genl.GENL_ID_CTRL
        with pytest.raises(OSError) as e:
            s.family("m6-no-family")
        assert e.value.errno == errno.ENOENT
