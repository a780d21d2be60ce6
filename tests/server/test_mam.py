"""XEP-0313 Message Archive Management over real sockets: what is archived (§5.1.1), the
XEP-0359 stanza-id, queries and their errors, preferences (issue 12). Paging through 10,000
messages is in ``test_mam_paging.py``; retention, deletion and the writer in
``test_mam_storage.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.jid import JID
from roost.core.mam import MAM0, MAM1, MAM2, MAM2_EXTENDED, RSM, SID
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import PASSWORDS, Logins, drain, start_server
from tests.server.mam_helpers import (
    FORWARD,
    archive_module,
    error_condition,
    fin,
    forwarded,
    ids_of,
    mam,
    stanza_ids,
)


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


# -- disco ---------------------------------------------------------------------------------


async def test_the_account_advertises_mam(logins: Logins) -> None:
    a = await logins("alice", "a")
    await a.send(
        f"<iq type='get' id='i' to='alice@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    reply = await a.expect(lambda e: e.get("id") == "i")
    query = reply.find("query", ns.DISCO_INFO)
    assert query is not None
    features = {f.get("var") for f in query.find_all("feature", ns.DISCO_INFO)}
    assert {MAM2, MAM2_EXTENDED, MAM1, MAM0, SID} <= features


# -- what is archived ------------------------------------------------------------------------


async def test_a_chat_is_archived_for_both_parties_with_a_stanza_id(logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send(
        "<message to='bob@localhost' type='chat' id='m1'><body>hi bob</body>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='o-1'/></message>"
    )
    got = await b.expect(lambda e: e.tag == "message")
    ((by, sid),) = stanza_ids(got)
    assert by == "bob@localhost" and sid
    # bob's archive: the message as delivered, under the id it was stamped with
    results, iq = await mam(b)
    assert ids_of(results) == [sid]
    msg = forwarded(results[0])
    assert msg.get("from") == "alice@localhost/a" and msg.get("to") == "bob@localhost"
    assert msg.find("body", ns.CLIENT).text == "hi bob"  # type: ignore[union-attr]
    origin = msg.find("origin-id", SID)
    assert origin is not None and origin.get("id") == "o-1"  # XEP-0359 origin-id kept
    result = results[0].find("result", MAM2)
    assert result is not None
    assert results[0].get("from") == "bob@localhost" and results[0].get("to") == b.jid
    delay = result.find("forwarded", FORWARD).find("delay", ns.DELAY)  # type: ignore[union-attr]
    assert delay is not None and delay.get("stamp", "").endswith("Z")
    assert fin(iq) == (True, [sid, sid], 0, 1)
    # alice's archive: the sent message, found by its peer
    results, iq = await mam(a, {"with": "bob@localhost"})
    assert len(results) == 1
    assert forwarded(results[0]).find("body", ns.CLIENT).text == "hi bob"  # type: ignore[union-attr]
    results, iq = await mam(a, {"with": "carol@localhost"})
    assert results == [] and fin(iq) == (True, [], None, 0)


async def test_the_archived_copies_are_what_was_sent_and_delivered(logins: Logins) -> None:
    """#12: the recipient's copy reuses the sender's serialisation with the stanza-id
    spliced in; it must be exactly the stanza bob received, and alice's copy the same
    without bob's stanza-id."""
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send(
        "<message to='bob@localhost' type='chat' id='q&apos;&amp;'><body>a &lt; b &amp; 'c'"
        "</body><thread>t1</thread></message>"
    )
    got = await b.expect(lambda e: e.tag == "message")
    results, _ = await mam(b)
    assert serialize(forwarded(results[0])) == serialize(got)
    results, _ = await mam(a)
    sent = forwarded(results[0])
    assert stanza_ids(sent) == []
    got.children = [c for c in got.children if isinstance(c, str) or c.ns != SID]
    assert serialize(sent) == serialize(got)


