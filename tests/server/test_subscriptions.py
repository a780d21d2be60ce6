"""RFC 6121 Appendix A, row by row, with real connections (issue acceptance 1).

The user is alice, the contact is bob; both are local, logged in, have asked for the roster
and sent initial presence. Each row test brings the pair into the row's starting state
through the protocol itself (the subscription stanzas a real pair would exchange), sends the
row's stanza from a real client, then checks alice's new state (cached and stored), what
each client received (the stanza itself, auto-replies, roster pushes).

The expected values come from the Appendix A tables *as printed in the RFC* (transcribed
below and parsed), not from ``roost.core.im.subscription``; a separate test checks that the
server's tables agree with the RFC's.

Because bob is local, what bob's *client* sees of a stanza alice sends is Appendix A.2 (does
alice's server route it?) followed by A.3 applied to bob's side (does bob's server deliver
it?); the outbound test checks both halves: what reaches bob's side (a spy on the entry of
A.3 processing) and what bob's client gets, plus bob's resulting state. Likewise an
auto-reply from alice's server is checked where it reaches bob's side and, separately, at
bob's client, which only shows it when bob's own A.3 row says so.

"Nothing arrived" is checked with a barrier, not a marker message: a subscription stanza is
processed in a background task, so a message sent after it can overtake it (see
``test_subscription_stanza_not_overtaken_by_later_message``). The barrier is a ping round
trip on the sending stream (the server has read the stanza), then waiting for the server's
background tasks to finish, then a ping round trip on each client (everything the server
wrote to it before the pong is collected).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from roost.core import ns
from roost.core.im.subscription import INBOUND, OUTBOUND, STATES, Subscription, SubState
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.modules.presence import PresenceModule
from roost.server.services import Roster
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, drain

USER, CONTACT = "alice@localhost", "bob@localhost"
ALICE, BOB = JID.parse(USER), JID.parse(CONTACT)
SUB_TYPES = ("subscribe", "unsubscribe", "subscribed", "unsubscribed")
PRE_APPROVAL = "urn:xmpp:features:pre-approval"
_ids = itertools.count()

# -- RFC 6121 Appendix A, as printed -----------------------------------------------------

#: A.2, Tables 2-5: EXISTING STATE | ROUTE? | NEW STATE
RFC_A2 = {
    "subscribe": """
   |  "None"                  |  MUST [1] |  "None + Pending Out"     |
   |  "None + Pending Out"    |  MUST     |  no state change          |
   |  "None + Pending In"     |  MUST [1] |  "None + Pending Out+In"  |
   |  "None + Pending Out+In" |  MUST     |  no state change          |
   |  "To"                    |  MUST     |  no state change          |
   |  "To + Pending In"       |  MUST     |  no state change          |
   |  "From"                  |  MUST [1] |  "From + Pending Out"     |
   |  "From + Pending Out"    |  MUST     |  no state change          |
   |  "Both"                  |  MUST     |  no state change          |
""",
    "unsubscribe": """
   |  "None"                  |  MUST    |  no state change          |
   |  "None + Pending Out"    |  MUST    |  "None"                   |
   |  "None + Pending In"     |  MUST    |  no state change          |
   |  "None + Pending Out+In" |  MUST    |  "None + Pending In"      |
   |  "To"                    |  MUST    |  "None"                   |
   |  "To + Pending In"       |  MUST    |  "None + Pending In"      |
   |  "From"                  |  MUST    |  no state change          |
   |  "From + Pending Out"    |  MUST    |  "From"                   |
   |  "Both"                  |  MUST    |  "From"                   |
""",
    "subscribed": """
   |  "None"                  |  M.N.    |  pre-approval [1]         |
   |  "None + Pending Out"    |  M.N.    |  pre-approval [1]         |
   |  "None + Pending In"     |  MUST    |  "From"                   |
   |  "None + Pending Out+In" |  MUST    |  "From + Pending Out"     |
   |  "To"                    |  M.N.    |  pre-approval [1]         |
   |  "To + Pending In"       |  MUST    |  "Both"                   |
   |  "From"                  |  M.N.    |  no state change          |
   |  "From + Pending Out"    |  M.N.    |  no state change          |
   |  "Both"                  |  M.N.    |  no state change          |
