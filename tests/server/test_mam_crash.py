"""The archive across a ``kill -9`` of ``roost serve`` during a message burst (issue 12, MAM
acceptance 7).

Archiving is group-committed off the routing path; what makes a message durable is the
writer's commit, and ``MamModule.flushed`` is the promise that everything archived before
it is committed. A MAM query waits for that promise before it answers, so its answer is an
acknowledgement a test can see on the wire: every message sent before the query must be in
the archives after the crash. What was still in flight may be lost, but only as a suffix:
the archive is always a prefix of what was routed (one writer, batches in order, each one
transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.mam import MAM2, RSM
from tests.conftest import PASSWORDS
from tests.helpers import RawClient
from tests.server.test_cli import HAVE_UVLOOP, RoostProcess


@pytest.fixture(params=["asyncio", "uvloop"])
def roost(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RoostProcess]:
    if request.param == "uvloop" and not HAVE_UVLOOP:
        pytest.skip("uvloop is not installed")
    proc = RoostProcess(tmp_path, loop=request.param)
    try:
        yield proc
    finally:
        proc.cleanup()


ACKED = 600
IN_FLIGHT = 1500


def _to_carol(i: int) -> bool:
    # every fourth acknowledged message goes to carol, who is offline; the rest to bob
    return i < ACKED and i % 4 == 3


def _burst(start: int, n: int) -> str:
    return "".join(
        f"<message to='{'carol' if _to_carol(i) else 'bob'}@localhost' type='chat' id='k{i}'>"
        f"<body>{i}</body></message>"
        for i in range(start, start + n)
    )


async def _bodies(c: RawClient, with_: str | None = None) -> list[int]:
    """Every archived body of ``c``'s account, paging forwards."""
    form = ""
    if with_:
        form = (
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{MAM2}</value></field><field var='with'><value>{with_}</value></field></x>"
        )
    out: list[int] = []
    after = ""
    for page in range(100):
        await c.send(
            f"<iq type='set' id='p{page}'><query xmlns='{MAM2}'>{form}"
            f"<set xmlns='{RSM}'><max>250</max>{after}</set></query></iq>"
        )
        last = None
        while True:
            el = await c.next()
            if el.tag == "iq" and el.get("id") == f"p{page}":
                fin = el.find("fin", MAM2)
                assert fin is not None, el
                break
            result = el.find("result", MAM2)
            if result is None:
                continue  # offline messages, presence
            fwd = result.find("forwarded", "urn:xmpp:forward:0")
            msg = fwd.find("message", ns.CLIENT) if fwd is not None else None
            body = msg.find("body", ns.CLIENT) if msg is not None else None
            assert body is not None
            out.append(int(body.text))
            last = result.get("id")
        if fin.get("complete") == "true":
            return out
        after = f"<after>{last}</after>"
    raise AssertionError("the archive did not end")


async def test_acknowledged_messages_survive_sigkill(roost: RoostProcess) -> None:
    roost.start().wait_ready()
    for user in ("alice", "bob", "carol"):
        roost.add_user(f"{user}@localhost", PASSWORDS[user])
    alice = await roost.login("alice", PASSWORDS["alice"], "a")
    bob = await roost.login("bob", PASSWORDS["bob"], "b")
    await bob.send("<presence/>")
    await bob.expect(lambda e: e.tag == "presence")
    # A burst, then a query of alice's own archive: its answer acknowledges the burst.
    await alice.send(
        _burst(0, ACKED)
        + f"<iq type='set' id='ack'><query xmlns='{MAM2}'><set xmlns='{RSM}'><max>0</max>"
        "</set></query></iq>"
    )
    ack = await alice.expect(lambda e: e.get("id") == "ack")
    assert ack.get("type") == "result"
    # Another burst, and the server dies while it is being routed and written: once bob
    # has some of it (delivery does not wait for the disk; nothing acknowledged these).
    await alice.send(_burst(ACKED, IN_FLIGHT))
    await bob.expect(lambda e: e.tag == "message" and e.get("id") == f"k{ACKED + IN_FLIGHT - 2}")
    roost.kill()
    await alice.wait_closed()

    roost.start().wait_ready()
    sent = list(range(ACKED + IN_FLIGHT))
    to_bob = [i for i in sent if not _to_carol(i)]
    to_carol = [i for i in sent if _to_carol(i)]
    alice = await roost.login("alice", PASSWORDS["alice"], "a2")
    archived = await _bodies(alice)
    # every acknowledged message, in order, and nothing but a prefix of what was sent
    assert archived == sent[: len(archived)] and len(archived) >= ACKED
    bob = await roost.login("bob", PASSWORDS["bob"], "b2")
    received = await _bodies(bob)
    assert received == to_bob[: len(received)]
    assert len(received) >= len([i for i in to_bob if i < ACKED])
    # carol was offline: her archive holds what reached her account, also a prefix
    carol = await roost.login("carol", PASSWORDS["carol"], "c")
    stored = await _bodies(carol)
    assert stored == to_carol[: len(stored)]
    for c in (alice, bob, carol):
        await c.close()
    assert roost.terminate() == 0


async def test_messages_acknowledged_by_stream_management_survive_sigkill(
    roost: RoostProcess,
) -> None:
    """#12 acceptance 7 with XEP-0198: the server's <a h='N'/> comes only once the N
    stanzas are handled and archived on disk, so after kill -9 all N are in the archives."""
    roost.start().wait_ready()
    for user in ("alice", "bob", "carol"):
        roost.add_user(f"{user}@localhost", PASSWORDS[user])
    alice = await roost.login("alice", PASSWORDS["alice"], "a")
    await alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
    await alice.expect(lambda e: e.tag == "enabled")
    bob = await roost.login("bob", PASSWORDS["bob"], "b")
    await bob.send("<presence/>")
    await bob.expect(lambda e: e.tag == "presence")
    await alice.send(_burst(0, ACKED) + "<r xmlns='urn:xmpp:sm:3'/>")
    ack = await alice.expect(lambda e: e.tag == "a" and e.ns == "urn:xmpp:sm:3")
    assert ack.get("h") == str(ACKED)
    # at once: an ack given before the archive's commit would lose its last messages here
    await alice.send(_burst(ACKED, IN_FLIGHT))
    roost.kill()
    await alice.wait_closed()

    roost.start().wait_ready()
    sent = list(range(ACKED + IN_FLIGHT))
    alice = await roost.login("alice", PASSWORDS["alice"], "a2")
    archived = await _bodies(alice)
    assert archived == sent[: len(archived)] and len(archived) >= ACKED
    bob = await roost.login("bob", PASSWORDS["bob"], "b2")
    to_bob = [i for i in sent if not _to_carol(i)]
    received = await _bodies(bob)
    assert received == to_bob[: len(received)]
    assert len(received) >= len([i for i in to_bob if i < ACKED])
    carol = await roost.login("carol", PASSWORDS["carol"], "c")
    to_carol = [i for i in sent if _to_carol(i)]
    stored = await _bodies(carol)
    assert stored == to_carol[: len(stored)] and len(stored) >= len(
        [i for i in to_carol if i < ACKED]
    )
    for c in (alice, bob, carol):
        await c.close()
    assert roost.terminate() == 0
