"""XEP-0199 XMPP Ping: the server answers pings (§4.2) and pings silent clients (§4.3).

A bound client that has sent nothing for ``c2s.ping_interval`` seconds is pinged; if no
answer (result or error: either proves it is alive) comes within ``c2s.ping_timeout``, the
connection is closed with ``connection-timeout``.

A ping with no ``to``, or to an account's bare JID, is answered by the server on behalf of the
account (RFC 6120 §10.3.3, RFC 6121 §8.5.2.1.3): clients ping that way to keep their stream
alive, and Prosody answers them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition
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
        ctx.iq("account", "get", ns.PING, "ping", self.pong_account, advertise=False)
        interval = ctx.config.c2s.ping_interval
        if interval:
            ctx.every(max(0.2, min(interval / 4, 30.0)), self._check)

    @staticmethod
    def pong(req: IqRequest) -> IqResult:
        # XEP-0199 §4.2: an empty result.
        return EMPTY

    def pong_account(self, req: IqRequest) -> IqResult | Awaitable[IqResult]:
        """The server answers for an account (RFC 6120 §10.3.3): oneself at once, another
        account if it exists (RFC 6121 §8.5.2.2.3: else ``service-unavailable``)."""
        if req.sender.bare == req.to:
            return EMPTY
        return self._pong_other(req)

    async def _pong_other(self, req: IqRequest) -> IqResult:
        assert req.to.local is not None
        if not await self.ctx.accounts.exists(req.to.local, req.to.domain):
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
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
