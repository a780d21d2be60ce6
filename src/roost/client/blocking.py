"""XEP-0191 Blocking Command: the blocklist, kept in sync by the server's pushes (§3.2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from roost.client.stanzas import parse_jid
from roost.core.im.privacy import BLOCKING
from roost.core.jid import JID
from roost.core.xml.element import Element

if TYPE_CHECKING:
    from roost.client.client import Client

__all__ = ["BLOCKING", "Blocklist"]


class Blocklist:
    """The JIDs the account blocks; ``fetch`` first, then pushes keep it current."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.jids: set[JID] = set()
        self.fetched = False

    def __contains__(self, jid: object) -> bool:
        return jid in self.jids

    async def fetch(self) -> set[JID]:
        """§3.1: the blocklist; asking also subscribes this resource to pushes."""
        result = await self._client.request(Element("blocklist", BLOCKING))
        self.jids = _items(result) if result is not None else set()
        self.fetched = True
        return set(self.jids)

    async def block(self, *jids: JID | str) -> None:
        """§3.3: block one or more JIDs (bare, full or domain)."""
        if not jids:
            raise ValueError("block needs at least one JID")
        await self._client.request(_command("block", jids), type="set")

    async def unblock(self, *jids: JID | str) -> None:
        """§3.4: unblock the given JIDs; none given unblocks everyone (§3.5)."""
        await self._client.request(_command("unblock", jids), type="set")

    def apply_push(self, payload: Element) -> None:
        """A ``<block/>`` or ``<unblock/>`` push from the server (§3.3, §3.4, §3.5)."""
        jids = _items(payload)
        if payload.tag == "block":
            self.jids |= jids
        elif jids:
            self.jids -= jids
        else:
            self.jids.clear()


def _command(tag: str, jids: Iterable[JID | str]) -> Element:
    el = Element(tag, BLOCKING)
    for jid in jids:
        text = str(jid if isinstance(jid, JID) else JID.parse(jid))
        el.sub("item", BLOCKING, {"jid": text})
    return el


def _items(el: Element) -> set[JID]:
    return {
        jid
        for item in el.find_all("item", BLOCKING)
        if (jid := parse_jid(item.get("jid"))) is not None
    }
