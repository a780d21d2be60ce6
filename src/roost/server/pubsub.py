"""The XEP-0060 PubSub engine the PEP module (every account's bare JID, XEP-0163) and the
generic service module (``pubsub.DOMAIN``) share: requests, storage, access, notifications.

A ``PubSubEngine`` serves any number of PubSub services, each named by its JID (an account's
bare JID, or a service domain); what differs between PEP and a generic service is a
``PubSubPolicy``: who owns a node, who may create one, whose roster the ``presence`` and
``roster`` access models use, and who else gets notifications (PEP: caps ``+notify``).
The policy also keeps the documents (one per node: configuration, affiliations,
subscriptions; one per item): PEP in the account's own data, which goes with the account,
a generic service in host data. A service's nodes are read when it is first used and kept
in memory while the policy says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol

from roost.core import ns
from roost.core.delay import delay_element
from roost.core.errors import StanzaError, StanzaErrorCondition, StanzaErrorType
from roost.core.jid import JID, InvalidJID
from roost.core.pubsub import (
    DATA,
    EVENT,
    NODE_CONFIG,
    OWNER,
    PUBLISH_OPTIONS,
    PUBSUB,
    Item,
    Node,
    NodeConfig,
    config_form,
    form_fields,
    form_type,
    parse_config,
    pubsub_error,
)
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.services import Roster
from roost.server.session import Session

__all__ = ["PubSubEngine", "PubSubPolicy"]

log = logging.getLogger(__name__)

_C = StanzaErrorCondition
_T = StanzaErrorType
_AFFILIATIONS: Final = ("owner", "publisher", "member", "none", "outcast")
#: services not in use whose nodes stay in memory
RECENT_SERVICES: Final = 4096


class PubSubPolicy(Protocol):
    """What one kind of PubSub service decides (PEP, a generic service)."""

    #: a publish to a missing node creates it (XEP-0060 §7.1.4 auto-create)
    auto_create: bool

    def default_config(self) -> NodeConfig: ...

    async def read_all(self, service: JID) -> dict[str, str]:
        """Every stored document of a service (key -> text)."""
        ...

    async def write(self, service: JID, key: str, value: str | None) -> None:
        """Store or (None) delete one document; committed when it returns."""
        ...

    def keep_cached(self, service: JID) -> bool:
        """Keep a service's nodes in memory once read (PEP: while its account is online)."""
        ...

    def is_owner(self, service: JID, node: Node | None, who: JID) -> bool:
        """``who`` owns ``node`` (or, with None, the service itself)."""
        ...

    def may_create(self, service: JID, who: JID) -> bool: ...

    async def roster_of(self, service: JID, node: Node) -> Roster | None:
        """The roster the ``presence`` and ``roster`` access models look at."""
        ...

    async def targets(self, service: JID, node: Node) -> Iterable[JID]:
        """Who gets notifications besides explicit subscribers (PEP: ``+notify``)."""
        ...

    async def changed(self, service: JID, node: str) -> None:
        """A node's items changed (published, retracted, purged, deleted), notified."""
        ...


def _node_key(name: str) -> str:
    return "n" + name


def _item_key(node: str, item_id: str) -> str:
    return "i" + json.dumps([node, item_id])


