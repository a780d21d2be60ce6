"""XEP-0313 archives of MUC rooms and XEP-0425 moderation at conference.localhost: raw-XML
transcripts over real sockets (exact stanzas), and the archive across ``kill -9``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from roost.core.delay import xep0082_datetime
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.storage.api import ArchiveQuery, archive_seq
from tests.conftest import PASSWORDS
from tests.helpers import Logins, RawClient, drain, eventually, quiet, start_server
from tests.server.test_cli import RoostProcess
from tests.server.test_muc import (
    DATA,
    MUC,
    OWNER,
    ROOM,
    admin,
    codes,
    configure,
    create,
    error_of,
    join,
)

MAM2 = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"
OID = "urn:xmpp:occupant-id:0"
DISCO = "http://jabber.org/protocol/disco#info"
MODERATE = "urn:xmpp:message-moderate:1"
RETRACT = "urn:xmpp:message-retract:1"


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


def stamp(archive_id: str) -> str:
    """The delay stamp a result carries: the archive id is its time in microseconds."""
    seq = archive_seq(archive_id)
    assert seq is not None
    return xep0082_datetime(seq / 1_000_000)


def stanza_id(m: Element) -> str:
    sid = m.find("stanza-id", SID)
    assert sid is not None and sid.get("by") == ROOM, serialize(m)
    return sid.get("id") or ""


def stanza_id_or_none(m: Element) -> str | None:
    sid = m.find("stanza-id", SID)
    return None if sid is None else sid.get("id")


def occupant_id(m: Element) -> str:
    oid = m.find("occupant-id", OID)
    assert oid is not None, serialize(m)
    return oid.get("id") or ""


async def chat(c: RawClient, *bodies: str) -> None:
    for i, body in enumerate(bodies):
        await c.send(
            f"<message to='{ROOM}' type='groupchat' id='m{i}'><body>{body}</body></message>"
        )


async def query(
    c: RawClient, rsm: str = "", form: str = "", qid: str = "g27", iq_id: str = "q"
) -> list[Element]:
    await c.send(
        f"<iq type='set' id='{iq_id}' to='{ROOM}'><query xmlns='{MAM2}' queryid='{qid}'>"
        f"{form}<set xmlns='{RSM}'>{rsm}</set></query></iq>"
    )
    got = await drain(c)
    assert got and got[-1].get("id") == iq_id, [serialize(e) for e in got]
    return got


def with_form(jid: str) -> str:
    return (
        f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{MAM2}</value></field><field var='with'><value>{jid}</value></field></x>"
    )


def result_xml(
    r: Element, to: str, aid: str, nick: str, mid: str, body: str, oid: str, jid: str = ""
) -> str:
    """One result as XEP-0313 §6.1.2 shows it: from the room, the message from the
    occupant JID without 'to', the real JID only for those who may see it."""
    x = (
        f"<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' jid='{jid}'/></x>"
        if jid
        else ""
    )
    return (
        f"<message to='{to}' from='{ROOM}' id='{r.get('id')}'>"
        f"<result xmlns='{MAM2}' id='{aid}' queryid='g27'>"
        "<forwarded xmlns='urn:xmpp:forward:0'>"
        f"<delay xmlns='urn:xmpp:delay' stamp='{stamp(aid)}'/>"
        f"<message xmlns='jabber:client' type='groupchat' id='{mid}' from='{ROOM}/{nick}'>"
        f"<body>{body}</body><occupant-id xmlns='{OID}' id='{oid}'/>{x}</message>"
        "</forwarded></result></message>"
    )


def fin_xml(to: str, first: str, index: int, last: str, count: int, *, complete: bool) -> str:
    done = " complete='true'" if complete else ""
    return (
        f"<iq type='result' id='q' from='{ROOM}' to='{to}'><fin xmlns='{MAM2}'{done}>"
        f"<set xmlns='{RSM}'><first index='{index}'>{first}</first><last>{last}</last>"
        f"<count>{count}</count></set></fin></iq>"
    )


async def room_with_chat(alice: RawClient, bob: RawClient) -> tuple[list[str], str]:
    """alice creates the room, bob joins and says three things: their stanza-ids and
    bob's occupant id."""
    await create(alice)
    await join(bob, "secondwitch")
    await drain(alice)
    await chat(bob, "Thrice the brinded cat hath mew'd.", "Thrice and once", "Harpier cries")
    got = await drain(bob)
    assert [m.get("id") for m in got] == ["m0", "m1", "m2"]
    await drain(alice)
    return [stanza_id(m) for m in got], occupant_id(got[0])


