"""Services that feature modules declare for each other, with the value types they share.

A module that provides one calls ``ctx.provide(KEY, impl)``; a module that uses it lists
the provider in ``depends`` and calls ``ctx.service(KEY)``. Only these protocols are shared,
never a module's own classes, so a provider can be replaced by another implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final, Protocol

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.subscription import Subscription, SubState
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server.api import IqRequest, OnlyTo, Refused, ServiceKey, Verdict
from roost.server.session import Session
from roost.storage.api import RosterItem

if TYPE_CHECKING:
    from roost.core.caps import Caps
    from roost.core.im.privacy import PrivacyList, UserPrivacy
    from roost.core.xml.element import Element as _Element
    from roost.server.session import Session

__all__ = [
    "ADMIN",
    "ARCHIVE",
    "CAPS",
    "PEP",
    "PRESENCE",
    "PRIVACY_LISTS",
    "ROOM_ARCHIVE",
    "ROSTERS",
    "AdminError",
    "AdminService",
    "ArchiveService",
    "CapsService",
    "DurableWrites",
    "OnlyTo",
    "PepService",
    "PresenceService",
    "PrivacyListsService",
    "Refused",
    "Roster",
    "RosterService",
    "Verdict",
    "item_element",
    "own_session",
]


class Roster:
    """One user's roster: items by contact, pending inbound requests, version."""

    __slots__ = ("items", "pending_in", "refs", "version")

    def __init__(self, version: int, items: dict[str, RosterItem], pending_in: dict[str, str]):
        self.version = version
        self.items = items
        self.pending_in = pending_in
        self.refs = 0

    def state(self, contact: str) -> SubState:
        """The Appendix A.1 state of ``contact`` (a bare JID string)."""
        item = self.items.get(contact)
        pending_in = contact in self.pending_in
        if item is None:
            return SubState(Subscription.NONE, False, pending_in)
        sub = Subscription(item.subscription)
        # pending-in only exists beside none/to (Appendix A.1)
        return SubState(sub, item.ask, pending_in and sub in (Subscription.NONE, Subscription.TO))

    def subscribers(self) -> list[str]:
        """Contacts that receive the user's presence (subscription from/both)."""
        return [j for j, it in self.items.items() if it.subscription in ("from", "both")]

    def subscriptions(self) -> list[str]:
        """Contacts whose presence the user receives (subscription to/both)."""
        return [j for j, it in self.items.items() if it.subscription in ("to", "both")]


def item_element(item: RosterItem, *, remove: bool = False) -> Element:
    """``<item/>`` for a roster result or push (RFC 6121 §2.1.2)."""
    attrs = {"jid": item.jid}
    if item.name:
        attrs["name"] = item.name
    attrs["subscription"] = "remove" if remove else item.subscription
    if item.ask and not remove:
        attrs["ask"] = "subscribe"
    if item.approved and not remove:
        attrs["approved"] = "true"
    el = Element("item", ns.ROSTER, attrs)
    if not remove:
        for group in item.groups:
            el.sub("group", text=group)
    return el


class RosterService(Protocol):
    """Rosters (RFC 6121 §2): cached for online users, changed through here only."""

    def cached(self, user: JID) -> Roster | None:
        """The roster of an online user, without waiting."""
        ...

    async def get(self, user: JID) -> Roster:
        """The roster of any user (cached when online, read from storage otherwise)."""
        ...

    def changing(self, user: JID) -> AbstractAsyncContextManager[Roster]:
        """Serialise read-modify-write of one roster; changes go through the calls below."""
        ...

    def check_room(self, roster: Roster) -> None: ...

    async def put(self, user: JID, roster: Roster, item: RosterItem) -> None: ...

    async def remove(self, user: JID, roster: Roster, contact: str) -> None: ...

    async def set_state(self, user: JID, roster: Roster, contact: str, new: SubState) -> None:
        ...

    async def set_pending(
        self, user: JID, roster: Roster, contact: str, stanza: str | None
    ) -> None: ...

    async def set_approved(
        self, user: JID, roster: Roster, contact: str, approved: bool
    ) -> None: ...


class PresenceService(Protocol):
    """Presence and subscriptions (RFC 6121 §3, §4), for modules that change rosters."""

    def cancel_subscriptions(self, user: JID, contact: JID, state: SubState) -> None:
        """Both directions are over (roster item or account removed): tell the contact."""
        ...

    def send_current_presence(self, user: JID, contact: JID) -> None: ...

    def last_unavailable(self, user: JID) -> _Element | None:
        """The last unavailable presence of a user with no available resource."""
        ...

    def unavailable_since(self, user: JID) -> tuple[_Element, float] | None:
        """That presence and when (``time.time()``) the user's last available resource
        sent it or went away; None while a resource is available."""
        ...


class PrivacyListsService(Protocol):
    """XEP-0016 privacy lists and the XEP-0191 blocklist on one back end (XEP-0191 §5)."""

    async def state(self, user: JID) -> UserPrivacy: ...

    async def blocklist(self, user: JID, resource: str) -> list[str]: ...

    async def put_list(self, user: JID, lst: PrivacyList) -> None: ...

    async def remove_list(self, user: JID, resource: str, name: str) -> None: ...

    async def set_default(self, user: JID, resource: str, name: str | None) -> None: ...

    async def set_active(self, user: JID, resource: str, name: str | None) -> None: ...

    async def block(self, user: JID, jids: list[str]) -> None: ...

    async def unblock(self, user: JID, jids: list[str] | None) -> None: ...


