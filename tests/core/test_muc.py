"""XEP-0045's pure rules: who may change whose role or affiliation (§5.1.3, §5.2.2, §8,
§9, §10), default roles (§5.1.2), history selection (§7.2.14), the config form (§10.2)."""

from __future__ import annotations

import pytest

from roost.core.muc import (
    DATA,
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
    parse_xep0082,
    select_history,
)
from roost.core.xml.element import Element

A, R = Affiliation, Role


@pytest.mark.parametrize(
    ("aff", "moderated", "role"),
    [
        (A.OWNER, False, R.MODERATOR),
        (A.ADMIN, True, R.MODERATOR),
        (A.MEMBER, True, R.PARTICIPANT),
        (A.NONE, False, R.PARTICIPANT),
        (A.NONE, True, R.VISITOR),
    ],
)
def test_default_roles(aff: Affiliation, moderated: bool, role: Role) -> None:
    assert default_role(aff, moderated) is role


@pytest.mark.parametrize(
    ("actor_aff", "actor_role", "target_aff", "new", "allowed"),
    [
        (A.NONE, R.MODERATOR, A.NONE, R.NONE, True),  # §8.2 a moderator kicks
        (A.NONE, R.PARTICIPANT, A.NONE, R.NONE, False),  # only moderators
        (A.MEMBER, R.MODERATOR, A.ADMIN, R.NONE, False),  # §8.2: never an admin
        (A.ADMIN, R.MODERATOR, A.OWNER, R.NONE, False),
        (A.ADMIN, R.MODERATOR, A.ADMIN, R.VISITOR, False),  # not one's equal
        (A.OWNER, R.MODERATOR, A.ADMIN, R.PARTICIPANT, True),
        (A.NONE, R.MODERATOR, A.NONE, R.PARTICIPANT, True),  # §8.3 voice
        (A.NONE, R.MODERATOR, A.MEMBER, R.VISITOR, True),  # §8.4
        (A.NONE, R.MODERATOR, A.NONE, R.MODERATOR, False),  # §9.6: admins only
        (A.ADMIN, R.MODERATOR, A.MEMBER, R.MODERATOR, True),
    ],
)
def test_who_may_set_a_role(
    actor_aff: Affiliation, actor_role: Role, target_aff: Affiliation, new: Role, allowed: bool
) -> None:
    assert may_set_role(actor_aff, actor_role, target_aff, new) is allowed


@pytest.mark.parametrize(
    ("actor", "target", "new", "allowed"),
    [
        (A.OWNER, A.ADMIN, A.NONE, True),
        (A.OWNER, A.NONE, A.OWNER, True),  # §10.3
        (A.ADMIN, A.NONE, A.MEMBER, True),  # §9.3
        (A.ADMIN, A.MEMBER, A.OUTCAST, True),  # §9.1
        (A.ADMIN, A.NONE, A.ADMIN, False),  # §10.6: owners only
        (A.ADMIN, A.ADMIN, A.OUTCAST, False),
        (A.ADMIN, A.OWNER, A.NONE, False),
        (A.MEMBER, A.NONE, A.MEMBER, False),
        (A.NONE, A.NONE, A.OUTCAST, False),
    ],
)
def test_who_may_set_an_affiliation(
    actor: Affiliation, target: Affiliation, new: Affiliation, allowed: bool
) -> None:
    assert may_set_affiliation(actor, target, new) is allowed


def _items() -> list[HistoryItem]:
    return [HistoryItem(100.0 + i, Element("message", "jabber:client"), 10) for i in range(5)]


@pytest.mark.parametrize(
    ("req", "stamps"),
    [
        (HistoryRequest(), [100, 101, 102, 103, 104]),
        (HistoryRequest(maxstanzas=2), [103, 104]),
        (HistoryRequest(maxstanzas=0), []),
        (HistoryRequest(maxchars=35), [102, 103, 104]),
        (HistoryRequest(maxchars=0), []),
        (HistoryRequest(seconds=2), [102, 103, 104]),  # now = 104
        (HistoryRequest(since=103.0), [103, 104]),
        (HistoryRequest(maxstanzas=4, seconds=1), [103, 104]),  # every limit applies
    ],
)
def test_history_selection(req: HistoryRequest, stamps: list[int]) -> None:
    assert [i.stamp for i in select_history(_items(), req, now=104.0)] == stamps


def test_history_request_from_element() -> None:
    el = Element("history", "http://jabber.org/protocol/muc")
    el.attrs.update({"maxstanzas": "3", "since": "1970-01-01T00:01:40Z", "maxchars": "x"})
    assert HistoryRequest.from_element(el) == HistoryRequest(None, 3, None, 100.0)
    assert parse_xep0082("not a date") is None


def _submit(fields: dict[str, list[str]]) -> Element:
    form = Element("x", DATA, {"type": "submit"})
    for var, values in fields.items():
        f = form.sub("field", attrs={"var": var})
        for v in values:
            f.sub("value", text=v)
    return form


def test_config_form_round_trip() -> None:
    cfg = RoomConfig(name="Cave", persistent=True, whois="anyone", password="pw")
    form = config_form(cfg, ["a@x"], ["o@x"])
    values = {
        f.get("var"): [v.text for v in f.find_all("value", DATA)] for f in form.find_all("field")
    }
    form.attrs["type"] = "submit"
    new, admins, owners = parse_config_form(form, RoomConfig())
    assert new == cfg and admins == ["a@x"] and owners == ["o@x"]
    assert values["muc#roomconfig_passwordprotectedroom"] == ["1"]


def test_config_form_keeps_what_is_left_out_and_refuses_nonsense() -> None:
    cfg = RoomConfig(name="Cave", moderated=True)
    new, admins, owners = parse_config_form(_submit({"muc#roomconfig_roomdesc": ["d"]}), cfg)
    assert new == RoomConfig(name="Cave", moderated=True, description="d")
    assert admins is None and owners is None
    for bad in (
        {"muc#roomconfig_moderatedroom": ["maybe"]},
        {"muc#roomconfig_whois": ["everyone"]},
        {"muc#roomconfig_maxusers": ["many"]},
        {"muc#roomconfig_passwordprotectedroom": ["1"]},  # without a secret
        {"FORM_TYPE": ["urn:other"]},
    ):
        with pytest.raises(FormError):
            parse_config_form(_submit(bad), cfg)
    off = parse_config_form(
        _submit({"muc#roomconfig_passwordprotectedroom": ["0"]}), RoomConfig(password="pw")
    )[0]
    assert off.password == ""


def test_config_json_round_trip() -> None:
    cfg = RoomConfig(name="Cave", get_member_list=("moderator",))
    assert RoomConfig.from_json(cfg.to_json()) == cfg
    assert RoomConfig.from_json({"name": "x", "unknown": 1}) == RoomConfig(name="x")
