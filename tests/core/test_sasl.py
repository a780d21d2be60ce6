"""SASL mechanisms: RFC test vectors, client against server, failure conditions."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core.sasl import (
    HASHES,
    Challenge,
    Failure,
    NeedCredentials,
    NeedPasswordCheck,
    PlainClient,
    PlainServer,
    SaslClientError,
    SaslStep,
    ScramClient,
    ScramCredentials,
    ScramServer,
    Success,
    derive_credentials,
    salted_password,
    verify_password,
)
from roost.core.sasl.scram import _escape_saslname, _unescape_saslname

NOT_AUTHORIZED = Failure("not-authorized")

# RFC 5802 §5 and RFC 7677 §3: user "user", password "pencil", i=4096, no channel binding.
VECTORS = [
    pytest.param(
        "sha1",
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        id="rfc5802-sha1",
    ),
    pytest.param(
        "sha256",
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        id="rfc7677-sha256",
    ),
]

SALT = b"0123456789abcdef"
CREDS = {h: derive_credentials(h, "pencil", SALT, 4096) for h in HASHES.values()}
EXPORTER = bytes(range(32))  # RFC 9266 §2: 32 bytes from the TLS exporter
END_POINT = bytes(range(100, 132))  # RFC 5929 §4.1: a certificate hash


def _server(hash_name: str = "sha256", **kw: Any) -> ScramServer:
    args: dict[str, Any] = dict(
        nonce="SERVERNONCE", channel_bindings={}, plus=False, plus_advertised=False
    )
    args.update(kw)
    return ScramServer(hash_name, **args)


def _hash_of(mechanism: str) -> str:
    return HASHES[mechanism.removeprefix("SCRAM-").removesuffix("-PLUS")]


def _exchange(
    client: ScramClient, server: ScramServer, creds: ScramCredentials | None = None
) -> SaslStep:
    """Run a whole exchange; the server's last step (Success is checked by the client)."""
    step = server.start(client.first())
    assert isinstance(step, NeedCredentials), step
    step = server.credentials(creds or CREDS[_hash_of(server.name)])
    if not isinstance(step, Challenge):
        return step
    step = server.respond(client.challenge(step.data))
    if isinstance(step, Success):
        client.success(step.data)
    return step


@pytest.mark.parametrize("hash_name,cnonce,snonce,salt,proof,verifier", VECTORS)
def test_rfc_vector_server(
    hash_name: str, cnonce: str, snonce: str, salt: str, proof: str, verifier: str
) -> None:
    server = _server(hash_name, nonce=snonce)
    assert server.start(f"n,,n=user,r={cnonce}".encode()) == NeedCredentials("user")
    creds = derive_credentials(hash_name, "pencil", base64.b64decode(salt), 4096)
    nonce = cnonce + snonce
    assert server.credentials(creds) == Challenge(f"r={nonce},s={salt},i=4096".encode())
    final = f"c=biws,r={nonce},p={proof}".encode()
    assert server.respond(final) == Success(f"v={verifier}".encode(), "user", None)


@pytest.mark.parametrize("hash_name,cnonce,snonce,salt,proof,verifier", VECTORS)
def test_rfc_vector_client(
    hash_name: str, cnonce: str, snonce: str, salt: str, proof: str, verifier: str
) -> None:
    client = ScramClient(hash_name, "user", "pencil", nonce=cnonce)
    assert client.name == ("SCRAM-SHA-1" if hash_name == "sha1" else "SCRAM-SHA-256")
    assert client.first() == f"n,,n=user,r={cnonce}".encode()
    nonce = cnonce + snonce
    final = client.challenge(f"r={nonce},s={salt},i=4096".encode())
    assert final == f"c=biws,r={nonce},p={proof}".encode()
    client.success(f"v={verifier}".encode())


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
@pytest.mark.parametrize(
    "cb_type,cb_data",
    [(None, None), ("tls-exporter", EXPORTER), ("tls-server-end-point", END_POINT)],
)
@pytest.mark.parametrize("authzid", [None, "admin@example.org"])
def test_client_against_server(
    hash_name: str, cb_type: str | None, cb_data: bytes | None, authzid: str | None
) -> None:
    plus = cb_type is not None
    bindings = {"tls-exporter": EXPORTER, "tls-server-end-point": END_POINT}
    client = ScramClient(
        hash_name,
        "juliet",
        "pencil",
        nonce="c1",
        cb_type=cb_type,
        cb_data=cb_data,
        server_supports_plus=True,
        authzid=authzid,
    )
    server = _server(hash_name, channel_bindings=bindings, plus=plus, plus_advertised=True)
    assert client.name == server.name
    assert server.name.endswith("-PLUS") == plus
    step = _exchange(client, server)
    assert isinstance(step, Success)
    assert (step.authcid, step.authzid) == ("juliet", authzid)


