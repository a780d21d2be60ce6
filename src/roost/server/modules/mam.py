"""XEP-0313 Message Archive Management: a per-user archive of one-to-one messages, both
directions, with XEP-0359 stanza ids, XEP-0059 paging and XEP-0441 preferences.

What is archived (XEP-0313 §5.1.1): chat and normal messages with a ``<body/>`` (or a
XEP-0334 ``<store/>`` hint), not errors, groupchat or headlines, and nothing with a
``<no-store/>`` or ``<no-permanent-store/>`` hint. A message a local user sends goes into the
sender's archive before it is routed (``message/outbound``); a message for a local user goes
into the recipient's archive as it is delivered (``message/deliver``) or stored offline
(``message/offline``), stamped with ``<stanza-id by='user@domain' id='...'/>``.

Routing never waits for the database. An archived message is queued in memory and a
writer task commits the queue in one transaction per batch (group commit: whatever queued
while the previous batch was on its way to disk goes in the next one). A query first waits
for the queue to be written, so it sees everything archived before it. ``MamService.flushed``
(service ``ARCHIVE``) is how another module learns a message is durable: every message
archived before the call is committed (``synchronous = FULL``) when it returns.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import Final

from roost.core import ns
from roost.core.delay import xep0082_datetime
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.mam import (
    HINTS,
    MAM0,
    MAM2,
    MAM2_EXTENDED,
    MAM_NAMESPACES,
    SID,
    Prefs,
    fin_element,
    parse_prefs,
    parse_query,
    prefs_element,
    query_form,
    result_message,
)
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import escape_attr, serialize
from roost.server import events
from roost.server.api import HANDLED, IqRequest, IqResult, ModuleContext
from roost.server.config import ArchiveConfig
from roost.server.delivery import STANZA_NAMESPACES
from roost.server.group_commit import GroupCommit
from roost.server.services import ARCHIVE, ROSTERS
from roost.server.session import Session
from roost.storage.api import (
    ArchivedMessage,
    ArchiveIdNotFound,
    ArchivePrefs,
    ArchiveQuery,
    archive_id,
)

__all__ = ["MamModule"]

log = logging.getLogger(__name__)

_C = StanzaErrorCondition
#: rows per transaction at most (a burst is written in several)
_MAX_BATCH: Final = 2000
#: messages waiting for the writer at most (a stuck disk must not take all memory); beyond
#: it messages are not archived, and ``flushed`` raises for them
_MAX_QUEUE: Final = 200_000
#: before the offline module (priority 0) stores the message, so the stored copy has its id
_PRIORITY: Final = 100
#: messages marked as routed again (``again``) and not seen since, kept at most
_MAX_AGAIN: Final = 10_000
_DEFAULT_PAGE: Final = 50


def _archivable(stanza: Element) -> bool:
    """XEP-0313 §5.1.1 and XEP-0334 §4: is this message for the user's archive?"""
    mtype = stanza.attrs.get("type") or "normal"
    if mtype not in ("chat", "normal"):
        return False
    wanted = False
    for child in stanza.children:
        if isinstance(child, str):
            continue
        if child.ns == HINTS:
            if child.tag in ("no-store", "no-permanent-store"):
                return False
            if child.tag == "store":
                wanted = True
        elif child.tag == "body" and child.ns == stanza.ns:
            wanted = True
    return wanted


def _strip_ids(stanza: Element, by: str) -> None:
    """XEP-0359 §5: a stanza-id claiming to come from the archive's owner is a forgery."""
    children = stanza.children
    for c in children:  # (a loop, not any(): this runs twice for every message)
        if not isinstance(c, str) and c.tag == "stanza-id" and c.ns == SID and c.get("by") == by:
            break
    else:
        return
    # A new list: copies of the stanza made for other recipients share the old one.
    stanza.children = [
        c
        for c in children
        if isinstance(c, str) or not (c.tag == "stanza-id" and c.ns == SID and c.get("by") == by)
    ]


def _seq_of(message: ArchivedMessage) -> int:
    return message.seq


class _Pending:
    """A message whose archiving depends on a roster that was not in memory."""

    __slots__ = ("message", "peer", "user")

    def __init__(self, message: ArchivedMessage, user: JID, peer: str) -> None:
        self.message = message
        self.user = user
        self.peer = peer


