"""Accounts as stored: SCRAM keys derived from a password, usernames prepared as localparts.

Shared by the server, the CLI and the benchmark's provisioning. Passwords are never stored:
only SCRAM salted keys for SHA-1 and SHA-256 (RFC 5802 §3).
"""

from __future__ import annotations

import os
import time

from roost.core.jid import JID, InvalidJID
from roost.core.sasl import ScramCredentials, derive_credentials
from roost.storage.api import Account, StoredCredentials

__all__ = ["InvalidUsername", "derive_stored", "from_stored", "make_account", "prepare_username"]


class InvalidUsername(ValueError):
    """The username is not a valid JID localpart (RFC 7622 §3.3)."""


def prepare_username(username: str, domain: str) -> tuple[str, str]:
    """Prepare the localpart and domain as JID parts; raises ``InvalidUsername``."""
    try:
        jid = JID.make(username, domain)
    except InvalidJID as exc:
        raise InvalidUsername(str(exc)) from None
    assert jid.local is not None
    return jid.local, jid.domain


def to_stored(c: ScramCredentials) -> StoredCredentials:
    return StoredCredentials(c.salt, c.iterations, c.stored_key, c.server_key)


def from_stored(c: StoredCredentials) -> ScramCredentials:
    return ScramCredentials(c.salt, c.iterations, c.stored_key, c.server_key)


def derive_stored(hash_name: str, password: str, iterations: int) -> StoredCredentials:
    """Keys for one hash with a fresh salt (CPU-heavy: call it off the loop)."""
    return to_stored(derive_credentials(hash_name, password, os.urandom(16), iterations))


def make_account(username: str, domain: str, password: str, iterations: int) -> Account:
    """Derive both SCRAM key sets for a new account (CPU-heavy: call it off the loop)."""
    if not password:
        raise ValueError("the password must not be empty")
    local, dom = prepare_username(username, domain)
    sha1 = derive_stored("sha1", password, iterations)
    sha256 = derive_stored("sha256", password, iterations)
    return Account(local, dom, sha1, sha256, time.time())
