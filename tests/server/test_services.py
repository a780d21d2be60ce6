"""Server services, end to end with raw XML: XEP-0092 version, XEP-0202 time, XEP-0012 last
activity, XEP-0054 vcard-temp, XEP-0049 private XML storage, and their disco features.

Replies are compared as exact serialized stanzas where the content is fixed; "nothing else
arrived" is checked with a ping round trip (``drain``), never with a bare sleep.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import roost
from roost.core import ns
from roost.core.jid import JID
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.modules.private import MAX_FRAGMENT_SIZE, MAX_FRAGMENTS
from roost.server.modules.vcard import MAX_VCARD_SIZE
from roost.storage.api import RosterItem
from tests.helpers import TIMEOUT, Logins, RawClient, drain

_ids = itertools.count()
STANZAS = "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'"
NEW_NAMESPACES = ("jabber:iq:version", "urn:xmpp:time", "jabber:iq:last", "vcard-temp")
NEW_NAMESPACES += ("jabber:iq:private",)

Login = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def login(server: Server) -> AsyncIterator[Login]:
    """Log in ``user/resource``; unless ``available`` is false, send initial presence."""
    logins = Logins(server)
    yield logins
    await logins.close()


async def ask(c: RawClient, xml: str) -> str:
    """Send one iq and return the serialized reply with the same id (skipping presence)."""
    iq_id = re.search(r"id='([^']+)'", xml)
    assert iq_id is not None
    await c.send(xml)
    el = await c.expect(lambda e: e.tag == "iq" and e.get("id") == iq_id.group(1))
    return serialize(el)


def error(etype: str, code: str | None, condition: str, text: str | None = None) -> str:
    c = f" code='{code}'" if code else ""
    t = f"<text {STANZAS} xml:lang='en'>{text}</text>" if text else ""
    return f"<error type='{etype}'{c}><{condition} {STANZAS}/>{t}</error>"


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (bounded) for a condition that a spawned server task makes true."""
    deadline = time.monotonic() + TIMEOUT
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def subscribe(server: Server, user: str, contact: str, subscription: str) -> None:
    """Seed ``user``'s roster (before ``user`` logs in): ``contact`` with ``subscription``."""
    item = RosterItem(f"{contact}@localhost", subscription=subscription)
    await server.storage.put_roster_item(user, "localhost", item)


# -- XEP-0092 Software Version ---------------------------------------------------------------


async def test_version_of_the_server(login: Login) -> None:
    alice = await login("alice", "a")
    reply = await ask(
        alice, "<iq type='get' id='v1' to='localhost'><query xmlns='jabber:iq:version'/></iq>"
    )
    assert reply == (
        "<iq type='result' id='v1' to='alice@localhost/a' from='localhost'>"
        "<query xmlns='jabber:iq:version'><name>Roost</name>"
        f"<version>{roost.__version__}</version></query></iq>"
    )


async def test_version_to_a_full_jid_is_answered_by_the_client(
    server: Server, login: Login
) -> None:
    await subscribe(server, "bob", "alice", "from")  # alice may see bob: iqs go through
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await alice.send(
        "<iq type='get' id='v2' to='bob@localhost/b'><query xmlns='jabber:iq:version'/></iq>"
    )
    got = await bob.expect(lambda e: e.tag == "iq")
    assert serialize(got) == (
        "<iq type='get' id='v2' to='bob@localhost/b' from='alice@localhost/a'>"
        "<query xmlns='jabber:iq:version'/></iq>"
    )
    await bob.send(
        "<iq type='result' id='v2' to='alice@localhost/a'><query xmlns='jabber:iq:version'>"
        "<name>Bob's client</name><version>1</version></query></iq>"
    )
    reply = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "v2")
    assert reply.get("from") == "bob@localhost/b"
    assert "Bob's client" in serialize(reply)


# -- XEP-0202 Entity Time ---------------------------------------------------------------------


