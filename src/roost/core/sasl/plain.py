"""The PLAIN mechanism (RFC 4616): message = [authzid] NUL authcid NUL passwd.

The server hands the password to the driver (``NeedPasswordCheck``) because checking it
against stored SCRAM credentials (``verify_password``) is CPU-heavy. RFC 6120 §13.8: only
offer PLAIN on an encrypted stream.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Final

from roost.core.sasl.base import (
    Challenge,
    Failure,
    NeedPasswordCheck,
    SaslCondition,
    SaslStep,
    ScramCredentials,
    Success,
)

__all__ = ["PlainClient", "PlainServer"]


class _State(Enum):
    INITIAL = auto()
    EXPECT_RESPONSE = auto()  # sent an empty challenge (no initial response)
    NEED_CHECK = auto()  # waiting on the driver's password check
    DONE = auto()


_TRANSITIONS: Final = frozenset(
    {
        (_State.INITIAL, _State.EXPECT_RESPONSE),
        (_State.INITIAL, _State.NEED_CHECK),
        (_State.INITIAL, _State.DONE),
        (_State.EXPECT_RESPONSE, _State.NEED_CHECK),
        (_State.EXPECT_RESPONSE, _State.DONE),
        (_State.NEED_CHECK, _State.DONE),
    }
)


class PlainServer:
    """One PLAIN exchange on the server side."""

    __slots__ = ("_authcid", "_authzid", "_state")

    name: str = "PLAIN"

    def __init__(self) -> None:
        self._state = _State.INITIAL
        self._authcid = ""
        self._authzid: str | None = None

    def _go(self, new: _State) -> None:
        if (self._state, new) not in _TRANSITIONS:
            raise RuntimeError(f"PLAIN: no transition {self._state.name} -> {new.name}")
        self._state = new

    def start(self, initial: bytes | None) -> SaslStep:
        if self._state is not _State.INITIAL:
            raise RuntimeError("PLAIN: start() called twice")
        if initial is None:
            # RFC 6120 §6.4.2: no initial response, so send an empty challenge.
            self._go(_State.EXPECT_RESPONSE)
            return Challenge(b"")
        return self._message(initial)

    def respond(self, data: bytes) -> SaslStep:
        if self._state is _State.EXPECT_RESPONSE:
            return self._message(data)
        if self._state is _State.DONE:
            return Failure(SaslCondition.MALFORMED_REQUEST, "the exchange is over")
        self._go(_State.DONE)
        return Failure(SaslCondition.MALFORMED_REQUEST, "unexpected response")

    def _message(self, data: bytes) -> SaslStep:
        # RFC 4616 §2: UTF-8, three NUL-separated parts, authcid and passwd non-empty.
        try:
            parts = data.decode("utf-8").split("\x00")
        except UnicodeDecodeError:
            parts = []
        if len(parts) != 3 or not parts[1] or not parts[2]:
            self._go(_State.DONE)
            return Failure(SaslCondition.MALFORMED_REQUEST)
        authzid, authcid, password = parts
        self._authzid = authzid or None
        self._authcid = authcid
        self._go(_State.NEED_CHECK)
        return NeedPasswordCheck(authcid, password)

    def credentials(self, creds: ScramCredentials | None) -> SaslStep:
        raise RuntimeError("PLAIN never asks for credentials")

    def password_checked(self, ok: bool) -> SaslStep:
        if self._state is not _State.NEED_CHECK:
            raise RuntimeError("PLAIN: password_checked() without NeedPasswordCheck")
        self._go(_State.DONE)
        if not ok:
            return Failure(SaslCondition.NOT_AUTHORIZED)
        return Success(None, self._authcid, self._authzid)


class PlainClient:
    """PLAIN as the client: a single initial response."""

    __slots__ = ("_authzid", "_password", "_username")

    name: str = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str | None = None) -> None:
        # RFC 4616 §2: authcid and passwd are 1*SAFE (non-empty, no NUL); so is an authzid.
        if not username or not password or "\x00" in username + password + (authzid or ""):
            raise ValueError("PLAIN needs a non-empty username and password without NUL")
        self._username = username
        self._password = password
        self._authzid = authzid

    def first(self) -> bytes:
        """The initial response (RFC 4616 §2)."""
        return f"{self._authzid or ''}\x00{self._username}\x00{self._password}".encode()
