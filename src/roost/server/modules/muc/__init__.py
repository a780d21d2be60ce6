"""XEP-0045 Multi-User Chat as a hosted service at ``conference.DOMAIN`` (``[modules.muc]``).

Every stanza for the service domain or a JID at it comes to ``MucService.receive``; what
the rooms send goes out through ``ctx.route``. Rooms are created by the first presence to
them (§10.1), locked until configured when the creator speaks MUC (§10.1.1). Affiliations,
configuration, subject and registered nicks of persistent rooms are stored as JSON through
the host data store, keyed by room JID; occupants and history live in memory only.
Occupant ids (XEP-0421), stanza ids (XEP-0359) and self-ping (XEP-0410) are the room's.

Room behaviour follows XEP-0045 sections cited inline; the role and affiliation rules and
the configuration form are in ``roost.core.muc``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Final

from roost.core import ns
from roost.core.delay import delay_element
from roost.core.errors import StanzaError, StanzaErrorType
from roost.core.errors import StanzaErrorCondition as C
from roost.core.jid import JID, InvalidJID
from roost.core.mam import MAM1, MAM2, MAM2_EXTENDED, MAM_NAMESPACES
from roost.core.moderation import MODERATE
from roost.core.muc import (
    DATA,
    MUC,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_USER,
    RANK,
    Affiliation,
    FormError,
    HistoryItem,
    HistoryRequest,
    Role,
    RoomConfig,
    config_form,
    default_role,
    may_set_affiliation,
    may_set_role,
    parse_config_form,
    select_history,
)
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server import events
from roost.server.api import ModuleContext
from roost.server.config import ConfigError
from roost.server.modules.muc.archive import RoomArchive, archivable
from roost.server.services import ROOM_ARCHIVE
from roost.server.session import Session

__all__ = ["MucModule", "MucOptions"]

log = logging.getLogger(__name__)

REGISTER: Final = "jabber:iq:register"
OCCUPANT_ID: Final = "urn:xmpp:occupant-id:0"
SID: Final = "urn:xmpp:sid:0"
SELF_PING: Final = "http://jabber.org/protocol/muc#self-ping-optimization"
MUC_REQUEST: Final = "http://jabber.org/protocol/muc#request"
MUC_REGISTER: Final = "http://jabber.org/protocol/muc#register"
ROOMINFO: Final = "http://jabber.org/protocol/muc#roominfo"
#: §7.12: the disco#info node that tells a user the nick reserved for them
ROOMUSER: Final = "x-roomuser-item"
STORE: Final = "muc"
INDEX: Final = "muc_rooms"
#: iqs forwarded to occupants and not answered yet, per service (the oldest are forgotten)
MAX_PENDING_IQ: Final = 10000
#: affiliations one room keeps at most (members, admins, owners, outcasts)
MAX_AFFILIATIONS: Final = 10000
#: invitations one message may carry (each is a message the room sends)
MAX_INVITES: Final = 20


@dataclasses.dataclass(frozen=True, slots=True)
class MucOptions:
    """``[modules.muc]``."""

    #: the service is at SUBDOMAIN.DOMAIN for each served domain
    subdomain: str = dataclasses.field(default="conference", metadata={"nonempty": True})
    #: its name in the server's disco#items and its own disco#info
    name: str = "Chatrooms"
    #: who may create rooms: "anyone" (also other servers' users), "local" (accounts here)
    create: str = dataclasses.field(default="local", metadata={"choices": ("anyone", "local")})
    #: rooms one account may own (0 = no limit)
    max_rooms_per_user: int = dataclasses.field(default=100, metadata={"lo": 0})
    #: occupants a room holds at most (a room's own muc#roomconfig_maxusers may be lower)
    max_occupants: int = dataclasses.field(default=200, metadata={"lo": 1})
    #: groupchat messages a room keeps for newcomers (§7.2.14; 0 = none)
    history_size: int = dataclasses.field(default=20, metadata={"lo": 0, "hi": 10000})
    #: groupchat messages an occupant may send per second, sustained, and in a burst
    message_rate: float = dataclasses.field(default=5.0, metadata={"lo": 0.01})
    message_burst: int = dataclasses.field(default=20, metadata={"lo": 1})
    #: whether a new room archives its messages (XEP-0313) until its owner says otherwise
    #: (muc#roomconfig_enablearchiving); retention is the [archive] table's
    archiving: bool = True

    def __post_init__(self) -> None:
        label = self.subdomain
        try:
            valid = bool(label) and label.strip(".") == label
            JID.make(None, f"{label}.example")  # IDNA: what a domain may hold
        except InvalidJID:
            valid = False
        if not valid:
            raise ConfigError("modules.muc.subdomain", f"not a domain name part: {label!r}")


def _x(*codes: int) -> Element:
    x = Element("x", MUC_USER)
    for code in codes:
        x.sub("status", attrs={"code": str(code)})
    return x


class Occupant:
    """One nick in a room: the real bare JID behind it and its sessions (full JIDs)."""

    __slots__ = ("bare", "jids", "nick", "occupant_id", "presence", "role", "stamp", "tokens")

    def __init__(self, nick: str, bare: JID, role: Role, occupant_id: str) -> None:
        self.nick = nick
        self.bare = bare
        self.role = role
        self.occupant_id = occupant_id
        #: each session's last presence (one account may join one nick from several clients)
        self.jids: dict[JID, Element] = {}
        self.presence: Element | None = None
        self.tokens = 0.0
        self.stamp = 0.0


class Room:
    """A room's state: configuration, affiliations, occupants, subject, history."""

    def __init__(self, jid: JID, history_size: int) -> None:
        self.jid = jid
        self.config = RoomConfig()
        self.affiliations: dict[JID, Affiliation] = {}
        self.reasons: dict[JID, str] = {}
        #: §7.10 registered nicks: bare JID -> nick
        self.registered: dict[JID, str] = {}
        self.subject = ""
        self.subject_from = ""
        self.occupants: dict[str, Occupant] = {}
        self.by_jid: dict[JID, Occupant] = {}
        self.history: collections.deque[HistoryItem] = collections.deque(maxlen=history_size)
        self.locked = False
        self.salt = secrets.token_hex(16)
        self.creator: JID | None = None

    def affiliation(self, bare: JID) -> Affiliation:
        return self.affiliations.get(bare, Affiliation.NONE)

    def with_affiliation(self, aff: Affiliation) -> list[JID]:
        return sorted((j for j, a in self.affiliations.items() if a is aff), key=str)

    @property
    def non_anonymous(self) -> bool:
        return self.config.whois == "anyone"

    def nick_owner(self, nick: str) -> JID | None:
        for bare, registered in self.registered.items():
            if registered == nick:
                return bare
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config.to_json(),
                "affiliations": {str(j): a.value for j, a in self.affiliations.items()},
                "reasons": {str(j): r for j, r in self.reasons.items()},
                "registered": {str(j): n for j, n in self.registered.items()},
                "subject": self.subject,
                "subject_from": self.subject_from,
                "salt": self.salt,
                "creator": str(self.creator) if self.creator else None,
            }
        )

    def load_json(self, text: str, archiving: bool = True) -> None:
        """The stored state; ``archiving`` for a room stored before rooms had archives."""
        data = json.loads(text)
        self.config = RoomConfig.from_json({"archiving": archiving, **data.get("config", {})})
        self.affiliations = {
            JID.parse(j): Affiliation(a) for j, a in data.get("affiliations", {}).items()
        }
        self.reasons = {JID.parse(j): r for j, r in data.get("reasons", {}).items()}
        self.registered = {JID.parse(j): n for j, n in data.get("registered", {}).items()}
        self.subject = data.get("subject", "")
        self.subject_from = data.get("subject_from", "")
        self.salt = data.get("salt") or self.salt
        creator = data.get("creator")
        self.creator = JID.parse(creator) if creator else None


