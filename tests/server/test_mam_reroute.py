"""Each message is archived once per archive, however often it is routed (issue 12).

A message the server already delivered and archived comes back to the router when the
XEP-0198 session it went to ends unacknowledged (re-routed to another resource, RFC 6121
§8.5.2.1.1, or stored offline), and an offline message comes back when it is replayed at
the next login (XEP-0160). It then carries the recipient archive's own XEP-0359
``<stanza-id by='user@domain'/>``; it must keep it, and neither archive may get a second
copy with a new id. Counted here with XEP-0313 queries (``<count/>`` of XEP-0059 §2.6) and
the ``<stanza-id/>`` each delivery carries.
"""

from __future__ import annotations

from pathlib import Path

from roost.core.jid import JID
from roost.core.mam import SID
from roost.core.xml.element import Element
from roost.server.app import Server
from tests.helpers import (
    PASSWORDS,
    RawClient,
    detached,
    drain,
    eventually,
    offline,
    start_server,
    sync,
)
from tests.server.mam_helpers import fin, ids_of, mam

SM = "urn:xmpp:sm:3"


async def _server(tmp_path: Path, resume_timeout: float = 30) -> Server:
    srv = await start_server(
        tmp_path, stream_management={"resume_timeout": resume_timeout, "ack_delay": 0.05}
    )
    for user, password in PASSWORDS.items():
        if not await srv.accounts.exists(user, "localhost"):
            await srv.accounts.create(user, "localhost", password)
    return srv


async def _sm_phone(server: Server) -> tuple[RawClient, str]:
    """alice/phone with XEP-0198 resumption enabled, available."""
    c = await RawClient.connect(server)
    await c.login("alice", PASSWORDS["alice"], "phone")
    await c.send(f"<enable xmlns='{SM}' resume='true'/>")
    enabled = await c.expect(lambda e: e.tag == "enabled")
    await c.send("<presence/>")
    await c.expect(lambda e: e.tag == "presence" and e.get("from") == c.jid)
    return c, enabled.get("id") or ""


def _own_ids(msg: Element, by: str) -> list[str | None]:
    return [s.get("id") for s in msg.find_all("stanza-id", SID) if s.get("by") == by]


async def _archived(c: RawClient, peer: str) -> list[str]:
    """The archive ids of ``c``'s account's messages with ``peer``; checks the count."""
    await drain(c)  # presence and the like, before the query's results
    results, iq = await mam(c, {"with": peer})
    complete, _, _, count = fin(iq)
    assert complete and count == len(results)
    return ids_of(results)


async def _send(bob: RawClient, to: str, mid: str) -> None:
    await bob.send(f"<message to='{to}' type='chat' id='{mid}'><body>{mid}</body></message>")


async def test_a_message_rerouted_to_another_resource_is_archived_once(
    tmp_path: Path,
) -> None:
    """(a) The phone's session ends with the message unacknowledged; the laptop gets it,
    with the stanza-id the phone got, and each archive holds it once."""
    srv = await _server(tmp_path)
    try:
        phone, _ = await _sm_phone(srv)
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        await _send(bob, "alice@localhost/phone", "hello")
        first = await phone.expect(lambda e: e.tag == "message")
        [stanza_id] = _own_ids(first, "alice@localhost")
        laptop = await RawClient.connect(srv)
        await laptop.login("alice", PASSWORDS["alice"], "laptop")
        await laptop.send("<presence/>")
        await laptop.expect(lambda e: e.tag == "presence" and e.get("from") == laptop.jid)
        await phone.close()  # goodbye without an ack: the session ends, nothing waits
        again = await laptop.expect(lambda e: e.tag == "message" and e.get("id") == "hello")
        assert again.find("delay", "urn:xmpp:delay") is not None
        assert _own_ids(again, "alice@localhost") == [stanza_id]
        assert await _archived(laptop, "bob@localhost") == [stanza_id]
        assert len(await _archived(bob, "alice@localhost")) == 1
        await laptop.close()
        await bob.close()
    finally:
        await srv.stop()


