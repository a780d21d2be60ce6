"""Raw-XML transcripts: bad input gets the RFC's stream or stanza error, and everyone else
goes on being served (RFC 6120 §4.9, §8.3; issue acceptance 3 and 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.jid import JID
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import STREAM_HEADER, RawClient, start_server


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[Server]:
    s = await start_server(tmp_path, c2s={"max_stanza_size": 10000})
    for user, password in PASSWORDS.items():
        await s.accounts.create(user, "localhost", password)
    yield s
    await s.stop()


class Bystanders:
    """Two logged-in clients; ``check`` proves they still talk after someone misbehaved."""

    def __init__(self, a: RawClient, b: RawClient) -> None:
        self.a, self.b = a, b
        self.n = 0

    async def check(self) -> None:
        self.n += 1
        await self.a.send(
            f"<message to='{self.b.jid}' id='by{self.n}'><body>{self.n}</body></message>"
        )
        msg = await self.b.expect(lambda e: e.tag == "message")
        assert msg.get("id") == f"by{self.n}" and msg.get("from") == self.a.jid


@pytest.fixture
async def bystanders(srv: Server) -> AsyncIterator[Bystanders]:
    a = await RawClient.connect(srv.port())
    await a.login("alice", PASSWORDS["alice"], "by")
    b = await RawClient.connect(srv.port())
    await b.login("bob", PASSWORDS["bob"], "by")
    yield Bystanders(a, b)
    await a.close()
    await b.close()


HEADER = STREAM_HEADER.format(to="localhost")


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        pytest.param("\x00\x01garbage<<<", "not-well-formed", id="garbage-first"),
        pytest.param(HEADER + "this is not xml <<", "not-well-formed", id="garbage-after-header"),
        pytest.param(
            "<!DOCTYPE stream:stream [<!ENTITY a 'b'>]>" + HEADER, "restricted-xml", id="dtd"
        ),
        pytest.param(HEADER + "<!-- hello -->", "restricted-xml", id="comment"),
        pytest.param(HEADER + "<?target data?>", "restricted-xml", id="processing-instruction"),
        pytest.param(
            HEADER + "<message to='bob@localhost'><body>&xxe;</body></message>",
            "restricted-xml",
            id="entity-reference",
        ),
        pytest.param(
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='urn:wrong:namespace'>",
            "invalid-namespace",
            id="wrong-stream-namespace",
        ),
        pytest.param(
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
            "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
            "invalid-namespace",
            id="wrong-content-namespace",
        ),
        pytest.param(
            "<?xml version='1.0'?><s:stream to='localhost' version='1.0' "
            "xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>",
            "bad-namespace-prefix",
            id="wrong-prefix",
        ),
        pytest.param(STREAM_HEADER.format(to="unknown.example"), "host-unknown", id="unknown-to"),
        pytest.param(
            "<?xml version='1.0'?><stream:stream to='localhost' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            "unsupported-version",
            id="no-version",
        ),
        pytest.param(
            HEADER + "<message to='bob@localhost'><body>hi</body></message>",
            "not-authorized",  # RFC 6120 §4.3.5: any stanza before negotiation completes
            id="stanza-before-tls",
        ),
        pytest.param(
            HEADER + "<iq type='get' id='r'><query xmlns='jabber:iq:register'/></iq>",
            "not-authorized",  # a pre-authentication iq too, while STARTTLS is required
            id="preauth-iq-before-tls",
        ),
        pytest.param(HEADER + "<!DOCTYPE x>", "restricted-xml", id="dtd-after-header"),
        pytest.param(
            HEADER + "<message to='bob@localhost'><!DOCTYPE x [<!ENTITY a 'b'>]></message>",
            "restricted-xml",
            id="dtd-in-stanza",
        ),
        pytest.param(HEADER + "<!ENTITY a 'b'>", "restricted-xml", id="entity-declaration"),
    ],
)
async def test_stream_errors(
    srv: Server, bystanders: Bystanders, data: str, condition: str
) -> None:
    c = await RawClient.connect(srv.port())
    await c.send(data)
    assert await c.stream_error() == condition
    # RFC 6120 §4.9.1.1: the server sends its own header before the error, even on failure.
    assert c.raw.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert c.raw.endswith(b"</stream:stream>")
    await bystanders.check()


async def test_stanza_before_authentication(srv: Server, bystanders: Bystanders) -> None:
    """RFC 6120 §4.9.3.12: not-authorized, and the stanza is not processed."""
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    await c.send("<message to='bob@localhost/by'><body>sneaky</body></message>")
    assert await c.stream_error() == "not-authorized"
    await bystanders.check()  # bob got only the bystander message, not "sneaky"


async def test_oversize_stanza(srv: Server, bystanders: Bystanders) -> None:
    """RFC 6120 §13.12 item 4: a stanza over the limit is a policy-violation."""
    c = await RawClient.connect(srv.port())
    await c.login("carol", PASSWORDS["carol"])
    await c.send(f"<message to='{bystanders.b.jid}'><body>{'x' * 20000}</body></message>")
    assert await c.stream_error() == "policy-violation"
    await bystanders.check()


async def test_stanza_error_after_stream_error_free_session(
    srv: Server, bystanders: Bystanders
) -> None:
    """Garbage after binding still gets not-well-formed, the session is removed."""
    c = await RawClient.connect(srv.port())
    await c.login("carol", PASSWORDS["carol"], "x")
    await c.send("<message><body>unterminated</message>")
    assert await c.stream_error() == "not-well-formed"
    assert not srv.sessions.resources(JID.parse("carol@localhost"))
    await bystanders.check()


async def test_bad_password_then_retry(srv: Server) -> None:
    """RFC 6120 §6.4.5: SASL not-authorized, and the client may try again on the same stream."""
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    failure = await c.auth("alice", "wrong-password")
    assert serialize(failure) == (
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    )
    ok = await c.auth("alice", PASSWORDS["alice"])
    assert ok.tag == "success"
    await c.open()
    assert (await c.bind("r")) == "alice@localhost/r"
    await c.close()


async def test_unknown_user_gets_not_authorized(srv: Server) -> None:
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        failure = await c.auth("nobody", "x", mech)
        assert failure.find("not-authorized", ns.SASL) is not None, mech
    await c.close()


async def test_too_many_sasl_attempts(srv: Server) -> None:
    """RFC 6120 §6.4.5: past the retry limit (3 by default), policy-violation."""
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    for _ in range(2):
        assert (await c.auth("alice", "bad")).tag == "failure"
    await c.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>AGFsaWNlAGJhZA==</auth>")
    failure = await c.next()
    assert failure.find("not-authorized", ns.SASL) is not None
    assert await c.stream_error() == "policy-violation"


@pytest.mark.parametrize(
    ("auth", "condition"),
    [
        (f"<auth xmlns='{ns.SASL}' mechanism='DIGEST-MD5'/>", "invalid-mechanism"),
        (f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>!!notbase64!!</auth>", "incorrect-encoding"),
        (f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>YWxpY2U=</auth>", "malformed-request"),
    ],
)
async def test_sasl_failures(srv: Server, auth: str, condition: str) -> None:
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    await c.send(auth)
    failure = await c.next()
    assert failure.tag == "failure" and failure.find(condition, ns.SASL) is not None
    await c.close()


async def test_sasl_abort(srv: Server) -> None:
    c = await RawClient.connect(srv.port())
    await c.open()
    await c.starttls()
    await c.send(f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-256'/>")
    challenge = await c.next()
    assert (
        serialize(challenge) == "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</challenge>"
    )
    await c.send(f"<abort xmlns='{ns.SASL}'/>")
    assert serialize(await c.next()) == (
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><aborted/></failure>"
    )
    await c.close()


async def test_iq_without_id(srv: Server, bystanders: Bystanders) -> None:
    """RFC 6120 §8.2.3: an iq needs an id; bad-request."""
    a = bystanders.a
    await a.send("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    err = await a.expect(lambda e: e.tag == "iq")
    assert serialize(err) == (
        f"<iq type='error' to='{a.jid}' from='localhost'><error type='modify' code='400'>"
        "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>"
        "iq needs an id and a type</text>"
        "</error></iq>"
    )
    await bystanders.check()


@pytest.mark.parametrize(
    "iq",
    [
        "<iq type='fetch' id='t1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='get' id='t1' to='localhost'/>",
        "<iq type='get' id='t1' to='localhost'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>",
    ],
    ids=["bad-type", "no-payload", "two-payloads"],
)
async def test_malformed_iq(srv: Server, bystanders: Bystanders, iq: str) -> None:
    a = bystanders.a
    await a.send(iq)
    err = await a.expect(lambda e: e.tag == "iq")
    assert err.get("type") == "error" and err.get("id") == "t1"
    error = err.find("error")
    assert error is not None and error.find("bad-request", ns.STANZAS) is not None
    await bystanders.check()


async def test_iq_unknown_namespace(srv: Server, bystanders: Bystanders) -> None:
    """RFC 6120 §8.4: an unhandled get/set gets service-unavailable, with the XEP-0086 code."""
    a = bystanders.a
    await a.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:unknown:ns'/></iq>")
    err = await a.expect(lambda e: e.tag == "iq")
    assert serialize(err) == (
        f"<iq type='error' id='u1' to='{a.jid}' from='localhost'><error type='cancel' code='503'>"
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    # to the user's own account (no 'to'): answered on its behalf, same error
    await a.send("<iq type='set' id='u2'><query xmlns='urn:unknown:ns'/></iq>")
    err = await a.expect(lambda e: e.tag == "iq")
    assert err.get("id") == "u2" and err.get("type") == "error"
    await bystanders.check()


async def test_ping_server(bystanders: Bystanders) -> None:
    a = bystanders.a
    await a.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = await a.expect(lambda e: e.tag == "iq")
    assert serialize(reply) == f"<iq type='result' id='p1' to='{a.jid}' from='localhost'/>"


async def test_forged_from_is_overwritten(bystanders: Bystanders) -> None:
    """RFC 6120 §8.1.2.1: the server stamps the sender's full JID (acceptance 4)."""
    a, b = bystanders.a, bystanders.b
    await a.send(
        f"<message from='carol@localhost/evil' to='{b.jid}' id='f1'><body>me</body></message>"
    )
    msg = await b.expect(lambda e: e.tag == "message")
    assert msg.get("from") == a.jid
    await a.send(f"<message from='localhost' to='{b.jid}' id='f2'><body>me</body></message>")
    msg = await b.expect(lambda e: e.tag == "message")
    assert msg.get("from") == a.jid


