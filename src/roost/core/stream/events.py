"""Stream events both roles share (a client stream and a server stream alike)."""

from __future__ import annotations

from dataclasses import dataclass

from roost.core.errors import StreamError
from roost.core.xml.element import Element

__all__ = ["StanzaReceived", "StreamEnded", "TLSRequested"]


@dataclass(frozen=True, slots=True)
class TLSRequested:
    """Flush pending output, upgrade the transport to TLS, then call ``tls_started``."""


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    """A stanza from the peer once the stream is ready (a server stream stamps no
    ``from``: the router does)."""

    element: Element


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The stream is over: flush the output and close the transport.

    ``error`` is the stream error that ended it (None for a plain close); ``reason`` says
    why a client ended it itself (None when the server did or when it was asked to close).
    """

    error: StreamError | None
    reason: str | None = None
