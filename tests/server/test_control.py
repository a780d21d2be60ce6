"""The control socket (issue 14): ``roost status``, ``roost sessions``, live ``roost user``
and ``roost check`` against a running ``roost serve`` subprocess, and the socket's protocol
against an in-process server."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost import __version__
from roost.server.control import SOCKET_NAME
from tests.helpers import free_port, start_server
from tests.server.test_cli import RoostProcess


@pytest.fixture
def live(tmp_path: Path) -> Iterator[RoostProcess]:
    proc = RoostProcess(tmp_path)
    try:
        proc.start().wait_ready()
        yield proc
    finally:
        proc.cleanup()


async def test_status_and_the_socket(live: RoostProcess) -> None:
    sock = live.data_dir / SOCKET_NAME
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    live.add_user("alice@localhost", "alice-pw")
    alice = await live.login("alice", "alice-pw", "one")

    r = live.roost("status")
    assert r.returncode == 0, r.stderr
    assert f"roost {__version__}, pid {live.proc.pid}" in r.stdout  # type: ignore[union-attr]
    assert f"c2s STARTTLS 127.0.0.1:{live.c2s_port}" in r.stdout
    assert "sessions: localhost 1 (1 client connections)" in r.stdout
    assert "MiB resident" in r.stdout

    r = live.roost("status", "--json")
    st = json.loads(r.stdout)
    assert st["sessions"] == {"localhost": 1}
    assert st["memory_rss"] > 1_000_000 and st["uptime"] >= 0
    assert {
        (lst["port"], lst["direct_tls"]) for lst in st["listeners"] if lst["kind"] == "c2s"
    } == {
        (live.c2s_port, False),
        (live.tls_port, True),
    }
    await alice.close()

    assert live.terminate() == 0
    assert not sock.exists()
    r = live.roost("status")
    assert r.returncode == 1
    assert r.stderr.strip() == f"roost: no server is running (nothing answers on {sock})"


async def test_sessions_list_and_kick(live: RoostProcess) -> None:
    live.add_user("alice@localhost", "alice-pw")
    live.add_user("bob@localhost", "bob-pw")
    one = await live.login("alice", "alice-pw", "one")
    two = await live.login("alice", "alice-pw", "two")
    bob = await live.login("bob", "bob-pw", "phone")

    r = live.roost("sessions", "list")
    assert r.returncode == 0, r.stderr
    jids = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert jids == ["alice@localhost/one", "alice@localhost/two", "bob@localhost/phone"]
    assert "127.0.0.1\tunavailable\tTLS" in r.stdout
    rows = json.loads(live.roost("sessions", "list", "--json", "--domain", "localhost").stdout)
    assert len(rows) == 3 and rows[0]["address"] == "127.0.0.1"
    r = live.roost("sessions", "list", "--domain", "elsewhere.example")
    assert r.returncode == 2
    assert r.stderr.strip() == "roost: elsewhere.example is not one of the served domains"

    # A full JID: that session only, with policy-violation (the default).
    r = live.roost("sessions", "kick", "alice@localhost/one")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ended alice@localhost/one (policy-violation)"
    assert await one.stream_error() == "policy-violation"
    await two.ping()

    # A bare JID: every session of the account, with the condition asked for.
    r = live.roost("sessions", "kick", "bob@localhost", "--condition", "reset", "--reason", "bye")
    assert r.returncode == 0, r.stderr
    assert await bob.stream_error() == "reset"
    await two.ping()

    r = live.roost("sessions", "kick", "carol@localhost")
    assert r.returncode == 1
    assert r.stderr.strip() == "roost: carol@localhost has no session"
    r = live.roost("sessions", "kick", "not a jid@")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "invalid JID" in r.stderr
    await two.close()


async def test_live_delete_ends_the_sessions(live: RoostProcess) -> None:
    """Issue 14: a deleted account's sessions went on working."""
    live.add_user("alice@localhost", "alice-pw")
    live.add_user("bob@localhost", "bob-pw")
    alice = await live.login("alice", "alice-pw", "one")
    alice2 = await live.login("alice", "alice-pw", "two")
    bob = await live.login("bob", "bob-pw")

    r = live.roost("user", "delete", "alice@localhost")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "deleted alice@localhost (2 sessions ended)"
    assert await alice.stream_error() == "not-authorized"
    assert await alice2.stream_error() == "not-authorized"
    assert await live.auth_result("alice", "alice-pw") == "not-authorized"
    await bob.ping()

    r = live.roost("user", "delete", "alice@localhost")
    assert r.returncode == 1
    assert r.stderr.strip() == "roost: no account alice@localhost"
    await bob.close()


async def test_live_passwd_resets_the_sessions(live: RoostProcess) -> None:
    live.add_user("alice@localhost", "old-pw")
    alice = await live.login("alice", "old-pw")
    r = live.roost("user", "passwd", "alice@localhost", "--password", "new-pw")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "password changed for alice@localhost (1 session ended)"
    assert await alice.stream_error() == "reset"
    assert await live.auth_result("alice", "old-pw") == "not-authorized"
    again = await live.login("alice", "new-pw")
    await again.close()

    # add through the server: errors are one line with the CLI's exit codes
    r = live.roost("user", "add", "alice@localhost", "--password", "x")
    assert r.returncode == 1
    assert r.stderr.strip() == "roost: alice@localhost already exists"


