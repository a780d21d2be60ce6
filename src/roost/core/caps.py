"""XEP-0115 Entity Capabilities: the verification string, its hash, and §5.4 validation.

Pure: a disco#info ``<query/>`` in, strings and booleans out. Shared by the server (its own
caps, and the cache of its clients') and the client library.

Sorting is "i;octet" (XEP-0115 §5.1, RFC 4790 §9.3): Python orders ``str`` by code point,
which is the order of their UTF-8 bytes, so plain ``sorted`` is that collation.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from roost.core.ns import DISCO_INFO
from roost.core.xml.element import XML_LANG, Element

__all__ = [
    "CAPS",
    "DATA_FORMS",
    "SUPPORTED_HASHES",
    "Caps",
    "CapsCache",
    "CapsError",
    "caps_hash",
    "validate",
    "verification_string",
    "verify",
]

#: the ``<c/>`` namespace (XEP-0115 §4); also the disco feature of caps support (§7)
CAPS: Final = "http://jabber.org/protocol/caps"
#: XEP-0004 data forms, which carry XEP-0128 extended disco information
DATA_FORMS: Final = "jabber:x:data"
_FORM_TYPE: Final = "FORM_TYPE"

#: IANA "Hash Function Textual Names" -> hashlib names. XEP-0115 §9.1: SHA-1 is mandatory;
#: MD5/MD2 are left out on purpose (§9.2: preimage resistance is what keeps caps sound).
SUPPORTED_HASHES: Final[dict[str, str]] = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}


class CapsError(ValueError):
    """An ill-formed disco#info response (XEP-0115 §5.4) or an unsupported hash."""


@dataclass(frozen=True, slots=True)
class Caps:
    """The ``<c/>`` annotation of presence or stream features (XEP-0115 §4).

    ``algo`` is the 'hash' attribute; ``None`` means the legacy format (§11), whose 'ver' is
    not a verification string.
    """

    node: str
    ver: str
    algo: str | None = "sha-1"

    @classmethod
    def from_element(cls, el: Element) -> Caps | None:
        """Read a ``<c/>``; ``None`` when it lacks the required 'node' or 'ver'."""
        node, ver = el.get("node"), el.get("ver")
        if not node or not ver:
            return None
        return cls(node, ver, el.get("hash") or None)

    @classmethod
    def find_in(cls, stanza: Element) -> Caps | None:
        """The caps annotation of a presence or features element, if any."""
        el = stanza.find("c", CAPS)
        return None if el is None else cls.from_element(el)

    def to_element(self) -> Element:
        attrs = {"node": self.node, "ver": self.ver}
        if self.algo is not None:
            attrs["hash"] = self.algo
        return Element("c", CAPS, attrs)

    @property
    def disco_node(self) -> str:
        """The node to query with disco#info: node '#' ver (§6.2)."""
        return f"{self.node}#{self.ver}"


@dataclass(frozen=True, slots=True)
class _Form:
    form_type: str
    fields: tuple[tuple[str, tuple[str, ...]], ...]  # (var, sorted values), sorted, no FORM_TYPE


@dataclass(frozen=True, slots=True)
class _Info:
    identities: tuple[tuple[str, str, str, str], ...]  # (category, type, lang, name), sorted
    features: tuple[str, ...]  # sorted
    forms: tuple[_Form, ...]  # sorted by FORM_TYPE

    def strings(self) -> list[str]:
        """Every string that goes into S, before separators."""
        out = [part for identity in self.identities for part in identity]
        out.extend(self.features)
        for form in self.forms:
            out.append(form.form_type)
            for var, values in form.fields:
                out.append(var)
                out.extend(values)
        return out


def _values(field: Element) -> list[str]:
    return [v.text for v in field.find_all("value", DATA_FORMS)]


def _form(x: Element) -> _Form | None:
    """One XEP-0128 form, or ``None`` when §5.4 says to ignore it."""
    fields = x.find_all("field", DATA_FORMS)
    type_fields = [f for f in fields if f.get("var") == _FORM_TYPE]
    if not type_fields:
        return None  # §5.4 3.6: no FORM_TYPE: ignore the form, carry on
    if len(type_fields) > 1:
        raise CapsError("a form has more than one FORM_TYPE field")
    type_field = type_fields[0]
    form_types = set(_values(type_field))
    if len(form_types) > 1:
        raise CapsError("a FORM_TYPE field has several different values")  # §5.4 3.5
    if not form_types or type_field.get("type") != "hidden":
        return None  # §5.4 3.6: FORM_TYPE not hidden (or empty): ignore the form
    rows = sorted(
        (var, tuple(sorted(_values(f))))
        for f in fields
        if (var := f.get("var")) is not None and var != _FORM_TYPE
    )
    return _Form(form_types.pop(), tuple(rows))


