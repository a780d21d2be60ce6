"""XEP-0016 Privacy Lists (RFC 3921 §10), end to end with raw XML.

Managing lists (names, get, edit, remove, active and default lists, the errors of §2.3-2.8)
and what lists do to stanzas: stanza kinds, JID, group and subscription items, the order of
items, active lists per session, default lists for the whole account (also while offline),
and the blocklist view of the default list (XEP-0191 §5). "Nothing arrived" is checked with
a ping round trip (``drain``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roost.core.im.privacy import MAX_ITEMS
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import Logins, RawClient
from tests.server.privacy_helpers import (
    BLOCKING,
    PRIVACY,
    UNAVAILABLE_ERROR,
    Login,
    ask,
    block_push,
    chat,
    drain,
    error,
    friends,
    list_push,
    quiet,
    seed,
    settled,
)

A = "alice@localhost/a"
A2 = "alice@localhost/a2"
B = "bob@localhost/b"
NOT_ACCEPTABLE = error("cancel", "406", "not-acceptable")


@pytest.fixture
async def login(server: Server) -> AsyncIterator[Login]:
    logins = Logins(server)
    yield logins
    await logins.close()


def item(
    order: int, action: str = "deny", type_: str | None = None, value: str = "", *kinds: str
) -> str:
    t = f" type='{type_}' value='{value}'" if type_ else ""
    body = "".join(f"<{k}/>" for k in kinds)
    end = f">{body}</item>" if body else "/>"
    return f"<item{t} action='{action}' order='{order}'{end}"


async def privacy(c: RawClient, kind: str, body: str, iq_id: str = "p1") -> tuple[str, list[str]]:
    """A jabber:iq:privacy request; its reply and what came before it."""
    return await ask(
        c, f"<iq type='{kind}' id='{iq_id}'><query xmlns='{PRIVACY}'>{body}</query></iq>"
    )


async def ok(c: RawClient, body: str, iq_id: str = "p1") -> list[str]:
    reply, before = await privacy(c, "set", body, iq_id)
    assert reply == f"<iq type='result' id='{iq_id}' to='{c.jid}'/>", reply
    return before


async def put(c: RawClient, name: str, *items: str, iq_id: str = "p1") -> list[str]:
    return await ok(c, f"<list name='{name}'>{''.join(items)}</list>", iq_id)


async def names(c: RawClient, iq_id: str = "n1") -> str:
    reply, _ = await privacy(c, "get", "", iq_id)
    prefix = f"<iq type='result' id='{iq_id}' to='{c.jid}'>"
    assert reply.startswith(prefix), reply
    return reply[len(prefix) : -len("</iq>")]


def block_iq(jid: str) -> str:
    return f"<iq type='set' id='b1'><block xmlns='{BLOCKING}'><item jid='{jid}'/></block></iq>"


def refused(reply: str, condition: str) -> bool:
    return f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" in reply and (
        "type='error'" in reply
    )


# -- managing lists (§2.3-2.8) -------------------------------------------------------------


async def test_no_lists(login: Login) -> None:
    alice = await login("alice", "a")
    assert await names(alice) == f"<query xmlns='{PRIVACY}'/>"


async def test_create_get_names_and_pushes(login: Login) -> None:
    a = await login("alice", "a", available=False)
    a2 = await login("alice", "a2", available=False)
    pushes = await put(
        a,
        "public",
        item(68, "allow"),
        item(5, "deny", "jid", "Paris@LOCALHOST", "message", "presence-in"),
        item(3, "deny", "jid", "tybalt@example.test"),
    )
    # §2.6: the name is pushed to every connected resource, the sender included
    assert pushes == [list_push(A, "public")]
    assert await settled(a2) == [list_push(A2, "public")]
    reply, _ = await privacy(a2, "get", "<list name='public'/>", "g1")
    assert reply == (
        f"<iq type='result' id='g1' to='{A2}'><query xmlns='{PRIVACY}'><list name='public'>"
        "<item type='jid' value='tybalt@example.test' action='deny' order='3'/>"
        "<item type='jid' value='paris@localhost' action='deny' order='5'>"
        "<message/><presence-in/></item>"
        "<item action='allow' order='68'/>"
        "</list></query></iq>"
    )
    await put(a, "private", item(10, "allow", "subscription", "both"), item(15))
    await ok(a, "<default name='public'/>", "d1")
    await ok(a, "<active name='private'/>", "ac1")
    # §2.3: active (of the asking session) and default first, then every name
    assert await names(a) == (
        f"<query xmlns='{PRIVACY}'><active name='private'/><default name='public'/>"
        "<list name='private'/><list name='public'/></query>"
    )
    assert await names(a2) == (
        f"<query xmlns='{PRIVACY}'><default name='public'/>"
        "<list name='private'/><list name='public'/></query>"
    )
    # COMPAT: a get with <active/> or <default/> only (slixmpp) gets the names too
    reply, _ = await privacy(a, "get", "<active/>", "g2")
    assert "<active name='private'/>" in reply
    # §2.7: a list of the same name replaces the old one
    await put(a, "public", item(1, "allow"), iq_id="p2")
    reply, _ = await privacy(a, "get", "<list name='public'/>", "g3")
    assert "<list name='public'><item action='allow' order='1'/></list>" in reply


@pytest.mark.parametrize(
    ("kind", "body", "condition"),
    [
        ("get", "<list name='a'/><list name='b'/>", "bad-request"),  # §2.3: one at a time
        ("get", "<list name='nope'/>", "item-not-found"),
        ("set", "<active/><default/>", "bad-request"),  # §2.1: one child
        ("set", "", "bad-request"),
        ("set", "<whatever/>", "bad-request"),
        ("set", "<active name='nope'/>", "item-not-found"),  # §2.4
        ("set", "<default name='nope'/>", "item-not-found"),  # §2.5
        ("set", "<list name='nope'/>", "item-not-found"),  # §2.8
        ("set", f"<list>{item(1)}</list>", "bad-request"),
        ("set", f"<list name='x'>{item(1)}{item(1, 'allow')}</list>", "bad-request"),  # order
        ("set", "<list name='x'><item action='maybe' order='1'/></list>", "bad-request"),
        ("set", "<list name='x'><item action='deny'/></list>", "bad-request"),
        ("set", "<list name='x'><item action='deny' order='-1'/></list>", "bad-request"),
        (
            "set",
            "<list name='x'><item type='x' value='y' action='deny' order='1'/></list>",
            "bad-request",
        ),
        ("set", f"<list name='x'>{item(1, 'deny', 'jid', 'a@b@c')}</list>", "jid-malformed"),
        ("set", f"<list name='x'>{item(1, 'deny', 'subscription', 'some')}</list>", "bad-request"),
        ("set", "<list name='x'><item type='jid' action='deny' order='1'/></list>", "bad-request"),
        ("set", f"<list name='x'>{item(1, 'deny', 'group', 'Nobody')}</list>", "item-not-found"),
        (
            "set",
            "<list name='x'><item action='deny' order='1'><chat/></item></list>",
            "bad-request",
        ),
    ],
)
async def test_errors(login: Login, kind: str, body: str, condition: str) -> None:
    alice = await login("alice", "a")
    reply, _ = await privacy(alice, kind, body)
    assert refused(reply, condition), reply
    assert await names(alice) == f"<query xmlns='{PRIVACY}'/>"  # nothing was stored


async def test_someone_elses_lists_are_forbidden(login: Login) -> None:
    alice = await login("alice", "a")
    reply, _ = await ask(
        alice, f"<iq type='get' id='x1' to='bob@localhost'><query xmlns='{PRIVACY}'/></iq>"
    )
    forbidden = error("auth", "403", "forbidden")
    assert reply == f"<iq type='error' id='x1' to='{A}' from='bob@localhost'>{forbidden}</iq>"


async def test_too_many_items(login: Login) -> None:
    alice = await login("alice", "a", available=False)
    body = "".join(item(n) for n in range(MAX_ITEMS + 1))
    reply, _ = await privacy(alice, "set", f"<list name='big'>{body}</list>")
    assert refused(reply, "not-allowed"), reply


async def test_default_list_conflicts(login: Login) -> None:
    a = await login("alice", "a", available=False)
    a2 = await login("alice", "a2", available=False)
    await put(a, "one", item(1, "deny", "jid", "bob@localhost"))
    await put(a, "two", item(1, "deny", "jid", "carol@localhost"), iq_id="p2")
    await ok(a, "<default name='one'/>", "d1")  # there was no default list: nothing in use
    # §2.5: a2 has no active list, so the default list applies to it
    reply, _ = await privacy(a, "set", "<default name='two'/>", "d2")
    assert reply == (
        f"<iq type='error' id='d2' to='{A}'><error type='cancel' code='409'>"
        "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>the default list applies "
        "to another session</text></error></iq>"
    )
    reply, _ = await privacy(a, "set", "<default/>", "d3")  # declining it too
    assert refused(reply, "conflict")
    await ok(a, "<default name='one'/>", "d4")  # unchanged: fine
    await ok(a2, "<active name='two'/>", "ac1")
    await ok(a, "<default name='two'/>", "d5")  # a2 has its own list now
    await ok(a, "<default/>", "d6")
    assert "<default" not in await names(a2)


async def test_remove_list(login: Login) -> None:
    a = await login("alice", "a", available=False)
    a2 = await login("alice", "a2", available=False)
    await put(a, "mine", item(1))
    await ok(a2, "<active name='mine'/>", "ac1")
    reply, _ = await privacy(a, "set", "<list name='mine'/>", "r1")
    assert refused(reply, "conflict")  # §2.8: a2 uses it
    await ok(a2, "<active/>", "ac2")
    await settled(a2)
    pushes = await ok(a, "<list name='mine'/>", "r2")
    assert pushes == [list_push(A, "mine")]
    assert await settled(a2) == [list_push(A2, "mine")]
    assert await names(a) == f"<query xmlns='{PRIVACY}'/>"
    # one's own active or default list may go: it stops applying
    await put(a, "own", item(1), iq_id="p2")
    await ok(a, "<active name='own'/>", "ac3")
    await ok(a2, "<active name='own'/>", "ac4")
    reply, _ = await privacy(a, "set", "<list name='own'/>", "r3")
    assert refused(reply, "conflict")
    await ok(a2, "<active/>", "ac5")
    await ok(a, "<list name='own'/>", "r4")
    assert await names(a) == f"<query xmlns='{PRIVACY}'/>"


async def test_lists_survive_logout_but_active_lists_do_not(login: Login) -> None:
    a = await login("alice", "a")
    await put(a, "public", item(1, "deny", "jid", "bob@localhost"))
    await put(a, "other", item(1), iq_id="p2")
    await ok(a, "<default name='public'/>", "d1")
    await ok(a, "<active name='other'/>", "ac1")
    await a.close()
    a = await login("alice", "a")
    assert await names(a) == (
        f"<query xmlns='{PRIVACY}'><default name='public'/>"
        "<list name='other'/><list name='public'/></query>"
    )


# -- enforcement ------------------------------------------------------------------------------


async def _bob_sends(
    alice: RawClient, bob: RawClient, to: str = "alice@localhost"
) -> dict[str, bool]:
    """Which of a message, an iq get and presence from bob reached alice."""
    await drain(alice)
    await drain(bob)
    await bob.send(chat(to, "hi", "k1"))
    await bob.send(f"<iq type='get' id='k2' to='{A}'><query xmlns='jabber:iq:version'/></iq>")
    await bob.send("<presence><status>k3</status></presence>")
    got = await settled(alice)
    back = await settled(bob)
    seen = {
        "message": any("id='k1'" in s for s in got),
        "iq": any("id='k2'" in s for s in got),
        "presence": any("k3" in s and "from='bob@" in s for s in got),
    }
    # what did not reach alice bounced with service-unavailable (presence quietly)
    for kind, tag, sid in (("message", "message", "k1"), ("iq", "iq", "k2")):
        bounce = f"<{tag} type='error' id='{sid}' to='{B}' from='{to if tag == 'message' else A}'>"
        assert (f"{bounce}{UNAVAILABLE_ERROR}</{tag}>" in back) is not seen[kind], back
    return seen


@pytest.mark.parametrize(
    ("kinds", "reaches"),
    [
        ((), {"message": False, "iq": False, "presence": False}),
        (("message",), {"message": False, "iq": True, "presence": True}),
        (("iq",), {"message": True, "iq": False, "presence": True}),
        (("presence-in",), {"message": True, "iq": True, "presence": False}),
        (("presence-out",), {"message": True, "iq": True, "presence": True}),
        (("message", "iq"), {"message": False, "iq": False, "presence": True}),
    ],
)
async def test_stanza_kinds_inbound(
    server: Server, login: Login, kinds: tuple[str, ...], reaches: dict[str, bool]
) -> None:
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await put(alice, "l", item(1, "deny", "jid", "bob@localhost", *kinds))
    await ok(alice, "<default name='l'/>", "d1")
    assert await _bob_sends(alice, bob) == reaches


async def test_presence_out(server: Server, login: Login) -> None:
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await put(alice, "l", item(1, "deny", "jid", "bob@localhost", "presence-out"))
    await ok(alice, "<default name='l'/>", "d1")
    await settled(bob)
    await alice.send("<presence><status>hidden</status></presence>")
    await alice.send(f"<presence to='{B}'><status>directed</status></presence>")
    await alice.send(chat("bob@localhost", "but messages go"))
    got = await settled(bob)
    assert [s for s in got if s.startswith("<presence")] == []
    assert any(s.startswith("<message") for s in got)
    # presence is dropped without an error (alice sees only her own broadcast)
    assert [s for s in await settled(alice) if "type='error'" in s] == []


async def test_outbound_refused_with_not_acceptable(server: Server, login: Login) -> None:
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    carol = await login("carol", "c")
    # "block all communications with any user not in my roster" (§2.15)
    await put(alice, "strangers", item(437, "deny", "subscription", "none"))
    await ok(alice, "<default name='strangers'/>", "d1")
    await drain(carol)
    await alice.send(chat("carol@localhost", "hello?", "m1"))
    # XEP-0016 §2.14: not-acceptable; no <blocked/>, as no blocklist item decided
    assert serialize(await alice.expect(lambda e: e.tag == "message")) == (
        f"<message type='error' id='m1' to='{A}' from='carol@localhost'>{NOT_ACCEPTABLE}</message>"
    )
    await carol.send(chat("alice@localhost", "hi", "m2"))
    assert (await carol.expect(lambda e: e.tag == "message")).get("type") == "error"
    await alice.send(chat("bob@localhost", "friends are fine", "m3"))
    assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m3"
    await quiet(carol)


async def test_group_items_and_order(server: Server, login: Login) -> None:
    await seed(server, "alice", "bob", "none", ("Friends",))
    await seed(server, "alice", "carol", "both", ("Work",))
    alice = await login("alice", "a")
    bob = await login("bob", "b", available=False)
    carol = await login("carol", "c", available=False)
    await put(
        alice,
        "l",
        item(2, "allow", "group", "Friends", "message"),
        item(5, "deny", None, "", "message"),  # fall-through for messages
        item(1, "deny", "jid", "bob@localhost/mobile"),  # ordered first, but not bob/b
    )
    await ok(alice, "<default name='l'/>", "d1")
    await bob.send(chat("alice@localhost", "friend", "m1"))
    await carol.send(chat("alice@localhost", "colleague", "m2"))
    assert (await alice.expect(lambda e: e.tag == "message")).get("id") == "m1"
    assert (await carol.next()).get("type") == "error"
    await quiet(alice)
    # §2.2 rule 9: a roster change applies at once
    reply, _ = await ask(
        alice,
        "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'>"
        "<group>Friends</group></item></query></iq>",
    )
    assert "type='result'" in reply
    await carol.send(chat("alice@localhost", "friend now", "m3"))
    assert (await alice.expect(lambda e: e.tag == "message")).get("id") == "m3"


@pytest.mark.parametrize(
    ("value", "refused_from"),
    [
        ("bob@localhost/b1", {"bob/b1"}),
        ("bob@localhost", {"bob/b1", "bob/b2"}),
        ("localhost/b1", {"bob/b1", "carol/b1"}),  # domain/resource: that resource anywhere
        ("localhost", {"bob/b1", "bob/b2", "carol/b1"}),  # the domain and all at it
        ("example.test", set()),
    ],
)
async def test_jid_matching(login: Login, value: str, refused_from: set[str]) -> None:
    alice = await login("alice", "a")
    senders = {
        "bob/b1": await login("bob", "b1", available=False),
        "bob/b2": await login("bob", "b2", available=False),
        "carol/b1": await login("carol", "b1", available=False),
    }
    await put(alice, "l", item(1, "deny", "jid", value))
    await ok(alice, "<default name='l'/>", "d1")
    refused_now = set()
    for name, c in senders.items():
        await c.send(chat(A, name))
        got = await settled(c)
        if got:
            assert got[0].startswith("<message type='error'"), got
            refused_now.add(name)
    assert refused_now == refused_from
    # never between one user's resources, and never the server itself (pings, pushes...)
    a2 = await login("alice", "a2", available=False)
    await a2.send(chat(A, "self"))
    assert len([s for s in await settled(alice) if "from='alice@localhost/a2'" in s]) == 1


async def test_active_list_applies_to_its_session_only(login: Login) -> None:
    a = await login("alice", "a")
    a2 = await login("alice", "a2")
    bob = await login("bob", "b", available=False)
    await put(a, "quiet", item(1, "deny", "jid", "bob@localhost", "message"))
    await ok(a, "<active name='quiet'/>", "ac1")
    for c in (a, a2):
        await settled(c)
    await bob.send(chat(A, "to a", "m1"))
    assert (await bob.next()).get("type") == "error"
    await bob.send(chat(A2, "to a2", "m2"))
    assert (await a2.expect(lambda e: e.tag == "message")).get("id") == "m2"
    # to the bare JID: each available session judged by its own list (§2.2 rule 1)
    await bob.send(chat("alice@localhost", "to alice", "m3"))
    assert (await a2.expect(lambda e: e.tag == "message")).get("id") == "m3"
    await quiet(a, bob)
    await ok(a2, "<active name='quiet'/>", "ac2")
    await bob.send(chat("alice@localhost", "to alice again", "m4"))
    assert (await bob.next()).get("type") == "error"
    await ok(a, "<active/>", "ac3")  # declined: no list applies to a any more
    await bob.send(chat(A, "to a", "m5"))
    assert (await a.expect(lambda e: e.tag == "message")).get("id") == "m5"


async def test_editing_an_active_list_applies_at_once(login: Login) -> None:
    a = await login("alice", "a")
    bob = await login("bob", "b", available=False)
    await put(a, "l", item(1, "allow"))
    await ok(a, "<active name='l'/>", "ac1")
    await put(a, "l", item(1, "deny", "jid", "bob@localhost"), iq_id="p2")  # §2.2 rule 8
    await bob.send(chat(A, "hi"))
    assert (await bob.next()).get("type") == "error"


async def test_default_list_applies_while_offline(server: Server, login: Login) -> None:
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    await put(alice, "l", item(1, "deny", "subscription", "none", "message"))
    await ok(alice, "<default name='l'/>", "d1")
    await alice.close()
    bob = await login("bob", "b", available=False)
    carol = await login("carol", "c", available=False)
    # alice's roster is not in memory now; the check waits for it
    await carol.send(chat("alice@localhost", "stranger", "m1"))
    assert serialize(await carol.next()) == (
        "<message type='error' id='m1' to='carol@localhost/c' from='alice@localhost'>"
        f"{UNAVAILABLE_ERROR}</message>"
    )
    await bob.send(chat("alice@localhost", "friend", "m2"))
    await quiet(bob)  # stored for later
    alice = await login("alice", "a")
    got = await alice.expect(lambda e: e.tag == "message")
    assert got.get("id") == "m2"


async def test_default_list_edits_are_blocklist_changes(login: Login) -> None:
    """XEP-0191 §5: the blocklist is the default list's jid/deny items."""
    a = await login("alice", "a", available=False)
    a2 = await login("alice", "a2", available=False)
    reply, _ = await ask(a, f"<iq type='get' id='bl1'><blocklist xmlns='{BLOCKING}'/></iq>")
    await put(a2, "mine", item(1, "deny", "jid", "bob@localhost"), item(2, "allow"))
    assert await settled(a) == [list_push(A, "mine")]  # not the default list yet
    await ok(a2, "<default name='mine'/>", "d1")
    assert await settled(a) == [block_push(A, "block", "bob@localhost")]
    await put(
        a2,
        "mine",
        item(1, "deny", "jid", "carol@localhost"),
        item(2, "deny", "jid", "bob@localhost", "message"),
        iq_id="p2",
    )
    # bob is no longer blocked in the XEP-0191 sense (only his messages are denied)
    assert await settled(a) == [
        block_push(A, "block", "carol@localhost"),
        block_push(A, "unblock", "bob@localhost"),
        list_push(A, "mine"),
    ]
    reply, _ = await ask(a, f"<iq type='get' id='bl2'><blocklist xmlns='{BLOCKING}'/></iq>")
    assert reply == (
        f"<iq type='result' id='bl2' to='{A}'><blocklist xmlns='{BLOCKING}'>"
        "<item jid='carol@localhost'/></blocklist></iq>"
    )
    # and a block command adds to that same list, first (§5)
    await ask(a, block_iq("dave@localhost"))
    reply, _ = await privacy(a, "get", "<list name='mine'/>", "g1")
    assert reply == (
        f"<iq type='result' id='g1' to='{A}'><query xmlns='{PRIVACY}'><list name='mine'>"
        "<item type='jid' value='dave@localhost' action='deny' order='0'/>"
        "<item type='jid' value='carol@localhost' action='deny' order='1'/>"
        "<item type='jid' value='bob@localhost' action='deny' order='2'><message/></item>"
        "</list></query></iq>"
    )


