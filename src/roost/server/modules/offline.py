"""XEP-0160 offline messages: stored durably, delivered when the user next has an available
resource with a non-negative priority (usually its initial presence).

Each stored message is delivered once, in order, with a XEP-0203 ``<delay/>`` stamp; the
queue is read and emptied in one transaction. A full queue bounces the message with
``service-unavailable`` (RFC 6121 §8.5.2.2.1).
"""

from __future__ import annotations

import logging
import time

from roost.core.delay import delay_element
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.api import ModuleContext
from roost.server.config import OfflineConfig
from roost.server.services import ARCHIVE
from roost.server.session import Session

__all__ = ["OfflineModule"]

log = logging.getLogger(__name__)
FEATURE = "msgoffline"  # XEP-0160 §5: advertised in the server's disco#info


class OfflineModule:
    name = "offline"
    Options = OfflineConfig
    config_section = "offline"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        options: OfflineConfig = ctx.options
        self.limit = options.max_messages
        if self.limit == 0:
            return
        ctx.feature(FEATURE)
        ctx.filter(events.MESSAGE_OFFLINE, self.store)
        ctx.observe(events.RESOURCE_DELIVERABLE, self.deliver)

    def store(self, stanza: Element, sender: JID, to: JID) -> bool:
        self.ctx.spawn(self._store(stanza, sender, to))
        return True

    async def _store(self, stanza: Element, sender: JID, to: JID) -> None:
        assert to.local is not None
        if not await self.ctx.accounts.exists(to.local, to.domain):
            ok = False  # §8.5.1: no such user
        else:
            ok = await self.ctx.storage.push_offline(
                to.local, to.domain, serialize(stanza), time.time(), self.limit
            )
        if not ok:
            err = StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
            self.ctx.reply_error(stanza, err, sender)
            return
        # A resource may have sent initial presence while we were writing: flush to the
        # best one now rather than at the next login.
        ready = [
            c
            for c in self.ctx.sessions.resources(to).values()
            if c.available and c.priority >= 0
        ]
        if ready:
            await self._flush_queue(max(ready, key=lambda c: c.priority), to)

    def deliver(self, session: Session) -> None:
        self.ctx.spawn(self._flush_queue(session, session.bare))

    async def _flush_queue(self, session: Session, user: JID) -> None:
        assert user.local is not None
        stored = await self.ctx.storage.take_offline(user.local, user.domain)
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
            if await self.ctx.privacy_refuses_loaded(stanza, sender, user, out=False):
                continue  # blocked since it was stored (XEP-0191 §3.3, XEP-0016)
            if session.available and self.ctx.sessions.get(session.jid) is session:
                self.ctx.deliver(session, stanza)
            else:  # gone meanwhile: route it again (another resource, or back to storage)
                archive = self.ctx.maybe_service(ARCHIVE)
                if archive is not None:
                    archive.again(stanza)  # archived when it was stored: not twice (#12)
                self.ctx.route(stanza, sender, user)
