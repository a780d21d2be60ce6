"""Connecting: addresses (override, SRV), TLS verification, SASL mechanisms, failures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from roost.client import (
    AuthenticationFailed,
    CertificateNotTrusted,
    Client,
    ConnectFailed,
    HostNotFound,
)
from roost.client.dial import Target, find_targets
from roost.server.app import Server
from tests.client.conftest import MakeClient, server_cafile
from tests.helpers import PASSWORDS, LoopbackDNS, free_port, start_server

MECHANISMS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_login_by_each_mechanism(make_client: MakeClient, mechanism: str) -> None:
    client = make_client("alice", mechanisms=(mechanism,), available=False)
    jid = await client.connect()
    assert jid.bare == client.account and jid.resource
    assert client.mechanism == mechanism
    assert await client.ping() >= 0


async def test_the_strongest_offered_mechanism_is_chosen(make_client: MakeClient) -> None:
    client = make_client("alice")
    await client.connect()
    # RFC 9266: TLS 1.3 on loopback, so tls-exporter channel binding with SHA-256
    assert client.mechanism == "SCRAM-SHA-256-PLUS"


async def test_direct_tls(make_client: MakeClient) -> None:
    client = make_client("bob", direct_tls=True, resource="dtls")
    jid = await client.connect()
    assert str(jid) == "bob@localhost/dtls"
    assert client.mechanism == "SCRAM-SHA-256-PLUS"


async def test_wrong_password_is_authentication_failed(make_client: MakeClient) -> None:
    client = make_client("alice", password="wrong", reconnect=False)
    with pytest.raises(AuthenticationFailed) as info:
        await client.connect()
    assert info.value.condition == "not-authorized"
    assert not client.connected


async def test_a_self_signed_certificate_is_not_trusted_by_default(
    make_client: MakeClient,
) -> None:
    client = make_client("alice", cafile=None)
    with pytest.raises(CertificateNotTrusted, match="localhost"):
        await client.connect()
    direct = make_client("alice", cafile=None, direct_tls=True)
    with pytest.raises(CertificateNotTrusted):
        await direct.connect()


async def test_insecure_connects_and_warns(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client("alice", cafile=None, insecure=True)
    with caplog.at_level(logging.WARNING, logger="roost.client"):
        await client.connect()
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)


def _ca_signed(tmp_path: Path, name: str) -> tuple[Path, dict[str, dict[str, str]]]:
    import trustme

    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert = ca.issue_cert(name)
    crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(crt), append=True)
    cert.private_key_pem.write_to_path(str(key))
    return ca_path, {"tls": {"cert": str(crt), "key": str(key)}}


async def test_a_certificate_from_the_given_ca_passes(tmp_path: Path) -> None:
    ca, sections = _ca_signed(tmp_path, "localhost")
    server = await start_server(tmp_path / "srv", **sections)
    try:
        await server.accounts.create("alice", "localhost", "pw")
        client = Client("alice@localhost", "pw", server=("127.0.0.1", server.port()), cafile=ca)
        await client.connect()
        untrusted = Client("alice@localhost", "pw", server=("127.0.0.1", server.port()))
        with pytest.raises(CertificateNotTrusted):  # the system store knows no test CA
            await untrusted.connect()
        await client.disconnect()
    finally:
        await server.stop()


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    ca, sections = _ca_signed(tmp_path, "other.example")
    server = await start_server(tmp_path / "srv", **sections)
    try:
        await server.accounts.create("alice", "localhost", "pw")
        for direct in (False, True):
            client = Client(
                "alice@localhost",
                "pw",
                server=("127.0.0.1", server.port(direct_tls=direct)),
                direct_tls=direct,
                cafile=ca,
            )
            with pytest.raises(CertificateNotTrusted, match="localhost"):
                await client.connect()
    finally:
        await server.stop()


async def test_connection_refused(tmp_path: Path) -> None:
    client = Client("alice@localhost", "pw", server=("127.0.0.1", free_port()), timeout=5)
    with pytest.raises(ConnectFailed):
        await client.connect()


# -- finding the server (RFC 6120 §3.2, XEP-0368) ------------------------------------------


async def test_srv_direct_tls_records_come_first(server: Server) -> None:
    dns = LoopbackDNS(
        {
            "_xmpps-client._tcp.localhost.": [(10, 0, server.port(direct_tls=True), "localhost.")],
            "_xmpp-client._tcp.localhost.": [(5, 0, server.port(), "localhost.")],
        }
    )
    port = await dns.start()
    try:
        targets = await find_targets("localhost", nameservers=[("127.0.0.1", port)])
        assert targets == [
            Target("localhost", server.port(direct_tls=True), True),
            Target("localhost", server.port(), False),
        ]
        client = Client(
            "alice@localhost",
            PASSWORDS["alice"],
            cafile=server_cafile(server),
            nameservers=[("127.0.0.1", port)],
        )
        await client.connect()
        assert client._conn is not None and client._conn.stream.settings.tls.value == "direct"
        await client.disconnect()
        assert dns.asked[:2] == ["_xmpps-client._tcp.localhost.", "_xmpp-client._tcp.localhost."]
    finally:
        dns.stop()


async def test_srv_falls_through_to_the_next_target(server: Server) -> None:
    dns = LoopbackDNS(
        {
            "_xmpps-client._tcp.localhost.": [(10, 0, free_port(), "localhost.")],
            "_xmpp-client._tcp.localhost.": [(5, 0, server.port(), "localhost.")],
        }
    )
    port = await dns.start()
    try:
        client = Client(
            "alice@localhost",
            PASSWORDS["alice"],
            cafile=server_cafile(server),
            nameservers=[("127.0.0.1", port)],
        )
        await client.connect()  # the Direct TLS target refuses; STARTTLS on the next
        assert client._conn is not None and client._conn.stream.settings.tls.value == "starttls"
        await client.disconnect()
    finally:
        dns.stop()


async def test_no_srv_records_means_the_domain_on_5222() -> None:
    dns = LoopbackDNS({})
    port = await dns.start()
    try:
        targets = await find_targets("example.test", nameservers=[("127.0.0.1", port)])
        assert targets == [Target("example.test", 5222, False)]
    finally:
        dns.stop()


async def test_host_not_found() -> None:
    dns = LoopbackDNS({})
    port = await dns.start()
    try:
        client = Client(
            "alice@no-such-host.invalid", "pw", nameservers=[("127.0.0.1", port)], timeout=5
        )
        with pytest.raises(HostNotFound):
            await client.connect()
    finally:
        dns.stop()


@pytest.mark.parametrize("direct", [False, True])
async def test_sni_asks_for_the_accounts_domain(server: Server, direct: bool) -> None:
    """The server holds a certificate per domain and picks it by SNI (Direct TLS) or the
    stream's 'to' (STARTTLS): trusting only example.test's certificate passes only if the
    client asked for example.test, and checked the name against it."""
    await server.accounts.create("alice", "example.test", "pw")
    certs = Path(server.config.data_dir) / "certs"
    client = Client(
        "alice@example.test",
        "pw",
        server=("127.0.0.1", server.port(direct_tls=direct)),
        direct_tls=direct,
        cafile=certs / "example.test.crt",
    )
    await client.connect()
    assert str(client.jid).startswith("alice@example.test/")
    await client.disconnect()


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"], "SCRAM-SHA-1-PLUS"),
        (["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"], "SCRAM-SHA-256"),
        (["PLAIN", "SCRAM-SHA-1"], "SCRAM-SHA-1"),
        (["PLAIN"], "PLAIN"),
    ],
)
async def test_the_strongest_of_what_the_server_offers(
    tmp_path: Path, offered: list[str], chosen: str
) -> None:
    server = await start_server(tmp_path, auth={"mechanisms": offered})
    try:
        await server.accounts.create("alice", "localhost", "pw")
        client = Client(
            "alice@localhost",
            "pw",
            server=("127.0.0.1", server.port()),
            cafile=server_cafile(server),
        )
        await client.connect()
        assert client.mechanism == chosen
        await client.disconnect()
    finally:
        await server.stop()


async def test_srv_dot_means_no_service() -> None:
    """RFC 6120 §3.2.1 / RFC 2782: a single record with target "." says no service: no
    fallback to the domain itself."""
    dns = LoopbackDNS({"_xmpp-client._tcp.example.test.": [(0, 0, 0, ".")]})
    port = await dns.start()
    try:
        assert await find_targets("example.test", nameservers=[("127.0.0.1", port)]) == []
        client = Client("alice@example.test", "pw", nameservers=[("127.0.0.1", port)])
        with pytest.raises(HostNotFound, match="no XMPP client service"):
            await client.connect()
    finally:
        dns.stop()
