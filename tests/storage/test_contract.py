"""The storage contract: every test here runs on every backend (the ``backend`` fixture in
``conftest.py``) and uses only the ``Storage`` protocol, and ``Backend.offline_count`` to
count offline messages, which the protocol does not offer. Tests of one backend's own
machinery (files, locks, processes, old schemas) are in ``test_<backend>.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from roost.storage import (
    Account,
    AccountExists,
    ArchiveQuery,
    NoSuchAccount,
    RosterData,
    RosterItem,
    SchemaError,
    Storage,
    StorageError,
    StoredCredentials,
    StoreSchema,
)
from tests.storage.helpers import (
    DOMAIN,
    NURSE,
    ROMEO,
    SUBSCRIBE,
    Backend,
    account,
    credentials,
    fill_user_data,
    roster_size,
)

# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("salt", b""),
        ("iterations", 0),
        ("stored_key", b""),
        ("server_key", b"\x00" * 19),
    ],
)
def test_stored_credentials_are_validated(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "salt": b"salt",
        "iterations": 4096,
        "stored_key": b"\x00" * 20,
        "server_key": b"\x00" * 20,
    }
    fields[field] = value
    with pytest.raises(ValueError):
        StoredCredentials(**fields)  # type: ignore[arg-type]


def test_account_checks_digest_sizes() -> None:
    with pytest.raises(ValueError, match="SCRAM-SHA-1"):
        Account("juliet", DOMAIN, credentials("x", "sha256"), credentials("x", "sha256"), 0.0)
    with pytest.raises(ValueError, match="SCRAM-SHA-256"):
        Account("juliet", DOMAIN, credentials("x", "sha1"), credentials("x", "sha1"), 0.0)
    with pytest.raises(ValueError):
        Account("", DOMAIN, credentials("x", "sha1"), credentials("x", "sha256"), 0.0)
    with pytest.raises(ValueError):
        Account(
            "juliet", DOMAIN, credentials("x", "sha1"), credentials("x", "sha256"), float("nan")
        )


# -- accounts -------------------------------------------------------------------------------


async def test_create_and_get(storage: Storage) -> None:
    juliet = account("juliet", created=1_700_000_000.25)
    await storage.create_account(juliet)
    assert await storage.get_account("juliet", DOMAIN) == juliet


async def test_get_missing_is_none(storage: Storage) -> None:
    await storage.create_account(account("juliet"))
    assert await storage.get_account("romeo", DOMAIN) is None
    assert await storage.get_account("juliet", "example.com") is None


async def test_create_existing_raises(storage: Storage) -> None:
    await storage.create_account(account("juliet"))
    with pytest.raises(AccountExists):
        await storage.create_account(account("juliet", seed="other"))
    stored = await storage.get_account("juliet", DOMAIN)
    assert stored == account("juliet")  # the first one is untouched


async def test_same_username_on_two_domains(storage: Storage) -> None:
    await storage.create_account(account("juliet", "a.example"))
    await storage.create_account(account("juliet", "b.example"))
    assert await storage.list_accounts() == [("juliet", "a.example"), ("juliet", "b.example")]


async def test_list_sorted_and_filtered(storage: Storage) -> None:
    for username, domain in [
        ("romeo", "b.example"),
        ("juliet", "a.example"),
        ("Éloïse", "a.example"),
        ("benvolio", "b.example"),
        ("Zed", "a.example"),
    ]:
        await storage.create_account(account(username, domain))
    everyone = await storage.list_accounts()
    assert everyone == sorted(everyone)
    assert len(everyone) == 5
    assert await storage.list_accounts("a.example") == [
        ("Zed", "a.example"),
        ("juliet", "a.example"),
        ("Éloïse", "a.example"),
    ]
    assert await storage.list_accounts("nowhere.example") == []


async def test_list_empty(storage: Storage) -> None:
    assert await storage.list_accounts() == []


async def test_set_credentials(storage: Storage) -> None:
    await storage.create_account(account("juliet"))
    sha1 = credentials("new", "sha1", iterations=10_000)
    sha256 = credentials("new", "sha256", iterations=20_000)
    await storage.set_credentials("juliet", DOMAIN, sha1, sha256)
    stored = await storage.get_account("juliet", DOMAIN)
    assert stored is not None
    assert (stored.sha1, stored.sha256) == (sha1, sha256)
    assert stored.created == account("juliet").created


async def test_set_credentials_missing_account(storage: Storage) -> None:
    with pytest.raises(NoSuchAccount):
        await storage.set_credentials(
            "nobody", DOMAIN, credentials("x", "sha1"), credentials("x", "sha256")
        )


async def test_set_credentials_checks_digest_sizes(storage: Storage) -> None:
    await storage.create_account(account("juliet"))
    with pytest.raises(ValueError):
        await storage.set_credentials(
            "juliet", DOMAIN, credentials("x", "sha256"), credentials("x", "sha256")
        )
    assert await storage.get_account("juliet", DOMAIN) == account("juliet")


async def test_account_without_sha256_keys(storage: Storage) -> None:
    """Imported from Prosody (SCRAM-SHA-1 only): stored and read back without SHA-256
    keys; ``add_sha256`` adds them once, and never over keys already there."""
    sha1_only = dataclasses.replace(account("juliet"), sha256=None)
    await storage.create_account(sha1_only)
    assert await storage.get_account("juliet", DOMAIN) == sha1_only
    assert await storage.create_accounts_bulk([dataclasses.replace(sha1_only, username="r")])
    added = credentials("added", "sha256")
    assert await storage.add_sha256("juliet", DOMAIN, added) is True
    stored = await storage.get_account("juliet", DOMAIN)
    assert stored is not None and (stored.sha1, stored.sha256) == (sha1_only.sha1, added)
    assert await storage.add_sha256("juliet", DOMAIN, credentials("again", "sha256")) is False
    assert await storage.add_sha256("nobody", DOMAIN, added) is False
    with pytest.raises(ValueError):
        await storage.add_sha256("r", DOMAIN, credentials("x", "sha1"))
    # A password set meanwhile writes both key sets; a late add_sha256 changes nothing.
    new = credentials("new", "sha1"), credentials("new", "sha256")
    await storage.set_credentials("r", DOMAIN, *new)
    assert await storage.add_sha256("r", DOMAIN, added) is False
    stored = await storage.get_account("r", DOMAIN)
    assert stored is not None and (stored.sha1, stored.sha256) == new


async def test_delete(storage: Storage) -> None:
    await storage.create_account(account("juliet"))
    await storage.create_account(account("romeo"))
    assert await storage.delete_account("juliet", DOMAIN) is True
    assert await storage.get_account("juliet", DOMAIN) is None
    assert await storage.delete_account("juliet", DOMAIN) is False
    assert await storage.list_accounts() == [("romeo", DOMAIN)]
    await storage.create_account(account("juliet"))  # the name is free again


# -- bulk import ----------------------------------------------------------------------------


async def test_bulk_import_skips_existing(storage: Storage) -> None:
    await storage.create_account(account("juliet", seed="original"))
    created = await storage.create_accounts_bulk(
        iter([account("juliet"), account("romeo"), account("nurse"), account("romeo")])
    )
    assert created == 2
    assert await storage.list_accounts() == [
        ("juliet", DOMAIN),
        ("nurse", DOMAIN),
        ("romeo", DOMAIN),
    ]
    assert await storage.get_account("juliet", DOMAIN) == account("juliet", seed="original")
    assert await storage.create_accounts_bulk([]) == 0


async def test_bulk_import_10k_is_fast(storage: Storage) -> None:
    sha1, sha256 = credentials("bulk", "sha1"), credentials("bulk", "sha256")
    accounts = [Account(f"user{n:05d}", DOMAIN, sha1, sha256, 0.0) for n in range(10_000)]
    started = time.perf_counter()
    assert await storage.create_accounts_bulk(accounts) == 10_000
    elapsed = time.perf_counter() - started
    # One transaction means one fsync; a commit per account would take far longer.
    assert elapsed < 3.0, f"bulk import of 10k accounts took {elapsed:.2f}s"
    assert len(await storage.list_accounts(DOMAIN)) == 10_000
    assert await storage.create_accounts_bulk(accounts) == 0


# -- lifetime -------------------------------------------------------------------------------


async def test_use_before_open_and_after_close(backend: Backend) -> None:
    storage = backend.new()
    with pytest.raises(StorageError):
        await storage.list_accounts()
    await storage.open()
    with pytest.raises(StorageError):
        await storage.open()
    await storage.close()
    await storage.close()  # closing twice is harmless
    with pytest.raises(StorageError):
        await storage.list_accounts()


async def test_concurrent_operations_are_serialised(storage: Storage) -> None:
    names = [f"user{n}" for n in range(50)]
    await asyncio.gather(*(storage.create_account(account(name)) for name in names))
    found = await asyncio.gather(*(storage.get_account(name, DOMAIN) for name in names))
    assert [a.username for a in found if a is not None] == names


# -- two clients on one database (CLI and server) -------------------------------------------


async def test_second_instance_sees_writes_at_once(backend: Backend) -> None:
    async with backend.open() as server, backend.open() as cli:
        assert await server.get_account("juliet", DOMAIN) is None  # nothing cached after this
        await cli.create_account(account("juliet"))
        assert await server.get_account("juliet", DOMAIN) == account("juliet")
        await server.create_accounts_bulk([account("romeo"), account("nurse")])
        assert await cli.list_accounts() == [
            ("juliet", DOMAIN),
            ("nurse", DOMAIN),
            ("romeo", DOMAIN),
        ]
        new_sha1, new_sha256 = credentials("new", "sha1"), credentials("new", "sha256")
        await cli.set_credentials("juliet", DOMAIN, new_sha1, new_sha256)
        stored = await server.get_account("juliet", DOMAIN)
        assert stored is not None and stored.sha256 == new_sha256
        assert await cli.delete_account("romeo", DOMAIN)
        assert await server.get_account("romeo", DOMAIN) is None
        with pytest.raises(AccountExists):
            await server.create_account(account("juliet"))


# -- rosters (RFC 6121) ---------------------------------------------------------------------


def test_roster_item_is_validated() -> None:
    assert RosterItem(ROMEO) == RosterItem(ROMEO, None, "none", False, False, ())
    for subscription in ("none", "to", "from", "both"):
        RosterItem(ROMEO, subscription=subscription)
    with pytest.raises(ValueError, match="subscription"):
        RosterItem(ROMEO, subscription="remove")
    with pytest.raises(ValueError):
        RosterItem("")
    with pytest.raises(TypeError):
        RosterItem(ROMEO, groups=("Friends", 3))  # type: ignore[arg-type]
    listed = RosterItem(ROMEO, groups=["b", "a"])  # type: ignore[arg-type]
    assert listed.groups == ("b", "a")
    hash(listed)


async def test_empty_roster(juliet: Storage) -> None:
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.get_roster("nobody", DOMAIN) == RosterData(0, {}, {})
    assert await roster_size(juliet, "juliet") == 0
    assert await roster_size(juliet, "nobody") == 0


async def test_put_and_get_roster_items(juliet: Storage) -> None:
    romeo = RosterItem(
        ROMEO,
        name="Romeo ❤",
        subscription="both",
        groups=("Friends", "Zärtlich 🌹", "", 'a,b;c"d'),
    )
    nurse = RosterItem(NURSE, subscription="to", ask=True, approved=True)
    assert await juliet.put_roster_item("juliet", DOMAIN, romeo) == 1
    assert await juliet.put_roster_item("juliet", DOMAIN, nurse) == 2
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster == RosterData(2, {ROMEO: romeo, NURSE: nurse}, {})
    assert roster.items[ROMEO].groups == ("Friends", "Zärtlich 🌹", "", 'a,b;c"d')  # order kept
    assert await roster_size(juliet, "juliet") == 2
    # Another user's roster is separate, with its own version.
    assert await juliet.get_roster("romeo", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.put_roster_item("romeo", DOMAIN, RosterItem(f"juliet@{DOMAIN}")) == 1


async def test_upsert_replaces_item_and_bumps_version(juliet: Storage) -> None:
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO, "Romeo", groups=("A", "B")))
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(NURSE))
    updated = RosterItem(ROMEO, subscription="from", groups=("B",))
    assert await juliet.put_roster_item("juliet", DOMAIN, updated) == 3
    same_again = await juliet.put_roster_item("juliet", DOMAIN, updated)
    assert same_again == 4  # every put is a change: never back to an earlier version
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster.version == 4
    assert roster.items[ROMEO] == updated  # fully replaced: name and a group are gone
    assert await roster_size(juliet, "juliet") == 2


async def test_delete_roster_item(juliet: Storage) -> None:
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO))
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(NURSE))
    assert await juliet.delete_roster_item("juliet", DOMAIN, ROMEO) == 3
    assert await juliet.delete_roster_item("juliet", DOMAIN, ROMEO) == 3  # absent: unchanged
    assert await juliet.delete_roster_item("juliet", DOMAIN, "tybalt@capulet.example") == 3
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(
        3, {NURSE: RosterItem(NURSE)}, {}
    )
    assert await juliet.delete_roster_item("juliet", DOMAIN, NURSE) == 4
    # Empty again, but not version 0: a client caching version 0 or 3 must see a change.
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(4, {}, {})
    assert await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO)) == 5
    assert await juliet.delete_roster_item("nobody", DOMAIN, ROMEO) == 0


async def test_put_roster_item_needs_an_account(juliet: Storage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.put_roster_item("nobody", DOMAIN, RosterItem(ROMEO))
    with pytest.raises(NoSuchAccount):
        await juliet.put_roster_item("juliet", "example.com", RosterItem(ROMEO))
    assert await juliet.get_roster("nobody", DOMAIN) == RosterData(0, {}, {})


async def test_pending_in_is_independent_of_items(juliet: Storage) -> None:
    # For a contact not in the roster: no item, no version change.
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, SUBSCRIBE)
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {ROMEO: SUBSCRIBE})
    assert await roster_size(juliet, "juliet") == 0
    # Adding and then deleting the item leaves the request alone.
    assert await juliet.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO)) == 1
    assert await juliet.delete_roster_item("juliet", DOMAIN, ROMEO) == 2
    assert (await juliet.get_roster("juliet", DOMAIN)).pending_in == {ROMEO: SUBSCRIBE}
    # Replacing and removing the request does not touch the version or the items.
    await juliet.put_roster_item("juliet", DOMAIN, RosterItem(NURSE))
    newer = SUBSCRIBE.replace("/>", "><status>again</status></presence>")
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, newer)
    await juliet.set_pending_in("juliet", DOMAIN, NURSE, "<presence type='subscribe'/>")
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster.version == 3
    assert roster.pending_in == {ROMEO: newer, NURSE: "<presence type='subscribe'/>"}
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, None)
    await juliet.set_pending_in("juliet", DOMAIN, ROMEO, None)  # removing twice is harmless
    roster = await juliet.get_roster("juliet", DOMAIN)
    assert roster == RosterData(
        3, {NURSE: RosterItem(NURSE)}, {NURSE: "<presence type='subscribe'/>"}
    )
    assert (await juliet.get_roster("romeo", DOMAIN)).pending_in == {}


async def test_pending_in_needs_an_account(juliet: Storage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.set_pending_in("nobody", DOMAIN, ROMEO, SUBSCRIBE)
    await juliet.set_pending_in("nobody", DOMAIN, ROMEO, None)  # nothing to remove: no error


async def test_concurrent_roster_puts_get_distinct_versions(juliet: Storage) -> None:
    items = [RosterItem(f"contact{n}@example.net") for n in range(30)]
    versions = await asyncio.gather(
        *(juliet.put_roster_item("juliet", DOMAIN, item) for item in items)
    )
    assert sorted(versions) == list(range(1, 31))
    assert await roster_size(juliet, "juliet") == 30


# -- offline messages (XEP-0160) ------------------------------------------------------------


async def test_offline_push_take_in_order(juliet: Storage, backend: Backend) -> None:
    assert await juliet.take_offline("juliet", DOMAIN) == []
    stanzas = [(f"<message id='m{n}'>ünïcode {n}</message>", 1000.0 - n) for n in range(5)]
    for stanza, stamp in stanzas:
        assert await juliet.push_offline("juliet", DOMAIN, stanza, stamp, 100)
    await juliet.push_offline("romeo", DOMAIN, "<message>for romeo</message>", 1.0, 100)
    assert backend.offline_count("juliet") == 5
    # Arrival order, not stamp order; listing (an export) leaves them in place.
    assert await juliet.list_offline("juliet", DOMAIN) == stanzas
    assert backend.offline_count("juliet") == 5
    assert await juliet.take_offline("juliet", DOMAIN) == stanzas
    assert await juliet.take_offline("juliet", DOMAIN) == []
    assert backend.offline_count("juliet") == 0
    assert backend.offline_count("romeo") == 1
    # Order still holds for messages stored after a take.
    await juliet.push_offline("juliet", DOMAIN, "<message>b</message>", 2.0, 100)
    await juliet.push_offline("juliet", DOMAIN, "<message>a</message>", 1.0, 100)
    assert await juliet.take_offline("juliet", DOMAIN) == [
        ("<message>b</message>", 2.0),
        ("<message>a</message>", 1.0),
    ]


async def test_offline_quota(juliet: Storage, backend: Backend) -> None:
    for n in range(3):
        assert await juliet.push_offline("juliet", DOMAIN, f"<message>{n}</message>", n, 3)
    assert not await juliet.push_offline("juliet", DOMAIN, "<message>3</message>", 3.0, 3)
    assert backend.offline_count("juliet") == 3
    # A lower limit than what is stored refuses too; another user has their own quota.
    assert not await juliet.push_offline("juliet", DOMAIN, "<message>x</message>", 3.0, 1)
    assert not await juliet.push_offline("romeo", DOMAIN, "<message>x</message>", 3.0, 0)
    assert await juliet.push_offline("romeo", DOMAIN, "<message>x</message>", 3.0, 1)
    assert [stanza for stanza, _ in await juliet.take_offline("juliet", DOMAIN)] == [
        "<message>0</message>",
        "<message>1</message>",
        "<message>2</message>",
    ]
    assert await juliet.push_offline("juliet", DOMAIN, "<message>3</message>", 3.0, 3)


async def test_offline_quota_holds_under_concurrency(backend: Backend) -> None:
    async with backend.open() as server, backend.open() as other:
        await server.create_account(account("juliet"))
        results = await asyncio.gather(
            *(
                store.push_offline("juliet", DOMAIN, f"<message>{n}</message>", float(n), 10)
                for n in range(20)
                for store in (server, other)
            )
        )
        assert results.count(True) == 10
        assert backend.offline_count("juliet") == 10


async def test_concurrent_takes_deliver_each_message_once(backend: Backend) -> None:
    async with backend.open() as server, backend.open() as other:
        await server.create_account(account("juliet"))
        for n in range(50):
            await server.push_offline("juliet", DOMAIN, f"<message>{n}</message>", float(n), 100)
        taken = await asyncio.gather(
            *(store.take_offline("juliet", DOMAIN) for _ in range(5) for store in (server, other))
        )
        delivered = [stanza for batch in taken for stanza, _ in batch]
        assert delivered == [f"<message>{n}</message>" for n in range(50)]  # all, once, in order
        assert sum(1 for batch in taken if batch) == 1


async def test_push_offline_checks(juliet: Storage, backend: Backend) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.push_offline("nobody", DOMAIN, "<message/>", 1.0, 100)
    with pytest.raises(ValueError):
        await juliet.push_offline("juliet", DOMAIN, "<message/>", float("inf"), 100)
    assert backend.offline_count("juliet") == 0
    assert backend.offline_count("nobody") == 0
    assert await juliet.take_offline("nobody", DOMAIN) == []


# -- per-user documents ---------------------------------------------------------------------


async def test_data_set_get_delete_list(juliet: Storage) -> None:
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "") is None
    assert await juliet.list_data("juliet", DOMAIN, "private") == {}
    await juliet.set_data("juliet", DOMAIN, "vcard", "", "<vCard xmlns='vcard-temp'/>")
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", "<storage/>")
    await juliet.set_data("juliet", DOMAIN, "private", "jabber:rôster:délimiter", "::")
    await juliet.set_data("romeo", DOMAIN, "private", "storage:bookmarks", "<romeo/>")
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "") == "<vCard xmlns='vcard-temp'/>"
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "other") is None
    assert await juliet.get_data("juliet", DOMAIN, "private", "") is None
    assert await juliet.list_data("juliet", DOMAIN, "private") == {
        "storage:bookmarks": "<storage/>",
        "jabber:rôster:délimiter": "::",
    }
    # Replace, then delete (twice: harmless); an empty string is a value, not a deletion.
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", "<storage>x</storage>")
    assert await juliet.get_data("juliet", DOMAIN, "private", "storage:bookmarks") == (
        "<storage>x</storage>"
    )
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", None)
    await juliet.set_data("juliet", DOMAIN, "private", "storage:bookmarks", None)
    await juliet.set_data("juliet", DOMAIN, "last", "logout", "")
    assert await juliet.get_data("juliet", DOMAIN, "last", "logout") == ""
    assert await juliet.list_data("juliet", DOMAIN, "private") == {"jabber:rôster:délimiter": "::"}
    assert await juliet.list_data("romeo", DOMAIN, "private") == {"storage:bookmarks": "<romeo/>"}
    assert await juliet.list_data("juliet", DOMAIN, "vcard") == {"": "<vCard xmlns='vcard-temp'/>"}


async def test_set_data_needs_an_account(juliet: Storage) -> None:
    with pytest.raises(NoSuchAccount):
        await juliet.set_data("nobody", DOMAIN, "vcard", "", "<vCard/>")
    await juliet.set_data("nobody", DOMAIN, "vcard", "", None)  # nothing to delete: no error
    assert await juliet.get_data("nobody", DOMAIN, "vcard", "") is None
    assert await juliet.list_data("nobody", DOMAIN, "vcard") == {}


# -- per-user data and the account's lifetime -----------------------------------------------


async def test_delete_account_deletes_all_per_user_data(juliet: Storage, backend: Backend) -> None:
    await fill_user_data(juliet, "juliet")
    await fill_user_data(juliet, "romeo")
    assert await roster_size(juliet, "juliet") == 1
    assert backend.offline_count("juliet") == 1
    assert await juliet.delete_account("juliet", DOMAIN)
    # Gone with the account, before anyone could take it over ...
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
    assert backend.offline_count("juliet") == 0
    assert await juliet.list_data("juliet", DOMAIN, "vcard") == {}
    assert (await juliet.query_archive("juliet", DOMAIN, ArchiveQuery())).count == 0
    assert "juliet" not in await juliet.get_archive_prefs(DOMAIN)
    # ... and a new account of the same name starts with nothing.
    await juliet.create_account(account("juliet"))
    assert await juliet.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
    assert await juliet.take_offline("juliet", DOMAIN) == []
    assert await juliet.get_data("juliet", DOMAIN, "vcard", "") is None
    roster = await juliet.get_roster("romeo", DOMAIN)
    assert (roster.version, list(roster.items), roster.pending_in) == (
        1,
        [ROMEO],
        {NURSE: SUBSCRIBE},
    )
    assert await juliet.take_offline("romeo", DOMAIN) == [("<message/>", 1.0)]
    assert await juliet.list_data("romeo", DOMAIN, "vcard") == {"": "<vCard/>"}


async def test_second_instance_sees_per_user_writes(backend: Backend) -> None:
    async with backend.open() as server, backend.open() as cli:
        await cli.create_account(account("juliet"))
        assert await server.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})
        await cli.put_roster_item("juliet", DOMAIN, RosterItem(ROMEO, "Romeo"))
        await cli.set_pending_in("juliet", DOMAIN, NURSE, SUBSCRIBE)
        assert await server.get_roster("juliet", DOMAIN) == RosterData(
            1, {ROMEO: RosterItem(ROMEO, "Romeo")}, {NURSE: SUBSCRIBE}
        )
        assert await server.put_roster_item("juliet", DOMAIN, RosterItem(NURSE)) == 2
        assert await cli.delete_roster_item("juliet", DOMAIN, ROMEO) == 3
        assert await roster_size(server, "juliet") == 1
        await server.push_offline("juliet", DOMAIN, "<message/>", 5.0, 10)
        assert backend.offline_count("juliet") == 1
        assert await cli.take_offline("juliet", DOMAIN) == [("<message/>", 5.0)]
        assert await server.take_offline("juliet", DOMAIN) == []
        await cli.set_data("juliet", DOMAIN, "vcard", "", "<vCard/>")
        assert await server.get_data("juliet", DOMAIN, "vcard", "") == "<vCard/>"
        await server.set_data("juliet", DOMAIN, "vcard", "", None)
        assert await cli.list_data("juliet", DOMAIN, "vcard") == {}
        assert await cli.delete_account("juliet", DOMAIN)
        assert await server.get_roster("juliet", DOMAIN) == RosterData(0, {}, {})


# -- module-owned stores: register_schema -------------------------------------------------

# Portable SQL (see StoreSchema): every backend must accept it.
DEMO_1 = "CREATE TABLE demo_rooms (jid TEXT NOT NULL PRIMARY KEY, name TEXT)"
DEMO_2 = """
    CREATE TABLE demo_members (room TEXT NOT NULL, jid TEXT NOT NULL, PRIMARY KEY (room, jid));
    CREATE INDEX demo_members_by_jid ON demo_members (jid);
