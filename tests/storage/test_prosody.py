"""The Prosody importer on the formats a Debian Prosody 0.12 does not write in the interop
test (tests/interop/test_prosody_import.py): ``internal_plain`` accounts, mod_vcard's
``vcard`` store, escaped user names, accounts that cannot be imported, hosts not served."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.storage import Account, Storage
from roost.storage.credentials import make_account
from roost.storage.prosody import NotProsodyData, import_prosody, unescape

HOST = "example.org"


def _derive(jid: str, password: str) -> Account:
    user, _, domain = jid.partition("@")
    return make_account(user, domain, password, 4096)


def _write(root: Path, host: str, store: str, user: str, text: str, ext: str = "dat") -> None:
    directory = root / host / store
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{user}.{ext}").write_text(text)


def test_unescape() -> None:
    assert unescape("pros%2etest") == "pros.test"
    assert unescape("j%2er%2bx") == "j.r+x"
    assert unescape("%c3%a9mile") == "émile"  # the escapes are of UTF-8 bytes


async def test_plain_accounts_vcard_store_and_skips(tmp_path: Path, storage: Storage) -> None:
    root = tmp_path / "prosody"
    _write(root, "example%2eorg", "accounts", "%c3%a9mile", 'return { ["password"] = "pw" };')
    _write(
        root,
        "example%2eorg",
        "vcard",
        "%c3%a9mile",
        'return { ["name"] = "vCard"; ["attr"] = { ["xmlns"] = "vcard-temp" };'
        ' { ["name"] = "FN"; ["attr"] = {}; "\\195\\137mile" } };',
    )
    _write(root, "example%2eorg", "accounts", "nokeys", 'return { ["salt"] = "s" };')
    _write(root, "example%2eorg", "accounts", "bad%40name", 'return { ["password"] = "x" };')
    _write(root, "other%2eorg", "accounts", "x", 'return { ["password"] = "x" };')
    report = await import_prosody(storage, root, [HOST], _derive)
    assert report.created == [f"émile@{HOST}"]
    assert sorted(line.split(":")[0] for line in report.skipped) == [
        f"bad@name@{HOST}",
        f"nokeys@{HOST}",
    ]
    assert report.ignored == ["host other.org: not imported (not asked for or not served)"]
    account = await storage.get_account("émile", HOST)
    assert account is not None and account.sha256 is not None  # derived from the password
    vcard = await storage.get_data("émile", HOST, "vcard", "vcard")
    assert vcard == "<vCard xmlns='vcard-temp'><FN>Émile</FN></vCard>"


async def test_nothing_is_written_when_a_file_does_not_parse(
    tmp_path: Path, storage: Storage
) -> None:
    root = tmp_path / "prosody"
    _write(root, "example%2eorg", "accounts", "a", 'return { ["password"] = "pw" };')
    _write(root, "example%2eorg", "accounts", "b", 'return { ["password"] = "pw" };')
    _write(root, "example%2eorg", "offline", "b", "item({ name = 'message' }) item(", "list")
    with pytest.raises(NotProsodyData, match=r"offline/b\.list: line 1"):
        await import_prosody(storage, root, [HOST], _derive)
    assert await storage.list_accounts() == []
    with pytest.raises(NotProsodyData, match=r"has no data for nowhere\.org"):
        await import_prosody(storage, root, ["nowhere.org"], _derive)