async def test_room_archive_paged_transcript(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    ids, oid = await room_with_chat(alice, bob)
    bodies = ["Thrice the brinded cat hath mew'd.", "Thrice and once", "Harpier cries"]
    # XEP-0313 §3.3.2, §3.4: the room's stanza-id is the archive id, and its disco says MAM
    await bob.send(f"<iq type='get' id='d' to='{ROOM}'><query xmlns='{DISCO}'/></iq>")
    (info,) = await drain(bob)
    feats = {f.get("var") for f in info.find("query", DISCO).find_all("feature")}  # type: ignore[union-attr]
    assert {MAM2, f"{MAM2}#extended", MODERATE, SID} <= feats
    # the first page of two (XEP-0059 §2.1): bob is no moderator of a semi-anonymous room
    to = bob.jid
    assert to is not None
    r1, r2, fin = await query(bob, "<max>2</max>")
    assert serialize(r1) == result_xml(r1, to, ids[0], "secondwitch", "m0", bodies[0], oid)
    assert serialize(r2) == result_xml(r2, to, ids[1], "secondwitch", "m1", bodies[1], oid)
    assert serialize(fin) == fin_xml(to, ids[0], 0, ids[1], 3, complete=False)
    # the next page (XEP-0059 §2.2)
    r3, fin = await query(bob, f"<max>2</max><after>{ids[1]}</after>")
    assert serialize(r3) == result_xml(r3, to, ids[2], "secondwitch", "m2", bodies[2], oid)
    assert serialize(fin) == fin_xml(to, ids[2], 2, ids[2], 3, complete=True)
    # the last page (XEP-0059 §2.5), then the one before it
    r2b, r3b, fin = await query(bob, "<max>2</max><before/>")
    assert [r.find("result", MAM2).get("id") for r in (r2b, r3b)] == ids[1:]  # type: ignore[union-attr]
    assert serialize(fin) == fin_xml(to, ids[1], 1, ids[2], 3, complete=False)
    _r1b, fin = await query(bob, f"<max>2</max><before>{ids[1]}</before>")
    assert serialize(fin) == fin_xml(to, ids[0], 0, ids[0], 3, complete=True)
    # alice, the owner, sees bob's real JID (XEP-0313 §6.1.2)
    ato = alice.jid
    assert ato is not None
    r1, _r2, _r3, fin = await query(alice)
    assert serialize(r1) == result_xml(
        r1,
        ato,
        ids[0],
        "secondwitch",
        "m0",
        bodies[0],
        oid,
        bob.jid or "",
    )
    assert serialize(fin) == fin_xml(ato, ids[0], 0, ids[2], 3, complete=True)
    # XEP-0313 §5: the archive's first and last message
    await bob.send(f"<iq type='get' id='md' to='{ROOM}'><metadata xmlns='{MAM2}'/></iq>")
    (md,) = await drain(bob)
    assert serialize(md) == (
        f"<iq type='result' id='md' from='{ROOM}' to='{to}'><metadata xmlns='{MAM2}'>"
        f"<start id='{ids[0]}' timestamp='{stamp(ids[0])}'/>"
        f"<end id='{ids[2]}' timestamp='{stamp(ids[2])}'/></metadata></iq>"
    )


async def test_room_archive_filters(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    ids, _ = await room_with_chat(alice, bob)
    await chat(alice, "Fair is foul")
    (own,) = [m for m in await drain(alice) if m.find("body") is not None]
    await drain(bob)
    # by occupant JID: anyone may (nicks are public)
    *results, _fin = await query(bob, form=with_form(f"{ROOM}/firstwitch"))
    assert [r.find("result", MAM2).get("id") for r in results] == [stanza_id(own)]  # type: ignore[union-attr]
    # by real JID: only for those who may see real JIDs (XEP-0313 §4.1.1)
    (err,) = await query(bob, form=with_form("alice@localhost"))
    assert err.get("type") == "error" and error_of(err) == "forbidden"
    *results, _fin = await query(alice, form=with_form("bob@localhost"))
    assert [r.find("result", MAM2).get("id") for r in results] == ids  # type: ignore[union-attr]
    # ids, after-id (XEP-0313 §4.1.3); an unknown id is item-not-found
    form = (
        f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM2}"
        f"</value></field><field var='after-id'><value>{ids[1]}</value></field></x>"
    )
    *results, _fin = await query(bob, form=form)
    assert [r.find("result", MAM2).get("id") for r in results] == [ids[2], stanza_id(own)]  # type: ignore[union-attr]
    (err,) = await query(bob, "<after>ffffffffff</after>")
    assert error_of(err) == "item-not-found"
    # by time (XEP-0313 §4.1.2): a second before the first message
    seq = archive_seq(ids[0])
    assert seq is not None
    before = xep0082_datetime(seq / 1_000_000 - 1)
    for var, expected in (("end", []), ("start", [*ids, stanza_id(own)])):
        form = (
            f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{MAM2}</value></field><field var='{var}'><value>{before}</value>"
            "</field></x>"
        )
        *results, _fin = await query(bob, form=form)
        assert [r.find("result", MAM2).get("id") for r in results] == expected  # type: ignore[union-attr]
    # the query form (XEP-0313 §4.1.5)
    await bob.send(f"<iq type='get' id='f' to='{ROOM}'><query xmlns='{MAM2}'/></iq>")
    (form_iq,) = await drain(bob)
    x = form_iq.find("query", MAM2).find("x", DATA)  # type: ignore[union-attr]
    assert x is not None and {f.get("var") for f in x.find_all("field")} >= {"with", "start", "end"}


async def test_who_may_query_the_archive(logins: Logins) -> None:
    """XEP-0313 §6.1.2: whoever may enter: not outcasts; members in a members-only room."""
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    carol = await logins("carol", "c")
    await room_with_chat(alice, bob)
    # an open room: anyone who never entered may read it
    *_results, fin = await query(carol)
    assert fin.get("type") == "result" and len(_results) == 3
    r = await admin(alice, "<item affiliation='outcast' jid='carol@localhost'/>")
    assert r.get("type") == "result"
    (err,) = await query(carol)
    assert err.get("type") == "error" and error_of(err) == "forbidden"
    assert err.get("from") == ROOM
    await admin(
        alice,
        "<item affiliation='member' jid='bob@localhost'/>"
        "<item affiliation='none' jid='carol@localhost'/>",
    )
    await configure(alice, {"muc#roomconfig_membersonly": "1"})
    await drain(bob)
    (err,) = await query(carol)
    assert error_of(err) == "forbidden"
    *_results, fin = await query(bob)
    assert fin.get("type") == "result"
    # an unknown room
    await carol.send(
        f"<iq type='set' id='x' to='nowhere@conference.localhost'><query xmlns='{MAM2}'/></iq>"
    )
    (err,) = await drain(carol)
    assert error_of(err) == "item-not-found"


async def test_archiving_can_be_turned_off(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    ids, _ = await room_with_chat(alice, bob)
    # the owner's form has the field Prosody's mod_muc_mam uses
    await alice.send(f"<iq type='get' id='c' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    (form,) = await drain(alice)
    fields = {
        f.get("var"): f.find("value").text  # type: ignore[union-attr]
        for f in form.find("query", OWNER).find("x", DATA).find_all("field")  # type: ignore[union-attr]
        if f.find("value") is not None
    }
    assert fields["muc#roomconfig_enablearchiving"] == "1"
    got = await configure(alice, {"muc#roomconfig_enablearchiving": "0"})
    notes = [e for e in got if e.tag == "message"]
    assert [codes(n) for n in notes] == [{"104", "171"}]  # XEP-0045 §10.2.1
    (note,) = await drain(bob)
    assert codes(note) == {"104", "171"}
    await bob.send(f"<iq type='get' id='d' to='{ROOM}'><query xmlns='{DISCO}'/></iq>")
    (info,) = await drain(bob)
    feats = {f.get("var") for f in info.find("query", DISCO).find_all("feature")}  # type: ignore[union-attr]
    assert MAM2 not in feats and MODERATE in feats
    # still stamped by the room, but not archived: what was archived stays readable
    await chat(bob, "not kept")
    (m,) = await drain(bob)
    assert stanza_id(m) not in ids
    await drain(alice)
    *results, _fin = await query(bob)
    assert [r.find("result", MAM2).get("id") for r in results] == ids  # type: ignore[union-attr]
    # moderation works on the history for newcomers alone
    await alice.send(
        f"<iq type='set' id='mod' to='{ROOM}'><moderate id='{stanza_id(m)}' xmlns='{MODERATE}'>"
        f"<retract xmlns='{RETRACT}'/></moderate></iq>"
    )
    notice, res = await drain(alice)
    assert res.get("type") == "result" and notice.find("retract", RETRACT) is not None
    (notice,) = await drain(bob)
    assert notice.find("retract", RETRACT).get("id") == stanza_id(m)  # type: ignore[union-attr]
    got = await join(await logins("carol", "c"), "thirdwitch")
    (last,) = [e for e in got if e.tag == "message" and stanza_id_or_none(e) == stanza_id(m)]
    assert last.find("body") is None and last.find("retracted", RETRACT) is not None
    await drain(alice)
    await drain(bob)
    got = await configure(alice, {"muc#roomconfig_enablearchiving": "1"})
    assert [codes(e) for e in got if e.tag == "message"] == [{"104", "170"}]


async def test_destroyed_room_takes_its_archive(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    await room_with_chat(alice, bob)
    await alice.send(
        f"<iq type='set' id='des' to='{ROOM}'><query xmlns='{OWNER}'><destroy/></query></iq>"
    )
    await drain(alice)
    await drain(bob)
    await create(alice)  # a new room of the same name starts empty
    (fin,) = await query(alice)
    assert (
        fin.get("type") == "result"
        and fin.find("fin", MAM2).find("set", RSM).find("count").text == "0"
    )  # type: ignore[union-attr]


async def test_moderation_transcript(logins: Logins) -> None:
    """XEP-0425 §3: the moderator retracts by stanza-id; everyone hears it; the archive and
    the history for newcomers keep a tombstone (§5)."""
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    carol = await logins("carol", "c")
    ids, bob_oid = await room_with_chat(alice, bob)
    await chat(bob, "DM me for free magic potions!")
    (spam,) = await drain(bob)
    await drain(alice)
    spam_id = stanza_id(spam)
    # a participant may not (the example's error)
    await bob.send(
        f"<iq type='set' id='mod0' to='{ROOM}'><moderate id='{spam_id}' xmlns='{MODERATE}'>"
        f"<retract xmlns='{RETRACT}'/></moderate></iq>"
    )
    (err,) = await drain(bob)
    assert err.get("type") == "error" and error_of(err) == "forbidden"
    # an unknown id
    await alice.send(
        f"<iq type='set' id='mod1' to='{ROOM}'><moderate id='nope' xmlns='{MODERATE}'>"
        f"<retract xmlns='{RETRACT}'/></moderate></iq>"
    )
    (err,) = await drain(alice)
    assert serialize(err) == (
        f"<iq type='error' id='mod1' to='{alice.jid}' from='{ROOM}'>"
        f"<error type='cancel' code='404' by='{ROOM}'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>no such message here"
        "</text>"
        "</error></iq>"
    )
    await quiet(bob)
    # the moderator's request, as in XEP-0425 §3
    await alice.send(
        f"<iq type='set' id='retract-request-1' to='{ROOM}'>"
        f"<moderate id='{spam_id}' xmlns='{MODERATE}'><retract xmlns='{RETRACT}'/>"
        "<reason>This message contains inappropriate content for this forum</reason>"
        "</moderate></iq>"
    )
    announcement, res = await drain(alice)
    (seen,) = await drain(bob)
    moderated = announcement.find("retract", RETRACT).find("moderated", MODERATE)  # type: ignore[union-attr]
    assert moderated is not None
    a_oid = occupant_id(moderated)
    ann_id = stanza_id(announcement)
    for c, got in ((alice, announcement), (bob, seen)):
        assert serialize(got) == (
            f"<message type='groupchat' from='{ROOM}' to='{c.jid}'>"
            f"<retract xmlns='{RETRACT}' id='{spam_id}'>"
            f"<moderated xmlns='{MODERATE}' by='{ROOM}/firstwitch'>"
            f"<occupant-id xmlns='{OID}' id='{a_oid}'/></moderated>"
            "<reason>This message contains inappropriate content for this forum</reason>"
            "</retract><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/>"
            "<body>A moderator retracted a message: This message contains inappropriate "
            "content for this forum</body>"
            f"<stanza-id xmlns='{SID}' id='{ann_id}' by='{ROOM}'/></message>"
        )
    assert serialize(res) == (
        f"<iq type='result' id='retract-request-1' from='{ROOM}' to='{alice.jid}'/>"
    )
    # MAM: the tombstone in place of the message, under its id and time (XEP-0425 §4)
    *results, _fin = await query(carol)
    assert [r.find("result", MAM2).get("id") for r in results] == [*ids, spam_id, ann_id]  # type: ignore[union-attr]
    tomb = results[3]
    retracted_stamp = (
        tomb.find("result", MAM2)
        .find("forwarded")
        .find("message")
        .find("retracted", RETRACT)
        .get("stamp")  # type: ignore[union-attr]
    )
    assert serialize(tomb) == (
        f"<message to='{carol.jid}' from='{ROOM}' id='{tomb.get('id')}'>"
        f"<result xmlns='{MAM2}' id='{spam_id}' queryid='g27'>"
        "<forwarded xmlns='urn:xmpp:forward:0'>"
        f"<delay xmlns='urn:xmpp:delay' stamp='{stamp(spam_id)}'/>"
        f"<message xmlns='jabber:client' type='groupchat' id='m0' from='{ROOM}/secondwitch'>"
        f"<occupant-id xmlns='{OID}' id='{bob_oid}'/>"
        f"<retracted xmlns='{RETRACT}' stamp='{retracted_stamp}'>"
        f"<moderated xmlns='{MODERATE}' by='{ROOM}/firstwitch'>"
        f"<occupant-id xmlns='{OID}' id='{a_oid}'/></moderated>"
        "<reason>This message contains inappropriate content for this forum</reason>"
        "</retracted></message></forwarded></result></message>"
    )
    # a newcomer's history has the tombstone, not the body (and not the announcement)
    got = await join(carol, "thirdwitch")
    history = [
        e for e in got if e.tag == "message" and e.find("delay", "urn:xmpp:delay") is not None
    ]
    assert [m.find("body") is None for m in history] == [False, False, False, True]
    assert history[-1].find("retracted", RETRACT) is not None
    assert stanza_id(history[-1]) == spam_id


# -- persistence (roost serve in a subprocess, SIGKILL) -------------------------------------


@pytest.fixture
def roost(tmp_path: Path) -> Iterator[RoostProcess]:
    proc = RoostProcess(tmp_path, UNLIMITED)
    try:
        yield proc
    finally:
        proc.cleanup()


ACKED = 400
IN_FLIGHT = 1000
#: no rate limit in the way of a burst
UNLIMITED = "[modules.muc]\nmessage_rate = 100000.0\nmessage_burst = 100000\n"


def _burst(start: int, n: int) -> str:
    return "".join(
        f"<message to='{ROOM}' type='groupchat' id='k{i}'><body>{i}</body></message>"
        for i in range(start, start + n)
    )


@pytest.mark.parametrize("ack_by", ["mam", "sm"])
async def test_room_archive_survives_sigkill(roost: RoostProcess, ack_by: str) -> None:
    """What a client was told is safe is in the room archive after ``kill -9``: a query's
    answer comes once what it covers is committed (``RoomArchive.flushed``), and so does a
    XEP-0198 ``<a h/>`` for the groupchat messages it counts. What was in flight may be
    lost, only as a suffix."""
    roost.start().wait_ready()
    for user in ("alice", "bob"):
        roost.add_user(f"{user}@localhost", PASSWORDS[user])
    alice = await roost.login("alice", PASSWORDS["alice"], "a")
    await alice.send(f"<presence to='{ROOM}/firstwitch'><x xmlns='{MUC}'/></presence>")
    await alice.expect(lambda e: e.tag == "message" and e.find("subject") is not None)
    await alice.send(
        f"<iq type='set' id='cfg' to='{ROOM}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'>"
        "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
        "</x></query></iq>"
    )
    r = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "cfg")
    assert r.get("type") == "result", serialize(r)
    if ack_by == "mam":
        await alice.send(
            _burst(0, ACKED) + f"<iq type='set' id='ack' to='{ROOM}'><query xmlns='{MAM2}'>"
            f"<set xmlns='{RSM}'><max>0</max></set></query></iq>"
        )
        ack = await alice.expect(lambda e: e.get("id") == "ack")
        assert ack.get("type") == "result", serialize(ack)
    else:
        await alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
        await alice.expect(lambda e: e.tag == "enabled")
        await alice.send(_burst(0, ACKED) + "<r xmlns='urn:xmpp:sm:3'/>")
        ack = await alice.expect(lambda e: e.tag == "a" and e.ns == "urn:xmpp:sm:3")
        assert ack.get("h") == str(ACKED)
    # another burst, and the server dies while it is broadcast and written (at once after
    # the ack: one given before the commit would lose the last acknowledged messages)
    await alice.send(_burst(ACKED, IN_FLIGHT))
    roost.kill()
    await alice.wait_closed()

    roost.start().wait_ready()
    bob = await roost.login("bob", PASSWORDS["bob"], "b")
    out: list[int] = []
    after = ""
    for page in range(30):
        await bob.send(
            f"<iq type='set' id='p{page}' to='{ROOM}'><query xmlns='{MAM2}'>"
            f"<set xmlns='{RSM}'><max>100</max>{after}</set></query></iq>"
        )
        last = None
        while True:
            el = await bob.next()
            if el.tag == "iq" and el.get("id") == f"p{page}":
                assert el.get("type") == "result", serialize(el)
                break
            res = el.find("result", MAM2)
            if res is None:
                continue
            body = res.find("forwarded").find("message").find("body")  # type: ignore[union-attr]
            assert body is not None
            out.append(int(body.text))
            last = res.get("id")
        fin = el.find("fin", MAM2)
        assert fin is not None
        if fin.get("complete") == "true":
            break
        after = f"<after>{last}</after>"
    assert out == list(range(len(out))) and len(out) >= ACKED
    # the history for newcomers comes from the archive after the restart (XEP-0045 §7.2.14)
    await bob.send(f"<presence to='{ROOM}/secondwitch'><x xmlns='{MUC}'/></presence>")
    history: list[int] = []
    while True:
        el = await bob.next()
        if el.tag == "message" and el.find("subject") is not None:
            break
        if el.tag == "message":
            assert el.find("delay", "urn:xmpp:delay") is not None
            history.append(int(el.find("body").text))  # type: ignore[union-attr]
    assert history == out[-20:]
    await bob.close()
    assert roost.terminate() == 0


async def test_retention_applies_to_rooms(tmp_path: Path) -> None:
    """The ``[archive]`` table's ``max_items`` keeps each room's newest messages (the
    clean-up timer runs every ``cleanup_interval``)."""
    srv = await start_server(
        tmp_path, archive={"max_items": 2, "expire_after": 0, "cleanup_interval": 1}
    )
    logins = Logins(srv)
    try:
        for user in ("alice", "bob"):
            await srv.accounts.create(user, "localhost", PASSWORDS[user])
        alice = await logins("alice", "pda")
        bob = await logins("bob", "desktop")
        ids, _ = await room_with_chat(alice, bob)

        async def trimmed() -> bool:
            page = await srv.storage.query_room_archive(ROOM, ArchiveQuery())
            return [m.id for m in page.messages] == ids[1:]

        await eventually(trimmed, "the room archive trimmed to max_items")
    finally:
        await logins.close()
        await srv.stop()