async def test_check_recognises_its_running_server(live: RoostProcess) -> None:
    """Issue 14: beside a running server, ``roost check`` reported its ports as taken;
    now it is a health check: exit 0 when the server answers."""
    r = live.roost("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"server running: roost {__version__}, pid" in r.stdout
    assert "problem" not in r.stdout
    assert r.stdout.splitlines()[-1].startswith("ok: config")


async def test_stale_socket_after_a_crash(live: RoostProcess) -> None:
    """A server killed outright leaves its socket: commands fall back to storage, and
    the next server takes the socket over."""
    live.kill()
    sock = live.data_dir / SOCKET_NAME
    assert sock.exists()
    r = live.roost("status")
    assert r.returncode == 1 and "no server is running" in r.stderr
    live.add_user("alice@localhost", "alice-pw")  # straight to storage
    r = live.roost("check")
    assert r.returncode == 0, r.stdout
    assert "server running" not in r.stdout

    live.start().wait_ready()
    r = live.roost("status", "--json")
    assert r.returncode == 0, r.stderr
    alice = await live.login("alice", "alice-pw")
    assert live.roost("user", "delete", "alice@localhost").returncode == 0
    assert await alice.stream_error() == "not-authorized"


async def _request(path: Path, *lines: bytes) -> list[dict[str, object]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    replies = []
    for line in lines:
        writer.write(line)
        replies.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
    writer.close()
    return replies


async def test_protocol_errors(tmp_path: Path) -> None:
    srv = await start_server(tmp_path)
    try:
        path = tmp_path / SOCKET_NAME
        replies = await _request(
            path,
            b"not json\n",
            b'["status"]\n',
            b'{"cmd": "reboot"}\n',
            b'{"cmd": "user.delete"}\n',
            b'{"cmd": "user.delete", "jid": "nobody@elsewhere.example"}\n',
            b'{"cmd": "status"}\n',
        )
        assert [(r["ok"], r.get("exit")) for r in replies] == [
            (False, 2),
            (False, 2),
            (False, 2),
            (False, 2),
            (False, 1),
            (True, None),
        ]
        assert replies[2]["error"] == "unknown command 'reboot'"
        assert replies[3]["error"] == "'jid' must be a non-empty string"
        assert replies[4]["error"] == "elsewhere.example is not one of the served domains"

        # A second server on the same data_dir does not take the live socket over.
        other = await start_server(tmp_path)
        try:
            assert other.control is None
            assert srv.control is not None
        finally:
            await other.stop()
        assert (await _request(path, b'{"cmd": "status"}\n'))[0]["ok"]
    finally:
        await srv.stop()
    assert not (tmp_path / SOCKET_NAME).exists()


def test_check_with_metrics_beside_its_server(tmp_path: Path) -> None:
    """The metrics port is the running server's too (and ``roost status`` lists it)."""
    port = free_port()
    proc = RoostProcess(tmp_path, extra=f"\n[metrics]\nport = {port}\n")
    try:
        proc.start().wait_ready()
        r = proc.roost("status")
        assert f"metrics HTTP 127.0.0.1:{port}" in r.stdout, r.stdout
        r = proc.roost("check")
        assert r.returncode == 0, r.stdout
        assert "problem" not in r.stdout
    finally:
        proc.cleanup()
    r = proc.roost("check")  # stopped: the port is free again
    assert r.returncode == 0, r.stdout


async def test_delete_tells_the_contacts(tmp_path: Path) -> None:
    """Deleting through the server does what an in-band cancellation does (XEP-0077
    §3.2): contacts are told, then the sessions end with not-authorized."""
    from roost.core.jid import JID
    from tests.helpers import PASSWORDS, RawClient

    srv = await start_server(tmp_path)
    try:
        for user in ("alice", "bob"):
            await srv.accounts.create(user, "localhost", PASSWORDS[user])
        a = await RawClient.connect(srv)
        await a.login("alice", PASSWORDS["alice"], "a")
        b = await RawClient.connect(srv)
        await b.login("bob", PASSWORDS["bob"], "b")
        await a.send("<presence/>")
        await b.send("<presence/>")
        await a.send("<presence to='bob@localhost' type='subscribe'/>")
        await b.expect(lambda e: e.tag == "presence" and e.get("type") == "subscribe")
        await b.send("<presence to='alice@localhost' type='subscribed'/>")
        await a.expect(lambda e: e.tag == "presence" and e.get("type") == "subscribed")
        await a.ping()

        assert await srv.admin.delete_user(JID.parse("alice@localhost")) == 1
        assert await a.stream_error() == "not-authorized"
        unsub = await b.expect(lambda e: e.tag == "presence" and e.get("type") == "unsubscribe")
        assert unsub.get("from") == "alice@localhost"
        await srv.idle()
        roster = await srv.rosters.get(JID.parse("bob@localhost"))
        assert roster.items["alice@localhost"].subscription == "none"
        await b.close()
    finally:
        await srv.stop()


def test_a_server_that_does_not_answer(tmp_path: Path) -> None:
    """A health check must not hang: ``roost check`` gives up after 5 s, in one line."""
    import socket

    from tests.server.test_cli import run_roost, write_config

    config = write_config(tmp_path, free_port(), 0)
    (tmp_path / "data").mkdir()
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        mute.bind(str(tmp_path / "data" / SOCKET_NAME))
        mute.listen(1)  # connections wait in the backlog, never answered
        r = run_roost("check", "--config", str(config), cwd=tmp_path)
    finally:
        mute.close()
    assert r.returncode == 1
    assert r.stderr == (
        f"roost: the server did not answer on {tmp_path / 'data' / SOCKET_NAME} in 5 s\n"
    )
