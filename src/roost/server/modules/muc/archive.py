"""XEP-0313 archives of MUC rooms (XEP-0313 §3.3.2, §6.1.2) and XEP-0425 moderation of
what they hold: the part of the ``muc`` module (a package) that deals with the disk.

A room with ``muc#roomconfig_enablearchiving`` on archives every groupchat message it
broadcasts with a body or a subject (not private messages, nothing with a XEP-0334
``no-store`` hint), once; the room's XEP-0359 ``<stanza-id by='room'/>`` is the archive id.
As in the user archive (``mam.py``), routing never waits for the database: a message is
queued in memory and one writer commits the queue in one transaction per batch.
``RoomArchive.flushed`` returns once everything queued before it is committed; a query and a
moderation wait for it, so they see every message broadcast before them, and a query's answer
means what it covers survives ``kill -9``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from roost.core import ns
from roost.core.delay import xep0082_datetime
from roost.core.errors import StanzaError
from roost.core.errors import StanzaErrorCondition as C
from roost.core.jid import JID
from roost.core.mam import HINTS, MAM2, fin_element, parse_query, query_form, result_message
from roost.core.moderation import MODERATE, announcement, parse_moderate, tombstone
from roost.core.muc import MUC_USER, RANK, Affiliation, HistoryItem, Role
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.config import ArchiveConfig
from roost.server.group_commit import GroupCommit
from roost.storage.api import (
    ArchiveIdNotFound,
    ArchiveQuery,
    RoomArchivedMessage,
    archive_id,
)

if TYPE_CHECKING:
    from roost.server.api import ModuleContext
    from roost.server.modules.muc import MucService, Room

__all__ = ["RoomArchive", "archivable"]

log = logging.getLogger(__name__)

#: rows per transaction at most
_MAX_BATCH: Final = 2000
#: messages waiting for the writer at most; beyond it they are not archived (a stuck disk
#: must not take all memory): they get a stanza-id that is no archive id
_MAX_QUEUE: Final = 200_000
_DEFAULT_PAGE: Final = 50
SID: Final = "urn:xmpp:sid:0"


def archivable(msg: Element) -> bool:
    """XEP-0313 §6.1.2: messages with a body, and subject changes; XEP-0334 §4: not with a
    ``no-store`` or ``no-permanent-store`` hint."""
    wanted = False
    for child in msg.elements():
        if child.ns == HINTS and child.tag in ("no-store", "no-permanent-store"):
            return False
        if child.ns == ns.CLIENT and child.tag in ("body", "subject"):
            wanted = True
    return wanted


class _Deletion:
    """A destroyed room's archive, up to the last message queued before it went."""

    __slots__ = ("room", "up_to")

    def __init__(self, room: str, up_to: int) -> None:
        self.room = room
        self.up_to = up_to


