"""The module API from the outside: hosted service domains, filters that fail closed,
observers that cannot break delivery, ``[modules]`` in the config, detachable sessions.

Raw-XML exchanges against a real server with extra test modules loaded beside the default
ones (issue 9, acceptance 2-4).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.jid import JID
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server import delivery, events
from roost.server.api import Module, ModuleContext
from roost.server.app import Server
from roost.server.config import ConfigError
from roost.server.modules import default_modules
from roost.server.session import Session
from roost.storage.api import StoreSchema
from tests.helpers import PASSWORDS, Logins, RawClient, make_config

VERSION = "jabber:iq:version"


@dataclasses.dataclass(frozen=True, slots=True)
class EchoOptions:
    name: str = "Echo service"
    prefix: str = "echo"


class EchoModule:
    """A hosted service on ``echo.DOMAIN``: messages come back, disco#info is answered."""

    name = "echo"
    Options = EchoOptions

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        self.options: EchoOptions = ctx.options
        self.domain = f"{self.options.prefix}.{ctx.default_domain}"
        self.received: list[Element] = []
        ctx.host(self.domain, self, self.options.name)

    def receive(self, stanza: Element, sender: JID, to: JID) -> None:
        self.received.append(stanza)
        if stanza.tag == "message" and stanza.get("type") != "error":
            attrs = {"from": str(to), "to": str(sender), "type": stanza.get("type") or "normal"}
            reply = Element("message", ns.CLIENT, attrs, list(stanza.children))
            self.ctx.route(reply, to, sender)
        elif stanza.tag == "iq" and stanza.get("type") == "get":
            query = Element("query", ns.DISCO_INFO)
            query.sub("identity", attrs={"category": "component", "type": "generic"})
            attrs = {"type": "result", "id": stanza.get("id") or "", "from": str(to)}
            attrs["to"] = str(sender)
            self.ctx.route(Element("iq", ns.CLIENT, attrs, [query]), to, sender)
        elif stanza.tag == "iq" and stanza.get("type") == "set":
            self.ctx.reply_error(stanza, StanzaError(StanzaErrorCondition.NOT_ALLOWED), sender)


class BrokenFilter:
    """Takes messages to a bare JID at the highest priority, and fails on the word 'boom'."""

    name = "broken_filter"

    def setup(self, ctx: ModuleContext) -> None:
        ctx.filter(events.to_bare("message"), self.check, priority=100)

    @staticmethod
    def check(stanza: Element, sender: JID, to: JID) -> bool:
        body = stanza.find("body", ns.CLIENT)
        if body is not None and body.text == "boom":
            raise RuntimeError("this filter is broken")
        return False


class BrokenObserver:
    """Watches every presence broadcast and message to a bare JID, and always fails."""

    name = "broken_observer"

    def __init__(self) -> None:
        self.calls = 0

    def setup(self, ctx: ModuleContext) -> None:
        ctx.observe(events.PRESENCE_BROADCAST, self.fail)
        ctx.observe(events.to_bare("message"), self.fail)

    def fail(self, *args: object) -> None:
        self.calls += 1
        raise RuntimeError("this observer is broken")


class BrokenGate:
    """A privacy gate that fails on every stanza between two users: they must be refused."""

    name = "broken_gate"

    def setup(self, ctx: ModuleContext) -> None:
        ctx.privacy_gate(self)

    def prepare(self, stanza: Element, sender: JID, to: JID, **_: bool) -> object:
        return None

    def check(self, stanza: Element, sender: JID, to: JID, prepared: object, **_: bool) -> None:
        if sender.local is not None and to.local is not None:  # between two users
            raise RuntimeError("this gate is broken")


async def _start(
    tmp_path: Path,
    extra: list[Module],
    *,
    without: tuple[str, ...] = (),
    accounts: bool = True,
    **sections: object,
) -> Server:
    modules = [m for m in default_modules() if m.name not in without] + extra
    srv = Server(make_config(tmp_path, **sections), modules)  # type: ignore[arg-type]
    await srv.start()
    for user, password in PASSWORDS.items() if accounts else ():
        await srv.accounts.create(user, "localhost", password)
    return srv


