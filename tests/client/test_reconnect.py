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
