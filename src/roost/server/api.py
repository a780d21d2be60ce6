"""The module API: what a feature module declares, and the narrow context it works through.

A module is one file with a class that has a ``name``, the names of the modules it
``depends`` on, optionally an ``Options`` dataclass (validated from ``[modules.NAME]`` in the
config) and a ``setup(ctx)``. Everything it registers goes through its ``ModuleContext``,
which records each registration so unloading undoes it. The context is the module's whole
view of the server: route and deliver stanzas, answer with errors, query sessions, send
requests, open storage, spawn tracked tasks, declare and use services. Modules never see
the server object, the connections, or each other's files; they meet through typed events
(``roost.server.events``) and services declared with a ``ServiceKey``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, ParamSpec, Protocol, TypeVar

from roost.core.errors import StanzaError, StreamError
from roost.core.jid import JID
from roost.core.ns import DISCO_INFO
from roost.core.xml.element import Element
from roost.server import delivery
from roost.server.bus import EventBus, Filter, Observer
from roost.server.session import Session

if TYPE_CHECKING:
    from roost.server.accounts import Accounts
    from roost.server.config import Config
    from roost.server.router import Router
    from roost.server.sessions import SessionManager
    from roost.storage.api import Storage, StoreSchema

__all__ = [
    "EMPTY",
    "HANDLED",
    "FilterSwitch",
    "HostedService",
    "IqHandler",
    "IqRequest",
    "IqResult",
    "IqTarget",
    "Module",
    "ModuleContext",
    "OnlyTo",
    "PreAuthStream",
    "PrivacyGate",
    "Refused",
    "Registry",
    "ServiceKey",
    "Verdict",
    "is_awaitable",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Where an iq is addressed: the server itself, or an account it answers for (RFC 6121 §8.5.2).
IqTarget = Literal["host", "account"]


class _Empty:
    """An iq result with no payload."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY: Final = _Empty()


