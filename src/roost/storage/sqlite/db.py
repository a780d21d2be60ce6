"""The SQLite plumbing: the connection and its worker thread, transactions, migrations.

``SQLiteDatabase`` owns the lifetime (open, close) and runs every operation on the worker;
``SQLiteStorage`` (``storage.py``) adds the stores on top. The functions here take the
connection and run on that thread, in autocommit mode unless they open a ``_transaction``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from roost.storage.api import SchemaError, StorageError, StoreSchema
from roost.storage.sqlite.migrations import MIGRATIONS

__all__ = ["SQLiteDatabase"]

# The name the backend has always logged under, whichever module of it logs.
_log = logging.getLogger("roost.storage.sqlite")

_T = TypeVar("_T")

_PRAGMAS = (
    "PRAGMA busy_timeout = 5000",  # first, so the pragmas below wait for a busy peer too
    "PRAGMA synchronous = FULL",  # a commit is on disk before it is acknowledged
    "PRAGMA foreign_keys = ON",  # per-user data follows its account (ON DELETE CASCADE)
    # The archive's indexes take each message at its user's place, so a batch dirties
    # pages all over them: with SQLite's default 2 MB cache they are read again for every
    # batch, and with its default 1000-page WAL they are copied back at each of many
    # checkpoints. 16 MB and 10000 pages (a WAL of up to 40 MB) cut the CPU of an archive
    # insert by about 45% once the archive holds 300,000 messages (#12, bench/README.md).
    "PRAGMA cache_size = -16384",
    "PRAGMA wal_autocheckpoint = 10000",
)


class SQLiteDatabase:
    """One SQLite file, one connection, one worker thread; use ``open``/``close`` or
    ``async with``."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        # Created, used and closed only on the worker thread.
        self._conn: sqlite3.Connection | None = None
        #: called on the event loop with the seconds each operation took, waiting for the
        #: worker included (the server's metrics histogram); None: not measured
        self.on_latency: Callable[[float], None] | None = None

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

    async def register_schema(self, schema: StoreSchema) -> None:
        await self._call(functools.partial(_migrate_store, schema=schema, path=self._path))

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
        observe = self.on_latency
        if observe is None:
            return await asyncio.get_running_loop().run_in_executor(executor, operation)
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, operation)
        finally:
            observe(time.perf_counter() - started)

    async def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._run(functools.partial(self._with_connection, operation))

    def _with_connection(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._conn is None:
            raise StorageError(f"{self._path} is not open")
        return operation(self._conn)


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


def _store_version(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT version FROM store_versions WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _migrate_store(conn: sqlite3.Connection, schema: StoreSchema, path: Path) -> None:
    """``_migrate`` for a module's store, its version kept in ``store_versions``."""
    target = len(schema.migrations)
    if _store_version(conn, schema.name) == target:
        return
    # Split before taking the lock: a malformed script fails without touching the file.
    pending = [_split_statements(script) for script in schema.migrations]
    with _transaction(conn):
        current = _store_version(conn, schema.name)  # again, under the write lock
        if current > target:
            raise SchemaError(
                f"{path}: store {schema.name!r} has schema version {current},"
                f" newer than this Roost ({target})"
            )
        if current == target:
            return
        for number, statements in enumerate(pending[current:], start=current + 1):
            for statement in statements:
                try:
                    conn.execute(statement)
                except sqlite3.Error as exc:
                    # Rolled back with the rest; the module sees one error for any backend.
                    raise SchemaError(
                        f"{path}: migration {number} of store {schema.name!r} failed: {exc}"
                    ) from exc
        conn.execute(
            "INSERT INTO store_versions (name, version) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (schema.name, target),
        )
    _log.info("migrated store %r in %s from version %d to %d", schema.name, path, current, target)
