"""XEP-0054 vcard-temp: a user stores one vCard; anyone may read a local user's vCard.

Stored as serialized XML (store ``vcard``, key ``vcard``). Choices where XEP-0054 leaves one:

* no vCard stored: an empty ``<vCard xmlns='vcard-temp'/>`` result (§3.1 allows this or
  item-not-found), for the user and for others alike, as Prosody does;
* a set on another user's JID: ``forbidden`` (§3.2);
* a vCard larger than ``MAX_VCARD_SIZE`` serialized: ``not-acceptable`` (the request does
  not meet the server's criteria, RFC 6120 §8.3.3.9; unlike policy-violation it has an
  XEP-0086 code, 406, that old clients understand);
* a get for a JID with no account: ``service-unavailable`` (RFC 6121 §8.5.1).
"""

from __future__ import annotations

import logging
from typing import Final

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext

__all__ = ["MAX_VCARD_SIZE", "VCARD", "VCardModule"]

log = logging.getLogger(__name__)

VCARD: Final = "vcard-temp"
#: largest vCard stored, in bytes of serialized XML (an avatar photo fits comfortably)
MAX_VCARD_SIZE: Final = 64 * 1024
_STORE: Final = "vcard"
_KEY: Final = "vcard"
_C = StanzaErrorCondition


class VCardModule:
    name = "vcard"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.iq("account", "get", VCARD, "vCard", self.get)
        ctx.iq("account", "set", VCARD, "vCard", self.set, advertise=False)
        ctx.account_feature(VCARD)

    async def get(self, req: IqRequest) -> IqResult:
        user = req.to
        assert user.local is not None
        if (
            req.sender.bare != user
            and not self.ctx.sessions.is_online(user)
            and not await self.ctx.accounts.exists(user.local, user.domain)
        ):
            raise StanzaError(_C.SERVICE_UNAVAILABLE)  # RFC 6121 §8.5.1: no such account
        raw = await self.ctx.storage.get_data(user.local, user.domain, _STORE, _KEY)
        if raw is not None:
            try:
                return parse_fragment(raw)
            except ValueError:
                log.warning("unreadable stored vCard of %s", user)
        return Element("vCard", VCARD)  # XEP-0054 §3.1: no vCard, an empty one

    async def set(self, req: IqRequest) -> IqResult:
        user: JID = req.to
        if req.sender.bare != user:
            raise StanzaError(_C.FORBIDDEN)  # XEP-0054 §3.2: someone else's vCard
        assert user.local is not None
        vcard = req.payload
        value: str | None = None
        if any(True for _ in vcard.elements()) or vcard.text.strip():
            value = serialize(vcard)  # with its own xmlns='vcard-temp'
            if len(value.encode()) > MAX_VCARD_SIZE:
                raise StanzaError(_C.NOT_ACCEPTABLE, "the vCard is too large")
        # An empty vCard removes the stored one: a get answers an empty vCard either way.
        await self.ctx.storage.set_data(user.local, user.domain, _STORE, _KEY, value)
        return EMPTY
