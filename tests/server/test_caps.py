"""XEP-0115 on the wire: the server's caps in stream features, its caps node, and the cache
of clients' caps it fills by asking them (and checking the answer, §5.4)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from roost.core import ns
from roost.core.caps import CAPS, Caps, caps_hash
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.modules.caps import NODE, CapsModule
from roost.server.router import Router
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, drain

# XEP-0115 §5.2: Exodus's disco#info and its 'ver'.
EXODUS_NODE = "http://code.google.com/p/exodus"
EXODUS_VER = "QgayPKawpkPSDYmwT/WM94uAlu0="
EXODUS_INFO = (
    "<identity category='client' name='Exodus 0.9.1' type='pc'/>"
    "<feature var='http://jabber.org/protocol/caps'/>"
    "<feature var='http://jabber.org/protocol/disco#info'/>"
    "<feature var='http://jabber.org/protocol/disco#items'/>"
    "<feature var='http://jabber.org/protocol/muc'/>"
)
LIE_INFO = "<identity category='client' type='pc'/><feature var='urn:xmpp:ping'/>"
_ids = itertools.count()

Connect = Callable[..., Awaitable[tuple[RawClient, Element]]]


def caps_module(server: Server) -> CapsModule:
    return server.module(CapsModule)


def presence_with_caps(ver: str = EXODUS_VER, node: str = EXODUS_NODE, algo: str = "sha-1") -> str:
    hash_attr = f" hash='{algo}'" if algo else ""
    return f"<presence><c xmlns='{CAPS}'{hash_attr} node='{node}' ver='{ver}'/></presence>"


@pytest.fixture
async def connect(server: Server) -> AsyncIterator[Connect]:
    """Log in ``user/resource``; return the client and its post-authentication features."""
    made: list[RawClient] = []

    async def make(user: str, resource: str) -> tuple[RawClient, Element]:
        c = await RawClient.connect(server)
        made.append(c)
        await c.open()
        await c.starttls()
        assert (await c.auth(user, PASSWORDS[user])).tag == "success"
        features = await c.open()
        await c.bind(resource)
        return c, features

    yield make
    for c in made:
        if not c.writer.is_closing():
            await c.close()


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every iq the server sends with ``Router.request``: (to, disco node)."""
    seen: list[tuple[str, str]] = []
    original = Router.request

    async def spy(self: Router, iq: Element, to: JID, timeout: float = 30.0) -> Element:
        q = iq.find("query", ns.DISCO_INFO)
        seen.append((str(to), q.get("node") or "" if q is not None else ""))
        return await original(self, iq, to, timeout)

    monkeypatch.setattr(Router, "request", spy)
    return seen


async def query_server(c: RawClient, node: str | None = None) -> Element:
    """disco#info to the server (on ``node``); the reply iq."""
    iq_id = f"d{next(_ids)}"
    node_attr = f" node='{node}'" if node else ""
    await c.send(
        f"<iq type='get' id='{iq_id}' to='localhost'>"
        f"<query xmlns='{ns.DISCO_INFO}'{node_attr}/></iq>"
    )
    return await c.expect(lambda e: e.tag == "iq" and e.get("id") == iq_id)


async def caps_query(c: RawClient, node: str) -> Element:
    """Wait for the server's disco#info request on ``node`` (XEP-0115 §6.2)."""
    iq = await c.expect(lambda e: e.tag == "iq" and e.get("type") == "get")
    q = iq.find("query", ns.DISCO_INFO)
    assert q is not None, serialize(iq)
    assert q.get("node") == node
    assert iq.get("from") == "localhost"
    assert iq.get("to") == c.jid  # the exact full JID
    return iq


async def answer(c: RawClient, iq: Element, info: str) -> None:
    node = iq.find("query", ns.DISCO_INFO).get("node")  # type: ignore[union-attr]
    await c.send(
        f"<iq type='result' id='{iq.get('id')}' to='localhost'>"
        f"<query xmlns='{ns.DISCO_INFO}' node='{node}'>{info}</query></iq>"
    )


# -- the server's own caps ---------------------------------------------------------------------


