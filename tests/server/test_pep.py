"""XEP-0163 PEP on XEP-0060 over the wire: raw XML after the examples of XEP-0060 §6-§8 and
XEP-0163 §3-§4, against a real server."""

from __future__ import annotations

from pathlib import Path

from roost.core import ns
from roost.core.xml.element import Element
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, drain, quiet, start_server
from tests.server.pep_helpers import (
    EVENT,
    NICK,
    OWNER,
    PUBSUB,
    TUNE,
    Login,
    announce,
    ask,
    error_of,
    events_in,
    field,
    item_ids,
    items_get,
    login,
    mutual_from,
    notify,
    publish,
)

__all__ = ["login"]

TUNE_ITEM = f"<tune xmlns='{TUNE}'><artist>Gerald Finzi</artist><length>255</length></tune>"


def nick(name: str) -> str:
    return f"<nick xmlns='{NICK}'>{name}</nick>"


async def test_account_disco_info_shows_pep(login: Login) -> None:
    """XEP-0163 §5: the account's bare JID has identity pubsub/pep."""
    alice = await login("alice", "a")
    reply = await ask(
        alice, f"<iq type='get' to='alice@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    query = reply.find("query", ns.DISCO_INFO)
    assert query is not None
    identities = {(i.get("category"), i.get("type")) for i in query.find_all("identity")}
    assert ("pubsub", "pep") in identities
    features = {f.get("var") for f in query.find_all("feature")}
    assert {PUBSUB, f"{PUBSUB}#publish", f"{PUBSUB}#publish-options"} <= features
    assert f"{PUBSUB}#auto-create" in features


async def test_publish_notifies_exactly_those_whose_caps_ask(server: Server, login: Login) -> None:
    """Acceptance 3 of #13 / XEP-0163 §4.3: the owner's resources and subscribed contacts
    whose verified caps include NODE+notify, no one else."""
    await mutual_from(server, "alice", "bob")
    await mutual_from(server, "alice", "carol")
    alice = await login("alice", "a", notify(TUNE))
    alice2 = await login("alice", "other", [])  # no +notify
    bob = await login("bob", "b", notify(TUNE))
    carol = await login("carol", "c", notify(NICK))  # asks for nick, not tune
    for c in (alice2, bob, carol):
        await drain(c)
    reply = await ask(alice, publish(TUNE, TUNE_ITEM, "bnd81g37d61f49fgn581"))
    assert reply.get("type") == "result"
    pub = reply.find("pubsub", PUBSUB)
    assert pub is not None
    published = pub.find("publish", PUBSUB)
    assert published is not None and published.get("node") == TUNE
    assert item_ids(published) == ["bnd81g37d61f49fgn581"]
    for c in (alice, bob):
        got = events_in(await drain(c))
        assert len(got) == 1, got
        sender, to, items = got[0]
        assert (sender, to) == ("alice@localhost", c.jid)
        assert items.tag == "items" and items.get("node") == TUNE
        item = items.find("item", EVENT)
        assert item is not None and item.get("id") == "bnd81g37d61f49fgn581"
        tune = item.find("tune", TUNE)
        assert tune is not None and tune.find("artist", TUNE) is not None
    await quiet(alice2, carol)
    # the nickname node: carol only (and none of alice's resources ask)
    reply = await ask(alice, publish(NICK, nick("Alice")))
    pub = reply.find("pubsub", PUBSUB)
    assert pub is not None
    published = pub.find("publish", PUBSUB)
    assert published is not None
    generated = item_ids(published)
    assert len(generated) == 1 and generated[0]  # §7.1.2: the server made the id
    got = events_in(await drain(carol))
    assert [(s, t, i.get("node")) for s, t, i in got] == [("alice@localhost", carol.jid, NICK)]
    await quiet(alice, alice2, bob)


async def test_non_contact_with_notify_gets_nothing(server: Server, login: Login) -> None:
    alice = await login("alice", "a", [])
    carol = await login("carol", "c", notify(TUNE))
    assert (await ask(alice, publish(TUNE, TUNE_ITEM))).get("type") == "result"
    await quiet(carol, alice)


async def test_items_latest_n_and_by_id(server: Server, login: Login) -> None:
    """XEP-0060 §6.5.2, §6.5.7, §6.5.8; max_items keeps the newest (§7.1.5 / §16.4.4)."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    opts = field("pubsub#max_items", "3")
    for i in range(5):
        reply = await ask(alice, publish(TUNE, TUNE_ITEM, f"i{i}", options=opts))
        assert reply.get("type") == "result", reply
    get_all = items_get(TUNE)
    reply = await ask(bob, get_all)
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None and item_ids(items) == ["i4", "i3", "i2"]
    reply = await ask(
        bob,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<items node='{TUNE}' max_items='1'/></pubsub></iq>",
    )
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None and item_ids(items) == ["i4"]
    reply = await ask(
        bob,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'>"
        f"<item id='i2'/><item id='i0'/></items></pubsub></iq>",
    )
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None and item_ids(items) == ["i2"]
    reply = await ask(
        bob,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<items node='urn:nothing'/></pubsub></iq>",
    )
    assert error_of(reply) == ("cancel", "item-not-found", None)


async def test_presence_access_refuses_non_subscribers(server: Server, login: Login) -> None:
    """XEP-0060 §6.5.9.4, §6.1.3.2: presence access model."""
    alice = await login("alice", "a")
    carol = await login("carol", "c")
    await ask(alice, publish(TUNE, TUNE_ITEM))
    reply = await ask(
        carol,
        items_get(TUNE),
    )
    assert error_of(reply) == ("auth", "not-authorized", "presence-subscription-required")
    reply = await ask(
        carol,
        f"<iq type='set' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='{TUNE}' jid='carol@localhost'/></pubsub></iq>",
    )
    assert error_of(reply) == ("auth", "not-authorized", "presence-subscription-required")


async def test_only_the_owner_publishes(server: Server, login: Login) -> None:
    await mutual_from(server, "alice", "bob")
    bob = await login("bob", "b")
    reply = await ask(
        bob,
        publish(TUNE, TUNE_ITEM).replace("<iq type='set'>", "<iq type='set' to='alice@localhost'>"),
    )
    assert error_of(reply) == ("auth", "forbidden", None)


async def test_publish_errors(login: Login) -> None:
    """XEP-0060 §7.1.3: no item, no payload, two payloads, too many items."""
    alice = await login("alice", "a")
    no_item = f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'/></pubsub></iq>"
    assert error_of(await ask(alice, no_item)) == ("modify", "bad-request", "item-required")
    assert error_of(await ask(alice, publish(TUNE, ""))) == (
        "modify",
        "bad-request",
        "payload-required",
    )
    assert error_of(await ask(alice, publish(TUNE, TUNE_ITEM + TUNE_ITEM))) == (
        "modify",
        "bad-request",
        "invalid-payload",
    )


async def test_publish_options_preconditions(server: Server, login: Login) -> None:
    """XEP-0060 §7.1.5: a precondition that the existing node does not meet, or an unknown
    field, is conflict + precondition-not-met; the node is left as it was."""
    alice = await login("alice", "a")
    assert (await ask(alice, publish(TUNE, TUNE_ITEM, "1"))).get("type") == "result"
    whitelist = field("pubsub#access_model", "whitelist")
    assert error_of(await ask(alice, publish(TUNE, TUNE_ITEM, "2", whitelist))) == (
        "cancel",
        "conflict",
        "precondition-not-met",
    )
    unknown = field("pubsub#frobnicate", "1")
    assert error_of(await ask(alice, publish(TUNE, TUNE_ITEM, "3", unknown))) == (
        "cancel",
        "conflict",
        "precondition-not-met",
    )
    same = field("pubsub#access_model", "presence")
    assert (await ask(alice, publish(TUNE, TUNE_ITEM, "4", same))).get("type") == "result"


async def test_whitelist_node_refuses_then_admits_a_member(server: Server, login: Login) -> None:
    """XEP-0060 §6.5.9.6 (closed-node), §8.9.2 (owner modifies affiliations)."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b", notify("urn:xmpp:bookmarks:1"))
    opts = field("pubsub#access_model", "whitelist") + field("pubsub#max_items", "max")
    reply = await ask(
        alice,
        publish(
            "urn:xmpp:bookmarks:1", "<conference xmlns='urn:xmpp:bookmarks:1'/>", "room@muc", opts
        ),
    )
    assert reply.get("type") == "result", reply
    await quiet(bob)  # bob asks for notifications but may not see the node
    get_items = (
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<items node='urn:xmpp:bookmarks:1'/></pubsub></iq>"
    )
    assert error_of(await ask(bob, get_items)) == ("cancel", "not-allowed", "closed-node")
    reply = await ask(
        alice,
        f"<iq type='set' to='alice@localhost'><pubsub xmlns='{OWNER}'>"
        f"<affiliations node='urn:xmpp:bookmarks:1'>"
        f"<affiliation jid='bob@localhost' affiliation='member'/></affiliations></pubsub></iq>",
    )
    assert reply.get("type") == "result"
    assert (await ask(bob, get_items)).get("type") == "result"


