"""Message archives (XEP-0313) and archiving preferences: functions of the connection.

The tables are migration 4 (``migrations.py``). ``seq`` is the rowid: the archive's order,
time and id in one integer, so expiry is a range delete on the primary key and every index
ends in it for free.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from roost.storage.api import (
    ArchivedMessage,
    ArchiveIdNotFound,
    ArchivePage,
    ArchivePrefs,
    ArchiveQuery,
    RoomArchivedMessage,
    RoomArchivePage,
    archive_seq,
)
from roost.storage.sqlite.accounts import require_account
from roost.storage.sqlite.db import _transaction

__all__ = [
    "archive_messages",
    "archive_room_messages",
    "delete_room_archive",
    "expire_archive",
    "expire_room_archives",
    "get_archive_prefs",
    "get_room_message",
    "last_archive_seq",
    "last_room_archive_seq",
    "query_archive",
    "query_room_archive",
    "replace_room_message",
    "set_archive_prefs",
    "trim_archives",
    "trim_room_archives",
]

_COLUMNS = "username, domain, seq, peer, resource, outgoing, stanza"


def _message(row: Sequence[Any]) -> ArchivedMessage:
    return ArchivedMessage(
        username=str(row[0]),
        domain=str(row[1]),
        seq=int(row[2]),
        peer=str(row[3]),
        resource=None if row[4] is None else str(row[4]),
        outgoing=bool(row[5]),
        stanza=str(row[6]),
    )


_INSERT = f"INSERT INTO archive_messages ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_IF_ACCOUNT = (
    f"INSERT INTO archive_messages ({_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?"
    " WHERE EXISTS (SELECT 1 FROM accounts WHERE username = ? AND domain = ?)"
)


def archive_messages(conn: sqlite3.Connection, messages: list[ArchivedMessage]) -> int:
    # One transaction for the whole batch: one fsync however many messages it holds. An
    # ArchivedMessage is a tuple in column order, bound as it is (no row built per message).
    try:
        with _transaction(conn):
            conn.executemany(_INSERT, messages)
        return len(messages)
    except sqlite3.IntegrityError:
        pass
    # A message for an account deleted since it was queued fails the foreign key (and so
    # the batch): again, skipping those. Rare, so the common batch does not pay the
    # EXISTS lookup on every row (a fifth of the insert time, measured).
    with _transaction(conn):
        before = conn.total_changes
        conn.executemany(_INSERT_IF_ACCOUNT, [(*m, m.username, m.domain) for m in messages])
        return conn.total_changes - before


def _seq_of(conn: sqlite3.Connection, table: str, owner: _Owner, id_: str) -> int:
    seq = archive_seq(id_)
    row = None
    if seq is not None:
        row = conn.execute(
            f"SELECT 1 FROM {table} WHERE seq = ? AND {owner[0]}", (seq, *owner[1])
        ).fetchone()
    if seq is None or row is None:
        raise ArchiveIdNotFound(id_)
    return seq


#: an archive's owner: the WHERE clause naming it, and its arguments
_Owner = tuple[str, tuple[object, ...]]


def _page(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    owner: _Owner,
    filters: list[tuple[str, object]],
    query: ArchiveQuery,
) -> tuple[list[Any], int, int, bool]:
    """The rows of one page of ``table`` (the user and room archives share the paging):
    rows, count, index, complete. Runs inside the caller's transaction."""
    where = [owner[0]]
    args: list[object] = list(owner[1])
    for clause, arg in filters:
        where.append(clause)
        args.append(arg)
    if query.start is not None:
        where.append("seq >= ?")
        args.append(query.start)
    if query.end is not None:
        where.append("seq <= ?")
        args.append(query.end)
    if query.after_id is not None:
        where.append("seq > ?")
        args.append(_seq_of(conn, table, owner, query.after_id))
    if query.before_id is not None:
        where.append("seq < ?")
        args.append(_seq_of(conn, table, owner, query.before_id))
    if query.ids is not None:
        seqs = [_seq_of(conn, table, owner, i) for i in query.ids]
        where.append(f"seq IN ({', '.join('?' * len(seqs))})" if seqs else "0")
        args.extend(seqs)
    cond = " AND ".join(where)
    count = int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {cond}", args).fetchone()[0])
    backwards = query.before is not None
    page_cond, page_args = cond, list(args)
    if query.after is not None:
        page_cond += " AND seq > ?"
        page_args.append(_seq_of(conn, table, owner, query.after))
    if query.before:
        page_cond += " AND seq < ?"
        page_args.append(_seq_of(conn, table, owner, query.before))
    order = "DESC" if backwards else "ASC"
    rows = conn.execute(
        f"SELECT {columns} FROM {table} WHERE {page_cond} ORDER BY seq {order} LIMIT ?",
        [*page_args, query.limit + 1],
    ).fetchall()
    complete = len(rows) <= query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
    index = 0
    if rows:
        index = int(
            conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {cond} AND seq < ?",
                [*args, rows[0][2]],
            ).fetchone()[0]
        )
    elif query.limit == 0:
        complete = count == 0
    return rows, count, index, complete


def query_archive(
    conn: sqlite3.Connection, username: str, domain: str, query: ArchiveQuery
) -> ArchivePage:
    filters: list[tuple[str, object]] = []
    if query.peer is not None:
        filters.append(("peer = ?", query.peer))
        if query.resource is not None:
            filters.append(("resource = ?", query.resource))
    owner: _Owner = ("username = ? AND domain = ?", (username, domain))
    with _transaction(conn, write=False):
        rows, count, index, complete = _page(
            conn, "archive_messages", _COLUMNS, owner, filters, query
        )
    return ArchivePage(tuple(_message(r) for r in rows), count, index, complete)