async def test_bad_to_jid(bystanders: Bystanders) -> None:
    a = bystanders.a
    await a.send("<message to='a@b@c d' id='j1'><body>x</body></message>")
    err = await a.expect(lambda e: e.tag == "message")
    error = err.find("error")
    assert err.get("type") == "error" and error is not None
    assert error.find("jid-malformed", ns.STANZAS) is not None and error.get("code") == "400"


async def test_message_to_unknown_user_and_remote_domain(bystanders: Bystanders) -> None:
    a = bystanders.a
    await a.send("<message to='nobody@localhost' id='n1' type='chat'><body>x</body></message>")
    err = await a.expect(lambda e: e.tag == "message")
    assert serialize(err) == (
        f"<message type='error' id='n1' to='{a.jid}' from='nobody@localhost'>"
        "<error type='cancel' code='503'>"
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    )
    await a.send("<message to='x@remote.example' id='n2'><body>x</body></message>")
    err = await a.expect(lambda e: e.tag == "message")
    error = err.find("error")
    assert error is not None and error.find("remote-server-not-found", ns.STANZAS) is not None


async def test_unknown_top_level_element(srv: Server, bystanders: Bystanders) -> None:
    c = await RawClient.connect(srv.port())
    await c.login("carol", PASSWORDS["carol"])
    await c.send("<foo xmlns='urn:example:foo'/>")
    assert await c.stream_error() == "unsupported-stanza-type"
    await bystanders.check()
