"""``roost.client``: an asyncio XMPP client library on Roost's sans-IO core.

    async with Client("bot@example.org", "secret") as bot:
        async for msg in bot.messages():
            if msg.body and msg.from_:
                bot.send_message(msg.from_, msg.body)

See the README ("Client library") for the whole API.
"""

from roost.client.blocking import Blocklist
from roost.client.caps import EntityCaps
from roost.client.client import Client, IqHandler, SoftwareVersion
from roost.client.connection import Connection
from roost.client.dial import Target, find_targets, tls_context
from roost.client.disco import Disco, DiscoInfo, DiscoItem, Identity
from roost.client.errors import (
    AuthenticationFailed,
    CertificateNotTrusted,
    ClientError,
    ConnectFailed,
    Disconnected,
    HostNotFound,
    NegotiationFailed,
    RegistrationFailed,
    RequestTimeout,
)
from roost.client.events import Event, EventStream
from roost.client.roster import Roster, RosterChanged, RosterItem
from roost.client.stanzas import Connected, ConnectionLost, Iq, Message, Presence
from roost.core.errors import StanzaError, StanzaErrorCondition, StanzaErrorType
from roost.core.escaping import escape as escape_localpart
from roost.core.escaping import unescape as unescape_localpart
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element

__all__ = [
    "JID",
    "AuthenticationFailed",
    "Blocklist",
    "CertificateNotTrusted",
    "Client",
    "ClientError",
    "ConnectFailed",
    "Connected",
    "Connection",
    "ConnectionLost",
    "Disco",
    "DiscoInfo",
    "DiscoItem",
    "Disconnected",
    "Element",
    "EntityCaps",
    "Event",
    "EventStream",
    "HostNotFound",
    "Identity",
    "InvalidJID",
    "Iq",
    "IqHandler",
    "Message",
    "NegotiationFailed",
    "Presence",
    "RegistrationFailed",
    "RequestTimeout",
    "Roster",
    "RosterChanged",
    "RosterItem",
    "SoftwareVersion",
    "StanzaError",
    "StanzaErrorCondition",
    "StanzaErrorType",
    "Target",
    "escape_localpart",
    "find_targets",
    "tls_context",
    "unescape_localpart",
]
