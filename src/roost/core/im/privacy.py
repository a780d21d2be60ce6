"""Privacy lists (XEP-0016, RFC 3921 §10) as data, and the blocklist (XEP-0191) as a view.

A list is a name and items processed in ascending ``order``; the first item that covers the
stanza's kind and matches the other party decides (§2.2 rules 5-7, allow when none does).
The XEP-0191 blocklist is the default list's items of type ``jid`` and action ``deny`` that
cover every kind of stanza (XEP-0191 §5), so both protocols share one store and one check.
Nothing here does I/O: roster facts come in through a lookup function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntFlag, StrEnum
from typing import Final

from roost.core.errors import StanzaError, StanzaErrorCondition, StanzaErrorType
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element

__all__ = [
    "BLOCKING",
    "BLOCKING_ERRORS",
    "MAX_ITEMS",
    "MAX_LISTS",
    "OTHER",
    "PRIVACY",
    "SUBSCRIPTIONS",
    "Contact",
    "ItemType",
    "Kind",
    "PrivacyItem",
    "PrivacyList",
    "UserPrivacy",
    "blocked_error",
    "jid_matches",
    "list_element",
    "list_from_json",
    "list_to_json",
    "parse_list",
    "stanza_kind",
    "with_blocked",
    "without_blocked",
]

PRIVACY: Final = "jabber:iq:privacy"
BLOCKING: Final = "urn:xmpp:blocking"
BLOCKING_ERRORS: Final = "urn:xmpp:blocking:errors"
#: RFC 6121 §2.1.2.5 values of a ``subscription`` item; "none" includes strangers (§2.1)
SUBSCRIPTIONS: Final = frozenset({"none", "to", "from", "both"})

_C = StanzaErrorCondition

#: limits on what a user can store (everything a peer controls is bounded)
MAX_LISTS: Final = 50
MAX_ITEMS: Final = 1000

#: (subscription, groups) of a contact in the user's roster, looked up by bare JID
Contact = tuple[str, Sequence[str]]
ContactLookup = Callable[[str], Contact | None]


class Kind(IntFlag):
    """The stanza kinds an item can be limited to (XEP-0016 §2.1); none means every stanza."""

    MESSAGE = 1  # incoming messages
    IQ = 2  # incoming iqs
    PRESENCE_IN = 4  # incoming presence notifications
    PRESENCE_OUT = 8  # outgoing presence notifications


#: a stanza no child element names (outgoing messages, subscriptions...): only items
#: without child elements apply to it (§2.13 "Blocking All Communication")
OTHER: Final = Kind(0)

_KIND_TAGS: Final = {
    "message": Kind.MESSAGE,
    "iq": Kind.IQ,
    "presence-in": Kind.PRESENCE_IN,
    "presence-out": Kind.PRESENCE_OUT,
}
#: XEP-0016 §2: presence notifications are presence with no type, or unavailable
_NOTIFICATION_TYPES: Final = frozenset({None, "unavailable"})


def stanza_kind(stanza: Element, *, inbound: bool) -> Kind:
    """What an item must name to apply to ``stanza`` seen from the list owner's side."""
    tag = stanza.tag
    if tag == "presence":
        if stanza.attrs.get("type") in _NOTIFICATION_TYPES:
            return Kind.PRESENCE_IN if inbound else Kind.PRESENCE_OUT
        return OTHER
    if not inbound:
        return OTHER  # <message/> and <iq/> block incoming stanzas only
    if tag == "message":
        return Kind.MESSAGE
    if tag == "iq":
        return Kind.IQ
    return OTHER


class ItemType(StrEnum):
    JID = "jid"
    GROUP = "group"
    SUBSCRIPTION = "subscription"


def jid_matches(value: JID, peer: JID) -> bool:
    """XEP-0016 §2.1: ``value`` equals the peer's full JID, bare JID, domain/resource or domain.

    So ``user@domain`` matches any of that user's resources and ``domain`` matches the domain,
    every user at it and every resource of either; subdomains do not match.
    """
    if value.domain != peer.domain:
        return False
    if value.local is not None:
        return value.local == peer.local and (
            value.resource is None or value.resource == peer.resource
        )
    return value.resource is None or value.resource == peer.resource


