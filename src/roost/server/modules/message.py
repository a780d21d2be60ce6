"""RFC 6121 §8.5 message delivery for local users (bare and full JIDs).

To a bare JID: normal and chat go to the available resource(s) of highest non-negative
priority (all of them when tied), headline to every non-negative resource, groupchat is
refused, errors are dropped; with no such resource, normal and chat go to offline storage
(``message/offline``) or bounce. To an unmatched full JID (§8.5.3.2.1): chat is handled as
for the bare JID, normal and groupchat bounce, headline and error are dropped.
"""

from __future__ import annotations

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server import events
from roost.server.api import ModuleContext
from roost.server.session import Session

__all__ = ["MessageModule"]

_UNAVAILABLE = StanzaErrorCondition.SERVICE_UNAVAILABLE


class MessageModule:
    name = "message"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.filter(events.to_bare("message"), self.to_bare)
        ctx.filter(events.to_full("message"), self.to_full)

    def _bounce(self, stanza: Element, sender: JID) -> None:
        self.ctx.reply_error(stanza, StanzaError(_UNAVAILABLE), sender)

    def to_bare(self, stanza: Element, sender: JID, to: JID) -> bool:
        mtype = stanza.attrs.get("type") or "normal"
        if mtype == "error":
            return True  # §8.5.2.1.1: silently ignored
        if mtype == "groupchat":
            self._bounce(stanza, sender)
            return True
        # §8.5.2.1.1: never to a negative-priority resource.
        ready = [
            c
            for c in self.ctx.sessions.resources(to).values()
            if c.available and c.priority >= 0
        ]
        if ready:
            if mtype != "headline":
                top = max(c.priority for c in ready)
                ready = [c for c in ready if c.priority == top]
            # §8.5.2.1.1: the 'to' stays the bare JID; serialised once for every resource.
            self.ctx.deliver_message(stanza, sender, to, ready)
            return True
        if mtype == "headline":
            return True  # §8.5.2.2.1: silently ignored
        if not self.ctx.run(events.MESSAGE_OFFLINE, stanza, sender, to):
            self._bounce(stanza, sender)
        return True

    def to_full(self, stanza: Element, sender: JID, to: JID, target: Session | None) -> bool:
        # only called when no connected resource matches (§8.5.3.2.1)
        mtype = stanza.attrs.get("type") or "normal"
        if mtype == "chat":
            self.to_bare(stanza, sender, to.bare)
        elif mtype in ("normal", "groupchat"):
            self._bounce(stanza, sender)
        # headline and error: silently ignored
        return True
