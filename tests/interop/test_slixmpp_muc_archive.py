"""Interop: slixmpp's xep_0313 against a room JID (XEP-0313 §3.3.2) and its xep_0425 plugin
moderating a message there (issue 13: MAM on rooms, XEP-0425), against Roost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from tests.interop.test_slixmpp import TIMEOUT, Client
from tests.interop.test_slixmpp_muc import queue_of

ROOM = JID("coven@conference.localhost")
PLUGINS = (
    "xep_0004",
    "xep_0030",
    "xep_0045",
    "xep_0059",
    "xep_0297",
    "xep_0313",
    "xep_0359",
    "xep_0421",
    "xep_0424",
    "xep_0425",
)
N = 7


async def test_room_history_and_moderation(clients: Callable[..., Client]) -> None:
    alice = clients("alice", resource="a", plugins=PLUGINS)
    bob = clients("bob", resource="b", plugins=PLUGINS)
    await asyncio.gather(alice.start(), bob.start())
    alice.xmpp.send_presence()
    bob.xmpp.send_presence()
    muc_a = alice.xmpp.plugin["xep_0045"]
    muc_b = bob.xmpp.plugin["xep_0045"]
    await muc_a.join_muc_wait(ROOM, "firstwitch", timeout=TIMEOUT)
    form = await muc_a.get_room_config(ROOM, timeout=TIMEOUT)
    assert "muc#roomconfig_enablearchiving" in form.get_fields()
    form.set_values({"muc#roomconfig_enablearchiving": True})
    await muc_a.set_room_config(ROOM, form, timeout=TIMEOUT)
    await muc_b.join_muc_wait(ROOM, "secondwitch", timeout=TIMEOUT)
    info = await bob.xmpp.plugin["xep_0030"].get_info(jid=ROOM, timeout=TIMEOUT)
    features = info["disco_info"]["features"]
    assert "urn:xmpp:mam:2" in features and "urn:xmpp:message-moderate:1" in features

    # bob speaks; alice's client sees the room's stanza-ids (XEP-0359, by the room)
    heard = queue_of(alice, f"muc::{ROOM}::message")
    for i in range(N):
        bob.xmpp.send_message(mto=ROOM, mbody=f"hex {i}", mtype="groupchat")
    stanza_ids = []
    for i in range(N):
        msg = await asyncio.wait_for(heard.get(), TIMEOUT)
        assert msg["body"] == f"hex {i}"
        assert msg["stanza_id"]["by"] == ROOM
        stanza_ids.append(msg["stanza_id"]["id"])

    # the room's archive, three at a time with slixmpp's RSM iterator
    mam = bob.xmpp.plugin["xep_0313"]
    got = [m async for m in mam.iterate(jid=ROOM, rsm={"max": 3})]
    assert [m["mam_result"]["id"] for m in got] == stanza_ids
    forwarded = got[0]["mam_result"]["forwarded"]["stanza"]
    assert forwarded["body"] == "hex 0" and forwarded["from"] == JID(f"{ROOM}/secondwitch")
    assert forwarded["type"] == "groupchat"
    # by occupant
    mine = [m async for m in mam.iterate(jid=ROOM, with_jid=JID(f"{ROOM}/firstwitch"))]
    assert mine == []

    # a participant may not moderate; the moderator may
    with pytest.raises(IqError) as refused:
        await bob.xmpp.plugin["xep_0425"].moderate(ROOM, stanza_ids[2], "no", timeout=TIMEOUT)
    assert refused.value.condition == "forbidden"
    moderated = queue_of(bob, "moderated_message")
    await alice.xmpp.plugin["xep_0425"].moderate(ROOM, stanza_ids[2], "spam", timeout=TIMEOUT)
    note = await asyncio.wait_for(moderated.get(), TIMEOUT)
    assert note["from"] == ROOM
    assert note["retract"]["id"] == stanza_ids[2]
    assert note["retract"]["reason"] == "spam"
    assert note["retract"]["moderated"]["by"] == JID(f"{ROOM}/firstwitch")
    # later queries show the tombstone in its place
    got = [m async for m in mam.iterate(jid=ROOM, rsm={"max": 50})]
    assert [m["mam_result"]["id"] for m in got][:N] == stanza_ids
    tomb = got[2]["mam_result"]["forwarded"]["stanza"]
    assert tomb["body"] == ""
    assert tomb["retracted"]["reason"] == "spam"
    assert tomb["retracted"]["moderated"]["by"] == JID(f"{ROOM}/firstwitch")
