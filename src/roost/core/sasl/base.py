"""Shared SASL types: what a server-side mechanism step returns, and the mechanism interface.

A mechanism is sans-IO: bytes (already base64-decoded by the XMPP layer, RFC 6120 §6.4.2) go
in, a ``SaslStep`` comes out. Lookups that need storage or CPU time (``NeedCredentials``,
``NeedPasswordCheck``) are requests the driver answers by calling the mechanism back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

__all__ = [
    "Challenge",
    "Failure",
    "NeedCredentials",
    "NeedPasswordCheck",
    "SaslClientError",
    "SaslCondition",
    "SaslStep",
    "ScramCredentials",
    "ServerMechanism",
    "Success",
]


class SaslCondition(StrEnum):
    """RFC 6120 §6.5: the defined SASL failure conditions."""

    ABORTED = "aborted"
    ACCOUNT_DISABLED = "account-disabled"
    CREDENTIALS_EXPIRED = "credentials-expired"
    ENCRYPTION_REQUIRED = "encryption-required"
    INCORRECT_ENCODING = "incorrect-encoding"
    INVALID_AUTHZID = "invalid-authzid"
    INVALID_MECHANISM = "invalid-mechanism"
    MALFORMED_REQUEST = "malformed-request"
    MECHANISM_TOO_WEAK = "mechanism-too-weak"
    NOT_AUTHORIZED = "not-authorized"
    TEMPORARY_AUTH_FAILURE = "temporary-auth-failure"


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``<challenge/>`` with ``data`` (RFC 6120 §6.4.3)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``authcid``; ``data`` is sent with ``<success/>`` (RFC 6120 §6.4.6).

    ``authzid`` is what the client asked to act as (None if absent); the caller decides
    whether that is allowed and answers ``invalid-authzid`` if not.
    """

    data: bytes | None
    authcid: str
    authzid: str | None


@dataclass(frozen=True, slots=True)
class Failure:
    """Send ``<failure/>`` with ``condition``, an RFC 6120 §6.5 element name."""

    condition: str
    text: str | None = None

    def __post_init__(self) -> None:
        SaslCondition(self.condition)  # raises ValueError for an undefined condition


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Look up SCRAM credentials for ``username`` (unprepared) and call ``credentials``."""

    username: str


@dataclass(frozen=True, slots=True)
class NeedPasswordCheck:
    """Check ``password`` for ``username`` (off the event loop), call ``password_checked``."""

    username: str
    password: str = field(repr=False)


SaslStep = Challenge | Success | Failure | NeedCredentials | NeedPasswordCheck


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What the server stores for one account and hash (RFC 5802 §3: StoredKey, ServerKey)."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.salt:
            raise ValueError("empty salt")
        if self.iterations < 1:
            raise ValueError("iteration count must be positive")  # RFC 5802 §7 posit-number
        if not self.stored_key or not self.server_key:
            raise ValueError("empty key")


class ServerMechanism(Protocol):
    """The server side of one SASL exchange; one instance per attempt."""

    name: str

    def start(self, initial: bytes | None) -> SaslStep:
        """The ``<auth/>`` initial response (None if absent, b"" if the client sent "=")."""
        ...

    def respond(self, data: bytes) -> SaslStep:
        """A ``<response/>`` from the client."""
        ...

    def credentials(self, creds: ScramCredentials | None) -> SaslStep:
        """Answer to ``NeedCredentials`` (None: no such account)."""
        ...

    def password_checked(self, ok: bool) -> SaslStep:
        """Answer to ``NeedPasswordCheck``."""
        ...


class SaslClientError(Exception):
    """The server's data is invalid or the server failed to prove itself; abort the exchange."""
