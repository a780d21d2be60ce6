"""XEP-0045 Multi-User Chat, the pure parts: roles, affiliations and who may change what,
the room configuration (``muc#roomconfig``) as a value, history selection on join.

No clock and no I/O: ``now`` is passed in.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Final

from roost.core.xml.element import Element

__all__ = [
    "DATA",
    "MUC",
    "MUC_ADMIN",
    "MUC_OWNER",
    "MUC_USER",
    "Affiliation",
    "HistoryItem",
    "HistoryRequest",
    "Role",
    "RoomConfig",
    "config_form",
    "default_role",
    "parse_config_form",
    "parse_xep0082",
    "select_history",
]

MUC: Final = "http://jabber.org/protocol/muc"
MUC_USER: Final = "http://jabber.org/protocol/muc#user"
MUC_ADMIN: Final = "http://jabber.org/protocol/muc#admin"
MUC_OWNER: Final = "http://jabber.org/protocol/muc#owner"
DATA: Final = "jabber:x:data"
ROOMCONFIG: Final = "http://jabber.org/protocol/muc#roomconfig"


class Role(StrEnum):
    """XEP-0045 §5.1: a role lasts one visit."""

    MODERATOR = "moderator"
    PARTICIPANT = "participant"
    VISITOR = "visitor"
    NONE = "none"


class Affiliation(StrEnum):
    """XEP-0045 §5.2: an affiliation is long-lived, kept by bare JID."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    NONE = "none"
    OUTCAST = "outcast"


#: §5.2: affiliations ranked, to compare who may act on whom
RANK: Final = {
    Affiliation.OWNER: 4,
    Affiliation.ADMIN: 3,
    Affiliation.MEMBER: 2,
    Affiliation.NONE: 1,
    Affiliation.OUTCAST: 0,
}


def default_role(affiliation: Affiliation, moderated: bool) -> Role:
    """§5.1.2: the role an occupant gets on entering."""
    if affiliation in (Affiliation.OWNER, Affiliation.ADMIN):
        return Role.MODERATOR
    if affiliation is Affiliation.MEMBER:
        return Role.PARTICIPANT
    return Role.VISITOR if moderated else Role.PARTICIPANT


def may_set_affiliation(actor: Affiliation, target: Affiliation, new: Affiliation) -> bool:
    """§9 and §10: admins change member, none and outcast of those below them; owners
    change anything (the last-owner rule is the room's)."""
    if actor is Affiliation.OWNER:
        return True
    if actor is Affiliation.ADMIN:
        low = (Affiliation.MEMBER, Affiliation.NONE, Affiliation.OUTCAST)
        return target in low and new in low
    return False


def may_set_role(
    actor_aff: Affiliation, actor_role: Role, target_aff: Affiliation, new: Role
) -> bool:
    """§8.2-§8.5, §9.6-§9.7: moderators kick and grant or revoke voice of those not above
    admin; only admins and owners grant or revoke moderator; nobody kicks or silences an
    admin or owner (§8.2: ``not-allowed``), except an owner acting on an admin."""
    if actor_role is not Role.MODERATOR:
        return False
    if new is Role.MODERATOR or target_aff in (Affiliation.ADMIN, Affiliation.OWNER):
        if actor_aff not in (Affiliation.ADMIN, Affiliation.OWNER):
            return False
        if new is not Role.MODERATOR and RANK[target_aff] >= RANK[actor_aff]:
            return False
    return True


