"""XEP-0114 external components: the handshake, routing both ways, and every bad case.

Raw XML on the component port of a real server: exact bytes out, parsed elements in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.stream.component import handshake_digest
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import (
    PASSWORDS,
    Logins,
    RawClient,
    start_server,
    sync,
    without_stanza_ids,
)

SECRET = "a shared secret for tests"
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='{ns}' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>"
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, components={"port": 0, "secrets": {"bot.localhost": SECRET}})
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    yield srv
    await srv.stop()


async def _open(server: Server, to: str = "bot.localhost", xmlns: str = ns.COMPONENT) -> RawClient:
    c = await RawClient.connect(server.port(kind="component"))
    await c.send(HEADER.format(ns=xmlns, to=to))
    return c


async def _component(server: Server, secret: str = SECRET) -> RawClient:
    c = await _open(server)
    while c.header is None:
        await c._read()
    stream_id = c.header.attrs["id"]
    await c.send(f"<handshake>{handshake_digest(stream_id, secret)}</handshake>")
    return c


async def test_handshake(server: Server) -> None:
    """XEP-0114 §3: the header names the component; the handshake proves the secret."""
    c = await _open(server)
    while c.header is None:
        await c._read()
    assert c.header.attrs["from"] == "bot.localhost" and c.header.attrs.get("id")
    assert "version" not in c.header.attrs  # no XMPP 1.0 features on this protocol
    assert c.header.namespaces[""] == ns.COMPONENT
    digest = handshake_digest(c.header.attrs["id"], SECRET)
    await c.send(f"<handshake>{digest.upper()}</handshake>")  # hex, any case
    got = await c.next()
    assert serialize(got, ns.COMPONENT) == "<handshake/>"
    await c.close()


@pytest.mark.parametrize(
    ("case", "condition"),
    [
        ("wrong-secret", "not-authorized"),
        ("unknown-domain", "host-unknown"),
        ("client-namespace", "invalid-namespace"),
        ("stanza-before-handshake", "not-authorized"),
        ("spoofed-from", "invalid-from"),
        ("no-to", "improper-addressing"),
        ("not-a-stanza", "unsupported-stanza-type"),
        ("restricted-xml", "restricted-xml"),
    ],
)
async def test_bad_component_gets_stream_error(server: Server, case: str, condition: str) -> None:
    if case == "wrong-secret":
        c = await _component(server, "not the secret")
    elif case == "unknown-domain":
        c = await _open(server, "other.localhost")
    elif case == "client-namespace":
        c = await _open(server, xmlns=ns.CLIENT)
    elif case == "stanza-before-handshake":
        c = await _open(server)
        await c.send("<message from='bot.localhost' to='alice@localhost'/>")
    else:
        c = await _component(server)
        assert (await c.next()).tag == "handshake"
        await c.send(
            {
                "spoofed-from": "<message from='alice@localhost' to='bob@localhost'/>",
                "no-to": "<message from='x@bot.localhost'/>",
                "not-a-stanza": "<handshake>again</handshake>",
                "restricted-xml": "<!-- a comment -->",
            }[case]
        )
    assert await c.stream_error() == condition


async def test_one_component_per_domain(server: Server) -> None:
    first = await _component(server)
    assert (await first.next()).tag == "handshake"
    second = await _open(server)
    assert await second.stream_error() == "conflict"
    # the first one still works
    await first.send(
        f"<iq type='get' id='p1' from='bot.localhost' to='localhost'><ping xmlns='{ns.PING}'/></iq>"
    )
    got = await first.expect(lambda e: e.tag == "iq")
    assert got.get("type") == "result" and got.get("to") == "bot.localhost"
    await first.close()


async def test_messages_both_ways_and_server_iq(server: Server) -> None:
    comp = await _component(server)
    assert (await comp.next()).tag == "handshake"
    login = Logins(server)
    alice = await login("alice", "a")
    await alice.send(
        "<message to='echo@bot.localhost/r' id='m1' type='chat'><body>hi</body></message>"
    )
    got = await comp.expect(lambda e: e.tag == "message")
    assert serialize(got, ns.COMPONENT) == (
        "<message to='echo@bot.localhost/r' id='m1' type='chat' from='alice@localhost/a'>"
        "<body>hi</body></message>"
    )
    await comp.send(
        "<message from='echo@bot.localhost/r' to='alice@localhost/a' id='m2' type='chat'>"
        "<body>hello back</body></message>"
    )
    got = await alice.expect(lambda e: e.tag == "message")
    assert serialize(without_stanza_ids(got)) == (
        "<message from='echo@bot.localhost/r' to='alice@localhost/a' id='m2' type='chat'>"
        "<body>hello back</body></message>"
    )
    # the server answers the component's own requests (XEP-0030 here)
    await comp.send(
        "<iq type='get' id='d1' from='bot.localhost' to='localhost'>"
        f"<query xmlns='{ns.DISCO_ITEMS}'/></iq>"
    )
    got = await comp.expect(lambda e: e.tag == "iq")
    assert serialize(got, ns.COMPONENT) == (
        "<iq type='result' id='d1' to='bot.localhost' from='localhost'>"
        f"<query xmlns='{ns.DISCO_ITEMS}'><item jid='bot.localhost'/>"
        "<item jid='conference.localhost' name='Chatrooms'/></query></iq>"
    )
    await comp.close()
    await login.close()


async def test_component_offline_bounces(server: Server) -> None:
    """A stanza for a component that is not connected gets service-unavailable."""
    login = Logins(server)
    alice = await login("alice", "a")
    await alice.send("<message to='bot.localhost' id='m1'><body>anyone?</body></message>")
    got = await alice.expect(lambda e: e.tag == "message")
    assert got.get("type") == "error" and got.get("from") == "bot.localhost"
    error = got.find("error")
    assert error is not None and error.find("service-unavailable", ns.STANZAS) is not None
    # and after a component came and went, the same
    comp = await _component(server)
    assert (await comp.next()).tag == "handshake"
    await comp.close()
    await sync(alice)
    await alice.send("<iq type='get' id='q1' to='bot.localhost'><query xmlns='urn:x'/></iq>")
    got = await alice.expect(lambda e: e.tag == "iq")
    assert got.get("type") == "error"
    await login.close()