async def test_stream_feature_ver_matches_disco_info(server: Server, connect: Connect) -> None:
    """Acceptance: the ver advertised in stream features equals the hash recomputed from the
    server's disco#info, as fetched over the wire (§6.2)."""
    c, features = await connect("alice", "caps")
    c_el = features.find("c", CAPS)
    assert c_el is not None, serialize(features)
    assert c_el.get("hash") == "sha-1"
    assert c_el.get("node") == NODE == "https://roost.im"
    reply = await query_server(c)
    assert reply.get("type") == "result"
    info = reply.find("query", ns.DISCO_INFO)
    assert info is not None
    assert c_el.get("ver") == caps_hash(info)
    # §7: the server says it supports caps
    assert CAPS in {f.get("var") for f in info.find_all("feature", ns.DISCO_INFO)}


async def test_caps_not_offered_before_authentication(server: Server) -> None:
    c = await RawClient.connect(server.port())
    try:
        assert (await c.open()).find("c", CAPS) is None
        assert (await c.starttls()).find("c", CAPS) is None
    finally:
        await c.close()


async def test_caps_node_answers_with_the_same_info(server: Server, connect: Connect) -> None:
    c, features = await connect("alice", "caps")
    ver = features.find("c", CAPS).get("ver")  # type: ignore[union-attr]
    assert ver is not None
    reply = await query_server(c, f"{NODE}#{ver}")
    assert reply.get("type") == "result", serialize(reply)
    info = reply.find("query", ns.DISCO_INFO)
    assert info is not None
    assert info.get("node") == f"{NODE}#{ver}"
    assert caps_hash(info) == ver
    plain = (await query_server(c)).find("query", ns.DISCO_INFO)
    assert plain is not None
    assert info.children == plain.children

    reply = await query_server(c, f"{NODE}#not-the-ver=")
    assert reply.get("type") == "error"
    error = reply.find("error", ns.CLIENT)
    assert error is not None and error.find("item-not-found", ns.STANZAS) is not None


async def test_ver_follows_registrations(server: Server, connect: Connect) -> None:
    """A module loaded later changes disco#info: the new ver hashes it, the old node is gone."""
    _, features = await connect("alice", "one")
    old = features.find("c", CAPS).get("ver")  # type: ignore[union-attr]
    server.registry.disco_features["urn:example:late"] = "test"
    try:
        c2, features2 = await connect("alice", "two")
        new = features2.find("c", CAPS).get("ver")  # type: ignore[union-attr]
        assert new != old
        info = (await query_server(c2)).find("query", ns.DISCO_INFO)
        assert info is not None and caps_hash(info) == new
        assert (await query_server(c2, f"{NODE}#{new}")).get("type") == "result"
        assert (await query_server(c2, f"{NODE}#{old}")).get("type") == "error"
    finally:
        del server.registry.disco_features["urn:example:late"]


# -- clients' caps -----------------------------------------------------------------------------


async def test_client_caps_are_queried_verified_and_cached(
    server: Server, connect: Connect
) -> None:
    module = caps_module(server)
    c, _ = await connect("alice", "exodus")
    jid = JID.parse(c.jid or "")
    await c.send(presence_with_caps())
    # the presence itself is handled as usual: it comes back to the sender (RFC 6121 §4.2.2)
    echo = await c.expect(lambda e: e.tag == "presence")
    assert Caps.find_in(echo) == Caps(EXODUS_NODE, EXODUS_VER, "sha-1")
    iq = await caps_query(c, f"{EXODUS_NODE}#{EXODUS_VER}")
    assert module.caps_of(jid) == Caps(EXODUS_NODE, EXODUS_VER, "sha-1")
    assert module.info_of(jid) is None  # not verified yet
    await answer(c, iq, EXODUS_INFO)
    info = await module.resolve(jid)
    assert info is not None
    assert caps_hash(info) == EXODUS_VER
    assert module.cache.get(EXODUS_VER) is info
    assert EXODUS_VER in module.cache
    assert module.info_of(jid) is info
    session = server.sessions.get(jid)
    assert session is not None and session.available

    # known now: the same ver again costs no query
    await c.send(presence_with_caps())
    assert [e for e in await drain(c) if e.tag == "iq"] == []

    # unavailable, then a closed session, forget the resource's caps (not the cache)
    await c.send("<presence type='unavailable'/>")
    await drain(c)
    assert module.caps_of(jid) is None
    assert EXODUS_VER in module.cache