async def test_roster_access_model_by_group(server: Server, login: Login) -> None:
    """XEP-0060 §6.5.9.5 / §4.5: roster groups allowed."""
    await mutual_from(server, "alice", "bob", ("friends",))
    await mutual_from(server, "alice", "carol", ("work",))
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    carol = await login("carol", "c")
    opts = field("pubsub#access_model", "roster") + field("pubsub#roster_groups_allowed", "friends")
    assert (await ask(alice, publish(TUNE, TUNE_ITEM, "1", opts))).get("type") == "result"
    get_items = items_get(TUNE)
    assert (await ask(bob, get_items)).get("type") == "result"
    assert error_of(await ask(carol, get_items)) == (
        "auth",
        "not-authorized",
        "not-in-roster-group",
    )


async def test_open_node_subscribe_retract_purge_delete(server: Server, login: Login) -> None:
    """XEP-0060 §6.1 subscribe (with the last item, §6.1.7), §7.2 retract with notify,
    §8.5 purge, §8.4 delete, each notified to the subscriber."""
    alice = await login("alice", "a")
    carol = await login("carol", "c", [])
    node = "eu.siacs.conversations.axolotl.devicelist"
    opts = field("pubsub#access_model", "open")
    payload = "<list xmlns='eu.siacs.conversations.axolotl'><device id='12345'/></list>"
    assert (await ask(alice, publish(node, payload, "current", opts))).get("type") == "result"
    reply = await ask(
        carol,
        f"<iq type='set' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='{node}' jid='{carol.jid}'/></pubsub></iq>",
    )
    sub = reply.find("pubsub", PUBSUB).find("subscription", PUBSUB)  # type: ignore[union-attr]
    assert sub is not None and sub.get("subscription") == "subscribed" and sub.get("subid")
    got = events_in(await drain(carol))
    assert [item_ids(i) for _, _, i in got] == [["current"]]
    # retract
    reply = await ask(
        alice,
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='{node}' notify='true'>"
        f"<item id='current'/></retract></pubsub></iq>",
    )
    assert reply.get("type") == "result"
    got = events_in(await drain(carol))
    assert len(got) == 1
    retract = got[0][2].find("retract", EVENT)
    assert retract is not None and retract.get("id") == "current"
    # purge
    await ask(alice, publish(node, payload, "again", opts))
    await drain(carol)
    reply = await ask(
        alice, f"<iq type='set'><pubsub xmlns='{OWNER}'><purge node='{node}'/></pubsub></iq>"
    )
    assert reply.get("type") == "result"
    got = events_in(await drain(carol))
    assert [(i.tag, i.get("node")) for _, _, i in got] == [("purge", node)]
    # delete
    reply = await ask(
        alice, f"<iq type='set'><pubsub xmlns='{OWNER}'><delete node='{node}'/></pubsub></iq>"
    )
    assert reply.get("type") == "result"
    got = events_in(await drain(carol))
    assert [(i.tag, i.get("node")) for _, _, i in got] == [("delete", node)]
    reply = await ask(
        carol,
        items_get(node),
    )
    assert error_of(reply) == ("cancel", "item-not-found", None)


