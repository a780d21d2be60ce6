"""RFC 3921 §3 session establishment: a no-op that old clients still send (RFC 6121 App. E)."""

from __future__ import annotations

from roost.core import ns
from roost.server.api import EMPTY, IqRequest, IqResult, ModuleContext

__all__ = ["SessionModule"]


class SessionModule:
    name = "session"

    def setup(self, ctx: ModuleContext) -> None:
        # Clients address it to the server or leave 'to' off (the account); answer both.
        # It is a stream feature, not a disco feature.
        ctx.iq("host", "set", ns.SESSION, "session", self.established, advertise=False)
        ctx.iq("account", "set", ns.SESSION, "session", self.established, advertise=False)

    @staticmethod
    def established(req: IqRequest) -> IqResult:
        return EMPTY
