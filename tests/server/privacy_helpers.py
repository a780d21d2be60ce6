"""Helpers shared by the XEP-0191 and XEP-0016 raw-XML tests."""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable

from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.storage.api import RosterItem
from tests.helpers import RawClient, drain
from tests.helpers import quiet as quiet  # "nothing (more) arrived", for the privacy tests

STANZAS = "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'"
BLOCKING = "urn:xmpp:blocking"
PRIVACY = "jabber:iq:privacy"
_ids = itertools.count()

Login = Callable[..., Awaitable[RawClient]]


async def settled(c: RawClient) -> list[str]:
    """What arrived at ``c`` up to a barrier that also waits for the server's spawned work
    (``drain``), ids of pushes masked."""
    return [shape(e) for e in await drain(c)]


async def ask(c: RawClient, xml: str) -> tuple[str, list[str]]:
    """Send one iq; return its serialized reply and what came before it (pushes, masked)."""
    iq_id = re.search(r"id='([^']+)'", xml)
    assert iq_id is not None
    await c.send(xml)
    before: list[str] = []
    while True:
        el = await c.next()
        if el.tag == "iq" and el.get("id") == iq_id.group(1):
            return serialize(el), before
        before.append(shape(el))


def shape(el: Element) -> str:
    """Serialized, with the server-chosen id of a push replaced by ``*``."""
    text = serialize(el)
    if el.tag == "iq" and el.get("type") == "set":
        text = text.replace(f"id='{el.get('id')}'", "id='*'", 1)
    return text


def error(etype: str, code: str, condition: str, extra: str = "") -> str:
    return f"<error type='{etype}' code='{code}'><{condition} {STANZAS}/>{extra}</error>"


BLOCKED_ERROR = error("cancel", "406", "not-acceptable", f"<blocked xmlns='{BLOCKING}:errors'/>")
UNAVAILABLE_ERROR = error("cancel", "503", "service-unavailable")


def block_push(to: str, verb: str, *jids: str) -> str:
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    body = (
        f"<{verb} xmlns='{BLOCKING}'>{items}</{verb}>" if items else f"<{verb} xmlns='{BLOCKING}'/>"
    )
    return f"<iq type='set' id='*' to='{to}'>{body}</iq>"


def list_push(to: str, name: str) -> str:
    query = f"<query xmlns='{PRIVACY}'><list name='{name}'/></query>"
    return f"<iq type='set' id='*' to='{to}'>{query}</iq>"


async def seed(
    server: Server, user: str, contact: str, subscription: str, groups: tuple[str, ...] = ()
) -> None:
    """Put ``contact`` in ``user``'s stored roster (before ``user`` logs in)."""
    item = RosterItem(f"{contact}@localhost", subscription=subscription, groups=groups)
    await server.storage.put_roster_item(user, "localhost", item)


async def friends(server: Server, a: str, b: str) -> None:
    """``a`` and ``b`` subscribed to each other's presence."""
    await seed(server, a, b, "both")
    await seed(server, b, a, "both")


def chat(to: str, text: str, mid: str = "m1") -> str:
    return f"<message to='{to}' id='{mid}' type='chat'><body>{text}</body></message>"
