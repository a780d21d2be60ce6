"""Presence (RFC 6121 §3, §4): subscriptions, broadcast, probes, directed presence.

Outbound subscription stanzas change the user's roster per Appendix A.2 before they are
routed; inbound ones change the contact's roster per Appendix A.3 before delivery. Presence
broadcast reads only cached rosters and the session map.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from roost.core import ns
from roost.core.delay import delay_element
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.im.subscription import INBOUND, OUTBOUND, Subscription, SubState
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.api import ModuleContext
from roost.server.services import PRESENCE, ROSTERS
from roost.server.session import Session

__all__ = ["PresenceModule"]

log = logging.getLogger(__name__)
SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))
PRE_APPROVAL = "urn:xmpp:features:pre-approval"


def _priority(stanza: Element) -> int:
    """RFC 6121 §4.7.2.3: -128..127, default 0."""
    el = stanza.find("priority", ns.CLIENT)
    if el is None:
        return 0
    try:
        return max(-128, min(127, int(el.text.strip())))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class PresenceOptions:
    """``[modules.presence]``."""

    #: refuse iq requests to a user's full JID from entities that do not share presence
    #: with that user (RFC 6121 §8.5.3.1 SHOULD NOT deliver them). Off by default: Prosody
    #: and ejabberd deliver them, and disco, version, ping, XEP-0047 and XEP-0231 between
    #: clients depend on it.
    strict_iq_to_full: bool = False


class PresenceModule:
    """The presence and subscription logic; provides the ``presence`` service."""

    name = "presence"
    depends = ("roster",)
    Options = PresenceOptions

    def __init__(self) -> None:
        #: last unavailable presence of users with no available resource (§4.3.2 rule 3)
        self._last_unavailable: dict[JID, tuple[Element, float]] = {}

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.rosters = ctx.service(ROSTERS)
        ctx.provide(PRESENCE, self)
        ctx.filter(events.PRESENCE_OUTBOUND, self.outbound)
        ctx.filter(events.PRESENCE_BROADCAST, self.broadcast)
        ctx.filter(events.to_bare("presence"), self.inbound_bare)
        ctx.filter(events.to_full("presence"), self.inbound_full)
        options: PresenceOptions = ctx.options
        if options.strict_iq_to_full:
            ctx.filter(events.to_full("iq"), self.iq_to_full)
        ctx.observe(events.SESSION_CLOSED, self.session_closed)
        # RFC 6121 §3.4: subscription pre-approval is supported.
        ctx.stream_feature(lambda: Element("sub", PRE_APPROVAL), pre_auth=False)

    def last_unavailable(self, user: JID) -> Element | None:
        last = self._last_unavailable.get(user)
        return None if last is None else last[0]

    def unavailable_since(self, user: JID) -> tuple[Element, float] | None:
        return self._last_unavailable.get(user)

    # -- helpers --------------------------------------------------------------------------

    def _send_to_resources(self, user: JID, stanza: Element) -> None:
        """Deliver to all available resources of ``user``."""
        sessions = self.ctx.sessions.resources(user).values()
        self.ctx.deliver_all((s for s in sessions if s.available), stanza)

    def _route(self, stanza: Element, sender: JID, to: JID) -> None:
        self.ctx.route(stanza, sender, to)

    # XEP-0016 / XEP-0191 for what this service delivers or processes outside the router.


    async def _exists(self, user: JID) -> bool:
        if self.ctx.sessions.is_online(user):
            return True
        assert user.local is not None
        return await self.ctx.accounts.exists(user.local, user.domain)

    # -- iq requests to a full JID (RFC 6121 §8.5.3.1) ------------------------------------

    def iq_to_full(self, stanza: Element, sender: JID, to: JID, target: Session | None) -> bool:
        """With ``strict_iq_to_full``: no iq requests from those who cannot see the user's
        presence (RFC 6121 §8.5.3.1)."""
        if (
            target is None
            or stanza.attrs.get("type") not in ("get", "set")
            or self._shares_presence(target, sender, to)
        ):
            return False
        self.ctx.reply_error(stanza, StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE), sender)
        return True

    def _shares_presence(self, target: Session, sender: JID, to: JID) -> bool:
        """Whether ``sender`` may see ``to``'s presence: same account, subscription, directed."""
        if sender.bare == to.bare or self.ctx.is_server(sender):
            return True
        if sender in target.directed or sender.bare in target.directed:
            return True
        roster = self.rosters.cached(to.bare)
        return roster is not None and roster.state(str(sender.bare)).has_from

    # -- outbound (from a local client, with a 'to') ---------------------------------------

    def outbound(self, stanza: Element, sender: JID, to: JID, conn: Session) -> bool:
        ptype = stanza.attrs.get("type")
        if ptype in SUBSCRIPTION_TYPES:
            # XEP-0016 §2.2 rule 4: privacy lists come before subscription handling, so the
            # user's own rules are checked before the roster changes.
            if not self.ctx.privacy_refuses(stanza, sender, to, inbound=False):
                conn.hold(self.ctx.spawn(self._outbound_subscription(stanza, sender, to, ptype)))
        elif ptype is None or ptype == "unavailable":
            # RFC 6121 §4.6: directed presence; remember it to send unavailable later.
            if to.bare != sender.bare:
                if ptype is None and conn.available:
                    conn.directed.add(to)
                else:
                    conn.directed.discard(to)
            self._route(stanza, sender, to)
        elif ptype == "error":
            self._route(stanza, sender, to)
        elif ptype != "probe":  # §4.3: clients do not send probes; dropped
            self.ctx.reply_error(
                stanza,
                StanzaError(StanzaErrorCondition.BAD_REQUEST, "unknown presence type"),
                sender,
            )
        return True

    async def _outbound_subscription(
        self, stanza: Element, sender: JID, to: JID, ptype: str
    ) -> None:
        user, contact = sender.bare, to.bare
        key = str(contact)
        rosters = self.rosters
        async with rosters.changing(user) as roster:
            before = roster.state(key)
            row = OUTBOUND[ptype][before]
            try:
                if row.new is not None:
                    await rosters.set_state(user, roster, key, row.new)
                if row.preapprove:
                    await rosters.set_approved(user, roster, key, True)
                elif row.cancel_preapproval and key in roster.items and roster.items[key].approved:
                    await rosters.set_approved(user, roster, key, False)
            except StanzaError as err:  # the roster is full: nothing is sent
                self.ctx.reply_error(stanza, err, sender)
                return
            after = roster.state(key)
        if row.route:
            # RFC 6121 §3.1.2 etc.: stamped with the bare JIDs of both parties.
            out = Element(
                "presence",
                ns.CLIENT,
                {**stanza.attrs, "from": str(user), "to": key},
                stanza.children,
            )
            if contact.domain in self.ctx.domains and contact.local is not None:
                # Local contact: process it now, so it is ordered before the presence below,
                # unless the contact's rules refuse it (the user is not told: XEP-0191 §3.3).
                if not await self.ctx.privacy_refuses_loaded(out, user, contact, out=False):
                    await self._inbound_subscription(out, user, contact, ptype)
            else:
                self._route(out, user, contact)
        if not before.has_from and after.has_from:
            # §3.1.5: the new subscriber gets the user's current presence.
            self.send_current_presence(user, contact)
        elif before.has_from and not after.has_from:
            # §3.2.2: and a cancelled one gets unavailable from each resource.
            self.send_unavailable(user, contact)

    def cancel_subscriptions(self, user: JID, contact: JID, state: SubState) -> None:
        """Tell ``contact`` that both directions are over, the user's roster being already
        changed: roster removal (RFC 6121 §2.5.2) and account removal (XEP-0077 §3.2).

        ``unsubscribe`` if the user was subscribed or asking, ``unsubscribed`` (and
        unavailable presence) if the contact was subscribed or asking.
        """
        for ptype, applies in (
            ("unsubscribe", state.has_to or state.pending_out),
            ("unsubscribed", state.has_from or state.pending_in),
        ):
            if applies:
                attrs = {"type": ptype, "from": str(user), "to": str(contact)}
                self._route(Element("presence", ns.CLIENT, attrs), user, contact)
        if state.has_from or state.pending_in:
            self.send_unavailable(user, contact)

    def send_current_presence(self, user: JID, contact: JID) -> None:
        for conn in self.ctx.sessions.resources(user).values():
            if conn.available and conn.presence is not None:
                p = conn.presence.copy()
                p.attrs["to"] = str(contact)
                self._route(p, conn.jid, contact)

    def send_unavailable(self, user: JID, contact: JID) -> None:
        for conn in self.ctx.sessions.resources(user).values():
            if conn.available:
                p = Element(
                    "presence",
                    ns.CLIENT,
                    {"type": "unavailable", "from": conn.jid_str, "to": str(contact)},
                )
                self._route(p, conn.jid, contact)

    # -- broadcast (from a local client, no 'to'; §4.2, §4.4, §4.5) ------------------------

    def broadcast(self, stanza: Element, sender: JID, conn: Session | None) -> bool:
        if conn is None:
            return True
        ptype = stanza.attrs.get("type")
        if ptype is None:
            first = not conn.available
            was_deliverable = conn.available and conn.priority >= 0
            conn.available = True
            conn.priority = _priority(stanza)
            conn.presence = stanza
            self._broadcast(stanza, sender)
            if first:
                self._last_unavailable.pop(sender.bare, None)
                self._initial(conn, sender)
            if not was_deliverable and conn.priority >= 0:
                # RFC 6121 §8.5.2.1.1: messages may now go to it (stored ones first).
                self.ctx.notify(events.RESOURCE_DELIVERABLE, conn)
        elif ptype == "unavailable":
            self._went_unavailable(conn, sender, stanza)
            # RFC 6121 §4.5.2: also "to the resource that generated the unavailable presence
            # in the first place", as sent (its status text); Prosody reflects it too.
            echo = stanza.copy()
            echo.attrs["from"] = str(sender)
            echo.attrs["to"] = conn.jid_str
            self.ctx.deliver(conn, echo)
        return True

    def _broadcast(self, stanza: Element, sender: JID) -> None:
        user = sender.bare
        roster = self.rosters.cached(user)
        if roster is not None:
            for contact in roster.subscribers():
                p = stanza.copy()
                p.attrs["to"] = contact
                self._route(p, sender, JID.parse(contact))
        # §4.2.2 / §4.4.2: the user's own available resources get it too.
        own = stanza.copy()
        for other in self.ctx.sessions.resources(user).values():
            if other.available:
                own.attrs["to"] = other.jid_str
                self.ctx.deliver(other, own)

    def _initial(self, conn: Session, sender: JID) -> None:
        """§4.2: probes for the contacts' presence, other resources, pending requests."""
        user = sender.bare
        roster = self.rosters.cached(user)
        if roster is not None:
            for contact in roster.subscriptions():
                cjid = JID.parse(contact)
                if cjid.domain in self.ctx.domains:
                    self._answer_probe(cjid, user, reply_to=conn)
                else:
                    probe = Element(
                        "presence", ns.CLIENT, {"type": "probe", "from": str(user), "to": contact}
                    )
                    self._route(probe, user, cjid)
            # §3.1.3: unanswered subscription requests are delivered at each login.
            for stored in roster.pending_in.values():
                try:
                    request = parse_fragment(stored)
                    requester = JID.parse(request.attrs.get("from", ""))
                except ValueError:
                    log.warning("dropping an unreadable stored subscription request")
                    continue
                # not from someone blocked since the request was stored (XEP-0191 §3.3)
                if not self.ctx.privacy_refuses(request, requester, conn.jid, out=False):
                    self.ctx.deliver(conn, request)
        for other in self.ctx.sessions.resources(user).values():
            if other is not conn and other.available and other.presence is not None:
                p = other.presence.copy()
                p.attrs["to"] = conn.jid_str
                self.ctx.deliver(conn, p)
        self.ctx.notify(events.PRESENCE_INITIAL, conn)

    def _went_unavailable(self, conn: Session, sender: JID, stanza: Element | None) -> None:
        """§4.5: unavailable to subscribers, own resources and directed-presence recipients."""
        if not conn.available:
            return
        user = sender.bare
        conn.available = False
        conn.presence = None
        out = (
            stanza
            if stanza is not None
            else Element("presence", ns.CLIENT, {"type": "unavailable", "from": str(sender)})
        )
        out.attrs["from"] = str(sender)
        sent: set[JID] = set()
        roster = self.rosters.cached(user)
        if roster is not None:
            for contact in roster.subscribers():
                cjid = JID.parse(contact)
                p = out.copy()
                p.attrs["to"] = contact
                self._route(p, sender, cjid)
                sent.add(cjid)
        for target in conn.directed:  # §4.6.3
            if target not in sent and target.bare not in sent:
                p = out.copy()
                p.attrs["to"] = str(target)
                self._route(p, sender, target)
        conn.directed.clear()
        own = out.copy()
        for other in self.ctx.sessions.resources(user).values():
            if other.available:
                own.attrs["to"] = other.jid_str
                self.ctx.deliver(other, own)
        if not any(c.available for c in self.ctx.sessions.resources(user).values()):
            self._last_unavailable[user] = (out, time.time())

    def session_closed(self, session: Session, error: object) -> None:
        """A dropped session goes unavailable (RFC 6121 §4.5.2)."""
        self._went_unavailable(session, session.jid, None)

    # -- inbound (to a local user) --------------------------------------------------------

    def inbound_bare(self, stanza: Element, sender: JID, to: JID) -> bool:
        ptype = stanza.attrs.get("type")
        if ptype in SUBSCRIPTION_TYPES:
            self.ctx.spawn(self._inbound_subscription(stanza, sender, to, ptype))
        elif ptype == "probe":
            self.ctx.spawn(self._probe(sender, to))
        else:
            # §8.5.2.1.2: available, unavailable (and errors) to all available resources.
            self._send_to_resources(to, stanza)
        return True

    def inbound_full(
        self, stanza: Element, sender: JID, to: JID, target: Session | None
    ) -> bool:
        ptype = stanza.attrs.get("type")
        if ptype in SUBSCRIPTION_TYPES:
            # §8.5.3: handled as for the bare JID (ignored when no resource matches,
            # except subscribe).
            if target is not None or ptype == "subscribe":
                self.ctx.spawn(self._inbound_subscription(stanza, sender, to.bare, ptype))
        elif ptype == "probe":
            self.ctx.spawn(self._probe(sender, to))
        elif target is not None:
            self.ctx.deliver(target, stanza)
        # else §8.5.3.2.2: silently ignored
        return True

    async def _inbound_subscription(
        self, stanza: Element, sender: JID, user: JID, ptype: str
    ) -> None:
        if not await self._exists(user):
            return  # §8.5.1: silently ignored
        contact = sender.bare
        key = str(contact)
        rosters = self.rosters
        auto_reply: str | None
        async with rosters.changing(user) as roster:
            before = roster.state(key)
            row = INBOUND[ptype][before]
            deliver, new, auto_reply = row.deliver, row.new, row.auto_reply
            item = roster.items.get(key)
            if ptype == "subscribe" and item is not None and item.approved and not before.has_from:
                # §3.4 / A.3.1 note 1: pre-approved: answer for the user, no prompt.
                deliver, auto_reply = False, "subscribed"
                new = SubState(
                    Subscription.BOTH if before.has_to else Subscription.FROM,
                    before.pending_out,
                    False,
                )
            elif ptype == "subscribe" and new is not None and new.pending_in:
                clean = Element(
                    "presence", ns.CLIENT, {**stanza.attrs, "to": str(user)}, stanza.children
                )
                await rosters.set_pending(user, roster, key, serialize(clean))
            if new is not None:
                await rosters.set_state(user, roster, key, new)
            after = roster.state(key)
        if deliver:
            self._send_to_resources(user, stanza)
        if auto_reply is not None:
            reply = Element(
                "presence", ns.CLIENT, {"type": auto_reply, "from": str(user), "to": key}
            )
            self._route(reply, user, contact)
        if not before.has_from and after.has_from:
            self.send_current_presence(user, contact)
        elif before.has_from and not after.has_from:
            self.send_unavailable(user, contact)

    async def _probe(self, sender: JID, to: JID) -> None:
        """§4.3.2: answer a probe for a local user's presence."""
        user = to.bare
        if not await self._exists(user):
            return  # §8.5.1 (a): ignored
        self._answer_probe(user, sender, only_resource=to.resource)

    def _answer_probe(
        self,
        user: JID,
        prober: JID,
        *,
        reply_to: Session | None = None,
        only_resource: str | None = None,
    ) -> None:
        roster = self.rosters.cached(user)
        if roster is None:
            self.ctx.spawn(self._answer_probe_offline(user, prober, reply_to))
            return
        self._answer_probe_with(
            user, prober, roster.state(str(prober.bare)), reply_to, only_resource
        )

    async def _answer_probe_offline(
        self, user: JID, prober: JID, reply_to: Session | None
    ) -> None:
        roster = await self.rosters.get(user)
        self._answer_probe_with(user, prober, roster.state(str(prober.bare)), reply_to, None)

    def _answer_probe_with(
        self,
        user: JID,
        prober: JID,
        state: SubState,
        reply_to: Session | None,
        only_resource: str | None,
    ) -> None:
        to = reply_to.jid_str if reply_to is not None else str(prober)

        def send(p: Element, sender: JID) -> None:
            if reply_to is None:
                self._route(p, user, prober)
                return
            # to the new session at its login, through the router's privacy gate (the
            # contact's presence-out, the user's presence-in)
            self._route(p, sender, reply_to.jid)

        if not state.has_from:
            # rule 1: not subscribed: unsubscribed from the bare JID (a reply to a real probe)
            if reply_to is None:
                send(
                    Element(
                        "presence", ns.CLIENT, {"type": "unsubscribed", "from": str(user), "to": to}
                    ),
                    user,
                )
            return
        available = [
            c
            for c in self.ctx.sessions.resources(user).values()
            if c.available
            and c.presence is not None
            and (only_resource is None or (c.jid is not None and c.jid.resource == only_resource))
        ]
        if available:  # rule 4
            for conn in available:
                assert conn.presence is not None
                p = conn.presence.copy()
                p.attrs["to"] = to
                send(p, conn.jid)
            return
        # rule 3: unavailable from the bare JID, with when it happened
        p = Element("presence", ns.CLIENT, {"type": "unavailable", "from": str(user), "to": to})
        last = self._last_unavailable.get(user)
        if last is not None:
            p.append(delay_element(last[1], str(user)))
        send(p, user)