@pytest.fixture
async def echo_server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await _start(
        tmp_path,
        [EchoModule(), BrokenFilter(), BrokenObserver()],
        without=("mam",),  # exact transcripts: no XEP-0359 stanza-id on delivered messages
        modules={"echo": {"name": "Echoes"}},
    )
    yield srv
    await srv.stop()


async def _login(server: Server, user: str, resource: str) -> RawClient:
    """Logged in, with initial presence sent and reflected (``Logins``)."""
    return await Logins(server)(user, resource)


# -- hosted service domains ----------------------------------------------------------------


async def test_a_hosted_domain_reaches_its_module(echo_server: Server) -> None:
    a = await _login(echo_server, "alice", "a")
    await a.send(
        "<message to='echo.localhost/any' id='m1' type='chat'><body>hello</body></message>"
    )
    got = await a.expect(lambda e: e.tag == "message")
    assert serialize(got) == (
        "<message from='echo.localhost/any' to='alice@localhost/a' type='chat'>"
        "<body>hello</body></message>"
    )
    # an iq to the service domain itself is the module's, not the server's disco
    await a.send(
        f"<iq type='get' id='d1' to='echo.localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>"
    )
    got = await a.expect(lambda e: e.tag == "iq")
    assert serialize(got) == (
        "<iq type='result' id='d1' from='echo.localhost' to='alice@localhost/a'>"
        f"<query xmlns='{ns.DISCO_INFO}'><identity category='component' type='generic'/>"
        "</query></iq>"
    )
    # an error the module answers with goes back through the router to the sender
    await a.send("<iq type='set' id='s1' to='echo.localhost'><query xmlns='urn:x'/></iq>")
    got = await a.expect(lambda e: e.tag == "iq")
    assert got.get("type") == "error" and got.get("from") == "echo.localhost"
    assert got.find("error") is not None
    await a.close()


async def test_hosted_domains_are_listed_in_disco_items(echo_server: Server) -> None:
    """XEP-0030 §4.1: the server's items are its services."""
    a = await _login(echo_server, "alice", "a")
    await a.send(f"<iq type='get' id='i1' to='localhost'><query xmlns='{ns.DISCO_ITEMS}'/></iq>")
    got = await a.expect(lambda e: e.tag == "iq" and e.get("id") == "i1")
    assert serialize(got) == (
        "<iq type='result' id='i1' to='alice@localhost/a' from='localhost'>"
        f"<query xmlns='{ns.DISCO_ITEMS}'><item jid='conference.localhost' name='Chatrooms'/>"
        "<item jid='echo.localhost' name='Echoes'/></query></iq>"
    )
    await a.close()


async def test_an_error_to_a_hosted_jid_reaches_the_module(echo_server: Server) -> None:
    """A bounce for something the service sent is the service's (RFC 6120 §8.3.1)."""
    module = echo_server.module(EchoModule)
    stanza = Element(
        "message", ns.CLIENT, {"from": "echo.localhost/r", "to": "nobody@localhost", "id": "x"}
    )
    stanza.sub("body", text="anyone?")
    echo_server.router.route(stanza, JID.parse("echo.localhost/r"), JID.parse("nobody@localhost"))
    await echo_server.idle()
    assert [e.get("type") for e in module.received] == ["error"]
    assert module.received[0].get("to") == "echo.localhost/r"


class NotesModule:
    """Owns a store with a migration, and keeps host-scoped data for its service domain."""

    name = "notes"
    SCHEMA = StoreSchema("notes", ("CREATE TABLE notes_items (k TEXT PRIMARY KEY, v TEXT);",))

    def setup(self, ctx: ModuleContext) -> None:
        self.ctx = ctx
        ctx.store(self.SCHEMA)
        ctx.host("notes.localhost", self)

    def receive(self, stanza: Element, sender: JID, to: JID) -> None:
        body = stanza.find("body", ns.CLIENT)
        if stanza.tag == "message" and body is not None:
            self.ctx.spawn(self.ctx.storage.set_host_data(to.domain, "notes", "last", body.text))


