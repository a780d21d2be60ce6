"""#14 acceptance 6: XEP-0227 export from one Roost and import into a fresh one: every
account logs in with its old password; rosters, vCards, private XML, privacy lists (the
blocklist with them), offline messages and pending subscription requests are identical."""

from __future__ import annotations

from pathlib import Path

from roost.core.xml.writer import serialize
from roost.storage.pie import export_xml, import_xml
from roost.storage.sqlite import SQLiteStorage
from tests.helpers import PASSWORDS, RawClient, start_server
from tests.server.test_cli import run_roost, write_config

VCARD = "<vCard xmlns='vcard-temp'><FN>Alice A.</FN><NICKNAME>al</NICKNAME></vCard>"
PRIVATE = "<prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs>"
PRIVACY = (
    "<list name='work'><item type='jid' value='mallory@localhost' action='deny' order='1'/>"
    "<item action='allow' order='2'/></list>"
)


async def _seed(tmp_path: Path) -> None:
    """Data made the way clients make it, over XMPP."""
    srv = await start_server(tmp_path / "a")
    try:
        for user in ("alice", "bob", "carol"):
            await srv.accounts.create(user, "localhost", PASSWORDS[user])
        alice = await RawClient.connect(srv)
        await alice.login("alice", PASSWORDS["alice"], "r")
        for i, xml in enumerate(
            [
                f"<iq type='set' id='v'><vCard xmlns='vcard-temp'>{VCARD[26:-8]}</vCard></iq>",
                f"<iq type='set' id='p'><query xmlns='jabber:iq:private'>{PRIVATE}</query></iq>",
                f"<iq type='set' id='l'><query xmlns='jabber:iq:privacy'>{PRIVACY}</query></iq>",
                "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
                "<item jid='spam@example.org'/></block></iq>",
                "<iq type='set' id='r'><query xmlns='jabber:iq:roster'>"
                "<item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>",
            ]
        ):
            await alice.send(xml)
            got = await alice.expect(lambda e, i=i: e.tag == "iq" and e.get("type") != "set")
            assert got.get("type") == "result", serialize(got)
        await alice.send("<presence to='bob@localhost' type='subscribe'/>")  # pending for bob
        await alice.send(
            "<message to='carol@localhost' type='chat' id='o1'><body>later</body></message>"
        )
        await alice.ping()
        await srv.idle()
        await alice.close()
    finally:
        await srv.stop()


async def _state(storage: SQLiteStorage, user: str) -> dict[str, object]:
    roster = await storage.get_roster(user, "localhost")
    account = await storage.get_account(user, "localhost")
    return {
        "account": account,
        "roster": sorted(roster.items.items()),
        "pending": roster.pending_in,
        "offline": [text for text, _ in await storage.list_offline(user, "localhost")],
        "vcard": await storage.get_data(user, "localhost", "vcard", "vcard"),
        "private": await storage.list_data(user, "localhost", "private"),
        "privacy": await storage.list_data(user, "localhost", "privacy"),
    }


async def test_round_trip_is_lossless(tmp_path: Path) -> None:
    await _seed(tmp_path)
    old = SQLiteStorage(tmp_path / "a" / "roost.db")
    await old.open()
    document = await export_xml(old, ["localhost"])
    before = {u: await _state(old, u) for u in ("alice", "bob", "carol")}
    await old.close()
    assert "password=" not in document  # SCRAM keys only (XEP-0227 §8)
    new = SQLiteStorage(tmp_path / "b" / "roost.db")
    await new.open()
    report = await import_xml(new, document, ["localhost"])
    assert sorted(report.created) == ["alice@localhost", "bob@localhost", "carol@localhost"]
    assert report.skipped == []
    after = {u: await _state(new, u) for u in ("alice", "bob", "carol")}
    await new.close()
    for user in before:
        for key in before[user]:
            assert after[user][key] == before[user][key], (user, key)
    assert before["alice"]["vcard"] and before["alice"]["private"] and before["alice"]["privacy"]
    assert before["bob"]["pending"] and before["carol"]["offline"]
    # and in the new server: the old password works, the offline message comes
    srv = await start_server(tmp_path / "b")
    try:
        carol = await RawClient.connect(srv)
        await carol.login("carol", PASSWORDS["carol"], "r")
        await carol.send("<presence/>")
        got = await carol.expect(lambda e: e.tag == "message")
        assert got.get("id") == "o1" and got.find("delay", "urn:xmpp:delay") is not None
        await carol.close()
    finally:
        await srv.stop()


def test_the_cli_exports_and_imports(tmp_path: Path) -> None:
    src = write_config(tmp_path, 0, 0, name="a.toml")
    r = run_roost(
        "user", "add", "dave@localhost", "--password", "dave-pw", "--config", str(src), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "export.xml"
    r = run_roost("export", str(out), "--config", str(src), cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"exported 1 account to {out}", r
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "b").mkdir()
    dst = write_config(tmp_path / "b", 0, 0, name="b.toml")
    r = run_roost("import", str(out), "--config", str(dst), cwd=tmp_path / "b")
    assert r.returncode == 0 and r.stdout.strip() == "imported 1 account", r
    r = run_roost("import", str(out), "--config", str(dst), cwd=tmp_path / "b")
    assert r.returncode == 1 and "skipped dave@localhost: already exists" in r.stdout
    r = run_roost("import", str(tmp_path / "nope.xml"), "--config", str(dst), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("roost: cannot read"), r.stderr


async def test_an_account_without_sha256_keys_round_trips(tmp_path: Path) -> None:
    """Imported from Prosody (SCRAM-SHA-1 keys only): exported with the keys it has
    (XEP-0227 §3.3) and imported back as it was, not skipped."""
    import dataclasses

    from roost.storage.credentials import make_account

    account = dataclasses.replace(make_account("p", "localhost", "pw", 4096), sha256=None)
    source, target = SQLiteStorage(tmp_path / "a.db"), SQLiteStorage(tmp_path / "b.db")
    await source.open()
    await target.open()
    try:
        await source.create_account(account)
        text = await export_xml(source, ["localhost"])
        assert "SCRAM-SHA-1" in text and "SCRAM-SHA-256" not in text
        report = await import_xml(target, text, ["localhost"])
        assert report.created == ["p@localhost"] and report.skipped == []
        assert await target.get_account("p", "localhost") == account
    finally:
        await source.close()
        await target.close()
