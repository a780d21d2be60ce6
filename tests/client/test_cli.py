"""``roost client ...`` against a real server: from a shell (subprocesses) and in-process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from roost.cli import main
from roost.client import JID, Presence
from roost.server.app import Server
from tests.client.conftest import MakeClient, server_cafile
from tests.helpers import PASSWORDS, free_port, start_server

T = 10.0
ROOST = [sys.executable, "-m", "roost.cli"]


def _common(server: Server, user: str = "alice", **kw: str) -> list[str]:
    args = ["--jid", f"{user}@localhost", "--server", f"127.0.0.1:{server.port()}"]
    args += ["--password", kw.get("password", PASSWORDS.get(user, "x"))]
    args += ["--cafile", str(server_cafile(server))] if "insecure" not in kw else ["--insecure"]
    return args


async def _shell(*argv: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    proc = await asyncio.create_subprocess_exec(
        *ROOST, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_from_a_shell_delivers(server: Server, make_client: MakeClient) -> None:
    bob = make_client("bob")
    await bob.connect()
    with bob.messages() as inbox:
        code, _, err = await _shell(
            "client", "send", "bob@localhost", "hello", *_common(server, insecure="1")
        )
        assert code == 0, err
        msg = await inbox.next(T)
    assert msg.body == "hello" and msg.from_ is not None
    assert msg.from_.bare == JID.parse("alice@localhost")
    assert "verification is OFF" in err  # --insecure warns


async def test_wrong_password_one_line_and_exit_code(server: Server) -> None:
    code, out, err = await _shell(
        "client", "send", "bob@localhost", "x", *_common(server, password="wrong")
    )
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and "authentication failed" in err and "password" in err


async def test_untrusted_certificate_says_what_to_do(server: Server) -> None:
    argv = ["--jid", "alice@localhost", "--password", "x", "--server"]
    code, _, err = await _shell("client", "ping", *argv, f"127.0.0.1:{server.port()}")
    assert code == 5 and "not trusted" in err and "--cafile" in err and err.count("\n") == 1


async def test_host_not_found_and_refused() -> None:
    argv = ["--jid", "alice@localhost", "--password", "x", "--server"]
    code, _, err = await _shell("client", "ping", *argv, "no-such-host.invalid:5222")
    assert code == 4 and "cannot find the server" in err and "--server" in err
    code, _, err = await _shell("client", "ping", *argv, f"127.0.0.1:{free_port()}")
    assert code == 4 and "cannot connect" in err


async def test_listen_prints_json_lines_until_interrupted(
    server: Server, make_client: MakeClient
) -> None:
    lib = make_client("alice", resource="lib")
    await lib.connect()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env["ROOST_PASSWORD"] = PASSWORDS["alice"]
    argv = [*_common(server), "--resource", "cli", "--json"]
    argv.remove("--password")
    argv.remove(PASSWORDS["alice"])
    with lib.events(Presence) as seen:
        proc = await asyncio.create_subprocess_exec(
            *ROOST, "client", "listen", *argv, stdout=asyncio.subprocess.PIPE, env=env
        )
        try:
            cli = JID.parse("alice@localhost/cli")
            while (await seen.next(T)).from_ != cli:  # type: ignore[union-attr]
                pass
            lib.send_message(cli, "to the listener")
            assert proc.stdout is not None
            while True:
                line = json.loads(await asyncio.wait_for(proc.stdout.readline(), T))
                if line["kind"] == "message":
                    break
            assert line == {
                "kind": "message",
                "from": "alice@localhost/lib",
                "type": "chat",
                "body": "to the listener",
            }
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), T) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_roster_disco_ping_block_in_process(
    server: Server, capsys: pytest.CaptureFixture[str], make_client: MakeClient
) -> None:
    bob = make_client("bob")
    await bob.connect()
    common = _common(server)
    with bob.events(Presence) as seen:
        code = await _cli("client", "roster", "add", "bob@localhost", "--name", "Bob", *common)
        assert code == 0
        while (request := await seen.next(T)).type != "subscribe":  # type: ignore[union-attr]
            pass
    assert isinstance(request, Presence) and request.from_ == JID.parse("alice@localhost")
    assert await _cli("client", "roster", "list", *common) == 0
    out = capsys.readouterr().out
    assert "added bob@localhost; subscription requested" in out
    assert "bob@localhost\tnone (asked)\tBob\t" in out
    assert await _cli("client", "roster", "remove", "bob@localhost", *common) == 0
    assert await _cli("client", "roster", "list", *common) == 0
    assert "bob@localhost\t" not in capsys.readouterr().out.split("removed")[1]

    assert await _cli("client", "disco", "localhost", *common) == 0
    out = capsys.readouterr().out
    assert "identity server/im" in out and "feature urn:xmpp:ping" in out
    assert await _cli("client", "ping", *common) == 0
    assert "pong from localhost in" in capsys.readouterr().out
    assert await _cli("client", "block", "carol@localhost", *common) == 0
    assert await _cli("client", "unblock", "carol@localhost", *common) == 0
    assert capsys.readouterr().out.splitlines() == [
        "blocked carol@localhost",
        "unblocked carol@localhost",
    ]
    # a stanza error is one line and exit 1
    assert await _cli("client", "ping", "nobody@localhost/x", *common) == 1
    assert capsys.readouterr().err.strip() == "roost client: refused: service-unavailable"


async def test_register_and_passwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server(tmp_path, registration={"enabled": True})
    try:
        common = _common(server, "erin", password="first")
        assert await _cli("client", "register", *common) == 0
        assert capsys.readouterr().out == "created erin@localhost\n"
        assert await _cli("client", "register", *common) == 1
        assert "already exists" in capsys.readouterr().err
        monkeypatch.setenv("ROOST_NEW_PASSWORD", "second")
        assert await _cli("client", "passwd", *common) == 0
        assert "password changed" in capsys.readouterr().out
        assert await _cli("client", "ping", *common) == 3  # the old one no longer works
        assert await _cli("client", "ping", *_common(server, "erin", password="second")) == 0
    finally:
        await server.stop()


async def test_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROOST_JID", raising=False)
    assert await _cli("client", "ping", "--password", "x") == 2
    assert "--jid" in capsys.readouterr().err
    assert await _cli("client", "ping", "--jid", "a@b", "--password", "x", "--server", "nope") == 2
    assert "HOST:PORT" in capsys.readouterr().err


async def test_register_when_the_server_does_not_allow_it(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli("client", "register", *_common(server, "frank", password="pw")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused to register frank@localhost" in err
