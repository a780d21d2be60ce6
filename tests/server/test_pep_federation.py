"""PEP with the contact on another server (two Roosts on loopback, raw XML): the owner's
server checks the remote resource's caps itself (XEP-0115 §5.4), sends it the last item
when it becomes available (XEP-0163 §4.3.2) and later notifications (§4.3.1)."""

from __future__ import annotations

from roost.core import ns
from roost.core.caps import CAPS, caps_hash
from roost.core.xml.element import Element
from tests.helpers import RawClient
from tests.server.pep_helpers import CLIENT_NODE, EVENT, TUNE, caps_info, publish
from tests.server.test_federation import Pair, _login
from tests.server.test_federation_im import friends  # noqa: F401 (the fixture)

TUNE_ITEM = f"<tune xmlns='{TUNE}'><title>Yesterday</title></tune>"


async def _notification(c: RawClient, answer: Element) -> Element:
    """The next PEP notification, answering disco#info on our caps node meanwhile."""
    node = answer.get("node")
    while True:
        el = await c.next()
        q = el.find("query", ns.DISCO_INFO)
        if el.tag == "iq" and el.get("type") == "get" and q is not None and q.get("node") == node:
            reply = Element(
                "iq",
                ns.CLIENT,
                {"type": "result", "id": el.get("id") or "", "to": el.get("from") or ""},
            )
            reply.append(answer)
            await c.send(reply)
        elif el.tag == "message" and el.find("event", EVENT) is not None:
            return el


def _item_id(msg: Element) -> str | None:
    ev = msg.find("event", EVENT)
    items = ev.find("items", EVENT) if ev is not None else None
    item = items.find("item", EVENT) if items is not None else None
    return item.get("id") if item is not None else None


async def test_remote_contact_gets_last_item_and_notifications(friends: Pair) -> None:  # noqa: F811
    alice = await _login(friends.a, "alice", "a.test")
    await alice.send("<presence/>")
    await alice.expect(lambda e: e.tag == "presence" and e.get("from") == "alice@a.test/r")
    await alice.send(publish(TUNE, TUNE_ITEM, "t1").replace("<iq ", "<iq id='p1' "))
    got = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "p1")
    assert got.get("type") == "result"

    bob = await _login(friends.b, "bob", "b.test")
    info = caps_info([f"{TUNE}+notify", "urn:test:bob"])
    ver = caps_hash(info)
    info.attrs["node"] = f"{CLIENT_NODE}#{ver}"
    await bob.send(
        f"<presence><c xmlns='{CAPS}' hash='sha-1' node='{CLIENT_NODE}' ver='{ver}'/></presence>"
    )
    msg = await _notification(bob, info)  # §4.3.2: the last item, from alice's server
    assert msg.get("from") == "alice@a.test" and msg.get("to") == "bob@b.test/r"
    assert _item_id(msg) == "t1"

    await alice.send(publish(TUNE, TUNE_ITEM, "t2").replace("<iq ", "<iq id='p2' "))
    msg = await _notification(bob, info)
    assert _item_id(msg) == "t2"
    await alice.close()
    await bob.close()
