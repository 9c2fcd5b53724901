"""The netns tier's writer/observer tests (tests/netns/test_kernel_rtnl.py), again
in the full kernel, where the ip6tnl tunnel tests run instead of skipping.

Same mechanism as test_kernel_layer_xfrm.py: the test functions and fixtures
are re-collected here with the Mobile IPv6 modules loaded; a skip in the guest
fails (tests/vm/conftest.py).
"""

from __future__ import annotations

import pytest

from tests.netns.test_kernel_rtnl import *  # noqa: F403  (re-collect tests and fixtures)

pytestmark = pytest.mark.usefixtures("mip6_modules")
