"""Listening sockets: TCP, optionally with TLS from the first byte (XEP-0368 Direct TLS).

Bytes only: a listener hands each accepted connection to a protocol factory that the server
chose (a client stream driver today; server-to-server and component drivers later).

The default interfaces are ``::`` and ``0.0.0.0``: one IPv6-only socket (asyncio sets
``IPV6_V6ONLY``) beside one IPv4 socket, so clients that resolve ``localhost`` to ``::1``
first connect too. Where the machine has no IPv6 at all, the ``::`` socket is skipped with a
warning as long as another address of the same listener could be bound.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterable

__all__ = ["IPV6_ANY", "Listener", "bind_problem", "ipv6_missing", "listen"]

log = logging.getLogger(__name__)
#: the IPv6 wildcard address, skipped where the machine has no IPv6
IPV6_ANY = "::"
_NO_IPV6 = frozenset((errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL))


def ipv6_missing(host: str, exc: OSError) -> bool:
    """Whether binding ``host`` failed only because this machine has no IPv6."""
    return host == IPV6_ANY and exc.errno in _NO_IPV6


def bind_problem(host: str, port: int, *, skip_missing_ipv6: bool) -> OSError | None:
    """Bind and release ``host:port`` as ``listen`` would (before anything is created, to
    report a port in use by its key): the error, or None when it can be bound (or is the
    IPv6 wildcard on a machine without IPv6 and ``skip_missing_ipv6``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio's create_server does
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
    except OSError as exc:
        if skip_missing_ipv6 and ipv6_missing(host, exc):
            return None
        return exc
    return None


class Listener:
    """One bound listening socket; ``kind`` says what it serves (for logs and lookups)."""

    __slots__ = ("direct_tls", "host", "kind", "port", "server", "starttls")

    def __init__(
        self,
        server: asyncio.Server,
        kind: str,
        host: str,
        port: int,
        direct_tls: bool,
        starttls: bool = True,
    ) -> None:
        self.server = server
        self.starttls = starttls
        self.kind = kind
        self.host = host
        self.port = port
        self.direct_tls = direct_tls

    def __str__(self) -> str:
        mode = "direct TLS" if self.direct_tls else "STARTTLS" if self.starttls else "plain TCP"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind} {mode} {host}:{self.port}"


async def listen(
    kind: str,
    hosts: Iterable[str],
    port: int,
    factory: Callable[[], asyncio.Protocol],
    *,
    tls: ssl.SSLContext | None = None,
    handshake_timeout: float = 30.0,
    starttls: bool = True,
    start_serving: bool = True,
) -> list[Listener]:
    """Bind ``port`` on each of ``hosts`` (port 0: an ephemeral one each); ``starttls``
    says (for the logs) whether the protocol upgrades to TLS itself. Without
    ``start_serving`` the sockets are bound but accept nothing until
    ``listener.server.start_serving()``."""
    loop = asyncio.get_running_loop()
    hosts = list(hosts)
    listeners: list[Listener] = []
    skipped: list[tuple[str, OSError]] = []
    try:
        for host in hosts:
            try:
                srv = await loop.create_server(
                    factory,
                    host,
                    port,
                    ssl=tls,
                    ssl_handshake_timeout=handshake_timeout if tls else None,
                    reuse_address=True,
                    backlog=1024,
                    start_serving=start_serving,
                )
            except OSError as exc:
                if len(hosts) > 1 and ipv6_missing(host, exc):
                    skipped.append((host, exc))
                    continue
                raise
            bound_port = srv.sockets[0].getsockname()[1]
            listeners.append(Listener(srv, kind, host, bound_port, tls is not None, starttls))
    except BaseException:
        for lst in listeners:  # nothing half-open is left behind
            lst.server.close()
        raise
    if not listeners and skipped:
        raise skipped[0][1]
    for host, why in skipped:
        log.warning("%s: no IPv6 on this machine (%s); not listening on %s", kind, why, host)
    return listeners
