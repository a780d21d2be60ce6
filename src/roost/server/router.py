"""Stanza routing in three stages (Prosody's): process, classify, deliver.

*process* checks what a client sent (addresses, iq shape) and stamps ``from``; *classify*
decides whether the stanza is for the server, an account it answers for, a local session, or
a remote domain; *deliver* writes it to sessions or hands it to modules. Routing to an online
user touches only in-memory maps. A raised ``StanzaError`` becomes the error reply here, and
only here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition, error_reply
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.modules.base import EMPTY, HANDLED, IqRequest, IqResult, IqTarget, is_awaitable

if TYPE_CHECKING:
    from roost.server.app import Server
    from roost.server.c2s import C2SConnection

__all__ = ["Router"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition
IQ_TYPES = frozenset(("get", "set", "result", "error"))
PRESENCE_HANDLED = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"))


class Router:
    """Routes stanzas between local sessions, modules and (later) other servers."""

    __slots__ = ("_pending", "domains", "server", "sessions")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sessions = server.sessions
        self.domains = server.domains
        self._pending: dict[tuple[str, JID], asyncio.Future[Element]] = {}

    async def request(self, iq: Element, to: JID, timeout: float = 30.0) -> Element:
        """Send an iq get/set from the server and wait for the result or error stanza.

        Raises ``TimeoutError`` when no answer comes within ``timeout`` seconds.
        """
        iq_id = iq.attrs.setdefault("id", self.server.new_id())
        iq.attrs["to"] = str(to)
        iq.attrs.setdefault(
            "from", to.domain if to.domain in self.domains else self.server.default_domain
        )
        future: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        key = (iq_id, to)
        self._pending[key] = future
        try:
            self.route(iq, JID.parse(iq.attrs["from"]), to)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(key, None)

    # -- stage 1: process -----------------------------------------------------------------

    def from_client(self, conn: C2SConnection, stanza: Element) -> None:
        """A stanza from a bound client: stamp ``from`` (no spoofing), validate, route."""
        sender = conn.jid
        assert sender is not None
        # RFC 6120 §8.1.2.1: the server stamps the full JID, overriding whatever was sent.
        stanza.attrs["from"] = conn.jid_str
        to: JID | None = None
        to_attr = stanza.attrs.get("to")
        if to_attr is not None:
            try:
                to = JID.parse(to_attr)
            except InvalidJID:
                self.reply_error(stanza, StanzaError(_C.JID_MALFORMED), sender)
                return
        if stanza.tag == "iq":
            iq_type = stanza.attrs.get("type")
            # RFC 6120 §8.2.3: iq needs an id and a known type; get/set carry one payload.
            if not stanza.attrs.get("id") or iq_type not in IQ_TYPES:
                self.reply_error(
                    stanza, StanzaError(_C.BAD_REQUEST, "iq needs an id and a type"), sender
                )
                return
            if iq_type in ("get", "set") and len(stanza.find_all()) != 1:
                self.reply_error(
                    stanza, StanzaError(_C.BAD_REQUEST, "iq get/set needs one payload"), sender
                )
                return
        elif (
            stanza.tag == "presence"
            and to is not None
            and self.server.bus.fire(events.PRESENCE_OUTBOUND, stanza, sender, to, conn) is not None
        ):
            return
        self.route(stanza, sender, to, conn)

    # -- stage 2: classify ----------------------------------------------------------------

    def route(
        self, stanza: Element, sender: JID, to: JID | None, conn: C2SConnection | None = None
    ) -> None:
        """Route a processed stanza (``from`` already set) to where ``to`` points."""
        tag = stanza.tag
        if to is None:
            # RFC 6120 §10.3.3: no 'to' means the sender's own account handles it.
            if tag == "presence":
                self.server.bus.fire(events.PRESENCE_BROADCAST, stanza, sender, conn)
                return
            if tag == "iq":
                self._iq(stanza, sender, sender.bare, "account", conn)
                return
            to = sender.bare
        if sender.bare != to.bare and (
            self.privacy_out(stanza, sender, to) or self.privacy_in(stanza, sender, to)
        ):
            return
        if to.domain not in self.domains:
            # Server-to-server federation is not available yet.
            if self.server.bus.fire(events.ROUTE_REMOTE, stanza, sender, to) is None:
                self.reply_error(stanza, StanzaError(_C.REMOTE_SERVER_NOT_FOUND), sender)
            return
        if to.local is None:
            if to.resource is None:
                self._to_host(stanza, sender, to, conn)
            else:
                self._to_host_resource(stanza, sender, to)
            return
        if to.resource is None:
            self._to_bare(stanza, sender, to, conn)
        else:
            self._to_full(stanza, sender, to, conn)

    # -- stage 3: deliver -----------------------------------------------------------------

    def _to_host(self, stanza: Element, sender: JID, to: JID, conn: C2SConnection | None) -> None:
        tag = stanza.tag
        if tag == "iq":
            self._iq(stanza, sender, to, "host", conn)
        elif self.server.bus.fire(events.to_host(tag), stanza, sender, conn) is None and (
            tag == "message" and stanza.attrs.get("type") not in ("error", "groupchat", "headline")
        ):
            # A message to the server that nothing handles (RFC 6120 §10.3.2).
            self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)

    def _to_host_resource(self, stanza: Element, sender: JID, to: JID) -> None:
        if stanza.tag == "iq" and stanza.attrs.get("type") in ("get", "set"):
            self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)

    def _to_full(self, stanza: Element, sender: JID, to: JID, conn: C2SConnection | None) -> None:
        target = self.sessions.get(to)
        tag = stanza.tag
        if target is not None and target.interested(stanza):
            if (
                tag == "iq"
                and stanza.attrs.get("type") in ("get", "set")
                and not self._shares_presence(target, sender, to)
            ):
                # RFC 6121 §8.5.3.1: no iq requests from those who cannot see our presence.
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
                return
            if tag != "presence" or stanza.attrs.get("type") not in PRESENCE_HANDLED:
                target.send_stanza(stanza)
                return
            # subscription stanzas and probes are the server's to handle (§8.5.3.1)
            if self.server.bus.fire(events.to_full(tag), stanza, sender, to, target) is None:
                target.send_stanza(stanza)
            return
        if self.server.bus.fire(events.to_full(tag), stanza, sender, to, None) is not None:
            return
        # RFC 6121 §8.5.3.2: no such resource.
        if tag == "message":
            if stanza.attrs.get("type") in (None, "normal", "chat", "headline"):
                self._to_bare(stanza, sender, to.bare, conn)
            elif stanza.attrs.get("type") == "groupchat":
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
        elif tag == "iq":
            if stanza.attrs.get("type") in ("get", "set"):
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
        elif stanza.attrs.get("type") in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            self._to_bare(stanza, sender, to.bare, conn)
        # other presence to an unavailable resource is dropped silently (§8.5.3.2.1)

    def privacy_out(self, stanza: Element, sender: JID, to: JID) -> bool:
        """The sender's privacy rules (XEP-0191, XEP-0016): True when they stopped it.

        Whoever stopped the stanza has sent any error. Also used by services that deliver
        outside ``route`` (presence at login, stored offline messages).
        """
        bus = self.server.bus
        return (
            sender.bare != to.bare
            and sender.local is not None
            and sender.domain in self.domains
            and bus.has(events.PRIVACY_OUT)
            and bus.fire(events.PRIVACY_OUT, stanza, sender, to) is not None
        )

    def privacy_in(self, stanza: Element, sender: JID, to: JID) -> bool:
        """The recipient's privacy rules: True when they stopped the stanza."""
        bus = self.server.bus
        return (
            sender.bare != to.bare
            and to.local is not None
            and to.domain in self.domains
            and bus.has(events.PRIVACY_IN)
            and bus.fire(events.PRIVACY_IN, stanza, sender, to) is not None
        )

    def _shares_presence(self, target: C2SConnection, sender: JID, to: JID) -> bool:
        """Whether ``sender`` may see ``to``'s presence: same account, subscription, directed."""
        if sender.bare == to.bare or (sender.local is None and sender.domain in self.domains):
            return True
        if sender in target.directed or sender.bare in target.directed:
            return True
        roster = self.server.rosters.cached(to.bare)
        return roster is not None and roster.state(str(sender.bare)).has_from

    def _to_bare(self, stanza: Element, sender: JID, to: JID, conn: C2SConnection | None) -> None:
        tag = stanza.tag
        if tag == "iq":
            # RFC 6121 §8.5.2.1.3: the server answers iqs to an account on its behalf.
            self._iq(stanza, sender, to, "account", conn)
            return
        if self.server.bus.fire(events.to_bare(tag), stanza, sender, to) is not None:
            return
        resources = self.sessions.resources(to)
        if tag == "message":
            # The IM delivery rules replace this simple fallback (RFC 6121 §8.5.2).
            if resources:
                data = self._bytes(stanza)
                for target in resources.values():
                    target.send_raw(data)
                return
            self._offline_account(stanza, sender, to)
            return
        # presence with no IM module loaded: to every resource of the account.
        if resources:
            data = self._bytes(stanza)
            for target in resources.values():
                target.send_raw(data)

    def _offline_account(self, stanza: Element, sender: JID, to: JID) -> None:
        if stanza.attrs.get("type") in ("error", "groupchat", "headline"):
            return
        self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)

    # -- iq handling ----------------------------------------------------------------------

    def _iq(
        self,
        stanza: Element,
        sender: JID,
        to: JID,
        target: IqTarget,
        conn: C2SConnection | None,
    ) -> None:
        iq_type = stanza.attrs.get("type")
        if iq_type not in ("get", "set"):
            pending = self._pending.pop((stanza.attrs.get("id") or "", sender), None)
            if pending is not None and not pending.done():
                pending.set_result(stanza)
            else:
                self.server.bus.fire(events.IQ_RESPONSE, stanza, sender, to)
            return
        payload = stanza.find()
        if payload is None:
            self.reply_error(stanza, StanzaError(_C.BAD_REQUEST), sender)
            return
        handler = self.server.registry.iq_handlers.get((target, iq_type, payload.ns, payload.tag))
        if handler is None:
            # RFC 6120 §8.4: nobody claims it.
            self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
            return
        request = IqRequest(stanza, payload, sender, to, conn)
        try:
            result = handler(request)
        except StanzaError as err:
            self.reply_error(stanza, err, sender)
            return
        except Exception:
            log.exception("iq handler for {%s}%s failed", payload.ns, payload.tag)
            self.reply_error(stanza, StanzaError(_C.INTERNAL_SERVER_ERROR), sender)
            return
        if is_awaitable(result):
            task = self.server.spawn(self._iq_async(request, result))  # type: ignore[arg-type]
            if conn is not None:
                conn.hold(task)  # RFC 6120 §10.1: in order
        else:
            self._iq_reply(request, result)  # type: ignore[arg-type]

    async def _iq_async(self, request: IqRequest, pending: Awaitable[IqResult]) -> None:
        try:
            result = await pending
        except StanzaError as err:
            self.reply_error(request.stanza, err, request.sender)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("iq handler for {%s}%s failed", request.payload.ns, request.payload.tag)
            self.reply_error(request.stanza, StanzaError(_C.INTERNAL_SERVER_ERROR), request.sender)
            return
        self._iq_reply(request, result)

    def _iq_reply(self, request: IqRequest, result: IqResult) -> None:
        stanza = request.stanza
        if result is HANDLED:
            return
        if result is None:
            self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), request.sender)
            return
        attrs = {"type": "result", "id": stanza.attrs["id"], "to": str(request.sender)}
        if stanza.attrs.get("to") is not None:
            attrs["from"] = stanza.attrs["to"]
        reply = Element("iq", ns.CLIENT, attrs, None if result is EMPTY else [result])  # type: ignore[list-item]
        self.deliver_local(reply, request.sender)

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _bytes(stanza: Element) -> bytes:
        return serialize(stanza).encode()

    def deliver_local(self, stanza: Element, to: JID) -> None:
        """Write a server-made stanza to a local full JID, or to all resources of a bare one."""
        if to.resource is not None:
            target = self.sessions.get(to)
            if target is not None:
                target.send_stanza(stanza)
            return
        data = self._bytes(stanza)
        for target in self.sessions.resources(to).values():
            target.send_raw(data)

    def reply_error(self, stanza: Element, err: StanzaError, sender: JID) -> None:
        """Answer ``stanza`` with ``err`` (never an error to an error, RFC 6120 §8.3.1)."""
        if stanza.attrs.get("type") == "error":
            return
        reply = error_reply(stanza, err)
        if sender.local is None and sender.domain in self.domains and stanza.tag == "iq":
            # the server's own request failed on the way: wake whoever waits for it
            waiting = self._pending.pop(
                (stanza.attrs.get("id") or "", JID.parse(stanza.attrs.get("to") or sender.domain)),
                None,
            )
            if waiting is not None and not waiting.done():
                waiting.set_result(reply)
            return
        if "from" not in reply.attrs:
            reply.attrs["from"] = (
                sender.domain if sender.domain in self.domains else next(iter(self.domains))
            )
        reply.attrs["to"] = str(sender)
        if sender.domain in self.domains:
            self.deliver_local(reply, sender)
        else:
            self.server.bus.fire(events.ROUTE_REMOTE, reply, None, sender)
