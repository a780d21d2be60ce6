"""XEP-0115 verification strings, hashes and §5.4 validation, checked on the XEP's examples."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.core import ns
from roost.core.caps import (
    CAPS,
    DATA_FORMS,
    SUPPORTED_HASHES,
    Caps,
    CapsCache,
    CapsError,
    caps_hash,
    validate,
    verification_string,
    verify,
)
from roost.core.xml.element import XML_LANG, Element
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize

FEATURES = (
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "http://jabber.org/protocol/muc",
)

# XEP-0115 §5.2: the simple example.
SIMPLE_S = (
    "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
    "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    "http://jabber.org/protocol/muc<"
)
SIMPLE_VER = "QgayPKawpkPSDYmwT/WM94uAlu0="

# XEP-0115 §5.3: the complex example's disco#info result, verbatim.
COMPLEX_IQ = """<iq from='benvolio@capulet.lit/230193'
    id='disco1'
    to='juliet@capulet.lit/chamber'
    type='result'>
  <query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
    <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:dataforms:softwareinfo</value>
      </field>
      <field var='ip_version' type='text-multi' >
        <value>ipv4</value>
        <value>ipv6</value>
      </field>
      <field var='os'>
        <value>Mac</value>
      </field>
      <field var='os_version'>
        <value>10.5.1</value>
      </field>
      <field var='software'>
        <value>Psi</value>
      </field>
      <field var='software_version'>
        <value>0.11</value>
      </field>
    </x>
  </query>
</iq>"""
COMPLEX_S = (
    "client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
    "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<"
    "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
)
COMPLEX_VER = "q07IKJEyjvHSyhy//CH0CxmKi8w="


def query(*children: Element, node: str | None = None) -> Element:
    return Element("query", ns.DISCO_INFO, {"node": node} if node else {}, list(children))


def identity(
    category: str, type_: str, name: str | None = None, lang: str | None = None
) -> Element:
    attrs = {"category": category, "type": type_}
    if name is not None:
        attrs["name"] = name
    if lang is not None:
        attrs[XML_LANG] = lang
    return Element("identity", ns.DISCO_INFO, attrs)


def feature(var: str) -> Element:
    return Element("feature", ns.DISCO_INFO, {"var": var})


def field(var: str | None, *values: str, type_: str | None = None) -> Element:
    attrs = {} if var is None else {"var": var}
    if type_ is not None:
        attrs["type"] = type_
    el = Element("field", DATA_FORMS, attrs)
    for v in values:
        el.sub("value", text=v)
    return el


def form(form_type: str | None, *fields: Element, hidden: bool = True) -> Element:
    x = Element("x", DATA_FORMS, {"type": "result"})
    if form_type is not None:
        x.append(field("FORM_TYPE", form_type, type_="hidden" if hidden else None))
    x.children.extend(fields)
    return x


def simple() -> Element:
    return query(identity("client", "pc", "Exodus 0.9.1"), *(feature(f) for f in FEATURES))


def complex_query() -> Element:
    iq = parse_fragment(COMPLEX_IQ)
    q = iq.find("query", ns.DISCO_INFO)
    assert q is not None
    return q


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# -- the XEP's worked examples -----------------------------------------------------------------


def test_simple_example() -> None:
    """§5.2, built as an element tree."""
    q = simple()
    assert verification_string(q) == SIMPLE_S
    assert caps_hash(q) == SIMPLE_VER
    assert caps_hash(q, "sha-1") == SIMPLE_VER
    assert validate(q)
    assert verify(q, SIMPLE_VER)


def test_simple_example_in_any_order() -> None:
    """Order on the wire does not matter: S is built from sorted parts."""
    parts = [identity("client", "pc", "Exodus 0.9.1"), *(feature(f) for f in FEATURES)]
    for perm in itertools.permutations(parts):
        assert caps_hash(query(*perm)) == SIMPLE_VER


_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="<"), max_size=8)


@given(
    st.lists(st.tuples(_text.filter(bool), _text.filter(bool), _text, _text), unique=True),
    st.lists(_text, unique=True),
    st.randoms(use_true_random=False),
)
def test_s_matches_the_definition_in_any_order(
    identities: list[tuple[str, str, str, str]], features: list[str], rnd: random.Random
) -> None:
    """S is the sorted identities then the sorted features, each followed by '<' (§5.1)."""
    children = [identity(c, t, n or None, lang or None) for c, t, lang, n in identities]
    children += [feature(f) for f in features]
    rnd.shuffle(children)
    expected = "".join(f"{'/'.join(i)}<" for i in sorted(identities))
    expected += "".join(f"{f}<" for f in sorted(features, key=lambda f: f.encode()))
    assert verification_string(query(*children)) == expected
    assert validate(query(*children))


def test_complex_example_parsed_from_the_xep() -> None:
    """§5.3, parsed from the example's XML: xml:lang, a non-ASCII name, an XEP-0128 form."""
    q = complex_query()
    assert verification_string(q) == COMPLEX_S
    assert caps_hash(q) == COMPLEX_VER
    assert verify(q, COMPLEX_VER)
    # the 'node' attribute is not part of S
    assert q.get("node") == f"http://psi-im.org#{COMPLEX_VER}"
    q.attrs.pop("node")
    assert caps_hash(q) == COMPLEX_VER