class _Handled:
    """The handler has already answered (or deliberately will not)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "HANDLED"


HANDLED: Final = _Handled()


@dataclass(frozen=True, slots=True)
class IqRequest:
    """An iq get/set handed to a module."""

    stanza: Element
    payload: Element
    sender: JID
    to: JID  # the host, or the account's bare JID
    session: Session | None  # the sending client's session, when local


IqResult = Element | _Empty | _Handled | None
IqHandler = Callable[[IqRequest], IqResult | Awaitable[IqResult]]
StreamFeature = Callable[[], Element | None]


class PreAuthStream(Protocol):
    """A client stream before authentication, as the modules that serve it see it
    (XEP-0077 registration, XEP-0078 legacy authentication)."""

    peer_ip: str
    #: XEP-0077 §3.1: this stream already registered an account
    registered_here: bool

    @property
    def domain(self) -> str:
        """The domain the client asked for in its stream header."""
        ...

    @property
    def encrypted(self) -> bool: ...

    @property
    def authenticating(self) -> bool:
        """Still before authentication (it may have closed or authenticated meanwhile)."""
        ...

    def answer(self, iq: Element, result: Element | StanzaError | None) -> None:
        """Answer an iq taken before authentication."""
        ...

    def close(self, error: StreamError | None = None) -> None: ...

    def auth_blocked(self) -> bool:
        """Too many failed logins from this address lately."""
        ...

    def auth_failed(self) -> None:
        """Count a failed login against this address."""
        ...

    async def bind_legacy(self, full: JID, iq: Element) -> bool:
        """Authenticate the stream as ``full``, answer ``iq`` with a result and bind the
        resource (XEP-0078); False if the stream went away or authenticated otherwise."""
        ...


PreAuthHandler = Callable[[PreAuthStream, Element], None]
#: a first-level non-stanza element from a bound session (XEP-0352, XEP-0198)
NonzaHandler = Callable[[Session, Element], None]


class HostedService(Protocol):
    """A local service domain (``conference.DOMAIN``, ``pubsub.DOMAIN``...) run by a module:
    every stanza addressed to the domain or a JID at it is handed to ``receive``."""

    def receive(self, stanza: Element, sender: JID, to: JID) -> None: ...


@dataclass(frozen=True, slots=True)
class Refused:
    """A privacy verdict: the stanza goes no further; ``error`` answers its sender."""

    error: StanzaError | None


@dataclass(frozen=True, slots=True)
class OnlyTo:
    """A privacy verdict for a stanza to a bare JID: deliver it to these sessions only
    (each session's active list judged it, XEP-0016 §2.2 rule 1)."""

    sessions: tuple[Session, ...]


Verdict = Refused | OnlyTo


class PrivacyGate(Protocol):
    """Decides whether a stanza between two parties may pass; never delivers or routes.

    The router calls ``prepare`` first: what it returns at once (the rules are in memory)
    or what its awaitable gives (they had to be read) is handed to ``check``.
    """

    def prepare(
        self, stanza: Element, sender: JID, to: JID, *, out: bool = True, inbound: bool = True
    ) -> object | Coroutine[Any, Any, object]:
        """What ``check`` with the same ``out``/``inbound`` needs; a coroutine that reads it
        when it is not in memory."""
        ...

    def check(
        self,
        stanza: Element,
        sender: JID,
        to: JID,
        prepared: object,
        *,
        out: bool = True,
        inbound: bool = True,
    ) -> Verdict | None:
        """The sender's rules (``out``), then the recipient's (``inbound``); ``None``:
        allowed."""
        ...


class ServiceKey(Generic[T]):
    """Names a service one module declares and others use, with its type."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"


class Module(Protocol):
    """A feature module: a name and a ``setup`` that registers through its context.

    ``depends`` (optional) names modules that must be loaded first; ``Options`` (optional)
    is a dataclass built from the module's ``[modules.NAME]`` config table (or from the
    top-level table ``config_section`` names); the context's ``options`` is that instance.
    """

    name: str

    def setup(self, ctx: ModuleContext) -> None: ...


class Registry:
    """Everything modules registered, keyed for the router's lookups."""

    __slots__ = (
        "account_features",
        "account_identities",
        "account_items",
        "bound_features",
        "disco_features",
        "disco_forms",
        "disco_identities",
        "disco_item_nodes",
        "disco_nodes",
        "hosted",
        "iq_handlers",
        "nonza_handlers",
        "preauth_features",
        "preauth_handlers",
        "privacy_gate",
    )

    def __init__(self) -> None:
        self.iq_handlers: dict[tuple[IqTarget, str, str, str], IqHandler] = {}
        self.disco_features: dict[str, str] = {}  # feature var -> module name
        #: features an account's bare JID has (XEP-0030 §3.1 "account" identity), e.g. PEP
        self.account_features: dict[str, str] = {}
        #: extra identities of every account's bare JID: (category, type), e.g. pubsub/pep
        self.account_identities: list[tuple[str, str]] = []
        #: builders of extra disco#items of an account's bare JID for a requester (its PEP
        #: nodes, XEP-0163 §5), each filtering by what the requester may see
        self.account_items: list[Callable[[IqRequest], Awaitable[list[Element]]]] = []
        #: XEP-0128 extended forms in the server's disco#info (XEP-0157 contacts, say)
        self.disco_forms: list[Element] = []
        #: extra identities of the server: (category, type, name)
        self.disco_identities: list[tuple[str, str, str | None]] = []
        #: disco#info nodes of the server (XEP-0115 caps node, say): node -> query builder
        self.disco_nodes: dict[str, Callable[[], Element]] = {}
        #: disco#items nodes of the server (XEP-0050 commands): node -> builder for a requester
        self.disco_item_nodes: dict[str, Callable[[IqRequest], Element]] = {}
        self.preauth_features: list[StreamFeature] = []
        #: iq payload namespace -> handler for iqs before authentication (XEP-0077, XEP-0078)
        self.preauth_handlers: dict[str, PreAuthHandler] = {}
        self.bound_features: list[StreamFeature] = []
        #: namespace -> handler for first-level non-stanza elements after bind
        self.nonza_handlers: dict[str, NonzaHandler] = {}
        #: local service domains -> (service, name for disco#items)
        self.hosted: dict[str, tuple[HostedService, str | None]] = {}
        #: the privacy rules every stanza between two parties passes (XEP-0016, XEP-0191)
        self.privacy_gate: PrivacyGate | None = None

    def features(self, which: Sequence[StreamFeature]) -> list[Element]:
        """The stream features modules offer, by namespace: the same whatever the order
        modules were loaded in."""
        return sorted((el for f in which if (el := f()) is not None), key=lambda e: e.ns)

    def server_info(self, node: str | None = None) -> Element:
        """The server's disco#info query (XEP-0030), built from what modules registered.

        This is also what the server's XEP-0115 caps hash covers.
        """
        query = Element("query", DISCO_INFO, {"node": node} if node else {})
        query.sub("identity", attrs={"category": "server", "type": "im", "name": "Roost"})
        for category, type_, name in self.disco_identities:
            attrs = {"category": category, "type": type_}
            if name:
                attrs["name"] = name
            query.sub("identity", attrs=attrs)
        for var in sorted(self.disco_features):
            query.sub("feature", attrs={"var": var})
        for form in self.disco_forms:
            query.append(form)
        return query


