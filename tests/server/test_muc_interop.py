"""XEP-0045 behaviours other projects' suites rely on (aioxmpp's end-to-end tests found
both): the config form's field types as §15.5.3 registers them, and an occupant's
presence to the bare room JID, which Prosody takes as for the occupant's nick."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roost.server.app import Server
from tests.helpers import Logins, drain
from tests.server.test_muc import DATA, MUC, OWNER, ROOM, codes, create, error_of, join

#: §15.5.3 (muc#roomconfig FORM_TYPE): the registered type of each field Roost offers
REGISTERED = {
    "muc#roomconfig_roomname": "text-single",
    "muc#roomconfig_roomdesc": "text-single",
    "muc#roomconfig_lang": "text-single",
    "muc#roomconfig_persistentroom": "boolean",
    "muc#roomconfig_publicroom": "boolean",
    "muc#roomconfig_moderatedroom": "boolean",
    "muc#roomconfig_membersonly": "boolean",
    "muc#roomconfig_passwordprotectedroom": "boolean",
    "muc#roomconfig_roomsecret": "text-private",
    "muc#roomconfig_whois": "list-single",
    "muc#roomconfig_maxusers": "list-single",
    "muc#roomconfig_changesubject": "boolean",
    "muc#roomconfig_allowinvites": "boolean",
    "muc#roomconfig_allowpm": "list-single",
    "muc#roomconfig_getmemberlist": "list-multi",
    "muc#roomconfig_roomadmins": "jid-multi",
    "muc#roomconfig_roomowners": "jid-multi",
}


@pytest.fixture
async def logins(server: Server) -> AsyncIterator[Logins]:
    made = Logins(server)
    yield made
    await made.close()


async def test_config_form_fields_have_their_registered_types(logins: Logins) -> None:
    """§10.2 / §15.5.3: a client that checks field types (aioxmpp's forms do) reads the
    form; maxusers is list-single, with its current value among the options."""
    alice = await logins("alice", "pda")
    await create(alice)
    await alice.send(f"<iq type='get' id='cfg' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    (res,) = await drain(alice)
    query = res.find("query", OWNER)
    assert query is not None
    form = query.find("x", DATA)
    assert form is not None
    types = {f.get("var"): f.get("type") for f in form.find_all("field", DATA)}
    for var, type_ in REGISTERED.items():
        if var in types:
            assert types[var] == type_, var
    maxusers = next(
        f for f in form.find_all("field", DATA) if f.get("var") == "muc#roomconfig_maxusers"
    )
    value = maxusers.find("value", DATA)
    options = [o.find("value", DATA).text for o in maxusers.find_all("option", DATA)]  # type: ignore[union-attr]
    assert value is not None and value.text in options
    assert "none" in options and "20" in options
    # a submitted choice is taken
    await alice.send(
        f"<iq type='set' id='cfg2' to='{ROOM}'><query xmlns='{OWNER}'>"
        f"<x xmlns='{DATA}' type='submit'><field var='muc#roomconfig_maxusers'>"
        "<value>30</value></field></x></query></iq>"
    )
    (res,) = [e for e in await drain(alice) if e.get("id") == "cfg2"]
    assert res.get("type") == "result"


async def test_presence_to_the_bare_room_jid_is_for_the_occupants_nick(
    logins: Logins,
) -> None:
    """An occupant's status change and exit sent to room@service (no nick) act on its
    current nick (Prosody's handling; §7.14's own form is room@service/nick); from
    someone who is not in the room, available presence there is still jid-malformed
    (§7.2.1) and unavailable is ignored."""
    alice = await logins("alice", "pda")
    bob = await logins("bob", "desktop")
    await create(alice)
    await join(bob, "secondwitch")
    await drain(alice)
    await bob.send(f"<presence to='{ROOM}'><show>away</show></presence>")
    (p,) = await drain(alice)
    assert p.get("from") == f"{ROOM}/secondwitch" and p.get("type") is None
    show = p.find("show")
    assert show is not None and show.text == "away"
    await drain(bob)
    await bob.send(f"<presence to='{ROOM}' type='unavailable'/>")
    (mine,) = await drain(bob)
    assert mine.get("type") == "unavailable" and codes(mine) == {"110"}
    (p,) = await drain(alice)
    assert p.get("from") == f"{ROOM}/secondwitch" and p.get("type") == "unavailable"
    # now outside the room
    await bob.send(f"<presence to='{ROOM}' type='unavailable'/>")
    assert await drain(bob) == []
    await bob.send(f"<presence to='{ROOM}'><x xmlns='{MUC}'/></presence>")
    (err,) = await drain(bob)
    assert err.get("type") == "error" and error_of(err) == "jid-malformed"


async def test_self_ping_to_a_room_that_is_gone_says_not_joined(logins: Logins) -> None:
    """XEP-0410 §3: a client that is not joined gets ``not-acceptable``, also when the room
    itself no longer exists (``item-not-found`` would read as "joined, nick changed")."""
    alice = await logins("alice", "pda")
    await alice.send(
        "<iq type='get' id='sp1' to='nowhere@conference.localhost/alice'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    (err,) = await drain(alice)
    assert err.get("type") == "error" and error_of(err) == "not-acceptable"
    # other requests to a room that does not exist are still item-not-found
    await alice.send(
        "<iq type='get' id='sp2' to='nowhere@conference.localhost/alice'>"
        "<query xmlns='jabber:iq:version'/></iq>"
    )
    (err,) = await drain(alice)
    assert error_of(err) == "item-not-found"