async def test_unsubscribe_not_subscribed(login: Login) -> None:
    alice = await login("alice", "a")
    await ask(alice, publish(TUNE, TUNE_ITEM, options=field("pubsub#access_model", "open")))
    carol = await login("carol", "c")
    reply = await ask(
        carol,
        f"<iq type='set' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<unsubscribe node='{TUNE}' jid='carol@localhost'/></pubsub></iq>",
    )
    assert error_of(reply) == ("cancel", "unexpected-request", "not-subscribed")


async def test_configure_and_create(login: Login) -> None:
    """XEP-0060 §8.1 create (conflict when it exists), §8.2 configure form get and submit."""
    alice = await login("alice", "a")
    create = f"<iq type='set'><pubsub xmlns='{PUBSUB}'><create node='urn:test:n'/></pubsub></iq>"
    assert (await ask(alice, create)).get("type") == "result"
    assert error_of(await ask(alice, create)) == ("cancel", "conflict", None)
    reply = await ask(
        alice,
        f"<iq type='get'><pubsub xmlns='{OWNER}'><configure node='urn:test:n'/></pubsub></iq>",
    )
    form = reply.find("pubsub", OWNER).find("configure", OWNER).find("x", "jabber:x:data")  # type: ignore[union-attr]
    assert form is not None
    values = {f.get("var"): [v.text for v in f.find_all("value")] for f in form.find_all("field")}
    assert values["pubsub#access_model"] == ["presence"]
    assert values["pubsub#max_items"] == ["1"]
    submit = (
        f"<iq type='set'><pubsub xmlns='{OWNER}'><configure node='urn:test:n'>"
        f"<x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#node_config</value></field>"
        f"{field('pubsub#access_model', 'open')}{field('pubsub#max_items', '10')}</x>"
        f"</configure></pubsub></iq>"
    )
    assert (await ask(alice, submit)).get("type") == "result"
    reply = await ask(
        alice,
        f"<iq type='get'><pubsub xmlns='{OWNER}'><configure node='urn:test:n'/></pubsub></iq>",
    )
    form = reply.find("pubsub", OWNER).find("configure", OWNER).find("x", "jabber:x:data")  # type: ignore[union-attr]
    assert form is not None
    values = {f.get("var"): [v.text for v in f.find_all("value")] for f in form.find_all("field")}
    assert values["pubsub#access_model"] == ["open"]
    assert values["pubsub#max_items"] == ["10"]
    bad = submit.replace(">open<", ">authorize<")
    assert error_of(await ask(alice, bad))[1] == "feature-not-implemented"


