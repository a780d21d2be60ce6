"""XEP-0280 Message Carbons: every device of an account sees both sides of its chats.

A client turns carbons on with ``<enable/>`` (§4) and off with ``<disable/>`` (§5). Then a
message eligible under §6.1 that reaches some resources of the account is copied, wrapped
in ``<received/>`` (§7), to its other carbons-enabled resources; and one that a resource
sends is copied, wrapped in ``<sent/>`` (§8), to the others (whether or not the sender has
carbons on). ``<private/>`` (§9) or a XEP-0334 ``<no-copy/>`` hint keeps a message out.

§6.1 as applied here: type ``chat``; type ``normal`` with a body; any message carrying a
receipt (XEP-0184), chat state (XEP-0085) or chat marker (XEP-0333); a XEP-0249 or
mediated invitation; a private message to a MUC occupant, when sent (when received, the
MUC service already copies it to every joined client). ``groupchat`` is never copied, and
neither are errors (which message an error answers is not tracked, so
``urn:xmpp:carbons:rules:0`` is not advertised). The setting belongs to the session, so a
XEP-0198 resumption keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from roost.core import ns
from roost.core.errors import StreamError
from roost.core.forward import forwarded
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server import events
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.session import Session

__all__ = ["CARBONS", "CarbonsModule", "eligible"]

CARBONS: Final = "urn:xmpp:carbons:2"
HINTS: Final = "urn:xmpp:hints"
MUC_USER: Final = "http://jabber.org/protocol/muc#user"
CONFERENCE: Final = "jabber:x:conference"  # XEP-0249 direct invitations
#: payloads typically used in IM (§6.1): receipts, chat states, chat markers
_IM_PAYLOADS: Final = frozenset(
    ("urn:xmpp:receipts", "http://jabber.org/protocol/chatstates", "urn:xmpp:chat-markers:0")
)


def eligible(stanza: Element, *, sent: bool) -> bool:
    """Whether a message is copied (XEP-0280 §6.1, §9); ``sent``: by a local resource."""
    mtype = stanza.attrs.get("type") or "normal"
    if mtype in ("groupchat", "error"):
        return False
    has_body = False
    im_payload = False
    for child in stanza.elements():
        if child.ns == CARBONS and child.tag == "private":
            return False
        if child.ns == HINTS and child.tag == "no-copy":
            return False
        if child.ns == CONFERENCE and child.tag == "x":
            return True  # XEP-0249 invitation
        if child.ns == MUC_USER and child.tag == "x":
            if child.find("invite", MUC_USER) is not None:
                return True  # mediated invitation
            # a private message with a room occupant: copied only on the sending side
            return sent
        if child.tag == "body" and child.ns == stanza.ns:
            has_body = True
        elif child.ns in _IM_PAYLOADS:
            im_payload = True
    return mtype == "chat" or (mtype == "normal" and has_body) or im_payload


class CarbonsModule:
    name = "carbons"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        #: sessions that enabled carbons
        self.enabled: set[Session] = set()
        ctx.iq("account", "set", CARBONS, "enable", self.enable)
        ctx.iq("account", "set", CARBONS, "disable", self.disable, advertise=False)
        # after the archive (which stamps stanza-ids on what it stores), before delivery;
        # on the bus only while some session has carbons enabled
        self._hooks = (
            ctx.filter_switch(events.MESSAGE_DELIVER, self.received, priority=-10),
            ctx.filter_switch(events.MESSAGE_OUTBOUND, self.sent, priority=-10),
        )
        ctx.observe(events.SESSION_CLOSED, self.closed)

    def _changed(self) -> None:
        for hook in self._hooks:
            hook.set(bool(self.enabled))

    def enable(self, req: IqRequest) -> IqResult:
        """§4; a second ``<enable/>`` is harmless (§10)."""
        if req.session is not None:
            self.enabled.add(req.session)
            self._changed()
        return EMPTY

    def disable(self, req: IqRequest) -> IqResult:
        """§5."""
        if req.session is not None:
            self.enabled.discard(req.session)
            self._changed()
        return EMPTY

    def closed(self, session: Session, error: StreamError | None) -> None:
        if session in self.enabled:
            self.enabled.discard(session)
            self._changed()

    def _others(self, account: JID, skip: Iterable[Session]) -> list[Session]:
        skipped = set(skip)
        return [
            s
            for s in self.ctx.sessions.resources(account).values()
            if s in self.enabled and s not in skipped
        ]

    def received(self, stanza: Element, sender: JID, to: JID, sessions: Sequence[Session]) -> bool:
        """§7: to the account's enabled resources that did not get the original (nor
        the one that sent it, when the account writes to itself, §8)."""
        account = to.bare
        if (
            len(self.ctx.sessions.resources(account)) <= len(sessions)
            or not eligible(stanza, sent=False)
        ):
            return False  # (every resource got the original: nobody to copy to)
        skip = list(sessions)
        if sender.bare == account:
            own = self.ctx.sessions.get(sender)
            if own is not None:
                skip.append(own)
        self._copy(stanza, "received", account, self._others(account, skip))
        return False

    def sent(self, stanza: Element, session: Session, to: JID) -> bool:
        """§8: to the sender's other enabled resources; to itself the account gets the
        received copies instead."""
        if (
            len(self.ctx.sessions.resources(session.bare)) < 2
            or to.bare == session.bare
            or not eligible(stanza, sent=True)
        ):
            return False
        self._copy(stanza, "sent", session.bare, self._others(session.bare, (session,)))
        return False

    def _copy(self, stanza: Element, kind: str, account: JID, targets: list[Session]) -> None:
        if not targets:
            return
        attrs = {"from": str(account)}
        mtype = stanza.attrs.get("type")
        if mtype is not None:
            attrs["type"] = mtype  # §7: SHOULD keep the type
        wrapper = Element("message", ns.CLIENT, attrs)
        wrapper.sub(kind, CARBONS).append(forwarded(stanza))
        for target in targets:
            copy = wrapper.copy()
            copy.attrs["to"] = target.jid_str
            self.ctx.deliver(target, copy)