async def test_block_command_creates_the_default_list(login: Login) -> None:
    a = await login("alice", "a", available=False)
    await ask(a, block_iq("bob@localhost"))
    assert await names(a) == (
        f"<query xmlns='{PRIVACY}'><default name='blocklist'/><list name='blocklist'/></query>"
    )
    reply, _ = await privacy(a, "get", "<list name='blocklist'/>", "g1")
    assert "<item type='jid' value='bob@localhost' action='deny' order='0'/>" in reply


async def test_removing_the_default_list_declines_it(login: Login) -> None:
    a = await login("alice", "a", available=False)
    bob = await login("bob", "b", available=False)
    await put(a, "l", item(1, "deny", "jid", "bob@localhost"))
    await ok(a, "<default name='l'/>", "d1")
    await ok(a, "<list name='l'/>", "r1")  # only this session uses it
    assert await names(a) == f"<query xmlns='{PRIVACY}'/>"
    await bob.send(chat(A, "through again"))
    assert (await a.expect(lambda e: e.tag == "message")).get("from") == B


async def test_too_many_lists(login: Login) -> None:
    from roost.core.im.privacy import MAX_LISTS

    a = await login("alice", "a", available=False)
    for n in range(MAX_LISTS):
        await ok(a, f"<list name='l{n}'>{item(1)}</list>", f"p{n}")
    reply, _ = await privacy(a, "set", f"<list name='one-more'>{item(1)}</list>", "px")
    assert refused(reply, "not-allowed"), reply
    await ok(a, f"<list name='l0'>{item(2)}</list>", "py")  # replacing one is fine


