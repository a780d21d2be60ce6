"""XEP-0060 Publish-Subscribe as a generic service at ``pubsub.DOMAIN`` (for each domain
served, with ``[modules.pubsub] enabled = true``), on the engine PEP uses
(``roost.server.pubsub``).

Choices:

* Who may create nodes is ``create_nodes``: ``local`` (accounts of this server, the
  default), ``admins`` (the server's ``admins``) or ``anyone`` (remote users too); the
  creator owns the node (XEP-0060 §8.1) and may configure, purge, delete it and manage its
  affiliations. A publish to a missing node creates it for those who may (§7.1.4 auto-create).
* Default configuration: ``open`` access, 10 items, the last item sent on subscription;
  ``presence`` and ``roster`` access look at the owner's roster (a local owner's).
* Notifications go to explicit subscribers (§7.1.2); there is no presence-based delivery.
* disco#info (identity ``pubsub/service``, or ``pubsub/leaf`` for a node, §5.3) and
  disco#items (the nodes, §5.2) are answered here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.pubsub import OWNER, PUBSUB, Node, NodeConfig
from roost.core.xml.element import Element
from roost.server.api import EMPTY, HANDLED, IqRequest, IqResult, ModuleContext
from roost.server.pubsub import PubSubEngine
from roost.server.services import ROSTERS, Roster, RosterService

__all__ = ["PubSubModule", "PubSubOptions"]

log = logging.getLogger(__name__)

_C = StanzaErrorCondition
_STORE: Final = "pubsub"
#: XEP-0060 §10 features of the service
SERVICE_FEATURES: Final = (
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "item-ids",
    "manage-affiliations",
    "modify-affiliations",
    "multi-items",
    "persistent-items",
    "publish",
    "publish-options",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
)


@dataclass(frozen=True, slots=True)
class PubSubOptions:
    """``[modules.pubsub]``."""

    #: off by default: a service where users create nodes is an operator's decision
    enabled: bool = False
    #: the service's domain is SUBDOMAIN.DOMAIN for each domain served
    subdomain: str = field(default="pubsub", metadata={"nonempty": True})
    #: who may create nodes: local accounts, the server's admins, or anyone
    create_nodes: str = field(default="local", metadata={"choices": ("local", "admins", "anyone")})
    max_nodes: int = field(default=1000, metadata={"lo": 1, "hi": 1_000_000})
    max_items: int = field(default=1000, metadata={"lo": 1, "hi": 100_000})
    max_item_size: int = field(default=256 * 1024, metadata={"lo": 64, "hi": 16 * 1024 * 1024})


class PubSubModule:
    """The generic service: its policy on the shared engine, and the hosted domains."""

    name = "pubsub"
    depends = ("roster",)
    Options = PubSubOptions
    #: PubSubPolicy
    auto_create = True

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.options: PubSubOptions = ctx.options or PubSubOptions()
        self.rosters: RosterService = ctx.service(ROSTERS)
        self.engine = PubSubEngine(
            ctx,
            self,
            max_nodes=self.options.max_nodes,
            max_items=self.options.max_items,
            max_item_size=self.options.max_item_size,
        )
        self.admins = frozenset(str(a) for a in ctx.config.admins)
        if not self.options.enabled:
            return
        for domain in sorted(ctx.domains):
            ctx.host(f"{self.options.subdomain}.{domain}", self, "Publish-Subscribe")

    # -- the policy (roost.server.pubsub.PubSubPolicy) ------------------------------------

    def default_config(self) -> NodeConfig:
        return NodeConfig(access_model="open", max_items=10, send_last_published_item="on_sub")

    async def read_all(self, service: JID) -> dict[str, str]:
        return await self.ctx.storage.list_host_data(str(service), _STORE)

    async def write(self, service: JID, key: str, value: str | None) -> None:
        await self.ctx.storage.set_host_data(str(service), _STORE, key, value)

    def keep_cached(self, service: JID) -> bool:
        return True  # one service per domain

    def is_owner(self, service: JID, node: Node | None, who: JID) -> bool:
        if str(who.bare) in self.admins and self.ctx.is_local_user(who):
            return True
        return node is not None and node.affiliations.get(str(who.bare)) == "owner"

    def may_create(self, service: JID, who: JID) -> bool:
        policy = self.options.create_nodes
        if policy == "anyone":
            return who.local is not None
        if policy == "admins":
            return self.ctx.is_local_user(who) and str(who.bare) in self.admins
        return self.ctx.is_local_user(who)

    async def roster_of(self, service: JID, node: Node) -> Roster | None:
        for jid, affiliation in node.affiliations.items():
            owner = JID.parse(jid)
            if affiliation == "owner" and self.ctx.is_local_user(owner):
                return await self.rosters.get(owner)
        return None

    async def targets(self, service: JID, node: Node) -> Iterable[JID]:
        return ()  # explicit subscriptions only (the engine adds them)

    async def changed(self, service: JID, node: str) -> None:
        return None

    # -- the hosted domain ----------------------------------------------------------------

    def receive(self, stanza: Element, sender: JID, to: JID) -> None:
        ptype = stanza.get("type")
        if stanza.tag != "iq":
            if stanza.tag == "message" and ptype != "error":
                self.ctx.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
            return
        if ptype not in ("get", "set"):
            return  # results and errors: the service sends no requests
        payload = stanza.find()
        if payload is None:
            self.ctx.reply_error(stanza, StanzaError(_C.BAD_REQUEST), sender)
            return
        if to.local is not None or to.resource is not None:
            self.ctx.reply_error(stanza, StanzaError(_C.ITEM_NOT_FOUND), sender)
            return
        handlers: dict[tuple[str | None, str, str], Callable[[IqRequest], Awaitable[IqResult]]]
        engine = self.engine
        handlers = {
            ("get", PUBSUB, "pubsub"): engine.get,
            ("set", PUBSUB, "pubsub"): engine.set,
            ("get", OWNER, "pubsub"): engine.owner_get,
            ("set", OWNER, "pubsub"): engine.owner_set,
            ("get", ns.DISCO_INFO, "query"): self._info,
            ("get", ns.DISCO_ITEMS, "query"): self._items,
        }
        handler = handlers.get((ptype, payload.ns, payload.tag))
        if handler is None:
            self.ctx.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
            return
        self.ctx.spawn(self._answer(handler, IqRequest(stanza, payload, sender, to, None)))

    async def _answer(
        self, handler: Callable[[IqRequest], Awaitable[IqResult]], req: IqRequest
    ) -> None:
        try:
            result = await handler(req)
        except StanzaError as err:
            self.ctx.reply_error(req.stanza, err, req.sender)
            return
        if result is HANDLED:
            return
        if result is None:
            self.ctx.reply_error(req.stanza, StanzaError(_C.SERVICE_UNAVAILABLE), req.sender)
            return
        attrs = {
            "type": "result",
            "id": req.stanza.get("id") or "",
            "from": str(req.to),
            "to": str(req.sender),
        }
        reply = Element("iq", ns.CLIENT, attrs)
        if result is not EMPTY:
            assert isinstance(result, Element)
            reply.append(result)
        self.ctx.route(reply, req.to, req.sender)

    async def _info(self, req: IqRequest) -> IqResult:
        """XEP-0060 §5.1 (the service), §5.3 (a node)."""
        node_name = req.payload.get("node")
        query = Element("query", ns.DISCO_INFO, {"node": node_name} if node_name else None)
        if node_name:
            node = (await self.engine.load(req.to)).get(node_name)
            if node is None:
                raise StanzaError(_C.ITEM_NOT_FOUND)
            query.sub("identity", attrs={"category": "pubsub", "type": "leaf"})
            query.sub("feature", attrs={"var": PUBSUB})
            return query
        query.sub(
            "identity",
            attrs={"category": "pubsub", "type": "service", "name": "Publish-Subscribe"},
        )
        for var in sorted(
            [ns.DISCO_INFO, ns.DISCO_ITEMS, PUBSUB, OWNER]
            + [f"{PUBSUB}#{f}" for f in SERVICE_FEATURES]
        ):
            query.sub("feature", attrs={"var": var})
        return query

    async def _items(self, req: IqRequest) -> IqResult:
        """XEP-0060 §5.2: the nodes (a flat service: no collections)."""
        query = Element("query", ns.DISCO_ITEMS)
        if req.payload.get("node"):
            query.attrs["node"] = req.payload.get("node") or ""
            return query
        for name, node in sorted((await self.engine.load(req.to)).items()):
            attrs = {"jid": str(req.to), "node": name}
            if node.config.title:
                attrs["name"] = node.config.title
            query.sub("item", attrs=attrs)
        return query
