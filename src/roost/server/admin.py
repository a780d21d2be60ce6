"""Administration of a running server: accounts and sessions, shared by the control socket
(``roost status``, ``roost user``, ``roost sessions``) and the XEP-0133 ad-hoc commands.

Account changes end the sessions they invalidate at once (RFC 6120 §4.9.3): a deleted
account's sessions get ``not-authorized`` (§4.9.3.12: the entity is no longer authorized
at all); a password change gives the account's other sessions ``reset`` (§4.9.3.17: the
credentials the stream was authenticated with were revoked during its life; the account
still exists, so a client may reconnect and finds out through SASL whether the password
it has is still good, where ``not-authorized`` would tell it to give up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, cast

from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.jid import JID, InvalidJID
from roost.server.services import PRESENCE, ROSTERS, AdminError
from roost.server.session import Session
from roost.server.sessions import SessionManager
from roost.storage.api import NoSuchAccount

if TYPE_CHECKING:
    from roost.server.accounts import Accounts
    from roost.server.services import PresenceService, RosterService

__all__ = ["KICK_CONDITIONS", "Admin", "AdminError", "session_info"]

log = logging.getLogger(__name__)
_SC = StreamErrorCondition

#: stream errors an administrator may end a session with (RFC 6120 §4.9.3)
KICK_CONDITIONS: Final = {
    c.value: c for c in (_SC.POLICY_VIOLATION, _SC.NOT_AUTHORIZED, _SC.RESET, _SC.SYSTEM_SHUTDOWN)
}


class Admin:
    """Account and session operations on the live server."""

    def __init__(
        self,
        accounts: Accounts,
        sessions: SessionManager,
        domains: frozenset[str],
        services: Mapping[str, object],
        end_session: Callable[[Session, StreamError], None] | None = None,
    ) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.domains = domains
        self._services = services
        #: ends a session that has no connection (one waiting for a XEP-0198 resumption)
        self._end_detached = end_session

    # -- JIDs -------------------------------------------------------------------------------

    def account(self, text: str) -> JID:
        """A bare account JID of a served domain, or ``AdminError``."""
        try:
            jid = JID.parse(text)
        except InvalidJID as exc:
            raise AdminError(f"invalid JID {text!r}: {exc}") from None
        if jid.local is None or jid.resource is not None:
            raise AdminError(f"{text!r} is not a bare account JID (user@domain)")
        if jid.domain not in self.domains:
            raise AdminError(f"{jid.domain} is not one of the served domains")
        return jid

    # -- sessions -------------------------------------------------------------------------

    def online(self, domain: str | None = None) -> list[Session]:
        """Bound sessions (of one domain), sorted by JID."""
        found = [s for s in self.sessions.all() if domain is None or s.jid.domain == domain]
        return sorted(found, key=lambda s: s.jid_str)

    def per_domain(self) -> dict[str, int]:
        counts = dict.fromkeys(sorted(self.domains), 0)
        for session in self.sessions.all():
            counts[session.jid.domain] = counts.get(session.jid.domain, 0) + 1
        return counts

    def kick(
        self, text: str, condition: str = "policy-violation", reason: str | None = None
    ) -> list[str]:
        """End a full JID's session, or every session of a bare JID; the JIDs ended."""
        cond = KICK_CONDITIONS.get(condition)
        if cond is None:
            raise AdminError(f"condition must be one of {', '.join(KICK_CONDITIONS)}")
        try:
            jid = JID.parse(text)
        except InvalidJID as exc:
            raise AdminError(f"invalid JID {text!r}: {exc}") from None
        if jid.resource is not None:
            one = self.sessions.get(jid)
            targets = [one] if one is not None else []
        else:
            targets = list(self.sessions.resources(jid).values())
        if not targets:
            raise AdminError(f"{jid} has no session")
        error = StreamError(cond, reason or "ended by an administrator")
        for session in targets:
            log.info("ending the session of %s (%s)", session.jid, cond.value)
            self._close(session, error)
        return [s.jid_str for s in targets]

    def _close(self, session: Session, error: StreamError) -> None:
        if session.stream is None and self._end_detached is not None:
            self._end_detached(session, error)
        else:
            session.close(error)

    def _end(self, user: JID, error: StreamError, keep: Session | None = None) -> int:
        ended = 0
        for session in list(self.sessions.resources(user).values()):
            if session is not keep:
                self._close(session, error)
                ended += 1
        return ended

    # -- accounts -------------------------------------------------------------------------

    async def add_user(self, user: JID, password: str) -> None:
        """Create an account: ``AccountExists``, ``InvalidUsername``, ``ValueError``."""
        assert user.local is not None
        await self.accounts.create(user.local, user.domain, password)
        log.info("account %s created by an administrator", user)

    async def set_password(self, user: JID, password: str, keep: Session | None = None) -> int:
        """Replace the keys and end the account's sessions but ``keep`` with ``reset``;
        raises ``NoSuchAccount``. The number of sessions ended."""
        assert user.local is not None
        await self.accounts.set_password(user.local, user.domain, password)
        ended = self._end(user, StreamError(_SC.RESET, "the password was changed"), keep)
        log.info("password of %s changed; %d session(s) ended", user, ended)
        return ended

    async def delete_user(self, user: JID) -> int:
        """Remove the account and its data, tell its contacts (as XEP-0077 §3.2 does) and end
        its sessions with ``not-authorized``; raises ``NoSuchAccount``. Sessions ended."""
        assert user.local is not None
        if not await self.accounts.exists(user.local, user.domain):
            raise NoSuchAccount(f"{user}")
        rosters = cast("RosterService | None", self._services.get(ROSTERS.name))
        presence = cast("PresenceService | None", self._services.get(PRESENCE.name))
        if rosters is not None and presence is not None:
            roster = await rosters.get(user)
            for contact in {**roster.items, **roster.pending_in}:
                presence.cancel_subscriptions(user, JID.parse(contact), roster.state(contact))
        if not await self.accounts.storage.delete_account(user.local, user.domain):
            raise NoSuchAccount(f"{user}")
        ended = self._end(user, StreamError(_SC.NOT_AUTHORIZED, "the account was deleted"))
        log.info("account %s deleted; %d session(s) ended", user, ended)
        return ended


def session_info(session: Session) -> dict[str, object]:
    """One session as ``roost sessions list`` shows it."""
    return {
        "jid": session.jid_str,
        "address": getattr(session.stream, "peer_ip", None),
        "available": session.available,
        "priority": session.priority,
        "encrypted": session.encrypted,
    }