async def test_presence_out_for_an_offline_user_needs_its_roster(
    server: Server, login: Login
) -> None:
    """A probe answered for offline alice (RFC 6121 §4.3.2) goes through her presence-out
    rule; the rule names a subscription state, so her roster is read first."""
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    await put(alice, "l", item(1, "deny", "subscription", "both", "presence-out"))
    await ok(alice, "<default name='l'/>", "d1")
    await alice.close()
    bob = await login("bob", "b", available=False)
    await bob.send("<presence/>")
    assert await settled(bob) == [f"<presence from='{B}' to='{B}'/>"]  # no unavailable from alice
    await ok(alice2 := await login("alice", "a"), "<default/>", "d2")
    await alice2.close()
    await bob.send("<presence type='unavailable'/>")
    await bob.send("<presence/>")
    got = await settled(bob)
    assert any("type='unavailable' from='alice@localhost'" in s for s in got), got


async def test_to_bare_jid_with_an_active_list_that_allows(login: Login) -> None:
    a = await login("alice", "a")
    bob = await login("bob", "b", available=False)
    await put(a, "open", item(1, "allow"))
    await ok(a, "<active name='open'/>", "ac1")
    await settled(a)
    await bob.send(chat("alice@localhost", "hi"))
    assert (await a.expect(lambda e: e.tag == "message")).get("from") == B
