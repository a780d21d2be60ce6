"""RFC 6121 §2 roster management: get (with versioning, §2.6), set, remove."""

from __future__ import annotations

import dataclasses

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.server.modules.base import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.rosters import item_element
from roost.storage.api import RosterItem

__all__ = ["RosterModule"]

_C = StanzaErrorCondition
ROSTERVER = "urn:xmpp:features:rosterver"


class RosterModule:
    name = "roster"

    def setup(self, ctx: ModuleContext) -> None:
        self.server = ctx.server
        self.limits = ctx.server.config.roster
        ctx.iq("account", "get", ns.ROSTER, "query", self.get)
        ctx.iq("account", "set", ns.ROSTER, "query", self.set, advertise=False)
        # RFC 6121 §2.6.1: roster versioning is announced as a stream feature.
        ctx.stream_feature(lambda: Element("ver", ROSTERVER), pre_auth=False)

    @staticmethod
    def _own(req: IqRequest) -> JID:
        # RFC 6121 §2.1.3/§2.3.3: only the account itself may read or change its roster.
        if req.sender.bare != req.to or req.conn is None:
            raise StanzaError(_C.FORBIDDEN)
        return req.to

    async def get(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        if req.payload.find() is not None:
            raise StanzaError(_C.BAD_REQUEST, "a roster get carries no items")  # §2.1.3
        roster = await self.server.rosters.get(user)
        assert req.conn is not None
        req.conn.roster_requested = True  # an "interested resource" from now on (§2.1.6)
        current = str(roster.version)
        if req.payload.get("ver") == current:
            return EMPTY  # §2.6.3: unchanged; pushes follow
        query = Element("query", ns.ROSTER, {"ver": current})
        for item in roster.items.values():
            query.append(item_element(item))
        return query

    async def set(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        items = req.payload.find_all()
        if len(items) != 1 or items[0].tag != "item" or items[0].ns != ns.ROSTER:
            raise StanzaError(_C.BAD_REQUEST, "a roster set carries exactly one item")
        el = items[0]
        try:
            contact = JID.parse(el.get("jid") or "").bare
        except InvalidJID:
            raise StanzaError(_C.BAD_REQUEST, "the item needs a valid 'jid'") from None
        if el.get("subscription") == "remove":
            await self._remove(user, str(contact))
            return EMPTY
        # §2.1.2.5: other 'subscription' values (and 'ask') in a set are ignored.
        name = el.get("name") or None
        if name is not None and len(name) > self.limits.max_name_length:
            raise StanzaError(_C.NOT_ACCEPTABLE, "the name is too long")
        groups: list[str] = []
        for g in el.find_all("group", ns.ROSTER):
            text = g.text
            if not text:
                raise StanzaError(_C.NOT_ACCEPTABLE, "empty group name")
            if len(text) > self.limits.max_group_length:
                raise StanzaError(_C.NOT_ACCEPTABLE, "the group name is too long")
            if text in groups:
                raise StanzaError(_C.BAD_REQUEST, "duplicate group")  # §2.3.3 item 2
            groups.append(text)
        rosters = self.server.rosters
        async with rosters.changing(user) as roster:
            key = str(contact)
            old = roster.items.get(key)
            if old is None:
                rosters.check_room(roster)
            base = old or RosterItem(key)
            await rosters.put(
                user, roster, dataclasses.replace(base, name=name, groups=tuple(groups))
            )
        return EMPTY

    async def _remove(self, user: JID, contact: str) -> None:
        """§2.5: remove the item, cancelling subscriptions both ways (§3.3.2 / §3.2.2)."""
        rosters = self.server.rosters
        async with rosters.changing(user) as roster:
            item = roster.items.get(contact)
            if item is None:
                raise StanzaError(_C.ITEM_NOT_FOUND)  # §2.5.3
            state = roster.state(contact)
            await rosters.remove(user, roster, contact)
            if contact in roster.pending_in:
                await rosters.set_pending(user, roster, contact, None)
        self.server.presence.cancel_subscriptions(user, JID.parse(contact), state)
