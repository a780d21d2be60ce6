"""Privacy lists and blocklists of local users: storage, cache, and the router's privacy gate.

XEP-0016 privacy lists and the XEP-0191 blocklist share this back end: XEP-0191 §5 requires
one store when a server offers both, and maps the blocklist onto the default list (its
jid/deny items that cover everything). The ``privacy`` and ``blocking`` modules are protocol
front ends that change lists through it; it is loaded as a module itself (``privacy_lists``)
and is the router's privacy gate (``ModuleContext.privacy_gate``): ``prepare`` says what a
check needs that is not in memory, ``check`` only decides (allow, refuse with which error,
or only to which sessions). The router defers, orders, delivers and answers.

Caching, so routing never waits on the database:

* A user's lists are read when a session opens; it is bound once they are in memory, so
  its own stanzas never wait.
* Lists of offline users are read on first need and kept in a bounded cache (the oldest
  read is dropped first). A stanza that needs rules not yet in memory (or the roster of an
  offline user whose list has group or subscription items) waits in the router until
  ``prepare`` has read them, in arrival order with the stanzas from or to the same users.
* With no list in force for either party the check is two dictionary look-ups.

Writes are committed before the cache changes and the client gets its result.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, Literal

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.privacy import (
    BLOCKING,
    MAX_ITEMS,
    MAX_LISTS,
    PRIVACY,
    Contact,
    Kind,
    PrivacyItem,
    PrivacyList,
    UserPrivacy,
    blocked_error,
    jid_matches,
    list_from_json,
    list_to_json,
    stanza_kind,
    with_blocked,
    without_blocked,
)
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server import events
from roost.server.api import ModuleContext
from roost.server.services import PRESENCE, PRIVACY_LISTS, ROSTERS, OnlyTo, Refused, Roster, Verdict
from roost.server.session import Session

__all__ = [
    "BLOCKLIST_NAME",
    "STORE",
    "PrivacyLists",
]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition

#: the key-value store: ``list:<name>`` -> the list's items (JSON), ``default`` -> a name
STORE: Final = "privacy"
_DEFAULT_KEY: Final = "default"
_LIST_PREFIX: Final = "list:"
#: the default list a block command creates when the user has none
BLOCKLIST_NAME: Final = "blocklist"
#: offline users whose lists stay in memory after a look-up
OFFLINE_CACHE: Final = 10_000
#: presence an account with no session drops anyway (RFC 6121 §8.5.2.2.2, §8.5.3.2.2)
_DROPPED_WHEN_OFFLINE: Final = frozenset({None, "unavailable", "error"})


def _no_contacts(contact: str) -> Contact | None:
    return None


def _lookup(roster: Roster | None) -> Callable[[str], Contact | None]:
    if roster is None:
        return _no_contacts
    items = roster.items

    def contact(jid: str) -> Contact | None:
        item = items.get(jid)
        return None if item is None else (item.subscription, item.groups)

    return contact


def _bounceable(stanza: Element) -> bool:
    """Whether a refused stanza gets an error: never for errors, iq results or presence."""
    stype = stanza.attrs.get("type")
    tag = stanza.tag
    if tag == "iq":
        return stype in ("get", "set")
    return tag == "message" and stype != "error"


class _Loaded:
    """What ``prepare`` read for one stanza: lists and rosters not kept in memory."""

    __slots__ = ("rosters", "users")

    def __init__(self) -> None:
        self.users: dict[JID, UserPrivacy] = {}
        self.rosters: dict[JID, Roster] = {}


#: ``prepare``'s answer when everything the check needs is in memory already
_IN_MEMORY: Final = _Loaded()
#: ``prepare``'s answer when no rules are in force for either party: nothing to check
_QUIET: Final = _Loaded()


class _UserLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class PrivacyLists:
    """The privacy back end, loaded as the ``privacy_lists`` module."""

    name = "privacy_lists"

    def __init__(self) -> None:
        self._online: dict[JID, UserPrivacy] = {}
        self._offline: collections.OrderedDict[JID, UserPrivacy] = collections.OrderedDict()
        self._loading: dict[JID, asyncio.Task[UserPrivacy]] = {}
        self._locks: dict[JID, _UserLock] = {}

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.domains = ctx.domains
        self.rosters = ctx.service(ROSTERS)
        ctx.provide(PRIVACY_LISTS, self)
        ctx.privacy_gate(self)
        ctx.observe(events.SESSION_OPENING, self.session_opening)
        ctx.observe(events.SESSION_ABANDONED, self.session_abandoned)
        # After the presence service, whose unavailable broadcast still uses this session.
        ctx.observe(events.SESSION_CLOSED, self.session_closed, priority=-10)

    # -- enforcement (the hot path): the router's privacy gate ----------------------------

    def _entry(self, user: JID) -> UserPrivacy | None:
        st = self._online.get(user)
        if st is None:
            st = self._offline.get(user)
        return st

    def _parties(
        self, stanza: Element, sender: JID, to: JID, out_: bool = True, in_: bool = True
    ) -> tuple[JID | None, JID | None]:
        """Whose rules apply: the sender's (outbound) and the recipient's (inbound)."""
        out = (
            sender.bare
            if out_
            and sender.local is not None
            and sender.domain in self.domains
            and not (to.local is None and to.domain in self.domains)  # our own server
            else None
        )
        inbound = (
            to.bare
            if in_
            and to.local is not None
            and to.domain in self.domains
            and not (sender.local is None and sender.domain in self.domains)
            else None
        )
        if (
            inbound is not None
            and self._entry(inbound) is None
            and stanza.tag == "presence"
            and stanza.attrs.get("type") in _DROPPED_WHEN_OFFLINE
            and not self.ctx.sessions.is_online(inbound)
        ):
            inbound = None  # dropped for want of a session whatever the lists say
        return out, inbound

    def prepare(
        self, stanza: Element, sender: JID, to: JID, *, out: bool = True, inbound: bool = True
    ) -> _Loaded | Awaitable[_Loaded]:
        """Everything ``check`` needs: at once when in memory, else an awaitable that reads
        the missing lists (and the roster of an offline user whose list needs it)."""
        quiet = True
        for user in self._parties(stanza, sender, to, out, inbound):
            if user is None:
                continue
            st = self._entry(user)
            if st is None or (
                not st.quiet
                and self.rosters.cached(user) is None
                and any(lst.needs_roster for lst in st.lists.values())
            ):
                return self._read_for(self._parties(stanza, sender, to, out, inbound))
            quiet = quiet and st.quiet
        return _QUIET if quiet else _IN_MEMORY

    async def _read_for(self, parties: tuple[JID | None, JID | None]) -> _Loaded:
        loaded = _Loaded()
        for user in parties:
            if user is None or user in loaded.users:
                continue
            st = await self._load(user)
            loaded.users[user] = st
            if self.rosters.cached(user) is None and any(
                lst.needs_roster for lst in st.lists.values()
            ):
                loaded.rosters[user] = await self.rosters.get(user)
        return loaded

    def check(
        self,
        stanza: Element,
        sender: JID,
        to: JID,
        prepared: object,
        *,
        out: bool = True,
        inbound: bool = True,
    ) -> Verdict | None:
        """Judge a stanza by the sender's and then the recipient's rules; ``None`` allows it."""
        if prepared is _QUIET:
            return None
        loaded = prepared if isinstance(prepared, _Loaded) else _IN_MEMORY
        out_user, in_user = self._parties(stanza, sender, to, out, inbound)
        if out_user is not None:
            st = loaded.users.get(out_user) or self._entry(out_user)
            if st is None:
                raise RuntimeError(f"the privacy lists of {out_user} are not loaded")
            if not st.quiet and (verdict := self._judge_out(stanza, sender, to, st, loaded)):
                return verdict
        if in_user is not None:
            st = loaded.users.get(in_user) or self._entry(in_user)
            if st is None:
                raise RuntimeError(f"the privacy lists of {in_user} are not loaded")
            if not st.quiet:
                return self._judge_in(stanza, sender, to, st, loaded)
        return None

    def _decide(
        self, lst: PrivacyList, kind: Kind, peer: JID, owner: JID, loaded: _Loaded
    ) -> PrivacyItem | None:
        """The item of ``lst`` that decides, if any."""
        roster = None
        if lst.needs_roster:
            roster = self.rosters.cached(owner) or loaded.rosters.get(owner)
            if roster is None:
                raise RuntimeError(f"the roster of {owner} is not loaded")
        return lst.decide(kind, peer, _lookup(roster))

    def _judge_out(
        self, stanza: Element, sender: JID, to: JID, st: UserPrivacy, loaded: _Loaded
    ) -> Verdict | None:
        lst = st.list_for(sender.resource)
        if lst is None or not lst.items:
            return None
        item = self._decide(lst, stanza_kind(stanza, inbound=False), to, sender.bare, loaded)
        if item is None or item.allow:
            return None
        # XEP-0191 §3.3, XEP-0016 §2.14: not routed; not-acceptable tells the user why.
        # Presence is dropped quietly: the server fans it out to subscribers, and an error
        # for each blocked one on every broadcast would be noise.
        return Refused(blocked_error(blocklist=item.blocks) if _bounceable(stanza) else None)

    def _judge_in(
        self, stanza: Element, sender: JID, to: JID, st: UserPrivacy, loaded: _Loaded
    ) -> Verdict | None:
        kind = stanza_kind(stanza, inbound=True)
        user = to.bare
        if to.resource is None and st.active and kind in (Kind.MESSAGE, Kind.PRESENCE_IN):
            verdict = self._to_sessions(stanza, sender, user, st, kind, loaded)
            if verdict is not False:
                return verdict
        lst = st.list_for(to.resource)
        if lst is None or not lst.items:
            return None
        item = self._decide(lst, kind, sender, user, loaded)
        if item is None or item.allow:
            return None
        return self._refused_in(stanza)

    @staticmethod
    def _refused_in(stanza: Element) -> Refused:
        # XEP-0191 §3.3 and XEP-0016 §2.14 (1.7): presence of every type silently; messages
        # and iq requests with service-unavailable, so the user looks offline, not hiding.
        return Refused(StanzaError(_C.SERVICE_UNAVAILABLE) if _bounceable(stanza) else None)

    def _to_sessions(
        self,
        stanza: Element,
        sender: JID,
        user: JID,
        st: UserPrivacy,
        kind: Kind,
        loaded: _Loaded,
    ) -> Verdict | Literal[False] | None:
        """§2.2 rule 1 for a message or presence to the bare JID when a session has an
        active list: each available session is judged by its own list. ``False`` when no
        session is available (the default list decides)."""
        targets = [c for c in self.ctx.sessions.resources(user).values() if c.available]
        if not targets:
            return False
        allowed: list[Session] = []
        for session in targets:
            lst = st.list_for(session.resource)
            item = None if lst is None else self._decide(lst, kind, sender, user, loaded)
            if item is None or item.allow:
                allowed.append(session)
        if len(allowed) == len(targets):
            return None
        if stanza.tag == "message":
            mtype = stanza.attrs.get("type") or "normal"
            if mtype in ("error", "groupchat"):
                return None  # dropped or bounced by the delivery rules anyway
            # RFC 6121 §8.5.2.1.1 among the sessions that accept it
            allowed = [c for c in allowed if c.priority >= 0]
            if allowed and mtype != "headline":
                top = max(c.priority for c in allowed)
                allowed = [c for c in allowed if c.priority == top]
        if not allowed:
            return self._refused_in(stanza)
        return OnlyTo(tuple(allowed))

    # -- loading and the session life cycle -----------------------------------------------

    async def _load(self, user: JID) -> UserPrivacy:
        st = self._entry(user)
        if st is not None:
            return st
        task = self._loading.get(user)
        if task is None:
            task = self._loading[user] = self.ctx.spawn(self._read(user))
        # shielded: one waiter being cancelled must not cancel the read the others share
        return await asyncio.shield(task)

    async def _read(self, user: JID) -> UserPrivacy:
        assert user.local is not None
        try:
            data = await self.ctx.storage.list_data(user.local, user.domain, STORE)
            lists: dict[str, PrivacyList] = {}
            for key, value in data.items():
                if not key.startswith(_LIST_PREFIX):
                    continue
                name = key[len(_LIST_PREFIX) :]
                try:
                    lists[name] = list_from_json(name, value)
                except (ValueError, KeyError, TypeError, AttributeError):
                    log.warning("ignoring an unreadable privacy list %r of %s", name, user)
            st = UserPrivacy(lists, data.get(_DEFAULT_KEY))
            if self.ctx.sessions.is_online(user):
                self._online[user] = st
            else:
                self._remember_offline(user, st)
            return st
        finally:
            self._loading.pop(user, None)

    def _remember_offline(self, user: JID, st: UserPrivacy) -> None:
        self._offline[user] = st
        self._offline.move_to_end(user)
        while len(self._offline) > OFFLINE_CACHE:
            self._offline.popitem(last=False)

    def session_opening(self, session: Session, waits: list[Awaitable[object]]) -> None:
        user = session.bare
        if user in self._online:
            return
        st = self._offline.pop(user, None)
        if st is not None:
            self._online[user] = st
            return
        # The session is bound once its rules are in memory, so none of its stanzas waits
        # for the database or is deferred (one storage read, beside the roster's).
        waits.append(self._load_online(user))

    async def _load_online(self, user: JID) -> None:
        await self._load_quietly(user)
        st = self._offline.pop(user, None)  # read before the session was bound
        if st is not None:
            self._online[user] = st

    def session_abandoned(self, session: Session) -> None:
        user = session.bare
        st = self._online.get(user)
        if st is not None and not self.ctx.sessions.is_online(user):
            del self._online[user]
            self._remember_offline(user, st)

    async def _load_quietly(self, user: JID) -> None:
        try:
            await self._load(user)
        except Exception:
            # checks of this user's stanzas are deferred and try again
            log.exception("cannot load the privacy lists of %s", user)

    def session_closed(self, session: Session, error: object) -> None:
        jid = session.jid
        user = jid.bare
        st = self._online.get(user)
        if st is None:
            return
        assert jid.resource is not None
        if st.active.pop(jid.resource, None) is not None:
            st.refresh()  # §2.2 rule 1: an active list lasts for the session only
        st.blocklist_requested.discard(jid.resource)
        if not self.ctx.sessions.is_online(user):
            del self._online[user]
            self._remember_offline(user, st)

    # -- reading and changing (for the protocol modules) ----------------------------------

    async def state(self, user: JID) -> UserPrivacy:
        """The user's lists (read only; change them through the methods below)."""
        return await self._load(user)

    async def blocklist(self, user: JID, resource: str) -> list[str]:
        """XEP-0191 §3.2: the blocked JIDs; the session gets blocklist pushes from now on."""
        st = await self._load(user)
        st.blocklist_requested.add(resource)
        return st.blocklist()

    @asynccontextmanager
    async def _changing(self, user: JID) -> AsyncIterator[UserPrivacy]:
        """Serialise read-modify-write of one user's lists."""
        entry = self._locks.get(user)
        if entry is None:
            entry = self._locks[user] = _UserLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield await self._load(user)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[user]

    async def _store(self, user: JID, key: str, value: str | None) -> None:
        assert user.local is not None
        await self.ctx.storage.set_data(user.local, user.domain, STORE, key, value)

    def _in_use_elsewhere(self, user: JID, st: UserPrivacy, name: str, resource: str) -> bool:
        """§2.2 rule 11: whether ``name`` applies to a session other than ``resource``."""
        for other in self.ctx.sessions.resources(user):
            if other == resource:
                continue
            active = st.active.get(other)
            if active == name or (active is None and st.default == name):
                return True
        return False

    async def put_list(self, user: JID, lst: PrivacyList) -> None:
        """XEP-0016 §2.6, §2.7: create or replace a list (in force at once, rule 8)."""
        async with self._changing(user) as st:
            if lst.name not in st.lists and len(st.lists) >= MAX_LISTS:
                raise StanzaError(_C.NOT_ALLOWED, f"at most {MAX_LISTS} privacy lists")
            await self._store(user, _LIST_PREFIX + lst.name, list_to_json(lst))
            self._apply(user, st, {**st.lists, lst.name: lst}, st.default)
            self._push_list(user, lst.name)

    async def remove_list(self, user: JID, resource: str, name: str) -> None:
        """XEP-0016 §2.8."""
        async with self._changing(user) as st:
            if name not in st.lists:
                raise StanzaError(_C.ITEM_NOT_FOUND)
            if self._in_use_elsewhere(user, st, name, resource):
                raise StanzaError(_C.CONFLICT, "another session uses this list")
            default = None if st.default == name else st.default
            if default != st.default:
                await self._store(user, _DEFAULT_KEY, None)
            await self._store(user, _LIST_PREFIX + name, None)
            if st.active.get(resource) == name:
                del st.active[resource]
            self._apply(user, st, {k: v for k, v in st.lists.items() if k != name}, default)
            self._push_list(user, name)

    async def set_default(self, user: JID, resource: str, name: str | None) -> None:
        """XEP-0016 §2.5: make ``name`` the default list, or decline one (``None``)."""
        async with self._changing(user) as st:
            if name is not None and name not in st.lists:
                raise StanzaError(_C.ITEM_NOT_FOUND)
            if name == st.default:
                return
            if st.default is not None and any(
                other != resource and other not in st.active
                for other in self.ctx.sessions.resources(user)
            ):
                raise StanzaError(_C.CONFLICT, "the default list applies to another session")
            await self._store(user, _DEFAULT_KEY, name)
            self._apply(user, st, st.lists, name)

    async def set_active(self, user: JID, resource: str, name: str | None) -> None:
        """XEP-0016 §2.4: the session's active list, or none; in force before the result."""
        async with self._changing(user) as st:
            if name is None:
                st.active.pop(resource, None)
            elif name not in st.lists:
                raise StanzaError(_C.ITEM_NOT_FOUND)
            else:
                st.active[resource] = name
            st.refresh()

    async def block(self, user: JID, jids: list[str]) -> None:
        """XEP-0191 §3.3: deny ``jids`` (normalised) everything, in the default list."""
        async with self._changing(user) as st:
            current = st.default_list()
            if current is None:
                name = BLOCKLIST_NAME
                n = 1
                while name in st.lists:
                    n += 1
                    name = f"{BLOCKLIST_NAME}-{n}"
                if len(st.lists) >= MAX_LISTS:
                    raise StanzaError(_C.NOT_ALLOWED, f"at most {MAX_LISTS} privacy lists")
                current = PrivacyList(name)
            have = set(current.blocked())
            new = [j for j in dict.fromkeys(jids) if j not in have]
            if not new:
                return
            if len(current.items) + len(new) > MAX_ITEMS:
                raise StanzaError(_C.NOT_ALLOWED, f"at most {MAX_ITEMS} blocked JIDs")
            updated = with_blocked(current, new)
            await self._store(user, _LIST_PREFIX + updated.name, list_to_json(updated))
            if st.default != updated.name:
                await self._store(user, _DEFAULT_KEY, updated.name)
            self._apply(user, st, {**st.lists, updated.name: updated}, updated.name)
            self._push_list(user, updated.name)

    async def unblock(self, user: JID, jids: list[str] | None) -> None:
        """XEP-0191 §3.4 (``None``: unblock everyone, §3.5)."""
        async with self._changing(user) as st:
            current = st.default_list()
            if current is None:
                return
            updated = without_blocked(current, jids)
            if updated is current:
                return
            await self._store(user, _LIST_PREFIX + updated.name, list_to_json(updated))
            lists = {**st.lists, updated.name: updated}
            self._apply(user, st, lists, st.default, unblock_all=jids is None)
            self._push_list(user, updated.name)

    # -- what a committed change sets off ---------------------------------------------------

    def _apply(
        self,
        user: JID,
        st: UserPrivacy,
        lists: dict[str, PrivacyList],
        default: str | None,
        *,
        unblock_all: bool = False,
    ) -> None:
        """Install a committed change; announce and push what it did to the blocklist.

        Whichever protocol changed the default list, its blocklist view changed with it
        (XEP-0191 §5), so the XEP-0191 side effects follow from the difference.
        """
        before = st.blocklist()
        new_default = None if default is None else lists.get(default)
        after = [] if new_default is None else new_default.blocked()
        was, now = set(before), set(after)
        newly = [j for j in after if j not in was]
        gone = [j for j in before if j not in now]
        for jid in newly:
            self._hide_from(user, JID.parse(jid))  # while the old rules still let it out
        st.lists = lists
        st.default = default
        st.refresh()
        for jid in gone:
            self._show_to(user, JID.parse(jid))
        if newly:
            self._push_blocklist(user, st, "block", newly)
        if gone:
            self._push_blocklist(user, st, "unblock", [] if unblock_all else gone)

    def _hide_from(self, user: JID, blocked: JID) -> None:
        """XEP-0191 §3.3: unavailable from each available resource to the blocked JID, if
        it may see the user's presence (a subscriber, or sent directed presence)."""
        roster = self.rosters.cached(user)
        subscribers = [] if roster is None else [JID.parse(c) for c in roster.subscribers()]
        watching = [c for c in subscribers if jid_matches(blocked, c)]
        for conn in list(self.ctx.sessions.resources(user).values()):
            if not conn.available or conn.jid is None:
                continue
            directed = [d for d in conn.directed if jid_matches(blocked, d)]
            conn.directed.difference_update(directed)
            for target in dict.fromkeys([*watching, *directed]):
                attrs = {"type": "unavailable", "from": conn.jid_str, "to": str(target)}
                self.ctx.route(Element("presence", ns.CLIENT, attrs), conn.jid, target)

    def _show_to(self, user: JID, unblocked: JID) -> None:
        """XEP-0191 §3.4: current presence again to the subscribers it covered."""
        roster = self.rosters.cached(user)
        if roster is None:
            return
        for contact in roster.subscribers():
            cjid = JID.parse(contact)
            presence = self.ctx.maybe_service(PRESENCE)
            if jid_matches(unblocked, cjid) and presence is not None:
                presence.send_current_presence(user, cjid)

    def _push_blocklist(self, user: JID, st: UserPrivacy, verb: str, jids: list[str]) -> None:
        """XEP-0191 §3.3-3.5: to each session that requested the blocklist."""
        sessions = self.ctx.sessions.resources(user)
        for resource in st.blocklist_requested:
            conn = sessions.get(resource)
            if conn is None:
                continue
            payload = Element(verb, BLOCKING)
            for jid in jids:
                payload.sub("item", attrs={"jid": jid})
            attrs = {"type": "set", "id": self.ctx.new_id(), "to": conn.jid_str}
            self.ctx.deliver(conn, Element("iq", ns.CLIENT, attrs, [payload]))

    def _push_list(self, user: JID, name: str) -> None:
        """XEP-0016 §2.2 rule 10: the list's name to every connected resource."""
        for conn in self.ctx.sessions.resources(user).values():
            query = Element("query", PRIVACY, None, [Element("list", PRIVACY, {"name": name})])
            attrs = {"type": "set", "id": self.ctx.new_id(), "to": conn.jid_str}
            self.ctx.deliver(conn, Element("iq", ns.CLIENT, attrs, [query]))
