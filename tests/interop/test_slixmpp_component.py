"""slixmpp's ``ComponentXMPP`` attaches to Roost through XEP-0114 and talks to a user.

The server fixture here configures a component domain; the user is a slixmpp client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.componentxmpp import ComponentXMPP

from roost.server.app import Server
from tests.helpers import PASSWORDS, TIMEOUT, start_server
from tests.interop.test_slixmpp import first_of

SECRET = "secret shared with the echo component"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(
        tmp_path, components={"port": 0, "secrets": {"echo.localhost": SECRET}}
    )
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    yield srv
    await srv.stop()


class Echo:
    """A component that answers every chat message with the same body, reversed."""

    def __init__(self, server: Server) -> None:
        self.xmpp = ComponentXMPP(
            "echo.localhost", SECRET, "127.0.0.1", server.port(kind="component")
        )
        self.xmpp.loop = asyncio.get_running_loop()
        self.started = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.received: asyncio.Queue[Any] = asyncio.Queue()
        self.xmpp.add_event_handler("session_start", lambda _: self.started.set())
        self.xmpp.add_event_handler("disconnected", lambda _: self.disconnected.set())
        self.xmpp.add_event_handler("message", self._message)

    def _message(self, msg: Any) -> None:
        self.received.put_nowait(msg)
        if msg["type"] in ("chat", "normal"):
            msg.reply(msg["body"][::-1]).send()

    async def start(self) -> None:
        self.xmpp.connect()
        await asyncio.wait_for(first_of(self.started.wait(), self.disconnected.wait()), TIMEOUT)
        assert self.started.is_set(), "the component could not attach"

    async def stop(self) -> None:
        self.xmpp.disconnect()
        await asyncio.wait_for(self.disconnected.wait(), TIMEOUT)


async def test_component_and_user_exchange_messages(server: Server, clients: Any) -> None:
    echo = Echo(server)
    await echo.start()
    alice = clients("alice", resource="a")
    await alice.start()
    try:
        alice.xmpp.send_message(mto="echo.localhost", mbody="hello", mtype="chat")
        got = await asyncio.wait_for(echo.received.get(), TIMEOUT)
        assert str(got["from"]) == "alice@localhost/a" and got["body"] == "hello"
        answer = await asyncio.wait_for(alice.messages.get(), TIMEOUT)
        assert str(answer["from"]) == "echo.localhost" and answer["body"] == "olleh"
        # the component may speak for any JID at its domain, first
        echo.xmpp.send_message(
            mto="alice@localhost/a", mfrom="bot@echo.localhost", mbody="ping?", mtype="chat"
        )
        got = await asyncio.wait_for(alice.messages.get(), TIMEOUT)
        assert str(got["from"]) == "bot@echo.localhost" and got["body"] == "ping?"
    finally:
        await echo.stop()
