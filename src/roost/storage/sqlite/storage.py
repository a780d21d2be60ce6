"""``SQLiteStorage``: the ``Storage`` protocol as thin async methods over the store modules.

Each method checks what can be checked on the caller's thread, then hands one function of
the connection (``accounts``, ``rosters``, ``offline``, ``keyvalue``) to the worker.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from roost.storage.api import (
    Account,
    ArchivedMessage,
    ArchivePage,
    ArchivePrefs,
    ArchiveQuery,
    RoomArchivedMessage,
    RoomArchivePage,
    RosterData,
    RosterItem,
    StoredCredentials,
    check_credentials,
)
from roost.storage.sqlite import accounts as accounts_sql
from roost.storage.sqlite import archive as archive_sql
from roost.storage.sqlite import keyvalue as keyvalue_sql
from roost.storage.sqlite import offline as offline_sql
from roost.storage.sqlite import rosters as rosters_sql
from roost.storage.sqlite.db import SQLiteDatabase

if TYPE_CHECKING:
    from roost.storage.api import Storage

__all__ = ["SQLiteStorage"]


class SQLiteStorage(SQLiteDatabase):
    """``Storage`` on one SQLite file; use ``open``/``close`` or ``async with``."""

    # -- accounts --------------------------------------------------------------------------

    async def create_account(self, account: Account) -> None:
        await self._call(functools.partial(accounts_sql.create_account, account=account))

    async def get_account(self, username: str, domain: str) -> Account | None:
        return await self._call(
            functools.partial(accounts_sql.get_account, username=username, domain=domain)
        )

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
                accounts_sql.set_credentials,
                username=username,
                domain=domain,
                sha1=sha1,
                sha256=sha256,
            )
        )

    async def add_sha256(self, username: str, domain: str, sha256: StoredCredentials) -> bool:
        if len(sha256.stored_key) != 32:
            raise ValueError("SCRAM-SHA-256 keys must be 32 bytes")
        return await self._call(
            functools.partial(
                accounts_sql.add_sha256, username=username, domain=domain, sha256=sha256
            )
        )

    async def delete_account(self, username: str, domain: str) -> bool:
        return await self._call(
            functools.partial(accounts_sql.delete_account, username=username, domain=domain)
        )

    async def list_accounts(self, domain: str | None = None) -> list[tuple[str, str]]:
        return await self._call(functools.partial(accounts_sql.list_accounts, domain=domain))

    async def create_accounts_bulk(self, accounts: Iterable[Account]) -> int:
        # Drain the iterable here: it belongs to the caller's thread.
        batch = list(accounts)
        return await self._call(
            functools.partial(accounts_sql.create_accounts_bulk, accounts=batch)
        )

    # -- rosters (RFC 6121) ----------------------------------------------------------------

    async def get_roster(self, username: str, domain: str) -> RosterData:
        return await self._call(
            functools.partial(rosters_sql.get_roster, username=username, domain=domain)
        )

    async def put_roster_item(self, username: str, domain: str, item: RosterItem) -> int:
        return await self._call(
            functools.partial(
                rosters_sql.put_roster_item, username=username, domain=domain, item=item
            )
        )

    async def delete_roster_item(self, username: str, domain: str, jid: str) -> int:
        return await self._call(
            functools.partial(
                rosters_sql.delete_roster_item, username=username, domain=domain, jid=jid
            )
        )

    async def set_pending_in(
        self, username: str, domain: str, jid: str, stanza: str | None
    ) -> None:
        await self._call(
            functools.partial(
                rosters_sql.set_pending_in, username=username, domain=domain, jid=jid, stanza=stanza
            )
        )

    # -- offline messages (XEP-0160) -------------------------------------------------------

    async def push_offline(
        self, username: str, domain: str, stanza: str, stamp: float, limit: int
    ) -> bool:
        if not math.isfinite(stamp):
            raise ValueError(f"offline message stamp must be finite, got {stamp}")
        return await self._call(
            functools.partial(
                offline_sql.push_offline,
                username=username,
                domain=domain,
                stanza=stanza,
                stamp=stamp,
                limit=limit,
            )
        )

    async def list_offline(self, username: str, domain: str) -> list[tuple[str, float]]:
        return await self._call(
            functools.partial(offline_sql.list_offline, username=username, domain=domain)
        )

    async def take_offline(self, username: str, domain: str) -> list[tuple[str, float]]:
        return await self._call(
            functools.partial(offline_sql.take_offline, username=username, domain=domain)
        )

    # -- per-user documents ----------------------------------------------------------------

    async def get_data(self, username: str, domain: str, store: str, key: str) -> str | None:
        return await self._call(
            functools.partial(
                keyvalue_sql.get_data, username=username, domain=domain, store=store, key=key
            )
        )

    async def set_data(
        self, username: str, domain: str, store: str, key: str, value: str | None
    ) -> None:
        await self._call(
            functools.partial(
                keyvalue_sql.set_data,
                username=username,
                domain=domain,
                store=store,
                key=key,
                value=value,
            )
        )

    async def list_data(self, username: str, domain: str, store: str) -> dict[str, str]:
        return await self._call(
            functools.partial(keyvalue_sql.list_data, username=username, domain=domain, store=store)
        )

    # -- host-scoped documents -------------------------------------------------------------

    async def get_host_data(self, host: str, store: str, key: str) -> str | None:
        return await self._call(
            functools.partial(keyvalue_sql.get_host_data, host=host, store=store, key=key)
        )

    async def set_host_data(self, host: str, store: str, key: str, value: str | None) -> None:
        await self._call(
            functools.partial(
                keyvalue_sql.set_host_data, host=host, store=store, key=key, value=value
            )
        )

    async def list_host_data(self, host: str, store: str) -> dict[str, str]:
        return await self._call(
            functools.partial(keyvalue_sql.list_host_data, host=host, store=store)
        )

    # -- message archives (XEP-0313) -------------------------------------------------------

    async def archive_messages(self, messages: Iterable[ArchivedMessage]) -> int:
        batch = list(messages)
        if not batch:
            return 0
        return await self._call(functools.partial(archive_sql.archive_messages, messages=batch))

    async def query_archive(self, username: str, domain: str, query: ArchiveQuery) -> ArchivePage:
        return await self._call(
            functools.partial(
                archive_sql.query_archive, username=username, domain=domain, query=query
            )
        )

    async def expire_archive(self, before_seq: int) -> int:
        return await self._call(
            functools.partial(archive_sql.expire_archive, before_seq=before_seq)
        )

    async def trim_archives(self, max_items: int) -> int:
        return await self._call(functools.partial(archive_sql.trim_archives, max_items=max_items))

    async def last_archive_seq(self) -> int:
        return await self._call(archive_sql.last_archive_seq)

    async def get_archive_prefs(self, domain: str) -> dict[str, ArchivePrefs]:
        return await self._call(functools.partial(archive_sql.get_archive_prefs, domain=domain))

    async def set_archive_prefs(self, username: str, domain: str, prefs: ArchivePrefs) -> None:
        await self._call(
            functools.partial(
                archive_sql.set_archive_prefs, username=username, domain=domain, prefs=prefs
            )
        )


    # -- room archives (XEP-0313 on MUC rooms) ---------------------------------------------

    async def archive_room_messages(self, messages: Iterable[RoomArchivedMessage]) -> int:
        batch = list(messages)
        if not batch:
            return 0
        return await self._call(
            functools.partial(archive_sql.archive_room_messages, messages=batch)
        )

    async def query_room_archive(self, room: str, query: ArchiveQuery) -> RoomArchivePage:
        return await self._call(
            functools.partial(archive_sql.query_room_archive, room=room, query=query)
        )

    async def get_room_message(self, room: str, id_: str) -> RoomArchivedMessage | None:
        return await self._call(
            functools.partial(archive_sql.get_room_message, room=room, id_=id_)
        )

    async def replace_room_message(self, room: str, seq: int, stanza: str) -> bool:
        return await self._call(
            functools.partial(archive_sql.replace_room_message, room=room, seq=seq, stanza=stanza)
        )

    async def delete_room_archive(self, room: str, up_to_seq: int) -> int:
        return await self._call(
            functools.partial(archive_sql.delete_room_archive, room=room, up_to_seq=up_to_seq)
        )

    async def expire_room_archives(self, before_seq: int) -> int:
        return await self._call(
            functools.partial(archive_sql.expire_room_archives, before_seq=before_seq)
        )

    async def trim_room_archives(self, max_items: int) -> int:
        return await self._call(
            functools.partial(archive_sql.trim_room_archives, max_items=max_items)
        )

    async def last_room_archive_seq(self) -> int:
        return await self._call(archive_sql.last_room_archive_seq)

if TYPE_CHECKING:

    def _is_a_storage(storage: SQLiteStorage) -> Storage:
        return storage  # mypy checks the structural match against the protocol