async def test_lying_client_is_not_cached(
    server: Server, connect: Connect, requests: list[tuple[str, str]]
) -> None:
    module = caps_module(server)
    c, _ = await connect("carol", "liar")
    jid = JID.parse(c.jid or "")
    await c.send(presence_with_caps())
    iq = await caps_query(c, f"{EXODUS_NODE}#{EXODUS_VER}")
    await answer(c, iq, LIE_INFO)
    assert await module.resolve(jid) is None
    assert EXODUS_VER not in module.cache
    assert module.info_of(jid) is None
    # §5.4 3.9: the liar is not asked again at each presence
    await c.send(presence_with_caps())
    assert [e for e in await drain(c) if e.tag == "iq"] == []
    assert len(requests) == 1


@pytest.mark.parametrize(
    "info",
    [
        EXODUS_INFO + "<feature var='http://jabber.org/protocol/muc'/>",  # duplicate feature
        EXODUS_INFO + "<identity category='client' name='Exodus 0.9.1' type='pc'/>",
    ],
    ids=["duplicate-feature", "duplicate-identity"],
)
async def test_ill_formed_answer_is_not_cached(server: Server, connect: Connect, info: str) -> None:
    """§5.4 3.3, 3.4: duplicates make the whole response ill-formed, whatever it hashes to."""
    module = caps_module(server)
    c, _ = await connect("alice", "dup")
    await c.send(presence_with_caps())
    iq = await caps_query(c, f"{EXODUS_NODE}#{EXODUS_VER}")
    await answer(c, iq, info)
    assert await module.resolve(JID.parse(c.jid or "")) is None
    assert EXODUS_VER not in module.cache


async def test_error_reply_is_not_cached(server: Server, connect: Connect) -> None:
    module = caps_module(server)
    c, _ = await connect("alice", "err")
    await c.send(presence_with_caps())
    iq = await caps_query(c, f"{EXODUS_NODE}#{EXODUS_VER}")
    await c.send(
        f"<iq type='error' id='{iq.get('id')}' to='localhost'><error type='cancel'>"
        f"<item-not-found xmlns='{ns.STANZAS}'/></error></iq>"
    )
    assert await module.resolve(JID.parse(c.jid or "")) is None
    assert EXODUS_VER not in module.cache


async def test_one_query_per_ver_at_a_time(
    server: Server, connect: Connect, requests: list[tuple[str, str]]
) -> None:
    module = caps_module(server)
    a, _ = await connect("alice", "first")
    b, _ = await connect("bob", "second")
    await a.send(presence_with_caps())
    iq = await caps_query(a, f"{EXODUS_NODE}#{EXODUS_VER}")
    await b.send(presence_with_caps())  # while alice's answer is outstanding
    # idle=False: the server waits for alice's answer on purpose (a query to b would be
    # written at its task's first step, before the barrier's second pong)
    assert [e for e in await drain(b, idle=False) if e.tag == "iq"] == []
    await answer(a, iq, EXODUS_INFO)
    assert await module.resolve(JID.parse(b.jid or "")) is not None
    assert [e for e in await drain(b) if e.tag == "iq"] == []
    assert requests == [(a.jid, f"{EXODUS_NODE}#{EXODUS_VER}")]


async def test_another_announcer_is_asked_when_the_first_lies(
    server: Server, connect: Connect
) -> None:
    """§5.4 3.9: SHOULD check another entity that advertises the same value."""
    module = caps_module(server)
    liar, _ = await connect("carol", "liar")
    honest, _ = await connect("bob", "honest")
    await liar.send(presence_with_caps())
    lie_iq = await caps_query(liar, f"{EXODUS_NODE}#{EXODUS_VER}")
    await honest.send(presence_with_caps())
    await drain(honest, idle=False)  # the liar's answer is outstanding: the server waits
    await answer(liar, lie_iq, LIE_INFO)
    iq = await caps_query(honest, f"{EXODUS_NODE}#{EXODUS_VER}")
    await answer(honest, iq, EXODUS_INFO)
    info = await module.resolve(JID.parse(honest.jid or ""))
    assert info is not None and caps_hash(info) == EXODUS_VER
    assert module.cache.get(EXODUS_VER) is info


@pytest.mark.parametrize("algo", ["", "md5", "SHA1"], ids=["legacy", "md5", "unknown"])
async def test_unsupported_caps_are_not_queried(
    server: Server, connect: Connect, requests: list[tuple[str, str]], algo: str
) -> None:
    """§5.4 steps 1-2: legacy caps and unknown hashes are not verified nor cached globally."""
    module = caps_module(server)
    c, _ = await connect("alice", "old")
    await c.send(presence_with_caps(ver="0.9.1", algo=algo))
    assert [e for e in await drain(c) if e.tag == "iq"] == []
    assert requests == []
    caps = module.caps_of(JID.parse(c.jid or ""))
    assert caps == Caps(EXODUS_NODE, "0.9.1", algo or None)
    assert module.info_of(JID.parse(c.jid or "")) is None


