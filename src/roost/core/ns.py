"""XML namespace constants used across Roost (RFC 6120, RFC 6121 and XEPs)."""

from typing import Final

__all__ = [
    "BIND",
    "CLIENT",
    "COMPONENT",
    "DELAY",
    "DISCO_INFO",
    "DISCO_ITEMS",
    "PING",
    "ROSTER",
    "SASL",
    "SERVER",
    "SESSION",
    "STANZAS",
    "STARTTLS",
    "STREAM",
    "STREAMS",
    "XML",
]

XML: Final = "http://www.w3.org/XML/1998/namespace"
STREAM: Final = "http://etherx.jabber.org/streams"
CLIENT: Final = "jabber:client"
SERVER: Final = "jabber:server"
#: XEP-0114 external components, connecting to the server
COMPONENT: Final = "jabber:component:accept"
STREAMS: Final = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
STARTTLS: Final = "urn:ietf:params:xml:ns:xmpp-tls"
SASL: Final = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND: Final = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION: Final = "urn:ietf:params:xml:ns:xmpp-session"
ROSTER: Final = "jabber:iq:roster"
PING: Final = "urn:xmpp:ping"
DELAY: Final = "urn:xmpp:delay"
DISCO_INFO: Final = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS: Final = "http://jabber.org/protocol/disco#items"