def test_empty_challenge_without_initial_response() -> None:
    client, server = ScramClient("sha1", "user", "pencil", nonce="abc"), _server("sha1")
    assert server.start(None) == Challenge(b"")  # RFC 6120 §6.4.2
    assert server.respond(client.first()) == NeedCredentials("user")
    step = server.credentials(CREDS["sha1"])
    assert isinstance(step, Challenge)
    step = server.respond(client.challenge(step.data))
    assert isinstance(step, Success)
    client.success(step.data)


def test_wrong_password() -> None:
    client = ScramClient("sha256", "user", "pen", nonce="abc")
    assert _exchange(client, _server()) == NOT_AUTHORIZED


def test_unknown_user_fails_at_once() -> None:
    server = _server()
    server.start(b"n,,n=nobody,r=abc")
    assert server.credentials(None) == NOT_AUTHORIZED


def test_wrong_channel_binding_data() -> None:
    client = ScramClient(
        "sha256",
        "user",
        "pencil",
        nonce="abc",
        cb_type="tls-exporter",
        cb_data=b"A" * 32,
        server_supports_plus=True,
    )
    server = _server(channel_bindings={"tls-exporter": b"B" * 32}, plus=True, plus_advertised=True)
    step = _exchange(client, server)
    assert step == Failure("not-authorized", "channel-bindings-dont-match")


@pytest.mark.parametrize("plus_advertised", [False, True])
def test_y_flag(plus_advertised: bool) -> None:
    # The client supports channel binding but was not offered -PLUS (RFC 5802 §6).
    client = ScramClient(
        "sha256",
        "user",
        "pencil",
        nonce="abc",
        cb_type="tls-exporter",
        cb_data=EXPORTER,
    )
    server = _server(channel_bindings={"tls-exporter": EXPORTER}, plus_advertised=plus_advertised)
    if plus_advertised:  # a downgrade attack stripped -PLUS from the list
        first = client.first()
        assert first.startswith(b"y,,")
        step = server.start(first)
        assert step == Failure("not-authorized", "server-does-support-channel-binding")
    else:
        assert isinstance(_exchange(client, server), Success)


@pytest.mark.parametrize(
    "plus,first,condition",
    [
        (False, b"p=tls-exporter,,n=user,r=abc", "malformed-request"),  # p= on a bare mechanism
        (True, b"n,,n=user,r=abc", "malformed-request"),  # -PLUS without p=
        (True, b"y,,n=user,r=abc", "not-authorized"),  # "y" with -PLUS advertised
        (True, b"p=tls-unique,,n=user,r=abc", "not-authorized"),  # type not available
    ],
)
def test_channel_binding_flag_mismatch(plus: bool, first: bytes, condition: str) -> None:
    server = _server(channel_bindings={"tls-exporter": EXPORTER}, plus=plus, plus_advertised=True)
    step = server.start(first)
    assert isinstance(step, Failure)
    assert step.condition == condition


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"\xff",
        b"n,,n=user",
        b"x,,n=user,r=abc",
        b"p=,,n=user,r=abc",
        b"n,x=y,n=user,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,a=b=2,n=user,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=2Xer,r=abc",
        b"n,,n=user=,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=a b",
        b"n,,n=us\x00er,r=abc",
        b"n,,n=user,r=abc,1=x",
        b"n,,n=user,r=abc,x=",
        b"n,,m=ext,n=user,r=abc",
    ],
)
def test_malformed_client_first(first: bytes) -> None:
    step = _server().start(first)
    assert isinstance(step, Failure)
    assert step.condition == "malformed-request"