async def test_spoofed_stanza_ids_are_removed(logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send(
        "<message to='bob@localhost' type='chat'><body>x</body>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='elsewhere.example' id='kept'/></message>"
    )
    got = await b.expect(lambda e: e.tag == "message")
    ids = stanza_ids(got)
    assert ("elsewhere.example", "kept") in ids
    assert [i for by, i in ids if by == "bob@localhost"] != ["forged"]
    assert len([1 for by, _ in ids if by == "bob@localhost"]) == 1


@pytest.mark.parametrize(
    "stanza",
    [
        "<message to='bob@localhost' type='chat'>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message to='bob@localhost' type='headline'><body>news</body></message>",
        "<message to='bob@localhost' type='chat'><body>secret</body>"
        "<no-store xmlns='urn:xmpp:hints'/></message>",
        "<message to='bob@localhost' type='chat'><body>secret</body>"
        "<no-permanent-store xmlns='urn:xmpp:hints'/></message>",
        "<message to='bob@localhost/b' type='error'><body>x</body>"
        "<error type='cancel' code='404'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    ],
    ids=["chat-state", "headline", "no-store", "no-permanent-store", "error"],
)
async def test_what_is_not_archived(logins: Logins, stanza: str) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send(stanza)
    await drain(b)
    for c in (a, b):
        results, iq = await mam(c)
        assert results == [] and fin(iq)[3] == 0


async def test_normal_messages_and_store_hints_are_archived(logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send("<message to='bob@localhost'><body>normal</body></message>")
    await a.send(
        "<message to='bob@localhost' type='chat'>"
        "<encrypted xmlns='eu.siacs.conversations.axolotl'/>"
        "<store xmlns='urn:xmpp:hints'/></message>"
    )
    await drain(b)
    results, iq = await mam(b)
    assert len(results) == 2 and fin(iq)[0]


async def test_an_offline_message_is_archived_with_the_id_it_is_stored_with(
    logins: Logins,
) -> None:
    a = await logins("alice", "a")
    await a.send("<message to='bob@localhost' type='chat' id='off'><body>later</body></message>")
    await drain(a)
    b = await logins("bob", "b")
    got = await b.expect(lambda e: e.tag == "message" and e.get("id") == "off")
    ((by, sid),) = stanza_ids(got)
    assert by == "bob@localhost"
    results, _ = await mam(b)
    assert ids_of(results) == [sid]


async def test_messages_to_oneself_are_archived_once(logins: Logins) -> None:
    a = await logins("alice", "a")
    await a.send("<message to='alice@localhost' type='chat'><body>note</body></message>")
    await drain(a)
    results, iq = await mam(a, {"with": "alice@localhost"})
    assert len(results) == 1 and fin(iq)[3] == 1


async def test_mam_1_namespace_works_too(logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send("<message to='bob@localhost' type='chat'><body>v1</body></message>")
    await drain(b)
    results, iq = await mam(b, {"with": "alice@localhost"}, mam_ns=MAM1)
    assert len(results) == 1 and fin(iq, MAM1)[0]


# -- errors ----------------------------------------------------------------------------------

async def test_mam_0_answers_first_and_ends_with_a_sentinel_message(logins: Logins) -> None:
    """XEP-0313 v0.3 (``urn:xmpp:mam:0``, revision history): the iq result comes first and
    empty, then the results, then ``<fin/>`` in a message naming the query."""
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send("<message to='bob@localhost' type='chat'><body>v0</body></message>")
    await drain(b)
    await b.send(
        f"<iq type='set' id='q0'><query xmlns='{MAM0}' queryid='old'>"
        f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{MAM0}</value></field><field var='with'><value>alice@localhost</value>"
        "</field></x></query></iq>"
    )
    iq = await b.next()
    assert iq.tag == "iq" and iq.get("id") == "q0" and iq.get("type") == "result"
    assert iq.children == []
    got = await b.next()
    result = got.find("result", MAM0)
    assert result is not None and result.get("queryid") == "old"
    body = result.find("forwarded", FORWARD).find("message", ns.CLIENT).find("body", ns.CLIENT)  # type: ignore[union-attr]
    assert body is not None and body.text == "v0"
    sentinel = await b.next()
    assert sentinel.tag == "message" and sentinel.get("from") == "bob@localhost"
    end = sentinel.find("fin", MAM0)
    assert end is not None and end.get("queryid") == "old" and end.get("complete") == "true"
    rsm = end.find("set", RSM)
    assert rsm is not None
    assert [e.text for e in rsm.elements()] == [result.get("id"), result.get("id"), "1"]



@pytest.mark.parametrize(
    ("fields", "rsm", "condition"),
    [
        ({}, "<after>nope</after>", "item-not-found"),
        ({}, "<before>nope</before>", "item-not-found"),
        ({"after-id": "nope"}, "", "item-not-found"),
        ({"ids": ["nope"]}, "", "item-not-found"),
        ({"start": "yesterday"}, "", "bad-request"),
        ({"with": "@@"}, "", "bad-request"),
        ({"colour": "blue"}, "", "feature-not-implemented"),
        ({}, "<max>many</max>", "bad-request"),
        ({}, "<index>3</index>", "feature-not-implemented"),
    ],
)
async def test_query_errors(
    logins: Logins, fields: dict[str, str | list[str]], rsm: str, condition: str
) -> None:
    a = await logins("alice", "a")
    results, iq = await mam(a, fields, rsm)
    assert results == [] and error_condition(iq) == condition


async def test_a_wrong_form_type_is_a_bad_request(logins: Logins) -> None:
    a = await logins("alice", "a")
    await a.send(
        f"<iq type='set' id='ft'><query xmlns='{MAM2}'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>"
        "<value>urn:example</value></field></x></query></iq>"
    )
    assert error_condition(await a.expect(lambda e: e.get("id") == "ft")) == "bad-request"


async def test_another_users_archive_is_forbidden(logins: Logins) -> None:
    a = await logins("alice", "a")
    results, iq = await mam(a, to="bob@localhost")
    assert results == [] and error_condition(iq) == "forbidden"


async def test_the_query_form_lists_the_fields(logins: Logins) -> None:
    a = await logins("alice", "a")
    await a.send(f"<iq type='get' id='f'><query xmlns='{MAM2}'/></iq>")
    reply = await a.expect(lambda e: e.get("id") == "f")
    form = reply.find("query", MAM2).find("x", "jabber:x:data")  # type: ignore[union-attr]
    assert form is not None
    fields = {f.get("var") for f in form.find_all("field", "jabber:x:data")}
    assert fields == {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}


# -- preferences -----------------------------------------------------------------------------


async def test_preferences_decide_what_is_archived(logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    c = await logins("carol", "c")
    await a.send(
        f"<iq type='set' id='p1'><prefs xmlns='{MAM2}' default='always'>"
        "<always/><never><jid>bob@localhost</jid></never></prefs></iq>"
    )
    reply = await a.expect(lambda e: e.get("id") == "p1")
    assert reply.get("type") == "result", serialize(reply)
    await a.send(f"<iq type='get' id='p2'><prefs xmlns='{MAM2}'/></iq>")
    reply = await a.expect(lambda e: e.get("id") == "p2")
    prefs = reply.find("prefs", MAM2)
    assert prefs is not None and prefs.get("default") == "always"
    never = prefs.find("never", MAM2)
    assert never is not None and [j.text for j in never.find_all("jid", MAM2)] == ["bob@localhost"]
    await a.send("<message to='bob@localhost' type='chat'><body>off the record</body></message>")
    await a.send("<message to='carol@localhost' type='chat'><body>on it</body></message>")
    await b.send("<message to='alice@localhost' type='chat'><body>also off</body></message>")
    await drain(b)
    await drain(c)
    await drain(a)
    results, _ = await mam(a)
    assert [forwarded(r).find("body", ns.CLIENT).text for r in results] == ["on it"]  # type: ignore[union-attr]
    # bob's own archive follows bob's preferences (the default: always)
    results, _ = await mam(b)
    assert len(results) == 2
    # default 'never', 'roster' with nobody in it
    for default in ("never", "roster"):
        await c.send(
            f"<iq type='set' id='p{default}'><prefs xmlns='{MAM2}' default='{default}'/></iq>"
        )
        assert (await c.expect(lambda e, d=default: e.get("id") == f"p{d}")).get("type") == "result"
        await a.send("<message to='carol@localhost' type='chat'><body>unseen</body></message>")
        await drain(c)
        results, _ = await mam(c)
        assert len(results) == 1  # only the first message, from before
    await b.send(f"<iq type='set' id='bad'><prefs xmlns='{MAM2}' default='sometimes'/></iq>")
    assert error_condition(await b.expect(lambda e: e.get("id") == "bad")) == "bad-request"


async def test_preferences_survive_a_restart(tmp_path: Path) -> None:
    srv = await start_server(tmp_path)
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    await srv.accounts.create("bob", "localhost", PASSWORDS["bob"])
    logins = Logins(srv)
    a = await logins("alice", "a")
    await a.send(f"<iq type='set' id='p'><prefs xmlns='{MAM2}' default='never'/></iq>")
    assert (await a.expect(lambda e: e.get("id") == "p")).get("type") == "result"
    await logins.close()
    await srv.stop()
    srv = await start_server(tmp_path)
    logins = Logins(srv)
    try:
        b = await logins("bob", "b")  # alice is offline: her preferences are not "cached"
        await b.send("<message to='alice@localhost' type='chat'><body>x</body></message>")
        await drain(b)
        a = await logins("alice", "a")
        await drain(a)
        results, _ = await mam(a)
        assert results == []
    finally:
        await logins.close()
        await srv.stop()


async def test_the_service_knows_who_uses_the_archive(server: Server, logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send("<message to='bob@localhost/b' type='chat'><body>x</body></message>")
    got = await b.expect(lambda e: e.tag == "message")
    service = archive_module(server)
    session_a = server.sessions.get(JID.parse("alice@localhost/a"))
    assert session_a is not None and not service.queried(session_a)
    await mam(a, {}, "<max>0</max>")
    assert service.queried(session_a)
    ((_, sid),) = stanza_ids(got)
    assert service.archived(JID.parse("bob@localhost"), got) == sid
    assert service.archived(JID.parse("alice@localhost"), got) is None