async def test_a_module_owns_its_store_and_host_data_survives_restart(tmp_path: Path) -> None:
    import sqlite3

    srv = await _start(tmp_path, [NotesModule()])
    try:
        a = await _login(srv, "alice", "a")
        await a.send("<message to='notes.localhost'><body>remember me</body></message>")
        await a.ping()
        await srv.idle()
        await a.close()
    finally:
        await srv.stop()
    with sqlite3.connect(tmp_path / "roost.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        versions = dict(db.execute("SELECT name, version FROM store_versions"))
    assert "notes_items" in tables and versions["notes"] == 1
    srv = await _start(tmp_path, [NotesModule()], accounts=False)  # no second migration
    try:
        assert await srv.storage.get_host_data("notes.localhost", "notes", "last") == "remember me"
    finally:
        await srv.stop()


# -- filters fail closed, observers cannot break anything -------------------------------


async def test_a_filter_that_raises_refuses_the_stanza(
    echo_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    a = await _login(echo_server, "alice", "a")
    b = await _login(echo_server, "bob", "b")
    with caplog.at_level(logging.ERROR, logger="roost.server.bus"):
        await a.send("<message to='bob@localhost' id='m1' type='chat'><body>boom</body></message>")
        got = await a.expect(lambda e: e.tag == "message")
    assert got.get("type") == "error" and got.get("id") == "m1"
    error = got.find("error")
    assert error is not None
    assert error.find("internal-server-error", ns.STANZAS) is not None
    assert "module broken_filter failed on message/bare" in caplog.text
    # bob got nothing: everything the server wrote to him before the pong has arrived
    assert await b.ping() == 0
    # and the filter lets other messages through
    await a.send("<message to='bob@localhost' id='m2' type='chat'><body>fine</body></message>")
    got = await b.expect(lambda e: e.tag == "message")
    assert got.get("id") == "m2"
    await a.close()
    await b.close()


async def test_an_observer_that_raises_changes_nothing(
    echo_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    observer = echo_server.module(BrokenObserver)
    with caplog.at_level(logging.ERROR, logger="roost.server.bus"):
        a = await _login(echo_server, "alice", "a")  # its presence broadcast is observed
        b = await _login(echo_server, "bob", "b")
        await a.send("<message to='bob@localhost' id='m1' type='chat'><body>hi</body></message>")
        got = await b.expect(lambda e: e.tag == "message")
    assert got.get("id") == "m1" and got.get("type") == "chat"
    assert observer.calls >= 3
    assert "module broken_observer failed observing" in caplog.text
    await a.close()
    await b.close()


async def test_a_privacy_gate_that_raises_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Privacy fails closed: a gate that cannot decide lets nothing through."""
    srv = await _start(tmp_path, [BrokenGate()], without=("privacy_lists", "privacy", "blocking"))
    try:
        a = await _login(srv, "alice", "a")
        b = await _login(srv, "bob", "b")
        with caplog.at_level(logging.ERROR, logger="roost.server.router"):
            await a.send(
                "<message to='bob@localhost/b' id='m1' type='chat'><body>x</body></message>"
            )
            got = await a.expect(lambda e: e.tag == "message")
        assert got.get("type") == "error"
        error = got.find("error")
        assert error is not None and error.find("internal-server-error", ns.STANZAS) is not None
        assert "the privacy gate failed" in caplog.text
        assert await b.ping() == 0
        await a.close()
        await b.close()
    finally:
        await srv.stop()


# -- [modules] --------------------------------------------------------------------------


async def test_disabled_module_is_gone_from_disco_and_its_iq_unanswered(tmp_path: Path) -> None:
    """``[modules] disabled = ["version"]``: no XEP-0092 (issue 9, acceptance 4)."""
    srv = await _start(tmp_path, [], modules={"disabled": ["version"]})
    try:
        assert "version" not in [m.name for m in srv.modules]
        a = await _login(srv, "alice", "a")
        await a.send(f"<iq type='get' id='i1' to='localhost'><query xmlns='{ns.DISCO_INFO}'/></iq>")
        info = await a.expect(lambda e: e.tag == "iq" and e.get("id") == "i1")
        query = info.find("query", ns.DISCO_INFO)
        assert query is not None
        features = [f.get("var") for f in query.find_all("feature", ns.DISCO_INFO)]
        assert VERSION not in features and ns.PING in features
        await a.send(f"<iq type='get' id='v1' to='localhost'><query xmlns='{VERSION}'/></iq>")
        got = await a.expect(lambda e: e.tag == "iq" and e.get("id") == "v1")
        assert serialize(got) == (
            "<iq type='error' id='v1' to='alice@localhost/a' from='localhost'>"
            "<error type='cancel' code='503'>"
            f"<service-unavailable xmlns='{ns.STANZAS}'/></error></iq>"
        )
        await a.close()
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    ("modules", "key", "fragment"),
    [
        ({"disabled": ["versoin"]}, "modules.disabled[0]", "no module named 'versoin'"),
        ({"disabled": ["roster"]}, "modules.disabled", "'roster' is needed by"),
        ({"disabled": "version"}, "modules.disabled", "must be a list of strings"),
        ({"nosuch": {"a": 1}}, "modules.nosuch", "no module named 'nosuch'"),
        ({"version": {"a": 1}}, "modules.version.a", "this module takes no options"),
        ({"offline": {"max_messages": 1}}, "modules.offline", "set these options in [offline]"),
        ({"version": 3}, "modules.version", "must be a table of module options"),
    ],
)
def test_bad_modules_table_names_the_key(
    tmp_path: Path, modules: dict[str, object], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Server(make_config(tmp_path, modules=modules))
    assert info.value.key == key
    assert fragment in info.value.message


def test_module_options_are_validated_from_their_table(tmp_path: Path) -> None:
    config = make_config(tmp_path, modules={"echo": {"name": 5}})
    with pytest.raises(ConfigError) as info:
        Server(config, [*default_modules(), EchoModule()])
    assert info.value.key == "modules.echo.name"
    assert "must be a string" in info.value.message


def test_a_module_is_loaded_after_those_it_depends_on(tmp_path: Path) -> None:
    modules = default_modules()
    srv = Server(make_config(tmp_path), list(reversed(modules)))
    names = [m.name for m in srv.modules]
    for module in srv.modules:
        for dep in getattr(module, "depends", ()):
            assert names.index(dep) < names.index(module.name), (module.name, dep)


# -- sessions apart from connections ------------------------------------------------------


class _Stream:
    """A stream that keeps what is written: the seam BOSH and XEP-0198 attach to."""

    encrypted = True
    last_rx = 0.0

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self, error: object = None) -> None:
        pass

    def hold(self, task: object) -> None:
        pass


def test_a_detached_session_keeps_deliveries_until_attached() -> None:
    first = _Stream()
    session = Session(JID.parse("alice@localhost/a"), first)
    msg = Element("message", ns.CLIENT, {"to": "alice@localhost/a", "id": "1"})
    delivery.deliver(session, msg)
    assert first.written == [b"<message to='alice@localhost/a' id='1'/>"]
    assert session.detach() is first
    for i in (2, 3):
        delivery.deliver(session, Element("message", ns.CLIENT, {"id": str(i)}))
    assert len(first.written) == 1
    second = _Stream()
    delivery.attach(session, second)
    delivery.deliver(session, Element("message", ns.CLIENT, {"id": "4"}))
    assert second.written == [
        b"<message id='2'/>",
        b"<message id='3'/>",
        b"<message id='4'/>",
    ]


def test_a_stanza_from_a_server_stream_takes_the_client_namespace() -> None:
    """RFC 6120 §4.8.3: a stanza is written in the namespace of the stream it goes out on."""
    stream = _Stream()
    session = Session(JID.parse("alice@localhost/a"), stream)
    msg = Element("message", ns.SERVER, {"from": "bob@remote.example", "id": "1"})
    msg.sub("body", ns.SERVER, text="hi")
    delivery.deliver(session, msg)
    assert stream.written == [
        b"<message from='bob@remote.example' id='1'><body>hi</body></message>"
    ]