def _client_final(final: bytes) -> SaslStep:
    server = _server()
    server.start(b"n,,n=user,r=abc")
    server.credentials(CREDS["sha256"])
    return server.respond(final)


@pytest.mark.parametrize(
    "final",
    [
        b"c=biws,r=abcSERVERNONCE",
        b"r=abcSERVERNONCE,c=biws,p=AAAA",
        b"c=biws,p=AAAA",
        b"c=bi!s,r=abcSERVERNONCE,p=AAAA",
        b"c=biws,r=abcSERVERNONCE,p=AAA",
        b"c=biws,r=abcSERVERNONCE,m=x,p=AAAA",
        b"c=biws,r=abcSERVERNONCE,p=AAAA,x=y",
        b"c=biws,r=abcSERVERNONCE,p=AA\xffAA",
    ],
)
def test_malformed_client_final(final: bytes) -> None:
    step = _client_final(final)
    assert isinstance(step, Failure)
    assert step.condition == "malformed-request"


@pytest.mark.parametrize(
    "final",
    [
        b"c=biws,r=abcOTHER,p=AAAA",  # not our nonce
        b"c=eSws,r=abcSERVERNONCE,p=AAAA",  # c= is not our gs2-header
        b"c=biws,r=abcSERVERNONCE,p=AAAA",  # proof of the wrong length
        b"c=biws,r=abcSERVERNONCE,p=" + base64.b64encode(bytes(32)),  # wrong proof
    ],
)
def test_rejected_client_final(final: bytes) -> None:
    step = _client_final(final)
    assert isinstance(step, Failure)
    assert step.condition == "not-authorized"


def test_optional_extensions_are_ignored() -> None:
    # RFC 5802 §5.1: unknown optional extensions MUST be ignored.
    server = _server()
    assert server.start(b"n,,n=user,r=abc,x=1,y=a=b") == NeedCredentials("user")


def test_username_escaping() -> None:
    server = _server()
    assert server.start(b"n,a=x=3Dy=2Cz,n=a=2Cb=3Dc,r=abc") == NeedCredentials("a,b=c")
    client = ScramClient("sha256", "a,b=c", "pencil", nonce="abc", authzid="x=y,z")
    assert client.first() == b"n,a=x=3Dy=2Cz,n=a=2Cb=3Dc,r=abc"
    client = ScramClient("sha256", "a,b=c", "pencil", nonce="abc", authzid="x=y,z")
    step = _exchange(client, _server())
    assert isinstance(step, Success)
    assert (step.authcid, step.authzid) == ("a,b=c", "x=y,z")


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_saslname_round_trip(name: str) -> None:
    assert _unescape_saslname(_escape_saslname(name)) == name


@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_server_never_raises_on_client_input(data: bytes) -> None:
    server = _server()
    step = server.start(b"n,,n=user,r=abc")
    assert isinstance(step, NeedCredentials)
    server.credentials(CREDS["sha256"])
    assert isinstance(server.respond(data), Failure)
    assert isinstance(_server().start(data), NeedCredentials | Failure)


def test_misuse_raises() -> None:
    server = _server()
    with pytest.raises(RuntimeError):
        server.credentials(CREDS["sha256"])  # nobody asked
    server.start(b"n,,n=user,r=abc")
    with pytest.raises(ValueError):
        server.credentials(CREDS["sha1"])  # keys for another hash
    with pytest.raises(RuntimeError):
        server.password_checked(True)
    with pytest.raises(ValueError):
        _server(nonce="has,comma")
    with pytest.raises(ValueError):
        _server("md5")