def expire_archive(conn: sqlite3.Connection, before_seq: int) -> int:
    # A range on the rowid: no index scan, whatever the number of users.
    return conn.execute("DELETE FROM archive_messages WHERE seq < ?", (before_seq,)).rowcount


def trim_archives(conn: sqlite3.Connection, max_items: int) -> int:
    deleted = 0
    with _transaction(conn):
        over = conn.execute(
            "SELECT username, domain FROM archive_messages GROUP BY username, domain"
            " HAVING COUNT(*) > ?",
            (max_items,),
        ).fetchall()
        for username, domain in over:
            # The seq of the newest message to drop: everything up to it goes.
            cutoff = conn.execute(
                "SELECT seq FROM archive_messages WHERE username = ? AND domain = ?"
                " ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (username, domain, max_items),
            ).fetchone()[0]
            deleted += conn.execute(
                "DELETE FROM archive_messages WHERE username = ? AND domain = ? AND seq <= ?",
                (username, domain, cutoff),
            ).rowcount
    return deleted


def last_archive_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM archive_messages").fetchone()
    return 0 if row[0] is None else int(row[0])


def get_archive_prefs(conn: sqlite3.Connection, domain: str) -> dict[str, ArchivePrefs]:
    prefs: dict[str, ArchivePrefs] = {}
    for username, raw in conn.execute(
        "SELECT username, prefs FROM archive_prefs WHERE domain = ?", (domain,)
    ):
        data = json.loads(raw)
        prefs[str(username)] = ArchivePrefs(
            str(data["default"]), tuple(data["always"]), tuple(data["never"])
        )
    return prefs


def set_archive_prefs(
    conn: sqlite3.Connection, username: str, domain: str, prefs: ArchivePrefs
) -> None:
    value = json.dumps(
        {"default": prefs.default, "always": list(prefs.always), "never": list(prefs.never)}
    )
    with _transaction(conn):
        require_account(conn, username, domain)
        conn.execute(
            "INSERT INTO archive_prefs (username, domain, prefs) VALUES (?, ?, ?)"
            " ON CONFLICT (username, domain) DO UPDATE SET prefs = excluded.prefs",
            (username, domain, value),
        )


# -- room archives (migration 5) -----------------------------------------------------------

#: seq third, as ``_page`` expects
_ROOM_COLUMNS = "room, nick, seq, jid, stanza"


def _room_message(row: Sequence[Any]) -> RoomArchivedMessage:
    return RoomArchivedMessage(
        room=str(row[0]),
        nick=str(row[1]),
        seq=int(row[2]),
        jid=None if row[3] is None else str(row[3]),
        stanza=str(row[4]),
    )


def archive_room_messages(conn: sqlite3.Connection, messages: list[RoomArchivedMessage]) -> int:
    with _transaction(conn):
        conn.executemany(
            "INSERT INTO room_archive (room, nick, seq, sender, jid, stanza)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(m.room, m.nick, m.seq, m.sender, m.jid, m.stanza) for m in messages],
        )
    return len(messages)


def query_room_archive(
    conn: sqlite3.Connection, room: str, query: ArchiveQuery
) -> RoomArchivePage:
    filters: list[tuple[str, object]] = []
    if query.nick is not None:
        filters.append(("nick = ?", query.nick))
    if query.peer is not None:
        filters.append(("sender = ?", query.peer))
        if query.resource is not None:
            filters.append(("jid = ?", f"{query.peer}/{query.resource}"))
    with _transaction(conn, write=False):
        rows, count, index, complete = _page(
            conn, "room_archive", _ROOM_COLUMNS, ("room = ?", (room,)), filters, query
        )
    return RoomArchivePage(tuple(_room_message(r) for r in rows), count, index, complete)


def get_room_message(conn: sqlite3.Connection, room: str, id_: str) -> RoomArchivedMessage | None:
    seq = archive_seq(id_)
    if seq is None:
        return None
    row = conn.execute(
        f"SELECT {_ROOM_COLUMNS} FROM room_archive WHERE seq = ? AND room = ?", (seq, room)
    ).fetchone()
    return None if row is None else _room_message(row)


def replace_room_message(conn: sqlite3.Connection, room: str, seq: int, stanza: str) -> bool:
    with _transaction(conn):
        cur = conn.execute(
            "UPDATE room_archive SET stanza = ? WHERE seq = ? AND room = ?", (stanza, seq, room)
        )
        return cur.rowcount > 0


def delete_room_archive(conn: sqlite3.Connection, room: str, up_to_seq: int) -> int:
    with _transaction(conn):
        return conn.execute(
            "DELETE FROM room_archive WHERE room = ? AND seq <= ?", (room, up_to_seq)
        ).rowcount


def expire_room_archives(conn: sqlite3.Connection, before_seq: int) -> int:
    with _transaction(conn):
        return conn.execute("DELETE FROM room_archive WHERE seq < ?", (before_seq,)).rowcount


def trim_room_archives(conn: sqlite3.Connection, max_items: int) -> int:
    deleted = 0
    with _transaction(conn):
        over = conn.execute(
            "SELECT room FROM room_archive GROUP BY room HAVING COUNT(*) > ?", (max_items,)
        ).fetchall()
        for (room,) in over:
            cutoff = conn.execute(
                "SELECT seq FROM room_archive WHERE room = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (room, max_items),
            ).fetchone()[0]
            deleted += conn.execute(
                "DELETE FROM room_archive WHERE room = ? AND seq <= ?", (room, cutoff)
            ).rowcount
    return deleted


def last_room_archive_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM room_archive").fetchone()
    return 0 if row[0] is None else int(row[0])