async def test_time_of_the_server(login: Login) -> None:
    alice = await login("alice", "a")
    before = time.time()
    await alice.send("<iq type='get' id='t1' to='localhost'><time xmlns='urn:xmpp:time'/></iq>")
    el = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "t1")
    after = time.time()
    text = serialize(el)
    m = re.fullmatch(
        "<iq type='result' id='t1' to='alice@localhost/a' from='localhost'>"
        "<time xmlns='urn:xmpp:time'><tzo>\\+00:00</tzo><utc>([^<]+)</utc></time></iq>",
        text,
    )
    assert m is not None, text
    # XEP-0082 §3.2 DateTime, in UTC
    utc = m.group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc), utc
    stamp = datetime.datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp()
    assert before - 0.01 <= stamp <= after + 0.01


# -- XEP-0199 Ping, XEP-0202 Time, on behalf of an account (RFC 6120 §10.3.3) ------------------


@pytest.mark.parametrize("to", [None, "alice@localhost"], ids=["no-to", "own-bare"])
async def test_ping_on_behalf_of_oneself(login: Login, to: str | None) -> None:
    """Issue 14: profanity's keepalive pings with no ``to``; the server answers for the
    account (RFC 6120 §10.3.3), from the bare JID it was sent to or with no ``from``."""
    alice = await login("alice", "a")
    t = f" to='{to}'" if to else ""
    f = f" from='{to}'" if to else ""
    reply = await ask(alice, f"<iq type='get' id='p1'{t}><ping xmlns='urn:xmpp:ping'/></iq>")
    assert reply == f"<iq type='result' id='p1' to='alice@localhost/a'{f}/>"


