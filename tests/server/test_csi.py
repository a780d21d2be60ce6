"""XEP-0352 Client State Indication, raw XML: what an inactive client is spared, and the
order in which it gets it once something cannot wait."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server.app import Server
from roost.server.modules.csi import Inactive
from tests.helpers import Logins, RawClient, drain, sync
from tests.server.privacy_helpers import friends

CSI = "urn:xmpp:csi:0"


@pytest.fixture
async def three(server: Server) -> AsyncIterator[tuple[RawClient, RawClient, RawClient]]:
    await friends(server, "alice", "bob")
    await friends(server, "alice", "carol")
    logins = Logins(server)
    alice = await logins("alice", "phone")
    bob = await logins("bob", "b")
    carol = await logins("carol", "c")
    for c in (alice, bob, carol):
        await drain(c)
    yield alice, bob, carol
    await logins.close()


def _held(server: Server, jid: str) -> list[bytes]:
    session = server.sessions.get(JID.parse(jid))
    assert session is not None
    hold = session.hold_back
    assert isinstance(hold, Inactive)
    return list(hold.held.values())


async def _inactive(c: RawClient) -> None:
    await c.send(f"<inactive xmlns='{CSI}'/>")
    await c.ping()  # the server has read it (its pong is urgent: nothing was held yet)


def _summary(el: Element) -> tuple[str, str | None, str | None]:
    show = el.find("show")
    body = el.find("body")
    text = show.text if show is not None else body.text if body is not None else None
    return el.tag, el.get("from"), text


async def test_an_inactive_client_gets_the_latest_presence_of_each_contact_before_a_message(
    server: Server, three: tuple[RawClient, RawClient, RawClient]
) -> None:
    alice, bob, carol = three
    await _inactive(alice)
    await carol.send("<presence><show>away</show></presence>")
    await sync(carol)
    for show in ("away", "xa", "dnd"):
        await bob.send(f"<presence><show>{show}</show></presence>")
    await bob.send(
        "<message to='alice@localhost' type='chat'>"
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    await sync(bob, carol)  # the server has handled all of it
    assert len(_held(server, "alice@localhost/phone")) == 3  # nothing reached alice's stream
    await bob.send(
        "<message to='alice@localhost' type='chat' id='m1'><body>wake up</body></message>"
    )
    got = [await alice.next() for _ in range(4)]
    assert [_summary(e) for e in got] == [
        ("presence", "carol@localhost/c", "away"),
        ("presence", "bob@localhost/b", "dnd"),  # bob's latest, in the place of his last
        ("message", "bob@localhost/b", None),  # the chat state
        ("message", "bob@localhost/b", "wake up"),
    ]
    assert _held(server, "alice@localhost/phone") == []  # still inactive, nothing held


async def test_becoming_active_sends_what_was_held(
    server: Server, three: tuple[RawClient, RawClient, RawClient]
) -> None:
    alice, bob, _ = three
    await _inactive(alice)
    await bob.send("<presence><show>chat</show></presence>")
    await sync(bob)
    assert len(_held(server, "alice@localhost/phone")) == 1
    await alice.send(f"<active xmlns='{CSI}'/>")
    got = await drain(alice)
    assert [_summary(e) for e in got] == [("presence", "bob@localhost/b", "chat")]
    session = server.sessions.get(JID.parse("alice@localhost/phone"))
    assert session is not None and session.hold_back is None


@pytest.mark.parametrize(
    "urgent",
    [
        "<iq type='get' id='v1' to='alice@localhost/phone'><query xmlns='jabber:iq:version'/></iq>",
        "<presence to='alice@localhost' type='unsubscribe'/>",
        "<message to='alice@localhost/phone'><x xmlns='jabber:x:conference' jid='r@m.example'/>"
        "</message>",
    ],
    ids=["iq", "subscription", "invitation"],
)
async def test_what_cannot_wait_goes_out_after_what_was_held(
    server: Server, three: tuple[RawClient, RawClient, RawClient], urgent: str
) -> None:
    alice, bob, _ = three
    await _inactive(alice)
    await bob.send("<presence><show>away</show></presence>")
    await bob.send(urgent)
    first = await alice.next()
    second = await alice.next()
    assert _summary(first) == ("presence", "bob@localhost/b", "away")
    assert second.tag == urgent[1 : urgent.index(" ")]


async def test_markers_and_receipts_wait_in_order(
    server: Server, three: tuple[RawClient, RawClient, RawClient]
) -> None:
    alice, bob, _ = three
    await _inactive(alice)
    for i in range(3):
        await bob.send(
            f"<message to='alice@localhost/phone' id='r{i}'>"
            f"<received xmlns='urn:xmpp:receipts' id='m{i}'/></message>"
        )
    await sync(bob)
    assert len(_held(server, "alice@localhost/phone")) == 3  # none replaces another
    await bob.send("<message to='alice@localhost/phone' id='b'><body>now</body></message>")
    got = [(await alice.next()).get("id") for _ in range(4)]
    assert got == ["r0", "r1", "r2", "b"]
