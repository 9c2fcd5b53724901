"""Return routability cryptography (RFC 6275 §5.2.5, §5.2.6)::

    home keygen token    = First64(HMAC_SHA1(Kcn, home address | home nonce | 0))
    care-of keygen token = First64(HMAC_SHA1(Kcn, care-of address | care-of nonce | 1))
    Kbm                  = SHA1(home token | care-of token)     # delete: SHA1(home token)
    Authenticator        = First96(HMAC_SHA1(Kbm, care-of address | correspondent | MH data))

MH data is the Mobility Header with checksum 0, without the 12 authenticator
octets but with the option's type and length octets.

Speed: keying an HMAC costs two SHA1 compressions; :class:`KeygenTokenGenerator`
(one per Kcn) and :class:`BindingAuthenticator` (one per Kbm, kept with the
binding) key once and ``.copy()`` per use.
"""

from __future__ import annotations

import hashlib
import hmac

from .checksum import Address, packed_address
from .mobopts import AUTHENTICATOR_LEN

__all__ = [
    "AUTHENTICATOR_LEN",
    "KCN_LEN",
    "NONCE_LEN",
    "BindingAuthenticator",
    "KeygenTokenGenerator",
    "authenticator",
    "binding_management_key",
    "careof_keygen_token",
    "home_keygen_token",
    "mh_data",
]

KCN_LEN = 20
NONCE_LEN = 8
TOKEN_LEN = 8


class KeygenTokenGenerator:
    """Keygen tokens under one node key Kcn (a CN keeps one, rotating it rarely)."""

    __slots__ = ("_mac",)

    def __init__(self, kcn: bytes) -> None:
        self._mac = hmac.new(kcn, digestmod=hashlib.sha1)

    def home_keygen_token(self, home_address: Address, home_nonce: bytes) -> bytes:
        """First64(HMAC_SHA1(Kcn, home address | nonce | 0))."""
        m = self._mac.copy()
        m.update(packed_address(home_address) + home_nonce + b"\x00")
        return m.digest()[:TOKEN_LEN]

    def careof_keygen_token(self, careof_address: Address, careof_nonce: bytes) -> bytes:
        """First64(HMAC_SHA1(Kcn, care-of address | nonce | 1))."""
        m = self._mac.copy()
        m.update(packed_address(careof_address) + careof_nonce + b"\x01")
        return m.digest()[:TOKEN_LEN]


def home_keygen_token(kcn: bytes, home_address: Address, home_nonce: bytes) -> bytes:
    """One-shot home keygen token (use :class:`KeygenTokenGenerator` in loops)."""
    msg = packed_address(home_address) + home_nonce + b"\x00"
    return hmac.digest(kcn, msg, "sha1")[:TOKEN_LEN]


def careof_keygen_token(kcn: bytes, careof_address: Address, careof_nonce: bytes) -> bytes:
    """One-shot care-of keygen token."""
    msg = packed_address(careof_address) + careof_nonce + b"\x01"
    return hmac.digest(kcn, msg, "sha1")[:TOKEN_LEN]


def binding_management_key(home_token: bytes, careof_token: bytes | None = None) -> bytes:
    """Kbm; without a care-of token, the de-registration form SHA1(home token) (§5.2.5)."""
    if careof_token is None:
        return hashlib.sha1(home_token).digest()
    return hashlib.sha1(home_token + careof_token).digest()


def mh_data(mh: bytes) -> bytes:
    """The octets the authenticator covers: checksum zeroed, last 12 octets removed.

    ``mh`` is a whole Mobility Header whose last option is Binding
    Authorization Data (as :func:`~.mh.decode_mh` guarantees when it decoded one).
    """
    return mh[:4] + b"\x00\x00" + mh[6:-AUTHENTICATOR_LEN]


class BindingAuthenticator:
    """Computes and checks authenticators under one Kbm (keep one per binding)."""

    __slots__ = ("_mac",)

    def __init__(self, kbm: bytes) -> None:
        self._mac = hmac.new(kbm, digestmod=hashlib.sha1)

    def compute(self, careof_address: Address, correspondent: Address, data: bytes) -> bytes:
        """First96(HMAC_SHA1(Kbm, care-of | correspondent | MH data))."""
        m = self._mac.copy()
        m.update(packed_address(careof_address) + packed_address(correspondent) + data)
        return m.digest()[:AUTHENTICATOR_LEN]

    def sign(self, mh: bytes, careof_address: Address, correspondent: Address) -> bytes:
        """``mh`` (ending in a Binding Authorization Data option) with its authenticator set.

        The checksum field is left zero: compute it afterwards (the checksum
        covers the authenticator, not the other way round).
        """
        data = mh_data(mh)
        return data + self.compute(careof_address, correspondent, data)

    def verify(self, mh: bytes, careof_address: Address, correspondent: Address) -> bool:
        """True when the received ``mh``'s last 12 octets are its authenticator."""
        if len(mh) < 8 + AUTHENTICATOR_LEN:
            return False
        expected = self.compute(careof_address, correspondent, mh_data(mh))
        return hmac.compare_digest(expected, mh[-AUTHENTICATOR_LEN:])


def authenticator(
    kbm: bytes, careof_address: Address, correspondent: Address, data: bytes
) -> bytes:
    """One-shot authenticator over MH ``data`` (see :func:`mh_data`)."""
    msg = packed_address(careof_address) + packed_address(correspondent) + data
    return hmac.digest(kbm, msg, "sha1")[:AUTHENTICATOR_LEN]
