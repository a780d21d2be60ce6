"""Interop: slixmpp's xep_0280 (Message Carbons) and xep_0352 (Client State Indication)
plugins against Roost, as a user with two devices would use them."""

from __future__ import annotations

import asyncio
from typing import Any

from roost.core.jid import JID
from roost.server.app import Server
from roost.server.modules.csi import Inactive
from tests.interop.test_slixmpp import TIMEOUT, Client
from tests.server.privacy_helpers import friends


class Device(Client):
    def __init__(self, server: Server, user: str, resource: str) -> None:
        super().__init__(server, user, resource=resource, plugins=("xep_0280", "xep_0352"))
        self.carbons: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        for kind in ("received", "sent"):
            self.xmpp.add_event_handler(
                f"carbon_{kind}", lambda msg, k=kind: self.carbons.put_nowait((k, msg))
            )
        self.xmpp.add_event_handler("presence", self.presences.put_nowait)

    async def online(self) -> None:
        await self.start()
        await self.xmpp.get_roster(timeout=TIMEOUT)
        self.xmpp.send_presence()


async def test_carbons_between_two_devices(server: Server) -> None:
    phone, laptop = Device(server, "alice", "phone"), Device(server, "alice", "laptop")
    bob = Client(server, "bob", resource="b")
    for c in (phone, laptop, bob):
        await c.start()
    for device in (phone, laptop):
        await device.xmpp.plugin["xep_0280"].enable(timeout=TIMEOUT)
    bob.xmpp.send_message(mto="alice@localhost/phone", mbody="to your phone", mtype="chat")
    msg = await phone.next_message()
    assert msg["body"] == "to your phone"
    kind, carbon = await asyncio.wait_for(laptop.carbons.get(), TIMEOUT)
    assert kind == "received"
    assert carbon["carbon_received"]["body"] == "to your phone"
    assert str(carbon["carbon_received"]["from"]) == "bob@localhost/b"
    phone.xmpp.send_message(mto="bob@localhost/b", mbody="from my phone", mtype="chat")
    assert (await bob.next_message())["body"] == "from my phone"
    kind, carbon = await asyncio.wait_for(laptop.carbons.get(), TIMEOUT)
    assert kind == "sent" and carbon["carbon_sent"]["body"] == "from my phone"
    assert str(carbon["carbon_sent"]["to"]) == "bob@localhost/b"
    for c in (phone, laptop, bob):
        c.xmpp.disconnect()


async def test_an_inactive_device_is_not_woken_by_presence(server: Server) -> None:
    await friends(server, "alice", "bob")
    phone, bob = Device(server, "alice", "phone"), Device(server, "bob", "b")
    await phone.online()
    await bob.online()
    first = await asyncio.wait_for(phone.presences.get(), TIMEOUT)
    while str(first["from"]) != "bob@localhost/b":
        first = await asyncio.wait_for(phone.presences.get(), TIMEOUT)
    assert phone.xmpp.plugin["xep_0352"].enabled  # slixmpp saw the csi stream feature
    phone.xmpp.plugin["xep_0352"].send_inactive()
    await phone.ping()  # the server has read <inactive/>
    bob.xmpp.send_presence(pshow="away")
    bob.xmpp.send_presence(pshow="dnd")
    await bob.ping()
    session = server.sessions.get(JID.parse("alice@localhost/phone"))
    assert session is not None and isinstance(session.hold_back, Inactive)
    assert len(session.hold_back.held) == 1  # only bob's latest is kept
    bob.xmpp.send_message(mto="alice@localhost", mbody="are you there?", mtype="chat")
    msg = await phone.next_message()
    assert msg["body"] == "are you there?"
    latest = await asyncio.wait_for(phone.presences.get(), TIMEOUT)
    assert str(latest["from"]) == "bob@localhost/b"
    assert latest["show"] == "dnd"  # it came before the message, and only it
    assert phone.presences.empty()
    for c in (phone, bob):
        c.xmpp.disconnect()
