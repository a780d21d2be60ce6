"""The storage contract for message archives (XEP-0313): every backend, through the
``Storage`` protocol only."""

from __future__ import annotations

import pytest

from roost.storage import (
    ArchivedMessage,
    ArchiveIdNotFound,
    ArchivePrefs,
    ArchiveQuery,
    NoSuchAccount,
    Storage,
)
from tests.storage.helpers import DOMAIN, NURSE, ROMEO

TYBALT = "tybalt@capulet.example"


def msg(
    seq: int, peer: str = ROMEO, user: str = "juliet", resource: str | None = None
) -> ArchivedMessage:
    return ArchivedMessage(
        username=user,
        domain=DOMAIN,
        seq=seq,
        id=f"id{seq}",
        peer=peer,
        resource=resource,
        outgoing=seq % 2 == 0,
        stanza=f"<message><body>{seq}</body></message>",
    )


def ids(page: object) -> list[str]:
    return [m.id for m in page.messages]  # type: ignore[attr-defined]


async def test_archived_messages_page_both_ways(juliet: Storage) -> None:
    assert await juliet.archive_messages([msg(s) for s in range(1, 11)]) == 10
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(limit=4))
    assert (ids(page), page.count, page.index, page.complete) == (
        ["id1", "id2", "id3", "id4"],
        10,
        0,
        False,
    )
    assert page.messages[0] == msg(1)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(after="id8", limit=4))
    assert (ids(page), page.index, page.complete) == (["id9", "id10"], 8, True)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(before="", limit=3))
    assert (ids(page), page.index, page.complete) == (["id8", "id9", "id10"], 7, False)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(before="id3", limit=3))
    assert (ids(page), page.index, page.complete) == (["id1", "id2"], 0, True)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(limit=0))
    assert (ids(page), page.count, page.complete) == ([], 10, False)
    # romeo's archive is his own
    page = await juliet.query_archive("romeo", DOMAIN, ArchiveQuery())
    assert (ids(page), page.count, page.complete) == ([], 0, True)


async def test_archive_filters(juliet: Storage) -> None:
    rows = [msg(1, ROMEO, resource="a"), msg(2, NURSE), msg(3, ROMEO, resource="b"), msg(4, ROMEO)]
    await juliet.archive_messages(rows)

    async def q(**kw: object) -> list[str]:
        return ids(await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(**kw)))  # type: ignore[arg-type]

    assert await q(peer=ROMEO) == ["id1", "id3", "id4"]
    assert await q(peer=ROMEO, resource="b") == ["id3"]
    assert await q(start=2, end=3) == ["id2", "id3"]
    assert await q(after_id="id1", before_id="id4") == ["id2", "id3"]
    assert await q(ids=("id4", "id2")) == ["id2", "id4"]
    assert await q(ids=()) == []
    for bad in ({"after": "x"}, {"before": "x"}, {"after_id": "x"}, {"ids": ("id1", "x")}):
        with pytest.raises(ArchiveIdNotFound):
            await q(**bad)
    with pytest.raises(ArchiveIdNotFound):  # another user's id is not in this archive
        await juliet.archive_messages([msg(9, user="romeo")])
        await q(after="id9")


async def test_archive_values_are_checked() -> None:
    with pytest.raises(ValueError):
        ArchiveQuery(limit=-1)
    with pytest.raises(ValueError):
        ArchiveQuery(resource="r")
    with pytest.raises(ValueError):
        ArchivePrefs("sometimes")
    with pytest.raises(ValueError):
        ArchivedMessage("juliet", DOMAIN, 1, "", ROMEO, None, False, "<message/>")


async def test_archiving_for_a_missing_account_is_skipped(juliet: Storage) -> None:
    assert await juliet.archive_messages([msg(1), msg(2, user="nobody"), msg(3)]) == 2
    assert await juliet.last_archive_seq() == 3


async def test_expiry_and_trimming(juliet: Storage) -> None:
    await juliet.archive_messages([msg(s) for s in range(1, 11)] + [msg(11, user="romeo")])
    assert await juliet.expire_archive(4) == 3
    assert await juliet.trim_archives(5) == 2  # juliet: 4..10 -> 6..10; romeo has one
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery())
    assert ids(page) == ["id6", "id7", "id8", "id9", "id10"]
    assert await juliet.trim_archives(5) == 0


async def test_deleting_an_account_deletes_its_archive_and_prefs(juliet: Storage) -> None:
    await juliet.archive_messages([msg(1), msg(2, user="romeo")])
    await juliet.set_archive_prefs("juliet", DOMAIN, ArchivePrefs("roster", (ROMEO,), (TYBALT,)))
    assert await juliet.delete_account("juliet", DOMAIN)
    assert (await juliet.query_archive("juliet", DOMAIN, ArchiveQuery())).count == 0
    assert await juliet.get_archive_prefs(DOMAIN) == {}
    assert (await juliet.query_archive("romeo", DOMAIN, ArchiveQuery())).count == 1


async def test_archive_prefs(juliet: Storage) -> None:
    assert await juliet.get_archive_prefs(DOMAIN) == {}
    prefs = ArchivePrefs("never", (ROMEO,), ())
    await juliet.set_archive_prefs("juliet", DOMAIN, prefs)
    await juliet.set_archive_prefs("romeo", DOMAIN, ArchivePrefs("always"))
    await juliet.set_archive_prefs("juliet", DOMAIN, ArchivePrefs("roster", (), (NURSE,)))
    assert await juliet.get_archive_prefs(DOMAIN) == {
        "juliet": ArchivePrefs("roster", (), (NURSE,)),
        "romeo": ArchivePrefs("always"),
    }
    assert await juliet.get_archive_prefs("elsewhere.example") == {}
    with pytest.raises(NoSuchAccount):
        await juliet.set_archive_prefs("nobody", DOMAIN, prefs)
