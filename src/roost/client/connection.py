"""One client connection: an ``asyncio.Protocol`` driving the sans-IO ``ClientStream``.

Bytes from the transport go into the stream; what it asks for (STARTTLS through
``loop.start_tls``, closing) is done here, and stanzas once bound go to ``handle_stanza``.
The library's ``Client`` and the load generator (``roost.bench``) both run on it; the
generator overrides ``data_received`` and ``handle_stanza`` for its hot path.

Nothing here waits without a bound of the caller's: ``login`` is meant to run under
``asyncio.timeout`` (``roost.client.dial`` does that), and ``close`` takes its own.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
from collections.abc import Callable
from typing import cast

from roost.client.errors import (
    AuthenticationFailed,
    CertificateNotTrusted,
    ClientError,
    ConnectFailed,
    Disconnected,
    HostNotFound,
    NegotiationFailed,
    RegistrationFailed,
)
from roost.core.stream.client import (
    AuthFailed,
    Bound,
    ClientEvent,
    ClientStream,
    ClientStreamSettings,
    Registered,
    RegistrationRefused,
    StanzaReceived,
    StreamEnded,
    TLSMode,
    TLSRequested,
)
from roost.core.xml.element import Element
from roost.transport.tls import channel_bindings

__all__ = ["Connection", "new_nonce"]


def new_nonce() -> str:
    """A SCRAM client nonce (RFC 5802 §5.1: unpredictable, printable)."""
    return secrets.token_urlsafe(18)


class Connection(asyncio.Protocol):
    """One connection and its stream; ``login`` runs the whole negotiation."""

    __slots__ = (
        "_lost",
        "_tls_task",
        "_waiter",
        "ctx",
        "ended",
        "failure",
        "jid",
        "on_ended",
        "on_stanza",
        "registered",
        "server_name",
        "stream",
        "transport",
    )

    def __init__(
        self,
        settings: ClientStreamSettings,
        ctx: ssl.SSLContext | None,
        *,
        on_stanza: Callable[[Element], None] | None = None,
        on_ended: Callable[[ClientError | None], None] | None = None,
    ) -> None:
        self.stream = ClientStream(settings, new_nonce)
        self.ctx = ctx
        #: the name the certificate must carry and SNI asks for: the XMPP domain, never
        #: the SRV target (RFC 6125 §6.2.1, RFC 7590 §3.2, XEP-0368 §3)
        self.server_name = settings.domain
        self.on_stanza = on_stanza
        self.on_ended = on_ended
        self.transport: asyncio.Transport | None = None
        self.jid: str | None = None
        self.registered: bool | None = None
        self.ended = False
        self.failure: ClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tls_task: asyncio.Task[None] | None = None

    # -- driving a login ------------------------------------------------------------------

    async def connect(self, host: str, port: int, source_ip: str | None = None) -> None:
        """Open the TCP (or, with Direct TLS, TLS) connection; the stream starts at once."""
        loop = asyncio.get_running_loop()
        direct = self.stream.settings.tls is TLSMode.DIRECT
        try:
            await loop.create_connection(
                lambda: self,
                host,
                port,
                ssl=self.ctx if direct else None,
                server_hostname=self.server_name if direct else None,
                local_addr=(source_ip, 0) if source_ip else None,
            )
        except ssl.SSLCertVerificationError as exc:
            raise _untrusted(self.server_name, exc) from None
        except socket.gaierror as exc:
            raise HostNotFound(f"{host}: {exc.strerror or exc}") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"{host}:{port}: TLS failed: {exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"{host}:{port}: {exc.strerror or exc}") from None

    async def login(self, host: str, port: int, source_ip: str | None = None) -> str:
        """Connect, negotiate (TLS, SASL, bind); return the bound JID."""
        await self.connect(host, port, source_ip)
        await self.wait_for(lambda: self.jid is not None)
        assert self.jid is not None
        return self.jid

    async def register(self, host: str, port: int, source_ip: str | None = None) -> bool:
        """XEP-0077 before SASL: create the account (True) or find it exists (False)."""
        await self.connect(host, port, source_ip)
        await self.wait_for(lambda: self.registered is not None)
        assert self.registered is not None
        return self.registered

    async def wait_for(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()``; raise the failure if the connection fails first."""
        while not done():
            if self.failure is not None:
                raise self.failure
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, el: Element) -> None:
        """Send a stanza (once bound)."""
        self.stream.send_stanza(el)
        self._flush()

    async def close(self, timeout: float) -> None:
        """Close our stream and wait (bounded) for the server to close the connection."""
        if self.transport is None or self.ended:
            self.abort()
            return
        self._handle(self.stream.close())
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self._tls_task is not None:
            self._tls_task.cancel()
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # COMPAT: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        if self.stream.settings.tls is TLSMode.DIRECT:
            self._handle(self.stream.tls_started(self._bindings()))
        self._handle(self.stream.start())

    def data_received(self, data: bytes) -> None:
        self._handle(self.stream.receive_data(data))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ended:
            self._handle(self.stream.connection_lost())
        self.ended = True
        if not self._lost.done():
            self._lost.set_result(None)
        if self.failure is None and self.jid is None:
            why = f"connection lost ({exc})" if exc else "connection closed"
            self.failure = NegotiationFailed(why)
        self._wake()

    # -- events from the stream -----------------------------------------------------------

    def _handle(self, events: list[ClientEvent]) -> None:
        for ev in events:
            if isinstance(ev, StanzaReceived):
                self.handle_stanza(ev.element)
            elif isinstance(ev, TLSRequested):
                self._flush()
                self._tls_task = asyncio.get_running_loop().create_task(self._start_tls())
            elif isinstance(ev, Bound):
                self.jid = ev.jid
                self._wake()
            elif isinstance(ev, Registered):
                self.registered = ev.created
                self._wake()
            elif isinstance(ev, RegistrationRefused):
                self.failure = RegistrationFailed(ev.condition)
            elif isinstance(ev, AuthFailed):
                self.failure = AuthenticationFailed(ev.condition, ev.text)
            elif isinstance(ev, StreamEnded):
                self._ended(ev)
        self._flush()

    def _ended(self, ev: StreamEnded) -> None:
        self._flush()
        first = not self.ended
        self.ended = True
        kind = NegotiationFailed if self.jid is None else Disconnected
        if ev.error is not None:
            self.failure = kind(f"stream error: {ev.error}")
            self.failure.stream_error = ev.error
        elif self.failure is None and (self.jid is None or ev.reason is not None):
            self.failure = kind(ev.reason or "the server closed the stream")
        if self.transport is not None:
            self.transport.close()
        self._wake()
        if first and self.on_ended is not None:
            self.on_ended(self.failure)

    def handle_stanza(self, el: Element) -> None:
        """A stanza from the server (bound streams only)."""
        if self.on_stanza is not None:
            self.on_stanza(el)

    def _flush(self) -> None:
        data = self.stream.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _bindings(self) -> dict[str, bytes]:
        assert self.transport is not None
        ssl_object = self.transport.get_extra_info("ssl_object")
        return channel_bindings(ssl_object, server_side=False) if ssl_object is not None else {}

    async def _start_tls(self) -> None:
        transport = self.transport
        if transport is None or self.ctx is None:
            self._fail(NegotiationFailed("TLS requested but no TLS context given"))
            return
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(transport, self, self.ctx, server_hostname=self.server_name)
        except ssl.SSLCertVerificationError as exc:
            self._fail(_untrusted(self.server_name, exc))
            return
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self._fail(NegotiationFailed(f"TLS failed: {exc}"))
            return
        if new is None:
            self._fail(NegotiationFailed("TLS failed: the connection closed"))
            return
        self.transport = new
        self._handle(self.stream.tls_started(self._bindings()))

    def _fail(self, failure: ClientError) -> None:
        self.failure = failure
        self.abort()
        self._wake()


def _untrusted(name: str, exc: ssl.SSLCertVerificationError) -> CertificateNotTrusted:
    return CertificateNotTrusted(
        f"the certificate of {name} is not trusted ({exc.verify_message or exc.reason})"
    )