# -- client-side checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=OTHERnonce,s=QSXCR+Q6sek8bf92,i=4096",  # does not extend our nonce
        b"r=abc,s=QSXCR+Q6sek8bf92,i=4096",  # does not add a server part
        b"m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=abcdef,s=QSXCR+Q6sek8bf92",
        b"r=abcdef,s=not base64,i=4096",
        b"r=abcdef,s=,i=4096",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=0",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=-1",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999999",
        b"\xff",
    ],
)
def test_client_rejects_server_first(server_first: bytes) -> None:
    client = ScramClient("sha1", "user", "pencil", nonce="abc")
    client.first()
    with pytest.raises(SaslClientError):
        client.challenge(server_first)


@pytest.mark.parametrize("server_final", [None, b"v=AAAA", b"e=invalid-proof", b"x=1"])
def test_client_rejects_server_final(server_final: bytes | None) -> None:
    client = ScramClient("sha1", "user", "pencil", nonce="abc")
    server = _server("sha1")
    server.start(client.first())
    step = server.credentials(CREDS["sha1"])
    assert isinstance(step, Challenge)
    client.challenge(step.data)
    with pytest.raises(SaslClientError):
        client.success(server_final)


def test_client_server_final_in_challenge() -> None:
    # COMPAT: server-final arriving in a <challenge/>, then an empty <success/>.
    client, server = ScramClient("sha1", "user", "pencil", nonce="abc"), _server("sha1")
    server.start(client.first())
    step = server.credentials(CREDS["sha1"])
    assert isinstance(step, Challenge)
    step = server.respond(client.challenge(step.data))
    assert isinstance(step, Success) and step.data is not None
    assert client.challenge(step.data) == b""
    client.success(None)


def test_client_salted_password_cache() -> None:
    cache: dict[tuple[bytes, int], bytes] = {}
    for _ in range(2):
        client = ScramClient("sha256", "user", "pencil", nonce="abc", salted_password_cache=cache)
        assert isinstance(_exchange(client, _server()), Success)
    assert cache == {(SALT, 4096): salted_password("sha256", "pencil", SALT, 4096)}


def test_client_argument_checks() -> None:
    with pytest.raises(ValueError):
        ScramClient("sha1", "user", "", nonce="abc")  # OpaqueString rejects empty
    with pytest.raises(ValueError):
        ScramClient("sha1", "user", "pencil", nonce="a,b")
    with pytest.raises(ValueError):
        ScramClient("sha1", "user", "pencil", nonce="abc", cb_type="tls-exporter")
    client = ScramClient("sha1", "user", "pencil", nonce="abc")
    with pytest.raises(SaslClientError):
        client.challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")  # before first()


# -- credentials -----------------------------------------------------------------------------


def test_verify_password() -> None:
    creds = derive_credentials("sha256", "correct horse", SALT, 4096)
    assert verify_password(creds, "sha256", "correct horse")
    # RFC 8265 §4.2.1: non-ASCII spaces map to ASCII space.
    assert verify_password(creds, "sha256", "correct\u2000horse")
    assert not verify_password(creds, "sha256", "correct  horse")
    assert not verify_password(creds, "sha256", "")
    assert not verify_password(creds, "sha1", "correct horse")


def test_derive_credentials_checks() -> None:
    with pytest.raises(ValueError):
        derive_credentials("md5", "pencil", SALT, 4096)
    with pytest.raises(ValueError):
        derive_credentials("sha1", "pen\x00cil", SALT, 4096)
    with pytest.raises(ValueError):
        ScramCredentials(SALT, 0, b"k", b"k")
    with pytest.raises(ValueError):
        Failure("bogus-condition")


# -- PLAIN (RFC 4616) ------------------------------------------------------------------------


@pytest.mark.parametrize("authzid", [None, "admin@example.org"])
@pytest.mark.parametrize("initial", [True, False])
def test_plain_ok(authzid: str | None, initial: bool) -> None:
    message = PlainClient("juliet", "r0m30", authzid).first()
    server = PlainServer()
    if initial:
        step = server.start(message)
    else:
        assert server.start(None) == Challenge(b"")
        step = server.respond(message)
    assert step == NeedPasswordCheck("juliet", "r0m30")
    assert "r0m30" not in repr(step)
    assert server.password_checked(True) == Success(None, "juliet", authzid)