class MucService:
    """One service domain: its rooms and everything addressed to them."""

    def __init__(self, module: MucModule, domain: str) -> None:
        self.m = module
        self.ctx = module.ctx
        self.opts: MucOptions = module.opts
        self.domain = domain
        self.jid = JID.make(None, domain)
        self.rooms: dict[JID, Room] = {}
        self._waiting: list[tuple[Element, JID, JID]] | None = []
        #: the rooms each client (full JID) is in
        self.joined: dict[JID, set[JID]] = {}
        #: iqs forwarded to occupants: room's id -> (asker's id, asker, from, to)
        self.pending: dict[str, tuple[str, JID, JID, JID]] = {}

    # -- storage ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the persistent rooms; stanzas that came meanwhile are handled after."""
        try:
            names = await self.ctx.storage.list_host_data(self.domain, INDEX)
            for local in names:
                room_jid = JID.make(local, self.domain)
                text = await self.ctx.storage.get_host_data(str(room_jid), STORE, "room")
                if text is None:
                    continue
                room = Room(room_jid, self.opts.history_size)
                room.load_json(text, self.opts.archiving)
                self.rooms[room_jid] = room
                self.m.stored.add(room_jid)
                if room.config.archiving:
                    try:
                        await self.m.archive.recent(room)
                    except Exception:
                        log.exception("muc: reading the history of %s failed", room_jid)
        finally:
            waiting, self._waiting = self._waiting or [], None
            for stanza, sender, to in waiting:
                self.receive(stanza, sender, to)

    def save(self, room: Room) -> None:
        if room.config.persistent or room.jid in self.m.stored:
            self.m.save(self, room)

    # -- dispatch ---------------------------------------------------------------------------

    def receive(self, stanza: Element, sender: JID, to: JID) -> None:
        if self._waiting is not None:
            self._waiting.append((stanza, sender, to))
            return
        try:
            self._receive(stanza, sender, to)
        except StanzaError as err:
            if err.by is None and to.local is not None:
                err.by = str(to.bare)  # the room's errors say so (XEP-0045 §7.2.6 examples)
            self.ctx.reply_error(stanza, err, sender)

    def _receive(self, stanza: Element, sender: JID, to: JID) -> None:
        tag, type_ = stanza.tag, stanza.get("type")
        if to.local is None:
            if tag == "iq" and type_ in ("get", "set"):
                self._service_iq(stanza, sender, to)
            elif tag == "message" and type_ != "error":
                raise StanzaError(C.SERVICE_UNAVAILABLE)
            return
        room = self.rooms.get(to.bare)
        if tag == "presence":
            if to.resource is None:
                occ = room.by_jid.get(sender) if room is not None else None
                if occ is not None:
                    # An occupant's presence to the bare room JID is for its current nick,
                    # as Prosody takes it (§7.14 says room/nick; aioxmpp leaves this way).
                    self._presence(room, stanza, sender, to.with_resource(occ.nick))
                elif type_ not in ("error", "unavailable"):
                    raise StanzaError(C.JID_MALFORMED, "a room nickname is needed")  # §7.2.1
                return
            self._presence(room, stanza, sender, to)
            return
        if room is None:
            if tag == "iq" and to.resource is not None and _is_ping(stanza):
                # XEP-0410 §3: not joined (the room is gone); item-not-found would read as
                # "joined, the nick just changed"
                raise StanzaError(C.NOT_ACCEPTABLE, "not joined")
            if (tag == "iq" and type_ in ("get", "set")) or (tag == "message" and type_ != "error"):
                raise StanzaError(C.ITEM_NOT_FOUND)
            return
        if tag == "message":
            if to.resource is None:
                self._room_message(room, stanza, sender)
            else:
                self._private_message(room, stanza, sender, to.resource)
        elif tag == "iq" and type_ in ("get", "set"):
            if to.resource is None:
                self._room_iq(room, stanza, sender)
            else:
                self._occupant_iq(room, stanza, sender, to.resource)
        elif tag == "iq" and to.resource is not None:
            self._occupant_iq_answer(stanza, sender)

    def send(self, stanza: Element, frm: JID, to: JID) -> None:
        """Route a stanza from the room (callers pass a copy per recipient; its child list is
        its own too, so what delivery adds for one recipient, a stanza-id say, stays there)."""
        stanza.children = list(stanza.children)
        stanza.attrs["from"] = str(frm)
        stanza.attrs["to"] = str(to)
        self.ctx.route(stanza, frm, to)

    def result(self, iq: Element, sender: JID, payload: Element | None = None) -> None:
        attrs = {"type": "result", "id": iq.get("id") or ""}
        reply = Element("iq", ns.CLIENT, attrs, [payload] if payload is not None else None)
        self.send(reply, JID.parse(iq.get("to") or self.domain), sender)

    def reply(self, iq: Element, sender: JID, error: StanzaError) -> None:
        """An error answer from a task (``receive`` answers the ones handlers raise)."""
        to = iq.get("to")
        if error.by is None and to:
            error.by = to.partition("/")[0]
        self.ctx.reply_error(iq, error, sender)

    def ack(self, iq: Element, sender: JID) -> None:
        """The result of a change, once what it changed is committed (a durable write is
        acknowledged only after commit)."""

        def answer(ok: bool) -> None:
            if ok:
                self.result(iq, sender)
            else:
                self.ctx.reply_error(iq, StanzaError(C.INTERNAL_SERVER_ERROR), sender)

        self.m.when_saved(answer)

    # -- presence ---------------------------------------------------------------------------

    def occupant_id(self, room: Room, bare: JID) -> str:
        """XEP-0421 §4: stable per room and real bare JID, opaque to others."""
        digest = hmac.new(room.salt.encode(), str(bare).encode(), hashlib.sha256).digest()
        return base64.b64encode(digest[:18]).decode()

    def presence_of(
        self,
        room: Room,
        occ: Occupant,
        viewer: Occupant | None,
        *,
        unavailable: bool = False,
        codes: Iterable[int] = (),
        item_extra: dict[str, str] | None = None,
        reason: str | None = None,
        actor: str | None = None,
        destroy: Element | None = None,
    ) -> Element:
        """The presence of ``occ`` as ``viewer`` sees it (§7.2.3: real JIDs for moderators,
        or for everyone in a non-anonymous room)."""
        base = occ.presence
        if base is None or unavailable:
            p = Element("presence", ns.CLIENT, {"type": "unavailable"})
            if base is not None and unavailable and base.get("type") == "unavailable":
                p.children = [c for c in base.children if _keep(c)]
        else:
            p = Element("presence", ns.CLIENT, {}, [c for c in base.children if _keep(c)])
        x = p.append(Element("x", MUC_USER))
        attrs = {"affiliation": room.affiliation(occ.bare).value, "role": occ.role.value}
        if unavailable:
            attrs["role"] = "none"
        if viewer is not None and (room.non_anonymous or viewer.role is Role.MODERATOR):
            attrs["jid"] = str(next(iter(occ.jids), occ.bare))
        if item_extra:
            attrs.update(item_extra)
        item = x.sub("item", attrs=attrs)
        if actor is not None:
            item.sub("actor", attrs={"nick": actor})
        if reason:
            item.sub("reason", text=reason)
        if destroy is not None:
            x.append(destroy)
        for code in codes:
            x.sub("status", attrs={"code": str(code)})
        p.sub("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})
        return p

    def broadcast_presence(
        self,
        room: Room,
        occ: Occupant,
        *,
        unavailable: bool = False,
        codes: Iterable[int] = (),
        self_codes: Iterable[int] = (),
        item_extra: dict[str, str] | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """``occ``'s presence to every occupant; its own sessions also get 110 (§7.2.3)."""
        codes = list(codes)
        frm = room.jid.with_resource(occ.nick)
        for viewer in list(room.occupants.values()):
            mine = viewer is occ
            all_codes = [110, *codes, *self_codes] if mine else codes
            if mine and room.non_anonymous and 100 not in all_codes and not unavailable:
                all_codes.insert(1, 100)
            p = self.presence_of(
                room,
                occ,
                viewer,
                unavailable=unavailable,
                codes=sorted(set(all_codes)),
                item_extra=item_extra,
                reason=reason,
                actor=actor,
            )
            for jid in viewer.jids:
                self.send(p.copy(), frm, jid)
        if occ.nick not in room.occupants or room.occupants[occ.nick] is not occ:
            # it has left already: its sessions still hear of it
            all_codes = sorted({110, *codes, *self_codes})
            p = self.presence_of(
                room,
                occ,
                occ,
                unavailable=unavailable,
                codes=all_codes,
                item_extra=item_extra,
                reason=reason,
                actor=actor,
            )
            for jid in occ.jids:
                self.send(p.copy(), frm, jid)

    def _presence(self, room: Room | None, stanza: Element, sender: JID, to: JID) -> None:
        type_ = stanza.get("type")
        nick = to.resource
        assert nick is not None
        occ = room.by_jid.get(sender) if room is not None else None
        if type_ is None and not nick.strip():
            # §17.1: no empty or invisible nicknames
            raise StanzaError(C.JID_MALFORMED, "the nickname is empty")
        if type_ == "error":
            if room is not None and occ is not None:
                self.remove(room, occ, codes=[333])  # §11.1: the occupant is gone
            return
        if type_ == "unavailable":
            if room is not None and occ is not None:
                self.leave(room, occ, sender, stanza)
            return
        if type_ is not None:
            return  # subscriptions and probes mean nothing to a room
        if occ is None:
            self.join(room, stanza, sender, to)
        elif occ.nick != nick:
            assert room is not None
            self.change_nick(room, occ, stanza, sender, nick)
        else:
            assert room is not None
            occ.jids[sender] = stanza
            occ.presence = stanza
            self.broadcast_presence(room, occ)  # §7.7: a status change

    def join(self, room: Room | None, stanza: Element, sender: JID, to: JID) -> None:
        """§7.2: enter a room, creating it first if need be (§10.1)."""
        nick = to.resource
        assert nick is not None
        x = stanza.find("x", MUC)
        created = False
        if x is None:
            # §7.2.18 (1.32): a presence from a non-occupant without <x/> is not a join
            kick = Element("presence", ns.CLIENT, {"type": "unavailable"})
            kx = kick.append(_x())
            kx.sub("item", attrs={"affiliation": "none", "role": "none"}).sub(
                "reason", text="You are not in the room."
            )
            for code in (110, 307, 333):
                kx.sub("status", attrs={"code": str(code)})
            self.send(kick, to, sender)
            return
        if room is None:
            self.may_create(sender)
            room = Room(to.bare, self.opts.history_size)
            room.config.archiving = self.opts.archiving
            room.locked = True  # §10.1.1: until the owner configures it
            room.creator = sender.bare
            room.affiliations[sender.bare] = Affiliation.OWNER
            self.rooms[room.jid] = room
            created = True
        aff = room.affiliation(sender.bare)
        try:
            self.may_enter(room, sender, nick, aff, x)
        except StanzaError:
            if created:
                del self.rooms[room.jid]
            raise
        same = room.occupants.get(nick)
        if same is not None:  # the same account's other client, under the same nick
            occ = same
        else:
            occ = Occupant(
                nick,
                sender.bare,
                default_role(aff, room.config.moderated),
                self.occupant_id(room, sender.bare),
            )
            occ.tokens = float(self.opts.message_burst)
            occ.stamp = time.monotonic()
        occ.jids[sender] = stanza
        occ.presence = stanza
        room.by_jid[sender] = occ
        self.joined.setdefault(sender, set()).add(room.jid)
        frm = room.jid.with_resource(nick)
        # §7.2.2: the others first, then its own presence (to all), then history, subject
        for other in room.occupants.values():
            if other is not occ:
                p = self.presence_of(room, other, occ)
                self.send(p, room.jid.with_resource(other.nick), sender)
        if same is None:
            room.occupants[nick] = occ
            for viewer in room.occupants.values():
                if viewer is occ:
                    continue
                p = self.presence_of(room, occ, viewer)
                for jid in viewer.jids:
                    self.send(p.copy(), frm, jid)
        own = [110]
        if room.non_anonymous:
            own.append(100)
        if created:
            own.append(201)
        asked = (stanza.get("to") or "").partition("/")[2]
        if asked != nick:
            own.append(210)  # §7.2.2: the service changed the nick (stringprep, say)
        self.send(self.presence_of(room, occ, occ, codes=sorted(own)), frm, sender)
        # §7.2.15: the subject comes last, even to the creator of a new room (clients such
        # as slixmpp take it as the end of the join)
        hist = HistoryRequest.from_element(x.find("history", MUC))
        for item in select_history(list(room.history), hist, time.time()):
            msg = item.stanza.copy()
            msg.children = [*msg.children, delay_element(item.stamp, str(room.jid))]
            self.send(msg, JID.parse(item.stanza.attrs["from"]), sender)
        subject = Element("message", ns.CLIENT, {"type": "groupchat"})
        subject.sub("subject", text=room.subject)  # §7.2.15: even when empty
        self.send(
            subject,
            room.jid.with_resource(room.subject_from) if room.subject_from else room.jid,
            sender,
        )

    def may_create(self, sender: JID) -> None:
        if self.opts.create == "local" and not self.ctx.is_local_user(sender):
            raise StanzaError(C.NOT_ALLOWED, "only local users may create rooms")
        limit = self.opts.max_rooms_per_user
        if limit:
            owned = sum(1 for r in self.rooms.values() if r.creator == sender.bare)
            if owned >= limit:
                raise StanzaError(C.RESOURCE_CONSTRAINT, "too many rooms")

    def may_enter(
        self, room: Room, sender: JID, nick: str, aff: Affiliation, x: Element | None
    ) -> None:
        """§7.2.5-§7.2.10: the errors a join may get."""
        if room.locked and aff is not Affiliation.OWNER:
            raise StanzaError(C.ITEM_NOT_FOUND, "the room is locked")  # §10.1.1
        if aff is Affiliation.OUTCAST:
            raise StanzaError(C.FORBIDDEN, room.reasons.get(sender.bare))  # §7.2.7
        if room.config.members_only and RANK[aff] < RANK[Affiliation.MEMBER]:
            raise StanzaError(C.REGISTRATION_REQUIRED)  # §7.2.6
        same = room.occupants.get(nick)
        owner = room.nick_owner(nick)
        if (same is not None and same.bare != sender.bare) or (
            owner is not None and owner != sender.bare
        ):
            raise StanzaError(C.CONFLICT)  # §7.2.8, §7.10
        if room.config.password:  # §7.2.5: owners too
            given = x.find("password", MUC) if x is not None else None
            if given is None or given.text != room.config.password:
                raise StanzaError(C.NOT_AUTHORIZED, "a password is required")  # §7.2.5
        limit = min(room.config.max_users or self.opts.max_occupants, self.opts.max_occupants)
        if same is None and len(room.occupants) >= limit and RANK[aff] < RANK[Affiliation.ADMIN]:
            raise StanzaError(  # §7.2.9
                C.SERVICE_UNAVAILABLE, "the room is full", type=StanzaErrorType.WAIT
            )

    def change_nick(
        self, room: Room, occ: Occupant, stanza: Element, sender: JID, nick: str
    ) -> None:
        """§7.6: unavailable with 303 and the new nick, then presence from the new one."""
        other = room.occupants.get(nick)
        owner = room.nick_owner(nick)
        if (other is not None and other is not occ) or (owner is not None and owner != occ.bare):
            raise StanzaError(C.CONFLICT)
        old = occ.nick
        self.broadcast_presence(room, occ, unavailable=True, codes=[303], item_extra={"nick": nick})
        del room.occupants[old]
        occ.nick = nick
        occ.presence = stanza
        occ.jids[sender] = stanza
        room.occupants[nick] = occ
        self.broadcast_presence(room, occ)

    def leave(self, room: Room, occ: Occupant, sender: JID, stanza: Element) -> None:
        """§7.14: unavailable to everyone; a temporary room ends with its last occupant."""
        del occ.jids[sender]
        room.by_jid.pop(sender, None)
        self._untrack(sender, room)
        occ.presence = stanza if not occ.jids else next(reversed(occ.jids.values()))
        if occ.jids:
            p = self.presence_of(room, occ, occ, unavailable=True, codes=[110])
            self.send(p, room.jid.with_resource(occ.nick), sender)
            return
        occ.presence = stanza
        room.occupants.pop(occ.nick, None)
        occ.jids[sender] = stanza  # so its session hears the unavailable with 110
        self.broadcast_presence(room, occ, unavailable=True)
        occ.jids.clear()
        self.maybe_discard(room)

    def remove(
        self,
        room: Room,
        occ: Occupant,
        codes: list[int],
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Take an occupant out (kick 307, ban 301, affiliation 321, members-only 322,
        error 333), telling it and everyone."""
        room.occupants.pop(occ.nick, None)
        for jid in occ.jids:
            room.by_jid.pop(jid, None)
            self._untrack(jid, room)
        self.broadcast_presence(
            room, occ, unavailable=True, codes=codes, reason=reason, actor=actor
        )
        occ.jids.clear()
        self.maybe_discard(room)

    def maybe_discard(self, room: Room) -> None:
        if not room.occupants and not room.config.persistent:
            self.rooms.pop(room.jid, None)
            self.m.forget(self, room)
            self.m.archive.drop(room.jid)  # the room is gone, so is its archive

    # -- messages ---------------------------------------------------------------------------

    def _room_message(self, room: Room, stanza: Element, sender: JID) -> None:
        type_ = stanza.get("type")
        occ = room.by_jid.get(sender)
        if type_ == "error":
            if occ is not None:
                self.remove(room, occ, codes=[333])  # §11.1: the occupant's client is gone
            return
        if type_ == "groupchat":
            self.groupchat(room, occ, stanza, sender)
            return
        x = stanza.find("x", MUC_USER)
        if x is not None and (x.find("invite", MUC_USER) or x.find("decline", MUC_USER)):
            self.invite(room, occ, stanza, sender, x)
            return
        form = stanza.find("x", DATA)
        if form is not None and _form_type(form) == MUC_REQUEST:
            self.voice_request(room, occ, form, sender)
            return
        raise StanzaError(C.BAD_REQUEST, "nothing the room understands")

    def groupchat(
        self, room: Room, occ: Occupant | None, stanza: Element, sender: JID
    ) -> None:
        """§7.4: a message to all occupants; the subject (§8.1) if it has one and no body."""
        if occ is None:
            raise StanzaError(C.NOT_ACCEPTABLE, "only occupants may speak")
        if occ.role is Role.VISITOR:
            raise StanzaError(C.FORBIDDEN, "visitors may not speak in a moderated room")
        if not self.allow_rate(occ):
            raise StanzaError(C.RESOURCE_CONSTRAINT, "too many messages", type=StanzaErrorType.WAIT)
        subject = stanza.find("subject", ns.CLIENT)
        body = stanza.find("body", ns.CLIENT)
        if subject is not None and body is None:
            if occ.role is not Role.MODERATOR and not room.config.change_subject:
                raise StanzaError(C.FORBIDDEN, "only moderators may change the subject")
            room.subject = subject.text
            room.subject_from = occ.nick
            self.save(room)
        msg = Element("message", ns.CLIENT, {"type": "groupchat"})
        if (sid := stanza.get("id")) is not None:
            msg.attrs["id"] = sid
        for child in stanza.children:
            if isinstance(child, Element) and child.ns in (SID, OCCUPANT_ID):
                continue  # XEP-0359 §3, XEP-0421 §4: only the room's own
            msg.children.append(child)
        msg.sub("occupant-id", OCCUPANT_ID, {"id": occ.occupant_id})
        self.broadcast(room, occ, sender, msg)

    def broadcast(
        self, room: Room, occ: Occupant | None, sender: JID | None, msg: Element
    ) -> None:
        """A groupchat message from ``occ`` (None: the room itself) to every occupant:
        archived (XEP-0313 §6.1.2) when the room archives, stamped with the room's XEP-0359
        stanza-id (its archive id, XEP-0313 §3.4), kept for newcomers if it has a body."""
        frm = room.jid.with_resource(occ.nick) if occ is not None else room.jid
        msg.attrs["from"] = str(frm)
        stanza_id = None
        if room.config.archiving and archivable(msg):
            nick = occ.nick if occ is not None else ""
            stanza_id = self.m.archive.append(room.jid, nick, sender, msg)
        msg.sub("stanza-id", SID, {"id": stanza_id or self.ctx.new_id(), "by": str(room.jid)})
        if occ is not None and msg.find("body", ns.CLIENT) is not None and room.history.maxlen:
            room.history.append(HistoryItem(time.time(), msg, len(serialize(msg))))
        for viewer in list(room.occupants.values()):
            for jid in viewer.jids:
                self.send(msg.copy(), frm, jid)

    def allow_rate(self, occ: Occupant) -> bool:
        now = time.monotonic()
        burst = float(self.opts.message_burst)
        occ.tokens = min(burst, occ.tokens + (now - occ.stamp) * self.opts.message_rate)
        occ.stamp = now
        if occ.tokens < 1.0:
            return False
        occ.tokens -= 1.0
        return True

    def _private_message(self, room: Room, stanza: Element, sender: JID, nick: str) -> None:
        """§7.5: to the sessions of one occupant, from the sender's occupant JID."""
        type_ = stanza.get("type")
        occ = room.by_jid.get(sender)
        if type_ == "error":
            if occ is not None:
                self.remove(room, occ, codes=[333])
            return
        if type_ == "groupchat":
            raise StanzaError(C.BAD_REQUEST, "a private message is not groupchat")
        if occ is None:
            raise StanzaError(C.NOT_ACCEPTABLE, "only occupants may send private messages")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError(C.ITEM_NOT_FOUND)
        pm = room.config.allow_pm
        if (
            pm == "none"
            or (pm == "participants" and occ.role is Role.VISITOR)
            or (pm == "moderators" and occ.role is not Role.MODERATOR)
        ):
            raise StanzaError(C.FORBIDDEN, "private messages are not allowed here")
        frm = room.jid.with_resource(occ.nick)
        msg = Element("message", ns.CLIENT, dict(stanza.attrs))
        msg.children = [
            c for c in stanza.children if not (isinstance(c, Element) and c.ns == MUC_USER)
        ]
        msg.append(Element("x", MUC_USER))  # §7.5: marks it as a private message in a room
        for jid in target.jids:
            self.send(msg.copy(), frm, jid)

    def invite(
        self, room: Room, occ: Occupant | None, stanza: Element, sender: JID, x: Element
    ) -> None:
        """§7.8.2 mediated invitations and their declines."""
        aff = room.affiliation(sender.bare)
        decline = x.find("decline", MUC_USER)
        if decline is not None:
            to = _jid_attr(decline, "to")
            out = Element("message", ns.CLIENT)
            dx = out.append(Element("x", MUC_USER))
            d = dx.sub("decline", attrs={"from": str(sender.bare)})
            if (reason := decline.find("reason", MUC_USER)) is not None:
                d.append(reason)
            self.send(out, room.jid, to)
            return
        if occ is None and RANK[aff] < RANK[Affiliation.ADMIN]:
            raise StanzaError(C.NOT_ACCEPTABLE, "only occupants may invite")
        if (
            room.config.members_only
            and not room.config.allow_invites
            and RANK[aff] < RANK[Affiliation.ADMIN]
        ):
            raise StanzaError(C.FORBIDDEN, "only admins may invite to this room")  # §7.8.2
        invites = x.find_all("invite", MUC_USER)
        if len(invites) > MAX_INVITES:
            raise StanzaError(C.POLICY_VIOLATION, f"at most {MAX_INVITES} invitations at once")
        for invite in invites:
            to = _jid_attr(invite, "to")
            if (
                room.config.members_only
                and RANK[room.affiliation(to.bare)] < RANK[Affiliation.MEMBER]
            ):
                room.affiliations[to.bare] = Affiliation.MEMBER  # §7.8.2: SHOULD add
                self.save(room)
            out = Element("message", ns.CLIENT)
            ox = out.append(Element("x", MUC_USER))
            inv = ox.sub("invite", attrs={"from": str(sender)})
            reason = invite.find("reason", MUC_USER)
            if reason is not None:
                inv.append(reason)
            if room.config.password:
                ox.sub("password", text=room.config.password)
            text = f"{sender.bare} invites you to the room {room.jid}"
            if reason is not None and reason.text:
                text += f": {reason.text}"
            out.sub("body", text=text)
            self.send(out, room.jid, to)

    def voice_request(self, room: Room, occ: Occupant | None, form: Element, sender: JID) -> None:
        """§7.13: a visitor asks for voice (sent on to the moderators); §8.6: a moderator
        answers the request form."""
        values = _form_values(form)
        if form.get("type") == "submit" and "muc#request_allow" in values:
            if occ is None or occ.role is not Role.MODERATOR:
                raise StanzaError(C.FORBIDDEN)
            if values["muc#request_allow"][:1] in (["1"], ["true"]):
                target = room.occupants.get((values.get("muc#roomnick") or [""])[0])
                if target is not None and target.role is Role.VISITOR:
                    target.role = Role.PARTICIPANT
                    self.broadcast_presence(room, target)
            return
        if occ is None:
            raise StanzaError(C.NOT_ACCEPTABLE)
        if (values.get("muc#role") or [""])[0] != "participant" or occ.role is not Role.VISITOR:
            raise StanzaError(C.BAD_REQUEST)
        msg = Element("message", ns.CLIENT)
        f = msg.append(Element("x", DATA, {"type": "form"}))
        f.sub("title", text="Voice request")
        f.sub("instructions", text="Grant this occupant voice? Set muc#request_allow.")
        for var, typ, val in (
            ("FORM_TYPE", "hidden", MUC_REQUEST),
            ("muc#role", "list-single", "participant"),
            ("muc#jid", "jid-single", str(sender)),
            ("muc#roomnick", "text-single", occ.nick),
            ("muc#request_allow", "boolean", "false"),
        ):
            f.sub("field", attrs={"var": var, "type": typ}).sub("value", text=val)
        for mod in room.occupants.values():
            if mod.role is Role.MODERATOR:
                for jid in mod.jids:
                    self.send(msg.deepcopy(), room.jid, jid)

    # -- iq ---------------------------------------------------------------------------------

    def _service_iq(self, iq: Element, sender: JID, to: JID) -> None:
        payload = iq.find()
        if payload is None:
            raise StanzaError(C.BAD_REQUEST)
        kind = (iq.get("type"), payload.ns, payload.tag)
        if kind == ("get", ns.DISCO_INFO, "query") and not payload.get("node"):
            q = Element("query", ns.DISCO_INFO)
            q.sub(
                "identity", attrs={"category": "conference", "type": "text", "name": self.opts.name}
            )
            for var in (ns.DISCO_INFO, ns.DISCO_ITEMS, MUC, OCCUPANT_ID, SID, ns.PING):
                q.sub("feature", attrs={"var": var})
            self.result(iq, sender, q)
        elif kind == ("get", ns.DISCO_ITEMS, "query") and not payload.get("node"):
            q = Element("query", ns.DISCO_ITEMS)
            for room in sorted(self.rooms.values(), key=lambda r: str(r.jid)):
                if room.config.public and not room.locked:
                    attrs = {"jid": str(room.jid)}
                    if room.config.name:
                        attrs["name"] = room.config.name
                    q.sub("item", attrs=attrs)
            self.result(iq, sender, q)
        elif kind == ("get", ns.PING, "ping"):
            self.result(iq, sender)
        else:
            raise StanzaError(C.SERVICE_UNAVAILABLE)

    def _occupant_iq(self, room: Room, iq: Element, sender: JID, nick: str) -> None:
        """An iq to an occupant goes to one of its clients, from the asker's occupant JID,
        under an id of the room's, so no real JID is revealed either way (§17 business
        rules); the answer comes back the same way."""
        occ = room.by_jid.get(sender)
        if _is_ping(iq) and (occ is None or occ.nick == nick):
            # XEP-0410 §3.3: the room answers a client's ping to its own nick
            if occ is None:
                raise StanzaError(C.NOT_ACCEPTABLE, "not joined")
            self.result(iq, sender)
            return
        if occ is None:
            raise StanzaError(C.NOT_ACCEPTABLE, "only occupants may query occupants")
        target = room.occupants.get(nick)
        if target is None or not target.jids:
            raise StanzaError(C.ITEM_NOT_FOUND)
        to = next(iter(target.jids))
        rid = self.ctx.new_id()
        self.pending[rid] = (iq.get("id") or "", sender, room.jid.with_resource(nick), to)
        while len(self.pending) > MAX_PENDING_IQ:
            self.pending.pop(next(iter(self.pending)))
        fwd = Element("iq", ns.CLIENT, {"type": iq.get("type") or "get", "id": rid}, iq.children)
        self.send(fwd, room.jid.with_resource(occ.nick), to)

    def _occupant_iq_answer(self, iq: Element, sender: JID) -> None:
        entry = self.pending.get(iq.get("id") or "")
        if entry is None or entry[3] != sender:
            return
        del self.pending[iq.get("id") or ""]
        orig_id, asker, frm, _ = entry
        attrs = {"type": iq.get("type") or "result", "id": orig_id}
        self.send(Element("iq", ns.CLIENT, attrs, iq.children), frm, asker)

    def _room_iq(self, room: Room, iq: Element, sender: JID) -> None:
        payload = iq.find()
        if payload is None:
            raise StanzaError(C.BAD_REQUEST)
        kind = (iq.get("type"), payload.ns, payload.tag)
        aff = room.affiliation(sender.bare)
        if room.locked and aff is not Affiliation.OWNER:
            raise StanzaError(C.ITEM_NOT_FOUND)
        if kind == ("get", ns.DISCO_INFO, "query") and payload.get("node") == ROOMUSER:
            # §7.12: the nick the asker registered, if any
            q = Element("query", ns.DISCO_INFO, {"node": ROOMUSER})
            if (nick := room.registered.get(sender.bare)) is not None:
                q.sub("identity", attrs={"category": "conference", "type": "text", "name": nick})
            self.result(iq, sender, q)
        elif kind == ("get", ns.DISCO_INFO, "query"):
            self.result(iq, sender, self.room_info(room))
        elif kind == ("get", ns.DISCO_ITEMS, "query"):
            self.result(iq, sender, Element("query", ns.DISCO_ITEMS))
        elif kind == ("get", ns.PING, "ping"):
            self.result(iq, sender)
        elif payload.ns == MUC_ADMIN and payload.tag == "query":
            if kind[0] == "get":
                self.result(iq, sender, self.admin_list(room, sender, payload))
            else:
                self.admin_set(room, sender, payload)
                self.ack(iq, sender)
        elif payload.ns == MUC_OWNER and payload.tag == "query":
            if aff is not Affiliation.OWNER:
                raise StanzaError(C.FORBIDDEN)
            if kind[0] == "get":
                admins = [str(j) for j in room.with_affiliation(Affiliation.ADMIN)]
                owners = [str(j) for j in room.with_affiliation(Affiliation.OWNER)]
                q = Element("query", MUC_OWNER)
                q.append(config_form(room.config, admins, owners))
                self.result(iq, sender, q)
            else:
                self.owner_set(room, iq, sender, payload)
        elif payload.ns == REGISTER and payload.tag == "query":
            self.register(room, iq, sender, payload)
        elif payload.ns in MAM_NAMESPACES:
            self.m.archive.query_iq(self, room, iq, sender)  # XEP-0313 §3.3.2
        elif payload.ns == MODERATE:
            self.m.archive.moderate_iq(self, room, iq, sender)  # XEP-0425
        else:
            raise StanzaError(C.SERVICE_UNAVAILABLE)

    def room_info(self, room: Room) -> Element:
        """§6.4: identity, the features saying what kind of room it is, muc#roominfo."""
        cfg = room.config
        q = Element("query", ns.DISCO_INFO)
        q.sub(
            "identity",
            attrs={
                "category": "conference",
                "type": "text",
                "name": cfg.name or room.jid.local or "",
            },
        )
        features = [
            MUC,
            ns.DISCO_INFO,
            ns.DISCO_ITEMS,
            REGISTER,
            OCCUPANT_ID,
            SID,
            SELF_PING,
            MUC_REQUEST,
            MODERATE,
            "muc_public" if cfg.public else "muc_hidden",
            "muc_persistent" if cfg.persistent else "muc_temporary",
            "muc_membersonly" if cfg.members_only else "muc_open",
            "muc_moderated" if cfg.moderated else "muc_unmoderated",
            "muc_nonanonymous" if room.non_anonymous else "muc_semianonymous",
            "muc_passwordprotected" if cfg.password else "muc_unsecured",
        ]
        if cfg.archiving:
            # XEP-0313 §7: only a room that archives says so (the queries stay answered
            # when it stops: what it archived is kept until it expires)
            features += [MAM2, MAM2_EXTENDED, MAM1]
        for var in sorted(features):
            q.sub("feature", attrs={"var": var})
        form = q.append(Element("x", DATA, {"type": "result"}))
        for var, val in (
            ("FORM_TYPE", ROOMINFO),
            ("muc#roominfo_description", cfg.description),
            ("muc#roominfo_occupants", str(len(room.occupants))),
            ("muc#roominfo_subject", room.subject),
            ("muc#roominfo_subjectmod", "1" if cfg.change_subject else "0"),
            ("muc#roominfo_lang", cfg.lang),
            ("muc#roomconfig_roomname", cfg.name),
            ("muc#maxhistoryfetch", str(self.opts.history_size)),
        ):
            form.sub("field", attrs={"var": var}).sub("value", text=val)
        return q

    def admin_list(self, room: Room, sender: JID, query: Element) -> Element:
        """§8.5, §9.5, §9.8, §10.5, §10.8: lists by role or by affiliation."""
        item = query.find("item", MUC_ADMIN)
        if item is None:
            raise StanzaError(C.BAD_REQUEST)
        aff = room.affiliation(sender.bare)
        occ = room.by_jid.get(sender)
        out = Element("query", MUC_ADMIN)
        if (role := item.get("role")) is not None:
            if occ is None or occ.role is not Role.MODERATOR:
                raise StanzaError(C.FORBIDDEN)
            for o in room.occupants.values():
                if o.role.value == role:
                    out.sub(
                        "item",
                        attrs={
                            "affiliation": room.affiliation(o.bare).value,
                            "role": o.role.value,
                            "nick": o.nick,
                            "jid": str(next(iter(o.jids), o.bare)),
                        },
                    )
            return out
        try:
            wanted = Affiliation(item.get("affiliation") or "")
        except ValueError:
            raise StanzaError(C.BAD_REQUEST) from None
        allowed = RANK[aff] >= RANK[Affiliation.ADMIN] or (
            wanted is Affiliation.MEMBER
            and room.non_anonymous  # §5.2.1: the member list has real JIDs
            and occ is not None
            and occ.role.value in room.config.get_member_list
        )
        if not allowed or wanted is Affiliation.NONE:
            raise StanzaError(C.FORBIDDEN)
        for bare in room.with_affiliation(wanted):
            it = out.sub("item", attrs={"affiliation": wanted.value, "jid": str(bare)})
            if (nick := room.registered.get(bare)) is not None:
                it.attrs["nick"] = nick
            if (reason := room.reasons.get(bare)) is not None:
                it.sub("reason", text=reason)  # the ban reason is kept (§9.1)
        return out

    def admin_set(self, room: Room, sender: JID, query: Element) -> None:
        """§8.2-§8.4 (roles by nick), §9.1-§9.4, §10.3-§10.7 (affiliations by JID): every
        item checked before any is applied."""
        items = query.find_all("item", MUC_ADMIN)
        if not items:
            raise StanzaError(C.BAD_REQUEST)
        actor_aff = room.affiliation(sender.bare)
        actor = room.by_jid.get(sender)
        actor_role = actor.role if actor is not None else Role.NONE
        actor_nick = actor.nick if actor is not None else None
        changes: list[tuple[str, object, object, str | None]] = []
        for item in items:
            reason_el = item.find("reason", MUC_ADMIN)
            reason = reason_el.text if reason_el is not None else None
            if item.get("affiliation") is not None:
                try:
                    new_aff = Affiliation(item.get("affiliation") or "")
                except ValueError:
                    raise StanzaError(C.BAD_REQUEST) from None
                if item.get("jid") is not None:
                    target = _jid_attr(item, "jid").bare
                elif (nick := item.get("nick")) is not None and nick in room.occupants:
                    target = room.occupants[nick].bare
                else:
                    raise StanzaError(C.BAD_REQUEST, "an affiliation change needs a jid")
                if RANK[actor_aff] < RANK[Affiliation.ADMIN]:
                    raise StanzaError(C.FORBIDDEN)
                if not may_set_affiliation(actor_aff, room.affiliation(target), new_aff):
                    raise StanzaError(C.NOT_ALLOWED)
                changes.append(("aff", target, new_aff, reason))
            elif item.get("role") is not None:
                try:
                    new_role = Role(item.get("role") or "")
                except ValueError:
                    raise StanzaError(C.BAD_REQUEST) from None
                occ = room.occupants.get(item.get("nick") or "")
                if occ is None:
                    raise StanzaError(C.ITEM_NOT_FOUND)
                if actor_role is not Role.MODERATOR:
                    raise StanzaError(C.FORBIDDEN)
                if not may_set_role(actor_aff, actor_role, room.affiliation(occ.bare), new_role):
                    raise StanzaError(C.NOT_ALLOWED)
                changes.append(("role", occ, new_role, reason))
            else:
                raise StanzaError(C.BAD_REQUEST)
        owners = set(room.with_affiliation(Affiliation.OWNER))
        for kind, subject, new, _ in changes:
            if kind == "aff":
                assert isinstance(subject, JID)
                if new is Affiliation.OWNER:
                    owners.add(subject)
                else:
                    owners.discard(subject)
        if not owners:
            raise StanzaError(C.CONFLICT, "a room needs an owner")  # §10.4
        added = {c[1] for c in changes if c[0] == "aff" and c[1] not in room.affiliations}
        if len(room.affiliations) + len(added) > MAX_AFFILIATIONS:
            raise StanzaError(C.RESOURCE_CONSTRAINT, "too many affiliations in this room")
        for kind, subject, new, why in changes:
            if kind == "role":
                assert isinstance(subject, Occupant) and isinstance(new, Role)
                self.set_role(room, subject, new, why, actor_nick)
            else:
                assert isinstance(subject, JID) and isinstance(new, Affiliation)
                self.set_affiliation(room, subject, new, why, actor_nick)
        self.save(room)

    def set_role(
        self, room: Room, occ: Occupant, role: Role, reason: str | None, actor: str | None
    ) -> None:
        if role is Role.NONE:
            self.remove(room, occ, codes=[307], reason=reason, actor=actor)  # §8.2 kick
            return
        was, occ.role = occ.role, role
        self.broadcast_presence(room, occ, reason=reason, actor=actor)
        self.reveal(room, occ, was)

    def reveal(self, room: Room, occ: Occupant, was: Role) -> None:
        """A new moderator of a semi-anonymous room is sent the others' presence again,
        now with their real JIDs (§5.1.1: moderators may see them; as Prosody does)."""
        if room.non_anonymous or was is Role.MODERATOR or occ.role is not Role.MODERATOR:
            return
        for other in room.occupants.values():
            if other is not occ:
                p = self.presence_of(room, other, occ)
                for jid in occ.jids:
                    self.send(p.copy(), room.jid.with_resource(other.nick), jid)

    def set_affiliation(
        self, room: Room, bare: JID, aff: Affiliation, reason: str | None, actor: str | None
    ) -> None:
        if aff is Affiliation.NONE:
            room.affiliations.pop(bare, None)
        else:
            if bare not in room.affiliations and len(room.affiliations) >= MAX_AFFILIATIONS:
                raise StanzaError(C.RESOURCE_CONSTRAINT, "too many affiliations in this room")
            room.affiliations[bare] = aff
        if aff is Affiliation.OUTCAST and reason:
            room.reasons[bare] = reason
        else:
            room.reasons.pop(bare, None)
        for occ in [o for o in room.occupants.values() if o.bare == bare]:
            if aff is Affiliation.OUTCAST:
                self.remove(room, occ, codes=[301], reason=reason, actor=actor)  # §9.1 ban
            elif room.config.members_only and aff is Affiliation.NONE:
                self.remove(room, occ, codes=[321], reason=reason, actor=actor)  # §9.4
            else:
                was, occ.role = occ.role, default_role(aff, room.config.moderated)
                self.broadcast_presence(room, occ, reason=reason, actor=actor)
                self.reveal(room, occ, was)

    def owner_set(self, room: Room, iq: Element, sender: JID, query: Element) -> None:
        """§10.1.2 instant room, §10.1.3 reserved (form submit or cancel), §10.2 config
        change with its 104 notice, §10.9 destruction."""
        destroy = query.find("destroy", MUC_OWNER)
        if destroy is not None:
            self.destroy(room, destroy)  # §10.9: the occupants first, then the owner
            self.ack(iq, sender)
            return
        form = query.find("x", DATA)
        if form is None:
            raise StanzaError(C.BAD_REQUEST)
        if form.get("type") == "cancel":
            self.result(iq, sender)
            if room.locked:  # §10.1.3: cancelling the creation destroys the room
                self.destroy(room, None)
            return
        if form.get("type") != "submit":
            raise StanzaError(C.BAD_REQUEST)
        before = dataclasses.replace(room.config)
        try:
            new, admins, owners = parse_config_form(form, room.config)
        except FormError as err:
            raise StanzaError(C.NOT_ACCEPTABLE, str(err)) from None
        if owners is not None and not owners:
            raise StanzaError(C.CONFLICT, "a room needs an owner")
        try:
            admin_jids = [JID.parse(j).bare for j in admins or []]
            owner_jids = [JID.parse(j).bare for j in owners or []]
        except InvalidJID:
            raise StanzaError(C.JID_MALFORMED) from None
        room.config = new
        was_locked, room.locked = room.locked, False
        if admins is not None:
            for j in room.with_affiliation(Affiliation.ADMIN):
                if j not in admin_jids:
                    self.set_affiliation(room, j, Affiliation.NONE, None, None)
            for j in admin_jids:
                if room.affiliation(j) is not Affiliation.ADMIN:
                    self.set_affiliation(room, j, Affiliation.ADMIN, None, None)
        if owners is not None:
            for j in room.with_affiliation(Affiliation.OWNER):
                if j not in owner_jids:
                    self.set_affiliation(room, j, Affiliation.NONE, None, None)
            for j in owner_jids:
                if room.affiliation(j) is not Affiliation.OWNER:
                    self.set_affiliation(room, j, Affiliation.OWNER, None, None)
        if new.persistent or before.persistent:
            self.m.save(self, room)
        self.ack(iq, sender)
        if not was_locked:
            codes = [104]
            if new.whois != before.whois:
                codes.append(172 if new.whois == "anyone" else 173)
            if new.archiving != before.archiving:
                codes.append(170 if new.archiving else 171)  # §10.2.1: logging on, off
            note = Element("message", ns.CLIENT, {"type": "groupchat"})
            note.append(_x(*codes))
            for occ in room.occupants.values():
                for jid in occ.jids:
                    self.send(note.copy(), room.jid, jid)
        if new.members_only and not before.members_only:
            for occ in list(room.occupants.values()):
                if RANK[room.affiliation(occ.bare)] < RANK[Affiliation.MEMBER]:
                    self.remove(room, occ, codes=[322])  # §10.2.1
        if new.moderated != before.moderated:
            for occ in room.occupants.values():
                role = default_role(room.affiliation(occ.bare), new.moderated)
                if role is not occ.role and occ.role is not Role.MODERATOR:
                    occ.role = role
                    self.broadcast_presence(room, occ)
        if not new.persistent and before.persistent:
            self.m.forget(self, room)
            self.maybe_discard(room)

    def destroy(self, room: Room, destroy: Element | None) -> None:
        """§10.9: everyone leaves with the alternate venue and reason; the room is gone."""
        el = Element("destroy", MUC_USER)
        if destroy is not None:
            if (alt := destroy.get("jid")) is not None:
                el.attrs["jid"] = alt
            for child in destroy.elements():
                if child.tag in ("reason", "password"):
                    el.sub(child.tag, text=child.text)
        self.rooms.pop(room.jid, None)
        for occ in list(room.occupants.values()):
            frm = room.jid.with_resource(occ.nick)
            p = Element("presence", ns.CLIENT, {"type": "unavailable"})
            x = p.append(Element("x", MUC_USER))
            x.sub("item", attrs={"affiliation": "none", "role": "none"})
            x.append(el)
            for jid in occ.jids:
                self.send(p.deepcopy(), frm, jid)
        room.occupants.clear()
        for jid in room.by_jid:
            self._untrack(jid, room)
        room.by_jid.clear()
        self.m.forget(self, room)
        self.m.archive.drop(room.jid)

    def _untrack(self, jid: JID, room: Room) -> None:
        rooms = self.joined.get(jid)
        if rooms is not None:
            rooms.discard(room.jid)
            if not rooms:
                del self.joined[jid]

    def session_closed(self, jid: JID) -> None:
        """A local client's session ended: it leaves every room it is still in (it may
        have joined before its initial presence, which RFC 6121 §4.6 does not track)."""
        for room_jid in list(self.joined.get(jid, ())):
            room = self.rooms.get(room_jid)
            occ = room.by_jid.get(jid) if room is not None else None
            if room is not None and occ is not None:
                gone = Element("presence", ns.CLIENT, {"type": "unavailable", "from": str(jid)})
                self.leave(room, occ, jid, gone)
        self.joined.pop(jid, None)

    def register(self, room: Room, iq: Element, sender: JID, query: Element) -> None:
        """§7.10: register a nick in the room (which makes a member); ``<remove/>``
        cancels it."""
        bare = sender.bare
        aff = room.affiliation(bare)
        if aff is Affiliation.OUTCAST:
            raise StanzaError(C.FORBIDDEN)
        if iq.get("type") == "get":
            q = Element("query", REGISTER)
            if (nick := room.registered.get(bare)) is not None:
                q.sub("registered")
                q.sub("username", text=nick)
            else:
                q.sub("instructions", text="Choose your nickname in this room")
                f = q.append(Element("x", DATA, {"type": "form"}))
                f.sub("title", text="Nickname registration")
                f.sub("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).sub(
                    "value", text=MUC_REGISTER
                )
                nf = f.sub(
                    "field",
                    attrs={
                        "var": "muc#register_roomnick",
                        "type": "text-single",
                        "label": "Nickname",
                    },
                )
                nf.sub("required")
            self.result(iq, sender, q)
            return
        if query.find("remove", REGISTER) is not None:
            room.registered.pop(bare, None)
            if aff is Affiliation.MEMBER:
                self.set_affiliation(room, bare, Affiliation.NONE, None, None)
            self.save(room)
            self.ack(iq, sender)
            return
        form = query.find("x", DATA)
        if form is None or form.get("type") == "cancel":
            if form is None:
                raise StanzaError(C.BAD_REQUEST)
            self.result(iq, sender)
            return
        nick = (_form_values(form).get("muc#register_roomnick") or [""])[0]
        if not nick:
            raise StanzaError(C.NOT_ACCEPTABLE, "muc#register_roomnick is required")
        owner = room.nick_owner(nick)
        current = room.occupants.get(nick)
        if (owner is not None and owner != bare) or (current is not None and current.bare != bare):
            raise StanzaError(C.CONFLICT)
        room.registered[bare] = nick
        if RANK[aff] < RANK[Affiliation.MEMBER]:
            self.set_affiliation(room, bare, Affiliation.MEMBER, None, None)
        self.save(room)
        self.ack(iq, sender)


def _keep(child: Element | str) -> bool:
    """What of an occupant's own presence the room passes on (not its MUC payloads)."""
    return isinstance(child, Element) and child.ns not in (MUC, MUC_USER, OCCUPANT_ID)


def _jid_attr(el: Element, name: str) -> JID:
    try:
        return JID.parse(el.get(name) or "")
    except InvalidJID:
        raise StanzaError(C.JID_MALFORMED) from None


def _form_values(form: Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in form.find_all("field", DATA):
        if (var := f.get("var")) is not None:
            out[var] = [v.text for v in f.find_all("value", DATA)]
    return out


def _form_type(form: Element) -> str | None:
    values = _form_values(form).get("FORM_TYPE")
    return values[0] if values else None


class MucModule:
    """XEP-0045 at SUBDOMAIN.DOMAIN for every served domain."""

    name = "muc"
    Options = MucOptions

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.opts: MucOptions = ctx.options
        self.services: dict[str, MucService] = {}
        #: room JIDs that have stored state (to delete it when the room goes)
        self.stored: set[JID] = set()
        self._dirty: dict[JID, tuple[MucService, Room | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._after: list[Callable[[bool], object]] = []
        self.archive = RoomArchive(ctx)
        ctx.provide(ROOM_ARCHIVE, self.archive)  # XEP-0198 acks wait for it too
        archive_opts = ctx.config.archive
        if archive_opts.expire_after or archive_opts.max_items:
            ctx.every(archive_opts.cleanup_interval, lambda: ctx.spawn(self.archive.cleanup()))
        for domain in sorted(ctx.domains):
            service = MucService(self, f"{self.opts.subdomain}.{domain}")
            self.services[service.domain] = service
            ctx.host(service.domain, service, self.opts.name)
        ctx.observe(events.SERVER_STOPPING, self._stopping)
        ctx.observe(events.SESSION_CLOSED, self._session_closed)
        ctx.spawn(self._load())

    def _session_closed(self, session: Session, error: object) -> None:
        for service in self.services.values():
            service.session_closed(session.jid)

    def _stopping(self) -> None:
        """§11.2: every occupant is told (status 332) the service is going away."""
        for service in self.services.values():
            for room in list(service.rooms.values()):
                for occ in list(room.occupants.values()):
                    service.remove(room, occ, codes=[332])

    async def _load(self) -> None:
        try:
            await self.archive.load()
        except Exception:
            log.exception("muc: reading the room archives failed")
        for service in self.services.values():
            await service.load()

    def save(self, service: MucService, room: Room) -> None:
        """Write the room's state soon (in order, the latest state wins)."""
        self._dirty[room.jid] = (service, room)
        self._kick()

    def forget(self, service: MucService, room: Room) -> None:
        if room.jid in self.stored or room.jid in self._dirty:
            self._dirty[room.jid] = (service, None)
            self._kick()

    def when_saved(self, then: Callable[[bool], object]) -> None:
        """Call ``then`` once every pending write is done (at once if none is), with
        whether they all succeeded."""
        if self._flusher is None:
            then(True)
        else:
            self._after.append(then)

    def _kick(self) -> None:
        if self._flusher is None:
            self._flusher = self.ctx.spawn(self._flush())

    async def _flush(self) -> None:
        storage = self.ctx.storage
        ok = True
        try:
            while self._dirty:
                jid = next(iter(self._dirty))
                # taken out before the write: a change meanwhile puts it back, written next
                service, room = self._dirty.pop(jid)
                assert jid.local is not None
                try:
                    if room is not None and room.config.persistent:
                        await storage.set_host_data(service.domain, INDEX, jid.local, "1")
                        await storage.set_host_data(str(jid), STORE, "room", room.to_json())
                        self.stored.add(jid)
                    elif jid in self.stored:
                        await storage.set_host_data(str(jid), STORE, "room", None)
                        await storage.set_host_data(service.domain, INDEX, jid.local, None)
                        self.stored.discard(jid)
                except Exception:
                    # the room stays as it is in memory and is written with the next change;
                    # the answers waiting for this write are errors
                    self._dirty.setdefault(jid, (service, room))
                    ok = False
                    log.exception("muc: storing %s failed", jid)
                    break
        finally:
            self._flusher = None
            after, self._after = self._after, []
            for then in after:
                then(ok)


def _is_ping(iq: Element) -> bool:
    payload = iq.find()
    return iq.get("type") == "get" and payload is not None and (payload.ns, payload.tag) == (
        ns.PING,
        "ping",
    )
