"""Storage interfaces: narrow, async and typed; every backend implements ``Storage``.

Values here are plain and immutable. Usernames and domains arrive already normalised
(PRECIS / IDNA) by the caller; storage compares them byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "SUBSCRIPTIONS",
    "Account",
    "AccountExists",
    "AccountStore",
    "ArchiveIdNotFound",
    "ArchivePage",
    "ArchivePrefs",
    "ArchiveQuery",
    "ArchiveStore",
    "ArchivedMessage",
    "HostDataStore",
    "KeyValueStore",
    "NoSuchAccount",
    "OfflineStore",
    "RoomArchivePage",
    "RoomArchiveStore",
    "RoomArchivedMessage",
    "RosterData",
    "RosterItem",
    "RosterStore",
    "SchemaError",
    "Storage",
    "StorageError",
    "StoreSchema",
    "StoredCredentials",
    "archive_id",
    "archive_seq",
    "check_credentials",
]

_SHA1_SIZE = 20
_SHA256_SIZE = 32


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """SCRAM salted keys for one hash (RFC 5802 §3): never a clear password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        if not self.salt:
            raise ValueError("SCRAM salt must not be empty")
        # RFC 5802 §5.1: the iteration count is a positive integer.
        if self.iterations < 1:
            raise ValueError(f"SCRAM iteration count must be >= 1, got {self.iterations}")
        if not self.stored_key or len(self.stored_key) != len(self.server_key):
            raise ValueError("SCRAM StoredKey and ServerKey must be non-empty digests of one size")


@dataclass(frozen=True, slots=True)
class Account:
    """One local account; ``created`` is seconds since the epoch, given by the caller.

    ``sha256`` is None for an account imported from a server that kept SCRAM-SHA-1 keys only
    (Prosody's ``internal_hashed``): it logs in with SCRAM-SHA-1 or PLAIN, and the first
    PLAIN login adds the SHA-256 keys (``AccountStore.add_sha256``).
    """

    username: str
    domain: str
    sha1: StoredCredentials
    sha256: StoredCredentials | None
    created: float

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("account username must not be empty")
        if not self.domain:
            raise ValueError("account domain must not be empty")
        if not math.isfinite(self.created):
            raise ValueError(f"account creation time must be finite, got {self.created}")
        check_credentials(self.sha1, self.sha256)


def check_credentials(sha1: StoredCredentials, sha256: StoredCredentials | None) -> None:
    """Raise ``ValueError`` unless each set of keys has its hash's digest size."""
    if len(sha1.stored_key) != _SHA1_SIZE:
        raise ValueError(f"SCRAM-SHA-1 keys must be {_SHA1_SIZE} bytes")
    if sha256 is not None and len(sha256.stored_key) != _SHA256_SIZE:
        raise ValueError(f"SCRAM-SHA-256 keys must be {_SHA256_SIZE} bytes")


# RFC 6121 §2.1.2.5: the states of a roster item's subscription.
SUBSCRIPTIONS: frozenset[str] = frozenset({"none", "to", "from", "both"})


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact in a user's roster (RFC 6121 §2.1.2); ``jid`` is the contact's bare JID."""

    jid: str
    name: str | None = None
    subscription: str = "none"
    ask: bool = False  # an outbound subscription request is pending (ask='subscribe')
    approved: bool = False  # the user pre-approved the contact's subscription (RFC 6121 §3.4)
    groups: tuple[str, ...] = ()  # in the order given; any Unicode

    def __post_init__(self) -> None:
        if not self.jid:
            raise ValueError("roster item JID must not be empty")
        if self.subscription not in SUBSCRIPTIONS:
            raise ValueError(f"invalid roster subscription {self.subscription!r}")
        if not isinstance(self.groups, tuple):
            # Accept any iterable of names, but keep the value immutable and hashable.
            object.__setattr__(self, "groups", tuple(self.groups))
        for group in self.groups:
            if not isinstance(group, str):
                raise TypeError(f"roster group names must be str, got {type(group).__name__}")


@dataclass(frozen=True, slots=True)
class RosterData:
    """A user's whole roster as read in one transaction."""

    # Starts at 0 (empty roster, nothing ever stored) and goes up by one with every change
    # to ``items`` (RFC 6121 §2.6); ``pending_in`` does not change it.
    version: int
    items: dict[str, RosterItem]  # by contact bare JID
    # Contact bare JID -> the serialized inbound subscribe stanza awaiting the user's answer
    # (RFC 6121 §3.1.3), whether or not the contact is in ``items``.
    pending_in: dict[str, str]