async def test_sha256_caps(server: Server, connect: Connect) -> None:
    module = caps_module(server)
    info_el = Element("query", ns.DISCO_INFO)
    info_el.sub("identity", attrs={"category": "client", "type": "pc"})
    info_el.sub("feature", attrs={"var": "urn:xmpp:ping"})
    ver = caps_hash(info_el, "sha-256")
    c, _ = await connect("alice", "modern")
    await c.send(presence_with_caps(ver=ver, algo="sha-256"))
    iq = await caps_query(c, f"{EXODUS_NODE}#{ver}")
    await answer(c, iq, "".join(serialize(e) for e in info_el.elements()))
    assert await module.resolve(JID.parse(c.jid or "")) is not None
    assert ("sha-256", ver) in module.cache
    assert ver not in module.cache  # that is the sha-1 key


async def test_closed_session_forgets_caps(server: Server, connect: Connect) -> None:
    module = caps_module(server)
    c, _ = await connect("alice", "gone")
    jid = JID.parse(c.jid or "")
    await c.send(presence_with_caps(algo=""))
    await drain(c)
    assert module.caps_of(jid) is not None
    await c.send("</stream:stream>")
    await c.wait_closed()  # the server unbinds before it writes its closing tag
    assert module.caps_of(jid) is None


# -- what the log says when a client's caps do not verify ---------------------------------------


def _did_not_verify(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "did not verify" in r.getMessage()]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("lie", "wrong hash: its disco#info hashes to "),
        ("ill-formed", "its disco#info is ill-formed"),
        ("error", "disco#info answered with an error (item-not-found)"),
        ("silence", "no answer to disco#info within 0.2 s"),
    ],
)
async def test_log_says_why_caps_did_not_verify(
    server: Server,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    reply: str,
    reason: str,
) -> None:
    """Issue 14: a wrong hash and a client that never answered are told apart."""
    import roost.server.modules.caps as caps_mod

    monkeypatch.setattr(caps_mod, "QUERY_TIMEOUT", 0.2)
    caplog.set_level(logging.INFO, logger="roost.server.modules.caps")
    module = caps_module(server)
    c, _ = await connect("alice", reply)
    await c.send(presence_with_caps())
    iq = await caps_query(c, f"{EXODUS_NODE}#{EXODUS_VER}")
    if reply == "lie":
        await answer(c, iq, LIE_INFO)
    elif reply == "ill-formed":
        await answer(c, iq, EXODUS_INFO + "<feature var='http://jabber.org/protocol/muc'/>")
    elif reply == "error":
        await c.send(
            f"<iq type='error' id='{iq.get('id')}' to='localhost'><error type='cancel'>"
            f"<item-not-found xmlns='{ns.STANZAS}'/></error></iq>"
        )
    assert await module.resolve(JID.parse(c.jid or "")) is None  # waits for the check
    (line,) = _did_not_verify(caplog)
    assert f"from {c.jid} did not verify: {reason}" in line, line


async def test_an_announcer_that_leaves_unasked_passes_to_the_next(
    server: Server, connect: Connect
) -> None:
    """A client that goes before answering: the server's query to it fails at once
    (``recipient-unavailable``, RFC 6120 §8.3.3.13), so the next announcer is asked without
    waiting out the query's timeout, and nothing is left waiting (a shutdown is not held)."""
    module = caps_module(server)
    gone, _ = await connect("carol", "gone")
    other, _ = await connect("bob", "stays")
    await gone.send(presence_with_caps())
    await caps_query(gone, f"{EXODUS_NODE}#{EXODUS_VER}")
    await other.send(presence_with_caps())
    await drain(other, idle=False)
    await gone.close()
    # the query moves to bob well within the 30 s the first one had to wait
    iq = await asyncio.wait_for(caps_query(other, f"{EXODUS_NODE}#{EXODUS_VER}"), 5)
    await answer(other, iq, EXODUS_INFO)
    assert await module.resolve(JID.parse(other.jid or "")) is not None
    await asyncio.wait_for(server.idle(), 5)
