"""XMPP addresses (JIDs) per RFC 7622: parsing, preparation, enforcement and comparison.

A ``JID`` only ever holds prepared parts, so ``==`` and ``hash`` are RFC 7622 comparison:
localpart by the UsernameCaseMapped profile (§3.3), domainpart by IDNA2008 with UTS-46 mapping
(§3.2), resourcepart by the OpaqueString profile (§3.4).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import final

import idna
import precis_i18n

__all__ = ["JID", "InvalidJID"]

# RFC 7622 §3.1: each part is 1 to 1023 octets of UTF-8, counted after preparation.
_MAX_PART_OCTETS = 1023
# RFC 7622 §3.3.1: allowed by UsernameCaseMapped, but not in an XMPP localpart.
_LOCAL_EXCLUDED = frozenset("\"&'/:<>@")

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")

# Fast paths: ASCII input these patterns accept prepares to the same value as the full
# PRECIS/IDNA path (tests/core/test_jid.py checks that). No re.IGNORECASE: with it, [a-z]
# also matches U+212A KELVIN SIGN and U+017F LONG S.
_FAST_LOCAL = re.compile(r"[A-Za-z0-9._-]+")
_FAST_RESOURCE = re.compile(r"[\x20-\x7e]+")
_LDH_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST_DOMAIN = re.compile(rf"(?:{_LDH_LABEL}\.)*{_LDH_LABEL}")
_MAX_DNS_NAME = 253  # RFC 1035 octets, without the final dot; idna enforces the same
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


class InvalidJID(ValueError):
    """A string or part that is not a valid JID (RFC 7622 §3); the message names the part."""


def _show(text: str) -> str:
    """``repr`` of a part for an error message, cut short so hostile input stays small."""
    return repr(text) if len(text) <= 64 else repr(text[:64]) + "..."


def _why(exc: UnicodeError) -> str:
    """Why PRECIS refused a string: its rule name and the offending code points."""
    if isinstance(exc, UnicodeEncodeError):
        char = exc.object[exc.start : exc.end]
        codes = " ".join(f"U+{ord(c):04X}" for c in char)
        return f"{exc.reason} ({codes} at position {exc.start})"
    return str(exc)


def _checked_length(name: str, part: str) -> str:
    # RFC 7622 §3.2, §3.3, §3.4: 1..1023 octets, enforced after preparation.
    if len(part.encode("utf-8", "surrogatepass")) > _MAX_PART_OCTETS:
        raise InvalidJID(f"{name} is longer than {_MAX_PART_OCTETS} octets")
    return part


def _prepare_local(text: str, *, fast: bool = True) -> str:
    """Localpart enforcement: UsernameCaseMapped (RFC 7622 §3.3) plus §3.3.1 exclusions."""
    if not text:
        raise InvalidJID("localpart is empty")
    if fast and _FAST_LOCAL.fullmatch(text):
        return _checked_length("localpart", text.lower())
    try:
        part = _USERNAME.enforce(text)
    except UnicodeError as exc:
        raise InvalidJID(f"localpart {_show(text)}: {_why(exc)}") from None
    bad = _LOCAL_EXCLUDED.intersection(part)
    if bad:
        chars = " ".join(sorted(bad))
        raise InvalidJID(f"localpart {_show(text)}: contains {chars} (RFC 7622 §3.3.1)")
    return _checked_length("localpart", part)


def _prepare_resource(text: str, *, fast: bool = True) -> str:
    """Resourcepart enforcement: OpaqueString (RFC 7622 §3.4); case and spaces are kept."""
    if not text:
        raise InvalidJID("resourcepart is empty")
    if fast and _FAST_RESOURCE.fullmatch(text):
        return _checked_length("resourcepart", text)
    try:
        part = _OPAQUE.enforce(text)
    except UnicodeError as exc:
        raise InvalidJID(f"resourcepart {_show(text)}: {_why(exc)}") from None
    return _checked_length("resourcepart", part)


def _prepare_domain(text: str, *, fast: bool = True) -> str:
    """Domainpart enforcement (RFC 7622 §3.2): IP literal, or an IDN in U-label form."""
    # RFC 7622 §3.2: a final dot is stripped before any other canonicalization.
    host = text[:-1] if text.endswith(".") else text
    if not host:
        raise InvalidJID("domainpart is empty")
    if host.startswith("["):
        return _prepare_ipv6(text, host)
    if _IPV4.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            pass  # e.g. 300.1.1.1: not an address, so (RFC 3986 App. B) a host name
    if fast and len(host) <= _MAX_DNS_NAME and "--" not in host and _FAST_DOMAIN.fullmatch(host):
        return host.lower()
    try:
        # UTS-46 mapping may turn U+3002 and friends into a final dot: strip that one too.
        mapped = idna.uts46_remap(text, std3_rules=True)
        mapped = mapped[:-1] if mapped.endswith(".") else mapped
        ace = idna.encode(mapped, strict=True)
        if ace.endswith(b"."):
            raise idna.IDNAError("Empty Label")
        # RFC 7622 §3.2.1: A-labels are converted to U-labels.
        domain = idna.decode(ace)
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidJID(f"domainpart {_show(text)}: {exc}") from None
    return _checked_length("domainpart", domain)


def _prepare_ipv6(text: str, host: str) -> str:
    """RFC 7622 §3.1 IP-literal; zone identifiers (RFC 6874) are not accepted."""
    inner = host[1:-1] if host.endswith("]") else None
    if inner is None or "%" in inner:
        raise InvalidJID(f"domainpart {_show(text)}: not a valid IPv6 literal")
    try:
        return f"[{ipaddress.IPv6Address(inner).compressed}]"
    except ValueError as exc:
        raise InvalidJID(f"domainpart {_show(text)}: {exc}") from None


@final
@dataclass(frozen=True, slots=True, repr=False, eq=False)
class JID:
    """An XMPP address; parts are prepared when built, so equal JIDs compare equal (§3)."""

    local: str | None
    domain: str
    resource: str | None = None
    # Derived values cached on first use: JIDs are hashed, compared and stripped of their
    # resource on every routed stanza.
    _bare: JID | None = field(default=None, init=False, repr=False, compare=False)
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        h = self._hash
        if not h:
            h = hash((self.local, self.domain, self.resource)) or 1
            object.__setattr__(self, "_hash", h)
        return h

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, JID):
            return NotImplemented
        return (
            self.domain == other.domain
            and self.local == other.local
            and self.resource == other.resource
        )

    def __post_init__(self) -> None:
        # Values are validated when built: the constructor prepares like ``make``.
        if self.local is not None:
            object.__setattr__(self, "local", _prepare_local(self.local))
        object.__setattr__(self, "domain", _prepare_domain(self.domain))
        if self.resource is not None:
            object.__setattr__(self, "resource", _prepare_resource(self.resource))

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse and enforce a JID string (RFC 7622 §3.1, §3.2); cached; raises ``InvalidJID``."""
        return _parse(text)

    @classmethod
    def make(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build from parts, preparing each; ``None`` means absent, ``''`` is invalid."""
        return cls(local, domain, resource)

    @classmethod
    def _prepared(cls, local: str | None, domain: str, resource: str | None) -> JID:
        # Parts taken from an existing JID are already prepared: skip preparing them again.
        jid = object.__new__(cls)
        object.__setattr__(jid, "local", local)
        object.__setattr__(jid, "domain", domain)
        object.__setattr__(jid, "resource", resource)
        object.__setattr__(jid, "_bare", None)
        object.__setattr__(jid, "_hash", 0)
        return jid

    @property
    def bare(self) -> JID:
        """This JID without its resourcepart (``self`` when already bare)."""
        if self.resource is None:
            return self
        bare = self._bare
        if bare is None:
            bare = JID._prepared(self.local, self.domain, None)
            object.__setattr__(self, "_bare", bare)
        return bare

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def is_full(self) -> bool:
        return self.resource is not None

    def with_resource(self, resource: str | None) -> JID:
        """The same bare JID with ``resource`` (prepared), or bare for ``None``."""
        if resource is None:
            return self.bare
        return JID._prepared(self.local, self.domain, _prepare_resource(resource))

    def __str__(self) -> str:
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.resource is None else f"{text}/{self.resource}"

    def __repr__(self) -> str:
        return f"JID({str(self)!r})"


@lru_cache(maxsize=65536)
def _parse(text: str) -> JID:
    # RFC 7622 §3.1 and §3.2: split at the first '/' before splitting at '@', and before
    # any preparation (which could map other characters to '@' or '/').
    head, slash, resource = text.partition("/")
    local, at, domain = head.partition("@")
    part = resource if slash else None
    return JID(local, domain, part) if at else JID(None, head, part)
