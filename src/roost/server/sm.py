"""XEP-0198 Stream Management on the server: acks, the unacked queue, resumption.

Counting is per session, not per connection, so a session keeps its numbers when its
connection drops and a new one resumes it (§5). ``StreamManagement`` is the state one
session carries; ``StreamManager`` holds what outlives connections: the sessions waiting
to be resumed (each with its ``resume_timeout``), and "tombstones" (SM-ID -> the last
``h``) of sessions that can no longer be resumed, so a late ``<resume/>`` gets ``<failed
h='…'/>`` (§5), also after a restart (they are written to storage when the session ends
and when the server stops).

When a session ends with stanzas the client never acknowledged (it timed out, or closed
without resumption): messages are routed again to the account's bare JID (another
resource, else offline storage, RFC 6121 §8.5.2.1.1) with a XEP-0203 delay; when the
server is stopping they go to offline storage directly, since the other resources are
going too. A message the archive holds is not routed again when the client has queried
the archive in that session: it syncs from there, and would get it twice. Copies made for
this session only (carbons, archive results) are not re-sent; iq requests get
``service-unavailable``; presence is dropped (the contact's latest presence comes again at
the next login). This is Prosody's mod_smacks behaviour.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from roost.core.delay import delay_element
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element
from roost.server import events
from roost.storage.api import NoSuchAccount

if TYPE_CHECKING:
    from roost.server.bus import EventBus
    from roost.server.config import StreamManagementConfig
    from roost.server.router import Router
    from roost.server.services import ArchiveService
    from roost.server.session import Session
    from roost.server.sessions import SessionManager
    from roost.storage.api import Storage

__all__ = ["SM", "StreamManagement", "StreamManager"]

log = logging.getLogger(__name__)

SM: Final = "urn:xmpp:sm:3"
_MOD: Final = 2**32  # §4: h wraps at 2^32
_STORE: Final = "sm"
#: tombstones kept in memory at most (the oldest go first); storage keeps the rest
_MAX_TOMBSTONES: Final = 10000
#: children that mark a message as a copy made for one session only
_COPIES: Final = frozenset(("urn:xmpp:carbons:2", "urn:xmpp:mam:2", "urn:xmpp:mam:1"))


class StreamManagement:
    """One session's XEP-0198 state."""

    __slots__ = (
        "acked", "h_in", "id", "limit", "overflow", "requested", "resumable", "unacked", "watch"
    )

    def __init__(self, sm_id: str, resumable: bool, limit: int = 1000) -> None:
        self.id = sm_id
        self.resumable = resumable
        #: unacknowledged stanzas kept at most; a waiting session beyond it is ended
        self.limit = limit
        #: called (once) when a session waiting for resumption collects more than ``limit``
        self.overflow: Callable[[], None] | None = None
        #: stanzas received from the client (§4 "h" we report)
        self.h_in = 0
        #: the client's last ``h``: stanzas of ours it has handled
        self.acked = 0
        #: what was sent since that ``h``, in order (the element when it is known)
        self.unacked: collections.deque[tuple[Element | None, bytes]] = collections.deque()
        #: an ``<r/>`` is out and not answered yet
        self.requested = False
        #: the carrying stream, told after each stanza written that now waits for an ack
        #: (it asks for acks and bounds the queue); none while detached
        self.watch: Callable[[], None] | None = None

    @property
    def sent(self) -> int:
        return (self.acked + len(self.unacked)) % _MOD

    def received(self) -> None:
        self.h_in = (self.h_in + 1) % _MOD

    def outbound(self, stanza: Element | None, data: bytes) -> None:
        self.unacked.append((stanza, data))

    def valid_ack(self, h: int) -> bool:
        """Whether ``h`` acknowledges no more than was sent (§4)."""
        return (h - self.acked) % _MOD <= len(self.unacked)

    def ack(self, h: int) -> None:
        """Forget what the client says it has handled (``valid_ack`` checked first)."""
        for _ in range((h - self.acked) % _MOD):
            self.unacked.popleft()
        self.acked = h
        self.requested = False


def parse_h(value: str | None) -> int | None:
    """An ``h`` attribute: an xs:unsignedInt (§4), else None."""
    if value is None or not value.isdigit():
        return None
    h = int(value)
    return h if h < _MOD else None


