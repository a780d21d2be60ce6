"""XEP-0012 Last Activity: the server's uptime, and when an account was last online.

When a user's last session ends, the time and the status text of the user's last unavailable
presence are stored (store ``last``, key ``logout``) so the answer survives a restart. A user
still connected but unavailable has been away since that unavailable presence (kept in memory
by the presence service). Only the user and contacts subscribed to the user's presence may ask
(XEP-0012 §4, §8).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server import events
from roost.server.api import IqRequest, IqResult, ModuleContext
from roost.server.services import PRESENCE, ROSTERS
from roost.server.session import Session
from roost.storage.api import NoSuchAccount

__all__ = ["LAST", "LastActivityModule"]

log = logging.getLogger(__name__)

LAST: Final = "jabber:iq:last"
_STORE: Final = "last"
_KEY: Final = "logout"
_C = StanzaErrorCondition


def _status(presence: Element) -> str | None:
    """XEP-0012 §3: the status of the last unavailable presence (its first <status/>)."""
    el = presence.find("status", ns.CLIENT)
    return (el.text or None) if el is not None else None


class LastActivityModule:
    name = "last"
    depends = ("roster", "presence")

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.rosters = ctx.service(ROSTERS)
        self.presence = ctx.service(PRESENCE)
        #: logouts whose write is still under way, so a query right after sees them
        self._writing: dict[JID, tuple[float, str | None]] = {}
        ctx.iq("host", "get", LAST, "query", self.uptime)
        ctx.iq("account", "get", LAST, "query", self.last_logout)
        ctx.account_feature(LAST)
        # After the presence service (priority 0), which records the unavailable presence.
        ctx.observe(events.SESSION_CLOSED, self.session_closed, priority=-10)

    # -- the server (XEP-0012 §5) ------------------------------------------------------------

    def uptime(self, req: IqRequest) -> IqResult:
        seconds = max(0, int(time.time() - self.ctx.started_at))
        return Element("query", LAST, {"seconds": str(seconds)})

    # -- an account (XEP-0012 §3) ------------------------------------------------------------

    async def last_logout(self, req: IqRequest) -> IqResult:
        user = req.to
        assert user.local is not None
        if req.sender.bare != user:
            if not self.ctx.sessions.is_online(user) and not await self.ctx.accounts.exists(
                user.local, user.domain
            ):
                # RFC 6121 §8.5.1: no such account.
                raise StanzaError(_C.SERVICE_UNAVAILABLE)
            roster = await self.rosters.get(user)
            if not roster.state(str(req.sender.bare)).has_from:
                # XEP-0012 §3: not allowed to see the user's presence.
                raise StanzaError(_C.FORBIDDEN)
        if any(c.available for c in self.ctx.sessions.resources(user).values()):
            # XEP-0012 §3: an online user has been gone 0 seconds. "Online" is judged by
            # available presence, as the contact sees it; a connected but unavailable
            # session does not count, so it is not revealed here.
            return Element("query", LAST, {"seconds": "0"})
        went = self.presence.unavailable_since(user)
        last: tuple[float, str | None] | None
        if went is not None and self.ctx.sessions.resources(user):
            # XEP-0012 §3: connected, but unavailable since then: the time since the user
            # went unavailable, with that presence's status (as Prosody answers).
            last = (went[1], _status(went[0]))
        else:
            last = self._writing.get(user) or await self._stored(user)
        if last is None:
            # Never went unavailable nor logged out since this module was loaded.
            raise StanzaError(_C.ITEM_NOT_FOUND)
        stamp, status = last
        seconds = max(0, int(time.time() - stamp))
        return Element("query", LAST, {"seconds": str(seconds)}, [status] if status else None)

    async def _stored(self, user: JID) -> tuple[float, str | None] | None:
        assert user.local is not None
        raw = await self.ctx.storage.get_data(user.local, user.domain, _STORE, _KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            status = data.get("status")
            return float(data["stamp"]), status if isinstance(status, str) else None
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("unreadable last logout of %s", user)
            return None

    # -- recording logouts -------------------------------------------------------------------

    def session_closed(self, session: Session, error: object) -> None:
        user = session.bare
        if self.ctx.sessions.resources(user):
            return  # not the last session of the account
        last = self.presence.last_unavailable(user)
        entry = (time.time(), None if last is None else _status(last))
        self._writing[user] = entry
        self.ctx.spawn(self._record(user, entry))
        # returns None: other handlers of the event run too

    async def _record(self, user: JID, entry: tuple[float, str | None]) -> None:
        assert user.local is not None
        stamp, status = entry
        value = json.dumps({"stamp": stamp, "status": status})
        try:
            await self.ctx.storage.set_data(user.local, user.domain, _STORE, _KEY, value)
        except NoSuchAccount:
            pass  # the account was deleted meanwhile
        finally:
            if self._writing.get(user) is entry:
                del self._writing[user]
