"""RFC 6121 §8.5 delivery rules for local users, end to end with raw XML.

Each test logs in real clients, sends one stanza and checks who received what. "Nothing
arrived" is checked with a barrier (``quiet``, ``drain``): ping round trips on the senders,
the server's ``idle()`` (its spawned work, such as offline storage, is done), then a ping
round trip on each client; everything the server wrote to that stream before the pong is
collected, so a late delivery or a stray error reply is seen however slow the server is.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import PASSWORDS, Logins, RawClient, drain, quiet, start_server

_ids = itertools.count()

Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def connect(server: Server) -> AsyncIterator[Connect]:
    """Log in ``user/resource``; with ``priority`` (or ``available``) send initial presence."""
    logins = Logins(server)
    yield logins
    await logins.close()


async def settle(*clients: RawClient) -> None:
    """Discard what is pending (presence of other resources and the like)."""
    for c in clients:
        await drain(c)


async def received(c: RawClient, tag: str = "message") -> Element:
    """The next ``tag`` stanza; nothing else may come first."""
    el = await c.next()
    assert el.tag == tag, serialize(el)
    return el


def assert_error(el: Element, tag: str, condition: str, etype: str, code: str) -> None:
    """A stanza error with the RFC 6120 condition, type and the XEP-0086 code."""
    assert el.tag == tag and el.get("type") == "error", serialize(el)
    err = el.find("error", ns.CLIENT)
    assert err is not None, serialize(el)
    assert err.get("type") == etype, serialize(el)
    assert err.get("code") == code, serialize(el)
    conds = [c.tag for c in err.elements() if c.ns == ns.STANZAS and c.tag != "text"]
    assert conds == [condition], serialize(el)


def message(to: str, mtype: str | None, body: str, mid: str = "m1") -> str:
    t = "" if mtype is None else f" type='{mtype}'"
    return f"<message to='{to}' id='{mid}'{t}><body>{body}</body></message>"


def body(el: Element) -> str:
    b = el.find("body", ns.CLIENT)
    assert b is not None, serialize(el)
    return b.text


# -- bare JID, available resources (§8.5.2.1.1) ---------------------------------------------


@pytest.mark.parametrize("mtype", [None, "normal", "chat"])
async def test_bare_goes_to_highest_priority_only(connect: Connect, mtype: str | None) -> None:
    alice = await connect("alice", "a")
    high = await connect("bob", "high", 5)
    low = await connect("bob", "low", 1)
    await settle(alice, high, low)

    await alice.send(message("bob@localhost", mtype, "to the best"))
    el = await received(high)
    assert body(el) == "to the best"
    assert el.get("from") == "alice@localhost/a"
    # §8.5.2.1.1: the 'to' stays the bare JID.
    assert el.get("to") == "bob@localhost"
    assert el.get("id") == "m1"
    assert el.get("type") == mtype
    await quiet(alice, high, low)


@pytest.mark.parametrize("mtype", ["normal", "chat"])
async def test_bare_equal_priority_both_get_it(connect: Connect, mtype: str) -> None:
    alice = await connect("alice", "a")
    one = await connect("bob", "one", 3)
    two = await connect("bob", "two", 3)
    low = await connect("bob", "low", 2)
    await settle(alice, one, two, low)

    await alice.send(message("bob@localhost", mtype, "tie"))
    for c in (one, two):
        el = await received(c)
        assert body(el) == "tie"
        assert el.get("to") == "bob@localhost"
    await quiet(alice, one, two, low)


async def test_bare_headline_to_all_non_negative(connect: Connect) -> None:
    alice = await connect("alice", "a")
    high = await connect("bob", "high", 5)
    low = await connect("bob", "low", 1)
    negative = await connect("bob", "neg", -1)
    await settle(alice, high, low, negative)

    await alice.send(message("bob@localhost", "headline", "news"))
    for c in (high, low):
        el = await received(c)
        assert body(el) == "news"
        assert el.get("to") == "bob@localhost"
        assert el.get("type") == "headline"
    # §8.5.2.1.1: never to a negative-priority resource.
    await quiet(alice, high, low, negative)


@pytest.mark.parametrize("mtype", ["normal", "chat"])
async def test_negative_priority_only_goes_offline(connect: Connect, mtype: str) -> None:
    alice = await connect("alice", "a")
    negative = await connect("bob", "neg", -1)
    await settle(alice, negative)

    await alice.send(message("bob@localhost", mtype, "for later"))
    # Not delivered to the negative resource, and no error: stored (§8.5.2.1.1 last rule).
    await quiet(alice, negative)

    await negative.close()
    later = await connect("bob", "later")
    el = await later.expect(lambda e: e.tag == "message")
    assert body(el) == "for later"
    assert el.get("from") == "alice@localhost/a"
    assert el.find("delay", ns.DELAY) is not None
    await quiet(alice, later)


@pytest.mark.parametrize("bob_online", [True, False], ids=["online", "offline"])
async def test_groupchat_to_bare_is_refused(connect: Connect, bob_online: bool) -> None:
    alice = await connect("alice", "a")
    bobs = [await connect("bob", "b", 1)] if bob_online else []
    await settle(alice, *bobs)

    await alice.send(message("bob@localhost", "groupchat", "room?", "gc1"))
    el = await received(alice)
    assert_error(el, "message", "service-unavailable", "cancel", "503")
    assert el.get("id") == "gc1"
    assert el.get("from") == "bob@localhost"
    assert el.get("to") == "alice@localhost/a"
    await quiet(alice, *bobs)


@pytest.mark.parametrize("bob_online", [True, False], ids=["online", "offline"])
async def test_error_message_to_bare_is_dropped(connect: Connect, bob_online: bool) -> None:
    alice = await connect("alice", "a")
    bobs = [await connect("bob", "b", 1)] if bob_online else []
    await settle(alice, *bobs)

    await alice.send(
        "<message to='bob@localhost' type='error' id='e1'><error type='cancel'>"
        f"<item-not-found xmlns='{ns.STANZAS}'/></error></message>"
    )
    await quiet(alice, *bobs)
    if not bob_online:  # and not stored for later either
        bob = await connect("bob", "b")
        await quiet(bob)


async def test_headline_to_bare_without_resources_is_dropped(connect: Connect) -> None:
    alice = await connect("alice", "a")
    await settle(alice)
    await alice.send(message("bob@localhost", "headline", "nobody home"))
    await quiet(alice)
    bob = await connect("bob", "b")
    await quiet(bob)  # §8.5.2.2.1: ignored, not stored


# -- full JID (§8.5.3) ----------------------------------------------------------------------


async def test_full_jid_match_is_delivered(connect: Connect) -> None:
    """§8.5.3.1: every type goes to the matching resource, whatever its priority."""
    alice = await connect("alice", "a")
    high = await connect("bob", "high", 5)
    low = await connect("bob", "low", -1)
    await settle(alice, high, low)

    for mtype in (None, "normal", "chat", "groupchat", "headline"):
        await alice.send(message("bob@localhost/low", mtype, f"just you {mtype}"))
        el = await received(low)
        assert body(el) == f"just you {mtype}"
        assert el.get("to") == "bob@localhost/low"
        assert el.get("type") == mtype
    await quiet(alice, high, low)


async def test_chat_to_unconnected_full_jid_goes_to_best_resource(connect: Connect) -> None:
    alice = await connect("alice", "a")
    high = await connect("bob", "high", 5)
    low = await connect("bob", "low", 1)
    await settle(alice, high, low)

    await alice.send(message("bob@localhost/gone", "chat", "still there?"))
    el = await received(high)
    assert body(el) == "still there?"
    assert el.get("from") == "alice@localhost/a"
    await quiet(alice, high, low)


async def test_chat_to_unconnected_full_jid_offline_is_stored(connect: Connect) -> None:
    alice = await connect("alice", "a")
    await settle(alice)
    await alice.send(message("bob@localhost/gone", "chat", "stored"))
    await quiet(alice)
    bob = await connect("bob", "b")
    el = await bob.expect(lambda e: e.tag == "message")
    assert body(el) == "stored"
    await quiet(bob)


@pytest.mark.parametrize("mtype", [None, "normal"])
@pytest.mark.parametrize("bob_online", [True, False], ids=["online", "offline"])
async def test_normal_to_unconnected_full_jid_bounces(
    connect: Connect, mtype: str | None, bob_online: bool
) -> None:
    alice = await connect("alice", "a")
    bobs = [await connect("bob", "b", 5)] if bob_online else []
    await settle(alice, *bobs)

    await alice.send(message("bob@localhost/gone", mtype, "hello?", "n1"))
    el = await received(alice)
    assert_error(el, "message", "service-unavailable", "cancel", "503")
    assert el.get("id") == "n1"
    assert el.get("from") == "bob@localhost/gone"
    assert el.get("to") == "alice@localhost/a"
    await quiet(alice, *bobs)


async def test_groupchat_to_unconnected_full_jid_bounces(connect: Connect) -> None:
    alice = await connect("alice", "a")
    bob = await connect("bob", "b", 5)
    await settle(alice, bob)
    await alice.send(message("bob@localhost/gone", "groupchat", "room?", "g2"))
    assert_error(await received(alice), "message", "service-unavailable", "cancel", "503")
    await quiet(alice, bob)


@pytest.mark.parametrize("bob_online", [True, False], ids=["online", "offline"])
async def test_headline_to_unconnected_full_jid_is_dropped(
    connect: Connect, bob_online: bool
) -> None:
    alice = await connect("alice", "a")
    bobs = [await connect("bob", "b", 5)] if bob_online else []
    await settle(alice, *bobs)
    await alice.send(message("bob@localhost/gone", "headline", "news"))
    await quiet(alice, *bobs)


# -- no such user (§8.5.1) ------------------------------------------------------------------


@pytest.mark.parametrize("to", ["nobody@localhost", "nobody@localhost/res"])
async def test_message_to_unknown_user_bounces(connect: Connect, to: str) -> None:
    alice = await connect("alice", "a")
    await settle(alice)
    for mtype in (None, "normal", "chat", "groupchat"):
        await alice.send(message(to, mtype, "anyone?", f"u-{mtype}"))
        el = await received(alice)
        assert_error(el, "message", "service-unavailable", "cancel", "503")
        assert el.get("id") == f"u-{mtype}"
        assert el.get("from") == to
        assert el.get("to") == "alice@localhost/a"
    await quiet(alice)


PRESENCE_TO_NOBODY = [
    "<presence to='nobody@localhost'/>",
    "<presence to='nobody@localhost/res'/>",
    "<presence to='nobody@localhost' type='unavailable'/>",
    "<presence to='nobody@localhost' type='subscribe'/>",
    "<presence to='nobody@localhost/res' type='subscribe'/>",
    "<presence to='nobody@localhost' type='subscribed'/>",
    "<presence to='nobody@localhost' type='unsubscribe'/>",
    "<presence to='nobody@localhost' type='unsubscribed'/>",
]


async def test_presence_to_unknown_user_is_ignored(connect: Connect) -> None:
    """§8.5.1: available, unavailable and subscription presence: silently ignored."""
    alice = await connect("alice", "a")
    await settle(alice)
    for stanza in PRESENCE_TO_NOBODY:
        await alice.send(stanza)
        extra = await drain(alice)
        assert extra == [], (stanza, [serialize(e) for e in extra])


# -- iq to an account (§8.5.2.1.3, §8.5.2.2.3, §8.5.3.2.3) -----------------------------------


@pytest.mark.parametrize("bob_online", [True, False], ids=["online", "offline"])
async def test_iq_to_bare_with_unknown_payload(connect: Connect, bob_online: bool) -> None:
    alice = await connect("alice", "a")
    bobs = [await connect("bob", "b", 5)] if bob_online else []
    await settle(alice, *bobs)

    for itype in ("get", "set"):
        await alice.send(
            f"<iq type='{itype}' id='q-{itype}' to='bob@localhost'>"
            "<query xmlns='urn:example:unknown'/></iq>"
        )
        el = await received(alice, "iq")
        assert_error(el, "iq", "service-unavailable", "cancel", "503")
        assert el.get("id") == f"q-{itype}"
        assert el.get("from") == "bob@localhost"
        assert el.get("to") == "alice@localhost/a"
    # §8.5.2.1.3: the server answers; the user's resources never see it.
    await quiet(alice, *bobs)


async def test_iq_to_unknown_user_or_resource(connect: Connect) -> None:
    """§8.5.1 and §8.5.3.2.3: service-unavailable."""
    alice = await connect("alice", "a")
    bob = await connect("bob", "b", 5)
    await settle(alice, bob)
    for to in ("nobody@localhost", "nobody@localhost/r", "bob@localhost/gone"):
        await alice.send(f"<iq type='get' id='q2' to='{to}'><ping xmlns='{ns.PING}'/></iq>")
        el = await received(alice, "iq")
        assert_error(el, "iq", "service-unavailable", "cancel", "503")
        assert el.get("from") == to
    await quiet(alice, bob)


@pytest.mark.parametrize(
    "payload",
    ["<query xmlns='urn:example:unknown'/>", "<query xmlns='jabber:iq:version'/>"],
    ids=["unknown", "host-only"],
)
async def test_error_to_an_iq_without_to_is_from_the_account(
    connect: Connect, payload: str
) -> None:
    """RFC 6120 §8.1.2.1, §10.3.3: an iq with no 'to' is handled for the sender's account; an
    error answering it has no 'from' (or the bare JID), never the domain, as results do."""
    alice = await connect("alice", "a")
    await settle(alice)
    await alice.send(f"<iq type='get' id='nt1'>{payload}</iq>")
    el = await received(alice, "iq")
    assert serialize(el) == (
        "<iq type='error' id='nt1' to='alice@localhost/a'><error type='cancel' code='503'>"
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    await quiet(alice)


async def test_iq_to_full_jid_without_subscription_is_delivered(connect: Connect) -> None:
    """RFC 6121 §8.5.3.1 only says SHOULD NOT; like Prosody and ejabberd, Roost delivers an
    iq request to a full JID whatever the subscription: disco, version, ping, XEP-0047 in-band
    bytestreams and XEP-0231 bits of binary between clients depend on it."""
    alice = await connect("alice", "a")
    bob = await connect("bob", "b")
    await settle(alice, bob)
    await alice.send(
        f"<iq type='get' id='d1' to='bob@localhost/b'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    got = await received(bob, "iq")
    assert serialize(got) == (
        "<iq type='get' id='d1' to='bob@localhost/b' from='alice@localhost/a'>"
        f"<query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    await bob.send(
        f"<iq type='result' id='d1' to='alice@localhost/a'><query xmlns='{ns.DISCO_INFO}'>"
        "<feature var='urn:xmpp:ping'/></query></iq>"
    )
    reply = await received(alice, "iq")
    assert reply.get("type") == "result" and reply.get("from") == "bob@localhost/b"
    await quiet(alice, bob)


async def test_strict_iq_to_full_refuses_without_presence(tmp_path: Path) -> None:
    """``[modules.presence] strict_iq_to_full = true``: the RFC 6121 §8.5.3.1 SHOULD NOT."""
    server = await start_server(tmp_path, modules={"presence": {"strict_iq_to_full": True}})
    try:
        for user, password in PASSWORDS.items():
            await server.accounts.create(user, "localhost", password)
        logins = Logins(server)
        alice = await logins("alice", "a")
        bob = await logins("bob", "b")
        await settle(alice, bob)
        await alice.send(
            f"<iq type='get' id='d2' to='bob@localhost/b'><ping xmlns='{ns.PING}'/></iq>"
        )
        assert_error(await received(alice, "iq"), "iq", "service-unavailable", "cancel", "503")
        await quiet(alice, bob)
        await logins.close()
    finally:
        await server.stop()


# -- unavailable presence (RFC 6121 §4.5.2) ---------------------------------------------------


async def test_unavailable_goes_to_other_resources_and_back_to_the_sender(
    connect: Connect,
) -> None:
    """§4.5.2: "to all of the user's available resources (as well as to the resource that
    generated the unavailable presence in the first place)", the full XML (status text)."""
    a = await connect("alice", "a")
    a2 = await connect("alice", "a2")
    await settle(a, a2)
    await a.send("<presence type='unavailable'><status>going on vacation</status></presence>")
    for c in (a2, a):
        got = await received(c, "presence")
        assert serialize(got) == (
            f"<presence type='unavailable' from='alice@localhost/a' to='{c.jid}'>"
            "<status>going on vacation</status></presence>"
        )
    await quiet(a, a2)