""",
    "unsubscribed": """
   |  "None"                  |  S.N.    |  no state change [1]      |
   |  "None + Pending Out"    |  S.N.    |  no state change [1]      |
   |  "None + Pending In"     |  MUST    |  "None"                   |
   |  "None + Pending Out+In" |  MUST    |  "None + Pending Out"     |
   |  "To"                    |  S.N.    |  no state change [1]      |
   |  "To + Pending In"       |  MUST    |  "To"                     |
   |  "From"                  |  MUST    |  "None"                   |
   |  "From + Pending Out"    |  MUST    |  "None + Pending Out"     |
   |  "Both"                  |  MUST    |  "To"                     |
""",
}

#: A.3, Tables 6-9: EXISTING STATE | DELIVER? | NEW STATE
RFC_A3 = {
    "subscribe": """
   |  "None"                  |  MUST [1]  |  "None + Pending In"     |
   |  "None + Pending Out"    |  MUST      |  "None + Pending Out+In" |
   |  "None + Pending In"     |  S.N.      |  no state change         |
   |  "None + Pending Out+In" |  S.N.      |  no state change         |
   |  "To"                    |  MUST      |  "To + Pending In"       |
   |  "To + Pending In"       |  S.N.      |  no state change         |
   |  "From"                  |  S.N. [2]  |  no state change         |
   |  "From + Pending Out"    |  S.N. [2]  |  no state change         |
   |  "Both"                  |  S.N. [2]  |  no state change         |
""",
    "unsubscribe": """
   |  "None"                  |  S.N.      |  no state change         |
   |  "None + Pending Out"    |  S.N.      |  no state change         |
   |  "None + Pending In"     |  MUST [1]  |  "None"                  |
   |  "None + Pending Out+In" |  MUST [1]  |  "None + Pending Out"    |
   |  "To"                    |  S.N.      |  no state change         |
   |  "To + Pending In"       |  MUST [1]  |  "To"                    |
   |  "From"                  |  MUST [1]  |  "None"                  |
   |  "From + Pending Out"    |  MUST [1]  |  "None + Pending Out"    |
   |  "Both"                  |  MUST [1]  |  "To"                    |
""",
    "subscribed": """
   |  "None"                  |  S.N.      |  no state change         |
   |  "None + Pending Out"    |  MUST      |  "To"                    |
   |  "None + Pending In"     |  S.N.      |  no state change         |
   |  "None + Pending Out+In" |  MUST      |  "To + Pending In"       |
   |  "To"                    |  S.N.      |  no state change         |
   |  "To + Pending In"       |  S.N.      |  no state change         |
   |  "From"                  |  S.N.      |  no state change         |
   |  "From + Pending Out"    |  MUST      |  "Both"                  |
   |  "Both"                  |  S.N.      |  no state change         |
""",
    "unsubscribed": """
   |  "None"                  |  S.N.      |  no state change         |
   |  "None + Pending Out"    |  MUST      |  "None"                  |
   |  "None + Pending In"     |  S.N.      |  no state change         |
   |  "None + Pending Out+In" |  MUST      |  "None + Pending In"     |
   |  "To"                    |  MUST      |  "None"                  |
   |  "To + Pending In"       |  MUST      |  "None + Pending In"     |
   |  "From"                  |  S.N.      |  no state change         |
   |  "From + Pending Out"    |  MUST      |  "From"                  |
   |  "Both"                  |  MUST      |  "From"                  |
