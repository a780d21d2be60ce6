"""The server's events, built here and nowhere else, each typed by its handlers' signature.

*Filters* (``Filter``) carry a stanza that one handler may take by returning true; a raised
exception refuses it (see ``roost.server.bus``). *Observers* (``Observer``) only watch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Final

from roost.server.bus import Filter, Observer

if TYPE_CHECKING:
    from roost.core.errors import StreamError
    from roost.core.jid import JID
    from roost.core.xml.element import Element
    from roost.server.session import Session

__all__ = [
    "IQ_RESPONSE",
    "MESSAGE_DELIVER",
    "MESSAGE_OFFLINE",
    "MESSAGE_OUTBOUND",
    "PRESENCE_BROADCAST",
    "PRESENCE_INITIAL",
    "PRESENCE_OUTBOUND",
    "RESOURCE_DELIVERABLE",
    "ROUTE_REMOTE",
    "SERVER_STOPPING",
    "SESSION_ABANDONED",
    "SESSION_BOUND",
    "SESSION_CLOSED",
    "SESSION_DETACHED",
    "SESSION_OPENING",
    "SESSION_RESUMED",
    "to_bare",
    "to_full",
    "to_host",
]

#: (stanza, sender, session): presence with no 'to' (RFC 6121 §4.2, §4.4)
PRESENCE_BROADCAST: Final[Filter[[Element, JID, Session | None]]] = Filter("presence/broadcast")
#: (stanza, sender, to): an iq result or error addressed to the server or an account
IQ_RESPONSE: Final[Filter[[Element, JID, JID]]] = Filter("iq/response")
#: (stanza, sender or None for the server's own errors, to): for a domain not served here
ROUTE_REMOTE: Final[Filter[[Element, JID | None, JID]]] = Filter("route/remote")
#: (stanza, sender, to, session): presence with a 'to' from a local client, before routing
PRESENCE_OUTBOUND: Final[Filter[[Element, JID, JID, Session]]] = Filter("presence/outbound")
#: (stanza, sender, to): a chat/normal message for a user with no available resource
MESSAGE_OFFLINE: Final[Filter[[Element, JID, JID]]] = Filter("message/offline")
#: (stanza, session, to): a message a local session sent (``from`` stamped; ``to`` its
#: own bare JID when it had none), before it is routed: carbons' "sent" copies, the
#: sender's archive
MESSAGE_OUTBOUND: Final[Filter[[Element, Session, JID]]] = Filter("message/outbound")
#: (stanza, sender, to, sessions): a message about to be written to ``sessions`` of the
#: local account ``to`` (as addressed: bare or full): the archive's stanza-id, carbons'
#: "received" copies. Every message delivered to a local session passes here once.
MESSAGE_DELIVER: Final[Filter[[Element, JID, JID, Sequence[Session]]]] = Filter("message/deliver")

#: (session): a session sent its initial presence (RFC 6121 §4.2); offline messages follow
PRESENCE_INITIAL: Final[Observer[[Session]]] = Observer("presence/initial")
#: (session): a resource became available with a non-negative priority (XEP-0160 §2)
RESOURCE_DELIVERABLE: Final[Observer[[Session]]] = Observer("presence/deliverable")
#: (session, waits): a session is about to be bound; observers that must load something
#: first (the roster, privacy lists) append an awaitable to ``waits``
SESSION_OPENING: Final[Observer[[Session, list[Awaitable[object]]]]] = Observer("session/opening")
#: (session): an opening session was given up before it was bound (its stream closed)
SESSION_ABANDONED: Final[Observer[[Session]]] = Observer("session/abandoned")
#: (session): a client bound a resource
SESSION_BOUND: Final[Observer[[Session]]] = Observer("session/bound")
#: (session, error): a bound session ended (stream closed, or replaced)
SESSION_CLOSED: Final[Observer[[Session, StreamError | None]]] = Observer("session/closed")
#: (session): a session lost its connection and waits to be resumed (XEP-0198 §5);
#: what is delivered meanwhile waits for it
SESSION_DETACHED: Final[Observer[[Session]]] = Observer("session/detached")
#: (session): a detached session was resumed on a new connection (XEP-0198 §5)
SESSION_RESUMED: Final[Observer[[Session]]] = Observer("session/resumed")
#: (): the server is stopping; streams are still open (XEP-0045 §11.2: rooms say goodbye)
SERVER_STOPPING: Final[Observer[[]]] = Observer("server/stopping")


@cache
def to_host(tag: str) -> Filter[[Element, JID, Session | None]]:
    """(stanza, sender, session): a message or presence to the server's own JID."""
    return Filter(f"{tag}/host")


@cache
def to_bare(tag: str) -> Filter[[Element, JID, JID]]:
    """(stanza, sender, to): a message or presence to an account's bare JID."""
    return Filter(f"{tag}/bare")


@cache
def to_full(tag: str) -> Filter[[Element, JID, JID, Session | None]]:
    """(stanza, sender, to, session or None): a stanza to a full JID."""
    return Filter(f"{tag}/full")
