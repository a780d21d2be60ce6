"""XEP-0357 Push Notifications: wake a phone whose client is not connected.

A client registers an app server's push service for the account with ``<enable/>`` (§5,
``jid``, ``node`` and optional publish options) and removes it with ``<disable/>`` (§6);
registrations are stored, so they outlive sessions and restarts. When a message with a
body reaches the account while it has no connected client (its sessions wait for a
XEP-0198 resumption, or there are none and the message goes to offline storage), the
server publishes a ``<notification/>`` to every registered service (§7) over the
federation, from the account's bare JID, with the XEP-0357 summary form: how many
messages were pushed since a client of the account was last online, and the sender;
the body only with ``[modules.push] include_body = true``
(off by default: the push service is a third party). The publish options given at
``<enable/>`` (the app server's credentials, say) go with each publish. A service that
answers with an error other than a temporary one is disabled, as Prosody's
mod_cloud_notify does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from roost.core import ns
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StanzaErrorType,
    parse_stanza_error,
)
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.session import Session

__all__ = ["PUSH", "PushModule"]

log = logging.getLogger(__name__)

PUSH: Final = "urn:xmpp:push:0"
PUBSUB: Final = "http://jabber.org/protocol/pubsub"
DATA: Final = "jabber:x:data"
PUBLISH_OPTIONS: Final = "http://jabber.org/protocol/pubsub#publish-options"
SUMMARY: Final = "urn:xmpp:push:summary"
_STORE: Final = "push"
#: registrations one account may have
MAX_SERVICES: Final = 20


@dataclass(frozen=True, slots=True)
class PushOptions:
    """``[modules.push]``."""

    # put the message text in notifications (it then leaves for the push service)
    include_body: bool = False


def _key(jid: str, node: str) -> str:
    return f"{jid}\n{node}"


class PushModule:
    name = "push"
    Options = PushOptions

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.options: PushOptions = ctx.options
        ctx.iq("account", "set", PUSH, "enable", self.enable, advertise=False)
        ctx.iq("account", "set", PUSH, "disable", self.disable, advertise=False)
        ctx.account_feature(PUSH)  # §4: on the account's bare JID
        # messages for sessions that all wait to be resumed: on the bus only while one does
        self._delivering = ctx.filter_switch(
            events.MESSAGE_DELIVER, self.delivering, priority=-20
        )
        #: sessions detached and waiting for a resumption (XEP-0198)
        self.detached: set[Session] = set()
        ctx.observe(events.SESSION_DETACHED, self._detached)
        ctx.observe(events.SESSION_RESUMED, self._attached)
        ctx.observe(events.SESSION_CLOSED, self._attached)
        ctx.filter(events.MESSAGE_OFFLINE, self.offline, priority=10)
        ctx.observe(events.RESOURCE_DELIVERABLE, self.back)
        #: messages pushed per account since a client of it was last online (§6 summary)
        self.unread: dict[JID, int] = {}

    # -- registrations (§5, §6) -------------------------------------------------------------

    async def enable(self, req: IqRequest) -> IqResult:
        user = req.to
        assert user.local is not None
        jid_attr = req.payload.get("jid")
        try:
            service = JID.parse(jid_attr or "")
        except InvalidJID:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "enable needs a 'jid'") from None
        node = req.payload.get("node") or ""
        form = req.payload.find("x", DATA)
        options = serialize(form) if form is not None else None
        if form is not None and _form_type(form) != PUBLISH_OPTIONS:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "the form must be publish-options")
        known = await self.ctx.storage.list_data(user.local, user.domain, _STORE)
        key = _key(str(service), node)
        if key not in known and len(known) >= MAX_SERVICES:
            raise StanzaError(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many push services")
        value = json.dumps({"jid": str(service), "node": node, "options": options})
        await self.ctx.storage.set_data(user.local, user.domain, _STORE, key, value)
        return EMPTY

    async def disable(self, req: IqRequest) -> IqResult:
        user = req.to
        assert user.local is not None
        jid_attr = req.payload.get("jid")
        if not jid_attr:
            raise StanzaError(StanzaErrorCondition.BAD_REQUEST, "disable needs a 'jid'")
        node = req.payload.get("node")
        for key, raw in (await self.ctx.storage.list_data(user.local, user.domain, _STORE)).items():
            entry = json.loads(raw)
            if entry["jid"] == jid_attr and (node is None or entry["node"] == node):
                await self.ctx.storage.set_data(user.local, user.domain, _STORE, key, None)
        return EMPTY

    # -- when to push (§7) -----------------------------------------------------------------

    def _detached(self, session: Session) -> None:
        self.detached.add(session)
        self._delivering.on()

    def _attached(self, session: Session, error: object = None) -> None:
        self.detached.discard(session)
        if not self.detached:
            self._delivering.off()

    def delivering(
        self, stanza: Element, sender: JID, to: JID, sessions: Sequence[Session]
    ) -> bool:
        if sessions and all(s.stream is None for s in sessions) and _pushable(stanza):
            self.ctx.spawn(self._push(stanza, sender, to.bare))
        return False

    def back(self, session: Session) -> None:
        """A client of the account is online again: it will see what it missed."""
        self.unread.pop(session.bare, None)

    def offline(self, stanza: Element, sender: JID, to: JID) -> bool:
        if _pushable(stanza):
            self.ctx.spawn(self._push(stanza, sender, to.bare))
        return False

    async def _push(self, stanza: Element, sender: JID, user: JID) -> None:
        assert user.local is not None
        services = await self.ctx.storage.list_data(user.local, user.domain, _STORE)
        if not services:
            return
        count = self.unread[user] = self.unread.get(user, 0) + 1
        for key, raw in services.items():
            try:
                entry = json.loads(raw)
                service = JID.parse(entry["jid"])
            except (ValueError, KeyError, InvalidJID):
                continue
            iq = self._publish(stanza, sender, user, entry, count)
            try:
                answer = await self.ctx.request(iq, service, timeout=30.0)
            except TimeoutError:
                log.info("push service %s did not answer for %s", service, user)
                continue
            if answer.attrs.get("type") == "error":
                error = answer.find("error")
                err = (
                    parse_stanza_error(error)
                    if error is not None
                    else StanzaError(StanzaErrorCondition.UNDEFINED_CONDITION)
                )
                self._failed(user, key, service, err)

    def _publish(
        self, stanza: Element, sender: JID, user: JID, entry: dict[str, str], count: int
    ) -> Element:
        iq = Element("iq", ns.CLIENT, {"type": "set", "from": str(user)})
        pubsub = iq.sub("pubsub", PUBSUB)
        item = pubsub.sub("publish", attrs={"node": entry["node"]}).sub("item")
        summary = item.sub("notification", PUSH).sub("x", DATA, {"type": "submit"})
        fields = [("FORM_TYPE", SUMMARY), ("message-count", str(count))]
        fields.append(("last-message-sender", str(sender)))
        body = stanza.find("body")
        if self.options.include_body and body is not None:
            fields.append(("last-message-body", body.text))
        for var, value in fields:
            summary.sub("field", attrs={"var": var}).sub("value", text=value)
        if entry.get("options"):
            options = pubsub.sub("publish-options")
            options.append(parse_fragment(entry["options"]))
        return iq

    def _failed(self, user: JID, key: str, service: JID, err: StanzaError) -> None:
        if err.type is StanzaErrorType.WAIT:
            log.info("push service %s is busy (%s)", service, err.condition.value)
            return
        log.info("push service %s refused (%s): disabled for %s", service, err.condition, user)
        assert user.local is not None
        self.ctx.spawn(self.ctx.storage.set_data(user.local, user.domain, _STORE, key, None))


def _pushable(stanza: Element) -> bool:
    """A message worth waking the device for: a body, not a groupchat echo or an error."""
    return stanza.attrs.get("type") not in ("error", "groupchat", "headline") and any(
        child.tag == "body" for child in stanza.elements()
    )


def _form_type(form: Element) -> str | None:
    for field in form.find_all("field", DATA):
        if field.get("var") == "FORM_TYPE":
            value = field.find("value", DATA)
            return value.text if value is not None else None
    return None
