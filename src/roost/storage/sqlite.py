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
import json
import logging
import math
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
    RosterData,
    RosterItem,
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
    # 2: per-user IM data: rosters and pending inbound subscriptions (RFC 6121), offline
    # messages (XEP-0160) and small per-user documents. Each primary key starts with
    # (username, domain), which also indexes the foreign key for the cascade.
    """
    CREATE TABLE roster_versions (
        username TEXT    NOT NULL,
        domain   TEXT    NOT NULL,
        version  INTEGER NOT NULL,
        PRIMARY KEY (username, domain),
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE roster_items (
        username     TEXT    NOT NULL,
        domain       TEXT    NOT NULL,
        jid          TEXT    NOT NULL,
        name         TEXT,
        subscription TEXT    NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
        ask          INTEGER NOT NULL CHECK (ask IN (0, 1)),
        approved     INTEGER NOT NULL CHECK (approved IN (0, 1)),
        groups_json  TEXT    NOT NULL,  -- JSON array of strings, in order
        PRIMARY KEY (username, domain, jid),
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE roster_pending_in (
        username TEXT NOT NULL,
        domain   TEXT NOT NULL,
        jid      TEXT NOT NULL,
        stanza   TEXT NOT NULL,
        PRIMARY KEY (username, domain, jid),
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE offline_messages (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order, never reused
        username TEXT    NOT NULL,
        domain   TEXT    NOT NULL,
        stanza   TEXT    NOT NULL,
        stamp    REAL    NOT NULL,
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    );
    CREATE INDEX offline_messages_by_user ON offline_messages (username, domain, id);
    CREATE TABLE user_data (
        username TEXT NOT NULL,
        domain   TEXT NOT NULL,
        store    TEXT NOT NULL,
        key      TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (username, domain, store, key),
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    ) WITHOUT ROWID;
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

    # -- rosters (RFC 6121) ----------------------------------------------------------------

    async def get_roster(self, username: str, domain: str) -> RosterData:
        return await self._call(functools.partial(_get_roster, username=username, domain=domain))

    async def put_roster_item(self, username: str, domain: str, item: RosterItem) -> int:
        return await self._call(
            functools.partial(_put_roster_item, username=username, domain=domain, item=item)
        )

    async def delete_roster_item(self, username: str, domain: str, jid: str) -> int:
        return await self._call(
            functools.partial(_delete_roster_item, username=username, domain=domain, jid=jid)
        )

    async def set_pending_in(
        self, username: str, domain: str, jid: str, stanza: str | None
    ) -> None:
        await self._call(
            functools.partial(
                _set_pending_in, username=username, domain=domain, jid=jid, stanza=stanza
            )
        )

    async def count_roster_items(self, username: str, domain: str) -> int:
        return await self._call(
            functools.partial(_count_user_rows, table="roster_items", user=(username, domain))
        )

    # -- offline messages (XEP-0160) -------------------------------------------------------

    async def push_offline(
        self, username: str, domain: str, stanza: str, stamp: float, limit: int
    ) -> bool:
        if not math.isfinite(stamp):
            raise ValueError(f"offline message stamp must be finite, got {stamp}")
        return await self._call(
            functools.partial(
                _push_offline,
                username=username,
                domain=domain,
                stanza=stanza,
                stamp=stamp,
                limit=limit,
            )
        )

    async def take_offline(self, username: str, domain: str) -> list[tuple[str, float]]:
        return await self._call(functools.partial(_take_offline, username=username, domain=domain))

    async def count_offline(self, username: str, domain: str) -> int:
        return await self._call(
            functools.partial(_count_user_rows, table="offline_messages", user=(username, domain))
        )

    # -- per-user documents ----------------------------------------------------------------

    async def get_data(self, username: str, domain: str, store: str, key: str) -> str | None:
        return await self._call(
            functools.partial(_get_data, username=username, domain=domain, store=store, key=key)
        )

    async def set_data(
        self, username: str, domain: str, store: str, key: str, value: str | None
    ) -> None:
        await self._call(
            functools.partial(
                _set_data, username=username, domain=domain, store=store, key=key, value=value
            )
        )

    async def list_data(self, username: str, domain: str, store: str) -> dict[str, str]:
        return await self._call(
            functools.partial(_list_data, username=username, domain=domain, store=store)
        )


# -- worker-thread functions: each takes the connection and runs in autocommit mode ----------


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds SCRAM keys)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@contextmanager
def _transaction(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a transaction
    # never fails half-way by being unable to upgrade a read lock held by the other process.
    # A read-only (DEFERRED) one just sees a single snapshot of the WAL for all its SELECTs.
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
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


# -- per-user data --------------------------------------------------------------------------

# Tables whose rows belong to one user; a name is only ever put into SQL from this set.
_USER_TABLES = frozenset(
    {"roster_versions", "roster_items", "roster_pending_in", "offline_messages", "user_data"}
)


def _require_account(conn: sqlite3.Connection, username: str, domain: str) -> None:
    """Raise ``NoSuchAccount`` unless the account exists (call inside a write transaction,
    which keeps it from being deleted before the caller's insert)."""
    row = conn.execute(
        "SELECT 1 FROM accounts WHERE username = ? AND domain = ?", (username, domain)
    ).fetchone()
    if row is None:
        raise NoSuchAccount(f"{username}@{domain}")


def _count_user_rows(conn: sqlite3.Connection, table: str, user: tuple[str, str]) -> int:
    if table not in _USER_TABLES:
        raise ValueError(f"not a per-user table: {table!r}")
    row = conn.execute(
        f"SELECT COUNT(*) FROM {table} WHERE username = ? AND domain = ?", user
    ).fetchone()
    return int(row[0])


def _roster_version(conn: sqlite3.Connection, username: str, domain: str) -> int:
    row = conn.execute(
        "SELECT version FROM roster_versions WHERE username = ? AND domain = ?",
        (username, domain),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _bump_roster_version(conn: sqlite3.Connection, username: str, domain: str) -> int:
    row = conn.execute(
        "INSERT INTO roster_versions (username, domain, version) VALUES (?, ?, 1)"
        " ON CONFLICT (username, domain) DO UPDATE SET version = version + 1"
        " RETURNING version",
        (username, domain),
    ).fetchone()
    return int(row[0])


def _roster_item_from_row(row: Sequence[Any]) -> RosterItem:
    groups = json.loads(row[5])
    return RosterItem(
        jid=str(row[0]),
        name=None if row[1] is None else str(row[1]),
        subscription=str(row[2]),
        ask=bool(row[3]),
        approved=bool(row[4]),
        groups=tuple(str(group) for group in groups),
    )


def _get_roster(conn: sqlite3.Connection, username: str, domain: str) -> RosterData:
    user = (username, domain)
    with _transaction(conn, write=False):
        version = _roster_version(conn, username, domain)
        items = {
            str(row[0]): _roster_item_from_row(row)
            for row in conn.execute(
                "SELECT jid, name, subscription, ask, approved, groups_json FROM roster_items"
                " WHERE username = ? AND domain = ? ORDER BY jid",
                user,
            )
        }
        pending_in = {
            str(jid): str(stanza)
            for jid, stanza in conn.execute(
                "SELECT jid, stanza FROM roster_pending_in"
                " WHERE username = ? AND domain = ? ORDER BY jid",
                user,
            )
        }
    return RosterData(version=version, items=items, pending_in=pending_in)


def _put_roster_item(conn: sqlite3.Connection, username: str, domain: str, item: RosterItem) -> int:
    with _transaction(conn):
        _require_account(conn, username, domain)
        conn.execute(
            "INSERT INTO roster_items"
            " (username, domain, jid, name, subscription, ask, approved, groups_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (username, domain, jid) DO UPDATE SET"
            " name = excluded.name, subscription = excluded.subscription,"
            " ask = excluded.ask, approved = excluded.approved,"
            " groups_json = excluded.groups_json",
            (
                username,
                domain,
                item.jid,
                item.name,
                item.subscription,
                int(item.ask),
                int(item.approved),
                json.dumps(list(item.groups), ensure_ascii=False),
            ),
        )
        return _bump_roster_version(conn, username, domain)


def _delete_roster_item(conn: sqlite3.Connection, username: str, domain: str, jid: str) -> int:
    with _transaction(conn):
        cursor = conn.execute(
            "DELETE FROM roster_items WHERE username = ? AND domain = ? AND jid = ?",
            (username, domain, jid),
        )
        if cursor.rowcount == 0:
            return _roster_version(conn, username, domain)
        return _bump_roster_version(conn, username, domain)


def _set_pending_in(
    conn: sqlite3.Connection, username: str, domain: str, jid: str, stanza: str | None
) -> None:
    if stanza is None:
        conn.execute(
            "DELETE FROM roster_pending_in WHERE username = ? AND domain = ? AND jid = ?",
            (username, domain, jid),
        )
        return
    with _transaction(conn):
        _require_account(conn, username, domain)
        conn.execute(
            "INSERT INTO roster_pending_in (username, domain, jid, stanza) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (username, domain, jid) DO UPDATE SET stanza = excluded.stanza",
            (username, domain, jid, stanza),
        )


def _push_offline(
    conn: sqlite3.Connection, username: str, domain: str, stanza: str, stamp: float, limit: int
) -> bool:
    # The count and the insert share the write lock: two pushes cannot both see room for one.
    with _transaction(conn):
        _require_account(conn, username, domain)
        if _count_user_rows(conn, "offline_messages", (username, domain)) >= limit:
            return False
        conn.execute(
            "INSERT INTO offline_messages (username, domain, stanza, stamp) VALUES (?, ?, ?, ?)",
            (username, domain, stanza, stamp),
        )
    return True  # committed (synchronous = FULL) by the end of the with block


def _take_offline(conn: sqlite3.Connection, username: str, domain: str) -> list[tuple[str, float]]:
    user = (username, domain)
    with _transaction(conn):
        messages = [
            (str(stanza), float(stamp))
            for stanza, stamp in conn.execute(
                "SELECT stanza, stamp FROM offline_messages"
                " WHERE username = ? AND domain = ? ORDER BY id",
                user,
            )
        ]
        if messages:
            conn.execute("DELETE FROM offline_messages WHERE username = ? AND domain = ?", user)
    return messages


def _get_data(
    conn: sqlite3.Connection, username: str, domain: str, store: str, key: str
) -> str | None:
    row = conn.execute(
        "SELECT value FROM user_data WHERE username = ? AND domain = ? AND store = ? AND key = ?",
        (username, domain, store, key),
    ).fetchone()
    return None if row is None else str(row[0])


def _set_data(
    conn: sqlite3.Connection, username: str, domain: str, store: str, key: str, value: str | None
) -> None:
    if value is None:
        conn.execute(
            "DELETE FROM user_data WHERE username = ? AND domain = ? AND store = ? AND key = ?",
            (username, domain, store, key),
        )
        return
    with _transaction(conn):
        _require_account(conn, username, domain)
        conn.execute(
            "INSERT INTO user_data (username, domain, store, key, value) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (username, domain, store, key) DO UPDATE SET value = excluded.value",
            (username, domain, store, key, value),
        )


def _list_data(conn: sqlite3.Connection, username: str, domain: str, store: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT key, value FROM user_data WHERE username = ? AND domain = ? AND store = ?"
        " ORDER BY key",
        (username, domain, store),
    )
    return {str(key): str(value) for key, value in rows}
