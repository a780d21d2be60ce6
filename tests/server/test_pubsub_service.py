"""XEP-0060 as a generic service at pubsub.localhost: raw XML after §5 (discovery), §6.1
(subscribe), §7.1 (publish), §8.1 (create) and the node creation policy in config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, drain, quiet, start_server
from tests.server.pep_helpers import (
    EVENT,
    OWNER,
    PUBSUB,
    Login,
    ask,
    error_of,
    events_in,
    item_ids,
    login,
)

__all__ = ["login"]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, modules={"pubsub": {"enabled": True}})
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    yield srv
    await srv.stop()


SERVICE = "pubsub.localhost"
NODE = "princely_musings"
ENTRY = (
    "<entry xmlns='http://www.w3.org/2005/Atom'><title>Soliloquy</title>"
    "<summary>To be, or not to be: that is the question</summary></entry>"
)


def create(node: str = NODE) -> str:
    return (
        f"<iq type='set' to='{SERVICE}'><pubsub xmlns='{PUBSUB}'>"
        f"<create node='{node}'/></pubsub></iq>"
    )


def publish(item_id: str, node: str = NODE) -> str:
    return (
        f"<iq type='set' to='{SERVICE}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
        f"<item id='{item_id}'>{ENTRY}</item></publish></pubsub></iq>"
    )


async def test_service_is_discoverable(login: Login) -> None:
    """XEP-0060 §5.1: the server lists it; its identity is pubsub/service."""
    alice = await login("alice", "a")
    items = await ask(
        alice, f"<iq type='get' to='localhost'><query xmlns='{ns.DISCO_ITEMS}'/></iq>"
    )
    query = items.find("query", ns.DISCO_ITEMS)
    assert query is not None
    assert SERVICE in {i.get("jid") for i in query.find_all("item")}
    info = await ask(alice, f"<iq type='get' to='{SERVICE}'><query xmlns='{ns.DISCO_INFO}'/></iq>")
    assert info.get("from") == SERVICE
    query = info.find("query", ns.DISCO_INFO)
    assert query is not None
    identities = {(i.get("category"), i.get("type")) for i in query.find_all("identity")}
    assert identities == {("pubsub", "service")}
    assert f"{PUBSUB}#create-nodes" in {f.get("var") for f in query.find_all("feature")}


async def test_create_subscribe_publish_notify(login: Login) -> None:
    """§8.1.2 create, §6.1.1 subscribe, §7.1.1 publish with the notification of §7.1.2.1."""
    hamlet = await login("alice", "elsinore")
    bernardo = await login("bob", "b")
    reply = await ask(hamlet, create())
    assert reply.get("type") == "result" and reply.get("from") == SERVICE
    assert error_of(await ask(hamlet, create()))[1] == "conflict"  # §8.1.3.2 (node exists)
    reply = await ask(
        bernardo,
        f"<iq type='set' to='{SERVICE}'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='{NODE}' jid='{bernardo.jid}'/></pubsub></iq>",
    )
    sub = reply.find("pubsub", PUBSUB).find("subscription", PUBSUB)  # type: ignore[union-attr]
    assert sub is not None and sub.get("subscription") == "subscribed"
    reply = await ask(hamlet, publish("ae890ac52d0df67ed7cfdf51b644e901"))
    assert reply.get("type") == "result"
    got = events_in(await drain(bernardo))
    assert [(f, t, item_ids(i)) for f, t, i in got] == [
        (SERVICE, bernardo.jid, ["ae890ac52d0df67ed7cfdf51b644e901"])
    ]
    item = got[0][2].find("item", EVENT)
    assert item is not None and item.find("entry", "http://www.w3.org/2005/Atom") is not None
    await quiet(hamlet)  # not subscribed
    # §5.2: the node is listed
    items = await ask(
        bernardo, f"<iq type='get' to='{SERVICE}'><query xmlns='{ns.DISCO_ITEMS}'/></iq>"
    )
    query = items.find("query", ns.DISCO_ITEMS)
    assert query is not None
    assert [(i.get("jid"), i.get("node")) for i in query.find_all("item")] == [(SERVICE, NODE)]
    # §7.1.3.1: bernardo is no publisher; §8.2.3.2 nor owner
    assert error_of(await ask(bernardo, publish("x")))[1] == "forbidden"
    reply = await ask(
        bernardo,
        f"<iq type='get' to='{SERVICE}'><pubsub xmlns='{OWNER}'>"
        f"<configure node='{NODE}'/></pubsub></iq>",
    )
    assert error_of(reply) == ("auth", "forbidden", None)
    # §8.4: the owner deletes it; the subscriber is told
    reply = await ask(
        hamlet,
        f"<iq type='set' to='{SERVICE}'><pubsub xmlns='{OWNER}'>"
        f"<delete node='{NODE}'/></pubsub></iq>",
    )
    assert reply.get("type") == "result"
    got = events_in(await drain(bernardo))
    assert [(i.tag, i.get("node")) for _, _, i in got] == [("delete", NODE)]


async def test_publish_to_a_missing_node_creates_it(login: Login) -> None:
    """§7.1.4 auto-create, for one who may create nodes."""
    alice = await login("alice", "a")
    assert (await ask(alice, publish("1", "auto"))).get("type") == "result"
    reply = await ask(
        alice,
        f"<iq type='get' to='{SERVICE}'><pubsub xmlns='{PUBSUB}'>"
        "<items node='auto'/></pubsub></iq>",
    )
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None and item_ids(items) == ["1"]


async def test_node_creation_policy_admins(tmp_path: Path) -> None:
    """``[modules.pubsub] create_nodes = "admins"``: others get forbidden (§8.1.3.1)."""
    srv = await start_server(
        tmp_path,
        modules={"pubsub": {"enabled": True, "create_nodes": "admins"}},
        admins=["bob@localhost"],
    )
    try:
        for user in ("alice", "bob"):
            await srv.accounts.create(user, "localhost", PASSWORDS[user])
        alice = await RawClient.connect(srv)
        await alice.login("alice", PASSWORDS["alice"], "a")
        bob = await RawClient.connect(srv)
        await bob.login("bob", PASSWORDS["bob"], "b")
        assert error_of(await ask(alice, create())) == ("auth", "forbidden", None)
        assert (await ask(bob, create())).get("type") == "result"
        await alice.close()
        await bob.close()
    finally:
        await srv.stop()
