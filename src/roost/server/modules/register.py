"""XEP-0077 In-Band Registration: create an account before logging in (when enabled),
change the password or cancel the account once logged in.

Before authentication the iq comes straight from the connection (the stream lets
``jabber:iq:register`` through); afterwards it is routed like any iq to the server or to
the user's own account.
"""

from __future__ import annotations

import collections
import logging
import time

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server.accounts import InvalidUsername
from roost.server.api import EMPTY, HANDLED, IqRequest, IqResult, ModuleContext, PreAuthStream
from roost.server.config import RegistrationConfig
from roost.server.services import PRESENCE, ROSTERS
from roost.storage.api import AccountExists, NoSuchAccount

__all__ = ["RegisterModule"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition
REGISTER = "jabber:iq:register"
FEATURE = "http://jabber.org/features/iq-register"
DATA = "jabber:x:data"
INSTRUCTIONS = "Choose a username and password to register with this server."


def _form_values(query: Element) -> dict[str, str]:
    """Values from the classic fields, or from a submitted XEP-0004 form (XEP-0077 §4)."""
    values: dict[str, str] = {}
    form = query.find("x", DATA)
    if form is not None and form.get("type") == "submit":
        for field in form.find_all("field", DATA):
            var = field.get("var")
            value = field.find("value", DATA)
            if var and value is not None:
                values[var] = value.text
    for name in ("username", "password"):
        el = query.find(name, REGISTER)
        if el is not None and name not in values:
            values[name] = el.text
    return values


def _registration_form() -> Element:
    query = Element("query", REGISTER)
    query.sub("instructions", text=INSTRUCTIONS)
    query.sub("username")
    query.sub("password")
    form = query.sub("x", DATA, {"type": "form"})
    form.sub("title", text="Account registration")
    form.sub("instructions", text=INSTRUCTIONS)
    ftype = form.sub("field", attrs={"type": "hidden", "var": "FORM_TYPE"})
    ftype.sub("value", text=REGISTER)
    for var, ftype_, label in (
        ("username", "text-single", "Username"),
        ("password", "text-private", "Password"),
    ):
        field = form.sub("field", attrs={"type": ftype_, "var": var, "label": label})
        field.sub("required")
    return query


class RegisterModule:
    name = "register"
    depends = ("roster",)
    Options = RegistrationConfig
    config_section = "registration"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.rosters = ctx.service(ROSTERS)
        self.config: RegistrationConfig = ctx.options
        self._recent: dict[str, collections.deque[float]] = {}
        ctx.preauth_iq(REGISTER, self.preauth)
        for target in ("host", "account"):
            ctx.iq(target, "get", REGISTER, "query", self.get_registered)
            ctx.iq(target, "set", REGISTER, "query", self.set_registered)
        if self.config.enabled:
            ctx.stream_feature(lambda: Element("register", FEATURE), pre_auth=True)

    # -- before authentication: creating an account ---------------------------------------

    def preauth(self, conn: PreAuthStream, stanza: Element) -> None:
        self.ctx.spawn(self._preauth(conn, stanza))

    async def _preauth(self, conn: PreAuthStream, stanza: Element) -> None:
        query = stanza.find("query", REGISTER)
        try:
            conn.answer(stanza, await self._create(conn, stanza, query, conn.domain))
        except StanzaError as err:
            conn.answer(stanza, err)

    async def _create(
        self, conn: PreAuthStream, stanza: Element, query: Element | None, domain: str
    ) -> Element | None:
        if not self.config.enabled:
            raise StanzaError(_C.SERVICE_UNAVAILABLE)  # XEP-0077 §3.1: not supported here
        if query is None or stanza.get("type") not in ("get", "set") or not stanza.get("id"):
            raise StanzaError(_C.BAD_REQUEST)
        if stanza.get("type") == "get":
            return _registration_form()
        if query.find("remove", REGISTER) is not None:
            # XEP-0077 §3.2: an unregistered entity cannot cancel anything.
            raise StanzaError(_C.REGISTRATION_REQUIRED)
        if conn.registered_here:
            # XEP-0077 §3.1: one registration per stream before authenticating.
            raise StanzaError(_C.NOT_ACCEPTABLE, "already registered on this connection")
        values = _form_values(query)
        username, password = values.get("username", ""), values.get("password", "")
        if not username or not password:
            raise StanzaError(_C.NOT_ACCEPTABLE, "a username and a password are required")
        if not self._allow(conn.peer_ip):
            raise StanzaError(_C.NOT_ACCEPTABLE, "too many registrations from your address")
        try:
            account = await self.ctx.accounts.create(username, domain, password)
        except AccountExists:
            raise StanzaError(_C.CONFLICT, "that username is taken") from None
        except (InvalidUsername, ValueError) as exc:
            raise StanzaError(_C.NOT_ACCEPTABLE, f"invalid username or password: {exc}") from None
        self._recent.setdefault(conn.peer_ip, collections.deque()).append(time.monotonic())
        conn.registered_here = True
        log.info("%s registered %s@%s", conn.peer_ip, account.username, account.domain)
        return None

    def _allow(self, ip: str) -> bool:
        """At most ``registration.rate_per_ip`` accounts per address per hour."""
        q = self._recent.get(ip)
        if q is None:
            return True
        now = time.monotonic()
        while q and now - q[0] > 3600:
            q.popleft()
        if not q:
            del self._recent[ip]
            return True
        return len(q) < self.config.rate_per_ip

    # -- after authentication: password change and cancellation ----------------------------

    @staticmethod
    def _own(req: IqRequest) -> JID:
        if req.session is None or (req.to.local is not None and req.to != req.sender.bare):
            raise StanzaError(_C.FORBIDDEN)
        return req.sender.bare

    def get_registered(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        # XEP-0077 §3.1: an already registered entity gets <registered/> and its data.
        query = Element("query", REGISTER)
        query.sub("instructions", text="You are registered. Send a new password to change it.")
        query.sub("registered")
        query.sub("username", text=user.local or "")
        query.sub("password")
        return query

    async def set_registered(self, req: IqRequest) -> IqResult:
        user = self._own(req)
        assert user.local is not None
        query = req.payload
        if query.find("remove", REGISTER) is not None:
            if len(query.find_all()) != 1:
                raise StanzaError(_C.BAD_REQUEST, "<remove/> must be alone")  # §3.2
            await self._cancel(req, user)
            return HANDLED  # the reply went out before the sessions were closed
        values = _form_values(query)
        username, password = values.get("username"), values.get("password", "")
        if username is not None and username.lower() != user.local:
            raise StanzaError(_C.BAD_REQUEST, "that is not your username")
        if not password:
            # XEP-0077 §3.3: an empty password keeps the existing one.
            raise StanzaError(_C.NOT_ACCEPTABLE, "the password must not be empty")
        assert req.session is not None
        if not req.session.encrypted:
            raise StanzaError(_C.NOT_AUTHORIZED, "change passwords only over TLS")  # §3.3
        try:
            await self.ctx.accounts.set_password(user.local, user.domain, password)
        except NoSuchAccount:
            raise StanzaError(_C.REGISTRATION_REQUIRED) from None
        except ValueError as exc:
            raise StanzaError(_C.NOT_ACCEPTABLE, str(exc)) from None
        # RFC 6120 §4.9.3.17: the credentials the other sessions were authenticated with
        # are revoked; they reconnect with the new password (roost.server.admin says why
        # reset rather than not-authorized).
        revoked = StreamError(StreamErrorCondition.RESET, "the password was changed")
        for session in list(self.ctx.sessions.resources(user).values()):
            if session is not req.session:
                session.close(revoked)
        return EMPTY

    async def _cancel(self, req: IqRequest, user: JID) -> None:
        """XEP-0077 §3.2: remove the account and its data; tell contacts; end sessions."""
        assert user.local is not None
        roster = await self.rosters.get(user)
        presence = self.ctx.maybe_service(PRESENCE)
        if presence is not None:
            # every contact in the roster, and everyone still waiting for an answer
            for contact in {**roster.items, **roster.pending_in}:
                presence.cancel_subscriptions(user, JID.parse(contact), roster.state(contact))
        if not await self.ctx.storage.delete_account(user.local, user.domain):
            raise StanzaError(_C.REGISTRATION_REQUIRED)
        log.info("account %s removed in-band", user)
        reply = Element(
            "iq", ns.CLIENT, {"type": "result", "id": req.stanza.attrs["id"], "to": str(req.sender)}
        )
        self.ctx.deliver_to(req.sender, reply)
        gone = StreamError(StreamErrorCondition.NOT_AUTHORIZED, "the account was removed")
        for session in list(self.ctx.sessions.resources(user).values()):
            session.close(gone)