class _Host(Protocol):
    """What a context needs from the server that runs the modules (not shown to modules)."""

    config: Config
    domains: frozenset[str]
    registry: Registry
    bus: EventBus
    router: Router
    sessions: SessionManager
    storage: Storage
    accounts: Accounts
    started_at: float
    services: dict[str, object]
    schemas: list[StoreSchema]

    @property
    def default_domain(self) -> str: ...

    def new_id(self) -> str: ...

    def spawn(self, coro: Coroutine[Any, Any, T], *, daemon: bool = False) -> asyncio.Task[T]: ...


class FilterSwitch:
    """A filter its module turns on only while it has someone to serve.

    Every message pays a call for each filter on its events, used or not; a feature most
    sessions never enable (carbons, push for detached sessions) keeps its handler off the
    bus until one does. ``on`` and ``off`` may be called any number of times.
    """

    __slots__ = ("_add", "_remove")

    def __init__(self, add: Callable[[], Callable[[], None]]) -> None:
        self._add = add
        self._remove: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self._remove is not None

    def on(self) -> None:
        if self._remove is None:
            self._remove = self._add()

    def off(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None

    def set(self, active: bool) -> None:
        self.on() if active else self.off()


class ModuleContext:
    """One module's view of the server; records registrations so ``unload`` undoes them."""

    __slots__ = ("_host", "_undo", "name", "options")

    def __init__(self, host: _Host, name: str, options: object = None) -> None:
        self._host = host
        self.name = name
        #: the module's ``Options`` built from ``[modules.NAME]`` (None without ``Options``)
        self.options: Any = options
        self._undo: list[Callable[[], object]] = []

    # -- what the server is ---------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The server's whole configuration (read only)."""
        return self._host.config

    @property
    def domains(self) -> frozenset[str]:
        """The account domains served here."""
        return self._host.domains

    @property
    def default_domain(self) -> str:
        return self._host.default_domain

    @property
    def started_at(self) -> float:
        return self._host.started_at

    @property
    def sessions(self) -> SessionManager:
        """Who is online (read it; binding is the stream drivers' business)."""
        return self._host.sessions

    @property
    def storage(self) -> Storage:
        return self._host.storage

    @property
    def accounts(self) -> Accounts:
        return self._host.accounts

    @property
    def registry(self) -> Registry:
        """What all modules registered (read it; register through the methods below)."""
        return self._host.registry

    def is_local_user(self, jid: JID) -> bool:
        """An account JID (bare or full) on a domain served here."""
        return jid.local is not None and jid.domain in self._host.domains

    def is_server(self, jid: JID) -> bool:
        """The JID of a domain served here (no local part)."""
        return jid.local is None and jid.domain in self._host.domains

    def new_id(self) -> str:
        return self._host.new_id()

    # -- stanzas --------------------------------------------------------------------------

    def route(self, stanza: Element, sender: JID, to: JID | None) -> None:
        """Route a stanza the server makes or forwards (``from`` already set)."""
        self._host.router.route(stanza, sender, to)

    def reply_error(self, stanza: Element, error: StanzaError, sender: JID) -> None:
        """Answer ``stanza`` from ``sender`` with ``error`` (never an error to an error)."""
        self._host.router.reply_error(stanza, error, sender)

    #: write a stanza to one local session
    deliver = staticmethod(delivery.deliver)
    #: write one stanza to several sessions (serialised once)
    deliver_all = staticmethod(delivery.deliver_all)

    def deliver_message(
        self, stanza: Element, sender: JID, to: JID, sessions: Sequence[Session]
    ) -> None:
        """Deliver a message to these sessions of the local account ``to``, through the
        ``message/deliver`` event (the archive, carbons)."""
        self._host.router.deliver_message(stanza, sender, to, sessions)

    async def routed(self) -> None:
        """Return once every stanza routed before the call has reached its handlers (some
        wait for privacy rules to be read first)."""
        await self._host.router.routed()

    def deliver_to(self, to: JID, stanza: Element) -> None:
        """Write a server-made stanza to a local full JID, or every resource of a bare one."""
        self._host.router.deliver_local(stanza, to)

    async def request(self, iq: Element, to: JID, timeout: float = 30.0) -> Element:
        """Send an iq get/set from the server; the result or error (``TimeoutError``)."""
        return await self._host.router.request(iq, to, timeout)

    def privacy_refuses(
        self, stanza: Element, sender: JID, to: JID, *, out: bool = True, inbound: bool = True
    ) -> bool:
        """Privacy rules for a stanza a module delivers outside ``route``: True when they
        took it (refused it and answered, or delivered it to the sessions they allow). The
        parties' rules must be in memory (their sessions are bound); if not, it is refused."""
        return self._host.router.privacy_refuses(stanza, sender, to, out=out, inbound=inbound)

    async def privacy_refuses_loaded(
        self, stanza: Element, sender: JID, to: JID, *, out: bool = True, inbound: bool = True
    ) -> bool:
        """``privacy_refuses``, reading the parties' rules first if need be."""
        return await self._host.router.privacy_refuses_loaded(
            stanza, sender, to, out=out, inbound=inbound
        )

    # -- tasks ----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a tracked task (cancelled on shutdown, errors logged)."""
        return self._host.spawn(coro)

    def spawn_apart(self, coro: Coroutine[Any, Any, object]) -> None:
        """``spawn``, but not as part of the stanza being handled: a stream holds its peer's
        later stanzas behind tasks spawned while routing one (RFC 6120 §10.1), so work that
        waits for an answer from that very peer (asking a remote resource for its caps)
        must start apart, right after, or it waits for itself."""
        asyncio.get_running_loop().call_soon(self._host.spawn, coro)

    def every(self, seconds: float, callback: Callable[[], object]) -> None:
        """Call ``callback`` every ``seconds`` while the module is loaded."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    callback()
                except Exception:
                    log.exception("%s: periodic task failed", self.name)

        task = self._host.spawn(loop(), daemon=True)
        self._undo.append(task.cancel)

    # -- services -------------------------------------------------------------------------

    def provide(self, key: ServiceKey[T], service: T) -> None:
        """Declare a service other modules may use (they list this module in ``depends``)."""
        table = self._host.services
        if key.name in table:
            raise ValueError(f"{self.name}: service {key.name!r} is already provided")
        table[key.name] = service
        self._undo.append(functools.partial(table.pop, key.name, None))

    def service(self, key: ServiceKey[T]) -> T:
        """A service another module declared; ``LookupError`` when it is not loaded."""
        try:
            return self._host.services[key.name]  # type: ignore[return-value]
        except KeyError:
            raise LookupError(f"{self.name}: service {key.name!r} is not loaded") from None

    def maybe_service(self, key: ServiceKey[T]) -> T | None:
        """A service if its module is loaded (for optional cooperation)."""
        return self._host.services.get(key.name)  # type: ignore[return-value]

    # -- registrations --------------------------------------------------------------------

    def iq(
        self,
        target: IqTarget,
        iq_type: Literal["get", "set"],
        ns: str,
        tag: str,
        handler: IqHandler,
        *,
        advertise: bool = True,
    ) -> None:
        """Handle iqs of ``iq_type`` whose payload is ``{ns}tag`` addressed to ``target``.

        The namespace is advertised in the server's disco#info unless ``advertise`` is
        false, so what is handled and what is advertised cannot drift apart.
        """
        key = (target, iq_type, ns, tag)
        table = self._host.registry.iq_handlers
        if key in table:
            raise ValueError(f"{self.name}: an iq handler for {key} is already registered")
        table[key] = handler
        self._undo.append(functools.partial(table.pop, key, None))
        if advertise:
            self.feature(ns)

    def feature(self, var: str) -> None:
        """Advertise a disco#info feature (XEP-0030); it must have a handler behind it."""
        table = self._host.registry.disco_features
        table[var] = self.name
        self._undo.append(functools.partial(table.pop, var, None))

    def preauth_iq(self, ns: str, handler: PreAuthHandler) -> None:
        """Take iqs with a payload in ``ns`` before the stream is authenticated."""
        table = self._host.registry.preauth_handlers
        table[ns] = handler
        self._undo.append(functools.partial(table.pop, ns, None))

    def nonza(self, ns: str, handler: NonzaHandler) -> None:
        """Take first-level elements in ``ns`` that a bound client sends between stanzas
        (RFC 6120 §4.9.3.22 allows extensions there: XEP-0352 ``<active/>``, say)."""
        table = self._host.registry.nonza_handlers
        if ns in table:
            raise ValueError(f"{ns} is taken by another module")
        table[ns] = handler
        self._undo.append(functools.partial(table.pop, ns, None))

    def account_feature(self, var: str) -> None:
        """Advertise a feature in the disco#info of every account's bare JID."""
        table = self._host.registry.account_features
        table[var] = self.name
        self._undo.append(functools.partial(table.pop, var, None))

    def account_identity(self, category: str, type_: str) -> None:
        """Add a disco identity to every account's bare JID (XEP-0163 §5: pubsub/pep)."""
        lst = self._host.registry.account_identities
        entry = (category, type_)
        lst.append(entry)
        self._undo.append(lambda: lst.remove(entry))

    def account_items(self, build: Callable[[IqRequest], Awaitable[list[Element]]]) -> None:
        """Add items to the disco#items of every account's bare JID (XEP-0030 §4), built
        for each request (``build`` decides what the requester may see)."""
        lst = self._host.registry.account_items
        lst.append(build)
        self._undo.append(lambda: lst.remove(build))

    def identity(self, category: str, type_: str, name: str | None = None) -> None:
        """Add a disco identity to the server (XEP-0030 §3.1)."""
        lst = self._host.registry.disco_identities
        entry = (category, type_, name)
        lst.append(entry)
        self._undo.append(lambda: lst.remove(entry))

    def disco_form(self, form: Element) -> None:
        """Add an extended data form to the server's disco#info (XEP-0128)."""
        lst = self._host.registry.disco_forms
        lst.append(form)
        self._undo.append(lambda: lst.remove(form))

    def disco_node(self, node: str, build: Callable[[], Element]) -> Callable[[], object]:
        """Answer disco#info for ``node`` on the server's JID; returns its removal."""
        table = self._host.registry.disco_nodes
        table[node] = build
        remove = functools.partial(table.pop, node, None)
        self._undo.append(remove)
        return remove

    def disco_items_node(self, node: str, build: Callable[[IqRequest], Element]) -> None:
        """Answer disco#items for ``node`` on the server's JID (``build`` sees the request:
        what it lists may depend on who asks)."""
        table = self._host.registry.disco_item_nodes
        table[node] = build
        self._undo.append(functools.partial(table.pop, node, None))

    def stream_feature(self, factory: StreamFeature, *, pre_auth: bool) -> None:
        """Offer an element in ``<stream:features/>`` before or after authentication."""
        reg = self._host.registry
        lst = reg.preauth_features if pre_auth else reg.bound_features
        lst.append(factory)
        self._undo.append(lambda: lst.remove(factory))

    def store(self, schema: StoreSchema) -> None:
        """Own a store with its own migrations (``StoreSchema``): they are applied before
        the server accepts connections, so the module's handlers find it ready."""
        self._host.schemas.append(schema)

    def privacy_gate(self, gate: PrivacyGate) -> None:
        """Be the privacy rules the router applies to every stanza between two parties."""
        registry = self._host.registry
        if registry.privacy_gate is not None:
            raise ValueError(f"{self.name}: a privacy gate is already installed")
        registry.privacy_gate = gate

        def remove() -> None:
            registry.privacy_gate = None

        self._undo.append(remove)

    def host(self, domain: str, service: HostedService, name: str | None = None) -> None:
        """Serve the local service domain ``domain`` (listed in the server's disco#items)."""
        table = self._host.registry.hosted
        if domain in table or domain in self._host.domains:
            raise ValueError(f"{self.name}: {domain} is already served")
        table[domain] = (service, name)
        self._undo.append(functools.partial(table.pop, domain, None))

    def filter(
        self, event: Filter[P], handler: Callable[P, object], priority: int = 0
    ) -> None:
        """Take stanzas of ``event`` (see ``roost.server.events``); higher priority first."""
        self._undo.append(self._host.bus.filter(event, handler, priority, self.name))

    def on_unload(self, undo: Callable[[], object]) -> None:
        """Call ``undo`` when the module is unloaded (a registration made elsewhere)."""
        self._undo.append(undo)

    def filter_switch(
        self, event: Filter[P], handler: Callable[P, object], priority: int = 0
    ) -> FilterSwitch:
        """A filter like ``filter``, off until the module turns it on (``FilterSwitch``)."""
        bus = self._host.bus
        switch = FilterSwitch(lambda: bus.filter(event, handler, priority, self.name))
        self._undo.append(switch.off)
        return switch

    def observe(
        self, event: Filter[P] | Observer[P], handler: Callable[P, object], priority: int = 0
    ) -> None:
        """Watch ``event``; observers run before filters and cannot take anything."""
        self._undo.append(self._host.bus.observe(event, handler, priority, self.name))

    def run(self, event: Filter[P], *args: P.args, **kwargs: P.kwargs) -> bool:
        """Fire a filter event; True when a handler took (or, failing, refused) it."""
        return self._host.bus.run(event, *args, **kwargs) is not None

    def notify(self, event: Observer[P], *args: P.args, **kwargs: P.kwargs) -> None:
        """Fire an observer event."""
        self._host.bus.notify(event, *args, **kwargs)

    def unload(self) -> None:
        """Undo every registration, newest first."""
        while self._undo:
            self._undo.pop()()


def is_awaitable(value: object) -> bool:
    return inspect.isawaitable(value)

