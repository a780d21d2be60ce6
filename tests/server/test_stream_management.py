"""XEP-0198 Stream Management, raw XML: acks, resumption on a new connection with nothing
lost or duplicated, <failed/> with the last h, what happens to unacknowledged stanzas when
a session ends for good, and the limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.jid import JID
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, detached, eventually, offline, start_server

SM = "urn:xmpp:sm:3"
TIMEOUT = 10.0


async def _server(tmp_path: Path, **sm: object) -> Server:
    srv = await start_server(
        tmp_path, stream_management={"resume_timeout": 30, "ack_delay": 0.05, **sm}
    )
    for user, password in PASSWORDS.items():
        if not await srv.accounts.exists(user, "localhost"):
            await srv.accounts.create(user, "localhost", password)
    return srv


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await _server(tmp_path)
    yield srv
    await srv.stop()


async def _authenticated(server: Server, user: str = "alice") -> RawClient:
    """STARTTLS and SASL, restarted: ready to bind or resume."""
    c = await RawClient.connect(server)
    await c.open()
    await c.starttls()
    assert (await c.auth(user, PASSWORDS[user])).tag == "success"
    features = await c.open()
    assert features.find("sm", SM) is not None  # §3: offered after authentication
    return c


async def _sm_client(
    server: Server, user: str = "alice", resume: bool = True
) -> tuple[RawClient, str]:
    c = await _authenticated(server, user)
    await c.bind("phone")
    await c.send(f"<enable xmlns='{SM}'" + (" resume='true'/>" if resume else "/>"))
    enabled = await c.expect(lambda e: e.tag in ("enabled", "failed"))
    assert enabled.tag == "enabled", serialize(enabled)
    return c, enabled.get("id") or ""


def _chat(to: str, mid: str) -> str:
    return f"<message to='{to}' type='chat' id='{mid}'><body>{mid}</body></message>"


async def _messages(c: RawClient, n: int) -> list[str]:
    got = []
    while len(got) < n:
        el = await c.next()
        if el.tag == "message":
            got.append(el.get("id") or "")
    return got


async def _ack_h(c: RawClient) -> int:
    await c.send(f"<r xmlns='{SM}'/>")
    a = await c.expect(lambda e: e.tag == "a" and e.ns == SM)
    return int(a.get("h") or "-1")


async def test_enable_and_ack_counts(server: Server) -> None:
    """§4: both sides count stanzas from <enable/> on; the server asks with <r/>."""
    c, sm_id = await _sm_client(server)
    assert len(sm_id) >= 16
    await c.send("<presence/>")
    await c.expect(lambda e: e.tag == "presence")  # own presence back: one stanza to us
    request = await c.expect(lambda e: e.tag == "r")
    assert request.ns == SM
    assert await _ack_h(c) == 1  # the server handled our presence
    await c.send(f"<a xmlns='{SM}' h='1'/>")
    session = server.sessions.get(JID.parse("alice@localhost/phone"))
    assert session is not None and session.sm is not None
    assert await _ack_h(c) == 1  # <r/> and <a/> are not stanzas
    assert not session.sm.unacked and session.sm.acked == 1
    await c.close()


async def test_enable_before_bind_and_twice_fail(server: Server) -> None:
    c = await _authenticated(server)
    await c.send(f"<enable xmlns='{SM}'/>")
    failed = await c.expect(lambda e: e.tag == "failed")
    assert serialize(failed) == (
        f"<failed xmlns='{SM}'><unexpected-request xmlns='{ns.STANZAS}'/></failed>"
    )
    await c.bind("x")
    await c.send(f"<enable xmlns='{SM}'/>")
    assert (await c.expect(lambda e: e.tag in ("enabled", "failed"))).tag == "enabled"
    await c.send(f"<enable xmlns='{SM}'/>")
    assert (await c.expect(lambda e: e.tag in ("enabled", "failed"))).tag == "failed"
    await c.close()


async def test_an_ack_for_more_than_was_sent_ends_the_stream(server: Server) -> None:
    c, _ = await _sm_client(server)
    await c.send(f"<a xmlns='{SM}' h='5'/>")
    error = await c.expect(lambda e: e.tag == "error")
    assert serialize(error) == (
        "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        f"<handled-count-too-high xmlns='{SM}' h='5' send-count='0'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>you acknowledged 5 "
        "stanzas, but only 0 were sent</text></stream:error>"
    )


async def test_resumption_sends_what_was_not_acknowledged_once_and_in_order(
    server: Server,
) -> None:
    """§5: the connection dies with messages in flight; more arrive while it is gone; a
    new connection resumes and gets every message after the last acknowledged, once."""
    alice, sm_id = await _sm_client(server)
    bob = await RawClient.connect(server)
    await bob.login("bob", PASSWORDS["bob"], "b")
    for i in range(3):
        await bob.send(_chat("alice@localhost/phone", f"m{i}"))
    assert await _messages(alice, 3) == ["m0", "m1", "m2"]
    await alice.send(f"<a xmlns='{SM}' h='1'/>")  # only m0 acknowledged
    await alice.send("<presence/>")  # one stanza of ours the server handles
    await alice.expect(lambda e: e.tag == "presence")
    alice.writer.transport.abort()  # no </stream>: the connection just dies
    session = server.sessions.get(JID.parse("alice@localhost/phone"))
    assert session is not None
    await eventually(detached(server, "alice@localhost/phone"), "the server to notice")
    for i in range(3, 5):
        await bob.send(_chat("alice@localhost/phone", f"m{i}"))
    await bob.ping()  # the server has taken them (into the waiting session)
    again = await _authenticated(server)
    # the server sent m0..m2 and alice's presence back (4 stanzas); alice says she handled
    # 3, so the presence comes again, then what arrived while she was away
    await again.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='3'/>")
    resumed = await again.next()
    assert serialize(resumed) == f"<resumed xmlns='{SM}' previd='{sm_id}' h='1'/>"
    got = []
    while len(got) < 3:
        el = await again.next()
        if el.tag in ("message", "presence"):
            got.append(el.get("id") or el.tag)
    assert got == ["presence", "m3", "m4"]
    assert server.sessions.get(JID.parse("alice@localhost/phone")) is session
    assert session.stream is not None  # on the new connection
    # and it goes on working: a new message, acked
    await bob.send(_chat("alice@localhost/phone", "m5"))
    assert await _messages(again, 1) == ["m5"]
    await again.close()
    await bob.close()


async def test_resuming_an_unknown_session_fails_and_binding_still_works(server: Server) -> None:
    c = await _authenticated(server)
    await c.send(f"<resume xmlns='{SM}' previd='no-such-id' h='0'/>")
    failed = await c.next()
    assert serialize(failed) == (
        f"<failed xmlns='{SM}'><item-not-found xmlns='{ns.STANZAS}'/></failed>"
    )
    await c.bind("again")  # §5: the client may bind instead, without a new login
    await c.close()


async def test_someone_elses_session_cannot_be_resumed(server: Server) -> None:
    alice, sm_id = await _sm_client(server)
    alice.writer.transport.abort()
    bob = await _authenticated(server, "bob")
    await bob.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>")
    assert (await bob.next()).tag == "failed"
    await bob.close()


async def test_after_the_timeout_unacknowledged_messages_go_offline_and_resume_fails_with_h(
    tmp_path: Path,
) -> None:
    srv = await _server(tmp_path, resume_timeout=0.3)
    try:
        alice, sm_id = await _sm_client(srv)
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        await bob.send(_chat("alice@localhost/phone", "lost?"))
        assert await _messages(alice, 1) == ["lost?"]
        await alice.send("<presence/>")
        await alice.expect(lambda e: e.tag == "presence")
        alice.writer.transport.abort()  # it never acknowledged the message
        await eventually(offline(srv, "alice@localhost"), "the session to time out")
        await srv.idle()
        c = await _authenticated(srv)
        await c.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='1'/>")
        failed = await c.next()
        assert serialize(failed) == (
            f"<failed xmlns='{SM}' h='1'><item-not-found xmlns='{ns.STANZAS}'/></failed>"
        )
        await c.bind("laptop")
        await c.send("<presence/>")  # initial presence: offline messages come (XEP-0160)
        got = await c.expect(lambda e: e.tag == "message")
        assert got.get("id") == "lost?"
        assert got.find("delay", "urn:xmpp:delay") is not None
        await c.close()
        await bob.close()
    finally:
        await srv.stop()


async def test_a_restart_keeps_the_count_and_the_unacknowledged_messages(tmp_path: Path) -> None:
    """Acceptance 1: across a restart the <resume/> gets <failed/> with the right h, and
    the message the client never acknowledged is in offline storage."""
    srv = await _server(tmp_path)
    alice, sm_id = await _sm_client(srv)
    bob = await RawClient.connect(srv)
    await bob.login("bob", PASSWORDS["bob"], "b")
    await bob.send(_chat("alice@localhost/phone", "during"))
    assert await _messages(alice, 1) == ["during"]
    for _ in range(2):
        await alice.send("<presence/>")
    assert await _ack_h(alice) == 2
    alice.writer.transport.abort()
    await eventually(detached(srv, "alice@localhost/phone"), "the server to notice")
    await srv.stop()
    srv = await _server(tmp_path)
    try:
        c = await _authenticated(srv)
        await c.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='1'/>")
        failed = await c.next()
        assert failed.tag == "failed" and failed.get("h") == "2"
        await c.bind("phone")
        await c.send("<presence/>")
        got = await c.expect(lambda e: e.tag == "message")
        assert got.get("id") == "during"
        await c.close()
    finally:
        await srv.stop()


async def test_a_clean_close_ends_the_session_and_reroutes_what_was_not_acked(
    server: Server,
) -> None:
    """</stream> is goodbye: no waiting; the unacknowledged message goes to the account's
    other resource (RFC 6121 §8.5.2.1.1)."""
    laptop = await RawClient.connect(server)
    await laptop.login("alice", PASSWORDS["alice"], "laptop")
    await laptop.send("<presence><priority>-1</priority></presence>")
    await laptop.expect(lambda e: e.tag == "presence")
    phone, _ = await _sm_client(server)
    await phone.send("<presence/>")
    await phone.expect(lambda e: e.tag == "presence" and e.get("from") == phone.jid)
    bob = await RawClient.connect(server)
    await bob.login("bob", PASSWORDS["bob"], "b")
    await bob.send(_chat("alice@localhost/phone", "hello"))
    assert await _messages(phone, 1) == ["hello"]
    await laptop.send("<presence><priority>1</priority></presence>")
    await laptop.expect(lambda e: e.tag == "presence" and e.get("from") == laptop.jid)
    await phone.close()
    got = await laptop.expect(lambda e: e.tag == "message")
    assert got.get("id") == "hello" and got.find("delay", "urn:xmpp:delay") is not None
    await laptop.close()
    await bob.close()


async def test_too_many_unacknowledged_stanzas_end_the_stream(tmp_path: Path) -> None:
    srv = await _server(tmp_path, max_unacked=3)
    try:
        alice, _ = await _sm_client(srv, resume=False)
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        for i in range(5):
            await bob.send(_chat("alice@localhost/phone", f"m{i}"))
        assert await alice.stream_error() == "policy-violation"
        await bob.close()
    finally:
        await srv.stop()


async def test_features_follow_the_configuration(tmp_path: Path) -> None:
    """#12: the stream features and disco list exactly what is enabled."""
    srv = await start_server(
        tmp_path,
        stream_management={"enabled": False},
        modules={"disabled": ["carbons", "csi", "push"]},
    )
    try:
        await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
        c = await RawClient.connect(srv)
        await c.open()
        await c.starttls()
        assert (await c.auth("alice", PASSWORDS["alice"])).tag == "success"
        features = await c.open()
        assert features.find("sm", SM) is None
        assert features.find("csi", "urn:xmpp:csi:0") is None
        await c.bind("r")
        await c.send(f"<iq type='get' id='d' to='localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>")
        info = serialize(await c.expect(lambda e: e.get("id") == "d"))
        assert "urn:xmpp:carbons:2" not in info
        await c.send(f"<enable xmlns='{SM}'/>")  # not offered: not a stream element here
        assert await c.stream_error() == "unsupported-stanza-type"
    finally:
        await srv.stop()


