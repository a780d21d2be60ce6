"""Service identities in certificates: RFC 6125 §6 matching, RFC 6120 §13.7.1.4 XmppAddr,
RFC 4985 SRV-IDs, read out of real X.509 certificates."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roost.core.identity import CertIdentities, certificate_matches
from roost.transport.certs import ID_ON_DNSSRV, ID_ON_XMPPADDR, identities_of


def _der(tag: int, text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 0x80:
        return bytes((tag, len(raw))) + raw
    size = (len(raw).bit_length() + 7) // 8  # X.690 §10.1: the shortest length form
    return bytes((tag, 0x80 | size)) + len(raw).to_bytes(size, "big") + raw


def _cert(*names: x509.GeneralName) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "common.example")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_identities_are_read_from_the_subject_alt_name() -> None:
    long_name = "x" * 60 + ".example"
    cert = _cert(
        x509.DNSName("Chat.Example"),
        x509.OtherName(ID_ON_XMPPADDR, _der(0x0C, "xmpp.example")),
        x509.OtherName(ID_ON_DNSSRV, _der(0x16, "_xmpp-server.srv.example")),
        x509.OtherName(ID_ON_XMPPADDR, _der(0x0C, "ö" * 100 + "." + long_name)),  # long form
        x509.OtherName(ID_ON_XMPPADDR, _der(0x16, "wrong-type.example")),  # not UTF8String
        x509.OtherName(ID_ON_DNSSRV, _der(0x16, "no-service.example")),  # no _service label
    )
    ids = identities_of(cert)
    assert ids.dns == {"chat.example"}
    assert ids.xmpp == {"xmpp.example", "ö" * 100 + "." + long_name}
    assert ids.srv == {"_xmpp-server.srv.example"}


def test_the_common_name_is_never_an_identity() -> None:
    """RFC 9525 §6.3: no CN-ID fallback, even with no subjectAltName names at all."""
    ids = identities_of(_cert(x509.RFC822Name("admin@common.example")))
    assert not ids
    assert not certificate_matches("common.example", ids)


def test_matching_rules() -> None:
    ids = CertIdentities(
        dns=frozenset({"*.wild.example", "plain.example"}),
        srv=frozenset({"_xmpp-server.srv.example", "_xmpp-client.client.example"}),
        xmpp=frozenset({"addr.example"}),
    )
    assert certificate_matches("plain.example", ids)
    assert certificate_matches("PLAIN.example.", ids)
    # RFC 6125 §6.4.3: the wildcard stands for exactly one whole leftmost label
    assert certificate_matches("a.wild.example", ids)
    assert not certificate_matches("wild.example", ids)
    assert not certificate_matches("a.b.wild.example", ids)
    # RFC 6125 §6.5.1: an SRV-ID names the service, not just the domain
    assert certificate_matches("srv.example", ids)
    assert not certificate_matches("client.example", ids)
    assert certificate_matches("client.example", ids, frozenset({"_xmpp-client"}))
    # RFC 6120 §13.7.1.4: an XmppAddr matches the domain itself and nothing under it
    assert certificate_matches("addr.example", ids)
    assert not certificate_matches("sub.addr.example", ids)
    assert not certificate_matches("other.example", ids)
