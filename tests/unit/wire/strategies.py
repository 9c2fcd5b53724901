"""Hypothesis strategies for every Mobility Header message and option."""

from __future__ import annotations

from ipaddress import IPv6Address

from hypothesis import strategies as st

from mip6ctl.wire.mh import (
    BindingAcknowledgement,
    BindingError,
    BindingRefreshRequest,
    BindingUpdate,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    MobilityMessage,
)
from mip6ctl.wire.mobopts import (
    AlternateCareofAddress,
    BindingAuthorizationData,
    BindingRefreshAdvice,
    MobileNetworkPrefix,
    MobilityOption,
    NonceIndices,
    UnknownOption,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
addresses = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
eight = st.binary(min_size=8, max_size=8)


def unknown_options(min_type: int = 7) -> st.SearchStrategy[UnknownOption]:
    """Unknown options; ``min_type`` 17 keeps clear of types scapy dissects itself."""
    return st.builds(UnknownOption, st.integers(min_type, 255), st.binary(max_size=20))


def plain_options(min_unknown: int = 7) -> st.SearchStrategy[MobilityOption]:
    """Any option except Binding Authorization Data (which must be last)."""
    return st.one_of(
        st.builds(BindingRefreshAdvice, u16),
        st.builds(AlternateCareofAddress, addresses),
        st.builds(NonceIndices, u16, u16),
        st.builds(MobileNetworkPrefix, st.integers(0, 128), addresses),
        unknown_options(min_unknown),
    )


@st.composite
def option_lists(draw: st.DrawFn, min_unknown: int = 7) -> tuple[MobilityOption, ...]:
    opts = draw(st.lists(plain_options(min_unknown), max_size=5))
    if draw(st.booleans()):
        opts.append(BindingAuthorizationData(draw(st.binary(min_size=12, max_size=12))))
    return tuple(opts)


def messages(min_unknown: int = 7) -> st.SearchStrategy[MobilityMessage]:
    """Every MH message type with random fields and options."""
    opts = option_lists(min_unknown)
    return st.one_of(
        st.builds(BindingRefreshRequest, opts),
        st.builds(HomeTestInit, eight, opts),
        st.builds(CareofTestInit, eight, opts),
        st.builds(HomeTest, u16, eight, eight, opts),
        st.builds(CareofTest, u16, eight, eight, opts),
        st.builds(
            BindingUpdate, u16, st.integers(0, 0x3F).map(lambda f: f << 10), u16, opts
        ),
        st.builds(
            BindingAcknowledgement, u8, u16, u16, st.sampled_from([0, 0x40, 0x80, 0xC0]), opts
        ),
        st.builds(BindingError, u8, addresses, opts),
    )
