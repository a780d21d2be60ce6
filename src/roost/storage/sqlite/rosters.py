"""Rosters and pending inbound subscriptions (RFC 6121): functions of the connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from roost.storage.api import RosterData, RosterItem
from roost.storage.sqlite.accounts import require_account
from roost.storage.sqlite.db import _transaction

__all__ = ["delete_roster_item", "get_roster", "put_roster_item", "set_pending_in"]


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


def get_roster(conn: sqlite3.Connection, username: str, domain: str) -> RosterData:
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


def put_roster_item(conn: sqlite3.Connection, username: str, domain: str, item: RosterItem) -> int:
    with _transaction(conn):
        require_account(conn, username, domain)
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


def delete_roster_item(conn: sqlite3.Connection, username: str, domain: str, jid: str) -> int:
    with _transaction(conn):
        cursor = conn.execute(
            "DELETE FROM roster_items WHERE username = ? AND domain = ? AND jid = ?",
            (username, domain, jid),
        )
        if cursor.rowcount == 0:
            return _roster_version(conn, username, domain)
        return _bump_roster_version(conn, username, domain)


def set_pending_in(
    conn: sqlite3.Connection, username: str, domain: str, jid: str, stanza: str | None
) -> None:
    if stanza is None:
        conn.execute(
            "DELETE FROM roster_pending_in WHERE username = ? AND domain = ? AND jid = ?",
            (username, domain, jid),
        )
        return
    with _transaction(conn):
        require_account(conn, username, domain)
        conn.execute(
            "INSERT INTO roster_pending_in (username, domain, jid, stanza) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (username, domain, jid) DO UPDATE SET stanza = excluded.stanza",
            (username, domain, jid, stanza),
        )