class RoomArchive:
    """Every room archive of the ``muc`` module: the write queue, queries, moderation."""

    def __init__(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.options: ArchiveConfig = ctx.config.archive
        self._last_seq = 0
        self._writer: GroupCommit[RoomArchivedMessage | _Deletion] = GroupCommit(
            ctx.spawn,
            self._write,
            what="room messages",
            max_batch=_MAX_BATCH,
            max_queue=_MAX_QUEUE,
            delay=lambda: self.options.batch_delay,
        )

    async def load(self) -> None:
        """Before any room speaks: ids after a restart follow the stored ones."""
        self._last_seq = max(self._last_seq, await self.ctx.storage.last_room_archive_seq())

    # -- what goes in --------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        return seq

    def append(self, room: JID, nick: str, sender: JID | None, msg: Element) -> str | None:
        """Queue ``msg`` (as broadcast, before its stanza-id) for the room's archive; its
        archive id, or None when the queue is full."""
        if self._writer.full:
            self._writer.lose()
            return None
        seq = self._next_seq()
        self._writer.put(
            RoomArchivedMessage(
                room=str(room),
                seq=seq,
                nick=nick,
                jid=None if sender is None else str(sender),
                stanza=serialize(msg),
            )
        )
        return archive_id(seq)

    def drop(self, room: JID) -> None:
        """The room is gone: its archive goes, after what was queued for it."""
        self._writer.put(_Deletion(str(room), self._last_seq))

    async def flushed(self) -> None:
        """Return once every message queued before the call is committed (or raise the
        error its write failed with)."""
        await self._writer.flushed()

    # -- the writer (``roost.server.group_commit``) -----------------------------------------

    async def _write(self, batch: list[RoomArchivedMessage | _Deletion]) -> None:
        storage = self.ctx.storage
        run: list[RoomArchivedMessage] = []
        for entry in batch:
            if isinstance(entry, RoomArchivedMessage):
                run.append(entry)
                continue
            if run:
                await storage.archive_room_messages(run)
                run = []
            await storage.delete_room_archive(entry.room, entry.up_to)
        if run:
            await storage.archive_room_messages(run)

    # -- retention (the [archive] table) ---------------------------------------------------

    async def cleanup(self) -> int:
        """Delete what ``archive.expire_after`` and ``archive.max_items`` (per room) no
        longer keep; how many went."""
        await self.flushed()
        storage = self.ctx.storage
        deleted = 0
        if self.options.expire_after:
            cutoff = int((time.time() - self.options.expire_after) * 1_000_000)
            deleted += await storage.expire_room_archives(cutoff)
        if self.options.max_items:
            deleted += await storage.trim_room_archives(self.options.max_items)
        if deleted:
            log.info("room archive clean-up deleted %d messages", deleted)
        return deleted

    # -- queries (XEP-0313 §4 on the room JID) ---------------------------------------------

    @staticmethod
    def may_query(room: Room, sender: JID) -> None:
        """XEP-0313 §6.1.2: whoever may enter the room now: not outcasts, only members
        and above in a members-only room. A password-protected room's archive is for its
        occupants and members (a query cannot carry the password)."""
        aff = room.affiliation(sender.bare)
        if aff is Affiliation.OUTCAST:
            raise StanzaError(C.FORBIDDEN, "banned from the room")
        member = RANK[aff] >= RANK[Affiliation.MEMBER]
        if room.config.members_only and not member:
            raise StanzaError(C.FORBIDDEN, "the archive of a members-only room is for members")
        if room.config.password and not member and sender not in room.by_jid:
            raise StanzaError(C.FORBIDDEN, "the archive of this room is for its occupants")

    @staticmethod
    def sees_jids(room: Room, sender: JID) -> bool:
        """XEP-0313 §6.1.2, XEP-0045 §5.1.1: real JIDs for everyone in a non-anonymous
        room, else for moderators (admins and owners, who are moderators when present)."""
        if room.non_anonymous or RANK[room.affiliation(sender.bare)] >= RANK[Affiliation.ADMIN]:
            return True
        occ = room.by_jid.get(sender)
        return occ is not None and occ.role is Role.MODERATOR

    def query_iq(self, service: MucService, room: Room, iq: Element, sender: JID) -> None:
        """An iq to the room in a MAM namespace: the form (get) or a query (set)."""
        payload = iq.find()
        assert payload is not None
        self.may_query(room, sender)
        if iq.get("type") == "get":
            if payload.tag == "metadata" and payload.ns == MAM2:
                self.ctx.spawn(self._metadata(service, room, iq, sender))
            elif payload.tag == "query":
                service.result(iq, sender, query_form(payload.ns))
            else:
                raise StanzaError(C.SERVICE_UNAVAILABLE)
            return
        if payload.tag != "query":
            raise StanzaError(C.SERVICE_UNAVAILABLE)
        q = parse_query(payload)
        nick = peer = resource = None
        if q.with_ is not None:
            if q.with_.bare == room.jid:
                nick = q.with_.resource  # an occupant JID: nicks are public
            elif self.sees_jids(room, sender):
                peer, resource = str(q.with_.bare), q.with_.resource
            else:
                # §4.1.1: by publisher only for those who may know the publisher
                raise StanzaError(C.FORBIDDEN, "this room does not show real JIDs to you")
        limit = min(_DEFAULT_PAGE if q.max is None else q.max, self.options.max_page)
        query = ArchiveQuery(
            peer=peer,
            resource=resource,
            nick=nick,
            start=None if q.start is None else math.floor(q.start * 1000) * 1000,
            end=None if q.end is None else math.floor(q.end * 1000) * 1000 + 999,
            after_id=q.after_id,
            before_id=q.before_id,
            ids=q.ids,
            after=q.after,
            before=q.before,
            limit=limit,
        )
        reveal = self.sees_jids(room, sender)
        self.ctx.spawn(
            self._answer(service, room, iq, sender, payload.ns, q.queryid, q.flip, query, reveal)
        )

    async def _answer(
        self,
        service: MucService,
        room: Room,
        iq: Element,
        sender: JID,
        mam_ns: str,
        queryid: str | None,
        flip: bool,
        query: ArchiveQuery,
        reveal: bool,
    ) -> None:
        try:
            await self.flushed()  # see what was broadcast before the query
            page = await self.ctx.storage.query_room_archive(str(room.jid), query)
        except ArchiveIdNotFound as exc:
            err = StanzaError(C.ITEM_NOT_FOUND, f"no message {exc} in the archive")
            service.reply(iq, sender, err)
            return
        except Exception:
            log.exception("querying the archive of %s failed", room.jid)
            service.reply(iq, sender, StanzaError(C.INTERNAL_SERVER_ERROR))
            return
        messages = reversed(page.messages) if flip else page.messages
        for m in messages:
            try:
                original = parse_fragment(m.stanza)
            except ValueError:
                log.warning("unreadable archived message %s of %s", m.id, room.jid)
                continue
            result = result_message(
                mam_ns,
                str(sender),
                str(room.jid),
                self.ctx.new_id(),
                queryid,
                m.id,
                xep0082_datetime(m.seq / 1_000_000),
                self._shown(room, m, original, reveal),
            )
            service.send(result, room.jid, sender)
        first = page.messages[0].id if page.messages else None
        last = page.messages[-1].id if page.messages else None
        fin = fin_element(mam_ns, first, last, page.index, page.count, complete=page.complete)
        service.result(iq, sender, fin)

    async def _metadata(self, service: MucService, room: Room, iq: Element, sender: JID) -> None:
        """XEP-0313 §5: the first and last message of the room's archive."""
        el = Element("metadata", MAM2)
        storage = self.ctx.storage
        try:
            await self.flushed()
            oldest = await storage.query_room_archive(str(room.jid), ArchiveQuery(limit=1))
            if oldest.messages:
                newest = await storage.query_room_archive(
                    str(room.jid), ArchiveQuery(before="", limit=1)
                )
                for tag, m in (("start", oldest.messages[0]), ("end", newest.messages[0])):
                    el.sub(tag, attrs={"id": m.id, "timestamp": xep0082_datetime(m.seq / 1e6)})
        except Exception:
            log.exception("reading the archive of %s failed", room.jid)
            service.reply(iq, sender, StanzaError(C.INTERNAL_SERVER_ERROR))
            return
        service.result(iq, sender, el)

    async def recent(self, room: Room) -> None:
        """After a restart, the history for newcomers (XEP-0045 §7.2.14) from the archive:
        the room's last messages with a body, as they were broadcast."""
        size = room.history.maxlen
        if not size:
            return
        page = await self.ctx.storage.query_room_archive(
            str(room.jid), ArchiveQuery(before="", limit=size)
        )
        for m in page.messages:
            if not m.nick:
                continue  # the room's own (moderation notices) are not history
            try:
                msg = parse_fragment(m.stanza)
            except ValueError:
                continue
            if msg.find("body", ns.CLIENT) is None:
                continue
            msg.sub("stanza-id", SID, {"id": m.id, "by": str(room.jid)})
            room.history.append(HistoryItem(m.seq / 1_000_000, msg, len(serialize(msg))))

    @staticmethod
    def _shown(room: Room, m: RoomArchivedMessage, original: Element, reveal: bool) -> Element:
        """XEP-0313 §6.1.2: no 'to', ``from`` the occupant JID, any ``<x/>`` of muc#user
        stripped, and the real JID added for those who may see it."""
        original.attrs.pop("to", None)
        original.children = [
            c for c in original.children if not (isinstance(c, Element) and c.ns == MUC_USER)
        ]
        if reveal and m.jid is not None:
            x = original.sub("x", MUC_USER)
            aff = room.affiliation(JID.parse(m.jid).bare)
            x.sub("item", attrs={"affiliation": aff.value, "jid": m.jid})
        return original

    # -- XEP-0425 moderation -------------------------------------------------------------

    def moderate_iq(self, service: MucService, room: Room, iq: Element, sender: JID) -> None:
        """XEP-0425 §3: a moderator retracts a message by the room's stanza-id."""
        payload = iq.find("moderate", MODERATE)
        if iq.get("type") != "set" or payload is None:
            raise StanzaError(C.SERVICE_UNAVAILABLE)
        occ = room.by_jid.get(sender)
        moderator = occ is not None and occ.role is Role.MODERATOR
        if not moderator and RANK[room.affiliation(sender.bare)] < RANK[Affiliation.ADMIN]:
            raise StanzaError(C.FORBIDDEN, "only moderators may moderate messages")
        request = parse_moderate(payload)
        if occ is not None:
            by, occupant_id = str(room.jid.with_resource(occ.nick)), occ.occupant_id
        else:  # an admin or owner not in the room
            by, occupant_id = str(room.jid), None
        self.ctx.spawn(
            self._moderate(
                service, room, iq, sender, request.stanza_id, by, occupant_id, request.reason
            )
        )

    async def _moderate(
        self,
        service: MucService,
        room: Room,
        iq: Element,
        sender: JID,
        stanza_id: str,
        by: str,
        occupant_id: str | None,
        reason: str | None,
    ) -> None:
        now = time.time()
        storage = self.ctx.storage
        try:
            await self.flushed()
            stored = await storage.get_room_message(str(room.jid), stanza_id)
            if stored is not None:
                tomb = tombstone(parse_fragment(stored.stanza), by, occupant_id, reason, now)
                await storage.replace_room_message(str(room.jid), stored.seq, serialize(tomb))
        except Exception:
            log.exception("moderating a message of %s failed", room.jid)
            service.reply(iq, sender, StanzaError(C.INTERNAL_SERVER_ERROR))
            return
        in_history = _replace_in_history(
            room, stanza_id, lambda old: tombstone(old, by, occupant_id, reason, now)
        )
        if stored is None and not in_history:
            service.reply(iq, sender, StanzaError(C.ITEM_NOT_FOUND, "no such message here"))
            return
        if service.rooms.get(room.jid) is room:
            # XEP-0425 §3.1: every occupant (the moderator too) hears of it, then the answer
            service.broadcast(room, None, None, announcement(stanza_id, by, occupant_id, reason))
        service.result(iq, sender)


def _replace_in_history(room: Room, stanza_id: str, replace: Callable[[Element], Element]) -> bool:
    """Tombstone the message with this stanza-id in the room's history for newcomers."""
    by = str(room.jid)
    for i, item in enumerate(room.history):
        for child in item.stanza.elements():
            if child.tag == "stanza-id" and child.ns == SID and child.get("by") == by:
                if child.get("id") == stanza_id:
                    new = replace(item.stanza)
                    new.sub("stanza-id", SID, {"id": stanza_id, "by": by})
                    room.history[i] = HistoryItem(item.stamp, new, len(serialize(new)))
                    return True
                break
    return False
