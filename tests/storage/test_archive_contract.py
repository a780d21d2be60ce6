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
    archive_id,
    archive_seq,
)
from tests.storage.helpers import DOMAIN, NURSE, ROMEO

TYBALT = "tybalt@capulet.example"
sid = archive_id


def msg(
    seq: int, peer: str = ROMEO, user: str = "juliet", resource: str | None = None
) -> ArchivedMessage:
    return ArchivedMessage(
        username=user,
        domain=DOMAIN,
        seq=seq,
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
        [sid(1), sid(2), sid(3), sid(4)],
        10,
        0,
        False,
    )
    assert page.messages[0] == msg(1)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(after=sid(8), limit=4))
    assert (ids(page), page.index, page.complete) == ([sid(9), sid(10)], 8, True)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(before="", limit=3))
    assert (ids(page), page.index, page.complete) == ([sid(8), sid(9), sid(10)], 7, False)
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(before=sid(3), limit=3))
    assert (ids(page), page.index, page.complete) == ([sid(1), sid(2)], 0, True)
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

    assert await q(peer=ROMEO) == [sid(1), sid(3), sid(4)]
    assert await q(peer=ROMEO, resource="b") == [sid(3)]
    assert await q(start=2, end=3) == [sid(2), sid(3)]
    assert await q(after_id=sid(1), before_id=sid(4)) == [sid(2), sid(3)]
    assert await q(ids=(sid(4), sid(2))) == [sid(2), sid(4)]
    assert await q(ids=()) == []
    for bad in ({"after": "x"}, {"before": "ff"}, {"after_id": "0"}, {"ids": (sid(1), "x")}):
        with pytest.raises(ArchiveIdNotFound):
            await q(**bad)
    with pytest.raises(ArchiveIdNotFound):  # another user's id is not in this archive
        await juliet.archive_messages([msg(9, user="romeo")])
        await q(after=sid(9))


async def test_a_message_for_a_missing_account_does_not_fail_the_batch(
    juliet: Storage,
) -> None:
    """The account may be deleted while its messages wait for the writer: those are
    skipped, the rest of the batch is stored."""
    batch = [msg(1), msg(2, user="nobody"), msg(3)]
    assert await juliet.archive_messages(batch) == 2
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(limit=10))
    assert ids(page) == [sid(1), sid(3)]


async def test_archive_values_are_checked() -> None:
    with pytest.raises(ValueError):
        ArchiveQuery(limit=-1)
    with pytest.raises(ValueError):
        ArchiveQuery(resource="r")
    with pytest.raises(ValueError):
        ArchivePrefs("sometimes")
    with pytest.raises(ValueError):
        ArchivedMessage("juliet", DOMAIN, 0, ROMEO, None, False, "<message/>")


def test_archive_ids_name_their_seq() -> None:
    for seq in (1, 255, 1_733_000_000_000_000):
        assert archive_seq(archive_id(seq)) == seq
    for bad in ("", "0", "0ff", "FF", "x1", "-1", "1" * 17, "\U0001f426", "8" + "0" * 15):
        assert archive_seq(bad) is None  # the last: beyond a 64-bit SQL integer
    assert archive_seq("7" + "f" * 15) == (1 << 63) - 1


async def test_an_id_beyond_sql_integers_is_not_found(juliet: Storage) -> None:
    """A random 16-hex-digit id (a client's, or a stanza-id that is no archive id) is an
    unknown id (XEP-0313 §4.1.3: item-not-found), not a storage error."""
    await juliet.archive_messages([msg(1)])
    with pytest.raises(ArchiveIdNotFound):
        await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(after="f" * 16))


async def test_archived_text_round_trips(juliet: Storage) -> None:
    text = "<message><body>h\u00e9llo \u2603 \U0001f426 \"q\" 'a' \\ \n\ttab &amp;</body></message>"
    m = ArchivedMessage("juliet", DOMAIN, 1, ROMEO, "r\u00e9s", True, text)
    await juliet.archive_messages([m])
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery(ids=(sid(1),)))
    assert page.messages == (m,)


async def test_archiving_for_a_missing_account_is_skipped(juliet: Storage) -> None:
    assert await juliet.archive_messages([msg(1), msg(2, user="nobody"), msg(3)]) == 2
    assert await juliet.last_archive_seq() == 3


async def test_expiry_and_trimming(juliet: Storage) -> None:
    await juliet.archive_messages([msg(s) for s in range(1, 11)] + [msg(11, user="romeo")])
    assert await juliet.expire_archive(4) == 3
    assert await juliet.trim_archives(5) == 2  # juliet: 4..10 -> 6..10; romeo has one
    page = await juliet.query_archive("juliet", DOMAIN, ArchiveQuery())
    assert ids(page) == [sid(6), sid(7), sid(8), sid(9), sid(10)]
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
