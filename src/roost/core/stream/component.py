"""The server side of an external component's stream (XEP-0114, ``jabber:component:accept``).

Sans-IO like the client streams: bytes in, events out, bytes buffered for ``data_to_send``.
The component names itself in the header's ``to``; the server answers with a header that
carries a fresh stream id, the component proves it knows the shared secret with
``<handshake>hex(SHA-1(id + secret))</handshake>``, and the server answers ``<handshake/>``.
From then on every stanza must carry a ``from`` at the component's domain and a ``to``.
There is no TLS, SASL or stream features: XEP-0114 predates them, so components are for
trusted hosts (the listener binds to loopback by default).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from roost.core import ns
from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.jid import JID, InvalidJID
from roost.core.stream.events import StanzaReceived, StreamEnded
from roost.core.xml.element import Element
from roost.core.xml.parser import ElementParsed, StreamClosed, StreamOpened, XMLStreamParser
from roost.core.xml.writer import escape_attr, serialize

__all__ = [
    "COMPONENT",
    "TRANSITIONS",
    "ComponentAuthenticated",
    "ComponentEvent",
    "ComponentState",
    "ComponentStream",
    "ComponentStreamSettings",
    "handshake_digest",
]

COMPONENT: Final = ns.COMPONENT
_SC = StreamErrorCondition
_STREAM_CLOSE: Final = b"</stream:stream>"
_STANZAS: Final = frozenset(("message", "presence", "iq"))


class ComponentState(Enum):
    EXPECT_HEADER = "expect-header"
    HANDSHAKE = "handshake"
    READY = "ready"
    CLOSED = "closed"


_S = ComponentState
#: every allowed transition (house style: state machines are data)
TRANSITIONS: Final = frozenset(
    {
        (_S.EXPECT_HEADER, _S.HANDSHAKE),
        (_S.HANDSHAKE, _S.READY),
        (_S.EXPECT_HEADER, _S.CLOSED),
        (_S.HANDSHAKE, _S.CLOSED),
        (_S.READY, _S.CLOSED),
    }
)


@dataclass(frozen=True, slots=True)
class ComponentAuthenticated:
    """The component proved the secret of ``domain``: it may send and receive stanzas."""

    domain: str


ComponentEvent = ComponentAuthenticated | StanzaReceived | StreamEnded


@dataclass(frozen=True, slots=True)
class ComponentStreamSettings:
    """What a component stream needs from the server."""

    #: component domain -> shared secret
    secrets: Mapping[str, str]
    #: whether a component of that domain may connect now (False: one is connected)
    available: Callable[[str], bool] = lambda domain: True
    max_stanza_size: int = 262144
    max_depth: int = 64


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


class ComponentStream:
    """One external component's stream, from its header to its closing tag."""

    __slots__ = (
        "_events",
        "_new_id",
        "_out",
        "_parser",
        "_sent_header",
        "domain",
        "settings",
        "state",
        "stream_id",
    )

    def __init__(self, settings: ComponentStreamSettings, new_id: Callable[[], str]) -> None:
        self.settings = settings
        self._new_id = new_id
        self.state = ComponentState.EXPECT_HEADER
        self.domain: str | None = None
        self.stream_id: str | None = None
        self._out: list[bytes] = []
        self._events: list[ComponentEvent] = []
        self._sent_header = False
        self._parser = XMLStreamParser(
            max_stanza_size=settings.max_stanza_size, max_depth=settings.max_depth
        )

    @property
    def closed(self) -> bool:
        return self.state is ComponentState.CLOSED

    def _go(self, new: ComponentState) -> None:
        if (self.state, new) not in TRANSITIONS:
            raise AssertionError(f"illegal transition {self.state.name} -> {new.name}")
        self.state = new

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes to write, in order; empties the buffer."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_raw(self, data: bytes) -> None:
        """Queue serialised stanza bytes for the component."""
        self._out.append(data)

    def _header(self, from_: str | None) -> None:
        self.stream_id = self._new_id()
        attrs = f" from='{escape_attr(from_)}'" if from_ else ""
        # XEP-0114 §3: no version and no features; the namespace is the component's.
        self._out.append(
            f"<?xml version='1.0'?><stream:stream xmlns:stream='{ns.STREAM}' "
            f"xmlns='{COMPONENT}'{attrs} id='{self.stream_id}'>".encode()
        )
        self._sent_header = True

    # -- input ----------------------------------------------------------------------------

    def hibernate(self) -> bool:
        return self._parser.hibernate()

    def receive_data(self, data: bytes) -> list[ComponentEvent]:
        if self.state is ComponentState.CLOSED:
            return []
        try:
            for ev in self._parser.feed(data):
                if isinstance(ev, ElementParsed):
                    self._element(ev.element)
                elif isinstance(ev, StreamOpened):
                    self._opened(ev)
                else:
                    assert isinstance(ev, StreamClosed)
                    self._close(None)
                if self.closed:
                    break
        except StreamError as err:
            self._close(err)
        events, self._events = self._events, []
        return events

    def close(self, error: StreamError | None) -> list[ComponentEvent]:
        self._close(error)
        events, self._events = self._events, []
        return events

    def _close(self, error: StreamError | None) -> None:
        if self.state is ComponentState.CLOSED:
            return
        if not self._sent_header:
            self._header(self.domain)  # RFC 6120 §4.9.1.1: a header before the error
        if error is not None:
            self._out.append(serialize(error.to_element(), COMPONENT).encode())
        self._out.append(_STREAM_CLOSE)
        self._go(ComponentState.CLOSED)
        self._parser.discard()
        self._events.append(StreamEnded(error))

    def _opened(self, ev: StreamOpened) -> None:
        if self.state is not ComponentState.EXPECT_HEADER:
            raise StreamError(_SC.NOT_WELL_FORMED, "unexpected stream header")
        to = (ev.attrs.get("to") or "").lower().rstrip(".")
        self.domain = to if to in self.settings.secrets else None
        self._header(self.domain)
        if ev.ns != ns.STREAM or ev.tag != "stream":
            raise StreamError(_SC.INVALID_NAMESPACE, "the stream namespace is wrong")
        if ev.namespaces.get("", "") != COMPONENT:
            raise StreamError(_SC.INVALID_NAMESPACE, f"the content namespace must be {COMPONENT}")
        if self.domain is None:
            raise StreamError(_SC.HOST_UNKNOWN, "no component of that name is configured")
        if not self.settings.available(self.domain):
            raise StreamError(_SC.CONFLICT, "a component of that name is connected")
        self._go(ComponentState.HANDSHAKE)

    def _element(self, el: Element) -> None:
        if self.state is ComponentState.HANDSHAKE:
            if el.tag != "handshake" or el.ns != COMPONENT:
                raise StreamError(_SC.NOT_AUTHORIZED, "send the handshake first")
            assert self.domain is not None and self.stream_id is not None
            expected = handshake_digest(self.stream_id, self.settings.secrets[self.domain])
            if not hmac.compare_digest(expected, el.text.strip().lower()):
                raise StreamError(_SC.NOT_AUTHORIZED, "wrong handshake")
            self._go(ComponentState.READY)
            self._out.append(b"<handshake/>")
            self._events.append(ComponentAuthenticated(self.domain))
            return
        if el.tag not in _STANZAS or el.ns != COMPONENT:
            raise StreamError(_SC.UNSUPPORTED_STANZA_TYPE, f"<{el.tag}/> is not a stanza")
        # XEP-0114 §3: 'from' and 'to' are required, 'from' at the component's domain.
        try:
            sender = JID.parse(el.attrs.get("from") or "")
        except InvalidJID:
            raise StreamError(_SC.INVALID_FROM, "a stanza needs a valid 'from'") from None
        if sender.domain != self.domain:
            raise StreamError(_SC.INVALID_FROM, f"'from' must be at {self.domain}")
        if not el.attrs.get("to"):
            raise StreamError(_SC.IMPROPER_ADDRESSING, "a stanza needs a 'to'")
        self._events.append(StanzaReceived(el))
