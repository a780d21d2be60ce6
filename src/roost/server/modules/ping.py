"""XEP-0199 XMPP Ping: the server answers pings addressed to it (§4.2) or to an account."""

from __future__ import annotations

from roost.core import ns
from roost.server.modules.base import EMPTY, IqRequest, IqResult, ModuleContext

__all__ = ["PingModule"]


class PingModule:
    name = "ping"

    def setup(self, ctx: ModuleContext) -> None:
        ctx.iq("host", "get", ns.PING, "ping", self.pong)

    @staticmethod
    def pong(req: IqRequest) -> IqResult:
        # XEP-0199 §4.2: an empty result.
        return EMPTY
