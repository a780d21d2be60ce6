"""Interop: the Roost client library and slixmpp through a Roost server.

Messages both ways; the library verifies slixmpp's caps (its xep_0115 plugin) by
recomputing the hash; slixmpp verifies the library's caps the same way. The two are
resources of one account, so each sees the other's presence and may query it (RFC 6121
§4.2.2, §8.5.3.1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import slixmpp

from roost.client import JID, Message, Presence
from roost.core.caps import caps_hash
from tests.client.conftest import MakeClient, make_client
from tests.interop.test_slixmpp import TIMEOUT, Client

__all__ = ["make_client"]  # the fixture, shared with tests/client


async def test_messages_both_ways(make_client: MakeClient, clients: Callable[..., Client]) -> None:
    lib = make_client("alice", resource="lib")
    await lib.connect()
    bob = clients("bob", resource="slix")
    await bob.start()
    with lib.messages() as inbox:
        bob.xmpp.send_message(mto="alice@localhost/lib", mbody="from slixmpp <&>", mtype="chat")
        msg = await inbox.next(TIMEOUT)
    assert isinstance(msg, Message) and msg.body == "from slixmpp <&>"
    assert msg.from_ == JID.parse("bob@localhost/slix")
    lib.send_message("bob@localhost/slix", "from roost ☃")
    got = await bob.next_message()
    assert got["body"] == "from roost ☃" and str(got["from"]) == "alice@localhost/lib"


async def test_the_library_verifies_slixmpp_caps(
    make_client: MakeClient, clients: Callable[..., Client]
) -> None:
    lib = make_client("alice", resource="lib")
    await lib.connect()
    slix = clients("alice", resource="slix", plugins=("xep_0115",))
    with lib.events(Presence) as seen:
        await slix.start()
        caps = slix.xmpp.plugin["xep_0115"]
        await caps.update_caps(broadcast=False)
        ver = await caps.get_verstring()
        slix.xmpp.send_presence()
        jid = JID.parse("alice@localhost/slix")
        while True:
            p = await seen.next(TIMEOUT)
            if p.from_ == jid and p.caps is not None:  # type: ignore[union-attr]
                break
    assert p.caps.ver == ver  # type: ignore[union-attr]
    info = await lib.caps.info(jid)
    assert info is not None, "the library did not verify slixmpp's caps"
    assert caps_hash(info.element) == ver
    assert "http://jabber.org/protocol/caps" in info.features


async def test_slixmpp_verifies_the_librarys_caps(
    make_client: MakeClient, clients: Callable[..., Client]
) -> None:
    slix = clients("alice", resource="slix", plugins=("xep_0115",))
    await slix.start()
    slix.xmpp.send_presence()
    lib = make_client("alice", resource="lib")
    await lib.connect()  # its initial presence carries <c/>
    caps = slix.xmpp.plugin["xep_0115"]
    jid = slixmpp.JID("alice@localhost/lib")
    # slixmpp records a ver for a JID only once it has fetched and checked the disco#info;
    # it offers no event for that, so poll (bounded).
    deadline = time.monotonic() + TIMEOUT
    while await caps.get_verstring(jid) != lib.caps.own.ver:
        assert time.monotonic() < deadline, "slixmpp did not accept the library's caps"
        await asyncio.sleep(0.02)
    info = await slix.xmpp.plugin["xep_0030"].get_info(
        jid=jid, node=lib.caps.own.disco_node, timeout=TIMEOUT
    )
    assert caps.generate_verstring(info["disco_info"], "sha-1") == lib.caps.own.ver
