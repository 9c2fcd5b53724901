"""Generate strongSwan (swanctl/VICI) connections from ``[ipsec.NAME]`` templates.

Pure: no I/O except reading the pre-shared key file.  One connection per
mobile node whose template has ``key_management = "ike"``:

* IKEv2 between the mobile node's **care-of address** and the home agent,
  identities = the home address (MN) and the home agent address (HA),
  authentication by a pre-shared key from ``psk_file``;
* child ``mh`` -- ``mode = transport_proxy`` (RFC 4877 §4.1: transport-mode
  ESP between home address and HA while IKE runs from the care-of address),
  reqid = the template's ``reqid``, for the Mobility Header traffic the
  template protects (binding-update, mobility-header, mobile-prefix-discovery,
  icmp, any);
* child ``tunnel`` -- ``mode = tunnel`` between care-of address and HA, reqid
  = ``tunnel_reqid`` (default ``reqid``), for return-routability /
  tunnel-mobility-header (MH inside the tunnel) or all payload;
* ``policies = no`` in both children (mip6ctl renders and owns the kernel
  policies, with the same fixed reqids), ``mobike = no`` (movement reaches
  charon through XFRM_MSG_MIGRATE with XFRMA_KMADDRESS, which MOBIKE is not).

The dicts are what VICI's ``load-conn`` and ``load-shared`` take (every leaf a
string or a list of strings).  `swanctl_conf` renders the same connections as
swanctl.conf text for humans; it never contains the key, only its fingerprint.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from mip6ctl.config import secrets
from mip6ctl.config.ipsec_needs import TRANSPORT_KINDS, TUNNEL_KINDS
from mip6ctl.config.model import IpsecTemplate, Mip6Config, Protect
from mip6ctl.config.secrets import KeyFileError, SecretBytes, fingerprint

KeyPath = tuple[str | int, ...]

#: Child names (stable: the daemon and `status` refer to them).
CHILD_MH = "mh"
CHILD_TUNNEL = "tunnel"

# Protect kinds: config.ipsec_needs.TRANSPORT_KINDS go to the transport_proxy child
# (HoA <-> HA), TUNNEL_KINDS to the tunnel child (CoA <-> HA outer addresses).

IPPROTO_ICMPV6 = 58
IPPROTO_MH = 135

#: Smallest and largest pre-shared key accepted (bytes, after hex decoding).
PSK_MIN_BYTES = secrets.PSK_MIN_BYTES
PSK_MAX_BYTES = secrets.PSK_MAX_BYTES

_ENCRYPTION = {
    "aes-cbc": "aes{bits}",
    "aes-ctr": "aes{bits}ctr",
    "3des-cbc": "3des",
    "null": "null",
}
_INTEGRITY = {
    "hmac-sha1": "sha1",
    "hmac-sha256": "sha256",
    "hmac-sha384": "sha384",
    "hmac-sha512": "sha512",
}


class IkeConfigError(ValueError):
    """The configuration cannot be turned into IKE connections; names the key path.

    The message never contains key bytes."""

    def __init__(self, path: KeyPath, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{'.'.join(str(p) for p in path)}: {message}")


# --------------------------------------------------------------------------- PSK


@dataclass(frozen=True, slots=True)
class PskInfo:
    path: Path
    length: int
    fingerprint: str


def read_psk(path: Path, *, base: Path | None = None, key_path: KeyPath = ()) -> SecretBytes:
    """Read a PSK file: regular, mode 0600 (no group/other bits), hexadecimal text.

    The checks are `mip6ctl.config.secrets.read_psk`'s (the ones `validate`
    runs); 128 to 2048 bits.  Raises IkeConfigError with a message that shows
    no key byte."""
    try:
        return secrets.read_psk(path, base=base)
    except KeyFileError as e:
        raise IkeConfigError(key_path, str(e)) from None


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class IkeChild:
    """One CHILD_SA configuration, as loaded into charon."""

    name: str
    mode: str  # "transport_proxy" | "tunnel"
    reqid: int
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    esp_proposals: tuple[str, ...]

    def vici(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reqid": str(self.reqid),
            "policies": "no",
            "local_ts": list(self.local_ts),
            "remote_ts": list(self.remote_ts),
            "esp_proposals": list(self.esp_proposals),
            "start_action": "none",
            "close_action": "none",
        }


@dataclass(frozen=True, slots=True)
class IkeConnection:
    """One swanctl connection (one mobile node), both ends of which mip6ctl generates."""

    name: str
    role: str  # "mn" | "ha": which end this is
    template: str
    home_address: IPv6Address
    home_agent: IPv6Address
    #: the MN's care-of address this connection is bound to (MN end); None on the HA
    care_of_address: IPv6Address | None
    local_addrs: tuple[str, ...]
    remote_addrs: tuple[str, ...]
    local_id: str
    remote_id: str
    children: tuple[IkeChild, ...]
    ike_proposals: tuple[str, ...] = ("default",)
    psk_path: Path | None = None
    psk: SecretBytes = field(default=SecretBytes(b""), repr=False, compare=False)

    @property
    def psk_fingerprint(self) -> str:
        return fingerprint(self.psk.reveal())

    @property
    def shared_id(self) -> str:
        """Identifier of the PSK in charon's credential set (``load-shared`` id)."""
        return f"{self.name}-psk"

    def child(self, name: str) -> IkeChild | None:
        return next((c for c in self.children if c.name == name), None)

    @property
    def reqids(self) -> dict[str, int]:
        return {c.name: c.reqid for c in self.children}

    def vici_conn(self) -> dict[str, Any]:
        """The ``load-conn`` message: {name: {...}}."""
        return {
            self.name: {
                "version": "2",
                "local_addrs": list(self.local_addrs),
                "remote_addrs": list(self.remote_addrs),
                "proposals": list(self.ike_proposals),
                "mobike": "no",
                "encap": "no",
                "fragmentation": "yes",
                "send_certreq": "no",
                "unique": "replace" if self.role == "ha" else "no",
                "keyingtries": "1",
                "local": {"auth": "psk", "id": self.local_id},
                "remote": {"auth": "psk", "id": self.remote_id},
                "children": {c.name: c.vici() for c in self.children},
            }
        }

    def vici_shared(self) -> dict[str, Any]:
        """The ``load-shared`` message.  Holds the key: pass it to VICI only, never log it."""
        return {
            "id": self.shared_id,
            "type": "IKE",
            "data": self.psk.reveal(),
            "owners": [self.local_id, self.remote_id],
        }

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for `status`/logs: no key, its fingerprint."""
        return {
            "name": self.name,
            "role": self.role,
            "template": self.template,
            "home_address": str(self.home_address),
            "home_agent": str(self.home_agent),
            "care_of_address": str(self.care_of_address) if self.care_of_address else None,
            "local_addrs": list(self.local_addrs),
            "remote_addrs": list(self.remote_addrs),
            "children": {
                c.name: {
                    "mode": c.mode,
                    "reqid": c.reqid,
                    "local_ts": list(c.local_ts),
                    "remote_ts": list(c.remote_ts),
                }
                for c in self.children
            },
            "psk_file": str(self.psk_path) if self.psk_path else None,
            "psk_fingerprint": self.psk_fingerprint,
        }


def connection_name(home_address: IPv6Address | str) -> str:
    """``mip6-`` + the home address with ':' spelt '-' (swanctl section names have no ':')."""
    return "mip6-" + str(ipaddress.IPv6Address(str(home_address))).replace(":", "-")


# --------------------------------------------------------------------------- generation


def _proposals(tpl: IpsecTemplate) -> tuple[str, ...]:
    enc, auth = tpl.encryption, tpl.authentication
    if enc is None and auth is None:
        return ("default",)
    parts = []
    if enc is not None:
        parts.append(_ENCRYPTION[enc.algorithm].format(bits=enc.key_bits or 128))
    else:
        parts.append("null")
    if auth is not None:
        parts.append(_INTEGRITY[auth.algorithm])
    elif enc is not None and enc.algorithm != "null":
        parts.append("sha256")  # ESP without integrity is not offered (RFC 4877 §4)
    return ("-".join(parts),)


def _ts(addr: str, protos: Iterable[int | None]) -> tuple[str, ...]:
    return tuple(addr if p is None else f"{addr}[{p}]" for p in protos)


def _reqid(pair: Any, path: KeyPath) -> int:
    if pair.to_ha != pair.to_mn:
        raise IkeConfigError(
            path,
            "with key_management = 'ike' to_ha and to_mn must be equal: charon gives "
            "both SAs of a CHILD_SA one reqid",
        )
    return int(pair.to_ha)


def _children(
    name: str, tpl: IpsecTemplate, *, hoa: IPv6Address, ha: IPv6Address, mn_end: bool
) -> tuple[IkeChild, ...]:
    path: KeyPath = ("ipsec", name)
    kinds = set(tpl.protect)
    if tpl.reqid is None:
        raise IkeConfigError(
            path,
            "key_management = 'ike' needs fixed reqids: reqid = { to_ha, to_mn } (and "
            "tunnel_reqid when a tunnel kind is protected), so that mip6ctl's policies and "
            "charon's SAs match whatever the start order",
        )
    esp = _proposals(tpl)
    home, agent = f"{hoa}/128", f"{ha}/128"
    out: list[IkeChild] = []
    mh_reqid = _reqid(tpl.reqid, (*path, "reqid"))
    if kinds & TRANSPORT_KINDS:
        if Protect.ANY in kinds:
            protos: list[int | None] = [None]
        else:
            protos = []
            if kinds & {Protect.BINDING_UPDATE, Protect.MOBILITY_HEADER}:
                protos.append(IPPROTO_MH)
            if kinds & {Protect.MOBILE_PREFIX_DISCOVERY, Protect.ICMP}:
                protos.append(IPPROTO_ICMPV6)
        mine, theirs = (home, agent) if mn_end else (agent, home)
        out.append(
            IkeChild(
                CHILD_MH, "transport_proxy", mh_reqid, _ts(mine, protos), _ts(theirs, protos), esp
            )
        )
    if kinds & TUNNEL_KINDS:
        tpath = (*path, "tunnel_reqid") if tpl.tunnel_reqid else (*path, "reqid")
        t_reqid = _reqid(tpl.tunnel_reqid or tpl.reqid, tpath)
        if out and t_reqid == mh_reqid:
            raise IkeConfigError(
                tpath,
                f"the tunnel CHILD_SA needs its own reqid (set tunnel_reqid): {t_reqid} is the "
                "transport CHILD_SA's, and charon's migrate job finds a CHILD_SA by reqid",
            )
        tproto: list[int | None] = [None] if Protect.PAYLOAD in kinds else [IPPROTO_MH]
        mine_t, theirs_t = (home, "::/0") if mn_end else ("::/0", home)
        out.append(
            IkeChild(
                CHILD_TUNNEL, "tunnel", t_reqid, _ts(mine_t, tproto), _ts(theirs_t, tproto), esp
            )
        )
    return tuple(out)


def _template(cfg: Mip6Config, name: str, path: KeyPath) -> IpsecTemplate | None:
    tpl = cfg.ipsec.get(name)
    if tpl is None:
        raise IkeConfigError(path, f"no [ipsec.{name}] template")
    return tpl if tpl.key_management == "ike" else None


def _psk(name: str, tpl: IpsecTemplate, base: Path | None) -> tuple[Path, SecretBytes]:
    path: KeyPath = ("ipsec", name, "psk_file")
    if tpl.psk_file is None:
        raise IkeConfigError(
            path[:-1], "key_management = 'ike' needs psk_file (hexadecimal, mode 0600)"
        )
    return tpl.psk_file, read_psk(tpl.psk_file, base=base, key_path=path)


def mn_connection(
    cfg: Mip6Config,
    *,
    care_of_address: IPv6Address | str | None,
    home_agent: IPv6Address | str | None = None,
    base: Path | None = None,
) -> IkeConnection | None:
    """The mobile node's connection to its home agent, or None without an IKE template.

    ``care_of_address`` is the IKE source (``local_addrs``); None lets charon
    pick (``%any``).  ``home_agent`` is needed when ``mn.home_agent = "dhaad"``.
    ``base`` resolves a relative ``psk_file`` (the configuration directory)."""
    mn = cfg.mn
    if mn is None or mn.ipsec is None:
        return None
    tpl = _template(cfg, mn.ipsec, ("mn", "ipsec"))
    if tpl is None:
        return None
    if home_agent is None:
        if mn.home_agent == "dhaad":
            raise IkeConfigError(
                ("mn", "home_agent"), "home agent discovered by DHAAD: pass its address"
            )
        home_agent = mn.home_agent  # type: ignore[assignment]
    ha = IPv6Address(str(home_agent))
    hoa = IPv6Address(str(mn.home_address).split("/")[0])
    coa = IPv6Address(str(care_of_address)) if care_of_address is not None else None
    psk_path, psk = _psk(mn.ipsec, tpl, base)
    return IkeConnection(
        name=connection_name(hoa),
        role="mn",
        template=mn.ipsec,
        home_address=hoa,
        home_agent=ha,
        care_of_address=coa,
        local_addrs=(str(coa) if coa else "%any6",),
        remote_addrs=(str(ha),),
        local_id=str(hoa),
        remote_id=str(ha),
        children=_children(mn.ipsec, tpl, hoa=hoa, ha=ha, mn_end=True),
        psk_path=psk_path,
        psk=psk,
    )


def ha_connections(
    cfg: Mip6Config, *, ha_address: IPv6Address | str | None = None, base: Path | None = None
) -> list[IkeConnection]:
    """One responder connection per listed mobile node whose template uses IKE.

    ``ha_address`` defaults to ``ha.address``.  The care-of address is not
    known in advance: ``remote_addrs = %any``; charon picks the connection by
    the mobile node's identity (its home address).  Two mobile nodes may not
    share a reqid: charon's migrate job moves *every* IKE_SA with a CHILD_SA
    of the migrated reqid (strongSwan migrate_job.c)."""
    ha_cfg = cfg.ha
    if ha_cfg is None:
        return []
    addr = ha_address if ha_address is not None else ha_cfg.address
    out: list[IkeConnection] = []
    seen: dict[int, tuple[str, str]] = {}
    psks: dict[str, tuple[Path, SecretBytes]] = {}
    for i, node in enumerate(ha_cfg.mobile_nodes):
        if node.ipsec is None:
            continue
        path: KeyPath = ("ha", "mobile_nodes", i, "ipsec")
        tpl = _template(cfg, node.ipsec, path)
        if tpl is None:
            continue
        if addr is None:
            raise IkeConfigError(
                ("ha", "address"), "the home agent's address is needed for IKE: set ha.address"
            )
        ha = IPv6Address(str(addr))
        hoa = IPv6Address(str(node.home_address))
        if node.ipsec not in psks:
            psks[node.ipsec] = _psk(node.ipsec, tpl, base)
        psk_path, psk = psks[node.ipsec]
        children = _children(node.ipsec, tpl, hoa=hoa, ha=ha, mn_end=False)
        for c in children:
            other = seen.get(c.reqid)
            if other is not None:
                raise IkeConfigError(
                    path,
                    f"reqid {c.reqid} of {hoa} ({c.name}) is also used by {other[0]} "
                    f"({other[1]}): with IKE every mobile node needs its own reqids (one "
                    "template per node), since a MIGRATE moves every IKE_SA with that reqid",
                )
            seen[c.reqid] = (str(hoa), c.name)
        out.append(
            IkeConnection(
                name=connection_name(hoa),
                role="ha",
                template=node.ipsec,
                home_address=hoa,
                home_agent=ha,
                care_of_address=None,
                local_addrs=(str(ha),),
                remote_addrs=("%any",),
                local_id=str(ha),
                remote_id=str(hoa),
                children=children,
                psk_path=psk_path,
                psk=psk,
            )
        )
    return out


def connections(
    cfg: Mip6Config,
    *,
    care_of_address: IPv6Address | str | None = None,
    home_agent: IPv6Address | str | None = None,
    ha_address: IPv6Address | str | None = None,
    base: Path | None = None,
) -> list[IkeConnection]:
    """Every IKE connection this node's configuration asks for (HA and/or MN end)."""
    out = ha_connections(cfg, ha_address=ha_address, base=base)
    mn = mn_connection(cfg, care_of_address=care_of_address, home_agent=home_agent, base=base)
    if mn is not None:
        out.append(mn)
    return out


