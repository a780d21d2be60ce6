"""External components (XEP-0114): the configured component domains and their streams.

Each domain in ``components.secrets`` is a local service domain from the start: the router
hands every stanza for it to ``Components``, which delivers it to the component's session
while one is connected and answers ``service-unavailable`` otherwise (as Prosody does). A
component's stanzas are routed like any other once the stream checked their addresses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from roost.core.errors import StanzaError, StanzaErrorCondition, StreamError
from roost.core.jid import JID, InvalidJID
from roost.core.stream.component import (
    ComponentAuthenticated,
    ComponentEvent,
    ComponentStream,
    ComponentStreamSettings,
)
from roost.core.stream.events import StanzaReceived, StreamEnded
from roost.core.xml.element import Element
from roost.server.api import Registry
from roost.server.config import ComponentsConfig
from roost.server.delivery import deliver
from roost.server.router import Router
from roost.server.session import Session
from roost.server.streams.base import StreamDriver

__all__ = ["ComponentConnection", "Components"]

log = logging.getLogger(__name__)


class _Domain:
    """The hosted service behind one component domain."""

    __slots__ = ("components", "domain")

    def __init__(self, components: Components, domain: str) -> None:
        self.components = components
        self.domain = domain

    def receive(self, stanza: Element, sender: JID, to: JID) -> None:
        session = self.components.sessions.get(self.domain)
        if session is not None:
            deliver(session, stanza)
        elif stanza.tag != "presence":
            # the component is not connected: nobody is there to answer
            error = StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            self.components.router.reply_error(stanza, error, sender)


class Components:
    """The configured components: their domains, connected sessions and listener."""

    def __init__(
        self,
        config: ComponentsConfig,
        router: Router,
        registry: Registry,
        new_id: Callable[[], str],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        *,
        max_stanza_size: int,
        max_depth: int,
    ) -> None:
        self.config = config
        self.router = router
        self.new_id = new_id
        self.spawn = spawn
        #: connected components by domain
        self.sessions: dict[str, Session] = {}
        self.connections: set[ComponentConnection] = set()
        self.settings = ComponentStreamSettings(
            secrets=config.secrets,
            available=lambda domain: domain not in self.sessions,
            max_stanza_size=max_stanza_size,
            max_depth=max_depth,
        )
        for domain in config.secrets:
            registry.hosted[domain] = (_Domain(self, domain), None)

    def connection(self) -> ComponentConnection:
        """A protocol for one accepted connection (the listener's factory)."""
        return ComponentConnection(self)

    def close_all(self, error: StreamError) -> None:
        for conn in list(self.connections):
            conn.close(error)


class ComponentConnection(StreamDriver):
    """One component's TCP connection: its stream, and its session once authenticated."""

    __slots__ = ("components", "session", "stream")

    def __init__(self, components: Components) -> None:
        super().__init__()
        self.components = components
        self.stream: ComponentStream = ComponentStream(components.settings, components.new_id)
        self.session: Session | None = None

    def __repr__(self) -> str:
        return f"<Component {self.stream.domain or self.peer_ip}>"

    # -- what its session sees ------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return False

    def hold(self, task: asyncio.Task[object]) -> None:
        """Read nothing more from the component until ``task`` is done (RFC 6120 §10.1)."""
        if self.transport is not None:
            self.transport.pause_reading()

            def resume(_: asyncio.Task[object]) -> None:
                if self.transport is not None and not self._closing:
                    self.transport.resume_reading()

            task.add_done_callback(resume)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else "?"
        self.components.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self._handle(self.stream.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.components.connections.discard(self)
        if not self.stream.closed:
            self.stream.close(None)
        self._detach()
        self.transport = None

    # -- stream events --------------------------------------------------------------------

    def _handle(self, evs: list[ComponentEvent]) -> None:
        for ev in evs:
            if isinstance(ev, StanzaReceived):
                self._stanza(ev.element)
            elif isinstance(ev, ComponentAuthenticated):
                self.session = Session(JID.parse(ev.domain), self)
                self.components.sessions[ev.domain] = self.session
                log.info("component %s connected from %s", ev.domain, self.peer_ip)
            elif isinstance(ev, StreamEnded):
                self._flush()
                self._closing = True
                if ev.error is not None:
                    log.info("%r: stream error %s", self, ev.error)
                self._detach()
                if self.transport is not None:
                    self.transport.close()
        self._flush()

    def _stanza(self, stanza: Element) -> None:
        # The stream checked that 'from' is at the component's domain and 'to' is present.
        sender = JID.parse(stanza.attrs["from"])
        try:
            to = JID.parse(stanza.attrs["to"])
        except InvalidJID:
            self.components.router.reply_error(
                stanza, StanzaError(StanzaErrorCondition.JID_MALFORMED), sender
            )
            return
        self.components.router.route(stanza, sender, to)

    def _detach(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        session.detach()
        domain = session.jid.domain
        if self.components.sessions.get(domain) is session:
            del self.components.sessions[domain]
            log.info("component %s disconnected", domain)
