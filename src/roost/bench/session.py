"""One benchmark session: an ``asyncio.Protocol`` driving the sans-IO ``ClientStream``.

Negotiation (STARTTLS via ``loop.start_tls``, SASL, bind) goes through the core machine.
Once logged in, a session can switch to *raw mode* for the hot path: received bytes are no
longer parsed into elements but scanned for what the scenario counts (message timestamps,
presence stanzas, the end of the stream), and stanzas are written as prepared bytes. That is
only done after negotiation, when the stream carries nothing but stanzas; the scan is sound
because the only text we look for is our own body token (``rb:STEP:NANOS;``), which the
server passes through unchanged, and tag openings (``<presence``) that cannot appear escaped.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
import time
from array import array
from collections.abc import Callable
from typing import cast

from roost.core import ns
from roost.core.stream.client import (
    AuthFailed,
    Bound,
    ClientEvent,
    ClientStream,
    ClientStreamSettings,
    Registered,
    StanzaReceived,
    StreamEnded,
    TLSMode,
    TLSRequested,
)
from roost.core.xml.element import Element
from roost.transport.tls import channel_bindings

__all__ = ["BenchSession", "LoginFailed", "Tally", "client_tls_context"]

#: initial presence and a ping round trip: the last step of a login
_LOGIN_TAIL = b"<presence/><iq type='get' id='bench-ping'><ping xmlns='urn:xmpp:ping'/></iq>"
_PING_ID = "bench-ping"
#: what raw mode looks for; group 1/2: the step and send time (ns) of a bench message
_SCAN = re.compile(rb"<presence|rb:(\d+):(\d+);|</stream:stream>|<stream:error")
_TOKEN = re.compile(r"rb:(\d+):(\d+);")
_MAX_TOKEN = 48  # longer than any match, so a match cut between two reads is kept whole
_PENDING_WRITE_LIMIT = 256 * 1024


class LoginFailed(Exception):
    """The session could not log in (or register); the message says why."""


def client_tls_context(insecure: bool) -> ssl.SSLContext:
    """A client TLS context; ``insecure`` skips certificate and host name checks."""
    ctx = ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Tally:
    """What all sessions of one worker received, for the scenario's report.

    Messages are attributed to the step they were sent in (the step is in the token); a
    message counts as delivered if it arrives before that step's deadline (end + drain).
    """

    __slots__ = ("deadlines_ns", "delivered", "late", "latencies_us", "presences", "unknown")

    def __init__(self) -> None:
        self.presences = 0
        self.unknown = 0
        self.deadlines_ns: list[int] = []
        self.delivered: list[int] = []
        self.late: list[int] = []
        self.latencies_us: list[array[int]] = []

    def configure_steps(self, deadlines_ns: list[int]) -> None:
        self.deadlines_ns = deadlines_ns
        self.delivered = [0] * len(deadlines_ns)
        self.late = [0] * len(deadlines_ns)
        self.latencies_us = [array("q") for _ in deadlines_ns]

    def message(self, step: int, sent_ns: int, now_ns: int) -> None:
        if step >= len(self.deadlines_ns):
            self.unknown += 1
        elif now_ns <= self.deadlines_ns[step]:
            self.delivered[step] += 1
            self.latencies_us[step].append((now_ns - sent_ns) // 1000)
        else:
            self.late[step] += 1


class BenchSession(asyncio.Protocol):
    """One connection and its stream; ``login`` runs the whole negotiation."""

    __slots__ = (
        "_lost",
        "_tail",
        "_tls_task",
        "_waiter",
        "ctx",
        "ended",
        "failure",
        "index",
        "jid",
        "partner",
        "ponged",
        "raw",
        "registered",
        "stream",
        "tally",
        "transport",
    )

    def __init__(
        self,
        index: int,
        settings: ClientStreamSettings,
        ctx: ssl.SSLContext | None,
        tally: Tally,
    ) -> None:
        self.index = index
        self.stream = ClientStream(settings, _nonce)
        self.ctx = ctx
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.jid: str | None = None
        self.partner: BenchSession | None = None
        self.registered: bool | None = None
        self.ponged = False
        self.raw = False
        self.ended = False
        self.failure: str | None = None
        self._tail = b""
        self._waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tls_task: asyncio.Task[None] | None = None

    # -- driving a login ------------------------------------------------------------------

    async def connect(self, host: str, port: int, source_ip: str | None) -> None:
        loop = asyncio.get_running_loop()
        direct = self.stream.settings.tls is TLSMode.DIRECT
        await loop.create_connection(
            lambda: self,
            host,
            port,
            ssl=self.ctx if direct else None,
            server_hostname=self.stream.settings.domain if direct else None,
            local_addr=(source_ip, 0) if source_ip else None,
        )

    async def login(self, host: str, port: int, source_ip: str | None = None) -> None:
        """Connect, negotiate, bind, send initial presence and wait for a ping answer."""
        await self.connect(host, port, source_ip)
        await self._wait_for(lambda: self.jid is not None)
        self.stream.send_raw(_LOGIN_TAIL)
        self._flush()
        await self._wait_for(lambda: self.ponged)

    async def register(self, host: str, port: int, source_ip: str | None = None) -> bool:
        """XEP-0077: create the account (True) or find it exists (False), then close."""
        await self.connect(host, port, source_ip)
        await self._wait_for(lambda: self.registered is not None)
        assert self.registered is not None
        return self.registered

    async def _wait_for(self, done: Callable[[], bool]) -> None:
        while not done():
            if self.failure is not None:
                raise LoginFailed(self.failure)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
        if self.raw:
            self._scan(data)
        else:
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
            self.failure = f"connection lost ({exc})" if exc else "connection closed"
        self._wake()

    # -- events from the stream -----------------------------------------------------------

    def _handle(self, events: list[ClientEvent]) -> None:
        for ev in events:
            if isinstance(ev, StanzaReceived):
                self._stanza(ev.element)
            elif isinstance(ev, TLSRequested):
                self._flush()
                self._tls_task = asyncio.get_running_loop().create_task(self._start_tls())
            elif isinstance(ev, Bound):
                self.jid = ev.jid
                self._wake()
            elif isinstance(ev, Registered):
                self.registered = ev.created
                self._wake()
            elif isinstance(ev, AuthFailed):
                self.failure = f"SASL {ev.condition}"
            elif isinstance(ev, StreamEnded):
                self._flush()
                self.ended = True
                if self.failure is None or ev.error is not None:
                    self.failure = (
                        f"stream error {ev.error.condition.value}"
                        if ev.error is not None
                        else ev.reason or "stream closed"
                    )
                if self.transport is not None:
                    self.transport.close()
                self._wake()
        self._flush()

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
            self._fail("TLS requested but not available")
            return
        loop = asyncio.get_running_loop()
        try:
            new = await loop.start_tls(
                transport, self, self.ctx, server_hostname=self.stream.settings.domain
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self._fail(f"TLS failed: {exc}")
            return
        if new is None:
            self._fail("TLS failed: the connection closed")
            return
        self.transport = new
        self._handle(self.stream.tls_started(self._bindings()))

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.abort()
        self._wake()

    def _stanza(self, el: Element) -> None:
        tag = el.tag
        if tag == "presence":
            self.tally.presences += 1
        elif tag == "message":
            body = el.find("body")
            if body is not None and (m := _TOKEN.search(body.text)):
                self.tally.message(int(m.group(1)), int(m.group(2)), time.monotonic_ns())
        elif tag == "iq":
            iq_type = el.get("type")
            if el.get("id") == _PING_ID and iq_type in ("result", "error"):
                self.ponged = True
                self._wake()
            elif iq_type == "get" and el.find("ping", ns.PING) is not None:
                # XEP-0199 §4.3: the server checks that we are alive.
                reply = Element("iq", ns.CLIENT, {"type": "result", "id": el.get("id") or ""})
                if (frm := el.get("from")) is not None:
                    reply.attrs["to"] = frm
                self.stream.send_stanza(reply)

    # -- raw mode (hot path) --------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Write prepared stanza bytes; False (nothing written) when the server is not
        reading fast enough or the session is gone."""
        t = self.transport
        if t is None or self.ended or t.get_write_buffer_size() > _PENDING_WRITE_LIMIT:
            return False
        t.write(data)
        return True

    def _scan(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        tally = self.tally
        now_ns = time.monotonic_ns()
        end = 0
        for m in _SCAN.finditer(data):
            end = m.end()
            step = m.group(1)
            if step is not None:
                tally.message(int(step), int(m.group(2)), now_ns)
            elif m.group(0) == b"<presence":
                tally.presences += 1
            else:
                self.ended = True  # the server closed or errored our stream
        # No complete match lies after ``end``; keep what could be the start of one.
        self._tail = data[max(end, len(data) - _MAX_TOKEN) :]


def _nonce() -> str:
    return secrets.token_urlsafe(18)