async def test_last_item_on_initial_presence(server: Server, login: Login) -> None:
    """XEP-0163 §4.3.2: a contact's resource becoming available gets the last item, once;
    the owner's own new resource too."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", [])
    await ask(alice, publish(TUNE, TUNE_ITEM, "old"))
    await ask(alice, publish(TUNE, TUNE_ITEM, "last"))
    bob = await login("bob", "b", None)
    await announce(bob, notify(TUNE))
    stanzas = await drain(bob)
    got = events_in(stanzas)
    assert [(s, item_ids(i)) for s, _, i in got] == [("alice@localhost", ["last"])]
    # XEP-0203: sent later than published, it says when it was
    (msg,) = [m for m in stanzas if m.tag == "message"]
    delay = msg.find("delay", "urn:xmpp:delay")
    assert delay is not None and delay.get("from") == "alice@localhost" and delay.get("stamp")
    await bob.send("<presence><show>away</show></presence>")  # not initial: nothing
    assert events_in(await drain(bob)) == []
    alice2 = await login("alice", "two", None)
    await announce(alice2, notify(TUNE))
    got = events_in(await drain(alice2))
    assert [item_ids(i) for _, _, i in got] == [["last"]]


async def test_last_item_when_the_owner_approves(server: Server, login: Login) -> None:
    """XEP-0163 §4.3.1: a new presence subscription brings the last item."""
    alice = await login("alice", "a", [])
    await ask(alice, publish(TUNE, TUNE_ITEM, "last"))
    bob = await login("bob", "b", notify(TUNE))
    await bob.send("<presence type='subscribe' to='alice@localhost'/>")
    await drain(alice)
    await alice.send("<presence type='subscribed' to='bob@localhost'/>")
    got = events_in(await drain(bob))
    assert [(s, item_ids(i)) for s, _, i in got] == [("alice@localhost", ["last"])]


async def test_blocked_contact_gets_no_notification(server: Server, login: Login) -> None:
    """XEP-0163 §4.3.2: not to a contact the owner blocked (XEP-0191)."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", [])
    bob = await login("bob", "b", notify(TUNE))
    reply = await ask(
        alice,
        "<iq type='set'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>",
    )
    assert reply.get("type") == "result"
    await drain(alice)
    await ask(alice, publish(TUNE, TUNE_ITEM))
    assert events_in(await drain(bob)) == []


async def test_nodes_and_items_survive_a_restart(tmp_path: Path) -> None:
    srv = await start_server(tmp_path)
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    try:
        c = await RawClient.connect(srv)
        await c.login("alice", PASSWORDS["alice"], "a")
        opts = field("pubsub#max_items", "5") + field("pubsub#access_model", "open")
        for i in range(3):
            assert (await ask(c, publish(TUNE, TUNE_ITEM, f"t{i}", opts))).get("type") == "result"
        await c.close()
    finally:
        await srv.stop()
    srv = await start_server(tmp_path)
    try:
        c = await RawClient.connect(srv)
        await c.login("carol", PASSWORDS["carol"], "c")
        reply = await ask(
            c,
            items_get(TUNE),
        )
        items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
        assert items is not None and item_ids(items) == ["t2", "t1", "t0"]
        await c.close()
    finally:
        await srv.stop()


