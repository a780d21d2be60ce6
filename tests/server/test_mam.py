"""XEP-0313 Message Archive Management over real sockets: what is archived (§5.1.1), the
XEP-0359 stanza-id, queries with forms and XEP-0059 paging, errors, preferences, retention
(issue 12, MAM acceptance 3)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.jid import JID
from roost.core.mam import MAM1, MAM2, MAM2_EXTENDED, RSM, SID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.modules.mam import MamModule
from roost.storage.api import ArchivedMessage, ArchiveQuery
from tests.helpers import PASSWORDS, Logins, RawClient, drain, quiet, start_server

FORWARD = "urn:xmpp:forward:0"


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


def _archive(server: Server) -> MamModule:
    module = server.services["archive"]
    assert isinstance(module, MamModule)
    return module


def _form(fields: dict[str, str | list[str]], mam_ns: str = MAM2) -> str:
    out = [
        f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{mam_ns}</value></field>"
    ]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out.append(
            f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
        )
    out.append("</x>")
    return "".join(out)


_qids = iter(range(1_000_000))


async def mam(
    c: RawClient,
    fields: dict[str, str | list[str]] | None = None,
    rsm: str = "",
    *,
    to: str | None = None,
    extra: str = "",
    mam_ns: str = MAM2,
) -> tuple[list[Element], Element]:
    """Run one query: the result messages (checked against the query id) and the iq."""
    n = next(_qids)
    form = _form(fields, mam_ns) if fields is not None else ""
    rsm_el = f"<set xmlns='{RSM}'>{rsm}</set>" if rsm else ""
    target = f" to='{to}'" if to else ""
    await c.send(
        f"<iq type='set' id='mq{n}'{target}><query xmlns='{mam_ns}' queryid='q{n}'>"
        f"{form}{rsm_el}{extra}</query></iq>"
    )
    results: list[Element] = []
    while True:
        el = await c.next()
        if el.tag == "iq" and el.get("id") == f"mq{n}":
            return results, el
        result = el.find("result", mam_ns)
        assert el.tag == "message" and result is not None, serialize(el)
        assert result.get("queryid") == f"q{n}"
        results.append(el)


def ids_of(results: list[Element]) -> list[str]:
    out = []
    for el in results:
        result = el.find("result", MAM2) or el.find("result", MAM1)
        assert result is not None
        out.append(result.get("id") or "")
    return out


def forwarded(el: Element) -> Element:
    result = el.find("result", MAM2) or el.find("result", MAM1)
    assert result is not None
    fwd = result.find("forwarded", FORWARD)
    assert fwd is not None
    msg = fwd.find("message", ns.CLIENT)
    assert msg is not None
    return msg


def fin(iq: Element, mam_ns: str = MAM2) -> tuple[bool, list[str], int | None, int | None]:
    """(complete, [first, last] ids, first index, count) of a query's result."""
    assert iq.get("type") == "result", serialize(iq)
    f = iq.find("fin", mam_ns)
    assert f is not None, serialize(iq)
    rsm = f.find("set", RSM)
    assert rsm is not None
    first, last, count = rsm.find("first", RSM), rsm.find("last", RSM), rsm.find("count", RSM)
    bounds = [first.text, last.text] if first is not None and last is not None else []
    index = int(first.get("index") or 0) if first is not None else None
    return (
        f.get("complete") == "true",
        bounds,
        index,
        int(count.text) if count is not None else None,
    )


def error_condition(iq: Element) -> str:
    assert iq.get("type") == "error", serialize(iq)
    err = iq.find("error", ns.CLIENT)
    assert err is not None
    return next(c.tag for c in err.elements() if c.ns == ns.STANZAS)


def stanza_ids(msg: Element) -> list[tuple[str | None, str | None]]:
    return [(s.get("by"), s.get("id")) for s in msg.find_all("stanza-id", SID)]


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
    assert {MAM2, MAM2_EXTENDED, MAM1, SID} <= features


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


# -- 10,000 messages: paging both ways, filters (acceptance 3) ---------------------------------

N = 10_000
#: archived a millisecond apart, from an hour ago
T0 = int((time.time() - 3600) * 1_000_000)


def _peer(i: int) -> str:
    return "bob@localhost" if i % 2 == 0 else "carol@localhost"