def _info(query: Element) -> _Info:
    """The parts of S from a disco#info query, checked against §5.4 3.3-3.6."""
    if query.tag != "query" or query.ns != DISCO_INFO:
        raise CapsError("not a disco#info query")
    identities = []
    for el in query.find_all("identity", DISCO_INFO):
        category, type_ = el.get("category"), el.get("type")
        if not category or not type_:
            # XEP-0030 §3.1 and XEP-0115 §5.1 step 2: both are required
            raise CapsError("an identity lacks its category or type")
        identities.append((category, type_, el.get(XML_LANG) or "", el.get("name") or ""))
    if len(set(identities)) != len(identities):
        raise CapsError("duplicate identity")  # §5.4 3.3
    features = []
    for el in query.find_all("feature", DISCO_INFO):
        var = el.get("var")
        if var is None:
            raise CapsError("a feature lacks its var")
        features.append(var)
    if len(set(features)) != len(features):
        raise CapsError("duplicate feature")  # §5.4 3.4
    forms = [f for x in query.find_all("x", DATA_FORMS) if (f := _form(x)) is not None]
    form_types = [f.form_type for f in forms]
    if len(set(form_types)) != len(form_types):
        raise CapsError("two forms with the same FORM_TYPE")  # §5.4 3.5
    return _Info(
        tuple(sorted(identities)),
        tuple(sorted(features)),
        tuple(sorted(forms, key=lambda f: f.form_type)),
    )


def _s(info: _Info) -> str:
    """XEP-0115 §5.1 steps 1-7: each part followed by '<'."""
    parts = ["/".join(identity) for identity in info.identities]
    parts.extend(info.features)
    for form in info.forms:
        parts.append(form.form_type)  # §5.1 7.1: the FORM_TYPE value comes first
        for var, values in form.fields:
            parts.append(var)
            parts.extend(values)
    return "".join(f"{p}<" for p in parts)


def verification_string(query: Element) -> str:
    """The string S of XEP-0115 §5.1 for a disco#info ``<query/>``.

    Forms §5.4 says to ignore (no hidden FORM_TYPE) are left out. Raises ``CapsError`` for a
    query §5.4 calls ill-formed (duplicate identities, features or FORM_TYPEs).
    """
    return _s(_info(query))


def _digest(s: str, algo: str) -> str:
    name = SUPPORTED_HASHES.get(algo)
    if name is None:
        raise CapsError(f"unsupported caps hash {algo!r}")
    # §5.1 step 9: binary digest, Base64 without whitespace (RFC 4648 §4)
    return base64.b64encode(hashlib.new(name, s.encode("utf-8")).digest()).decode("ascii")


def caps_hash(query: Element, algo: str = "sha-1") -> str:
    """The 'ver' of a disco#info ``<query/>``: S hashed with ``algo`` (an IANA name), Base64.

    Raises ``CapsError`` for an unsupported ``algo`` or an ill-formed query.
    """
    if algo not in SUPPORTED_HASHES:
        raise CapsError(f"unsupported caps hash {algo!r}")
    return _digest(verification_string(query), algo)


def validate(query: Element) -> bool:
    """Whether a disco#info response is well-formed for caps (XEP-0115 §5.4 3.3-3.5).

    Also refuses any hashed string containing '<' (the separator of S): with it, different
    responses give the same S, the "trivial preimage attack" behind XEP-0115 §9.3 (caps
    poisoning). No real identity, feature or form value needs one.
    """
    try:
        info = _info(query)
    except CapsError:
        return False
    return not any("<" in s for s in info.strings())


def verify(query: Element, ver: str, algo: str = "sha-1") -> bool:
    """§5.4 step 3: a well-formed response whose recomputed hash equals ``ver``.

    False for an unsupported ``algo`` too: §5.4 step 2 says not to validate (nor globally
    cache) such a 'ver'.
    """
    if algo not in SUPPORTED_HASHES or not validate(query):
        return False
    return _digest(_s(_info(query)), algo) == ver


class CapsCache:
    """Verified disco#info responses by (hash, ver), least recently used dropped first.

    XEP-0115 §8.2 recommends caching across presence sessions; this cache lives in memory
    only, so a restart re-queries each 'ver' once. Bounded: any client can mint valid 'ver's.
    """

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int = 1000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Element] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """``(algo, ver) in cache``, or just ``ver in cache`` for SHA-1."""
        if isinstance(key, str):
            key = ("sha-1", key)
        return key in self._entries

    def get(self, ver: str, algo: str = "sha-1") -> Element | None:
        """The verified ``<query/>`` for ``ver``, or ``None``. Do not modify it."""
        key = (algo, ver)
        query = self._entries.get(key)
        if query is not None:
            self._entries.move_to_end(key)
        return query

    def put(self, ver: str, query: Element, algo: str = "sha-1") -> None:
        """Store a response the caller has verified (see ``verify``)."""
        key = (algo, ver)
        self._entries[key] = query
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def items(self) -> list[tuple[tuple[str, str], Element]]:
        """Every entry as ``((hash, ver), query)``, least recently used first."""
        return list(self._entries.items())

    def discard(self, ver: str, algo: str = "sha-1") -> None:
        self._entries.pop((algo, ver), None)