async def test_limits_from_config(tmp_path: Path) -> None:
    """``[modules.pep]``: max_nodes, max_items (what "max" means), max_item_size."""
    srv = await start_server(
        tmp_path, modules={"pep": {"max_nodes": 2, "max_items": 3, "max_item_size": 100}}
    )
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    try:
        c = await RawClient.connect(srv)
        await c.login("alice", PASSWORDS["alice"], "a")
        big = f"<nick xmlns='{NICK}'>{'x' * 200}</nick>"
        assert error_of(await ask(c, publish(NICK, big))) == (
            "modify",
            "not-acceptable",
            "payload-too-big",
        )
        opts = field("pubsub#max_items", "max")
        for i in range(5):
            assert (await ask(c, publish("urn:a", nick("a"), f"a{i}", opts))).get(
                "type"
            ) == "result"
        reply = await ask(c, items_get("urn:a"))
        items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
        assert items is not None and item_ids(items) == ["a4", "a3", "a2"]
        assert (await ask(c, publish("urn:b", nick("b")))).get("type") == "result"
        assert error_of(await ask(c, publish("urn:c", nick("c"))))[1] == "not-allowed"
        await c.close()
    finally:
        await srv.stop()


def test_bad_option_names_its_key(tmp_path: Path) -> None:
    from roost.server.config import ConfigError
    from roost.server.loader import resolve_modules
    from roost.server.modules import default_modules
    from tests.helpers import make_config

    config = make_config(tmp_path, modules={"pep": {"max_items": 0}})
    try:
        resolve_modules(config, default_modules())
    except ConfigError as err:
        assert err.key == "modules.pep.max_items"
    else:
        raise AssertionError("max_items = 0 was accepted")


BOOKMARKS_0048 = (
    "<storage xmlns='storage:bookmarks'><conference name='Council' autojoin='true' "
    "jid='council@conference.localhost'><nick>alice</nick></conference></storage>"
)


async def test_private_xml_bookmarks_are_kept_in_pep(server: Server, login: Login) -> None:
    """XEP-0411 §3: XEP-0049 bookmarks are published to PEP storage:bookmarks (XEP-0223
    whitelist) and a private get answers what PEP holds."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", notify("storage:bookmarks"))
    bob = await login("bob", "b", notify("storage:bookmarks"))
    disco = await ask(
        alice, f"<iq type='get' to='alice@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    q = disco.find("query", ns.DISCO_INFO)
    assert q is not None
    assert "urn:xmpp:bookmarks-conversion:0" in {f.get("var") for f in q.find_all("feature")}
    reply = await ask(
        alice, f"<iq type='set'><query xmlns='jabber:iq:private'>{BOOKMARKS_0048}</query></iq>"
    )
    assert reply.get("type") == "result"
    got = events_in(await drain(alice))
    assert [(i.get("node"), item_ids(i)) for _, _, i in got] == [("storage:bookmarks", ["current"])]
    await quiet(bob)  # whitelist: not for contacts
    reply = await ask(alice, items_get("storage:bookmarks"))
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None
    conf = items.find("item", PUBSUB).find("storage", "storage:bookmarks")  # type: ignore[union-attr]
    assert conf is not None and conf.find("conference", "storage:bookmarks") is not None
    assert error_of(await ask(bob, items_get("storage:bookmarks")))[1] == "not-allowed"
    # and the other way: published to PEP, read through private XML storage
    opts = field("pubsub#access_model", "whitelist") + field("pubsub#persist_items", "true")
    newer = BOOKMARKS_0048.replace("Council", "Senate")
    assert (await ask(alice, publish("storage:bookmarks", newer, "current", opts))).get(
        "type"
    ) == "result"
    reply = await ask(
        alice,
        "<iq type='get'><query xmlns='jabber:iq:private'>"
        "<storage xmlns='storage:bookmarks'/></query></iq>",
    )
    storage = reply.find("query", "jabber:iq:private").find("storage", "storage:bookmarks")  # type: ignore[union-attr]
    assert storage is not None
    conference = storage.find("conference", "storage:bookmarks")
    assert conference is not None and conference.get("name") == "Senate"


async def test_presence_carries_the_avatar_hash(server: Server, login: Login) -> None:
    """XEP-0398 §3 / XEP-0153 §3.2: the XEP-0084 metadata id in available presence."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", [])
    bob = await login("bob", "b", [])
    metadata = (
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='12345' width='64' "
        "height='64' id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f' type='image/png'/></metadata>"
    )
    reply = await ask(
        alice,
        publish("urn:xmpp:avatar:metadata", metadata, "111f4b3c50d7b0df729d299bc6f8e9ef9066971f"),
    )
    assert reply.get("type") == "result"
    await drain(bob)
    await alice.send("<presence><show>away</show></presence>")
    got = [p for p in await drain(bob) if p.tag == "presence"]
    assert len(got) == 1
    x = got[0].find("x", "vcard-temp:x:update")
    assert x is not None
    photo = x.find("photo", "vcard-temp:x:update")
    assert photo is not None and photo.text == "111f4b3c50d7b0df729d299bc6f8e9ef9066971f"
    # a client's own annotation is left alone
    await alice.send("<presence><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>")
    got = [p for p in await drain(bob) if p.tag == "presence"]
    photos = [
        p.find("x", "vcard-temp:x:update").find("photo", "vcard-temp:x:update").text for p in got
    ]  # type: ignore[union-attr]
    assert photos == ["abc"]


