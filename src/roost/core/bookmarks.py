"""Bookmarks in both formats: XEP-0048 (one ``<storage xmlns='storage:bookmarks'/>`` with
every ``<conference/>``) and XEP-0402 (one item per room, id = the room's JID), converted
both ways for servers that unify them (XEP-0402 §5.3 "compat"). Pure functions."""

from __future__ import annotations

from typing import Final

from roost.core.xml.element import Element

__all__ = ["BOOKMARKS_0048", "BOOKMARKS_0402", "from_0402", "to_0402"]

BOOKMARKS_0048: Final = "storage:bookmarks"
BOOKMARKS_0402: Final = "urn:xmpp:bookmarks:1"
_TRUE: Final = ("1", "true")


def to_0402(storage: Element) -> dict[str, Element]:
    """The XEP-0402 items (room JID -> ``<conference/>``) of a XEP-0048 ``<storage/>``;
    its URLs have no XEP-0402 form and are left out."""
    items: dict[str, Element] = {}
    for old in storage.find_all("conference", BOOKMARKS_0048):
        jid = old.get("jid")
        if not jid:
            continue
        attrs = {}
        if old.get("name"):
            attrs["name"] = old.get("name") or ""
        if old.get("autojoin") in _TRUE:
            attrs["autojoin"] = "true"
        new = Element("conference", BOOKMARKS_0402, attrs)
        for tag in ("nick", "password"):
            child = old.find(tag, BOOKMARKS_0048)
            if child is not None and child.text:
                new.sub(tag, text=child.text)
        items[jid] = new
    return items


def from_0402(items: dict[str, Element]) -> Element:
    """A XEP-0048 ``<storage/>`` with the rooms of XEP-0402 items (room JID ->
    ``<conference/>``); their ``<extensions/>`` have no XEP-0048 form and are left out."""
    storage = Element("storage", BOOKMARKS_0048)
    for jid, new in sorted(items.items()):
        attrs = {"jid": jid}
        if new.get("name"):
            attrs["name"] = new.get("name") or ""
        attrs["autojoin"] = "true" if new.get("autojoin") in _TRUE else "false"
        old = storage.sub("conference", attrs=attrs)
        for tag in ("nick", "password"):
            child = new.find(tag, BOOKMARKS_0402)
            if child is not None and child.text:
                old.sub(tag, text=child.text)
    return storage
