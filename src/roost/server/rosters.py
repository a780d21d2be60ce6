"""Rosters (RFC 6121 §2): cached in memory for online users, written through to storage.

Routing presence or a message for an online user reads only this cache; only changes
(roster sets, subscription state changes) touch the database. Each change bumps the roster
version and is pushed to the user's interested resources (§2.1.6) after it is committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.subscription import Subscription, SubState
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.storage.api import RosterItem

if TYPE_CHECKING:
    from roost.server.app import Server

__all__ = ["Roster", "RosterService", "item_element"]


class Roster:
    """One user's roster: items by contact, pending inbound requests, version."""

    __slots__ = ("items", "pending_in", "refs", "version")

    def __init__(self, version: int, items: dict[str, RosterItem], pending_in: dict[str, str]):
        self.version = version
        self.items = items
        self.pending_in = pending_in
        self.refs = 0

    def state(self, contact: str) -> SubState:
        """The Appendix A.1 state of ``contact`` (a bare JID string)."""
        item = self.items.get(contact)
        pending_in = contact in self.pending_in
        if item is None:
            return SubState(Subscription.NONE, False, pending_in)
        sub = Subscription(item.subscription)
        # pending-in only exists beside none/to (Appendix A.1)
        return SubState(sub, item.ask, pending_in and sub in (Subscription.NONE, Subscription.TO))

    def subscribers(self) -> list[str]:
        """Contacts that receive the user's presence (subscription from/both)."""
        return [j for j, it in self.items.items() if it.subscription in ("from", "both")]

    def subscriptions(self) -> list[str]:
        """Contacts whose presence the user receives (subscription to/both)."""
        return [j for j, it in self.items.items() if it.subscription in ("to", "both")]


def item_element(item: RosterItem, *, remove: bool = False) -> Element:
    """``<item/>`` for a roster result or push (RFC 6121 §2.1.2)."""
    attrs = {"jid": item.jid}
    if item.name:
        attrs["name"] = item.name
    attrs["subscription"] = "remove" if remove else item.subscription
    if item.ask and not remove:
        attrs["ask"] = "subscribe"
    if item.approved and not remove:
        attrs["approved"] = "true"
    el = Element("item", ns.ROSTER, attrs)
    if not remove:
        for group in item.groups:
            el.sub("group", text=group)
    return el


class RosterService:
    """Loads, caches, changes and pushes rosters."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.storage = server.storage
        self._cache: dict[JID, Roster] = {}
        self._locks: dict[JID, asyncio.Lock] = {}

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
        if len(roster.items) >= self.server.config.roster.max_items:
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
        for conn in self.server.sessions.resources(user).values():
            if not conn.roster_requested:
                continue
            query = Element("query", ns.ROSTER, {"ver": str(version)}, [item])
            iq = Element(
                "iq",
                ns.CLIENT,
                {"type": "set", "id": self.server.new_id(), "to": conn.jid_str},
                [query],
            )
            conn.send_raw(serialize(iq).encode())
