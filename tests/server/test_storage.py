"""Tests for roost.storage: the async account store on real SQLite files."""

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

from roost.storage import (
    Account,
    AccountExists,
    NoSuchAccount,
    SchemaError,
    SQLiteStorage,
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


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
async def test_acknowledged_account_survives_sigkill(db_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
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
    async with SQLiteStorage(db_path) as storage:
        stored = await storage.get_account("juliet", "example.org")
    assert stored is not None
    assert stored.created == 42.0
