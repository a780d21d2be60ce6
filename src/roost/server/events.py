"""Event names, built here and nowhere else (house style: no loose strings in modules).

Each routing event is fired with the stanza and its addresses; the first handler that
returns something other than None has taken the stanza.
"""

from __future__ import annotations

from functools import cache

__all__ = [
    "IQ_RESPONSE",
    "MESSAGE_OFFLINE",
    "PRESENCE_BROADCAST",
    "PRESENCE_INITIAL",
    "PRESENCE_OUTBOUND",
    "PRIVACY_IN",
    "PRIVACY_OUT",
    "RESOURCE_DELIVERABLE",
    "ROUTE_REMOTE",
    "SESSION_BOUND",
    "SESSION_CLOSED",
    "to_bare",
    "to_full",
    "to_host",
]

#: (stanza, sender, conn): presence with no 'to' (RFC 6121 §4.2, §4.4)
PRESENCE_BROADCAST = "presence/broadcast"
#: (stanza, sender, to): an iq result or error addressed to the server or an account
IQ_RESPONSE = "iq/response"
#: (stanza, sender, to): a stanza for a domain this server does not serve
ROUTE_REMOTE = "route/remote"
#: (stanza, sender, to, conn): presence with a 'to' from a local client, before routing
PRESENCE_OUTBOUND = "presence/outbound"
#: (conn): a session sent its initial presence (RFC 6121 §4.2); offline messages follow
PRESENCE_INITIAL = "presence/initial"
#: (conn): a resource became available with a non-negative priority (XEP-0160 §2)
RESOURCE_DELIVERABLE = "presence/deliverable"
#: (stanza, sender, to): a chat/normal message for a user with no available resource
MESSAGE_OFFLINE = "message/offline"
#: (stanza, sender, to): a stanza from a local user, before routing; a handler returning
#: non-None has blocked it (and sent any error itself) — XEP-0191, XEP-0016
PRIVACY_OUT = "privacy/out"
#: (stanza, sender, to): a stanza for a local user, before delivery; same contract
PRIVACY_IN = "privacy/in"
#: (conn): a client bound a resource
SESSION_BOUND = "session/bound"
#: (conn, jid, error): a bound client's session ended (stream closed, or replaced)
SESSION_CLOSED = "session/closed"


@cache
def to_host(tag: str) -> str:
    """(stanza, sender, conn): a message or presence to the server's own JID."""
    return f"{tag}/host"


@cache
def to_bare(tag: str) -> str:
    """(stanza, sender, to): a message or presence to an account's bare JID."""
    return f"{tag}/bare"


@cache
def to_full(tag: str) -> str:
    """(stanza, sender, to, session or None): a stanza to a full JID."""
    return f"{tag}/full"
