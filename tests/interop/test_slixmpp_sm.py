"""Interop: slixmpp's xep_0198 plugin against Roost: stream management enabled, the
server's ack requests answered, and a dropped connection resumed with nothing lost."""

from __future__ import annotations

import asyncio

from roost.core.jid import JID
from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, eventually
from tests.interop.test_slixmpp import TIMEOUT, Client


async def test_slixmpp_acks_and_resumes(server: Server) -> None:
    alice = Client(server, "alice", resource="phone", plugins=("xep_0198",))
    enabled = asyncio.Event()
    resumed = asyncio.Event()
    alice.xmpp.add_event_handler("sm_enabled", lambda _: enabled.set())
    alice.xmpp.add_event_handler("session_resumed", lambda _: resumed.set())
    await alice.start()
    await asyncio.wait_for(enabled.wait(), TIMEOUT)
    session = server.sessions.get(JID.parse("alice@localhost/phone"))
    assert session is not None and session.sm is not None and session.sm.resumable
    bob = await RawClient.connect(server)
    await bob.login("bob", PASSWORDS["bob"], "b")
    for i in range(3):
        await bob.send(f"<message to='alice@localhost/phone' id='m{i}'><body>{i}</body></message>")
    got = [await alice.next_message() for _ in range(3)]
    assert [m["id"] for m in got] == ["m0", "m1", "m2"]
    sm = session.sm
    await eventually(lambda: not sm.unacked, "slixmpp's acks")  # it answered <r/>
    # the connection dies; slixmpp reconnects and resumes the session
    assert alice.xmpp.transport is not None
    alice.xmpp.transport.abort()
    await eventually(lambda: session.stream is None, "the server to notice")
    await bob.send("<message to='alice@localhost/phone' id='m3'><body>3</body></message>")
    await bob.ping()
    alice.connect()
    await asyncio.wait_for(resumed.wait(), TIMEOUT)
    assert (await alice.next_message())["id"] == "m3"
    assert server.sessions.get(JID.parse("alice@localhost/phone")) is session
    alice.xmpp.disconnect()
    await bob.close()
