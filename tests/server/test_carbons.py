"""XEP-0280 Message Carbons, raw XML: alice on three resources (r1 and r2 with carbons on,
r3 without), bob writing to her and her writing to bob; the §6.1 rules row by row."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roost.core import ns
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import Logins, RawClient, drain, quiet

CARBONS = "urn:xmpp:carbons:2"


class Alice:
    def __init__(self, r1: RawClient, r2: RawClient, r3: RawClient, bob: RawClient) -> None:
        self.r1, self.r2, self.r3, self.bob = r1, r2, r3, bob

    async def settle(self) -> None:
        for c in (self.r1, self.r2, self.r3, self.bob):
            await drain(c)


@pytest.fixture
async def alice(server: Server) -> AsyncIterator[Alice]:
    logins = Logins(server)
    # r1 has the highest priority: a message to alice's bare JID goes to it alone
    r1 = await logins("alice", "r1", 5)
    r2 = await logins("alice", "r2", 0)
    r3 = await logins("alice", "r3", 0)
    bob = await logins("bob", "b")
    for c in (r1, r2):
        await c.send(f"<iq type='set' id='c1'><enable xmlns='{CARBONS}'/></iq>")
        got = await c.expect(lambda e: e.tag == "iq" and e.get("id") == "c1")
        assert serialize(got) == f"<iq type='result' id='c1' to='{c.jid}'/>"
    a = Alice(r1, r2, r3, bob)
    await a.settle()
    yield a
    await logins.close()


def _carbon(kind: str, to: str, inner: str, mtype: str | None = "chat") -> str:
    t = f" type='{mtype}'" if mtype else ""
    return (
        f"<message from='alice@localhost'{t} to='{to}'><{kind} xmlns='{CARBONS}'>"
        f"<forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded></{kind}></message>"
    )


async def test_the_server_advertises_carbons(alice: Alice) -> None:
    await alice.r1.send(
        f"<iq type='get' id='d1' to='localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    got = await alice.r1.expect(lambda e: e.tag == "iq" and e.get("id") == "d1")
    assert f"<feature var='{CARBONS}'/>" in serialize(got)


async def test_a_received_message_is_copied_to_the_other_enabled_resources(alice: Alice) -> None:
    """§7: bob writes to alice/r1; r2 (enabled) gets a received copy, r3 (not) nothing."""
    message = (
        "<message to='alice@localhost/r1' type='chat' id='m1'><body>hi</body>"
        "<thread>t1</thread></message>"
    )
    await alice.bob.send(message)
    original = await alice.r1.expect(lambda e: e.tag == "message")
    inner = serialize(original).replace("<message ", "<message xmlns='jabber:client' ", 1)
    got = await alice.r2.expect(lambda e: e.tag == "message")
    assert serialize(got) == _carbon("received", "alice@localhost/r2", inner)
    await quiet(alice.r1, alice.r2, alice.r3)


async def test_to_the_bare_jid_the_resources_that_got_it_get_no_copy(alice: Alice) -> None:
    """RFC 6121 delivery picks r1 (highest priority); only r2 is copied."""
    await alice.bob.send(
        "<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>"
    )
    assert (await alice.r1.expect(lambda e: e.tag == "message")).find("body") is not None
    got = await alice.r2.expect(lambda e: e.tag == "message")
    assert got.find("received", CARBONS) is not None
    await quiet(alice.r1, alice.r2, alice.r3)


@pytest.mark.parametrize("sender", ["r1", "r3"])
async def test_a_sent_message_is_copied_to_the_other_enabled_resources(
    alice: Alice, sender: str
) -> None:
    """§8: whether or not the sender has carbons on; never back to the sender."""
    me = getattr(alice, sender)
    await me.send("<message to='bob@localhost/b' type='chat' id='s1'><body>hello</body></message>")
    await alice.bob.expect(lambda e: e.tag == "message")
    inner = (
        f"<message xmlns='jabber:client' to='bob@localhost/b' type='chat' id='s1' "
        f"from='alice@localhost/{sender}'><body>hello</body></message>"
    )
    for c in (alice.r1, alice.r2):
        if c is me:
            continue
        got = await c.expect(lambda e: e.tag == "message")
        assert serialize(got) == _carbon("sent", c.jid or "", inner)
    await quiet(alice.r1, alice.r2, alice.r3)


RULES = [
    # (the message bob sends to alice/r1, whether r2 gets a copy) — XEP-0280 §6.1
    ("<message type='chat' id='x'><body>b</body></message>", True),
    ("<message type='chat' id='x'/>", True),
    ("<message id='x'><body>b</body></message>", True),  # normal with a body
    ("<message type='normal' id='x'><subject>s</subject></message>", False),
    ("<message type='headline' id='x'><body>b</body></message>", False),
    ("<message type='groupchat' id='x'><body>b</body></message>", False),
    (
        "<message id='x'><received xmlns='urn:xmpp:receipts' id='m0'/></message>",
        True,
    ),
    (
        "<message id='x'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        True,
    ),
    ("<message id='x'><displayed xmlns='urn:xmpp:chat-markers:0' id='m0'/></message>", True),
    (  # XEP-0249 direct invitation
        "<message id='x'><x xmlns='jabber:x:conference' jid='room@muc.example'/></message>",
        True,
    ),
    (  # mediated invitation (XEP-0045 §7.8.2)
        "<message id='x'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<invite from='carol@localhost'/></x></message>",
        True,
    ),
    (  # a private message from a room occupant: the room copies it to every client
        "<message type='chat' id='x'><body>pm</body>"
        "<x xmlns='http://jabber.org/protocol/muc#user'/></message>",
        False,
    ),
    (  # §9: private, with the no-copy hint
        "<message type='chat' id='x'><body>b</body><private xmlns='urn:xmpp:carbons:2'/>"
        "<no-copy xmlns='urn:xmpp:hints'/></message>",
        False,
    ),
    (
        "<message type='chat' id='x'><body>b</body><no-copy xmlns='urn:xmpp:hints'/></message>",
        False,
    ),
]


@pytest.mark.parametrize(("stanza", "copied"), RULES)
async def test_which_received_messages_are_copied(alice: Alice, stanza: str, copied: bool) -> None:
    await alice.bob.send(stanza.replace("<message ", "<message to='alice@localhost/r1' ", 1))
    if "type='headline'" not in stanza and "type='groupchat'" not in stanza:
        await alice.r1.expect(lambda e: e.tag == "message" and e.get("id") == "x")
    got = await drain(alice.r2)
    assert [e.find("received", CARBONS) is not None for e in got] == ([True] if copied else [])
    await quiet(alice.r3)


async def test_a_private_sent_message_is_not_copied_but_a_sent_pm_to_an_occupant_is(
    alice: Alice,
) -> None:
    """§9 on the sending side; §6.1: a private message to an occupant is copied when sent."""
    await alice.r1.send(
        "<message to='bob@localhost/b' type='chat' id='p1'><body>secret</body>"
        "<private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>"
    )
    await alice.bob.expect(lambda e: e.tag == "message")
    await quiet(alice.r2, alice.r3)
    await alice.r1.send(
        "<message to='bob@localhost/b' type='chat' id='p2'><body>pm</body>"
        "<x xmlns='http://jabber.org/protocol/muc#user'/></message>"
    )
    got = await alice.r2.expect(lambda e: e.tag == "message")
    assert got.find("sent", CARBONS) is not None


async def test_after_disable_no_more_copies(alice: Alice) -> None:
    await alice.r2.send(f"<iq type='set' id='c2'><disable xmlns='{CARBONS}'/></iq>")
    got = await alice.r2.expect(lambda e: e.tag == "iq" and e.get("id") == "c2")
    assert got.get("type") == "result"
    await alice.bob.send(
        "<message to='alice@localhost/r1' type='chat' id='m1'><body>hi</body></message>"
    )
    await alice.r1.expect(lambda e: e.tag == "message")
    await quiet(alice.r2, alice.r3)


async def test_writing_to_ones_own_other_resource(alice: Alice) -> None:
    """alice/r1 to alice/r3: r3 gets it, r2 a received copy; no sent copy, nothing back."""
    await alice.r1.send(
        "<message to='alice@localhost/r3' type='chat' id='o1'><body>me</body></message>"
    )
    await alice.r3.expect(lambda e: e.tag == "message")
    got = await drain(alice.r2)
    assert [e.find("received", CARBONS) is not None for e in got] == [True]
    await quiet(alice.r1)
