"""``roost bench provision``: many accounts with mutual rosters, straight into Roost's storage.

For speed, SCRAM keys are derived once and shared by every account: all accounts have the
same password anyway, and one salt means the bench clients derive SaltedPassword once per
process too (``salted_password_cache``), so logins measure the server, not client PBKDF2.
That is fine for benchmark accounts and wrong for real ones. Accounts go in with one bulk
transaction; roster items are written through the storage API (``put_roster_item``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from roost.storage.api import Account, RosterItem, Storage
from roost.storage.credentials import make_account, prepare_username
from roost.storage.sqlite import SQLiteStorage

__all__ = ["ProvisionResult", "check_layout", "contacts_of", "provision"]

_CHUNK = 2000  # roster writes in flight at once


def check_layout(users: int, contacts: int) -> None:
    """Raise ``ValueError`` unless every user can have ``contacts`` distinct mutual contacts."""
    if users < 1 or contacts < 0:
        raise ValueError("--users must be positive and --contacts not negative")
    if contacts >= users:
        raise ValueError(f"{users} users cannot each have {contacts} distinct contacts")
    if contacts % 2 and users % 2:
        raise ValueError("an odd number of contacts needs an even number of users")


def contacts_of(i: int, users: int, contacts: int) -> list[int]:
    """User ``i``'s contacts: its neighbours ``i±1 .. i±contacts//2`` around a ring, plus the
    user opposite (``i + users/2``) when ``contacts`` is odd. The relation is symmetric, so
    every roster item has its mirror on the contact's side."""
    half = contacts // 2
    out = []
    for d in range(1, half + 1):
        out.append((i + d) % users)
        out.append((i - d) % users)
    if contacts % 2:
        out.append((i + users // 2) % users)
    return out


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    created: int
    existed: int
    roster_items: int
    accounts_seconds: float
    rosters_seconds: float


async def _bulk_load_mode(storage: Storage) -> None:
    """WAL with synchronous=NORMAL for this connection only: a crash may lose the last
    transactions (a rerun writes them again) but never corrupts the database. It makes each
    ``put_roster_item`` commit 3x cheaper (no fsync per commit)."""
    if isinstance(storage, SQLiteStorage):
        await storage._call(lambda conn: conn.execute("PRAGMA synchronous = NORMAL"))


async def provision(
    storage: Storage,
    *,
    domain: str,
    users: int,
    contacts: int,
    prefix: str,
    password: str,
    iterations: int,
    bulk_load: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ProvisionResult:
    """Create ``prefix0 .. prefix{users-1}`` at ``domain`` and their rosters.

    ``bulk_load`` relaxes durability on a storage opened just for this (never on a running
    server's). Existing accounts are kept; roster items are (re)written either way.
    """
    check_layout(users, contacts)
    t0 = time.monotonic()
    template = await asyncio.get_running_loop().run_in_executor(
        None, make_account, f"{prefix}0", domain, password, iterations
    )
    names = [prepare_username(f"{prefix}{i}", domain)[0] for i in range(users)]
    if len(set(names)) != users:
        raise ValueError(f"the prefix {prefix!r} makes clashing usernames")
    now = time.time()
    accounts = [
        Account(name, template.domain, template.sha1, template.sha256, now) for name in names
    ]
    created = await storage.create_accounts_bulk(accounts)
    t1 = time.monotonic()
    if progress is not None:
        progress(f"{created} accounts created ({users - created} existed) in {t1 - t0:.1f} s")
    if bulk_load:
        await _bulk_load_mode(storage)
    dom = template.domain
    written = 0
    pending = []
    for i in range(users):
        for j in contacts_of(i, users, contacts):
            item = RosterItem(f"{names[j]}@{dom}", subscription="both")
            pending.append(storage.put_roster_item(names[i], dom, item))
        if len(pending) >= _CHUNK or i == users - 1:
            await asyncio.gather(*pending)
            written += len(pending)
            pending = []
            if progress is not None:
                progress(f"rosters: {i + 1}/{users} users, {written} items")
    return ProvisionResult(created, users - created, written, t1 - t0, time.monotonic() - t1)
