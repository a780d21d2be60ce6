"""Interop: slixmpp's xep_0191 (Blocking Command) and xep_0016 (Privacy Lists) against Roost.

Acceptance: alice blocks bob, sees the push and her blocklist, bob's messages bounce and
hers to him are refused with ``<blocked/>``; unblocking (one, then all) restores delivery.
With privacy lists alice creates and reads lists, makes one the default and activates
another, and each takes effect.

Notes on slixmpp 1.17:

* Blocklist pushes go to sessions that asked for the blocklist (XEP-0191 §3.3), so each
  test asks first, as §3.2 says a client should.
* xep_0191 has ``get_blocked_jids``, ``block`` and ``unblock`` (which needs JIDs); an
  unblock-all is built by hand. Pushes arrive as the ``blocked`` and ``unblocked`` events.
* xep_0016 handles no privacy list push: slixmpp answers it ``feature-not-implemented``,
  which the server takes as a response and ignores.
* Its ``Item`` writes ``<presence-in/>`` for ``presence_out`` too, so presence-out is not
  exercised here (the raw-XML tests cover it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from roost.server.app import Server
from tests.interop.test_slixmpp import TIMEOUT, Client

ALICE, BOB = "alice@localhost", "bob@localhost"
EVENTS = ("blocked", "unblocked", "message", "message_error")


class BlockingClient(Client):
    """A slixmpp client with xep_0191 and xep_0016 and its events queued."""

    def __init__(self, server: Server, user: str, **kwargs: Any) -> None:
        super().__init__(server, user, plugins=("xep_0030", "xep_0191", "xep_0016"), **kwargs)
        self.queues: dict[str, asyncio.Queue[Any]] = {}
        for name in EVENTS:
            q: asyncio.Queue[Any] = asyncio.Queue()
            self.queues[name] = q
            self.xmpp.add_event_handler(name, q.put_nowait)

    async def online(self) -> None:
        """Connect and send initial presence, so messages to the bare JID are delivered."""
        await self.start()
        self.xmpp.send_presence()

    async def wait(self, event: str) -> Any:
        return await asyncio.wait_for(self.queues[event].get(), TIMEOUT)

    @property
    def blocking(self) -> Any:
        return self.xmpp.plugin["xep_0191"]

    @property
    def privacy(self) -> Any:
        return self.xmpp.plugin["xep_0016"]

    def say(self, to: str, body: str) -> None:
        self.xmpp.send_message(mto=slixmpp.JID(to), mbody=body, mtype="chat")


@pytest.fixture
async def clients(server: Server) -> AsyncIterator[Callable[..., BlockingClient]]:
    made: list[BlockingClient] = []

    def make(user: str, **kwargs: Any) -> BlockingClient:
        client = BlockingClient(server, user, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.stop()


def condition(msg: Any) -> str:
    return str(msg["error"]["condition"])


async def test_block_get_unblock(clients: Callable[..., BlockingClient]) -> None:
    alice = clients("alice", resource="a")
    bob = clients("bob", resource="b")
    await asyncio.gather(alice.online(), bob.online())
    info = await alice.xmpp.plugin["xep_0030"].get_info(jid="localhost", timeout=TIMEOUT)
    assert "urn:xmpp:blocking" in info["disco_info"]["features"]

    assert await alice.blocking.get_blocked_jids(timeout=TIMEOUT) == set()
    await alice.blocking.block(slixmpp.JID(BOB), timeout=TIMEOUT)
    push = await alice.wait("blocked")
    assert [str(i["jid"]) for i in push["block"]] == [BOB]
    assert await alice.blocking.get_blocked_jids(timeout=TIMEOUT) == {slixmpp.JID(BOB)}

    bob.say(ALICE, "can you hear me?")
    bounce = await bob.wait("message_error")
    assert condition(bounce) == "service-unavailable"
    alice.say(BOB, "no")
    refused = await alice.wait("message_error")
    assert condition(refused) == "not-acceptable"
    assert refused.xml.find("{jabber:client}error/{urn:xmpp:blocking:errors}blocked") is not None
    assert alice.queues["message"].empty()
    assert bob.queues["message"].empty()

    await alice.blocking.unblock(slixmpp.JID(BOB), timeout=TIMEOUT)
    push = await alice.wait("unblocked")
    assert [str(i["jid"]) for i in push["unblock"]] == [BOB]
    bob.say(ALICE, "now?")
    msg = await alice.wait("message")
    assert msg["body"] == "now?"


async def test_unblock_all(clients: Callable[..., BlockingClient]) -> None:
    alice = clients("alice", resource="a")
    bob = clients("bob", resource="b")
    await asyncio.gather(alice.online(), bob.online())
    await alice.blocking.get_blocked_jids(timeout=TIMEOUT)  # pushes go to sessions that asked
    await alice.blocking.block([slixmpp.JID(BOB), slixmpp.JID("carol@localhost")], timeout=TIMEOUT)
    await alice.wait("blocked")
    iq = alice.xmpp.make_iq_set()
    iq.enable("unblock")
    await iq.send(timeout=TIMEOUT)
    push = await alice.wait("unblocked")
    assert list(push["unblock"]) == []  # XEP-0191 §3.5: the empty form
    assert await alice.blocking.get_blocked_jids(timeout=TIMEOUT) == set()
    bob.say(ALICE, "hello again")
    assert (await alice.wait("message"))["body"] == "hello again"


async def test_privacy_lists(clients: Callable[..., BlockingClient]) -> None:
    alice = clients("alice", resource="a")
    bob = clients("bob", resource="b")
    await asyncio.gather(alice.online(), bob.online())
    privacy = alice.privacy

    await privacy.edit_list(
        "public",
        [
            {"type": "jid", "value": BOB, "action": "deny", "order": "1", "message": True},
            {"value": None, "action": "allow", "order": "2"},
        ],
        timeout=TIMEOUT,
    )
    await privacy.edit_list(
        "open", [{"value": None, "action": "allow", "order": "1"}], timeout=TIMEOUT
    )
    result = await privacy.get_privacy_lists(timeout=TIMEOUT)
    assert sorted(lst["name"] for lst in result["privacy"]["lists"]) == ["open", "public"]
    result = await privacy.get_list("public", timeout=TIMEOUT)
    (public,) = result["privacy"]["lists"]
    items = [(i["type"], i["value"], i["action"], i["order"], i["message"]) for i in public]
    assert items == [("jid", BOB, "deny", "1", True), ("", "", "allow", "2", False)]

    await privacy.make_default("public", timeout=TIMEOUT)
    result = await privacy.get_default(timeout=TIMEOUT)  # answered with the names
    assert result["privacy"]["default"]["name"] == "public"
    bob.say(ALICE, "blocked by the default list")
    assert condition(await bob.wait("message_error")) == "service-unavailable"
    # the blocklist is the default list's jid/deny items for everything: not bob's
    assert await alice.blocking.get_blocked_jids(timeout=TIMEOUT) == set()

    await privacy.activate("open", timeout=TIMEOUT)  # the active list replaces the default
    result = await privacy.get_active(timeout=TIMEOUT)
    assert result["privacy"]["active"]["name"] == "open"
    bob.say(f"{ALICE}/a", "through the active list")
    assert (await alice.wait("message"))["body"] == "through the active list"

    await privacy.deactivate(timeout=TIMEOUT)
    bob.say(f"{ALICE}/a", "default again")
    assert condition(await bob.wait("message_error")) == "service-unavailable"

    with pytest.raises(IqError) as exc:
        await privacy.get_list("nope", timeout=TIMEOUT)
    assert exc.value.iq["error"]["condition"] == "item-not-found"

    await privacy.remove_default(timeout=TIMEOUT)
    await privacy.remove_list("public", timeout=TIMEOUT)
    bob.say(ALICE, "free")
    assert (await alice.wait("message"))["body"] == "free"
    result = await privacy.get_privacy_lists(timeout=TIMEOUT)
    assert [lst["name"] for lst in result["privacy"]["lists"]] == ["open"]
