"""Certificates and TLS contexts: self-signed generation, loading with clear errors."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

import idna
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.core.identity import CertIdentities

__all__ = [
    "ID_ON_DNSSRV",
    "ID_ON_XMPPADDR",
    "CertificateError",
    "certificate_identities",
    "certificate_validity",
    "der_identities",
    "ensure_certificate",
    "generate_self_signed",
    "identities_of",
    "load_certificate_der",
    "load_tls_context_server",
    "make_client_context",
]

log = logging.getLogger(__name__)

#: RFC 6120 §13.7.1.4 and RFC 4985 §2: the otherName types that carry XMPP identities
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7")
_UTF8STRING = 0x0C
_IA5STRING = 0x16


class CertificateError(Exception):
    """A certificate or key cannot be used; the message names the file and the reason."""


def _ascii_domain(domain: str) -> str:
    try:
        return idna.encode(domain.lower().removesuffix("."), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"invalid domain {domain!r}: {exc}") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write to a temporary file beside ``path`` and rename it over (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed or os.open kept an old mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate_self_signed(domain: str, cert_path: Path, key_path: Path, *, days: int = 3650) -> None:
    """Write a self-signed EC P-256 certificate for ``domain`` and ``*.domain``."""
    name = _ascii_domain(domain)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    alt: list[x509.GeneralName] = [x509.DNSName(name), x509.DNSName(f"*.{name}")]
    if name == "localhost":
        alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a crash in between leaves no certificate, so ensure_certificate regenerates.
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_certificate(domain: str, data_dir: Path) -> tuple[Path, Path]:
    """Return ``data_dir/certs/<domain>.crt`` and ``.key``, generating them if missing."""
    if not domain or domain.startswith(".") or any(c in domain for c in "/\\\0"):
        raise ValueError(f"invalid domain {domain!r}")
    certs = data_dir / "certs"
    cert_path, key_path = certs / f"{domain}.crt", certs / f"{domain}.key"
    if not (cert_path.is_file() and key_path.is_file()):
        log.info("generating a self-signed certificate for %s in %s", domain, certs)
        generate_self_signed(domain, cert_path, key_path)
    return cert_path, key_path


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def _load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path, "certificate"))
    except ValueError as exc:
        raise CertificateError(f"{path}: not a valid PEM certificate: {exc}") from None
    return certs


def certificate_dns_names(cert: Path) -> frozenset[str]:
    """The DNS-IDs (subjectAltName dNSName) of the leaf certificate in a PEM file."""
    return identities_of(_load_certificates(cert)[0]).dns


def certificate_identities(cert: Path) -> CertIdentities:
    """The service identities of the leaf certificate in a PEM file."""
    return identities_of(_load_certificates(cert)[0])


def der_identities(der: bytes) -> CertIdentities:
    """The service identities of a DER certificate (a TLS peer's)."""
    try:
        return identities_of(x509.load_der_x509_certificate(der))
    except ValueError:
        return CertIdentities()


def identities_of(cert: x509.Certificate) -> CertIdentities:
    """DNS-IDs, SRV-IDs (RFC 4985) and XmppAddrs (RFC 6120 §13.7.1.4) in the
    subjectAltName; values that do not decode are skipped, never guessed at."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return CertIdentities()
    dns = frozenset(name.lower() for name in san.get_values_for_type(x509.DNSName))
    srv: set[str] = set()
    xmpp: set[str] = set()
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == ID_ON_XMPPADDR:
            text = _der_string(other.value, _UTF8STRING)
            if text is not None:
                xmpp.add(text.lower())
        elif other.type_id == ID_ON_DNSSRV:
            text = _der_string(other.value, _IA5STRING)
            if text is not None and text.startswith("_"):
                srv.add(text.lower())
    return CertIdentities(dns, frozenset(srv), frozenset(xmpp))


def _der_string(der: bytes, tag: int) -> str | None:
    """The text of one DER string of type ``tag`` (X.690 §8.1: tag, length, content)."""
    if len(der) < 2 or der[0] != tag:
        return None
    length, offset = der[1], 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or len(der) < 2 + size:
            return None
        length, offset = int.from_bytes(der[2 : 2 + size], "big"), 2 + size
    if len(der) != offset + length:
        return None
    try:
        return der[offset:].decode("utf-8" if tag == _UTF8STRING else "ascii")
    except UnicodeDecodeError:
        return None


def certificate_validity(cert: Path) -> tuple[datetime.datetime, datetime.datetime]:
    """When the leaf certificate in a PEM file starts and stops being valid (UTC)."""
    leaf = _load_certificates(cert)[0]
    return leaf.not_valid_before_utc, leaf.not_valid_after_utc


def load_certificate_der(cert: Path) -> bytes:
    """DER of the first (leaf) certificate in a PEM file, e.g. for tls-server-end-point."""
    return _load_certificates(cert)[0].public_bytes(serialization.Encoding.DER)


def load_tls_context_server(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context (TLS 1.2 minimum, RFC 7590 §3.1) for a PEM chain and key."""
    leaf = _load_certificates(cert)[0]
    try:
        private = serialization.load_pem_private_key(_read(key, "key"), password=None)
    except TypeError:
        raise CertificateError(f"{key}: key is encrypted; a passwordless key is needed") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{key}: not a valid PEM private key: {exc}") from None
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*fmt) != private.public_key().public_bytes(*fmt):
        raise CertificateError(f"{key}: key does not match certificate {cert}")
    if leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        log.warning("certificate %s expired on %s", cert, leaf.not_valid_after_utc)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(f"{cert}: cannot load certificate and key {key}: {exc}") from None
    return ctx


def make_client_context(*, verify: bool, cafile: Path | None = None) -> ssl.SSLContext:
    """A client context; ``verify`` checks the chain and host name (system CAs or ``cafile``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if cafile is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return ctx
    try:
        ctx.load_verify_locations(cafile=cafile)
    except FileNotFoundError:
        raise CertificateError(f"{cafile}: CA file not found") from None
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(f"{cafile}: cannot load CA file: {exc}") from None
    return ctx
