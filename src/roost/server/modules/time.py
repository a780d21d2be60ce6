"""XEP-0202 Entity Time: the server's clock, in UTC (XEP-0082 DateTime profile)."""

from __future__ import annotations

import datetime
from typing import Final

from roost.core.xml.element import Element
from roost.server.modules.base import IqRequest, IqResult, ModuleContext

__all__ = ["TIME", "TimeModule", "xep0082_datetime"]

TIME: Final = "urn:xmpp:time"


def xep0082_datetime(stamp: float) -> str:
    """XEP-0082 §3.2 DateTime in UTC with milliseconds, e.g. ``2006-12-19T17:58:35.123Z``."""
    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
