"""Storage interfaces: narrow, async and typed; every backend implements ``Storage``.

Values here are plain and immutable. Usernames and domains arrive already normalised
(PRECIS / IDNA) by the caller; storage compares them byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Account",
    "AccountExists",
    "AccountStore",
    "NoSuchAccount",
    "SchemaError",
    "Storage",
    "StorageError",
    "StoredCredentials",
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
    """One local account; ``created`` is seconds since the epoch, given by the caller."""

    username: str
    domain: str
    sha1: StoredCredentials
    sha256: StoredCredentials
    created: float

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("account username must not be empty")
        if not self.domain:
            raise ValueError("account domain must not be empty")
        if not math.isfinite(self.created):
            raise ValueError(f"account creation time must be finite, got {self.created}")
        check_credentials(self.sha1, self.sha256)


def check_credentials(sha1: StoredCredentials, sha256: StoredCredentials) -> None:
    """Raise ``ValueError`` unless each set of keys has its hash's digest size."""
    if len(sha1.stored_key) != _SHA1_SIZE:
        raise ValueError(f"SCRAM-SHA-1 keys must be {_SHA1_SIZE} bytes")
    if len(sha256.stored_key) != _SHA256_SIZE:
        raise ValueError(f"SCRAM-SHA-256 keys must be {_SHA256_SIZE} bytes")


class StorageError(Exception):
    """Base of every error a storage backend raises on purpose."""


class SchemaError(StorageError):
    """The database schema cannot be used by this version of Roost (e.g. it is newer)."""


class AccountExists(StorageError):
    """``create_account`` for a (username, domain) that already has an account."""


class NoSuchAccount(StorageError):
    """An update addressed a (username, domain) that has no account."""


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

    async def delete_account(self, username: str, domain: str) -> bool:
        """Delete the account and all its per-user data; ``False`` if it did not exist."""
        ...

    async def list_accounts(self, domain: str | None = None) -> list[tuple[str, str]]:
        """``(username, domain)`` pairs, sorted, optionally for one domain only."""
        ...

    async def create_accounts_bulk(self, accounts: Iterable[Account]) -> int:
        """Create many accounts in one transaction, skipping existing ones; return how many."""
        ...


class Storage(AccountStore, Protocol):
    """Everything a server needs from its database, with an explicit lifetime."""

    async def open(self) -> None:
        """Connect and bring the schema up to date."""
        ...

    async def close(self) -> None:
        """Flush and close; the object cannot be used afterwards."""
        ...