@dataclass(frozen=True, slots=True)
class StoreSchema:
    """The schema of a store owned by a feature module, registered with
    ``Storage.register_schema``.

    ``migrations`` is the store's history, oldest first, like the server's own: migration N
    (1-based) brings the store from version N-1 to N. Never edit one that has shipped;
    append. Each is an SQL script of one or more statements; keep to what every backend
    accepts (``CREATE TABLE`` / ``CREATE INDEX`` with TEXT, INTEGER and REAL columns), and
    prefix table and index names with the store's name, which is global to the database.
    """

    name: str
    migrations: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("store name must not be empty")
        if not isinstance(self.migrations, tuple):
            # Accept any iterable of scripts, but keep the value immutable and hashable.
            object.__setattr__(self, "migrations", tuple(self.migrations))
        for script in self.migrations:
            if not isinstance(script, str):
                raise TypeError(f"store migrations must be str, got {type(script).__name__}")


class StorageError(Exception):
    """Base of every error a storage backend raises on purpose."""


class SchemaError(StorageError):
    """The database schema cannot be used by this version of Roost (e.g. it is newer)."""


class AccountExists(StorageError):
    """``create_account`` for a (username, domain) that already has an account."""


class NoSuchAccount(StorageError):
    """An update addressed a (username, domain) that has no account."""


class ArchiveIdNotFound(StorageError):
    """An archive query named an id that is not in the user's archive (XEP-0313 §4.1.3,
    §4.3.2: the query fails with item-not-found)."""


class AccountStore(Protocol):
    """Accounts and their SCRAM credentials. Every write is committed before it returns."""

    async def create_account(self, account: Account) -> None:
        """Store a new account durably; raise ``AccountExists`` if it is taken."""
        ...

    async def get_account(self, username: str, domain: str) -> Account | None:
        """The account as currently stored (never cached), or ``None``."""
        ...

    async def set_credentials(
        self,
        username: str,
        domain: str,
        sha1: StoredCredentials,
        sha256: StoredCredentials,
    ) -> None:
        """Replace both sets of SCRAM keys; raise ``NoSuchAccount`` if absent."""
        ...

    async def add_sha256(self, username: str, domain: str, sha256: StoredCredentials) -> bool:
        """Store SHA-256 keys for an account that has none; ``False`` (nothing changed) if
        it has some already or is absent, so a password changed meanwhile is never undone."""
        ...

    async def delete_account(self, username: str, domain: str) -> bool:
        """Delete the account and all its per-user data; ``False`` if it did not exist."""
        ...

    async def list_accounts(self, domain: str | None = None) -> list[tuple[str, str]]:
        """``(username, domain)`` pairs, sorted, optionally for one domain only."""
        ...

    async def create_accounts_bulk(self, accounts: Iterable[Account]) -> int:
        """Create many accounts in one transaction, skipping existing ones; return how many."""
        ...


