"""The server stream negotiation machine, sans-IO: bytes in, events and bytes out.

Every row of ``TRANSITIONS`` is walked by some scenario here; the last test checks that.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator

import pytest

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.sasl import ScramClient, derive_credentials
from roost.core.stream import server as stream_mod
from roost.core.stream.server import (
    Authenticated,
    AuthFailed,
    BindRequested,
    CredentialsNeeded,
    PasswordCheckNeeded,
    ServerStream,
    ServerStreamSettings,
    StanzaReceived,
    State,
    StreamEnded,
    TLSRequested,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
SALT = b"0123456789abcdef"
CREDS = {h: derive_credentials(h, "pw", SALT, 4096) for h in ("sha1", "sha256")}
CB = {"tls-exporter": b"e" * 32, "tls-server-end-point": b"s" * 32}

visited: set[tuple[State, State]] = set()


@pytest.fixture(autouse=True)
def record_transitions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    original = ServerStream._go

    def go(self: ServerStream, new: State) -> None:
        visited.add((self.state, new))
        original(self, new)

    monkeypatch.setattr(ServerStream, "_go", go)
    yield


def make(encrypted: bool = False, **kw: object) -> ServerStream:
    counter = itertools.count()
    settings = ServerStreamSettings(domains=frozenset({"localhost"}), **kw)  # type: ignore[arg-type]
    return ServerStream(settings, lambda: f"id{next(counter):04d}", encrypted=encrypted)


def auth_el(mech: str, data: bytes | None) -> bytes:
    text = base64.b64encode(data).decode() if data else ""
    return f"<auth xmlns='{ns.SASL}' mechanism='{mech}'>{text}</auth>".encode()


def b64_of(out: bytes, tag: str) -> bytes:
    start = out.index(f"<{tag} ".encode())
    body = out[out.index(b">", start) + 1 : out.index(f"</{tag}>".encode(), start)]
    return base64.b64decode(body)


def scram_login(s: ServerStream, mech: str = "SCRAM-SHA-256", cb: str | None = None) -> None:
    hash_name = "sha1" if "SHA-1" in mech else "sha256"
    client = ScramClient(
        hash_name,
        "alice",
        "pw",
        nonce="clientnonce",
        cb_type=cb,
        cb_data=CB.get(cb or ""),
        server_supports_plus=cb is not None,
    )
    evs = s.receive_data(auth_el(mech, client.first()))
    assert evs == [CredentialsNeeded("alice", hash_name)]
    assert s.state is State.SASL_WAITING
    assert s.provide_credentials(CREDS[hash_name]) == []
    final = client.challenge(b64_of(s.data_to_send(), "challenge"))
    evs = s.receive_data(
        f"<response xmlns='{ns.SASL}'>{base64.b64encode(final).decode()}</response>".encode()
    )
    assert evs == [Authenticated("alice", mech)]
    client.success(b64_of(s.data_to_send(), "success"))
    assert s.state is State.EXPECT_HEADER


def bind(s: ServerStream) -> None:
    s.receive_data(HEADER)
    assert s.state is State.PRE_BIND
    evs = s.receive_data(
        f"<iq type='set' id='b'><bind xmlns='{ns.BIND}'><resource>r</resource></bind></iq>".encode()
    )
    assert evs == [BindRequested("b", "r")]
    s.bind_succeeded("b", "alice@localhost/r")
    assert s.state is State.READY


def test_full_negotiation_starttls_scram() -> None:
    s = make()
    assert s.receive_data(HEADER) == []
    out = s.data_to_send()
    assert out.startswith(b"<?xml version='1.0'?><stream:stream from='localhost' id='id0000'")
    assert out.endswith(
        b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
        b"</starttls></stream:features>"
    )
    assert s.receive_data(f"<starttls xmlns='{ns.STARTTLS}'/>".encode()) == [TLSRequested()]
    assert s.data_to_send() == b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    assert s.state is State.TLS_PENDING
    assert s.receive_data(b"\x16\x03\x01 tls bytes") == []  # never parsed
    s.tls_started(CB)
    s.receive_data(HEADER)
    assert s.state is State.PRE_AUTH
    assert b"SCRAM-SHA-256-PLUS" in s.data_to_send()
    scram_login(s, "SCRAM-SHA-256-PLUS", "tls-exporter")
    bind(s)
    evs = s.receive_data(b"<message to='bob@localhost'><body>x</body></message>")
    assert len(evs) == 1 and isinstance(evs[0], StanzaReceived)
    assert s.receive_data(b"</stream:stream>") == [StreamEnded(None)]
    assert s.data_to_send().endswith(b"</stream:stream>")


def test_direct_tls_scram_sha1_and_bind_failure() -> None:
    s = make(encrypted=True)
    s.tls_started(CB)  # Direct TLS: no restart
    s.receive_data(HEADER)
    assert s.state is State.PRE_AUTH
    scram_login(s, "SCRAM-SHA-1")
    s.receive_data(HEADER)
    s.receive_data(f"<iq type='set' id='b'><bind xmlns='{ns.BIND}'/></iq>".encode())
    assert s.state is State.BIND_WAITING
    s.bind_failed("b", StanzaError(StanzaErrorCondition.CONFLICT))
    assert s.state is State.PRE_BIND
    assert b"<conflict" in s.data_to_send()


def test_sasl_failure_then_plain_success() -> None:
    s = make(encrypted=True)
    s.receive_data(HEADER)
    s.data_to_send()
    # wrong SCRAM proof: SASL -> SASL_WAITING -> SASL -> PRE_AUTH
    client = ScramClient("sha256", "alice", "wrong", nonce="n1")
    s.receive_data(auth_el("SCRAM-SHA-256", client.first()))
    s.provide_credentials(CREDS["sha256"])
    final = client.challenge(b64_of(s.data_to_send(), "challenge"))
    evs = s.receive_data(
        f"<response xmlns='{ns.SASL}'>{base64.b64encode(final).decode()}</response>".encode()
    )
    assert evs == [AuthFailed("alice", "not-authorized")]
    assert s.state is State.PRE_AUTH
    # PLAIN with a bad password: SASL_WAITING -> PRE_AUTH
    evs = s.receive_data(auth_el("PLAIN", b"\x00alice\x00bad"))
    assert evs == [PasswordCheckNeeded("alice", "bad")]
    assert s.password_checked(False) == [AuthFailed("alice", "not-authorized")]
    # PLAIN good: SASL_WAITING -> EXPECT_HEADER
    s.receive_data(auth_el("PLAIN", b"\x00alice\x00pw"))
    assert s.password_checked(True) == [Authenticated("alice", "PLAIN")]
    assert s.state is State.EXPECT_HEADER


def test_optional_tls_auth_without_starttls() -> None:
    s = make(require_encryption=False)
    s.receive_data(HEADER)
    out = s.data_to_send()
    assert b"<starttls" in out and b"<required/>" not in out and b">PLAIN<" not in out
    assert s.state is State.PRE_TLS
    scram_login(s)  # PRE_TLS -> SASL_WAITING ...
    s2 = make(require_encryption=False)
    s2.receive_data(HEADER)
    s2.receive_data(auth_el("SCRAM-SHA-1", None))  # no initial response: PRE_TLS -> SASL
    assert s2.state is State.SASL
    assert s2.data_to_send().endswith(b">=</challenge>")


def test_legacy_authenticated_by_module() -> None:
    s = make(encrypted=True)
    s.receive_data(HEADER)
    s.legacy_authenticated("alice", "alice@localhost/r")  # XEP-0078: PRE_AUTH -> ... -> READY
    assert s.state is State.READY and s.jid == "alice@localhost/r"


def test_too_many_attempts_closes() -> None:
    s = make(encrypted=True, max_sasl_attempts=2)
    s.receive_data(HEADER)
    s.receive_data(auth_el("PLAIN", b"\x00alice\x00bad"))
    s.password_checked(False)
    s.receive_data(auth_el("PLAIN", b"\x00alice\x00bad"))
    evs = s.password_checked(False)
    assert isinstance(evs[-1], StreamEnded)
    assert evs[-1].error is not None and evs[-1].error.condition == "policy-violation"
    assert s.state is State.CLOSED


def test_refused_choices_do_not_count() -> None:
    """Only credentials that did not verify count against ``max_sasl_attempts``."""
    s = make(encrypted=True, max_sasl_attempts=2)
    s.tls_started(CB)
    s.receive_data(HEADER)
    refused = [
        auth_el("SCRAM-SHA-256-PLUS", b"p=tls-unique,,n=alice,r=abc"),  # RFC 5802 §6.1
        auth_el("SCRAM-SHA-256", b"y,,n=alice,r=abc"),  # RFC 5802 §6: a downgrade
        auth_el("DIGEST-MD5", None),
        auth_el("SCRAM-SHA-1", b"q,,n=alice,r=abc"),  # malformed
    ]
    for el in refused:
        evs = s.receive_data(el)
        assert [type(e) for e in evs] == [AuthFailed] and not evs[0].counted  # type: ignore[union-attr]
    s.receive_data(auth_el("PLAIN", b"\x00alice\x00bad"))
    (failed,) = s.password_checked(False)
    assert isinstance(failed, AuthFailed) and failed.counted
    assert s.state is State.PRE_AUTH
    s.receive_data(auth_el("PLAIN", b"\x00alice\x00pw"))
    assert isinstance(s.password_checked(True)[0], Authenticated)


def test_hash_unavailable_is_an_uncounted_invalid_mechanism() -> None:
    """An account with SCRAM-SHA-1 keys only (imported from Prosody): SCRAM-SHA-256 gets
    ``invalid-mechanism`` (RFC 6120 §6.5.7), not counted, and SCRAM-SHA-1 still logs in."""
    s = make(encrypted=True, max_sasl_attempts=1)
    s.receive_data(HEADER)
    s.data_to_send()
    evs = s.receive_data(auth_el("SCRAM-SHA-256", b"n,,n=alice,r=abc"))
    assert evs == [CredentialsNeeded("alice", "sha256")]
    (failed,) = s.hash_unavailable()
    assert failed == AuthFailed("alice", "invalid-mechanism", counted=False)
    out = s.data_to_send()
    assert b"<invalid-mechanism/>" in out and b"SCRAM-SHA-1 or PLAIN" in out
    assert s.state is State.PRE_AUTH
    client = ScramClient("sha1", "alice", "pw", nonce="n1")
    s.receive_data(auth_el("SCRAM-SHA-1", client.first()))
    s.provide_credentials(CREDS["sha1"])
    final = client.challenge(b64_of(s.data_to_send(), "challenge"))
    evs = s.receive_data(
        f"<response xmlns='{ns.SASL}'>{base64.b64encode(final).decode()}</response>".encode()
    )
    assert evs == [Authenticated("alice", "SCRAM-SHA-1")]


def test_refused_choices_are_bounded() -> None:
    s = make(encrypted=True)
    s.receive_data(HEADER)
    for _ in range(stream_mod.MAX_UNCOUNTED_SASL_FAILURES - 1):
        s.receive_data(auth_el("DIGEST-MD5", None))
    evs = s.receive_data(auth_el("DIGEST-MD5", None))
    assert isinstance(evs[-1], StreamEnded) and s.state is State.CLOSED


def test_stream_management_resumption_instead_of_binding() -> None:
    """XEP-0198 §5, sans-IO: <resume/> after authentication; a failure leaves the client
    free to bind; success goes straight to READY with <resumed/>."""
    s = make(encrypted=True, stream_management=True)
    s.tls_started(CB)
    s.receive_data(HEADER)
    scram_login(s)
    s.receive_data(HEADER)
    features = s.data_to_send()
    assert b"<sm xmlns='urn:xmpp:sm:3'/>" in features
    sm = "urn:xmpp:sm:3"
    assert s.receive_data(f"<resume xmlns='{sm}' previd='p1' h='x'/>".encode()) == []
    assert s.data_to_send() == (
        f"<failed xmlns='{sm}'><bad-request xmlns='{ns.STANZAS}'/></failed>".encode()
    )
    evs = s.receive_data(f"<resume xmlns='{sm}' previd='p1' h='7'/>".encode())
    assert evs == [stream_mod.ResumeRequested("p1", 7)]
    s.resume_failed(3)
    assert s.data_to_send() == (
        f"<failed xmlns='{sm}' h='3'><item-not-found xmlns='{ns.STANZAS}'/></failed>".encode()
    )
    assert s.state is State.PRE_BIND
    s.receive_data(f"<resume xmlns='{sm}' previd='p2' h='0'/>".encode())
    s.resumed("p2", 4, "alice@localhost/r")
    assert s.data_to_send() == f"<resumed xmlns='{sm}' previd='p2' h='4'/>".encode()
    assert s.state is State.READY and s.jid == "alice@localhost/r"
    evs = s.receive_data(f"<r xmlns='{sm}'/>".encode())
    assert evs == [stream_mod.SMReceived(evs[0].element)]  # type: ignore[union-attr]


def test_every_transition_is_walked() -> None:
    """STYLE 2: every row of the table has a test (this file's scenarios visit them all)."""
    missing = stream_mod.TRANSITIONS - visited
    # closing from states no scenario above ends in
    for state in State:
        if state is State.CLOSED:
            continue
        s = make(encrypted=True)
        s.state = state
        s.close(None)
    missing = stream_mod.TRANSITIONS - visited
    assert not missing, sorted((a.name, b.name) for a, b in missing)


def test_illegal_transition_raises() -> None:
    s = make()
    with pytest.raises(AssertionError):
        s._go(State.READY)
