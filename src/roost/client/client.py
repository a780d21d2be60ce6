"""``Client``: one account's session, on ``roost.client.connection`` and the core stream.

It logs in (``roost.client.dial``), requests the roster and sends initial presence (RFC
6121 §2.1.6, §4.2), answers what a client must (ping, disco#info with caps, version,
roster and blocking pushes; everything else ``service-unavailable``, RFC 6120 §8.4), sends
requests and matches their answers (§8.1.2.1), and hands messages and presence to handlers
(``on``) and iterators (``events``). A connection lost without ``disconnect`` is retried
with exponential back-off and jitter; the roster is then fetched again by version and the
last presence restored.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import roost
from roost.client.blocking import BLOCKING, Blocklist
from roost.client.caps import DEFAULT_NODE, EntityCaps
from roost.client.connection import Connection
from roost.client.dial import backoff, dial, find_targets
from roost.client.disco import Disco, Identity
from roost.client.errors import AuthenticationFailed, ClientError, Disconnected, RequestTimeout
from roost.client.events import END, Event, EventStream, put
from roost.client.roster import Roster, RosterChanged
from roost.client.stanzas import Connected, ConnectionLost, Iq, Message, Presence, parse_jid
from roost.core import ns
from roost.core.caps import CAPS
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamErrorCondition,
    error_reply,
    parse_stanza_error,
)
from roost.core.jid import JID
from roost.core.stream.client import DEFAULT_MECHANISMS, ClientStreamSettings
from roost.core.xml.element import Element

__all__ = ["Client", "IqHandler", "SoftwareVersion"]

log = logging.getLogger(__name__)

VERSION = "jabber:iq:version"
REGISTER = "jabber:iq:register"
E = TypeVar("E", Message, Presence, Connected, ConnectionLost, RosterChanged)
#: answers an iq get/set: a result payload, None (empty result), or raises StanzaError;
#: may be a coroutine function
IqHandler = Callable[[Iq], Element | Coroutine[Any, Any, Element | None] | None]
_C = StanzaErrorCondition
#: stream errors after which reconnecting would only repeat them: another login took our
#: resource (RFC 6120 §4.9.3.3: reconnecting would kick it off in turn), or the account
#: was removed or disabled
_FINAL = frozenset({StreamErrorCondition.CONFLICT, StreamErrorCondition.NOT_AUTHORIZED})


@dataclass(frozen=True, slots=True)
class SoftwareVersion:
    """XEP-0092 §2: name and version are required, os optional."""

    name: str
    version: str
    os: str | None = None


def _server_address(server: str | tuple[str, int] | None) -> tuple[str, int] | None:
    if server is None or isinstance(server, tuple):
        return server
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit():
        return (server, 5222)
    return (host.strip("[]"), int(port))


class Client:
    """An XMPP client session; ``async with Client(jid, password) as c: ...``."""

    def __init__(
        self,
        jid: JID | str,
        password: str,
        *,
        resource: str | None = None,
        server: str | tuple[str, int] | None = None,
        direct_tls: bool = False,
        cafile: str | Path | None = None,
        insecure: bool = False,
        timeout: float = 10.0,
        request_timeout: float = 30.0,
        reconnect: bool = True,
        reconnect_delay: tuple[float, float] = (0.5, 60.0),
        nameservers: Sequence[tuple[str, int]] = (),
        mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
        register: bool = False,
        fetch_roster: bool = True,
        available: bool = True,
        name: str = "Roost",
        caps_node: str = DEFAULT_NODE,
        caps_file: str | Path | None = None,
        rng: random.Random | None = None,
    ) -> None:
        given = jid if isinstance(jid, JID) else JID.parse(jid)
        if given.local is None:
            raise ValueError(f"{given} is not an account JID (user@domain)")
        #: the account's bare JID (a resource in ``jid`` is the one asked for)
        self.account = given.bare
        self._password = password
        self.resource = resource or given.resource
        self.server = _server_address(server)
        self.direct_tls = direct_tls
        self.cafile = cafile
        self.insecure = insecure
        self.timeout = timeout
        self.request_timeout = request_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.nameservers = tuple(nameservers)
        self.mechanisms = tuple(mechanisms)
        self._register = register
        self.fetch_roster = fetch_roster
        self.available = available
        self.name = name
        #: the bound full JID (None until connected)
        self.jid: JID | None = None
        #: XEP-0077: True if ``register`` created the account, False if it existed
        self.registered: bool | None = None
        self.identities: list[Identity] = [Identity("client", "bot", name)]
        self.features: set[str] = {ns.DISCO_INFO, CAPS, ns.PING, VERSION}
        self.roster = Roster(self)
        self.disco = Disco(self)
        self.blocklist = Blocklist(self)
        self.caps = EntityCaps(self, caps_node, caps_file)
        self._conn: Connection | None = None
        self._closing = False
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4) + "-"
        self._pending: dict[str, tuple[asyncio.Future[Element], JID | None]] = {}
        self._handlers: dict[type, list[Callable[[Any], object]]] = {}
        self._queues: list[tuple[tuple[type, ...], asyncio.Queue[object]]] = []
        self._iq_handlers: dict[tuple[str, str, str], IqHandler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._presence: Element | None = None  # the last broadcast presence we sent
        self._rng = rng or random.Random()
        self._builtin_handlers()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.ended

    @property
    def server_jid(self) -> JID:
        return JID(None, self.account.domain)

    @property
    def stream_features(self) -> Element | None:
        return self._conn.stream.features if self._conn is not None else None

    @property
    def mechanism(self) -> str | None:
        """The SASL mechanism the current session logged in with."""
        return self._conn.stream.mechanism if self._conn is not None else None

    async def connect(self) -> JID:
        """Log in (each step bounded by ``timeout``); raises a ``ClientError`` subclass."""
        self._closing = False
        await self._login(reconnected=False)
        assert self.jid is not None
        return self.jid

    def _settings(self) -> ClientStreamSettings:
        assert self.account.local is not None
        return ClientStreamSettings(
            username=self.account.local,
            domain=self.account.domain,
            password=self._password,
            resource=self.resource,
            mechanisms=self.mechanisms,
            register=self._register and self.registered is None,
        )

    def _make_connection(self, settings: ClientStreamSettings, ctx: Any) -> Connection:
        conn = Connection(settings, ctx)
        conn.on_stanza = lambda el: self._received(conn, el)
        conn.on_ended = lambda failure: self._ended(conn, failure)
        return conn

    async def _login(self, *, reconnected: bool) -> None:
        targets = await find_targets(
            self.account.domain,
            server=self.server,
            direct_tls=self.direct_tls,
            nameservers=self.nameservers,
            timeout=self.timeout,
        )
        settings = self._settings()
        conn = await dial(
            settings,
            targets,
            cafile=self.cafile,
            insecure=self.insecure,
            timeout=self.timeout,
            register=settings.register,
            make=self._make_connection,
        )
        if settings.register:
            self.registered = conn.registered
        assert conn.jid is not None
        self._conn = conn
        self.jid = JID.parse(conn.jid)
        try:
            if self.fetch_roster:
                await self.roster.fetch()  # RFC 6121 §2.1.6: before initial presence
            if self.blocklist.fetched:
                await self.blocklist.fetch()
        except BaseException:
            # a session we could not set up is closed here, not left to the caller
            self._conn = None
            conn.abort()
            raise
        if reconnected and self._presence is not None:
            conn.send(self._presence)
        elif self.available:
            self.send_presence()
        self._emit(Connected(self.jid, reconnected))

    async def disconnect(self, timeout: float | None = None) -> None:
        """Close the stream (RFC 6120 §4.4), bounded by ``timeout``; no reconnection."""
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            self._reconnecting = None
        conn = self._conn
        if conn is not None:
            await conn.close(self.timeout if timeout is None else timeout)
            self._ended(conn, None)
        for task in list(self._tasks):
            task.cancel()
        for _kinds, queue in self._queues:
            if queue.full():
                queue.get_nowait()  # the end must get through
            queue.put_nowait(END)

    def _ended(self, conn: Connection, failure: ClientError | None) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        for fut, _to in self._pending.values():
            if not fut.done():
                fut.set_exception(Disconnected(str(failure or "disconnected")))
        self._pending.clear()
        if self._closing:
            return
        log.info("connection lost: %s", failure or "closed by the server")
        self._emit(ConnectionLost(failure))
        stream_error = failure.stream_error if failure is not None else None
        if stream_error is not None and stream_error.condition in _FINAL:
            log.warning("not reconnecting after stream error %s", stream_error.condition.value)
            return
        if self.reconnect and self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        try:
            while not self._closing:
                await asyncio.sleep(backoff(attempt, *self.reconnect_delay, self._rng))
                try:
                    await self._login(reconnected=True)
                    return
                except AuthenticationFailed as exc:
                    log.error("reconnection refused, giving up: %s", exc)
                    return
                except (ClientError, TimeoutError, StanzaError) as exc:
                    attempt += 1
                    log.info("reconnection attempt %d failed: %s", attempt, exc)
        finally:
            self._reconnecting = None

    # -- tasks ----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the client owns (cancelled by ``disconnect``)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("client task failed", exc_info=exc)

    # -- sending --------------------------------------------------------------------------

    def _require(self) -> Connection:
        conn = self._conn
        if conn is None or conn.ended:
            raise Disconnected("not connected")
        return conn

    def _next_id(self) -> str:
        # unpredictable per client, so an answer cannot be forged ahead of the request
        return f"{self._id_prefix}{next(self._ids)}"

    def send(self, stanza: Element) -> None:
        """Send a stanza as it is (``jabber:client`` namespace)."""
        self._require().send(stanza)

    def send_message(
        self,
        to: JID | str,
        body: str | None,
        *,
        type: str = "chat",
        subject: str | None = None,
        thread: str | None = None,
    ) -> str:
        """Send a message (RFC 6121 §5); returns its id."""
        msg_id = self._next_id()
        el = Element("message", ns.CLIENT, {"to": str(to), "type": type, "id": msg_id})
        if subject is not None:
            el.sub("subject", text=subject)
        if body is not None:
            el.sub("body", text=body)
        if thread is not None:
            el.sub("thread", text=thread)
        self.send(el)
        return msg_id

    def send_presence(
        self,
        to: JID | str | None = None,
        *,
        type: str | None = None,
        show: str | None = None,
        status: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Send presence (RFC 6121 §4); available broadcast presence carries our caps."""
        el = Element("presence", ns.CLIENT)
        if to is not None:
            el.attrs["to"] = str(to)
        if type is not None:
            el.attrs["type"] = type
        if show is not None:
            el.sub("show", text=show)
        if status is not None:
            el.sub("status", text=status)
        if priority is not None:
            el.sub("priority", text=str(priority))
        if type is None:
            self.caps.annotate(el)  # XEP-0115 §4
        if to is None and type in (None, "unavailable"):
            self._presence = el
        self.send(el)

    async def request(
        self,
        payload: Element,
        *,
        to: JID | str | None = None,
        type: str = "get",
        timeout: float | None = None,
    ) -> Element | None:
        """Send an iq ``get`` or ``set`` and wait for its answer (RFC 6120 §8.2.3).

        Returns the result's payload (None when empty); raises ``StanzaError`` for an
        error answer, ``RequestTimeout`` after ``timeout`` (default ``request_timeout``)
        and ``Disconnected`` if the stream ends first.
        """
        if type not in ("get", "set"):
            raise ValueError("an iq request is a get or a set")
        conn = self._require()
        target = None if to is None else (to if isinstance(to, JID) else JID.parse(to))
        iq_id = self._next_id()
        iq = Element("iq", ns.CLIENT, {"type": type, "id": iq_id}, [payload])
        if target is not None:
            iq.attrs["to"] = str(target)
        fut: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = (fut, target)
        try:
            conn.send(iq)
            async with asyncio.timeout(self.request_timeout if timeout is None else timeout):
                reply = await fut
        except TimeoutError:
            raise RequestTimeout(f"no answer from {target or 'the server'} in time") from None
        finally:
            self._pending.pop(iq_id, None)
        if reply.get("type") == "error":
            err = reply.find("error", ns.CLIENT)
            if err is None:
                raise StanzaError(_C.UNDEFINED_CONDITION, "an error without <error/>")
            raise parse_stanza_error(err)
        return reply.find()

    def _answers(self, target: JID | None, sender: JID | None) -> bool:
        """RFC 6120 §8.1.2.1: a reply comes from where the request went; for our account
        or server (no 'to') the server may leave 'from' out or use the bare JID."""
        if sender == target:
            return True
        assert self.jid is not None
        ours = (None, self.jid.bare, self.server_jid)
        return target in ours and sender in ours

    # -- receiving ------------------------------------------------------------------------

    def on(self, kind: type[E], handler: Callable[[E], object]) -> Callable[[], None]:
        """Call ``handler`` for every event of ``kind`` (``Message``, ``Presence``, ...);
        a coroutine function runs as a task. Returns a function that unregisters it."""
        handlers = self._handlers.setdefault(kind, [])
        handlers.append(handler)
        return lambda: handlers.remove(handler) if handler in handlers else None

    def events(self, *kinds: type, maxsize: int = 1000) -> EventStream[Event]:
        """Incoming events (of ``kinds``, else all), for ``async for``, until
        ``disconnect``. Events are kept from this call on; ``close()`` (or ``with``)
        stops that. Bounded: ``maxsize`` behind, newer events are dropped (and logged)."""
        return EventStream(self._queues, kinds, maxsize)

    def messages(self, maxsize: int = 1000) -> EventStream[Message]:
        """Incoming messages, for ``async for``, until ``disconnect``."""
        return EventStream(self._queues, (Message,), maxsize)

    def _emit(self, ev: object) -> None:
        for handler in list(self._handlers.get(type(ev), ())):
            try:
                result = handler(ev)
                if inspect.isawaitable(result):
                    self.spawn(_awaited(result))
            except Exception:  # one conversion point: a handler bug must not kill the stream
                log.exception("event handler %r failed", handler)
        for kinds, queue in self._queues:
            if not kinds or isinstance(ev, kinds):
                put(queue, ev)

    def _received(self, conn: Connection, el: Element) -> None:
        tag = el.tag
        if tag == "message":
            self._emit(Message.from_element(el))
        elif tag == "presence":
            presence = Presence.from_element(el)
            if presence.from_ is not None:
                if presence.type in (None, "unavailable"):
                    self.caps.observe(presence)
                if presence.type == "unavailable":
                    self.disco.forget(presence.from_)
            self._emit(presence)
        elif tag == "iq":
            iq_type = el.get("type")
            if iq_type in ("result", "error"):
                pending = self._pending.get(el.get("id") or "")
                if pending is not None and self._answers(pending[1], parse_jid(el.get("from"))):
                    fut = pending[0]
                    if not fut.done():
                        fut.set_result(el)
            elif iq_type in ("get", "set"):
                self._iq_request(conn, el, iq_type)

    # -- answering requests ---------------------------------------------------------------

    def handle_iq(
        self, type: str, namespace: str, tag: str, handler: IqHandler, *, feature: bool = True
    ) -> None:
        """Answer iq ``type`` requests whose payload is ``{namespace}tag``; ``feature``
        adds ``namespace`` to our disco#info (and so to our caps)."""
        self._iq_handlers[(type, namespace, tag)] = handler
        if feature and namespace not in self.features:
            self.features.add(namespace)
            self.caps.changed()

    def _iq_request(self, conn: Connection, el: Element, iq_type: str) -> None:
        children = list(el.elements())
        iq_id = el.get("id")
        if iq_id is None:
            return  # RFC 6120 §8.1.3: an iq without id cannot be answered
        if len(children) != 1:
            self._reply(conn, el, StanzaError(_C.BAD_REQUEST, "an iq has exactly one payload"))
            return
        payload = children[0]
        handler = self._iq_handlers.get((iq_type, payload.ns, payload.tag))
        if handler is None:
            self._reply(conn, el, StanzaError(_C.SERVICE_UNAVAILABLE))  # RFC 6120 §8.4
            return
        iq = Iq(parse_jid(el.get("from")), parse_jid(el.get("to")), iq_type, iq_id, payload, el)
        try:
            result = handler(iq)
        except StanzaError as err:
            self._reply(conn, el, err)
            return
        except Exception:  # the conversion point for handlers (STYLE 4)
            log.exception("iq handler for {%s}%s failed", payload.ns, payload.tag)
            self._reply(conn, el, StanzaError(_C.INTERNAL_SERVER_ERROR))
            return
        if inspect.isawaitable(result):
            self.spawn(self._reply_later(conn, el, result))
        else:
            self._reply(conn, el, result)

    async def _reply_later(self, conn: Connection, el: Element, pending: Any) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                result = await pending
        except StanzaError as err:
            result = err
        except TimeoutError:
            log.warning("an iq handler took longer than %.0f s", self.request_timeout)
            result = StanzaError(_C.INTERNAL_SERVER_ERROR)
        except Exception:
            log.exception("iq handler failed")
            result = StanzaError(_C.INTERNAL_SERVER_ERROR)
        self._reply(conn, el, result)

    @staticmethod
    def _reply(conn: Connection, el: Element, result: Element | StanzaError | None) -> None:
        if conn.ended:
            return
        if isinstance(result, StanzaError):
            reply = error_reply(el, result)
            reply.attrs.pop("from", None)  # the server stamps our JID
        else:
            reply = Element("iq", ns.CLIENT, {"type": "result", "id": el.get("id") or ""})
            if (frm := el.get("from")) is not None:
                reply.attrs["to"] = frm
            if result is not None:
                reply.append(result)
        conn.send(reply)

    def _from_own_server(self, iq: Iq) -> bool:
        assert self.jid is not None
        return iq.from_ is None or iq.from_ == self.jid.bare

    def _builtin_handlers(self) -> None:
        def roster_push(iq: Iq) -> None:
            # RFC 6121 §2.1.6: only our own server may push; others' are ignored
            if not self._from_own_server(iq):
                raise StanzaError(_C.SERVICE_UNAVAILABLE)
            item = self.roster.apply_push(iq.payload)
            if item is None:
                raise StanzaError(_C.BAD_REQUEST, "a roster push carries one item")
            self._emit(RosterChanged(item))

        def blocking_push(iq: Iq) -> None:
            if not self._from_own_server(iq):
                raise StanzaError(_C.SERVICE_UNAVAILABLE)
            self.blocklist.apply_push(iq.payload)

        def disco_info(iq: Iq) -> Element:
            node = iq.payload.get("node")
            if not self.caps.is_own_node(node):
                raise StanzaError(_C.ITEM_NOT_FOUND)
            return self.caps.own_info(node)

        def version(_iq: Iq) -> Element:
            query = Element("query", VERSION)
            query.sub("name", text=self.name)
            query.sub("version", text=roost.__version__)
            return query

        self._iq_handlers[("set", ns.ROSTER, "query")] = roster_push
        self._iq_handlers[("set", BLOCKING, "block")] = blocking_push
        self._iq_handlers[("set", BLOCKING, "unblock")] = blocking_push
        self._iq_handlers[("get", ns.DISCO_INFO, "query")] = disco_info
        self._iq_handlers[("get", ns.PING, "ping")] = lambda _iq: None  # XEP-0199 §4.2
        self._iq_handlers[("get", VERSION, "query")] = version

    # -- small services -------------------------------------------------------------------

    async def ping(self, jid: JID | str | None = None, *, timeout: float | None = None) -> float:
        """XEP-0199: ping ``jid`` (default: our server); the round trip in seconds."""
        t0 = time.monotonic()
        await self.request(Element("ping", ns.PING), to=jid or self.server_jid, timeout=timeout)
        return time.monotonic() - t0

    async def software_version(self, jid: JID | str | None = None) -> SoftwareVersion:
        """XEP-0092: what software ``jid`` (default: our server) runs."""
        result = await self.request(Element("query", VERSION), to=jid or self.server_jid)
        if result is None:
            raise StanzaError(_C.UNDEFINED_CONDITION, "empty version answer")

        def text(tag: str) -> str | None:
            el = result.find(tag, VERSION)
            return el.text if el is not None else None

        return SoftwareVersion(text("name") or "", text("version") or "", text("os"))

    async def change_password(self, new_password: str) -> None:
        """XEP-0077 §3.3: change this account's password; later logins use the new one."""
        assert self.account.local is not None
        query = Element("query", REGISTER)
        query.sub("username", text=self.account.local)
        query.sub("password", text=new_password)
        await self.request(query, type="set", to=self.server_jid)
        self._password = new_password

    async def unregister(self) -> None:
        """XEP-0077 §3.2: delete this account; the server then closes the stream."""
        query = Element("query", REGISTER)
        query.sub("remove")
        self._closing = True  # the stream ending next is expected
        await self.request(query, type="set", to=self.server_jid)


async def _awaited(result: Any) -> None:
    await result
