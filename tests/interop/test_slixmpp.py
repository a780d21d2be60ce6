"""Interop: slixmpp (the reference Python client) against a real Roost server.

Acceptance: two slixmpp clients connect with STARTTLS and with Direct TLS, authenticate with
SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN, bind, and exchange messages both ways.

Notes on slixmpp 1.17 that shape these tests:

* ``ClientXMPP(..., loop=...)`` pins the client to the test's running loop.
* ``connect(host, port)`` with an explicit address tries Direct TLS first, then STARTTLS; the
  ``enable_direct_tls`` / ``enable_starttls`` flags pick exactly one.
* The ``sasl_mech`` constructor argument is ignored; the ``feature_mechanisms`` plugin's
  ``use_mech`` setting limits the choice, and ``plugin['feature_mechanisms'].mech`` is the
  mechanism actually used.
* SCRAM-PLUS: slixmpp binds with ``tls-unique`` below TLS 1.3 and with ``tls-exporter`` on
  TLS 1.3 only if Python's ``ssl`` offers it (CPython 3.11 does not, gh-95341), and otherwise
  falls back to plain SCRAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

from roost.server.app import Server
from tests.conftest import PASSWORDS
from tests.helpers import start_server

TIMEOUT = 10.0
TRANSPORTS = ("starttls", "direct_tls")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
OTHER = {"starttls": "direct_tls", "direct_tls": "starttls"}
# Markup characters and non-ASCII text must survive escaping both ways.
BODY_TO_BOB = "hello bob <&> 'quoted' \"double\" héllo ☃ 🐦"
BODY_TO_ALICE = "hi alice ]]> &amp; literally ünïcode"


class Client:
    """One slixmpp ``ClientXMPP`` on the test's loop, its events turned into awaitables."""

    def __init__(
        self,
        server: Server,
        user: str,
        *,
        transport: str = "starttls",
        mechanism: str | None = None,
        password: str | None = None,
        resource: str | None = None,
        plugins: tuple[str, ...] = (),
        max_tls: ssl.TLSVersion | None = None,
    ) -> None:
        jid = f"{user}@localhost" + (f"/{resource}" if resource else "")
        plugin_config = {"feature_mechanisms": {"use_mech": mechanism}} if mechanism else {}
        self.server = server
        self.transport = transport
        self.xmpp = xmpp = slixmpp.ClientXMPP(
            jid,
            PASSWORDS[user] if password is None else password,
            plugin_config=plugin_config,
            loop=asyncio.get_running_loop(),
        )
        for plugin in plugins:
            xmpp.register_plugin(plugin)
        # Self-signed certificate.
        xmpp.ssl_context.check_hostname = False
        xmpp.ssl_context.verify_mode = ssl.CERT_NONE
        if max_tls is not None:
            xmpp.ssl_context.maximum_version = max_tls
        xmpp.enable_plaintext = False
        xmpp.enable_direct_tls = transport == "direct_tls"
        xmpp.enable_starttls = transport == "starttls"

        self.session_started = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.failed_all_auth = asyncio.Event()
        self.failed_auths: list[Any] = []
        self.disconnect_reasons: list[Any] = []
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        xmpp.add_event_handler("session_start", lambda _: self.session_started.set())
        xmpp.add_event_handler("disconnected", self._on_disconnected)
        xmpp.add_event_handler("failed_auth", self.failed_auths.append)
        xmpp.add_event_handler("failed_all_auth", lambda _: self.failed_all_auth.set())
        xmpp.add_event_handler("message", self.messages.put_nowait)

    def _on_disconnected(self, reason: Any) -> None:
        self.disconnect_reasons.append(reason)
        self.disconnected.set()

    def connect(self) -> None:
        port = self.server.port(direct_tls=self.transport == "direct_tls")
        self.xmpp.connect("127.0.0.1", port)

    async def start(self) -> None:
        """Connect and wait for session_start (failing early if the stream ends first)."""
        self.connect()
        await first_of(self.session_started.wait(), self.disconnected.wait())
        assert self.session_started.is_set(), (
            f"no session: failed_auth={[str(f) for f in self.failed_auths]}"
        )

    @property
    def mechanism(self) -> str:
        mech = self.xmpp.plugin["feature_mechanisms"].mech
        assert mech is not None
        return str(mech.name)

    @property
    def offered(self) -> set[str]:
        return set(self.xmpp.plugin["feature_mechanisms"].mech_list)

    @property
    def tls_version(self) -> str | None:
        sock = self.xmpp.socket
        return sock.version() if isinstance(sock, ssl.SSLObject | ssl.SSLSocket) else None

    async def next_message(self) -> Any:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    async def ping(self) -> None:
        """A XEP-0199 ping round trip to the server."""
        iq = self.xmpp.make_iq_get(ito="localhost")
        iq.append(ET.Element("{urn:xmpp:ping}ping"))
        await iq.send(timeout=TIMEOUT)

    async def barrier(self) -> None:
        """Wait until whatever the server sends this client for what was sent so far has
        been handled here, however slow the server is: a ping round trip (the server has
        handled this client's stanzas), ``server.idle()`` (and the work they spawned), and
        another ping round trip (the server writes to a stream in order, and slixmpp runs
        plain-function event handlers as each stanza arrives, before the pong's).
        """
        await self.ping()
        await self.server.idle()
        await self.ping()

    async def stop(self) -> None:
        """Close the stream and wait for the connection to end; idempotent."""
        self.xmpp.cancel_connection_attempt()
        if self.xmpp.transport is not None:
            self.xmpp.disconnect(wait=TIMEOUT)
            await asyncio.wait_for(self.disconnected.wait(), TIMEOUT + 1)
        # slixmpp's send loop runs until the client object is collected; end it with the test.
        task = self.xmpp._run_out_filters
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def first_of(*aws: Awaitable[Any]) -> None:
    """Wait (bounded by TIMEOUT) until the first of several awaitables finishes."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        assert done, "timed out"
    finally:
        for t in tasks:
            t.cancel()


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_clients_exchange_messages(
    clients: Callable[..., Client], transport: str, mechanism: str
) -> None:
    # alice on the transport under test with a chosen resource; bob on the other transport
    # with a server-generated resource (RFC 6120 §7.6).
    alice = clients("alice", transport=transport, mechanism=mechanism, resource="slix-a")
    bob = clients("bob", transport=OTHER[transport], mechanism=mechanism)
    await asyncio.gather(alice.start(), bob.start())

    for client in (alice, bob):
        assert client.mechanism == mechanism
        assert client.failed_auths == []
        assert client.tls_version is not None
        assert client.xmpp.authenticated
    assert str(alice.xmpp.boundjid) == "alice@localhost/slix-a"
    assert bob.xmpp.boundjid.bare == "bob@localhost"
    assert bob.xmpp.boundjid.resource

    alice.xmpp.send_message(mto=bob.xmpp.boundjid, mbody=BODY_TO_BOB, mtype="chat")
    msg = await bob.next_message()
    assert str(msg["from"]) == str(alice.xmpp.boundjid)  # RFC 6120 §8.1.2.1: full JID
    assert str(msg["to"]) == str(bob.xmpp.boundjid)
    assert msg["type"] == "chat"
    assert msg["body"] == BODY_TO_BOB

    bob.xmpp.send_message(mto=alice.xmpp.boundjid, mbody=BODY_TO_ALICE, mtype="chat")
    msg = await alice.next_message()
    assert str(msg["from"]) == str(bob.xmpp.boundjid)
    assert str(msg["to"]) == str(alice.xmpp.boundjid)
    assert msg["type"] == "chat"
    assert msg["body"] == BODY_TO_ALICE

    # A clean close: the server answers with its own </stream:stream> (RFC 6120 §4.4), which
    # slixmpp reports as "End of stream" (a timeout would give no reason).
    await asyncio.gather(alice.stop(), bob.stop())
    assert alice.disconnect_reasons == ["End of stream"]
    assert bob.disconnect_reasons == ["End of stream"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_wrong_password_fails_auth(clients: Callable[..., Client], mechanism: str) -> None:
    alice = clients("alice", mechanism=mechanism, password="not-" + PASSWORDS["alice"])
    alice.connect()
    await asyncio.wait_for(alice.failed_all_auth.wait(), TIMEOUT)
    await asyncio.wait_for(alice.disconnected.wait(), TIMEOUT)

    assert not alice.session_started.is_set()
    assert not alice.xmpp.authenticated
    assert len(alice.failed_auths) == 1
    failure = alice.failed_auths[0]
    assert failure["condition"] == "not-authorized"  # RFC 6120 §6.5.10
    assert alice.mechanism == mechanism


async def test_ping_server(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0199",))
    await alice.start()
    ping = alice.xmpp.plugin["xep_0199"]

    rtt = await ping.ping(jid=slixmpp.JID("localhost"), timeout=TIMEOUT)
    assert rtt >= 0

    reply = await ping.send_ping(slixmpp.JID("localhost"), timeout=TIMEOUT)
    assert reply["type"] == "result"
    assert str(reply["from"]) == "localhost"

    # No jid: slixmpp pings its own server.
    assert await ping.ping(timeout=TIMEOUT) >= 0


async def test_ping_unknown_domain_is_an_error(clients: Callable[..., Client]) -> None:
    alice = clients("alice", plugins=("xep_0199",))
    await alice.start()
    with pytest.raises((IqError, IqTimeout)) as info:
        await alice.xmpp.plugin["xep_0199"].send_ping(
            slixmpp.JID("nowhere.invalid"), timeout=TIMEOUT
        )
    # Federation is not available: an error reply, never silence (RFC 6120 §10.4.3).
    assert isinstance(info.value, IqError)
    assert info.value.iq["error"]["condition"] == "remote-server-not-found"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unrestricted_choice(clients: Callable[..., Client], transport: str) -> None:
    """With no limit, slixmpp picks the strongest mechanism it can use among those offered."""
    alice = clients("alice", transport=transport)
    await alice.start()
    assert alice.offered >= {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
    if alice.tls_version == "TLSv1.3" and "tls-exporter" not in ssl.CHANNEL_BINDING_TYPES:
        # slixmpp cancels -PLUS locally, without a failed exchange, and uses SCRAM-SHA-256.
        assert alice.mechanism == "SCRAM-SHA-256"
        assert alice.failed_auths == []
    else:
        assert alice.mechanism.startswith("SCRAM-SHA-256")


async def test_scram_plus_used_automatically(clients: Callable[..., Client]) -> None:
    if "tls-exporter" not in ssl.CHANNEL_BINDING_TYPES:
        pytest.skip(
            "slixmpp 1.17 gets TLS 1.3 channel binding from ssl.get_channel_binding"
            "('tls-exporter'), which this Python does not provide "
            f"(ssl.CHANNEL_BINDING_TYPES={ssl.CHANNEL_BINDING_TYPES}, CPython gh-95341)"
        )
    alice = clients("alice")
    await alice.start()
    assert "SCRAM-SHA-256-PLUS" in alice.offered
    assert alice.tls_version == "TLSv1.3"
    assert alice.mechanism == "SCRAM-SHA-256-PLUS"
    assert alice.failed_auths == []


async def test_tls12_tls_unique_falls_back(clients: Callable[..., Client]) -> None:
    """On TLS 1.2 slixmpp tries -PLUS with tls-unique, which Roost does not offer (it offers
    tls-server-end-point); the failed attempts must leave room to retry (RFC 6120 §6.4.5)
    and SCRAM-SHA-256 then succeeds."""
    alice = clients("alice", max_tls=ssl.TLSVersion.TLSv1_2)
    await alice.start()
    assert alice.tls_version == "TLSv1.2"
    assert "SCRAM-SHA-256-PLUS" in alice.offered
    if alice.mechanism == "SCRAM-SHA-256-PLUS":
        assert alice.failed_auths == []  # the server learnt tls-unique
    else:
        assert alice.mechanism == "SCRAM-SHA-256"
        assert 1 <= len(alice.failed_auths) <= 2  # one per -PLUS mechanism tried
        for failure in alice.failed_auths:
            assert failure["condition"] == "not-authorized"


async def test_idle_sessions_hibernate_and_chat_on(tmp_path: Path) -> None:
    """slixmpp sessions keep chatting after the server freed their idle XML parsers."""
    srv = await start_server(tmp_path, c2s={"hibernate_after": 0.2})
    for user in ("alice", "bob"):
        await srv.accounts.create(user, "localhost", PASSWORDS[user])
    alice = Client(srv, "alice", resource="a")
    bob = Client(srv, "bob", transport="direct_tls", resource="b")
    try:
        await asyncio.gather(alice.start(), bob.start())
        for _ in range(2):  # twice: the second wake-up starts from a parser made by the first
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while srv.awake:  # every session, both of them, is hibernating
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            alice.xmpp.send_message(mto="bob@localhost/b", mbody=BODY_TO_BOB, mtype="chat")
            assert (await bob.next_message())["body"] == BODY_TO_BOB
            bob.xmpp.send_message(mto="alice@localhost/a", mbody=BODY_TO_ALICE, mtype="chat")
            assert (await alice.next_message())["body"] == BODY_TO_ALICE
    finally:
        await asyncio.gather(alice.stop(), bob.stop())
        await srv.stop()
    assert alice.disconnect_reasons == ["End of stream"]
