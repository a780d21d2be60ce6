"""What can go wrong for a client, as exceptions a caller can tell apart.

Stanza errors are ``roost.core.errors.StanzaError`` (condition enum, text, legacy code): a
request answered with an error raises it. Everything here is about the connection itself.
"""

from __future__ import annotations

from roost.core.errors import StreamError

__all__ = [
    "AuthenticationFailed",
    "CertificateNotTrusted",
    "ClientError",
    "ConnectFailed",
    "Disconnected",
    "HostNotFound",
    "NegotiationFailed",
    "RegistrationFailed",
    "RequestTimeout",
]


class ClientError(Exception):
    """Base of the client's own errors; the message says what happened."""

    #: the server's stream error behind this failure, if one ended the stream (RFC 6120 §4.9)
    stream_error: StreamError | None = None


class ConnectFailed(ClientError):
    """No address of the server could be reached (refused, unreachable, timed out)."""


class HostNotFound(ConnectFailed):
    """DNS knows no address for the server (nor SRV records, RFC 6120 §3.2)."""


class CertificateNotTrusted(ClientError):
    """The server's certificate did not verify (RFC 6125 / RFC 9525: chain or name)."""


class NegotiationFailed(ClientError):
    """The stream ended before a resource was bound (stream error, refused STARTTLS, ...)."""


class AuthenticationFailed(NegotiationFailed):
    """SASL failed (RFC 6120 §6.5): ``condition`` is e.g. ``not-authorized``."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(f"authentication failed: {condition}" + (f" ({text})" if text else ""))
        self.condition = condition
        self.text = text


class RegistrationFailed(NegotiationFailed):
    """XEP-0077 registration before login was refused; ``condition`` says why."""

    def __init__(self, condition: str) -> None:
        super().__init__(f"registration failed: {condition}")
        self.condition = condition


class Disconnected(ClientError):
    """The stream ended while something waited on it."""


class RequestTimeout(ClientError, TimeoutError):
    """No answer to a request in time."""
