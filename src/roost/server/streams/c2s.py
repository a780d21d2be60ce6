"""The client stream driver: asyncio transport <-> sans-IO stream <-> session and router.

One ``C2SConnection`` per TCP connection. It feeds bytes to ``ServerStream``, acts on its
events (TLS upgrade, credential look-ups, binding) and writes what the stream buffered.
Once a resource is bound it carries a ``Session``; everything written to the client, from
the negotiation or from ``roost.server.delivery``, goes through the stream's one output
buffer, flushed once per event-loop turn. A ``StreamError`` that escapes anything here
ends the stream: this is the one place where that conversion happens for clients.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol, cast

from roost.core import ns
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
    error_reply,
)
from roost.core.jid import JID, InvalidJID
from roost.core.sasl import ScramCredentials
from roost.core.stream.server import (
    Authenticated,
    AuthFailed,
    BindRequested,
    CredentialsNeeded,
    NonzaReceived,
    PasswordCheckNeeded,
    PreAuthStanza,
    ResumeRequested,
    ServerStream,
    ServerStreamSettings,
    SMReceived,
    StanzaReceived,
    State,
    StreamEnded,
    StreamEvent,
    TLSRequested,
)
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server import delivery, events, stats
from roost.server.accounts import KeysNotStored
from roost.server.api import Registry
from roost.server.bus import EventBus
from roost.server.router import Router
from roost.server.services import ArchiveService, DurableWrites
from roost.server.session import Session
from roost.server.sessions import SessionManager
from roost.server.sm import SM, StreamManagement, StreamManager, parse_h
from roost.server.streams.base import StreamDriver
from roost.transport.tls import channel_bindings

__all__ = ["C2SConnection", "C2SHost"]

log = logging.getLogger(__name__)
_SC = StreamErrorCondition

#: Stanzas queued behind a held one before we stop reading from the client.
MAX_BACKLOG = 256
_REQUEST = f"<r xmlns='{SM}'/>".encode()


def _count_too_high(h: int, sent: int) -> StreamError:
    """XEP-0198 §4: the peer acknowledged more than it was sent."""
    return StreamError(
        _SC.UNDEFINED_CONDITION,
        f"you acknowledged {h} stanzas, but only {sent} were sent",
        extra=Element("handled-count-too-high", SM, {"h": str(h), "send-count": str(sent)}),
    )


class _Accounts(Protocol):
    async def scram_credentials(
        self, username: str, domain: str, hash_name: str
    ) -> ScramCredentials | None:
        """Raises ``KeysNotStored`` for an account without keys for ``hash_name``."""
        ...

    async def check_password(self, username: str, domain: str, password: str) -> bool: ...


class C2SHost(Protocol):
    """What a client connection needs from the server that accepted it."""

    stream_settings: ServerStreamSettings
    sessions: SessionManager
    router: Router
    bus: EventBus
    registry: Registry
    awake: set[C2SConnection]
    stream_manager: StreamManager | None

    @property
    def accounts(self) -> _Accounts: ...

    @property
    def default_domain(self) -> str: ...

    @property
    def preauth_timeout(self) -> float: ...

    def new_id(self) -> str: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def tls_context(self, domain: str | None) -> ssl.SSLContext: ...

    def cert_der(self, domain: str | None) -> bytes | None: ...

    def connection_opened(self, conn: C2SConnection) -> bool: ...

    def connection_closed(self, conn: C2SConnection) -> None: ...

    def note_churn(self) -> None: ...

    def end_session(self, session: Session, error: StreamError | None = None) -> None: ...

    def archive(self) -> ArchiveService | None: ...

    def room_archive(self) -> DurableWrites | None: ...

    def auth_failed(self, ip: str) -> None: ...

    def auth_blocked(self, ip: str) -> bool: ...


class C2SConnection(StreamDriver):
    """A client connection: transport, stream state, and the session once bound."""

    __slots__ = (
        "_ack_timer",
        "_backlog",
        "_held",
        "asleep",
        "bound_jid",
        "cid",
        "host",
        "preauth_timer",
        "registered_here",
        "session",
        "stream",
    )

    def __init__(self, host: C2SHost, *, direct_tls: bool) -> None:
        super().__init__()
        self.host = host
        self.stream: ServerStream = ServerStream(
            host.stream_settings, host.new_id, encrypted=direct_tls
        )
        self.session: Session | None = None
        #: this connection's id in the log, on every line about it
        self.cid = host.new_id()[:8]
        #: the JID it was bound to (kept for the log once the session is gone)
        self.bound_jid: str | None = None
        #: XEP-0077: this connection already registered an account before authenticating
        self.registered_here = False
        self.preauth_timer: asyncio.TimerHandle | None = None
        self._held: asyncio.Task[object] | None = None
        #: XEP-0198: an <r/> is due a little after the first unacknowledged stanza
        self._ack_timer: asyncio.TimerHandle | None = None
        #: stanzas waiting behind a held one; created on first use (most sessions never hold)
        self._backlog: collections.deque[Element] | None = None
        #: the stream's XML parser is hibernating (``awake`` does not hold us)
        self.asleep = False

    def __repr__(self) -> str:
        who = self.session.jid_str if self.session else self.bound_jid or self.peer_ip
        return f"<C2S {self.cid} {who}>"

    # -- what the session and the pre-auth modules see ------------------------------------

    @property
    def encrypted(self) -> bool:
        return self.stream.encrypted

    @property
    def domain(self) -> str:
        return self.stream.domain or self.host.default_domain

    @property
    def authenticating(self) -> bool:
        return self.stream.state is State.PRE_AUTH

    def auth_blocked(self) -> bool:
        return self.host.auth_blocked(self.peer_ip)

    def auth_failed(self) -> None:
        stats.AUTH["failure"] += 1  # XEP-0078 (SASL failures are counted in _event)
        self.host.auth_failed(self.peer_ip)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # COMPAT: uvloop's transports are not asyncio.Transport subclasses; duck-type them.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        transport.set_write_buffer_limits(high=256 * 1024)
        stats.CONNECTIONS_ACCEPTED["c2s"] += 1
        if not self.host.connection_opened(self):
            self.close(StreamError(_SC.POLICY_VIOLATION, "too many connections from your address"))
            return
        log.info("%r: connected", self)
        ssl_obj = transport.get_extra_info("ssl_object")
        if ssl_obj is not None:
            self.stream.tls_started(self._bindings(ssl_obj))
        self.preauth_timer = self._loop.call_later(self.host.preauth_timeout, self._preauth_expired)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self.asleep:
            self.asleep = False
            self.host.awake.add(self)
        if self._tls_pending is not None:
            # Decrypted bytes can arrive before start_tls() returns to us: hold them.
            self._tls_pending.append(data)
            return
        self._handle(self.stream.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.preauth_timer is not None:
            self.preauth_timer.cancel()
        self.host.connection_closed(self)
        log.info("%r: disconnected%s", self, f" ({exc})" if exc else "")
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self.stream.state is not State.CLOSED:
            self.stream.close(None)
        self._unbind(None)
        self.transport = None

    # -- output ---------------------------------------------------------------------------

    def answer(self, iq: Element, result: Element | StanzaError | None) -> None:
        """Answer an iq taken before authentication (XEP-0077, XEP-0078).

        The client has no JID yet, so the reply carries no ``to``; it comes from our domain.
        """
        if isinstance(result, StanzaError):
            reply = error_reply(iq, result)
            reply.attrs["from"] = self.domain
        else:
            reply = Element("iq", ns.CLIENT, {"type": "result", "from": self.domain})
            if (iq_id := iq.get("id")) is not None:
                reply.attrs["id"] = iq_id
            if result is not None:
                reply.append(result)
        self.write(serialize(reply).encode())

    def send_whitespace(self) -> None:
        """A whitespace keepalive (RFC 6120 §4.6.1)."""
        if self.transport is not None and self.stream.state is State.READY:
            self.transport.write(b" ")
            self.last_tx = time.monotonic()

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
        while backlog and self._held is None and not self._closing and self.session is not None:
            self.host.router.from_client(self.session, backlog.popleft())
        if not backlog:
            self._backlog = None  # a deque keeps a 0.5 KB block even when empty
        if self._held is None and self.transport is not None and not self._closing:
            self.transport.resume_reading()

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
        if isinstance(ev, StanzaReceived):
            session = self.session
            if session is not None and session.sm is not None:
                session.sm.received()  # XEP-0198 §4: counted as it is taken in, in order
            if self._held is not None:
                if self._backlog is None:
                    self._backlog = collections.deque()
                self._backlog.append(ev.element)
                if len(self._backlog) >= MAX_BACKLOG and self.transport is not None:
                    self.transport.pause_reading()
            elif self.session is not None:
                self.host.router.from_client(self.session, ev.element)
        elif isinstance(ev, TLSRequested):
            self._hold_for_tls()
            self.host.spawn(self._start_tls())
        elif isinstance(ev, CredentialsNeeded):
            self.host.spawn(self._credentials(ev))
        elif isinstance(ev, PasswordCheckNeeded):
            self.host.spawn(self._check_password(ev))
        elif isinstance(ev, Authenticated):
            stats.AUTH["success"] += 1
            log.info("%s authenticated as %s with %s", self.peer_ip, ev.username, ev.mechanism)
        elif isinstance(ev, AuthFailed):
            if ev.counted:
                stats.AUTH["failure"] += 1
                log.info("%s failed to authenticate (%s)", self.peer_ip, ev.condition)
                self.host.auth_failed(self.peer_ip)
            else:  # a refused mechanism or channel-binding choice: not a password guess
                log.info("%s: SASL attempt refused (%s)", self.peer_ip, ev.condition)
        elif isinstance(ev, BindRequested):
            self._bind(ev)
        elif isinstance(ev, SMReceived):
            self._sm(ev.element)
        elif isinstance(ev, ResumeRequested):
            self.host.spawn(self._resume(ev))
        elif isinstance(ev, NonzaReceived):
            nonza = self.host.registry.nonza_handlers.get(ev.element.ns)
            if nonza is not None and self.session is not None:
                nonza(self.session, ev.element)
        elif isinstance(ev, PreAuthStanza):
            payload = ev.element.find()
            handlers = self.host.registry.preauth_handlers
            handler = handlers.get(payload.ns if payload is not None else "")
            if handler is not None:
                handler(self, ev.element)
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
            ssl_obj, server_side=True, local_cert_der=self.host.cert_der(self.stream.domain)
        )

    async def _start_tls(self) -> None:
        new = await self._upgrade(self.host.tls_context(self.stream.domain), 30)
        if new is not None:
            self._handle(self.stream.tls_started(self._bindings(new.get_extra_info("ssl_object"))))
            self._replay_held()

    async def _credentials(self, ev: CredentialsNeeded) -> None:
        if self.host.auth_blocked(self.peer_ip):
            self.close(StreamError(_SC.POLICY_VIOLATION, "too many failed logins, try later"))
            return
        try:
            creds = await self.host.accounts.scram_credentials(
                ev.username, self.stream.domain or "", ev.hash_name
            )
        except KeysNotStored:
            if not self._closing:
                self._handle(self.stream.hash_unavailable())
            return
        if not self._closing:
            self._handle(self.stream.provide_credentials(creds))

    async def _check_password(self, ev: PasswordCheckNeeded) -> None:
        if self.host.auth_blocked(self.peer_ip):
            self.close(StreamError(_SC.POLICY_VIOLATION, "too many failed logins, try later"))
            return
        ok = await self.host.accounts.check_password(
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
            full = self.host.sessions.pick_resource(bare, ev.resource)
        except InvalidJID:
            stream.bind_failed(ev.iq_id, StanzaError(StanzaErrorCondition.BAD_REQUEST))
            return
        self.host.spawn(self._open_session(full, ev.iq_id))

    async def _open_session(self, full: JID, iq_id: str | None) -> None:
        session = Session(full, self)
        if await self._prepare(session):
            self._bound(session, iq_id)
            self._flush()

    async def _prepare(self, session: Session) -> bool:
        """Let the modules load what routing to the session needs (its roster, its privacy
        lists) before it is bound, so routing never waits; False if the stream went away."""
        waits: list[Awaitable[object]] = []
        self.host.bus.notify(events.SESSION_OPENING, session, waits)
        failed = False
        try:
            for wait in waits:
                await wait
        except Exception:
            log.exception("%r: cannot open the session of %s", self, session.jid)
            failed = True
        if failed or self._closing or self.transport is None:
            session.detach()
            self.host.bus.notify(events.SESSION_ABANDONED, session)
            if failed:
                self.close(StreamError(_SC.INTERNAL_SERVER_ERROR))
            return False
        return True

    async def bind_legacy(self, full: JID, iq: Element) -> bool:
        """XEP-0078: authenticate as ``full``, answer ``iq`` and bind, as SASL logins do."""
        assert full.local is not None
        session = Session(full, self)
        if not await self._prepare(session):
            return False
        if self.stream.state is not State.PRE_AUTH:  # authenticated otherwise meanwhile
            session.detach()
            self.host.bus.notify(events.SESSION_ABANDONED, session)
            return False
        self.stream.legacy_authenticated(full.local, str(full))
        stats.AUTH["success"] += 1
        self.answer(iq, None)
        self._bound(session, None)
        self._flush()
        return True

    def _bound(self, session: Session, iq_id: str | None) -> None:
        """Take the JID; an older session holding it gets ``conflict`` (RFC 6120 §7.7.2.2)."""
        if self.preauth_timer is not None:
            self.preauth_timer.cancel()
            self.preauth_timer = None
        self.session = session
        self.bound_jid = session.jid_str
        old = self.host.sessions.bind(session.jid, session)
        if iq_id is not None:
            self.stream.bind_succeeded(iq_id, session.jid_str)
        if old is not None and old is not session:
            conflict = StreamError(_SC.CONFLICT, "replaced by a new session")
            self.host.bus.notify(events.SESSION_CLOSED, old, conflict)
            old.close(conflict)
        self.host.note_churn()
        self.host.bus.notify(events.SESSION_BOUND, session)

    def _unbind(self, error: StreamError | None) -> None:
        session = self.session
        if session is None:
            return
        self.session = None
        if session.stream is not self:
            return  # resumed on another connection (XEP-0198): nothing ends here
        session.detach()
        sm = session.sm
        if sm is not None:
            sm.watch = None
        manager = self.host.stream_manager
        if (
            sm is not None
            and sm.resumable
            and manager is not None
            and not self.stream.peer_closed
            and (error is None or error.condition is _SC.CONNECTION_TIMEOUT)
        ):
            # XEP-0198 §5: the connection went, the client did not say goodbye: the
            # session waits (still online to its contacts) for a resumption
            manager.wait_for_resumption(session, self.host.end_session)
            return
        self.host.end_session(session, error)

    # -- XEP-0198 Stream Management ---------------------------------------------------------

    def _sm_queued(self) -> None:
        """A stanza was written that waits for the client's ack (``StreamManagement.watch``)."""
        session = self.session
        sm = session.sm if session is not None else None
        if sm is None or self._closing:
            return
        manager = self.host.stream_manager
        assert manager is not None
        if len(sm.unacked) > manager.config.max_unacked:
            # a client that never acknowledges would have us keep everything
            self._loop.call_soon(
                self.close,
                StreamError(_SC.POLICY_VIOLATION, "too many unacknowledged stanzas"),
            )
        elif not sm.requested:
            self._ask_soon(sm, manager)

    def _ask_soon(self, sm: StreamManagement, manager: StreamManager) -> None:
        """§4: one <r/> at a time: soon after the first stanza that waits for an ack, at
        once when many do."""
        if len(sm.unacked) >= manager.config.ack_every:
            self._request_ack()
        elif self._ack_timer is None:
            self._ack_timer = self._loop.call_later(manager.config.ack_delay, self._request_ack)

    def _request_ack(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        session = self.session
        sm = session.sm if session is not None else None
        if sm is None or sm.requested or not sm.unacked or self._closing:
            return
        sm.requested = True
        self.stream.send_raw(_REQUEST)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _sm(self, el: Element) -> None:
        session, manager = self.session, self.host.stream_manager
        if session is None or manager is None:
            return
        sm = session.sm
        if el.tag == "enable":
            if sm is not None:  # §3: one attempt only
                failed = Element("failed", SM)
                failed.sub("unexpected-request", ns.STANZAS)
                self.stream.send_stanza(failed)
                return
            sm = manager.enable(session, el.get("resume") in ("true", "1"))
            sm.watch = self._sm_queued
            attrs = {"id": sm.id}
            if sm.resumable:
                attrs["resume"] = "true"
                attrs["max"] = str(int(manager.config.resume_timeout))
            self.stream.send_stanza(Element("enabled", SM, attrs))
        elif sm is None:
            return  # acks before enabling mean nothing
        elif el.tag == "r":
            archives = tuple(
                a for a in (self.host.archive(), self.host.room_archive()) if a is not None
            )
            if not archives and self._held is None:
                self.stream.send_raw(f"<a xmlns='{SM}' h='{sm.h_in}'/>".encode())
            else:
                self.host.spawn(self._durable_ack(sm.h_in, archives))
        elif el.tag == "a":
            h = parse_h(el.get("h"))
            if h is None:
                raise StreamError(_SC.INVALID_XML, "an ack needs a numeric 'h'")
            if not sm.valid_ack(h):
                raise _count_too_high(h, sm.sent)
            sm.ack(h)
            if sm.unacked:  # what went out after our <r/> still waits for its ack
                self._ask_soon(sm, manager)

    async def _durable_ack(self, h: int, archives: tuple[DurableWrites, ...]) -> None:
        """#12: acknowledge ``h`` stanzas only once they are handled (none waits behind a
        held one) and the messages among them are in the archives on disk (the user
        archive, and the room archive for groupchat), so what a client was told is safe
        survives a crash (XEP-0198 §4: "handled")."""
        while self._held is not None and not self._closing:
            await asyncio.wait({self._held})
        for archive in archives:
            try:
                await archive.flushed()
            except Exception:
                log.exception("%r: the archive could not be written; no ack", self)
                return
        if not self._closing:
            self.stream.send_raw(f"<a xmlns='{SM}' h='{h}'/>".encode())
            self._flush()

    async def _resume(self, ev: ResumeRequested) -> None:
        """§5: take up a session whose connection dropped, on this connection."""
        manager = self.host.stream_manager
        stream = self.stream
        assert manager is not None and stream.username is not None and stream.domain is not None
        bare = JID.make(stream.username, stream.domain)
        session = manager.take(ev.previd, bare)
        if session is None:
            h = await manager.last_h(ev.previd, bare)
            if not self._closing:
                stream.resume_failed(h)
                self._flush()
            return
        sm = session.sm
        assert sm is not None
        if self._closing or not sm.valid_ack(ev.h):
            if session.stream is None:  # still waiting for a good resumption
                manager.wait_for_resumption(session, self.host.end_session)
            if not self._closing:
                self.close(_count_too_high(ev.h, sm.sent))
            return
        if self.preauth_timer is not None:
            self.preauth_timer.cancel()
            self.preauth_timer = None
        old = session.stream
        self.session = session
        self.bound_jid = session.jid_str
        stream.resumed(ev.previd, sm.h_in, session.jid_str)
        sm.watch = self._sm_queued
        delivery.resume(session, self, ev.h)
        log.info("%r: resumed, %d stanzas sent again", self, len(sm.unacked))
        self.host.bus.notify(events.SESSION_RESUMED, session)
        if old is not None and old is not self:
            old.close(StreamError(_SC.CONFLICT, "the session was resumed on another connection"))
        self._flush()
