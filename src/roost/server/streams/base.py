"""What every stream driver shares: one output path through the sans-IO stream's buffer.

A driver is an ``asyncio.Protocol`` over a transport (TCP, TLS). Stanzas delivered to its
session and the stream's own negotiation output go through the same buffer in the core
stream, flushed once per event-loop turn: ordering never depends on which buffer is flushed
first, and many small writes (each a TLS record and a syscall) become one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any, Protocol

from roost.core.errors import StreamError, StreamErrorCondition

__all__ = ["MAX_WRITE_BUFFER", "BufferedStream", "StreamDriver"]

log = logging.getLogger(__name__)

#: A reader this far behind is cut off rather than buffered without bound.
MAX_WRITE_BUFFER = 4 * 1024 * 1024


class BufferedStream(Protocol):
    """The part of a sans-IO stream every driver uses."""

    def send_raw(self, data: bytes) -> None: ...

    def data_to_send(self) -> bytes: ...

    def close(self, error: StreamError | None) -> Sequence[object]: ...


class StreamDriver(asyncio.Protocol):
    """Output path and timing shared by the stream drivers; subclasses set ``stream``."""

    __slots__ = (
        "_closing",
        "_flush_scheduled",
        "_loop",
        "_out_size",
        "_tls_pending",
        "last_rx",
        "last_tx",
        "peer_ip",
        "transport",
    )

    stream: BufferedStream

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer_ip = "?"
        self.last_rx = self.last_tx = time.monotonic()
        self._closing = False
        self._loop = asyncio.get_running_loop()
        #: bytes of stanzas queued in the stream since the last flush
        self._out_size = 0
        self._flush_scheduled = False
        #: bytes read while TLS is being set up (they belong after the stream restart)
        self._tls_pending: list[bytes] | None = None

    def _handle(self, events: Any) -> None:
        """Act on what the stream said (each driver knows its stream's events)."""
        raise NotImplementedError

    def close(self, error: StreamError | None = None) -> None:
        """End the stream (with an optional stream error) and close the connection."""
        if not self._closing:
            self._handle(self.stream.close(error))

    def eof_received(self) -> bool | None:
        self._handle(self.stream.close(None))
        return None

    def _too_slow(self) -> None:
        self.close(
            StreamError(StreamErrorCondition.RESOURCE_CONSTRAINT, "you are not reading fast enough")
        )

    def pause_writing(self) -> None:
        # The peer reads slower than we write; past the hard cap we give up on it.
        if self.transport is not None and self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self._too_slow()

    # -- STARTTLS, server side (RFC 6120 §5.4.3.3) ------------------------------------------

    def _hold_for_tls(self) -> None:
        """After ``<proceed/>``: the TLS handshake must not reach the XML parser."""
        self._flush()
        if self.transport is not None:
            self.transport.pause_reading()
            self._tls_pending = []

    async def _upgrade(self, ctx: ssl.SSLContext, timeout: float) -> asyncio.Transport | None:
        """Run the server side of the TLS handshake; the new transport, or None (closed)."""
        transport = self.transport
        if transport is None:
            return None
        try:
            new = await asyncio.wait_for(
                self._loop.start_tls(transport, self, ctx, server_side=True), timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("%r: TLS negotiation failed: %s", self, exc)
            transport.close()
            return None
        if new is None:
            transport.close()
            return None
        self.transport = new
        return new

    def _replay_held(self) -> None:
        """Feed what arrived during the handshake, now that the stream has restarted."""
        held, self._tls_pending = self._tls_pending or [], None
        for data in held:
            self.data_received(data)

    def write(self, data: bytes) -> None:
        """Queue serialised stanza bytes in the stream; written once per loop iteration."""
        if self.transport is None or self._closing:
            return
        self.stream.send_raw(data)
        self._out_size += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        elif self._out_size > MAX_WRITE_BUFFER:
            self._too_slow()

    def _flush(self) -> None:
        """Write what the stream has buffered (stanzas and negotiation alike, in order)."""
        self._flush_scheduled = False
        self._out_size = 0
        data = self.stream.data_to_send()
        t = self.transport
        if not data or t is None or t.is_closing():
            return
        t.write(data)
        self.last_tx = time.monotonic()
        if t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self._too_slow()
