"""Federation between two Roost servers on loopback (RFC 6120 s2s, XEP-0220 dialback).

``a.test`` and ``b.test`` find each other through ``s2s.routes``; both use self-signed
certificates, so dialback authenticates them (``s2s.require_valid_certs = false``), over
TLS (``s2s.require_encryption``, the default). Raw-XML clients on each side.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roost.core import ns
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.config import config_from_dict
from roost.server.streams.s2s import S2SInboundConnection, S2SOutboundConnection
from roost.transport.certs import ID_ON_DNSSRV, ID_ON_XMPPADDR
from tests.helpers import (
    LoopbackDNS,
    RawClient,
    client_tls_context,
    eventually,
    free_port,
    without_stanza_ids,
)

PASSWORD = "federation-secret"


@dataclass
class Pair:
    a: Server
    b: Server


def _config(tmp: Path, domain: str, s2s_port: int, peers: dict[str, int], **s2s: object) -> dict:
    return {
        "domains": [domain],
        "data_dir": str(tmp / domain),
        "c2s": {"port": 0, "direct_tls_port": 0, "interfaces": ["127.0.0.1"]},
        "auth": {"scram_iterations": 4096},
        "s2s": {
            "enabled": True,
            "port": s2s_port,
            "interfaces": ["127.0.0.1"],
            "require_valid_certs": False,
            "connect_timeout": 3,
            "routes": {d: f"127.0.0.1:{p}" for d, p in peers.items()},
            **s2s,
        },
    }


async def _start_pair(
    tmp_path: Path,
    a_extra: dict | None = None,
    b_extra: dict | None = None,
    *,
    pb: int | None = None,
    a_routes: bool = True,
) -> Pair:
    """``a.test`` and ``b.test`` (on ``pb`` if given); without ``a_routes`` a.test finds
    b.test through DNS (give it ``s2s.dns_servers`` in ``a_extra``)."""
    pa, dead = free_port(), free_port()
    pb = free_port() if pb is None else pb
    routes = {"b.test": pb, "nowhere.test": dead} if a_routes else {}
    a_data = _config(tmp_path, "a.test", pa, routes)
    b_data = _config(tmp_path, "b.test", pb, {"a.test": pa})
    for data, extra in ((a_data, a_extra), (b_data, b_extra)):
        for key, value in (extra or {}).items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
    for domain in a_data["domains"]:  # b.test finds every domain a.test's server serves
        for name in (domain, f"conference.{domain}"):  # and its group chat service
            b_data["s2s"]["routes"].setdefault(name, f"127.0.0.1:{pa}")
    a = Server(config_from_dict(a_data, tmp_path))
    b = Server(config_from_dict(b_data, tmp_path))
    await a.start()
    await b.start()
    await a.accounts.create("alice", "a.test", PASSWORD)
    await b.accounts.create("bob", "b.test", PASSWORD)
    return Pair(a, b)


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, *args: Any, **kwargs: Any) -> AsyncIterator[Pair]:
    """``_start_pair``, stopped at the end however the test ends."""
    p = await _start_pair(tmp_path, *args, **kwargs)
    try:
        yield p
    finally:
        await p.a.stop()
        await p.b.stop()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    p = await _start_pair(tmp_path)
    yield p
    await p.a.stop()
    await p.b.stop()


def _route_method(server: Server, local: str, remote: str) -> str | None:
    assert server.federation is not None
    route = server.federation.routes.get((local, remote))
    return None if route is None else route.method


async def _login(server: Server, user: str, domain: str, resource: str = "r") -> RawClient:
    c = await RawClient.connect(server.port())
    await c.login(user, PASSWORD, resource, domain=domain)
    return c


async def test_messages_both_ways(pair: Pair) -> None:
    alice = await _login(pair.a, "alice", "a.test")
    bob = await _login(pair.b, "bob", "b.test")
    await alice.send("<message to='bob@b.test/r' id='m1' type='chat'><body>hi bob</body></message>")
    got = await bob.expect(lambda e: e.tag == "message")
    assert serialize(without_stanza_ids(got)) == (
        "<message to='bob@b.test/r' id='m1' type='chat' from='alice@a.test/r'>"
        "<body>hi bob</body></message>"
    )
    await bob.send(
        "<message to='alice@a.test/r' id='m2' type='chat'><body>hi alice</body></message>"
    )
    got = await alice.expect(lambda e: e.tag == "message")
    assert serialize(without_stanza_ids(got)) == (
        "<message to='alice@a.test/r' id='m2' type='chat' from='bob@b.test/r'>"
        "<body>hi alice</body></message>"
    )
    # one stream per direction, reused: a second message goes the same way
    await alice.send("<message to='bob@b.test/r' id='m3' type='chat'><body>again</body></message>")
    assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m3"
    assert len(pair.a.federation.routes) == 1  # type: ignore[union-attr]
    # self-signed certificates: Server Dialback authenticated both directions
    assert _route_method(pair.a, "a.test", "b.test") == "dialback"
    assert _route_method(pair.b, "b.test", "a.test") == "dialback"
    await alice.close()
    await bob.close()


async def test_subscription_and_presence_across_domains(pair: Pair) -> None:
    """RFC 6121 §3.1 with the contact on another server: request, approval, presence."""
    alice = await _login(pair.a, "alice", "a.test")
    bob = await _login(pair.b, "bob", "b.test")
    for c in (alice, bob):
        await c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        await c.expect(lambda e: e.tag == "iq" and e.get("id") == "r1")
        await c.send("<presence/>")
    await alice.send("<presence to='bob@b.test' type='subscribe'/>")
    got = await bob.expect(lambda e: e.tag == "presence" and e.get("type") == "subscribe")
    assert got.get("from") == "alice@a.test" and got.get("to") == "bob@b.test"
    await bob.send("<presence to='alice@a.test' type='subscribed'/>")
    push = await alice.expect(
        lambda e: e.tag == "iq" and e.get("type") == "set" and "subscription='to'" in serialize(e)
    )
    assert push.get("to") == "alice@a.test/r"  # RFC 6121 §3.1.6: now subscribed to bob
    # §3.1.5: bob's server sends bob's current presence to his new subscriber
    got = await alice.expect(lambda e: e.tag == "presence" and e.get("from") == "bob@b.test/r")
    assert got.get("type") is None
    await alice.close()
    await bob.close()


async def test_each_local_domain_federates_under_its_own_name(tmp_path: Path) -> None:
    """Two domains on one server: one stream per domain pair, each authenticated for its
    own domain (a stanza from the second is not sent on the first's stream)."""
    async with _running(tmp_path, {"domains": ["a.test", "a2.test"]}) as p:
        await p.a.accounts.create("carol", "a2.test", PASSWORD)
        alice = await _login(p.a, "alice", "a.test")
        carol = await _login(p.a, "carol", "a2.test")
        bob = await _login(p.b, "bob", "b.test")
        await alice.send("<message to='bob@b.test/r' id='m1'><body>from a</body></message>")
        await carol.send("<message to='bob@b.test/r' id='m2'><body>from a2</body></message>")
        got = [await bob.expect(lambda e: e.tag == "message") for _ in range(2)]
        assert {(m.get("id"), m.get("from")) for m in got} == {
            ("m1", "alice@a.test/r"),
            ("m2", "carol@a2.test/r"),
        }
        assert p.a.federation is not None
        assert set(p.a.federation.routes) == {("a.test", "b.test"), ("a2.test", "b.test")}
        for c in (alice, carol, bob):
            await c.close()


def _route(server: Server, local: str, remote: str) -> _RouteView:
    assert server.federation is not None
    route = server.federation.routes[(local, remote)]
    return _RouteView(route.conn, route.bidi, route.method)


@dataclass
class _RouteView:
    conn: object
    bidi: bool
    method: str | None


async def test_a_second_local_domain_is_multiplexed_onto_the_stream(tmp_path: Path) -> None:
    """XEP-0220 §8.1: once a.test's stream to b.test is up, a2.test's stanzas go on it
    after one more dialback (b.test advertises dialback errors, so this is safe). A third
    domain b.test cannot verify gets a dialback error: its stanza bounces with
    remote-server-timeout (XEP-0220 §2.4) and the stream goes on for the others."""
    dead = free_port()
    async with _running(
        tmp_path,
        {"domains": ["a.test", "a2.test", "a3.test"], "s2s": {"bidi": False}},
        {"s2s": {"routes": {"a3.test": f"127.0.0.1:{dead}"}}},
    ) as p:
        for user, domain in (("carol", "a2.test"), ("dave", "a3.test")):
            await p.a.accounts.create(user, domain, PASSWORD)
        alice = await _login(p.a, "alice", "a.test")
        carol = await _login(p.a, "carol", "a2.test")
        dave = await _login(p.a, "dave", "a3.test")
        bob = await _login(p.b, "bob", "b.test")
        await alice.send("<message to='bob@b.test/r' id='m1'><body>from a</body></message>")
        assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m1"
        await carol.send("<message to='bob@b.test/r' id='m2'><body>from a2</body></message>")
        got = await bob.expect(lambda e: e.tag == "message")
        assert (got.get("id"), got.get("from")) == ("m2", "carol@a2.test/r")
        first, second = _route(p.a, "a.test", "b.test"), _route(p.a, "a2.test", "b.test")
        assert first.conn is second.conn and second.method == "dialback"
        await dave.send("<message to='bob@b.test/r' id='m3'><body>from a3</body></message>")
        bounce = await dave.expect(lambda e: e.tag == "message")
        assert bounce.get("type") == "error" and bounce.get("id") == "m3"
        error = bounce.find("error")
        assert error is not None and error.find("remote-server-timeout", ns.STANZAS) is not None
        await alice.send("<message to='bob@b.test/r' id='m4'><body>still up</body></message>")
        assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m4"
        assert _route(p.a, "a.test", "b.test").conn is first.conn
        for c in (alice, carol, dave, bob):
            await c.close()


async def test_one_bidirectional_stream_carries_both_ways(pair: Pair) -> None:
    """XEP-0288: a.test asks for bidi on the stream it opens; b.test answers on that very
    stream instead of opening one of its own."""
    await _chat_both_ways(pair)
    there, back = _route(pair.a, "a.test", "b.test"), _route(pair.b, "b.test", "a.test")
    assert isinstance(there.conn, S2SOutboundConnection) and not there.bidi
    assert isinstance(back.conn, S2SInboundConnection) and back.bidi
    assert back.method == "dialback"
    assert pair.b.federation is not None
    assert not any(  # b.test opened no stream to a.test but for verifying (gone by now)
        isinstance(c, S2SOutboundConnection) and c.stream.verify is None
        for c in pair.b.federation.connections
    )


async def test_without_bidi_each_direction_has_its_own_stream(tmp_path: Path) -> None:
    async with _running(tmp_path, {"s2s": {"bidi": False}}) as p:
        await _chat_both_ways(p)
        back = _route(p.b, "b.test", "a.test")
        assert isinstance(back.conn, S2SOutboundConnection) and not back.bidi


async def test_iq_to_the_remote_server(pair: Pair) -> None:
    alice = await _login(pair.a, "alice", "a.test")
    await alice.send(f"<iq type='get' id='p1' to='b.test'><ping xmlns='{ns.PING}'/></iq>")
    got = await alice.expect(lambda e: e.tag == "iq" and e.get("id") == "p1")
    assert serialize(got) == "<iq type='result' id='p1' to='alice@a.test/r' from='b.test'/>"
    await alice.close()


async def test_unreachable_domain_bounces(pair: Pair) -> None:
    """Nothing listens for nowhere.test: remote-server-not-found, within connect_timeout."""
    alice = await _login(pair.a, "alice", "a.test")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await alice.send("<message to='x@nowhere.test' id='m1'><body>hello?</body></message>")
    got = await alice.expect(lambda e: e.tag == "message")
    assert loop.time() - start < 3.5
    assert got.get("type") == "error" and got.get("from") == "x@nowhere.test"
    error = got.find("error")
    assert error is not None and error.find("remote-server-not-found", ns.STANZAS) is not None
    await alice.close()


async def test_an_error_to_an_unreachable_domain_is_not_bounced(pair: Pair) -> None:
    """RFC 6120 §8.3.1: never an error for an error; the next stanza's bounce is the
    barrier (it would come second if the error had been answered)."""
    alice = await _login(pair.a, "alice", "a.test")
    await alice.send(
        "<message to='x@nowhere.test' id='e1' type='error'>"
        f"<error type='cancel'><item-not-found xmlns='{ns.STANZAS}'/></error></message>"
        "<message to='x@nowhere.test' id='m2'><body>hello?</body></message>"
    )
    got = await alice.expect(lambda e: e.tag == "message")
    assert got.get("id") == "m2" and got.get("type") == "error"
    await alice.close()


async def test_a_peer_that_never_answers_times_out(tmp_path: Path) -> None:
    """A server that accepts the connection and says nothing: the queued stanza bounces
    with remote-server-timeout once ``s2s.connect_timeout`` has passed."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    p = await _start_pair(
        tmp_path,
        {"s2s": {"connect_timeout": 0.5, "routes": {"silent.test": f"127.0.0.1:{port}"}}},
    )
    try:
        alice = await _login(p.a, "alice", "a.test")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await alice.send("<message to='x@silent.test' id='m1'><body>anyone?</body></message>")
        got = await alice.expect(lambda e: e.tag == "message")
        assert 0.4 < loop.time() - start < 3
        error = got.find("error")
        assert error is not None and error.find("remote-server-timeout", ns.STANZAS) is not None
        assert accepted  # it was reached, and said nothing
        await alice.close()
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await p.a.stop()
        await p.b.stop()


# -- DNS SRV (RFC 6120 §3.2, RFC 2782) -----------------------------------------------------


async def test_a_domain_is_found_through_its_srv_records(tmp_path: Path) -> None:
    pb = free_port()
    dns_server = LoopbackDNS(
        {
            # priority 5 first (an address that refuses), then the real one
            "_xmpp-server._tcp.b.test.": [
                (10, 0, pb, "localhost."),
                (5, 0, free_port(), "localhost."),
            ],
            "_xmpp-server._tcp.gone.test.": [(0, 0, 0, ".")],
        }
    )
    dns_port = await dns_server.start()
    try:
        p = await _start_pair(
            tmp_path, {"s2s": {"dns_servers": [f"127.0.0.1:{dns_port}"]}}, pb=pb, a_routes=False
        )
        try:
            alice = await _login(p.a, "alice", "a.test")
            bob = await _login(p.b, "bob", "b.test")
            await alice.send("<message to='bob@b.test/r' id='m1'><body>via SRV</body></message>")
            assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m1"
            # RFC 2782 "." target: decidedly no service; the sender hears so at once
            await alice.send("<message to='x@gone.test' id='m2'><body>?</body></message>")
            got = await alice.expect(lambda e: e.tag == "message")
            assert got.get("type") == "error" and got.get("id") == "m2"
            assert dns_server.asked == [
                "_xmpps-server._tcp.b.test.",  # XEP-0368 Direct TLS first, then STARTTLS
                "_xmpp-server._tcp.b.test.",
                "_xmpps-server._tcp.gone.test.",
                "_xmpp-server._tcp.gone.test.",
            ]
            await alice.close()
            await bob.close()
        finally:
            await p.a.stop()
            await p.b.stop()
    finally:
        dns_server.stop()


async def test_direct_tls_through_xmpps_server_records(tmp_path: Path) -> None:
    """XEP-0368: ``_xmpps-server._tcp`` names a port that is TLS from the first byte."""
    pb, direct = free_port(), free_port()
    dns_server = LoopbackDNS({"_xmpps-server._tcp.b.test.": [(0, 5, direct, "localhost.")]})
    dns_port = await dns_server.start()
    try:
        p = await _start_pair(
            tmp_path,
            {"s2s": {"dns_servers": [f"127.0.0.1:{dns_port}"]}},
            {"s2s": {"direct_tls_port": direct}},
            pb=pb,
            a_routes=False,
        )
        try:
            alice = await _login(p.a, "alice", "a.test")
            bob = await _login(p.b, "bob", "b.test")
            await alice.send("<message to='bob@b.test/r' id='m1'><body>direct</body></message>")
            assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m1"
            assert p.a.federation is not None
            route = p.a.federation.routes[("a.test", "b.test")]
            assert route.direct and route.method == "dialback"
            assert route.conn is not None and route.conn.transport is not None
            tls = route.conn.transport.get_extra_info("ssl_object")
            assert tls.selected_alpn_protocol() == "xmpp-server"  # XEP-0368 §3
            await alice.close()
            await bob.close()
        finally:
            await p.a.stop()
            await p.b.stop()
    finally:
        dns_server.stop()


def test_srv_order_follows_priority_then_weight() -> None:
    import random

    from roost.transport.srv import order_srv

    records = [(20, 0, 1, "last"), (10, 60, 2, "heavy"), (10, 0, 3, "zero"), (10, 40, 4, "light")]
    firsts = {order_srv(records, random.Random(seed))[0][0] for seed in range(200)}
    assert firsts == {"heavy", "light"}  # weight 0 comes first only when alone (RFC 2782)
    for seed in range(50):
        order = [host for host, _ in order_srv(records, random.Random(seed))]
        assert order[-1] == "last" and sorted(order[:3]) == ["heavy", "light", "zero"]


# -- certificates: SASL EXTERNAL (XEP-0178) -----------------------------------------------


def _test_ca(tmp_path: Path) -> tuple[Any, dict[str, object]]:
    """A trustme CA, and the ``[s2s]`` that trusts only it (certificates required, no
    dialback: only SASL EXTERNAL can authenticate)."""
    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ca, {"require_valid_certs": True, "ca_file": str(ca_path), "dialback": False}


async def _chat_both_ways(p: Pair) -> None:
    """alice@a.test and bob@b.test exchange a message each way, then log out."""
    alice = await _login(p.a, "alice", "a.test")
    bob = await _login(p.b, "bob", "b.test")
    await alice.send("<message to='bob@b.test/r' id='m1' type='chat'><body>x</body></message>")
    assert (await bob.expect(lambda e: e.tag == "message")).get("from") == "alice@a.test/r"
    await bob.send("<message to='alice@a.test/r' id='m2' type='chat'><body>y</body></message>")
    assert (await alice.expect(lambda e: e.tag == "message")).get("from") == "bob@b.test/r"
    await alice.close()
    await bob.close()


def _ca_files(tmp_path: Path) -> dict[str, dict]:
    """A test CA and a certificate from it for each server: [tls] and s2s.ca_file."""
    ca, s2s = _test_ca(tmp_path)
    out = {}
    for domain in ("a.test", "b.test"):
        cert = ca.issue_cert(domain)
        crt, key = tmp_path / f"{domain}.crt", tmp_path / f"{domain}.key"
        for blob in cert.cert_chain_pems:
            blob.write_to_path(str(crt), append=True)
        cert.private_key_pem.write_to_path(str(key))
        out[domain] = {"tls": {"cert": str(crt), "key": str(key)}, "s2s": dict(s2s)}
    return out


async def test_certificates_from_a_trusted_ca_use_sasl_external(tmp_path: Path) -> None:
    files = _ca_files(tmp_path)
    async with _running(tmp_path, files["a.test"], files["b.test"]) as p:
        await _chat_both_ways(p)
        # dialback is off on both: only EXTERNAL can have done it; XEP-0288 §3 with SASL
        assert _route_method(p.a, "a.test", "b.test") == "external"
        assert _route_method(p.b, "b.test", "a.test") == "external"
        assert _route(p.b, "b.test", "a.test").bidi


def _issue(ca: object, tmp_path: Path, stem: str, names: list[x509.GeneralName]) -> dict:
    """A certificate from the trustme ``ca`` with exactly ``names`` as subjectAltName."""
    import trustme

    assert isinstance(ca, trustme.CA)
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    crt, key_path = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"cert": str(crt), "key": str(key_path)}


def _other(oid: x509.ObjectIdentifier, tag: int, text: str) -> x509.OtherName:
    return x509.OtherName(oid, bytes((tag, len(text))) + text.encode())


async def test_xmppaddr_and_srv_id_certificates_use_sasl_external(tmp_path: Path) -> None:
    """RFC 6120 §13.7.1.4 and RFC 6125 §6.5.1: a certificate may name a server only by an
    XmppAddr or an SRV-ID; both directions must accept it, for EXTERNAL and for the
    outgoing stream's own check of the peer (dialback is off: nothing else can work)."""
    ca, s2s = _test_ca(tmp_path)
    a_tls = _issue(ca, tmp_path, "a", [_other(ID_ON_XMPPADDR, 0x0C, "a.test")])
    b_tls = _issue(ca, tmp_path, "b", [_other(ID_ON_DNSSRV, 0x16, "_xmpp-server.b.test")])
    async with _running(tmp_path, {"tls": a_tls, "s2s": s2s}, {"tls": b_tls, "s2s": s2s}) as p:
        await _chat_both_ways(p)
        assert _route_method(p.a, "a.test", "b.test") == "external"
        assert _route_method(p.b, "b.test", "a.test") == "external"


async def test_a_trusted_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    """RFC 6125 §6: a chain that verifies is not enough; the certificate must name the
    domain a.test asked for. b.test's names only c.test, so a.test will not talk to it."""
    ca, s2s = _test_ca(tmp_path)
    b_tls = _issue(ca, tmp_path, "b", [x509.DNSName("c.test")])
    a_tls = _issue(ca, tmp_path, "a", [x509.DNSName("a.test")])
    async with _running(tmp_path, {"tls": a_tls, "s2s": s2s}, {"tls": b_tls, "s2s": s2s}) as p:
        alice = await _login(p.a, "alice", "a.test")
        await alice.send("<message to='bob@b.test' id='m1'><body>hello?</body></message>")
        got = await alice.expect(lambda e: e.tag == "message")
        assert got.get("type") == "error" and got.get("from") == "bob@b.test"
        error = got.find("error")
        assert error is not None and error.find("remote-server-not-found", ns.STANZAS) is not None
        await alice.close()


async def test_untrusted_peer_without_dialback_is_refused(tmp_path: Path) -> None:
    """b.test wants CA-verified certificates and no dialback; a.test's is self-signed."""
    files = _ca_files(tmp_path)
    async with _running(tmp_path, None, files["b.test"]) as p:
        alice = await _login(p.a, "alice", "a.test")
        await alice.send("<message to='bob@b.test' id='m1'><body>let me in</body></message>")
        got = await alice.expect(lambda e: e.tag == "message")
        assert got.get("type") == "error"
        error = got.find("error")
        assert error is not None and error.find("remote-server-not-found", ns.STANZAS) is not None
        await alice.close()


@pytest.mark.parametrize("insecure", [True, False])
async def test_insecure_domains_may_use_dialback_with_any_certificate(
    tmp_path: Path, insecure: bool
) -> None:
    """b.test wants CA-verified certificates but allows dialback; a.test's certificate is
    self-signed. Listed in ``s2s.insecure_domains`` a.test gets in by dialback (and b.test
    does not check a.test's certificate when it connects back); not listed, it is refused."""
    files = _ca_files(tmp_path)
    b_extra = files["b.test"]
    b_extra["s2s"]["dialback"] = True
    if insecure:
        b_extra["s2s"]["insecure_domains"] = ["a.test"]
    async with _running(tmp_path, None, b_extra) as p:
        alice = await _login(p.a, "alice", "a.test")
        bob = await _login(p.b, "bob", "b.test")
        await alice.send("<message to='bob@b.test/r' id='m1'><body>let me in</body></message>")
        if not insecure:
            got = await alice.expect(lambda e: e.tag == "message")
            assert got.get("type") == "error" and got.get("id") == "m1"
            return
        assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m1"
        await bob.send("<message to='alice@a.test/r' id='m2'><body>welcome</body></message>")
        assert (await alice.expect(lambda e: e.tag == "message")).get("id") == "m2"
        assert _route_method(p.a, "a.test", "b.test") == "dialback"
        await alice.close()
        await bob.close()


async def test_dialback_needs_a_certificate_naming_the_domain(tmp_path: Path) -> None:
    """With ``require_valid_certs`` (the default) dialback is not enough by itself: a peer
    that presented no certificate gets the XEP-0220 §2.4 ``not-authorized`` dialback error
    (it would be asked of evil.test's server otherwise)."""
    async with _running(tmp_path, {"s2s": {"require_valid_certs": True}}) as p:
        c = await _peer_tls(p.a)
        await c.send("<db:result from='evil.test' to='a.test'>0123</db:result>")
        got = await c.expect(lambda e: e.tag == "result")
        assert (got.get("from"), got.get("to"), got.get("type")) == ("a.test", "evil.test", "error")
        error = got.find("error", ns.SERVER)
        assert error is not None and error.find("not-authorized", ns.STANZAS) is not None


# -- limits ------------------------------------------------------------------------------


async def test_idle_streams_close_and_reopen(tmp_path: Path) -> None:
    quick, slow = {"s2s": {"idle_timeout": 0.3}}, {"s2s": {"idle_timeout": 30}}
    async with _running(tmp_path, quick, slow) as p:
        assert p.a.federation is not None
        alice = await _login(p.a, "alice", "a.test")
        bob = await _login(p.b, "bob", "b.test")
        await alice.send("<message to='bob@b.test/r' id='m1'><body>one</body></message>")
        assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m1"
        federation = p.a.federation
        await eventually(lambda: not federation.routes, "the sweep to close the quiet stream")
        await alice.send("<message to='bob@b.test/r' id='m2'><body>two</body></message>")
        assert (await bob.expect(lambda e: e.tag == "message")).get("id") == "m2"
        await alice.close()
        await bob.close()


async def test_a_flooding_peer_is_cut_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Past ``s2s.stanza_burst`` (refilled at ``max_stanza_rate``) b.test ends a.test's
    stream with policy-violation; what a.test sends next opens a new stream."""
    async with _running(tmp_path, None, {"s2s": {"max_stanza_rate": 1, "stanza_burst": 5}}) as p:
        assert p.a.federation is not None
        alice = await _login(p.a, "alice", "a.test")
        bob = await _login(p.b, "bob", "b.test")
        caplog.set_level("INFO", logger="roost.server.streams.s2s")
        flood = "".join(
            f"<message to='bob@b.test/r' id='m{i}'><body>{i}</body></message>" for i in range(20)
        )
        await alice.send(flood)
        got = [(await bob.expect(lambda e: e.tag == "message")).get("id")]
        federation = p.a.federation
        await eventually(
            lambda: ("a.test", "b.test") not in federation.routes, "the flood to be cut off"
        )
        assert any("policy-violation" in r.getMessage() for r in caplog.records)
        await alice.send("<message to='bob@b.test/r' id='after'><body>calm</body></message>")
        while got[-1] != "after":
            got.append((await bob.expect(lambda e: e.tag == "message")).get("id"))
        assert got[:5] == ["m0", "m1", "m2", "m3", "m4"] and len(got) <= 7, got
        await alice.close()
        await bob.close()


async def test_too_many_connections_from_one_address(tmp_path: Path) -> None:
    async with _running(tmp_path, {"s2s": {"max_connections_per_ip": 1}}) as p:
        first = await _peer(p.a)
        await first.expect(lambda e: e.tag == "features")
        second = await _peer(p.a)
        assert await second.stream_error() == "policy-violation"
        await first.close()


# -- bad peers ----------------------------------------------------------------------------

S2S_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='{xmlns}' xmlns:db='jabber:server:dialback' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' from='evil.test' version='1.0'>"
)


async def _peer(server: Server, to: str = "a.test", xmlns: str = ns.SERVER) -> RawClient:
    c = await RawClient.connect(server.port(kind="s2s"))
    await c.send(S2S_HEADER.format(to=to, xmlns=xmlns))
    return c


async def _peer_tls(server: Server) -> RawClient:
    c = await _peer(server)
    features = await c.expect(lambda e: e.tag == "features")
    assert features.find("starttls", ns.STARTTLS) is not None
    await c.send(f"<starttls xmlns='{ns.STARTTLS}'/>")
    assert (await c.next()).tag == "proceed"
    await c.writer.start_tls(client_tls_context(), server_hostname="a.test")
    c.parser = type(c.parser)(max_stanza_size=10_000_000)
    await c.send(S2S_HEADER.format(to="a.test", xmlns=ns.SERVER))
    features = await c.expect(lambda e: e.tag == "features")
    assert features.find("dialback", "urn:xmpp:features:dialback") is not None
    return c


@pytest.mark.parametrize(
    ("case", "condition"),
    [
        ("unknown-domain", "host-unknown"),
        ("client-namespace", "invalid-namespace"),
        ("stanza-before-tls", "not-authorized"),  # RFC 6120 §4.3.5
        ("dialback-before-tls", "policy-violation"),  # RFC 6120 §5.3.1
        ("stanza-before-dialback", "not-authorized"),
        ("restricted-xml", "restricted-xml"),
    ],
)
async def test_bad_peer_gets_stream_error(pair: Pair, case: str, condition: str) -> None:
    if case == "unknown-domain":
        c = await _peer(pair.a, to="c.test")
    elif case == "client-namespace":
        c = await _peer(pair.a, xmlns=ns.CLIENT)
    elif case == "stanza-before-tls":
        c = await _peer(pair.a)
        await c.expect(lambda e: e.tag == "features")
        await c.send("<message from='x@evil.test' to='alice@a.test'/>")
    elif case == "dialback-before-tls":
        c = await _peer(pair.a)
        await c.expect(lambda e: e.tag == "features")
        await c.send(f"<db:result from='evil.test' to='a.test'>{'ab' * 16}</db:result>")
    else:
        c = await _peer_tls(pair.a)
        await c.send(
            {
                "stanza-before-dialback": "<message from='x@evil.test' to='alice@a.test'/>",
                "restricted-xml": "<!-- a comment -->",
            }[case]
        )
    assert await c.stream_error() == condition


async def test_dialback_for_a_domain_not_served_here_is_a_dialback_error(pair: Pair) -> None:
    """XEP-0220 §2.4: we advertise dialback errors, so a request for a domain we do not
    host gets ``item-not-found`` and the stream (which may carry other pairs) goes on."""
    c = await _peer_tls(pair.a)
    await c.send("<db:result from='evil.test' to='c.test'>k</db:result>")
    got = await c.expect(lambda e: e.tag == "result")
    assert (got.get("from"), got.get("to"), got.get("type")) == ("c.test", "evil.test", "error")
    error = got.find("error", ns.SERVER)
    assert error is not None and error.get("type") == "cancel"
    assert error.find("item-not-found", ns.STANZAS) is not None
    # still open, still unauthenticated
    await c.send("<message from='x@evil.test' to='alice@a.test'/>")
    assert await c.stream_error() == "not-authorized"


async def test_a_peer_that_never_authenticates_is_cut_off(tmp_path: Path) -> None:
    async with _running(tmp_path, {"s2s": {"auth_timeout": 0.3}}) as p:
        c = await _peer_tls(p.a)  # TLS, then nothing: no dialback, no EXTERNAL
        assert await c.stream_error() == "connection-timeout"


async def test_forged_dialback_is_refused(pair: Pair) -> None:
    """A peer claiming a.test's domain to b.test cannot: a.test's server disowns the key."""
    c = await RawClient.connect(pair.b.port(kind="s2s"))
    await c.send(S2S_HEADER.format(to="b.test", xmlns=ns.SERVER).replace("evil.test", "a.test"))
    await c.expect(lambda e: e.tag == "features")
    await c.send(f"<starttls xmlns='{ns.STARTTLS}'/>")
    assert (await c.next()).tag == "proceed"
    await c.writer.start_tls(client_tls_context(), server_hostname="b.test")
    c.parser = type(c.parser)(max_stanza_size=10_000_000)
    await c.send(S2S_HEADER.format(to="b.test", xmlns=ns.SERVER).replace("evil.test", "a.test"))
    await c.expect(lambda e: e.tag == "features")
    await c.send("<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>")
    got = await c.expect(lambda e: e.tag == "result")
    assert got.get("type") == "invalid" and got.get("from") == "b.test"
    assert await c.stream_error() == "not-authorized"