async def _fill(server: Server) -> list[str]:
    """N messages in alice's archive, written through the storage API in one batch."""
    rows = []
    for i in range(N):
        peer = _peer(i)
        outgoing = i % 3 == 0
        frm, to = ("alice@localhost/a", peer) if outgoing else (f"{peer}/x", "alice@localhost")
        rows.append(
            ArchivedMessage(
                username="alice",
                domain="localhost",
                seq=T0 + i * 1000,
                peer=peer,
                resource="a" if outgoing else "x",
                outgoing=outgoing,
                stanza=f"<message from='{frm}' to='{to}' type='chat'><body>{i}</body></message>",
            )
        )
    assert await server.storage.archive_messages(rows) == N
    return [r.id for r in rows]


def _when(i: int) -> str:
    from roost.core.delay import xep0082_datetime

    return xep0082_datetime((T0 + i * 1000) / 1_000_000)


async def test_ten_thousand_messages_page_both_ways(server: Server, logins: Logins) -> None:
    ids = await _fill(server)
    position = {archive_id: n for n, archive_id in enumerate(ids)}
    a = await logins("alice", "a")
    # forward, 250 at a time
    seen: list[str] = []
    after = ""
    while True:
        results, iq = await mam(a, {}, f"<max>250</max>{after}")
        complete, bounds, index, count = fin(iq)
        page = ids_of(results)
        assert count == N and index == len(seen) and bounds == [page[0], page[-1]]
        bodies = [forwarded(r).find("body", ns.CLIENT).text for r in results]  # type: ignore[union-attr]
        assert bodies == [str(position[i]) for i in page]
        seen += page
        assert complete == (len(seen) == N)
        if complete:
            break
        after = f"<after>{page[-1]}</after>"
    assert seen == ids
    # backward from the end: pages in chronological order inside, complete at the start
    seen = []
    before = "<before/>"
    while True:
        results, iq = await mam(a, {}, f"<max>300</max>{before}")
        complete, bounds, index, count = fin(iq)
        page = ids_of(results)
        assert page == sorted(page) and count == N and index == N - len(seen) - len(page)
        seen = page + seen
        assert complete == (len(seen) == N)
        if complete:
            break
        before = f"<before>{page[0]}</before>"
    assert seen == ids
    # the server's page limit: more than max_page asked, max_page given, not complete
    results, iq = await mam(a, {}, "<max>100000</max>")
    assert len(results) == 250 and not fin(iq)[0]
    # max 0: the count only
    results, iq = await mam(a, {}, "<max>0</max>")
    assert results == [] and fin(iq) == (False, [], None, N)


async def test_ten_thousand_messages_with_filters(server: Server, logins: Logins) -> None:
    ids = await _fill(server)
    a = await logins("alice", "a")
    # with + paging backwards through one peer's half
    bob = [i for n, i in enumerate(ids) if _peer(n) == "bob@localhost"]
    seen: list[str] = []
    before = "<before/>"
    while True:
        results, iq = await mam(a, {"with": "bob@localhost"}, f"<max>500</max>{before}")
        complete, _, index, count = fin(iq)
        page = ids_of(results)
        assert count == N // 2 and index == N // 2 - len(seen) - len(page)
        seen = page + seen
        if complete:
            break
        before = f"<before>{page[0]}</before>"
    assert seen == bob
    # a full JID matches that resource only: carol's messages to alice come from carol/x
    results, iq = await mam(a, {"with": "carol@localhost/x"}, "<max>0</max>")
    assert fin(iq)[3] == len([n for n in range(N) if _peer(n) == "carol@localhost" and n % 3])
    # start and end are inclusive
    results, iq = await mam(a, {"start": _when(100), "end": _when(199)}, "<max>250</max>")
    assert ids_of(results) == ids[100:200] and fin(iq)[0]
    # with + start + paging forwards
    results, iq = await mam(
        a,
        {"with": "carol@localhost", "start": _when(9000)},
        f"<max>100</max><after>{ids[9001]}</after>",
    )
    carol_late = [i for n, i in enumerate(ids) if n > 9001 and _peer(n) == "carol@localhost"]
    assert ids_of(results) == carol_late[:100]
    complete, _, index, count = fin(iq)
    assert (complete, index, count) == (False, 1, 500)
    # after-id and before-id bound the set (exclusive); RSM still pages in it
    results, iq = await mam(
        a, {"after-id": ids[4999], "before-id": ids[5100]}, "<max>60</max><before/>"
    )
    assert ids_of(results) == ids[5040:5100]
    assert fin(iq) == (False, [ids[5040], ids[5099]], 40, 100)
    # ids: exactly these, in archive order; flip-page reverses a page, not the set
    wanted = [ids[7], ids[9999], ids[3]]
    results, iq = await mam(a, {"ids": wanted})
    assert ids_of(results) == [ids[3], ids[7], ids[9999]] and fin(iq)[0]
    results, iq = await mam(a, {}, f"<max>5</max><after>{ids[10]}</after>", extra="<flip-page/>")
    assert ids_of(results) == ids[11:16][::-1]
    # metadata (XEP-0313 §5)
    await a.send(f"<iq type='get' id='md'><metadata xmlns='{MAM2}'/></iq>")
    md = (await a.expect(lambda e: e.get("id") == "md")).find("metadata", MAM2)
    assert md is not None
    assert md.find("start", MAM2).get("id") == ids[0]  # type: ignore[union-attr]
    assert md.find("end", MAM2).get("id") == ids[-1]  # type: ignore[union-attr]


