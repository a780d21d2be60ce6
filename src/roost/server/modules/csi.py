"""XEP-0352 Client State Indication: an inactive client is not woken for what can wait.

A bound client says ``<inactive/>`` (its screen is off, say) and ``<active/>`` again
(XEP-0352 §3). While it is inactive its session holds back (§5 leaves the choice to the
server; this is what Prosody's ``mod_csi_simple`` and Conversations expect):

- presence updates (available and unavailable, not subscription requests): only the latest
  from each sender is kept, since it replaces the earlier ones anyway;
- messages that carry nothing but a chat state (XEP-0085): the latest from each sender;
- messages with nothing but chat markers (XEP-0333) or delivery receipts (XEP-0184), in
  order (each one is about a different message);
- the same inside a carbon copy (XEP-0280), judged by the forwarded message.

Everything else (a message with a body or any other payload, an iq, a subscription
request, an error) is urgent: what was held goes out first, in the order it came, then the
urgent stanza. Becoming active sends what was held. At most ``MAX_HELD`` stanzas are held;
the next one sends them all. The state belongs to the session, so it survives a XEP-0198
resumption.
"""

from __future__ import annotations

import itertools
from typing import Final

from roost.core import ns
from roost.core.forward import FORWARD
from roost.core.xml.element import Element
from roost.server.api import ModuleContext
from roost.server.session import Session

__all__ = ["CSI", "CsiModule", "Inactive"]

CSI: Final = "urn:xmpp:csi:0"
CHAT_STATES: Final = "http://jabber.org/protocol/chatstates"
MARKERS: Final = "urn:xmpp:chat-markers:0"
RECEIPTS: Final = "urn:xmpp:receipts"
CARBONS: Final = "urn:xmpp:carbons:2"
#: stanzas an inactive session holds at most before it sends them all
MAX_HELD: Final = 500
_STANZA_NS: Final = frozenset((ns.CLIENT, ns.SERVER, ns.COMPONENT))
#: message children that do not make it urgent
_QUIET: Final = frozenset((CHAT_STATES, MARKERS, RECEIPTS, "urn:xmpp:hints", "urn:xmpp:sid:0"))
_unique = itertools.count()


def _holdable(stanza: Element) -> tuple[object, ...] | None:
    """The key a stanza is held under (a later one with the same key replaces it), or
    None when it is urgent."""
    if stanza.tag == "presence":
        if stanza.attrs.get("type") in (None, "unavailable"):
            return ("presence", stanza.attrs.get("from", ""))
        return None
    if stanza.tag != "message" or stanza.attrs.get("type") == "error":
        return None
    carbon = None
    for child in stanza.elements():
        if child.ns == CARBONS and child.tag in ("sent", "received"):
            carbon = child
    if carbon is not None:
        forwarded = carbon.find("forwarded", FORWARD)
        inner = forwarded.find("message") if forwarded is not None else None
        if inner is None:
            return None
        key = _holdable(inner)
        return None if key is None else ("carbon", *key)
    states_only = True
    for child in stanza.elements():
        if child.ns in _STANZA_NS and child.tag == "thread":
            continue
        if child.ns not in _QUIET:
            return None  # a body, an encrypted payload, an invitation...
        if child.ns != CHAT_STATES and child.ns != "urn:xmpp:hints":
            states_only = False
    if states_only:
        return ("chatstate", stanza.attrs.get("from", ""))
    return ("marker", next(_unique))


class Inactive:
    """What one inactive session holds back (``roost.server.session.HoldBack``)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[object, bytes] = {}

    def keep(self, stanza: Element, data: bytes) -> bool:
        key = _holdable(stanza)
        if key is None or len(self.held) >= MAX_HELD:
            return False
        self.held.pop(key, None)  # the latest goes last: the order it came in
        self.held[key] = data
        return True

    def release(self) -> list[bytes]:
        if not self.held:
            return []
        held = list(self.held.values())
        self.held.clear()
        return held


class CsiModule:
    name = "csi"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.nonza(CSI, self.state)
        ctx.stream_feature(lambda: Element("csi", CSI), pre_auth=False)

    def state(self, session: Session, el: Element) -> None:
        """XEP-0352 §3: ``<inactive/>`` and ``<active/>``; anything else is ignored."""
        if el.tag == "inactive":
            if session.hold_back is None:
                session.hold_back = Inactive()
        elif el.tag == "active":
            hold, session.hold_back = session.hold_back, None
            if hold is not None:
                for data in hold.release():
                    self.ctx.deliver(session, None, data)
