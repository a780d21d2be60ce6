"""#12: receipts (XEP-0184), chat markers (XEP-0333), chat states (XEP-0085) and pings
(XEP-0199) pass unchanged through stream management, carbons, CSI and the archive."""

from __future__ import annotations

import pytest

from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, without_stanza_ids

SM = "urn:xmpp:sm:3"


async def _mobile(server: Server, user: str, resource: str) -> RawClient:
    """A client with everything on: stream management, carbons, initial presence."""
    c = await RawClient.connect(server)
    await c.login(user, PASSWORDS[user], resource)
    await c.send(f"<enable xmlns='{SM}' resume='true'/>")
    await c.expect(lambda e: e.tag == "enabled")
    await c.send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    await c.expect(lambda e: e.get("id") == "c")
    await c.send("<presence/>")
    await c.expect(lambda e: e.tag == "presence" and e.get("from") == c.jid)
    return c


def _payload(el: Element) -> list[str]:
    return [serialize(child) for child in without_stanza_ids(el).elements()]


@pytest.mark.parametrize(
    "payload",
    [
        "<body>ok?</body><request xmlns='urn:xmpp:receipts'/>",
        "<received xmlns='urn:xmpp:receipts' id='m0'/>",
        "<body>see</body><markable xmlns='urn:xmpp:chat-markers:0'/>",
        "<displayed xmlns='urn:xmpp:chat-markers:0' id='m0'/>",
        "<composing xmlns='http://jabber.org/protocol/chatstates'/>",
    ],
    ids=["receipt-request", "receipt", "markable", "displayed", "chat-state"],
)
async def test_hints_arrive_unchanged(server: Server, payload: str) -> None:
    alice = await _mobile(server, "alice", "phone")
    bob = await _mobile(server, "bob", "b")
    await bob.send("<inactive xmlns='urn:xmpp:csi:0'/>")
    await alice.send(f"<message to='bob@localhost/b' type='chat' id='h1'>{payload}</message>")
    if "<body>" not in payload:  # held while bob is inactive (XEP-0352): wake him up
        await bob.send("<active xmlns='urn:xmpp:csi:0'/>")
    got = await bob.expect(lambda e: e.tag == "message" and e.get("id") == "h1")
    sent = parse_fragment(f"<message xmlns='jabber:client'>{payload}</message>")
    assert _payload(got) == _payload(sent)
    for c in (alice, bob):
        await c.close()


async def test_a_ping_between_clients_passes(server: Server) -> None:
    alice = await _mobile(server, "alice", "phone")
    bob = await _mobile(server, "bob", "b")
    await alice.send(
        "<iq type='get' id='p1' to='bob@localhost/b'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    ping = await bob.expect(lambda e: e.tag == "iq" and e.get("id") == "p1")
    await bob.send(f"<iq type='result' id='p1' to='{ping.get('from')}'/>")
    pong = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "p1")
    assert pong.get("type") == "result" and pong.get("from") == "bob@localhost/b"
    for c in (alice, bob):
        await c.close()
