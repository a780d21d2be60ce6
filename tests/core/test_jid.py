"""Tests for roost.core.jid: RFC 7622 parsing, preparation, comparison and the fast paths."""

from __future__ import annotations

import ast
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import roost.core.jid as jid_module
from roost.core.jid import JID, InvalidJID

# RFC 7622 §3.5, table 1: input -> (local, domain, resource) after preparation.
RFC7622_VALID = [
    ("juliet@example.com", ("juliet", "example.com", None)),
    ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
    ("foo\\20bar@example.com", ("foo\\20bar", "example.com", None)),
    ("fussball@example.com", ("fussball", "example.com", None)),
    ("fu\u00dfball@example.com", ("fu\u00dfball", "example.com", None)),
    ("\u03c0@example.com", ("\u03c0", "example.com", None)),
    ("\u03a3@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("\u03c3@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("\u03c2@example.com/foo", ("\u03c2", "example.com", "foo")),
    ("king@example.com/\u265a", ("king", "example.com", "\u265a")),
    ("example.com", (None, "example.com", None)),
    ("example.com/foobar", (None, "example.com", "foobar")),
    ("a.example.com/b@example.net", (None, "a.example.com", "b@example.net")),
]

# RFC 7622 §3.5, table 2 (example 18 is tested separately below): input -> part named.
RFC7622_INVALID = [
    ('"juliet"@example.com', "localpart"),
    ("foo bar@example.com", "localpart"),
    ("@example.com/", "localpart"),
    ("henry\u2163@example.com", "localpart"),
    ("\u265a@example.com", "localpart"),
    ("juliet@", "domainpart"),
    ("/foobar", "domainpart"),
]

MORE_INVALID = [
    ("", "domainpart"),
    ("example.com/", "resourcepart"),
    ("@example.com", "localpart"),
    ("a@b@example.com", "domainpart"),
    ("a:b@example.com", "localpart"),
    ("a<b@example.com", "localpart"),
    ("a\uff20b@example.com", "localpart"),  # FULLWIDTH COMMERCIAL AT maps to '@'
    ("a@exa mple.com", "domainpart"),
    ("a@exa<mple.com", "domainpart"),
    ("a@ex_ample.com", "domainpart"),
    ("a@-example.com", "domainpart"),
    ("a@example..com", "domainpart"),
    ("a@example.com..", "domainpart"),
    ("a@.", "domainpart"),
    ("a@[::1", "domainpart"),
    ("a@[::g]", "domainpart"),
    ("a@[fe80::1%25eth0]", "domainpart"),
    ("a@example.com/a\tb", "resourcepart"),
    ("a@example.com/a\x7fb", "resourcepart"),
    ("a\ud800@example.com", "localpart"),
]


@pytest.mark.parametrize(("text", "parts"), RFC7622_VALID)
def test_rfc7622_valid_examples(text: str, parts: tuple[str | None, str, str | None]) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == parts
    assert JID.parse(str(jid)) == jid


@pytest.mark.parametrize(("text", "part"), RFC7622_INVALID + MORE_INVALID)
def test_invalid_jids_name_the_part(text: str, part: str) -> None:
    with pytest.raises(InvalidJID, match=part):
        JID.parse(text)


def test_rfc7622_example_18_leading_space_in_resource_is_accepted() -> None:
    # Table 2 lists it as invalid, but no rule forbids it: OpaqueString (RFC 8265 §4.2)
    # allows spaces anywhere, and rejecting what other servers accept would lose stanzas.
    assert JID.parse("juliet@example.com/ foo").resource == " foo"


def test_invalid_jid_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        JID.parse("juliet@")


def test_examples_6_and_7_differ_9_and_10_match_11_differs() -> None:
    # RFC 7622 §3.5 notes: sharp s is not mapped to ss; capital sigma lowercases to small
    # sigma; small final sigma is not mapped to small sigma.
    assert JID.parse("fussball@example.com") != JID.parse("fu\u00dfball@example.com")
    assert JID.parse("\u03a3@example.com/foo") == JID.parse("\u03c3@example.com/foo")
    assert JID.parse("\u03c2@example.com/foo") != JID.parse("\u03c3@example.com/foo")


def test_localpart_case_folded_resource_case_kept_domain_lowercased() -> None:
    jid = JID.parse("JuLiEt@EXAMPLE.Com/BalCony")
    assert (jid.local, jid.domain, jid.resource) == ("juliet", "example.com", "BalCony")
    assert JID.parse("\uff2a\uff35\uff2c@example.com").local == "jul"  # width-mapped too
    assert JID.parse("a@example.com/Foo") != JID.parse("a@example.com/foo")


def test_domain_final_dot_is_stripped_once() -> None:
    assert JID.parse("a@example.com.") == JID.parse("a@example.com")
    assert JID.parse("example.com./r").domain == "example.com"
    assert JID.parse("a@example\u3002com\u3002").domain == "example.com"


def test_idn_domain_prepared_to_u_labels() -> None:
    assert JID.parse("a@B\u00dcCHER.example").domain == "b\u00fccher.example"
    assert JID.parse("a@xn--bcher-kva.example").domain == "b\u00fccher.example"
    assert JID.parse("a@XN--BCHER-KVA.example") == JID.parse("a@b\u00fccher.example")
    assert JID.parse("a@\uff25\uff38.com").domain == "ex.com"
    assert JID.parse("a@stra\u00dfe.de").domain == "stra\u00dfe.de"  # nontransitional


def test_ip_literal_and_host_name_domains() -> None:
    assert JID.parse("a@[::1]/r").domain == "[::1]"
    assert JID.parse("[0:0:0:0:0:0:0:1]") == JID.parse("[::1]")
    assert JID.parse("[2001:DB8::A]").domain == "[2001:db8::a]"
    assert JID.parse("a@127.0.0.1").domain == "127.0.0.1"
    assert JID.parse("localhost").domain == "localhost"
    assert JID.parse("LocalHost/x").domain == "localhost"


def test_bare_and_full() -> None:
    full = JID.parse("juliet@example.com/balcony")
    bare = full.bare
    assert full.is_full and not full.is_bare
    assert bare.is_bare and not bare.is_full
    assert bare == JID.parse("juliet@example.com")
    assert bare.bare is bare
    assert str(bare) == "juliet@example.com"
    assert JID.parse("example.com/x").bare == JID.make(None, "example.com")


def test_with_resource_prepares_it() -> None:
    bare = JID.parse("juliet@example.com")
    assert bare.with_resource("balcony") == JID.parse("juliet@example.com/balcony")
    assert bare.with_resource("a\u00a0b").resource == "a b"  # OpaqueString maps NBSP to space
    assert JID.parse("juliet@example.com/x").with_resource(None) == bare
    with pytest.raises(InvalidJID, match="resourcepart"):
        bare.with_resource("")
    with pytest.raises(InvalidJID, match="resourcepart"):
        bare.with_resource("\x00")


def test_make_prepares_parts_and_none_means_absent() -> None:
    assert JID.make("Juliet", "Example.COM.", "Balcony") == JID.parse("juliet@example.com/Balcony")
    assert JID.make(None, "example.com").local is None
    assert JID("Juliet", "EXAMPLE.com") == JID.make("juliet", "example.com")
    for local, domain, resource in [("", "example.com", None), ("a", "", None), ("a", "b", "")]:
        with pytest.raises(InvalidJID, match="empty"):
            JID.make(local, domain, resource)
    with pytest.raises(InvalidJID, match="localpart"):
        JID.make("a@b", "example.com")
    with pytest.raises(InvalidJID, match="domainpart"):
        JID.make("a", "example.com/r")


def test_equivalent_forms_are_equal_and_hash_alike() -> None:
    forms = ["JULIET@Example.com./x", "juliet@example.com/x", "\uff2aULIET@EXAMPLE.COM/x"]
    jids = [JID.parse(text) for text in forms]
    assert len(set(jids)) == 1
    assert {jids[0]: 1}[jids[2]] == 1
    assert JID.parse("a@b/x") != JID.parse("a@b/y") != JID.parse("a@b")


def test_immutable_slotted_and_picklable() -> None:
    jid = JID.parse("juliet@example.com/balcony")
    with pytest.raises(AttributeError):
        jid.local = "romeo"  # type: ignore[misc]
    assert not hasattr(jid, "__dict__")
    assert pickle.loads(pickle.dumps(jid)) == jid
    assert repr(jid) == "JID('juliet@example.com/balcony')"


def test_parse_is_cached() -> None:
    assert JID.parse("cached@example.com/r") is JID.parse("cached@example.com/r")


@pytest.mark.parametrize("name", ["localpart", "resourcepart"])
def test_part_length_limit_in_octets(name: str) -> None:
    def build(part: str) -> str:
        return f"{part}@example.com" if name == "localpart" else f"example.com/{part}"

    assert JID.parse(build("a" * 1023))
    assert JID.parse(build("\u00e9" * 511))  # 1022 octets
    with pytest.raises(InvalidJID, match=f"{name} is longer than 1023 octets"):
        JID.parse(build("a" * 1024))
    with pytest.raises(InvalidJID, match=name):
        JID.parse(build("\u00e9" * 512))  # 512 characters, 1024 octets


def test_domain_length_limits() -> None:
    label = "a" * 63
    assert JID.parse(f"{label}.com")
    with pytest.raises(InvalidJID, match="domainpart"):
        JID.parse(f"{'a' * 64}.com")
    long_name = ".".join([label] * 4)  # 255 octets: over RFC 1035's 253
    with pytest.raises(InvalidJID, match="domainpart"):
        JID.parse(long_name)
    with pytest.raises(InvalidJID, match="domainpart"):
        JID.parse("a" * 1024)


# Fast path == slow path. Characters the fast paths accept, every other ASCII character, and
# non-ASCII code points that case-fold or width-map to ASCII (KELVIN SIGN, LONG S, ...).
_SAFE = "abcxyzABCXYZ0189-._"
_TRICKY = "\u212a\u017f\u0130\uff21\u3002\uff0e\u00a0\u00ad"
_CHARS = [chr(code) for code in range(128)] + list(_TRICKY)
_mostly_safe = st.text(
    st.sampled_from(_SAFE) | st.characters(max_codepoint=0x7F) | st.sampled_from(_TRICKY),
    max_size=80,
)
_hosty = st.text(st.sampled_from(_SAFE + "[]:" + _TRICKY), max_size=80)
_PREPARERS = {
    "local": jid_module._prepare_local,
    "domain": jid_module._prepare_domain,
    "resource": jid_module._prepare_resource,
}


def _same_both_ways(prepare: Callable[..., str], text: str) -> None:
    outcomes = []
    for fast in (True, False):
        try:
            outcomes.append("ok:" + prepare(text, fast=fast))
        except InvalidJID:
            outcomes.append("invalid")
    assert outcomes[0] == outcomes[1], text


@pytest.mark.parametrize("kind", sorted(_PREPARERS))
def test_fast_path_equals_slow_for_every_ascii_character(kind: str) -> None:
    for char in _CHARS:
        for template in ("{}", "a{}b", "A{}", "{}{}", "x.{}", "{}.com", "ab{}-c.d"):
            _same_both_ways(_PREPARERS[kind], template.replace("{}", char))


@given(_mostly_safe)
@example("Juliet.Capulet-1_")
@example("a" * 1024)
def test_fast_local_equals_slow(text: str) -> None:
    _same_both_ways(jid_module._prepare_local, text)


@given(_mostly_safe)
@example(" Foo Bar ")
@example("a" * 1024)
def test_fast_resource_equals_slow(text: str) -> None:
    _same_both_ways(jid_module._prepare_resource, text)


@given(_hosty | _mostly_safe)
@example("Example.COM")
@example("ab--cd.example")
@example("xn--bcher-kva.example")
@example("-a.com")
@example("a" * 63 + ".com")
@example("a" * 64 + ".com")
@example(".".join(["a" * 63] * 4))
@example(".".join(["a" * 63] * 4)[:253])
def test_fast_domain_equals_slow(text: str) -> None:
    _same_both_ways(jid_module._prepare_domain, text)


_part = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)
_domain = st.sampled_from(
    ["example.com", "EXAMPLE.com.", "b\u00fccher.example", "xn--bcher-kva.example", "[::1]"]
)


@given(st.none() | _part, _domain, st.none() | _part)
def test_round_trip(local: str | None, domain: str, resource: str | None) -> None:
    try:
        jid = JID.make(local, domain, resource)
    except InvalidJID:
        return
    assert JID.parse(str(jid)) == jid
    assert str(JID.parse(str(jid))) == str(jid)


@given(st.text(max_size=60))
@example("a@b@c/d/e@f")
@example("\ufe0e@\u00ad/\u200b")
def test_parse_raises_only_invalid_jid(text: str) -> None:
    try:
        jid = JID.parse(text)
    except InvalidJID:
        return
    assert JID.parse(str(jid)) == jid


def test_core_module_imports_no_io() -> None:
    # Style rule 1: roost.core is sans-IO. Read the source, not sys.modules.
    tree = ast.parse(Path(jid_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    forbidden = {"asyncio", "socket", "ssl", "selectors", "logging", "time", "random"}
    assert imported, "expected to find imports"
    assert not imported & forbidden