async def test_disco_items_list_the_nodes_one_may_see(server: Server, login: Login) -> None:
    """XEP-0163 §5: disco#items of the account list only the nodes the requester may
    subscribe to or read (XEP-0060 §5.2)."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    carol = await login("carol", "c")
    await ask(alice, publish(TUNE, TUNE_ITEM))  # presence
    await ask(alice, publish(NICK, nick("A"), options=field("pubsub#access_model", "open")))
    await ask(
        alice,
        publish(
            "urn:xmpp:bookmarks:1",
            "<conference xmlns='urn:xmpp:bookmarks:1'/>",
            "r@muc",
            field("pubsub#access_model", "whitelist"),
        ),
    )
    get = f"<iq type='get' to='alice@localhost'><query xmlns='{ns.DISCO_ITEMS}'/></iq>"

    async def nodes(c: RawClient) -> list[str]:
        query = (await ask(c, get)).find("query", ns.DISCO_ITEMS)
        assert query is not None
        return [i.get("node") or "" for i in query.find_all("item") if i.get("node")]

    # (storage:bookmarks: the XEP-0048 form of the bookmarks, XEP-0402 §5.3)
    assert await nodes(alice) == sorted([NICK, TUNE, "storage:bookmarks", "urn:xmpp:bookmarks:1"])
    assert await nodes(bob) == sorted([NICK, TUNE])
    assert await nodes(carol) == [NICK]


async def test_nodes_go_with_the_account(server: Server, login: Login) -> None:
    """A deleted account's PEP data is gone: an account made again with its name has none."""
    from roost.core.jid import JID

    alice = await login("alice", "a")
    await ask(alice, publish(TUNE, TUNE_ITEM, "t", field("pubsub#access_model", "open")))
    carol = await login("carol", "c")
    assert (await ask(carol, items_get(TUNE))).get("type") == "result"
    await server.admin.delete_user(JID.parse("alice@localhost"))
    await server.accounts.create("alice", "localhost", PASSWORDS["alice"])
    assert error_of(await ask(carol, items_get(TUNE)))[1] == "item-not-found"
    again = await login("alice", "again")
    assert error_of(await ask(again, items_get(TUNE)))[1] == "item-not-found"


