"""Offline messages (XEP-0160), oldest first: functions of the connection."""

from __future__ import annotations

import sqlite3

from roost.storage.sqlite.accounts import require_account
from roost.storage.sqlite.db import _transaction

__all__ = ["list_offline", "push_offline", "take_offline"]


def _count(conn: sqlite3.Connection, username: str, domain: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM offline_messages WHERE username = ? AND domain = ?",
        (username, domain),
    ).fetchone()
    return int(row[0])


def push_offline(
    conn: sqlite3.Connection, username: str, domain: str, stanza: str, stamp: float, limit: int
) -> bool:
    # The count and the insert share the write lock: two pushes cannot both see room for one.
    with _transaction(conn):
        require_account(conn, username, domain)
        if _count(conn, username, domain) >= limit:
            return False
        conn.execute(
            "INSERT INTO offline_messages (username, domain, stanza, stamp) VALUES (?, ?, ?, ?)",
            (username, domain, stanza, stamp),
        )
    return True  # committed (synchronous = FULL) by the end of the with block


def list_offline(conn: sqlite3.Connection, username: str, domain: str) -> list[tuple[str, float]]:
    """The stored messages, oldest first, left in place (an export, XEP-0227)."""
    return [
        (str(stanza), float(stamp))
        for stanza, stamp in conn.execute(
            "SELECT stanza, stamp FROM offline_messages"
            " WHERE username = ? AND domain = ? ORDER BY id",
            (username, domain),
        )
    ]


def take_offline(conn: sqlite3.Connection, username: str, domain: str) -> list[tuple[str, float]]:
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