class AdminError(Exception):
    """An administrative request that cannot be done; the message says why (one line)."""


class AdminService(Protocol):
    """Account and session administration on the live server (``roost.server.admin``);
    the server provides it. Methods raise ``AdminError`` with a one-line reason."""

    def account(self, text: str) -> JID:
        """A bare account JID of a served domain."""
        ...

    def online(self, domain: str | None = None) -> list[Session]: ...

    def kick(
        self, text: str, condition: str = "policy-violation", reason: str | None = None
    ) -> list[str]: ...

    async def add_user(self, user: JID, password: str) -> None: ...

    async def set_password(self, user: JID, password: str, keep: Session | None = None) -> int:
        ...

    async def delete_user(self, user: JID) -> int: ...


class ArchiveService(Protocol):
    """The message archive (XEP-0313), for modules that acknowledge messages (XEP-0198)."""

    async def flushed(self) -> None:
        """Return once every message archived before the call is on disk; raises if its
        write failed. Archiving happens as a message is routed (sent by a local session,
        delivered to one, or stored offline), so after routing a client's message,
        ``await flushed()`` before acknowledging it makes the acknowledgement durable."""
        ...

    def archived(self, user: JID, stanza: Element) -> str | None:
        """The id ``user``'s archive gave this (delivered) message, from its stanza-id."""
        ...

    def queried(self, session: Session) -> bool:
        """Whether ``session`` has queried the archive since it was bound (XEP-0198: what
        the archive holds counts as delivered to such a client)."""

    def again(self, stanza: Element) -> None:
        """Mark a message about to be routed a second time (it was delivered or stored
        offline before, and archived then): not archived again, its stanza-id kept."""


class DurableWrites(Protocol):
    """Writes queued off the routing path (the MUC room archive, ``muc``): what a client's
    stanzas caused is on disk once ``flushed`` returns (XEP-0198 acknowledgements)."""

    async def flushed(self) -> None:
        """Return once everything queued before the call is committed; raises if its write
        failed."""
        ...


class CapsService(Protocol):
    """Verified XEP-0115 capabilities (the caps module): what an entity's caps say it
    supports, only once the 'ver' has been checked (§5.4), for PEP's ``+notify`` (XEP-0163
    §4.3)."""

    def features_of(self, jid: JID) -> frozenset[str] | None:
        """The features behind a local full JID's current caps, if verified."""
        ...

    async def resolve_features(self, jid: JID) -> frozenset[str] | None:
        """``features_of``, waiting for a check of that JID's 'ver' under way."""
        ...

    def features_for(self, caps: Caps) -> frozenset[str] | None:
        """The features behind any caps (a remote contact's presence), if that 'ver' is
        in the verified cache."""
        ...

    async def resolve_remote(self, jid: JID, caps: Caps) -> frozenset[str] | None:
        """The features behind caps a remote full JID announced, asking it (once per
        'ver') when they are not in the verified cache yet."""
        ...


class PepService(Protocol):
    """The accounts' PEP nodes (XEP-0163), for features stored there too (XEP-0411:
    XEP-0049 bookmarks kept in the ``storage:bookmarks`` node)."""

    async def publish_as(
        self, owner: JID, node: str, item_id: str, payload: Element, options: dict[str, list[str]]
    ) -> None:
        """Publish as the account (creating the node with ``options``, notifying)."""
        ...

    async def last_payload(self, owner: JID, node: str) -> Element | None:
        """The payload of the newest item of one of the account's nodes."""
        ...

    async def item_payload(self, owner: JID, node: str, item_id: str) -> Element | None:
        """The payload of one item of one of the account's nodes, if it is there."""
        ...

    async def access_model(self, owner: JID, node: str) -> str | None:
        """The node's access model (XEP-0060 §4.5), None when there is no such node."""
        ...

    def watch(self, node: str, callback: Callable[[JID], Awaitable[None]]) -> Callable[[], None]:
        """Run ``callback(owner)`` after any account's ``node`` changed (published,
        retracted, purged, deleted); returns the function that stops it."""
        ...


def own_session(req: IqRequest) -> tuple[JID, str]:
    """The user and resource behind a request about one's own data (local sessions only);
    anyone else is ``forbidden`` (as for rosters, RFC 6121 §2.1.5)."""
    if req.sender.bare != req.to or req.session is None or req.sender.resource is None:
        raise StanzaError(StanzaErrorCondition.FORBIDDEN)
    return req.to, req.sender.resource


CAPS: Final = ServiceKey[CapsService]("caps")
PEP: Final = ServiceKey[PepService]("pep")
ROSTERS: Final = ServiceKey[RosterService]("rosters")
PRESENCE: Final = ServiceKey[PresenceService]("presence")
PRIVACY_LISTS: Final = ServiceKey[PrivacyListsService]("privacy_lists")
#: provided by the server itself, not a module
ADMIN: Final = ServiceKey[AdminService]("admin")
ARCHIVE: Final = ServiceKey[ArchiveService]("archive")
#: the MUC module's room archives (XEP-0313 on room JIDs)
ROOM_ARCHIVE: Final = ServiceKey[DurableWrites]("room-archive")