""",
}

#: A.3.1 note [2] "Server SHOULD auto-reply with 'subscribed'"; A.3.2 note [1] likewise
#: with "unsubscribed". (A.3.1 note [1] is the optional pre-approval shortcut.)
AUTO_REPLY_NOTE = {"subscribe": ("[2]", "subscribed"), "unsubscribe": ("[1]", "unsubscribed")}

BY_NAME = {s.name: s for s in STATES}


@dataclass(frozen=True)
class Row:
    """One row of an Appendix A table."""

    forward: bool  # ROUTE? / DELIVER? is MUST (M.N. and S.N. are both taken as "no")
    new: SubState | None  # None: no state change
    preapprove: bool = False  # A.2.3 "pre-approval [1]"
    cancel_preapproval: bool = False  # A.2.4 note [1]
    auto_reply: str | None = None  # A.3.1 note [2], A.3.2 note [1]


def _parse(ptype: str, text: str, *, inbound: bool) -> dict[SubState, Row]:
    rows: dict[SubState, Row] = {}
    for line in text.strip().splitlines():
        state, verb, new = (c.strip() for c in line.strip().strip("|").split("|"))
        verb_notes = re.findall(r"\[\d\]", verb)
        new_notes = re.findall(r"\[\d\]", new)
        verb = re.sub(r"\s*\[\d\]", "", verb)
        new = re.sub(r"\s*\[\d\]", "", new)
        assert verb in ("MUST", "M.N.", "S.N."), line
        row = Row(
            forward=verb == "MUST",
            new=None if new in ("no state change", "pre-approval") else BY_NAME[new.strip('"')],
            preapprove=new == "pre-approval",
            cancel_preapproval=not inbound and ptype == "unsubscribed" and "[1]" in new_notes,
        )
        if inbound and ptype in AUTO_REPLY_NOTE:
            note, reply = AUTO_REPLY_NOTE[ptype]
            if note in verb_notes:
                row = dataclasses.replace(row, auto_reply=reply)
        rows[BY_NAME[state.strip('"')]] = row
    assert list(rows) == list(STATES), f"{ptype}: a row is missing or out of order"
    return rows


RFC_OUT = {t: _parse(t, text, inbound=False) for t, text in RFC_A2.items()}
RFC_IN = {t: _parse(t, text, inbound=True) for t, text in RFC_A3.items()}
ROWS = [(t, s) for t in SUB_TYPES for s in STATES]


def _row_id(row: tuple[str, SubState]) -> str:
    return f"{row[0]}-{row[1].name.replace(' + ', '+').replace(' ', '_')}"


def mirror(state: SubState) -> SubState:
    """The contact's view of the same relationship (To <-> From, Out <-> In)."""
    swap = {Subscription.TO: Subscription.FROM, Subscription.FROM: Subscription.TO}
    return SubState(swap.get(state.sub, state.sub), state.pending_in, state.pending_out)


#: How the pair reaches each of alice's states by protocol, from a fresh pair.
SETUP: dict[str, tuple[tuple[str, str], ...]] = {
    "None": (),
    "None + Pending Out": (("alice", "subscribe"),),
    "None + Pending In": (("bob", "subscribe"),),
    "None + Pending Out+In": (("alice", "subscribe"), ("bob", "subscribe")),
    "To": (("alice", "subscribe"), ("bob", "subscribed")),
    "To + Pending In": (("alice", "subscribe"), ("bob", "subscribed"), ("bob", "subscribe")),
    "From": (("bob", "subscribe"), ("alice", "subscribed")),
    "From + Pending Out": (("bob", "subscribe"), ("alice", "subscribed"), ("alice", "subscribe")),
    "Both": (
        ("alice", "subscribe"),
        ("bob", "subscribed"),
        ("bob", "subscribe"),
        ("alice", "subscribed"),
    ),
}

# -- clients and barriers ------------------------------------------------------------------


async def exchange(
    server: Server, sender: RawClient, stanza: str, *clients: RawClient
) -> list[list[Element]]:
    """Send ``stanza``; once the server is done with it, what each of ``clients`` got."""
    await sender.send(stanza)
    # a barrier: the server has read (and dispatched) the stanza, and finished the
    # subscription processing it spawned (drain waits for server.idle())
    early = await drain(sender)
    out = []
    for c in clients:
        got = await drain(c)
        out.append(early + got if c is sender else got)
    return out