@dataclass(frozen=True, slots=True)
class PrivacyItem:
    """One rule. ``value`` is normalised; ``jid`` is its parsed form for ``jid`` items."""

    order: int
    allow: bool
    type: ItemType | None = None
    value: str | None = None
    kinds: Kind = OTHER
    jid: JID | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.order <= 0xFFFFFFFF:
            raise ValueError(f"order must be an unsignedInt, got {self.order}")
        if self.type is None:
            if self.value is not None:
                raise ValueError("a fall-through item has no value")
        elif self.value is None:
            raise ValueError(f"a {self.type} item needs a value")
        elif self.type is ItemType.JID:
            jid = JID.parse(self.value)  # InvalidJID is a ValueError
            object.__setattr__(self, "jid", jid)
            object.__setattr__(self, "value", str(jid))
        elif self.type is ItemType.SUBSCRIPTION and self.value not in SUBSCRIPTIONS:
            raise ValueError(f"unknown subscription {self.value!r}")

    @property
    def blocks(self) -> bool:
        """A blocklist entry (XEP-0191 §5): deny one JID everything."""
        return self.type is ItemType.JID and not self.allow and not self.kinds

    def element(self) -> Element:
        attrs = {}
        if self.type is not None and self.value is not None:
            attrs = {"type": self.type.value, "value": self.value}
        attrs["action"] = "allow" if self.allow else "deny"
        attrs["order"] = str(self.order)
        el = Element("item", PRIVACY, attrs)
        for tag, kind in _KIND_TAGS.items():
            if self.kinds & kind:
                el.sub(tag)
        return el


@dataclass(frozen=True, slots=True)
class PrivacyList:
    """A named list; items are kept sorted by ``order``, which is unique."""

    name: str
    items: tuple[PrivacyItem, ...] = ()
    #: whether any item needs the user's roster (group and subscription items)
    needs_roster: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(sorted(self.items, key=lambda i: i.order))
        if len({i.order for i in items}) != len(items):
            raise ValueError("order values must be unique in a list")
        object.__setattr__(self, "items", items)
        roster = any(i.type in (ItemType.GROUP, ItemType.SUBSCRIPTION) for i in items)
        object.__setattr__(self, "needs_roster", roster)

    def blocked(self) -> list[str]:
        """The JIDs this list blocks in the XEP-0191 sense, in list order."""
        return [i.value for i in self.items if i.blocks and i.value is not None]

    def decide(self, kind: Kind, peer: JID, contact: ContactLookup) -> PrivacyItem | None:
        """The first item (by order) that covers ``kind`` and matches ``peer``, if any."""
        looked_up = False
        entry: Contact | None = None
        for item in self.items:
            if item.kinds and not item.kinds & kind:
                continue
            kind_of = item.type
            if kind_of is None:
                return item  # fall-through
            if kind_of is ItemType.JID:
                assert item.jid is not None
                if jid_matches(item.jid, peer):
                    return item
                continue
            if not looked_up:
                entry, looked_up = contact(str(peer.bare)), True
            if kind_of is ItemType.GROUP:
                if entry is not None and item.value in entry[1]:
                    return item
            elif (entry[0] if entry is not None else "none") == item.value:
                return item  # XEP-0016 §2.1: subscription values match exactly
        return None


# -- the blocklist view (XEP-0191 §5) ------------------------------------------------------


def with_blocked(lst: PrivacyList, jids: Iterable[str]) -> PrivacyList:
    """``lst`` with deny-everything items for ``jids`` (normalised, not yet blocked) first.

    XEP-0191 §5: blocked items SHOULD come first. They take orders below the lowest one in
    use when there is room; otherwise the whole list is renumbered, keeping its sequence.
    """
    new = list(jids)
    if not new:
        return lst
    lowest = lst.items[0].order if lst.items else len(new)
    if lowest >= len(new):
        start = lowest - len(new)
        added = [PrivacyItem(start + n, False, ItemType.JID, j) for n, j in enumerate(new)]
        return PrivacyList(lst.name, (*added, *lst.items))
    items = [PrivacyItem(n, False, ItemType.JID, j) for n, j in enumerate(new)]
    for n, old in enumerate(lst.items, start=len(new)):
        items.append(PrivacyItem(n, old.allow, old.type, old.value, old.kinds))
    return PrivacyList(lst.name, tuple(items))


def without_blocked(lst: PrivacyList, jids: Iterable[str] | None) -> PrivacyList:
    """``lst`` without the blocklist items for ``jids`` (all of them for ``None``)."""
    drop = None if jids is None else set(jids)
    keep = tuple(i for i in lst.items if not (i.blocks and (drop is None or i.value in drop)))
    return lst if len(keep) == len(lst.items) else PrivacyList(lst.name, keep)


# -- errors ----------------------------------------------------------------------------------


class _BlockedError(StanzaError):
    """``not-acceptable`` with the XEP-0191 application condition ``<blocked/>``."""

    def to_element(self) -> Element:
        err = super().to_element()
        err.sub("blocked", BLOCKING_ERRORS)
        return err


def blocked_error(*, blocklist: bool) -> StanzaError:
    """The error for a stanza the user's own list stops (XEP-0191 §3.3, XEP-0016 §2.14).

    Both examples use type ``cancel``; ``<blocked/>`` is added when a blocklist item
    decided, so a blocking client can tell why.
    """
    if blocklist:
        return _BlockedError(_C.NOT_ACCEPTABLE, type=StanzaErrorType.CANCEL)
    return StanzaError(_C.NOT_ACCEPTABLE, type=StanzaErrorType.CANCEL)


# -- wire codec ------------------------------------------------------------------------------