# -- retention -------------------------------------------------------------------------------


async def test_expiry_and_max_items(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, archive={"expire_after": "1d", "max_items": 3})
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    await srv.accounts.create("bob", "localhost", PASSWORDS["bob"])
    now = int(time.time() * 1_000_000)
    day = 86400 * 1_000_000
    rows = [
        ArchivedMessage(
            "alice",
            "localhost",
            now - 3 * day + i,
            "bob@localhost",
            None,
            False,
            "<message><body>old</body></message>",
        )
        for i in range(5)
    ] + [
        ArchivedMessage(
            "alice",
            "localhost",
            now - day // 2 + i,
            "bob@localhost",
            None,
            False,
            "<message><body>new</body></message>",
        )
        for i in range(5)
    ]
    await srv.storage.archive_messages(rows)
    logins = Logins(srv)
    try:
        a = await logins("alice", "a")
        results, _ = await mam(a)
        assert len(results) == 10
        assert await _archive(srv).cleanup() == 7  # 5 expired, then 2 over max_items
        results, iq = await mam(a)
        assert ids_of(results) == [r.id for r in rows[-3:]] and fin(iq)[3] == 3
    finally:
        await logins.close()
        await srv.stop()


async def test_expiry_runs_by_itself(tmp_path: Path) -> None:
    import asyncio

    srv = await start_server(tmp_path, archive={"expire_after": 60, "cleanup_interval": 1})
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    old = int((time.time() - 120) * 1_000_000)
    await srv.storage.archive_messages(
        [
            ArchivedMessage(
                "alice",
                "localhost",
                old,
                "bob@localhost",
                None,
                False,
                "<message><body>old</body></message>",
            )
        ]
    )
    try:
        async with asyncio.timeout(5):
            while (await srv.storage.last_archive_seq()) != 0:
                await asyncio.sleep(0.05)  # polling for the timer, bounded by the timeout
    finally:
        await srv.stop()