class RosterStore(Protocol):
    """Rosters (RFC 6121 §2) and inbound subscription requests awaiting an answer (§3.1.3).

    The user is ``(username, domain)``; JIDs are stored and compared exactly as given.
    """

    async def get_roster(self, username: str, domain: str) -> RosterData:
        """The roster in one consistent read; ``RosterData(0, {}, {})`` if nothing is stored
        (or there is no such account)."""
        ...

    async def put_roster_item(self, username: str, domain: str, item: RosterItem) -> int:
        """Insert or replace the item for ``item.jid`` and bump the roster version, in one
        transaction; return the new version. Raise ``NoSuchAccount`` if the account is absent."""
        ...

    async def delete_roster_item(self, username: str, domain: str, jid: str) -> int:
        """Remove the item for ``jid``; bump and return the new version if there was one,
        else return the current version unchanged. ``pending_in`` is left alone."""
        ...

    async def set_pending_in(
        self, username: str, domain: str, jid: str, stanza: str | None
    ) -> None:
        """Store (replacing any earlier one) or, with ``None``, remove the inbound subscribe
        stanza from ``jid``; the roster version is not changed. Storing raises
        ``NoSuchAccount`` if the account is absent; removing never does."""
        ...


class OfflineStore(Protocol):
    """Messages stored for a user while offline (XEP-0160), oldest first."""

    async def push_offline(
        self, username: str, domain: str, stanza: str, stamp: float, limit: int
    ) -> bool:
        """Append ``stanza`` (serialized XML) received at ``stamp`` (seconds since the epoch),
        committed before returning ``True``. Return ``False`` and store nothing if the user
        already has ``limit`` or more messages; the check and the insert are one transaction.
        Raise ``NoSuchAccount`` if the account is absent."""
        ...

    async def list_offline(self, username: str, domain: str) -> list[tuple[str, float]]:
        """Every stored ``(stanza, stamp)`` in arrival order, left in place."""
        ...

    async def take_offline(self, username: str, domain: str) -> list[tuple[str, float]]:
        """Every stored ``(stanza, stamp)`` in arrival order, deleted in the same transaction:
        two concurrent callers never both get a message."""
        ...


class KeyValueStore(Protocol):
    """Small per-user documents (vCard, private XML, privacy lists, blocklist, last logout...),
    as text under ``(store, key)``; ``store`` names the feature, ``key`` is its own business."""

    async def get_data(self, username: str, domain: str, store: str, key: str) -> str | None:
        """The value, or ``None`` if absent."""
        ...

    async def set_data(
        self, username: str, domain: str, store: str, key: str, value: str | None
    ) -> None:
        """Store (replacing) or, with ``None``, delete the value. Storing raises
        ``NoSuchAccount`` if the account is absent; deleting never does."""
        ...

    async def list_data(self, username: str, domain: str, store: str) -> dict[str, str]:
        """Every ``key -> value`` of one store for the user (empty if none)."""
        ...


class HostDataStore(Protocol):
    """Small documents owned by a feature module and keyed by a host-scoped id rather than an
    account: ``host`` is e.g. a MUC room JID or a pubsub node on a service domain, ``store``
    names the feature and ``key`` is its own business. Values are text, committed before
    the call returns; nothing here depends on any account existing."""

    async def get_host_data(self, host: str, store: str, key: str) -> str | None:
        """The value, or ``None`` if absent."""
        ...

    async def set_host_data(self, host: str, store: str, key: str, value: str | None) -> None:
        """Store (replacing) or, with ``None``, delete the value (deleting an absent one is
        harmless)."""
        ...

    async def list_host_data(self, host: str, store: str) -> dict[str, str]:
        """Every ``key -> value`` of one store for the host (empty if none)."""
        ...


def archive_id(seq: int) -> str:
    """The archive UID clients see for ``seq`` (XEP-0359 stanza-id, XEP-0313 result id)."""
    return format(seq, "x")


def archive_seq(archive_id: str) -> int | None:
    """The ``seq`` an archive UID names, or None if it names none (not made by
    ``archive_id``)."""
    if not 0 < len(archive_id) <= 16 or archive_id.lstrip("0123456789abcdef"):
        return None
    seq = int(archive_id, 16)
    # a 64-bit SQL integer at most: 16 hex digits can name more (a client's guess, or a
    # stanza-id that was never an archive id)
    return seq if 0 < seq < 1 << 63 and format(seq, "x") == archive_id else None


class _ArchivedFields(NamedTuple):
    username: str
    domain: str
    seq: int
    peer: str
    resource: str | None
    outgoing: bool
    stanza: str  # serialized XML, as delivered