def test_complex_example_built_as_tree() -> None:
    q = query(
        identity("client", "pc", "\u03a8 0.11", "el"),
        identity("client", "pc", "Psi 0.11", "en"),
        *(feature(f) for f in reversed(FEATURES)),
        form(
            "urn:xmpp:dataforms:softwareinfo",
            field("software_version", "0.11"),
            field("software", "Psi"),
            field("os_version", "10.5.1"),
            field("os", "Mac"),
            field("ip_version", "ipv6", "ipv4", type_="text-multi"),
        ),
    )
    assert verification_string(q) == COMPLEX_S
    assert caps_hash(q) == COMPLEX_VER


def test_form_type_first_wherever_it_is() -> None:
    """§5.1 7.1: the FORM_TYPE value comes first even when it is not the first field."""
    q = complex_query()
    x = q.find("x", DATA_FORMS)
    assert x is not None
    x.children.reverse()
    assert caps_hash(q) == COMPLEX_VER


@pytest.mark.parametrize("algo", sorted(SUPPORTED_HASHES))
def test_other_hashes(algo: str) -> None:
    name = algo.replace("-", "")
    expected = b64(hashlib.new(name, COMPLEX_S.encode()).digest())
    assert caps_hash(complex_query(), algo) == expected
    assert verify(complex_query(), expected, algo)
    if algo != "sha-1":
        assert not verify(complex_query(), COMPLEX_VER, algo)


def test_sha256_value() -> None:
    assert caps_hash(simple(), "sha-256") == b64(hashlib.sha256(SIMPLE_S.encode()).digest())


@pytest.mark.parametrize("algo", ["md5", "sha1", "SHA-1", "sha3-256", "shake128", ""])
def test_unsupported_hash(algo: str) -> None:
    with pytest.raises(CapsError):
        caps_hash(simple(), algo)
    assert not verify(simple(), SIMPLE_VER, algo)


# -- ordering rules -----------------------------------------------------------------------------


def test_identities_sorted_by_category_type_lang() -> None:
    q = query(
        identity("client", "pc", "B", "en"),
        identity("client", "pc", "A", "de"),
        identity("client", "pc"),
        identity("automation", "command-list"),
        identity("client", "bot", "Z"),
    )
    assert verification_string(q) == (
        "automation/command-list//<client/bot//Z<client/pc//<client/pc/de/A<client/pc/en/B<"
    )


def test_octet_collation() -> None:
    """i;octet: uppercase before lowercase, ASCII before anything else, no locale."""
    q = query(identity("c", "t"), feature("b"), feature("\u00e9"), feature("B"), feature("a"))
    assert verification_string(q) == "c/t//<B<a<b<\u00e9<"


def test_forms_sorted_by_form_type_fields_by_var_values_sorted() -> None:
    q = query(
        identity("c", "t"),
        form("urn:z", field("b", "2", "1"), field("a", "x")),
        form("urn:a", field("m")),
    )
    assert verification_string(q) == "c/t//<urn:a<m<urn:z<a<x<b<1<2<"


def test_field_without_var_is_skipped() -> None:
    """XEP-0004: only 'fixed' fields may lack a var; they carry no data to hash."""
    with_fixed = query(identity("c", "t"), form("urn:f", field(None, "note"), field("v", "1")))
    plain = query(identity("c", "t"), form("urn:f", field("v", "1")))
    assert verification_string(with_fixed) == verification_string(plain) == "c/t//<urn:f<v<1<"


def test_other_children_are_not_hashed() -> None:
    q = simple()
    q.append(Element("x", "urn:example:other", {}, ["ignored"]))
    q.children.insert(0, "\n  ")
    assert caps_hash(q) == SIMPLE_VER


# -- §5.4 validation ----------------------------------------------------------------------------


def test_duplicate_identity_is_ill_formed() -> None:
    q = simple()
    q.append(identity("client", "pc", "Exodus 0.9.1"))
    assert not validate(q)
    assert not verify(q, SIMPLE_VER)
    with pytest.raises(CapsError):
        verification_string(q)


def test_same_identity_other_name_or_lang_is_fine() -> None:
    q = simple()
    q.append(identity("client", "pc", "Exodus", "en"))
    assert validate(q)


def test_duplicate_feature_is_ill_formed() -> None:
    q = simple()
    q.append(feature("http://jabber.org/protocol/muc"))
    assert not validate(q)
    assert not verify(q, SIMPLE_VER)


def test_duplicate_form_type_is_ill_formed() -> None:
    q = query(identity("c", "t"), form("urn:f", field("a", "1")), form("urn:f", field("b")))
    assert not validate(q)


