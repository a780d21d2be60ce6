"""XEP-0202 Entity Time: the server's clock, in UTC (XEP-0082 DateTime profile)."""

from __future__ import annotations

import datetime
from typing import Final

from roost.core.delay import xep0082_datetime
from roost.core.xml.element import Element
from roost.server.api import IqRequest, IqResult, ModuleContext

__all__ = ["TIME", "TimeModule"]

TIME: Final = "urn:xmpp:time"


class TimeModule:
    name = "time"

    def setup(self, ctx: ModuleContext) -> None:
        ctx.iq("host", "get", TIME, "time", self.time)

    @staticmethod
    def time(req: IqRequest) -> IqResult:
        # XEP-0202 §3: <tzo/> and <utc/> are both required. A server has no local time zone
        # worth reporting (its users live everywhere), so it answers in UTC: +00:00.
        now = datetime.datetime.now(datetime.UTC).timestamp()
        el = Element("time", TIME)
        el.sub("tzo", text="+00:00")
        el.sub("utc", text=xep0082_datetime(now))
        return el