class ArchivedMessage(_ArchivedFields):
    """One message in a user's archive (XEP-0313).

    ``seq`` orders the archive: microseconds since the epoch when it was archived, made
    unique (and increasing) by the writer; it is also the message's time and, written in
    hex, its id (``archive_id``). ``peer`` is the other party's bare JID and ``resource``
    its resource (``None`` without one).

    A named tuple, not a frozen dataclass: one is made for every message archived (twice
    per message), and the dataclass cost twice as much to build (#12). The fields are in
    the order of the table's columns, so a message is its own row.
    """

    __slots__ = ()

    def __new__(
        cls,
        username: str,
        domain: str,
        seq: int,
        peer: str,
        resource: str | None,
        outgoing: bool,
        stanza: str,
    ) -> ArchivedMessage:
        if seq <= 0:
            raise ValueError(f"archive seq must be > 0, got {seq}")
        return tuple.__new__(cls, (username, domain, seq, peer, resource, outgoing, stanza))

    @property
    def id(self) -> str:
        return archive_id(self.seq)


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """What a XEP-0313 query selects, and which page of it (XEP-0059).

    Filters (they change the result set and its count): ``peer`` (bare JID) and, with it,
    ``resource`` (in a room archive: the sender's real JID); ``nick`` (room archives only:
    the occupant's nick); ``start``/``end`` as inclusive ``seq`` bounds; ``after_id``/``before_id``
    exclusive bounds by archive id; ``ids`` exactly these messages. Paging (RSM): ``after``
    or ``before`` an id, ``before=""`` for the last page; ``limit`` items at most.
    """

    peer: str | None = None
    resource: str | None = None
    start: int | None = None
    end: int | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] | None = None
    after: str | None = None
    before: str | None = None
    limit: int = 50
    nick: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError(f"archive page limit must be >= 0, got {self.limit}")
        if self.resource is not None and self.peer is None:
            raise ValueError("a resource filter needs a peer")


@dataclass(frozen=True, slots=True)
class ArchivePage:
    """One page of a query, in archive (chronological) order. ``count``: messages the
    filters select; ``index``: how many of them come before ``messages[0]``; ``complete``:
    the page reaches the end of the result set in the direction of paging (the start of
    it when paging backwards, XEP-0313 §4.3)."""

    messages: tuple[ArchivedMessage, ...]
    count: int
    index: int
    complete: bool


@dataclass(frozen=True, slots=True)
class ArchivePrefs:
    """XEP-0441 archiving preferences: ``default`` is always, never or roster."""

    default: str
    always: tuple[str, ...] = ()
    never: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.default not in ("always", "never", "roster"):
            raise ValueError(f"invalid archiving default {self.default!r}")


class ArchiveStore(Protocol):
    """Per-user message archives (XEP-0313) and archiving preferences. An archive goes with
    its account."""

    async def archive_messages(self, messages: Iterable[ArchivedMessage]) -> int:
        """Append messages (any users) in one transaction, committed before returning; one
        for an account that does not exist (deleted meanwhile) is skipped. Returns how many
        were stored."""
        ...

    async def query_archive(self, username: str, domain: str, query: ArchiveQuery) -> ArchivePage:
        """One page of the user's archive in one consistent read. Raises
        ``ArchiveIdNotFound`` for an id (``after_id``, ``before_id``, ``ids``, ``after``,
        ``before``) that is not in it."""
        ...

    async def expire_archive(self, before_seq: int) -> int:
        """Delete every archived message with ``seq < before_seq``; how many went."""
        ...

    async def trim_archives(self, max_items: int) -> int:
        """Delete each user's oldest messages beyond ``max_items``; how many went."""
        ...

    async def last_archive_seq(self) -> int:
        """The highest ``seq`` stored (0 for none): ids made after a restart follow it."""
        ...

    async def get_archive_prefs(self, domain: str) -> dict[str, ArchivePrefs]:
        """Every user of ``domain`` who set preferences: username -> preferences."""
        ...

    async def set_archive_prefs(self, username: str, domain: str, prefs: ArchivePrefs) -> None:
        """Store a user's preferences; raise ``NoSuchAccount`` if the account is absent."""
        ...