def test_form_type_with_different_values_is_ill_formed() -> None:
    x = Element("x", DATA_FORMS, {"type": "result"})
    x.append(field("FORM_TYPE", "urn:a", "urn:b", type_="hidden"))
    assert not validate(query(identity("c", "t"), x))


def test_form_type_with_repeated_same_value_is_fine() -> None:
    x = Element("x", DATA_FORMS, {"type": "result"})
    x.append(field("FORM_TYPE", "urn:a", "urn:a", type_="hidden"))
    x.append(field("f", "1"))
    q = query(identity("c", "t"), x)
    assert validate(q)
    assert verification_string(q) == "c/t//<urn:a<f<1<"


def test_form_without_form_type_is_ignored() -> None:
    """§5.4 3.6: ignore the form, keep processing (the hash is as if it were absent)."""
    q = simple()
    q.append(form(None, field("os", "Mac")))
    assert validate(q)
    assert caps_hash(q) == SIMPLE_VER
    assert verify(q, SIMPLE_VER)


def test_form_type_not_hidden_is_ignored() -> None:
    q = simple()
    q.append(form("urn:f", field("os", "Mac"), hidden=False))
    assert validate(q)
    assert caps_hash(q) == SIMPLE_VER


def test_missing_identity_parts_or_feature_var_are_ill_formed() -> None:
    no_type = query(Element("identity", ns.DISCO_INFO, {"category": "client"}))
    no_var = query(identity("c", "t"), Element("feature", ns.DISCO_INFO))
    for q in (no_type, no_var):
        assert not validate(q)
        with pytest.raises(CapsError):
            caps_hash(q)


def test_not_a_disco_query() -> None:
    with pytest.raises(CapsError):
        verification_string(Element("query", ns.DISCO_ITEMS))


@pytest.mark.parametrize(
    "poisoned",
    [
        query(identity("client", "pc", "Exodus 0.9.1<x"), feature("a")),
        query(identity("client", "pc"), feature("a<b")),
        query(identity("c", "t"), form("urn:f", field("v", "1<2"))),
        query(identity("c", "t"), form("urn:f", field("v<w", "1"))),
    ],
)
def test_separator_in_a_string_is_refused(poisoned: Element) -> None:
    """§9.3: '<' inside a part lets two different responses share one S."""
    assert not validate(poisoned)
    assert not verify(poisoned, caps_hash(poisoned))


def test_separator_collision_is_real() -> None:
    """Why: these two responses mean different things and give the same 'ver'."""
    honest = query(identity("client", "pc"), feature("urn:a"), feature("urn:b"))
    forged = query(identity("client", "pc"), feature("urn:a<urn:b"))
    assert caps_hash(honest) == caps_hash(forged)
    assert verify(honest, caps_hash(honest))
    assert not verify(forged, caps_hash(honest))


def test_verify_wrong_ver() -> None:
    assert not verify(simple(), COMPLEX_VER)
    assert not verify(simple(), "")


# -- the <c/> element and the cache -------------------------------------------------------------


def test_caps_element_round_trip() -> None:
    el = parse_fragment(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        "node='http://code.google.com/p/exodus' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
    )
    caps = Caps.find_in(el)
    assert caps == Caps("http://code.google.com/p/exodus", SIMPLE_VER, "sha-1")
    assert caps.disco_node == f"http://code.google.com/p/exodus#{SIMPLE_VER}"
    assert serialize(caps.to_element()) == (
        f"<c xmlns='{CAPS}' node='http://code.google.com/p/exodus' "
        f"ver='QgayPKawpkPSDYmwT/WM94uAlu0=' hash='sha-1'/>"
    )


def test_caps_element_legacy_and_incomplete() -> None:
    legacy = Element("c", CAPS, {"node": "http://psi-im.org/caps", "ver": "0.11"})
    assert Caps.from_element(legacy) == Caps("http://psi-im.org/caps", "0.11", None)
    assert "hash" not in Caps("n", "v", None).to_element().attrs
    assert Caps.from_element(Element("c", CAPS, {"hash": "sha-1", "ver": "x"})) is None
    assert Caps.from_element(Element("c", CAPS, {"hash": "sha-1", "node": "n"})) is None
    assert Caps.find_in(Element("presence", ns.CLIENT)) is None


def test_cache_is_lru_and_keyed_by_hash() -> None:
    cache = CapsCache(max_entries=2)
    a, b, c = simple(), complex_query(), query(identity("c", "t"))
    cache.put("A", a)
    cache.put("B", b)
    assert cache.get("A") is a  # A is now the most recent
    cache.put("C", c, "sha-256")
    assert len(cache) == 2
    assert "B" not in cache
    assert "A" in cache and ("sha-256", "C") in cache and "C" not in cache
    assert cache.get("C") is None and cache.get("C", "sha-256") is c
    cache.discard("A")
    assert cache.get("A") is None
    with pytest.raises(ValueError):
        CapsCache(0)
