"""XEP-0016 Privacy Lists (RFC 3921 §10): list, get, edit, remove, active and default lists.

The protocol front end of ``roost.server.privacy_lists``, which stores the lists, applies
them to routed stanzas and sends the pushes. Choices where the specification leaves one:

* someone else's lists, get or set: ``forbidden`` (as for rosters);
* a get naming more than one list, or a set with anything but exactly one ``<active/>``,
  ``<default/>`` or ``<list/>``: ``bad-request`` (§2.1, §2.3, §2.8);
* a get with only ``<active/>`` or ``<default/>`` is answered like a get of the names
  (COMPAT: slixmpp's ``get_active()`` and ``get_default()`` send those);
* an item in a list whose group is not in the roster: ``item-not-found`` (§2.1 SHOULD);
* an invalid JID in a ``jid`` item: ``jid-malformed``; non-unique orders, unknown types,
  actions or child elements: ``bad-request``;
* changing or declining the default list while it applies to another session (one with no
  active list): ``conflict`` (§2.5); removing a list another session uses: ``conflict``
  (§2.8); a missing list: ``item-not-found``;
* limits: ``MAX_LISTS`` lists of ``MAX_ITEMS`` items (``not-allowed``, as a full roster).
"""

from __future__ import annotations

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.privacy import (
    MAX_ITEMS,
    PRIVACY,
    ItemType,
    PrivacyList,
    list_element,
    parse_list,
)
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.services import PRIVACY_LISTS, ROSTERS, own_session

__all__ = ["PrivacyModule"]

_C = StanzaErrorCondition


class PrivacyModule:
    name = "privacy"
    depends = ("privacy_lists", "roster")

    def setup(self, ctx: ModuleContext) -> None:
        self.lists = ctx.service(PRIVACY_LISTS)
        self.rosters = ctx.service(ROSTERS)
        ctx.iq("account", "get", PRIVACY, "query", self.get)
        ctx.iq("account", "set", PRIVACY, "query", self.set, advertise=False)

    async def get(self, req: IqRequest) -> IqResult:
        user, resource = own_session(req)
        st = await self.lists.state(user)
        wanted = [c for c in req.payload.elements() if c.tag == "list"]
        if len(wanted) > 1:
            raise StanzaError(_C.BAD_REQUEST, "one list at a time")  # §2.3
        if wanted:
            lst = st.lists.get(wanted[0].get("name") or "")
            if lst is None:
                raise StanzaError(_C.ITEM_NOT_FOUND)
            return Element("query", PRIVACY, None, [list_element(lst)])
        # §2.3: the names, preceded by this session's active list and the default list
        query = Element("query", PRIVACY)
        active = st.active.get(resource)
        if active is not None:
            query.sub("active", attrs={"name": active})
        if st.default is not None:
            query.sub("default", attrs={"name": st.default})
        for name in sorted(st.lists):
            query.sub("list", attrs={"name": name})
        return query

    async def set(self, req: IqRequest) -> IqResult:
        user, resource = own_session(req)
        children = list(req.payload.elements())
        if len(children) != 1 or children[0].ns != PRIVACY:
            raise StanzaError(_C.BAD_REQUEST, "one <active/>, <default/> or <list/>")  # §2.1
        child = children[0]
        name = child.get("name")
        if child.tag == "active":
            await self.lists.set_active(user, resource, name)
        elif child.tag == "default":
            await self.lists.set_default(user, resource, name)
        elif child.tag == "list":
            if not name:
                raise StanzaError(_C.BAD_REQUEST, "a list needs a name")
            if next(child.elements(), None) is None:
                await self.lists.remove_list(user, resource, name)  # §2.8
            else:
                lst = parse_list(child, max_items=MAX_ITEMS)
                await self._check_groups(user, lst)
                await self.lists.put_list(user, lst)
        else:
            raise StanzaError(_C.BAD_REQUEST, f"unexpected <{child.tag}/>")
        return EMPTY

    async def _check_groups(self, user: JID, lst: PrivacyList) -> None:
        wanted = {i.value for i in lst.items if i.type is ItemType.GROUP and i.value is not None}
        if not wanted:
            return
        roster = await self.rosters.get(user)
        groups = {g for item in roster.items.values() for g in item.groups}
        missing = sorted(g for g in wanted if g not in groups)
        if missing:
            raise StanzaError(_C.ITEM_NOT_FOUND, f"no roster group {missing[0]!r}")
