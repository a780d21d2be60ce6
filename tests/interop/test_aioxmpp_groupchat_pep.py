"""Interop: aioxmpp's ``muc`` and ``avatar`` services (on ``pep``) against Roost (#13)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aioxmpp
import aioxmpp.avatar
import aioxmpp.forms
import aioxmpp.muc

from roost.server.app import Server
from tests.interop.test_aioxmpp_mobile import TIMEOUT, _client
from tests.server.privacy_helpers import friends


async def test_aioxmpp_joins_a_room_and_chats(server: Server) -> None:
    alice, bob = _client(server, "alice", "a"), _client(server, "bob", "b")
    async with alice.connected(), bob.connected():
        room_jid = aioxmpp.JID.fromstr("lounge@conference.localhost")
        muc = alice.summon(aioxmpp.muc.MUCClient)
        a_room, a_joined = muc.join(room_jid, "Alice")
        await asyncio.wait_for(a_joined, TIMEOUT)
        # XEP-0045 §10.1: the new room is locked until its owner configures it; the
        # submitted configuration form (the defaults) unlocks it
        form = await asyncio.wait_for(muc.get_room_config(room_jid), TIMEOUT)
        form.type_ = aioxmpp.forms.DataType.SUBMIT
        await asyncio.wait_for(muc.set_room_config(room_jid, form), TIMEOUT)
        b_room, b_joined = bob.summon(aioxmpp.muc.MUCClient).join(room_jid, "Bob")
        await asyncio.wait_for(b_joined, TIMEOUT)
        got: asyncio.Queue[Any] = asyncio.Queue()
        b_room.on_message.connect(lambda msg, member, source, **kw: got.put_nowait((msg, member)))
        message = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        message.body[None] = "hello room"
        await a_room.send_message(message)
        msg, member = await asyncio.wait_for(got.get(), TIMEOUT)
        assert msg.body.any() == "hello room" and member.nick == "Alice"
        assert {m.nick for m in b_room.members} == {"Alice", "Bob"}


async def test_aioxmpp_publishes_an_avatar_its_contact_reads(server: Server) -> None:
    await friends(server, "alice", "bob")
    alice, bob = _client(server, "alice", "a"), _client(server, "bob", "b")
    png = b"\x89PNG\r\n\x1a\n" + b"roost" * 20
    async with alice.connected(), bob.connected():
        avatar_set = aioxmpp.avatar.AvatarSet()
        avatar_set.add_avatar_image("image/png", image_bytes=png)
        await asyncio.wait_for(
            alice.summon(aioxmpp.avatar.AvatarService).publish_avatar_set(avatar_set), TIMEOUT
        )
        alice_jid = aioxmpp.JID.fromstr("alice@localhost")
        metadata = await asyncio.wait_for(
            bob.summon(aioxmpp.avatar.AvatarService).get_avatar_metadata(
                alice_jid, require_fresh=True
            ),
            TIMEOUT,
        )
        assert metadata, "no avatar metadata"
        descriptor = metadata[0]
        assert descriptor.normalized_id == hashlib.sha1(png).hexdigest()
        data = await asyncio.wait_for(descriptor.get_image_bytes(), TIMEOUT)
        assert data == png
