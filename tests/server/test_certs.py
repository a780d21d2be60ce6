"""Tests for roost.transport.certs: self-signed certificates and TLS contexts."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roost.transport.certs import (
    CertificateError,
    ensure_certificate,
    generate_self_signed,
    load_certificate_der,
    load_tls_context_server,
    make_client_context,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("certs")
    generate_self_signed("localhost", d / "localhost.crt", d / "localhost.key")
    return d / "localhost.crt", d / "localhost.key"


def test_generated_certificate_contents(pair: tuple[Path, Path]) -> None:
    cert = x509.load_pem_x509_certificate(pair[0].read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "*.localhost"]
    ips = san.get_values_for_type(x509.IPAddress)
    assert ips == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3650


def test_key_file_is_private(pair: tuple[Path, Path]) -> None:
    assert stat.S_IMODE(pair[1].stat().st_mode) == 0o600


def test_non_localhost_domain_has_no_ip_and_idn_is_a_label(tmp_path: Path) -> None:
    generate_self_signed("bücher.example", tmp_path / "c.crt", tmp_path / "c.key", days=1)
    cert = x509.load_pem_x509_certificate((tmp_path / "c.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = ["xn--bcher-kva.example", "*.xn--bcher-kva.example"]
    assert san.get_values_for_type(x509.DNSName) == names
    assert san.get_values_for_type(x509.IPAddress) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.crt", "c.key"]  # no temp files


def test_ensure_certificate_generates_once(tmp_path: Path) -> None:
    cert, key = ensure_certificate("example.org", tmp_path)
    assert cert == tmp_path / "certs" / "example.org.crt"
    assert key == tmp_path / "certs" / "example.org.key"
    first = cert.read_bytes()
    assert ensure_certificate("example.org", tmp_path) == (cert, key)
    assert cert.read_bytes() == first
    key.unlink()
    ensure_certificate("example.org", tmp_path)
    assert cert.read_bytes() != first


@pytest.mark.parametrize("domain", ["", "../evil", "a/b", ".hidden"])
def test_ensure_certificate_rejects_path_tricks(tmp_path: Path, domain: str) -> None:
    with pytest.raises(ValueError):
        ensure_certificate(domain, tmp_path)


def test_server_and_client_contexts_handshake(pair: tuple[Path, Path]) -> None:
    server_ctx = load_tls_context_server(*pair)
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    client_ctx = make_client_context(verify=True, cafile=pair[0])
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    assert client_ctx.check_hostname
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.sendall(s.recv(10))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(b, server_hostname="localhost") as c:
        c.sendall(b"ping")
        assert c.recv(10) == b"ping"
        assert c.getpeercert(binary_form=True) == load_certificate_der(pair[0])
    thread.join(10)
    assert not errors


def test_unverified_client_context() -> None:
    ctx = make_client_context(verify=False)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_missing_cafile(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="CA file not found"):
        make_client_context(verify=True, cafile=tmp_path / "nope.pem")


def test_missing_files(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    with pytest.raises(CertificateError, match=r"nope\.crt: certificate file not found"):
        load_tls_context_server(tmp_path / "nope.crt", pair[1])
    with pytest.raises(CertificateError, match=r"nope\.key: key file not found"):
        load_tls_context_server(pair[0], tmp_path / "nope.key")


def test_invalid_files(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(CertificateError, match=r"junk\.pem: not a valid PEM certificate"):
        load_tls_context_server(junk, pair[1])
    with pytest.raises(CertificateError, match=r"junk\.pem: not a valid PEM private key"):
        load_tls_context_server(pair[0], junk)


def test_mismatched_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    generate_self_signed("other.example", tmp_path / "o.crt", tmp_path / "o.key")
    with pytest.raises(CertificateError, match=r"o\.key: key does not match certificate"):
        load_tls_context_server(pair[0], tmp_path / "o.key")


def test_encrypted_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    key = serialization.load_pem_private_key(pair[1].read_bytes(), password=None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match=r"enc\.key: key is encrypted"):
        load_tls_context_server(pair[0], encrypted)
