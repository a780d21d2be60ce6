"""Accounts: creation and password checks over the storage, PBKDF2 kept off the event loop.

Passwords are never stored: only SCRAM salted keys for SHA-1 and SHA-256 (RFC 5802 §3), from
which both SCRAM logins and PLAIN checks are verified. An account imported with SHA-1 keys
only (from Prosody) has no SCRAM-SHA-256 (``KeysNotStored``); its first PLAIN login derives
and stores them. Key derivation runs in a thread pool;
``hashlib.pbkdf2_hmac`` releases the GIL, so logins use every core and routing never stalls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from roost.core.sasl import ScramCredentials, verify_password
from roost.storage.api import Account, Storage
from roost.storage.credentials import (
    InvalidUsername,
    derive_stored,
    from_stored,
    make_account,
    prepare_username,
)

__all__ = ["Accounts", "InvalidUsername", "KeysNotStored", "make_account"]


class KeysNotStored(LookupError):
    """The account exists but has no SCRAM keys for the hash asked for (see the module)."""

_R = TypeVar("_R")


class Accounts:
    """The account operations the server and the CLI share."""

    def __init__(self, storage: Storage, iterations: int, pool: ThreadPoolExecutor | None = None):
        self.storage = storage
        self.iterations = iterations
        self._pool = pool

    async def _cpu(self, fn: Callable[..., _R], *args: object) -> _R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def create(self, username: str, domain: str, password: str) -> Account:
        """Create an account; raises ``AccountExists`` or ``InvalidUsername``."""
        account: Account = await self._cpu(
            make_account, username, domain, password, self.iterations
        )
        await self.storage.create_account(account)
        return account

    async def set_password(self, username: str, domain: str, password: str) -> None:
        """Replace the stored keys; raises ``NoSuchAccount``."""
        account: Account = await self._cpu(
            make_account, username, domain, password, self.iterations
        )
        assert account.sha256 is not None  # make_account derives both
        await self.storage.set_credentials(
            account.username, account.domain, account.sha1, account.sha256
        )

    async def exists(self, username: str, domain: str) -> bool:
        return await self.storage.get_account(username, domain) is not None

    async def scram_credentials(
        self, username: str, domain: str, hash_name: str
    ) -> ScramCredentials | None:
        """Stored keys for a SCRAM login; None when there is no such account. Raises
        ``KeysNotStored`` when the account has no keys for ``hash_name``."""
        try:
            local, dom = prepare_username(username, domain)
        except InvalidUsername:
            return None
        account = await self.storage.get_account(local, dom)
        if account is None:
            return None
        stored = account.sha256 if hash_name == "sha256" else account.sha1
        if stored is None:
            raise KeysNotStored(hash_name)
        return from_stored(stored)

    async def check_password(self, username: str, domain: str, password: str) -> bool:
        """Verify a PLAIN password against the stored SHA-256 keys (SHA-1 ones for an
        account that has no SHA-256 keys yet: then add them, derived from this password)."""
        try:
            local, dom = prepare_username(username, domain)
        except InvalidUsername:
            return False
        account = await self.storage.get_account(local, dom)
        if account is None:
            return False
        if account.sha256 is not None:
            ok: bool = await self._cpu(
                verify_password, from_stored(account.sha256), "sha256", password
            )
            return ok
        if not await self._cpu(verify_password, from_stored(account.sha1), "sha1", password):
            return False
        sha256 = await self._cpu(derive_stored, "sha256", password, self.iterations)
        await self.storage.add_sha256(local, dom, sha256)
        return True
