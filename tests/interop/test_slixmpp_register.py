"""Interop: slixmpp's own xep_0077 (in-band registration) and xep_0030 (disco) plugins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roost.server.app import Server
from tests.helpers import start_server
from tests.interop.test_slixmpp import TIMEOUT, Client


@pytest.fixture
async def open_server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, registration={"enabled": True})
    yield srv
    await srv.stop()


async def test_register_change_password_cancel(open_server: Server) -> None:
    """Acceptance: slixmpp registers a new account, changes its password, cancels it."""
    srv = open_server
    c = Client(
        srv, "newbie", password="first-pw", plugins=("xep_0030", "xep_0004", "xep_0066", "xep_0077")
    )
    xmpp = c.xmpp
    xmpp.plugin["xep_0077"].force_registration = True
    registered = asyncio.Event()

    async def register(form: Any) -> None:
        iq = xmpp.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = xmpp.boundjid.user
        iq["register"]["password"] = xmpp.password
        await iq.send(timeout=TIMEOUT)
        registered.set()

    xmpp.add_event_handler("register", register)
    try:
        await c.start()
        assert registered.is_set()
        assert await srv.accounts.exists("newbie", "localhost")
        await xmpp.plugin["xep_0077"].change_password("second-pw", timeout=TIMEOUT)
        assert await srv.accounts.check_password("newbie", "localhost", "second-pw")
        assert not await srv.accounts.check_password("newbie", "localhost", "first-pw")
        await xmpp.plugin["xep_0077"].cancel_registration(timeout=TIMEOUT)
        await asyncio.wait_for(c.disconnected.wait(), TIMEOUT)
        assert not await srv.accounts.exists("newbie", "localhost")
    finally:
        await c.stop()


async def test_disco_info_and_items(server: Server) -> None:
    c = Client(server, "alice", plugins=("xep_0030",))
    try:
        await c.start()
        info = await c.xmpp.plugin["xep_0030"].get_info(jid="localhost", timeout=TIMEOUT)
        features = set(info["disco_info"]["features"])
        assert {"urn:xmpp:ping", "http://jabber.org/protocol/disco#info"} <= features
        identities = info["disco_info"]["identities"]
        assert ("server", "im", None, "Roost") in identities
        items = await c.xmpp.plugin["xep_0030"].get_items(jid="localhost", timeout=TIMEOUT)
        # the services hosted here: group chat (XEP-0045)
        assert set(items["disco_items"]["items"]) == {("conference.localhost", None, "Chatrooms")}
        own = await c.xmpp.plugin["xep_0030"].get_info(jid="alice@localhost", timeout=TIMEOUT)
        assert ("account", "registered", None, None) in own["disco_info"]["identities"]
    finally:
        await c.stop()
