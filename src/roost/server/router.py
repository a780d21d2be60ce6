"""Stanza routing in three stages (Prosody's): process, classify, deliver.

*process* checks what a client sent (addresses, iq shape) and stamps ``from``; *classify*
decides whether the stanza is for the server, an account it answers for, a local session, a
hosted service domain, or a remote domain; *deliver* hands it to ``roost.server.delivery``
(the one writer to sessions) or to modules. Routing to an online user touches only in-memory
maps. A raised ``StanzaError`` becomes the error reply here, and only here; so does a filter
that failed (the stanza is refused: ``internal-server-error``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from time import perf_counter
from types import CoroutineType
from typing import Any, Final

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition, error_reply
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.server import events, stats
from roost.server.api import (
    EMPTY,
    HANDLED,
    IqRequest,
    IqResult,
    IqTarget,
    OnlyTo,
    PrivacyGate,
    Registry,
    is_awaitable,
)
from roost.server.bus import FAILED, EventBus, Outcome
from roost.server.delivery import deliver, deliver_all
from roost.server.session import Session
from roost.server.sessions import SessionManager

__all__ = ["Router"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition
IQ_TYPES = frozenset(("get", "set", "result", "error"))
#: message types nobody answers with an error when undeliverable (RFC 6120 §10.3.2)
_NO_BOUNCE = frozenset(("error", "groupchat", "headline"))
PRESENCE_HANDLED = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"))
#: stanzas waiting for privacy rules to be read, server-wide
MAX_DEFERRED: Final = 10_000


class _Deferred:
    """A stanza waiting for the privacy rules of its parties (``PrivacyGate.prepare``)."""

    __slots__ = ("loading", "sender", "session", "stanza", "to")

    def __init__(
        self,
        stanza: Element,
        sender: JID,
        to: JID,
        session: Session | None,
        loading: Awaitable[object] | None,
    ) -> None:
        self.stanza = stanza
        self.sender = sender
        self.to = to
        self.session = session
        self.loading = loading


class Router:
    """Routes stanzas between local sessions, modules, hosted services and other servers."""

    __slots__ = (
        "_bus",
        "_default_domain",
        "_deferred",
        "_deferred_done",
        "_deferred_total",
        "_new_id",
        "_pending",
        "_queued",
        "_registry",
        "_routed_waiters",
        "_spawn",
        "_worker",
        "domains",
        "sessions",
    )

    def __init__(
        self,
        domains: frozenset[str],
        default_domain: str,
        sessions: SessionManager,
        registry: Registry,
        bus: EventBus,
        new_id: Callable[[], str],
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self.domains = domains
        self._default_domain = default_domain
        self.sessions = sessions
        self._registry = registry
        self._bus = bus
        self._new_id = new_id
        self._spawn = spawn
        self._pending: dict[tuple[str, JID], asyncio.Future[Element]] = {}
        self._deferred: collections.deque[_Deferred] = collections.deque()
        #: bare JIDs with deferred stanzas: their later stanzas queue behind them (in order)
        self._queued: collections.Counter[JID] = collections.Counter()
        self._worker: asyncio.Task[None] | None = None
        #: deferred stanzas ever queued, and routed; ``routed`` waits on them
        self._deferred_total = 0
        self._deferred_done = 0
        self._routed_waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def request(self, iq: Element, to: JID, timeout: float = 30.0) -> Element:
        """Send an iq get/set from the server and wait for the result or error stanza.

        Raises ``TimeoutError`` when no answer comes within ``timeout`` seconds.
        """
        iq_id = iq.attrs.setdefault("id", self._new_id())
        iq.attrs["to"] = str(to)
        local = to.domain if to.domain in self.domains else self._default_domain
        iq.attrs.setdefault("from", local)
        future: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        key = (iq_id, to)
        self._pending[key] = future
        try:
            self.route(iq, JID.parse(iq.attrs["from"]), to)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(key, None)

    def recipient_gone(self, jid: JID) -> None:
        """A local session ended: the server's own requests to it will not be answered;
        their waiters get ``recipient-unavailable`` now (RFC 6120 §8.3.3.13) instead of
        waiting out their timeout (a caps query, say, would hold up a shutdown)."""
        if not self._pending:
            return
        for (iq_id, to), future in list(self._pending.items()):
            if to == jid and not future.done():
                reply = Element("iq", ns.CLIENT, {"type": "error", "id": iq_id, "from": str(jid)})
                reply.append(StanzaError(_C.RECIPIENT_UNAVAILABLE).to_element())
                future.set_result(reply)

    # -- stage 1: process -----------------------------------------------------------------

    def from_client(self, session: Session, stanza: Element) -> None:
        """A stanza from a bound client: stamp ``from`` (no spoofing), validate, route."""
        stats.RECEIVED_C2S[stanza.tag] += 1
        if stats.ROUTING.active:
            started = perf_counter()
            self._from_client(session, stanza)
            stats.ROUTING.observe(perf_counter() - started)
        else:
            self._from_client(session, stanza)

    def _from_client(self, session: Session, stanza: Element) -> None:
        sender = session.jid
        # RFC 6120 §8.1.2.1: the server stamps the full JID, overriding whatever was sent.
        stanza.attrs["from"] = session.jid_str
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
        elif stanza.tag == "presence":
            if to is not None:
                outcome = self._bus.run(events.PRESENCE_OUTBOUND, stanza, sender, to, session)
                if outcome is not None:
                    self._failed(outcome, stanza, sender)
                    return
        elif stanza.tag == "message":
            outcome = self._bus.run(
                events.MESSAGE_OUTBOUND, stanza, session, sender.bare if to is None else to
            )
            if outcome is not None:
                self._failed(outcome, stanza, sender)
                return
        self.route(stanza, sender, to, session)

    # -- stage 2: classify ----------------------------------------------------------------

    def route(
        self, stanza: Element, sender: JID, to: JID | None, session: Session | None = None
    ) -> None:
        """Route a processed stanza (``from`` already set) to where ``to`` points."""
        tag = stanza.tag
        if to is None:
            # RFC 6120 §10.3.3: no 'to' means the sender's own account handles it.
            if tag == "presence":
                outcome = self._bus.run(events.PRESENCE_BROADCAST, stanza, sender, session)
                self._failed(outcome, stanza, sender)
                return
            if tag == "iq":
                self._iq(stanza, sender, sender.bare, "account", session)
                return
            to = sender.bare
        gate = self._registry.privacy_gate
        if gate is not None and sender.bare != to.bare:
            if self._queued and (sender.bare in self._queued or to.bare in self._queued):
                self._defer(stanza, sender, to, session, None)
                return
            prepared = gate.prepare(stanza, sender, to)
            if type(prepared) is CoroutineType:  # rules to read first (cheaper than isawaitable)
                self._defer(stanza, sender, to, session, prepared)
                return
            if self._judge(gate, stanza, sender, to, prepared, True, True):
                return
        self._classify(stanza, sender, to, session)

    def _classify(self, stanza: Element, sender: JID, to: JID, session: Session | None) -> None:
        """Where a stanza the privacy rules let through goes."""
        tag = stanza.tag
        if to.domain not in self.domains:
            hosted = self._registry.hosted.get(to.domain)
            if hosted is not None:
                hosted[0].receive(stanza, sender, to)
                return
            outcome = self._bus.run(events.ROUTE_REMOTE, stanza, sender, to)
            if outcome is None:
                # Server-to-server federation is not available yet.
                self.reply_error(stanza, StanzaError(_C.REMOTE_SERVER_NOT_FOUND), sender)
            else:
                self._failed(outcome, stanza, sender)
            return
        if to.local is None:
            if to.resource is None:
                self._to_host(stanza, sender, to, session)
            elif tag == "iq" and stanza.attrs.get("type") in ("get", "set"):
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
            return
        if to.resource is None:
            self._to_bare(stanza, sender, to, session)
        else:
            self._to_full(stanza, sender, to, session)

    def _failed(self, outcome: Outcome | None, stanza: Element, sender: JID) -> None:
        """A filter raised: the stanza is refused, and its sender told (never for presence)."""
        if outcome is FAILED and stanza.tag != "presence":
            self.reply_error(stanza, StanzaError(_C.INTERNAL_SERVER_ERROR), sender)

    # -- stage 3: deliver -----------------------------------------------------------------

    def _to_host(self, stanza: Element, sender: JID, to: JID, session: Session | None) -> None:
        tag = stanza.tag
        if tag == "iq":
            self._iq(stanza, sender, to, "host", session)
            return
        outcome = self._bus.run(events.to_host(tag), stanza, sender, session)
        if outcome is not None:
            self._failed(outcome, stanza, sender)
        elif tag == "message" and stanza.attrs.get("type") not in _NO_BOUNCE:
            # A message to the server that nothing handles (RFC 6120 §10.3.2).
            self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)

    def _to_full(self, stanza: Element, sender: JID, to: JID, session: Session | None) -> None:
        target = self.sessions.get(to)
        tag = stanza.tag
        if target is not None:
            if tag == "message":
                self.deliver_message(stanza, sender, to, (target,))
                return
            if tag == "presence" and stanza.attrs.get("type") not in PRESENCE_HANDLED:
                deliver(target, stanza)
                return
            # iq requests (RFC 6121 §8.5.3.1), subscription stanzas and probes: the IM
            # modules may take them; what they leave goes to the session.
            outcome = self._bus.run(events.to_full(tag), stanza, sender, to, target)
            if outcome is None:
                deliver(target, stanza)
            else:
                self._failed(outcome, stanza, sender)
            return
        outcome = self._bus.run(events.to_full(tag), stanza, sender, to, None)
        if outcome is not None:
            self._failed(outcome, stanza, sender)
            return
        # RFC 6121 §8.5.3.2: no such resource.
        if tag == "message":
            if stanza.attrs.get("type") in (None, "normal", "chat", "headline"):
                self._to_bare(stanza, sender, to.bare, session)
            elif stanza.attrs.get("type") == "groupchat":
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
        elif tag == "iq":
            if stanza.attrs.get("type") in ("get", "set"):
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
        elif stanza.attrs.get("type") in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            self._to_bare(stanza, sender, to.bare, session)
        # other presence to an unavailable resource is dropped silently (§8.5.3.2.1)

    # -- the privacy gate (XEP-0016, XEP-0191) ----------------------------------------

    def _judge(
        self,
        gate: PrivacyGate,
        stanza: Element,
        sender: JID,
        to: JID,
        prepared: object,
        out: bool,
        inbound: bool,
    ) -> bool:
        """Apply the gate's verdict; True when the stanza was taken (refused, or delivered
        to the sessions the rules allow). A gate that fails refuses it (fail closed)."""
        try:
            verdict = gate.check(stanza, sender, to, prepared, out=out, inbound=inbound)
        except Exception:
            log.exception("the privacy gate failed; a stanza to %s is refused", to)
            self._failed(FAILED, stanza, sender)
            return True
        if verdict is None:
            return False
        if isinstance(verdict, OnlyTo):
            if stanza.tag == "message":
                self.deliver_message(stanza, sender, to, verdict.sessions)
            else:
                deliver_all(verdict.sessions, stanza)
        elif verdict.error is not None:
            self.reply_error(stanza, verdict.error, sender)
        return True

    def privacy_refuses(
        self, stanza: Element, sender: JID, to: JID, *, out: bool = True, inbound: bool = True
    ) -> bool:
        """The gate for what a module delivers outside ``route`` (presence at login, say),
        with the parties' rules in memory: True when it took the stanza."""
        gate = self._registry.privacy_gate
        if gate is None or sender.bare == to.bare:
            return False
        prepared = gate.prepare(stanza, sender, to, out=out, inbound=inbound)
        if is_awaitable(prepared):
            if isinstance(prepared, Coroutine):
                prepared.close()
            log.error("privacy rules for a stanza to %s are not in memory; refused", to)
            return True
        return self._judge(gate, stanza, sender, to, prepared, out, inbound)

    async def privacy_refuses_loaded(
        self, stanza: Element, sender: JID, to: JID, *, out: bool = True, inbound: bool = True
    ) -> bool:
        """``privacy_refuses``, reading the parties' rules first if they are not in memory."""
        gate = self._registry.privacy_gate
        if gate is None or sender.bare == to.bare:
            return False
        prepared = gate.prepare(stanza, sender, to, out=out, inbound=inbound)
        if is_awaitable(prepared):
            try:
                prepared = await prepared  # type: ignore[misc]
            except Exception:
                log.exception("cannot read privacy rules; a stanza to %s is refused", to)
                self._failed(FAILED, stanza, sender)
                return True
        return self._judge(gate, stanza, sender, to, prepared, out, inbound)

    def _defer(
        self,
        stanza: Element,
        sender: JID,
        to: JID,
        session: Session | None,
        loading: Awaitable[object] | None,
    ) -> None:
        if len(self._deferred) >= MAX_DEFERRED:
            if isinstance(loading, Coroutine):
                loading.close()
            log.warning("too many stanzas waiting for privacy lists; refusing one")
            if stanza.tag != "presence":
                self.reply_error(stanza, StanzaError(_C.RESOURCE_CONSTRAINT), sender)
            return
        self._deferred.append(_Deferred(stanza, sender, to, session, loading))
        self._deferred_total += 1
        self._queued[sender.bare] += 1
        self._queued[to.bare] += 1
        if self._worker is None:
            self._worker = self._spawn(self._drain())

    async def _drain(self) -> None:
        """Judge deferred stanzas in arrival order as their rules arrive, and route them."""
        try:
            while self._deferred:
                item = self._deferred[0]
                gate = self._registry.privacy_gate
                prepared: object = None
                failed = False
                try:
                    if gate is not None:
                        prepared = item.loading
                        if prepared is None:
                            prepared = gate.prepare(item.stanza, item.sender, item.to)
                        if is_awaitable(prepared):
                            prepared = await prepared  # type: ignore[misc]
                except Exception:
                    log.exception("cannot read privacy rules; a stanza to %s is refused", item.to)
                    failed = True
                self._deferred.popleft()
                for jid in (item.sender.bare, item.to.bare):
                    self._queued[jid] -= 1
                    if self._queued[jid] <= 0:
                        del self._queued[jid]
                if failed:
                    self._failed(FAILED, item.stanza, item.sender)
                elif gate is None or not self._judge(
                    gate, item.stanza, item.sender, item.to, prepared, True, True
                ):
                    self._classify(item.stanza, item.sender, item.to, item.session)
                self._deferred_done += 1
                self._wake_routed()
        finally:
            self._worker = None

    async def routed(self) -> None:
        """Return once every stanza handed to ``route`` before the call has been routed
        (those waiting for privacy rules too): what the archive needs before it answers
        or promises that a message is stored."""
        target = self._deferred_total
        if self._deferred_done >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._routed_waiters.append((target, future))
        await future

    def _wake_routed(self) -> None:
        if not self._routed_waiters:
            return
        done = self._deferred_done
        keep = []
        for target, future in self._routed_waiters:
            if target > done:
                keep.append((target, future))
            elif not future.done():
                future.set_result(None)
        self._routed_waiters = keep

    def _to_bare(self, stanza: Element, sender: JID, to: JID, session: Session | None) -> None:
        tag = stanza.tag
        if tag == "iq":
            # RFC 6121 §8.5.2.1.3: the server answers iqs to an account on its behalf.
            self._iq(stanza, sender, to, "account", session)
            return
        outcome = self._bus.run(events.to_bare(tag), stanza, sender, to)
        if outcome is not None:
            self._failed(outcome, stanza, sender)
            return
        resources = self.sessions.resources(to)
        if tag == "message":
            # The IM delivery rules (the message module) replace this simple fallback.
            if resources:
                deliver_all(resources.values(), stanza)
            elif stanza.attrs.get("type") not in _NO_BOUNCE:
                self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
            return
        # presence with no IM module loaded: to every resource of the account.
        deliver_all(resources.values(), stanza)

    # -- iq handling ----------------------------------------------------------------------

    def _iq(
        self,
        stanza: Element,
        sender: JID,
        to: JID,
        target: IqTarget,
        session: Session | None,
    ) -> None:
        iq_type = stanza.attrs.get("type")
        if iq_type not in ("get", "set"):
            pending = self._pending.pop((stanza.attrs.get("id") or "", sender), None)
            if pending is not None and not pending.done():
                pending.set_result(stanza)
            else:
                self._bus.run(events.IQ_RESPONSE, stanza, sender, to)
            return
        payload = stanza.find()
        if payload is None:
            self.reply_error(stanza, StanzaError(_C.BAD_REQUEST), sender)
            return
        handler = self._registry.iq_handlers.get((target, iq_type, payload.ns, payload.tag))
        if handler is None:
            # RFC 6120 §8.4: nobody claims it.
            self.reply_error(stanza, StanzaError(_C.SERVICE_UNAVAILABLE), sender)
            return
        request = IqRequest(stanza, payload, sender, to, session)
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
            task = self._spawn(self._iq_async(request, result))  # type: ignore[arg-type]
            if session is not None:
                session.hold(task)  # RFC 6120 §10.1: in order
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
        self._answer(reply, request.sender)

    # -- helpers --------------------------------------------------------------------------

    def deliver_message(
        self, stanza: Element, sender: JID, to: JID, sessions: Sequence[Session]
    ) -> None:
        """Write a message to ``sessions`` of the local account ``to``: the one place a
        message reaches a session, so the archive and carbons see each once."""
        outcome = self._bus.run(events.MESSAGE_DELIVER, stanza, sender, to, sessions)
        if outcome is None:
            deliver_all(sessions, stanza)
        else:
            self._failed(outcome, stanza, sender)

    def deliver_local(self, stanza: Element, to: JID) -> None:
        """Write a server-made stanza to a local full JID, or to all resources of a bare one."""
        if to.resource is not None:
            target = self.sessions.get(to)
            if target is not None:
                deliver(target, stanza)
            return
        deliver_all(self.sessions.resources(to).values(), stanza)

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
        if "from" not in reply.attrs and not (
            sender.local is not None and sender.domain in self.domains
        ):
            # RFC 6120 §8.1.2.1 / §10.3.3: a local client's stanza with no 'to' was handled
            # on behalf of its account; the answer then has no 'from' (like a result), never
            # the domain, which clients (aioxmpp) take for another entity. Anyone else's is
            # answered by the server.
            reply.attrs["from"] = (
                sender.domain if sender.domain in self.domains else self._default_domain
            )
        reply.attrs["to"] = str(sender)
        self._answer(reply, sender)

    def _answer(self, reply: Element, to: JID) -> None:
        """Send the server's answer to whoever asked: a local session, a hosted service or
        component, or another server."""
        if to.domain in self.domains:
            self.deliver_local(reply, to)
        elif (hosted := self._registry.hosted.get(to.domain)) is not None:
            hosted[0].receive(reply, JID.parse(reply.attrs.get("from") or self._default_domain), to)
        else:
            self._bus.run(events.ROUTE_REMOTE, reply, None, to)
