"""XEP-0045 Multi-User Chat at conference.localhost: raw-XML transcripts after the XEP's own
examples (§7 occupants, §8 moderators, §9 admins, §10 owners), over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.config import ConfigError
from tests.conftest import PASSWORDS
from tests.helpers import Logins, RawClient, drain, make_config, quiet, start_server
from tests.server.test_cli import RoostProcess

MUC = "http://jabber.org/protocol/muc"
USER = "http://jabber.org/protocol/muc#user"
ADMIN = "http://jabber.org/protocol/muc#admin"
OWNER = "http://jabber.org/protocol/muc#owner"
DATA = "jabber:x:data"
ROOM = "coven@conference.localhost"


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


def codes(p: Element) -> set[str]:
    x = p.find("x", USER)
    return {s.get("code") or "" for s in x.find_all("status", USER)} if x is not None else set()


def item(p: Element) -> Element:
    x = p.find("x", USER)
    assert x is not None, serialize(p)
    it = x.find("item", USER)
    assert it is not None, serialize(p)
    return it


def error_of(el: Element) -> str:
    err = el.find("error")
    assert err is not None, serialize(el)
    return next(c.tag for c in err.elements() if c.tag != "text")


async def join(c: RawClient, nick: str, room: str = ROOM, x: str = "") -> list[Element]:
    """Enter ``room`` as ``nick``: everything up to (and with) the subject."""
    await c.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'>{x}</x></presence>")
    return await drain(c)


async def create(c: RawClient, nick: str = "firstwitch", room: str = ROOM) -> None:
    """§10.1.2: create an instant room."""
    got = await join(c, nick, room)
    assert codes(got[-2]) == {"110", "201"}, [serialize(e) for e in got]
    await c.send(
        f"<iq type='set' id='create1' to='{room}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'/></query></iq>"
    )
    (res,) = await drain(c)
    assert res.get("type") == "result", serialize(res)


async def configure(c: RawClient, fields: dict[str, str], room: str = ROOM) -> list[Element]:
    body = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    await c.send(
        f"<iq type='set' id='cfg1' to='{room}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'>{body}</x></query></iq>"
    )
    got = await drain(c)
    assert any(e.tag == "iq" and e.get("type") == "result" for e in got), got
    return got


async def admin(c: RawClient, items: str, room: str = ROOM) -> Element:
    await c.send(f"<iq type='set' id='adm' to='{room}'><query xmlns='{ADMIN}'>{items}</query></iq>")
    return await c.expect(lambda e: e.tag == "iq" and e.get("id") == "adm")


async def test_instant_room_join_chat_leave(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    # §10.1.1: the new room is locked; the creator is its owner and a moderator
    await alice.send(f"<presence to='{ROOM}/firstwitch'><x xmlns='{MUC}'/></presence>")
    p, subject = await drain(alice)
    assert subject.find("subject") is not None  # §7.2.15: even in a new room
    assert p.get("from") == f"{ROOM}/firstwitch"
    assert codes(p) == {"110", "201"}
    assert item(p).attrs == {"affiliation": "owner", "role": "moderator", "jid": alice.jid}
    assert p.find("occupant-id", "urn:xmpp:occupant-id:0") is not None
    # locked: others get item-not-found (§10.1.1)
    await bob.send(f"<presence to='{ROOM}/secondwitch'><x xmlns='{MUC}'/></presence>")
    (err,) = await drain(bob)
    assert err.get("type") == "error" and error_of(err) == "item-not-found"
    # §10.1.2 instant room
    await alice.send(
        f"<iq type='set' id='create1' to='{ROOM}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'/></query></iq>"
    )
    (res,) = await drain(alice)
    assert res.get("type") == "result" and res.get("from") == ROOM
    # §7.2.3: bob gets alice's presence, then his own (110), then the subject
    got = await join(bob, "secondwitch")
    assert [e.tag for e in got] == ["presence", "presence", "message"]
    assert got[0].get("from") == f"{ROOM}/firstwitch"
    assert "jid" not in item(got[0]).attrs  # semi-anonymous: bob is no moderator
    assert codes(got[0]) == set()
    assert codes(got[1]) == {"110"}
    assert item(got[1]).attrs == {"affiliation": "none", "role": "participant"}
    subject = got[2].find("subject")
    assert got[2].get("type") == "groupchat" and subject is not None and subject.text == ""
    # alice (a moderator) sees bob's real JID
    (p,) = await drain(alice)
    assert p.get("from") == f"{ROOM}/secondwitch" and item(p).get("jid") == bob.jid
    # §7.4: a message goes to every occupant, with the room's stanza-id (XEP-0359)
    await bob.send(
        f"<message to='{ROOM}' type='groupchat' id='m1'><body>Harpier cries</body></message>"
    )
    for c in (alice, bob):
        (m,) = await drain(c)
        assert m.get("from") == f"{ROOM}/secondwitch" and m.get("id") == "m1"
        sid = m.find("stanza-id", "urn:xmpp:sid:0")
        assert sid is not None and sid.get("by") == ROOM
        assert m.find("occupant-id", "urn:xmpp:occupant-id:0") is not None
    # §7.14: leaving
    await bob.send(f"<presence to='{ROOM}/secondwitch' type='unavailable'/>")
    (p,) = await drain(bob)
    assert p.get("type") == "unavailable" and codes(p) == {"110"}
    assert item(p).get("role") == "none"
    (p,) = await drain(alice)
    assert p.get("type") == "unavailable" and codes(p) == set()


async def test_join_errors_and_rules(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    carol = await logins("carol", "c")
    await create(alice)
    # §7.2.8 nick conflict
    await bob.send(f"<presence to='{ROOM}/firstwitch'><x xmlns='{MUC}'/></presence>")
    (err,) = await drain(bob)
    assert error_of(err) == "conflict" and err.get("from") == f"{ROOM}/firstwitch"
    assert err.find("error").get("by") == ROOM  # type: ignore[union-attr]
    # §7.2.1: no <x/> from a non-occupant: kicked with 110, 307, 333
    await bob.send(f"<presence to='{ROOM}/b'/>")
    (p,) = await drain(bob)
    assert p.get("type") == "unavailable" and codes(p) == {"110", "307", "333"}
    # §7.4: a non-occupant may not speak
    await bob.send(f"<message to='{ROOM}' type='groupchat'><body>hi</body></message>")
    (err,) = await drain(bob)
    assert error_of(err) == "not-acceptable"
    # presence to the bare room JID: jid-malformed
    await bob.send(f"<presence to='{ROOM}'><x xmlns='{MUC}'/></presence>")
    (err,) = await drain(bob)
    assert error_of(err) == "jid-malformed"
    await join(bob, "secondwitch")
    await join(carol, "thirdwitch")
    await drain(alice)
    await drain(bob)
    # §7.6: nick change: 303 with the new nick, then presence from the new one
    await bob.send(f"<presence to='{ROOM}/oldhag'/>")
    got = await drain(bob)
    assert got[0].get("type") == "unavailable" and codes(got[0]) == {"110", "303"}
    assert item(got[0]).get("nick") == "oldhag"
    assert got[1].get("from") == f"{ROOM}/oldhag" and codes(got[1]) == {"110"}
    got = await drain(carol)
    assert codes(got[0]) == {"303"} and got[1].get("from") == f"{ROOM}/oldhag"
    await drain(alice)
    await bob.send(f"<presence to='{ROOM}/thirdwitch'/>")
    (err,) = await drain(bob)
    assert error_of(err) == "conflict"
    # §7.5: private messages, and never of type groupchat
    await bob.send(f"<message to='{ROOM}/thirdwitch' type='chat'><body>psst</body></message>")
    (pm,) = await drain(carol)
    assert pm.get("from") == f"{ROOM}/oldhag" and pm.find("x", USER) is not None
    await bob.send(f"<message to='{ROOM}/thirdwitch' type='groupchat'><body>x</body></message>")
    (err,) = await drain(bob)
    assert error_of(err) == "bad-request"
    await bob.send(f"<message to='{ROOM}/nobody' type='chat'><body>x</body></message>")
    (err,) = await drain(bob)
    assert error_of(err) == "item-not-found"
    # §8.1 subject: participants may not change it by default; moderators may
    await bob.send(f"<message to='{ROOM}' type='groupchat'><subject>mine</subject></message>")
    (err,) = await drain(bob)
    assert error_of(err) == "forbidden"
    await alice.send(
        f"<message to='{ROOM}' type='groupchat'><subject>Fire Burn</subject></message>"
    )
    (m,) = await drain(carol)
    assert m.find("subject") is not None and m.find("subject").text == "Fire Burn"  # type: ignore[union-attr]
    await drain(bob)
    await drain(alice)
    # XEP-0410: self-ping answered by the room; not joined: not-acceptable
    await bob.send(f"<iq type='get' id='sp' to='{ROOM}/oldhag'><ping xmlns='urn:xmpp:ping'/></iq>")
    (r,) = await drain(bob)
    assert r.get("type") == "result"
    carol2 = await logins("carol", "other")
    await drain(carol2)
    await drain(carol)
    await carol2.send(
        f"<iq type='get' id='sp' to='{ROOM}/thirdwitch'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    (r,) = await drain(carol2)
    assert error_of(r) == "not-acceptable"
    # §18.1: an error bounced by an occupant removes it (333)
    await bob.send(
        f"<message to='{ROOM}' type='error'><error type='cancel'>"
        "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    )
    (p,) = await drain(carol)
    assert p.get("type") == "unavailable" and codes(p) == {"333"}


async def test_history_on_join(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    await create(alice)
    for i in range(5):
        await alice.send(f"<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>")
    await drain(alice)
    got = await join(bob, "b", x="<history maxstanzas='2'/>")
    bodies = [e.find("body").text for e in got if e.tag == "message" and e.find("body") is not None]  # type: ignore[union-attr]
    assert bodies == ["m3", "m4"]
    delayed = [e for e in got if e.find("delay", "urn:xmpp:delay") is not None]
    assert len(delayed) == 2 and delayed[0].find("delay", "urn:xmpp:delay").get("from") == ROOM  # type: ignore[union-attr]
    await bob.send(f"<presence to='{ROOM}/b' type='unavailable'/>")
    await drain(bob)
    got = await join(bob, "b", x="<history maxchars='0'/>")
    assert [e for e in got if e.find("body") is not None] == []
    await bob.send(f"<presence to='{ROOM}/b' type='unavailable'/>")
    await drain(bob)
    got = await join(bob, "b", x="<history since='2999-01-01T00:00:00Z'/>")
    assert [e for e in got if e.find("body") is not None] == []


async def test_password_members_only_and_invitations(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    carol = await logins("carol", "c")
    await create(alice)
    await configure(
        alice,
        {
            "FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig",
            "muc#roomconfig_passwordprotectedroom": "1",
            "muc#roomconfig_roomsecret": "cauldronburn",
        },
    )
    # §7.2.5: missing or wrong password: not-authorized
    got = await join(bob, "b")
    assert error_of(got[0]) == "not-authorized"
    got = await join(bob, "b", x="<password>cauldronburn</password>")
    assert codes(got[-2]) == {"110"}
    await drain(alice)
    # members-only (§7.2.6), with the 322 removal of non-members (§9.4)
    await configure(alice, {"muc#roomconfig_membersonly": "1"})
    got = await drain(bob)
    assert any(e.tag == "presence" and codes(e) == {"110", "322"} for e in got), got
    got = await join(carol, "c", x="<password>cauldronburn</password>")
    assert error_of(got[0]) == "registration-required"
    # §7.8.2 mediated invitation with reason and password; the invitee becomes a member
    await alice.send(
        f"<message to='{ROOM}'><x xmlns='{USER}'><invite to='carol@localhost'>"
        "<reason>Hey Hecate</reason></invite></x></message>"
    )
    (inv,) = await drain(carol)
    x = inv.find("x", USER)
    assert inv.get("from") == ROOM and x is not None
    invite = x.find("invite", USER)
    assert invite is not None and invite.get("from") == alice.jid
    assert invite.find("reason", USER).text == "Hey Hecate"  # type: ignore[union-attr]
    assert x.find("password", USER).text == "cauldronburn"  # type: ignore[union-attr]
    got = await join(carol, "c", x="<password>cauldronburn</password>")
    assert codes(got[-2]) == {"110"} and item(got[-2]).get("affiliation") == "member"
    many = "".join(f"<invite to='u{i}@localhost'/>" for i in range(21))
    await alice.send(f"<message to='{ROOM}'><x xmlns='{USER}'>{many}</x></message>")
    got = await drain(alice)
    assert error_of(got[-1]) == "policy-violation"
    # §7.8.2: a decline goes back to the inviter
    await bob.send(
        f"<message to='{ROOM}'><x xmlns='{USER}'><decline to='alice@localhost'>"
        "<reason>Sorry</reason></decline></x></message>"
    )
    got = await drain(alice)
    d = got[-1].find("x", USER).find("decline", USER)  # type: ignore[union-attr]
    assert d is not None and d.get("from") == "bob@localhost"
    # XEP-0249 direct invitation: from user to user, untouched
    await alice.send(
        f"<message to='bob@localhost'><x xmlns='jabber:x:conference' jid='{ROOM}' "
        "password='cauldronburn' reason='join us'/></message>"
    )
    (m,) = await drain(bob)
    assert m.find("x", "jabber:x:conference").get("jid") == ROOM  # type: ignore[union-attr]


async def test_kick_ban_voice_and_lists(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    carol = await logins("carol", "c")
    await create(alice)
    await join(bob, "b")
    await join(carol, "c")
    await drain(alice)
    await drain(bob)
    # §8.2: a participant may not kick
    r = await admin(bob, "<item nick='c' role='none'/>")
    assert error_of(r) == "forbidden"
    # §8.2 kick with reason and actor
    r = await admin(alice, "<item nick='c' role='none'><reason>Avaunt</reason></item>")
    assert r.get("type") == "result"
    (p,) = await drain(carol)
    assert p.get("type") == "unavailable" and codes(p) == {"110", "307"}
    assert item(p).find("reason", USER).text == "Avaunt"  # type: ignore[union-attr]
    assert item(p).find("actor", USER).get("nick") == "firstwitch"  # type: ignore[union-attr]
    (p,) = await drain(bob)
    assert codes(p) == {"307"}
    # §8.4 revoke voice, §8.3 grant it
    r = await admin(alice, "<item nick='b' role='visitor'/>")
    assert r.get("type") == "result"
    got = await drain(bob)
    assert item(got[-1]).get("role") == "visitor"
    await bob.send(f"<message to='{ROOM}' type='groupchat'><body>hi</body></message>")
    (err,) = await drain(bob)
    assert error_of(err) == "forbidden"
    # §7.13 voice request, §8.6 approved by a moderator
    await bob.send(
        f"<message to='{ROOM}'><x xmlns='{DATA}' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
        "<field var='muc#role'><value>participant</value></field></x></message>"
    )
    got = await drain(alice)
    form = got[-1].find("x", DATA)
    assert form is not None and form.get("type") == "form"
    await alice.send(
        f"<message to='{ROOM}'><x xmlns='{DATA}' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
        "<field var='muc#role'><value>participant</value></field>"
        "<field var='muc#roomnick'><value>b</value></field>"
        "<field var='muc#request_allow'><value>true</value></field></x></message>"
    )
    got = await drain(bob)
    assert item(got[-1]).get("role") == "participant"
    # §9.1 ban with reason; the reason is kept in the outcast list
    r = await admin(
        alice, "<item affiliation='outcast' jid='bob@localhost'><reason>Treason</reason></item>"
    )
    assert r.get("type") == "result"
    (p,) = await drain(bob)
    assert codes(p) == {"110", "301"}
    got = await join(bob, "b")
    assert error_of(got[0]) == "forbidden"
    await alice.send(
        f"<iq type='get' id='ol' to='{ROOM}'><query xmlns='{ADMIN}'>"
        "<item affiliation='outcast'/></query></iq>"
    )
    (r,) = [e for e in await drain(alice) if e.tag == "iq"]
    (it,) = r.find("query", ADMIN).find_all("item", ADMIN)  # type: ignore[union-attr]
    assert it.get("jid") == "bob@localhost" and it.find("reason", ADMIN).text == "Treason"  # type: ignore[union-attr]
    # §9.3 member, §10.3 owner, §10.7 the last owner cannot go
    r = await admin(alice, "<item affiliation='member' jid='carol@localhost'/>")
    assert r.get("type") == "result"
    r = await admin(alice, "<item affiliation='none' jid='alice@localhost'/>")
    assert error_of(r) == "conflict"
    r = await admin(alice, "<item affiliation='admin' jid='carol@localhost'/>")
    assert r.get("type") == "result"
    await alice.send(
        f"<iq type='get' id='al' to='{ROOM}'><query xmlns='{ADMIN}'>"
        "<item affiliation='admin'/></query></iq>"
    )
    (r,) = [e for e in await drain(alice) if e.tag == "iq"]
    assert [i.get("jid") for i in r.find("query", ADMIN).find_all("item", ADMIN)] == [
        "carol@localhost"
    ]  # type: ignore[union-attr]


async def test_config_form_disco_destroy(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    # §10.1.3 reserved room: get the form, submit it
    await join(alice, "firstwitch")
    await alice.send(f"<iq type='get' id='c1' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    (r,) = await drain(alice)
    form = r.find("query", OWNER).find("x", DATA)  # type: ignore[union-attr]
    assert form is not None and form.get("type") == "form"
    vars_ = {f.get("var") for f in form.find_all("field", DATA)}
    assert {
        "muc#roomconfig_roomname",
        "muc#roomconfig_whois",
        "muc#roomconfig_membersonly",
    } <= vars_
    await configure(
        alice,
        {
            "FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig",
            "muc#roomconfig_roomname": "A Dark Cave",
            "muc#roomconfig_whois": "anyone",
            "muc#roomconfig_persistentroom": "1",
        },
    )
    # a non-owner cannot get the form
    await bob.send(f"<iq type='get' id='c2' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    (r,) = await drain(bob)
    assert error_of(r) == "forbidden"
    # non-anonymous: 100 on join, real JIDs for all
    got = await join(bob, "b")
    assert codes(got[-2]) == {"100", "110"}
    assert item(got[0]).get("jid") == alice.jid
    # §6.4 disco#info on the room; §6.3 disco#items of the service
    await bob.send(
        f"<iq type='get' id='d1' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    (r,) = await drain(bob)
    q = r.find("query")
    assert q is not None
    feats = {f.get("var") for f in q.find_all("feature")}
    assert {
        MUC,
        "muc_nonanonymous",
        "muc_persistent",
        "muc_open",
        "urn:xmpp:occupant-id:0",
    } <= feats
    assert q.find("identity").get("name") == "A Dark Cave"  # type: ignore[union-attr]
    await bob.send(
        "<iq type='get' id='d2' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
    )
    (r,) = await drain(bob)
    assert [i.get("jid") for i in r.find("query").find_all("item")] == [ROOM]  # type: ignore[union-attr]
    await bob.send(
        "<iq type='get' id='d3' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
    )
    (r,) = await drain(bob)
    assert "conference.localhost" in {i.get("jid") for i in r.find("query").find_all("item")}  # type: ignore[union-attr]
    await drain(alice)
    # §10.9 destroy with an alternate venue
    await bob.send(
        f"<iq type='set' id='x1' to='{ROOM}'><query xmlns='{OWNER}'><destroy/></query></iq>"
    )
    (r,) = await drain(bob)
    assert error_of(r) == "forbidden"
    await alice.send(
        f"<iq type='set' id='x2' to='{ROOM}'><query xmlns='{OWNER}'>"
        "<destroy jid='other@conference.localhost'><reason>Macbeth doth come.</reason></destroy>"
        "</query></iq>"
    )
    got = await drain(alice)
    assert [e.tag for e in got] == ["presence", "iq"] and got[1].get("type") == "result"
    (p,) = await drain(bob)
    d = p.find("x", USER).find("destroy", USER)  # type: ignore[union-attr]
    assert p.get("type") == "unavailable" and d is not None
    assert (
        d.get("jid") == "other@conference.localhost"
        and d.find("reason", USER).text == "Macbeth doth come."
    )  # type: ignore[union-attr]
    await bob.send(
        f"<iq type='get' id='d4' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    (r,) = await drain(bob)
    assert error_of(r) == "item-not-found"


async def test_cancel_destroys_locked_room_and_nick_registration(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    await join(alice, "firstwitch")
    await alice.send(
        f"<iq type='set' id='c' to='{ROOM}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='cancel'/></query></iq>"
    )
    got = await drain(alice)
    assert got[0].get("type") == "result"
    assert any(e.tag == "presence" and e.get("type") == "unavailable" for e in got)
    await create(alice)
    # §7.10: register a nick; then nobody else may use it
    await bob.send(f"<iq type='get' id='r1' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>")
    (r,) = await drain(bob)
    assert r.find("query").find("x", DATA) is not None  # type: ignore[union-attr]
    await bob.send(
        f"<iq type='set' id='r2' to='{ROOM}'><query xmlns='jabber:iq:register'>"
        f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'>"
        "<value>http://jabber.org/protocol/muc#register</value></field>"
        "<field var='muc#register_roomnick'><value>thirdwitch</value></field></x></query></iq>"
    )
    (r,) = await drain(bob)
    assert r.get("type") == "result"
    await bob.send(f"<iq type='get' id='r3' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>")
    (r,) = await drain(bob)
    assert r.find("query").find("username").text == "thirdwitch"  # type: ignore[union-attr]
    await alice.send(f"<presence to='{ROOM}/thirdwitch'/>")
    (err,) = await drain(alice)
    assert error_of(err) == "conflict"
    # §7.12: the reserved nick, through disco#info's x-roomuser-item node
    await bob.send(
        f"<iq type='get' id='r4' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'"
        " node='x-roomuser-item'/></iq>"
    )
    (r,) = await drain(bob)
    assert r.find("query").find("identity").get("name") == "thirdwitch"  # type: ignore[union-attr]
    got = await join(bob, "thirdwitch")
    assert item(got[-2]).get("affiliation") == "member"


# -- persistence (roost serve in a subprocess, SIGKILL) -------------------------------------


@pytest.fixture
def roost(tmp_path: Path) -> Iterator[RoostProcess]:
    proc = RoostProcess(tmp_path)
    try:
        yield proc
    finally:
        proc.cleanup()


async def test_persistent_room_survives_sigkill(roost: RoostProcess) -> None:
    roost.start().wait_ready()
    for user in ("alice", "bob", "carol"):
        roost.add_user(f"{user}@localhost", PASSWORDS[user])
    alice = await roost.login("alice", PASSWORDS["alice"], "a")
    await alice.send("<presence/>")
    await alice.send(f"<presence to='{ROOM}/firstwitch'><x xmlns='{MUC}'/></presence>")
    await alice.expect(lambda e: e.tag == "presence" and e.get("from") == f"{ROOM}/firstwitch")
    # each answer comes once its change is committed: nothing to poll for
    await alice.send(
        f"<iq type='set' id='cfg' to='{ROOM}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'>"
        "<field var='muc#roomconfig_roomname'><value>A Dark Cave</value></field>"
        "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
        "<field var='muc#roomconfig_membersonly'><value>1</value></field>"
        "</x></query></iq>"
    )
    r = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "cfg")
    assert r.get("type") == "result", serialize(r)
    await alice.send(
        f"<iq type='set' id='adm' to='{ROOM}'><query xmlns='{ADMIN}'>"
        "<item affiliation='member' jid='bob@localhost'/>"
        "<item affiliation='outcast' jid='carol@localhost'><reason>Treason</reason></item>"
        "</query></iq>"
    )
    r = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "adm")
    assert r.get("type") == "result", serialize(r)
    await alice.send(
        f"<message to='{ROOM}' type='groupchat'><subject>Fire Burn</subject></message>"
    )
    await alice.expect(lambda e: e.tag == "message" and e.find("subject") is not None)
    # the subject is written without an answer: a config change after it waits for both
    await alice.send(
        f"<iq type='set' id='cfg2' to='{ROOM}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'>"
        "<field var='muc#roomconfig_roomdesc'><value>Thunder</value></field></x></query></iq>"
    )
    await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "cfg2")

    roost.kill()
    await alice.wait_closed()
    roost.start().wait_ready()

    bob = await roost.login("bob", PASSWORDS["bob"], "b")
    await bob.send("<presence/>")
    await bob.send(
        f"<iq type='get' id='d1' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    r = await bob.expect(lambda e: e.tag == "iq" and e.get("id") == "d1")
    q = r.find("query")
    assert q is not None and q.find("identity").get("name") == "A Dark Cave"  # type: ignore[union-attr]
    feats = {f.get("var") for f in q.find_all("feature")}
    assert {"muc_persistent", "muc_membersonly"} <= feats
    await bob.send(f"<presence to='{ROOM}/b'><x xmlns='{MUC}'/></presence>")
    p = await bob.expect(lambda e: e.tag == "presence" and e.get("from") == f"{ROOM}/b")
    assert item(p).get("affiliation") == "member" and codes(p) == {"110"}
    m = await bob.expect(lambda e: e.tag == "message")
    assert m.find("subject").text == "Fire Burn"  # type: ignore[union-attr]
    carol = await roost.login("carol", PASSWORDS["carol"], "c")
    await carol.send("<presence/>")
    await carol.send(f"<presence to='{ROOM}/c'><x xmlns='{MUC}'/></presence>")
    err = await carol.expect(lambda e: e.tag == "presence" and e.get("type") == "error")
    assert error_of(err) == "forbidden"
    # the owner is still the owner (and the ban reason kept)
    alice = await roost.login("alice", PASSWORDS["alice"], "a")
    await alice.send(
        f"<iq type='get' id='ol' to='{ROOM}'><query xmlns='{ADMIN}'>"
        "<item affiliation='outcast'/></query></iq>"
    )
    r = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "ol")
    (it,) = r.find("query", ADMIN).find_all("item", ADMIN)  # type: ignore[union-attr]
    assert it.find("reason", ADMIN).text == "Treason"  # type: ignore[union-attr]
    for c in (alice, bob, carol):
        await c.close()


async def test_occupants_hear_332_when_the_server_stops(tmp_path: Path) -> None:
    srv = await start_server(tmp_path)
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    logins = Logins(srv)
    try:
        alice = await logins("alice", "pda")
        await create(alice)
        await srv.stop()
        p = await alice.expect(lambda e: e.tag == "presence")
        assert p.get("type") == "unavailable" and codes(p) == {"110", "332"}
        assert await alice.stream_error() == "system-shutdown"
    finally:
        await logins.close()


async def test_iq_to_an_occupant_is_forwarded_without_real_jids(logins: Logins) -> None:
    """§17: an iq to an occupant JID reaches one of its clients, from the asker's occupant
    JID, and the answer comes back from the occupant JID."""
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    await create(alice)
    await join(bob, "b")
    await drain(alice)
    await alice.send(
        f"<iq type='get' id='v1' to='{ROOM}/b'><query xmlns='jabber:iq:version'/></iq>"
    )
    (fwd,) = await drain(bob)
    assert fwd.get("from") == f"{ROOM}/firstwitch" and fwd.get("id") != "v1"
    await bob.send(
        f"<iq type='result' id='{fwd.get('id')}' to='{ROOM}/firstwitch'>"
        "<query xmlns='jabber:iq:version'><name>cauldron</name></query></iq>"
    )
    (res,) = await drain(alice)
    assert res.get("id") == "v1" and res.get("from") == f"{ROOM}/b" and res.get("type") == "result"
    assert res.find("query").find("name").text == "cauldron"  # type: ignore[union-attr]
    # a ping to another nick is forwarded too (XEP-0410 §3.3 answers only one's own)
    await alice.send(f"<iq type='get' id='p1' to='{ROOM}/b'><ping xmlns='urn:xmpp:ping'/></iq>")
    (fwd,) = await drain(bob)
    assert fwd.find("ping", "urn:xmpp:ping") is not None


async def test_limits(tmp_path: Path) -> None:
    srv = await start_server(
        tmp_path,
        modules={
            "muc": {
                "max_occupants": 2,
                "max_rooms_per_user": 1,
                "history_size": 2,
                "message_burst": 3,
                "message_rate": 0.01,
            }
        },
    )
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    logins = Logins(srv)
    try:
        alice = await logins("alice", "pda")
        bob = await logins("bob", "desktop")
        carol = await logins("carol", "c")
        await create(alice)
        # rooms per user
        got = await join(alice, "x", room="other@conference.localhost")
        assert error_of(got[0]) == "resource-constraint"
        # occupants per room (§7.2.9: service-unavailable)
        await join(bob, "b")
        got = await join(carol, "c")
        assert error_of(got[0]) == "service-unavailable"
        assert got[0].find("error").get("type") == "wait"  # type: ignore[union-attr]
        await drain(alice)
        # message rate per occupant: a burst of 3, then resource-constraint (wait)
        for i in range(4):
            await bob.send(f"<message to='{ROOM}' type='groupchat'><body>m{i}</body></message>")
        got = await drain(bob)
        assert [e.get("type") for e in got] == ["groupchat"] * 3 + ["error"]
        assert error_of(got[3]) == "resource-constraint"
        assert got[3].find("error").get("type") == "wait"  # type: ignore[union-attr]
        # history size: the last 2 only
        await bob.send(f"<presence to='{ROOM}/b' type='unavailable'/>")
        await drain(bob)
        got = await join(carol, "c")
        bodies = [e.find("body").text for e in got if e.find("body") is not None]  # type: ignore[union-attr]
        assert bodies == ["m1", "m2"]
    finally:
        await logins.close()
        await srv.stop()


async def test_one_account_two_clients_one_nick_and_210(logins: Logins) -> None:
    alice = await logins("alice", "pda")
    alice2 = await logins("alice", "laptop")
    bob = await logins("bob", "desktop")
    await drain(alice)
    await create(alice)
    await join(bob, "b")
    await drain(alice)
    # the same account joins the same nick from another client: no conflict
    got = await join(alice2, "firstwitch")
    assert codes(got[-2]) == {"110"} and item(got[-2]).get("role") == "moderator"
    await bob.send(f"<message to='{ROOM}' type='groupchat'><body>both</body></message>")
    for c in (alice, alice2):
        (m,) = await drain(c)
        assert m.find("body").text == "both"  # type: ignore[union-attr]
    await drain(bob)
    # one client leaving keeps the occupant for the other
    await alice2.send(f"<presence to='{ROOM}/firstwitch' type='unavailable'/>")
    (p,) = await drain(alice2)
    assert p.get("type") == "unavailable"
    await quiet(bob)
    # §7.2.2 status 210: the room changed the nick asked for (here by resourceprep)
    carol = await logins("carol", "c")
    got = await join(carol, "a\u00a0b")  # NO-BREAK SPACE, mapped to a space (RFC 7622 §3.4)
    (own,) = [e for e in got if e.tag == "presence" and "110" in codes(e)]
    assert own.get("from") == f"{ROOM}/a b" and codes(own) == {"110", "210"}


async def test_a_client_that_joined_before_its_initial_presence_leaves_when_it_goes(
    logins: Logins,
) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop", available=False)
    await create(alice)
    await join(bob, "b")
    await drain(alice)
    await bob.close()  # no unavailable to the room: the session's end takes it out
    (p,) = await drain(alice)
    assert p.get("from") == f"{ROOM}/b" and p.get("type") == "unavailable"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"create": "nobody"}, "modules.muc.create"),
        ({"max_occupants": 0}, "modules.muc.max_occupants"),
        ({"history_size": -1}, "modules.muc.history_size"),
        ({"subdomain": ""}, "modules.muc.subdomain"),
        ({"subdomain": "a b"}, "modules.muc.subdomain"),
        ({"rooms": 3}, "modules.muc.rooms"),
    ],
)
def test_bad_options_name_the_key(tmp_path: Path, options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        Server(make_config(tmp_path, modules={"muc": options}))
    assert info.value.key == key


async def test_member_list_only_for_occupants_of_non_anonymous_rooms(logins: Logins) -> None:
    """§7.11, §5.2.1: the member list carries real JIDs, so a semi-anonymous room shows it
    to admins only; a non-anonymous one to the roles muc#roomconfig_getmemberlist names."""
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    await create(alice)
    r = await admin(alice, "<item affiliation='member' jid='carol@localhost'/>")
    assert r.get("type") == "result"
    await join(bob, "b")
    await drain(alice)
    ask = (
        f"<iq type='get' id='ml' to='{ROOM}'><query xmlns='{ADMIN}'>"
        "<item affiliation='member'/></query></iq>"
    )
    await bob.send(ask)
    (r,) = await drain(bob)
    assert error_of(r) == "forbidden"
    await configure(alice, {"muc#roomconfig_whois": "anyone"})
    await drain(bob)
    await bob.send(ask)
    (r,) = await drain(bob)
    items = r.find("query", ADMIN).find_all("item", ADMIN)  # type: ignore[union-attr]
    assert [i.get("jid") for i in items] == ["carol@localhost"]


