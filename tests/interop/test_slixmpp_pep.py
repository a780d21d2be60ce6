"""Interop: PEP (XEP-0163) with slixmpp's xep_0060, xep_0163, xep_0084, xep_0172 and xep_0402
plugins as real clients: nicknames and avatars reach exactly the contacts whose caps ask for
them, bookmarks are private (whitelist) and keep every item."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from slixmpp.plugins.xep_0004 import Form

from roost.core.jid import JID
from roost.server import events
from roost.server.app import Server
from roost.server.modules.caps import CapsModule
from roost.storage.api import RosterItem
from tests.interop.test_slixmpp import TIMEOUT, Client

PLUGINS = ("xep_0030", "xep_0115", "xep_0060", "xep_0163")


async def online(server: Server, client: Client) -> None:
    """Connect, send presence with caps, and wait until the server has verified them."""
    await client.start()
    caps = client.xmpp.plugin["xep_0115"]
    await caps.update_caps(broadcast=False)
    jid = JID.parse(str(client.xmpp.boundjid))
    seen = asyncio.Event()

    def observe(stanza: Any, sender: JID, conn: Any) -> None:
        if sender == jid:
            seen.set()

    remove = server.bus.observe(events.PRESENCE_BROADCAST, observe, priority=-1)
    try:
        client.xmpp.send_presence()
        await asyncio.wait_for(seen.wait(), TIMEOUT)
    finally:
        remove()
    info = await asyncio.wait_for(server.module(CapsModule).resolve(jid), TIMEOUT)
    assert info is not None, "caps not verified"


async def befriend(server: Server, owner: str, contact: str) -> None:
    """``contact`` is subscribed to ``owner``'s presence (seeded before login)."""
    await server.storage.put_roster_item(
        owner, "localhost", RosterItem(f"{contact}@localhost", subscription="from")
    )
    await server.storage.put_roster_item(
        contact, "localhost", RosterItem(f"{owner}@localhost", subscription="to")
    )


