"""Accounts and their SCRAM keys: functions of the connection, run on the worker thread.

An account without SHA-256 keys (``Account.sha256 is None``: imported from Prosody) has
empty ``sha256_*`` blobs and iteration count 0. Those columns are NOT NULL since migration
1, and a migration cannot rebuild ``accounts`` without them: ``DROP TABLE`` runs the
``ON DELETE CASCADE`` actions of every per-user table, and ``PRAGMA foreign_keys`` cannot
be turned off inside the migration's transaction. No real key set has iteration count 0
(RFC 5802 §5.1: a positive integer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from roost.storage.api import Account, AccountExists, NoSuchAccount, StoredCredentials
from roost.storage.sqlite.db import _transaction

__all__ = [
    "add_sha256",
    "create_account",
    "create_accounts_bulk",
    "delete_account",
    "get_account",
    "list_accounts",
    "require_account",
    "set_credentials",
]

_ACCOUNT_COLUMNS = (
    "username, domain, "
    "sha1_salt, sha1_iterations, sha1_stored, sha1_server, "
    "sha256_salt, sha256_iterations, sha256_stored, sha256_server, "
    "created"
)
_INSERT_ACCOUNT = (
    f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


#: what the sha256_* columns hold for an account that has no SHA-256 keys (see above)
_NO_KEYS: tuple[bytes, int, bytes, bytes] = (b"", 0, b"", b"")


def _sha256_values(creds: StoredCredentials | None) -> tuple[bytes, int, bytes, bytes]:
    if creds is None:
        return _NO_KEYS
    return (creds.salt, creds.iterations, creds.stored_key, creds.server_key)


def _account_row(account: Account) -> tuple[object, ...]:
    sha1 = account.sha1
    return (
        account.username,
        account.domain,
        sha1.salt,
        sha1.iterations,
        sha1.stored_key,
        sha1.server_key,
        *_sha256_values(account.sha256),
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
        sha256=None
        if int(row[7]) == 0
        else StoredCredentials(
            salt=bytes(row[6]),
            iterations=int(row[7]),
            stored_key=bytes(row[8]),
            server_key=bytes(row[9]),
        ),
        created=float(row[10]),
    )


def create_account(conn: sqlite3.Connection, account: Account) -> None:
    try:
        # One statement in autocommit mode: committed (and synced) when execute returns.
        conn.execute(_INSERT_ACCOUNT, _account_row(account))
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
            raise AccountExists(f"{account.username}@{account.domain}") from exc
        raise


def get_account(conn: sqlite3.Connection, username: str, domain: str) -> Account | None:
    row = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE username = ? AND domain = ?",
        (username, domain),
    ).fetchone()
    return None if row is None else _account_from_row(row)


def set_credentials(
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
            *_sha256_values(sha256),
            username,
            domain,
        ),
    )
    if cursor.rowcount == 0:
        raise NoSuchAccount(f"{username}@{domain}")


def add_sha256(
    conn: sqlite3.Connection, username: str, domain: str, sha256: StoredCredentials
) -> bool:
    # Only where none are stored: a password set meanwhile wrote both key sets, and wins.
    cursor = conn.execute(
        "UPDATE accounts SET"
        " sha256_salt = ?, sha256_iterations = ?, sha256_stored = ?, sha256_server = ?"
        " WHERE username = ? AND domain = ? AND sha256_iterations = 0",
        (*_sha256_values(sha256), username, domain),
    )
    return cursor.rowcount > 0


def delete_account(conn: sqlite3.Connection, username: str, domain: str) -> bool:
    # Per-user tables go with it through ON DELETE CASCADE (see MIGRATIONS).
    cursor = conn.execute(
        "DELETE FROM accounts WHERE username = ? AND domain = ?", (username, domain)
    )
    return cursor.rowcount > 0


def list_accounts(conn: sqlite3.Connection, domain: str | None) -> list[tuple[str, str]]:
    # BINARY collation compares UTF-8 bytes, which is code point order: the same as sorted().
    if domain is None:
        rows = conn.execute("SELECT username, domain FROM accounts ORDER BY username, domain")
    else:
        rows = conn.execute(
            "SELECT username, domain FROM accounts WHERE domain = ? ORDER BY username",
            (domain,),
        )
    return [(str(username), str(row_domain)) for username, row_domain in rows]


def create_accounts_bulk(conn: sqlite3.Connection, accounts: list[Account]) -> int:
    rows = [_account_row(account) for account in accounts]
    with _transaction(conn):
        before = conn.total_changes
        conn.executemany(
            _INSERT_ACCOUNT + " ON CONFLICT (username, domain) DO NOTHING",
            rows,
        )
        return conn.total_changes - before


def require_account(conn: sqlite3.Connection, username: str, domain: str) -> None:
    """Raise ``NoSuchAccount`` unless the account exists (call inside a write transaction,
    which keeps it from being deleted before the caller's insert)."""
    row = conn.execute(
        "SELECT 1 FROM accounts WHERE username = ? AND domain = ?", (username, domain)
    ).fetchone()
    if row is None:
        raise NoSuchAccount(f"{username}@{domain}")
