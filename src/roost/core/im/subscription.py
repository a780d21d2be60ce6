"""Presence subscription states and the RFC 6121 Appendix A tables, as data.

A state is the user's view of one contact: the subscription (none/to/from/both) plus the
pending-out flag (``ask='subscribe'``) and the pending-in flag (an unanswered inbound
request). Appendix A.1 defines nine states; the tables below are Appendix A.2 (outbound,
what the user sends) and A.3 (inbound, what the contact sends), row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "INBOUND",
    "OUTBOUND",
    "STATES",
    "Inbound",
    "Outbound",
    "SubState",
    "Subscription",
]


class Subscription(StrEnum):
    """The roster ``subscription`` attribute (RFC 6121 §2.1.2.5)."""

    NONE = "none"
    TO = "to"
    FROM = "from"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class SubState:
    """One of the nine states of RFC 6121 Appendix A.1."""

    sub: Subscription
    pending_out: bool = False
    pending_in: bool = False

    @property
    def name(self) -> str:
        """The state's name as Appendix A writes it, e.g. ``None + Pending Out+In``."""
        base = self.sub.value.capitalize()
        flags = [f for f, on in (("Out", self.pending_out), ("In", self.pending_in)) if on]
        return f"{base} + Pending {'+'.join(flags)}" if flags else base

    @property
    def has_to(self) -> bool:
        """The user receives the contact's presence."""
        return self.sub in (Subscription.TO, Subscription.BOTH)

    @property
    def has_from(self) -> bool:
        """The contact receives the user's presence."""
        return self.sub in (Subscription.FROM, Subscription.BOTH)


_S = Subscription
NONE = SubState(_S.NONE)
NONE_OUT = SubState(_S.NONE, pending_out=True)
NONE_IN = SubState(_S.NONE, pending_in=True)
NONE_OUT_IN = SubState(_S.NONE, pending_out=True, pending_in=True)
TO = SubState(_S.TO)
TO_IN = SubState(_S.TO, pending_in=True)
FROM = SubState(_S.FROM)
FROM_OUT = SubState(_S.FROM, pending_out=True)
BOTH = SubState(_S.BOTH)

#: The nine states, in Appendix A's order.
STATES: Final = (NONE, NONE_OUT, NONE_IN, NONE_OUT_IN, TO, TO_IN, FROM, FROM_OUT, BOTH)


@dataclass(frozen=True, slots=True)
class Outbound:
    """A row of Appendix A.2: route the stanza? the new state (None: unchanged)."""

    route: bool
    new: SubState | None = None
    #: outbound "subscribed" with nothing pending records a pre-approval (§3.4)
    preapprove: bool = False
    #: outbound "unsubscribed" with nothing to cancel removes a pre-approval (§3.4)
    cancel_preapproval: bool = False


@dataclass(frozen=True, slots=True)
class Inbound:
    """A row of Appendix A.3: deliver to the user? the new state? auto-reply type?"""

    deliver: bool
    new: SubState | None = None
    auto_reply: str | None = None


_O = Outbound
_I = Inbound

#: Appendix A.2, tables 2-5: outbound subscription stanzas, by type then existing state.
OUTBOUND: Final[dict[str, dict[SubState, Outbound]]] = {
    "subscribe": {
        NONE: _O(True, NONE_OUT),
        NONE_OUT: _O(True),
        NONE_IN: _O(True, NONE_OUT_IN),
        NONE_OUT_IN: _O(True),
        TO: _O(True),
        TO_IN: _O(True),
        FROM: _O(True, FROM_OUT),
        FROM_OUT: _O(True),
        BOTH: _O(True),
    },
    "unsubscribe": {
        NONE: _O(True),
        NONE_OUT: _O(True, NONE),
        NONE_IN: _O(True),
        NONE_OUT_IN: _O(True, NONE_IN),
        TO: _O(True, NONE),
        TO_IN: _O(True, NONE_IN),
        FROM: _O(True),
        FROM_OUT: _O(True, FROM),
        BOTH: _O(True, FROM),
    },
    "subscribed": {
        NONE: _O(False, preapprove=True),
        NONE_OUT: _O(False, preapprove=True),
        NONE_IN: _O(True, FROM),
        NONE_OUT_IN: _O(True, FROM_OUT),
        TO: _O(False, preapprove=True),
        TO_IN: _O(True, BOTH),
        FROM: _O(False),
        FROM_OUT: _O(False),
        BOTH: _O(False),
    },
    "unsubscribed": {
        NONE: _O(False, cancel_preapproval=True),
        NONE_OUT: _O(False, cancel_preapproval=True),
        NONE_IN: _O(True, NONE),
        NONE_OUT_IN: _O(True, NONE_OUT),
        TO: _O(False, cancel_preapproval=True),
        TO_IN: _O(True, TO),
        FROM: _O(True, NONE),
        FROM_OUT: _O(True, NONE_OUT),
        BOTH: _O(True, TO),
    },
}

#: Appendix A.3, tables 6-9: inbound subscription stanzas, by type then existing state.
#: SHOULD / SHOULD NOT are taken as the RFC recommends (deliver / don't, auto-reply).
INBOUND: Final[dict[str, dict[SubState, Inbound]]] = {
    "subscribe": {
        NONE: _I(True, NONE_IN),
        NONE_OUT: _I(True, NONE_OUT_IN),
        NONE_IN: _I(False),
        NONE_OUT_IN: _I(False),
        TO: _I(True, TO_IN),
        TO_IN: _I(False),
        FROM: _I(False, auto_reply="subscribed"),
        FROM_OUT: _I(False, auto_reply="subscribed"),
        BOTH: _I(False, auto_reply="subscribed"),
    },
    "unsubscribe": {
        NONE: _I(False),
        NONE_OUT: _I(False),
        NONE_IN: _I(True, NONE, "unsubscribed"),
        NONE_OUT_IN: _I(True, NONE_OUT, "unsubscribed"),
        TO: _I(False),
        TO_IN: _I(True, TO, "unsubscribed"),
        FROM: _I(True, NONE, "unsubscribed"),
        FROM_OUT: _I(True, NONE_OUT, "unsubscribed"),
        BOTH: _I(True, TO, "unsubscribed"),
    },
    "subscribed": {
        NONE: _I(False),
        NONE_OUT: _I(True, TO),
        NONE_IN: _I(False),
        NONE_OUT_IN: _I(True, TO_IN),
        TO: _I(False),
        TO_IN: _I(False),
        FROM: _I(False),
        FROM_OUT: _I(True, BOTH),
        BOTH: _I(False),
    },
    "unsubscribed": {
        NONE: _I(False),
        NONE_OUT: _I(True, NONE),
        NONE_IN: _I(False),
        NONE_OUT_IN: _I(True, NONE_IN),
        TO: _I(True, NONE),
        TO_IN: _I(True, NONE_IN),
        FROM: _I(False),
        FROM_OUT: _I(True, FROM),
        BOTH: _I(True, FROM),
    },
}
