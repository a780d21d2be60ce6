"""Interop: slixmpp's xep_0050 and xep_0133 plugins run Roost's ad-hoc commands (issue 14,
acceptance 3): as an administrator (``admins``) they succeed, as a normal user the XEP-0133
ones are refused with ``forbidden`` and only ``ping`` and ``uptime`` are listed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from roost.server.app import Server
from tests.helpers import PASSWORDS, start_server
from tests.interop.test_slixmpp import TIMEOUT, Client

ADMIN = "http://jabber.org/protocol/admin"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, admins=["alice@localhost"])
    for user, password in PASSWORDS.items():
        await srv.accounts.create(user, "localhost", password)
    yield srv
    await srv.stop()


async def run(client: Client, command: str, values: dict[str, Any] | None = None) -> Any:
    """Run a command through slixmpp's xep_0133 workflow; the last iq (result or error)."""
    xmpp = client.xmpp
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def finish(iq: Any, session: dict[str, Any]) -> None:
        if iq["type"] == "error":  # slixmpp forgets only completed sessions itself
            xmpp.plugin["xep_0050"].terminate_command(session)
        if not done.done():
            done.set_result(iq)

    def fill(iq: Any, session: dict[str, Any]) -> None:
        if iq["command"]["status"] == "completed":
            finish(iq, session)
            return
        form = xmpp.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
        for var, value in (values or {}).items():
            form.add_field(var=var, value=value)
        session["payload"] = form
        session["next"] = finish
        xmpp.plugin["xep_0050"].complete_command(session)

    session = {"next": fill, "error": finish}
    if command in ("ping", "uptime"):
        xmpp.plugin["xep_0050"].start_command("localhost", command, session)
    else:
        getattr(xmpp.plugin["xep_0133"], command.replace("-", "_"))(session=session)
    return await asyncio.wait_for(done, TIMEOUT)


def note(iq: Any) -> tuple[str, str]:
    notes = iq["command"]["notes"]
    assert len(notes) == 1, iq
    return notes[0]


async def test_admin_commands(clients: Callable[..., Client], server: Server) -> None:
    alice = clients("alice", plugins=("xep_0050", "xep_0133"))
    await alice.start()
    items = await alice.xmpp.plugin["xep_0133"].get_commands(timeout=TIMEOUT)
    nodes = {node for _, node, _ in items["disco_items"]["items"]}
    assert {"ping", "uptime", f"{ADMIN}#add-user", f"{ADMIN}#announce"} <= nodes

    iq = await run(
        alice,
        "add-user",
        {"accountjid": "dave@localhost", "password": "dave-pw", "password-verify": "dave-pw"},
    )
    assert iq["type"] == "result" and iq["command"]["status"] == "completed"
    assert note(iq) == ("info", "dave@localhost was added")
    assert await server.accounts.check_password("dave", "localhost", "dave-pw")

    iq = await run(alice, "add-user", {"accountjid": "dave@localhost", "password": "x"})
    assert note(iq) == ("error", "dave@localhost already exists")

    iq = await run(
        alice, "change-user-password", {"accountjid": "dave@localhost", "password": "new-pw"}
    )
    assert note(iq)[0] == "info"
    assert await server.accounts.check_password("dave", "localhost", "new-pw")

    bob = clients("bob", plugins=("xep_0050",))
    await bob.start()
    iq = await run(alice, "get-online-users-list", {"max_items": "none"})
    assert iq["command"]["form"]["values"]["onlineuserjids"] == ["alice@localhost", "bob@localhost"]
    iq = await run(alice, "get-online-users-num")
    assert iq["command"]["form"]["values"]["onlineusersnum"] == "2"

    iq = await run(alice, "announce", {"subject": "Maintenance", "announcement": "At noon"})
    assert note(iq) == ("info", "sent to 2 sessions")
    msg = await asyncio.wait_for(bob.messages.get(), TIMEOUT)
    assert (msg["type"], msg["subject"], msg["body"]) == ("headline", "Maintenance", "At noon")
    assert str(msg["from"]) == "localhost"

    # Deleting an account ends its live session (issue 14).
    iq = await run(alice, "delete-user", {"accountjids": ["bob@localhost"]})
    assert note(iq) == ("info", "deleted bob@localhost")
    await asyncio.wait_for(bob.disconnected.wait(), TIMEOUT)
    assert not await server.accounts.exists("bob", "localhost")

    iq = await run(alice, "ping")
    assert note(iq) == ("info", "Pong")


async def test_normal_user_is_forbidden(clients: Callable[..., Client]) -> None:
    carol = clients("carol", plugins=("xep_0050", "xep_0133"))
    await carol.start()
    items = await carol.xmpp.plugin["xep_0133"].get_commands(timeout=TIMEOUT)
    assert sorted(node for _, node, _ in items["disco_items"]["items"]) == ["ping", "uptime"]
    for command in (
        "add-user",
        "delete-user",
        "change-user-password",
        "get-online-users-list",
        "announce",
    ):
        iq = await run(carol, command, {"accountjid": "carol@localhost"})
        assert iq["type"] == "error", command
        assert iq["error"]["condition"] == "forbidden", command
    iq = await run(carol, "uptime")
    assert note(iq)[1].startswith("This server has been running for ")
    iq = await run(carol, "ping")
    assert note(iq) == ("info", "Pong")
