"""XEP-0045 with an occupant on another server (two Roosts on loopback, raw XML): bob of
b.test joins a room at conference.a.test over s2s, hears and is heard, gets private
messages through the room, and leaves; a remote user may not create rooms when
``[modules.muc] create = "local"`` (the default)."""

from __future__ import annotations

from roost.core.xml.element import Element
from tests.server.test_federation import Pair, _login
from tests.server.test_federation_im import friends  # noqa: F401 (the fixture)
from tests.server.test_muc import MUC, USER, codes, error_of

ROOM = "lounge@conference.a.test"


def _presence(frm: str, kind: str | None = None):  # type: ignore[no-untyped-def]
    return lambda e: e.tag == "presence" and e.get("from") == frm and e.get("type") == kind


def _message(frm: str):  # type: ignore[no-untyped-def]
    return lambda e: e.tag == "message" and e.get("from") == frm


async def test_a_remote_occupant_joins_chats_and_leaves(friends: Pair) -> None:  # noqa: F811
    alice = await _login(friends.a, "alice", "a.test")
    await alice.send(f"<presence to='{ROOM}/alice'><x xmlns='{MUC}'/></presence>")
    own = await alice.expect(_presence(f"{ROOM}/alice"))
    assert {"110", "201"} <= codes(own)  # §10.1.1: a new room
    await alice.send(
        f"<iq type='set' id='c1' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )
    assert (await alice.expect(lambda e: e.get("id") == "c1")).get("type") == "result"

    # §7.2: bob's join crosses the federation; he gets alice's presence, then his own
    bob = await _login(friends.b, "bob", "b.test")
    await bob.send(
        f"<presence to='{ROOM}/bob'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
    )
    first = await bob.expect(lambda e: e.tag == "presence")
    assert first.get("from") == f"{ROOM}/alice" and first.get("to") == "bob@b.test/r"
    mine = await bob.expect(_presence(f"{ROOM}/bob"))
    assert "110" in codes(mine)
    joined = await alice.expect(_presence(f"{ROOM}/bob"))
    x = joined.find("x", USER)
    assert x is not None
    item = x.find("item", USER)
    assert item is not None and item.get("role") == "participant"

    # §7.4: groupchat both ways, reflected to the sender too
    await bob.send(f"<message to='{ROOM}' type='groupchat' id='g1'><body>hello</body></message>")
    heard = await alice.expect(_message(f"{ROOM}/bob"))
    assert heard.get("type") == "groupchat" and heard.find("body") is not None
    echo = await bob.expect(_message(f"{ROOM}/bob"))
    assert echo.get("id") == "g1"
    await alice.send(f"<message to='{ROOM}' type='groupchat'><body>welcome</body></message>")
    got = await bob.expect(_message(f"{ROOM}/alice"))
    body = got.find("body")
    assert body is not None and body.text == "welcome" and got.get("to") == "bob@b.test/r"

    # §7.5: a private message through the room, in both directions, without real JIDs
    await alice.send(f"<message to='{ROOM}/bob' type='chat'><body>psst</body></message>")
    pm = await bob.expect(_message(f"{ROOM}/alice"))
    assert pm.get("type") == "chat" and pm.find("x", USER) is not None
    await bob.send(f"<message to='{ROOM}/alice' type='chat'><body>yes?</body></message>")
    back = await alice.expect(_message(f"{ROOM}/bob"))
    assert back.get("type") == "chat"

    # §7.14: bob leaves; alice sees him go, he gets his own unavailable with 110
    await bob.send(f"<presence to='{ROOM}/bob' type='unavailable'/>")
    gone = await bob.expect(_presence(f"{ROOM}/bob", "unavailable"))
    assert "110" in codes(gone)
    await alice.expect(_presence(f"{ROOM}/bob", "unavailable"))
    await alice.close()
    await bob.close()


async def test_a_remote_user_may_not_create_a_room(friends: Pair) -> None:  # noqa: F811
    bob = await _login(friends.b, "bob", "b.test")
    await bob.send(f"<presence to='elsewhere@conference.a.test/bob'><x xmlns='{MUC}'/></presence>")
    refused: Element = await bob.expect(lambda e: e.tag == "presence")
    assert refused.get("type") == "error", refused
    assert error_of(refused) == "not-allowed"
    await bob.close()
