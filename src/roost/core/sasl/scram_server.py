"""Server side of SCRAM-SHA-1/-256 and their -PLUS variants (RFC 5802, RFC 7677, RFC 9266).

We do not use ``scramp`` because it refuses the ``tls-exporter`` channel binding, which
RFC 9266 §3 makes mandatory for channel binding over TLS 1.3.

An unknown user (``credentials(None)``) fails with ``not-authorized`` at once, without a
fake challenge. That is the same condition as a wrong password (RFC 6120 §6.5.10) but one
round trip earlier, so a client can tell that an account does not exist; Prosody and
ejabberd behave the same way, and the driver limits failed attempts per address.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from enum import Enum, auto
from typing import Final

from roost.core.sasl.base import (
    Challenge,
    Failure,
    NeedCredentials,
    SaslCondition,
    SaslStep,
    ScramCredentials,
    Success,
)
from roost.core.sasl.scram import (
    _b64decode,
    _b64encode,
    _decode,
    _extensions_ok,
    _h,
    _hash_name_check,
    _hmac,
    _is_cb_name,
    _is_printable,
    _mechanism_name,
    _unescape_saslname,
    _xor,
)

__all__ = ["ScramServer"]

_MALFORMED = SaslCondition.MALFORMED_REQUEST
_NOT_AUTHORIZED = SaslCondition.NOT_AUTHORIZED


class _State(Enum):
    INITIAL = auto()  # nothing received yet
    EXPECT_CLIENT_FIRST = auto()  # sent an empty challenge (no initial response)
    NEED_CREDENTIALS = auto()  # client-first parsed, waiting on the driver
    EXPECT_CLIENT_FINAL = auto()  # server-first sent
    DONE = auto()  # succeeded or failed; nothing more is accepted


_TRANSITIONS: Final = frozenset(
    {
        (_State.INITIAL, _State.EXPECT_CLIENT_FIRST),
        (_State.INITIAL, _State.NEED_CREDENTIALS),
        (_State.INITIAL, _State.DONE),
        (_State.EXPECT_CLIENT_FIRST, _State.NEED_CREDENTIALS),
        (_State.EXPECT_CLIENT_FIRST, _State.DONE),
        (_State.NEED_CREDENTIALS, _State.EXPECT_CLIENT_FINAL),
        (_State.NEED_CREDENTIALS, _State.DONE),
        (_State.EXPECT_CLIENT_FINAL, _State.DONE),
    }
)


class ScramServer:
    """One SCRAM exchange; ``nonce`` is this server's fresh random part of the nonce.

    ``channel_bindings`` maps the channel binding types this connection can provide
    ("tls-exporter", "tls-server-end-point") to their data; ``plus_advertised`` says whether
    any -PLUS mechanism was offered, which makes the client's "y" flag a downgrade.
    """

    __slots__ = (
        "_authzid",
        "_cb_type",
        "_channel_bindings",
        "_client_first_bare",
        "_creds",
        "_gs2_header",
        "_hash_name",
        "_nonce",
        "_plus",
        "_plus_advertised",
        "_server_first",
        "_server_nonce",
        "_state",
        "_username",
        "name",
    )

    def __init__(
        self,
        hash_name: str,
        *,
        nonce: str,
        channel_bindings: Mapping[str, bytes],
        plus: bool,
        plus_advertised: bool,
    ) -> None:
        _hash_name_check(hash_name)
        if not _is_printable(nonce):
            raise ValueError("a SCRAM nonce is printable ASCII other than ','")
        self.name: str = _mechanism_name(hash_name, plus)
        self._hash_name = hash_name
        self._server_nonce = nonce
        self._channel_bindings = dict(channel_bindings)
        self._plus = plus
        self._plus_advertised = plus_advertised
        self._state = _State.INITIAL
        self._gs2_header = ""
        self._cb_type: str | None = None
        self._authzid: str | None = None
        self._username = ""
        self._client_first_bare = ""
        self._nonce = ""
        self._server_first = ""
        self._creds: ScramCredentials | None = None

    def _go(self, new: _State) -> None:
        if (self._state, new) not in _TRANSITIONS:
            raise RuntimeError(f"SCRAM: no transition {self._state.name} -> {new.name}")
        self._state = new

    def _fail(self, condition: SaslCondition, text: str | None = None) -> Failure:
        self._go(_State.DONE)
        return Failure(condition, text)

    def start(self, initial: bytes | None) -> SaslStep:
        if self._state is not _State.INITIAL:
            raise RuntimeError("SCRAM: start() called twice")
        if initial is None:
            # RFC 6120 §6.4.2: no initial response, so send an empty challenge.
            self._go(_State.EXPECT_CLIENT_FIRST)
            return Challenge(b"")
        return self._client_first(initial)

    def respond(self, data: bytes) -> SaslStep:
        if self._state is _State.EXPECT_CLIENT_FIRST:
            return self._client_first(data)
        if self._state is _State.EXPECT_CLIENT_FINAL:
            return self._client_final(data)
        if self._state is _State.DONE:
            return Failure(_MALFORMED, "the exchange is over")
        return self._fail(_MALFORMED, "unexpected response")

    def password_checked(self, ok: bool) -> SaslStep:
        raise RuntimeError("SCRAM never asks for a password check")

    def _client_first(self, data: bytes) -> SaslStep:
        """RFC 5802 §7 client-first-message = gs2-header client-first-message-bare."""
        text = _decode(data)
        parts = text.split(",", 2) if text is not None else []
        if len(parts) != 3:
            return self._fail(_MALFORMED)
        flag, authz, bare = parts
        if flag == "n":
            cb_type = None
        elif flag == "y":
            cb_type = None
            if self._plus_advertised:
                # RFC 5802 §6: the client thinks we lack channel binding: a downgrade attack.
                return self._fail(_NOT_AUTHORIZED, "server-does-support-channel-binding")
        elif flag.startswith("p=") and _is_cb_name(flag[2:]):
            cb_type = flag[2:]
        else:
            return self._fail(_MALFORMED)  # RFC 5802 §5: must start with "n", "y" or "p"
        if self._plus and cb_type is None:
            return self._fail(_MALFORMED, "a -PLUS mechanism requires channel binding")
        if not self._plus and cb_type is not None:
            return self._fail(_MALFORMED, "channel binding requires a -PLUS mechanism")
        if cb_type is not None and cb_type not in self._channel_bindings:
            # RFC 5802 §6.1: fail if we do not support the type the client chose.
            return self._fail(_NOT_AUTHORIZED, "unsupported-channel-binding-type")
        authzid = None
        if authz:
            authzid = _unescape_saslname(authz[2:]) if authz.startswith("a=") else None
            if authzid is None:
                return self._fail(_MALFORMED)

        fields = bare.split(",")
        if fields[0].startswith("m="):
            # RFC 5802 §5.1: an unknown mandatory extension MUST fail authentication.
            return self._fail(_MALFORMED, "extensions-not-supported")
        if len(fields) < 2 or not fields[0].startswith("n=") or not fields[1].startswith("r="):
            return self._fail(_MALFORMED)
        username = _unescape_saslname(fields[0][2:])
        client_nonce = fields[1][2:]
        if username is None or not _is_printable(client_nonce) or not _extensions_ok(fields[2:]):
            return self._fail(_MALFORMED)

        self._gs2_header = f"{flag},{authz},"
        self._cb_type = cb_type
        self._authzid = authzid
        self._username = username
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        self._go(_State.NEED_CREDENTIALS)
        # RFC 5802 §5.1: the name is used as received in the proof; the driver prepares it.
        return NeedCredentials(username)

    def credentials(self, creds: ScramCredentials | None) -> SaslStep:
        if self._state is not _State.NEED_CREDENTIALS:
            raise RuntimeError("SCRAM: credentials() without NeedCredentials")
        if creds is None:
            return self._fail(_NOT_AUTHORIZED)  # see the module docstring
        size = len(_h(self._hash_name, b""))
        if len(creds.stored_key) != size or len(creds.server_key) != size:
            raise ValueError(f"credentials are not for {self.name}")
        self._creds = creds
        # RFC 5802 §7 server-first-message = nonce "," salt "," iteration-count
        self._server_first = f"r={self._nonce},s={_b64encode(creds.salt)},i={creds.iterations}"
        self._go(_State.EXPECT_CLIENT_FINAL)
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, data: bytes) -> SaslStep:
        """RFC 5802 §7 client-final-message = c=..,r=..[,extensions],p=.."""
        assert self._creds is not None
        text = _decode(data)
        fields = text.split(",") if text is not None else []
        if (
            len(fields) < 3
            or not fields[0].startswith("c=")
            or not fields[1].startswith("r=")
            or not fields[-1].startswith("p=")
        ):
            return self._fail(_MALFORMED)
        if any(f.startswith("m=") for f in fields[2:-1]):
            return self._fail(_MALFORMED, "extensions-not-supported")  # RFC 5802 §5.1
        if not _extensions_ok(fields[2:-1]):
            return self._fail(_MALFORMED)
        try:
            cbind_input = _b64decode(fields[0][2:])
            proof = _b64decode(fields[-1][2:])
        except ValueError:
            return self._fail(_MALFORMED)
        if fields[1][2:] != self._nonce:
            # RFC 5802 §5.1: the nonce must be the one we sent in server-first.
            return self._fail(_NOT_AUTHORIZED)

        # RFC 5802 §6: always validate c= (gs2-header, then the channel's data for -PLUS).
        expected = self._gs2_header.encode("utf-8")
        if self._cb_type is not None:
            expected += self._channel_bindings[self._cb_type]
        if not hmac.compare_digest(cbind_input, expected):
            return self._fail(_NOT_AUTHORIZED, "channel-bindings-dont-match")

        without_proof = ",".join(fields[:-1])
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        auth_bytes = auth_message.encode("utf-8")
        client_signature = _hmac(self._hash_name, self._creds.stored_key, auth_bytes)
        if len(proof) != len(client_signature):
            return self._fail(_NOT_AUTHORIZED)
        # RFC 5802 §3: recover ClientKey from the proof; its hash must be StoredKey.
        client_key = _xor(proof, client_signature)
        if not hmac.compare_digest(_h(self._hash_name, client_key), self._creds.stored_key):
            return self._fail(_NOT_AUTHORIZED)
        server_signature = _hmac(self._hash_name, self._creds.server_key, auth_bytes)
        self._go(_State.DONE)
        # RFC 5802 §5.2: SCRAM sends additional data (server-final) with success.
        server_final = f"v={_b64encode(server_signature)}".encode("ascii")
        return Success(server_final, self._username, self._authzid)
