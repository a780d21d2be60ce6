"""A session: who is on the other end of a negotiated stream, apart from the connection.

The router and the feature modules see ``Session`` objects, never connections. A session
is carried by a ``SessionStream`` (today a client TCP/TLS connection; later a WebSocket, a
BOSH request chain, a resumed XEP-0198 stream) and can be detached from one and attached to
another: while detached, what is delivered to it waits in a bounded queue.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, Protocol

from roost.core.jid import JID

if TYPE_CHECKING:
    from roost.core.errors import StreamError
    from roost.core.xml.element import Element
    from roost.server.sm import StreamManagement

__all__ = ["MAX_DETACHED_QUEUE", "HoldBack", "Session", "SessionStream"]

#: bytes a detached session may collect before further stanzas for it are dropped
MAX_DETACHED_QUEUE: Final = 1024 * 1024


class SessionStream(Protocol):
    """What a session needs from the stream that carries it."""

    @property
    def encrypted(self) -> bool:
        """Whether the stream is protected by TLS."""
        ...

    @property
    def last_rx(self) -> float:
        """``time.monotonic()`` of the last bytes received."""
        ...

    def write(self, data: bytes) -> None:
        """Queue serialised stanza bytes for the peer, in order."""
        ...

    def close(self, error: StreamError | None = None) -> None:
        """End the stream (with an optional stream error)."""
        ...

    def hold(self, task: asyncio.Task[object]) -> None:
        """Process nothing more from the peer until ``task`` is done (RFC 6120 §10.1)."""
        ...


class HoldBack(Protocol):
    """What a session holds back instead of writing (XEP-0352, client inactive)."""

    def keep(self, stanza: Element, data: bytes) -> bool:
        """Keep ``stanza`` (serialised: ``data``) for later (True), or let it go out now
        (False: it is urgent, and what was kept goes out before it)."""
        ...

    def release(self) -> list[bytes]:
        """What was kept, in order, to go out before a stanza that does not wait."""
        ...


class Session:
    """A bound client resource, with its RFC 6121 presence state."""

    __slots__ = (
        "available",
        "directed",
        "hold_back",
        "jid",
        "jid_str",
        "presence",
        "priority",
        "queued",
        "queued_size",
        "roster_requested",
        "sm",
        "stream",
    )

    def __init__(self, jid: JID, stream: SessionStream | None) -> None:
        self.jid = jid
        self.jid_str = str(jid)
        self.stream = stream
        #: RFC 6121 §4: available after initial presence; its last broadcast presence
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        #: RFC 6121 §4.6: JIDs this session sent directed presence to
        self.directed: set[JID] = set()
        #: RFC 6121 §2.1.6: an "interested resource" (asked for the roster)
        self.roster_requested = False
        #: bytes delivered while detached, written on the next attach
        self.queued: list[bytes] | None = None
        self.queued_size = 0
        #: set while the client is inactive (XEP-0352): what need not wake it waits there
        self.hold_back: HoldBack | None = None
        #: XEP-0198 state, once the client enabled stream management
        self.sm: StreamManagement | None = None

    def __repr__(self) -> str:
        return f"<Session {self.jid_str}>"

    @property
    def bare(self) -> JID:
        return self.jid.bare

    @property
    def resource(self) -> str:
        assert self.jid.resource is not None
        return self.jid.resource

    @property
    def encrypted(self) -> bool:
        return self.stream is not None and self.stream.encrypted

    def detach(self) -> SessionStream | None:
        """Take the session off its stream; deliveries queue until
        ``roost.server.delivery.attach``."""
        stream, self.stream = self.stream, None
        return stream

    def close(self, error: StreamError | None = None) -> None:
        """End the session's stream (a detached session has none to end)."""
        if self.stream is not None:
            self.stream.close(error)

    def hold(self, task: asyncio.Task[object]) -> None:
        """Keep later stanzas from this session behind ``task`` (RFC 6120 §10.1)."""
        if self.stream is not None:
            self.stream.hold(task)
