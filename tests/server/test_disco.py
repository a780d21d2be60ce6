"""XEP-0030: the server advertises exactly what its loaded modules handle (issue 4, acc. 1).

A feature advertised with no handler, or handled but not advertised, fails here: the
advertised list is read over the wire and checked against the registry, and every
advertised iq namespace is exercised to prove something answers it.
"""

from __future__ import annotations

from roost.core import ns
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import RawClient

#: Handled namespaces that are deliberately not disco features, and why.
NOT_ADVERTISED = {
    ns.SESSION: "RFC 3921 session establishment is a stream feature, not a disco feature",
    "urn:xmpp:push:0": "XEP-0357 §4: advertised on the account's bare JID, not the server",
    "http://jabber.org/protocol/pubsub": "XEP-0163 §5: PEP is on the account's bare JID",
    "http://jabber.org/protocol/pubsub#owner": "XEP-0163 §5: PEP is on the account's bare JID",
}
#: Advertised features that are not iq namespaces, and the event their module hooks.
NON_IQ_FEATURES = {
    "msgoffline": events.MESSAGE_OFFLINE,  # XEP-0160
    "http://jabber.org/protocol/caps": events.PRESENCE_BROADCAST,  # XEP-0115 §7
}


async def _features(c: RawClient, to: str | None = "localhost") -> list[str]:
    target = f" to='{to}'" if to else ""
    await c.send(f"<iq type='get' id='info'{target}><query xmlns='{ns.DISCO_INFO}'/></iq>")
    reply = await c.expect(lambda e: e.get("id") == "info")
    query = reply.find("query", ns.DISCO_INFO)
    assert reply.get("type") == "result" and query is not None, serialize(reply)
    return [f.get("var") or "" for f in query.find_all("feature", ns.DISCO_INFO)]


async def test_advertised_features_are_exactly_the_handled_ones(server: Server) -> None:
    c = await RawClient.connect(server.port())
    await c.login("alice", PASSWORDS["alice"], "d")
    advertised = await _features(c)
    assert advertised == sorted(set(advertised)), "features listed once, in order"
    assert set(advertised) == set(server.registry.disco_features)

    handled = {key[2] for key in server.registry.iq_handlers}
    # handled but not advertised
    assert handled - set(advertised) == set(NOT_ADVERTISED)
    # advertised with no handler: either an iq namespace somebody handles, or a known
    # non-iq feature whose event hook is in place
    for var in set(advertised) - handled:
        assert var in NON_IQ_FEATURES, f"{var} is advertised but nothing handles it"
        assert server.bus.has(NON_IQ_FEATURES[var]), var
    await c.close()


async def test_every_advertised_iq_namespace_answers(server: Server) -> None:
    """On the wire: an iq in each advertised namespace is not service-unavailable."""
    c = await RawClient.connect(server.port())
    await c.login("alice", PASSWORDS["alice"], "w")
    for n, (target, iq_type, xmlns, tag) in enumerate(sorted(server.registry.iq_handlers)):
        if xmlns in NOT_ADVERTISED or (iq_type == "set" and xmlns == "jabber:iq:register"):
            continue  # (a register set with no fields would just be a bad request; get covers it)
        to = " to='localhost'" if target == "host" else ""
        payload = f"<{tag} xmlns='{xmlns}'/>"
        await c.send(f"<iq type='{iq_type}' id='x{n}'{to}>{payload}</iq>")
        reply = await c.expect(lambda e, i=n: e.get("id") == f"x{i}")
        error = reply.find("error")
        if error is not None:
            assert error.find("service-unavailable", ns.STANZAS) is None, serialize(reply)
            assert error.find("feature-not-implemented", ns.STANZAS) is None, serialize(reply)
    await c.close()


async def test_account_disco_lists_account_features(server: Server) -> None:
    c = await RawClient.connect(server.port())
    await c.login("alice", PASSWORDS["alice"], "a")
    assert set(await _features(c, "alice@localhost")) == set(server.registry.account_features)
    # not subscribed to bob: XEP-0030 §8 rule 1
    await c.send(f"<iq type='get' id='b' to='bob@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>")
    reply = await c.expect(lambda e: e.get("id") == "b")
    error = reply.find("error")
    assert error is not None and error.find("service-unavailable", ns.STANZAS) is not None
    await c.close()


async def test_account_disco_lists_disco_itself(server: Server) -> None:
    """XEP-0030 §3.1: every entity MUST support disco#info and disco#items, so the account's
    bare JID (answered by the server on its behalf) lists both, once each."""
    c = await RawClient.connect(server.port())
    await c.login("alice", PASSWORDS["alice"], "a")
    for to in ("alice@localhost", None):
        features = await _features(c, to)
        assert features.count(ns.DISCO_INFO) == 1 and features.count(ns.DISCO_ITEMS) == 1
        assert features == sorted(features)
    await c.close()
