"""Interop: slixmpp's own plugins against Roost's services.

XEP-0092 (xep_0092), XEP-0202 (xep_0202), XEP-0012 (xep_0012), XEP-0054 (xep_0054),
XEP-0049 (xep_0049) and the server's disco#info (xep_0030), each through real sockets.

Notes on slixmpp 1.17:

* ``xep_0054.get_vcard(jid)`` answers from its local cache when ``jid`` is the client's own
  full JID or missing; a bare JID (even one's own) is sent to the server.
* ``xep_0012.get_last_activity(jid)`` likewise answers locally only for the own full JID.
* COMPAT: slixmpp's ``EntityTime`` getters cannot read what XEP-0202 requires: ``['tzo']``
  feeds ``00:00:00+00:00`` to a full DateTime parser and ``['utc']`` appends a second ``Z``
  to the mandatory one. The texts are read from the XML and parsed with slixmpp's XEP-0082
  ``parse``.
* A subscription request reaches only available resources (RFC 6121 §3.1.3), so clients send
  initial presence first; slixmpp then approves it on its own (``auto_authorize``).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable

import pytest
import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.plugins import xep_0082
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.xmlstream import ElementBase

import roost
from roost.core.jid import JID
from roost.server.app import Server
from tests.helpers import eventually
from tests.interop.test_slixmpp import TIMEOUT, Client

SERVER = slixmpp.JID("localhost")


async def test_version(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0092",))
    await alice.start()
    reply = await alice.xmpp.plugin["xep_0092"].get_version(SERVER, timeout=TIMEOUT)
    assert reply["type"] == "result"
    assert str(reply["from"]) == "localhost"
    version = reply["software_version"]
    assert version["name"] == "Roost"
    assert version["version"] == roost.__version__
    assert version["os"] == ""  # not divulged


async def test_entity_time(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0202",))
    await alice.start()
    before = datetime.datetime.now(datetime.UTC)
    reply = await alice.xmpp.plugin["xep_0202"].get_entity_time(SERVER, timeout=TIMEOUT)
    after = datetime.datetime.now(datetime.UTC)
    entity_time = reply["entity_time"]
    assert entity_time.xml.find("{urn:xmpp:time}tzo").text == "+00:00"
    utc = xep_0082.parse(entity_time.xml.find("{urn:xmpp:time}utc").text)
    assert before - datetime.timedelta(seconds=1) <= utc <= after + datetime.timedelta(seconds=1)


async def test_last_activity_of_the_server(server: Server, clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0012",))
    await alice.start()
    server.started_at = time.time() - 120
    reply = await alice.xmpp.plugin["xep_0012"].get_last_activity(SERVER, timeout=TIMEOUT)
    assert 120 <= reply["last_activity"]["seconds"] <= 122
    assert not reply["last_activity"]["status"]


async def test_last_activity_of_a_contact(server: Server, clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0012",))
    bob = clients("bob")
    subscribed = asyncio.Event()
    alice.xmpp.add_event_handler("presence_subscribed", lambda _: subscribed.set())
    await asyncio.gather(alice.start(), bob.start())
    last = alice.xmpp.plugin["xep_0012"]
    bob_jid = JID.parse("bob@localhost")
    alice.xmpp.send_presence()
    bob.xmpp.send_presence()
    await eventually(
        lambda: all(
            any(c.available for c in server.sessions.resources(JID.parse(user)).values())
            for user in ("alice@localhost", "bob@localhost")
        ),
        "both available",
    )

    # Not subscribed to bob's presence: forbidden (XEP-0012 §3).
    with pytest.raises(IqError) as info:
        await last.get_last_activity(slixmpp.JID("bob@localhost"), timeout=TIMEOUT)
    assert info.value.iq["error"]["condition"] == "forbidden"

    # A real subscription (slixmpp approves it by default); bob is online: 0 seconds.
    alice.xmpp.send_presence(pto="bob@localhost", ptype="subscribe")
    await asyncio.wait_for(subscribed.wait(), TIMEOUT)
    reply = await last.get_last_activity(slixmpp.JID("bob@localhost"), timeout=TIMEOUT)
    assert reply["last_activity"]["seconds"] == 0

    # bob logs out with a status: how long ago, and the status (XEP-0012 §3).
    bob.xmpp.send_presence(ptype="unavailable", pstatus="Heading Home")
    # slixmpp may cut the connection before its send queue is flushed: let the server
    # see the unavailable presence first.
    await eventually(
        lambda: not any(c.available for c in server.sessions.resources(bob_jid).values()),
        "bob's unavailable presence taken",
    )
    await bob.stop()
    await eventually(lambda: not server.sessions.is_online(bob_jid), "bob's session ended")
    await server.idle()  # the logout is recorded (a spawned storage write)
    reply = await last.get_last_activity(slixmpp.JID("bob@localhost"), timeout=TIMEOUT)
    assert str(reply["from"]) == "bob@localhost"
    assert 0 <= reply["last_activity"]["seconds"] <= 2
    assert reply["last_activity"]["status"] == "Heading Home"


async def test_vcard_publish_and_get(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0054",))
    bob = clients("bob", plugins=("xep_0054",))
    await asyncio.gather(alice.start(), bob.start())
    plugin = alice.xmpp.plugin["xep_0054"]

    # nothing stored yet: an empty vCard
    reply = await bob.xmpp.plugin["xep_0054"].get_vcard(
        slixmpp.JID("alice@localhost"), timeout=TIMEOUT
    )
    assert reply["vcard_temp"]["FN"] == ""

    vcard = plugin.make_vcard()
    vcard["FN"] = "Alice Liddell & Co"
    vcard["NICKNAME"] = "ali ☃"
    vcard["BDAY"] = datetime.date(1852, 5, 4)
    await plugin.publish_vcard(vcard, timeout=TIMEOUT)

    for client in (alice, bob):
        reply = await client.xmpp.plugin["xep_0054"].get_vcard(
            slixmpp.JID("alice@localhost"), timeout=TIMEOUT
        )
        got = reply["vcard_temp"]
        assert str(reply["from"]) == "alice@localhost"
        assert got["FN"] == "Alice Liddell & Co"
        assert got["NICKNAME"] == ["ali ☃"]  # slixmpp: NICKNAME is a list
        assert got["BDAY"] == "1852-05-04"

    # and nobody else may change it (XEP-0054 §3.2)
    with pytest.raises(IqError) as info:
        await bob.xmpp.plugin["xep_0054"].publish_vcard(
            vcard, jid=slixmpp.JID("alice@localhost"), timeout=TIMEOUT
        )
    assert info.value.iq["error"]["condition"] == "forbidden"


class Prefs(ElementBase):
    """A client-specific fragment, as in XEP-0049's example."""

    name = "exodus"
    namespace = "exodus:prefs"
    plugin_attrib = "exodus"
    interfaces = {"defaultnick"}
    sub_interfaces = interfaces


