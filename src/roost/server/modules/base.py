"""What a feature module registers, and the context that records it so unloading undoes it."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

from roost.core.jid import JID
from roost.core.ns import DISCO_INFO
from roost.core.xml.element import Element

if TYPE_CHECKING:
    from roost.server.app import Server
    from roost.server.c2s import C2SConnection

__all__ = [
    "EMPTY",
    "HANDLED",
    "IqHandler",
    "IqRequest",
    "IqTarget",
    "Module",
    "ModuleContext",
    "Registry",
]

log = logging.getLogger(__name__)

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
    conn: C2SConnection | None  # the sending client's connection, when local


IqResult = Element | _Empty | _Handled | None
IqHandler = Callable[[IqRequest], IqResult | Awaitable[IqResult]]
StreamFeature = Callable[[], Element | None]
PreAuthHandler = Callable[["C2SConnection", Element], None]


class Module(Protocol):
    """A feature module: a name and a ``setup`` that registers through its context."""

    name: str

    def setup(self, ctx: ModuleContext) -> None: ...


class Registry:
    """Everything modules registered, keyed for the router's lookups."""

    __slots__ = (
        "account_features",
        "bound_features",
        "disco_features",
        "disco_identities",
        "disco_nodes",
        "iq_handlers",
        "preauth_features",
        "preauth_handlers",
    )

    def __init__(self) -> None:
        self.iq_handlers: dict[tuple[IqTarget, str, str, str], IqHandler] = {}
        self.disco_features: dict[str, str] = {}  # feature var -> module name
        #: features an account's bare JID has (XEP-0030 §3.1 "account" identity), e.g. PEP
        self.account_features: dict[str, str] = {}
        #: extra identities of the server: (category, type, name)
        self.disco_identities: list[tuple[str, str, str | None]] = []
        #: disco#info nodes of the server (XEP-0115 caps node, say): node -> query builder
        self.disco_nodes: dict[str, Callable[[], Element]] = {}
        self.preauth_features: list[StreamFeature] = []
        #: iq payload namespace -> handler for iqs before authentication (XEP-0077, XEP-0078)
        self.preauth_handlers: dict[str, PreAuthHandler] = {}
        self.bound_features: list[StreamFeature] = []

    def features(self, which: Sequence[StreamFeature]) -> list[Element]:
        return [el for f in which if (el := f()) is not None]

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
        return query


class ModuleContext:
    """Registers on behalf of one module and remembers how to undo each registration."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self._undo: list[Callable[[], None]] = []

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
        table = self.server.registry.iq_handlers
        if key in table:
            raise ValueError(f"{self.name}: an iq handler for {key} is already registered")
        table[key] = handler
        self._undo.append(functools.partial(table.pop, key, None))  # type: ignore[arg-type]
        if advertise:
            self.feature(ns)

    def feature(self, var: str) -> None:
        """Advertise a disco#info feature (XEP-0030); it must have a handler behind it."""
        table = self.server.registry.disco_features
        table[var] = self.name
        self._undo.append(functools.partial(table.pop, var, None))  # type: ignore[arg-type]

    def preauth_iq(self, ns: str, handler: PreAuthHandler) -> None:
        """Take iqs with a payload in ``ns`` before the stream is authenticated."""
        table = self.server.registry.preauth_handlers
        table[ns] = handler
        self._undo.append(functools.partial(table.pop, ns, None))  # type: ignore[arg-type]

    def account_feature(self, var: str) -> None:
        """Advertise a feature in the disco#info of every account's bare JID."""
        table = self.server.registry.account_features
        table[var] = self.name
        self._undo.append(functools.partial(table.pop, var, None))  # type: ignore[arg-type]

    def identity(self, category: str, type_: str, name: str | None = None) -> None:
        """Add a disco identity to the server (XEP-0030 §3.1)."""
        lst = self.server.registry.disco_identities
        entry = (category, type_, name)
        lst.append(entry)
        self._undo.append(lambda: lst.remove(entry))

    def disco_node(self, node: str, build: Callable[[], Element]) -> None:
        """Answer disco#info for ``node`` on the server's JID."""
        table = self.server.registry.disco_nodes
        table[node] = build
        self._undo.append(functools.partial(table.pop, node, None))  # type: ignore[arg-type]

    def stream_feature(self, factory: StreamFeature, *, pre_auth: bool) -> None:
        """Offer an element in ``<stream:features/>`` before or after authentication."""
        reg = self.server.registry
        lst = reg.preauth_features if pre_auth else reg.bound_features
        lst.append(factory)
        self._undo.append(lambda: lst.remove(factory))

    def hook(self, event: str, handler: Callable[..., object], priority: int = 0) -> None:
        """Run ``handler`` when ``event`` fires (see ``roost.server.events``)."""
        self._undo.append(self.server.bus.on(event, handler, priority))

    def every(self, seconds: float, callback: Callable[[], object]) -> None:
        """Call ``callback`` every ``seconds`` while the module is loaded."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    callback()
                except Exception:
                    log.exception("%s: periodic task failed", self.name)

        task = self.server.spawn(loop())

        def stop() -> None:
            task.cancel()

        self._undo.append(stop)

    def unload(self) -> None:
        """Undo every registration, newest first."""
        while self._undo:
            self._undo.pop()()


def is_awaitable(value: object) -> bool:
    return inspect.isawaitable(value)
