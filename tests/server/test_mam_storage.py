"""The archive's storage side over real sockets: retention (expiry, ``max_items``, the
periodic clean-up), deletion with the account, the group-committing writer and what
``flushed()`` promises (issue 12, MAM acceptance 3 and 7; the kill -9 test is
``test_mam_crash.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core.jid import JID
from roost.core.mam import MAM2, SID
from roost.core.xml.parser import parse_fragment
from roost.server.app import Server
from roost.storage.api import ArchivedMessage, ArchiveQuery, StorageError
from tests.helpers import PASSWORDS, Logins, drain, eventually, quiet, start_server
from tests.server.mam_helpers import (
    archive_module,
    fin,
    ids_of,
    mam,
)


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


# -- retention -------------------------------------------------------------------------------


async def test_expiry_and_max_items(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, archive={"expire_after": "1d", "max_items": 3})
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    await srv.accounts.create("bob", "localhost", PASSWORDS["bob"])
    now = int(time.time() * 1_000_000)
    day = 86400 * 1_000_000
    rows = [
        ArchivedMessage(
            "alice",
            "localhost",
            now - 3 * day + i,
            "bob@localhost",
            None,
            False,
            "<message><body>old</body></message>",
        )
        for i in range(5)
    ] + [
        ArchivedMessage(
            "alice",
            "localhost",
            now - day // 2 + i,
            "bob@localhost",
            None,
            False,
            "<message><body>new</body></message>",
        )
        for i in range(5)
    ]
    await srv.storage.archive_messages(rows)
    logins = Logins(srv)
    try:
        a = await logins("alice", "a")
        results, _ = await mam(a)
        assert len(results) == 10
        assert await archive_module(srv).cleanup() == 7  # 5 expired, then 2 over max_items
        results, iq = await mam(a)
        assert ids_of(results) == [r.id for r in rows[-3:]] and fin(iq)[3] == 3
    finally:
        await logins.close()
        await srv.stop()


async def test_expiry_runs_by_itself(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, archive={"expire_after": 60, "cleanup_interval": 1})
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    old = int((time.time() - 120) * 1_000_000)
    await srv.storage.archive_messages(
        [
            ArchivedMessage(
                "alice",
                "localhost",
                old,
                "bob@localhost",
                None,
                False,
                "<message><body>old</body></message>",
            )
        ]
    )
    try:

        async def emptied() -> bool:
            return await srv.storage.last_archive_seq() == 0

        await eventually(emptied, "the retention timer's clean-up")
    finally:
        await srv.stop()


async def test_deleting_the_account_deletes_the_archive(server: Server, logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send("<message to='bob@localhost' type='chat'><body>x</body></message>")
    await drain(b)
    results, _ = await mam(a)
    assert len(results) == 1
    # XEP-0077 §3.2 in-band removal: the account and everything it had
    await a.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    assert (await a.expect(lambda e: e.get("id") == "bye")).get("type") == "result"
    assert await a.stream_error() == "not-authorized"
    page = await server.storage.query_archive("alice", "localhost", ArchiveQuery())
    assert page.count == 0
    results, _ = await mam(b)  # bob's copy is bob's
    assert len(results) == 1


async def test_a_new_account_of_the_same_name_starts_with_default_prefs(
    server: Server, logins: Logins
) -> None:
    a = await logins("alice", "a")
    await a.send(f"<iq type='set' id='p'><prefs xmlns='{MAM2}' default='never'/></iq>")
    assert (await a.expect(lambda e: e.get("id") == "p")).get("type") == "result"
    await a.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    assert (await a.expect(lambda e: e.get("id") == "bye")).get("type") == "result"
    await a.wait_closed()
    await server.idle()
    await server.accounts.create("alice", "localhost", PASSWORDS["alice"])
    a = await logins("alice", "a2")
    await a.send(f"<iq type='get' id='p2'><prefs xmlns='{MAM2}'/></iq>")
    prefs = (await a.expect(lambda e: e.get("id") == "p2")).find("prefs", MAM2)
    assert prefs is not None and prefs.get("default") == "always"


# -- batching --------------------------------------------------------------------------------


async def test_a_burst_is_written_in_few_transactions(server: Server, logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    calls: list[int] = []
    real = server.storage.archive_messages

    async def counting(messages):  # type: ignore[no-untyped-def]
        batch = list(messages)
        calls.append(len(batch))
        return await real(batch)

    server.storage.archive_messages = counting  # type: ignore[method-assign]
    burst = "".join(
        f"<message to='bob@localhost' type='chat' id='b{i}'><body>{i}</body></message>"
        for i in range(500)
    )
    await a.send(burst)
    await drain(b)
    await quiet(a)
    # 1000 archived (500 sent, 500 received), in far fewer transactions
    assert sum(calls) == 1000 and len(calls) < 100, calls
    _, iq = await mam(b, {}, "<max>0</max>")
    assert fin(iq)[3] == 500


async def test_flushed_means_committed(tmp_path: Path) -> None:
    """``ARCHIVE.flushed()``: every message routed before the call is in storage when it
    returns, also one still waiting in the router for its parties' privacy lists (after a
    restart nothing of alice's or carol's is in memory)."""
    srv = await start_server(tmp_path)
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    await srv.stop()
    srv = await start_server(tmp_path, archive={"batch_delay": 0})
    try:
        msg = parse_fragment(
            "<message from='alice@localhost/a' to='carol@localhost' type='chat'>"
            "<body>through the router</body></message>"
        )
        srv.router.route(msg, JID.parse("alice@localhost/a"), JID.parse("carol@localhost"))
        assert srv.router._deferred  # waiting for the lists to be read
        await archive_module(srv).flushed()
        page = await srv.storage.query_archive("carol", "localhost", ArchiveQuery(limit=0))
        assert page.count == 1
    finally:
        await srv.stop()


async def test_a_full_queue_is_reported_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer stuck behind the disk: the queue stops at its bound, what is beyond is not
    archived, and ``flushed`` raises instead of promising it."""
    from roost.server.modules import mam as mam_module

    monkeypatch.setattr(mam_module, "_MAX_QUEUE", 3)
    srv = await start_server(tmp_path, archive={"batch_delay": 0})
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    disk = asyncio.Event()
    real = srv.storage.archive_messages

    async def stuck(messages):  # type: ignore[no-untyped-def]
        batch = list(messages)
        await disk.wait()
        return await real(batch)

    srv.storage.archive_messages = stuck  # type: ignore[method-assign]
    logins = Logins(srv)
    try:
        a = await logins("alice", "a")
        b = await logins("bob", "b")
        await a.send("<message to='bob@localhost' type='chat' id='m0'><body>0</body></message>")
        # delivered: the writer has taken its batch (two rows) and waits for the disk
        await b.expect(lambda e: e.get("id") == "m0")
        await a.send(
            "".join(
                f"<message to='bob@localhost' type='chat' id='m{i}'><body>{i}</body></message>"
                for i in range(1, 6)
            )
        )
        got = [await b.expect(lambda e: e.tag == "message") for _ in range(5)]
        stamped = [m for m in got if m.find("stanza-id", SID) is not None]
        flushing = asyncio.ensure_future(archive_module(srv).flushed())
        disk.set()
        with pytest.raises(StorageError):
            await flushing
        rows = await srv.storage.query_archive("alice", "localhost", ArchiveQuery(limit=0))
        rows_b = await srv.storage.query_archive("bob", "localhost", ArchiveQuery(limit=0))
        assert rows.count + rows_b.count == 2 + 3
        assert rows_b.count == 1 + len(stamped)  # a stanza-id only on what was archived
    finally:
        await logins.close()
        await srv.stop()
