"""RFC 3776 / RFC 4877 protection between a mobile node and its home agent, as XFRM objects.

Pure, like the rest of `state/`: an ``[ipsec.NAME]`` template, the addresses
(home address M, home agent H, care-of address C) and the template's keys
(already read from their files by the caller) in, typed policies and states
out.  The caller (`state.render`) tags them with their origin.

Layout, from the home agent's side (the mobile node's is the mirror image):

transport mode, static (``binding-update``: BU/BA only; ``mobility-header``:
every Mobility Header message between M and H)
    out ``H -> M`` BA, template ESP transport (reqid to_mn);
    in ``M -> H`` BU, templates (ESP transport reqid to_ha, Home Address
    option optional).  The selectors use the home address (RFC 3776 §4.1):
    the kernel processes the HAO (swapping it into the source) before ESP,
    and puts the HAO state in the packet's security path ahead of the ESP
    SA; an inbound template list is matched from its last entry against the
    path from its first, so the optional HAO template is last.  One main
    policy carries both (no sub-policy: mip6ctl owns every policy, so the
    MIP6 and IPsec templates need not live in separate tables as UMIP's
    did next to setkey/racoon).  On the mobile node the BU's out policy has
    (HAO optional, ESP) -- the kernel inserts the HAO (a binding-scoped hao
    state, coaddr C) before it encrypts, so the BU is sent from M -- and the
    BA's in policy (ESP, type 2 routing header optional).
    Two SAs, fixed SPIs (``spi``) and reqids (``reqid``), keys from the
    template's key files.
tunnel mode, per binding (``return-routability``: HoTI/HoT;
``tunnel-mobility-header``: all MH; ``payload``: everything)
    out ``any -> M`` template ESP tunnel H -> C (reqid to_mn); fwd and in
    ``M -> any`` template ESP tunnel C -> H (reqid to_ha); SAs H <-> C with
    ``tunnel_spi``.  The care-of address is in the templates and SAs only,
    never in a key: a move changes templates and SA addresses under the same
    keys and SPIs, which the plan turns into an XFRM MIGRATE
    (`state.plan`), as UMIP and the IKE daemons expect.

Priorities in the owned band: transport BU/BA first, then the tunnelled
Mobility Header policies (ahead of route optimisation's MH bypass, which
would otherwise send HoTI unprotected), then route optimisation's data
policies, then tunnelled payload.

``key_management = "ike"``: the same policies, no states (the IKE daemon
installs SAs with the same reqids).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Literal

from mip6ctl import ownership
from mip6ctl.config.ipsec_needs import TRANSPORT_KINDS, TUNNEL_KINDS
from mip6ctl.config.model import IpsecTemplate, Protect
from mip6ctl.state.xfrm import (
    Direction,
    Level,
    Mode,
    XfrmAlgo,
    XfrmPolicy,
    XfrmProto,
    XfrmSelector,
    XfrmState,
    XfrmTemplate,
)

MH_HOTI, MH_HOT, MH_BU, MH_BA = 1, 3, 5, 6

#: precedence inside the owned band (lower value first)
TRANSPORT_PRIORITY = ownership.XFRM_PRIORITY_MIN
TUNNEL_MH_PRIORITY = ownership.XFRM_PRIORITY_MIN + 0x8
TUNNEL_PAYLOAD_PRIORITY = ownership.XFRM_PRIORITY_MIN + 0x30

#: ICMPv6 Mobile Prefix Solicitation / Advertisement (RFC 6275 §6.7, RFC 3776 §4.3)
ICMP_MPS, ICMP_MPA = 146, 147
IPPROTO_ICMPV6 = 58

_ANY = IPv6Network("::/0")

Side = Literal["ha", "mn"]
XfrmObject = XfrmPolicy | XfrmState


@dataclass(frozen=True, slots=True)
class TemplateKeys:
    """The SA algorithms of one template, keys included (compared by digest)."""

    encryption: XfrmAlgo
    authentication: XfrmAlgo

    @property
    def algorithms(self) -> tuple[XfrmAlgo, ...]:
        return (self.encryption, self.authentication)

    def fingerprints(self) -> dict[str, str]:
        return {
            "encryption": self.encryption.fingerprint,
            "authentication": self.authentication.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class Retiring:
    """A template's previous SAs during a key rotation (manual keys, new SPIs).

    Phase 1: the new inbound SAs are in, the old ones stay, and traffic still
    leaves on the old outbound SA -- the peer may not have the new keys yet.
    Phase 2 (one grace period later): the new outbound SA replaces the old
    one; the old inbound SAs stay for a peer still in its phase 1.  After two
    grace periods the caller drops the `Retiring` and only the new SAs remain.
    """

    template: IpsecTemplate
    keys: TemplateKeys
    phase: Literal[1, 2] = 1


def rotation_possible(old: IpsecTemplate, new: IpsecTemplate) -> bool:
    """Old and new SAs can live side by side: every SPI changed, the reqids did not
    (the policies' templates name reqids, not SPIs), the same traffic is protected."""

    def spis(t: IpsecTemplate) -> set[int]:
        return {*_pair(t.spi), *_pair(t.tunnel_spi)} - {0}

    return (
        old.key_management == new.key_management == "manual"
        and not spis(old) & spis(new)
        and _pair(old.reqid) == _pair(new.reqid)
        and _pair(old.tunnel_reqid, old.reqid) == _pair(new.tunnel_reqid, new.reqid)
        and set(old.protect) == set(new.protect)
    )


def _rotate(
    side: Side,
    new: tuple[XfrmState, XfrmState],
    old: tuple[XfrmState, XfrmState] | None,
    phase: int,
) -> Iterator[XfrmState]:
    """The SAs of one (towards HA, towards MN) pair, old ones kept as `Retiring` says."""
    up, down = new
    if old is None:
        yield up
        yield down
        return
    inbound, outbound = (up, down) if side == "ha" else (down, up)
    old_in, old_out = (old[0], old[1]) if side == "ha" else (old[1], old[0])
    yield inbound
    yield old_in
    yield old_out if phase == 1 else outbound


def _esp_pair(
    spis: tuple[int, int],
    mode: Mode,
    reqids: tuple[int, int],
    mn_end: IPv6Address,
    ha: IPv6Address,
    keys: TemplateKeys,
    selectors: tuple[XfrmSelector | None, XfrmSelector | None] = (None, None),
) -> tuple[XfrmState, XfrmState]:
    """The two ESP SAs of a template: (towards the HA, towards the mobile node)."""
    common = {"algorithms": keys.algorithms, "replay_window": 32}
    return (
        XfrmState(ha, mn_end, XfrmProto.ESP, spis[0], mode, reqids[0], selectors[0], **common),  # type: ignore[arg-type]
        XfrmState(mn_end, ha, XfrmProto.ESP, spis[1], mode, reqids[1], selectors[1], **common),  # type: ignore[arg-type]
    )


def template_keys(tpl: IpsecTemplate, keys: Mapping[str, bytes]) -> TemplateKeys | None:
    """Algorithms from a template and its key bytes (``keys``: section -> bytes).

    None when the template uses IKE or a key is missing (validation reports that).
    ESP without encryption is ESP with the null cipher (RFC 4303 integrity only).
    """
    if tpl.key_management != "manual" or tpl.authentication is None:
        return None
    auth = keys.get("authentication")
    if auth is None:
        return None
    if tpl.encryption is None or tpl.encryption.algorithm == "null":
        enc = XfrmAlgo.from_config("null", b"")
    else:
        key = keys.get("encryption")
        if key is None:
            return None
        enc = XfrmAlgo.from_config(tpl.encryption.algorithm, key)
    return TemplateKeys(enc, XfrmAlgo.from_config(tpl.authentication.algorithm, auth))


def protects_signalling(tpl: IpsecTemplate) -> bool:
    """BU/BA go through ESP transport mode with this template."""
    return tpl.protects_signalling


def tunnels(tpl: IpsecTemplate) -> bool:
    return bool(TUNNEL_KINDS & set(tpl.protect))


def _host(a: IPv6Address) -> IPv6Network:
    return IPv6Network((a, 128))


def _pair(p: object, default: object = None) -> tuple[int, int]:
    """(to_ha, to_mn) of a SpiPair/ReqidPair, (0, 0) when absent."""
    src = p if p is not None else default
    if src is None:
        return 0, 0
    return src.to_ha, src.to_mn  # type: ignore[attr-defined]


def _mh(src: IPv6Network, dst: IPv6Network, mh_type: int | None) -> XfrmSelector:
    return XfrmSelector.mobility(src, dst, mh_type)


def transport(
    side: Side,
    tpl: IpsecTemplate,
    home: IPv6Address,
    ha: IPv6Address,
    keys: TemplateKeys | None,
    retiring: Retiring | None = None,
) -> Iterator[XfrmObject]:
    """The static transport-mode protection of one mobile node: BU/BA (or all MH), and
    Mobile Prefix Discovery, all ICMPv6 or everything between home address and HA."""
    kinds = set(tpl.protect)
    if not TRANSPORT_KINDS & kinds:
        return
    m, h = _host(home), _host(ha)
    everything = bool({Protect.MOBILITY_HEADER, Protect.ANY} & kinds)
    to_ha, to_mn = _pair(tpl.reqid)
    esp_ha = XfrmTemplate(XfrmProto.ESP, Mode.TRANSPORT, reqid=to_ha)
    esp_mn = XfrmTemplate(XfrmProto.ESP, Mode.TRANSPORT, reqid=to_mn)
    hao = XfrmTemplate(XfrmProto.HAO, Mode.RO, dst=ha, src=home, level=Level.USE)
    rh2 = XfrmTemplate(XfrmProto.ROUTE2, Mode.RO, dst=home, src=ha, level=Level.USE)
    to_ha_sel = _mh(m, h, None if everything else MH_BU)
    to_mn_sel = _mh(h, m, None if everything else MH_BA)
    pairs: list[tuple[XfrmSelector, XfrmSelector, bool]] = []  # (to HA, to MN, carries HAO)
    if protects_signalling(tpl):
        pairs.append((to_ha_sel, to_mn_sel, True))
    if Protect.ANY in kinds:
        pairs.append((XfrmSelector(dst=h, src=m), XfrmSelector(dst=m, src=h), False))
    elif Protect.ICMP in kinds:
        pairs.append((_icmp(m, h, None), _icmp(h, m, None), False))
    elif Protect.MOBILE_PREFIX_DISCOVERY in kinds:
        pairs.append((_icmp(m, h, ICMP_MPS), _icmp(h, m, ICMP_MPA), False))
    for up, down, mh in pairs:
        prio = TRANSPORT_PRIORITY if mh else TRANSPORT_PRIORITY + 1  # MH first: HAO/RH2
        if side == "ha":
            yield XfrmPolicy(
                up, Direction.IN, priority=prio, templates=(esp_ha, _wild(hao)) if mh else (esp_ha,)
            )
            yield XfrmPolicy(down, Direction.OUT, priority=prio, templates=(esp_mn,))
        else:
            yield XfrmPolicy(
                up, Direction.OUT, priority=prio, templates=(hao, esp_ha) if mh else (esp_ha,)
            )
            yield XfrmPolicy(
                down,
                Direction.IN,
                priority=prio,
                templates=(esp_mn, _wild(rh2)) if mh else (esp_mn,),
            )
    if keys is None:
        return
    sel_ha, sel_mn = XfrmSelector(dst=h, src=m), XfrmSelector(dst=m, src=h)

    def pair(t: IpsecTemplate, k: TemplateKeys) -> tuple[XfrmState, XfrmState]:
        return _esp_pair(
            _pair(t.spi), Mode.TRANSPORT, (to_ha, to_mn), home, ha, k, (sel_ha, sel_mn)
        )

    old = pair(retiring.template, retiring.keys) if retiring is not None else None
    yield from _rotate(side, pair(tpl, keys), old, retiring.phase if retiring else 1)


def _icmp(src: IPv6Network, dst: IPv6Network, icmp_type: int | None) -> XfrmSelector:
    """ICMPv6 (one type: the kernel keys it in sport, as for MH)."""
    if icmp_type is None:
        return XfrmSelector(dst=dst, src=src, proto=IPPROTO_ICMPV6)
    return XfrmSelector(dst=dst, src=src, proto=IPPROTO_ICMPV6, sport=icmp_type, sport_mask=0xFFFF)


def _wild(t: XfrmTemplate) -> XfrmTemplate:
    """Inbound, the HAO / type 2 RH is accepted by the kernel transport's wildcard
    states (`render._kernel_transport_wildcards`): a template without addresses."""
    return XfrmTemplate(t.proto, t.mode, level=Level.USE)


def home_address_option(home: IPv6Address, ha: IPv6Address, care_of: IPv6Address) -> XfrmState:
    """Mobile node, away: the hao state through which the kernel adds the Home Address
    option to the protected BU (sent from the home address) before ESP."""
    return XfrmState(
        ha,
        home,
        XfrmProto.HAO,
        mode=Mode.RO,
        selector=XfrmSelector(dst=_host(ha), src=_host(home)),
        coaddr=care_of,
    )


def _tunnel_selectors(
    tpl: IpsecTemplate, home: IPv6Address
) -> Iterator[tuple[XfrmSelector, XfrmSelector, int]]:
    """(from the home address, to it, priority) per tunnelled traffic class."""
    m = _host(home)
    kinds = set(tpl.protect)
    if Protect.TUNNEL_MOBILITY_HEADER in kinds:
        yield _mh(m, _ANY, None), _mh(_ANY, m, None), TUNNEL_MH_PRIORITY
    elif Protect.RETURN_ROUTABILITY in kinds:
        yield _mh(m, _ANY, MH_HOTI), _mh(_ANY, m, MH_HOT), TUNNEL_MH_PRIORITY
    if Protect.PAYLOAD in kinds:
        yield (
            XfrmSelector(dst=_ANY, src=m),
            XfrmSelector(dst=m, src=_ANY),
            (TUNNEL_PAYLOAD_PRIORITY),
        )


def tunnel(
    side: Side,
    tpl: IpsecTemplate,
    home: IPv6Address,
    ha: IPv6Address,
    care_of: IPv6Address,
    keys: TemplateKeys | None,
    retiring: Retiring | None = None,
) -> Iterator[XfrmObject]:
    """The tunnel-mode protection of one binding (care-of address `care_of`)."""
    if not tunnels(tpl) or care_of == home:
        return
    to_ha, to_mn = _pair(tpl.tunnel_reqid, tpl.reqid)
    up = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=ha, src=care_of, reqid=to_ha)
    down = XfrmTemplate(XfrmProto.ESP, Mode.TUNNEL, dst=care_of, src=ha, reqid=to_mn)
    for from_home, to_home, prio in _tunnel_selectors(tpl, home):
        if side == "ha":
            yield XfrmPolicy(to_home, Direction.OUT, priority=prio, templates=(down,))
            yield XfrmPolicy(from_home, Direction.FWD, priority=prio, templates=(up,))
            yield XfrmPolicy(from_home, Direction.IN, priority=prio, templates=(up,))
        else:
            yield XfrmPolicy(from_home, Direction.OUT, priority=prio, templates=(up,))
            yield XfrmPolicy(to_home, Direction.IN, priority=prio, templates=(down,))
    if keys is None:
        return

    def pair(t: IpsecTemplate, k: TemplateKeys) -> tuple[XfrmState, XfrmState]:
        return _esp_pair(_pair(t.tunnel_spi), Mode.TUNNEL, (to_ha, to_mn), care_of, ha, k)

    old = pair(retiring.template, retiring.keys) if retiring is not None else None
    yield from _rotate(side, pair(tpl, keys), old, retiring.phase if retiring else 1)


def keyring(
    templates: Mapping[str, IpsecTemplate], raw: Mapping[str, Mapping[str, bytes]]
) -> dict[str, TemplateKeys]:
    """`template_keys` for every template that has its keys (`config.keyring` reads them)."""
    out: dict[str, TemplateKeys] = {}
    for name, tpl in templates.items():
        keys = template_keys(tpl, raw.get(name, {}))
        if keys is not None:
            out[name] = keys
    return out
