"""XEP-0050 Ad-Hoc Commands on the server's JID, with the XEP-0133 Service Administration set.

Everyone may run the harmless commands (``ping``, ``uptime``, as Prosody names them); the
XEP-0133 ones (add, delete and end the sessions of users, change a password, count and list
online users, count registered ones, announce) only the accounts in the ``admins`` config
key, from a session on this server (a remote JID is never an administrator: a stanza from
another server is only as trustworthy as that server's authentication). Others get
``forbidden`` (XEP-0050 §4.6) and do not see them in the command list (§2.2).

A command that needs input answers ``execute`` with a data form (XEP-0004) and a session
id (status ``executing``, action ``complete``); the submitted form completes it with a note
(XEP-0050 §3.4: ``info``, or ``error`` when it could not be done) and, for queries, a
result form. Account changes go through the server's ``ADMIN`` service, so they end
sessions just as ``roost user`` does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.server.api import IqRequest, IqResult, ModuleContext
from roost.server.services import ADMIN, AdminError, AdminService
from roost.storage.api import AccountExists, NoSuchAccount
from roost.storage.credentials import InvalidUsername

__all__ = ["AdHocModule"]

log = logging.getLogger(__name__)
_C = StanzaErrorCondition

COMMANDS: Final = "http://jabber.org/protocol/commands"
DATA: Final = "jabber:x:data"
ADMIN_NS: Final = "http://jabber.org/protocol/admin"
#: a command session left unfinished this long is forgotten (XEP-0050 §3.2 lets us)
SESSION_TTL: Final = 600.0
#: command sessions one JID may have open at once
MAX_SESSIONS: Final = 16

Values = dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a command ended: a note (XEP-0050 §3.4) and, for queries, a result form."""

    note: str | None = None
    error: bool = False
    form: Element | None = None


@dataclass(frozen=True, slots=True)
class _Command:
    node: str
    name: str
    admin: bool
    #: the form to fill in; None: the command runs at once
    form: Callable[[], Element] | None
    run: Callable[[IqRequest, Values], Awaitable[Outcome]]


@dataclass(slots=True)
class _Pending:
    owner: JID
    node: str
    expires: float


# -- data forms (XEP-0004) -------------------------------------------------------------------


def _form(type_: str, title: str | None = None, instructions: str | None = None) -> Element:
    x = Element("x", DATA, {"type": type_})
    if title:
        x.sub("title", text=title)
    if instructions:
        x.sub("instructions", text=instructions)
    hidden = x.sub("field", attrs={"type": "hidden", "var": "FORM_TYPE"})
    hidden.sub("value", text=ADMIN_NS)
    return x


def _field(
    x: Element,
    var: str,
    type_: str,
    label: str | None = None,
    *,
    required: bool = False,
    values: list[str] | None = None,
    options: list[str] | None = None,
) -> None:
    attrs = {"type": type_, "var": var}
    if label:
        attrs["label"] = label
    f = x.sub("field", attrs=attrs)
    if required:
        f.sub("required")
    for opt in options or ():
        f.sub("option", attrs={"label": opt}).sub("value", text=opt)
    for v in values or ():
        f.sub("value", text=v)


def _values(x: Element | None) -> Values:
    out: Values = {}
    if x is None:
        return out
    for f in x.find_all("field", DATA):
        var = f.get("var")
        if var:
            out[var] = [v.text for v in f.find_all("value", DATA)]
    return out


def _one(values: Values, var: str) -> str:
    got = [v for v in values.get(var, []) if v.strip()]
    if len(got) != 1:
        raise StanzaError(_C.BAD_REQUEST, f"the form needs one value of {var!r}")
    return got[0].strip()


