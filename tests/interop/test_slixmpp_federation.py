"""slixmpp clients on two federated Roost servers (``a.test`` and ``b.test``, dialback).

A subscription handshake across the domains, presence and messages both ways, iq requests
(XEP-0092 version, XEP-0199 ping, XEP-0030 disco) to a remote user's client and server, and a
block (XEP-0191) of a remote JID.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from tests.helpers import eventually, offline
from tests.server.test_federation import PASSWORD, Pair, _start_pair

TIMEOUT = 10.0


class User:
    """One slixmpp client of any server (by port), with its stanzas as queues."""

    def __init__(self, port: int, jid: str, *, answer_subscriptions: bool = True) -> None:
        self.port = port
        self.xmpp = slixmpp.ClientXMPP(jid, PASSWORD)
        for plugin in ("xep_0012", "xep_0030", "xep_0092", "xep_0199", "xep_0191"):
            self.xmpp.register_plugin(plugin)
        self.xmpp.ssl_context.check_hostname = False
        self.xmpp.ssl_context.verify_mode = ssl.CERT_NONE
        self.xmpp.enable_direct_tls = False
        self.xmpp.enable_plaintext = False
        if not answer_subscriptions:
            # None: slixmpp neither accepts nor declines; the test answers
            self.xmpp.roster.auto_authorize = None
            self.xmpp.roster.auto_subscribe = None
        self.started = asyncio.Event()
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.presences: asyncio.Queue[Any] = asyncio.Queue()
        self.available: asyncio.Queue[Any] = asyncio.Queue()
        self.xmpp.add_event_handler("session_start", self._start)
        self.xmpp.add_event_handler("message", self.messages.put_nowait)
        self.xmpp.add_event_handler("presence", self.presences.put_nowait)
        self.xmpp.add_event_handler("presence_available", self.available.put_nowait)

    async def _start(self, _: Any) -> None:
        await self.xmpp.get_roster()
        self.xmpp.send_presence()
        self.started.set()

    async def start(self) -> None:
        self.xmpp.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.started.wait(), TIMEOUT)


async def next_matching(queue: asyncio.Queue[Any], match: Any) -> Any:
    """The next item of ``queue`` that ``match`` accepts (within ``TIMEOUT``)."""

    async def find() -> Any:
        while True:
            item = await queue.get()
            if match(item):
                return item

    return await asyncio.wait_for(find(), TIMEOUT)


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[tuple[Pair, User, User]]:
    pair = await _start_pair(tmp_path)
    alice = User(pair.a.port(), "alice@a.test/s")
    bob = User(pair.b.port(), "bob@b.test/s")
    await alice.start()
    await bob.start()
    yield pair, alice, bob
    for user in (alice, bob):
        user.xmpp.disconnect()
    await pair.a.stop()
    await pair.b.stop()


async def test_subscription_presence_and_messages(users: tuple[Pair, User, User]) -> None:
    _, alice, bob = users
    # slixmpp's defaults accept a request and ask back: a mutual subscription
    alice.xmpp.send_presence(pto="bob@b.test", ptype="subscribe")
    got = await next_matching(alice.available, lambda p: str(p["from"]) == "bob@b.test/s")
    assert got["type"] == "available"
    got = await next_matching(bob.available, lambda p: str(p["from"]) == "alice@a.test/s")
    assert got["type"] == "available"
    assert alice.xmpp.client_roster["bob@b.test"]["subscription"] == "both"

    alice.xmpp.send_message(mto="bob@b.test", mbody="over the federation", mtype="chat")
    got = await next_matching(bob.messages, lambda m: m["body"] == "over the federation")
    assert str(got["from"]) == "alice@a.test/s"
    bob.xmpp.send_message(mto="alice@a.test/s", mbody="and back", mtype="chat")
    got = await next_matching(alice.messages, lambda m: m["body"] == "and back")
    assert str(got["from"]) == "bob@b.test/s"


async def test_iq_to_a_remote_user_and_server(users: tuple[Pair, User, User]) -> None:
    _, alice, _bob = users
    # a mutual subscription first, to learn bob's full JID from his presence
    alice.xmpp.send_presence(pto="bob@b.test", ptype="subscribe")
    await next_matching(alice.available, lambda p: str(p["from"]) == "bob@b.test/s")
    version = await alice.xmpp.plugin["xep_0092"].get_version("bob@b.test/s", timeout=TIMEOUT)
    assert version["software_version"]["name"]
    rtt = await alice.xmpp.plugin["xep_0199"].ping("bob@b.test/s", timeout=TIMEOUT)
    assert rtt >= 0
    info = await alice.xmpp.plugin["xep_0030"].get_info(jid="b.test", timeout=TIMEOUT)
    identities = info["disco_info"]["identities"]
    assert any(i[0] == "server" and i[1] == "im" for i in identities), identities
    server_version = await alice.xmpp.plugin["xep_0092"].get_version("b.test", timeout=TIMEOUT)
    assert server_version["software_version"]["name"] == "Roost"
    # XEP-0012: the remote server's uptime (§5), and a contact's account (§4), which b.test
    # answers because alice is subscribed: bob is online, so 0 seconds
    last = alice.xmpp.plugin["xep_0012"]
    uptime = await last.get_last_activity("b.test", timeout=TIMEOUT)
    assert int(uptime["last_activity"]["seconds"]) >= 0
    contact = await last.get_last_activity("bob@b.test", timeout=TIMEOUT)
    assert int(contact["last_activity"]["seconds"]) == 0


async def test_last_activity_of_a_remote_account(users: tuple[Pair, User, User]) -> None:
    """XEP-0012 §4 across domains: a stranger is refused; a contact who has logged out gets
    the seconds since, with the status of the last unavailable presence."""
    pair, alice, bob = users
    with pytest.raises(IqError) as refused:
        await alice.xmpp.plugin["xep_0012"].get_last_activity("bob@b.test", timeout=TIMEOUT)
    assert refused.value.condition in ("forbidden", "subscription-required")
    alice.xmpp.send_presence(pto="bob@b.test", ptype="subscribe")
    await next_matching(alice.available, lambda p: str(p["from"]) == "bob@b.test/s")
    bob.xmpp.send_presence(ptype="unavailable", pstatus="gone fishing")
    bob.xmpp.disconnect()  # the logout is what XEP-0012 §4 counts from
    await next_matching(
        alice.presences,
        lambda p: str(p["from"]) == "bob@b.test/s" and p["type"] == "unavailable",
    )
    await eventually(offline(pair.b, "bob@b.test"), "b.test to see bob's logout")
    got = await alice.xmpp.plugin["xep_0012"].get_last_activity("bob@b.test", timeout=TIMEOUT)
    assert int(got["last_activity"]["seconds"]) >= 0
    assert got["last_activity"]["status"] == "gone fishing"


async def test_a_remote_jid_can_be_blocked(users: tuple[Pair, User, User]) -> None:
    """XEP-0191 §3.3 for a sender on another server: its messages are refused."""
    _, alice, bob = users
    await bob.xmpp.plugin["xep_0191"].block(["alice@a.test"], timeout=TIMEOUT)
    error: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_error(msg: Any) -> None:
        if not error.done():
            error.set_result(msg)

    alice.xmpp.add_event_handler("message_error", on_error)
    alice.xmpp.send_message(mto="bob@b.test/s", mbody="are you there?", mtype="chat")
    got = await asyncio.wait_for(error, TIMEOUT)
    assert got["error"]["condition"] == "service-unavailable"
    # alice has the error, so b.test has judged the message: it was not delivered (bob's
    # ping of his own server is a barrier for anything it wrote to him before)
    with pytest.raises(IqError):  # iq requests from a blocked JID are refused too
        await alice.xmpp.plugin["xep_0199"].send_ping("bob@b.test/s", timeout=TIMEOUT)
    await bob.xmpp.plugin["xep_0199"].ping("b.test", timeout=TIMEOUT)
    assert bob.messages.empty()
