"""XEP-0202 Entity Time: the server's clock, in UTC (XEP-0082 DateTime profile).

Asked of the server, or of an account's bare JID (or with no ``to``), which the server
answers on the account's behalf (RFC 6120 §10.3.3, RFC 6121 §8.5.2.1.3; Prosody does too).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable
from typing import Final

from roost.core.delay import xep0082_datetime
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.xml.element import Element
from roost.server.api import IqRequest, IqResult, ModuleContext

__all__ = ["TIME", "TimeModule"]

TIME: Final = "urn:xmpp:time"


class TimeModule:
    name = "time"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.iq("host", "get", TIME, "time", self.time)
        ctx.iq("account", "get", TIME, "time", self.account_time, advertise=False)

    def account_time(self, req: IqRequest) -> IqResult | Awaitable[IqResult]:
        """For oneself at once; for another account if it exists (RFC 6121 §8.5.2.2.3)."""
        if req.sender.bare == req.to:
            return self.time(req)
        return self._other_time(req)

    async def _other_time(self, req: IqRequest) -> IqResult:
        assert req.to.local is not None
        if not await self.ctx.accounts.exists(req.to.local, req.to.domain):
            raise StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return self.time(req)

    @staticmethod
    def time(req: IqRequest) -> IqResult:
        # XEP-0202 §3: <tzo/> and <utc/> are both required. A server has no local time zone
        # worth reporting (its users live everywhere), so it answers in UTC: +00:00.
        now = datetime.datetime.now(datetime.UTC).timestamp()
        el = Element("time", TIME)
        el.sub("tzo", text="+00:00")
        el.sub("utc", text=xep0082_datetime(now))
        return el
