"""The API against a real server: messages, requests and errors, roster, subscriptions,
disco, ping, version, blocking, password change, registration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from roost.client import (
    JID,
    AuthenticationFailed,
    Client,
    Element,
    Iq,
    Message,
    Presence,
    RequestTimeout,
    RosterChanged,
    StanzaError,
    StanzaErrorCondition,
)
from roost.core import ns
from roost.server.app import Server
from tests.client.conftest import MakeClient, server_cafile
from tests.helpers import RawClient, start_server

T = 5.0


async def test_message_round_trip(make_client: MakeClient) -> None:
    alice = make_client("alice", resource="a")
    bob = make_client("bob", resource="b")
    await alice.connect()
    await bob.connect()
    seen: list[Message] = []
    bob.on(Message, seen.append)
    with bob.messages() as inbox:
        alice.send_message("bob@localhost/b", "hello")
        msg = await inbox.next(T)
    assert msg.body == "hello" and msg.type == "chat"
    assert msg.from_ == JID.parse("alice@localhost/a")
    assert seen == [msg]
    with alice.messages() as inbox:
        bob.send_message(msg.from_, "hi back")
        assert (await inbox.next(T)).body == "hi back"


async def test_async_for_ends_at_disconnect(make_client: MakeClient) -> None:
    alice = make_client("alice")
    await alice.connect()
    stream = alice.events()
    await alice.disconnect()
    got = [ev async for ev in stream]
    assert all(not isinstance(ev, Message) for ev in got)


async def test_errors_are_typed(make_client: MakeClient) -> None:
    alice = make_client("alice")
    await alice.connect()
    with pytest.raises(StanzaError) as info:
        await alice.request(Element("query", "urn:example:nothing"), to="bob@localhost/nobody")
    assert info.value.condition is StanzaErrorCondition.SERVICE_UNAVAILABLE
    # a client answers what it does not know with service-unavailable (RFC 6120 §8.4)
    # (iq requests to a full JID need presence shared: another resource of the account)
    bob = make_client("alice", resource="b")
    await bob.connect()
    with pytest.raises(StanzaError) as info:
        await alice.request(Element("query", "urn:example:nothing"), to=bob.jid)
    assert info.value.condition is StanzaErrorCondition.SERVICE_UNAVAILABLE
    assert info.value.code == 503  # XEP-0086 legacy code understood


async def test_request_timeout(server: Server, make_client: MakeClient) -> None:
    silent = await RawClient.connect(server)
    await silent.login("alice", "alice-secret", "silent")  # never answers
    alice = make_client("alice")
    await alice.connect()
    with pytest.raises(RequestTimeout):
        await alice.request(Element("ping", ns.PING), to="alice@localhost/silent", timeout=0.3)
    await silent.close()


async def test_own_iq_handlers(make_client: MakeClient) -> None:
    alice = make_client("alice", resource="a")
    bob = make_client("alice", resource="b")

    async def echo(iq: Iq) -> Element:
        if iq.payload.get("bad"):
            raise StanzaError(StanzaErrorCondition.NOT_ACCEPTABLE, "no thanks")
        return Element("echo", "urn:example:echo", {"from": str(iq.from_)})

    bob.handle_iq("get", "urn:example:echo", "echo", echo)
    await alice.connect()
    await bob.connect()
    result = await alice.request(Element("echo", "urn:example:echo"), to=bob.jid)
    assert result is not None and result.get("from") == "alice@localhost/a"
    with pytest.raises(StanzaError) as info:
        await alice.request(Element("echo", "urn:example:echo", {"bad": "1"}), to=bob.jid)
    assert info.value.condition is StanzaErrorCondition.NOT_ACCEPTABLE
    assert info.value.text == "no thanks"
    info_bob = await alice.disco.info(bob.jid)
    assert "urn:example:echo" in info_bob.features


async def test_roster_add_and_remove_with_pushes(make_client: MakeClient) -> None:
    alice = make_client("alice", resource="a")
    other = make_client("alice", resource="other")
    await alice.connect()
    await other.connect()
    assert len(alice.roster) == 0 and alice.roster.fetched
    with other.events(RosterChanged) as changes:
        await alice.roster.add("bob@localhost", name="Bob", groups=["Friends"])
        change = await changes.next(T)
        assert isinstance(change, RosterChanged)
        assert change.item.jid == JID.parse("bob@localhost") and not change.removed
    for c in (alice, other):  # the push reached both resources' copies
        item = c.roster.get("bob@localhost")
        assert item is not None and item.name == "Bob" and item.groups == {"Friends"}
        assert item.subscription == "none"
    with other.events(RosterChanged) as changes:
        await alice.roster.remove("bob@localhost")
        change = await changes.next(T)
        assert isinstance(change, RosterChanged) and change.removed
    assert "bob@localhost" not in [str(i.jid) for i in alice.roster]
    assert other.roster.get("bob@localhost") is None


async def test_subscription_handshake(make_client: MakeClient) -> None:
    alice = make_client("alice", resource="a")
    bob = make_client("bob", resource="b")
    await alice.connect()
    await bob.connect()
    with bob.events(Presence) as bob_in, alice.events(Presence) as alice_in:
        alice.roster.subscribe("bob@localhost")
        request = await _presence(bob_in, "subscribe")
        assert request.from_ == JID.parse("alice@localhost")
        bob.roster.approve(request.from_)
        await _presence(alice_in, "subscribed")
        # RFC 6121 §3.1.6: bob's available presence follows the approval
        await _presence(alice_in, None, JID.parse("bob@localhost/b"))
        bob.roster.subscribe("alice@localhost")
        request = await _presence(alice_in, "subscribe")
        alice.roster.approve("bob@localhost")
        await _presence(bob_in, "subscribed")
    await alice.ping()  # the pushes arrive before the answer to a later request
    await bob.ping()
    a_item, b_item = alice.roster.get("bob@localhost"), bob.roster.get("alice@localhost")
    assert a_item is not None and a_item.subscription == "both"
    assert b_item is not None and b_item.subscription == "both"


async def _presence(stream: object, type: str | None, frm: JID | None = None) -> Presence:
    from roost.client import EventStream

    assert isinstance(stream, EventStream)
    while True:
        ev = await stream.next(T)
        if isinstance(ev, Presence) and ev.type == type and (frm is None or ev.from_ == frm):
            return ev


async def test_disco_with_cache(make_client: MakeClient) -> None:
    alice = make_client("alice")
    await alice.connect()
    info = await alice.disco.info()
    assert info.has(ns.ROSTER) or info.has("urn:xmpp:ping")
    assert any(i.category == "server" for i in info.identities)
    assert await alice.disco.info() is info  # cached
    assert await alice.disco.info(cached=False) is not info
    items = await alice.disco.items()
    assert isinstance(items, list)
    assert await alice.disco.items() == items  # cached (a copy)


async def test_ping_and_version(make_client: MakeClient) -> None:
    alice = make_client("alice")
    bob = make_client("alice", resource="b", name="Bob's bot")
    await alice.connect()
    await bob.connect()
    assert await alice.ping() >= 0
    assert await alice.ping(bob.jid) >= 0
    server_version = await alice.software_version()
    assert server_version.name == "Roost"
    bob_version = await alice.software_version(bob.jid)
    assert bob_version.name == "Bob's bot"


async def test_blocking(make_client: MakeClient) -> None:
    alice = make_client("alice", resource="a")
    await alice.connect()
    assert await alice.blocklist.fetch() == set()
    await alice.blocklist.block("carol@localhost")
    await alice.ping()  # the push comes before the answer to a later request
    assert JID.parse("carol@localhost") in alice.blocklist
    assert await alice.blocklist.fetch() == {JID.parse("carol@localhost")}
    await alice.blocklist.unblock("carol@localhost")
    await alice.ping()
    assert alice.blocklist.jids == set()


async def test_password_change(make_client: MakeClient) -> None:
    alice = make_client("alice")
    await alice.connect()
    await alice.change_password("new-secret")
    await alice.disconnect()
    await alice.connect()  # the client remembers the new password
    old = make_client("alice", reconnect=False)
    with pytest.raises(AuthenticationFailed):
        await old.connect()
    new = make_client("alice", password="new-secret")
    await new.connect()


async def test_registration(tmp_path: Path) -> None:
    server = await start_server(tmp_path, registration={"enabled": True})
    try:
        opts = {"server": ("127.0.0.1", server.port()), "cafile": server_cafile(server)}
        dave = Client("dave@localhost", "dave-pw", register=True, **opts)  # type: ignore[arg-type]
        await dave.connect()
        assert dave.registered is True
        await dave.disconnect()
        again = Client("dave@localhost", "dave-pw", register=True, **opts)  # type: ignore[arg-type]
        await again.connect()
        assert again.registered is False  # it existed: logged in all the same
        await again.unregister()
        await again.disconnect()
        gone = Client("dave@localhost", "dave-pw", reconnect=False, **opts)  # type: ignore[arg-type]
        with pytest.raises(AuthenticationFailed):
            await gone.connect()
    finally:
        await server.stop()


async def test_not_connected_raises(make_client: MakeClient) -> None:
    from roost.client import Disconnected

    alice = make_client("alice")
    with pytest.raises(Disconnected):
        alice.send_message("bob@localhost", "x")


async def test_preapproval_and_denial(server: Server, make_client: MakeClient) -> None:
    alice = make_client("alice", resource="a")
    bob = make_client("bob", resource="b")
    carol = make_client("carol", resource="c")
    for c in (alice, bob, carol):
        await c.connect()
    to_alice: list[Presence] = []
    alice.on(Presence, to_alice.append)
    with bob.events(Presence) as bob_in:
        alice.roster.preapprove("bob@localhost")  # RFC 6121 §3.4: before any request
        await alice.ping()
        bob.roster.subscribe("alice@localhost")
        await _presence(bob_in, "subscribed")  # approved by the server at once
    await server.idle()
    await alice.ping()  # whatever the server sent alice meanwhile has arrived
    assert not [p for p in to_alice if p.type == "subscribe"]  # §3.4: not asked
    with carol.events(Presence) as carol_in, alice.events(Presence) as alice_in:
        carol.roster.subscribe("alice@localhost")
        request = await _presence(alice_in, "subscribe")
        assert request.from_ == JID.parse("carol@localhost")
        alice.roster.deny(request.from_)
        await _presence(carol_in, "unsubscribed")
    await carol.ping()
    item = carol.roster.get("alice@localhost")
    assert item is not None and item.subscription == "none" and not item.ask


async def test_a_legacy_error_code_is_understood(server: Server, make_client: MakeClient) -> None:
    """XEP-0086 §3: an old entity's error with only a 'code' still gets its condition."""
    old = await RawClient.connect(server)
    await old.login("alice", "alice-secret", "old")
    alice = make_client("alice", resource="a")
    await alice.connect()
    pending = asyncio.ensure_future(
        alice.request(Element("query", "urn:example:x"), to="alice@localhost/old")
    )
    request = await old.expect(lambda e: e.tag == "iq" and e.get("type") == "get")
    await old.send(
        f"<iq type='error' id='{request.get('id')}' to='alice@localhost/a'>"
        "<error code='404' type='cancel'/></iq>"
    )
    with pytest.raises(StanzaError) as info:
        await asyncio.wait_for(pending, T)
    assert info.value.condition is StanzaErrorCondition.ITEM_NOT_FOUND
    assert info.value.code == 404
    await old.close()
