"""Listening sockets: TCP, optionally with TLS from the first byte (XEP-0368 Direct TLS).

Bytes only: a listener hands each accepted connection to a protocol factory that the server
chose (a client stream driver today; server-to-server and component drivers later).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable

__all__ = ["Listener", "listen"]


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
) -> list[Listener]:
    """Bind ``port`` on each of ``hosts`` (port 0: an ephemeral one each); ``starttls``
    says (for the logs) whether the protocol upgrades to TLS itself."""
    loop = asyncio.get_running_loop()
    listeners = []
    for host in hosts:
        srv = await loop.create_server(
            factory,
            host,
            port,
            ssl=tls,
            ssl_handshake_timeout=handshake_timeout if tls else None,
            reuse_address=True,
            backlog=1024,
        )
        bound_port = srv.sockets[0].getsockname()[1]
        listeners.append(Listener(srv, kind, host, bound_port, tls is not None, starttls))
    return listeners