async def online(server: Server, user: str, resource: str) -> tuple[RawClient, list[Element]]:
    """Log in, get the roster, send initial presence; return what arrived after it."""
    c = await RawClient.connect(server)
    await c.login(user, PASSWORDS[user], resource)
    await c.send(f"<iq type='get' id='roster1'><query xmlns='{ns.ROSTER}'/></iq>")
    result = await c.expect(lambda e: e.tag == "iq" and e.get("id") == "roster1")
    assert result.get("type") == "result", serialize(result)
    (got,) = await exchange(server, c, "<presence/>", c)
    return c, got


async def offline(server: Server, c: RawClient, user: JID) -> None:
    """Close the stream and wait until the server has dropped the session."""
    await c.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    while server.sessions.resources(user):  # a wait for a condition, bounded
        assert loop.time() < deadline, "the session was not closed"
        await asyncio.sleep(0.005)
    await server.idle()  # the work its end started (unavailable presence) is done


@pytest.fixture
async def pair(server: Server) -> AsyncIterator[tuple[RawClient, RawClient]]:
    alice, _ = await online(server, "alice", "a")
    bob, _ = await online(server, "bob", "b")
    yield alice, bob
    for c in (alice, bob):
        if not c.writer.is_closing():
            await c.close()


@pytest.fixture
def arrivals(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Subscription stanzas reaching a local account's A.3 processing, from now on.

    This is where "routed" ends for a local contact: alice's server hands bob's side the
    stanza directly (not through ``Router.route``); stanzas that do go through the router
    (auto-replies) arrive here as well.
    """
    seen: list[dict[str, str]] = []
    original = PresenceModule._inbound_subscription

    async def spy(
        self: PresenceModule, stanza: Element, sender: JID, user: JID, ptype: str
    ) -> None:
        seen.append(dict(stanza.attrs))
        await original(self, stanza, sender, user, ptype)

    monkeypatch.setattr(PresenceModule, "_inbound_subscription", spy)
    return seen


def arrived(arrivals: list[dict[str, str]], from_: str, to: str) -> list[str | None]:
    """Types of the subscription stanzas that reached ``to``'s server from ``from_``."""
    found = []
    for attrs in arrivals:
        if JID.parse(attrs.get("from", "")).bare == JID.parse(from_) and attrs.get("to") == to:
            assert attrs["from"] == from_, f"not stamped with the bare JID: {attrs}"
            found.append(attrs.get("type"))
    return found


# -- observations ----------------------------------------------------------------------------


async def state_of(server: Server, user: JID, contact: str) -> SubState:
    return (await server.rosters.get(user)).state(contact)


async def assert_stored(server: Server, user: JID, contact: str, expected: SubState) -> None:
    """The stored roster is the cached one, and shows ``expected`` for ``contact``."""
    assert user.local is not None
    cached = await server.rosters.get(user)
    data = await server.storage.get_roster(user.local, user.domain)
    assert Roster(data.version, dict(data.items), dict(data.pending_in)).state(contact) == expected
    assert data.items == cached.items
    assert data.pending_in == cached.pending_in
    assert data.version == cached.version


def sub_presences(got: list[Element], sender: str) -> list[tuple[str | None, str | None]]:
    """(type, from) of the subscription stanzas in ``got`` from ``sender``'s account."""
    return [
        (e.get("type"), e.get("from"))
        for e in got
        if e.tag == "presence"
        and e.get("type") in SUB_TYPES
        and JID.parse(e.get("from") or "").bare == JID.parse(sender)
    ]


def pushes(got: list[Element], to: str) -> list[dict[str, str]]:
    """The items of the roster pushes in ``got`` (each checked to be addressed to ``to``)."""
    items: list[dict[str, str]] = []
    for e in got:
        query = e.find("query", ns.ROSTER) if e.tag == "iq" else None
        if query is not None and e.get("type") == "set":
            assert e.get("to") == to, serialize(e)
            items.extend(dict(i.attrs) for i in query.find_all("item", ns.ROSTER))
    return items


def item_attrs(contact: str, state: SubState, *, approved: bool = False) -> dict[str, str]:
    """A roster item as RFC 6121 §2.1.2 shows ``state`` (no name, no groups)."""
    attrs = {"jid": contact, "subscription": state.sub.value}
    if state.pending_out:
        attrs["ask"] = "subscribe"
    if approved:
        attrs["approved"] = "true"
    return attrs


def visible(state: SubState) -> tuple[Subscription, bool]:
    """What a roster item shows of a state: pending-in is not in the roster (A.1)."""
    return state.sub, state.pending_out


async def reach(server: Server, alice: RawClient, bob: RawClient, state: SubState) -> None:
    """Bring the pair into ``state`` (alice's view) by protocol; drain both clients."""
    for who, ptype in SETUP[state.name]:
        sender, to = (alice, CONTACT) if who == "alice" else (bob, USER)
        await exchange(server, sender, f"<presence to='{to}' type='{ptype}'/>", alice, bob)
    assert await state_of(server, ALICE, CONTACT) == state
    assert await state_of(server, BOB, USER) == mirror(state)


# -- the tables themselves -------------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "state"), ROWS, ids=[_row_id(r) for r in ROWS])
def test_server_tables_match_rfc(ptype: str, state: SubState) -> None:
    out, rfc_out = OUTBOUND[ptype][state], RFC_OUT[ptype][state]
    assert (out.route, out.new, out.preapprove, out.cancel_preapproval) == (
        rfc_out.forward,
        rfc_out.new,
        rfc_out.preapprove,
        rfc_out.cancel_preapproval,
    )
    inb, rfc_in = INBOUND[ptype][state], RFC_IN[ptype][state]
    assert (inb.deliver, inb.new, inb.auto_reply) == (rfc_in.forward, rfc_in.new, rfc_in.auto_reply)


# -- A.2: outbound ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ptype", "state"), ROWS, ids=[_row_id(r) for r in ROWS])
async def test_outbound_row(
    server: Server,
    pair: tuple[RawClient, RawClient],
    arrivals: list[dict[str, str]],
    ptype: str,
    state: SubState,
) -> None:
    """Alice (in ``state``) sends ``ptype`` to bob: Appendix A.2, Tables 2-5."""
    alice, bob = pair
    await reach(server, alice, bob, state)
    row = RFC_OUT[ptype][state]
    new = row.new or state
    bob_before = mirror(state)
    bob_row = RFC_IN[ptype][bob_before]
    arrivals.clear()

    got_a, got_b = await exchange(
        server, alice, f"<presence to='{CONTACT}' type='{ptype}'/>", alice, bob
    )

    # alice's state, cached and stored
    assert await state_of(server, ALICE, CONTACT) == new
    await assert_stored(server, ALICE, CONTACT, new)
    if row.preapprove:
        assert (await server.rosters.get(ALICE)).items[CONTACT].approved

    # ROUTE?: handed to bob's (local) server, from alice's bare JID ...
    assert arrived(arrivals, USER, CONTACT) == ([ptype] if row.forward else [])
    # ... which applies A.3 to bob's side: bob's client gets it only if that row delivers it
    delivered = row.forward and bob_row.forward
    assert sub_presences(got_b, USER) == ([(ptype, USER)] if delivered else [])
    bob_after = (bob_row.new or bob_before) if row.forward else bob_before
    assert await state_of(server, BOB, USER) == bob_after

    # bob's server's auto-replies (if any) do not reach alice: A.3 says S.N. for her
    assert sub_presences(got_a, CONTACT) == []

    # a roster push iff the item alice sees changed (§2.1.6, §3.4.2 for pre-approval)
    if visible(new) != visible(state) or row.preapprove:
        expected = [item_attrs(CONTACT, new, approved=row.preapprove)]
    else:
        expected = []
    assert pushes(got_a, alice.jid or "") == expected


# -- A.3: inbound ----------------------------------------------------------------------------


def routable(state: SubState) -> SubState:
    """A state of bob's from which his server routes subscribed/unsubscribed to alice."""
    sub = {Subscription.FROM: Subscription.NONE, Subscription.BOTH: Subscription.TO}
    return SubState(sub.get(state.sub, state.sub), state.pending_out, pending_in=True)


async def desync(server: Server, state: SubState) -> None:
    """Put bob's side of the pair into ``state`` directly (alice's side is left alone)."""
    rosters = server.rosters
    request = f"<presence xmlns='jabber:client' type='subscribe' from='{USER}' to='{CONTACT}'/>"
    async with rosters.changing(BOB) as roster:
        await rosters.set_pending(BOB, roster, USER, request if state.pending_in else None)
        await rosters.set_state(BOB, roster, USER, state)
    assert await state_of(server, BOB, USER) == state


@pytest.mark.parametrize(("ptype", "state"), ROWS, ids=[_row_id(r) for r in ROWS])
async def test_inbound_row(
    server: Server,
    pair: tuple[RawClient, RawClient],
    arrivals: list[dict[str, str]],
    ptype: str,
    state: SubState,
) -> None:
    """Bob sends ``ptype`` to alice (in ``state``): Appendix A.3, Tables 6-9."""
    alice, bob = pair
    await reach(server, alice, bob, state)
    bob_before = mirror(state)
    if not RFC_OUT[ptype][bob_before].forward:
        # Bob's own server must not route this stanza from the mirrored state (A.2.3/A.2.4),
        # so alice's server would never see it. Such stanzas do arrive when the two sides
        # disagree (a remote contact's lost roster, say): make bob's side disagree.
        bob_before = routable(bob_before)
        await desync(server, bob_before)
        await drain(bob)
    row = RFC_IN[ptype][state]
    new = row.new or state
    arrivals.clear()

    got_a, got_b = await exchange(
        server, bob, f"<presence to='{USER}' type='{ptype}'/>", alice, bob
    )

    # alice's state, cached and stored
    assert await state_of(server, ALICE, CONTACT) == new
    await assert_stored(server, ALICE, CONTACT, new)

    # bob's server routed it to alice's; DELIVER?: alice's client gets it from bob's bare JID
    assert arrived(arrivals, CONTACT, USER) == [ptype]
    assert sub_presences(got_a, CONTACT) == ([(ptype, CONTACT)] if row.forward else [])

    # auto-reply: sent by alice's server on her behalf, bare JID to bare JID ...
    assert arrived(arrivals, USER, CONTACT) == ([row.auto_reply] if row.auto_reply else [])
    # ... and shown by bob's client only when bob's server's own A.3 row delivers it
    bob_after_send = RFC_OUT[ptype][bob_before].new or bob_before
    shown = row.auto_reply is not None and RFC_IN[row.auto_reply][bob_after_send].forward
    assert sub_presences(got_b, USER) == ([(row.auto_reply, USER)] if shown else [])

    # a roster push iff the item alice sees changed (pending-in alone is not in the roster)
    expected = [item_attrs(CONTACT, new)] if visible(new) != visible(state) else []
    assert pushes(got_a, alice.jid or "") == expected


# -- pre-approval (§3.4) -----------------------------------------------------------------------


async def test_preapproval(server: Server, pair: tuple[RawClient, RawClient]) -> None:
    """§3.4.2 rule 4, then §3.4 auto-approval of the contact's request."""
    alice, bob = pair
    got_a, got_b = await exchange(
        server, alice, f"<presence to='{CONTACT}' type='subscribed'/>", alice, bob
    )
    # not routed; an item with approved='true' is created and pushed; state unchanged
    assert got_b == []
    assert pushes(got_a, alice.jid or "") == [
        item_attrs(CONTACT, SubState(Subscription.NONE), approved=True)
    ]
    assert await state_of(server, ALICE, CONTACT) == SubState(Subscription.NONE)
    assert await state_of(server, BOB, USER) == SubState(Subscription.NONE)
    stored = await server.storage.get_roster("alice", "localhost")
    assert stored.items[CONTACT].approved

    got_a, got_b = await exchange(
        server, bob, f"<presence to='{USER}' type='subscribe'/>", alice, bob
    )
    # alice is not asked; bob gets "subscribed" from alice's bare JID and her presence
    assert sub_presences(got_a, CONTACT) == []
    assert sub_presences(got_b, USER) == [("subscribed", USER)]
    assert any(
        e.tag == "presence" and e.get("type") is None and e.get("from") == alice.jid for e in got_b
    ), [serialize(e) for e in got_b]
    from_ = SubState(Subscription.FROM)
    assert await state_of(server, ALICE, CONTACT) == from_
    await assert_stored(server, ALICE, CONTACT, from_)
    assert await state_of(server, BOB, USER) == SubState(Subscription.TO)
    assert [p["subscription"] for p in pushes(got_a, alice.jid or "")] == ["from"]


async def test_preapproval_cancelled_by_unsubscribed(
    server: Server, pair: tuple[RawClient, RawClient]
) -> None:
    """§3.4 implementation note: "unsubscribed" cancels a pre-approval (A.2.4 note [1])."""
    alice, bob = pair
    await exchange(server, alice, f"<presence to='{CONTACT}' type='subscribed'/>", alice, bob)
    got_a, got_b = await exchange(
        server, alice, f"<presence to='{CONTACT}' type='unsubscribed'/>", alice, bob
    )
    assert got_b == []  # S.N. routed
    none = SubState(Subscription.NONE)
    assert pushes(got_a, alice.jid or "") == [item_attrs(CONTACT, none)]  # approved removed
    await assert_stored(server, ALICE, CONTACT, none)
    assert not (await server.rosters.get(ALICE)).items[CONTACT].approved

    # now bob's request is an ordinary one: delivered, no auto-reply
    got_a, got_b = await exchange(
        server, bob, f"<presence to='{USER}' type='subscribe'/>", alice, bob
    )
    assert sub_presences(got_a, CONTACT) == [("subscribe", CONTACT)]
    assert sub_presences(got_b, USER) == []
    await assert_stored(server, ALICE, CONTACT, SubState(Subscription.NONE, pending_in=True))


# -- §3.1.3: an unanswered request is redelivered at each login -------------------------------


async def test_pending_request_redelivered_until_answered(server: Server) -> None:
    bob, _ = await online(server, "bob", "b")
    await exchange(server, bob, f"<presence to='{USER}' type='subscribe'/>", bob)
    pending_in = SubState(Subscription.NONE, pending_in=True)
    await assert_stored(server, ALICE, CONTACT, pending_in)  # alice has never logged in

    for login in range(2):
        alice, got = await online(server, "alice", f"a{login}")
        assert sub_presences(got, CONTACT) == [("subscribe", CONTACT)], f"login {login}"
        await offline(server, alice, ALICE)
        await assert_stored(server, ALICE, CONTACT, pending_in)

    alice, _ = await online(server, "alice", "a2")
    await exchange(server, alice, f"<presence to='{CONTACT}' type='subscribed'/>", alice)
    await offline(server, alice, ALICE)
    await assert_stored(server, ALICE, CONTACT, SubState(Subscription.FROM))

    alice, got = await online(server, "alice", "a3")
    assert sub_presences(got, CONTACT) == []
    await alice.close()
    await bob.close()


# -- stream feature and ordering -------------------------------------------------------------


async def test_preapproval_stream_feature(server: Server) -> None:
    """§3.4: a server that supports pre-approval MUST advertise <sub/>."""
    c = await RawClient.connect(server.port())
    await c.open()
    await c.starttls()
    assert (await c.auth("alice", PASSWORDS["alice"])).tag == "success"
    features = await c.open()
    assert features.find("sub", PRE_APPROVAL) is not None, serialize(features)
    await c.close()


async def test_subscription_stanza_not_overtaken_by_later_message(
    server: Server, pair: tuple[RawClient, RawClient]
) -> None:
    alice, bob = pair
    (got_b,) = await exchange(
        server,
        alice,
        f"<presence to='{CONTACT}' type='subscribe'/>"
        f"<message to='{CONTACT}' type='chat' id='after'><body>hi</body></message>",
        bob,
    )
    assert [e.tag for e in got_b if e.tag in ("presence", "message")] == ["presence", "message"]
