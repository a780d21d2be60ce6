"""Rosters (RFC 6121 §2): the roster protocol (get with versioning §2.6, set, remove) and
the ``rosters`` service every IM module uses.

Rosters are cached in memory while one of the account's sessions is bound and written
through to storage: routing presence or a message for an online user reads only this
cache; only changes (roster sets, subscription state changes) touch the database. Each
change bumps the roster version and is pushed to the user's interested resources (§2.1.6)
after it is committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.subscription import Subscription, SubState
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.server import events
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.config import RosterConfig
from roost.server.services import PRESENCE, ROSTERS, Roster, item_element
from roost.server.session import Session
from roost.storage.api import RosterItem

__all__ = ["RosterModule", "Rosters"]

_C = StanzaErrorCondition
ROSTERVER = "urn:xmpp:features:rosterver"


class RosterModule:
    name = "roster"
    Options = RosterConfig
    config_section = "roster"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.limits: RosterConfig = ctx.options
        self.rosters = Rosters(ctx, self.limits.max_items)
        ctx.provide(ROSTERS, self.rosters)
        ctx.observe(events.SESSION_OPENING, self.rosters.opening)
        ctx.observe(events.SESSION_ABANDONED, self.rosters.closed)
        # After the other modules' observers, which may still read the cached roster.
        ctx.observe(events.SESSION_CLOSED, self.rosters.closed, priority=-100)
        ctx.iq("account", "get", ns.ROSTER, "query", self.get)
        ctx.iq("account", "set", ns.ROSTER, "query", self.set, advertise=False)
        # RFC 6121 §2.6.1: roster versioning is announced as a stream feature.
        ctx.stream_feature(lambda: Element("ver", ROSTERVER), pre_auth=False)

    @staticmethod
    def _own(req: IqRequest) -> JID:
        # RFC 6121 §2.1.3/§2.3.3: only the account itself may read or change its roster.
        if req.sender.bare != req.to or req.session is None:
            raise StanzaError(_C.FORBIDDEN)
        return req.to

    async def get(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        if req.payload.find() is not None:
            raise StanzaError(_C.BAD_REQUEST, "a roster get carries no items")  # §2.1.3
        roster = await self.rosters.get(user)
        assert req.session is not None
        req.session.roster_requested = True  # an "interested resource" from now on (§2.1.6)
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
        rosters = self.rosters
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
        rosters = self.rosters
        async with rosters.changing(user) as roster:
            item = roster.items.get(contact)
            if item is None:
                raise StanzaError(_C.ITEM_NOT_FOUND)  # §2.5.3
            state = roster.state(contact)
            await rosters.remove(user, roster, contact)
            if contact in roster.pending_in:
                await rosters.set_pending(user, roster, contact, None)
        presence = self.ctx.maybe_service(PRESENCE)
        if presence is not None:
            presence.cancel_subscriptions(user, JID.parse(contact), state)


class Rosters:
    """Loads, caches, changes and pushes rosters (the ``rosters`` service)."""

    def __init__(self, ctx: ModuleContext, max_items: int) -> None:
        self.ctx = ctx
        self.storage = ctx.storage
        self.max_items = max_items
        self._cache: dict[JID, Roster] = {}
        self._locks: dict[JID, asyncio.Lock] = {}
        #: sessions whose opening acquired their account's roster
        self._holding: set[Session] = set()

    def cached(self, user: JID) -> Roster | None:
        """The roster of an online user, without waiting."""
        return self._cache.get(user)

    async def get(self, user: JID) -> Roster:
        """The roster of any user (cached when online, read from storage otherwise)."""
        roster = self._cache.get(user)
        if roster is not None:
            return roster
        assert user.local is not None
        data = await self.storage.get_roster(user.local, user.domain)
        roster = self._cache.get(user)  # another task may have loaded it meanwhile
        if roster is None:
            roster = Roster(data.version, dict(data.items), dict(data.pending_in))
        return roster

    async def acquire(self, user: JID) -> Roster:
        """Keep ``user``'s roster in memory while one of its sessions is bound."""
        roster = await self.get(user)
        roster.refs += 1
        self._cache[user] = roster
        return roster

    def release(self, user: JID) -> None:
        roster = self._cache.get(user)
        if roster is not None:
            roster.refs -= 1
            if roster.refs <= 0:
                del self._cache[user]
                self._locks.pop(user, None)

    @asynccontextmanager
    async def changing(self, user: JID) -> AsyncIterator[Roster]:
        """Serialise read-modify-write of one roster (two tasks may change it at once)."""
        lock = self._locks.get(user)
        if lock is None:
            lock = self._locks[user] = asyncio.Lock()
        async with lock:
            yield await self.get(user)

    # -- changes (call inside ``changing``) -----------------------------------------------

    def check_room(self, roster: Roster) -> None:
        """Refuse a new item beyond ``roster.max_items`` (``not-allowed``)."""
        if len(roster.items) >= self.max_items:
            raise StanzaError(StanzaErrorCondition.NOT_ALLOWED, "the roster is full")

    async def put(self, user: JID, roster: Roster, item: RosterItem) -> None:
        """Store ``item``, bump the version, push it (RFC 6121 §2.1.6)."""
        assert user.local is not None
        roster.version = await self.storage.put_roster_item(user.local, user.domain, item)
        roster.items[item.jid] = item
        self.push(user, roster.version, item_element(item))

    async def remove(self, user: JID, roster: Roster, contact: str) -> None:
        assert user.local is not None
        item = roster.items.get(contact)
        if item is None:
            return
        roster.version = await self.storage.delete_roster_item(user.local, user.domain, contact)
        del roster.items[contact]
        self.push(user, roster.version, item_element(item, remove=True))

    async def set_state(self, user: JID, roster: Roster, contact: str, new: SubState) -> None:
        """Apply an Appendix A state: the item's subscription/ask and the pending-in note."""
        assert user.local is not None
        if not new.pending_in and contact in roster.pending_in:
            await self.set_pending(user, roster, contact, None)
        item = roster.items.get(contact)
        if item is None:
            if new == SubState(Subscription.NONE, False, new.pending_in):
                return  # §3.1.3: no roster item for a mere inbound request
            self.check_room(roster)
            item = RosterItem(contact)
        changed = dataclasses.replace(
            item,
            subscription=new.sub.value,
            ask=new.pending_out,
            approved=item.approved and not new.has_from,
        )
        if changed != item or contact not in roster.items:
            await self.put(user, roster, changed)

    async def set_pending(
        self, user: JID, roster: Roster, contact: str, stanza: str | None
    ) -> None:
        """Note (or forget) an inbound subscription request to redeliver at login (§3.1.3)."""
        assert user.local is not None
        await self.storage.set_pending_in(user.local, user.domain, contact, stanza)
        if stanza is None:
            roster.pending_in.pop(contact, None)
        else:
            roster.pending_in[contact] = stanza

    async def set_approved(self, user: JID, roster: Roster, contact: str, approved: bool) -> None:
        """Record or cancel a subscription pre-approval (RFC 6121 §3.4)."""
        item = roster.items.get(contact)
        if item is None:
            self.check_room(roster)
            item = RosterItem(contact)
        if item.approved != approved or contact not in roster.items:
            await self.put(user, roster, dataclasses.replace(item, approved=approved))

    # -- pushes ---------------------------------------------------------------------------

    def push(self, user: JID, version: int, item: Element) -> None:
        """A roster push to every interested resource (those that asked for the roster)."""
        for session in self.ctx.sessions.resources(user).values():
            if not session.roster_requested:
                continue
            query = Element("query", ns.ROSTER, {"ver": str(version)}, [item])
            attrs = {"type": "set", "id": self.ctx.new_id(), "to": session.jid_str}
            self.ctx.deliver(session, Element("iq", ns.CLIENT, attrs, [query]))

    # -- the session life cycle -----------------------------------------------------------

    def opening(self, session: Session, waits: list[Awaitable[object]]) -> None:
        """Load the roster into memory before the session is bound, so routing never waits."""
        waits.append(self._hold(session))

    async def _hold(self, session: Session) -> None:
        await self.acquire(session.bare)
        self._holding.add(session)

    def closed(self, session: Session, error: object = None) -> None:
        if session in self._holding:
            self._holding.discard(session)
            self.release(session.bare)
