"""XEP-0160 offline messages: stored durably, delivered when the user next has an available
resource with a non-negative priority (usually its initial presence).

Each stored message is delivered once, in order, with a XEP-0203 ``<delay/>`` stamp; the
queue is read and emptied in one transaction. A full queue bounces the message with
``service-unavailable`` (RFC 6121 §8.5.2.2.1).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.modules.base import ModuleContext
from roost.server.presence import delay_element

if TYPE_CHECKING:
    from roost.server.c2s import C2SConnection

__all__ = ["OfflineModule"]

log = logging.getLogger(__name__)
FEATURE = "msgoffline"  # XEP-0160 §5: advertised in the server's disco#info


class OfflineModule:
    name = "offline"

    def setup(self, ctx: ModuleContext) -> None:
        self.server = ctx.server
        self.limit = ctx.server.config.offline.max_messages
        if self.limit == 0:
            return
        ctx.feature(FEATURE)
        ctx.hook(events.MESSAGE_OFFLINE, self.store)
        ctx.hook(events.RESOURCE_DELIVERABLE, self.deliver)

    def store(self, stanza: Element, sender: JID, to: JID) -> bool:
        self.server.spawn(self._store(stanza, sender, to))
        return True

    async def _store(self, stanza: Element, sender: JID, to: JID) -> None:
        assert to.local is not None
        accounts = self.server.accounts
        if not await accounts.exists(to.local, to.domain):
            ok = False  # §8.5.1: no such user
        else:
            ok = await self.server.storage.push_offline(
                to.local, to.domain, serialize(stanza), time.time(), self.limit
            )
        if not ok:
            err = StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            self.server.router.reply_error(stanza, err, sender)
            return
        # A resource may have sent initial presence while we were writing: flush to the
        # best one now rather than at the next login.
        ready = [
            c
            for c in self.server.sessions.resources(to).values()
            if c.available and c.priority >= 0
        ]
        if ready:
            await self._flush_queue(max(ready, key=lambda c: c.priority), to)

    def deliver(self, conn: C2SConnection) -> None:
        if conn.jid is not None:
            self.server.spawn(self._flush_queue(conn, conn.jid.bare))

    async def _flush_queue(self, conn: C2SConnection, user: JID) -> None:
        assert user.local is not None
        stored = await self.server.storage.take_offline(user.local, user.domain)
        for text, stamp in stored:
            try:
                stanza = parse_fragment(text)
            except ValueError:
                log.warning("dropping an unreadable offline message for %s", user)
                continue
            stanza.append(delay_element(stamp, user.domain, "Offline Storage"))
            try:
                sender = JID.parse(stanza.attrs.get("from") or user.domain)
            except InvalidJID:
                sender = JID.parse(user.domain)
            if self.server.router.privacy_in(stanza, sender, user):
                continue  # blocked since it was stored (XEP-0191 §3.3, XEP-0016)
            if conn.available and conn.transport is not None:
                conn.send_stanza(stanza)
            else:  # gone meanwhile: route it again (another resource, or back to storage)
                self.server.router.route(stanza, sender, user)
