"""XEP-0092 Software Version: the server names itself when asked.

A query to a user's full JID is routed to that client like any iq (RFC 6121 §8.5.3.1);
only queries to the server's own JID are answered here.
"""

from __future__ import annotations

from typing import Final

import roost
from roost.core.xml.element import Element
from roost.server.api import IqRequest, IqResult, ModuleContext

__all__ = ["VERSION", "VersionModule"]

VERSION: Final = "jabber:iq:version"
SOFTWARE_NAME: Final = "Roost"


class VersionModule:
    name = "version"

    def setup(self, ctx: ModuleContext) -> None:
        ctx.iq("host", "get", VERSION, "query", self.version)

    @staticmethod
    def version(req: IqRequest) -> IqResult:
        # XEP-0092 §2: <name/> and <version/> are required; <os/> is optional and left out,
        # since the operating system tells an attacker more than it tells anyone else.
        query = Element("query", VERSION)
        query.sub("name", text=SOFTWARE_NAME)
        query.sub("version", text=roost.__version__)
        return query