async def test_ping_to_another_account(login: Login) -> None:
    """RFC 6121 §8.5.2.1.3: the server answers an iq to an account's bare JID (as Prosody
    does for pings); §8.5.2.2.3: no such account, ``service-unavailable``."""
    alice = await login("alice", "a")
    reply = await ask(
        alice, "<iq type='get' id='p2' to='bob@localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert reply == "<iq type='result' id='p2' to='alice@localhost/a' from='bob@localhost'/>"
    reply = await ask(
        alice, "<iq type='get' id='p3' to='nobody@localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert reply == (
        "<iq type='error' id='p3' to='alice@localhost/a' from='nobody@localhost'>"
        + error("cancel", "503", "service-unavailable")
        + "</iq>"
    )


@pytest.mark.parametrize("to", [None, "alice@localhost", "bob@localhost"])
async def test_time_on_behalf_of_an_account(login: Login, to: str | None) -> None:
    alice = await login("alice", "a")
    t = f" to='{to}'" if to else ""
    f = f" from='{to}'" if to else ""
    reply = await ask(alice, f"<iq type='get' id='t2'{t}><time xmlns='urn:xmpp:time'/></iq>")
    assert re.fullmatch(
        f"<iq type='result' id='t2' to='alice@localhost/a'{f}><time xmlns='urn:xmpp:time'>"
        "<tzo>\\+00:00</tzo><utc>[^<]+</utc></time></iq>",
        reply,
    ), reply


# -- XEP-0012 Last Activity ---------------------------------------------------------------------


def last_query(iq_id: str, to: str | None) -> str:
    t = f" to='{to}'" if to else ""
    return f"<iq type='get' id='{iq_id}'{t}><query xmlns='jabber:iq:last'/></iq>"


async def test_last_activity_of_the_server_is_its_uptime(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    server.started_at = time.time() - 3600
    reply = await ask(alice, last_query("l1", "localhost"))
    m = re.fullmatch(
        "<iq type='result' id='l1' to='alice@localhost/a' from='localhost'>"
        "<query xmlns='jabber:iq:last' seconds='(\\d+)'/></iq>",
        reply,
    )
    assert m is not None, reply
    assert 3600 <= int(m.group(1)) <= 3602  # XEP-0012 §5: no text


@pytest.mark.parametrize("to", [None, "alice@localhost"], ids=["no-to", "own-bare"])
async def test_last_activity_of_oneself_online_is_zero(login: Login, to: str | None) -> None:
    alice = await login("alice", "a")
    reply = await ask(alice, last_query("l2", to))
    frm = f" from='{to}'" if to else ""
    assert reply == (
        f"<iq type='result' id='l2' to='alice@localhost/a'{frm}>"
        "<query xmlns='jabber:iq:last' seconds='0'/></iq>"
    )


async def test_last_activity_of_an_online_contact_is_zero(server: Server, login: Login) -> None:
    await subscribe(server, "bob", "alice", "from")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    reply = await ask(alice, last_query("l3", "bob@localhost"))
    assert reply == (
        "<iq type='result' id='l3' to='alice@localhost/a' from='bob@localhost'>"
        "<query xmlns='jabber:iq:last' seconds='0'/></iq>"
    )
    # XEP-0012 §3: answered by the server; bob's client never sees it
    assert await drain(bob) == []


async def test_last_activity_after_logout_with_status(server: Server, login: Login) -> None:
    await subscribe(server, "bob", "alice", "both")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await bob.send("<presence type='unavailable'><status>Heading Home</status></presence>")
    await bob.close()
    await until(lambda: stored_logout(server, "bob"))

    # at once, and after the clock moved on (the stored time is moved back instead)
    reply = await ask(alice, last_query("l4", "bob@localhost"))
    assert reply in (
        "<iq type='result' id='l4' to='alice@localhost/a' from='bob@localhost'>"
        f"<query xmlns='jabber:iq:last' seconds='{s}'>Heading Home</query></iq>"
        for s in (0, 1)
    )
    raw = await server.storage.get_data("bob", "localhost", "last", "logout")
    assert raw is not None
    data = json.loads(raw)
    assert data["status"] == "Heading Home"
    data["stamp"] -= 903
    await server.storage.set_data("bob", "localhost", "last", "logout", json.dumps(data))
    reply = await ask(alice, last_query("l5", "bob@localhost"))
    m = re.fullmatch(
        "<iq type='result' id='l5' to='alice@localhost/a' from='bob@localhost'>"
        "<query xmlns='jabber:iq:last' seconds='(\\d+)'>Heading Home</query></iq>",
        reply,
    )
    assert m is not None, reply
    assert 903 <= int(m.group(1)) <= 905


async def stored_logout(server: Server, user: str) -> bool:
    return await server.storage.get_data(user, "localhost", "last", "logout") is not None


async def test_dropped_session_is_a_logout_without_status(server: Server, login: Login) -> None:
    await subscribe(server, "bob", "alice", "from")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await bob.send("<presence><status>Busy</status></presence>")
    await drain(bob)
    bob.writer.transport.abort()  # no unavailable presence, no stream close
    await until(lambda: stored_logout(server, "bob"))
    reply = await ask(alice, last_query("l6", "bob@localhost"))
    assert re.fullmatch(
        "<iq type='result' id='l6' to='alice@localhost/a' from='bob@localhost'>"
        "<query xmlns='jabber:iq:last' seconds='[01]'/></iq>",
        reply,
    ), reply


async def test_logout_is_recorded_when_the_last_session_ends(server: Server, login: Login) -> None:
    bob1 = await login("bob", "one")
    bob2 = await login("bob", "two", available=False)
    await bob1.close()

    async def one_left() -> bool:
        return list(server.sessions.resources(JID.parse("bob@localhost"))) == ["two"]

    await until(one_left)
    # one session is left (even if not available): not a logout yet
    await drain(bob2)
    assert not await stored_logout(server, "bob")
    await bob2.close()
    await until(lambda: stored_logout(server, "bob"))


async def test_last_activity_connected_but_unavailable_is_not_online(
    server: Server, login: Login
) -> None:
    """A connected session with no available presence does not count as online: that
    would reveal to contacts a session their presence does not show."""
    await subscribe(server, "bob", "alice", "from")
    await server.storage.set_data(
        "bob", "localhost", "last", "logout", json.dumps({"stamp": time.time() - 60, "status": "x"})
    )
    alice = await login("alice", "a")
    await login("bob", "b", available=False)
    reply = await ask(alice, last_query("l7", "bob@localhost"))
    assert re.fullmatch(
        "<iq type='result' id='l7' to='alice@localhost/a' from='bob@localhost'>"
        "<query xmlns='jabber:iq:last' seconds='6[01]'>x</query></iq>",
        reply,
    ), reply


@pytest.mark.parametrize("stored", [False, True], ids=["never-logged-out", "old-logout"])
async def test_last_activity_connected_and_gone_unavailable(
    server: Server, login: Login, stored: bool
) -> None:
    """Issue 14, XEP-0012 §3: a contact still connected but unavailable has been away since
    its unavailable presence, with that presence's status; not item-not-found, not an older
    logout."""
    await subscribe(server, "bob", "alice", "from")
    if stored:
        old = json.dumps({"stamp": time.time() - 3600, "status": "old"})
        await server.storage.set_data("bob", "localhost", "last", "logout", old)
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await bob.send("<presence type='unavailable'><status>brb</status></presence>")
    await drain(bob)
    reply = await ask(alice, last_query("l11", "bob@localhost"))
    assert re.fullmatch(
        "<iq type='result' id='l11' to='alice@localhost/a' from='bob@localhost'>"
        "<query xmlns='jabber:iq:last' seconds='[01]'>brb</query></iq>",
        reply,
    ), reply


@pytest.mark.parametrize("subscription", [None, "none", "to"])
async def test_last_activity_without_subscription_is_forbidden(
    server: Server, login: Login, subscription: str | None
) -> None:
    if subscription is not None:
        await subscribe(server, "bob", "alice", subscription)
    alice = await login("alice", "a")
    await login("bob", "b")
    reply = await ask(alice, last_query("l8", "bob@localhost"))
    # XEP-0012 §3: forbidden, whether bob is online or not
    assert reply == (
        "<iq type='error' id='l8' to='alice@localhost/a' from='bob@localhost'>"
        f"{error('auth', '403', 'forbidden')}</iq>"
    )


async def test_last_activity_of_an_unknown_user(login: Login) -> None:
    alice = await login("alice", "a")
    reply = await ask(alice, last_query("l9", "nobody@localhost"))
    assert reply == (
        "<iq type='error' id='l9' to='alice@localhost/a' from='nobody@localhost'>"
        f"{error('cancel', '503', 'service-unavailable')}</iq>"
    )


async def test_last_activity_never_logged_out(server: Server, login: Login) -> None:
    await subscribe(server, "bob", "alice", "from")
    alice = await login("alice", "a")
    reply = await ask(alice, last_query("l10", "bob@localhost"))
    assert reply == (
        "<iq type='error' id='l10' to='alice@localhost/a' from='bob@localhost'>"
        f"{error('cancel', '404', 'item-not-found')}</iq>"
    )


# -- XEP-0054 vcard-temp ----------------------------------------------------------------------

VCARD = (
    "<vCard xmlns='vcard-temp'><FN>Alice &amp; Co &lt;3</FN><N><FAMILY>Liddell</FAMILY>"
    "<GIVEN>Alice</GIVEN><MIDDLE/></N><NICKNAME>ali ☃</NICKNAME></vCard>"
)


@pytest.mark.parametrize("to", [None, "alice@localhost"], ids=["no-to", "own-bare"])
async def test_vcard_own_none_stored_is_empty(login: Login, to: str | None) -> None:
    alice = await login("alice", "a")
    t = f" to='{to}'" if to else ""
    frm = f" from='{to}'" if to else ""
    reply = await ask(alice, f"<iq type='get' id='c1'{t}><vCard xmlns='vcard-temp'/></iq>")
    assert reply == (
        f"<iq type='result' id='c1' to='alice@localhost/a'{frm}><vCard xmlns='vcard-temp'/></iq>"
    )


@pytest.mark.parametrize("to", [None, "alice@localhost"], ids=["no-to", "own-bare"])
async def test_vcard_set_then_get(server: Server, login: Login, to: str | None) -> None:
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    t = f" to='{to}'" if to else ""
    frm = f" from='{to}'" if to else ""
    reply = await ask(alice, f"<iq type='set' id='c2'{t}>{VCARD}</iq>")
    assert reply == f"<iq type='result' id='c2' to='alice@localhost/a'{frm}/>"

    reply = await ask(alice, "<iq type='get' id='c3'><vCard xmlns='vcard-temp'/></iq>")
    assert reply == f"<iq type='result' id='c3' to='alice@localhost/a'>{VCARD}</iq>"
    # XEP-0054 §3.3: anyone may read it, answered by the server
    reply = await ask(
        bob, "<iq type='get' id='c4' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>"
    )
    assert reply == (
        f"<iq type='result' id='c4' to='bob@localhost/b' from='alice@localhost'>{VCARD}</iq>"
    )
    assert await drain(alice) == []
    assert await server.storage.get_data("alice", "localhost", "vcard", "vcard") == VCARD


async def test_vcard_of_another_user_none_stored_is_empty(login: Login) -> None:
    bob = await login("bob", "b")
    reply = await ask(
        bob, "<iq type='get' id='c5' to='carol@localhost'><vCard xmlns='vcard-temp'/></iq>"
    )
    assert reply == (
        "<iq type='result' id='c5' to='bob@localhost/b' from='carol@localhost'>"
        "<vCard xmlns='vcard-temp'/></iq>"
    )


async def test_vcard_of_an_unknown_user(login: Login) -> None:
    bob = await login("bob", "b")
    reply = await ask(
        bob, "<iq type='get' id='c6' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>"
    )
    assert reply == (
        "<iq type='error' id='c6' to='bob@localhost/b' from='nobody@localhost'>"
        f"{error('cancel', '503', 'service-unavailable')}</iq>"
    )


async def test_vcard_set_on_another_user_is_forbidden(server: Server, login: Login) -> None:
    bob = await login("bob", "b")
    reply = await ask(bob, f"<iq type='set' id='c7' to='alice@localhost'>{VCARD}</iq>")
    assert reply == (
        "<iq type='error' id='c7' to='bob@localhost/b' from='alice@localhost'>"
        f"{error('auth', '403', 'forbidden')}</iq>"
    )
    assert await server.storage.get_data("alice", "localhost", "vcard", "vcard") is None


async def test_vcard_too_large_is_not_acceptable(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    await ask(alice, f"<iq type='set' id='c8'>{VCARD}</iq>")
    big = "x" * MAX_VCARD_SIZE
    reply = await ask(
        alice, f"<iq type='set' id='c9'><vCard xmlns='vcard-temp'><DESC>{big}</DESC></vCard></iq>"
    )
    assert reply == (
        "<iq type='error' id='c9' to='alice@localhost/a'>"
        f"{error('modify', '406', 'not-acceptable', 'the vCard is too large')}</iq>"
    )
    # the stored one is untouched
    assert await server.storage.get_data("alice", "localhost", "vcard", "vcard") == VCARD


async def test_vcard_set_empty_removes_it(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    await ask(alice, f"<iq type='set' id='c10'>{VCARD}</iq>")
    reply = await ask(alice, "<iq type='set' id='c11'><vCard xmlns='vcard-temp'/></iq>")
    assert reply == "<iq type='result' id='c11' to='alice@localhost/a'/>"
    assert await server.storage.get_data("alice", "localhost", "vcard", "vcard") is None
    reply = await ask(alice, "<iq type='get' id='c12'><vCard xmlns='vcard-temp'/></iq>")
    assert (
        reply
        == "<iq type='result' id='c12' to='alice@localhost/a'><vCard xmlns='vcard-temp'/></iq>"
    )


# -- XEP-0049 Private XML Storage ---------------------------------------------------------------

EXODUS = "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>"


def private(iq_type: str, iq_id: str, content: str, to: str | None = None) -> str:
    t = f" to='{to}'" if to else ""
    query = f"<query xmlns='jabber:iq:private'>{content}</query>"
    return f"<iq type='{iq_type}' id='{iq_id}'{t}>{query}</iq>"


async def test_private_store_and_retrieve(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    # XEP-0049 §2.3 examples 1 and 2
    reply = await ask(alice, private("set", "1001", EXODUS))
    assert reply == "<iq type='result' id='1001' to='alice@localhost/a'/>"
    reply = await ask(alice, private("get", "1002", "<exodus xmlns='exodus:prefs'/>"))
    assert reply == (
        "<iq type='result' id='1002' to='alice@localhost/a'>"
        f"<query xmlns='jabber:iq:private'>{EXODUS}</query></iq>"
    )
    # another session of the same account reads it too, addressed to the bare JID
    again = await login("alice", "again")
    reply = await ask(
        again, private("get", "1003", "<exodus xmlns='exodus:prefs'/>", "alice@localhost")
    )
    assert reply == (
        "<iq type='result' id='1003' to='alice@localhost/again' from='alice@localhost'>"
        f"<query xmlns='jabber:iq:private'>{EXODUS}</query></iq>"
    )
    # keyed by namespace and name: the same name elsewhere is another fragment
    reply = await ask(alice, private("get", "1004", "<exodus xmlns='other:prefs'/>"))
    assert reply == (
        "<iq type='result' id='1004' to='alice@localhost/a'>"
        "<query xmlns='jabber:iq:private'><exodus xmlns='other:prefs'/></query></iq>"
    )
    assert await server.storage.list_data("alice", "localhost", "private") == {
        "{exodus:prefs}exodus": EXODUS
    }


async def test_private_get_of_nothing_stored_returns_the_empty_element(login: Login) -> None:
    alice = await login("alice", "a")
    reply = await ask(alice, private("get", "p1", "<storage xmlns='storage:bookmarks'/>"))
    assert reply == (
        "<iq type='result' id='p1' to='alice@localhost/a'>"
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>"
    )


async def test_private_several_fragments_at_once(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    bookmarks = "<storage xmlns='storage:bookmarks'><url name='x' url='https://x.test/'/></storage>"
    notes = "<storage xmlns='storage:rosternotes'><note jid='bob@localhost'>hi</note></storage>"
    reply = await ask(alice, private("set", "p2", bookmarks + notes))
    assert reply == "<iq type='result' id='p2' to='alice@localhost/a'/>"
    reply = await ask(
        alice,
        private(
            "get",
            "p3",
            "<storage xmlns='storage:rosternotes'/><storage xmlns='storage:bookmarks'/>",
        ),
    )
    assert reply == (
        "<iq type='result' id='p3' to='alice@localhost/a'>"
        f"<query xmlns='jabber:iq:private'>{notes}{bookmarks}</query></iq>"
    )
    # an empty fragment deletes the stored one
    reply = await ask(alice, private("set", "p4", "<storage xmlns='storage:bookmarks'/>"))
    assert reply == "<iq type='result' id='p4' to='alice@localhost/a'/>"
    assert list(await server.storage.list_data("alice", "localhost", "private")) == [
        "{storage:rosternotes}storage"
    ]


@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_private_of_another_user_is_forbidden(
    server: Server, login: Login, iq_type: str
) -> None:
    bob = await login("bob", "b")
    reply = await ask(bob, private(iq_type, "p5", EXODUS, "alice@localhost"))
    # XEP-0049 §2.3: forbidden (preferred over service-unavailable)
    assert reply == (
        "<iq type='error' id='p5' to='bob@localhost/b' from='alice@localhost'>"
        f"{error('auth', '403', 'forbidden')}</iq>"
    )
    assert await server.storage.list_data("alice", "localhost", "private") == {}


@pytest.mark.parametrize("iq_type", ["get", "set"])
@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("", "a child element with its own namespace is needed"),
        ("<exodus><defaultnick>Hamlet</defaultnick></exodus>", None),  # jabber:iq:private
        ("<exodus xmlns='jabber:client'/>", None),
        ("<exodus xmlns='jabber:server'/>", None),
        (f"{EXODUS}<query xmlns='jabber:iq:private'/>", None),
    ],
    ids=["empty", "inherited", "client", "server", "one-of-two"],
)
async def test_private_needs_a_namespace_of_its_own(
    server: Server, login: Login, iq_type: str, content: str, text: str | None
) -> None:
    alice = await login("alice", "a")
    reply = await ask(alice, private(iq_type, "p6", content))
    m = re.fullmatch(
        "<iq type='error' id='p6' to='alice@localhost/a'>"
        f"<error type='modify' code='406'><not-acceptable {STANZAS}/>(.*)</error></iq>",
        reply,
    )
    assert m is not None, reply
    if text is not None:
        assert m.group(1) == f"<text {STANZAS} xml:lang='en'>{text}</text>"
    # XEP-0049 §2.3: nothing of a refused set is stored
    assert await server.storage.list_data("alice", "localhost", "private") == {}


async def test_private_same_fragment_twice_is_a_bad_request(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    reply = await ask(alice, private("set", "p7", EXODUS + EXODUS))
    assert reply == (
        "<iq type='error' id='p7' to='alice@localhost/a'>"
        f"{error('modify', '400', 'bad-request', '{exodus:prefs}exodus appears twice')}</iq>"
    )
    assert await server.storage.list_data("alice", "localhost", "private") == {}


async def test_private_limits(server: Server, login: Login) -> None:
    alice = await login("alice", "a")
    big = "x" * MAX_FRAGMENT_SIZE
    reply = await ask(alice, private("set", "p8", f"<big xmlns='urn:big'>{big}</big>"))
    assert reply == (
        "<iq type='error' id='p8' to='alice@localhost/a'>"
        f"{error('modify', '406', 'not-acceptable', '{urn:big}big is too large')}</iq>"
    )
    many = "".join(f"<f{i} xmlns='urn:many'>v</f{i}>" for i in range(MAX_FRAGMENTS + 1))
    reply = await ask(alice, private("set", "p9", many))
    assert reply == (
        "<iq type='error' id='p9' to='alice@localhost/a'>"
        f"{error('cancel', '405', 'not-allowed', 'too many private XML fragments')}</iq>"
    )
    assert await server.storage.list_data("alice", "localhost", "private") == {}
    # up to the limit is fine, and replacing a fragment when full is too
    many = "".join(f"<f{i} xmlns='urn:many'>v</f{i}>" for i in range(MAX_FRAGMENTS))
    reply = await ask(alice, private("set", "p10", many))
    assert reply == "<iq type='result' id='p10' to='alice@localhost/a'/>"
    reply = await ask(alice, private("set", "p11", "<f0 xmlns='urn:many'>w</f0>"))
    assert reply == "<iq type='result' id='p11' to='alice@localhost/a'/>"
    reply = await ask(alice, private("set", "p12", "<g xmlns='urn:many'>w</g>"))
    assert "not-allowed" in reply


# -- service discovery ------------------------------------------------------------------------


async def test_disco_lists_the_new_features(login: Login) -> None:
    alice = await login("alice", "a")
    await alice.send(f"<iq type='get' id='d1' to='localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>")
    el = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "d1")
    query = el.find("query", ns.DISCO_INFO)
    assert query is not None, serialize(el)
    features = {f.get("var") for f in query.find_all("feature", ns.DISCO_INFO)}
    assert set(NEW_NAMESPACES) <= features

    # an account answers last activity and vcard-temp through the server (XEP-0030 §8)
    await alice.send(
        f"<iq type='get' id='d2' to='alice@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    el = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "d2")
    query = el.find("query", ns.DISCO_INFO)
    assert query is not None, serialize(el)
    features = {f.get("var") for f in query.find_all("feature", ns.DISCO_INFO)}
    assert {"jabber:iq:last", "vcard-temp"} <= features
