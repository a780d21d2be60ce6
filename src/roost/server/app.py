"""Server lifecycle: start (storage -> certificates -> modules -> listeners), serve, stop.

``Server.ready`` is set once every listener accepts connections, so tests and the CLI wait on
it rather than on a sleep. ``stop`` is graceful: listeners close, every client gets
``system-shutdown`` (RFC 6120 §4.9.3.20), pending writes drain, storage is flushed and closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import gc
import logging
import os
import secrets
import ssl
import time
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.stream.server import ServerStreamSettings
from roost.core.xml.parser import trim_shared_names
from roost.server import events, stats
from roost.server.accounts import Accounts
from roost.server.admin import Admin
from roost.server.api import Module, ModuleContext, Registry
from roost.server.bus import EventBus
from roost.server.config import Config, ConfigError, TLSConfig, listening_ports
from roost.server.control import ControlServer
from roost.server.loader import resolve_modules
from roost.server.modules import default_modules
from roost.server.privileges import check_run_as, drop_privileges, resolve_run_as
from roost.server.router import Router
from roost.server.services import (
    ADMIN,
    ARCHIVE,
    ROOM_ARCHIVE,
    ROSTERS,
    ArchiveService,
    DurableWrites,
    RosterService,
)
from roost.server.session import Session
from roost.server.sessions import SessionManager
from roost.server.sm import StreamManager
from roost.server.streams.c2s import C2SConnection
from roost.server.streams.component import Components
from roost.server.streams.s2s import Federation
from roost.storage.api import Storage, StoreSchema
from roost.storage.sqlite import SQLiteStorage
from roost.transport.certs import ensure_certificate, load_certificate_der, load_tls_context_server
from roost.transport.heap import malloc_trim_function, serve_large_blocks_from_heap
from roost.transport.listeners import Listener, bind_problem, listen
from roost.transport.tls import limit_asyncio_tls_buffers

if TYPE_CHECKING:
    from roost.server.metrics import MetricsEndpoint

__all__ = ["Server", "open_storage"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def open_storage(config: Config) -> Storage:
    """The storage backend ``storage.backend`` names (only ``sqlite`` so far)."""
    if config.storage.backend == "sqlite":
        return SQLiteStorage(Path(config.data_dir) / "roost.db")
    raise AssertionError(f"unknown storage backend {config.storage.backend!r}")  # config checks


class Server:
    """A Roost server: owns storage, sessions, router, modules and listeners."""

    def __init__(
        self,
        config: Config,
        modules: Sequence[Module] | None = None,
        *,
        owns_process: bool = False,
        storage: Storage | None = None,
    ) -> None:
        """``modules``: instead of the default set; ``storage``: instead of the backend
        ``storage.backend`` names. ``owns_process``: tune process-wide settings (GC, heap,
        asyncio's TLS buffers), as ``roost serve`` does; never when the server is embedded
        in someone else's program. A bad ``[modules]`` table raises ``ConfigError``."""
        self.config = config
        self._owns_process = owns_process
        self._trim_handle: asyncio.TimerHandle | None = None
        self._malloc_trim = malloc_trim_function() if owns_process else None
        if owns_process:
            serve_large_blocks_from_heap()
        self.domains: frozenset[str] = frozenset(config.domains)
        #: each domain's certificate and key files (s2s presents them as a client too)
        self.cert_paths: dict[str, tuple[Path, Path]] = {}
        self._loaded = resolve_modules(config, default_modules() if modules is None else modules)
        self.bus = EventBus()
        self.registry = Registry()
        self.services: dict[str, object] = {}
        #: stores modules own, migrated once every module is set up
        self.schemas: list[StoreSchema] = []
        self.sessions = SessionManager(self.new_id)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: tasks that run for the server's life (timers): ``idle`` does not wait for them
        self._daemons: set[asyncio.Task[Any]] = set()
        self._capture: list[asyncio.Task[Any]] | None = None
        self.router = Router(
            self.domains,
            self.default_domain,
            self.sessions,
            self.registry,
            self.bus,
            self.new_id,
            self.spawn,
        )
        self.components = (
            Components(
                config.components,
                self.router,
                self.registry,
                self.new_id,
                self.spawn,
                max_stanza_size=config.c2s.max_stanza_size,
                max_depth=config.c2s.max_depth,
            )
            if config.components.secrets
            else None
        )
        self.federation = (
            Federation(
                config.s2s,
                self.domains,
                self.router,
                self.bus,
                self.new_id,
                self.spawn,
                self.capture_spawns,
                self.cert_paths,
                max_stanza_size=config.c2s.max_stanza_size,
                max_depth=config.c2s.max_depth,
            )
            if config.s2s.enabled
            else None
        )
        self.storage = open_storage(config) if storage is None else storage
        #: XEP-0198: sessions waiting to be resumed, and the counts of ended ones
        self.stream_manager = (
            StreamManager(
                config.stream_management,
                self.sessions,
                self.router,
                self.bus,
                self.storage,
                self.spawn,
                self.archive,
            )
            if config.stream_management.enabled
            else None
        )
        if isinstance(self.storage, SQLiteStorage):
            self.storage.on_latency = stats.STORAGE.observe
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="roost-cpu")
        self.accounts = Accounts(self.storage, config.auth.scram_iterations, self.pool)
        #: account and session administration (control socket, XEP-0133)
        self.admin = Admin(
            self.accounts, self.sessions, self.domains, self.services, self.end_session
        )
        self.services[ADMIN.name] = self.admin
        self.control: ControlServer | None = None
        self.metrics: MetricsEndpoint | None = None
        self.ready = asyncio.Event()
        self.started_at = time.time()
        self.listeners: list[Listener] = []
        self.connections: set[C2SConnection] = set()
        self.stream_settings = self._stream_settings()
        self._contexts: list[ModuleContext] = []
        self._tls: dict[str, ssl.SSLContext] = {}
        self._cert_der: dict[str, bytes] = {}
        self._per_ip: collections.Counter[str] = collections.Counter()
        self._auth_failures: dict[str, collections.deque[float]] = {}
        self._stopping: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._hibernator: asyncio.Task[None] | None = None
        #: connections whose stream holds an XML parser (all but the hibernating ones)
        self.awake: set[C2SConnection] = set()

    # -- what tests and tools look at -----------------------------------------------------

    @property
    def modules(self) -> list[Module]:
        """The loaded modules, in load order."""
        return [m.module for m in self._loaded]

    def module(self, cls: type[_T]) -> _T:
        """The loaded module of class ``cls``."""
        return next(m for m in self.modules if isinstance(m, cls))

    @property
    def rosters(self) -> RosterService:
        return cast(RosterService, self.services[ROSTERS.name])

    @property
    def preauth_timeout(self) -> float:
        return self.config.c2s.preauth_timeout

    # -- identities -----------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        """Stream ids, nonces and generated resources: unguessable (RFC 6120 §4.7.3)."""
        return secrets.token_hex(8)

    @property
    def default_domain(self) -> str:
        return self.config.domains[0]

    # -- start ----------------------------------------------------------------------------

    def _stream_settings(self) -> ServerStreamSettings:
        c2s = self.config.c2s
        mechanisms = [
            m for m in self.config.auth.mechanisms if m != "PLAIN" or self.config.auth.allow_plain
        ]
        return ServerStreamSettings(
            domains=self.domains,
            default_domain=self.default_domain,
            require_encryption=c2s.require_encryption,
            tls_available=True,
            mechanisms=tuple(mechanisms),
            max_stanza_size=c2s.max_stanza_size,
            max_depth=c2s.max_depth,
            max_sasl_attempts=c2s.max_sasl_attempts,
            preauth_iq_namespaces=frozenset(self.registry.preauth_handlers),
            nonza_namespaces=frozenset(self.registry.nonza_handlers),
            stream_management=self.config.stream_management.enabled,
            preauth_features=lambda: self.registry.features(self.registry.preauth_features),
            bound_features=lambda: self.registry.features(self.registry.bound_features),
        )

    def _load_tls(self, tls: TLSConfig | None = None, *, check_only: bool = False) -> None:
        """Each domain's certificate; on a reload the contexts already handed to listeners
        take the new certificate in place (new handshakes use it)."""
        tls = self.config.tls if tls is None else tls
        for domain in self.config.domains:
            if tls.cert is not None and tls.key is not None:
                cert, key = tls.cert, tls.key
            else:
                cert, key = ensure_certificate(domain, Path(self.config.data_dir))
            fresh = load_tls_context_server(cert, key)  # checks the pair (CertificateError)
            der = load_certificate_der(cert)
            if check_only:
                continue
            current = self._tls.get(domain)
            if current is None:
                self._tls[domain] = fresh
            else:
                current.load_cert_chain(cert, key)
            self.cert_paths[domain] = (cert, key)
            self._cert_der[domain] = der
        if check_only:
            return
        if self.federation is not None:
            self.federation.certificates_changed()
        default = self._tls[self.default_domain]

        def pick(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            if name and (ctx := self._tls.get(name.lower())) is not None:
                sslobj.context = ctx

        default.sni_callback = pick

    def _preflight(self, *, data_dir: bool = True) -> None:
        """What would fail later, checked before anything is written to disk: every fixed
        port can be bound, and data_dir is a directory we can write. Raises ``ConfigError``
        naming the key (``roost serve`` exits 2)."""
        for key, port, hosts in listening_ports(self.config):
            for host in hosts:
                err = bind_problem(host, port, skip_missing_ipv6=len(hosts) > 1)
                if err is not None:
                    where = f"[{host}]" if ":" in host else host
                    raise ConfigError(
                        key,
                        f"cannot listen on {where}:{port} ({err.strerror}); is another server "
                        "running? choose another port",
                    )
        if data_dir:
            self._preflight_data_dir()

    def _preflight_data_dir(self) -> None:
        data = Path(self.config.data_dir)
        try:
            data.mkdir(parents=True, exist_ok=True)
            probe = data / f".roost-write-test-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                "data_dir",
                f"{data} is not a writable directory ({exc.strerror}); choose another "
                "data_dir or fix its permissions",
            ) from None

    async def _watch_certificates(self) -> None:
        """Certificates imported with ``roost cert import`` are copied again when their
        source is renewed (certbot's renew hook not needed), and used at once."""
        from roost.transport.certstore import renew_certificates

        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.tls.renewal_check)
            renewed = await loop.run_in_executor(
                self.pool, renew_certificates, self.config.domains, Path(self.config.data_dir)
            )
            if renewed:
                try:
                    self._load_tls()
                except Exception:
                    log.exception("renewed certificates could not be loaded; keeping the old")

    # -- reload ---------------------------------------------------------------------------

    async def reload(self, config: Config) -> dict[str, list[str]]:
        """Take a new configuration without a restart (#14): certificates are read again
        (also unchanged paths: renewed files), and what can change live does; what cannot
        (listeners, domains, storage, modules) keeps its old value and is reported. A
        certificate that cannot be used raises ``CertificateError`` before anything
        changes, so the old configuration keeps running."""
        old = self.config
        await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(self._load_tls, config.tls, check_only=True)
        )
        effective, applied, restart = _live_part(old, config)
        await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(self._load_tls, effective.tls)
        )
        self.config = effective
        logging.getLogger().setLevel(getattr(logging, effective.log.level.upper()))
        self.stream_settings = self._stream_settings()
        if self.stream_manager is not None:
            self.stream_manager.config = effective.stream_management
        if self.federation is not None:
            self.federation.reconfigure(effective.s2s)
        log.info(
            "configuration reloaded: %s changed; %s",
            ", ".join(applied) or "nothing",
            f"{', '.join(restart)} need a restart" if restart else "nothing needs a restart",
        )
        return {"applied": applied, "restart": restart}

    def tls_context(self, domain: str | None) -> ssl.SSLContext:
        return self._tls.get(domain or "", self._tls[self.default_domain])

    def cert_der(self, domain: str | None) -> bytes | None:
        return self._cert_der.get(domain or "", self._cert_der.get(self.default_domain))

    async def start(self) -> None:
        """Open storage, load certificates and modules, and listen."""
        identity = None
        if self._owns_process:
            limit_asyncio_tls_buffers()
            identity = resolve_run_as(self.config.run_as)
            check_run_as(identity)
        # run_as (privileges.py): bind and read keys as root, then switch, then the data.
        switch = identity is not None and os.geteuid() == 0
        self._preflight(data_dir=not switch)
        # Certificates first: a bad configured file must fail before anything is created.
        await asyncio.get_running_loop().run_in_executor(self.pool, self._load_tls)
        if switch:
            await self._listen(start_serving=False)
        if self._owns_process:
            drop_privileges(identity, Path(self.config.data_dir))
        if switch:
            self._preflight_data_dir()
        await self.storage.open()
        for loaded in self._loaded:
            ctx = ModuleContext(self, loaded.module.name, loaded.options)
            loaded.module.setup(ctx)
            self._contexts.append(ctx)
        for schema in self.schemas:
            await self.storage.register_schema(schema)
        self.stream_settings = self._stream_settings()
        if self.federation is not None:
            # components and hosted services (registered just now) federate too
            self.federation.serve(self.domains | frozenset(self.registry.hosted))
        if switch:
            for lst in self.listeners:
                await lst.server.start_serving()
        else:
            await self._listen(start_serving=True)
        c2s = self.config.c2s
        if self.federation is not None and self.config.s2s.idle_timeout:
            self.spawn(self.federation.sweep(), daemon=True)
        self._stopping = asyncio.Event()
        self._sweeper = self.spawn(self._sweep(), daemon=True)
        if self.config.tls.cert is None and self.config.tls.renewal_check:
            self.spawn(self._watch_certificates(), daemon=True)
        if c2s.hibernate_after:
            self._hibernator = self.spawn(self._hibernate(c2s.hibernate_after), daemon=True)
        self.started_at = time.time()
        if self.config.metrics.port:
            from roost.server.metrics import MetricsEndpoint

            self.metrics = MetricsEndpoint(self)
            await self.metrics.start(self.config.metrics.interfaces, self.config.metrics.port)
        control = ControlServer(self, self.admin)
        if await control.start():
            self.control = control
        if self._owns_process:
            # Routing allocates short-lived, acyclic objects (elements, strings) that
            # reference counting frees; the cyclic collector scanning every session's objects
            # every 700 allocations only adds pauses. Objects alive after start-up are frozen
            # out of its sight, and it runs less often. A pause grows with the young
            # generations, which fill with session state in a login storm: at 50,000/20 a
            # 10,000-session storm gave 20-30 ms gen0 and 400 ms gen1 pauses; at 10,000/10
            # 2-4 ms and at most 66 ms, for the same CPU per message (bench/README.md).
            gc.freeze()
            gc.set_threshold(10_000, 10, 100)
        self.ready.set()
        log.info(
            "Roost ready for %s on %s",
            ", ".join(self.config.domains),
            ", ".join(str(lst) for lst in self.listeners),
        )

    async def _listen(self, *, start_serving: bool) -> None:
        """Bind every listener (accepting at once, or once ``start_serving`` is called)."""

        async def bind(*args: Any, **kwargs: Any) -> list[Listener]:
            return await listen(*args, start_serving=start_serving, **kwargs)

        c2s = self.config.c2s
        self.listeners += await bind(
            "c2s", c2s.interfaces, c2s.port, lambda: C2SConnection(self, direct_tls=False)
        )
        if c2s.direct_tls_port:
            self.listeners += await bind(
                "c2s",
                c2s.interfaces,
                c2s.direct_tls_port,
                lambda: C2SConnection(self, direct_tls=True),
                tls=self._tls[self.default_domain],
            )
        if self.components is not None:
            self.listeners += await bind(
                "component",
                self.config.components.interfaces,
                self.config.components.port,
                self.components.connection,
                starttls=False,
            )
        if self.federation is not None:
            s2s = self.config.s2s
            self.listeners += await bind(
                "s2s", s2s.interfaces, s2s.port, self.federation.connection
            )
            if s2s.direct_tls_port:
                self.listeners += await bind(
                    "s2s",
                    s2s.interfaces,
                    s2s.direct_tls_port,
                    self.federation.direct_connection,
                    tls=self.federation.direct_tls_context(),
                )

    def port(self, *, direct_tls: bool = False, kind: str = "c2s") -> int:
        """The first bound port of a kind (tests run on port 0)."""
        return next(
            lst.port for lst in self.listeners if lst.kind == kind and lst.direct_tls == direct_tls
        )

    # -- tasks ----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, _T], *, daemon: bool = False) -> asyncio.Task[_T]:
        """Run ``coro`` as a tracked task (cancelled on shutdown, errors logged).

        ``daemon``: it runs for the server's life (a timer loop), so ``idle`` ignores it.
        """
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        if daemon:
            self._daemons.add(task)
        elif self._capture is not None:
            self._capture.append(task)
        task.add_done_callback(self._task_done)
        return task

    @contextlib.contextmanager
    def capture_spawns(self) -> Iterator[list[asyncio.Task[Any]]]:
        """The tasks spawned while the block runs (synchronously): a stream driver holds
        its peer's later stanzas behind them (RFC 6120 §10.1)."""
        outer, self._capture = self._capture, []
        try:
            yield self._capture
        finally:
            self._capture = outer

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._daemons.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", exc_info=exc)

    def archive(self) -> ArchiveService | None:
        """The message archive (XEP-0313), when a module provides it."""
        return cast("ArchiveService | None", self.services.get(ARCHIVE.name))

    def room_archive(self) -> DurableWrites | None:
        """The MUC rooms' archives, when the muc module runs."""
        return cast("DurableWrites | None", self.services.get(ROOM_ARCHIVE.name))

    def end_session(self, session: Session, error: StreamError | None = None) -> None:
        """A bound session is over: unbound, announced (``session/closed``), and what it
        never acknowledged (XEP-0198) sent on (``roost.server.sm``)."""
        unbound = self.sessions.unbind(session.jid, session)
        if self.stream_manager is not None:
            # before session/closed: the archive still knows whether this client used it
            self.stream_manager.ended(session)
        if unbound:
            self.bus.notify(events.SESSION_CLOSED, session, error)
            self.router.recipient_gone(session.jid)

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until the work the server has spawned (storage writes, subscriptions,
        offline delivery) is done, and what it wrote is flushed: a barrier for tests and
        tools. ``TimeoutError`` if it is still busy after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Let ready callbacks run (flushes, tasks about to be spawned).
            for _ in range(3):
                await asyncio.sleep(0)
            busy = self._tasks - self._daemons
            if not busy:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"still busy: {sorted(map(repr, busy))[:3]}")
            await asyncio.wait(busy, timeout=remaining)

    # -- per-address limits ---------------------------------------------------------------

    def connection_opened(self, conn: C2SConnection) -> bool:
        """Count a new connection; False when its address has too many already."""
        self.connections.add(conn)
        self.awake.add(conn)
        self._per_ip[conn.peer_ip] += 1
        return self._per_ip[conn.peer_ip] <= self.config.c2s.max_connections_per_ip

    def note_churn(self) -> None:
        """A session was set up or torn down: soon return freed heap memory to the OS.

        Logins leave freed TLS handshake buffers, discarded parsers and SASL state in the C
        heap, which glibc keeps unless asked; a trim two seconds after churn gives it back.
        """
        if self._malloc_trim is not None and self._trim_handle is None:
            self._trim_handle = asyncio.get_running_loop().call_later(2.0, self._trim)

    def _trim(self) -> None:
        if self._trim_handle is not None:
            self._trim_handle.cancel()  # when called directly, not as the scheduled trim
            self._trim_handle = None
        if self._malloc_trim is not None:
            self._malloc_trim(0)

    def connection_closed(self, conn: C2SConnection) -> None:
        self.note_churn()
        self.awake.discard(conn)
        if conn in self.connections:
            self.connections.discard(conn)
            self._per_ip[conn.peer_ip] -= 1
            if self._per_ip[conn.peer_ip] <= 0:
                del self._per_ip[conn.peer_ip]

    def auth_failed(self, ip: str) -> None:
        self._auth_failures.setdefault(ip, collections.deque()).append(time.monotonic())

    def auth_blocked(self, ip: str) -> bool:
        """Too many failed logins from ``ip`` within the window."""
        window = self.config.c2s.auth_failure_window
        q = self._auth_failures.get(ip)
        if not q:
            return False
        now = time.monotonic()
        while q and now - q[0] > window:
            q.popleft()
        if not q:
            del self._auth_failures[ip]
            return False
        return len(q) >= self.config.c2s.max_auth_failures_per_ip

    # -- timers ---------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Close idle clients (connection-timeout) and keep quiet ones alive with whitespace."""
        c2s = self.config.c2s
        period = max(
            0.5, min(5.0, (c2s.idle_timeout or 60) / 4, (c2s.keepalive_interval or 60) / 2)
        )
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                if c2s.idle_timeout and now - conn.last_rx > c2s.idle_timeout:
                    conn.close(
                        StreamError(StreamErrorCondition.CONNECTION_TIMEOUT, "idle too long")
                    )
                elif c2s.keepalive_interval and now - conn.last_tx > c2s.keepalive_interval:
                    conn.send_whitespace()

    async def _hibernate(self, after: float) -> None:
        """Free the XML parsers of clients quiet for ``after`` seconds.

        An expat parser that has seen a login is most of an idle session's memory and none
        of it is needed between stanzas (``XMLStreamParser.hibernate``); the next input
        builds a fresh one (about 6 µs). Only awake connections are looked at, so a server
        of idle clients does no work here.
        """
        while True:
            await asyncio.sleep(after / 2)
            now = time.monotonic()
            freed = 0
            for conn in [c for c in self.awake if now - c.last_rx >= after]:
                if conn.stream.hibernate():
                    self.awake.discard(conn)
                    conn.asleep = True
                    freed += 1
            trim_shared_names()
            if freed >= 64:  # a few parsers are reused by the next wake-ups; many go back
                self._trim()

    # -- stop -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``serve_forever`` to stop (signal handlers call this)."""
        if self._stopping is not None:
            self._stopping.set()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._stopping is not None
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop accepting, send system-shutdown to everyone, drain, close storage."""
        if self.control is not None:
            await self.control.stop()
            self.control = None
        if self.metrics is not None:
            await self.metrics.stop()
            self.metrics = None
        for lst in self.listeners:
            lst.server.close()
        for timer in list(self._daemons):
            timer.cancel()
        if self._trim_handle is not None:
            self._trim_handle.cancel()
            self._trim_handle = None
        # modules say goodbye while streams are open (XEP-0045 §11.2, status 332)
        self.bus.notify(events.SERVER_STOPPING)
        shutdown = StreamError(StreamErrorCondition.SYSTEM_SHUTDOWN, "the server is stopping")
        if self.stream_manager is not None:
            # what sessions never acknowledged goes to offline storage, their counts to
            # storage (a <resume/> after the restart gets <failed h='…'/>)
            self.stream_manager.stopping = True
            for session in self.stream_manager.detached():
                self.end_session(session, shutdown)
        for conn in list(self.connections):
            conn.close(shutdown)
        if self.components is not None:
            self.components.close_all(shutdown)
        if self.federation is not None:
            self.federation.close_all(shutdown)
        deadline = time.monotonic() + 3
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        with contextlib.suppress(TimeoutError):
            await self.idle(5.0)  # the writes those endings set off
        if self.stream_manager is not None:
            self.stream_manager.forget_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for ctx in reversed(self._contexts):
            ctx.unload()
        self._contexts.clear()
        for lst in self.listeners:
            await lst.server.wait_closed()
        self.listeners.clear()
        await self.storage.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.ready.clear()
        log.info("Roost stopped")


#: sections read once at start: a new value needs a restart
_RESTART_SECTIONS = frozenset(
    (
        "domains",
        "data_dir",
        "storage",
        "modules",
        "registration",
        "legacy_auth",
        "roster",
        "offline",
        "archive",
        "components",
        "metrics",
        "contact",
        "admins",
    )
)
#: keys of live sections that are listeners (bound at start)
_RESTART_KEYS = {
    "c2s": ("port", "interfaces", "direct_tls_port"),
    "s2s": ("enabled", "port", "interfaces", "direct_tls_port"),
}


def _live_part(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """``new`` with what cannot change live kept from ``old``, and the keys that changed
    (applied) and that would need a restart."""
    applied: list[str] = []
    restart: list[str] = []
    changes: dict[str, object] = {}
    for f in dataclasses.fields(Config):
        name = f.name
        if name == "source":
            changes[name] = new.source
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if name in _RESTART_SECTIONS or not dataclasses.is_dataclass(after):
            restart.append(name)
            continue
        keep = {}
        for sub in dataclasses.fields(after):
            a, b = getattr(before, sub.name), getattr(after, sub.name)
            if a == b:
                continue
            key = f"{name}.{sub.name}"
            if sub.name in _RESTART_KEYS.get(name, ()):
                restart.append(key)
                keep[sub.name] = a
            else:
                applied.append(key)
        changes[name] = dataclasses.replace(after, **keep) if keep else after  # type: ignore[type-var]
    return dataclasses.replace(old, **changes), applied, restart  # type: ignore[arg-type]
