"""XEP-0077 in-band registration and XEP-0078 legacy authentication, raw XML."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.jid import JID
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, start_server

REG = "jabber:iq:register"
AUTH = "jabber:iq:auth"


@pytest.fixture
async def open_server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(
        tmp_path / "open",
        registration={"enabled": True, "rate_per_ip": 3},
        c2s={"max_sasl_attempts": 5},
    )
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    yield srv
    await srv.stop()


async def tls_client(srv: Server) -> RawClient:
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    return c


def condition(el: object) -> tuple[str | None, str | None]:
    from roost.core.xml.element import Element

    assert isinstance(el, Element)
    error = el.find("error")
    assert error is not None, serialize(el)
    cond = next(c.tag for c in error.elements() if c.ns == ns.STANZAS and c.tag != "text")
    return cond, error.get("code")


async def test_feature_only_when_enabled(open_server: Server, server: Server) -> None:
    c = await RawClient.connect(open_server.port())
    await c.open()
    features = await c.starttls()
    assert features.find("register", "http://jabber.org/features/iq-register") is not None
    assert features.find("auth", "http://jabber.org/features/iq-auth") is not None
    await c.close()
    d = await RawClient.connect(server.port())  # the default: registration off
    await d.open()
    features = await d.starttls()
    assert features.find("register", "http://jabber.org/features/iq-register") is None
    await d.send(f"<iq type='get' id='g'><query xmlns='{REG}'/></iq>")
    assert condition(await d.next()) == ("service-unavailable", "503")  # XEP-0077 §3.1
    await d.close()


async def test_register_then_login(open_server: Server) -> None:
    c = await tls_client(open_server)
    await c.send(f"<iq type='get' id='r1'><query xmlns='{REG}'/></iq>")
    form = await c.next()
    query = form.find("query", REG)
    assert form.get("type") == "result" and query is not None
    assert query.find("username", REG) is not None and query.find("password", REG) is not None
    x = query.find("x", "jabber:x:data")
    assert x is not None and x.get("type") == "form"
    await c.send(
        f"<iq type='set' id='r2'><query xmlns='{REG}'>"
        "<username>Dave</username><password>dave-pw</password></query></iq>"
    )
    assert serialize(await c.next()) == "<iq type='result' from='localhost' id='r2'/>"
    assert (await c.auth("dave", "dave-pw")).tag == "success"  # the username was prepared
    await c.open()
    assert await c.bind("r") == "dave@localhost/r"
    await c.close()


async def test_register_with_data_form(open_server: Server) -> None:
    c = await tls_client(open_server)
    await c.send(
        f"<iq type='set' id='f1'><query xmlns='{REG}'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
        "<field var='username'><value>erin</value></field>"
        "<field var='password'><value>erin-pw</value></field></x></query></iq>"
    )
    assert (await c.next()).get("type") == "result"
    assert await open_server.accounts.exists("erin", "localhost")
    await c.close()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("<username>alice</username><password>x</password>", ("conflict", "409")),
        ("<username>bad user</username><password>x</password>", ("not-acceptable", "406")),
        ("<username>frank</username><password/>", ("not-acceptable", "406")),
        ("<username>frank</username>", ("not-acceptable", "406")),
        ("<remove/>", ("registration-required", "407")),
    ],
    ids=["existing-user", "invalid-username", "empty-password", "no-password", "remove"],
)
async def test_registration_errors(
    open_server: Server, fields: str, expected: tuple[str, str]
) -> None:
    c = await tls_client(open_server)
    await c.send(f"<iq type='set' id='e1'><query xmlns='{REG}'>{fields}</query></iq>")
    reply = await c.next()
    assert reply.get("type") == "error" and reply.get("id") == "e1"
    assert condition(reply) == expected
    await c.close()


async def test_rate_limit_and_one_per_stream(open_server: Server) -> None:
    for i in range(3):
        c = await tls_client(open_server)
        await c.send(
            f"<iq type='set' id='x'><query xmlns='{REG}'><username>u{i}</username>"
            "<password>pw</password></query></iq>"
        )
        assert (await c.next()).get("type") == "result"
        await c.send(
            f"<iq type='set' id='y'><query xmlns='{REG}'><username>v{i}</username>"
            "<password>pw</password></query></iq>"
        )
        assert condition(await c.next()) == ("not-acceptable", "406")  # one per stream
        await c.close()
    c = await tls_client(open_server)
    await c.send(
        f"<iq type='set' id='z'><query xmlns='{REG}'><username>w9</username>"
        "<password>pw</password></query></iq>"
    )
    assert condition(await c.next()) == ("not-acceptable", "406")  # 3 per hour per address
    await c.close()


async def test_registration_needs_tls(open_server: Server) -> None:
    c = await RawClient.connect(open_server.port())
    await c.open()
    await c.send(f"<iq type='get' id='r'><query xmlns='{REG}'/></iq>")
    assert await c.stream_error() == "not-authorized"  # RFC 6120 §4.3.5


async def test_change_password_and_cancel(open_server: Server) -> None:
    srv = open_server
    await srv.accounts.create("gina", "localhost", "old-pw")
    await srv.accounts.create("hank", "localhost", "hank-pw")
    g = await RawClient.connect(srv.port())
    await g.login("gina", "old-pw", "one")
    # issue 14: a password change ends the account's other sessions (reset)
    g2 = await RawClient.connect(srv.port())
    await g2.login("gina", "old-pw", "two")
    await g.send(f"<iq type='get' id='q'><query xmlns='{REG}'/></iq>")
    reg = (await g.next()).find("query", REG)
    assert reg is not None and reg.find("registered", REG) is not None
    await g.send(
        f"<iq type='set' id='p1' to='localhost'><query xmlns='{REG}'><username>gina</username>"
        "<password>new-pw</password></query></iq>"
    )
    assert (
        serialize(await g.next())
        == "<iq type='result' id='p1' to='gina@localhost/one' from='localhost'/>"
    )
    assert await g2.stream_error() == "reset"
    await g.send(
        f"<iq type='set' id='p2'><query xmlns='{REG}'>"
        "<username>gina</username><password/></query></iq>"
    )
    assert condition(await g.next()) == ("not-acceptable", "406")  # §3.3: kept as it was
    # the old password no longer works, the new one does
    c = await tls_client(srv)
    assert (await c.auth("gina", "old-pw")).tag == "failure"
    assert (await c.auth("gina", "new-pw")).tag == "success"
    await c.close()
    # hank and gina become mutual contacts, then gina cancels her account
    h = await RawClient.connect(srv.port())
    await h.login("hank", "hank-pw", "h")
    await h.send("<presence/>")
    await g.send("<presence/>")
    await g.send("<presence to='hank@localhost' type='subscribe'/>")
    await h.expect(lambda e: e.tag == "presence" and e.get("type") == "subscribe")
    await h.send("<presence to='gina@localhost' type='subscribed'/>")
    await g.expect(lambda e: e.tag == "presence" and e.get("type") == "subscribed")
    await g.send(f"<iq type='set' id='bye'><query xmlns='{REG}'><remove/></query></iq>")
    assert (await g.expect(lambda e: e.get("id") == "bye")).get("type") == "result"
    assert await g.stream_error() == "not-authorized"  # XEP-0077 §3.2
    # gina was subscribed to hank: he is told she unsubscribed (RFC 6121 §3.3)
    unsub = await h.expect(lambda e: e.tag == "presence" and e.get("type") == "unsubscribe")
    assert unsub.get("from") == "gina@localhost"
    assert not await srv.accounts.exists("gina", "localhost")
    roster = await srv.rosters.get(JID.parse("hank@localhost"))
    assert roster.items["gina@localhost"].subscription == "none"
    await h.close()


async def test_remove_must_be_alone(server: Server) -> None:
    c = await RawClient.connect(server.port())
    await c.login("alice", PASSWORDS["alice"])
    await c.send(
        f"<iq type='set' id='rm'><query xmlns='{REG}'>"
        "<remove/><username>alice</username></query></iq>"
    )
    assert condition(await c.next()) == ("bad-request", "400")
    assert await server.accounts.exists("alice", "localhost")
    await c.close()


# -- XEP-0078 ------------------------------------------------------------------------------


async def test_legacy_auth_fields_and_login(server: Server) -> None:
    c = await tls_client(server)
    await c.send(
        f"<iq type='get' id='a1'><query xmlns='{AUTH}'><username>alice</username></query></iq>"
    )
    assert serialize(await c.next()) == (
        "<iq type='result' from='localhost' id='a1'><query xmlns='jabber:iq:auth'>"
        "<username>alice</username><password/><resource/></query></iq>"
    )
    await c.send(
        f"<iq type='set' id='a2'><query xmlns='{AUTH}'><username>alice</username>"
        f"<password>{PASSWORDS['alice']}</password><resource>legacy</resource></query></iq>"
    )
    assert serialize(await c.next()) == "<iq type='result' from='localhost' id='a2'/>"
    assert server.sessions.get(JID.parse("alice@localhost/legacy")) is not None
    await c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert (await c.next()).get("type") == "result"
    await c.close()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "<username>alice</username><password>wrong</password><resource>r</resource>",
            ("not-authorized", "401"),
        ),
        (
            "<username>nobody</username><password>x</password><resource>r</resource>",
            ("not-authorized", "401"),
        ),
        ("<username>alice</username><password>x</password>", ("not-acceptable", "406")),
        (
            "<username>alice</username><digest>abc</digest><resource>r</resource>",
            ("not-acceptable", "406"),
        ),
    ],
    ids=["wrong-password", "no-such-user", "no-resource", "digest"],
)
async def test_legacy_auth_errors(server: Server, fields: str, expected: tuple[str, str]) -> None:
    c = await tls_client(server)
    await c.send(f"<iq type='set' id='e'><query xmlns='{AUTH}'>{fields}</query></iq>")
    assert condition(await c.next()) == expected
    await c.close()


async def test_legacy_auth_takes_over_a_bound_resource(server: Server) -> None:
    """The same conflict rule as SASL logins (RFC 6120 §7.7.2.2)."""
    old = await RawClient.connect(server.port())
    await old.login("alice", PASSWORDS["alice"], "same")
    c = await tls_client(server)
    await c.send(
        f"<iq type='set' id='t'><query xmlns='{AUTH}'><username>alice</username>"
        f"<password>{PASSWORDS['alice']}</password><resource>same</resource></query></iq>"
    )
    assert (await c.next()).get("type") == "result"
    assert await old.stream_error() == "conflict"
    await c.close()


async def test_legacy_auth_disabled(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, legacy_auth={"enabled": False})
    try:
        c = await tls_client(srv)
        await c.send(f"<iq type='get' id='a'><query xmlns='{AUTH}'/></iq>")
        assert await c.stream_error() == "not-authorized"  # nobody handles it before auth
    finally:
        await srv.stop()


# -- XEP-0199: the server pings silent clients -----------------------------------------------


async def test_server_pings_silent_clients(tmp_path: Path) -> None:
    srv = await start_server(tmp_path, c2s={"ping_interval": 0.5, "ping_timeout": 1})
    try:
        await srv.accounts.create("alice", "localhost", "pw")
        alive = await RawClient.connect(srv.port())
        await alive.login("alice", "pw", "alive")
        dead = await RawClient.connect(srv.port())
        await dead.login("alice", "pw", "dead")
        ping = await alive.next()
        assert ping.get("type") == "get" and ping.find("ping", ns.PING) is not None
        assert ping.get("from") == "localhost"
        await alive.send(f"<iq type='result' id='{ping.get('id')}' to='localhost'/>")
        assert await dead.stream_error() == "connection-timeout"  # never answered
        assert srv.sessions.get(JID.parse("alice@localhost/alive")) is not None
        await alive.close()
    finally:
        await srv.stop()
