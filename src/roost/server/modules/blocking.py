"""XEP-0191 Blocking Command: get the blocklist, block, unblock, unblock all.

The blocklist is kept as the default privacy list (XEP-0191 §5: one store for both
protocols), in ``roost.server.privacy_lists``, which also enforces it, pushes changes to the
sessions that requested the blocklist, sends unavailable presence to a newly blocked JID
and current presence to an unblocked one. Enforcement (§3.3): from a blocked JID, presence
is dropped and messages and iq requests get ``service-unavailable``; to it, messages and iq
requests get ``not-acceptable`` with ``<blocked xmlns='urn:xmpp:blocking:errors'/>``, and
presence is dropped. Choices where the specification leaves one:

* someone else's blocklist: ``forbidden`` (as for rosters);
* an item that is not ``<item jid=.../>``: ``bad-request``; an invalid JID:
  ``jid-malformed``; a block with no item: ``bad-request`` (§3.3);
* blocking a blocked JID or unblocking one that is not blocked changes nothing, is
  answered with a result and pushes nothing;
* at most ``MAX_ITEMS`` entries in the default list (``not-allowed``, as a full roster).
"""

from __future__ import annotations

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.privacy import BLOCKING
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.services import PRIVACY_LISTS, own_session

__all__ = ["BlockingModule"]

_C = StanzaErrorCondition


def _jids(payload: Element) -> list[str]:
    """The normalised JIDs of a ``<block/>`` or ``<unblock/>``."""
    jids = []
    for item in payload.elements():
        text = item.get("jid")
        if item.tag != "item" or item.ns != BLOCKING or text is None:
            raise StanzaError(_C.BAD_REQUEST, "expected <item jid='...'/>")
        try:
            jids.append(str(JID.parse(text)))
        except InvalidJID:
            raise StanzaError(_C.JID_MALFORMED, f"not a JID: {text!r}") from None
    return jids


class BlockingModule:
    name = "blocking"
    depends = ("privacy_lists",)

    def setup(self, ctx: ModuleContext) -> None:
        self.lists = ctx.service(PRIVACY_LISTS)
        # §3.1: urn:xmpp:blocking is advertised (with the first handler).
        ctx.iq("account", "get", BLOCKING, "blocklist", self.get)
        ctx.iq("account", "set", BLOCKING, "block", self.block, advertise=False)
        ctx.iq("account", "set", BLOCKING, "unblock", self.unblock, advertise=False)

    async def get(self, req: IqRequest) -> IqResult:
        user, resource = own_session(req)
        result = Element("blocklist", BLOCKING)
        for jid in await self.lists.blocklist(user, resource):
            result.sub("item", attrs={"jid": jid})
        return result

    async def block(self, req: IqRequest) -> IqResult:
        user, _ = own_session(req)
        jids = _jids(req.payload)
        if not jids:
            raise StanzaError(_C.BAD_REQUEST, "nothing to block")  # §3.3
        await self.lists.block(user, jids)
        return EMPTY

    async def unblock(self, req: IqRequest) -> IqResult:
        user, _ = own_session(req)
        await self.lists.unblock(user, _jids(req.payload) or None)
        return EMPTY
