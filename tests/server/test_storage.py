"""Tests for roost.storage: the async stores (accounts, rosters, offline messages, per-user
data) on real SQLite files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import roost.storage.sqlite
from roost.storage import (
    Account,
    AccountExists,
    NoSuchAccount,
    RosterData,
    RosterItem,
    SchemaError,
    SQLiteStorage,
    Storage,
    StorageError,
    StoredCredentials,
)
from roost.storage.sqlite import MIGRATIONS

SRC = Path(__file__).resolve().parents[2] / "src"
DOMAIN = "example.org"


def credentials(seed: str, algorithm: str, iterations: int = 4096) -> StoredCredentials:
    return StoredCredentials(
        salt=hashlib.sha256(f"salt-{seed}".encode()).digest()[:16],
        iterations=iterations,
        stored_key=hashlib.new(algorithm, f"stored-{seed}".encode()).digest(),
        server_key=hashlib.new(algorithm, f"server-{seed}".encode()).digest(),
    )


def account(username: str, domain: str = DOMAIN, seed: str = "", created: float = 1.5) -> Account:
    seed = seed or f"{username}@{domain}"
    return Account(
        username=username,
        domain=domain,
        sha1=credentials(seed, "sha1"),
        sha256=credentials(seed, "sha256"),
        created=created,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "roost.sqlite3"


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(db_path) as opened:
        yield opened


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("salt", b""),
        ("iterations", 0),
        ("stored_key", b""),
        ("server_key", b"\x00" * 19),
    ],
)
def test_stored_credentials_are_validated(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "salt": b"salt",
        "iterations": 4096,
        "stored_key": b"\x00" * 20,
        "server_key": b"\x00" * 20,
    }
    fields[field] = value
    with pytest.raises(ValueError):
        StoredCredentials(**fields)  # type: ignore[arg-type]


def test_account_checks_digest_sizes() -> None:
    with pytest.raises(ValueError, match="SCRAM-SHA-1"):
        Account("juliet", DOMAIN, credentials("x", "sha256"), credentials("x", "sha256"), 0.0)
    with pytest.raises(ValueError, match="SCRAM-SHA-256"):
        Account("juliet", DOMAIN, credentials("x", "sha1"), credentials("x", "sha1"), 0.0)
    with pytest.raises(ValueError):
        Account("", DOMAIN, credentials("x", "sha1"), credentials("x", "sha256"), 0.0)
    with pytest.raises(ValueError):
        Account(
            "juliet", DOMAIN, credentials("x", "sha1"), credentials("x", "sha256"), float("nan")
        )


# -- accounts -------------------------------------------------------------------------------


async def test_create_and_get(storage: SQLiteStorage) -> None:
    juliet = account("juliet", created=1_700_000_000.25)
    await storage.create_account(juliet)
    assert await storage.get_account("juliet", DOMAIN) == juliet


async def test_get_missing_is_none(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet"))
    assert await storage.get_account("romeo", DOMAIN) is None
    assert await storage.get_account("juliet", "example.com") is None


async def test_create_existing_raises(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet"))
    with pytest.raises(AccountExists):
        await storage.create_account(account("juliet", seed="other"))
    stored = await storage.get_account("juliet", DOMAIN)
    assert stored == account("juliet")  # the first one is untouched


async def test_same_username_on_two_domains(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet", "a.example"))
    await storage.create_account(account("juliet", "b.example"))
    assert await storage.list_accounts() == [("juliet", "a.example"), ("juliet", "b.example")]


async def test_list_sorted_and_filtered(storage: SQLiteStorage) -> None:
    for username, domain in [
        ("romeo", "b.example"),
        ("juliet", "a.example"),
        ("Éloïse", "a.example"),
        ("benvolio", "b.example"),
        ("Zed", "a.example"),
    ]:
        await storage.create_account(account(username, domain))
    everyone = await storage.list_accounts()
    assert everyone == sorted(everyone)
    assert len(everyone) == 5
    assert await storage.list_accounts("a.example") == [
        ("Zed", "a.example"),
        ("juliet", "a.example"),
        ("Éloïse", "a.example"),
    ]
    assert await storage.list_accounts("nowhere.example") == []


async def test_list_empty(storage: SQLiteStorage) -> None:
    assert await storage.list_accounts() == []


async def test_set_credentials(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet"))
    sha1 = credentials("new", "sha1", iterations=10_000)
    sha256 = credentials("new", "sha256", iterations=20_000)
    await storage.set_credentials("juliet", DOMAIN, sha1, sha256)
    stored = await storage.get_account("juliet", DOMAIN)
    assert stored is not None
    assert (stored.sha1, stored.sha256) == (sha1, sha256)
    assert stored.created == account("juliet").created


async def test_set_credentials_missing_account(storage: SQLiteStorage) -> None:
    with pytest.raises(NoSuchAccount):
        await storage.set_credentials(
            "nobody", DOMAIN, credentials("x", "sha1"), credentials("x", "sha256")
        )


async def test_set_credentials_checks_digest_sizes(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet"))
    with pytest.raises(ValueError):
        await storage.set_credentials(
            "juliet", DOMAIN, credentials("x", "sha256"), credentials("x", "sha256")
        )
    assert await storage.get_account("juliet", DOMAIN) == account("juliet")


async def test_delete(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet"))
    await storage.create_account(account("romeo"))
    assert await storage.delete_account("juliet", DOMAIN) is True
    assert await storage.get_account("juliet", DOMAIN) is None
    assert await storage.delete_account("juliet", DOMAIN) is False
    assert await storage.list_accounts() == [("romeo", DOMAIN)]
    await storage.create_account(account("juliet"))  # the name is free again


async def test_delete_cascades_to_per_user_tables(db_path: Path) -> None:
    # Stands in for a later migration's per-user table (roster, offline, ...).
    async with SQLiteStorage(db_path) as storage:
        await storage.create_account(account("juliet"))
        await storage.create_account(account("romeo"))
        raw = sqlite3.connect(db_path, isolation_level=None)
        try:
            raw.execute(
                "CREATE TABLE notes (username TEXT NOT NULL, domain TEXT NOT NULL, body TEXT,"
                " FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)"
                " ON DELETE CASCADE)"
            )
            raw.executemany(
                "INSERT INTO notes VALUES (?, ?, ?)",
                [("juliet", DOMAIN, "a"), ("juliet", DOMAIN, "b"), ("romeo", DOMAIN, "c")],
            )
            assert await storage.delete_account("juliet", DOMAIN)
            assert raw.execute("SELECT username, body FROM notes").fetchall() == [("romeo", "c")]
        finally:
            raw.close()


# -- bulk import ----------------------------------------------------------------------------


async def test_bulk_import_skips_existing(storage: SQLiteStorage) -> None:
    await storage.create_account(account("juliet", seed="original"))
    created = await storage.create_accounts_bulk(
        iter([account("juliet"), account("romeo"), account("nurse"), account("romeo")])
    )
    assert created == 2
    assert await storage.list_accounts() == [
        ("juliet", DOMAIN),
        ("nurse", DOMAIN),
        ("romeo", DOMAIN),
    ]
    assert await storage.get_account("juliet", DOMAIN) == account("juliet", seed="original")
    assert await storage.create_accounts_bulk([]) == 0


async def test_bulk_import_10k_is_fast(storage: SQLiteStorage) -> None:
    sha1, sha256 = credentials("bulk", "sha1"), credentials("bulk", "sha256")
    accounts = [Account(f"user{n:05d}", DOMAIN, sha1, sha256, 0.0) for n in range(10_000)]
    started = time.perf_counter()
    assert await storage.create_accounts_bulk(accounts) == 10_000
    elapsed = time.perf_counter() - started
    # One transaction means one fsync; a commit per account would take far longer.
    assert elapsed < 3.0, f"bulk import of 10k accounts took {elapsed:.2f}s"
    assert len(await storage.list_accounts(DOMAIN)) == 10_000
    assert await storage.create_accounts_bulk(accounts) == 0


async def test_bulk_import_is_one_transaction(storage: SQLiteStorage, db_path: Path) -> None:
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute(
            "CREATE TRIGGER refuse_tybalt BEFORE INSERT ON accounts"
            " WHEN NEW.username = 'tybalt' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    finally:
        raw.close()
    batch = [account("juliet"), account("romeo"), account("tybalt"), account("nurse")]
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await storage.create_accounts_bulk(batch)
    assert await storage.list_accounts() == []  # rolled back, not half-imported
    await storage.create_account(account("juliet"))  # and the connection is usable again


# -- schema and lifetime --------------------------------------------------------------------


async def test_open_creates_directory_and_sets_user_version(db_path: Path) -> None:
    assert not db_path.parent.exists()
    async with SQLiteStorage(db_path):
        pass
    assert db_path.exists()
    assert user_version(db_path) == len(MIGRATIONS) >= 1
    assert db_path.stat().st_mode & 0o077 == 0  # SCRAM keys are for the owner only


async def test_database_uses_wal(storage: SQLiteStorage, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_migrations_are_idempotent(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as storage:
        await storage.create_account(account("juliet"))
    async with SQLiteStorage(db_path) as storage:
        assert await storage.get_account("juliet", DOMAIN) == account("juliet")
    assert user_version(db_path) == len(MIGRATIONS)


async def test_newer_schema_is_refused(db_path: Path) -> None:
    async with SQLiteStorage(db_path):
        pass
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    storage = SQLiteStorage(db_path)
    with pytest.raises(SchemaError):
        await storage.open()
    with pytest.raises(StorageError):
        await storage.get_account("juliet", DOMAIN)


async def test_use_before_open_and_after_close(db_path: Path) -> None:
    storage = SQLiteStorage(db_path)
    with pytest.raises(StorageError):
        await storage.list_accounts()
    await storage.open()
    with pytest.raises(StorageError):
        await storage.open()
    await storage.close()
    await storage.close()  # closing twice is harmless
    with pytest.raises(StorageError):
        await storage.list_accounts()


async def test_operations_run_off_the_event_loop_thread(storage: SQLiteStorage) -> None:
    seen: list[str] = []
    await storage._call(lambda conn: seen.append(threading.current_thread().name))
    assert seen[0] != threading.current_thread().name
    assert seen[0].startswith("roost-sqlite")


async def test_concurrent_operations_are_serialised(storage: SQLiteStorage) -> None:
    names = [f"user{n}" for n in range(50)]
    await asyncio.gather(*(storage.create_account(account(name)) for name in names))
    found = await asyncio.gather(*(storage.get_account(name, DOMAIN) for name in names))
    assert [a.username for a in found if a is not None] == names


# -- two processes on one file (CLI and server) ---------------------------------------------


async def test_second_instance_sees_writes_at_once(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as server, SQLiteStorage(db_path) as cli:
        assert await server.get_account("juliet", DOMAIN) is None  # nothing cached after this
        await cli.create_account(account("juliet"))
        assert await server.get_account("juliet", DOMAIN) == account("juliet")
        await server.create_accounts_bulk([account("romeo"), account("nurse")])
        assert await cli.list_accounts() == [
            ("juliet", DOMAIN),
            ("nurse", DOMAIN),
            ("romeo", DOMAIN),
        ]
        new_sha1, new_sha256 = credentials("new", "sha1"), credentials("new", "sha256")
        await cli.set_credentials("juliet", DOMAIN, new_sha1, new_sha256)
        stored = await server.get_account("juliet", DOMAIN)
        assert stored is not None and stored.sha256 == new_sha256
        assert await cli.delete_account("romeo", DOMAIN)
        assert await server.get_account("romeo", DOMAIN) is None
        with pytest.raises(AccountExists):
            await server.create_account(account("juliet"))


async def test_writer_waits_for_the_other_process_lock(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as storage:
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # the CLI holds the write lock for a moment
            creating = asyncio.ensure_future(storage.create_account(account("juliet")))
            await asyncio.sleep(0.2)  # the write is blocked on busy_timeout, not failing
            assert not creating.done()
            other.execute("COMMIT")
            await asyncio.wait_for(creating, timeout=5)
        finally:
            other.close()
        assert await storage.get_account("juliet", DOMAIN) == account("juliet")


_CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, sys, time
    from pathlib import Path
    from roost.storage import Account, SQLiteStorage, StoredCredentials

    def creds(algorithm):
        digest = hashlib.new(algorithm, b"k").digest()
        return StoredCredentials(b"salt", 4096, digest, digest)

    async def main():
        storage = SQLiteStorage(Path(sys.argv[1]))
        await storage.open()
        await storage.create_account(
            Account("juliet", "example.org", creds("sha1"), creds("sha256"), 42.0)
        )
        print("ok", flush=True)
        time.sleep(60)  # killed here, without close()

    asyncio.run(main())
    """
)


