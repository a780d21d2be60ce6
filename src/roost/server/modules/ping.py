"""XEP-0199 XMPP Ping: the server answers pings (§4.2) and pings silent clients (§4.3).

A bound client that has sent nothing for ``c2s.ping_interval`` seconds is pinged; if no
answer (result or error: either proves it is alive) comes within ``c2s.ping_timeout``, the
connection is closed with ``connection-timeout``.
"""

from __future__ import annotations

import time

from roost.core import ns
from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.xml.element import Element
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext
from roost.server.session import Session

__all__ = ["PingModule"]


class PingModule:
    name = "ping"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self._pinging: set[Session] = set()
        ctx.iq("host", "get", ns.PING, "ping", self.pong)
        interval = ctx.config.c2s.ping_interval
        if interval:
            ctx.every(max(0.2, min(interval / 4, 30.0)), self._check)

    @staticmethod
    def pong(req: IqRequest) -> IqResult:
        # XEP-0199 §4.2: an empty result.
        return EMPTY

    def _check(self) -> None:
        c2s = self.ctx.config.c2s
        now = time.monotonic()
        for session in self.ctx.sessions.all():
            stream = session.stream
            if (
                session not in self._pinging
                and stream is not None
                and now - stream.last_rx > c2s.ping_interval
            ):
                self._pinging.add(session)
                self.ctx.spawn(self._ping(session))

    async def _ping(self, session: Session) -> None:
        try:
            iq = Element("iq", ns.CLIENT, {"type": "get"}, [Element("ping", ns.PING)])
            try:
                await self.ctx.request(iq, session.jid, self.ctx.config.c2s.ping_timeout)
            except TimeoutError:
                if self.ctx.sessions.get(session.jid) is session:
                    session.close(
                        StreamError(StreamErrorCondition.CONNECTION_TIMEOUT, "no answer to ping")
                    )
        finally:
            self._pinging.discard(session)
