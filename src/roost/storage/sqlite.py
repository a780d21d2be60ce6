"""SQLite backend: one database file, one connection, owned by one worker thread.

Every operation is a plain function of the connection, run on that thread and awaited with
``loop.run_in_executor``, so the event loop never waits on the disk and writes are serialised.
Nothing is cached in memory: the CLI (``roost user add``) writes to the same file while the
server runs, and the server must see its accounts at once. WAL lets both processes work at
the same time; ``busy_timeout`` makes a writer wait for the other instead of failing.

If the awaiting task is cancelled, an operation already handed to the worker still runs to the
end (a write may still commit); only its result is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from roost.storage.api import (
    Account,
    AccountExists,
    NoSuchAccount,
    SchemaError,
    StorageError,
    StoredCredentials,
    check_credentials,
)

__all__ = ["MIGRATIONS", "SQLiteStorage"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Schema history, oldest first. Migration N (1-based) brings ``PRAGMA user_version`` from N-1
# to N. Never edit a migration that has shipped: append a new one. Every per-user table must
# reference ``accounts (username, domain) ON DELETE CASCADE`` (and index those columns), so
# that deleting an account deletes all of its data in the same statement.
MIGRATIONS: list[str] = [
    # 1: accounts with SCRAM keys for both hashes (RFC 5802, RFC 7677), never a password.
    """
    CREATE TABLE accounts (
        username        TEXT    NOT NULL,
        domain          TEXT    NOT NULL,
        sha1_salt       BLOB    NOT NULL,
        sha1_iterations INTEGER NOT NULL,
        sha1_stored     BLOB    NOT NULL,
        sha1_server     BLOB    NOT NULL,
        sha256_salt       BLOB    NOT NULL,
        sha256_iterations INTEGER NOT NULL,
        sha256_stored     BLOB    NOT NULL,
        sha256_server     BLOB    NOT NULL,
        created         REAL    NOT NULL,
        PRIMARY KEY (username, domain)
    ) WITHOUT ROWID;
    CREATE INDEX accounts_by_domain ON accounts (domain, username);
    """,
]

_PRAGMAS = (
    "PRAGMA busy_timeout = 5000",  # first, so the pragmas below wait for a busy peer too
    "PRAGMA synchronous = FULL",  # a commit is on disk before it is acknowledged
    "PRAGMA foreign_keys = ON",  # per-user data follows its account (ON DELETE CASCADE)
)

_ACCOUNT_COLUMNS = (
    "username, domain, "
    "sha1_salt, sha1_iterations, sha1_stored, sha1_server, "
    "sha256_salt, sha256_iterations, sha256_stored, sha256_server, "
    "created"
)
_INSERT_ACCOUNT = (
    f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteStorage:
    """``Storage`` on one SQLite file; use ``open``/``close`` or ``async with``."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        # Created, used and closed only on the worker thread.
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self._path

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lifetime --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            raise StorageError(f"{self._path} is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-sqlite")
        try:
            await self._run(self._open_on_worker)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        closing = asyncio.get_running_loop().run_in_executor(executor, self._close_on_worker)
        # Queued work (including the close) still runs; the thread then exits on its own.
        executor.shutdown(wait=False)
        await closing

    def _open_on_worker(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(self._path)
        conn = sqlite3.connect(self._path, isolation_level=None)  # we issue BEGIN ourselves
        try:
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StorageError(f"{self._path}: cannot use WAL journal (got {mode!r})")
            _migrate(conn, MIGRATIONS, self._path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_on_worker(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA optimize")  # refreshes planner statistics; best effort
        except sqlite3.Error as exc:
            _log.debug("PRAGMA optimize on %s failed: %s", self._path, exc)
        finally:
            # Closing the last connection checkpoints the WAL into the main file.
            conn.close()

    async def _run(self, operation: Callable[[], _T]) -> _T:
        executor = self._executor
        if executor is None:
            raise StorageError(f"{self._path} is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, operation)

    async def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(functools.partial(self._with_connection, operation))

    def _with_connection(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._conn is None:
            raise StorageError(f"{self._path} is not open")
        return operation(self._conn)

    # -- accounts --------------------------------------------------------------------------

    async def create_account(self, account: Account) -> None:
        await self._call(functools.partial(_create_account, account=account))

    async def get_account(self, username: str, domain: str) -> Account | None:
        return await self._call(functools.partial(_get_account, username=username, domain=domain))

    async def set_credentials(
        self,
        username: str,
        domain: str,
        sha1: StoredCredentials,
        sha256: StoredCredentials,
    ) -> None:
        check_credentials(sha1, sha256)
        await self._call(
            functools.partial(
                _set_credentials, username=username, domain=domain, sha1=sha1, sha256=sha256
            )
        )

    async def delete_account(self, username: str, domain: str) -> bool:
        return await self._call(
            functools.partial(_delete_account, username=username, domain=domain)
        )

    async def list_accounts(self, domain: str | None = None) -> list[tuple[str, str]]:
        return await self._call(functools.partial(_list_accounts, domain=domain))

    async def create_accounts_bulk(self, accounts: Iterable[Account]) -> int:
        # Drain the iterable here: it belongs to the caller's thread.
        batch = list(accounts)
        return await self._call(functools.partial(_create_accounts_bulk, accounts=batch))


# -- worker-thread functions: each takes the connection and runs in autocommit mode ----------


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds SCRAM keys)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a transaction
    # never fails half-way by being unable to upgrade a read lock held by the other process.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _split_statements(script: str) -> list[str]:
    """Split an SQL script into statements (``executescript`` would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        # complete_statement knows about quotes, comments and CREATE TRIGGER ... END;
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.rstrip(";").strip():
        raise SchemaError(f"incomplete SQL statement in migration: {pending.strip()[:60]!r}")
    return statements


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection, migrations: Sequence[str], path: Path) -> None:
    """Apply pending migrations and set ``user_version``, all in one transaction."""
    target = len(migrations)
    if _user_version(conn) == target:
        return
    with _transaction(conn):
        # Read again under the write lock: another process may have migrated meanwhile.
        current = _user_version(conn)
        if current > target:
            raise SchemaError(
                f"{path} has schema version {current}, newer than this Roost ({target})"
            )
        if current == target:
            return
        for script in migrations[current:]:
            for statement in _split_statements(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target:d}")
    _log.info("migrated %s from schema version %d to %d", path, current, target)


def _account_row(account: Account) -> tuple[object, ...]:
    sha1, sha256 = account.sha1, account.sha256
    return (
        account.username,
        account.domain,
        sha1.salt,
        sha1.iterations,
        sha1.stored_key,
        sha1.server_key,
        sha256.salt,
        sha256.iterations,
        sha256.stored_key,
        sha256.server_key,
        account.created,
    )


def _account_from_row(row: Sequence[Any]) -> Account:
    return Account(
        username=str(row[0]),
        domain=str(row[1]),
        sha1=StoredCredentials(
            salt=bytes(row[2]),
            iterations=int(row[3]),
            stored_key=bytes(row[4]),
            server_key=bytes(row[5]),
        ),
        sha256=StoredCredentials(
            salt=bytes(row[6]),
            iterations=int(row[7]),
            stored_key=bytes(row[8]),
            server_key=bytes(row[9]),
        ),
        created=float(row[10]),
    )


def _create_account(conn: sqlite3.Connection, account: Account) -> None:
    try:
        # One statement in autocommit mode: committed (and synced) when execute returns.
        conn.execute(_INSERT_ACCOUNT, _account_row(account))
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
            raise AccountExists(f"{account.username}@{account.domain}") from exc
        raise


def _get_account(conn: sqlite3.Connection, username: str, domain: str) -> Account | None:
    row = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE username = ? AND domain = ?",
        (username, domain),
    ).fetchone()
    return None if row is None else _account_from_row(row)


def _set_credentials(
    conn: sqlite3.Connection,
    username: str,
    domain: str,
    sha1: StoredCredentials,
    sha256: StoredCredentials,
) -> None:
    cursor = conn.execute(
        "UPDATE accounts SET"
        " sha1_salt = ?, sha1_iterations = ?, sha1_stored = ?, sha1_server = ?,"
        " sha256_salt = ?, sha256_iterations = ?, sha256_stored = ?, sha256_server = ?"
        " WHERE username = ? AND domain = ?",
        (
            sha1.salt,
            sha1.iterations,
            sha1.stored_key,
            sha1.server_key,
            sha256.salt,
            sha256.iterations,
            sha256.stored_key,
            sha256.server_key,
            username,
            domain,
        ),
    )
    if cursor.rowcount == 0:
        raise NoSuchAccount(f"{username}@{domain}")


def _delete_account(conn: sqlite3.Connection, username: str, domain: str) -> bool:
    # Per-user tables go with it through ON DELETE CASCADE (see MIGRATIONS).
    cursor = conn.execute(
        "DELETE FROM accounts WHERE username = ? AND domain = ?", (username, domain)
    )
    return cursor.rowcount > 0


def _list_accounts(conn: sqlite3.Connection, domain: str | None) -> list[tuple[str, str]]:
    # BINARY collation compares UTF-8 bytes, which is code point order: the same as sorted().
    if domain is None:
        rows = conn.execute("SELECT username, domain FROM accounts ORDER BY username, domain")
    else:
        rows = conn.execute(
            "SELECT username, domain FROM accounts WHERE domain = ? ORDER BY username",
            (domain,),
        )
    return [(str(username), str(row_domain)) for username, row_domain in rows]


def _create_accounts_bulk(conn: sqlite3.Connection, accounts: list[Account]) -> int:
    rows = [_account_row(account) for account in accounts]
    with _transaction(conn):
        before = conn.total_changes
        conn.executemany(
            _INSERT_ACCOUNT + " ON CONFLICT (username, domain) DO NOTHING",
            rows,
        )
        return conn.total_changes - before