# -- configuration --------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class RoomConfig:
    """A room's configuration: the ``muc#roomconfig`` fields (§16.5.3) Roost supports."""

    name: str = ""
    description: str = ""
    lang: str = ""
    persistent: bool = False
    public: bool = True
    moderated: bool = False
    members_only: bool = False
    password: str = ""  # "" = not password-protected
    #: §16.5.3 muc#roomconfig_whois: "anyone" (non-anonymous) or "moderators" (semi)
    whois: str = "moderators"
    max_users: int = 0  # 0 = the service's limit
    change_subject: bool = False  # participants may change the subject
    allow_invites: bool = False  # participants may invite to a members-only room
    allow_pm: str = "anyone"  # anyone | participants | moderators | none
    get_member_list: tuple[str, ...] = ("moderator", "participant", "visitor")
    #: XEP-0313 archive of the room (muc#roomconfig_enablearchiving, the field Prosody's
    #: mod_muc_mam offers)
    archiving: bool = True

    def to_json(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["get_member_list"] = list(self.get_member_list)
        return d

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RoomConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "get_member_list" in values:
            values["get_member_list"] = tuple(values["get_member_list"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def _field(form: Element, var: str, type_: str, label: str, values: Iterable[str]) -> Element:
    f = form.sub("field", attrs={"var": var, "type": type_, "label": label})
    for v in values:
        f.sub("value", text=v)
    return f


def _bool(v: bool) -> str:
    return "1" if v else "0"


def config_form(cfg: RoomConfig, admins: Sequence[str], owners: Sequence[str]) -> Element:
    """§10.2: the configuration form an owner fills in."""
    form = Element("x", DATA, {"type": "form"})
    form.sub("title", text="Room configuration")
    _field(form, "FORM_TYPE", "hidden", "", [ROOMCONFIG])
    _field(form, "muc#roomconfig_roomname", "text-single", "Room name", [cfg.name])
    _field(form, "muc#roomconfig_roomdesc", "text-single", "Description", [cfg.description])
    _field(form, "muc#roomconfig_lang", "text-single", "Language", [cfg.lang])
    _field(form, "muc#roomconfig_persistentroom", "boolean", "Persistent", [_bool(cfg.persistent)])
    _field(form, "muc#roomconfig_publicroom", "boolean", "Listed", [_bool(cfg.public)])
    _field(form, "muc#roomconfig_moderatedroom", "boolean", "Moderated", [_bool(cfg.moderated)])
    _field(form, "muc#roomconfig_membersonly", "boolean", "Members only", [_bool(cfg.members_only)])
    _field(
        form,
        "muc#roomconfig_passwordprotectedroom",
        "boolean",
        "Password required",
        [_bool(bool(cfg.password))],
    )
    _field(form, "muc#roomconfig_roomsecret", "text-private", "Password", [cfg.password])
    whois = _field(
        form, "muc#roomconfig_whois", "list-single", "Who may see real JIDs", [cfg.whois]
    )
    for opt in ("moderators", "anyone"):
        whois.sub("option", attrs={"label": opt}).sub("value", text=opt)
    # §15.5.3 registers it as list-single (clients' form types check it); a current value
    # that is not one of the usual choices is offered too
    maxusers = _field(
        form,
        "muc#roomconfig_maxusers",
        "list-single",
        "Maximum occupants",
        [str(cfg.max_users) if cfg.max_users else "none"],
    )
    for n in sorted({10, 20, 30, 50, 100, cfg.max_users} - {0}):
        maxusers.sub("option", attrs={"label": str(n)}).sub("value", text=str(n))
    maxusers.sub("option", attrs={"label": "None"}).sub("value", text="none")
    _field(
        form,
        "muc#roomconfig_changesubject",
        "boolean",
        "Occupants may change the subject",
        [_bool(cfg.change_subject)],
    )
    _field(
        form,
        "muc#roomconfig_allowinvites",
        "boolean",
        "Occupants may invite",
        [_bool(cfg.allow_invites)],
    )
    pm = _field(form, "muc#roomconfig_allowpm", "list-single", "Private messages", [cfg.allow_pm])
    for opt in ("anyone", "participants", "moderators", "none"):
        pm.sub("option", attrs={"label": opt}).sub("value", text=opt)
    gml = _field(
        form,
        "muc#roomconfig_getmemberlist",
        "list-multi",
        "Who may get the member list",
        cfg.get_member_list,
    )
    for opt in ("moderator", "participant", "visitor"):
        gml.sub("option", attrs={"label": opt}).sub("value", text=opt)
    _field(
        form,
        "muc#roomconfig_enablearchiving",
        "boolean",
        "Archive messages (XEP-0313)",
        [_bool(cfg.archiving)],
    )
    _field(form, "muc#roomconfig_roomadmins", "jid-multi", "Admins", admins)
    _field(form, "muc#roomconfig_roomowners", "jid-multi", "Owners", owners)
    return form


class FormError(ValueError):
    """A submitted form that cannot be applied (answered with ``not-acceptable``)."""


def _values(form: Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in form.find_all("field", DATA):
        var = f.get("var")
        if var:
            out[var] = [v.text for v in f.find_all("value", DATA)]
    return out


def _as_bool(var: str, vals: list[str]) -> bool:
    v = vals[0] if vals else "0"
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise FormError(f"{var}: not a boolean: {v!r}")


def parse_config_form(
    form: Element, cfg: RoomConfig
) -> tuple[RoomConfig, list[str] | None, list[str] | None]:
    """§10.2: a submitted form applied to ``cfg``: the new config and, when the form has
    them, the admin and owner lists. Fields left out keep their value."""
    vals = _values(form)
    form_type = vals.get("FORM_TYPE")
    if form_type is not None and form_type != [ROOMCONFIG]:
        raise FormError(f"FORM_TYPE must be {ROOMCONFIG}")
    new = dataclasses.replace(cfg)
    text = {
        "muc#roomconfig_roomname": "name",
        "muc#roomconfig_roomdesc": "description",
        "muc#roomconfig_lang": "lang",
    }
    for var, attr in text.items():
        if var in vals:
            setattr(new, attr, vals[var][0] if vals[var] else "")
    flags = {
        "muc#roomconfig_persistentroom": "persistent",
        "muc#roomconfig_publicroom": "public",
        "muc#roomconfig_moderatedroom": "moderated",
        "muc#roomconfig_membersonly": "members_only",
        "muc#roomconfig_changesubject": "change_subject",
        "muc#roomconfig_allowinvites": "allow_invites",
        "muc#roomconfig_enablearchiving": "archiving",
    }
    for var, attr in flags.items():
        if var in vals:
            setattr(new, attr, _as_bool(var, vals[var]))
    protected = None
    if "muc#roomconfig_passwordprotectedroom" in vals:
        protected = _as_bool(
            "muc#roomconfig_passwordprotectedroom", vals["muc#roomconfig_passwordprotectedroom"]
        )
    if "muc#roomconfig_roomsecret" in vals:
        secret = vals["muc#roomconfig_roomsecret"]
        new.password = secret[0] if secret else ""
    if protected is False:
        new.password = ""
    elif protected and not new.password:
        raise FormError("muc#roomconfig_roomsecret: a password-protected room needs a password")
    if "muc#roomconfig_whois" in vals:
        whois = (vals["muc#roomconfig_whois"] or ["moderators"])[0]
        if whois not in ("moderators", "anyone"):
            raise FormError(f"muc#roomconfig_whois: {whois!r}")
        new.whois = whois
    if "muc#roomconfig_allowpm" in vals:
        pm = (vals["muc#roomconfig_allowpm"] or ["anyone"])[0]
        if pm not in ("anyone", "participants", "moderators", "none"):
            raise FormError(f"muc#roomconfig_allowpm: {pm!r}")
        new.allow_pm = pm
    if "muc#roomconfig_maxusers" in vals:
        mx = (vals["muc#roomconfig_maxusers"] or ["none"])[0]
        if mx in ("none", ""):
            new.max_users = 0
        elif mx.isdigit():
            new.max_users = int(mx)
        else:
            raise FormError(f"muc#roomconfig_maxusers: {mx!r}")
    if "muc#roomconfig_getmemberlist" in vals:
        roles = vals["muc#roomconfig_getmemberlist"]
        if any(r not in ("moderator", "participant", "visitor") for r in roles):
            raise FormError("muc#roomconfig_getmemberlist: unknown role")
        new.get_member_list = tuple(roles)
    admins = vals.get("muc#roomconfig_roomadmins")
    owners = vals.get("muc#roomconfig_roomowners")
    return new, admins, owners


# -- history --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryItem:
    """One groupchat message kept for newcomers: when, and its serialised length."""

    stamp: float
    stanza: Element
    chars: int


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryRequest:
    """§7.2.14 ``<history/>``: each limit ``None`` when not given."""

    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: float | None = None

    @classmethod
    def from_element(cls, el: Element | None) -> HistoryRequest:
        if el is None:
            return cls()

        def num(name: str) -> int | None:
            v = el.get(name)
            return int(v) if v is not None and v.isdigit() else None

        since_attr = el.get("since")
        return cls(
            num("maxchars"),
            num("maxstanzas"),
            num("seconds"),
            parse_xep0082(since_attr) if since_attr else None,
        )


def parse_xep0082(text: str) -> float | None:
    """An XEP-0082 DateTime as seconds since the epoch (``None`` if malformed)."""
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def select_history(
    items: Sequence[HistoryItem], req: HistoryRequest, now: float
) -> list[HistoryItem]:
    """§7.2.14: the newest items that satisfy every limit given, oldest first."""
    chosen: list[HistoryItem] = []
    chars = 0
    for item in reversed(items):
        if req.maxstanzas is not None and len(chosen) >= req.maxstanzas:
            break
        if req.seconds is not None and item.stamp < now - req.seconds:
            break
        if req.since is not None and item.stamp < req.since:
            break
        if req.maxchars is not None and chars + item.chars > req.maxchars:
            break
        chars += item.chars
        chosen.append(item)
    chosen.reverse()
    return chosen
