"""Federation: streams to and from other servers (RFC 6120 s2s, XEP-0220 Server Dialback).

``Federation`` takes every stanza the router cannot deliver locally (``route/remote``),
keeps one outgoing stream per (local domain, remote domain) pair, queues stanzas while it
comes up and sends them in order once dialback says "valid"; if the peer cannot be reached,
refuses, or does not answer within ``s2s.connect_timeout``, the queued stanzas bounce with
``remote-server-not-found`` or ``remote-server-timeout``. Incoming streams are checked by
the core (``S2SInbound``); their dialback keys are verified with the sender's authoritative
server on a verify-only stream, and their stanzas routed like any other.

A route is a domain pair on a stream, not a stream: a second local domain to the same peer
is added to an established stream with dialback (XEP-0220 §8.1) when the peer handles
dialback errors, and a stream a peer opened with XEP-0288 ``<bidi/>`` carries our stanzas
back to it (the route is then that inbound stream, and we open none of our own).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from time import perf_counter
from typing import Any

from roost.core.errors import StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition
from roost.core.identity import CertIdentities, certificate_matches
from roost.core.jid import JID
from roost.core.stream.events import StanzaReceived, StreamEnded, TLSRequested
from roost.core.stream.s2s import (
    DialbackFailed,
    DialbackKeyReceived,
    Established,
    ReverseReady,
    S2SEvent,
    S2SInbound,
    S2SOutbound,
    S2SSettings,
    VerifyAnswered,
)
from roost.core.xml.element import Element
from roost.server import events, stats
from roost.server.bus import EventBus
from roost.server.config import S2SConfig
from roost.server.delivery import stanza_bytes
from roost.server.router import Router
from roost.server.streams.base import StreamDriver
from roost.transport.certs import der_identities, load_tls_context_server, make_client_context
from roost.transport.srv import srv_targets

__all__ = ["Federation", "S2SInboundConnection", "S2SOutboundConnection"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition
DEFAULT_PORT = 5269
#: stanzas queued behind a held one before we stop reading from the peer
MAX_BACKLOG = 256


class Federation:
    """Every s2s stream of this server, and the outgoing routes by domain pair."""

    def __init__(
        self,
        config: S2SConfig,
        domains: frozenset[str],
        router: Router,
        bus: EventBus,
        new_id: Callable[[], str],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        capture: Callable[[], AbstractContextManager[list[asyncio.Task[Any]]]],
        cert_paths: Mapping[str, tuple[Path, Path]],
        *,
        max_stanza_size: int,
        max_depth: int,
    ) -> None:
        self.config = config
        self.domains = domains
        #: the account domains (the others are hosted services)
        self.accounts_domains = domains
        self.router = router
        self.new_id = new_id
        self.spawn = spawn
        self.capture = capture
        self.cert_paths = cert_paths
        self._server_tls: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._client_tls: dict[tuple[str, bool], ssl.SSLContext] = {}
        for domain in config.insecure_domains:
            log.warning(
                "s2s.insecure_domains: %s is accepted without a valid certificate "
                "(for development only)",
                domain,
            )
        self.settings = S2SSettings(
            domains=domains,
            secret=secrets.token_hex(32),  # XEP-0185: never leaves this process
            tls_available=True,
            require_tls=config.require_encryption,
            dialback=config.dialback,
            bidi=config.bidi,
            require_valid_certs=config.require_valid_certs,
            insecure_domains=frozenset(config.insecure_domains),
            max_stanza_size=max_stanza_size,
            max_depth=max_depth,
        )
        self.routes: dict[tuple[str, str], _Route] = {}
        self.connections: set[StreamDriver] = set()
        self._per_ip: collections.Counter[str] = collections.Counter()
        bus.filter(events.ROUTE_REMOTE, self.route_remote, owner="s2s")

    # -- TLS ------------------------------------------------------------------------------

    def serve(self, domains: frozenset[str]) -> None:
        """The domains peers may address: the accounts' and the service domains hosted
        here (components, MUC...), which federate under their own names."""
        self.domains = domains
        self.settings = dataclasses.replace(self.settings, domains=domains)

    def reconfigure(self, config: S2SConfig) -> None:
        """A reloaded ``[s2s]``: new streams use it (listeners stay as they are)."""
        self.config = config
        self.settings = dataclasses.replace(
            self.settings,
            require_tls=config.require_encryption,
            dialback=config.dialback,
            bidi=config.bidi,
            require_valid_certs=config.require_valid_certs,
            insecure_domains=frozenset(config.insecure_domains),
        )
        self.certificates_changed()

    def certificates_changed(self) -> None:
        """Certificates (or trust) were reloaded: contexts are made again as needed; those
        a listener holds take the new certificate in place."""
        self._client_tls.clear()
        for (name, _), ctx in self._server_tls.items():
            ctx.load_cert_chain(*self._cert_of(name))
            if self.config.require_valid_certs:
                self._load_trust(ctx)

    def server_tls(self, domain: str | None, peer: str | None = None) -> ssl.SSLContext:
        """Our side of an inbound stream's TLS: our certificate for ``domain``; with
        ``require_valid_certs``, the peer's certificate is asked for and verified (one that
        does not verify ends the handshake), so SASL EXTERNAL can use it; not from a
        ``peer`` (as its header claimed) in ``insecure_domains``."""
        name = domain if domain is not None else min(self.cert_paths)
        verify = self.config.require_valid_certs and peer not in self.settings.insecure_domains
        ctx = self._server_tls.get((name, verify))
        if ctx is None:
            ctx = load_tls_context_server(*self._cert_of(name))
            ctx.set_alpn_protocols(["xmpp-server"])  # XEP-0368 §3 (Direct TLS)
            if verify:
                ctx.verify_mode = ssl.CERT_OPTIONAL
                self._load_trust(ctx)
            self._server_tls[(name, verify)] = ctx
        return ctx

    def client_tls(self, domain: str, remote: str) -> ssl.SSLContext:
        """Our side of an outbound stream's TLS: we verify the peer's chain (with
        ``require_valid_certs``; its name is checked after the handshake, since OpenSSL
        knows DNS-IDs only, not SRV-IDs or XmppAddrs) and present our certificate for
        ``domain``; a ``remote`` in ``insecure_domains`` is not verified."""
        verify = self.must_verify(remote)
        ctx = self._client_tls.get((domain, verify))
        if ctx is None:
            ctx = make_client_context(verify=False)
            if verify:
                ctx.verify_mode = ssl.CERT_REQUIRED
                self._load_trust(ctx)
            ctx.load_cert_chain(*self._cert_of(domain))
            ctx.set_alpn_protocols(["xmpp-server"])  # XEP-0368 §3 (Direct TLS)
            self._client_tls[(domain, verify)] = ctx
        return ctx

    def _cert_of(self, domain: str) -> tuple[Path, Path]:
        """The certificate a domain presents: its own; a hosted service's (a component,
        MUC) that of the account domain it sits under (the generated ones also name
        ``*.domain``); else the first."""
        paths = self.cert_paths.get(domain)
        if paths is not None:
            return paths
        for parent, candidate in sorted(self.cert_paths.items()):
            if domain.endswith(f".{parent}"):
                return candidate
        return self.cert_paths[min(self.cert_paths)]

    def must_verify(self, remote: str) -> bool:
        """Whether ``remote``'s certificate must verify and name it."""
        return self.config.require_valid_certs and remote not in self.settings.insecure_domains

    def _load_trust(self, ctx: ssl.SSLContext) -> None:
        if self.config.ca_file is not None:
            ctx.load_verify_locations(cafile=self.config.ca_file)
        else:
            ctx.load_default_certs()

    # -- outgoing ---------------------------------------------------------------------------

    def route_remote(self, stanza: Element, sender: JID | None, to: JID) -> bool:
        """``route/remote``: send ``stanza`` to the server of ``to.domain``."""
        local = (
            sender.domain if sender is not None else (JID.parse(stanza.get("from") or "").domain)
        )
        if local not in self.domains:
            local = next(iter(sorted(self.accounts_domains)))
        key = (local, to.domain)
        route = self.routes.get(key)
        if route is None:
            route = self.routes[key] = _Route(self, local, to.domain)
            shared = self._multiplexable(to.domain)
            if shared is not None:
                self.spawn(route.multiplex(shared))
            else:
                self.spawn(route.connect())
        route.send(stanza)
        return True

    def _multiplexable(self, remote: str) -> S2SOutboundConnection | None:
        """An established stream of ours to ``remote`` that can take another sender
        domain (XEP-0220 §8.1)."""
        for (_, peer), route in self.routes.items():
            conn = route.conn
            if (
                peer == remote
                and route.ready
                and isinstance(conn, S2SOutboundConnection)
                and conn.stream.can_multiplex
                and not conn._closing
            ):
                return conn
        return None

    def reverse_route(self, conn: S2SInboundConnection, ev: ReverseReady) -> None:
        """XEP-0288: the peer's stream may carry our stanzas for ``ev``'s pair; it becomes
        the route unless one of our own streams already serves the pair."""
        key = (ev.local, ev.remote)
        route = self.routes.get(key)
        if route is not None and route.ready:
            return
        if route is None:
            route = self.routes[key] = _Route(self, ev.local, ev.remote)
        if isinstance(route.conn, S2SOutboundConnection):
            # ours is still coming up: the peer's stream carries the queue instead
            ours = route.conn
            ours.routes.pop(ev.local, None)
            if not ours.routes:
                ours.close(None)
        route.bidi = True
        conn.routes[key] = route
        route.conn = conn
        route.established(ev.method)

    async def addresses(self, domain: str) -> list[tuple[str, int, bool]]:
        """Where a domain's server listens, and whether with Direct TLS: ``s2s.routes``,
        else its ``_xmpps-server._tcp`` (XEP-0368) then ``_xmpp-server._tcp`` SRV records
        (RFC 6120 §3.2, each in RFC 2782 order), else the domain on 5269."""
        static = self.config.routes.get(domain)
        if static is not None:
            host, port = _host_port(static)
            return [(host, port, False)]
        servers = [_host_port(s) for s in self.config.dns_servers]
        timeout = self.config.connect_timeout
        direct = await srv_targets(
            "xmpps-server", domain, None, nameservers=servers, timeout=timeout
        )
        plain = await srv_targets(
            "xmpp-server", domain, DEFAULT_PORT, nameservers=servers, timeout=timeout
        )
        return [(h, p, True) for h, p in direct] + [(h, p, False) for h, p in plain]

    async def open(self, stream: S2SOutbound) -> S2SOutboundConnection:
        """Connect an outgoing stream to the first address that answers (``OSError``,
        ``TimeoutError`` when none does)."""
        loop = asyncio.get_running_loop()
        targets = await self.addresses(stream.remote)
        if not targets:
            raise OSError(f"{stream.remote} offers no XMPP server-to-server service")
        error: Exception | None = None
        for host, port, direct in targets:
            stream.encrypted = direct
            tls = self.client_tls(stream.local, stream.remote) if direct else None
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: S2SOutboundConnection(self, stream),
                        host,
                        port,
                        ssl=tls,
                        server_hostname=stream.remote if direct else None,
                    ),
                    self.config.connect_timeout,
                )
                return conn
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                error = exc
        assert error is not None
        raise error

    # -- dialback: asking the authoritative server ------------------------------------------

    async def verify(self, inbound: S2SInboundConnection, ev: DialbackKeyReceived) -> None:
        """XEP-0220 §2.1.2: ask ``ev.sender``'s authoritative server whether the key is its;
        when it cannot be asked, a dialback error says why (XEP-0220 §2.4)."""
        stream = S2SOutbound(self.settings, ev.target, ev.sender, verify=(ev.stream_id, ev.key))
        try:
            conn = await self.open(stream)
            valid = await asyncio.wait_for(conn.answer, self.config.connect_timeout)
        except TimeoutError:
            log.info("dialback from %s for %s: no answer from its server", ev.sender, ev.target)
            inbound.dialback_error(ev.sender, ev.target, _C.REMOTE_SERVER_TIMEOUT)
            return
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("dialback from %s for %s: cannot ask (%s)", ev.sender, ev.target, exc)
            inbound.dialback_error(ev.sender, ev.target, _C.REMOTE_SERVER_NOT_FOUND)
            return
        log.info(
            "dialback from %s for %s: %s", ev.sender, ev.target, "valid" if valid else "invalid"
        )
        inbound.dialback_verified(ev.sender, ev.target, valid)

    async def sweep(self) -> None:
        """Close streams quiet for ``s2s.idle_timeout`` (RFC 6120 §4.4: a stream may be
        closed when it is no longer needed); the next stanza opens a new one."""
        idle = self.config.idle_timeout
        while True:
            await asyncio.sleep(max(0.1, min(idle / 4, 30.0)))
            now = time.monotonic()
            for conn in list(self.connections):
                if now - max(conn.last_rx, conn.last_tx) > idle:
                    conn.close(None)

    def accepted(self, conn: S2SInboundConnection) -> bool:
        """Count an incoming connection; False when its address has too many already."""
        self.connections.add(conn)
        self._per_ip[conn.peer_ip] += 1
        return self._per_ip[conn.peer_ip] <= self.config.max_connections_per_ip

    def gone(self, conn: StreamDriver) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            if isinstance(conn, S2SInboundConnection):
                self._per_ip[conn.peer_ip] -= 1
                if self._per_ip[conn.peer_ip] <= 0:
                    del self._per_ip[conn.peer_ip]

    def connection(self) -> S2SInboundConnection:
        """A protocol for one accepted connection (the listener's factory)."""
        return S2SInboundConnection(self)

    def direct_connection(self) -> S2SInboundConnection:
        """Likewise for the Direct TLS listener (XEP-0368)."""
        return S2SInboundConnection(self, direct_tls=True)

    def direct_tls_context(self) -> ssl.SSLContext:
        """The Direct TLS listener's context: the first domain's, switching by SNI."""
        default = self.server_tls(None)

        def pick(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name and name.lower() in self.cert_paths:
                sslobj.context = self.server_tls(name.lower())

        default.sni_callback = pick
        return default

    def close_all(self, error: StreamError) -> None:
        for conn in list(self.connections):
            conn.close(error)


class _Refused(ConnectionError):
    """The peer refused a domain pair, or its stream ended before accepting it."""

    def __init__(self, why: str, condition: StanzaErrorCondition) -> None:
        super().__init__(why)
        self.condition = condition


class _Route:
    """One domain pair to a peer: the stream that carries it, and what waits for it."""

    __slots__ = (
        "bidi",
        "conn",
        "direct",
        "federation",
        "local",
        "method",
        "queue",
        "ready",
        "remote",
        "waiter",
    )

    def __init__(self, federation: Federation, local: str, remote: str) -> None:
        self.federation = federation
        self.local = local
        self.remote = remote
        self.queue: list[Element] = []
        self.conn: S2SOutboundConnection | S2SInboundConnection | None = None
        self.ready = False
        #: how the peer accepted us: "external" (our certificate) or "dialback"
        self.method: str | None = None
        #: the stream is TLS from its first byte (XEP-0368)
        self.direct = False
        #: the stream is one the peer opened (XEP-0288)
        self.bidi = False
        #: set when the peer accepts the pair (or refuses it)
        self.waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def send(self, stanza: Element) -> None:
        if self.ready and self.conn is not None:
            stats.SENT_S2S[stanza.tag] += 1
            self.conn.write(stanza_bytes(stanza))
        elif len(self.queue) >= self.federation.config.max_queue:
            self._bounce(stanza, _C.RESOURCE_CONSTRAINT)
        else:
            self.queue.append(stanza)

    async def connect(self) -> None:
        stream = S2SOutbound(self.federation.settings, self.local, self.remote, external=True)
        try:
            conn = await self.federation.open(stream)
            if self.ready:  # a bidirectional stream from the peer got there first
                conn.close(None)
                return
            self.conn = conn
            conn.routes[self.local] = self
            self.direct = stream.encrypted
        except TimeoutError:
            self.fail(_C.REMOTE_SERVER_TIMEOUT, "no answer")
            return
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self.fail(_C.REMOTE_SERVER_NOT_FOUND, str(exc))
            return
        await self._accepted("no answer")

    async def _accepted(self, silence: str) -> None:
        """Wait for the peer to accept the pair (or refuse it); bounce what waits if not."""
        try:
            await asyncio.wait_for(
                asyncio.shield(self.waiter), self.federation.config.connect_timeout
            )
        except TimeoutError:
            self.fail(_C.REMOTE_SERVER_TIMEOUT, silence)
        except _Refused as exc:
            self.fail(exc.condition, str(exc))

    async def multiplex(self, conn: S2SOutboundConnection) -> None:
        """Add this pair to ``conn``, an established stream to the same peer (or to a new
        stream, if that one has gone since)."""
        if conn._closing or not conn.stream.can_multiplex:
            await self.connect()
            return
        self.conn = conn
        conn.routes[self.local] = self
        conn.add_local(self.local)
        await self._accepted("no answer to dialback")

    def established(self, method: str) -> None:
        how = f"{method}, bidirectional" if self.bidi else method
        log.info("s2s %s -> %s established (%s)", self.local, self.remote, how)
        self.ready = True
        self.method = method
        if not self.waiter.done():
            self.waiter.set_result(None)
        queue, self.queue = self.queue, []
        for stanza in queue:
            self.send(stanza)

    def refused(
        self, why: str, condition: StanzaErrorCondition = _C.REMOTE_SERVER_NOT_FOUND
    ) -> None:
        """The stream ended or the peer refused the pair: whoever waits is told."""
        if not self.waiter.done():
            self.waiter.set_exception(_Refused(why, condition))
            self.waiter.exception()  # retrieved: only the waiting task acts on it
        elif self.ready:
            self.fail(condition, why)

    def fail(self, condition: StanzaErrorCondition, why: str) -> None:
        """The pair could not be set up or its stream ended: bounce what waits, forget the
        route (the next stanza sets up a new one)."""
        if self.federation.routes.get((self.local, self.remote)) is self:
            del self.federation.routes[(self.local, self.remote)]
        if self.queue:
            log.info(
                "s2s %s -> %s failed (%s): bouncing %d",
                self.local,
                self.remote,
                why,
                len(self.queue),
            )
        queue, self.queue = self.queue, []
        for stanza in queue:
            self._bounce(stanza, condition)
        conn, self.conn = self.conn, None
        self.ready = False
        if isinstance(conn, S2SOutboundConnection):
            conn.routes.pop(self.local, None)
            if not conn.routes:
                conn.close(None)  # no pair left on it
        elif conn is not None:
            conn.routes.pop((self.local, self.remote), None)

    def _bounce(self, stanza: Element, condition: StanzaErrorCondition) -> None:
        try:
            sender = JID.parse(stanza.get("from") or "")
        except ValueError:
            return
        # RFC 6120 §8.3.1: never an error for an error (reply_error checks)
        self.federation.router.reply_error(stanza, StanzaError(condition), sender)


class _Inbox(StreamDriver):
    """Stanzas a peer sends, routed in order (RFC 6120 §10.1) and within a rate.

    If routing one sets off work (a subscription stored, say), the peer's later stanzas
    wait until it is done. A peer over ``s2s.max_stanza_rate`` (beyond ``stanza_burst``)
    is cut off with ``policy-violation``.
    """

    __slots__ = ("_backlog", "_budget", "_held", "_refilled", "federation")

    federation: Federation

    def __init__(self, federation: Federation) -> None:
        super().__init__()
        self.federation = federation
        self._held = 0
        self._backlog: collections.deque[Element] = collections.deque()
        self._budget = float(federation.config.stanza_burst)
        self._refilled = time.monotonic()

    def _received(self, stanza: Element) -> None:
        if not self._within_rate():
            self.close(StreamError(StreamErrorCondition.POLICY_VIOLATION, "too many stanzas"))
            return
        if self._held:
            self._backlog.append(stanza)
            if len(self._backlog) >= MAX_BACKLOG and self.transport is not None:
                self.transport.pause_reading()  # a peer this far ahead waits
        else:
            self._route(stanza)

    def _within_rate(self) -> bool:
        """A token bucket: ``max_stanza_rate`` a second, ``stanza_burst`` at most saved."""
        config = self.federation.config
        now = time.monotonic()
        self._budget = min(
            float(config.stanza_burst),
            self._budget + (now - self._refilled) * config.max_stanza_rate,
        )
        self._refilled = now
        self._budget -= 1
        return self._budget >= 0

    def _route(self, stanza: Element) -> None:
        timed = stats.ROUTING.active
        started = perf_counter() if timed else 0.0
        stats.RECEIVED_S2S[stanza.tag] += 1
        with self.federation.capture() as spawned:
            # the stream checked both addresses against what it authenticated
            self.federation.router.route(
                stanza, JID.parse(stanza.attrs["from"]), JID.parse(stanza.attrs["to"])
            )
        if timed:
            stats.ROUTING.observe(perf_counter() - started)
        if spawned:
            self._held = len(spawned)
            for task in spawned:
                task.add_done_callback(self._release)

    def _release(self, _: asyncio.Task[Any]) -> None:
        self._held -= 1
        while not self._held and self._backlog and not self._closing:
            self._route(self._backlog.popleft())
        if not self._held and self.transport is not None and not self._closing:
            self.transport.resume_reading()


class S2SOutboundConnection(_Inbox):
    """An outgoing s2s TCP connection: the pairs it carries, keyed by our domain."""

    __slots__ = ("answer", "routes", "stream")

    def __init__(self, federation: Federation, stream: S2SOutbound) -> None:
        super().__init__(federation)
        self.stream: S2SOutbound = stream
        self.routes: dict[str, _Route] = {}
        #: the authoritative server's answer (verify-only streams)
        self.answer: asyncio.Future[bool] = self._loop.create_future()

    def __repr__(self) -> str:
        return f"<S2S out {self.stream.local} -> {self.stream.remote}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.federation.connections.add(self)
        if transport.get_extra_info("ssl_object") is not None and not self._peer_named(transport):
            self._ended("the certificate does not name the peer")
            transport.close()
            return
        self._flush()  # the stream header

    def _peer_named(self, transport: asyncio.BaseTransport) -> bool:
        """RFC 6125 §6, XEP-0178 §2: with ``require_valid_certs`` the peer's certificate
        (its chain verified by the handshake) must name the domain we asked for, as a
        DNS-ID, an SRV-ID or an XmppAddr."""
        if not self.federation.must_verify(self.stream.remote):
            return True
        ids = _peer_identities(transport)
        if certificate_matches(self.stream.remote, ids):
            return True
        named = ", ".join(ids.names()) or "nothing"
        log.info("%r: the certificate names %s, not %s", self, named, self.stream.remote)
        return False

    def add_local(self, local: str) -> None:
        """Ask the peer to take ``local``'s stanzas on this stream too (XEP-0220 §8.1)."""
        self._handle(self.stream.add_local(local))

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self._handle(self.stream.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.federation.gone(self)
        if not self.stream.closed:
            self._handle(self.stream.close(None))
        self._ended("connection lost")
        self.transport = None

    def _handle(self, evs: list[S2SEvent]) -> None:
        for ev in evs:
            if isinstance(ev, StanzaReceived):
                self._received(ev.element)  # XEP-0288: the peer's, on our stream
            elif isinstance(ev, TLSRequested):
                self._flush()
                self.federation.spawn(self._start_tls())
            elif isinstance(ev, Established):
                route = self.routes.get(ev.local)
                if route is not None and route.conn is self:
                    route.established(ev.method)
            elif isinstance(ev, DialbackFailed):
                route = self.routes.get(ev.local)
                log.info("%r: %s refused for %s: %s", self, ev.remote, ev.local, ev.reason)
                if route is not None and route.conn is self:
                    # XEP-0220 §2.4: after a dialback error, stanzas bounce with a timeout
                    condition = _C.REMOTE_SERVER_NOT_FOUND if ev.fatal else _C.REMOTE_SERVER_TIMEOUT
                    route.refused(f"dialback {ev.reason}", condition)
            elif isinstance(ev, VerifyAnswered):
                if not self.answer.done():
                    self.answer.set_result(ev.valid)
            elif isinstance(ev, StreamEnded):
                self._flush()
                self._closing = True
                if ev.error is not None:
                    log.info("%r: stream error %s", self, ev.error)
                self._ended("stream ended")
                if self.transport is not None:
                    self.transport.close()
        self._flush()

    def _ended(self, why: str) -> None:
        if not self.answer.done():
            self.answer.set_exception(ConnectionError(why))
            self.answer.exception()  # retrieved: whoever waits sees it, nobody else is told
        routes, self.routes = list(self.routes.values()), {}
        for route in routes:
            if route.conn is self:
                route.refused(why)

    async def _start_tls(self) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            new = await asyncio.wait_for(
                self._loop.start_tls(
                    transport,
                    self,
                    self.federation.client_tls(self.stream.local, self.stream.remote),
                    server_hostname=self.stream.remote,
                ),
                self.federation.config.connect_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("%r: TLS failed: %s", self, exc)
            self._ended(f"TLS failed: {exc}")
            transport.close()
            return
        if new is None:
            transport.close()
            return
        self.transport = new
        if not self._peer_named(new):
            self._ended("the certificate does not name the peer")
            new.close()
            return
        self._handle(self.stream.tls_started())


class S2SInboundConnection(_Inbox):
    """An s2s TCP connection another server opened to us."""

    __slots__ = ("_auth_timer", "direct_tls", "routes", "stream")

    def __init__(self, federation: Federation, *, direct_tls: bool = False) -> None:
        super().__init__(federation)
        self.stream: S2SInbound = S2SInbound(federation.settings, federation.new_id)
        self.direct_tls = direct_tls
        #: our pairs to the peer this stream carries back (XEP-0288)
        self.routes: dict[tuple[str, str], _Route] = {}
        self._auth_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<S2S in {self.peer_ip}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        if self.direct_tls:
            self.stream.direct_tls(_peer_identities(transport))
        if not self.federation.accepted(self):
            self.close(StreamError(StreamErrorCondition.POLICY_VIOLATION, "too many connections"))
            return
        self._auth_timer = self._loop.call_later(
            self.federation.config.auth_timeout, self._auth_expired
        )

    def _auth_expired(self) -> None:
        """A peer that has not authenticated a domain by now (a verify-only stream would
        have asked and gone) is cut off."""
        if not self.stream.authorized:
            self.close(
                StreamError(StreamErrorCondition.CONNECTION_TIMEOUT, "authentication took too long")
            )

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self._tls_pending is not None:
            self._tls_pending.append(data)
            return
        self._handle(self.stream.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.federation.gone(self)
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if not self.stream.closed:
            self.stream.close(None)
        self.transport = None
        routes, self.routes = list(self.routes.values()), {}
        for route in routes:
            if route.conn is self:
                route.refused("connection lost")

    def dialback_verified(self, sender: str, target: str, valid: bool) -> None:
        self._handle(self.stream.dialback_verified(sender, target, valid))

    def dialback_error(self, sender: str, target: str, condition: StanzaErrorCondition) -> None:
        self._handle(self.stream.dialback_error(sender, target, condition))

    def _handle(self, evs: list[S2SEvent]) -> None:
        for ev in evs:
            if isinstance(ev, StanzaReceived):
                self._received(ev.element)
            elif isinstance(ev, ReverseReady):
                self.federation.reverse_route(self, ev)
            elif isinstance(ev, DialbackKeyReceived):
                if not self.federation.config.dialback:
                    self.dialback_verified(ev.sender, ev.target, False)
                else:
                    self.federation.spawn(self.federation.verify(self, ev))
            elif isinstance(ev, TLSRequested):
                self._hold_for_tls()
                self.federation.spawn(self._start_tls())
            elif isinstance(ev, StreamEnded):
                self._flush()
                self._closing = True
                if ev.error is not None:
                    log.info("%r: stream error %s", self, ev.error)
                if self.transport is not None:
                    self.transport.close()
        self._flush()

    async def _start_tls(self) -> None:
        ctx = self.federation.server_tls(self.stream.local, self.stream.peer_claims)
        new = await self._upgrade(ctx, self.federation.config.connect_timeout)
        if new is not None:
            self._handle(self.stream.tls_started(_peer_identities(new)))
            self._replay_held()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _peer_identities(transport: asyncio.BaseTransport) -> CertIdentities:
    """The identities in the certificate the peer presented, if it verified (RFC 6125
    §6); nothing when it presented none (then only dialback can authenticate it)."""
    ssl_obj = transport.get_extra_info("ssl_object")
    if ssl_obj is None or not ssl_obj.getpeercert():  # empty unless it verified
        return CertIdentities()
    der = ssl_obj.getpeercert(binary_form=True)
    return der_identities(der) if der else CertIdentities()
