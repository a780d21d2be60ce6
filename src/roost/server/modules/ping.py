"""XEP-0199 XMPP Ping: the server answers pings (§4.2) and pings silent clients (§4.3).

A bound client that has sent nothing for ``c2s.ping_interval`` seconds is pinged; if no
answer (result or error: either proves it is alive) comes within ``c2s.ping_timeout``, the
connection is closed with ``connection-timeout``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from roost.core import ns
from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.stream.server import State
from roost.core.xml.element import Element
from roost.server.modules.base import EMPTY, IqRequest, IqResult, ModuleContext

if TYPE_CHECKING:
    from roost.server.c2s import C2SConnection

__all__ = ["PingModule"]


class PingModule:
    name = "ping"

    def setup(self, ctx: ModuleContext) -> None:
        self.server = ctx.server
        self._pinging: set[C2SConnection] = set()
        ctx.iq("host", "get", ns.PING, "ping", self.pong)
        interval = ctx.server.config.c2s.ping_interval
        if interval:
            ctx.every(max(0.2, min(interval / 4, 30.0)), self._check)

    @staticmethod
    def pong(req: IqRequest) -> IqResult:
        # XEP-0199 §4.2: an empty result.
        return EMPTY

    def _check(self) -> None:
        c2s = self.server.config.c2s
        now = time.monotonic()
        for conn in list(self.server.connections):
            if (
                conn not in self._pinging
                and conn.jid is not None
                and conn.stream.state is State.READY
                and now - conn.last_rx > c2s.ping_interval
            ):
                self._pinging.add(conn)
                self.server.spawn(self._ping(conn))

    async def _ping(self, conn: C2SConnection) -> None:
        jid = conn.jid
        try:
            if jid is None:
                return
            iq = Element("iq", ns.CLIENT, {"type": "get"}, [Element("ping", ns.PING)])
            try:
                await self.server.router.request(iq, jid, self.server.config.c2s.ping_timeout)
            except TimeoutError:
                if conn.jid == jid:
                    conn.close(
                        StreamError(StreamErrorCondition.CONNECTION_TIMEOUT, "no answer to ping")
                    )
        finally:
            self._pinging.discard(conn)