class StreamManager:
    """Resumable sessions, their expiry, and tombstones (see the module docstring)."""

    def __init__(
        self,
        config: StreamManagementConfig,
        sessions: SessionManager,
        router: Router,
        bus: EventBus,
        storage: Storage,
        spawn: Callable[..., asyncio.Task[object]],
        archive: Callable[[], ArchiveService | None] = lambda: None,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.router = router
        self.bus = bus
        self.storage = storage
        self.spawn = spawn
        self.archive = archive
        #: SM-ID -> a session that may be resumed (attached or waiting)
        self.resumable: dict[str, Session] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: SM-ID -> (bare JID, last h) of sessions that ended
        self.tombstones: collections.OrderedDict[str, tuple[str, int]] = (
            collections.OrderedDict()
        )
        self.stopping = False

    def enable(self, session: Session, resume: bool) -> StreamManagement:
        resumable = resume and self.config.resume_timeout > 0
        sm = StreamManagement(secrets.token_urlsafe(18), resumable, self.config.max_unacked)
        session.sm = sm
        if resumable:
            self.resumable[sm.id] = session
        return sm

    # -- a connection went away -----------------------------------------------------------

    def wait_for_resumption(self, session: Session, end: Callable[[Session], None]) -> None:
        """The session is detached; ``end`` it unless it is resumed in time."""
        sm = session.sm
        assert sm is not None
        loop = asyncio.get_running_loop()
        old = self._timers.pop(sm.id, None)
        if old is not None:
            old.cancel()
        self._timers[sm.id] = loop.call_later(self.config.resume_timeout, end, session)
        log.info("%r: waiting %gs to be resumed", session, self.config.resume_timeout)
        self.bus.notify(events.SESSION_DETACHED, session)

        def overflow() -> None:
            # more arrived than max_unacked: stop keeping it for a client that is not there
            sm.overflow = None
            if session.stream is None:
                log.info("%r: too much waiting for a resumption; the session ends", session)
                loop.call_soon(end, session)

        sm.overflow = overflow

    def take(self, sm_id: str, bare: JID) -> Session | None:
        """The session ``sm_id`` names, if it can be resumed by ``bare`` (§5); its expiry
        is called off."""
        session = self.resumable.get(sm_id)
        if session is None or session.bare != bare:
            return None
        timer = self._timers.pop(sm_id, None)
        if timer is not None:
            timer.cancel()
        return session

    async def last_h(self, sm_id: str, bare: JID) -> int | None:
        """The last ``h`` of an ended session of ``bare`` (§5 ``<failed h=…/>``)."""
        entry = self.tombstones.get(sm_id)
        if entry is not None:
            return entry[1] if entry[0] == str(bare) else None
        if bare.local is None:
            return None
        raw = await self.storage.get_data(bare.local, bare.domain, _STORE, sm_id)
        if raw is None:
            return None
        try:
            h = json.loads(raw)["h"]
        except (ValueError, KeyError, TypeError):
            return None
        return h if isinstance(h, int) else None

    # -- a session ended -------------------------------------------------------------------

    def ended(self, session: Session) -> None:
        """The session is over for good: keep its tombstone, re-send what it never acked."""
        sm = session.sm
        if sm is None:
            return
        timer = self._timers.pop(sm.id, None)
        if timer is not None:
            timer.cancel()
        if self.resumable.get(sm.id) is session:
            del self.resumable[sm.id]
            self._tombstone(session, sm)
        unacked, sm.unacked = sm.unacked, collections.deque()
        if unacked:
            log.info("%r: %d stanzas were never acknowledged", session, len(unacked))
        for stanza, _ in unacked:
            if stanza is not None:
                self._unacked(session, stanza)

    def _tombstone(self, session: Session, sm: StreamManagement) -> None:
        self.tombstones[sm.id] = (str(session.bare), sm.h_in)
        while len(self.tombstones) > _MAX_TOMBSTONES:
            self.tombstones.popitem(last=False)
        user = session.bare
        if user.local is not None:
            value = json.dumps({"h": sm.h_in, "at": time.time()})
            self.spawn(self._store(user.local, user.domain, sm.id, value))

    async def _store(self, username: str, domain: str, sm_id: str, value: str) -> None:
        with contextlib.suppress(NoSuchAccount):  # deleted meanwhile: nobody to resume
            await self.storage.set_data(username, domain, _STORE, sm_id, value)

    def _unacked(self, session: Session, stanza: Element) -> None:
        tag = stanza.tag
        if tag == "iq":
            if stanza.attrs.get("type") in ("get", "set"):
                self._reply_unavailable(stanza)
            return
        if tag != "message" or stanza.attrs.get("type") in ("error", "groupchat", "headline"):
            return  # presence, and what makes no sense later (RFC 6121 §8.5.2.1.1)
        if any(child.ns in _COPIES for child in stanza.elements()):
            return
        archive = self.archive()
        if (
            archive is not None
            and archive.queried(session)
            and archive.archived(session.bare, stanza) is not None
        ):
            return  # #12: a client that uses MAM finds it in the archive; not sent twice
        try:
            sender = JID.parse(stanza.attrs.get("from") or session.bare.domain)
        except InvalidJID:
            return
        again = stanza.deepcopy()
        if again.find("delay", "urn:xmpp:delay") is None:
            again.append(delay_element(time.time(), session.bare.domain, "Resent"))
        if archive is not None:
            archive.again(again)  # #12: archived when it was delivered; not twice
        if self.stopping:
            if self.bus.run(events.MESSAGE_OFFLINE, again, sender, session.bare) is None:
                log.info("%r: an unacknowledged message could not be kept", session)
        else:
            self.router.route(again, sender, session.bare)

    def _reply_unavailable(self, stanza: Element) -> None:
        try:
            sender = JID.parse(stanza.attrs.get("from") or "")
        except InvalidJID:
            return
        error = StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE)
        self.router.reply_error(stanza, error, sender)

    def detached(self) -> list[Session]:
        """Sessions waiting to be resumed, with no connection."""
        return [s for s in self.resumable.values() if s.stream is None]

    def forget_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
