"""SCRAM (RFC 5802, RFC 7677) key derivation and the message syntax shared by both sides.

Passwords are prepared with the PRECIS OpaqueString profile (RFC 8265 §4.2), which replaces
SASLprep for XMPP passwords. Key derivation is CPU-heavy by design: callers run it in a thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from precis_i18n import get_profile

from roost.core.sasl.base import ScramCredentials

__all__ = ["HASHES", "derive_credentials", "salted_password", "verify_password"]

#: SCRAM hash name (as in the mechanism name) -> hashlib name.
HASHES: Final[Mapping[str, str]] = MappingProxyType({"SHA-1": "sha1", "SHA-256": "sha256"})

_OPAQUE_STRING = get_profile("OpaqueString")

# RFC 5802 §7: printable = %x21-2B / %x2D-7E (nonces); cb-name = 1*(ALPHA / DIGIT / "." / "-").
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+")
# RFC 5802 §7: attr-val = ALPHA "=" value; value = 1*value-char (any UTF-8 but NUL and ",").
_ATTR_VAL = re.compile(r"[A-Za-z]=[^\x00,]+")
_POSIT_NUMBER = re.compile(r"[1-9][0-9]*")
# RFC 5802 §5.1: "=" in a saslname must start "=2C" or "=3D".
_SASLNAME = re.compile(r"(?:[^\x00=,]|=2C|=3D)+")


def _hash_name_check(hash_name: str) -> None:
    if hash_name not in HASHES.values():
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}")


def _mechanism_name(hash_name: str, plus: bool) -> str:
    """RFC 5802 §4: "SCRAM-" + IANA hash name, "-PLUS" when channel binding is used."""
    _hash_name_check(hash_name)
    scram_name = next(k for k, v in HASHES.items() if v == hash_name)
    return f"SCRAM-{scram_name}-PLUS" if plus else f"SCRAM-{scram_name}"


def _prepare_password(password: str) -> bytes:
    """RFC 8265 §4.2 enforcement; raises ValueError if the password is not allowed."""
    return _OPAQUE_STRING.enforce(password).encode("utf-8")


def _hmac(hash_name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hash_name).digest()


def _h(hash_name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name, data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _keys(hash_name: str, salted: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 5802 §3: (ClientKey, StoredKey, ServerKey) from SaltedPassword."""
    client_key = _hmac(hash_name, salted, b"Client Key")
    return client_key, _h(hash_name, client_key), _hmac(hash_name, salted, b"Server Key")


def salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 §3: SaltedPassword = Hi(Normalize(password), salt, i), Hi being PBKDF2."""
    _hash_name_check(hash_name)
    if iterations < 1:
        raise ValueError("iteration count must be positive")
    return hashlib.pbkdf2_hmac(hash_name, _prepare_password(password), salt, iterations)


def derive_credentials(
    hash_name: str, password: str, salt: bytes, iterations: int
) -> ScramCredentials:
    """The StoredKey and ServerKey a server keeps instead of the password (RFC 5802 §3)."""
    _, stored_key, server_key = _keys(
        hash_name, salted_password(hash_name, password, salt, iterations)
    )
    return ScramCredentials(salt, iterations, stored_key, server_key)


def verify_password(creds: ScramCredentials, hash_name: str, password: str) -> bool:
    """Check a plaintext password (e.g. from PLAIN) against stored SCRAM credentials."""
    try:
        salted = salted_password(hash_name, password, creds.salt, creds.iterations)
    except ValueError:  # RFC 8265: a password the profile rejects matches nothing
        return False
    return hmac.compare_digest(_keys(hash_name, salted)[1], creds.stored_key)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64 (RFC 5802 §7 base64); raises ValueError on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise ValueError("invalid base64") from err


def _escape_saslname(name: str) -> str:
    """RFC 5802 §5.1: "=" is sent as "=3D" and "," as "=2C"."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _unescape_saslname(text: str) -> str | None:
    """Inverse of ``_escape_saslname``; None if ``text`` is not a valid saslname."""
    if not _SASLNAME.fullmatch(text):
        return None
    return text.replace("=2C", ",").replace("=3D", "=")


def _is_printable(text: str) -> bool:
    return _PRINTABLE.fullmatch(text) is not None


def _is_cb_name(text: str) -> bool:
    return _CB_NAME.fullmatch(text) is not None


def _is_posit_number(text: str) -> bool:
    return _POSIT_NUMBER.fullmatch(text) is not None


def _extensions_ok(fields: list[str]) -> bool:
    """RFC 5802 §5.1: optional extensions are ignored, but must be well-formed attr-vals."""
    return all(_ATTR_VAL.fullmatch(f) for f in fields)


def _decode(data: bytes) -> str | None:
    """A SCRAM message as text; None if it is not UTF-8 or contains NUL (RFC 5802 §7)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text
