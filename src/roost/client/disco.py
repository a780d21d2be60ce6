"""XEP-0030 Service Discovery: querying others (with a cache) and describing ourselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from roost.client.stanzas import parse_jid
from roost.core import ns
from roost.core.jid import JID
from roost.core.xml.element import XML_LANG, Element

if TYPE_CHECKING:
    from roost.client.client import Client

__all__ = ["Disco", "DiscoInfo", "DiscoItem", "Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """XEP-0030 §3.1: category and type are required, name and xml:lang optional."""

    category: str
    type: str
    name: str | None = None
    lang: str | None = None

    def to_element(self) -> Element:
        attrs = {"category": self.category, "type": self.type}
        if self.name:
            attrs["name"] = self.name
        if self.lang:
            attrs[XML_LANG] = self.lang
        return Element("identity", ns.DISCO_INFO, attrs)


@dataclass(frozen=True, slots=True)
class DiscoInfo:
    """A disco#info answer; ``element`` is the ``<query/>`` (forms, XEP-0128, live there)."""

    identities: tuple[Identity, ...]
    features: frozenset[str]
    element: Element

    @classmethod
    def from_query(cls, query: Element) -> DiscoInfo:
        identities = tuple(
            Identity(cat, typ, el.get("name"), el.get(XML_LANG))
            for el in query.find_all("identity", ns.DISCO_INFO)
            if (cat := el.get("category")) and (typ := el.get("type"))
        )
        features = frozenset(
            var for el in query.find_all("feature", ns.DISCO_INFO) if (var := el.get("var"))
        )
        return cls(identities, features, query)

    def has(self, feature: str) -> bool:
        return feature in self.features


@dataclass(frozen=True, slots=True)
class DiscoItem:
    """XEP-0030 §4.1: one item (an entity, optionally a node of it)."""

    jid: JID
    node: str | None = None
    name: str | None = None


class Disco:
    """Queries with a cache of disco#info answers per (JID, node).

    The cache of a full JID is dropped when it goes unavailable (its software may change
    before it comes back); ``info(..., cached=False)`` always asks.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._cache: dict[tuple[JID, str | None], DiscoInfo] = {}
        self._items: dict[tuple[JID, str | None], list[DiscoItem]] = {}

    async def info(
        self, jid: JID | str | None = None, node: str | None = None, *, cached: bool = True
    ) -> DiscoInfo:
        """disco#info of ``jid`` (default: our server), optionally of a ``node`` (§3)."""
        target = self._client.server_jid if jid is None else _jid(jid)
        key = (target, node)
        if cached and (hit := self._cache.get(key)) is not None:
            return hit
        if cached and node is None and (known := self._client.caps.known(target)) is not None:
            return known  # XEP-0115 §8.2: what verified caps say needs no query
        query = Element("query", ns.DISCO_INFO, {"node": node} if node else None)
        result = await self._client.request(query, to=target)
        info = DiscoInfo.from_query(result if result is not None else query)
        self._cache[key] = info
        return info

    async def items(
        self, jid: JID | str | None = None, node: str | None = None, *, cached: bool = True
    ) -> list[DiscoItem]:
        """disco#items of ``jid`` (default: our server) (§4)."""
        target = self._client.server_jid if jid is None else _jid(jid)
        key = (target, node)
        if cached and (hit := self._items.get(key)) is not None:
            return list(hit)
        query = Element("query", ns.DISCO_ITEMS, {"node": node} if node else None)
        result = await self._client.request(query, to=target)
        out = []
        for el in result.find_all("item", ns.DISCO_ITEMS) if result is not None else []:
            item_jid = parse_jid(el.get("jid"))
            if item_jid is not None:
                out.append(DiscoItem(item_jid, el.get("node"), el.get("name")))
        self._items[key] = out
        return list(out)

    def forget(self, jid: JID) -> None:
        """Drop the cached answers of ``jid``."""
        for key in [k for k in self._cache if k[0] == jid]:
            del self._cache[key]
        for key in [k for k in self._items if k[0] == jid]:
            del self._items[key]


def _jid(jid: JID | str) -> JID:
    return jid if isinstance(jid, JID) else JID.parse(jid)
