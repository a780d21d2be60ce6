"""XEP-0357 Push Notifications, raw XML: a client registers an app server's push service
(here an XEP-0114 component standing in for it); messages that arrive while the account
has no connected client are published to it, with the summary form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, detached, eventually, offline, start_server
from tests.server.test_components import SECRET, _component

PUSH = "urn:xmpp:push:0"
SERVICE = "bot.localhost"  # the component: the app server's push service


async def _server(tmp_path: Path, **push: object) -> Server:
    srv = await start_server(
        tmp_path,
        components={"port": 0, "secrets": {SERVICE: SECRET}},
        stream_management={"resume_timeout": 30},
        modules={"push": dict(push)} if push else {},
    )
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    return srv


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await _server(tmp_path)
    yield srv
    await srv.stop()


async def _app_server(server: Server) -> RawClient:
    comp = await _component(server)
    assert (await comp.next()).tag == "handshake"
    return comp


async def _enable(server: Server, options: str = "") -> None:
    c = await RawClient.connect(server)
    await c.login("alice", PASSWORDS["alice"], "phone")
    await c.send(
        f"<iq type='set' id='e1'><enable xmlns='{PUSH}' jid='{SERVICE}' node='n1'>"
        f"{options}</enable></iq>"
    )
    got = await c.expect(lambda e: e.tag == "iq" and e.get("id") == "e1")
    assert got.get("type") == "result", serialize(got)
    await c.close()


async def _bob_writes(server: Server, body: str = "wake up") -> RawClient:
    bob = await RawClient.connect(server)
    await bob.login("bob", PASSWORDS["bob"], "b")
    await bob.send(
        f"<message to='alice@localhost' type='chat' id='m1'><body>{body}</body></message>"
    )
    return bob


async def _publish(app: RawClient) -> Element:
    iq = await app.expect(lambda e: e.tag == "iq" and e.get("type") == "set")
    assert iq.get("from") == "alice@localhost" and iq.get("to") == SERVICE
    return iq


async def test_a_message_to_an_offline_account_is_pushed(server: Server) -> None:
    app = await _app_server(server)
    await _enable(server)
    bob = await _bob_writes(server)
    iq = await _publish(app)
    await app.send(f"<iq type='result' id='{iq.get('id')}' from='{SERVICE}' to='alice@localhost'/>")
    body = serialize(iq.find("pubsub", "http://jabber.org/protocol/pubsub"), ns.COMPONENT)
    assert body == (
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n1'><item>"
        f"<notification xmlns='{PUSH}'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field>"
        "<field var='message-count'><value>1</value></field>"
        "<field var='last-message-sender'><value>bob@localhost/b</value></field>"
        "</x></notification></item></publish></pubsub>"
    )  # no body: it would leave for a third party (include_body is off)
    await bob.close()


async def test_the_body_and_publish_options_when_asked(tmp_path: Path) -> None:
    srv = await _server(tmp_path, include_body=True)
    try:
        app = await _app_server(srv)
        options = (
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options"
            "</value></field><field var='secret'><value>s3</value></field></x>"
        )
        await _enable(srv, options)
        bob = await _bob_writes(srv, "see you")
        iq = await _publish(app)
        text = serialize(iq, ns.COMPONENT)
        assert "<field var='last-message-body'><value>see you</value></field>" in text
        assert "<publish-options><x xmlns='jabber:x:data' type='submit'>" in text
        assert "<field var='secret'><value>s3</value></field>" in text
        await bob.close()
    finally:
        await srv.stop()


async def test_a_session_waiting_for_resumption_is_pushed_a_connected_one_is_not(
    server: Server,
) -> None:
    app = await _app_server(server)
    await _enable(server)
    alice = await RawClient.connect(server)
    await alice.login("alice", PASSWORDS["alice"], "phone")
    await alice.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    await alice.expect(lambda e: e.tag == "enabled")
    await alice.send("<presence/>")
    await alice.expect(lambda e: e.tag == "presence")
    bob = await _bob_writes(server, "while connected")
    assert (await alice.expect(lambda e: e.tag == "message")).get("id") == "m1"
    alice.writer.transport.abort()
    await eventually(detached(server, "alice@localhost/phone"), "the server to notice")
    await bob.send("<message to='alice@localhost' type='chat' id='m2'><body>gone?</body></message>")
    iq = await _publish(app)  # the first publish is for m2: m1 reached a connected client
    assert "gone?" not in serialize(iq)
    assert "bob@localhost/b" in serialize(iq)
    await bob.close()


async def test_a_refusing_service_is_disabled_and_disable_works(server: Server) -> None:
    app = await _app_server(server)
    await _enable(server)
    bob = await _bob_writes(server)
    iq = await _publish(app)
    await app.send(
        f"<iq type='error' id='{iq.get('id')}' from='{SERVICE}' to='alice@localhost'>"
        f"<error type='cancel'><item-not-found xmlns='{ns.STANZAS}'/></error></iq>"
    )
    await server.idle()
    assert await server.storage.list_data("alice", "localhost", "push") == {}
    await _enable(server)
    c = await RawClient.connect(server)
    await c.login("alice", PASSWORDS["alice"], "laptop")
    await c.send(f"<iq type='set' id='d1'><disable xmlns='{PUSH}' jid='{SERVICE}'/></iq>")
    got = await c.expect(lambda e: e.tag == "iq" and e.get("id") == "d1")
    assert got.get("type") == "result"
    assert await server.storage.list_data("alice", "localhost", "push") == {}
    await c.close()
    await bob.close()


async def test_the_account_advertises_push(server: Server) -> None:
    c = await RawClient.connect(server)
    await c.login("alice", PASSWORDS["alice"], "r")
    await c.send(
        f"<iq type='get' id='i1' to='alice@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    got = await c.expect(lambda e: e.tag == "iq" and e.get("id") == "i1")
    assert f"<feature var='{PUSH}'/>" in serialize(got)
    await c.close()


async def test_the_count_is_of_messages_since_a_client_was_last_online(server: Server) -> None:
    """XEP-0357 §6 summary: message-count counts what the account missed."""
    app = await _app_server(server)
    await _enable(server)
    bob = await _bob_writes(server, "one")
    counts = []
    for text in ("two", None):
        iq = await _publish(app)
        await app.send(
            f"<iq type='result' id='{iq.get('id')}' from='{SERVICE}' to='alice@localhost'/>"
        )
        counts.append(serialize(iq).split("message-count'><value>")[1].split("<")[0])
        if text:
            await bob.send(
                f"<message to='alice@localhost' type='chat'><body>{text}</body></message>"
            )
    assert counts == ["1", "2"]
    alice = await RawClient.connect(server)
    await alice.login("alice", PASSWORDS["alice"], "phone")
    await alice.send("<presence/>")  # online again: she sees what she missed
    await alice.expect(lambda e: e.tag == "message")
    await alice.close()
    await eventually(offline(server, "alice@localhost"), "alice's session to end")
    await bob.send("<message to='alice@localhost' type='chat'><body>three</body></message>")
    iq = await _publish(app)
    assert "message-count'><value>1<" in serialize(iq)
    await bob.close()


async def test_the_push_goes_over_the_federation(tmp_path: Path) -> None:
    """#12: the app server is on another server (here a component of b.test): the publish
    goes out over s2s from alice@a.test, and the answer comes back the same way."""
    from tests.helpers import free_port
    from tests.server.test_federation import _login, _start_pair

    pb = free_port()
    p = await _start_pair(
        tmp_path,
        {"s2s": {"routes": {d: f"127.0.0.1:{pb}" for d in ("b.test", "push.b.test")}}},
        {"components": {"port": 0, "secrets": {"push.b.test": SECRET}}},
        pb=pb,
    )
    try:
        comp = await RawClient.connect(p.b.port(kind="component"))
        await comp.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='push.b.test'>"
        )
        while comp.header is None:
            await comp._read()
        from roost.core.stream.component import handshake_digest

        digest = handshake_digest(comp.header.attrs["id"], SECRET)
        await comp.send(f"<handshake>{digest}</handshake>")
        assert (await comp.next()).tag == "handshake"
        alice = await _login(p.a, "alice", "a.test", resource="phone")
        await alice.send(
            f"<iq type='set' id='e1'><enable xmlns='{PUSH}' jid='push.b.test' node='n'/></iq>"
        )
        assert (await alice.expect(lambda e: e.get("id") == "e1")).get("type") == "result"
        await alice.close()
        bob = await _login(p.b, "bob", "b.test")
        await bob.send("<message to='alice@a.test' type='chat'><body>far away</body></message>")
        iq = await comp.expect(lambda e: e.tag == "iq" and e.get("type") == "set")
        assert iq.get("from") == "alice@a.test" and iq.get("to") == "push.b.test"
        assert "<field var='last-message-sender'><value>bob@b.test/r</value></field>" in (
            serialize(iq)
        )
        await comp.send(
            f"<iq type='result' id='{iq.get('id')}' from='push.b.test' to='alice@a.test'/>"
        )
        await bob.close()
    finally:
        await p.a.stop()
        await p.b.stop()
