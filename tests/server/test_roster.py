"""RFC 6121 §2 roster management end to end with raw XML: get, set, remove, pushes, errors
(each with its XEP-0086 code) and versioning (§2.6).

The server here has small roster limits so that the "too long" and "full" cases are cheap.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import Logins, RawClient, drain, quiet, start_server

MAX_ITEMS = 4
MAX_NAME = 10
MAX_GROUP = 8
_ids = itertools.count()

Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(
        tmp_path,
        roster={"max_items": MAX_ITEMS, "max_name_length": MAX_NAME, "max_group_length": MAX_GROUP},
    )
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    yield srv
    await srv.stop()


@pytest.fixture
async def connect(server: Server) -> AsyncIterator[Connect]:
    """Log in ``user/resource``; optionally send initial presence and fetch the roster."""
    logins = Logins(server)

    async def make(
        user: str, resource: str, *, available: bool = False, roster: bool = True
    ) -> RawClient:
        c = await logins(user, resource, available=available)
        if roster:
            await roster_get(c)
        return c

    yield make
    await logins.close()


# -- helpers --------------------------------------------------------------------------------


async def request(c: RawClient, iq: str, iid: str) -> tuple[Element, list[Element]]:
    """Send an iq; return its answer and whatever else arrived up to a ping barrier."""
    await c.send(iq)
    others: list[Element] = []
    while True:
        el = await c.next()
        if el.tag == "iq" and el.get("id") == iid and el.get("type") in ("result", "error"):
            break
        others.append(el)
    others += await drain(c)
    return el, others


async def roster_get(c: RawClient, ver: str | None = None, to: str | None = None) -> Element:
    iid = f"get{next(_ids)}"
    v = "" if ver is None else f" ver='{ver}'"
    t = "" if to is None else f" to='{to}'"
    el, others = await request(
        c, f"<iq type='get' id='{iid}'{t}><query xmlns='{ns.ROSTER}'{v}/></iq>", iid
    )
    assert others == [], [serialize(e) for e in others]
    return el


async def roster_set(
    c: RawClient, items: str, to: str | None = None
) -> tuple[Element, list[Element]]:
    """A roster set with the given ``<item/>`` markup: (answer, pushes to ``c``)."""
    iid = f"set{next(_ids)}"
    t = "" if to is None else f" to='{to}'"
    return await request(
        c, f"<iq type='set' id='{iid}'{t}><query xmlns='{ns.ROSTER}'>{items}</query></iq>", iid
    )


def items_of(result: Element) -> dict[str, Element]:
    assert result.get("type") == "result", serialize(result)
    query = result.find("query", ns.ROSTER)
    assert query is not None, serialize(result)
    return {i.get("jid") or "": i for i in query.find_all("item", ns.ROSTER)}


def version(result: Element) -> str:
    query = result.find("query", ns.ROSTER)
    assert query is not None, serialize(result)
    ver = query.get("ver")
    assert ver, serialize(result)  # §2.6.3: versioning is on, so every result carries it
    return ver


def groups(item: Element) -> list[str]:
    return [g.text for g in item.find_all("group", ns.ROSTER)]


def assert_result(el: Element, to: str) -> None:
    """§2.3.2: an empty IQ result to the requesting resource."""
    assert el.get("type") == "result", serialize(el)
    assert el.get("to") == to, serialize(el)
    assert el.find() is None, serialize(el)


def assert_push(el: Element, to: str) -> tuple[str, Element]:
    """§2.1.6: an iq set with one item, from the account itself (or no 'from')."""
    assert el.tag == "iq" and el.get("type") == "set", serialize(el)
    assert el.get("id"), serialize(el)
    assert el.get("to") == to, serialize(el)
    assert el.get("from") in (None, to.split("/")[0]), serialize(el)
    query = el.find("query", ns.ROSTER)
    assert query is not None, serialize(el)
    items = query.find_all()
    assert len(items) == 1 and items[0].tag == "item", serialize(el)
    return version(el), items[0]


def assert_error(el: Element, condition: str, etype: str, code: str) -> None:
    """A stanza error with the RFC 6120 condition and type and the XEP-0086 code."""
    assert el.get("type") == "error", serialize(el)
    err = el.find("error", ns.CLIENT)
    assert err is not None, serialize(el)
    conds = [c.tag for c in err.elements() if c.ns == ns.STANZAS and c.tag != "text"]
    assert conds == [condition], serialize(el)
    assert err.get("type") == etype, serialize(el)
    assert err.get("code") == code, serialize(el)


# -- get ------------------------------------------------------------------------------------


async def test_get_empty_roster(connect: Connect) -> None:
    alice = await connect("alice", "a", roster=False)
    el = await roster_get(alice)
    assert el.get("to") == "alice@localhost/a"
    assert items_of(el) == {}
    version(el)


async def test_get_with_items_is_bad_request(connect: Connect) -> None:
    alice = await connect("alice", "a")
    el, others = await request(
        alice,
        f"<iq type='get' id='g1'><query xmlns='{ns.ROSTER}'><item jid='bob@localhost'/>"
        "</query></iq>",
        "g1",
    )
    assert_error(el, "bad-request", "modify", "400")
    assert others == []


async def test_get_addressed_to_own_bare_jid(connect: Connect) -> None:
    alice = await connect("alice", "a")
    el = await roster_get(alice, to="alice@localhost")
    assert items_of(el) == {}


# -- set: add, update, remove, pushes -------------------------------------------------------


async def test_add_update_remove_with_pushes(connect: Connect) -> None:
    a = await connect("alice", "a", available=True)
    b = await connect("alice", "b")  # fetched the roster, no presence: still interested
    c = await connect("alice", "c", available=True, roster=False)  # never asked: no pushes
    bob = await connect("bob", "b", available=True)
    await drain(a)
    await drain(c)
    v0 = version(await roster_get(a))

    # Add (§2.3): an empty result to the sender, a push to every interested resource.
    el, pushes_a = await roster_set(
        a, "<item jid='bob@localhost' name='Bob'><group>Friends</group><group>Work</group></item>"
    )
    assert_result(el, "alice@localhost/a")
    assert len(pushes_a) == 1, [serialize(p) for p in pushes_a]
    v1, item = assert_push(pushes_a[0], "alice@localhost/a")
    assert v1 != v0
    assert item.attrs == {"jid": "bob@localhost", "name": "Bob", "subscription": "none"}
    assert groups(item) == ["Friends", "Work"]
    pushes_b = await drain(b)
    assert len(pushes_b) == 1
    assert assert_push(pushes_b[0], "alice@localhost/b")[0] == v1
    await quiet(c, bob)

    got = await roster_get(b)
    assert version(got) == v1
    assert list(items_of(got)) == ["bob@localhost"]
    assert items_of(got)["bob@localhost"].get("name") == "Bob"
    assert groups(items_of(got)["bob@localhost"]) == ["Friends", "Work"]

    # Update (§2.4) from the other resource: name and groups replaced.
    el, pushes_b = await roster_set(
        b, "<item jid='bob@localhost' name='Robert'><group>Family</group></item>"
    )
    assert_result(el, "alice@localhost/b")
    assert len(pushes_b) == 1
    v2, item = assert_push(pushes_b[0], "alice@localhost/b")
    assert v2 not in (v0, v1)
    assert item.get("name") == "Robert" and groups(item) == ["Family"]
    pushes_a = await drain(a)
    assert len(pushes_a) == 1
    assert assert_push(pushes_a[0], "alice@localhost/a") == (v2, item)

    # No name, no groups: both cleared.
    el, pushes_a = await roster_set(a, "<item jid='bob@localhost'/>")
    assert_result(el, "alice@localhost/a")
    _, item = assert_push(pushes_a[0], "alice@localhost/a")
    assert item.get("name") is None and groups(item) == []
    await drain(b)

    # Remove (§2.5): a push with subscription='remove'.
    el, pushes_a = await roster_set(a, "<item jid='bob@localhost' subscription='remove'/>")
    assert_result(el, "alice@localhost/a")
    assert len(pushes_a) == 1
    v4, item = assert_push(pushes_a[0], "alice@localhost/a")
    assert item.attrs == {"jid": "bob@localhost", "subscription": "remove"}
    pushes_b = await drain(b)
    assert len(pushes_b) == 1
    assert assert_push(pushes_b[0], "alice@localhost/b") == (v4, item)
    got = await roster_get(a)
    assert items_of(got) == {}
    assert version(got) == v4
    # The contact is not told about a roster item with no subscription (§2.5.2).
    await quiet(a, b, c, bob)


async def test_full_jid_in_set_is_stored_bare(connect: Connect) -> None:
    alice = await connect("alice", "a")
    el, pushes = await roster_set(alice, "<item jid='bob@localhost/phone' name='B'/>")
    assert_result(el, "alice@localhost/a")
    assert assert_push(pushes[0], "alice@localhost/a")[1].get("jid") == "bob@localhost"


@pytest.mark.parametrize("sub", ["both", "from", "to", "none"])
async def test_subscription_attribute_in_set_is_ignored(connect: Connect, sub: str) -> None:
    """§2.1.2.5: in a set the server MUST ignore subscription values other than remove
    (and 'ask', §2.1.2.2, is never set by a client)."""
    alice = await connect("alice", "a")
    el, pushes = await roster_set(
        alice, f"<item jid='carol@localhost' subscription='{sub}' ask='subscribe'/>"
    )
    assert_result(el, "alice@localhost/a")
    _, item = assert_push(pushes[0], "alice@localhost/a")
    assert item.attrs == {"jid": "carol@localhost", "subscription": "none"}
    stored = items_of(await roster_get(alice))["carol@localhost"]
    assert stored.attrs == {"jid": "carol@localhost", "subscription": "none"}


async def test_set_keeps_subscription_state(connect: Connect) -> None:
    """Renaming an item with a pending subscription keeps subscription and ask."""
    alice = await connect("alice", "a")
    await alice.send("<presence type='subscribe' to='bob@localhost'/>")
    await drain(alice)  # the subscription's roster push (a barrier: spawned work is done)
    el, pushes = await roster_set(alice, "<item jid='bob@localhost' subscription='both' name='B'/>")
    assert_result(el, "alice@localhost/a")
    _, item = assert_push(pushes[0], "alice@localhost/a")
    assert item.attrs == {
        "jid": "bob@localhost",
        "name": "B",
        "subscription": "none",
        "ask": "subscribe",
    }


# -- set: errors ----------------------------------------------------------------------------

LONG_NAME = "n" * (MAX_NAME + 1)
LONG_GROUP = "g" * (MAX_GROUP + 1)

SET_ERRORS = {
    # §2.3.3: exactly one item
    "two-items": (
        "<item jid='bob@localhost'/><item jid='carol@localhost'/>",
        "bad-request",
        "modify",
        "400",
    ),
    "no-item": ("", "bad-request", "modify", "400"),
    # §2.3.3 bad-request item 2
    "duplicate-groups": (
        "<item jid='bob@localhost'><group>G</group><group>G</group></item>",
        "bad-request",
        "modify",
        "400",
    ),
    # §2.3.3 not-acceptable items 1-3
    "empty-group": (
        "<item jid='bob@localhost'><group>A</group><group/></item>",
        "not-acceptable",
        "modify",
        "406",
    ),
    "empty-group-open-close": (
        "<item jid='bob@localhost'><group></group></item>",
        "not-acceptable",
        "modify",
        "406",
    ),
    "long-name": (
        f"<item jid='bob@localhost' name='{LONG_NAME}'/>",
        "not-acceptable",
        "modify",
        "406",
    ),
    "long-group": (
        f"<item jid='bob@localhost'><group>{LONG_GROUP}</group></item>",
        "not-acceptable",
        "modify",
        "406",
    ),
    "no-jid": ("<item name='x'/>", "bad-request", "modify", "400"),
    # §2.5.3
    "remove-unknown": (
        "<item jid='nobody@localhost' subscription='remove'/>",
        "item-not-found",
        "cancel",
        "404",
    ),
}


@pytest.mark.parametrize("case", list(SET_ERRORS))
async def test_set_errors(connect: Connect, case: str) -> None:
    items, condition, etype, code = SET_ERRORS[case]
    a = await connect("alice", "a")
    b = await connect("alice", "b")
    el, pushes = await roster_set(a, items)
    assert_error(el, condition, etype, code)
    assert el.get("to") == "alice@localhost/a"
    assert pushes == []
    await quiet(b)
    assert items_of(await roster_get(a)) == {}


async def test_limits_are_inclusive(connect: Connect) -> None:
    alice = await connect("alice", "a")
    name, group = "n" * MAX_NAME, "g" * MAX_GROUP
    el, pushes = await roster_set(
        alice, f"<item jid='bob@localhost' name='{name}'><group>{group}</group></item>"
    )
    assert_result(el, "alice@localhost/a")
    _, item = assert_push(pushes[0], "alice@localhost/a")
    assert item.get("name") == name and groups(item) == [group]


async def test_name_length_counts_characters(connect: Connect) -> None:
    """A limit on the name is on characters: multi-byte text of MAX_NAME characters fits."""
    alice = await connect("alice", "a")
    el, _ = await roster_set(alice, f"<item jid='bob@localhost' name='{'é' * MAX_NAME}'/>")
    assert_result(el, "alice@localhost/a")


async def test_roster_full_is_not_allowed(connect: Connect) -> None:
    alice = await connect("alice", "a")
    for i in range(MAX_ITEMS):
        el, _ = await roster_set(alice, f"<item jid='c{i}@localhost'/>")
        assert_result(el, "alice@localhost/a")
    el, pushes = await roster_set(alice, "<item jid='one-more@localhost'/>")
    assert_error(el, "not-allowed", "cancel", "405")
    assert pushes == []
    # Updating an existing item is still fine; after a removal there is room again.
    el, _ = await roster_set(alice, "<item jid='c0@localhost' name='zero'/>")
    assert_result(el, "alice@localhost/a")
    el, _ = await roster_set(alice, "<item jid='c1@localhost' subscription='remove'/>")
    assert_result(el, "alice@localhost/a")
    el, _ = await roster_set(alice, "<item jid='one-more@localhost'/>")
    assert_result(el, "alice@localhost/a")
    assert len(items_of(await roster_get(alice))) == MAX_ITEMS


async def test_roster_full_also_limits_subscription_requests(connect: Connect) -> None:
    """An outbound subscribe creates an item too; a full roster does not grow past the limit."""
    alice = await connect("alice", "a")
    for i in range(MAX_ITEMS):
        await roster_set(alice, f"<item jid='c{i}@localhost'/>")
    await alice.send("<presence type='subscribe' to='bob@localhost'/>")
    await drain(alice)  # the subscription's roster push (a barrier: spawned work is done)
    assert len(items_of(await roster_get(alice))) <= MAX_ITEMS


@pytest.mark.parametrize("to", ["bob@localhost", "bob@localhost/b"])
@pytest.mark.parametrize("itype", ["get", "set"])
async def test_other_users_roster_is_forbidden(connect: Connect, itype: str, to: str) -> None:
    """§2.1.3 / §2.3.3: only the account itself may read or change its roster."""
    alice = await connect("alice", "a")
    bob = await connect("bob", "b", available=True)
    await drain(bob)
    payload = "" if itype == "get" else "<item jid='alice@localhost' name='evil'/>"
    iq = f"<iq type='{itype}' id='x1' to='{to}'><query xmlns='{ns.ROSTER}'>{payload}</query></iq>"
    if to == "bob@localhost":
        el, others = await request(alice, iq, "x1")
        assert_error(el, "forbidden", "auth", "403")
        assert el.get("from") == "bob@localhost"
        assert others == []
        await quiet(bob)
    else:
        # To bob's full JID the request goes to bob's client (RFC 6121 §8.5.3.1), which
        # answers it; the server does not touch bob's roster.
        await alice.send(iq)
        got = await bob.expect(lambda e: e.tag == "iq")
        assert got.get("from") == "alice@localhost/a" and got.get("id") == "x1"
    assert items_of(await roster_get(bob)) == {}


# -- versioning (§2.6) ----------------------------------------------------------------------


async def test_versioning(connect: Connect) -> None:
    first = await connect("alice", "first", roster=False)
    v0 = version(await roster_get(first))
    el, _ = await roster_set(first, "<item jid='bob@localhost' name='Bob'/>")
    assert_result(el, "alice@localhost/first")
    v1 = version(await roster_get(first))
    assert v1 != v0

    # Up to date: an empty result (no <query/>), then only pushes.
    current = await connect("alice", "current", roster=False)
    el = await roster_get(current, ver=v1)
    assert_result(el, "alice@localhost/current")
    el, _ = await roster_set(first, "<item jid='carol@localhost'/>")
    assert_result(el, "alice@localhost/first")
    pushes = await drain(current)
    assert len(pushes) == 1, [serialize(p) for p in pushes]
    v2, item = assert_push(pushes[0], "alice@localhost/current")
    assert item.get("jid") == "carol@localhost"
    assert v2 not in (v0, v1)

    # Stale, empty or unknown versions: the whole roster with the latest version.
    for ver in (v0, v1, "", "no-such-version"):
        client = await connect("alice", f"r{next(_ids)}", roster=False)
        el = await roster_get(client, ver=ver)
        assert version(el) == v2
        assert sorted(items_of(el)) == ["bob@localhost", "carol@localhost"]
        assert items_of(el)["bob@localhost"].get("name") == "Bob"
        await client.close()

    # An unchanged roster stays unchanged: the same version later.
    assert version(await roster_get(first)) == v2


async def test_version_survives_restart(tmp_path: Path) -> None:
    limits = {"max_items": MAX_ITEMS}
    srv = await start_server(tmp_path, roster=limits)
    await srv.accounts.create("alice", "localhost", PASSWORDS["alice"])
    c = await RawClient.connect(srv)
    await c.login("alice", PASSWORDS["alice"], "a")
    await roster_set(c, "<item jid='bob@localhost'/>")
    ver = version(await roster_get(c))
    await c.close()
    await srv.stop()

    srv = await start_server(tmp_path, roster=limits)
    try:
        c = await RawClient.connect(srv)
        await c.login("alice", PASSWORDS["alice"], "a")
        assert_result(await roster_get(c, ver=ver), "alice@localhost/a")
        el, _ = await roster_set(c, "<item jid='carol@localhost'/>")
        assert_result(el, "alice@localhost/a")
        newer = version(await roster_get(c))
        assert newer != ver
        await c.close()
    finally:
        await srv.stop()