async def test_a_client_that_uses_the_archive_is_not_sent_its_archived_messages_again(
    server: Server,
) -> None:
    """#12: when a session that queried MAM ends with an archived message unacknowledged,
    the message is not routed again (the client finds it in the archive)."""
    laptop = await RawClient.connect(server)
    await laptop.login("alice", PASSWORDS["alice"], "laptop")
    await laptop.send("<presence/>")
    await laptop.expect(lambda e: e.tag == "presence" and e.get("from") == laptop.jid)
    phone, _ = await _sm_client(server)
    await phone.send(
        "<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2'>"
        "<set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set></query></iq>"
    )
    await phone.expect(lambda e: e.tag == "iq" and e.get("id") == "q1")
    bob = await RawClient.connect(server)
    await bob.login("bob", PASSWORDS["bob"], "b")
    await bob.send(_chat("alice@localhost/phone", "archived"))
    assert await _messages(phone, 1) == ["archived"]
    await phone.close()
    await bob.send(_chat("alice@localhost/laptop", "barrier"))
    got = await laptop.expect(lambda e: e.tag == "message")
    assert got.get("id") == "barrier"  # nothing came before it
    await laptop.close()
    await bob.close()


async def test_a_waiting_session_that_collects_too_much_ends(tmp_path: Path) -> None:
    """max_unacked bounds a session waiting for resumption too: beyond it the session ends
    and what it held goes to offline storage (nothing lost, nothing unbounded)."""
    srv = await _server(tmp_path, max_unacked=3)
    try:
        alice, _ = await _sm_client(srv)
        alice.writer.transport.abort()
        await eventually(detached(srv, "alice@localhost/phone"), "the server to notice")
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        for i in range(5):
            await bob.send(_chat("alice@localhost/phone", f"m{i}"))
        await eventually(offline(srv, "alice@localhost"), "the session to end")
        await srv.idle()
        c = await RawClient.connect(srv)
        await c.login("alice", PASSWORDS["alice"], "laptop")
        await c.send("<presence/>")
        assert sorted(await _messages(c, 5)) == [f"m{i}" for i in range(5)]
        await c.close()
        await bob.close()
    finally:
        await srv.stop()
