"""SQLite-only storage tests: the file itself (WAL, permissions, ``user_version``), a second
process holding its lock or killed with SIGKILL, the worker thread, and upgrades from older
schemas. Everything backend-neutral is in ``test_contract.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import roost.storage.sqlite.db
from roost.storage import (
    RosterData,
    RosterItem,
    SchemaError,
    SQLiteStorage,
    Storage,
    StorageError,
    StoreSchema,
)
from roost.storage.sqlite import MIGRATIONS
from tests.storage.helpers import (
    DOMAIN,
    NURSE,
    ROMEO,
    SUBSCRIBE,
    SQLiteBackend,
    account,
    fill_user_data,
)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "roost.sqlite3"


@pytest.fixture
def backend(db_path: Path) -> SQLiteBackend:
    """Overrides the parametrised one: ``storage`` and ``juliet`` are on ``db_path`` here."""
    return SQLiteBackend(db_path)


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def query(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of one statement on a connection of its own (as another process would see)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- accounts -------------------------------------------------------------------------------


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


async def test_operations_run_off_the_event_loop_thread(storage: SQLiteStorage) -> None:
    seen: list[str] = []
    await storage._call(lambda conn: seen.append(threading.current_thread().name))
    assert seen[0] != threading.current_thread().name
    assert seen[0].startswith("roost-sqlite")


def test_sqlite_storage_is_a_storage() -> None:
    def accepts(storage: Storage) -> Storage:  # mypy checks the structural match
        return storage

    assert accepts(SQLiteStorage(Path("unused"))) is not None


# -- two processes on one file (CLI and server) ---------------------------------------------


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


# -- per-user data and the account's lifetime -----------------------------------------------


_PER_USER_TABLES = {
    "roster_versions",
    "roster_items",
    "roster_pending_in",
    "offline_messages",
    "user_data",
    "archive_messages",
    "archive_prefs",
}
# Tables that belong to no account: module stores' versions and host-scoped documents.
_HOST_TABLES = {"store_versions", "host_data", "room_archive"}


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
        # A new table must be added to the cascade tests (or, if no account owns it, to
        # _HOST_TABLES).
        assert tables == _PER_USER_TABLES | _HOST_TABLES
        for table in _PER_USER_TABLES:
            keys = conn.execute(f"PRAGMA foreign_key_list({table})").fetchall()
            # (id, seq, table, from, to, on_update, on_delete, match)
            assert sorted((k[2], k[3], k[4], k[6]) for k in keys) == [
                ("accounts", "domain", "domain", "CASCADE"),
                ("accounts", "username", "username", "CASCADE"),
            ], table
        for table in _HOST_TABLES:
            assert conn.execute(f"PRAGMA foreign_key_list({table})").fetchall() == [], table
    finally:
        conn.close()


async def test_delete_account_leaves_no_per_user_rows(juliet: SQLiteStorage, db_path: Path) -> None:
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


async def test_upgrade_from_schema_1_keeps_accounts(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roost.storage.sqlite.db, "MIGRATIONS", MIGRATIONS[:1])
    async with SQLiteStorage(db_path) as old:
        await old.create_account(account("juliet"))
    assert user_version(db_path) == 1
    monkeypatch.undo()
    async with SQLiteStorage(db_path) as storage:
        assert await storage.get_account("juliet", DOMAIN) == account("juliet")
        assert await storage.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO)) == 1
        assert await storage.push_offline("juliet", DOMAIN, "<message/>", 1.0, 10)
    assert user_version(db_path) == len(MIGRATIONS) >= 2


# -- module-owned stores ------------------------------------------------------------------

DEMO = "CREATE TABLE demo_rooms (jid TEXT NOT NULL PRIMARY KEY, name TEXT) WITHOUT ROWID"
DEMO_2 = "CREATE INDEX demo_rooms_by_name ON demo_rooms (name)"


def store_versions(path: Path) -> dict[str, int]:
    rows = query(path, "SELECT name, version FROM store_versions")
    return {str(name): int(version) for name, version in rows}


def schema_objects(path: Path) -> set[str]:
    rows = query(path, "SELECT name FROM sqlite_master WHERE name LIKE 'demo%'")
    return {str(name) for (name,) in rows}


async def test_register_schema_creates_tables_and_records_version(
    storage: SQLiteStorage, db_path: Path
) -> None:
    assert store_versions(db_path) == {}
    await storage.register_schema(StoreSchema("demo", (DEMO,)))
    assert store_versions(db_path) == {"demo": 1}
    assert schema_objects(db_path) == {"demo_rooms"}
    await storage.register_schema(StoreSchema("demo", (DEMO, DEMO_2)))
    await storage.register_schema(StoreSchema("demo", (DEMO, DEMO_2)))
    assert store_versions(db_path) == {"demo": 2}
    assert schema_objects(db_path) == {"demo_rooms", "demo_rooms_by_name"}
    await storage.register_schema(StoreSchema("empty", ()))
    assert store_versions(db_path) == {"demo": 2}  # version 0 needs no row
    assert user_version(db_path) == len(MIGRATIONS)  # the server's own schema is untouched


async def test_newer_store_version_is_refused(storage: SQLiteStorage, db_path: Path) -> None:
    await storage.register_schema(StoreSchema("demo", (DEMO,)))
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE store_versions SET version = 5 WHERE name = 'demo'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match=r"store 'demo' has schema version 5.*\(2\)"):
        await storage.register_schema(StoreSchema("demo", (DEMO, DEMO_2)))
    assert store_versions(db_path) == {"demo": 5}
    assert schema_objects(db_path) == {"demo_rooms"}


async def test_failed_store_migration_leaves_the_file_unchanged(
    storage: SQLiteStorage, db_path: Path
) -> None:
    await storage.register_schema(StoreSchema("demo", (DEMO,)))
    broken = "CREATE TABLE demo_log (line TEXT); INSERT INTO nowhere VALUES (1)"
    with pytest.raises(SchemaError, match="migration 3 of store 'demo'") as caught:
        await storage.register_schema(StoreSchema("demo", (DEMO, DEMO_2, broken)))
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    incomplete = "CREATE TABLE demo_log (line TEXT DEFAULT 'unterminated)"
    with pytest.raises(SchemaError, match="incomplete"):
        await storage.register_schema(StoreSchema("demo", (DEMO, incomplete)))
    assert store_versions(db_path) == {"demo": 1}
    assert schema_objects(db_path) == {"demo_rooms"}


async def test_store_migration_waits_for_the_other_process_lock(db_path: Path) -> None:
    async with SQLiteStorage(db_path) as storage:
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            registering = asyncio.ensure_future(
                storage.register_schema(StoreSchema("demo", (DEMO,)))
            )
            await asyncio.sleep(0.2)
            assert not registering.done()
            other.execute("COMMIT")
            await asyncio.wait_for(registering, timeout=5)
        finally:
            other.close()
    assert store_versions(db_path) == {"demo": 1}


async def test_upgrade_from_schema_2_keeps_per_user_data(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Schema 2 is what shipped before module-owned stores (migration 3).
    monkeypatch.setattr(roost.storage.sqlite.db, "MIGRATIONS", MIGRATIONS[:2])
    async with SQLiteStorage(db_path) as old:
        await old.create_account(account("juliet"))
        await old.create_account(account("romeo"))
        await fill_user_data(old, "juliet", archive=False)
    assert user_version(db_path) == 2
    assert query(db_path, "SELECT name FROM sqlite_master WHERE name = 'host_data'") == []
    monkeypatch.undo()
    async with SQLiteStorage(db_path) as storage:
        roster = await storage.get_roster("juliet", DOMAIN)
        assert (roster.version, list(roster.items), roster.pending_in) == (
            1,
            [ROMEO],
            {NURSE: SUBSCRIBE},
        )
        assert await storage.get_data("juliet", DOMAIN, "vcard", "") == "<vCard/>"
        assert await storage.take_offline("juliet", DOMAIN) == [("<message/>", 1.0)]
        await storage.set_host_data("room@conference.example.org", "muc", "config", "<x/>")
        await storage.register_schema(StoreSchema("demo", (DEMO,)))
    assert user_version(db_path) == len(MIGRATIONS) >= 3


_HOST_DATA_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from roost.storage import SQLiteStorage

    async def main():
        storage = SQLiteStorage(Path(sys.argv[1]))
        await storage.open()
        await storage.set_host_data("balcony@conference.example.org", "muc", "config", "<x/>")
        print("ok", flush=True)
        time.sleep(60)  # killed here, without close()

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_acknowledged_host_data_survives_sigkill(db_path: Path) -> None:
    await run_and_sigkill(_HOST_DATA_CHILD, db_path)
    async with SQLiteStorage(db_path) as storage:
        assert await storage.list_host_data("balcony@conference.example.org", "muc") == {
            "config": "<x/>"
        }
