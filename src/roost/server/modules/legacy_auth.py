"""XEP-0078 Non-SASL Authentication, for clients that predate SASL.

Only the plaintext method, and only over TLS: the digest method needs the clear password on
the server (SHA-1 of stream id + password), and Roost stores nothing but SCRAM keys. A
successful login binds the resource through the same code as SASL logins, so a resource
already in use is taken over and the old session gets ``conflict`` (RFC 6120 §7.7.2.2).
"""

from __future__ import annotations

import logging

from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
)
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.server.api import ModuleContext, PreAuthStream
from roost.server.config import LegacyAuthConfig

__all__ = ["LegacyAuthModule"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition
AUTH = "jabber:iq:auth"
FEATURE = "http://jabber.org/features/iq-auth"


class LegacyAuthModule:
    name = "legacy_auth"
    Options = LegacyAuthConfig
    config_section = "legacy_auth"

    def setup(self, ctx: ModuleContext) -> None:
        options: LegacyAuthConfig = ctx.options
        if not options.enabled:
            return
        self.ctx = ctx
        ctx.preauth_iq(AUTH, self.handle)
        ctx.stream_feature(lambda: Element("auth", FEATURE), pre_auth=True)

    def handle(self, conn: PreAuthStream, stanza: Element) -> None:
        query = stanza.find("query", AUTH)
        iq_type = stanza.get("type")
        if query is None or not stanza.get("id") or iq_type not in ("get", "set"):
            conn.answer(stanza, StanzaError(_C.BAD_REQUEST))
            return
        if iq_type == "get":
            # XEP-0078 §3: the fields we accept (password only where it is safe to send).
            fields = Element("query", AUTH)
            username = query.find("username", AUTH)
            fields.sub("username", text=username.text if username is not None else "")
            if conn.encrypted:
                fields.sub("password")
            fields.sub("resource")
            conn.answer(stanza, fields)
            return
        self.ctx.spawn(self._login(conn, stanza, query))

    async def _login(self, conn: PreAuthStream, stanza: Element, query: Element) -> None:
        def text(tag: str) -> str:
            el = query.find(tag, AUTH)
            return el.text.strip() if el is not None else ""

        username, password, resource = text("username"), text("password"), text("resource")
        if not conn.encrypted:
            conn.answer(stanza, StanzaError(_C.NOT_ALLOWED, "plaintext only over TLS"))
            return
        if not username or not resource or not password:
            why = "digest authentication is not supported" if text("digest") else None
            # XEP-0078 §3.1: required information missing.
            conn.answer(stanza, StanzaError(_C.NOT_ACCEPTABLE, why))
            return
        domain = conn.domain
        try:
            full = JID.make(username, domain, resource)
        except InvalidJID:
            why = "invalid username or resource"
            conn.answer(stanza, StanzaError(_C.NOT_ACCEPTABLE, why))
            return
        if conn.auth_blocked():
            conn.close(StreamError(StreamErrorCondition.POLICY_VIOLATION, "too many failed logins"))
            return
        ok = await self.ctx.accounts.check_password(username, domain, password)
        if not conn.authenticating:
            return  # the stream moved on (closed, or authenticated otherwise) meanwhile
        if not ok:
            conn.auth_failed()
            log.info("%s failed legacy authentication", conn.peer_ip)
            conn.answer(stanza, StanzaError(_C.NOT_AUTHORIZED))
            return
        if not await conn.bind_legacy(full, stanza):
            return
        log.info("%s authenticated as %s with jabber:iq:auth", conn.peer_ip, full.local)
