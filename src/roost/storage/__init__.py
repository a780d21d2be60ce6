"""Storage: narrow async interfaces (``api``) and their backends (``sqlite``)."""

from roost.storage.api import (
    SUBSCRIPTIONS,
    Account,
    AccountExists,
    AccountStore,
    HostDataStore,
    KeyValueStore,
    NoSuchAccount,
    OfflineStore,
    RosterData,
    RosterItem,
    RosterStore,
    SchemaError,
    Storage,
    StorageError,
    StoredCredentials,
    StoreSchema,
    check_credentials,
)
from roost.storage.sqlite import SQLiteStorage

__all__ = [
    "SUBSCRIPTIONS",
    "Account",
    "AccountExists",
    "AccountStore",
    "HostDataStore",
    "KeyValueStore",
    "NoSuchAccount",
    "OfflineStore",
    "RosterData",
    "RosterItem",
    "RosterStore",
    "SQLiteStorage",
    "SchemaError",
    "Storage",
    "StorageError",
    "StoreSchema",
    "StoredCredentials",
    "check_credentials",
]
