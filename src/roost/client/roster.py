"""The roster (RFC 6121 §2) kept as a local copy, and the subscription helpers (§3).

``fetch`` asks with the version of the local copy when the server supports versioning
(§2.6): an empty result means nothing changed and the changes come as pushes. Pushes
(§2.1.6) update the copy and are announced as ``RosterChanged`` events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roost.client.stanzas import parse_jid
from roost.core import ns
from roost.core.jid import JID
from roost.core.xml.element import Element

if TYPE_CHECKING:
    from roost.client.client import Client

__all__ = ["ROSTERVER", "Roster", "RosterChanged", "RosterItem"]

#: RFC 6121 §2.6.1: the stream feature of roster versioning
ROSTERVER = "urn:xmpp:features:rosterver"


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact (RFC 6121 §2.1.2): ``subscription`` none|to|from|both (or "remove" in
    a ``RosterChanged``), ``ask`` a pending outbound request, ``approved`` pre-approval."""

    jid: JID
    name: str | None = None
    subscription: str = "none"
    ask: bool = False
    approved: bool = False
    groups: frozenset[str] = frozenset()

    @classmethod
    def from_element(cls, el: Element) -> RosterItem | None:
        jid = parse_jid(el.get("jid"))
        if jid is None:
            return None
        return cls(
            jid,
            el.get("name") or None,
            el.get("subscription") or "none",
            el.get("ask") == "subscribe",
            el.get("approved") in ("true", "1"),
            frozenset(g.text for g in el.find_all("group", ns.ROSTER) if g.text),
        )


@dataclass(frozen=True, slots=True)
class RosterChanged:
    """A roster push changed the local copy (RFC 6121 §2.1.6)."""

    item: RosterItem

    @property
    def removed(self) -> bool:
        return self.item.subscription == "remove"


class Roster:
    """The account's roster: a mapping of bare JID to ``RosterItem``, kept in sync."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._items: dict[JID, RosterItem] = {}
        #: the version of the local copy (None: never fetched, or no versioning)
        self.version: str | None = None
        self.fetched = False
        #: whether the last fetch brought items (False: the version was current, §2.6.3)
        self.changed_on_fetch = False

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[RosterItem]:
        return iter(list(self._items.values()))

    def __contains__(self, jid: object) -> bool:
        return jid in self._items

    def get(self, jid: JID | str) -> RosterItem | None:
        return self._items.get(_bare(jid))

    @property
    def items(self) -> dict[JID, RosterItem]:
        """A copy of the local roster."""
        return dict(self._items)

    async def fetch(self) -> None:
        """RFC 6121 §2.1.3 roster get, with the local version when the server supports
        versioning (§2.6.2); the result replaces the copy, or is empty: nothing changed."""
        query = Element("query", ns.ROSTER)
        features = self._client.stream_features
        versioned = features is not None and features.find("ver", ROSTERVER) is not None
        if versioned:
            query.attrs["ver"] = self.version or ""
        result = await self._client.request(query)
        self.fetched = True
        self.changed_on_fetch = result is not None
        if result is None:
            return  # §2.6.3: up to date; changes follow as pushes
        items = {}
        for el in result.find_all("item", ns.ROSTER):
            item = RosterItem.from_element(el)
            if item is not None:
                items[item.jid] = item
        self._items = items
        self.version = result.get("ver") if versioned else None

    def apply_push(self, query: Element) -> RosterItem | None:
        """A roster push (§2.1.6): exactly one item; returns it, or None if it is bad."""
        items = query.find_all("item", ns.ROSTER)
        if len(items) != 1:
            return None
        item = RosterItem.from_element(items[0])
        if item is None:
            return None
        if item.subscription == "remove":
            self._items.pop(item.jid, None)
        else:
            self._items[item.jid] = item
        if (ver := query.get("ver")) is not None:
            self.version = ver
        return item

    async def add(
        self, jid: JID | str, name: str | None = None, groups: Iterable[str] = ()
    ) -> None:
        """Add or update a contact (§2.3); the push that follows updates the copy."""
        item = Element("item", ns.ROSTER, {"jid": str(_bare(jid))})
        if name:
            item.attrs["name"] = name
        for group in sorted(set(groups)):
            item.sub("group", text=group)
        await self._client.request(Element("query", ns.ROSTER, children=[item]), type="set")

    async def remove(self, jid: JID | str) -> None:
        """Remove a contact (§2.5), which also cancels both subscriptions (§2.5.2)."""
        item = Element("item", ns.ROSTER, {"jid": str(_bare(jid)), "subscription": "remove"})
        await self._client.request(Element("query", ns.ROSTER, children=[item]), type="set")

    # -- subscriptions (RFC 6121 §3) ------------------------------------------------------

    def subscribe(self, jid: JID | str) -> None:
        """Ask to see ``jid``'s presence (§3.1.1)."""
        self._client.send_presence(_bare(jid), type="subscribe")

    def approve(self, jid: JID | str) -> None:
        """Let ``jid`` see our presence (§3.1.4); before any request it pre-approves (§3.4)."""
        self._client.send_presence(_bare(jid), type="subscribed")

    preapprove = approve

    def deny(self, jid: JID | str) -> None:
        """Refuse a request, or cancel ``jid``'s subscription to us (§3.1.4, §3.2)."""
        self._client.send_presence(_bare(jid), type="unsubscribed")

    def unsubscribe(self, jid: JID | str) -> None:
        """Stop seeing ``jid``'s presence (§3.3)."""
        self._client.send_presence(_bare(jid), type="unsubscribe")


def _bare(jid: JID | str) -> JID:
    return (jid if isinstance(jid, JID) else JID.parse(jid)).bare
