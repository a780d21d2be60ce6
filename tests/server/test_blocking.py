"""XEP-0191 Blocking Command, end to end with raw XML.

The blocklist, its pushes, and what blocking does to stanzas both ways (§3.3): from a
blocked JID presence is dropped and messages and iq requests get ``service-unavailable``;
to it messages and iq requests get ``not-acceptable`` with ``<blocked/>`` and presence is
dropped. The blocklist is the default privacy list (§5), so a change also pushes that
list's name (XEP-0016 §2.2 rule 10) to every session. "Nothing arrived" is checked with a
ping round trip (``drain``), never a bare sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import Logins, RawClient, start_server
from tests.server.privacy_helpers import (
    BLOCKED_ERROR,
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
B = "bob@localhost/b"


@pytest.fixture
async def login(server: Server) -> AsyncIterator[Login]:
    logins = Logins(server)
    yield logins
    await logins.close()


async def block(c: RawClient, *jids: str, iq_id: str = "b1") -> list[str]:
    """Block ``jids``; assert the result; return the pushes that came first."""
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    reply, before = await ask(
        c, f"<iq type='set' id='{iq_id}'><block xmlns='{BLOCKING}'>{items}</block></iq>"
    )
    assert reply == f"<iq type='result' id='{iq_id}' to='{c.jid}'/>"
    return before


async def unblock(c: RawClient, *jids: str, iq_id: str = "u1") -> list[str]:
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    body = (
        f"<unblock xmlns='{BLOCKING}'>{items}</unblock>"
        if jids
        else f"<unblock xmlns='{BLOCKING}'/>"
    )
    reply, before = await ask(c, f"<iq type='set' id='{iq_id}'>{body}</iq>")
    assert reply == f"<iq type='result' id='{iq_id}' to='{c.jid}'/>"
    return before


async def blocklist(c: RawClient, iq_id: str = "bl1") -> str:
    reply, _ = await ask(c, f"<iq type='get' id='{iq_id}'><blocklist xmlns='{BLOCKING}'/></iq>")
    return reply


# -- discovery and the list itself (§2, §3.2-3.5) ----------------------------------------------


async def test_server_advertises_blocking_and_privacy(login: Login) -> None:
    alice = await login("alice", "a")
    reply, _ = await ask(
        alice,
        "<iq type='get' id='d1' to='localhost'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    assert f"<feature var='{BLOCKING}'/>" in reply
    assert f"<feature var='{PRIVACY}'/>" in reply


async def test_empty_blocklist(login: Login) -> None:
    alice = await login("alice", "a")
    assert await blocklist(alice) == (
        f"<iq type='result' id='bl1' to='{A}'><blocklist xmlns='{BLOCKING}'/></iq>"
    )


async def test_block_pushes_to_sessions_that_asked_for_the_blocklist(login: Login) -> None:
    a = await login("alice", "a", available=False)
    a2 = await login("alice", "a2", available=False)
    a3 = await login("alice", "a3", available=False)
    await blocklist(a)
    await blocklist(a3)
    await quiet(a, a2, a3)

    pushes = await block(a, "bob@localhost", "Carol@LOCALHOST")
    both = ("bob@localhost", "carol@localhost")  # stored and pushed normalised
    assert pushes == [block_push(A, "block", *both), list_push(A, "blocklist")]
    assert await settled(a3) == [
        block_push("alice@localhost/a3", "block", *both),
        list_push("alice@localhost/a3", "blocklist"),
    ]
    # a2 never asked for the blocklist: only the privacy list push (to every session)
    assert await settled(a2) == [list_push("alice@localhost/a2", "blocklist")]
    assert await blocklist(a2) == (
        "<iq type='result' id='bl1' to='alice@localhost/a2'><blocklist xmlns='urn:xmpp:blocking'>"
        "<item jid='bob@localhost'/><item jid='carol@localhost'/></blocklist></iq>"
    )

    # Blocking a blocked JID again changes nothing and pushes nothing.
    assert await block(a, "bob@localhost", iq_id="b2") == []
    await quiet(a2, a3)

    pushes = await unblock(a, "carol@localhost")
    assert pushes == [block_push(A, "unblock", "carol@localhost"), list_push(A, "blocklist")]
    assert await settled(a3) == [
        block_push("alice@localhost/a3", "unblock", "carol@localhost"),
        list_push("alice@localhost/a3", "blocklist"),
    ]
    # a2 has asked for the blocklist meanwhile
    assert await settled(a2) == [
        block_push("alice@localhost/a2", "unblock", "carol@localhost"),
        list_push("alice@localhost/a2", "blocklist"),
    ]
    # Unblocking what is not blocked: a result, no push.
    assert await unblock(a, "dave@localhost", iq_id="u2") == []
    assert await blocklist(a, "bl2") == (
        f"<iq type='result' id='bl2' to='{A}'><blocklist xmlns='{BLOCKING}'>"
        "<item jid='bob@localhost'/></blocklist></iq>"
    )


async def test_unblock_all(login: Login) -> None:
    alice = await login("alice", "a")
    await blocklist(alice)
    await block(alice, "bob@localhost", "carol@localhost", "example.test")
    pushes = await unblock(alice)
    assert pushes == [block_push(A, "unblock"), list_push(A, "blocklist")]  # §3.5: empty
    assert await blocklist(alice, "bl2") == (
        f"<iq type='result' id='bl2' to='{A}'><blocklist xmlns='{BLOCKING}'/></iq>"
    )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (f"<block xmlns='{BLOCKING}'/>", error("modify", "400", "bad-request")),
        (f"<block xmlns='{BLOCKING}'><item/></block>", error("modify", "400", "bad-request")),
        (
            f"<block xmlns='{BLOCKING}'><item jid='a@b@c'/></block>",
            error("modify", "400", "jid-malformed"),
        ),
        (
            f"<unblock xmlns='{BLOCKING}'><thing jid='bob@localhost'/></unblock>",
            error("modify", "400", "bad-request"),
        ),
    ],
)
async def test_bad_commands(login: Login, payload: str, expected: str) -> None:
    alice = await login("alice", "a")
    reply, _ = await ask(alice, f"<iq type='set' id='x1'>{payload}</iq>")
    # (each error also says why in a <text/>)
    start = f"<iq type='error' id='x1' to='{A}'>{expected.split('/>')[0]}/>"
    assert reply.startswith(start), reply
    await quiet(alice)


async def test_someone_elses_blocklist_is_forbidden(login: Login) -> None:
    alice = await login("alice", "a")
    reply, _ = await ask(
        alice,
        f"<iq type='get' id='x1' to='bob@localhost'><blocklist xmlns='{BLOCKING}'/></iq>",
    )
    assert reply == (
        f"<iq type='error' id='x1' to='{A}' from='bob@localhost'>"
        f"{error('auth', '403', 'forbidden')}</iq>"
    )


# -- enforcement (§3.3) ----------------------------------------------------------------------


async def test_blocked_contact_messages_bounce_and_user_messages_are_refused(
    login: Login,
) -> None:
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await block(alice, "bob@localhost")
    await quiet(alice, bob)

    for mid, to in (("m1", "alice@localhost"), ("m2", A)):
        await bob.send(chat(to, "hi", mid))
        assert serialize(await bob.next()) == (
            f"<message type='error' id='{mid}' to='{B}' from='{to}'>{UNAVAILABLE_ERROR}</message>"
        )
    await alice.send(chat("bob@localhost", "hi", "m3"))
    assert serialize(await alice.next()) == (
        f"<message type='error' id='m3' to='{A}' from='bob@localhost'>{BLOCKED_ERROR}</message>"
    )
    # an error is never answered with an error (RFC 6120 §8.3.1): dropped both ways
    await bob.send("<message to='alice@localhost' type='error' id='e1'/>")
    await alice.send("<message to='bob@localhost' type='error' id='e2'/>")
    await quiet(alice, bob)


async def test_iq_both_ways(server: Server, login: Login) -> None:
    await friends(server, "alice", "bob")  # blocking must win even over a subscription
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    version = "<query xmlns='jabber:iq:version'/>"
    await bob.send(f"<iq type='get' id='v0' to='{A}'>{version}</iq>")
    assert (await alice.expect(lambda e: e.tag == "iq")).get("id") == "v0"

    await block(alice, "bob@localhost")
    await drain(bob)
    await bob.send(f"<iq type='get' id='v1' to='{A}'>{version}</iq>")
    assert serialize(await bob.next()) == (
        f"<iq type='error' id='v1' to='{B}' from='{A}'>{UNAVAILABLE_ERROR}</iq>"
    )
    await alice.send(f"<iq type='get' id='v2' to='{B}'>{version}</iq>")
    assert serialize(await alice.next()) == (
        f"<iq type='error' id='v2' to='{A}' from='{B}'>{BLOCKED_ERROR}</iq>"
    )
    # results and errors are dropped silently
    await bob.send(f"<iq type='result' id='v0' to='{A}'/>")
    await alice.send(f"<iq type='result' id='v9' to='{B}'/>")
    await quiet(alice, bob)


async def test_presence_both_ways_and_unavailable_on_block(server: Server, login: Login) -> None:
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    alice2 = await login("alice", "a2")
    bob = await login("bob", "b")
    for c in (alice, alice2, bob):
        await settled(c)

    await block(alice, "bob@localhost")
    # §3.3: unavailable from each of alice's available resources, and nothing else
    got = sorted(await settled(bob))
    assert got == [
        f"<presence type='unavailable' from='{A}' to='bob@localhost'/>",
        "<presence type='unavailable' from='alice@localhost/a2' to='bob@localhost'/>",
    ]
    await drain(alice2)

    # alice's broadcasts no longer reach bob; bob's no longer reach alice
    await alice.send("<presence><show>away</show></presence>")
    await bob.send("<presence><show>dnd</show></presence>")
    await bob.send(f"<presence to='{A}'/>")  # directed presence
    await bob.send("<presence to='alice@localhost' type='probe'/>")  # clients do not probe
    await alice.send(f"<presence to='{B}'/>")  # directed from the user: dropped, no error
    own = [s for s in await settled(alice) if "from='alice@localhost/" not in s]
    assert own == []
    assert [s for s in await settled(alice2) if "from='bob@" in s] == []
    assert [s for s in await settled(bob) if "from='alice@" in s] == []


async def test_unblock_restores_presence_and_delivery(server: Server, login: Login) -> None:
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await block(alice, "bob@localhost")
    await drain(alice)
    await drain(bob)

    await unblock(alice, "bob@localhost")
    # §3.4: bob, a subscriber, gets alice's current presence again
    assert await settled(bob) == [f"<presence from='{A}' to='bob@localhost'/>"]
    await bob.send(chat("alice@localhost", "back"))
    got = await alice.expect(lambda e: e.tag == "message")
    assert got.get("from") == B
    await alice.send(chat("bob@localhost", "welcome", "m2"))
    got = await bob.expect(lambda e: e.tag == "message")
    assert got.get("from") == A
    await bob.send("<presence><show>chat</show></presence>")
    got = await alice.expect(lambda e: e.tag == "presence" and e.get("from") == B)
    assert (
        serialize(got) == f"<presence from='{B}' to='alice@localhost'><show>chat</show></presence>"
    )


async def test_subscription_requests_from_and_to_a_blocked_jid(login: Login) -> None:
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await ask(alice, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    await block(alice, "bob@localhost")
    await drain(alice)
    await drain(bob)
    # bob's request vanishes: no error, nothing for alice, no roster change for her
    await bob.send("<presence to='alice@localhost' type='subscribe'/>")
    assert await settled(alice) == []
    # alice's own request to bob is dropped before her roster changes (no push)
    await alice.send("<presence to='bob@localhost' type='subscribe'/>")
    await quiet(alice)
    assert [s for s in await settled(bob) if "subscribe" in s] == []
    assert (await alice_roster(alice)) == "<query xmlns='jabber:iq:roster' ver='0'/>"


async def alice_roster(c: RawClient) -> str:
    reply, _ = await ask(c, "<iq type='get' id='r9'><query xmlns='jabber:iq:roster'/></iq>")
    start = reply.index("<query")
    return reply[start : reply.rindex("</iq>")]


async def test_blocked_contact_does_not_see_presence_at_its_login(
    server: Server, login: Login
) -> None:
    """Presence delivered straight to a new session (RFC 6121 §4.2.2) respects the block."""
    await friends(server, "alice", "bob")
    alice = await login("alice", "a")
    await block(alice, "bob@localhost")
    await drain(alice)
    bob = await login("bob", "b", available=False)
    await bob.send("<presence/>")
    got = await settled(bob)
    assert got == [f"<presence from='{B}' to='{B}'/>"]  # only its own presence back
    await quiet(alice)


async def test_stored_request_from_a_since_blocked_jid_is_not_delivered(
    server: Server, login: Login
) -> None:
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await alice.close()
    await bob.send("<presence to='alice@localhost' type='subscribe'/>")  # stored (§3.1.3)
    await settled(bob)
    alice = await login("alice", "a1", available=False)
    await block(alice, "bob@localhost")
    await alice.close()
    alice = await login("alice", "a2", available=False)
    await alice.send("<presence/>")
    assert [s for s in await settled(alice) if "subscribe" in s] == []


async def test_full_jid_and_domain_items(server: Server, login: Login) -> None:
    await server.accounts.create("dave", "example.test", "dave-secret")
    alice = await login("alice", "a")
    bob1 = await login("bob", "b1", available=False)
    bob2 = await login("bob", "b2", available=False)
    await block(alice, "bob@localhost/b1")
    await bob1.send(chat(A, "one"))
    assert (await bob1.next()).get("type") == "error"
    await bob2.send(chat(A, "two"))
    assert (await alice.expect(lambda e: e.tag == "message")).get("from") == "bob@localhost/b2"

    await block(alice, "example.test", iq_id="b2")
    dave = await RawClient.connect(server.port())
    await dave.open("example.test")
    await dave.starttls("example.test")
    assert (await dave.auth("dave", "dave-secret")).tag == "success"
    await dave.open("example.test")
    await dave.bind("d")
    await dave.send(chat("alice@localhost", "hello from example.test"))
    reply = await dave.next()
    assert serialize(reply) == (
        "<message type='error' id='m1' to='dave@example.test/d' from='alice@localhost'>"
        f"{UNAVAILABLE_ERROR}</message>"
    )
    await dave.close()
    await quiet(alice)


async def test_same_account_is_never_blocked(login: Login) -> None:
    a = await login("alice", "a")
    a2 = await login("alice", "a2")
    await block(a, "alice@localhost")
    await drain(a2)
    await a.send(chat("alice@localhost/a2", "note to self"))
    assert (await a2.expect(lambda e: e.tag == "message")).get("from") == A


# -- durability ------------------------------------------------------------------------------


async def test_blocklist_survives_logout_and_applies_offline(login: Login) -> None:
    alice = await login("alice", "a")
    await block(alice, "bob@localhost")
    await alice.close()
    bob = await login("bob", "b")
    await bob.send(chat("alice@localhost", "are you there?"))
    # not stored for later: bounced now (§3.3, as if alice had no account here)
    assert serialize(await bob.next()) == (
        f"<message type='error' id='m1' to='{B}' from='alice@localhost'>{UNAVAILABLE_ERROR}"
        "</message>"
    )
    alice = await login("alice", "a")
    await quiet(alice)  # no offline message from bob
    assert await blocklist(alice) == (
        f"<iq type='result' id='bl1' to='{A}'><blocklist xmlns='{BLOCKING}'>"
        "<item jid='bob@localhost'/></blocklist></iq>"
    )


async def test_blocklist_survives_a_restart(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    for user, password in PASSWORDS.items():
        await server.accounts.create(user, "localhost", password)
    logins = Logins(server)
    try:
        alice = await logins("alice", "a")
        await block(alice, "bob@localhost")
        await logins.close()
    finally:
        await server.stop()
    server = await start_server(tmp_path)
    logins = Logins(server)
    try:
        # alice is offline and nothing of hers is in memory: the check waits for storage
        bob = await logins("bob", "b")
        # in one write: the later two queue behind the first while her lists are read
        await bob.send(
            chat("alice@localhost", "still blocked?", "m1")
            + "<presence to='alice@localhost' type='subscribe'/>"
            + chat("alice@localhost", "hello?", "m2")
        )
        assert [(e.get("id"), e.get("type")) for e in (await bob.next(), await bob.next())] == [
            ("m1", "error"),
            ("m2", "error"),
        ]
        await quiet(bob)
        alice = await logins("alice", "a")
        assert "<item jid='bob@localhost'/>" in await blocklist(alice)
        await quiet(alice)  # neither the message nor the request reached her
    finally:
        await logins.close()
        await server.stop()


async def test_seeded_roster_unchanged_by_block(server: Server, login: Login) -> None:
    """Polite blocking (§4): subscriptions are left alone."""
    await seed(server, "alice", "bob", "both")
    alice = await login("alice", "a")
    await block(alice, "bob@localhost")
    assert "subscription='both'" in await alice_roster(alice)
