"""Client side of SCRAM-SHA-1/-256 and their -PLUS variants (RFC 5802, RFC 7677, RFC 9266).

The username is sent as given (escaped, RFC 5802 §5.1): preparing it is the caller's job
(for XMPP, as a JID localpart). The password is prepared with OpaqueString (RFC 8265 §4.2).
Any iteration count from 1 to ``MAX_ITERATIONS`` is accepted: RFC 5802 §5.1 only says servers
SHOULD use at least 4096, and the upper bound keeps a hostile server from pinning our CPU.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import Enum, auto
from typing import Final

from roost.core.sasl.base import SaslClientError
from roost.core.sasl.scram import (
    _b64decode,
    _b64encode,
    _decode,
    _escape_saslname,
    _hash_name_check,
    _hmac,
    _is_cb_name,
    _is_posit_number,
    _is_printable,
    _keys,
    _mechanism_name,
    _prepare_password,
    _xor,
    salted_password,
)

__all__ = ["MAX_ITERATIONS", "ScramClient"]

MAX_ITERATIONS: Final = 10_000_000


def _gs2_cb_flag(cb_type: str | None, server_supports_plus: bool) -> str:
    """RFC 5802 §6: "p=type" to bind, "y" if we could but the server offers no -PLUS, else "n"."""
    if cb_type is None:
        return "n"
    return f"p={cb_type}" if server_supports_plus else "y"


class _State(Enum):
    INITIAL = auto()
    SENT_FIRST = auto()  # client-first sent, waiting for server-first
    SENT_FINAL = auto()  # client-final sent, waiting for server-final
    VERIFIED = auto()  # server-final verified (it came in a challenge), waiting for success
    DONE = auto()


_TRANSITIONS: Final = frozenset(
    {
        (_State.INITIAL, _State.SENT_FIRST),
        (_State.SENT_FIRST, _State.SENT_FINAL),
        (_State.SENT_FINAL, _State.VERIFIED),
        (_State.SENT_FINAL, _State.DONE),
        (_State.VERIFIED, _State.DONE),
    }
)


class ScramClient:
    """One SCRAM exchange as the client; ``nonce`` is our fresh random client nonce.

    With ``cb_type`` and ``cb_data`` (the connection's channel binding) and a server that
    offers -PLUS, the exchange binds to the channel and ``name`` ends in "-PLUS".
    ``salted_password_cache`` maps (salt, iterations) to SaltedPassword (RFC 5802 §5.1
    allows caching it); it must only be shared between clients with the same username,
    password and hash.
    """

    __slots__ = (
        "_bare",
        "_cache",
        "_cbind_input",
        "_client_nonce",
        "_gs2_header",
        "_hash_name",
        "_password",
        "_server_signature",
        "_ssdp",
        "_state",
        "name",
    )

    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        *,
        nonce: str,
        cb_type: str | None = None,
        cb_data: bytes | None = None,
        server_supports_plus: bool = False,
        authzid: str | None = None,
        salted_password_cache: dict[tuple[bytes, int], bytes] | None = None,
        ssdp: str | None = None,
    ) -> None:
        _hash_name_check(hash_name)
        if not _is_printable(nonce):
            raise ValueError("a SCRAM nonce is printable ASCII other than ','")
        if not username or "\x00" in username or (authzid is not None and "\x00" in authzid):
            raise ValueError("invalid username or authzid")
        if (cb_type is None) != (cb_data is None):
            raise ValueError("cb_type and cb_data go together")
        if cb_type is not None and not _is_cb_name(cb_type):
            raise ValueError(f"invalid channel binding type {cb_type!r}")
        _prepare_password(password)  # fail early if OpaqueString rejects it
        flag = _gs2_cb_flag(cb_type, server_supports_plus)
        self.name: str = _mechanism_name(hash_name, flag.startswith("p="))
        self._hash_name = hash_name
        self._password = password
        self._client_nonce = nonce
        authz = f"a={_escape_saslname(authzid)}" if authzid else ""
        self._gs2_header = f"{flag},{authz},"
        # RFC 5802 §5.1 "c": the gs2-header, then the channel's data if we bind to it.
        self._cbind_input = self._gs2_header.encode("utf-8")
        if flag.startswith("p=") and cb_data is not None:
            self._cbind_input += cb_data
        self._bare = f"n={_escape_saslname(username)},r={nonce}"
        self._cache = salted_password_cache
        self._server_signature = b""
        #: XEP-0474: the mechanisms and channel-binding types as we saw them advertised
        self._ssdp = ssdp
        self._state = _State.INITIAL

    def _go(self, new: _State) -> None:
        if (self._state, new) not in _TRANSITIONS:
            raise SaslClientError(f"SCRAM: unexpected step in state {self._state.name}")
        self._state = new

    def first(self) -> bytes:
        """The client-first-message (RFC 5802 §7)."""
        self._go(_State.SENT_FIRST)
        return f"{self._gs2_header}{self._bare}".encode()

    def challenge(self, data: bytes) -> bytes:
        """server-first -> client-final; a later challenge is taken as server-final."""
        if self._state is _State.SENT_FINAL:
            # COMPAT: some servers send server-final in a challenge and an empty <success/>.
            self._verify(data)
            self._go(_State.VERIFIED)
            return b""
        self._go(_State.SENT_FINAL)
        server_first = _decode(data)
        if server_first is None:
            raise SaslClientError("server-first is not UTF-8")
        fields = server_first.split(",")
        if fields[0].startswith("m="):
            raise SaslClientError("server requires an unsupported extension")  # RFC 5802 §5.1
        if (
            len(fields) < 3
            or not fields[0].startswith("r=")
            or not fields[1].startswith("s=")
            or not fields[2].startswith("i=")
        ):
            raise SaslClientError("malformed server-first-message")
        nonce = fields[0][2:]
        # RFC 5802 §5.1: the nonce must start with ours and the server must add to it.
        if not (nonce.startswith(self._client_nonce) and len(nonce) > len(self._client_nonce)):
            raise SaslClientError("server nonce does not extend the client nonce")
        if not _is_printable(nonce):
            raise SaslClientError("invalid server nonce")
        try:
            salt = _b64decode(fields[1][2:])
        except ValueError:
            raise SaslClientError("invalid salt") from None
        if not salt or not _is_posit_number(fields[2][2:]):
            raise SaslClientError("invalid salt or iteration count")
        iterations = int(fields[2][2:])
        if iterations > MAX_ITERATIONS:
            raise SaslClientError(f"iteration count {iterations} is too high")
        self._check_downgrade(fields[3:])

        salted = self._salted_password(salt, iterations)
        client_key, stored_key, server_key = _keys(self._hash_name, salted)
        without_proof = f"c={_b64encode(self._cbind_input)},r={nonce}"
        auth_message = f"{self._bare},{server_first},{without_proof}".encode()
        proof = _xor(client_key, _hmac(self._hash_name, stored_key, auth_message))
        self._server_signature = _hmac(self._hash_name, server_key, auth_message)
        return f"{without_proof},p={_b64encode(proof)}".encode()

    def _check_downgrade(self, extensions: list[str]) -> None:
        """XEP-0474 §3.2: the server's hash of what it advertised must match what we saw,
        or someone on the path removed mechanisms or channel-binding types."""
        hashes = [f[2:] for f in extensions if f.startswith("h=")]
        if self._ssdp is None or not hashes:
            return  # nothing to compare: the server does not implement XEP-0474
        digest = hashlib.new(self._hash_name, self._ssdp.encode()).digest()
        if not hmac.compare_digest(hashes[0].encode(), base64.b64encode(digest)):
            raise SaslClientError("the advertised mechanisms were tampered with (XEP-0474)")

    def success(self, data: bytes | None) -> None:
        """The ``<success/>`` data; raises SaslClientError unless the server proved itself."""
        if self._state is _State.SENT_FINAL:
            if not data:
                raise SaslClientError("success without the server signature")
            self._verify(data)
        elif data:
            raise SaslClientError("unexpected success data")
        self._go(_State.DONE)

    def _salted_password(self, salt: bytes, iterations: int) -> bytes:
        key = (salt, iterations)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        salted = salted_password(self._hash_name, self._password, salt, iterations)
        if self._cache is not None:
            self._cache[key] = salted
        return salted

    def _verify(self, data: bytes) -> None:
        """RFC 5802 §5: the client MUST check ServerSignature in server-final."""
        text = _decode(data)
        if text is None:
            raise SaslClientError("server-final is not UTF-8")
        attr = text.split(",")[0]
        if attr.startswith("e="):
            raise SaslClientError(f"server error: {attr[2:]}")
        if not attr.startswith("v="):
            raise SaslClientError("malformed server-final-message")
        try:
            signature = _b64decode(attr[2:])
        except ValueError:
            raise SaslClientError("invalid server signature") from None
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslClientError("server signature mismatch")
