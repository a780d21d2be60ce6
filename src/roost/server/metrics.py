"""The Prometheus metrics endpoint (``metrics.port``; off by default, loopback by default).

A small HTTP/1.1 responder on the event loop serves ``GET /metrics`` in the Prometheus text
format (``prometheus_client``'s exposition). The values are read when scraped: gauges from
the server's state (connections, sessions per domain, memory), counters and the routing
histogram from ``roost.server.stats``, which the hot path increments in place, so serving
metrics costs routing nothing but a few integer additions. Nothing here runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from roost import __version__
from roost.server import stats
from roost.server.control import rss_bytes

if TYPE_CHECKING:
    from roost.server.app import Server

__all__ = ["MetricsEndpoint", "make_registry"]

log = logging.getLogger(__name__)

#: a request head larger than this, or slower than the timeout, is dropped
_MAX_HEAD: Final = 8192
_HEAD_TIMEOUT: Final = 10.0
_KINDS: Final = ("message", "presence", "iq")


class _RoostCollector(Collector):
    """Roost's own metrics, built from its state at each scrape."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        srv = self.server
        info = GaugeMetricFamily("roost_info", "Roost version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "roost_uptime_seconds", "Seconds since the server started", time.time() - srv.started_at
        )
        yield GaugeMetricFamily(
            "roost_client_connections", "Open client connections", len(srv.connections)
        )
        sessions = GaugeMetricFamily(
            "roost_sessions", "Bound client sessions (resources)", labels=["domain"]
        )
        for domain, n in srv.admin.per_domain().items():
            sessions.add_metric([domain], n)
        yield sessions
        accepted = CounterMetricFamily(
            "roost_connections_accepted", "Connections accepted", labels=["kind"]
        )
        accepted.add_metric(["c2s"], stats.CONNECTIONS_ACCEPTED["c2s"])
        yield accepted
        for name, doc, c2s, s2s in (
            ("roost_stanzas_received", "Stanzas received", stats.RECEIVED_C2S, stats.RECEIVED_S2S),
            ("roost_stanzas_sent", "Stanzas sent", stats.SENT_C2S, stats.SENT_S2S),
        ):
            family = CounterMetricFamily(name, doc, labels=["stream", "kind"])
            for stream, counts in (("c2s", c2s), ("s2s", s2s)):
                for kind in sorted({*_KINDS, *counts}):
                    family.add_metric([stream, kind], counts[kind])
            yield family
        auth = CounterMetricFamily(
            "roost_auth", "Client logins (SASL and XEP-0078)", labels=["result"]
        )
        for result in ("success", "failure"):
            auth.add_metric([result], stats.AUTH[result])
        yield auth
        yield HistogramMetricFamily(
            "roost_routing_seconds",
            "Time to route one stanza from a client or a peer server on the event loop",
            buckets=stats.ROUTING.cumulative(),
            sum_value=stats.ROUTING.sum,
        )
        yield HistogramMetricFamily(
            "roost_storage_seconds",
            "Time a storage operation takes as the event loop sees it (queueing included)",
            buckets=stats.STORAGE.cumulative(),
            sum_value=stats.STORAGE.sum,
        )
        yield GaugeMetricFamily("roost_memory_rss_bytes", "Resident memory", rss_bytes())


def make_registry(server: Server) -> CollectorRegistry:
    """Roost's metrics, with the process, platform and garbage-collector ones."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(_RoostCollector(server))
    return registry


class MetricsEndpoint:
    """``GET /metrics`` on ``metrics.interfaces`` and ``metrics.port``."""

    def __init__(self, server: Server) -> None:
        self.registry = make_registry(server)
        self.servers: list[asyncio.Server] = []

    async def start(self, interfaces: tuple[str, ...], port: int) -> None:
        for host in interfaces:
            self.servers.append(await asyncio.start_server(self._client, host, port))
        stats.ROUTING.active = True  # process-wide, like the counters it sits beside

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket."""
        return [sock.getsockname()[:2] for s in self.servers for sock in s.sockets]

    async def stop(self) -> None:
        for s in self.servers:
            s.close()
        for s in self.servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
        self.servers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        if len(head) > _MAX_HEAD:
            writer.close()
            return
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            self._respond(writer, "405 Method Not Allowed", b"GET /metrics\n", "text/plain")
        elif path != "/metrics":
            self._respond(writer, "404 Not Found", b"see /metrics\n", "text/plain")
        else:
            body = generate_latest(self.registry)
            self._respond(writer, "200 OK", body, CONTENT_TYPE_LATEST, head_only=method == "HEAD")
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.drain(), _HEAD_TIMEOUT)
        writer.close()

    @staticmethod
    def _respond(
        writer: asyncio.StreamWriter, status: str, body: bytes, ctype: str, head_only: bool = False
    ) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + (b"" if head_only else body)
        )
