"""XEP-0078 Non-SASL Authentication, for clients that predate SASL.

Only the plaintext method, and only over TLS: the digest method needs the clear password on
the server (SHA-1 of stream id + password), and Roost stores nothing but SCRAM keys. A
successful login binds the resource through the same code as SASL logins, so a resource
already in use is taken over and the old session gets ``conflict`` (RFC 6120 §7.7.2.2).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
)
from roost.core.jid import JID, InvalidJID
from roost.core.stream.server import State
from roost.core.xml.element import Element
from roost.server.modules.base import ModuleContext

if TYPE_CHECKING:
    from roost.server.c2s import C2SConnection

__all__ = ["LegacyAuthModule"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition
AUTH = "jabber:iq:auth"
FEATURE = "http://jabber.org/features/iq-auth"


class LegacyAuthModule:
    name = "legacy_auth"

    def setup(self, ctx: ModuleContext) -> None:
        if not ctx.server.config.legacy_auth.enabled:
            return
        self.server = ctx.server
        ctx.preauth_iq(AUTH, self.handle)
        ctx.stream_feature(lambda: Element("auth", FEATURE), pre_auth=True)

    def handle(self, conn: C2SConnection, stanza: Element) -> None:
        query = stanza.find("query", AUTH)
        iq_type = stanza.get("type")
        if query is None or not stanza.get("id") or iq_type not in ("get", "set"):
            conn.answer_preauth(stanza, StanzaError(_C.BAD_REQUEST))
            return
        if iq_type == "get":
            # XEP-0078 §3: the fields we accept (password only where it is safe to send).
            fields = Element("query", AUTH)
            username = query.find("username", AUTH)
            fields.sub("username", text=username.text if username is not None else "")
            if conn.stream.encrypted:
                fields.sub("password")
            fields.sub("resource")
            conn.answer_preauth(stanza, fields)
            return
        self.server.spawn(self._login(conn, stanza, query))

    async def _login(self, conn: C2SConnection, stanza: Element, query: Element) -> None:
        def text(tag: str) -> str:
            el = query.find(tag, AUTH)
            return el.text.strip() if el is not None else ""

        username, password, resource = text("username"), text("password"), text("resource")
        if not conn.stream.encrypted:
            conn.answer_preauth(stanza, StanzaError(_C.NOT_ALLOWED, "plaintext only over TLS"))
            return
        if not username or not resource or not password:
            why = "digest authentication is not supported" if text("digest") else None
            # XEP-0078 §3.1: required information missing.
            conn.answer_preauth(stanza, StanzaError(_C.NOT_ACCEPTABLE, why))
            return
        domain = conn.stream.domain or self.server.default_domain
        try:
            full = JID.make(username, domain, resource)
        except InvalidJID:
            why = "invalid username or resource"
            conn.answer_preauth(stanza, StanzaError(_C.NOT_ACCEPTABLE, why))
            return
        if self.server.auth_blocked(conn.peer_ip):
            conn.close(StreamError(StreamErrorCondition.POLICY_VIOLATION, "too many failed logins"))
            return
        ok = await self.server.accounts.check_password(username, domain, password)
        if conn.stream.state is not State.PRE_AUTH:
            return  # the stream moved on (closed, or authenticated otherwise) meanwhile
        if not ok:
            self.server.auth_failed(conn.peer_ip)
            log.info("%s failed legacy authentication", conn.peer_ip)
            conn.answer_preauth(stanza, StanzaError(_C.NOT_AUTHORIZED))
            return
        await self.server.rosters.acquire(full.bare)
        if conn.stream.state is not State.PRE_AUTH:
            self.server.rosters.release(full.bare)
            return
        assert full.local is not None
        conn.stream.legacy_authenticated(full.local, str(full))
        conn.answer_preauth(stanza, None)
        conn.bound(full, None)
        log.info("%s authenticated as %s with jabber:iq:auth", conn.peer_ip, full.local)