async def test_a_change_that_cannot_be_stored_is_answered_with_an_error(
    server: Server, logins: Logins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to a change comes after its write: a failed write is not a result."""
    alice = await logins("alice", "pda")
    await create(alice)

    async def broken(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(server.storage, "set_host_data", broken)
    await alice.send(
        f"<iq type='set' id='cfg' to='{ROOM}'><query xmlns='{OWNER}'><x xmlns='{DATA}' "
        "type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field>"
        "</x></query></iq>"
    )
    r = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "cfg")
    assert error_of(r) == "internal-server-error"


async def test_a_new_moderator_of_a_semi_anonymous_room_learns_real_jids(
    logins: Logins,
) -> None:
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    carol = await logins("carol", "c")
    await create(alice)
    await join(bob, "b")
    got = await join(carol, "c")
    assert all("jid" not in item(e).attrs for e in got if e.tag == "presence")
    await drain(alice)
    await drain(bob)
    r = await admin(alice, "<item nick='c' role='moderator'/>")  # §9.6
    assert r.get("type") == "result"
    got = await drain(carol)
    own, *others = got
    assert item(own).get("role") == "moderator" and "110" in codes(own)
    jids = {e.get("from"): item(e).get("jid") for e in others}
    assert jids == {f"{ROOM}/firstwitch": alice.jid, f"{ROOM}/b": bob.jid}
