"""The client stream negotiation machine, sans-IO, driven against the server machine in memory.

Bytes go back and forth between a ``ClientStream`` and a ``ServerStream`` with no socket in
between; TLS is faked by calling ``tls_started`` on both with the same binding bytes. Edge
cases the server machine never produces use a scripted server. Every row of ``TRANSITIONS``
is walked by some test here; the last test checks that.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Iterator

import pytest

from roost.core import ns
from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.sasl import derive_credentials, verify_password
from roost.core.stream.client import (
    TRANSITIONS,
    Authenticated,
    AuthFailed,
    Bound,
    ClientEvent,
    ClientStream,
    ClientStreamSettings,
    Registered,
    RegistrationRefused,
    StanzaReceived,
    State,
    StreamEnded,
    TLSMode,
    TLSRequested,
)
from roost.core.stream.server import (
    BindRequested,
    CredentialsNeeded,
    PasswordCheckNeeded,
    PreAuthStanza,
    ServerStream,
    ServerStreamSettings,
)
from roost.core.stream.server import State as ServerState
from roost.core.stream.server import StreamEnded as ServerStreamEnded
from roost.core.stream.server import StreamEvent as ServerEvent
from roost.core.xml.element import Element

SALT = b"0123456789abcdef"
CREDS = {h: derive_credentials(h, "pw", SALT, 4096) for h in ("sha1", "sha256")}
CB = {"tls-exporter": b"e" * 32, "tls-server-end-point": b"s" * 32}
REGISTER = "jabber:iq:register"

visited: set[tuple[State, State]] = set()


@pytest.fixture(autouse=True)
def record_transitions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original = ClientStream._go

    def go(self: ClientStream, new: State) -> None:
        visited.add((self.state, new))
        original(self, new)

    monkeypatch.setattr(ClientStream, "_go", go)
    yield


def nonces() -> Iterator[str]:
    return (f"clientnonce{n:04d}" for n in itertools.count())


def client_settings(**kw: object) -> ClientStreamSettings:
    base: dict[str, object] = {
        "username": "alice",
        "domain": "localhost",
        "password": "pw",
        "resource": "r",
    }
    base.update(kw)
    return ClientStreamSettings(**base)  # type: ignore[arg-type]


class Pair:
    """A client and a server stream wired together in memory."""

    def __init__(
        self,
        client_cb: dict[str, bytes] | None = None,
        server_cb: dict[str, bytes] | None = None,
        register_reply: str | None = None,
        server: dict[str, object] | None = None,
        **client_kw: object,
    ) -> None:
        gen = nonces()
        self.client = ClientStream(client_settings(**client_kw), lambda: next(gen))
        counter = itertools.count()
        settings = ServerStreamSettings(
            domains=frozenset({"localhost"}),
            preauth_iq_namespaces=frozenset({REGISTER}),
            **(server or {}),  # type: ignore[arg-type]
        )
        direct = self.client.settings.tls is TLSMode.DIRECT
        self.server = ServerStream(settings, lambda: f"id{next(counter):04d}", encrypted=direct)
        self.client_cb = CB if client_cb is None else client_cb
        self.server_cb = CB if server_cb is None else server_cb
        self.register_reply = register_reply
        self.events: list[ClientEvent] = []
        self.server_events: list[ServerEvent] = []
        self.tamper: Callable[[bytes], bytes] = lambda data: data
        if direct:
            self.events += self.client.tls_started(self.client_cb)
            self.server.tls_started(self.server_cb)

    def run(self, rounds: int = 30) -> list[ClientEvent]:
        if self.client.state is State.INITIAL:
            self.events += self.client.start()
        for _ in range(rounds):
            c2s = self.client.data_to_send()
            if c2s:
                self._server(self.server.receive_data(c2s))
            s2c = self.server.data_to_send()
            s2c = self.tamper(s2c)
            if s2c:
                self._client(self.client.receive_data(s2c))
            if not c2s and not s2c:
                break
        return self.events

    def _client(self, evs: list[ClientEvent]) -> None:
        self.events += evs
        for ev in evs:
            if isinstance(ev, TLSRequested):
                # Both ends finish the (fake) handshake with the same channel-binding data.
                self.server.tls_started(self.server_cb)
                self.events += self.client.tls_started(self.client_cb)

    def _server(self, evs: list[ServerEvent]) -> None:
        self.server_events += evs
        for ev in evs:
            if isinstance(ev, CredentialsNeeded):
                creds = CREDS[ev.hash_name] if ev.username == "alice" else None
                self._server(self.server.provide_credentials(creds))
            elif isinstance(ev, PasswordCheckNeeded):
                ok = ev.username == "alice" and verify_password(
                    CREDS["sha256"], "sha256", ev.password
                )
                self._server(self.server.password_checked(ok))
            elif isinstance(ev, BindRequested):
                self.server.bind_succeeded(ev.iq_id, f"alice@localhost/{ev.resource or 'gen'}")
            elif isinstance(ev, PreAuthStanza):
                self._register(ev.element)

    def _register(self, iq: Element) -> None:
        reply = Element("iq", ns.CLIENT, {"id": iq.get("id") or "", "type": "result"})
        if self.register_reply is not None:
            reply.attrs["type"] = "error"
            err = reply.sub("error", attrs={"type": "cancel"})
            err.sub(self.register_reply, ns.STANZAS)
        self.server.send_stanza(reply)


def kinds(events: list[ClientEvent]) -> list[type]:
    return [type(e) for e in events]


# -- full negotiations ------------------------------------------------------------------------


def test_starttls_scram_plus_bind_and_stanzas() -> None:
    p = Pair()
    evs = p.run()
    assert evs == [
        TLSRequested(),
        Authenticated("SCRAM-SHA-256-PLUS"),
        Bound("alice@localhost/r"),
    ]
    assert p.client.state is State.READY and p.server.state is ServerState.READY
    assert p.client.encrypted and p.client.mechanism == "SCRAM-SHA-256-PLUS"
    assert p.client.stream_id == p.server.stream_id
    # stanzas both ways
    p.client.send_stanza(Element("message", ns.CLIENT, {"to": "bob@localhost"}))
    arrived = p.server.receive_data(p.client.data_to_send())
    assert len(arrived) == 1 and isinstance(arrived[0], StanzaReceived)
    assert arrived[0].element.get("to") == "bob@localhost"
    p.server.send_raw(b"<message from='bob@localhost/x' type='chat'><body>hi</body></message>")
    (got,) = p.client.receive_data(p.server.data_to_send())
    assert isinstance(got, StanzaReceived)
    body = got.element.find("body")
    assert body is not None and body.text == "hi"


@pytest.mark.parametrize(
    ("mechanisms", "client_cb", "server_mechs", "expected"),
    [
        (("SCRAM-SHA-1-PLUS",), CB, None, "SCRAM-SHA-1-PLUS"),
        (("SCRAM-SHA-256-PLUS",), {"tls-server-end-point": b"s" * 32}, None, "SCRAM-SHA-256-PLUS"),
        # bindings but no -PLUS offered: SCRAM with the "y" flag (RFC 5802 §6)
        (("SCRAM-SHA-256",), CB, ("SCRAM-SHA-256",), "SCRAM-SHA-256"),
        # -PLUS offered, we choose not to bind: the "n" flag
        (("SCRAM-SHA-256",), CB, None, "SCRAM-SHA-256"),
        (("SCRAM-SHA-1",), {}, None, "SCRAM-SHA-1"),
        (("PLAIN",), CB, None, "PLAIN"),
        # -PLUS wanted but the connection has no bindings: falls through to plain SCRAM
        (("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), {}, None, "SCRAM-SHA-256"),
    ],
)
def test_mechanism_choice(
    mechanisms: tuple[str, ...],
    client_cb: dict[str, bytes],
    server_mechs: tuple[str, ...] | None,
    expected: str,
) -> None:
    server = {"mechanisms": server_mechs} if server_mechs else None
    p = Pair(client_cb=client_cb, server_cb=client_cb, server=server, mechanisms=mechanisms)
    evs = p.run()
    assert Authenticated(expected) in evs
    assert isinstance(evs[-1], Bound)


def test_direct_tls_no_starttls() -> None:
    p = Pair(tls=TLSMode.DIRECT)
    evs = p.run()
    assert evs == [Authenticated("SCRAM-SHA-256-PLUS"), Bound("alice@localhost/r")]


def test_direct_tls_needs_tls_started_first() -> None:
    c = ClientStream(client_settings(tls=TLSMode.DIRECT), lambda: "n")
    with pytest.raises(RuntimeError):
        c.start()


def test_no_tls_when_the_server_allows_it() -> None:
    p = Pair(tls=TLSMode.NONE, server={"require_encryption": False, "tls_available": False})
    evs = p.run()
    # PLAIN is never used in the clear; no bindings, so plain SCRAM
    assert evs == [Authenticated("SCRAM-SHA-256"), Bound("alice@localhost/r")]
    assert not p.client.encrypted


def test_server_picks_the_resource() -> None:
    p = Pair(resource=None)
    assert p.run()[-1] == Bound("alice@localhost/gen")


def test_salted_password_cache_is_shared() -> None:
    cache: dict[str, dict[tuple[bytes, int], bytes]] = {}
    for _ in range(2):
        p = Pair(salted_password_cache=cache, mechanisms=("SCRAM-SHA-256",))
        assert isinstance(p.run()[-1], Bound)
    assert list(cache) == ["sha256"] and list(cache["sha256"]) == [(SALT, 4096)]


# -- XEP-0077 registration --------------------------------------------------------------------


def test_register_then_login() -> None:
    p = Pair(register=True)
    evs = p.run()
    assert kinds(evs) == [TLSRequested, Registered, Authenticated, Bound]
    assert evs[1] == Registered(created=True)
    (pre,) = [e for e in p.server_events if isinstance(e, PreAuthStanza)]
    query = pre.element.find("query", REGISTER)
    assert query is not None
    assert [(c.tag, c.text) for c in query.elements()] == [
        ("username", "alice"),
        ("password", "pw"),
    ]


def test_register_conflict_means_it_exists() -> None:
    p = Pair(register=True, register_reply="conflict")
    evs = p.run()
    assert Registered(created=False) in evs and isinstance(evs[-1], Bound)


def test_register_refused() -> None:
    p = Pair(register=True, register_reply="not-acceptable")
    evs = p.run()
    assert evs[-2:] == [
        RegistrationRefused("not-acceptable"),
        StreamEnded(None, "registration failed: not-acceptable"),
    ]
    assert p.client.state is State.CLOSED


# -- failures ---------------------------------------------------------------------------------


def test_wrong_password() -> None:
    p = Pair(password="wrong", mechanisms=("SCRAM-SHA-256",))
    evs = p.run()
    assert evs[-2:] == [
        AuthFailed("not-authorized"),
        StreamEnded(None, "authentication failed: not-authorized"),
    ]
    assert p.client.state is State.CLOSED
    # the server saw our closing tag
    assert any(isinstance(e, ServerStreamEnded) for e in p.server_events)


def test_wrong_password_plain() -> None:
    p = Pair(password="wrong", mechanisms=("PLAIN",))
    assert AuthFailed("not-authorized") in p.run()


def test_channel_binding_mismatch() -> None:
    p = Pair(client_cb={"tls-exporter": b"x" * 32}, server_cb=CB)
    evs = p.run()
    assert AuthFailed("not-authorized", "channel-bindings-dont-match") in evs
    assert isinstance(evs[-1], StreamEnded)


def test_no_usable_mechanism() -> None:
    p = Pair(mechanisms=("SCRAM-SHA-1",), server={"mechanisms": ("SCRAM-SHA-256",)})
    evs = p.run()
    assert isinstance(evs[-2], AuthFailed) and evs[-2].condition == "invalid-mechanism"
    assert evs[-1] == StreamEnded(None, "no usable SASL mechanism")


def test_server_not_verified_aborts() -> None:
    # Swap the server signature in <success/>: RFC 5802 §5 says the client must give up.
    p = Pair(mechanisms=("SCRAM-SHA-256",))
    forged = base64.b64encode(b"v=" + base64.b64encode(bytes(32)))
    p.tamper = lambda data: re.sub(rb"(<success [^>]*>)[^<]+", rb"\g<1>" + forged, data)
    evs = p.run()
    failed = [e for e in evs if isinstance(e, AuthFailed)]
    assert len(failed) == 1 and failed[0].condition == "server-not-verified"
    assert p.client.state is State.CLOSED
    assert not any(isinstance(e, Bound) for e in evs)


def test_stream_error_from_server() -> None:
    p = Pair(domain="elsewhere.example")
    evs = p.run()
    (ended,) = evs
    assert isinstance(ended, StreamEnded) and ended.error is not None
    assert ended.error.condition is StreamErrorCondition.HOST_UNKNOWN
    assert ended.reason is None
    assert p.client.state is State.CLOSED


def test_stream_error_while_ready() -> None:
    p = Pair()
    p.run()
    p.server.close(StreamError(StreamErrorCondition.SYSTEM_SHUTDOWN, "bye"))
    (ended,) = p.client.receive_data(p.server.data_to_send())
    assert isinstance(ended, StreamEnded) and ended.error is not None
    assert ended.error.condition is StreamErrorCondition.SYSTEM_SHUTDOWN
    assert ended.error.text == "bye"
    assert p.client.data_to_send() == b"</stream:stream>"


def test_server_requires_tls_we_do_not_do_it() -> None:
    p = Pair(tls=TLSMode.NONE)
    assert p.run() == [StreamEnded(None, "the server requires TLS")]


def test_we_require_tls_server_has_none() -> None:
    p = Pair(server={"require_encryption": False, "tls_available": False})
    assert p.run() == [StreamEnded(None, "the server does not offer STARTTLS")]


def test_bad_xml_from_server() -> None:
    c = ClientStream(client_settings(), lambda: "n")
    c.start()
    c.data_to_send()
    (ended,) = c.receive_data(b"<stream:stream xmlns:stream='x'><<")
    assert isinstance(ended, StreamEnded) and ended.reason is not None
    assert ended.reason.startswith("the server sent bad XML")
    out = c.data_to_send()
    assert b"<stream:error>" in out and out.endswith(b"</stream:stream>")


def test_wrong_content_namespace() -> None:
    c = ClientStream(client_settings(), lambda: "n")
    c.start()
    (ended,) = c.receive_data(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
        b" version='1.0'>"
    )
    assert isinstance(ended, StreamEnded) and c.state is State.CLOSED
    assert b"invalid-namespace" in c.data_to_send()


def test_send_before_bound_refused() -> None:
    c = ClientStream(client_settings(), lambda: "n")
    with pytest.raises(RuntimeError):
        c.send_stanza(Element("presence", ns.CLIENT))
    with pytest.raises(RuntimeError):
        c.send_raw(b"<presence/>")


def test_graceful_close() -> None:
    p = Pair()
    p.run()
    assert p.client.close() == []
    assert p.client.state is State.CLOSING
    evs = p.server.receive_data(p.client.data_to_send())
    assert evs == [ServerStreamEnded(None)]
    assert p.client.receive_data(p.server.data_to_send()) == [StreamEnded(None)]
    assert p.client.state is State.CLOSED
    assert p.client.data_to_send() == b""  # our closing tag went out already


# -- a scripted server, for states the server machine never leads to -------------------------

HDR = (
    b"<?xml version='1.0'?><stream:stream from='localhost' id='s1' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
FEAT_TLS = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
    b"</starttls></stream:features>"
)
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
FEAT_PLAIN = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
)
SUCCESS = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
# RFC 3921 §3: a server that still requires session establishment (no <optional/>)
FEAT_BIND = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
    b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>"
)
BIND_RESULT = (
    b"<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<jid>alice@localhost/r</jid></bind></iq>"
)
SESSION_RESULT = b"<iq type='result' id='session_1'/>"

_TO_BIND = [HDR, FEAT_PLAIN, SUCCESS, HDR, FEAT_BIND]
SCRIPTS: dict[State, tuple[dict[str, object], list[bytes]]] = {
    State.EXPECT_HEADER: ({}, []),
    State.EXPECT_FEATURES: ({}, [HDR]),
    State.STARTTLS_SENT: ({}, [HDR, FEAT_TLS]),
    State.TLS_PENDING: ({}, [HDR, FEAT_TLS, PROCEED]),
    State.REGISTERING: ({"tls": TLSMode.DIRECT, "register": True}, [HDR, FEAT_PLAIN]),
    State.SASL: ({"tls": TLSMode.DIRECT}, [HDR, FEAT_PLAIN]),
    State.BINDING: ({"tls": TLSMode.DIRECT}, _TO_BIND),
    State.SESSION: ({"tls": TLSMode.DIRECT}, [*_TO_BIND, BIND_RESULT]),
    State.READY: ({"tls": TLSMode.DIRECT}, [*_TO_BIND, BIND_RESULT, SESSION_RESULT]),
}


def scripted(state: State) -> tuple[ClientStream, list[ClientEvent]]:
    kw, chunks = SCRIPTS[state]
    c = ClientStream(client_settings(**kw), lambda: "n")
    events: list[ClientEvent] = []
    if c.settings.tls is TLSMode.DIRECT:
        events += c.tls_started({})
    events += c.start()
    for chunk in chunks:
        events += c.receive_data(chunk)
    c.data_to_send()
    assert c.state is state
    return c, events


def test_legacy_session_establishment() -> None:
    c, events = scripted(State.SESSION)
    assert b"session_1" not in c.data_to_send()  # already taken by scripted()
    (bound,) = c.receive_data(SESSION_RESULT)
    assert bound == Bound("alice@localhost/r")
    assert events == [Authenticated("PLAIN")]


@pytest.mark.parametrize("state", list(SCRIPTS))
def test_close_in_every_state(state: State) -> None:
    c, _ = scripted(state)
    assert c.close() == []
    assert c.state is State.CLOSING
    assert c.data_to_send() == b"</stream:stream>"
    # anything but the server's closing tag is ignored now
    assert c.receive_data(b"<message/>" if state is State.READY else b"") == []
    assert c.connection_lost() == [StreamEnded(None)]
    assert c.state is State.CLOSED


@pytest.mark.parametrize("state", list(SCRIPTS))
def test_connection_lost_in_every_state(state: State) -> None:
    c, _ = scripted(state)
    assert c.connection_lost() == [StreamEnded(None, "connection lost")]
    assert c.state is State.CLOSED
    assert c.connection_lost() == []


def test_close_before_start() -> None:
    c = ClientStream(client_settings(), lambda: "n")
    assert c.close() == [StreamEnded(None)]
    assert c.state is State.CLOSED and c.data_to_send() == b""


def test_starttls_failure() -> None:
    c, _ = scripted(State.STARTTLS_SENT)
    (ended,) = c.receive_data(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert ended == StreamEnded(None, "the server refused STARTTLS")


def test_bind_failure() -> None:
    c, _ = scripted(State.BINDING)
    (ended,) = c.receive_data(
        b"<iq type='error' id='bind_1'><error type='cancel'>"
        b"<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    assert ended == StreamEnded(None, "binding failed: not-allowed")


def test_plain_initial_response() -> None:
    c, _ = scripted(State.EXPECT_FEATURES)
    c = ClientStream(client_settings(tls=TLSMode.DIRECT), lambda: "n")
    c.tls_started({})
    c.start()
    c.receive_data(HDR + FEAT_PLAIN)
    out = c.data_to_send()
    start = out.index(b">", out.index(b"<auth ")) + 1
    assert base64.b64decode(out[start : out.index(b"</auth>")]) == b"\x00alice\x00pw"


def test_every_transition_is_exercised() -> None:
    """Runs last in this file: every row of TRANSITIONS was walked by some test above."""
    missing = TRANSITIONS - visited
    assert not missing, sorted((a.name, b.name) for a, b in missing)


def test_ssdp_string_is_what_the_server_hashes() -> None:
    """XEP-0474 §3.1: sorted mechanisms, then the XEP-0440 types, as §4's example."""
    from roost.core.stream.client import SASL_CB, _ssdp_string

    features = Element("features", ns.STREAM)
    cb = features.sub("sasl-channel-binding", SASL_CB)
    for t in ("tls-server-end-point", "tls-exporter"):
        cb.sub("channel-binding", SASL_CB, {"type": t})
    s = _ssdp_string(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"], features)
    assert s == "SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point"
    assert _ssdp_string(["PLAIN", "SCRAM-SHA-1"], Element("features", ns.STREAM)) == (
        "PLAIN\x1eSCRAM-SHA-1"
    )