"""
DEMO_3 = "CREATE TABLE demo_bans (room TEXT NOT NULL, jid TEXT NOT NULL)"


def test_store_schema_is_validated() -> None:
    schema = StoreSchema("demo", [DEMO_1, DEMO_2])  # type: ignore[arg-type]
    assert schema.migrations == (DEMO_1, DEMO_2)
    assert schema == StoreSchema("demo", (DEMO_1, DEMO_2))
    hash(schema)
    assert StoreSchema("demo", ()).migrations == ()
    with pytest.raises(ValueError):
        StoreSchema("", (DEMO_1,))
    with pytest.raises(TypeError):
        StoreSchema("demo", (DEMO_1, 2))  # type: ignore[arg-type]


async def test_register_schema_is_idempotent(storage: Storage) -> None:
    schema = StoreSchema("demo", (DEMO_1, DEMO_2))
    await storage.register_schema(schema)
    # Applied again, CREATE TABLE would fail: the store is known to be at version 2.
    await storage.register_schema(schema)
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))


async def test_register_schema_applies_only_new_migrations(storage: Storage) -> None:
    await storage.register_schema(StoreSchema("demo", (DEMO_1,)))
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2, DEMO_3)))
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2, DEMO_3)))


async def test_register_schema_refuses_a_newer_store(storage: Storage) -> None:
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))
    with pytest.raises(SchemaError, match="demo"):
        await storage.register_schema(StoreSchema("demo", (DEMO_1,)))
    with pytest.raises(SchemaError):
        await storage.register_schema(StoreSchema("demo", ()))
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))  # still usable


async def test_store_versions_are_tracked_per_store(storage: Storage) -> None:
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))
    # Another store starts at version 0, whatever the first one is at.
    other = StoreSchema("other", ("CREATE TABLE other_items (id TEXT NOT NULL PRIMARY KEY)",))
    await storage.register_schema(other)
    await storage.register_schema(other)
    with pytest.raises(SchemaError):
        await storage.register_schema(StoreSchema("demo", (DEMO_1,)))
    with pytest.raises(SchemaError):
        await storage.register_schema(StoreSchema("other", ()))


async def test_store_version_survives_reopen(backend: Backend) -> None:
    async with backend.open() as storage:
        await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))
    async with backend.open() as storage:
        await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))  # not re-applied
        with pytest.raises(SchemaError):
            await storage.register_schema(StoreSchema("demo", (DEMO_1,)))
        await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2, DEMO_3)))
    async with backend.open() as storage:
        with pytest.raises(SchemaError):
            await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2)))


async def test_failed_migration_is_rolled_back(storage: Storage) -> None:
    await storage.register_schema(StoreSchema("demo", (DEMO_1,)))
    # The second statement fails: its first one, and the version, must not stay behind.
    broken = "CREATE TABLE demo_log (line TEXT); CREATE TABLE demo_rooms (jid TEXT)"
    with pytest.raises(SchemaError, match="demo"):
        await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2, broken)))
    # Migration 2 was in the same failed transaction as 3: both are applied again here.
    fixed = "CREATE TABLE demo_log (line TEXT)"
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2, fixed)))
    await storage.register_schema(StoreSchema("demo", (DEMO_1, DEMO_2, fixed)))
    await storage.create_account(account("juliet"))  # and the storage is usable


async def test_concurrent_registrations_apply_each_migration_once(backend: Backend) -> None:
    schema = StoreSchema("demo", (DEMO_1, DEMO_2, DEMO_3))
    async with backend.open() as server, backend.open() as other:
        await asyncio.gather(*(store.register_schema(schema) for store in (server, other) * 3))
        with pytest.raises(SchemaError):
            await other.register_schema(StoreSchema("demo", (DEMO_1,)))


async def test_register_schema_needs_an_open_storage(backend: Backend) -> None:
    storage = backend.new()
    with pytest.raises(StorageError):
        await storage.register_schema(StoreSchema("demo", (DEMO_1,)))


# -- host-scoped documents ----------------------------------------------------------------

ROOM = "balcony@conference.example.org"
NODE = "princely_musings"


async def test_host_data_set_get_delete_list(storage: Storage) -> None:
    assert await storage.get_host_data(ROOM, "muc", "config") is None
    assert await storage.list_host_data(ROOM, "muc") == {}
    await storage.set_host_data(ROOM, "muc", "config", "<x xmlns='jabber:x:data'/>")
    await storage.set_host_data(ROOM, "muc", "affiliation:juliet@example.org", "owner")
    await storage.set_host_data(ROOM, "muc", "sübject", "Wherefore ärt thou 🌹")
    assert await storage.get_host_data(ROOM, "muc", "config") == "<x xmlns='jabber:x:data'/>"
    assert await storage.get_host_data(ROOM, "muc", "other") is None
    assert await storage.list_host_data(ROOM, "muc") == {
        "config": "<x xmlns='jabber:x:data'/>",
        "affiliation:juliet@example.org": "owner",
        "sübject": "Wherefore ärt thou 🌹",
    }
    # Replace, then delete (twice: harmless); an empty string is a value, not a deletion.
    await storage.set_host_data(ROOM, "muc", "config", "<x/>")
    assert await storage.get_host_data(ROOM, "muc", "config") == "<x/>"
    await storage.set_host_data(ROOM, "muc", "config", None)
    await storage.set_host_data(ROOM, "muc", "config", None)
    await storage.set_host_data(ROOM, "muc", "sübject", "")
    assert await storage.get_host_data(ROOM, "muc", "config") is None
    assert await storage.get_host_data(ROOM, "muc", "sübject") == ""
    assert await storage.list_host_data(ROOM, "muc") == {
        "affiliation:juliet@example.org": "owner",
        "sübject": "",
    }
    await storage.set_host_data("nowhere.example", "muc", "config", None)  # absent: no error


async def test_host_data_is_isolated_by_host_and_store(storage: Storage) -> None:
    other_room = "crypt@conference.example.org"
    await storage.set_host_data(ROOM, "muc", "config", "balcony")
    await storage.set_host_data(other_room, "muc", "config", "crypt")
    await storage.set_host_data(ROOM, "muc_history", "config", "history")
    await storage.set_host_data(f"{NODE}@pubsub.example.org", "pubsub", "config", "node")
    assert await storage.get_host_data(ROOM, "muc", "config") == "balcony"
    assert await storage.get_host_data(other_room, "muc", "config") == "crypt"
    assert await storage.get_host_data(ROOM, "muc_history", "config") == "history"
    assert await storage.get_host_data(ROOM, "pubsub", "config") is None
    assert await storage.list_host_data(ROOM, "muc") == {"config": "balcony"}
    assert await storage.list_host_data(other_room, "muc") == {"config": "crypt"}
    assert await storage.list_host_data(ROOM, "muc_history") == {"config": "history"}
    # Host and store are compared exactly: no prefix matching, no case folding.
    assert await storage.list_host_data(ROOM.upper(), "muc") == {}
    assert await storage.list_host_data(ROOM[:-1], "muc") == {}
    assert await storage.list_host_data(ROOM, "mu") == {}
    await storage.set_host_data(other_room, "muc", "config", None)
    assert await storage.get_host_data(ROOM, "muc", "config") == "balcony"
    assert await storage.get_host_data(ROOM, "muc_history", "config") == "history"


async def test_host_data_is_independent_of_accounts(storage: Storage) -> None:
    # No account is needed, and per-user data of the same store is another namespace.
    host = f"juliet@{DOMAIN}"
    await storage.set_host_data(host, "vcard", "", "<vCard>host</vCard>")
    await storage.create_account(account("juliet"))
    await storage.set_data("juliet", DOMAIN, "vcard", "", "<vCard>user</vCard>")
    assert await storage.get_host_data(host, "vcard", "") == "<vCard>host</vCard>"
    assert await storage.get_data("juliet", DOMAIN, "vcard", "") == "<vCard>user</vCard>"
    assert await storage.delete_account("juliet", DOMAIN)
    assert await storage.get_data("juliet", DOMAIN, "vcard", "") is None
    assert await storage.list_host_data(host, "vcard") == {"": "<vCard>host</vCard>"}


async def test_host_data_survives_reopen(backend: Backend) -> None:
    async with backend.open() as storage:
        await storage.set_host_data(ROOM, "muc", "config", "<x/>")
        await storage.set_host_data(ROOM, "muc", "gone", "soon")
        await storage.set_host_data(ROOM, "muc", "gone", None)
    async with backend.open() as storage:
        assert await storage.get_host_data(ROOM, "muc", "config") == "<x/>"
        assert await storage.list_host_data(ROOM, "muc") == {"config": "<x/>"}


async def test_second_instance_sees_host_data_at_once(backend: Backend) -> None:
    async with backend.open() as server, backend.open() as cli:
        assert await server.get_host_data(ROOM, "muc", "config") is None
        await cli.set_host_data(ROOM, "muc", "config", "<x/>")
        assert await server.get_host_data(ROOM, "muc", "config") == "<x/>"
        await server.set_host_data(ROOM, "muc", "config", None)
        assert await cli.list_host_data(ROOM, "muc") == {}


async def test_concurrent_host_data_writes(storage: Storage) -> None:
    await asyncio.gather(
        *(storage.set_host_data(ROOM, "muc", f"key{n}", f"value{n}") for n in range(50))
    )
    assert await storage.list_host_data(ROOM, "muc") == {f"key{n}": f"value{n}" for n in range(50)}
