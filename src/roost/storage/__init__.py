"""Storage: narrow async interfaces (``api``) and their backends (``sqlite``)."""

from roost.storage.api import (
    Account,
    AccountExists,
    AccountStore,
    NoSuchAccount,
    SchemaError,
    Storage,
    StorageError,
    StoredCredentials,
    check_credentials,
)
from roost.storage.sqlite import SQLiteStorage

__all__ = [
    "Account",
    "AccountExists",
    "AccountStore",
    "NoSuchAccount",
    "SQLiteStorage",
    "SchemaError",
    "Storage",
    "StorageError",
    "StoredCredentials",
    "check_credentials",
]
