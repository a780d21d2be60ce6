"""Privacy lists as data (XEP-0016 §2.1-2.2, XEP-0191 §5): matching, kinds, codec, blocklist."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from roost.core.errors import StanzaError
from roost.core.im.privacy import (
    OTHER,
    PRIVACY,
    Contact,
    ItemType,
    Kind,
    PrivacyItem,
    PrivacyList,
    blocked_error,
    jid_matches,
    list_element,
    list_from_json,
    list_to_json,
    parse_list,
    stanza_kind,
    with_blocked,
    without_blocked,
)
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize

PEER = JID.parse("romeo@example.net/orchard")


@pytest.mark.parametrize(
    ("value", "peer", "matches"),
    [
        ("romeo@example.net/orchard", PEER, True),  # 1. full JID: only that resource
        ("romeo@example.net/balcony", PEER, False),
        ("romeo@example.net", PEER, True),  # 2. bare JID: any resource
        ("romeo@example.net", JID.parse("romeo@example.net"), True),
        ("romeo@example.net/orchard", JID.parse("romeo@example.net"), False),
        ("example.net/orchard", PEER, True),  # 3. domain/resource
        ("example.net/orchard", JID.parse("example.net/orchard"), True),
        ("example.net/balcony", PEER, False),
        ("example.net", PEER, True),  # 4. domain: the domain, its users, their resources
        ("example.net", JID.parse("example.net"), True),
        ("example.net", JID.parse("example.net/x"), True),
        ("example.net", JID.parse("montague.example.net"), False),  # no subdomains
        ("juliet@example.net", PEER, False),
        ("example.com", PEER, False),
    ],
)
def test_jid_matching(value: str, peer: JID, matches: bool) -> None:
    assert jid_matches(JID.parse(value), peer) is matches


@pytest.mark.parametrize(
    ("xml", "inbound", "kind"),
    [
        ("<message/>", True, Kind.MESSAGE),
        ("<message/>", False, OTHER),  # <message/> names incoming messages only
        ("<iq type='get'/>", True, Kind.IQ),
        ("<iq type='get'/>", False, OTHER),
        ("<presence/>", True, Kind.PRESENCE_IN),
        ("<presence type='unavailable'/>", True, Kind.PRESENCE_IN),
        ("<presence/>", False, Kind.PRESENCE_OUT),
        ("<presence type='subscribe'/>", True, OTHER),  # not a notification
        ("<presence type='probe'/>", False, OTHER),
        ("<presence type='error'/>", True, OTHER),
        ("<thing/>", True, OTHER),
    ],
)
def test_stanza_kind(xml: str, inbound: bool, kind: Kind) -> None:
    assert stanza_kind(parse_fragment(xml), inbound=inbound) == kind


def _roster(entries: dict[str, Contact]) -> Callable[[str], Contact | None]:
    return entries.get


def test_first_item_by_order_decides() -> None:
    lst = PrivacyList(
        "l",
        (
            PrivacyItem(20, False),  # fall-through, last
            PrivacyItem(5, True, ItemType.GROUP, "Friends"),
            PrivacyItem(10, False, ItemType.SUBSCRIPTION, "none", Kind.MESSAGE),
            PrivacyItem(1, False, ItemType.JID, "tybalt@example.com"),
        ),
    )
    assert [i.order for i in lst.items] == [1, 5, 10, 20]
    roster = _roster({"romeo@example.net": ("both", ("Friends",)), "nurse@x": ("to", ())})
    decide = lst.decide
    assert decide(Kind.MESSAGE, PEER, roster) == lst.items[1]  # group allows
    assert decide(Kind.MESSAGE, JID.parse("paris@x"), roster) == lst.items[2]  # not in roster
    assert decide(Kind.IQ, JID.parse("paris@x"), roster) == lst.items[3]  # message-only skipped
    assert decide(Kind.IQ, JID.parse("tybalt@example.com/r"), roster) == lst.items[0]
    # "both" means both (XEP-0016 §2.1): "to" is not "none" either
    assert decide(Kind.MESSAGE, JID.parse("nurse@x"), roster) == lst.items[3]
    assert PrivacyList("empty").decide(Kind.MESSAGE, PEER, roster) is None


def test_roster_looked_up_once_and_only_when_needed() -> None:
    calls: list[str] = []

    def roster(jid: str) -> Contact | None:
        calls.append(jid)
        return None

    lst = PrivacyList(
        "l",
        (
            PrivacyItem(1, False, ItemType.JID, "x@y"),
            PrivacyItem(2, False, ItemType.GROUP, "G"),
            PrivacyItem(3, False, ItemType.SUBSCRIPTION, "both"),
        ),
    )
    assert lst.needs_roster
    assert lst.decide(Kind.MESSAGE, JID.parse("x@y/z"), roster) is lst.items[0]
    assert calls == []
    assert lst.decide(Kind.MESSAGE, PEER, roster) is None
    assert calls == ["romeo@example.net"]
    assert not PrivacyList("j", (PrivacyItem(1, False, ItemType.JID, "x@y"),)).needs_roster


def test_parse_and_serialize() -> None:
    el = parse_fragment(
        f"<list xmlns='{PRIVACY}' name='public'>"
        "<item type='jid' value='Tybalt@Example.COM' action='deny' order='3'><iq/><message/></item>"
        "<item action='allow' order='68'/>"
        "<item value='ignored' action='deny' order='4'/>"
        "</list>"
    )
    lst = parse_list(el, max_items=10)
    assert lst.items[0].value == "tybalt@example.com"
    assert lst.items[0].kinds == Kind.MESSAGE | Kind.IQ
    assert lst.items[1].value is None  # a value without a type falls through
    assert serialize(list_element(lst), PRIVACY) == (
        "<list name='public'>"
        "<item type='jid' value='tybalt@example.com' action='deny' order='3'><message/><iq/></item>"
        "<item action='deny' order='4'/>"
        "<item action='allow' order='68'/></list>"
    )
    assert serialize(list_element(lst, items=False), PRIVACY) == "<list name='public'/>"
    assert list_from_json("public", list_to_json(lst)) == lst


@pytest.mark.parametrize(
    ("body", "condition"),
    [
        ("<item action='deny' order='1'/><item action='allow' order='1'/>", "bad-request"),
        ("<item action='deny' order='4294967296'/>", "bad-request"),
        ("<item action='deny' order='1.5'/>", "bad-request"),
        ("<item action='deny' order='1'><message/><message/></item>", "bad-request"),
        ("<item type='group' action='deny' order='1'/>", "bad-request"),
        ("<item type='jid' value='@x' action='deny' order='1'/>", "jid-malformed"),
        ("<other/>", "bad-request"),
        ("<item action='deny' order='1'/>" * 3, "not-allowed"),
    ],
)
def test_parse_errors(body: str, condition: str) -> None:
    el = parse_fragment(f"<list xmlns='{PRIVACY}' name='x'>{body}</list>")
    with pytest.raises(StanzaError) as exc:
        parse_list(el, max_items=2)
    assert exc.value.condition.value == condition


def test_list_name_required() -> None:
    with pytest.raises(StanzaError):
        parse_list(Element("list", PRIVACY), max_items=1)


def test_invalid_values_refused() -> None:
    with pytest.raises(ValueError):
        PrivacyItem(1, False, None, "value")
    with pytest.raises(ValueError):
        PrivacyItem(-1, False)
    with pytest.raises(ValueError):
        PrivacyItem(1, False, ItemType.SUBSCRIPTION, "some")
    with pytest.raises(ValueError):
        list_from_json("x", "{}")


def test_blocklist_view() -> None:
    lst = PrivacyList(
        "l",
        (
            PrivacyItem(5, False, ItemType.JID, "a@x"),
            PrivacyItem(6, False, ItemType.JID, "b@x", Kind.MESSAGE),  # not everything
            PrivacyItem(7, True, ItemType.JID, "c@x"),  # allow
            PrivacyItem(8, False),
        ),
    )
    assert lst.blocked() == ["a@x"]
    # room below the lowest order: new items go there, the rest is untouched
    added = with_blocked(lst, ["d@x", "e@x"])
    assert [(i.order, i.value) for i in added.items[:3]] == [(3, "d@x"), (4, "e@x"), (5, "a@x")]
    assert added.blocked() == ["d@x", "e@x", "a@x"]
    # no room: renumbered, new first, sequence kept
    crowded = PrivacyList("c", (PrivacyItem(0, True), PrivacyItem(1, False, ItemType.JID, "a@x")))
    again = with_blocked(crowded, ["z@x"])
    assert [(i.order, i.value, i.allow) for i in again.items] == [
        (0, "z@x", False),
        (1, None, True),
        (2, "a@x", False),
    ]
    assert with_blocked(lst, []) is lst
    assert without_blocked(added, ["d@x"]).blocked() == ["e@x", "a@x"]
    assert without_blocked(added, None).blocked() == []
    assert len(without_blocked(added, None).items) == 3
    assert without_blocked(lst, ["nobody@x"]) is lst


def test_blocked_error_element() -> None:
    assert serialize(blocked_error(blocklist=True).to_element()) == (
        "<error type='cancel' code='406'>"
        "<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<blocked xmlns='urn:xmpp:blocking:errors'/></error>"
    )
    assert "blocked" not in serialize(blocked_error(blocklist=False).to_element())
