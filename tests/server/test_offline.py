"""XEP-0160 offline messages end to end with raw XML, and across a ``kill -9`` of ``roost serve``.

A message for a user with no available resource is stored; it is delivered at the user's next
initial presence (not at bind), in order, once, with a XEP-0203 ``<delay/>`` from the server's
domain. A full queue bounces with ``service-unavailable``.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import RawClient, drain, quiet, start_server, sync
from tests.server.test_cli import RoostProcess

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")  # XEP-0082 DateTime, UTC
_ids = itertools.count()

Connect = Callable[..., Awaitable[RawClient]]


async def make_server(tmp_path: Path, **sections: dict[str, int]) -> Server:
    srv = await start_server(tmp_path, **sections)
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    return srv


@pytest.fixture
async def clients() -> AsyncIterator[list[RawClient]]:
    made: list[RawClient] = []
    yield made
    for c in made:
        if not c.writer.is_closing():
            await c.close()


@pytest.fixture
def connect(server: Server, clients: list[RawClient]) -> Connect:
    return lambda *a, **kw: login(server, clients, *a, **kw)


async def login(
    server: Server,
    made: list[RawClient],
    user: str,
    resource: str,
    *,
    presence: str | None = "<presence/>",
) -> RawClient:
    """Log in; with ``presence`` send it and wait for it to come back (§4.2.2)."""
    c = await RawClient.connect(server)
    made.append(c)
    await c.login(user, PASSWORDS[user], resource)
    if presence is not None:
        await send_presence(c, presence)
    return c


async def send_presence(c: RawClient, presence: str = "<presence/>") -> None:
    await c.send(presence)
    await c.expect(lambda e: e.tag == "presence" and e.get("from") == c.jid)


async def no_messages(*clients: RawClient) -> None:
    """Nothing but presence arrives at any of ``clients`` (up to a barrier, ``drain``)."""
    for c in clients:
        extra = [e for e in await drain(c) if e.tag != "presence"]
        assert extra == [], f"{c.jid} got: {[serialize(e) for e in extra]}"


async def messages(c: RawClient, n: int, *, idle: bool = True) -> list[Element]:
    """The next ``n`` messages (presence in between is skipped), then nothing more (up to
    a barrier, ``drain``; ``idle=False`` for a server in another process)."""
    got = [await c.expect(lambda e: e.tag == "message") for _ in range(n)]
    extra = [e for e in await drain(c, idle=idle) if e.tag == "message"]
    assert extra == [], [serialize(e) for e in extra]
    return got


def delay_of(el: Element, domain: str = "localhost") -> float:
    """The one XEP-0203 delay (from the server's domain); its stamp as a POSIX time."""
    delays = el.find_all("delay", ns.DELAY)
    assert len(delays) == 1, serialize(el)
    assert delays[0].get("from") == domain, serialize(el)
    stamp = delays[0].get("stamp") or ""
    assert STAMP.match(stamp), stamp
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def body(el: Element) -> str:
    b = el.find("body", ns.CLIENT)
    assert b is not None, serialize(el)
    return b.text


def assert_error(el: Element, condition: str, etype: str, code: str) -> None:
    assert el.get("type") == "error", serialize(el)
    err = el.find("error", ns.CLIENT)
    assert err is not None, serialize(el)
    conds = [c.tag for c in err.elements() if c.ns == ns.STANZAS and c.tag != "text"]
    assert conds == [condition], serialize(el)
    assert err.get("type") == etype and err.get("code") == code, serialize(el)


# -- delivery -------------------------------------------------------------------------------

RICH = (
    "<message to='bob@localhost' id='m0' type='chat' xml:lang='fr'>"
    "<subject>sujet</subject><body>a &lt;b&gt; &amp; c ☃ 🐦</body><thread>t-1</thread>"
    "<x xmlns='urn:example:ext' attr='v&apos;1'><y>deep</y></x></message>"
)


async def test_delivered_at_initial_presence_in_order_once(connect: Connect) -> None:
    alice = await connect("alice", "a")
    before = time.time()
    await alice.send(RICH)
    for i, (to, mtype) in enumerate(
        [
            ("bob@localhost", None),
            ("bob@localhost", "normal"),
            ("bob@localhost", "chat"),
            ("bob@localhost/gone", "chat"),  # §8.5.3.2.1: chat to a full JID is stored too
            ("bob@localhost", "chat"),
        ],
        start=1,
    ):
        t = "" if mtype is None else f" type='{mtype}'"
        await alice.send(f"<message to='{to}' id='m{i}'{t}><body>number {i}</body></message>")
    await quiet(alice)  # stored: no error to the sender
    after = time.time()

    # Bind (and a roster get) is not initial presence: nothing yet (XEP-0160 §2 step 5).
    bob = await connect("bob", "one", presence=None)
    await bob.send(f"<iq type='get' id='r1'><query xmlns='{ns.ROSTER}'/></iq>")
    await bob.expect(lambda e: e.get("id") == "r1")
    await quiet(bob)

    await send_presence(bob)
    got = await messages(bob, 6)
    assert [e.get("id") for e in got] == [f"m{i}" for i in range(6)]
    assert [body(e) for e in got[1:]] == [f"number {i}" for i in range(1, 6)]
    stamps = [delay_of(e) for e in got]
    assert stamps == sorted(stamps)
    assert before - 1 <= stamps[0] and stamps[-1] <= after + 1
    for e in got:
        assert e.get("from") == "alice@localhost/a"
    assert got[4].get("to") == "bob@localhost/gone"
    assert [e.get("type") for e in got[1:]] == [None, "normal", "chat", "chat", "chat"]

    # The stored stanza is the one sent: every child and attribute survives.
    rich = got[0]
    assert rich.get("to") == "bob@localhost" and rich.get("type") == "chat"
    assert rich.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    assert body(rich) == "a <b> & c ☃ 🐦"
    subject, thread = rich.find("subject", ns.CLIENT), rich.find("thread", ns.CLIENT)
    assert subject is not None and subject.text == "sujet"
    assert thread is not None and thread.text == "t-1"
    ext = rich.find("x", "urn:example:ext")
    assert ext is not None and ext.get("attr") == "v'1"
    y = ext.find("y", "urn:example:ext")
    assert y is not None and y.text == "deep"

    # Exactly once: not again on a presence update, nor on a second login.
    await send_presence(bob, "<presence><show>away</show></presence>")
    await quiet(bob)
    await bob.close()
    again = await connect("bob", "two")
    await quiet(again)


async def test_only_the_first_resource_gets_them(connect: Connect) -> None:
    alice = await connect("alice", "a")
    await alice.send("<message to='bob@localhost' id='x1' type='chat'><body>once</body></message>")
    await quiet(alice)
    one = await connect("bob", "one", presence=None)
    two = await connect("bob", "two", presence=None)
    await send_presence(one)
    assert [body(e) for e in await messages(one, 1)] == ["once"]
    await send_presence(two)
    await no_messages(one, two)


async def test_message_arriving_after_login_is_not_delayed(connect: Connect) -> None:
    bob = await connect("bob", "one")
    alice = await connect("alice", "a")
    await alice.send("<message to='bob@localhost' id='x2' type='chat'><body>live</body></message>")
    (el,) = await messages(bob, 1)
    assert el.find("delay", ns.DELAY) is None


async def test_negative_initial_presence_does_not_flush(connect: Connect) -> None:
    alice = await connect("alice", "a")
    await alice.send("<message to='bob@localhost' id='n1' type='chat'><body>wait</body></message>")
    await quiet(alice)
    bob = await connect("bob", "neg", presence="<presence><priority>-1</priority></presence>")
    await quiet(bob)  # a negative resource never gets messages for the bare JID
    await send_presence(bob, "<presence><priority>1</priority></presence>")
    assert [body(e) for e in await messages(bob, 1)] == ["wait"]


@pytest.mark.parametrize("mtype", ["headline", "error", "groupchat"])
async def test_types_not_stored(connect: Connect, mtype: str) -> None:
    """XEP-0160 §3: groupchat, headline and error are not stored (groupchat bounces)."""
    alice = await connect("alice", "a")
    await alice.send(f"<message to='bob@localhost' id='t1' type='{mtype}'><body>x</body></message>")
    if mtype == "groupchat":
        assert_error(await alice.next(), "service-unavailable", "cancel", "503")
    await quiet(alice)
    bob = await connect("bob", "one")
    await quiet(bob)


# -- quota and configuration ----------------------------------------------------------------


async def test_quota_bounces_once_full(tmp_path: Path, clients: list[RawClient]) -> None:
    srv = await make_server(tmp_path, offline={"max_messages": 2})
    try:
        alice = await login(srv, clients, "alice", "a")
        carol = await login(srv, clients, "carol", "c")
        for sender, mid in ((alice, "q1"), (carol, "q2"), (alice, "q3"), (carol, "q4")):
            await sender.send(
                f"<message to='bob@localhost' id='{mid}' type='chat'><body>{mid}</body></message>"
            )
            # The quota applies in arrival order: this one is stored (or bounced) before the
            # next is sent. The bounce stays queued at the sender for the checks below.
            await sync(sender)
        for sender, mid in ((alice, "q3"), (carol, "q4")):
            el = await sender.next()
            assert el.tag == "message" and el.get("id") == mid, serialize(el)
            assert_error(el, "service-unavailable", "cancel", "503")
            assert el.get("from") == "bob@localhost"
            assert el.get("to") == sender.jid
        await quiet(alice, carol)

        bob = await login(srv, clients, "bob", "one")
        assert [body(e) for e in await messages(bob, 2)] == ["q1", "q2"]
        await bob.close()
        # Delivered messages free their room.
        await alice.send(
            "<message to='bob@localhost' id='q5' type='chat'><body>q5</body></message>"
        )
        await quiet(alice)
        bob = await login(srv, clients, "bob", "two")
        assert [body(e) for e in await messages(bob, 1)] == ["q5"]
    finally:
        await srv.stop()


async def test_offline_storage_disabled(tmp_path: Path, clients: list[RawClient]) -> None:
    srv = await make_server(tmp_path, offline={"max_messages": 0})
    try:
        alice = await login(srv, clients, "alice", "a")
        await alice.send("<message to='bob@localhost' id='d1' type='chat'><body>x</body></message>")
        el = await alice.next()
        assert_error(el, "service-unavailable", "cancel", "503")
        assert el.get("id") == "d1"
        await quiet(alice)
    finally:
        await srv.stop()


async def test_stored_messages_survive_a_clean_restart(
    tmp_path: Path, clients: list[RawClient]
) -> None:
    srv = await make_server(tmp_path)
    alice = await login(srv, clients, "alice", "a")
    await alice.send("<message to='bob@localhost' id='s1' type='chat'><body>kept</body></message>")
    await quiet(alice)
    await srv.stop()
    srv = await start_server(tmp_path)
    try:
        bob = await login(srv, clients, "bob", "one")
        (el,) = await messages(bob, 1)
        assert body(el) == "kept"
        delay_of(el)
    finally:
        await srv.stop()


# -- crash safety (roost serve in a subprocess, SIGKILL) ------------------------------------


@pytest.fixture
def roost(tmp_path: Path) -> Iterator[RoostProcess]:
    proc = RoostProcess(tmp_path)
    try:
        yield proc
    finally:
        proc.cleanup()


def stored_count(db: Path, user: str | None = None) -> int:
    """Rows in the offline queue (of ``user`` on localhost), read beside the running server:
    the storage API has no count, the server never needs one."""
    sql, args = "SELECT count(*) FROM offline_messages", []
    if user is not None:
        sql, args = sql + " WHERE username = ? AND domain = ?", [user, "localhost"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.close()


def database(server: Server) -> Path:
    """The SQLite file of an in-process server."""
    return Path(server.config.data_dir) / "roost.db"


async def wait_stored(db: Path, n: int, timeout: float = 5.0) -> None:
    """Poll (bounded) a server in another process, which has no ``idle()`` to wait for."""
    deadline = time.monotonic() + timeout
    while stored_count(db) != n:
        assert time.monotonic() < deadline, f"{stored_count(db)} offline rows, expected {n}"
        await asyncio.sleep(0.02)


async def test_offline_message_survives_sigkill(roost: RoostProcess) -> None:
    roost.start().wait_ready()
    roost.add_user("alice@localhost", PASSWORDS["alice"])
    roost.add_user("bob@localhost", PASSWORDS["bob"])
    db = roost.data_dir / "roost.db"

    alice = await roost.login("alice", PASSWORDS["alice"], "a")
    await alice.send("<presence/>")
    sent = time.time()
    await alice.send(
        "<message to='bob@localhost' id='k1' type='chat'><body>through a crash</body></message>"
    )
    await wait_stored(db, 1)  # the server has committed it; nothing acknowledges it on the wire

    roost.kill()
    await alice.wait_closed()
    roost.start().wait_ready()

    bob = await roost.login("bob", PASSWORDS["bob"], "one")
    await send_presence(bob)
    # Another process: no idle(). The flush writes all it took at once, so a second
    # message would come before the barrier's pongs.
    (el,) = await messages(bob, 1, idle=False)
    assert body(el) == "through a crash"
    assert el.get("id") == "k1"
    assert el.get("from") == "alice@localhost/a"
    assert sent - 1 <= delay_of(el) <= time.time() + 1
    await wait_stored(db, 0)

    # Delivered means gone, even if the server dies right after.
    roost.kill()
    await bob.wait_closed()
    roost.start().wait_ready()
    # Nothing left to deliver: what makes the ping-only check below (another process,
    # no idle()) independent of how fast the server is.
    assert stored_count(db) == 0
    bob = await roost.login("bob", PASSWORDS["bob"], "two")
    await send_presence(bob)
    await quiet(bob, idle=False)
    await bob.close()
    assert roost.terminate() == 0


async def test_blocked_sender_stored_message_not_delivered(server: Server) -> None:
    """A message stored before its sender was blocked is not delivered (XEP-0191 §3.3)."""
    alice = await RawClient.connect(server)
    await alice.login("alice", PASSWORDS["alice"], "a")
    await alice.send(
        "<message to='bob@localhost' id='s1' type='chat'><body>stored</body></message>"
    )
    await alice.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    await alice.expect(lambda e: e.get("id") == "sync")
    await server.idle()  # the store is done
    assert stored_count(database(server), "bob") == 1
    bob = await RawClient.connect(server)
    await bob.login("bob", PASSWORDS["bob"], "b")
    await bob.send(
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'>"
        "<item jid='alice@localhost'/></block></iq>"
    )
    await bob.expect(lambda e: e.get("id") == "blk")
    await bob.send("<presence/>")
    seen = []
    for pid in ("after", "after2"):
        await bob.send(
            f"<iq type='get' id='{pid}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        while True:
            el = await bob.next()
            seen.append(el)
            if el.get("id") == pid:
                break
        if pid == "after":  # the presence is handled: wait for the offline flush it started
            await server.idle()
    assert not [e for e in seen if e.tag == "message"]
    assert stored_count(database(server), "bob") == 0
    await alice.close()
    await bob.close()