class MamModule:
    name = "mam"
    depends = ("roster",)
    Options = ArchiveConfig
    config_section = "archive"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.options: ArchiveConfig = ctx.options
        self.rosters = ctx.service(ROSTERS)
        self._last_seq = 0
        #: users' own preferences, all of them in memory (few users set any), once loaded
        self._prefs: dict[JID, Prefs] = {}
        self._loaded = False
        self._default = Prefs(self.options.default_policy)
        self._writer: GroupCommit[ArchivedMessage | _Pending] = GroupCommit(
            ctx.spawn,
            self._write,
            what="messages",
            max_batch=_MAX_BATCH,
            max_queue=_MAX_QUEUE,
            delay=lambda: self.options.batch_delay,
        )
        #: sessions that queried the archive (XEP-0198 counts what the archive holds as
        #: delivered to those only)
        self._queriers: set[Session] = set()
        #: messages on their way again (see ``again``), by identity: the reference held
        #: here keeps the id from being reused
        self._again: collections.OrderedDict[int, Element] = collections.OrderedDict()
        #: the last message archived as sent: (it, its children then, its attributes then,
        #: its text), so its delivery to a local user is not serialised a second time
        self._sent: tuple[Element, list[Element | str], dict[str, str], str] | None = None
        self._init = ctx.spawn(self._load())
        for mam_ns in MAM_NAMESPACES:
            ctx.iq("account", "set", mam_ns, "query", self.query, advertise=False)
            ctx.iq("account", "get", mam_ns, "query", self.form, advertise=False)
            ctx.iq("account", "get", mam_ns, "prefs", self.get_prefs, advertise=False)
            ctx.iq("account", "set", mam_ns, "prefs", self.set_prefs, advertise=False)
            ctx.account_feature(mam_ns)
        ctx.iq("account", "get", MAM2, "metadata", self.metadata, advertise=False)
        ctx.account_feature(MAM2_EXTENDED)
        ctx.account_feature(SID)  # XEP-0359 §6: the account stamps stanza ids
        ctx.filter(events.MESSAGE_OUTBOUND, self.outbound, _PRIORITY)
        ctx.filter(events.MESSAGE_DELIVER, self.delivering, _PRIORITY)
        ctx.filter(events.MESSAGE_OFFLINE, self.offline, _PRIORITY)
        ctx.observe(events.SESSION_CLOSED, self._session_closed)
        ctx.provide(ARCHIVE, self)
        if self.options.expire_after or self.options.max_items:
            ctx.every(self.options.cleanup_interval, lambda: ctx.spawn(self.cleanup()))

    async def _load(self) -> None:
        storage = self.ctx.storage
        self._last_seq = max(self._last_seq, await storage.last_archive_seq())
        for domain in self.ctx.domains:
            for username, prefs in (await storage.get_archive_prefs(domain)).items():
                self._prefs.setdefault(
                    JID.make(username, domain), Prefs(prefs.default, prefs.always, prefs.never)
                )
        self._loaded = True

    def _session_closed(self, session: Session, error: object) -> None:
        self._queriers.discard(session)
        user = session.bare
        if user in self._prefs and not self.ctx.sessions.resources(user):
            # The account may be gone (XEP-0077 removal ends its sessions): its stored
            # preferences went with it, so must the copy here.
            self.ctx.spawn(self._forget_if_deleted(user))

    async def _forget_if_deleted(self, user: JID) -> None:
        assert user.local is not None
        if not await self.ctx.accounts.exists(user.local, user.domain):
            self._prefs.pop(user, None)

    # -- the service other modules use (``ARCHIVE``) -----------------------------------------

    async def flushed(self) -> None:
        """Return once every message routed before the call is in the archives it goes
        to, committed to disk (or its write failed: then that error is raised)."""
        # Messages still waiting in the router (for privacy rules) are archived as they
        # are delivered: wait for them to get here first.
        await self.ctx.routed()
        await self._writer.flushed()

    def queried(self, session: Session) -> bool:
        """Whether this session has queried the archive since it was bound (a client that
        uses MAM finds there what it missed)."""
        return session in self._queriers

    def archived(self, user: JID, stanza: Element) -> str | None:
        """The id the user's archive gave this message, if it has one (its stanza-id)."""
        by = str(user.bare)
        for child in stanza.elements():
            if child.tag == "stanza-id" and child.ns == SID and child.get("by") == by:
                return child.get("id")
        return None

    def again(self, stanza: Element) -> None:
        """``stanza`` is a message this server delivered or stored offline before, routed
        again (XEP-0198 unacknowledged, an offline message replayed): the archive took it
        then, so it is not archived a second time, and the recipient archive's stanza-id
        on it is kept (it is the archive's own, not a sender's forgery)."""
        self._again[id(stanza)] = stanza
        if len(self._again) > _MAX_AGAIN:
            # dropped on the way (refused, bounced) and never seen here: forget the oldest
            self._again.popitem(last=False)

    # -- what goes in --------------------------------------------------------------------

    def _policy(self, user: JID, peer: str) -> bool | None:
        """The user's preferences for ``peer`` (a bare JID); None: it depends on a roster
        not in memory (or the preferences are still loading)."""
        if not self._loaded:
            return None
        prefs = self._prefs.get(user, self._default)
        if peer in prefs.never:
            return False
        if peer in prefs.always or prefs.default == "always":
            return True
        if prefs.default == "never":
            return False
        roster = self.rosters.cached(user)
        return None if roster is None else peer in roster.items

    def _next_seq(self) -> int:
        # Microseconds since the epoch, strictly increasing: order, time and id in one.
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        return seq

    def _archive(
        self,
        stanza: Element,
        user: JID,
        peer: JID,
        *,
        outgoing: bool,
        stamp: bool,
        text: str | None = None,
    ) -> str | None:
        """Queue ``stanza`` for ``user``'s archive (stamped with its stanza-id if ``stamp``);
        the text archived, or None if it is not. ``text``: the stanza serialised already,
        before the stamp."""
        if not self.ctx.is_local_user(user):
            return None
        peer_bare = str(peer.bare)
        decision = self._policy(user, peer_bare)
        if decision is False:
            return None
        if self._writer.full:
            self._writer.lose()
            return None
        seq = self._next_seq()
        default = stanza.ns if stanza.ns in STANZA_NAMESPACES else ns.CLIENT
        if stamp and decision:
            by = str(user)
            stanza_id = archive_id(seq)
            stanza.children = [
                *stanza.children,
                Element("stanza-id", SID, {"by": by, "id": stanza_id}),
            ]
            close = f"</{stanza.tag}>"
            if text is not None and text.endswith(close) and stanza.ns != ns.STREAM:
                # What serialize() writes for the stamped stanza: the stanza-id is its
                # last child, in a namespace of its own.
                text = (
                    f"{text[: -len(close)]}<stanza-id xmlns='{SID}' by='{escape_attr(by)}'"
                    f" id='{stanza_id}'/>{close}"
                )
            else:
                text = None
        if text is None:
            text = serialize(stanza, default)
        assert user.local is not None
        message = ArchivedMessage(
            user.local, user.domain, seq, peer_bare, peer.resource, outgoing, text
        )
        self._writer.put(message if decision else _Pending(message, user, peer_bare))
        return text

    def outbound(self, stanza: Element, session: Session, to: JID) -> bool:
        user = session.bare
        _strip_ids(stanza, str(user))
        if to.bare != user and _archivable(stanza):
            # A message to oneself is archived once, when it is delivered.
            text = self._archive(stanza, user, to, outgoing=True, stamp=False)
            if text is not None:
                self._sent = (stanza, stanza.children.copy(), stanza.attrs.copy(), text)
        return False

    def delivering(self, stanza: Element, sender: JID, to: JID, sessions: object) -> bool:
        if self._again and self._again.pop(id(stanza), None) is stanza:
            return False  # archived when it first came (#12: once per archive)
        user = to.bare
        _strip_ids(stanza, str(user))
        if _archivable(stanza):
            text = None
            sent, self._sent = self._sent, None
            if (
                sent is not None
                and sent[0] is stanza
                and sent[1] == stanza.children
                and sent[2] == stanza.attrs
            ):
                # #12: a local user's message to a local user, unchanged since the sender's
                # archive took it: the recipient's copy is that text with its stanza-id.
                text = sent[3]
            self._archive(stanza, user, sender, outgoing=False, stamp=True, text=text)
        return False

    def offline(self, stanza: Element, sender: JID, to: JID) -> bool:
        return self.delivering(stanza, sender, to, ())

    # -- the writer (``roost.server.group_commit``) -----------------------------------------

    async def _write(self, batch: list[ArchivedMessage | _Pending]) -> None:
        if not self._loaded:
            await self._init
        rows = [m for m in batch if type(m) is ArchivedMessage]
        if len(rows) < len(batch):
            for item in batch:
                if isinstance(item, _Pending) and await self._decide(item.user, item.peer):
                    rows.append(item.message)
            rows.sort(key=_seq_of)  # (the rest are queued in order)
        await self.ctx.storage.archive_messages(rows)

    async def _decide(self, user: JID, peer: str) -> bool:
        decision = self._policy(user, peer)
        if decision is not None:
            return decision
        roster = await self.rosters.get(user)
        return peer in roster.items

    # -- retention -----------------------------------------------------------------------

    async def cleanup(self) -> int:
        """Delete what ``expire_after`` and ``max_items`` no longer keep; how many went."""
        await self.flushed()
        storage = self.ctx.storage
        deleted = 0
        if self.options.expire_after:
            cutoff = int((time.time() - self.options.expire_after) * 1_000_000)
            deleted += await storage.expire_archive(cutoff)
        if self.options.max_items:
            deleted += await storage.trim_archives(self.options.max_items)
        if deleted:
            log.info("archive clean-up deleted %d messages", deleted)
        return deleted

    # -- queries (XEP-0313 §4) -----------------------------------------------------------

    @staticmethod
    def _own(req: IqRequest) -> JID:
        # XEP-0313 §9.1: only the user reads the user's archive.
        if req.sender.bare != req.to:
            raise StanzaError(_C.FORBIDDEN)
        return req.to

    def form(self, req: IqRequest) -> IqResult:
        self._own(req)
        return query_form(req.payload.ns)

    async def query(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        assert user.local is not None
        mam_ns = req.payload.ns
        q = parse_query(req.payload)
        limit = _DEFAULT_PAGE if q.max is None else q.max
        limit = min(limit, self.options.max_page)
        with_ = q.with_
        query = ArchiveQuery(
            peer=None if with_ is None else str(with_.bare),
            resource=None if with_ is None else with_.resource,
            # Whole milliseconds, as the delay stamps give them: an 'end' copied from a
            # stamp still includes that message.
            start=None if q.start is None else math.floor(q.start * 1000) * 1000,
            end=None if q.end is None else math.floor(q.end * 1000) * 1000 + 999,
            after_id=q.after_id,
            before_id=q.before_id,
            ids=q.ids,
            after=q.after,
            before=q.before,
            limit=limit,
        )
        await self.flushed()  # see what was archived before the query
        try:
            page = await self.ctx.storage.query_archive(user.local, user.domain, query)
        except ArchiveIdNotFound as exc:
            raise StanzaError(_C.ITEM_NOT_FOUND, f"no message {exc} in the archive") from None
        session = req.session
        if session is not None:
            self._queriers.add(session)

        def send(stanza: Element) -> None:
            if session is not None:
                self.ctx.deliver(session, stanza)
            else:
                self.ctx.deliver_to(req.sender, stanza)

        if mam_ns == MAM0:
            # v0.3: the (empty) iq result first, the results, then <fin/> in a message
            reply = {"type": "result", "id": req.stanza.attrs["id"], "to": str(req.sender)}
            if req.stanza.attrs.get("to") is not None:
                reply["from"] = req.stanza.attrs["to"]
            send(Element("iq", ns.CLIENT, reply))
        messages = reversed(page.messages) if q.flip else page.messages
        for m in messages:
            try:
                original = parse_fragment(m.stanza)
            except ValueError:
                log.warning("unreadable archived message %s of %s", m.id, user)
                continue
            result = result_message(
                mam_ns,
                str(req.sender),
                str(user),
                self.ctx.new_id(),
                q.queryid,
                m.id,
                xep0082_datetime(m.seq / 1_000_000),
                original,
            )
            send(result)
        first = page.messages[0].id if page.messages else None
        last = page.messages[-1].id if page.messages else None
        if mam_ns == MAM0:
            sentinel = Element("message", ns.CLIENT, {"to": str(req.sender), "from": str(user)})
            sentinel.append(
                fin_element(
                    mam_ns,
                    first,
                    last,
                    page.index,
                    page.count,
                    complete=page.complete,
                    queryid=q.queryid,
                )
            )
            send(sentinel)
            return HANDLED
        return fin_element(mam_ns, first, last, page.index, page.count, complete=page.complete)

    async def metadata(self, req: IqRequest) -> IqResult:
        """XEP-0313 §5: the first and last message of the archive."""
        user = self._own(req)
        assert user.local is not None
        await self.flushed()
        el = Element("metadata", MAM2)
        storage = self.ctx.storage
        oldest = await storage.query_archive(user.local, user.domain, ArchiveQuery(limit=1))
        if oldest.messages:
            newest = await storage.query_archive(
                user.local, user.domain, ArchiveQuery(before="", limit=1)
            )
            for tag, m in (("start", oldest.messages[0]), ("end", newest.messages[0])):
                el.sub(tag, attrs={"id": m.id, "timestamp": xep0082_datetime(m.seq / 1e6)})
        return el

    # -- preferences (XEP-0441) ----------------------------------------------------------

    async def get_prefs(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        if not self._loaded:
            await self._init
        return prefs_element(req.payload.ns, self._prefs.get(user, self._default))

    async def set_prefs(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        assert user.local is not None
        prefs = parse_prefs(req.payload)
        if not self._loaded:
            await self._init
        await self.ctx.storage.set_archive_prefs(
            user.local, user.domain, ArchivePrefs(prefs.default, prefs.always, prefs.never)
        )
        self._prefs[user] = prefs
        return prefs_element(req.payload.ns, prefs)
