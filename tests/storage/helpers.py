"""Values and backends shared by the storage tests (``test_contract`` and the per-backend
files); the fixtures that use them are in ``conftest.py``."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from roost.storage import (
    Account,
    ArchivedMessage,
    ArchivePrefs,
    RosterItem,
    SQLiteStorage,
    Storage,
    StoredCredentials,
)

DOMAIN = "example.org"
ROMEO = "romeo@montague.example"
NURSE = "nurse@capulet.example"
SUBSCRIBE = "<presence from='romeo@montague.example' type='subscribe'/>"


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


async def roster_size(storage: Storage, username: str) -> int:
    """How many items the user's roster has (``pending_in`` not counted)."""
    return len((await storage.get_roster(username, DOMAIN)).items)


async def fill_user_data(storage: Storage, username: str, *, archive: bool = True) -> None:
    """One row of every kind of per-user data for ``username`` on DOMAIN (``archive``
    false: none of the message archive, for schemas older than it)."""
    await storage.put_roster_item(username, DOMAIN, RosterItem(ROMEO, groups=("g",)))
    await storage.set_pending_in(username, DOMAIN, NURSE, SUBSCRIBE)
    await storage.push_offline(username, DOMAIN, "<message/>", 1.0, 100)
    await storage.set_data(username, DOMAIN, "vcard", "", "<vCard/>")
    if archive:
        seq = next(_archive_seqs)
        message = ArchivedMessage(username, DOMAIN, seq, ROMEO, None, True, "<message/>")
        await storage.archive_messages([message])
        await storage.set_archive_prefs(username, DOMAIN, ArchivePrefs("roster", (), (NURSE,)))


_archive_seqs = itertools.count(1)


class Backend(ABC):
    """One test's database on one backend.

    ``new()`` makes another, unopened client of that same database: a second process (the
    CLI next to the server) or the server after a restart.
    """

    name: str

    @abstractmethod
    def new(self) -> Storage: ...

    @abstractmethod
    def offline_count(self, username: str, domain: str = DOMAIN) -> int:
        """How many offline messages the database holds for the user, read beside the
        ``Storage`` protocol (which has no count: the server never needs one)."""

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Storage]:
        """A new client, open for the ``async with`` block and closed after it."""
        storage = self.new()
        await storage.open()
        try:
            yield storage
        finally:
            await storage.close()


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def new(self) -> SQLiteStorage:
        return SQLiteStorage(self.path)

    def offline_count(self, username: str, domain: str = DOMAIN) -> int:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "SELECT count(*) FROM offline_messages WHERE username = ? AND domain = ?",
                (username, domain),
            ).fetchone()
            return int(row[0])
        finally:
            conn.close()
