"""XEP-0115 for the client: own caps (the §5.2 example), others' verified (the §5.3 example
from a raw client), forged 'ver's never trusted nor cached, the cache file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roost.client import JID, Client, Element, Identity, Presence, StanzaError
from roost.core import ns
from roost.core.caps import CAPS
from roost.server.app import Server
from tests.client.conftest import MakeClient
from tests.core.test_caps import COMPLEX_IQ, SIMPLE_VER
from tests.helpers import RawClient

T = 5.0
COMPLEX_VER = "q07IKJEyjvHSyhy//CH0CxmKi8w="
PSI = JID.parse("alice@localhost/psi")


def test_own_caps_of_the_simple_example() -> None:
    """§5.2: the identities and features of the example give its 'ver'."""
    client = Client("juliet@capulet.lit", "x")
    client.identities = [Identity("client", "pc", "Exodus 0.9.1")]
    client.features = {
        CAPS,
        ns.DISCO_INFO,
        ns.DISCO_ITEMS,
        "http://jabber.org/protocol/muc",
    }
    client.caps.changed()
    assert client.caps.own.ver == SIMPLE_VER and client.caps.own.algo == "sha-1"


async def test_own_caps_in_presence_and_disco(make_client: MakeClient) -> None:
    a = make_client("alice", resource="a")
    b = make_client("alice", resource="b", caps_node="urn:example:b")
    await a.connect()
    with a.events(Presence) as seen:
        await b.connect()
        while (p := await seen.next(T)).from_ != b.jid:
            pass
    assert p.caps == b.caps.own  # available presence carries <c/> (§4)
    assert b.jid is not None
    # §6.2: disco#info on node#ver is answered like the plain query, echoing the node
    result = await a.request(
        Element("query", ns.DISCO_INFO, {"node": b.caps.own.disco_node}), to=b.jid
    )
    assert result is not None and result.get("node") == b.caps.own.disco_node
    with pytest.raises(StanzaError) as info:
        await a.request(Element("query", ns.DISCO_INFO, {"node": "urn:other#x"}), to=b.jid)
    assert info.value.condition.value == "item-not-found"
    # and a verifies b's caps from that answer
    verified = await a.caps.info(b.jid)
    assert verified is not None and ns.PING in verified.features
    assert (("sha-1", b.caps.own.ver)) in a.caps.cache


async def _claim(server: Server, ver: str) -> tuple[RawClient, str]:
    """A raw resource claiming the §5.3 node with ``ver``; returns it and the disco id."""
    raw = await RawClient.connect(server)
    await raw.login("alice", "alice-secret", "psi")
    await raw.send(
        f"<presence><c xmlns='{CAPS}' hash='sha-1' node='http://psi-im.org' ver='{ver}'/>"
        "</presence>"
    )
    # (the server checks these caps too: answer only the library client's query)
    query = await raw.expect(
        lambda e: e.tag == "iq" and e.get("type") == "get" and e.get("from") == "alice@localhost/a"
    )
    disco = query.find("query", ns.DISCO_INFO)
    assert disco is not None and disco.get("node") == f"http://psi-im.org#{ver}"
    iq_id = query.get("id") or ""
    reply = (
        COMPLEX_IQ.replace("id='disco1'", f"id='{iq_id}'")
        .replace("to='juliet@capulet.lit/chamber'", f"to='{query.get('from')}'")
        .replace("from='benvolio@capulet.lit/230193'", "")
    )
    await raw.send(reply)
    return raw, iq_id


async def test_others_caps_verified_by_recomputing(
    server: Server, make_client: MakeClient, tmp_path: Path
) -> None:
    cache_file = tmp_path / "caps.json"
    alice = make_client("alice", resource="a", caps_file=cache_file)
    await alice.connect()
    await alice.ping()  # our own presence has come back before the answer
    raw, _ = await _claim(server, COMPLEX_VER)
    info = await alice.caps.info(PSI)
    assert info is not None and "http://jabber.org/protocol/muc" in info.features
    assert ("sha-1", COMPLEX_VER) in alice.caps.cache
    await raw.close()

    # persisted, and read back (verified again) by a new client
    saved = json.loads(cache_file.read_text())
    # (our own caps, seen in our own presence, are in it too)
    assert {e["ver"] for e in saved["entries"]} == {COMPLEX_VER, alice.caps.own.ver}
    assert ("sha-1", COMPLEX_VER) in Client("x@localhost", "x", caps_file=cache_file).caps.cache
    # a file entry whose hash does not match its disco#info is not believed
    for entry in saved["entries"]:
        entry["ver"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    cache_file.write_text(json.dumps(saved))
    assert len(Client("x@localhost", "x", caps_file=cache_file).caps.cache) == 0


async def test_a_forged_ver_is_not_trusted_nor_cached(
    server: Server, make_client: MakeClient
) -> None:
    alice = make_client("alice", resource="a")
    await alice.connect()
    await alice.ping()  # our own presence has come back before the answer
    forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    raw, _ = await _claim(server, forged)
    assert await alice.caps.info(PSI) is None
    assert ("sha-1", forged) not in alice.caps.cache
    assert [key for key, _ in alice.caps.cache.items()] == [("sha-1", alice.caps.own.ver)]
    await raw.close()