async def test_deleting_the_account_deletes_the_archive(server: Server, logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    await a.send("<message to='bob@localhost' type='chat'><body>x</body></message>")
    await drain(b)
    results, _ = await mam(a)
    assert len(results) == 1
    # XEP-0077 §3.2 in-band removal: the account and everything it had
    await a.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    assert (await a.expect(lambda e: e.get("id") == "bye")).get("type") == "result"
    assert await a.stream_error() == "not-authorized"
    page = await server.storage.query_archive("alice", "localhost", ArchiveQuery())
    assert page.count == 0
    results, _ = await mam(b)  # bob's copy is bob's
    assert len(results) == 1


async def test_a_new_account_of_the_same_name_starts_with_default_prefs(
    server: Server, logins: Logins
) -> None:
    a = await logins("alice", "a")
    await a.send(f"<iq type='set' id='p'><prefs xmlns='{MAM2}' default='never'/></iq>")
    assert (await a.expect(lambda e: e.get("id") == "p")).get("type") == "result"
    await a.send("<iq type='set' id='bye'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    assert (await a.expect(lambda e: e.get("id") == "bye")).get("type") == "result"
    await a.wait_closed()
    await server.idle()
    await server.accounts.create("alice", "localhost", PASSWORDS["alice"])
    a = await logins("alice", "a2")
    await a.send(f"<iq type='get' id='p2'><prefs xmlns='{MAM2}'/></iq>")
    prefs = (await a.expect(lambda e: e.get("id") == "p2")).find("prefs", MAM2)
    assert prefs is not None and prefs.get("default") == "always"


# -- batching --------------------------------------------------------------------------------


async def test_a_burst_is_written_in_few_transactions(server: Server, logins: Logins) -> None:
    a = await logins("alice", "a")
    b = await logins("bob", "b")
    calls: list[int] = []
    real = server.storage.archive_messages

    async def counting(messages):  # type: ignore[no-untyped-def]
        batch = list(messages)
        calls.append(len(batch))
        return await real(batch)

    server.storage.archive_messages = counting  # type: ignore[method-assign]
    burst = "".join(
        f"<message to='bob@localhost' type='chat' id='b{i}'><body>{i}</body></message>"
        for i in range(500)
    )
    await a.send(burst)
    await drain(b)
    await quiet(a)
    # 1000 archived (500 sent, 500 received), in far fewer transactions
    assert sum(calls) == 1000 and len(calls) < 100, calls
    _, iq = await mam(b, {}, "<max>0</max>")
    assert fin(iq)[3] == 500


async def test_flushed_means_committed(tmp_path: Path) -> None:
    """``ARCHIVE.flushed()``: every message routed before the call is in storage when it
    returns, also one still waiting in the router for its parties' privacy lists (after a
    restart nothing of alice's or carol's is in memory)."""
    srv = await start_server(tmp_path)
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    await srv.stop()
    srv = await start_server(tmp_path, archive={"batch_delay": 0})
    try:
        msg = parse_fragment(
            "<message from='alice@localhost/a' to='carol@localhost' type='chat'>"
            "<body>through the router</body></message>"
        )
        srv.router.route(msg, JID.parse("alice@localhost/a"), JID.parse("carol@localhost"))
        assert srv.router._deferred  # waiting for the lists to be read
        await _archive(srv).flushed()
        page = await srv.storage.query_archive("carol", "localhost", ArchiveQuery(limit=0))
        assert page.count == 1
    finally:
        await srv.stop()


async def test_a_full_queue_is_reported_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer stuck behind the disk: the queue stops at its bound, what is beyond is not
    archived, and ``flushed`` raises instead of promising it."""
    import asyncio

    from roost.server.modules import mam as mam_module
    from roost.storage.api import StorageError

    monkeypatch.setattr(mam_module, "_MAX_QUEUE", 3)
    srv = await start_server(tmp_path, archive={"batch_delay": 0})
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    disk = asyncio.Event()
    real = srv.storage.archive_messages

    async def stuck(messages):  # type: ignore[no-untyped-def]
        batch = list(messages)
        await disk.wait()
        return await real(batch)

    srv.storage.archive_messages = stuck  # type: ignore[method-assign]
    logins = Logins(srv)
    try:
        a = await logins("alice", "a")
        b = await logins("bob", "b")
        await a.send("<message to='bob@localhost' type='chat' id='m0'><body>0</body></message>")
        # delivered: the writer has taken its batch (two rows) and waits for the disk
        await b.expect(lambda e: e.get("id") == "m0")
        await a.send(
            "".join(
                f"<message to='bob@localhost' type='chat' id='m{i}'><body>{i}</body></message>"
                for i in range(1, 6)
            )
        )
        got = [await b.expect(lambda e: e.tag == "message") for _ in range(5)]
        stamped = [m for m in got if m.find("stanza-id", SID) is not None]
        flushing = asyncio.ensure_future(_archive(srv).flushed())
        disk.set()
        with pytest.raises(StorageError):
            await flushing
        rows = await srv.storage.query_archive("alice", "localhost", ArchiveQuery(limit=0))
        rows_b = await srv.storage.query_archive("bob", "localhost", ArchiveQuery(limit=0))
        assert rows.count + rows_b.count == 2 + 3
        assert rows_b.count == 1 + len(stamped)  # a stanza-id only on what was archived
    finally:
        await logins.close()
        await srv.stop()
