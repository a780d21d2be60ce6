"""XEP-0425 payloads, pure: the moderator's request, the room's notice, the tombstone."""

from __future__ import annotations

import pytest

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.moderation import (
    MODERATE,
    RETRACT,
    announcement,
    parse_moderate,
    tombstone,
)
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize

ROOM = "room@muc.example.com"


def test_request_as_in_the_xep() -> None:
    """XEP-0425 §3, the moderator's iq payload."""
    el = parse_fragment(
        f"<moderate id='stanza-id-1' xmlns='{MODERATE}'><retract xmlns='{RETRACT}'/>"
        "<reason>This message contains inappropriate content for this forum</reason>"
        "</moderate>"
    )
    req = parse_moderate(el)
    assert req.stanza_id == "stanza-id-1"
    assert req.reason == "This message contains inappropriate content for this forum"
    bare = parse_moderate(
        parse_fragment(
            f"<moderate id='x' xmlns='{MODERATE}'><retract xmlns='{RETRACT}'/></moderate>"
        )
    )
    assert bare.reason is None


@pytest.mark.parametrize(
    ("xml", "condition"),
    [
        (f"<moderate xmlns='{MODERATE}'><retract xmlns='{RETRACT}'/></moderate>", "BAD_REQUEST"),
        (f"<moderate id='x' xmlns='{MODERATE}'/>", "FEATURE_NOT_IMPLEMENTED"),
    ],
)
def test_bad_requests(xml: str, condition: str) -> None:
    with pytest.raises(StanzaError) as err:
        parse_moderate(parse_fragment(xml))
    assert err.value.condition is StanzaErrorCondition[condition]


def test_announcement_is_a_retraction_with_a_fallback() -> None:
    """XEP-0425 §3.1 with XEP-0424 §3's fallback body."""
    msg = announcement("stanza-id-1", f"{ROOM}/macbeth", "dd72", "spam")
    assert serialize(msg) == (
        "<message type='groupchat'>"
        f"<retract xmlns='{RETRACT}' id='stanza-id-1'>"
        f"<moderated xmlns='{MODERATE}' by='{ROOM}/macbeth'>"
        "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='dd72'/></moderated>"
        "<reason>spam</reason></retract>"
        f"<fallback xmlns='urn:xmpp:fallback:0' for='{RETRACT}'/>"
        "<body>A moderator retracted a message: spam</body></message>"
    )


def test_tombstone_keeps_the_author_and_drops_the_content() -> None:
    """XEP-0425 §4: attributes and the author's occupant id stay; body and the rest go."""
    original = parse_fragment(
        f"<message type='groupchat' from='{ROOM}/oldhag' id='message-id-1'>"
        "<body>DM me for free magic potions!</body>"
        "<html xmlns='http://jabber.org/protocol/xhtml-im'><body>DM me</body></html>"
        "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ef73'/></message>"
    )
    tomb = tombstone(original, f"{ROOM}/macbeth", None, None, 1568935152.0)
    assert serialize(tomb) == (
        f"<message type='groupchat' from='{ROOM}/oldhag' id='message-id-1'>"
        "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='ef73'/>"
        f"<retracted xmlns='{RETRACT}' stamp='2019-09-19T23:19:12.000Z'>"
        f"<moderated xmlns='{MODERATE}' by='{ROOM}/macbeth'/></retracted></message>"
    )
    assert original.find("body") is not None  # the original is left alone
