"""XEP-0425 Moderated Message Retraction (0.3.0) on top of XEP-0424 retraction: the
moderator's request parsed, the room's announcement and the archive's tombstone built.
Pure: the time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from roost.core import ns
from roost.core.delay import xep0082_datetime
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.xml.element import Element

__all__ = [
    "FALLBACK",
    "MODERATE",
    "RETRACT",
    "ModerationRequest",
    "announcement",
    "parse_moderate",
    "tombstone",
]

MODERATE: Final = "urn:xmpp:message-moderate:1"
RETRACT: Final = "urn:xmpp:message-retract:1"
FALLBACK: Final = "urn:xmpp:fallback:0"
OCCUPANT_ID: Final = "urn:xmpp:occupant-id:0"

#: XEP-0425 §4 tombstones: what of the moderated message is kept (who sent it), the rest
#: (body and everything that might leak it) goes
_KEPT: Final = frozenset({OCCUPANT_ID})


@dataclass(frozen=True, slots=True)
class ModerationRequest:
    """``<moderate id='…'><retract/><reason/></moderate>`` (XEP-0425 §3)."""

    stanza_id: str
    reason: str | None


def parse_moderate(moderate: Element) -> ModerationRequest:
    """The request; ``bad-request`` without an id, ``feature-not-implemented`` for an
    action other than retraction (the only one XEP-0425 0.3.0 defines)."""
    stanza_id = (moderate.get("id") or "").strip()
    if not stanza_id:
        raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "moderate needs the stanza-id")
    if moderate.find("retract", RETRACT) is None:
        raise StanzaError(
            StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, "only retraction is supported"
        )
    reason = moderate.find("reason", MODERATE)
    text = reason.text.strip() if reason is not None else ""
    return ModerationRequest(stanza_id, text or None)


def _moderated(by: str, occupant_id: str | None) -> Element:
    el = Element("moderated", MODERATE, {"by": by})
    if occupant_id is not None:
        # XEP-0425 §4: the moderator's occupant id, for semi-anonymous rooms
        el.sub("occupant-id", OCCUPANT_ID, {"id": occupant_id})
    return el


def announcement(stanza_id: str, by: str, occupant_id: str | None, reason: str | None) -> Element:
    """XEP-0425 §3.1: the groupchat message the room sends every occupant (``from`` and
    ``to`` are the sender's business), with a XEP-0428 fallback body for clients that know
    neither XEP-0424 nor XEP-0425 (XEP-0424 §3)."""
    msg = Element("message", ns.CLIENT, {"type": "groupchat"})
    retract = msg.sub("retract", RETRACT, {"id": stanza_id})
    retract.append(_moderated(by, occupant_id))
    if reason:
        retract.sub("reason", RETRACT, text=reason)
    msg.sub("fallback", FALLBACK, {"for": RETRACT})
    text = "A moderator retracted a message"
    msg.sub("body", text=f"{text}: {reason}" if reason else f"{text}.")
    return msg


def tombstone(
    original: Element, by: str, occupant_id: str | None, reason: str | None, now: float
) -> Element:
    """XEP-0425 §4: the archived message with its contents replaced by ``<retracted/>``;
    its attributes and its author's occupant id stay."""
    out = Element(original.tag, original.ns, dict(original.attrs))
    out.children = [c for c in original.children if isinstance(c, Element) and c.ns in _KEPT]
    retracted = out.sub("retracted", RETRACT, {"stamp": xep0082_datetime(now)})
    retracted.append(_moderated(by, occupant_id))
    if reason:
        retracted.sub("reason", RETRACT, text=reason)
    return out