async def test_bookmarks_0402_and_0048_are_one(server: Server, login: Login) -> None:
    """XEP-0402 §5.3 (#compat): XEP-0049 / XEP-0048 bookmarks and XEP-0402 items are kept
    the same both ways."""
    alice = await login("alice", "a", [])
    disco = await ask(
        alice, f"<iq type='get' to='alice@localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    q = disco.find("query", ns.DISCO_INFO)
    assert q is not None
    assert "urn:xmpp:bookmarks:1#compat" in {f.get("var") for f in q.find_all("feature")}
    old = (
        "<storage xmlns='storage:bookmarks'>"
        "<conference jid='one@muc.localhost' name='One' autojoin='true'>"
        "<nick>al</nick></conference>"
        "<conference jid='two@muc.localhost' autojoin='false'/></storage>"
    )
    reply = await ask(alice, f"<iq type='set'><query xmlns='jabber:iq:private'>{old}</query></iq>")
    assert reply.get("type") == "result"
    reply = await ask(alice, items_get("urn:xmpp:bookmarks:1"))
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None
    assert sorted(item_ids(items)) == ["one@muc.localhost", "two@muc.localhost"]
    by_id = {
        i.get("id"): i.find("conference", "urn:xmpp:bookmarks:1") for i in items.find_all("item")
    }
    one = by_id["one@muc.localhost"]
    assert one is not None and one.get("name") == "One" and one.get("autojoin") == "true"
    nick_el = one.find("nick", "urn:xmpp:bookmarks:1")
    assert nick_el is not None and nick_el.text == "al"

    opts = (
        field("pubsub#persist_items", "true")
        + field("pubsub#max_items", "max")
        + field("pubsub#send_last_published_item", "never")
        + field("pubsub#access_model", "whitelist")
    )
    three = "<conference xmlns='urn:xmpp:bookmarks:1' name='Three' autojoin='true'/>"
    reply = await ask(alice, publish("urn:xmpp:bookmarks:1", three, "three@muc.localhost", opts))
    assert reply.get("type") == "result"
    reply = await ask(
        alice,
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='urn:xmpp:bookmarks:1'>"
        "<item id='two@muc.localhost'/></retract></pubsub></iq>",
    )
    assert reply.get("type") == "result"

    reply = await ask(
        alice,
        "<iq type='get'><query xmlns='jabber:iq:private'>"
        "<storage xmlns='storage:bookmarks'/></query></iq>",
    )
    storage = reply.find("query", "jabber:iq:private").find("storage", "storage:bookmarks")  # type: ignore[union-attr]
    assert storage is not None
    rooms = {
        c.get("jid"): c.get("name") for c in storage.find_all("conference", "storage:bookmarks")
    }
    assert rooms == {"one@muc.localhost": "One", "three@muc.localhost": "Three"}


async def test_vcard_photo_becomes_the_pep_avatar(server: Server, login: Login) -> None:
    """XEP-0398 §2: a vCard PHOTO is published as the XEP-0084 avatar (data, metadata)."""
    import base64
    import hashlib

    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", [])
    bob = await login("bob", "b", notify("urn:xmpp:avatar:metadata"))
    image = b"\x89PNG not really"
    b64 = base64.b64encode(image).decode()
    avatar_id = hashlib.sha1(image).hexdigest()
    reply = await ask(
        alice,
        "<iq type='set'><vCard xmlns='vcard-temp'><FN>Alice</FN>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO></vCard></iq>",
    )
    assert reply.get("type") == "result"
    got = events_in(await drain(bob))
    assert [(i.get("node"), item_ids(i)) for _, _, i in got] == [
        ("urn:xmpp:avatar:metadata", [avatar_id])
    ]
    info = (
        got[0][2]
        .find("item", EVENT)
        .find("metadata", "urn:xmpp:avatar:metadata")
        .find(  # type: ignore[union-attr]
            "info", "urn:xmpp:avatar:metadata"
        )
    )
    assert info is not None and info.get("bytes") == str(len(image))
    reply = await ask(bob, items_get("urn:xmpp:avatar:data"))
    items = reply.find("pubsub", PUBSUB).find("items", PUBSUB)  # type: ignore[union-attr]
    assert items is not None and item_ids(items) == [avatar_id]
    data = items.find("item", PUBSUB).find("data", "urn:xmpp:avatar:data")  # type: ignore[union-attr]
    assert data is not None and base64.b64decode(data.text) == image


async def test_pep_avatar_becomes_the_vcard_photo(server: Server, login: Login) -> None:
    """XEP-0398 §2.1: an XEP-0084 avatar in an ``open`` data node is written into the
    vCard PHOTO (the ``info`` without a url, its data checked against the SHA-1 id); a
    ``presence`` avatar is not (§6: anyone reads vCards); an emptied metadata node removes
    it (XEP-0084 §4.2); the account advertises the conversion (§1)."""
    import base64
    import hashlib

    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", [])
    bob = await login("bob", "b", [])
    info = await ask(
        alice, "<iq type='get' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    query = info.find("query", "http://jabber.org/protocol/disco#info")
    assert query is not None
    assert "urn:xmpp:pep-vcard-conversion:0" in {f.get("var") for f in query.find_all("feature")}

    async def vcard_of_alice(owner: str = "alice") -> Element:
        asker = alice if owner == "bob" else bob
        reply = await ask(
            asker, f"<iq type='get' to='{owner}@localhost'><vCard xmlns='vcard-temp'/></iq>"
        )
        assert reply.get("type") == "result"
        vcard = reply.find("vCard", "vcard-temp")
        assert vcard is not None
        return vcard

    async def publish_avatar(
        image: bytes, access: str, wrong_id: bool = False, who: RawClient | None = None
    ) -> str:
        who = who or alice
        avatar_id = hashlib.sha1(image).hexdigest()
        data_id = hashlib.sha1(b"other").hexdigest() if wrong_id else avatar_id
        b64 = base64.b64encode(image).decode()
        opts = field("pubsub#access_model", access)
        data = f"<data xmlns='urn:xmpp:avatar:data'>{b64}</data>"
        assert (await ask(who, publish("urn:xmpp:avatar:data", data, data_id, opts))).get(
            "type"
        ) == "result"
        metadata = (
            "<metadata xmlns='urn:xmpp:avatar:metadata'>"
            f"<info bytes='{len(image)}' id='{data_id}' type='image/webp' url='https://x.example/a'/>"
            f"<info bytes='{len(image)}' id='{data_id}' type='image/png'/></metadata>"
        )
        assert (
            await ask(who, publish("urn:xmpp:avatar:metadata", metadata, data_id, opts))
        ).get("type") == "result"
        return avatar_id

    # the vCard's other fields stay; the PHOTO is the avatar, with the type of its info
    assert (
        await ask(alice, "<iq type='set'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>")
    ).get("type") == "result"
    await publish_avatar(b"\x89PNG for contacts only", "presence", who=bob)
    assert (await vcard_of_alice("bob")).find("PHOTO", "vcard-temp") is None
    image = b"\x89PNG for everyone"
    await publish_avatar(image, "open")
    vcard = await vcard_of_alice()
    fn = vcard.find("FN", "vcard-temp")
    assert fn is not None and fn.text == "Alice"
    photo = vcard.find("PHOTO", "vcard-temp")
    assert photo is not None
    assert photo.find("TYPE", "vcard-temp").text == "image/png"  # type: ignore[union-attr]
    assert base64.b64decode(photo.find("BINVAL", "vcard-temp").text) == image  # type: ignore[union-attr]
    # data that does not hash to its id is not copied (§2.1 SHOULD verify)
    await publish_avatar(b"\x89PNG lies", "open", wrong_id=True)
    photo = (await vcard_of_alice()).find("PHOTO", "vcard-temp")
    assert photo is not None
    assert base64.b64decode(photo.find("BINVAL", "vcard-temp").text) == image  # type: ignore[union-attr]
    # XEP-0084 §4.2: metadata with no info switches the avatar off
    off = "<metadata xmlns='urn:xmpp:avatar:metadata'/>"
    assert (await ask(alice, publish("urn:xmpp:avatar:metadata", off, "current"))).get(
        "type"
    ) == "result"
    vcard = await vcard_of_alice()
    assert vcard.find("PHOTO", "vcard-temp") is None
    assert vcard.find("FN", "vcard-temp") is not None


async def test_an_empty_update_element_gets_the_avatar_hash(server: Server, login: Login) -> None:
    """XEP-0398 §3: an ``<x xmlns='vcard-temp:x:update'/>`` without ``<photo/>`` MUST be
    overwritten with the hash; an empty ``<photo/>`` (no avatar) is the client's own."""
    await mutual_from(server, "alice", "bob")
    alice = await login("alice", "a", [])
    bob = await login("bob", "b", [])
    avatar_id = "111f4b3c50d7b0df729d299bc6f8e9ef9066971f"
    metadata = (
        "<metadata xmlns='urn:xmpp:avatar:metadata'>"
        f"<info bytes='1' id='{avatar_id}' type='image/png'/></metadata>"
    )
    assert (await ask(alice, publish("urn:xmpp:avatar:metadata", metadata, avatar_id))).get(
        "type"
    ) == "result"
    await drain(bob)
    await alice.send("<presence><x xmlns='vcard-temp:x:update'/></presence>")
    got = [p for p in await drain(bob) if p.tag == "presence"]
    assert len(got) == 1
    xs = got[0].find_all("x", "vcard-temp:x:update")
    assert len(xs) == 1
    photo = xs[0].find("photo", "vcard-temp:x:update")
    assert photo is not None and photo.text == avatar_id
    await alice.send("<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>")
    got = [p for p in await drain(bob) if p.tag == "presence"]
    photo = got[0].find("x", "vcard-temp:x:update").find("photo", "vcard-temp:x:update")  # type: ignore[union-attr]
    assert photo is not None and photo.text == ""
