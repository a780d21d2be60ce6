"""XEP-0050 ad-hoc commands and XEP-0133 administration, raw XML (issue 14)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from tests.helpers import PASSWORDS, RawClient, start_server

CMD = "http://jabber.org/protocol/commands"
DATA = "jabber:x:data"
ADD_USER = "http://jabber.org/protocol/admin#add-user"
PASSWD = "http://jabber.org/protocol/admin#change-user-password"


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start_server(tmp_path, admins=["alice@localhost"])
    for user, password in PASSWORDS.items():
        await server.accounts.create(user, "localhost", password)
    yield server
    await server.stop()


async def login(srv: Server, user: str, resource: str = "r") -> RawClient:
    client = await RawClient.connect(srv)
    await client.login(user, PASSWORDS[user], resource)
    return client


async def command(client: RawClient, node: str, extra: str = "", **attrs: str) -> Element:
    attr = "".join(f" {k}='{v}'" for k, v in attrs.items())
    await client.send(
        f"<iq type='set' id='c' to='localhost'><command xmlns='{CMD}' node='{node}'{attr}>"
        f"{extra}</command></iq>"
    )
    return await client.expect(lambda e: e.tag == "iq" and e.get("id") == "c")


def error_of(iq: Element) -> tuple[str, ...]:
    assert iq.get("type") == "error", serialize(iq)
    err = iq.find("error")
    assert err is not None
    return tuple(c.tag for c in err.elements() if c.tag != "text")


def submit(**fields: str) -> str:
    body = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
    return f"<x xmlns='{DATA}' type='submit'>{body}</x>"


async def test_discovery(srv: Server) -> None:
    carol = await login(srv, "carol")
    await carol.send(f"<iq type='get' id='i' to='localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>")
    info = await carol.next()
    assert CMD in [f.get("var") for f in info.find("query").find_all("feature")]  # type: ignore[union-attr]
    await carol.send(
        f"<iq type='get' id='n' to='localhost'><query xmlns='{ns.DISCO_INFO}' node='ping'/></iq>"
    )
    assert serialize(await carol.next()) == (
        "<iq type='result' id='n' to='carol@localhost/r' from='localhost'>"
        f"<query xmlns='{ns.DISCO_INFO}' node='ping'>"
        "<identity category='automation' type='command-node' name='Ping'/>"
        f"<feature var='{CMD}'/><feature var='{DATA}'/></query></iq>"
    )
    await carol.send(
        f"<iq type='get' id='x' to='localhost'><query xmlns='{ns.DISCO_ITEMS}' node='nope'/></iq>"
    )
    assert error_of(await carol.next()) == ("item-not-found",)


async def test_run_and_errors(srv: Server) -> None:
    carol = await login(srv, "carol")
    reply = await command(carol, "ping", action="execute")
    done = reply.find("command", CMD)
    assert done is not None and done.get("status") == "completed"
    assert serialize(done.find("note")) == f"<note xmlns='{CMD}' type='info'>Pong</note>"  # type: ignore[arg-type]
    assert error_of(await command(carol, "nope")) == ("item-not-found",)
    assert error_of(await command(carol, ADD_USER)) == ("forbidden",)

    alice = await login(srv, "alice")
    started = (await command(alice, ADD_USER)).find("command", CMD)
    assert started is not None and started.get("status") == "executing"
    sid = started.get("sessionid")
    assert sid
    actions = started.find("actions", CMD)
    assert actions is not None and actions.get("execute") == "complete"
    form = started.find("x", DATA)
    assert form is not None and form.get("type") == "form"
    assert {f.get("var") for f in form.find_all("field", DATA)} == {
        "FORM_TYPE",
        "accountjid",
        "password",
        "password-verify",
    }
    # another JID cannot continue alice's command (XEP-0050 §4.6 bad-sessionid)
    other = await command(carol, "ping", sessionid=sid, action="complete")
    assert error_of(other) == ("bad-request", "bad-sessionid")
    assert error_of(await command(alice, ADD_USER, action="fly")) == (
        "bad-request",
        "malformed-action",
    )
    canceled = (await command(alice, ADD_USER, sessionid=sid, action="cancel")).find("command")
    assert canceled is not None and canceled.get("status") == "canceled"
    gone = await command(alice, ADD_USER, submit(accountjid="x@localhost"), sessionid=sid)
    assert error_of(gone) == ("bad-request", "bad-sessionid")

    # a full run, and an input error answered as a stanza error
    sid = (await command(alice, ADD_USER)).find("command").get("sessionid")  # type: ignore[union-attr]
    bad = submit(accountjid="x@elsewhere.example", password="pw")
    assert error_of(await command(alice, ADD_USER, bad, sessionid=sid, action="complete")) == (
        "bad-request",
    )
    sid = (await command(alice, ADD_USER)).find("command").get("sessionid")  # type: ignore[union-attr]
    ok = submit(accountjid="erin@localhost", password="erin-pw", **{"password-verify": "erin-pw"})
    done = (await command(alice, ADD_USER, ok, sessionid=sid, action="complete")).find("command")
    assert done is not None and done.get("status") == "completed"
    assert done.find("note").text == "erin@localhost was added"  # type: ignore[union-attr]
    assert await srv.accounts.check_password("erin", "localhost", "erin-pw")


async def test_admin_changes_own_password_keeps_this_session(srv: Server) -> None:
    alice = await login(srv, "alice", "desk")
    phone = await login(srv, "alice", "phone")
    sid = (await command(alice, PASSWD)).find("command").get("sessionid")  # type: ignore[union-attr]
    form = submit(accountjid="alice@localhost", password="new-pw")
    done = (await command(alice, PASSWD, form, sessionid=sid)).find("command")
    assert done is not None and done.get("status") == "completed", serialize(done)  # type: ignore[arg-type]
    assert await phone.stream_error() == "reset"
    await alice.ping()
    assert await srv.accounts.check_password("alice", "localhost", "new-pw")
