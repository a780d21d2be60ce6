"""The storage contract for MUC room archives (XEP-0313 on a room JID, XEP-0425
tombstones): every backend, through the ``Storage`` protocol only."""

from __future__ import annotations

import pytest

from roost.storage import (
    ArchiveIdNotFound,
    ArchiveQuery,
    RoomArchivedMessage,
    Storage,
    archive_id,
)

ROOM = "coven@chat.shakespeare.example"
OTHER = "heath@chat.shakespeare.example"
sid = archive_id


def msg(seq: int, nick: str = "firstwitch", room: str = ROOM) -> RoomArchivedMessage:
    jid = None if not nick else f"{nick}@shakespeare.example/pda"
    return RoomArchivedMessage(
        room=room,
        seq=seq,
        nick=nick,
        jid=jid,
        stanza=f"<message type='groupchat'><body>{seq}</body></message>",
    )


def ids(page: object) -> list[str]:
    return [m.id for m in page.messages]  # type: ignore[attr-defined]


async def test_room_archive_pages_and_filters(storage: Storage) -> None:
    rows = [msg(s, "firstwitch" if s % 2 else "secondwitch") for s in range(1, 11)]
    assert await storage.archive_room_messages([*rows, msg(11, room=OTHER)]) == 11
    page = await storage.query_room_archive(ROOM, ArchiveQuery(limit=4))
    assert (ids(page), page.count, page.index, page.complete) == (
        [sid(1), sid(2), sid(3), sid(4)],
        10,
        0,
        False,
    )
    assert (
        page.messages[0] == rows[0] and page.messages[0].sender == "firstwitch@shakespeare.example"
    )
    page = await storage.query_room_archive(ROOM, ArchiveQuery(before="", limit=3))
    assert (ids(page), page.index, page.complete) == ([sid(8), sid(9), sid(10)], 7, False)
    # by occupant nick, by real JID (and its resource), by id range
    page = await storage.query_room_archive(ROOM, ArchiveQuery(nick="secondwitch", limit=50))
    assert ids(page) == [sid(s) for s in (2, 4, 6, 8, 10)]
    q = ArchiveQuery(peer="firstwitch@shakespeare.example", resource="pda", after_id=sid(5))
    assert ids(await storage.query_room_archive(ROOM, q)) == [sid(7), sid(9)]
    q = ArchiveQuery(peer="firstwitch@shakespeare.example", resource="phone")
    assert ids(await storage.query_room_archive(ROOM, q)) == []
    # an id of another room is not found in this one
    with pytest.raises(ArchiveIdNotFound):
        await storage.query_room_archive(ROOM, ArchiveQuery(after=sid(11)))
    assert await storage.get_room_message(ROOM, sid(11)) is None
    # an id too big for any archive (16 hex digits above 2**63) is simply not there
    assert await storage.get_room_message(ROOM, "f" * 16) is None
    with pytest.raises(ArchiveIdNotFound):
        await storage.query_room_archive(ROOM, ArchiveQuery(after="f" * 16))
    assert await storage.get_room_message(OTHER, sid(11)) == msg(11, room=OTHER)
    assert await storage.last_room_archive_seq() == 11


async def test_room_message_replaced_in_place(storage: Storage) -> None:
    await storage.archive_room_messages([msg(1), msg(2), msg(3)])
    assert await storage.replace_room_message(ROOM, 2, "<message><retracted/></message>")
    assert not await storage.replace_room_message(OTHER, 2, "<message/>")
    got = await storage.get_room_message(ROOM, sid(2))
    assert got is not None and got.stanza == "<message><retracted/></message>"
    assert (got.seq, got.nick, got.jid) == (2, "firstwitch", msg(2).jid)


async def test_room_archive_deleted_expired_trimmed(storage: Storage) -> None:
    await storage.archive_room_messages([msg(s) for s in range(1, 6)])
    await storage.archive_room_messages([msg(s, room=OTHER) for s in range(6, 12)])
    # a destroyed room loses its messages up to the destruction, another room none
    assert await storage.delete_room_archive(ROOM, 3) == 3
    assert ids(await storage.query_room_archive(ROOM, ArchiveQuery())) == [sid(4), sid(5)]
    assert await storage.expire_room_archives(5) == 1
    assert await storage.trim_room_archives(2) == 4
    assert ids(await storage.query_room_archive(OTHER, ArchiveQuery())) == [sid(10), sid(11)]
    assert ids(await storage.query_room_archive(ROOM, ArchiveQuery())) == [sid(5)]