def _parse_item(el: Element) -> PrivacyItem:
    action = el.get("action")
    if action not in ("allow", "deny"):
        raise StanzaError(_C.BAD_REQUEST, "an item needs action 'allow' or 'deny'")
    order_text = el.get("order") or ""
    if not order_text.isascii() or not order_text.isdigit():
        raise StanzaError(_C.BAD_REQUEST, "an item needs a non-negative integer 'order'")
    type_text = el.get("type")
    try:
        item_type = None if type_text is None else ItemType(type_text)
    except ValueError:
        raise StanzaError(_C.BAD_REQUEST, f"unknown item type {type_text!r}") from None
    value = el.get("value")
    if item_type is None and value is not None:
        value = None  # a value without a type means nothing; the item falls through
    kinds = OTHER
    for child in el.elements():
        kind = _KIND_TAGS.get(child.tag)
        if kind is None or child.ns != PRIVACY or kinds & kind:
            raise StanzaError(_C.BAD_REQUEST, f"unexpected <{child.tag}/> in an item")
        kinds |= kind
    try:
        return PrivacyItem(int(order_text), action == "allow", item_type, value, kinds)
    except InvalidJID:
        raise StanzaError(_C.JID_MALFORMED, f"not a JID: {value!r}") from None
    except ValueError as exc:
        raise StanzaError(_C.BAD_REQUEST, str(exc)) from None


def parse_list(el: Element, *, max_items: int) -> PrivacyList:
    """A ``<list/>`` with items from a client; raises ``StanzaError`` (XEP-0016 §2.1)."""
    name = el.get("name")
    if not name:
        raise StanzaError(_C.BAD_REQUEST, "a list needs a name")
    items = []
    for child in el.elements():
        if child.tag != "item" or child.ns != PRIVACY:
            raise StanzaError(_C.BAD_REQUEST, f"unexpected <{child.tag}/> in a list")
        items.append(_parse_item(child))
    if len(items) > max_items:
        raise StanzaError(_C.NOT_ALLOWED, f"a list holds at most {max_items} items")
    try:
        return PrivacyList(name, tuple(items))
    except ValueError as exc:  # §2.1: orders must be unique
        raise StanzaError(_C.BAD_REQUEST, str(exc)) from None


def list_element(lst: PrivacyList, *, items: bool = True) -> Element:
    """``<list name=.../>``, with its items unless ``items`` is false (names, pushes)."""
    el = Element("list", PRIVACY, {"name": lst.name})
    if items:
        el.children.extend(i.element() for i in lst.items)
    return el


# -- storage ---------------------------------------------------------------------------------


def list_to_json(lst: PrivacyList) -> str:
    """The stored form of a list's items (its name is the storage key)."""
    rows = []
    for i in lst.items:
        row: dict[str, object] = {"order": i.order, "action": "allow" if i.allow else "deny"}
        if i.type is not None:
            row["type"] = i.type.value
            row["value"] = i.value
        if i.kinds:
            row["kinds"] = [tag for tag, k in _KIND_TAGS.items() if i.kinds & k]
        rows.append(row)
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def list_from_json(name: str, text: str) -> PrivacyList:
    """Read a stored list; raises ``ValueError`` when it is unreadable."""
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError("a stored privacy list is a JSON array")
    items = []
    for row in rows:
        kinds = OTHER
        for tag in row.get("kinds", ()):
            kinds |= _KIND_TAGS[tag]
        type_text = row.get("type")
        items.append(
            PrivacyItem(
                int(row["order"]),
                row["action"] == "allow",
                None if type_text is None else ItemType(type_text),
                row.get("value"),
                kinds,
            )
        )
    return PrivacyList(name, tuple(items))


class UserPrivacy:
    """One user's lists, default list and per-session state (active lists, interest)."""

    __slots__ = ("active", "blocklist_requested", "default", "lists", "quiet")

    def __init__(self, lists: dict[str, PrivacyList], default: str | None) -> None:
        self.lists = lists
        self.default = default if default in lists else None
        #: resource -> name of the session's active list (XEP-0016 §2.3)
        self.active: dict[str, str] = {}
        #: resources that asked for the blocklist and so get its pushes (XEP-0191 §3.3)
        self.blocklist_requested: set[str] = set()
        #: nothing to enforce: no active list and no (non-empty) default list
        self.quiet = True
        self.refresh()

    def refresh(self) -> None:
        default = self.default_list()
        self.quiet = not self.active and (default is None or not default.items)

    def default_list(self) -> PrivacyList | None:
        return None if self.default is None else self.lists.get(self.default)

    def list_for(self, resource: str | None) -> PrivacyList | None:
        """§2.2 rules 1-2: the session's active list, else the default list."""
        if resource is not None and self.active:
            name = self.active.get(resource)
            if name is not None:
                return self.lists.get(name)
        return self.default_list()

    def blocklist(self) -> list[str]:
        default = self.default_list()
        return [] if default is None else default.blocked()
