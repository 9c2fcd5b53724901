"""Fuzzing the packet path: any captured bytes give an engine input or a drop, and
the engine's reaction is one of the prescribed ones (a BA, a Binding Error, a
Parameter Problem, or nothing), never an exception (issue 21).

Inputs are random bytes and mutations (flips, cuts, insertions) of valid
Binding Update, HoTI and ICMPv6 packets, decoded as the userspace transport
does (`decode_packet`) and fed to a home agent and a correspondent engine; every
packet the engine asks to send must encode (`build_outgoing`,
`build_parameter_problem`).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mip6ctl.engine import Engine
from mip6ctl.engine.events import (
    Action,
    BindingChanged,
    HomeAddressOptionReceived,
    Malformed,
    PersistBinding,
    Received,
    Send,
    SendParameterProblem,
    StartDad,
)
from mip6ctl.wire.datagram import (
    Dropped,
    ICMPv6Received,
    build_outgoing,
    build_parameter_problem,
    decode_packet,
)
from mip6ctl.wire.icmp6 import NeighborSolicitation, encode_icmp6
from mip6ctl.wire.mh import BindingUpdate, HomeTestInit, encode_mh
from mip6ctl.wire.mobopts import AlternateCareofAddress
from mip6ctl.wire.packet import build_icmp6_packet, build_mh_packet

from .helpers import COA, HA, HA_FLAGS, HOA, cn_config, ha_config

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

SEEDS = [
    build_mh_packet(COA, HA, BindingUpdate(7, HA_FLAGS, 100), home_address=HOA),
    build_mh_packet(COA, HA, BindingUpdate(8, HA_FLAGS, 0), home_address=HOA),
    build_mh_packet(HOA, HA, HomeTestInit(bytes(8))),
    build_icmp6_packet(COA, HA, encode_icmp6(NeighborSolicitation(HOA)), hop_limit=255),
]


MH_SEEDS = [
    encode_mh(BindingUpdate(7, HA_FLAGS, 100)),
    encode_mh(BindingUpdate(9, HA_FLAGS, 100, (AlternateCareofAddress(COA),))),
    encode_mh(HomeTestInit(bytes(8))),
]


def _mutate(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A whole packet mutated (most fail the checksum: the silent drop of §9.2)."""
    return _mutate(draw, draw(st.sampled_from(SEEDS)))


@st.composite
def mutated_mh(draw: st.DrawFn) -> bytes:
    """A Mobility Header mutated, in a packet with a right checksum: reaches the engine."""
    mh = _mutate(draw, draw(st.sampled_from(MH_SEEDS)))
    hoa = draw(st.sampled_from([HOA, None]))
    return build_mh_packet(COA if hoa else HOA, HA, mh, home_address=hoa)


PACKETS = st.one_of(mutated(), mutated_mh(), st.binary(max_size=200))
EVENTS = (Received, Malformed, ICMPv6Received, HomeAddressOptionReceived)
ACTIONS = (Send, SendParameterProblem, BindingChanged, PersistBinding, StartDad)


def react(engine: Engine, data: bytes) -> list[Action]:
    ev = decode_packet(data, is_local=lambda a: True, icmp_types={135, 136})
    if isinstance(ev, Dropped):
        return []
    assert isinstance(ev, EVENTS), ev
    if isinstance(ev, ICMPv6Received):
        return []  # the daemon's ND code takes these, not the engine
    actions = engine.handle(ev, 1000.0)
    for a in actions:
        assert isinstance(a, ACTIONS), a
        if isinstance(a, Send):
            build_outgoing(a)
        elif isinstance(a, SendParameterProblem):
            assert len(build_parameter_problem(a)) <= 1280
    return actions


@FUZZ
@given(PACKETS)
def test_a_home_agent_reacts_to_any_packet_as_prescribed(data: bytes) -> None:
    react(Engine(ha_config(), 1000.0, kcn=bytes(20)), data)


@FUZZ
@given(PACKETS)
def test_a_correspondent_reacts_to_any_packet_as_prescribed(data: bytes) -> None:
    react(Engine(cn_config(), 1000.0, kcn=bytes(20)), data)


def test_the_seeds_are_what_they_should_be() -> None:
    """The mutations start from packets the engine accepts (else the fuzz tests little)."""
    ha = Engine(ha_config(), 1000.0, kcn=bytes(20))
    acts = react(ha, SEEDS[0])
    assert any(isinstance(a, BindingChanged) for a in acts), acts
    cn = Engine(cn_config(), 1000.0, kcn=bytes(20))
    assert any(isinstance(a, Send) for a in react(cn, SEEDS[2]))