class PubSubEngine:
    """XEP-0060 §5-§8 for the services of one policy."""

    def __init__(
        self,
        ctx: ModuleContext,
        policy: PubSubPolicy,
        *,
        max_nodes: int,
        max_items: int,
        max_item_size: int,
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.max_nodes = max_nodes
        self.max_items = max_items
        self.max_item_size = max_item_size
        #: nodes of services in use (accounts online)
        self._nodes: dict[JID, dict[str, Node]] = {}
        #: nodes of other services read lately, oldest first (bounded)
        self._recent: OrderedDict[JID, dict[str, Node]] = OrderedDict()
        self._locks: defaultdict[JID, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: node name -> what other modules run after that node of any service changed
        self._watchers: dict[str, list[Callable[[JID], Awaitable[None]]]] = {}

    # -- storage -------------------------------------------------------------------------

    def cached(self, owner: JID) -> dict[str, Node] | None:
        """A service's nodes if they are in memory (``load`` reads them)."""
        nodes = self._nodes.get(owner)
        return nodes if nodes is not None else self._recent.get(owner)

    async def load(self, owner: JID) -> dict[str, Node]:
        """A service's nodes, read from storage unless in memory."""
        nodes = self._nodes.get(owner)
        if nodes is not None:
            return nodes
        nodes = self._recent.get(owner)
        if nodes is not None:
            if self.policy.keep_cached(owner):
                self._nodes[owner] = self._recent.pop(owner)
            else:
                self._recent.move_to_end(owner)
            return nodes
        raw = await self.policy.read_all(owner)
        nodes = {}
        items: list[tuple[str, Item]] = []
        for key, value in raw.items():
            try:
                if key.startswith("n"):
                    nodes[key[1:]] = Node.from_json(key[1:], value)
                elif key.startswith("i"):
                    node_name, item_id = json.loads(key[1:])
                    items.append((node_name, Item.from_json(item_id, value)))
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable PEP data %r of %s", key, owner)
        for node_name, item in sorted(items, key=lambda p: p[1].seq):
            node = nodes.get(node_name)
            if node is not None:
                node.put(item)
        if self.policy.keep_cached(owner):
            return self._nodes.setdefault(owner, nodes)
        # services not in use (an offline account read by its contacts): the most recent
        # few, so a login does not read every contact's nodes each time
        nodes = self._recent.setdefault(owner, nodes)
        while len(self._recent) > RECENT_SERVICES:
            old, old_nodes = self._recent.popitem(last=False)
            if self._locks.get(old) is not None and self._locks[old].locked():
                self._recent[old] = old_nodes  # in use: keep it, try again later
                break
            self._locks.pop(old, None)
        return nodes

    def forget(self, owner: JID) -> None:
        """Drop a service's nodes from memory (they are read again when next used)."""
        if not self._locks[owner].locked():
            self._nodes.pop(owner, None)
            self._recent.pop(owner, None)
            self._locks.pop(owner, None)

    async def _save_node(self, owner: JID, node: Node) -> None:
        await self.policy.write(owner, _node_key(node.name), node.meta_json())

    async def _drop_items(self, owner: JID, node: str, items: Iterable[Item]) -> None:
        for item in items:
            await self.policy.write(owner, _item_key(node, item.id), None)

    # -- access (XEP-0060 §4.5, §6.1.3, §6.5.9) ------------------------------------------

    async def access_error(
        self, owner: JID, node: Node, who: JID, *, subscribed: bool = False
    ) -> StanzaError | None:
        """Why ``who`` may not see ``node`` (None: it may)."""
        if self.policy.is_owner(owner, node, who):
            return None
        bare = str(who.bare)
        affiliation = node.affiliations.get(bare)
        if affiliation == "outcast":
            return pubsub_error(_C.FORBIDDEN)
        model = node.config.access_model
        if model == "open":
            return None
        if model == "whitelist":
            if affiliation in ("owner", "publisher", "member"):
                return None
            return pubsub_error(_C.NOT_ALLOWED, "closed-node")
        roster = await self.policy.roster_of(owner, node)
        if roster is None:  # nobody's roster to look at
            return pubsub_error(_C.NOT_AUTHORIZED, "presence-subscription-required")
        has_from = subscribed or roster.state(bare).has_from
        if model == "presence":
            if has_from:
                return None
            return pubsub_error(_C.NOT_AUTHORIZED, "presence-subscription-required")
        item = roster.items.get(bare)
        groups = set(item.groups) if item is not None else set()
        if has_from and groups & set(node.config.roster_groups_allowed):
            return None
        return pubsub_error(_C.NOT_AUTHORIZED, "not-in-roster-group")

    def _own(self, req: IqRequest, node: Node | None) -> None:
        if not self.policy.is_owner(req.to, node, req.sender):
            raise pubsub_error(_C.FORBIDDEN)

    async def _node(self, req: IqRequest, name: str | None) -> Node:
        if not name:
            raise pubsub_error(_C.BAD_REQUEST, "nodeid-required")
        node = (await self.load(req.to)).get(name)
        if node is None:
            raise pubsub_error(_C.ITEM_NOT_FOUND)
        return node

    # -- entity requests (XEP-0060 §5, §6, §7) --------------------------------------------

    @staticmethod
    def _action(req: IqRequest) -> Element:
        """The one action of a request: ``<publish/>`` may come with ``<publish-options/>``
        (§7.1.5), ``<create/>`` with ``<configure/>`` (§8.1.3)."""
        children = list(req.payload.elements())
        tags = [c.tag for c in children]
        if len(children) == 2 and tags in (
            ["publish", "publish-options"],
            ["create", "configure"],
        ):
            return children[0]
        if len(children) != 1:
            raise pubsub_error(_C.BAD_REQUEST)
        return children[0]

    async def get(self, req: IqRequest) -> IqResult:
        action = self._action(req)
        if action.tag == "items":
            return await self._items(req, action)
        if action.tag == "subscriptions":
            return await self._subscriptions(req, action)
        if action.tag == "affiliations":
            return await self._affiliations(req, action)
        raise pubsub_error(_C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=action.tag)

    async def set(self, req: IqRequest) -> IqResult:
        action = self._action(req)
        handler = {
            "publish": self._publish,
            "retract": self._retract,
            "subscribe": self._subscribe,
            "unsubscribe": self._unsubscribe,
            "create": self._create,
        }.get(action.tag)
        if handler is None:
            raise pubsub_error(_C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=action.tag)
        return await handler(req, action)

    async def _items(self, req: IqRequest, action: Element) -> IqResult:
        """§6.5: all items, the latest ``max_items``, or some by id."""
        node = await self._node(req, action.get("node"))
        error = await self.access_error(req.to, node, req.sender)
        if error is not None:
            raise error
        wanted = [i.get("id") for i in action.find_all("item", PUBSUB)]
        if wanted:
            found = [node.items[i] for i in wanted if i is not None and i in node.items]
        else:
            limit = action.get("max_items")
            if limit is not None and not limit.isdigit():
                raise pubsub_error(_C.BAD_REQUEST)
            found = node.last(int(limit) if limit is not None else None)
        pubsub = Element("pubsub", PUBSUB)
        items = pubsub.sub("items", attrs={"node": node.name})
        for item in found:
            items.append(node.item_element(item, PUBSUB))
        return pubsub

    async def _subscriptions(self, req: IqRequest, action: Element) -> IqResult:
        """§5.6: the requester's own subscriptions."""
        nodes = await self.load(req.to)
        mine = str(req.sender.bare)
        pubsub = Element("pubsub", PUBSUB)
        subs = pubsub.sub("subscriptions")
        wanted = action.get("node")
        for node in nodes.values():
            if wanted and node.name != wanted:
                continue
            for jid, subid in node.subscriptions.items():
                if JID.parse(jid).bare == JID.parse(mine):
                    subs.sub(
                        "subscription",
                        attrs={
                            "node": node.name,
                            "jid": jid,
                            "subid": subid,
                            "subscription": "subscribed",
                        },
                    )
        return pubsub

    async def _affiliations(self, req: IqRequest, action: Element) -> IqResult:
        """§5.7: the requester's own affiliations."""
        nodes = await self.load(req.to)
        pubsub = Element("pubsub", PUBSUB)
        affs = pubsub.sub("affiliations")
        mine = str(req.sender.bare)
        for node in nodes.values():
            if self.policy.is_owner(req.to, node, req.sender):
                affiliation: str | None = "owner"
            else:
                affiliation = node.affiliations.get(mine)
            if affiliation is not None:
                affs.sub("affiliation", attrs={"node": node.name, "affiliation": affiliation})
        return pubsub

    def _default(self, namespace: str) -> Element:
        """§8.3: the default configuration."""
        pubsub = Element("pubsub", namespace)
        pubsub.sub("default").append(config_form(self.policy.default_config(), self.max_items))
        return pubsub

    def _config_of(self, action: Element | None, base: NodeConfig) -> NodeConfig:
        """A configuration from a node_config form (§8.1.3, §8.2.4)."""
        if action is None:
            return base
        form = action.find("x", DATA)
        if form is None:
            return base
        if form_type(form) != NODE_CONFIG:
            raise pubsub_error(_C.BAD_REQUEST, None, "wrong FORM_TYPE")
        return parse_config(form_fields(form), base, self.max_items)

    async def _new_node(self, owner: JID, name: str, config: NodeConfig, creator: JID) -> Node:
        nodes = await self.load(owner)
        if len(nodes) >= self.max_nodes:
            raise pubsub_error(_C.NOT_ALLOWED, "max-nodes-exceeded")
        node = Node(name, config, affiliations={str(creator.bare): "owner"})
        nodes[name] = node
        await self._save_node(owner, node)
        return node

    async def _create(self, req: IqRequest, action: Element) -> IqResult:
        """§8.1: create a node, optionally configured (§8.1.3)."""
        if not self.policy.may_create(req.to, req.sender):
            raise pubsub_error(_C.FORBIDDEN)  # §8.1.3.1
        name = action.get("node")
        if not name:
            # §8.1.2 instant nodes: PEP nodes are named by their namespace (XEP-0163 §1)
            raise pubsub_error(_C.NOT_ACCEPTABLE, "nodeid-required")
        config = self._config_of(
            req.payload.find("configure", PUBSUB), self.policy.default_config()
        )
        async with self._locks[req.to]:
            if name in await self.load(req.to):
                raise pubsub_error(_C.CONFLICT)
            await self._new_node(req.to, name, config, req.sender)
        return EMPTY

    async def _publish(self, req: IqRequest, action: Element) -> IqResult:
        """§7.1: publish one item (XEP-0163 §3: auto-create, publish-options)."""
        owner = req.to
        name = action.get("node")
        if not name:
            raise pubsub_error(_C.BAD_REQUEST, "nodeid-required")
        items = action.find_all("item", PUBSUB)
        if len(items) != 1:
            raise pubsub_error(_C.BAD_REQUEST, "item-required" if not items else "invalid-payload")
        payloads = list(items[0].elements())
        if len(payloads) != 1:
            raise pubsub_error(
                _C.BAD_REQUEST, "payload-required" if not payloads else "invalid-payload"
            )
        payload = serialize(payloads[0], "")
        if len(payload.encode()) > self.max_item_size:
            raise pubsub_error(_C.NOT_ACCEPTABLE, "payload-too-big")
        options = req.payload.find("publish-options", PUBSUB)
        fields = None
        if options is not None and (form := options.find("x", DATA)) is not None:
            if form_type(form) != PUBLISH_OPTIONS:
                raise pubsub_error(_C.BAD_REQUEST, None, "wrong FORM_TYPE")
            fields = form_fields(form)
        item_id = items[0].get("id") or self.ctx.new_id()
        await self._do_publish(owner, name, item_id, payload, req.sender, fields)
        pubsub = Element("pubsub", PUBSUB)
        pubsub.sub("publish", attrs={"node": name}).sub("item", attrs={"id": item_id})
        return pubsub

    def _preconditions(self, fields: dict[str, list[str]] | None, base: NodeConfig) -> NodeConfig:
        """§7.1.5: ``base`` with publish-options applied; one it does not know or cannot
        take is ``conflict`` + ``precondition-not-met``."""
        if not fields:
            return base
        try:
            return parse_config(fields, base, self.max_items)
        except StanzaError:
            raise pubsub_error(_C.CONFLICT, "precondition-not-met") from None

    async def _do_publish(
        self,
        owner: JID,
        name: str,
        item_id: str,
        payload: str,
        publisher: JID,
        fields: dict[str, list[str]] | None,
    ) -> None:
        async with self._locks[owner]:
            nodes = await self.load(owner)
            node = nodes.get(name)
            if node is None:
                if not self.policy.auto_create:
                    raise pubsub_error(_C.ITEM_NOT_FOUND)  # §7.1.3.3
                if not self.policy.may_create(owner, publisher):
                    raise pubsub_error(_C.FORBIDDEN)
                config = self._preconditions(fields, self.policy.default_config())
                node = await self._new_node(owner, name, config, publisher)
            elif not self._may_publish(owner, node, publisher):
                raise pubsub_error(_C.FORBIDDEN)  # §7.1.3.1
            elif self._preconditions(fields, node.config) != node.config:
                raise pubsub_error(_C.CONFLICT, "precondition-not-met")  # §7.1.5
            item = Item(item_id, payload, str(publisher), node.seq + 1, time.time())
            dropped = node.put(item)
            if node.config.persist_items:
                await self.policy.write(owner, _item_key(name, item_id), item.to_json())
            await self._drop_items(owner, name, [d for d in dropped if d.id != item_id])
            if not node.config.persist_items:
                node.items.clear()
        if node.config.deliver_notifications:
            event_items = Element("items", EVENT, {"node": name})
            event_items.append(node.item_element(item, EVENT, payload=node.config.deliver_payloads))
            await self._broadcast(owner, node, event_items)
        await self._changed(owner, name)

    def _may_publish(self, service: JID, node: Node, who: JID) -> bool:
        """§7.1.3.1 and the ``publish_model`` (§16.4.4)."""
        if self.policy.is_owner(service, node, who):
            return True
        affiliation = node.affiliations.get(str(who.bare))
        if affiliation == "outcast":
            return False
        model = node.config.publish_model
        if model == "open":
            return True
        if model == "subscribers" and any(
            JID.parse(j).bare == who.bare for j in node.subscriptions
        ):
            return True
        return affiliation == "publisher"

    # -- for other modules (XEP-0411, XEP-0398) -------------------------------------------

    def watch(self, node: str, callback: Callable[[JID], Awaitable[None]]) -> Callable[[], None]:
        """Run ``callback(owner)`` after ``node`` of a service changed (``PepService``)."""
        callbacks = self._watchers.setdefault(node, [])
        callbacks.append(callback)
        return lambda: callbacks.remove(callback) if callback in callbacks else None

    async def _changed(self, owner: JID, name: str) -> None:
        await self.policy.changed(owner, name)
        for callback in list(self._watchers.get(name, ())):
            try:
                await callback(owner)
            except Exception:
                log.exception("a watcher of node %s of %s failed", name, owner)

    async def item_payload(self, owner: JID, node: str, item_id: str) -> Element | None:
        found = (await self.load(owner)).get(node)
        item = found.items.get(item_id) if found is not None else None
        return None if item is None or item.payload is None else parse_fragment(item.payload)

    async def access_model(self, owner: JID, node: str) -> str | None:
        found = (await self.load(owner)).get(node)
        return None if found is None else found.config.access_model

    async def publish_as(
        self, owner: JID, node: str, item_id: str, payload: Element, options: dict[str, list[str]]
    ) -> None:
        """Publish as the service's owner (``PepService``)."""
        await self._do_publish(owner, node, item_id, serialize(payload, ""), owner, options)

    async def last_payload(self, owner: JID, node: str) -> Element | None:
        found = (await self.load(owner)).get(node)
        if found is None or not found.items:
            return None
        item = found.last(1)[0]
        return None if item.payload is None else parse_fragment(item.payload)

    async def _retract(self, req: IqRequest, action: Element) -> IqResult:
        """§7.2: delete an item, notifying with ``notify`` (§7.2.2.1)."""
        node = await self._node(req, action.get("node"))
        if not self._may_publish(req.to, node, req.sender):
            raise pubsub_error(_C.FORBIDDEN)  # §7.2.3.1
        ids = [i.get("id") for i in action.find_all("item", PUBSUB)]
        if len(ids) != 1 or not ids[0]:
            raise pubsub_error(_C.BAD_REQUEST, "item-required")
        await self._do_retract(req.to, node, ids[0], notify=action.get("notify") in ("1", "true"))
        return EMPTY

    async def _do_retract(self, owner: JID, node: Node, item_id: str, *, notify: bool) -> None:
        async with self._locks[owner]:
            item = node.items.pop(item_id, None)
            if item is None:
                raise pubsub_error(_C.ITEM_NOT_FOUND)
            await self._drop_items(owner, node.name, [item])
        if notify or node.config.notify_retract:
            event_items = Element("items", EVENT, {"node": node.name})
            event_items.sub("retract", attrs={"id": item_id})
            await self._broadcast(owner, node, event_items)
        await self._changed(owner, node.name)

    async def retract_as(self, owner: JID, node: str, item_id: str) -> None:
        """Retract an item as the service's owner (bookmarks conversion)."""
        found = (await self.load(owner)).get(node)
        if found is not None and item_id in found.items:
            await self._do_retract(owner, found, item_id, notify=True)

    async def _subscribe(self, req: IqRequest, action: Element) -> IqResult:
        """§6.1: an explicit subscription (the 'jid' must be the requester's, §6.1.3.1)."""
        node = await self._node(req, action.get("node"))
        try:
            jid = JID.parse(action.get("jid") or "")
        except InvalidJID:
            raise pubsub_error(_C.BAD_REQUEST, "invalid-jid") from None
        if jid.bare != req.sender.bare:
            raise pubsub_error(_C.BAD_REQUEST, "invalid-jid")
        error = await self.access_error(req.to, node, req.sender)
        if error is not None:
            raise error
        async with self._locks[req.to]:
            subid = node.subscriptions.get(str(jid)) or self.ctx.new_id()
            node.subscriptions[str(jid)] = subid
            await self._save_node(req.to, node)
        if node.config.send_last_published_item != "never" and node.items:
            await self.send_items(req.to, node, node.last(1), [jid])  # §6.1.7
        pubsub = Element("pubsub", PUBSUB)
        pubsub.sub(
            "subscription",
            attrs={
                "node": node.name,
                "jid": str(jid),
                "subid": subid,
                "subscription": "subscribed",
            },
        )
        return pubsub

    async def _unsubscribe(self, req: IqRequest, action: Element) -> IqResult:
        """§6.2."""
        node = await self._node(req, action.get("node"))
        jid_attr = action.get("jid") or ""
        try:
            jid = JID.parse(jid_attr)
        except InvalidJID:
            raise pubsub_error(_C.BAD_REQUEST, "invalid-jid") from None
        if jid.bare != req.sender.bare:
            raise pubsub_error(_C.FORBIDDEN)  # §6.2.3.3
        async with self._locks[req.to]:
            if node.subscriptions.pop(str(jid), None) is None:
                # §6.2.3.2
                raise pubsub_error(_C.UNEXPECTED_REQUEST, "not-subscribed", type=_T.CANCEL)
            await self._save_node(req.to, node)
        return EMPTY

    # -- owner requests (XEP-0060 §8) -------------------------------------------------------

    async def owner_get(self, req: IqRequest) -> IqResult:
        action = self._action(req)
        if action.tag == "default":
            return self._default(OWNER)
        node = await self._node(req, action.get("node"))
        self._own(req, node)
        result = Element("pubsub", OWNER)
        if action.tag == "configure":
            form = config_form(node.config, self.max_items, node=node.name)
            result.sub("configure", attrs={"node": node.name}).append(form)
        elif action.tag == "affiliations":
            affs = result.sub("affiliations", attrs={"node": node.name})
            for jid, affiliation in sorted(node.affiliations.items()):
                affs.sub("affiliation", attrs={"jid": jid, "affiliation": affiliation})
        elif action.tag == "subscriptions":
            subs = result.sub("subscriptions", attrs={"node": node.name})
            for jid, subid in sorted(node.subscriptions.items()):
                subs.sub(
                    "subscription", attrs={"jid": jid, "subid": subid, "subscription": "subscribed"}
                )
        else:
            raise pubsub_error(_C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=action.tag)
        return result

    async def owner_set(self, req: IqRequest) -> IqResult:
        action = self._action(req)
        node = await self._node(req, action.get("node"))
        self._own(req, node)
        owner = req.to
        if action.tag == "configure":
            form = action.find("x", DATA)
            if form is None:
                raise pubsub_error(_C.BAD_REQUEST)
            if form.get("type") == "cancel":
                return EMPTY
            config = self._config_of(action, node.config)
            async with self._locks[owner]:
                node.config = config
                await self._drop_items(owner, node.name, node.trim())
                await self._save_node(owner, node)
        elif action.tag == "delete":
            async with self._locks[owner]:
                nodes = await self.load(owner)
                nodes.pop(node.name, None)
                await self._drop_items(owner, node.name, list(node.items.values()))
                await self.policy.write(owner, _node_key(node.name), None)
            if node.config.notify_delete:
                await self._broadcast(owner, node, Element("delete", EVENT, {"node": node.name}))
            await self._changed(owner, node.name)
        elif action.tag == "purge":
            async with self._locks[owner]:
                items = list(node.items.values())
                node.items.clear()
                await self._drop_items(owner, node.name, items)
            if node.config.notify_retract:
                await self._broadcast(owner, node, Element("purge", EVENT, {"node": node.name}))
            await self._changed(owner, node.name)
        elif action.tag == "affiliations":
            changes: dict[str, str] = {}
            for a in action.find_all("affiliation", OWNER):
                try:
                    jid = str(JID.parse(a.get("jid") or "").bare)
                except InvalidJID:
                    raise pubsub_error(_C.BAD_REQUEST, "invalid-jid") from None
                affiliation = a.get("affiliation")
                if affiliation not in _AFFILIATIONS or jid == str(req.sender.bare):
                    raise pubsub_error(_C.NOT_ACCEPTABLE)  # §8.9.2.4
                changes[jid] = affiliation
            async with self._locks[owner]:
                for jid, affiliation in changes.items():
                    if affiliation == "none":
                        node.affiliations.pop(jid, None)
                    else:
                        node.affiliations[jid] = affiliation
                await self._save_node(owner, node)
        else:
            raise pubsub_error(_C.FEATURE_NOT_IMPLEMENTED, "unsupported", feature=action.tag)
        return EMPTY

    # -- notifications (XEP-0163 §4.3, XEP-0060 §7.1.2) -------------------------------------

    async def _broadcast(self, owner: JID, node: Node, payload: Element) -> None:
        targets = dict.fromkeys(await self.policy.targets(owner, node))
        for jid_str in node.subscriptions:  # XEP-0060 §7.1.2: explicit subscribers
            jid = JID.parse(jid_str)
            if await self.access_error(owner, node, jid) is None:
                targets[jid] = None
        for to in targets:
            await self._send(owner, to, payload)

    async def _send(
        self, owner: JID, to: JID, payload: Element, stamp: float | None = None
    ) -> None:
        """One ``headline`` notification (XEP-0163 §4.3.3) from the service's JID; an item
        sent later than published carries its publication time (XEP-0203)."""
        msg = Element(
            "message",
            ns.CLIENT,
            {"from": str(owner), "to": str(to), "type": "headline", "id": self.ctx.new_id()},
        )
        msg.sub("event", EVENT).append(payload)
        if stamp is not None:
            msg.append(delay_element(stamp, str(owner)))
        if self.ctx.is_local_user(to):
            # XEP-0163 §4.3.2: not to someone the account blocked (nor who blocked it)
            if to.bare != owner and await self.ctx.privacy_refuses_loaded(
                msg, owner, to, out=self.ctx.is_local_user(owner)
            ):
                return
            sessions: list[Session] = []
            if to.resource is None:
                sessions = [s for s in self.ctx.sessions.resources(to).values() if s.available]
            elif (session := self.ctx.sessions.get(to)) is not None:
                sessions = [session]
            if sessions:
                self.ctx.deliver_message(msg, owner, to, sessions)
        else:
            self.ctx.route(msg, owner, to)

    async def send_items(
        self, owner: JID, node: Node, items: list[Item], targets: Iterable[JID]
    ) -> None:
        """Items published earlier (the last one, XEP-0060 §6.1.7, XEP-0163 §4.3.2)."""
        for to in targets:
            event_items = Element("items", EVENT, {"node": node.name})
            for item in items:
                event_items.append(
                    node.item_element(item, EVENT, payload=node.config.deliver_payloads)
                )
            stamps = [i.stamp for i in items if i.stamp is not None]
            await self._send(owner, to, event_items, max(stamps) if stamps else None)
