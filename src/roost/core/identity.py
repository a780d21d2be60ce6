"""Service identities in certificates (RFC 6125 / RFC 9525, RFC 6120 §13.7.1.4).

A certificate names an XMPP service in three ways: a DNS-ID (``dNSName``, which may carry
one leftmost wildcard), an SRV-ID (``otherName`` id-on-dnsSRV, RFC 4985: the service label
and the domain, ``_xmpp-server.example.net``) and an XmppAddr (``otherName``
id-on-xmppAddr, RFC 6120 §13.7.1.4: the bare domain). This module only compares names; the
transport reads them out of a certificate that has already verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["SERVER_SERVICES", "CertIdentities", "certificate_matches"]

#: the SRV-ID service labels that name an XMPP server (RFC 6120 §13.7.1.2.2, XEP-0368)
SERVER_SERVICES: Final = frozenset(("_xmpp-server", "_xmpps-server"))


@dataclass(frozen=True, slots=True)
class CertIdentities:
    """The reference identifiers one certificate presents, lower-cased."""

    dns: frozenset[str] = frozenset()
    #: SRV-IDs as "_service.domain"
    srv: frozenset[str] = frozenset()
    xmpp: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.dns or self.srv or self.xmpp)

    def names(self) -> list[str]:
        """Every identifier, for messages (``roost check``, logs)."""
        return sorted(self.dns | self.srv | self.xmpp)


def certificate_matches(
    domain: str, ids: CertIdentities, services: frozenset[str] = SERVER_SERVICES
) -> bool:
    """Whether ``ids`` name ``domain`` as a server (RFC 6125 §6.4, §6.5.1; RFC 9525 §6.3).

    DNS-IDs may have one wildcard as the whole leftmost label, matching exactly one label;
    SRV-IDs match when their service is one of ``services`` and their domain is
    ``domain``; an XmppAddr matches only ``domain`` itself (no wildcards, RFC 6120
    §13.7.1.4). The Common Name is never consulted (RFC 9525 §6.3).
    """
    domain = domain.lower().rstrip(".")
    if domain in ids.dns or domain in ids.xmpp:
        return True
    _, dot, parent = domain.partition(".")
    if dot and f"*.{parent}" in ids.dns:
        return True
    return any(f"{service}.{domain}" in ids.srv for service in services)