async def test_private_storage(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0049",), resource="one")
    await alice.start()
    private = alice.xmpp.plugin["xep_0049"]
    private.register(Prefs)
    private.register(Bookmarks)

    prefs = Prefs()
    prefs["defaultnick"] = "Hamlet"
    bookmarks = Bookmarks()
    bookmarks.add_conference("room@muc.localhost", "hamlet", name="The Room", autojoin=True)
    bookmarks.add_url("https://example.test/", name="Example")
    reply = await private.store([prefs, bookmarks], timeout=TIMEOUT)
    assert reply["type"] == "result"

    # another session of the account reads them back
    other = clients("alice", plugins=("xep_0049",), resource="two")
    await other.start()
    other.xmpp.plugin["xep_0049"].register(Prefs)
    other.xmpp.plugin["xep_0049"].register(Bookmarks)
    reply = await other.xmpp.plugin["xep_0049"].retrieve("exodus", timeout=TIMEOUT)
    assert reply["private"]["exodus"]["defaultnick"] == "Hamlet"
    reply = await other.xmpp.plugin["xep_0049"].retrieve("bookmarks", timeout=TIMEOUT)
    got = reply["private"]["bookmarks"]
    conferences = [c for c in got if c.name == "conference"]
    assert len(conferences) == 1
    assert conferences[0]["jid"] == slixmpp.JID("room@muc.localhost")
    assert conferences[0]["nick"] == "hamlet"
    assert conferences[0]["autojoin"] is True
    urls = [u for u in got if u.name == "url"]
    assert [u["url"] for u in urls] == ["https://example.test/"]


async def test_disco_info_lists_the_services(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0030",))
    await alice.start()
    reply = await alice.xmpp.plugin["xep_0030"].get_info(jid=SERVER, timeout=TIMEOUT)
    features = set(reply["disco_info"]["features"])
    assert {
        "jabber:iq:version",
        "urn:xmpp:time",
        "jabber:iq:last",
        "vcard-temp",
        "jabber:iq:private",
    } <= features
