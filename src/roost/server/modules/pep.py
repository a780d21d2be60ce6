"""XEP-0163 Personal Eventing Protocol: a XEP-0060 PubSub service on every account's bare JID.

The pure model (nodes, configuration forms, errors) is ``roost.core.pubsub``; requests,
storage (host data, host = the account's bare JID, store ``pep``) and notifications are the
shared engine's (``roost.server.pubsub``); this module is PEP's policy and presence. Choices:

* Only the account publishes, creates, configures, purges and deletes (§1 "one publisher per
  node"); a publish to a node that does not exist creates it (§3 auto-create), with the
  publish-options as its configuration (XEP-0060 §7.1.5).
* Default access model ``presence``, ``max_items`` 1, ``send_last_published_item``
  ``on_sub_and_presence`` (§4 "smart defaults").
* Notifications (§4.3): to the account's available resources and to contacts with a presence
  subscription (``from``/``both``) allowed by the access model, each resource whose verified
  XEP-0115 caps list ``NODE+notify`` (the caps service); and to explicit subscriptions
  (XEP-0060 §6.1). A remote contact's resource is asked for its caps' disco#info by this
  server when its first available presence arrives (the caps service, §5.4).
* The last item of each node goes to a resource becoming available (§4.3.2: initial presence
  only), the account's own included, and to a contact the account just approved (§4.3.1).
* A user blocked by the account (XEP-0016, XEP-0191) gets nothing (§4.3.2 exception).
* Limits: ``max_nodes`` nodes per account, ``max_items`` items per node (what ``max``
  means), ``max_item_size`` bytes per payload.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Final

from roost.core.bookmarks import BOOKMARKS_0048, BOOKMARKS_0402, from_0402, to_0402
from roost.core.caps import Caps
from roost.core.errors import StanzaError
from roost.core.jid import JID
from roost.core.ns import DISCO_ITEMS
from roost.core.pubsub import OWNER, PUBSUB, Node, NodeConfig
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.api import IqRequest, ModuleContext
from roost.server.pubsub import PubSubEngine
from roost.server.services import CAPS, PEP, ROSTERS, CapsService, Roster, RosterService
from roost.server.session import Session

__all__ = ["AVATAR_METADATA", "PEP_FEATURES", "VCARD_UPDATE", "PepModule", "PepOptions"]

log = logging.getLogger(__name__)

_STORE: Final = "pep"
#: XEP-0223 §3 private data; XEP-0402 §3 bookmarks (every room kept)
_OPTIONS_0048: Final = {"pubsub#persist_items": ["true"], "pubsub#access_model": ["whitelist"]}
_OPTIONS_0402: Final = {
    "pubsub#persist_items": ["true"],
    "pubsub#access_model": ["whitelist"],
    "pubsub#max_items": ["max"],
    "pubsub#send_last_published_item": ["never"],
}

#: XEP-0084 avatar metadata node; XEP-0153 presence annotation
AVATAR_METADATA: Final = "urn:xmpp:avatar:metadata"
VCARD_UPDATE: Final = "vcard-temp:x:update"

#: XEP-0060 §10 features this service has (advertised as pubsub#NAME)
PEP_FEATURES: Final = (
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "auto-subscribe",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-items",
    "delete-nodes",
    "filtered-notifications",
    "item-ids",
    "last-published",
    "manage-affiliations",
    "modify-affiliations",
    "multi-items",
    "persistent-items",
    "presence-notifications",
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
class PepOptions:
    """``[modules.pep]``."""

    #: nodes one account may have
    max_nodes: int = field(default=64, metadata={"lo": 1, "hi": 100_000})
    #: items one node may keep (what ``pubsub#max_items = max`` means)
    max_items: int = field(default=256, metadata={"lo": 1, "hi": 100_000})
    #: bytes of one item's payload
    max_item_size: int = field(default=256 * 1024, metadata={"lo": 64, "hi": 16 * 1024 * 1024})


class PepModule:
    """PEP: the policy of a PubSub service on every account's bare JID."""

    name = "pep"
    depends = ("roster", "presence", "caps")
    Options = PepOptions
    #: PubSubPolicy
    auto_create = True

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        options: PepOptions = ctx.options or PepOptions()
        self.rosters: RosterService = ctx.service(ROSTERS)
        self.caps: CapsService = ctx.service(CAPS)
        self.engine = PubSubEngine(
            ctx,
            self,
            max_nodes=options.max_nodes,
            max_items=options.max_items,
            max_item_size=options.max_item_size,
        )
        #: accounts whose bookmarks are being converted (XEP-0402 §5.3)
        self._converting: set[JID] = set()
        #: accounts with a session (their nodes stay in memory)
        self._online: set[JID] = set()
        #: remote contacts' available resources seen by each account, with their caps
        self._remote: defaultdict[JID, dict[JID, Caps | None]] = defaultdict(dict)
        #: the avatar id each account's newest metadata item names (item payload -> id),
        #: so an available presence does not parse the metadata again
        self._avatar_ids: dict[JID, tuple[str, str]] = {}
        engine = self.engine
        ctx.iq("account", "get", PUBSUB, "pubsub", engine.get, advertise=False)
        ctx.iq("account", "set", PUBSUB, "pubsub", engine.set, advertise=False)
        ctx.iq("account", "get", OWNER, "pubsub", engine.owner_get, advertise=False)
        ctx.iq("account", "set", OWNER, "pubsub", engine.owner_set, advertise=False)
        # XEP-0163 §5: the account's disco#info shows the PEP identity and pubsub features
        ctx.account_identity("pubsub", "pep")
        ctx.account_feature(PUBSUB)
        ctx.account_feature(OWNER)
        ctx.account_feature(f"{BOOKMARKS_0402}#compat")  # XEP-0402 §5.3: with XEP-0049
        ctx.account_feature(f"{BOOKMARKS_0402}#compat-pep")  # and with XEP-0223 XEP-0048
        for feature in PEP_FEATURES:
            ctx.account_feature(f"{PUBSUB}#{feature}")
        ctx.observe(events.PRESENCE_BROADCAST, self._own_presence)
        # before the presence module broadcasts it
        ctx.filter(events.PRESENCE_BROADCAST, self._avatar_hash, priority=10)
        ctx.observe(events.SESSION_OPENING, self._opening)
        ctx.observe(events.SESSION_ABANDONED, self._closed)
        ctx.observe(events.SESSION_CLOSED, self._closed, priority=-100)
        ctx.account_items(self._node_items)
        ctx.observe(events.to_bare("presence"), self._contact_presence)
        ctx.observe(events.PRESENCE_OUTBOUND, self._outbound_presence)
        ctx.provide(PEP, engine)

    # -- the policy (roost.server.pubsub.PubSubPolicy) ------------------------------------

    def default_config(self) -> NodeConfig:
        return NodeConfig()  # XEP-0163 §4 "smart defaults": presence access, one item

    async def read_all(self, service: JID) -> dict[str, str]:
        # the account's own data (store "pep"): deleted with the account
        return await self.ctx.storage.list_data(service.local or "", service.domain, _STORE)

    async def write(self, service: JID, key: str, value: str | None) -> None:
        await self.ctx.storage.set_data(service.local or "", service.domain, _STORE, key, value)

    def keep_cached(self, service: JID) -> bool:
        return service in self._online

    def _opened(self, session: Session) -> None:
        self._online.add(session.jid.bare)

    def _closed(self, session: Session, error: object = None) -> None:
        """The account's last session ended: its nodes leave memory."""
        user = session.jid.bare
        if not any(s is not session for s in self.ctx.sessions.resources(user).values()):
            self._online.discard(user)
            self._remote.pop(user, None)
            self._avatar_ids.pop(user, None)
            self.engine.forget(user)

    def is_owner(self, service: JID, node: Node | None, who: JID) -> bool:
        return who.bare == service  # §1: one publisher per node, the account

    def may_create(self, service: JID, who: JID) -> bool:
        return who.bare == service

    async def roster_of(self, service: JID, node: Node) -> Roster | None:
        return await self.rosters.get(service)

    def _wants(self, features: frozenset[str] | None, node: str) -> bool:
        return features is not None and f"{node}+notify" in features

    async def targets(self, service: JID, node: Node) -> Iterable[JID]:
        """§4.3: the account's resources and its contacts' (presence subscription, access
        allowed) whose verified caps ask for ``node``."""
        owner = service
        targets: dict[JID, None] = {}
        for s in self.ctx.sessions.resources(owner).values():
            if s.available and self._wants(self.caps.features_of(s.jid), node.name):
                targets[s.jid] = None
        roster = await self.rosters.get(owner)
        remote = self._remote.get(owner, {})
        for contact in roster.subscribers():
            cjid = JID.parse(contact)
            if await self.engine.access_error(owner, node, cjid) is not None:
                continue
            if self.ctx.is_local_user(cjid):
                for s in self.ctx.sessions.resources(cjid).values():
                    if s.available and self._wants(self.caps.features_of(s.jid), node.name):
                        targets[s.jid] = None
            else:
                for full, caps in remote.items():
                    if (
                        full.bare == cjid
                        and caps is not None
                        and self._wants(self.caps.features_for(caps), node.name)
                    ):
                        targets[full] = None
        return targets

    # -- XEP-0402 §5.3: bookmarks in both formats ------------------------------------------

    async def changed(self, service: JID, node: str) -> None:
        """Keep XEP-0402 (one item per room) and XEP-0048 (``storage:bookmarks``, which
        XEP-0049 private storage also reads and writes, XEP-0411) the same bookmarks."""
        if node not in (BOOKMARKS_0048, BOOKMARKS_0402) or service in self._converting:
            return
        self._converting.add(service)  # our own publications below do not convert back
        try:
            await self._convert(service, node)
        except (StanzaError, ValueError) as err:  # a node configured otherwise: left alone
            log.info("bookmarks of %s not converted: %s", service, err)
        finally:
            self._converting.discard(service)

    async def _convert(self, service: JID, changed: str) -> None:
        engine = self.engine
        nodes = await engine.load(service)
        new_node = nodes.get(BOOKMARKS_0402)
        have = {
            i.id: parse_fragment(i.payload)
            for i in (new_node.items.values() if new_node is not None else ())
            if i.payload is not None
        }
        if changed == BOOKMARKS_0402:
            storage = from_0402(have)
            await engine.publish_as(service, BOOKMARKS_0048, "current", storage, _OPTIONS_0048)
            return
        old_node = nodes.get(BOOKMARKS_0048)
        storage = Element("storage", BOOKMARKS_0048)
        if old_node is not None and old_node.items:
            payload = old_node.last(1)[0].payload
            if payload is not None:
                storage = parse_fragment(payload)
        wanted = to_0402(storage)
        for jid, conference in wanted.items():
            old = have.get(jid)
            # unchanged as XEP-0048 sees it: keep the item (and its <extensions/>)
            if old is None or serialize(from_0402({jid: old})) != serialize(
                from_0402({jid: conference})
            ):
                await engine.publish_as(service, BOOKMARKS_0402, jid, conference, _OPTIONS_0402)
        for jid in set(have) - set(wanted):
            await engine.retract_as(service, BOOKMARKS_0402, jid)

    async def _send_last(
        self, owner: JID, to: JID, features: frozenset[str] | None, *, subscribed: bool = False
    ) -> None:
        """§4.3.2: the last item of each node ``to`` asks for and may see."""
        if features is None:
            return
        engine = self.engine
        for node in list((await engine.load(owner)).values()):
            if node.config.send_last_published_item != "on_sub_and_presence" or not node.items:
                continue
            if not self._wants(features, node.name):
                continue
            if await engine.access_error(owner, node, to, subscribed=subscribed) is not None:
                continue
            await engine.send_items(owner, node, node.last(1), [to])

    # -- presence (XEP-0163 §4.3.1, §4.3.2) -----------------------------------------------

    async def _node_items(self, req: IqRequest) -> list[Element]:
        """XEP-0163 §5: the nodes the requester may subscribe to or read, as disco#items."""
        if not await self.ctx.accounts.exists(req.to.local or "", req.to.domain):
            return []
        items = []
        for name, node in sorted((await self.engine.load(req.to)).items()):
            if await self.engine.access_error(req.to, node, req.sender) is None:
                items.append(Element("item", DISCO_ITEMS, {"jid": str(req.to), "node": name}))
        return items

    def _opening(self, session: Session, waits: list[Awaitable[object]]) -> None:
        """The account's nodes are read before its session is bound (for ``_avatar_hash``)."""
        self._opened(session)
        waits.append(self.engine.load(session.jid.bare))

    def _avatar_hash(self, stanza: Element, sender: JID, session: Session | None) -> bool:
        """XEP-0398 §3 / XEP-0153 §3.2: available presence carries the hash of the avatar
        published with XEP-0084 (the metadata's ``info`` id is that SHA-1), unless the
        client put its own ``vcard-temp:x:update``; an empty ``<photo/>`` means none."""
        if session is None or stanza.get("type") is not None:
            return False
        own = stanza.find("x", VCARD_UPDATE)
        if own is not None and own.find("photo", VCARD_UPDATE) is not None:
            return False  # the client's own (an empty <photo/>: no avatar)
        node = (self.engine.cached(sender.bare) or {}).get(AVATAR_METADATA)
        if node is None or not node.items:
            return False
        payload = node.last(1)[0].payload or ""
        known = self._avatar_ids.get(sender.bare)
        if known is not None and known[0] == payload:
            avatar_id = known[1]
        else:
            info = None
            if payload:
                try:
                    info = parse_fragment(payload).find("info", AVATAR_METADATA)
                except ValueError:
                    log.warning("unreadable avatar metadata of %s", sender.bare)
                    return False
            avatar_id = (info.get("id") or "") if info is not None else ""
            self._avatar_ids[sender.bare] = (payload, avatar_id)
        if own is not None:  # §3: an <x/> without a <photo/> MUST be overwritten
            stanza.children.remove(own)
        x = Element("x", VCARD_UPDATE)
        x.sub("photo", text=avatar_id)
        stanza.append(x)
        return False

    def _own_presence(self, stanza: Element, sender: JID, session: Session | None) -> None:
        """A local resource's initial presence: the last items of its own account, and of
        the local accounts it is subscribed to."""
        if session is None or stanza.get("type") is not None or session.available:
            return
        self.ctx.spawn(self._initial(session))

    async def _initial(self, session: Session) -> None:
        features = await self.caps.resolve_features(session.jid)
        if features is None:
            return
        user = session.jid.bare
        await self._send_last(user, session.jid, features)
        roster: Roster | None = self.rosters.cached(user)
        if roster is None:
            return
        for contact in roster.subscriptions():
            cjid = JID.parse(contact)
            if self.ctx.is_local_user(cjid):
                await self._send_last(cjid, session.jid, features)

    def _contact_presence(self, stanza: Element, sender: JID, to: JID) -> None:
        """Presence of a remote contact's resource: note its caps; on its first available
        presence send it the last items."""
        if self.ctx.is_local_user(sender) or sender.resource is None:
            return  # local resources: ``_own_presence``
        ptype = stanza.get("type")
        seen = self._remote[to]
        if ptype == "unavailable":
            seen.pop(sender, None)
            return
        if ptype is not None:
            return
        first = sender not in seen
        caps = Caps.find_in(stanza)
        seen[sender] = caps
        if first and caps is not None:
            # apart: the caps check waits for the contact's answer on the same s2s stream
            self.ctx.spawn_apart(self._remote_available(to, sender, caps))

    async def _remote_available(self, owner: JID, contact: JID, caps: Caps) -> None:
        """A remote contact's new resource: check its caps (asking it once per 'ver'), then
        send it the last items it asks for (§4.3.2)."""
        await self._send_last(owner, contact, await self.caps.resolve_remote(contact, caps))

    def _outbound_presence(self, stanza: Element, sender: JID, to: JID, session: Session) -> None:
        """§4.3.1: the account approved a contact's subscription: the last items to the
        contact's resources that ask for them."""
        if stanza.get("type") != "subscribed":
            return
        self.ctx.spawn(self._approved(sender.bare, to.bare))

    async def _approved(self, owner: JID, contact: JID) -> None:
        if self.ctx.is_local_user(contact):
            targets = [
                (s.jid, self.caps.features_of(s.jid))
                for s in self.ctx.sessions.resources(contact).values()
                if s.available
            ]
        else:
            targets = [
                (full, self.caps.features_for(c) if c is not None else None)
                for full, c in self._remote.get(owner, {}).items()
                if full.bare == contact
            ]
        for full, features in targets:
            await self._send_last(owner, full, features, subscribed=True)