def test_plain_bad_password() -> None:
    server = PlainServer()
    server.start(b"\x00juliet\x00wrong")
    assert server.password_checked(False) == NOT_AUTHORIZED


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"juliet\x00r0m30",
        b"\x00\x00r0m30",
        b"\x00juliet\x00",
        b"\xff\x00j\x00p",
        b"a\x00b\x00c\x00d",
    ],
)
def test_plain_malformed(message: bytes) -> None:
    assert PlainServer().start(message) == Failure("malformed-request")


def test_plain_misuse() -> None:
    server = PlainServer()
    with pytest.raises(RuntimeError):
        server.password_checked(True)
    with pytest.raises(RuntimeError):
        server.credentials(None)
    with pytest.raises(ValueError):
        PlainClient("", "pw")


# -- cross-check against an independent implementation ---------------------------------------


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
def test_scramp_client_against_our_server(mech: str) -> None:
    scramp = pytest.importorskip("scramp")
    hash_name = _hash_of(mech)
    plus = mech.endswith("-PLUS")
    binding = ("tls-server-end-point", END_POINT) if plus else None
    client = scramp.ScramClient([mech], "user", "pencil", channel_binding=binding)
    server = _server(
        hash_name,
        channel_bindings={"tls-server-end-point": END_POINT},
        plus=plus,
        plus_advertised=plus,
    )
    assert server.start(client.get_client_first().encode()) == NeedCredentials("user")
    step = server.credentials(CREDS[hash_name])
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    step = server.respond(client.get_client_final().encode())
    assert isinstance(step, Success) and step.data is not None
    client.set_server_final(step.data.decode())


def test_our_client_against_scramp_server() -> None:
    scramp = pytest.importorskip("scramp")
    mech = scramp.ScramMechanism("SCRAM-SHA-256")
    info = mech.make_auth_info("pencil", iteration_count=4096, salt=SALT)
    server = mech.make_server(lambda username: info)
    client = ScramClient("sha256", "user", "pencil", nonce="abc")
    server.set_client_first(client.first().decode())
    server.set_client_final(client.challenge(server.get_server_first().encode()).decode())
    client.success(server.get_server_final().encode())


# -- XEP-0474 downgrade protection (client side) -------------------------------------------

#: XEP-0474 §4: what the server advertised, and its server-first-message with "h"
SSDP_S = "SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point"
SSDP_NONCE = "12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6"
SSDP_SERVER_FIRST = (
    b"r=12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6a09117a6-ac50-4f2f-93f1-93799c2bddf6,"
    b"s=QSXCR+Q6sek8bf92,i=4096,h=G6k/rBLDqgOhRRaCuuatSDFkJ08="
)


def _ssdp_client(ssdp: str | None) -> ScramClient:
    client = ScramClient(
        "sha1",
        "user",
        "pencil",
        nonce=SSDP_NONCE,
        cb_type="tls-exporter",
        cb_data=b"THIS IS FAKE CB DATA",
        server_supports_plus=True,
        ssdp=ssdp,
    )
    assert client.first() == f"p=tls-exporter,,n=user,r={SSDP_NONCE}".encode()
    return client


def test_ssdp_hash_of_the_example_matches() -> None:
    final = _ssdp_client(SSDP_S).challenge(SSDP_SERVER_FIRST)
    assert final.startswith(b"c=cD10bHMtZXhwb3J0ZXIsLFRISVMgSVMgRkFLRSBDQiBEQVRB,r=")


@pytest.mark.parametrize(
    "seen",
    [
        "SCRAM-SHA-1\x1ftls-exporter\x1etls-server-end-point",  # -PLUS stripped on the way
        "SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-server-end-point",  # a binding type removed
        "SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS",  # the XEP-0440 list removed
    ],
)
def test_ssdp_mismatch_fails_the_exchange(seen: str) -> None:
    with pytest.raises(SaslClientError, match="XEP-0474"):
        _ssdp_client(seen).challenge(SSDP_SERVER_FIRST)


def test_ssdp_without_h_is_not_checked() -> None:
    first = SSDP_SERVER_FIRST.rsplit(b",h=", 1)[0]
    assert _ssdp_client("anything").challenge(first).startswith(b"c=")
