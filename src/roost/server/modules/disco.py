"""XEP-0030 Service Discovery for the server and, on their behalf, for its accounts.

The server's features are exactly what the loaded modules registered (each iq handler
advertises its namespace), never a hand-kept list. Account queries follow XEP-0030 §8:
only the account itself and contacts with a subscription to it learn anything.
"""

from __future__ import annotations

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.xml.element import Element
from roost.server.api import IqRequest, IqResult, ModuleContext
from roost.server.services import ROSTERS

__all__ = ["DiscoModule"]

_C = StanzaErrorCondition


class DiscoModule:
    name = "disco"
    depends = ("roster",)

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.rosters = ctx.service(ROSTERS)
        ctx.iq("host", "get", ns.DISCO_INFO, "query", self.server_info)
        ctx.iq("host", "get", ns.DISCO_ITEMS, "query", self.server_items)
        ctx.iq("account", "get", ns.DISCO_INFO, "query", self.account_info, advertise=False)
        ctx.iq("account", "get", ns.DISCO_ITEMS, "query", self.account_items, advertise=False)
        # XEP-0030 §3.1: every entity supports both, the accounts the server answers for too.
        ctx.account_feature(ns.DISCO_INFO)
        ctx.account_feature(ns.DISCO_ITEMS)

    # -- the server ----------------------------------------------------------------------

    def server_info(self, req: IqRequest) -> IqResult:
        node = req.payload.get("node")
        if node is None:
            return self.ctx.registry.server_info()
        build = self.ctx.registry.disco_nodes.get(node)
        if build is None:
            raise StanzaError(_C.ITEM_NOT_FOUND)
        return build()

    def server_items(self, req: IqRequest) -> IqResult:
        node = req.payload.get("node")
        if node is not None:
            build = self.ctx.registry.disco_item_nodes.get(node)
            if build is None:
                raise StanzaError(_C.ITEM_NOT_FOUND)
            return build(req)
        # XEP-0030 §4: the services hosted here (group chat, pubsub, upload...)
        query = Element("query", ns.DISCO_ITEMS)
        here = req.to.domain
        others = [d for d in self.ctx.domains if d != here]
        for domain, (_, name) in sorted(self.ctx.registry.hosted.items()):
            if any(domain.endswith("." + d) for d in others if not here.endswith("." + d)):
                continue  # another served domain's service (conference.example.test)
            query.sub("item", attrs={"jid": domain, "name": name} if name else {"jid": domain})
        return query

    # -- accounts (XEP-0030 §8) ------------------------------------------------------------

    async def _may_see(self, req: IqRequest) -> bool:
        user = req.to
        if req.sender.bare == user:
            return True
        assert user.local is not None
        if not await self.ctx.accounts.exists(user.local, user.domain):
            return False
        roster = await self.rosters.get(user)
        return roster.state(str(req.sender.bare)).has_from

    async def account_info(self, req: IqRequest) -> IqResult:
        if not await self._may_see(req):
            raise StanzaError(_C.SERVICE_UNAVAILABLE)  # §8 rule 1
        node = req.payload.get("node")
        if node is not None:
            raise StanzaError(_C.ITEM_NOT_FOUND)
        query = Element("query", ns.DISCO_INFO)
        query.sub("identity", attrs={"category": "account", "type": "registered"})
        for category, type_ in self.ctx.registry.account_identities:
            query.sub("identity", attrs={"category": category, "type": type_})
        for var in sorted(self.ctx.registry.account_features):
            query.sub("feature", attrs={"var": var})
        return query

    async def account_items(self, req: IqRequest) -> IqResult:
        query = Element("query", ns.DISCO_ITEMS)
        if req.payload.get("node") is not None:
            return query
        if await self._may_see(req):
            # the account's available resources, to those allowed to see its presence
            for session in self.ctx.sessions.resources(req.to).values():
                if session.available:
                    query.sub("item", attrs={"jid": session.jid_str})
        # other items (PEP nodes, XEP-0163 §5) are filtered by whoever adds them; else
        # §8 rule 2: an empty result
        for build in self.ctx.registry.account_items:
            for item in await build(req):
                query.append(item)
        return query
