"""Reconnection: the server restarts, the client comes back, fetches the roster by version
and restores its presence."""

from __future__ import annotations

import random
from pathlib import Path

from roost.client import Client, Connected, ConnectionLost, Presence
from roost.server.app import Server
from tests.client.conftest import server_cafile
from tests.helpers import PASSWORDS, free_port, make_config

T = 10.0


async def _start(data_dir: Path, port: int, direct: int) -> Server:
    server = Server(make_config(data_dir, c2s={"port": port, "direct_tls_port": direct}))
    await server.start()
    return server


async def test_reconnect_after_server_restart(tmp_path: Path) -> None:
    port, direct = free_port(), free_port()
    server = await _start(tmp_path, port, direct)
    for user in ("alice", "bob"):
        await server.accounts.create(user, "localhost", PASSWORDS[user])
    alice = Client(
        "alice@localhost",
        PASSWORDS["alice"],
        resource="r",
        server=("127.0.0.1", port),
        cafile=server_cafile(server),
        reconnect_delay=(0.05, 0.5),
        rng=random.Random(1),
    )
    try:
        await alice.connect()
        await alice.roster.add("bob@localhost", name="Bob")
        await alice.ping()
        version = alice.roster.version
        assert version is not None and alice.roster.get("bob@localhost") is not None
        alice.send_presence(status="back soon")
        with alice.events(Connected, ConnectionLost) as lifecycle:
            await server.stop()
            lost = await lifecycle.next(T)
            assert isinstance(lost, ConnectionLost)
            assert "system-shutdown" in str(lost.error)
            server = await _start(tmp_path, port, direct)
            back = await lifecycle.next(T)
        assert isinstance(back, Connected) and back.reconnected
        assert str(back.jid) == "alice@localhost/r"
        # RFC 6121 §2.6.3: the version was current, so the server sent no items
        assert alice.roster.version == version and not alice.roster.changed_on_fetch
        assert alice.roster.get("bob@localhost") is not None
        # the presence in force before is sent again: another resource sees it
        other = Client(
            "alice@localhost",
            PASSWORDS["alice"],
            resource="other",
            server=("127.0.0.1", port),
            cafile=server_cafile(server),
        )
        with other.events(Presence) as seen:
            await other.connect()
            while True:
                p = await seen.next(T)
                if str(p.from_) == "alice@localhost/r":
                    break
        assert p.status == "back soon"
        await other.disconnect()
    finally:
        await alice.disconnect()
        await server.stop()


def test_backoff_grows_with_jitter_and_stops_at_the_cap() -> None:
    from roost.client.dial import backoff

    rng = random.Random(7)
    delays = [backoff(n, 0.5, 60.0, rng) for n in range(12)]
    for n, d in enumerate(delays):
        full = min(60.0, 0.5 * 2**n)
        assert full / 2 <= d <= full
    assert len({round(backoff(3, 1.0, 60.0, random.Random(s)), 6) for s in range(20)}) > 10
    assert backoff(10_000, 1.0, 60.0, rng) <= 60.0


async def test_no_reconnection_after_a_resource_conflict(tmp_path: Path) -> None:
    from tests.helpers import start_server

    server = await start_server(tmp_path)
    await server.accounts.create("alice", "localhost", PASSWORDS["alice"])
    opts = {
        "resource": "same",
        "server": ("127.0.0.1", server.port()),
        "cafile": server_cafile(server),
        "reconnect_delay": (0.01, 0.05),
    }
    first = Client("alice@localhost", PASSWORDS["alice"], **opts)  # type: ignore[arg-type]
    second = Client("alice@localhost", PASSWORDS["alice"], **opts)  # type: ignore[arg-type]
    try:
        await first.connect()
        with first.events(ConnectionLost, Connected) as lifecycle:
            await second.connect()  # RFC 6120 §7.7.2.2: the server ends the first stream
            lost = await lifecycle.next(T)
            assert isinstance(lost, ConnectionLost) and lost.error is not None
            assert lost.error.stream_error is not None
            assert lost.error.stream_error.condition.value == "conflict"
            await second.ping()
        assert first._reconnecting is None and not first.connected
    finally:
        await first.disconnect()
        await second.disconnect()
        await server.stop()


async def test_roster_changed_while_away_is_caught_up(tmp_path: Path) -> None:
    """A change made while the client was cut off reaches its copy after it comes back:
    by the fetch with the old version (the server sends the roster) or by a push."""
    port, direct = free_port(), free_port()
    server = await _start(tmp_path, port, direct)
    await server.accounts.create("alice", "localhost", PASSWORDS["alice"])
    opts = {"server": ("127.0.0.1", port), "cafile": server_cafile(server)}
    alice = Client(
        "alice@localhost/r",
        PASSWORDS["alice"],
        reconnect_delay=(0.05, 0.5),
        **opts,  # type: ignore[arg-type]
    )
    other = Client("alice@localhost/other", PASSWORDS["alice"], reconnect=False, **opts)  # type: ignore[arg-type]
    try:
        await alice.connect()
        await alice.roster.add("bob@localhost")
        await alice.ping()
        old = alice.roster.version
        with alice.events(Connected) as lifecycle:
            await server.stop()
            server = await _start(tmp_path, port, direct)
            await other.connect()
            await other.roster.add("carol@localhost", name="Carol")
            back = await lifecycle.next(T)
            assert isinstance(back, Connected) and back.reconnected
        await alice.ping()  # a push sent before this answer has arrived
        item = alice.roster.get("carol@localhost")
        assert item is not None and item.name == "Carol"
        assert alice.roster.get("bob@localhost") is not None
        assert alice.roster.version != old
    finally:
        await alice.disconnect()
        await other.disconnect()
        await server.stop()
