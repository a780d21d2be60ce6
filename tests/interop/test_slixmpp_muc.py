"""Interop: slixmpp's xep_0045 plugin as a real client of Roost's MUC service (issue 13,
acceptance 1): create and configure a room, join, chat, change the subject, kick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from slixmpp import JID

from tests.interop.test_slixmpp import TIMEOUT, Client

ROOM = JID("coven@conference.localhost")


def queue_of(client: Client, event: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()
    client.xmpp.add_event_handler(event, q.put_nowait)
    return q


async def test_join_chat_subject_kick(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0045", "xep_0004"))
    bob = clients("bob", plugins=("xep_0045",))
    await alice.start()
    await bob.start()
    alice.xmpp.send_presence()
    bob.xmpp.send_presence()
    muc_a = alice.xmpp.plugin["xep_0045"]
    muc_b = bob.xmpp.plugin["xep_0045"]

    # a reserved room: join, fetch the form, submit it
    presence, _subject, _occupants, _history = await muc_a.join_muc_wait(
        ROOM, "firstwitch", timeout=TIMEOUT
    )
    assert {201, 110} <= set(presence["muc"]["status_codes"])
    form = await muc_a.get_room_config(ROOM, timeout=TIMEOUT)
    assert "muc#roomconfig_roomname" in form.get_fields()
    form.set_values({"muc#roomconfig_roomname": "A Dark Cave"})
    await muc_a.set_room_config(ROOM, form, timeout=TIMEOUT)

    got_online = queue_of(alice, f"muc::{ROOM}::got_online")
    presence, _subject, occupants, _history = await muc_b.join_muc_wait(
        ROOM, "secondwitch", timeout=TIMEOUT
    )
    assert presence["muc"]["role"] == "participant"
    assert "firstwitch" in {p["muc"]["nick"] for p in occupants}
    online = await asyncio.wait_for(got_online.get(), TIMEOUT)
    assert online["muc"]["nick"] == "secondwitch"
    assert set(muc_a.get_roster(ROOM)) == {"firstwitch", "secondwitch"}

    # a groupchat message comes to both
    msgs_a = queue_of(alice, f"muc::{ROOM}::message")
    msgs_b = queue_of(bob, f"muc::{ROOM}::message")
    bob.xmpp.send_message(mto=ROOM, mbody="When shall we three meet again", mtype="groupchat")
    for q in (msgs_a, msgs_b):
        msg = await asyncio.wait_for(q.get(), TIMEOUT)
        assert msg["body"] == "When shall we three meet again"
        assert msg["from"] == JID(f"{ROOM}/secondwitch")

    # the owner (a moderator) changes the subject
    subjects = queue_of(bob, f"muc::{ROOM}::groupchat_subject")
    muc_a.set_subject(ROOM, "In thunder, lightning, or in rain?")
    msg = await asyncio.wait_for(subjects.get(), TIMEOUT)
    assert msg["subject"] == "In thunder, lightning, or in rain?"

    # and kicks bob
    offline = queue_of(alice, f"muc::{ROOM}::got_offline")
    self_presence = queue_of(bob, f"muc::{ROOM}::presence")
    await muc_a.set_role(ROOM, "secondwitch", "none", reason="Avaunt", timeout=TIMEOUT)
    gone = await asyncio.wait_for(offline.get(), TIMEOUT)
    assert 307 in gone["muc"]["status_codes"]
    while True:
        pres = await asyncio.wait_for(self_presence.get(), TIMEOUT)
        if pres["type"] == "unavailable":
            break
    assert {110, 307} <= set(pres["muc"]["status_codes"])
    assert muc_a.get_roster(ROOM) == ["firstwitch"]


async def test_self_ping_while_joined_and_after_leaving(clients: Callable[..., Client]) -> None:
    """XEP-0410 §3 with slixmpp's xep_0410 plugin: a ping to one's own occupant JID says
    JOINED while joined, and not-joined (DISCONNECTED) once the client has left."""
    from slixmpp.plugins.xep_0410 import PingStatus

    alice = clients("alice", plugins=("xep_0045", "xep_0199", "xep_0410"))
    await alice.start()
    alice.xmpp.send_presence()
    muc = alice.xmpp.plugin["xep_0045"]
    await muc.join_muc_wait(ROOM, "firstwitch", timeout=TIMEOUT)
    ping = alice.xmpp.plugin["xep_0410"]
    me = JID(f"{ROOM}/firstwitch")
    assert await ping.send_self_ping(me, timeout=TIMEOUT) == PingStatus.JOINED
    muc.leave_muc(ROOM, "firstwitch")
    # the server takes a client's stanzas in order (RFC 6120 §10.1): the ping after the
    # exit is answered after it
    assert await ping.send_self_ping(me, timeout=TIMEOUT) == PingStatus.DISCONNECTED
