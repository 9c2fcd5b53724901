"""IPsec key files and IKE pre-shared keys: read, check, fingerprint — never show the key.

Keys are referenced by path in the configuration and stored as hexadecimal
text (what `ip xfrm` prints, easy to template with Ansible); a raw binary
file of exactly the key's length is accepted too.  Everything that leaves
this module for humans is a fingerprint: `sha256:` + 16 hex digits of the
SHA-256 of the key bytes, enough to tell two keys apart, useless to an
attacker.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

#: Acceptable key lengths in bytes per algorithm (RFC 4835 / Linux crypto names).
KEY_LENGTHS: dict[str, tuple[int, ...]] = {
    "aes-cbc": (16, 24, 32),
    # RFC 3686: the key is followed by a 4-octet nonce
    "aes-ctr": (20, 28, 36),
    "3des-cbc": (24,),
    "null": (0,),
    "hmac-sha1": (20,),
    "hmac-sha256": (32,),
    "hmac-sha384": (48,),
    "hmac-sha512": (64,),
}

#: Largest key file read: a 64-byte key in hexadecimal and whitespace is
#: ~200 bytes; anything much larger is not a key file.
MAX_KEY_FILE_BYTES = 4096

_HEX = re.compile(rb"^\s*(?:0x)?([0-9a-fA-F\s]*)\s*$")

#: Smallest and largest IKE pre-shared key accepted (bytes, after hex decoding).
PSK_MIN_BYTES = 16
PSK_MAX_BYTES = 256
#: a PSK file is hexadecimal text only (at least one digit), no raw form
_PSK_HEX = re.compile(rb"^\s*(?:0x)?([0-9a-fA-F\s]+)\s*$")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message never contains key bytes."""


class SecretBytes:
    """Key bytes that do not print themselves."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretBytes({fingerprint(self._value)})"

    __str__ = __repr__


def fingerprint(key: bytes) -> str:
    return "sha256:" + hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    path: Path
    length: int
    fingerprint: str


def _decode(raw: bytes, want: tuple[int, ...]) -> bytes:
    m = _HEX.match(raw)
    if m:
        digits = re.sub(rb"\s+", b"", m.group(1))
        if len(digits) % 2:
            raise KeyFileError("odd number of hexadecimal digits")
        return bytes.fromhex(digits.decode())
    if len(raw) in want:
        return raw
    raise KeyFileError("neither hexadecimal text nor a raw key of a valid length")


def _read_file(full: Path) -> bytes:
    """The bytes of a key file: regular, no group/other bits, at most MAX_KEY_FILE_BYTES."""
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise KeyFileError(f"key file {full} does not exist") from None
    except OSError as e:
        raise KeyFileError(f"key file {full}: {e.strerror}") from None
    except ValueError:  # a NUL in the name
        raise KeyFileError("key file name contains a NUL character") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {full} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {full} has mode {stat.S_IMODE(st.st_mode):04o}: group/other may "
            f"access it; run `chmod 600 {full}`"
        )
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"key file {full} is {st.st_size:,} bytes; a key file holds at most "
            f"{MAX_KEY_FILE_BYTES:,}"
        )
    try:
        with full.open("rb") as f:
            raw = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"key file {full}: {e.strerror}") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {full} grew past {MAX_KEY_FILE_BYTES:,} bytes")
    return raw


def read_key(path: Path, algorithm: str, *, base: Path | None = None) -> SecretBytes:
    """Read and check a key file for `algorithm`; raise KeyFileError with a safe message."""
    full = path if path.is_absolute() or base is None else base / path
    want = KEY_LENGTHS[algorithm]
    key = _decode(_read_file(full), want)
    if len(key) not in want:
        bits = [str(n * 8) for n in want]
        sizes = bits[0] if len(bits) == 1 else ", ".join(bits[:-1]) + " or " + bits[-1]
        raise KeyFileError(
            f"key file {full} holds a {len(key) * 8}-bit key; {algorithm} needs {sizes} bits"
        )
    return SecretBytes(key)


def read_psk(path: Path, *, base: Path | None = None) -> SecretBytes:
    """Read and check an IKE pre-shared key file (``psk_file``): the file rules of
    `read_key` (regular, mode 0600, small), hexadecimal text only, 128 to 2048 bits.

    Raise KeyFileError with a message that shows no key byte.  Used by `checks`
    (validate) and by the strongSwan generator (`mip6ctl.ike.swanctl`)."""
    full = path if path.is_absolute() or base is None else base / path
    m = _PSK_HEX.match(_read_file(full))
    if not m:
        raise KeyFileError(f"PSK file {full} is not hexadecimal text")
    digits = re.sub(rb"\s+", b"", m.group(1))
    if len(digits) % 2:
        raise KeyFileError(f"PSK file {full}: odd number of hexadecimal digits")
    key = bytes.fromhex(digits.decode())
    if not PSK_MIN_BYTES <= len(key) <= PSK_MAX_BYTES:
        raise KeyFileError(
            f"PSK file {full} holds {len(key) * 8} bits; a PSK needs "
            f"{PSK_MIN_BYTES * 8} to {PSK_MAX_BYTES * 8} bits"
        )
    return SecretBytes(key)


def key_info(path: Path, algorithm: str, *, base: Path | None = None) -> KeyInfo:
    key = read_key(path, algorithm, base=base)
    return KeyInfo(path=path, length=len(key), fingerprint=fingerprint(key.reveal()))
