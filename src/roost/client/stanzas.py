"""Typed, read-only views of incoming stanzas (RFC 6120 §8, RFC 6121 §4-§5) and the
client's other events.

A view reads the header and the common children once; ``element`` keeps the whole stanza
for anything else (extensions). Addresses a server should never send malformed are
``None`` when they are (a view never raises).
"""

from __future__ import annotations

from dataclasses import dataclass

from roost.client.errors import ClientError
from roost.core import ns
from roost.core.caps import Caps
from roost.core.errors import StanzaError, parse_stanza_error
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element

__all__ = [
    "Connected",
    "ConnectionLost",
    "Iq",
    "Message",
    "Presence",
    "parse_jid",
]


def parse_jid(text: str | None) -> JID | None:
    """A JID from an attribute; ``None`` when absent or invalid."""
    if text is None:
        return None
    try:
        return JID.parse(text)
    except InvalidJID:
        return None


def _child_text(el: Element, tag: str) -> str | None:
    child = el.find(tag, ns.CLIENT)
    return None if child is None else child.text


def _error(el: Element) -> StanzaError | None:
    if el.get("type") != "error":
        return None
    err = el.find("error", ns.CLIENT)
    return parse_stanza_error(err) if err is not None else None


@dataclass(frozen=True, slots=True)
class Message:
    """RFC 6121 §5: ``type`` is "normal" when absent (§5.2.2)."""

    from_: JID | None
    to: JID | None
    type: str
    id: str | None
    body: str | None
    subject: str | None
    thread: str | None
    error: StanzaError | None
    element: Element

    @classmethod
    def from_element(cls, el: Element) -> Message:
        return cls(
            parse_jid(el.get("from")),
            parse_jid(el.get("to")),
            el.get("type") or "normal",
            el.get("id"),
            _child_text(el, "body"),
            _child_text(el, "subject"),
            _child_text(el, "thread"),
            _error(el),
            el,
        )


@dataclass(frozen=True, slots=True)
class Presence:
    """RFC 6121 §4.7: ``type`` None is available; ``priority`` defaults to 0 (§4.7.2.3).

    ``caps`` is the XEP-0115 annotation as sent: not verified (see ``Client.caps``).
    """

    from_: JID | None
    to: JID | None
    type: str | None
    id: str | None
    show: str | None
    status: str | None
    priority: int
    caps: Caps | None
    error: StanzaError | None
    element: Element

    @property
    def available(self) -> bool:
        return self.type is None

    @classmethod
    def from_element(cls, el: Element) -> Presence:
        prio_text = _child_text(el, "priority")
        try:
            priority = int(prio_text) if prio_text is not None else 0
        except ValueError:
            priority = 0
        return cls(
            parse_jid(el.get("from")),
            parse_jid(el.get("to")),
            el.get("type"),
            el.get("id"),
            _child_text(el, "show"),
            _child_text(el, "status"),
            priority,
            Caps.find_in(el),
            _error(el),
            el,
        )


@dataclass(frozen=True, slots=True)
class Iq:
    """An iq request (get or set) for a handler; ``payload`` is its one child (§8.2.3)."""

    from_: JID | None
    to: JID | None
    type: str
    id: str
    payload: Element
    element: Element


@dataclass(frozen=True, slots=True)
class Connected:
    """A session is bound (first login, or after a reconnection)."""

    jid: JID
    reconnected: bool


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection ended without ``disconnect``; reconnection follows if enabled."""

    error: ClientError | None
