"""The client connection driver: asyncio transport <-> sans-IO stream <-> router.

One ``C2SConnection`` per TCP connection. It feeds bytes to ``ServerStream``, acts on its
events (TLS upgrade, credential look-ups, binding) and writes what the stream buffered. A
``StreamError`` that escapes anything here ends the stream: this is the one place where that
conversion happens for clients.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from typing import TYPE_CHECKING, cast

from roost.core import ns
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
    error_reply,
)
from roost.core.jid import JID, InvalidJID
from roost.core.stream.server import (
    Authenticated,
    AuthFailed,
    BindRequested,
    CredentialsNeeded,
    PasswordCheckNeeded,
    PreAuthStanza,
    ServerStream,
    StanzaArrived,
    State,
    StreamEnded,
    StreamEvent,
    TLSRequested,
)
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server import events
from roost.transport.tls import channel_bindings

if TYPE_CHECKING:
    from roost.server.app import Server

__all__ = ["C2SConnection"]

log = logging.getLogger(__name__)
_SC = StreamErrorCondition

#: A reader this far behind is cut off rather than buffered without bound.
MAX_WRITE_BUFFER = 4 * 1024 * 1024
#: Stanzas queued behind a held one before we stop reading from the client.
MAX_BACKLOG = 256


class C2SConnection(asyncio.Protocol):
    """A client connection: transport, stream state, bound JID, presence bookkeeping."""

    __slots__ = (
        "_backlog",
        "_closing",
        "_held",
        "_loop",
        "_out",
        "_out_size",
        "_tls_pending",
        "asleep",
        "available",
        "directed",
        "jid",
        "jid_str",
        "last_rx",
        "last_tx",
        "peer_ip",
        "preauth_timer",
        "presence",
        "priority",
        "registered_here",
        "roster_requested",
        "server",
        "stream",
        "transport",
    )

    def __init__(self, server: Server, *, direct_tls: bool) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.stream = ServerStream(server.stream_settings, server.new_id, encrypted=direct_tls)
        self.jid: JID | None = None
        self.jid_str = ""
        self.peer_ip = "?"
        self.last_rx = self.last_tx = time.monotonic()
        #: RFC 6121 §4: available after initial presence; its last broadcast presence
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        #: RFC 6121 §4.6: JIDs this session sent directed presence to
        self.directed: set[JID] = set()
        #: RFC 6121 §2.1.6: an "interested resource" (asked for the roster)
        self.roster_requested = False
        #: XEP-0077: this connection already registered an account before authenticating
        self.registered_here = False
        self.preauth_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._out_size = 0
        self._held: asyncio.Task[object] | None = None
        #: stanzas waiting behind a held one; created on first use (most sessions never hold)
        self._backlog: collections.deque[Element] | None = None
        self._tls_pending: list[bytes] | None = None
        #: the stream's XML parser is hibernating (``Server.awake`` does not hold us)
        self.asleep = False

    def __repr__(self) -> str:
        return f"<C2S {self.jid_str or self.peer_ip}>"

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # COMPAT: uvloop's transports are not asyncio.Transport subclasses; duck-type them.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        transport.set_write_buffer_limits(high=256 * 1024)
        if not self.server.connection_opened(self):
            self.close(StreamError(_SC.POLICY_VIOLATION, "too many connections from your address"))
            return
        ssl_obj = transport.get_extra_info("ssl_object")
        if ssl_obj is not None:
            self.stream.tls_started(self._bindings(ssl_obj))
        self.preauth_timer = asyncio.get_running_loop().call_later(
            self.server.config.c2s.preauth_timeout, self._preauth_expired
        )

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self.asleep:
            self.asleep = False
            self.server.awake.add(self)
        if self._tls_pending is not None:
            # Decrypted bytes can arrive before start_tls() returns to us: hold them.
            self._tls_pending.append(data)
            return
        self._handle(self.stream.receive_data(data))

    def eof_received(self) -> bool | None:
        self._handle(self.stream.close(None))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.preauth_timer is not None:
            self.preauth_timer.cancel()
        self.server.connection_closed(self)
        if self.stream.state is not State.CLOSED:
            self.stream.close(None)
        self._unbind(None)
        self.transport = None

    def pause_writing(self) -> None:
        # The client reads slower than we write; past the hard cap we give up on it.
        if self.transport is not None and self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.close(StreamError(_SC.RESOURCE_CONSTRAINT, "you are not reading fast enough"))

    # -- output ---------------------------------------------------------------------------

    def _flush(self) -> None:
        self._write_out()  # stanzas queued before the stream's own output
        data = self.stream.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_tx = time.monotonic()
            if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                self.close(StreamError(_SC.RESOURCE_CONSTRAINT, "you are not reading fast enough"))

    def send_stanza(self, stanza: Element) -> None:
        """Write a stanza to this client now."""
        self.send_raw(serialize(stanza).encode())

    def send_raw(self, data: bytes) -> None:
        """Queue already-serialised stanza bytes; written once per loop iteration.

        Coalescing turns many small writes (each a TLS record and a syscall) into one per
        connection per event-loop turn, the largest single cost when routing messages.
        """
        if self.transport is None or self._closing:
            return
        out = self._out
        out.append(data)
        if len(out) == 1:
            self._out_size = len(data)
            self._loop.call_soon(self._write_out)
        else:
            self._out_size += len(data)
            if self._out_size > MAX_WRITE_BUFFER:
                self.close(StreamError(_SC.RESOURCE_CONSTRAINT, "you are not reading fast enough"))

    def _write_out(self) -> None:
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        t = self.transport
        if t is None or self._closing or t.is_closing():
            return
        t.write(data)
        self.last_tx = time.monotonic()
        if t.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.close(StreamError(_SC.RESOURCE_CONSTRAINT, "you are not reading fast enough"))

    def answer_preauth(self, iq: Element, result: Element | StanzaError | None) -> None:
        """Answer an iq taken before authentication (XEP-0077, XEP-0078).

        The client has no JID yet, so the reply carries no ``to``; it comes from our domain.
        """
        domain = self.stream.domain or self.server.default_domain
        if isinstance(result, StanzaError):
            reply = error_reply(iq, result)
            reply.attrs["from"] = domain
        else:
            reply = Element("iq", ns.CLIENT, {"type": "result", "from": domain})
            if (iq_id := iq.get("id")) is not None:
                reply.attrs["id"] = iq_id
            if result is not None:
                reply.append(result)
        self.send_stanza(reply)

    def send_whitespace(self) -> None:
        """A whitespace keepalive (RFC 6120 §4.6.1)."""
        if self.transport is not None and self.stream.state is State.READY:
            self.transport.write(b" ")
            self.last_tx = time.monotonic()

    def interested(self, stanza: Element) -> bool:
        """Whether a stanza addressed to this full JID should be written to it."""
        return self.stream.state is State.READY

    def hold(self, task: asyncio.Task[object]) -> None:
        """Process nothing more from this client until ``task`` is done.

        RFC 6120 §10.1: stanzas are handled in the order the client sent them, and a request
        whose handling may affect later stanzas (a subscription, a roster change) suspends
        the rest until it is done. Routing that needs no I/O never holds.
        """
        self._held = task
        task.add_done_callback(self._release)

    def _release(self, task: asyncio.Task[object]) -> None:
        if self._held is not task:
            return
        self._held = None
        backlog = self._backlog
        while backlog and self._held is None and not self._closing:
            self.server.router.from_client(self, backlog.popleft())
        if not backlog:
            self._backlog = None  # a deque keeps a 0.5 KB block even when empty
        if self._held is None and self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def close(self, error: StreamError | None = None) -> None:
        """End the stream (with an optional stream error) and close the connection."""
        if self._closing:
            return
        self._handle(self.stream.close(error))

    # -- stream events --------------------------------------------------------------------

    def _handle(self, evs: list[StreamEvent]) -> None:
        for ev in evs:
            try:
                self._event(ev)
            except StreamError as err:
                self._handle(self.stream.close(err))
                return
            except Exception:
                log.exception("%r: failed on %s", self, type(ev).__name__)
                self._handle(self.stream.close(StreamError(_SC.INTERNAL_SERVER_ERROR)))
                return
        self._flush()

    def _event(self, ev: StreamEvent) -> None:
        if isinstance(ev, StanzaArrived):
            if self._held is not None:
                if self._backlog is None:
                    self._backlog = collections.deque()
                self._backlog.append(ev.element)
                if len(self._backlog) >= MAX_BACKLOG and self.transport is not None:
                    self.transport.pause_reading()
            else:
                self.server.router.from_client(self, ev.element)
        elif isinstance(ev, TLSRequested):
            self._flush()
            if self.transport is not None:
                # The TLS handshake must not reach the XML parser.
                self.transport.pause_reading()
                self._tls_pending = []
            self.server.spawn(self._start_tls())
        elif isinstance(ev, CredentialsNeeded):
            self.server.spawn(self._credentials(ev))
        elif isinstance(ev, PasswordCheckNeeded):
            self.server.spawn(self._check_password(ev))
        elif isinstance(ev, Authenticated):
            log.info("%s authenticated as %s with %s", self.peer_ip, ev.username, ev.mechanism)
        elif isinstance(ev, AuthFailed):
            log.info("%s failed to authenticate (%s)", self.peer_ip, ev.condition)
            self.server.auth_failed(self.peer_ip)
        elif isinstance(ev, BindRequested):
            self._bind(ev)
        elif isinstance(ev, PreAuthStanza):
            self.server.preauth_stanza(self, ev.element)
        elif isinstance(ev, StreamEnded):
            self._end(ev.error)

    def _end(self, error: StreamError | None) -> None:
        self._flush()
        self._closing = True
        if error is not None and error.condition not in (_SC.CONFLICT, _SC.SYSTEM_SHUTDOWN):
            log.info("%r: stream error %s", self, error)
        self._unbind(error)
        if self.transport is not None:
            self.transport.close()

    def _preauth_expired(self) -> None:
        if self.stream.state not in (State.READY, State.CLOSED):
            self.close(StreamError(_SC.CONNECTION_TIMEOUT, "authentication took too long"))

    def _bindings(self, ssl_obj: ssl.SSLObject) -> dict[str, bytes]:
        return channel_bindings(
            ssl_obj, server_side=True, local_cert_der=self.server.cert_der(self.stream.domain)
        )

    async def _start_tls(self) -> None:
        loop = asyncio.get_running_loop()
        transport = self.transport
        if transport is None:
            return
        ctx = self.server.tls_context(self.stream.domain)
        try:
            new = await asyncio.wait_for(
                loop.start_tls(transport, self, ctx, server_side=True), timeout=30
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("%s: TLS negotiation failed: %s", self.peer_ip, exc)
            transport.close()
            return
        if new is None:
            transport.close()
            return
        self.transport = new
        ssl_obj = new.get_extra_info("ssl_object")
        held, self._tls_pending = self._tls_pending or [], None
        self._handle(self.stream.tls_started(self._bindings(ssl_obj)))
        for data in held:
            self.data_received(data)

    async def _credentials(self, ev: CredentialsNeeded) -> None:
        if self.server.auth_blocked(self.peer_ip):
            self.close(StreamError(_SC.POLICY_VIOLATION, "too many failed logins, try later"))
            return
        creds = await self.server.accounts.scram_credentials(
            ev.username, self.stream.domain or "", ev.hash_name
        )
        if not self._closing:
            self._handle(self.stream.provide_credentials(creds))

    async def _check_password(self, ev: PasswordCheckNeeded) -> None:
        if self.server.auth_blocked(self.peer_ip):
            self.close(StreamError(_SC.POLICY_VIOLATION, "too many failed logins, try later"))
            return
        ok = await self.server.accounts.check_password(
            ev.username, self.stream.domain or "", ev.password
        )
        if not self._closing:
            self._handle(self.stream.password_checked(ok))

    # -- binding (RFC 6120 §7) ------------------------------------------------------------

    def _bind(self, ev: BindRequested) -> None:
        stream = self.stream
        assert stream.username is not None and stream.domain is not None
        try:
            bare = JID.make(stream.username, stream.domain)
            full = self.server.sessions.pick_resource(bare, ev.resource)
        except InvalidJID:
            stream.bind_failed(ev.iq_id, StanzaError(StanzaErrorCondition.BAD_REQUEST))
            return
        self.server.spawn(self._bind_after_load(full, ev.iq_id))

    async def _bind_after_load(self, full: JID, iq_id: str | None) -> None:
        """Load the roster into memory first, so routing to this session never waits."""
        await self.server.rosters.acquire(full.bare)
        if self._closing or self.transport is None:
            self.server.rosters.release(full.bare)
            return
        self.bound(full, iq_id)
        self._flush()

    def bound(self, full: JID, iq_id: str | None) -> None:
        """Take ``full``; an older session holding it gets ``conflict`` (RFC 6120 §7.7.2.2)."""
        if self.preauth_timer is not None:
            self.preauth_timer.cancel()
            self.preauth_timer = None
        self.jid = full
        self.jid_str = str(full)
        old = self.server.sessions.bind(full, self)
        if iq_id is not None:
            self.stream.bind_succeeded(iq_id, self.jid_str)
        if old is not None and old is not self:
            conflict = StreamError(_SC.CONFLICT, "replaced by a new session")
            old.jid = None  # it no longer owns the binding
            self.server.bus.fire(events.SESSION_CLOSED, old, full, conflict)
            old.close(conflict)
        self.server.note_churn()
        self.server.bus.fire(events.SESSION_BOUND, self)

    def _unbind(self, error: StreamError | None) -> None:
        jid = self.jid
        if jid is None:
            return
        self.jid = None
        if self.server.sessions.unbind(jid, self):
            self.server.bus.fire(events.SESSION_CLOSED, self, jid, error)