@dataclass(frozen=True, slots=True)
class RoomArchivedMessage:
    """One groupchat message in a MUC room's archive (XEP-0313 on the room JID).

    ``seq`` as in ``ArchivedMessage`` (its hex is the room's stanza-id). ``nick`` is the
    occupant who sent it ("" for the room itself); ``jid`` the sender's real full JID
    (``None`` for the room), kept apart from the stanza so a query shows it only to those
    who may see it (XEP-0313 §6.1.2 MUC archives)."""

    room: str
    seq: int
    nick: str
    jid: str | None
    stanza: str  # serialized XML as broadcast, without 'to' and without the stanza-id

    def __post_init__(self) -> None:
        if self.seq <= 0:
            raise ValueError(f"archive seq must be > 0, got {self.seq}")

    @property
    def id(self) -> str:
        return archive_id(self.seq)

    @property
    def sender(self) -> str | None:
        """The real bare JID."""
        return None if self.jid is None else self.jid.partition("/")[0]


@dataclass(frozen=True, slots=True)
class RoomArchivePage:
    """One page of a room archive query; the fields as in ``ArchivePage``."""

    messages: tuple[RoomArchivedMessage, ...]
    count: int
    index: int
    complete: bool


class RoomArchiveStore(Protocol):
    """MUC room archives, keyed by the room's bare JID (no account behind it)."""

    async def archive_room_messages(self, messages: Iterable[RoomArchivedMessage]) -> int:
        """Append messages (any rooms) in one transaction, committed before returning."""
        ...

    async def query_room_archive(self, room: str, query: ArchiveQuery) -> RoomArchivePage:
        """One page, as ``query_archive``; ``peer``/``resource`` match the real JID,
        ``nick`` the occupant. Raises ``ArchiveIdNotFound`` for an id not in the room."""
        ...

    async def get_room_message(self, room: str, id_: str) -> RoomArchivedMessage | None:
        """The message with this archive id in this room, if there is one."""
        ...

    async def replace_room_message(self, room: str, seq: int, stanza: str) -> bool:
        """Replace a message's stanza, keeping its id, time and sender (XEP-0425
        tombstones, XEP-0313 §3.2: no holes); False if it is not there."""
        ...

    async def delete_room_archive(self, room: str, up_to_seq: int) -> int:
        """Delete the room's messages with ``seq <= up_to_seq`` (the room was destroyed:
        a room of the same name made since keeps its own); how many went."""
        ...

    async def expire_room_archives(self, before_seq: int) -> int:
        """Delete every room message with ``seq < before_seq``; how many went."""
        ...

    async def trim_room_archives(self, max_items: int) -> int:
        """Delete each room's oldest messages beyond ``max_items``; how many went."""
        ...

    async def last_room_archive_seq(self) -> int:
        """The highest ``seq`` stored in any room archive (0 for none)."""
        ...


class Storage(
    AccountStore,
    RosterStore,
    OfflineStore,
    KeyValueStore,
    HostDataStore,
    ArchiveStore,
    RoomArchiveStore,
    Protocol,
):
    """Everything a server needs from its database, with an explicit lifetime."""

    async def open(self) -> None:
        """Connect and bring the schema up to date."""
        ...

    async def register_schema(self, schema: StoreSchema) -> None:
        """Bring a feature module's own store up to date (call after ``open``, every start).

        Applies the migrations the database does not have yet, with the store's new version,
        in one transaction; does nothing if it is current, so it is safe to call every time
        and from several processes. Raise ``SchemaError`` if the database has a newer version
        of the store than ``schema`` knows, or if a migration fails (then nothing of it is
        applied and the version is unchanged).
        """
        ...

    async def close(self) -> None:
        """Flush and close; the object cannot be used afterwards."""
        ...
