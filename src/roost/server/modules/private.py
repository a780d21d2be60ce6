"""XEP-0049 Private XML Storage: a user keeps XML fragments on the server for itself.

Each fragment is stored under its root element's qualified name (store ``private``, key
``{namespace}tag``), as serialized XML. Choices where XEP-0049 leaves one:

* someone else's storage, get or set: ``forbidden`` (§2.3, "preferable");
* a query with no child, or a child in no namespace of its own (``jabber:iq:private`` by
  inheritance, ``jabber:client``, ``jabber:server``, none): ``not-acceptable`` (§2.3);
* a set may carry several fragments (§2.3: "an IQ set or result MAY contain multiple
  elements"); each is stored under its own key, all validated before any is stored; the
  same key twice is a ``bad-request``. A get may name several fragments and gets each back;
* a fragment with no attributes, children or text deletes the stored one: a get answers the
  empty element it asked for either way;
* limits: ``MAX_FRAGMENT_SIZE`` bytes per fragment (``not-acceptable``) and
  ``MAX_FRAGMENTS`` per user (``not-allowed``, as a full roster is).

XEP-0048 bookmarks (``storage:bookmarks``) are kept in PEP too when the PEP module is loaded
(XEP-0411 §3, XEP-0223 private PEP): a set also publishes them to the account's
``storage:bookmarks`` node (whitelist access), and a get answers what that node holds, so
clients using either place see the same bookmarks.
"""

from __future__ import annotations

import logging
from typing import Final

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.services import PEP

__all__ = ["MAX_FRAGMENTS", "MAX_FRAGMENT_SIZE", "PRIVATE", "PrivateModule"]

log = logging.getLogger(__name__)

PRIVATE: Final = "jabber:iq:private"
MAX_FRAGMENT_SIZE: Final = 64 * 1024
MAX_FRAGMENTS: Final = 100
_STORE: Final = "private"
#: XEP-0048 bookmarks, also kept in PEP (XEP-0411)
BOOKMARKS: Final = "storage:bookmarks"
BOOKMARKS_CONVERSION: Final = "urn:xmpp:bookmarks-conversion:0"
#: XEP-0223 §3: private PEP node options
_PRIVATE_PEP: Final = {
    "pubsub#persist_items": ["true"],
    "pubsub#access_model": ["whitelist"],
}
#: namespaces a fragment may not have: it must be "scoped by its own namespace" (§2.1)
_RESERVED: Final = frozenset({"", PRIVATE, ns.CLIENT, ns.SERVER, ns.STREAM})
_C = StanzaErrorCondition


def _key(el: Element) -> str:
    return f"{{{el.ns}}}{el.tag}"


def _fragments(query: Element) -> list[Element]:
    """The query's children, each of which must have a namespace of its own."""
    children = list(query.elements())
    if not children:
        raise StanzaError(_C.NOT_ACCEPTABLE, "a child element with its own namespace is needed")
    for child in children:
        if child.ns in _RESERVED:
            raise StanzaError(_C.NOT_ACCEPTABLE, f"the namespace {child.ns!r} is reserved")
    return children


class PrivateModule:
    name = "private"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.iq("account", "get", PRIVATE, "query", self.get)
        ctx.iq("account", "set", PRIVATE, "query", self.set, advertise=False)
        if ctx.maybe_service(PEP) is not None:  # the PEP module is loaded first
            ctx.account_feature(BOOKMARKS_CONVERSION)  # XEP-0411 §2

    @staticmethod
    def _own(req: IqRequest) -> JID:
        # XEP-0049 §2.3 and §4: only the user itself.
        if req.sender.bare != req.to:
            raise StanzaError(_C.FORBIDDEN)
        assert req.to.local is not None
        return req.to

    async def get(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        assert user.local is not None
        result = Element("query", PRIVATE)
        pep = self.ctx.maybe_service(PEP)
        for wanted in _fragments(req.payload):
            if pep is not None and _key(wanted) == f"{{{BOOKMARKS}}}storage":
                # XEP-0411 §3: PEP holds the bookmarks whichever way they were stored
                in_pep = await pep.last_payload(user, BOOKMARKS)
                if in_pep is not None and _key(in_pep) == _key(wanted):
                    result.append(in_pep)
                    continue
            raw = await self.ctx.storage.get_data(user.local, user.domain, _STORE, _key(wanted))
            found: Element | None = None
            if raw is not None:
                try:
                    found = parse_fragment(raw)
                except ValueError:
                    log.warning("unreadable private XML %s of %s", _key(wanted), user)
            result.append(found if found is not None else Element(wanted.tag, wanted.ns))
        return result

    async def set(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        assert user.local is not None
        changes: dict[str, str | None] = {}
        for fragment in _fragments(req.payload):
            key = _key(fragment)
            if key in changes:
                raise StanzaError(_C.BAD_REQUEST, f"{key} appears twice")
            if not fragment.attrs and not fragment.children:
                changes[key] = None
                continue
            value = serialize(fragment)
            if len(value.encode()) > MAX_FRAGMENT_SIZE:
                raise StanzaError(_C.NOT_ACCEPTABLE, f"{key} is too large")
            changes[key] = value
        storage = self.ctx.storage
        stored = await storage.list_data(user.local, user.domain, _STORE)
        after = set(stored) | {k for k, v in changes.items() if v is not None}
        after -= {k for k, v in changes.items() if v is None}
        if len(after) > MAX_FRAGMENTS and len(after) > len(stored):
            raise StanzaError(_C.NOT_ALLOWED, "too many private XML fragments")
        for key, change in changes.items():
            if change is not None or key in stored:
                await storage.set_data(user.local, user.domain, _STORE, key, change)
        pep = self.ctx.maybe_service(PEP)
        for fragment in _fragments(req.payload):
            if pep is not None and _key(fragment) == f"{{{BOOKMARKS}}}storage":
                # XEP-0411 §3 / XEP-0048 §3.2: the same bookmarks in PEP, item "current"
                try:
                    await pep.publish_as(user, BOOKMARKS, "current", fragment, _PRIVATE_PEP)
                except StanzaError as err:  # the node is configured otherwise: keep it
                    log.info("bookmarks of %s not copied to PEP: %s", user, err)
        return EMPTY