# --------------------------------------------------------------------------- text


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(v)
    return str(v)


def _block(name: str, body: dict[str, Any], indent: int) -> list[str]:
    pad = "    " * indent
    lines = [f"{pad}{name} {{"]
    for k, v in body.items():
        if isinstance(v, dict):
            lines += _block(k, v, indent + 1)
        else:
            lines.append(f"{pad}    {k} = {_value(v)}")
    lines.append(f"{pad}}}")
    return lines


def swanctl_conf(conns: Iterable[IkeConnection]) -> str:
    """swanctl.conf text of these connections, for humans and `swanctl --load-conns`.

    The ``secrets`` section names the PSK file and fingerprint only: mip6ctl
    loads the key over VICI (``load-shared``); the text never holds key bytes."""
    lines = ["# generated by mip6ctl (mip6ctl.ike.swanctl); loaded over VICI", "connections {"]
    secrets = ["secrets {"]
    for c in conns:
        ((name, body),) = c.vici_conn().items()
        lines += _block(name, body, 1)
        secrets.append(
            f"    # {c.shared_id}: ike psk for {c.local_id} <-> {c.remote_id} from "
            f"{c.psk_path} ({c.psk_fingerprint}), loaded by mip6ctl over VICI"
        )
    lines.append("}")
    secrets.append("}")
    return "\n".join(lines + secrets) + "\n"
