"""The netns tier's XFRM tests (tests/netns/test_xfrm.py), again in the full kernel.

On the host kernel the ESP, route2 and hao state tests skip (no
CONFIG_INET6_ESP / CONFIG_IPV6_MIP6); here they must run, so the vm tier
re-collects the same test functions with the Mobile IPv6 modules loaded, and
tests/vm/conftest.py turns a skip in the guest into a failure.
"""

from __future__ import annotations

import pytest

from mip6ctl.kernel.probe import xfrm_capabilities
from tests import nsutil
from tests.netns.test_xfrm import *  # noqa: F403  (re-collect tests and fixtures)

pytestmark = pytest.mark.usefixtures("mip6_modules")


def test_every_xfrm_capability_is_present_in_the_full_kernel(netns) -> None:
    """The netns version accepts "missing, with a reason"; this kernel has them all."""
    ns = netns("caps")
    caps = xfrm_capabilities(lambda: nsutil.inside(ns))
    assert {name: cap.reason for name, cap in caps.items() if not cap} == {}
