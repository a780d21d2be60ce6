"""Helpers for the PEP tests: clients announcing XEP-0115 caps (answering the server's
check), seeded rosters, pubsub requests as raw XML."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from roost.core import ns
from roost.core.caps import CAPS, caps_hash
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.storage.api import RosterItem
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, drain

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = "http://jabber.org/protocol/pubsub#owner"
EVENT = "http://jabber.org/protocol/pubsub#event"
ERRORS = "http://jabber.org/protocol/pubsub#errors"
TUNE = "http://jabber.org/protocol/tune"
NICK = "http://jabber.org/protocol/nick"
CLIENT_NODE = "https://example.org/testclient"
_ids = itertools.count()

Login = Callable[..., Awaitable[RawClient]]


def caps_info(features: list[str]) -> Element:
    query = Element("query", ns.DISCO_INFO)
    query.sub("identity", attrs={"category": "client", "type": "pc"})
    for var in sorted({ns.DISCO_INFO, *features}):
        query.sub("feature", attrs={"var": var})
    return query


async def announce(c: RawClient, features: list[str]) -> None:
    """Send available presence with caps for ``features`` and answer the server's disco#info
    check (XEP-0115 §5.4); each client's features differ, so each is asked."""
    info = caps_info([*features, f"urn:test:{c.jid}"])
    ver = caps_hash(info)
    await c.send(
        f"<presence><c xmlns='{CAPS}' hash='sha-1' node='{CLIENT_NODE}' ver='{ver}'/></presence>"
    )
    node = f"{CLIENT_NODE}#{ver}"
    iq = await c.expect(
        lambda e: (
            e.tag == "iq"
            and e.get("type") == "get"
            and (q := e.find("query", ns.DISCO_INFO)) is not None
            and q.get("node") == node
        )
    )
    info.attrs["node"] = node
    reply = Element(
        "iq", ns.CLIENT, {"type": "result", "id": iq.get("id") or "", "to": "localhost"}
    )
    reply.append(info)
    await c.send(reply)


def notify(*nodes: str) -> list[str]:
    return [f"{n}+notify" for n in nodes]


async def seed(
    server: Server, user: str, contact: str, sub: str, groups: tuple[str, ...] = ()
) -> None:
    """``user``'s roster has ``contact`` with ``sub`` (seed both sides before logging in)."""
    item = RosterItem(f"{contact}@localhost", subscription=sub, groups=groups)
    await server.storage.put_roster_item(user, "localhost", item)


async def mutual_from(
    server: Server, owner: str, contact: str, groups: tuple[str, ...] = ()
) -> None:
    """``contact`` is subscribed to ``owner``'s presence."""
    await seed(server, owner, contact, "from", groups)
    await seed(server, contact, owner, "to")


@pytest.fixture
async def login(server: Server) -> AsyncIterator[Login]:
    made: list[RawClient] = []

    async def make(user: str, resource: str, features: list[str] | None = None) -> RawClient:
        """Log in; with ``features``, be available with caps listing them."""
        c = await RawClient.connect(server)
        made.append(c)
        await c.login(user, PASSWORDS[user], resource)
        if features is not None:
            await announce(c, features)
            await drain(c)
        return c

    yield make
    for c in made:
        if not c.writer.is_closing():
            await c.close()


async def ask(c: RawClient, xml: str) -> Element:
    """Send an iq (its id is 'q'), return the answer."""
    iq_id = f"q{next(_ids)}"
    el = parse_fragment(xml)
    el.attrs["id"] = iq_id
    await c.send(el)
    seen = 0
    while True:  # leave whatever else arrives (notifications) in ``events``
        for i in range(seen, len(c.events)):
            got = getattr(c.events[i], "element", None)
            if got is not None and got.tag == "iq" and got.get("id") == iq_id:
                del c.events[i]
                return got
        seen = len(c.events)
        await c._read()


def publish(node: str, payload: str, item_id: str | None = None, options: str = "") -> str:
    id_attr = f" id='{item_id}'" if item_id else ""
    opts = ""
    if options:
        opts = (
            f"<publish-options><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>"
            f"{options}</x></publish-options>"
        )
    return (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
        f"<item{id_attr}>{payload}</item></publish>{opts}</pubsub></iq>"
    )


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


def error_of(iq: Element) -> tuple[str, str, str | None]:
    """(type, condition, pubsub condition) of an error reply."""
    assert iq.get("type") == "error", serialize(iq)
    err = iq.find("error", ns.CLIENT)
    assert err is not None
    cond = next(c.tag for c in err.elements() if c.ns == ns.STANZAS and c.tag != "text")
    app = next((c.tag for c in err.elements() if c.ns == ERRORS), None)
    return err.get("type") or "", cond, app


def events_in(stanzas: list[Element]) -> list[tuple[str, str, Element]]:
    """(from, to, event child) of every pubsub notification among ``stanzas``."""
    out = []
    for s in stanzas:
        if s.tag == "message" and (ev := s.find("event", EVENT)) is not None:
            assert s.get("type") == "headline"
            child = next(ev.elements())
            out.append((s.get("from") or "", s.get("to") or "", child))
    return out


def item_ids(items: Element) -> list[str]:
    return [i.get("id") or "" for i in items.find_all("item")]


def items_get(node: str, owner: str = "alice@localhost") -> str:
    """XEP-0060 §6.5.2: all items of a node."""
    return (
        f"<iq type='get' to='{owner}'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"
    )
