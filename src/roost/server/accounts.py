"""Accounts: creation and password checks over the storage, PBKDF2 kept off the event loop.

Passwords are never stored: only SCRAM salted keys for SHA-1 and SHA-256 (RFC 5802 §3), from
which both SCRAM logins and PLAIN checks are verified. Key derivation runs in a thread pool;
``hashlib.pbkdf2_hmac`` releases the GIL, so logins use every core and routing never stalls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from roost.core.sasl import ScramCredentials, verify_password
from roost.storage.api import Account, Storage
from roost.storage.credentials import InvalidUsername, from_stored, make_account, prepare_username

__all__ = ["Accounts", "InvalidUsername", "make_account"]

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
        await self.storage.set_credentials(
            account.username, account.domain, account.sha1, account.sha256
        )

    async def exists(self, username: str, domain: str) -> bool:
        return await self.storage.get_account(username, domain) is not None

    async def scram_credentials(
        self, username: str, domain: str, hash_name: str
    ) -> ScramCredentials | None:
        """Stored keys for a SCRAM login; None when there is no such account."""
        try:
            local, dom = prepare_username(username, domain)
        except InvalidUsername:
            return None
        account = await self.storage.get_account(local, dom)
        if account is None:
            return None
        return from_stored(account.sha256 if hash_name == "sha256" else account.sha1)

    async def check_password(self, username: str, domain: str, password: str) -> bool:
        """Verify a PLAIN password against the stored SHA-256 keys."""
        try:
            local, dom = prepare_username(username, domain)
        except InvalidUsername:
            return False
        account = await self.storage.get_account(local, dom)
        if account is None:
            return False
        ok: bool = await self._cpu(
            verify_password, from_stored(account.sha256), "sha256", password
        )
        return ok