def queue(client: Client, event: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()
    client.xmpp.add_event_handler(event, q.put_nowait)
    return q


async def test_nick_and_avatar_reach_exactly_the_interested_contacts(
    server: Server, clients: Callable[..., Client]
) -> None:
    await befriend(server, "alice", "bob")
    await befriend(server, "alice", "carol")
    alice = clients("alice", resource="a", plugins=PLUGINS)
    bob = clients("bob", resource="b", plugins=(*PLUGINS, "xep_0172", "xep_0084"))
    carol = clients("carol", resource="c", plugins=PLUGINS)  # asks for neither
    bob_nicks = queue(bob, "user_nick_publish")
    bob_avatars = queue(bob, "avatar_metadata_publish")
    carol_events = queue(carol, "pubsub_publish")
    for c in (alice, bob, carol):
        await online(server, c)

    alice.xmpp.register_plugin("xep_0172")
    alice.xmpp.register_plugin("xep_0084")
    await alice.xmpp.plugin["xep_0172"].publish_nick("Alice", timeout=TIMEOUT)
    msg = await asyncio.wait_for(bob_nicks.get(), TIMEOUT)
    assert msg["from"].bare == "alice@localhost"
    assert msg["pubsub_event"]["items"]["item"]["nick"]["nick"] == "Alice"

    data = b"\x89PNG fake avatar bytes"
    avatar_id = alice.xmpp.plugin["xep_0084"].generate_id(data)
    await alice.xmpp.plugin["xep_0084"].publish_avatar(data, timeout=TIMEOUT)
    await alice.xmpp.plugin["xep_0084"].publish_avatar_metadata(
        {"id": avatar_id, "type": "image/png", "bytes": len(data)}, timeout=TIMEOUT
    )
    msg = await asyncio.wait_for(bob_avatars.get(), TIMEOUT)
    info = msg["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
    assert info["id"] == avatar_id
    # bob fetches the data by the id the metadata names (XEP-0084 §4.2)
    got = await bob.xmpp.plugin["xep_0084"].retrieve_avatar(
        "alice@localhost", avatar_id, timeout=TIMEOUT
    )
    assert got["pubsub"]["items"]["item"]["avatar_data"]["value"] == data

    await carol.barrier()
    await bob.barrier()
    assert carol_events.empty()
    assert bob_nicks.empty() and bob_avatars.empty()


async def test_bookmarks_are_private_and_keep_every_item(
    server: Server, clients: Callable[..., Client]
) -> None:
    """XEP-0402 §3: publish-options whitelist and max_items max; a contact is refused."""
    await befriend(server, "alice", "bob")
    alice = clients("alice", resource="a", plugins=(*PLUGINS, "xep_0402"))
    bob = clients("bob", resource="b", plugins=PLUGINS)
    await online(server, alice)
    await online(server, bob)
    from slixmpp.plugins.xep_0402.stanza import Conference

    options = Form()
    options["type"] = "submit"
    options.add_field(
        "FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options"
    )
    options.add_field("pubsub#persist_items", value="true")
    options.add_field("pubsub#access_model", value="whitelist")
    options.add_field("pubsub#max_items", value="max")
    options.add_field("pubsub#send_last_published_item", value="never")
    for room in ("one", "two", "three"):
        conf = Conference()
        conf["name"] = room
        conf["autojoin"] = True
        conf["nick"] = "alice"
        await alice.xmpp.plugin["xep_0060"].publish(
            None,
            "urn:xmpp:bookmarks:1",
            id=f"{room}@conference.localhost",
            payload=conf.xml,
            options=options,
            timeout=TIMEOUT,
        )
    items = await alice.xmpp.plugin["xep_0060"].get_items(
        None, "urn:xmpp:bookmarks:1", timeout=TIMEOUT
    )
    ids = sorted(i["id"] for i in items["pubsub"]["items"])
    assert ids == sorted(f"{r}@conference.localhost" for r in ("one", "two", "three"))
    try:
        await bob.xmpp.plugin["xep_0060"].get_items(
            "alice@localhost", "urn:xmpp:bookmarks:1", timeout=TIMEOUT
        )
    except Exception as err:  # slixmpp raises IqError
        assert err.iq["error"]["condition"] == "not-allowed"  # type: ignore[attr-defined]
    else:
        raise AssertionError("bob read alice's bookmarks")


async def test_generic_service_with_slixmpp_xep_0060(
    tmp_path: Any, clients: Callable[..., Client]
) -> None:
    """slixmpp's xep_0060 against pubsub.localhost: create, subscribe, publish, notify."""
    from tests.helpers import start_server
    from tests.interop.test_slixmpp import PASSWORDS

    srv = await start_server(tmp_path / "svc", modules={"pubsub": {"enabled": True}})
    try:
        for user in ("alice", "bob"):
            await srv.accounts.create(user, "localhost", PASSWORDS[user])
        alice = Client(srv, "alice", resource="a", plugins=PLUGINS)
        bob = Client(srv, "bob", resource="b", plugins=PLUGINS)
        notes = queue(bob, "pubsub_publish")
        await alice.start()
        await bob.start()
        bob.xmpp.send_presence()  # slixmpp subscribes its bare JID: available resources get it
        await bob.barrier()
        pubsub_a = alice.xmpp.plugin["xep_0060"]
        pubsub_b = bob.xmpp.plugin["xep_0060"]
        await pubsub_a.create_node("pubsub.localhost", "news", timeout=TIMEOUT)
        await pubsub_b.subscribe("pubsub.localhost", "news", timeout=TIMEOUT)
        from slixmpp.xmlstream import ET

        entry = ET.Element("{http://www.w3.org/2005/Atom}entry")
        ET.SubElement(entry, "{http://www.w3.org/2005/Atom}title").text = "Hello"
        await pubsub_a.publish(
            "pubsub.localhost", "news", id="first", payload=entry, timeout=TIMEOUT
        )
        msg = await asyncio.wait_for(notes.get(), TIMEOUT)
        assert str(msg["from"]) == "pubsub.localhost"
        assert msg["pubsub_event"]["items"]["node"] == "news"
        assert msg["pubsub_event"]["items"]["item"]["id"] == "first"
        items = await pubsub_b.get_items("pubsub.localhost", "news", timeout=TIMEOUT)
        assert [i["id"] for i in items["pubsub"]["items"]] == ["first"]
        nodes = await bob.xmpp.plugin["xep_0030"].get_items(jid="pubsub.localhost", timeout=TIMEOUT)
        assert [i[1] for i in nodes["disco_items"]["items"]] == ["news"]
        await alice.stop()
        await bob.stop()
    finally:
        await srv.stop()
