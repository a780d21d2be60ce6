"""Small text documents: per user (``user_data``) and per host-scoped id (``host_data``).

Functions of the connection, run on the worker thread. A single statement in autocommit mode
is committed (and synced) when ``execute`` returns.
"""

from __future__ import annotations

import sqlite3

from roost.storage.sqlite.accounts import require_account
from roost.storage.sqlite.db import _transaction

__all__ = [
    "get_data",
    "get_host_data",
    "list_data",
    "list_host_data",
    "set_data",
    "set_host_data",
]

# -- per-user documents ---------------------------------------------------------------------


def get_data(
    conn: sqlite3.Connection, username: str, domain: str, store: str, key: str
) -> str | None:
    row = conn.execute(
        "SELECT value FROM user_data WHERE username = ? AND domain = ? AND store = ? AND key = ?",
        (username, domain, store, key),
    ).fetchone()
    return None if row is None else str(row[0])


def set_data(
    conn: sqlite3.Connection, username: str, domain: str, store: str, key: str, value: str | None
) -> None:
    if value is None:
        conn.execute(
            "DELETE FROM user_data WHERE username = ? AND domain = ? AND store = ? AND key = ?",
            (username, domain, store, key),
        )
        return
    with _transaction(conn):
        require_account(conn, username, domain)
        conn.execute(
            "INSERT INTO user_data (username, domain, store, key, value) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (username, domain, store, key) DO UPDATE SET value = excluded.value",
            (username, domain, store, key, value),
        )


def list_data(conn: sqlite3.Connection, username: str, domain: str, store: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT key, value FROM user_data WHERE username = ? AND domain = ? AND store = ?"
        " ORDER BY key",
        (username, domain, store),
    )
    return {str(key): str(value) for key, value in rows}


# -- host-scoped documents (no account involved) --------------------------------------------


def get_host_data(conn: sqlite3.Connection, host: str, store: str, key: str) -> str | None:
    row = conn.execute(
        "SELECT value FROM host_data WHERE host = ? AND store = ? AND key = ?",
        (host, store, key),
    ).fetchone()
    return None if row is None else str(row[0])


def set_host_data(
    conn: sqlite3.Connection, host: str, store: str, key: str, value: str | None
) -> None:
    if value is None:
        conn.execute(
            "DELETE FROM host_data WHERE host = ? AND store = ? AND key = ?", (host, store, key)
        )
        return
    conn.execute(
        "INSERT INTO host_data (host, store, key, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (host, store, key) DO UPDATE SET value = excluded.value",
        (host, store, key, value),
    )


def list_host_data(conn: sqlite3.Connection, host: str, store: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT key, value FROM host_data WHERE host = ? AND store = ? ORDER BY key",
        (host, store),
    )
    return {str(key): str(value) for key, value in rows}
