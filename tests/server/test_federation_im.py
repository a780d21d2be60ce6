"""RFC 6121 with the contact on another server: probes, broadcasts, directed presence,
unsubscription and privacy rules for remote senders (two Roosts on loopback, raw XML).

The contacts' rosters are stored before they log in (both subscribed to each other), so
each test starts from the state a finished RFC 6121 §3.1 handshake leaves.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.storage.api import RosterItem
from tests.server.test_federation import Pair, _login, _start_pair

PRIVACY = "jabber:iq:privacy"


@pytest.fixture
async def friends(tmp_path: Path) -> AsyncIterator[Pair]:
    p = await _start_pair(tmp_path)
    await p.a.storage.put_roster_item(
        "alice", "a.test", RosterItem("bob@b.test", subscription="both")
    )
    await p.b.storage.put_roster_item(
        "bob", "b.test", RosterItem("alice@a.test", subscription="both")
    )
    yield p
    await p.a.stop()
    await p.b.stop()


async def _online(server: Server, user: str, domain: str, status: str = "") -> object:
    c = await _login(server, user, domain)
    await c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    await c.expect(lambda e: e.tag == "iq" and e.get("id") == "r1")
    await c.send(f"<presence><status>{status}</status></presence>" if status else "<presence/>")
    return c


def _presence_from(jid: str, kind: str | None = None):  # type: ignore[no-untyped-def]
    return lambda e: e.tag == "presence" and e.get("from") == jid and e.get("type") == kind


async def test_probes_and_broadcasts_cross_the_federation(friends: Pair) -> None:
    """RFC 6121 §4.2.2 and §4.3: bob is online first; alice's initial presence goes to bob
    and her server probes bob's, which answers with his presence; a change and the final
    unavailable presence are broadcast to the remote contact too (§4.4.2, §4.5.2)."""
    bob = await _online(friends.b, "bob", "b.test", "at work")
    alice = await _online(friends.a, "alice", "a.test")
    got = await alice.expect(_presence_from("bob@b.test/r"))  # the probe's answer
    status = got.find("status")
    assert status is not None and status.text == "at work"
    await bob.expect(_presence_from("alice@a.test/r"))
    await alice.send("<presence><show>away</show></presence>")
    # (bob may get alice's available presence twice before: his login's probe can be
    # answered after she came online, RFC 6121 §4.3.2)
    got = await bob.expect(
        lambda e: _presence_from("alice@a.test/r")(e) and e.find("show") is not None
    )
    show = got.find("show")
    assert show is not None and show.text == "away"
    await alice.send("<presence type='unavailable'><status>bye</status></presence>")
    got = await bob.expect(_presence_from("alice@a.test/r", "unavailable"))
    status = got.find("status")
    assert status is not None and status.text == "bye"
    await alice.close()
    await bob.close()


async def test_directed_presence_to_a_remote_stranger(tmp_path: Path) -> None:
    """RFC 6121 §4.6: presence sent straight to someone on another server, with no
    subscription, reaches them; when the sender goes offline they get unavailable."""
    p = await _start_pair(tmp_path)
    try:
        bob = await _online(p.b, "bob", "b.test")
        alice = await _online(p.a, "alice", "a.test")
        await alice.send("<presence to='bob@b.test/r'><status>hello</status></presence>")
        got = await bob.expect(_presence_from("alice@a.test/r"))
        status = got.find("status")
        assert status is not None and status.text == "hello"
        await alice.close()  # §4.6.3: the server sends unavailable to directed recipients
        await bob.expect(_presence_from("alice@a.test/r", "unavailable"))
        await bob.close()
    finally:
        await p.a.stop()
        await p.b.stop()


async def test_unsubscribe_across_domains(friends: Pair) -> None:
    """RFC 6121 §3.3: alice unsubscribes from bob; both rosters follow, and bob's server
    sends alice his unavailable presence (§3.3.3)."""
    bob = await _online(friends.b, "bob", "b.test")
    alice = await _online(friends.a, "alice", "a.test")
    await alice.expect(_presence_from("bob@b.test/r"))
    await alice.send("<presence to='bob@b.test' type='unsubscribe'/>")
    push = await alice.expect(lambda e: e.tag == "iq" and e.get("type") == "set")
    assert "subscription='from'" in serialize(push)
    push = await bob.expect(lambda e: e.tag == "iq" and e.get("type") == "set")
    assert "subscription='to'" in serialize(push)
    await alice.expect(_presence_from("bob@b.test/r", "unavailable"))
    await alice.close()
    await bob.close()


async def test_a_privacy_list_applies_to_remote_senders(friends: Pair) -> None:
    """XEP-0016 §2.13 with the sender on another server: bob's default list denies
    messages from a.test; alice's message bounces with service-unavailable, and her
    presence (not denied) still reaches bob."""
    bob = await _online(friends.b, "bob", "b.test")
    alice = await _online(friends.a, "alice", "a.test")
    await alice.expect(_presence_from("bob@b.test/r"))
    deny = (
        f"<iq type='set' id='p1'><query xmlns='{PRIVACY}'><list name='l'>"
        "<item type='jid' value='a.test' action='deny' order='1'><message/></item>"
        f"</list></query></iq>"
    )
    await bob.send(deny)
    await bob.expect(lambda e: e.tag == "iq" and e.get("id") == "p1")
    await bob.send(
        f"<iq type='set' id='p2'><query xmlns='{PRIVACY}'><default name='l'/></query></iq>"
    )
    got = await bob.expect(lambda e: e.tag == "iq" and e.get("id") == "p2")
    assert got.get("type") == "result"
    await alice.send("<message to='bob@b.test' id='m1' type='chat'><body>hi</body></message>")
    bounce = await alice.expect(lambda e: e.tag == "message")
    assert bounce.get("type") == "error" and bounce.get("id") == "m1"
    error = bounce.find("error")
    assert error is not None and error.find("service-unavailable", ns.STANZAS) is not None
    await alice.send("<presence><status>still here</status></presence>")
    got = await bob.expect(lambda e: e.tag in ("presence", "message"))
    assert got.tag == "presence" and got.get("from") == "alice@a.test/r"
    await alice.close()
    await bob.close()


async def test_a_carbon_of_a_remote_message_reads_as_jabber_client(friends: Pair) -> None:
    """XEP-0280 §7 with XEP-0297: bob's message came in on a ``jabber:server`` stream; the
    copy alice's other resource gets is forwarded in ``jabber:client``."""
    bob = await _online(friends.b, "bob", "b.test")
    r1 = await _online(friends.a, "alice", "a.test")
    r2 = await _login(friends.a, "alice", "a.test", resource="r2")
    await r2.send("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    await r2.expect(lambda e: e.tag == "iq" and e.get("id") == "c1")
    await bob.send("<message to='alice@a.test/r' type='chat' id='m1'><body>far</body></message>")
    await r1.expect(lambda e: e.tag == "message")
    got = await r2.expect(lambda e: e.tag == "message")
    # the copy is of the message as delivered: with the stanza-id alice's archive gave it
    text = re.sub(
        r"<stanza-id xmlns='urn:xmpp:sid:0' by='alice@a.test' id='[^']+'/>", "", serialize(got)
    )
    assert text == (
        "<message from='alice@a.test' type='chat' to='alice@a.test/r2'>"
        "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' to='alice@a.test/r' type='chat' id='m1' "
        "from='bob@b.test/r'><body>far</body></message></forwarded></received></message>"
    )
    for c in (bob, r1, r2):
        await c.close()
