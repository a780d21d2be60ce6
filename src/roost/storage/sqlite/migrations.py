"""The SQLite schema: ``MIGRATIONS``, applied in order by ``db._migrate`` on open."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

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
    # 3: module-owned stores. ``store_versions`` tracks the schema version of each store a
    # feature module registers (``register_schema``); ``host_data`` holds small documents
    # keyed by a host-scoped id (a MUC room JID, a pubsub node on a service domain...).
    # Neither belongs to an account, so neither references ``accounts``.
    """
    CREATE TABLE store_versions (
        name    TEXT    NOT NULL PRIMARY KEY,
        version INTEGER NOT NULL CHECK (version >= 0)
    ) WITHOUT ROWID;
    CREATE TABLE host_data (
        host  TEXT NOT NULL,
        store TEXT NOT NULL,
        key   TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (host, store, key)
    ) WITHOUT ROWID;
    """,
    # 4: message archives (XEP-0313) and archiving preferences (XEP-0441). The indexes are
    # the queries clients make: a user's archive by time, which is also by archive id (an
    # id is its seq in hex: after-id, before-id, ids and RSM cursors); by peer and time
    # (the 'with' filter). No index of ids as text: it cost a third of the insert time (7
    # of 19 us a row, measured). ``seq`` is the rowid, so expiry is a range on it.
    """
    CREATE TABLE archive_messages (
        seq      INTEGER PRIMARY KEY,  -- microseconds since the epoch, unique; the id
        username TEXT    NOT NULL,
        domain   TEXT    NOT NULL,
        peer     TEXT    NOT NULL,     -- the other party's bare JID
        resource TEXT,                 -- and its resource, if any
        outgoing INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
        stanza   TEXT    NOT NULL,
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    );
    CREATE INDEX archive_by_time ON archive_messages (username, domain, seq);
    CREATE INDEX archive_by_peer ON archive_messages (username, domain, peer, seq);
    CREATE TABLE archive_prefs (
        username TEXT NOT NULL,
        domain   TEXT NOT NULL,
        prefs    TEXT NOT NULL,  -- JSON {"default": ..., "always": [...], "never": [...]}
        PRIMARY KEY (username, domain),
        FOREIGN KEY (username, domain) REFERENCES accounts (username, domain)
            ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX archive_prefs_by_domain ON archive_prefs (domain, username);
    """,
    # 5: MUC room archives (XEP-0313 on a room JID, XEP-0045 rooms have no account). ``seq``
    # as in archive_messages: order, time and id; ``nick`` the occupant's nick ('' for the
    # room itself), ``jid`` the sender's real full JID (shown only to those who may see it),
    # ``sender`` its bare part (the 'with' filter by real JID).
    """
    CREATE TABLE room_archive (
        seq    INTEGER PRIMARY KEY,  -- microseconds since the epoch, unique; the id
        room   TEXT    NOT NULL,     -- the room's bare JID
        nick   TEXT    NOT NULL,
        sender TEXT,
        jid    TEXT,
        stanza TEXT    NOT NULL
    );
    CREATE INDEX room_archive_by_time ON room_archive (room, seq);
    CREATE INDEX room_archive_by_nick ON room_archive (room, nick, seq);
    CREATE INDEX room_archive_by_sender ON room_archive (room, sender, seq);
    """,
]