def _duration(seconds: float) -> str:
    s = int(seconds)
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        n, s = divmod(s, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    parts.append(f"{s} second{'s' if s != 1 else ''}")
    return ", ".join(parts)


class AdHocModule:
    name = "adhoc"

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.admin: AdminService = ctx.service(ADMIN)
        self.admins = frozenset(JID.parse(j) for j in ctx.config.admins)
        self._pending: dict[str, _Pending] = {}
        self.commands: dict[str, _Command] = {}
        for cmd in self._command_set():
            self.commands[cmd.node] = cmd
            ctx.disco_node(cmd.node, self._node_info(cmd))
        ctx.iq("host", "set", COMMANDS, "command", self.execute)
        ctx.disco_items_node(COMMANDS, self.list_commands)
        ctx.every(60.0, self._expire)

    # -- who may do what ------------------------------------------------------------------

    def is_admin(self, req: IqRequest) -> bool:
        return req.session is not None and req.sender.bare in self.admins

    def list_commands(self, req: IqRequest) -> Element:
        """XEP-0050 §2.2: the commands this requester may run."""
        query = Element("query", ns.DISCO_ITEMS, {"node": COMMANDS})
        admin = self.is_admin(req)
        for cmd in self.commands.values():
            if admin or not cmd.admin:
                query.sub("item", attrs={"jid": str(req.to), "node": cmd.node, "name": cmd.name})
        return query

    @staticmethod
    def _node_info(cmd: _Command) -> Callable[[], Element]:
        def build() -> Element:
            # XEP-0050 §2.3
            query = Element("query", ns.DISCO_INFO, {"node": cmd.node})
            query.sub(
                "identity",
                attrs={"category": "automation", "type": "command-node", "name": cmd.name},
            )
            query.sub("feature", attrs={"var": COMMANDS})
            query.sub("feature", attrs={"var": DATA})
            return query

        return build

    # -- the protocol (XEP-0050 §3, §4) ---------------------------------------------------

    async def execute(self, req: IqRequest) -> IqResult:
        command = req.payload
        node = command.get("node")
        cmd = self.commands.get(node or "")
        if cmd is None:
            raise StanzaError(_C.ITEM_NOT_FOUND, "no such command")
        if cmd.admin and not self.is_admin(req):
            raise StanzaError(_C.FORBIDDEN, "only administrators may run this command")
        action = command.get("action") or "execute"
        if action not in ("execute", "complete", "cancel", "next", "prev"):
            raise StanzaError(_C.BAD_REQUEST, app=Element("malformed-action", COMMANDS))
        sid = command.get("sessionid")
        if sid is None:
            if action != "execute":
                raise StanzaError(_C.BAD_REQUEST, app=Element("bad-sessionid", COMMANDS))
            if cmd.form is not None:
                return self._start(req, cmd)
            return self._reply(cmd, self.ctx.new_id(), await cmd.run(req, {}))
        pending = self._pending.get(sid)
        if pending is None or pending.owner != req.sender or pending.node != cmd.node:
            raise StanzaError(_C.BAD_REQUEST, app=Element("bad-sessionid", COMMANDS))
        x = command.find("x", DATA)
        if action == "cancel" or (x is not None and x.get("type") == "cancel"):
            del self._pending[sid]
            return Element(
                "command", COMMANDS, {"node": cmd.node, "sessionid": sid, "status": "canceled"}
            )
        if action in ("next", "prev"):
            raise StanzaError(_C.BAD_REQUEST, app=Element("bad-action", COMMANDS))
        if x is None or x.get("type") != "submit":
            raise StanzaError(
                _C.BAD_REQUEST, "submit the form", app=Element("bad-payload", COMMANDS)
            )
        del self._pending[sid]
        return self._reply(cmd, sid, await cmd.run(req, _values(x)))

    def _start(self, req: IqRequest, cmd: _Command) -> Element:
        mine = sum(1 for p in self._pending.values() if p.owner == req.sender)
        if mine >= MAX_SESSIONS:
            raise StanzaError(_C.RESOURCE_CONSTRAINT, "too many unfinished commands")
        sid = self.ctx.new_id()
        self._pending[sid] = _Pending(req.sender, cmd.node, time.monotonic() + SESSION_TTL)
        assert cmd.form is not None
        reply = Element(
            "command", COMMANDS, {"node": cmd.node, "sessionid": sid, "status": "executing"}
        )
        actions = reply.sub("actions", attrs={"execute": "complete"})
        actions.sub("complete")
        reply.append(cmd.form())
        return reply

    @staticmethod
    def _reply(cmd: _Command, sid: str, outcome: Outcome) -> Element:
        reply = Element(
            "command", COMMANDS, {"node": cmd.node, "sessionid": sid, "status": "completed"}
        )
        if outcome.note:
            reply.sub(
                "note", attrs={"type": "error" if outcome.error else "info"}, text=outcome.note
            )
        if outcome.form is not None:
            reply.append(outcome.form)
        return reply

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, p in self._pending.items() if p.expires < now]:
            del self._pending[sid]

    # -- the commands ---------------------------------------------------------------------

    def _command_set(self) -> list[_Command]:
        a = f"{ADMIN_NS}#"
        return [
            _Command("ping", "Ping", False, None, self._ping),
            _Command("uptime", "Get uptime", False, None, self._uptime),
            # XEP-0133 §4.1, §4.2, §4.4, §4.7, §4.15, §4.17, §4.19, §4.23
            _Command(a + "add-user", "Add User", True, self._add_user_form, self._add_user),
            _Command(
                a + "delete-user",
                "Delete User",
                True,
                self._jids_form("Delete users"),
                self._delete_user,
            ),
            _Command(
                a + "end-user-session",
                "End User Session",
                True,
                self._jids_form("End the sessions of users"),
                self._end_session,
            ),
            _Command(
                a + "change-user-password",
                "Change User Password",
                True,
                self._passwd_form,
                self._passwd,
            ),
            _Command(
                a + "get-registered-users-num",
                "Get Number of Registered Users",
                True,
                None,
                self._registered_num,
            ),
            _Command(
                a + "get-online-users-num",
                "Get Number of Online Users",
                True,
                None,
                self._online_num,
            ),
            _Command(
                a + "get-online-users-list",
                "Get List of Online Users",
                True,
                self._max_items_form,
                self._online_list,
            ),
            _Command(
                a + "announce",
                "Send Announcement to Online Users",
                True,
                self._announce_form,
                self._announce,
            ),
        ]

    async def _ping(self, req: IqRequest, values: Values) -> Outcome:
        return Outcome("Pong")

    async def _uptime(self, req: IqRequest, values: Values) -> Outcome:
        up = time.time() - self.ctx.started_at
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.ctx.started_at))
        return Outcome(f"This server has been running for {_duration(up)} (since {since})")

    # add-user, change-user-password

    @staticmethod
    def _add_user_form() -> Element:
        x = _form("form", "Adding a User", "Fill out this form to add a user.")
        _field(
            x,
            "accountjid",
            "jid-single",
            "The Jabber ID for the account to be added",
            required=True,
        )
        _field(x, "password", "text-private", "The password for this account", required=True)
        _field(x, "password-verify", "text-private", "Retype password")
        return x

    def _account(self, values: Values, var: str = "accountjid") -> JID:
        try:
            return self.admin.account(_one(values, var))
        except AdminError as exc:
            raise StanzaError(_C.BAD_REQUEST, str(exc)) from None

    @staticmethod
    def _password(values: Values) -> str:
        password = _one(values, "password")
        verify = values.get("password-verify")
        if verify and verify != [password]:
            raise StanzaError(_C.NOT_ACCEPTABLE, "the passwords differ")
        return password

    async def _add_user(self, req: IqRequest, values: Values) -> Outcome:
        user, password = self._account(values), self._password(values)
        try:
            await self.admin.add_user(user, password)
        except AccountExists:
            return Outcome(f"{user} already exists", error=True)
        except (InvalidUsername, ValueError) as exc:
            return Outcome(str(exc), error=True)
        log.info("%s added the account %s", req.sender.bare, user)
        return Outcome(f"{user} was added")

    @staticmethod
    def _passwd_form() -> Element:
        x = _form(
            "form", "Changing a User Password", "Fill out this form to change a user's password."
        )
        _field(x, "accountjid", "jid-single", "The Jabber ID for this account", required=True)
        _field(x, "password", "text-private", "The password for this account", required=True)
        return x

    async def _passwd(self, req: IqRequest, values: Values) -> Outcome:
        user, password = self._account(values), self._password(values)
        try:
            ended = await self.admin.set_password(user, password, keep=req.session)
        except NoSuchAccount:
            return Outcome(f"no account {user}", error=True)
        except ValueError as exc:
            return Outcome(str(exc), error=True)
        log.info("%s changed the password of %s", req.sender.bare, user)
        return Outcome(f"the password of {user} was changed ({ended} sessions ended)")

    # delete-user, end-user-session

    @staticmethod
    def _jids_form(title: str) -> Callable[[], Element]:
        def build() -> Element:
            x = _form("form", title, "Fill out this form with the Jabber IDs.")
            _field(x, "accountjids", "jid-multi", "The Jabber ID(s)", required=True)
            return x

        return build

    def _accounts(self, values: Values) -> list[JID]:
        texts = [v.strip() for v in values.get("accountjids", []) if v.strip()]
        if not texts:
            raise StanzaError(_C.BAD_REQUEST, "the form needs at least one 'accountjids'")
        return [self._account({"accountjid": [t]}) for t in texts]

    async def _delete_user(self, req: IqRequest, values: Values) -> Outcome:
        done, missing = [], []
        for user in self._accounts(values):
            try:
                await self.admin.delete_user(user)
            except NoSuchAccount:
                missing.append(str(user))
            else:
                log.info("%s deleted the account %s", req.sender.bare, user)
                done.append(str(user))
        if missing:
            deleted = f"; deleted {', '.join(done)}" if done else ""
            return Outcome(f"no account {', '.join(missing)}{deleted}", error=True)
        return Outcome(f"deleted {', '.join(done)}")

    async def _end_session(self, req: IqRequest, values: Values) -> Outcome:
        ended: list[str] = []
        for user in self._accounts(values):
            with contextlib.suppress(AdminError):  # no session: nothing to end
                ended += self.admin.kick(str(user))
        return Outcome(f"ended {', '.join(ended)}" if ended else "no session to end")

    # counts and lists

    async def _registered_num(self, req: IqRequest, values: Values) -> Outcome:
        domain = req.to.domain
        n = len(await self.ctx.storage.list_accounts(domain))
        x = _form("result")
        _field(
            x,
            "registeredusersnum",
            "text-single",
            "The number of registered users",
            values=[str(n)],
        )
        return Outcome(form=x)

    async def _online_num(self, req: IqRequest, values: Values) -> Outcome:
        n = len({s.bare for s in self.admin.online(req.to.domain)})
        x = _form("result")
        _field(x, "onlineusersnum", "text-single", "The number of online users", values=[str(n)])
        return Outcome(form=x)

    @staticmethod
    def _max_items_form() -> Element:
        x = _form("form", "Requesting List of Online Users", "How many users to list?")
        _field(
            x,
            "max_items",
            "list-single",
            "Maximum number of items to show",
            options=["25", "50", "75", "100", "150", "200", "none"],
        )
        return x

    async def _online_list(self, req: IqRequest, values: Values) -> Outcome:
        limit_text = (values.get("max_items") or ["none"])[0]
        limit = None if limit_text == "none" else int(limit_text) if limit_text.isdigit() else 0
        if limit == 0:
            raise StanzaError(_C.BAD_REQUEST, "max_items must be a number or 'none'")
        jids = sorted({str(s.bare) for s in self.admin.online(req.to.domain)})
        x = _form("result")
        _field(
            x, "onlineuserjids", "jid-multi", "The list of all online users", values=jids[:limit]
        )
        return Outcome(form=x)

    # announce

    @staticmethod
    def _announce_form() -> Element:
        x = _form(
            "form",
            "Making an Announcement",
            "Fill out this form to make an announcement to all active users of this service.",
        )
        _field(x, "subject", "text-single", "Subject")
        _field(x, "announcement", "text-multi", "Announcement", required=True)
        return x

    async def _announce(self, req: IqRequest, values: Values) -> Outcome:
        body = "\n".join(values.get("announcement", [])).strip()
        if not body:
            raise StanzaError(_C.BAD_REQUEST, "the announcement is empty")
        subject = "\n".join(values.get("subject", [])).strip()
        sessions = self.admin.online(req.to.domain)
        for session in sessions:
            msg = Element(
                "message",
                ns.CLIENT,
                {"type": "headline", "from": req.to.domain, "to": session.jid_str},
            )
            if subject:
                msg.sub("subject", text=subject)
            msg.sub("body", text=body)
            self.ctx.deliver(session, msg)
        log.info("%s sent an announcement to %d sessions", req.sender.bare, len(sessions))
        return Outcome(f"sent to {len(sessions)} sessions")
