"""Interop: aioxmpp (PyPI) against Roost: stream management (aioxmpp enables XEP-0198 by
itself when offered, with resumption) and message carbons (its ``CarbonsClient``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aioxmpp
import aioxmpp.carbons
import aioxmpp.dispatcher

from roost.core.jid import JID
from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, eventually

TIMEOUT = 10.0


def _client(server: Server, user: str, resource: str) -> Any:
    jid = aioxmpp.JID.fromstr(f"{user}@localhost/{resource}")
    security = aioxmpp.make_security_layer(PASSWORDS[user], no_verify=True)
    return aioxmpp.PresenceManagedClient(
        jid,
        security,
        override_peer=[("127.0.0.1", server.port(), aioxmpp.connector.STARTTLSConnector())],
    )


async def test_aioxmpp_stream_management_and_carbons(server: Server) -> None:
    phone = _client(server, "alice", "phone")
    laptop = _client(server, "alice", "laptop")
    got: asyncio.Queue[Any] = asyncio.Queue()

    def on_message(msg: Any) -> None:
        got.put_nowait(msg)

    dispatcher = laptop.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
    dispatcher.register_callback(aioxmpp.MessageType.CHAT, None, on_message)
    async with phone.connected(), laptop.connected():
        assert phone.stream.sm_enabled and phone.stream.sm_resumable  # offered, taken
        session = server.sessions.get(JID.parse("alice@localhost/phone"))
        assert session is not None and session.sm is not None and session.sm.resumable
        await asyncio.wait_for(laptop.summon(aioxmpp.carbons.CarbonsClient).enable(), TIMEOUT)
        bob = await RawClient.connect(server)
        await bob.login("bob", PASSWORDS["bob"], "b")
        await bob.send(
            "<message to='alice@localhost/phone' type='chat' id='m1'><body>to the phone</body>"
            "</message>"
        )
        carbon = await asyncio.wait_for(got.get(), TIMEOUT)
        # aioxmpp hands the wrapper to the callback: the forwarded original is inside
        assert carbon.xep0280_received is not None
        inner = carbon.xep0280_received.stanza
        assert str(inner.from_) == "bob@localhost/b" and inner.body.any() == "to the phone"
        # aioxmpp answers the server's ack requests: nothing stays unacknowledged
        sm = session.sm
        await eventually(lambda: not sm.unacked, "aioxmpp's acks")
        await bob.close()