async def test_a_message_that_went_offline_from_a_dead_session_is_archived_once(
    tmp_path: Path,
) -> None:
    """(b) No other resource: the resumption times out, the message goes to offline
    storage and comes at the next login; still one entry in each archive."""
    srv = await _server(tmp_path, resume_timeout=0.3)
    try:
        phone, _ = await _sm_phone(srv)
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        await _send(bob, "alice@localhost/phone", "lost?")
        first = await phone.expect(lambda e: e.tag == "message")
        [stanza_id] = _own_ids(first, "alice@localhost")
        phone.writer.transport.abort()  # it never acknowledged the message
        await eventually(offline(srv, "alice@localhost"), "the session to time out")
        await srv.idle()
        # bob also writes to alice while she is away: stored offline, archived then
        await _send(bob, "alice@localhost", "while away")
        await sync(bob)
        laptop = await RawClient.connect(srv)
        await laptop.login("alice", PASSWORDS["alice"], "laptop")
        await laptop.send("<presence/>")  # XEP-0160: the offline messages come
        replayed = {}
        while len(replayed) < 2:
            el = await laptop.expect(lambda e: e.tag == "message")
            replayed[el.get("id")] = _own_ids(el, "alice@localhost")
        assert replayed["lost?"] == [stanza_id]
        archived = await _archived(laptop, "bob@localhost")
        assert archived == [stanza_id, *replayed["while away"]]
        assert len(await _archived(bob, "alice@localhost")) == 2
        await laptop.close()
        await bob.close()
    finally:
        await srv.stop()


async def test_unacknowledged_messages_across_a_restart_are_archived_once(
    tmp_path: Path,
) -> None:
    """(c) The server stops while the phone's session waits for a resumption: the message
    goes to offline storage (the other resources are going too), and after the restart it
    is replayed, and re-routed when the resource it was replayed to is gone, without a
    second copy in either archive."""
    srv = await _server(tmp_path)
    phone, sm_id = await _sm_phone(srv)
    bob = await RawClient.connect(srv)
    await bob.login("bob", PASSWORDS["bob"], "b")
    await _send(bob, "alice@localhost/phone", "during")
    first = await phone.expect(lambda e: e.tag == "message")
    [stanza_id] = _own_ids(first, "alice@localhost")
    phone.writer.transport.abort()
    await eventually(detached(srv, "alice@localhost/phone"), "the server to notice")
    await srv.stop()
    srv = await _server(tmp_path)
    try:
        c = await RawClient.connect(srv)
        await c.open()
        await c.starttls()
        assert (await c.auth("alice", PASSWORDS["alice"])).tag == "success"
        await c.open()
        await c.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>")
        assert (await c.next()).tag == "failed"
        await c.bind("phone")
        await c.send(f"<enable xmlns='{SM}'/>")
        await c.expect(lambda e: e.tag == "enabled")
        await c.send("<presence/>")
        got = await c.expect(lambda e: e.tag == "message")
        assert got.get("id") == "during" and _own_ids(got, "alice@localhost") == [stanza_id]
        # replayed to a session that ends unacknowledged: to another resource again
        laptop = await RawClient.connect(srv)
        await laptop.login("alice", PASSWORDS["alice"], "laptop")
        await laptop.send("<presence/>")
        await laptop.expect(lambda e: e.tag == "presence" and e.get("from") == laptop.jid)
        await c.close()
        again = await laptop.expect(lambda e: e.tag == "message" and e.get("id") == "during")
        assert _own_ids(again, "alice@localhost") == [stanza_id]
        assert await _archived(laptop, "bob@localhost") == [stanza_id]
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        assert len(await _archived(bob, "alice@localhost")) == 1
        await laptop.close()
        await bob.close()
    finally:
        await srv.stop()


async def test_a_forged_stanza_id_is_still_replaced(tmp_path: Path) -> None:
    """XEP-0359 §5: what a sender claims is the recipient archive's id is stripped, and
    the message archived with a real one, also on its way to offline storage."""
    srv = await _server(tmp_path)
    try:
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        forged = f"<stanza-id xmlns='{SID}' by='alice@localhost' id='1'/>"
        await bob.send(
            f"<message to='alice@localhost' type='chat' id='f'><body>f</body>{forged}</message>"
        )
        await sync(bob)
        alice = await RawClient.connect(srv)
        await alice.login("alice", PASSWORDS["alice"], "a")
        await alice.send("<presence/>")
        got = await alice.expect(lambda e: e.tag == "message")
        [stanza_id] = _own_ids(got, "alice@localhost")
        assert stanza_id != "1"
        assert await _archived(alice, "bob@localhost") == [stanza_id]
        assert srv.sessions.resources(JID.parse("alice@localhost"))
        await alice.close()
        await bob.close()
    finally:
        await srv.stop()