async def run_and_sigkill(script: str, db_path: Path) -> None:
    """Run ``script`` on ``db_path`` in a child process and SIGKILL it once it prints ok."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(db_path),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
        assert line == b"ok\n"
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), timeout=10)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_acknowledged_account_survives_sigkill(db_path: Path) -> None:
    await run_and_sigkill(_CHILD, db_path)
    async with SQLiteStorage(db_path) as storage:
        stored = await storage.get_account("juliet", "example.org")
    assert stored is not None
    assert stored.created == 42.0


_OFFLINE_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from roost.storage import SQLiteStorage

    async def main():
        storage = SQLiteStorage(Path(sys.argv[1]))
        await storage.open()
        ok = await storage.push_offline(
            "juliet", "example.org", "<message>wherefore</message>", 7.5, 100
        )
        assert ok
        print("ok", flush=True)
        time.sleep(60)  # killed here, without close()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_acknowledged_offline_message_survives_sigkill(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as storage:
        await storage.create_account(account("juliet", "example.org"))
    await run_and_sigkill(_OFFLINE_CHILD, db_path)
    async with SQLiteStorage(db_path) as storage:
        assert await storage.take_offline("juliet", "example.org") == [
            ("<message>wherefore</message>", 7.5)
        ]


# -- rosters (RFC 6121) ---------------------------------------------------------------------

ROMEO = "romeo@montague.example"
NURSE = "nurse@capulet.example"
SUBSCRIBE = "<presence from='romeo@montague.example' type='subscribe'/>"


@pytest.fixture
async def juliet(storage: SQLiteStorage) -> SQLiteStorage:
    """The storage, with the accounts juliet and romeo on DOMAIN."""
    await storage.create_account(account("juliet"))
    await storage.create_account(account("romeo"))
    return storage


def test_sqlite_storage_is_a_storage() -> None:
    def accepts(storage: Storage) -> Storage:  # mypy checks the structural match
        return storage

    assert accepts(SQLiteStorage(Path("unused"))) is not None


def test_roster_item_is_validated() -> None:
    assert RosterItem(ROMEO) == RosterItem(ROMEO, None, "none", False, False, ())
    for subscription in ("none", "to", "from", "both"):
        RosterItem(ROMEO, subscription=subscription)
    with pytest.raises(ValueError, match="subscription"):
        RosterItem(ROMEO, subscription="remove")
    with pytest.raises(ValueError):
        RosterItem("")
    with pytest.raises(TypeError):
        RosterItem(ROMEO, groups=("Friends", 3))  # type: ignore[arg-type]
    listed = RosterItem(ROMEO, groups=["b", "a"])  # type: ignore[arg-type]
    assert listed.groups == ("b", "a")
    hash(listed)


async def test_empty_roster(juliet: SQLiteStorage) -> None:
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.get_roster("nobody", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.count_roster_items("juliet", DOMAIN) == 0
    assert await juliet.count_roster_items("nobody", DOMAIN) == 0


async def test_put_and_get_roster_items(juliet: SQLiteStorage) -> None:
    romeo = RosterItem(
        ROMEO,
        name="Romeo ❤",
        subscription="both",
        groups=("Friends", "Zärtlich 🌹", "", 'a,b;c"d'),
    )
    nurse = RosterItem(NURSE, subscription="to", ask=True, approved=True)
    assert await juliet.put_roster_item("juliet", DOMAIN, romeo) == 1
    assert await juliet.put_roster_item("juliet", DOMAIN, nurse) == 2
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster == RosterData(2, {ROMEO: romeo, NURSE: nurse}, {})
    assert roster.items[ROMEO].groups == ("Friends", "Zärtlich 🌹", "", 'a,b;c"d')  # order kept
    assert await juliet.count_roster_items("juliet", DOMAIN) == 2
    # Another user's roster is separate, with its own version.
    assert await juliet.get_roster("romeo", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.put_roster_item("romeo", DOMAIN, RosterItem(f"juliet@{DOMAIN}")) == 1


async def test_upsert_replaces_item_and_bumps_version(juliet: SQLiteStorage) -> None:
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO, "Romeo", groups=("A", "B")))
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(NURSE))
    updated = RosterItem(ROMEO, subscription="from", groups=("B",))
    assert await juliet.put_roster_item("juliet", DOMAIN, updated) == 3
    same_again = await juliet.put_roster_item("juliet", DOMAIN, updated)
    assert same_again == 4  # every put is a change: never back to an earlier version
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster.version == 4
    assert roster.items[ROMEO] == updated  # fully replaced: name and a group are gone
    assert await juliet.count_roster_items("juliet", DOMAIN) == 2


async def test_delete_roster_item(juliet: SQLiteStorage) -> None:
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO))
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(NURSE))
    assert await juliet.delete_roster_item("juliet", DOMAIN, ROMEO) == 3
    assert await juliet.delete_roster_item("juliet", DOMAIN, ROMEO) == 3  # absent: unchanged
    assert await juliet.delete_roster_item("juliet", DOMAIN, "tybalt@capulet.example") == 3
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(
        3, {NURSE: RosterItem(NURSE)}, {}
    )
    assert await juliet.delete_roster_item("juliet", DOMAIN, NURSE) == 4
    # Empty again, but not version 0: a client caching version 0 or 3 must see a change.
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(4, {}, {})
    assert await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO)) == 5
    assert await juliet.delete_roster_item("nobody", DOMAIN, ROMEO) == 0


async def test_put_roster_item_needs_an_account(juliet: SQLiteStorage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.put_roster_item("nobody", DOMAIN, RosterItem(ROMEO))
    with pytest.raises(NoSuchAccount):
        await juliet.put_roster_item("juliet", "example.com", RosterItem(ROMEO))
    assert await juliet.get_roster("nobody", DOMAIN) == RosterData(0, {}, {})


async def test_pending_in_is_independent_of_items(juliet: SQLiteStorage) -> None:
    # For a contact not in the roster: no item, no version change.
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, SUBSCRIBE)
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {ROMEO: SUBSCRIBE})
    assert await juliet.count_roster_items("juliet", DOMAIN) == 0
    # Adding and then deleting the item leaves the request alone.
    assert await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO)) == 1
    assert await juliet.delete_roster_item("juliet", DOMAIN, ROMEO) == 2
    assert (await juliet.get_roster("juliet", DOMAIN)).pending_in == {ROMEO: SUBSCRIBE}
    # Replacing and removing the request does not touch the version or the items.
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(NURSE))
    newer = SUBSCRIBE.replace("/>", "><status>again</status></presence>")
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, newer)
    await juliet.set_pending_in("juliet", DOMAIN, NURSE, "<presence type='subscribe'/>")
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster.version == 3
    assert roster.pending_in == {ROMEO: newer, NURSE: "<presence type='subscribe'/>"}
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, None)
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, None)  # removing twice is harmless
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster == RosterData(
        3, {NURSE: RosterItem(NURSE)}, {NURSE: "<presence type='subscribe'/>"}
    )
    assert (await juliet.get_roster("romeo", DOMAIN)).pending_in == {}


async def test_pending_in_needs_an_account(juliet: SQLiteStorage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.set_pending_in("nobody", DOMAIN, ROMEO, SUBSCRIBE)
    await juliet.set_pending_in("nobody", DOMAIN, ROMEO, None)  # nothing to remove: no error


async def test_concurrent_roster_puts_get_distinct_versions(juliet: SQLiteStorage) -> None:
    items = [RosterItem(f"contact{n}@example.net") for n in range(30)]
    versions = await asyncio.gather(
        *(juliet.put_roster_item("juliet", DOMAIN, item) for item in items)
    )
    assert sorted(versions) == list(range(1, 31))
    assert await juliet.count_roster_items("juliet", DOMAIN) == 30


# -- offline messages (XEP-0160) ------------------------------------------------------------


async def test_offline_push_take_in_order(juliet: SQLiteStorage) -> None:
    assert await juliet.take_offline("juliet", DOMAIN) == []
    stanzas = [(f"<message id='m{n}'>ünïcode {n}</message>", 1000.0 - n) for n in range(5)]
    for stanza, stamp in stanzas:
        assert await juliet.push_offline("juliet", DOMAIN, stanza, stamp, 100)
    await juliet.push_offline("romeo", DOMAIN, "<message>for romeo</message>", 1.0, 100)
    assert await juliet.count_offline("juliet", DOMAIN) == 5
    # Arrival order, not stamp order.
    assert await juliet.take_offline("juliet", DOMAIN) == stanzas
    assert await juliet.take_offline("juliet", DOMAIN) == []
    assert await juliet.count_offline("juliet", DOMAIN) == 0
    assert await juliet.count_offline("romeo", DOMAIN) == 1
    # Order still holds for messages stored after a take.
    await juliet.push_offline("juliet", DOMAIN, "<message>b</message>", 2.0, 100)
    await juliet.push_offline("juliet", DOMAIN, "<message>a</message>", 1.0, 100)
    assert await juliet.take_offline("juliet", DOMAIN) == [
        ("<message>b</message>", 2.0),
        ("<message>a</message>", 1.0),
    ]


async def test_offline_quota(juliet: SQLiteStorage) -> None:
    for n in range(3):
        assert await juliet.push_offline("juliet", DOMAIN, f"<message>{n}</message>", n, 3)
    assert not await juliet.push_offline("juliet", DOMAIN, "<message>3</message>", 3.0, 3)
    assert await juliet.count_offline("juliet", DOMAIN) == 3
    # A lower limit than what is stored refuses too; another user has their own quota.
    assert not await juliet.push_offline("juliet", DOMAIN, "<message>x</message>", 3.0, 1)
    assert not await juliet.push_offline("romeo", DOMAIN, "<message>x</message>", 3.0, 0)
    assert await juliet.push_offline("romeo", DOMAIN, "<message>x</message>", 3.0, 1)
    assert [stanza for stanza, _ in await juliet.take_offline("juliet", DOMAIN)] == [
        "<message>0</message>",
        "<message>1</message>",
        "<message>2</message>",
    ]
    assert await juliet.push_offline("juliet", DOMAIN, "<message>3</message>", 3.0, 3)


async def test_offline_quota_holds_under_concurrency(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as server, SQLiteStorage(db_path) as other:
        await server.create_account(account("juliet"))
        results = await asyncio.gather(
            *(
                store.push_offline("juliet", DOMAIN, f"<message>{n}</message>", float(n), 10)
                for n in range(20)
                for store in (server, other)
            )
        )
        assert results.count(True) == 10
        assert await server.count_offline("juliet", DOMAIN) == 10


async def test_concurrent_takes_deliver_each_message_once(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as server, SQLiteStorage(db_path) as other:
        await server.create_account(account("juliet"))
        for n in range(50):
            await server.push_offline("juliet", DOMAIN, f"<message>{n}</message>", float(n), 100)
        taken = await asyncio.gather(
            *(store.take_offline("juliet", DOMAIN) for _ in range(5) for store in (server, other))
        )
        delivered = [stanza for batch in taken for stanza, _ in batch]
        assert delivered == [f"<message>{n}</message>" for n in range(50)]  # all, once, in order
        assert sum(1 for batch in taken if batch) == 1


async def test_push_offline_checks(juliet: SQLiteStorage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.push_offline("nobody", DOMAIN, "<message/>", 1.0, 100)
    with pytest.raises(ValueError):
        await juliet.push_offline("juliet", DOMAIN, "<message/>", float("inf"), 100)
    assert await juliet.count_offline("juliet", DOMAIN) == 0
    assert await juliet.count_offline("nobody", DOMAIN) == 0
    assert await juliet.take_offline("nobody", DOMAIN) == []


# -- per-user documents ---------------------------------------------------------------------


async def test_data_set_get_delete_list(juliet: SQLiteStorage) -> None:
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "") is None
    assert await juliet.list_data("juliet", DOMAIN, "private") == {}
    await juliet.set_data("juliet", DOMAIN, "vcard", "", "<vCard xmlns='vcard-temp'/>")
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", "<storage/>")
    await juliet.set_data("juliet", DOMAIN, "private", "jabber:rôster:délimiter", "::")
    await juliet.set_data("romeo", DOMAIN, "private", "storage:bookmarks", "<romeo/>")
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "") == "<vCard xmlns='vcard-temp'/>"
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "other") is None
    assert await juliet.get_data("juliet", DOMAIN, "private", "") is None
    assert await juliet.list_data("juliet", DOMAIN, "private") == {
        "storage:bookmarks": "<storage/>",
        "jabber:rôster:délimiter": "::",
    }
    # Replace, then delete (twice: harmless); an empty string is a value, not a deletion.
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", "<storage>x</storage>")
    assert await juliet.get_data("juliet", DOMAIN, "private", "storage:bookmarks") == (
        "<storage>x</storage>"
    )
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", None)
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", None)
    await juliet.set_data("juliet", DOMAIN, "last", "logout", "")
    assert await juliet.get_data("juliet", DOMAIN, "last", "logout") == ""
    assert await juliet.list_data("juliet", DOMAIN, "private") == {"jabber:rôster:délimiter": "::"}
    assert await juliet.list_data("romeo", DOMAIN, "private") == {"storage:bookmarks": "<romeo/>"}
    assert await juliet.list_data("juliet", DOMAIN, "vcard") == {"": "<vCard xmlns='vcard-temp'/>"}


async def test_set_data_needs_an_account(juliet: SQLiteStorage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.set_data("nobody", DOMAIN, "vcard", "", "<vCard/>")
    await juliet.set_data("nobody", DOMAIN, "vcard", "", None)  # nothing to delete: no error
    assert await juliet.get_data("nobody", DOMAIN, "vcard", "") is None
    assert await juliet.list_data("nobody", DOMAIN, "vcard") == {}


# -- per-user data and the account's lifetime -----------------------------------------------

_PER_USER_TABLES = {
    "roster_versions",
    "roster_items",
    "roster_pending_in",
    "offline_messages",
    "user_data",
}


async def fill_user_data(storage: SQLiteStorage, username: str) -> None:
    await storage.put_roster_item(username, DOMAIN, RosterItem(ROMEO, groups=("g",)))
    await storage.set_pending_in(username, DOMAIN, NURSE, SUBSCRIBE)
    await storage.push_offline(username, DOMAIN, "<message/>", 1.0, 100)
    await storage.set_data(username, DOMAIN, "vcard", "", "<vCard/>")


def rows_per_table(db_path: Path, username: str) -> dict[str, int]:
    conn = sqlite3.connect(db_path)
    try:
        return {
            table: conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE username = ? AND domain = ?",
                (username, DOMAIN),
            ).fetchone()[0]
            for table in sorted(_PER_USER_TABLES)
        }
    finally:
        conn.close()


async def test_every_per_user_table_cascades_from_accounts(
    storage: SQLiteStorage, db_path: Path
) -> None:
    conn = sqlite3.connect(db_path)
    try:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != 'accounts'"
            )
        }
        assert tables == _PER_USER_TABLES  # a new table must be added to the cascade tests
        for table in tables:
            keys = conn.execute(f"PRAGMA foreign_key_list({table})").fetchall()
            # (id, seq, table, from, to, on_update, on_delete, match)
            assert sorted((k[2], k[3], k[4], k[6]) for k in keys) == [
                ("accounts", "domain", "domain", "CASCADE"),
                ("accounts", "username", "username", "CASCADE"),
            ], table
    finally:
        conn.close()


async def test_delete_account_deletes_all_per_user_data(
    juliet: SQLiteStorage, db_path: Path
) -> None:
    await fill_user_data(juliet, "juliet")
    await fill_user_data(juliet, "romeo")
    assert rows_per_table(db_path, "juliet") == dict.fromkeys(sorted(_PER_USER_TABLES), 1)
    assert await juliet.delete_account("juliet", DOMAIN)
    assert rows_per_table(db_path, "juliet") == dict.fromkeys(sorted(_PER_USER_TABLES), 0)
    assert rows_per_table(db_path, "romeo") == dict.fromkeys(sorted(_PER_USER_TABLES), 1)
    # A new account of the same name starts with nothing.
    await juliet.create_account(account("juliet"))
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.take_offline("juliet", DOMAIN) == []
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "") is None
    roster = await juliet.get_roster("romeo", DOMAIN)
    assert (roster.version, list(roster.items), roster.pending_in) == (
        1,
        [ROMEO],
        {NURSE: SUBSCRIBE},
    )


async def test_second_instance_sees_per_user_writes(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as server, SQLiteStorage(db_path) as cli:
        await cli.create_account(account("juliet"))
        assert await server.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
        await cli.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO, "Romeo"))
        await cli.set_pending_in("juliet", DOMAIN, NURSE, SUBSCRIBE)
        assert await server.get_roster("juliet", DOMAIN) == RosterData(
            1, {ROMEO: RosterItem(ROMEO, "Romeo")}, {NURSE: SUBSCRIBE}
        )
        assert await server.put_roster_item("juliet", DOMAIN, RosterItem(NURSE)) == 2
        assert await cli.delete_roster_item("juliet", DOMAIN, ROMEO) == 3
        assert await server.count_roster_items("juliet", DOMAIN) == 1
        await server.push_offline("juliet", DOMAIN, "<message/>", 5.0, 10)
        assert await cli.count_offline("juliet", DOMAIN) == 1
        assert await cli.take_offline("juliet", DOMAIN) == [("<message/>", 5.0)]
        assert await server.take_offline("juliet", DOMAIN) == []
        await cli.set_data("juliet", DOMAIN, "vcard", "", "<vCard/>")
        assert await server.get_data("juliet", DOMAIN, "vcard", "") == "<vCard/>"
        await server.set_data("juliet", DOMAIN, "vcard", "", None)
        assert await cli.list_data("juliet", DOMAIN, "vcard") == {}
        assert await cli.delete_account("juliet", DOMAIN)
        assert await server.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})


async def test_upgrade_from_schema_1_keeps_accounts(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roost.storage.sqlite, "MIGRATIONS", MIGRATIONS[:1])
    async with SQLiteStorage(db_path) as old:
        await old.create_account(account("juliet"))
    assert user_version(db_path) == 1
    monkeypatch.undo()
    async with SQLiteStorage(db_path) as storage:
        assert await storage.get_account("juliet", DOMAIN) == account("juliet")
        assert await storage.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO)) == 1
        assert await storage.push_offline("juliet", DOMAIN, "<message/>", 1.0, 10)
    assert user_version(db_path) == len(MIGRATIONS) >= 2
