"""Parser, writer and error objects: bytes in, events out (RFC 6120 §4, §11)."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.core import ns
from roost.core.errors import (
    StanzaError,
    StanzaErrorCondition,
    StreamError,
    StreamErrorCondition,
    error_reply,
    parse_stanza_error,
)
from roost.core.xml.element import XML_LANG, Element
from roost.core.xml.parser import ElementParsed, StreamClosed, StreamOpened, XMLStreamParser
from roost.core.xml.writer import escape_attr, escape_text, serialize, stream_header

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xml:lang='en' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
STREAM = (
    HEADER + b"<message to='juliet@example.com' type='chat' id='m1' xml:lang='fr'>"
    b"<body>caf\xc3\xa9 \xe2\x98\x95 &amp; &lt;tag&gt; &#x263A;</body>"
    b"<x xmlns='urn:example' a='&apos;q&apos;'/><thread>t</thread></message>"
    b"  \n "
    b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
    b"<presence><show>away</show><status>\xf0\x9f\x98\x80</status></presence>"
    b"</stream:stream>"
)


def events_of(chunks: list[bytes]) -> list[object]:
    parser = XMLStreamParser()
    out: list[object] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def _normal(evs: list[object]) -> list[object]:
    return [("stanza", serialize(e.element)) if isinstance(e, ElementParsed) else e for e in evs]


def test_whole_stream_events() -> None:
    evs = events_of([STREAM])
    assert isinstance(evs[0], StreamOpened)
    assert evs[0].namespaces == {"": ns.CLIENT, "stream": ns.STREAM}
    assert evs[0].attrs["to"] == "localhost"
    assert isinstance(evs[-1], StreamClosed)
    stanzas = [e.element for e in evs if isinstance(e, ElementParsed)]
    assert [s.tag for s in stanzas] == ["message", "iq", "presence"]
    msg = stanzas[0]
    assert msg.ns == ns.CLIENT and msg.attrs[XML_LANG] == "fr"
    body = msg.find("body")
    assert body is not None and body.text == "café ☕ & <tag> ☺"
    x = msg.find("x", "urn:example")
    assert x is not None and x.get("a") == "'q'"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_identical_events(cuts: list[int]) -> None:
    """Acceptance 6: chunking (even inside a UTF-8 sequence) never changes the events."""
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _normal(events_of(chunks)) == _normal(events_of([STREAM]))


def test_byte_by_byte() -> None:
    assert _normal(events_of([bytes([b]) for b in STREAM])) == _normal(events_of([STREAM]))


def events_hibernating(chunks: list[bytes]) -> tuple[list[object], int]:
    """Events of ``chunks`` with ``hibernate()`` tried after every chunk; how often it took."""
    parser = XMLStreamParser()
    out: list[object] = []
    slept = 0
    for chunk in chunks:
        out.extend(parser.feed(chunk))
        if not parser.closed and parser.hibernate():
            assert parser.hibernating
            slept += 1
    return out, slept


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_hibernating_between_chunks_never_changes_events(cuts: list[int]) -> None:
    """Dropping expat wherever it allows (even mid-token it must refuse) loses nothing."""
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _normal(events_hibernating(chunks)[0]) == _normal(events_of([STREAM]))


def test_hibernate_byte_by_byte() -> None:
    evs, slept = events_hibernating([bytes([b]) for b in STREAM])
    assert _normal(evs) == _normal(events_of([STREAM]))
    assert slept > 3  # after the header, each stanza and the whitespace between them


@pytest.mark.parametrize(
    "tail",
    [
        b"<mes",  # an unfinished tag
        b"<message a='>'",  # '>' inside an attribute: still unfinished
        b"<message><body>hi",  # inside a stanza
        b"</stream:str",  # an unfinished stream close
        b"&am",  # an unfinished reference at the stream level
    ],
)
def test_hibernate_refused_with_input_pending(tail: bytes) -> None:
    parser = XMLStreamParser()
    parser.feed(HEADER + b"<presence/>" + tail)
    assert not parser.hibernate()
    assert not parser.hibernating


def test_hibernate_refused_before_the_header() -> None:
    parser = XMLStreamParser()
    parser.feed(b"<?xml version='1.0'?><stream:str")
    assert not parser.hibernate()


def test_woken_parser_keeps_header_namespaces_and_limits() -> None:
    """The fresh expat sees the header's declarations: default, ``stream:`` and others."""
    header = (
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
        b" xmlns:db='jabber:server:dialback' xmlns:q='a&apos;b'>"
    )
    parser = XMLStreamParser(max_stanza_size=1000)
    assert isinstance(parser.feed(header)[0], StreamOpened)
    assert parser.hibernate() and parser.hibernating
    evs = parser.feed(b"<db:result from='a' to='b'>k</db:result><message/><q:x/><stream:error/>")
    assert not parser.hibernating
    els = [e.element for e in evs if isinstance(e, ElementParsed)]
    assert [(e.ns, e.tag) for e in els] == [
        ("jabber:server:dialback", "result"),
        ("jabber:server", "message"),
        ("a'b", "x"),
        (ns.STREAM, "error"),
    ]
    assert parser.hibernate()
    with pytest.raises(StreamError) as info:  # the size limit counts from the wake-up
        parser.feed(b"<message><body>" + b"x" * 2000 + b"</body></message>")
    assert info.value.condition == "policy-violation"
    parser = XMLStreamParser()
    parser.feed(HEADER)
    assert parser.hibernate()
    with pytest.raises(StreamError) as info:  # restrictions apply after a wake-up too
        parser.feed(b"<!-- c -->")
    assert info.value.condition == "restricted-xml"
    parser = XMLStreamParser()
    parser.feed(HEADER)
    assert parser.hibernate()
    assert isinstance(parser.feed(b" </stream:stream>")[-1], StreamClosed)


def test_hibernated_parser_holds_no_expat_memory() -> None:
    """What hibernation is for: an idle stream keeps a few hundred bytes, not ~15 KB."""
    import tracemalloc

    login = [
        HEADER,
        b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        b"<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        b"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>"
        b"</presence>",
    ]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        parsers = []
        for _ in range(200):
            parser = XMLStreamParser()
            for chunk in login:
                parser.feed(chunk)
            parsers.append(parser)
        awake = (tracemalloc.get_traced_memory()[0] - base) / len(parsers)
        assert all(p.hibernate() for p in parsers)
        asleep = (tracemalloc.get_traced_memory()[0] - base) / len(parsers)
    finally:
        tracemalloc.stop()
    assert awake > 5000
    assert asleep < 1000, (awake, asleep)


def feed_error(data: bytes, **kw: int) -> StreamErrorCondition:
    parser = XMLStreamParser(**kw)
    with pytest.raises(StreamError) as info:
        parser.feed(data)
    assert parser.closed
    return info.value.condition


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"<!DOCTYPE stream [<!ENTITY x 'y'>]>" + HEADER, "restricted-xml"),
        (b"<!-- hello -->" + HEADER, "restricted-xml"),
        (HEADER + b"<!-- comment -->", "restricted-xml"),
        (HEADER + b"<message><!-- c --></message>", "restricted-xml"),
        (HEADER + b"<?php echo 1; ?>", "restricted-xml"),
        (HEADER + b"<message><body>&xxe;</body></message>", "restricted-xml"),
        (HEADER + b"<!DOCTYPE stream>", "restricted-xml"),  # RFC 6120 §11.1, anywhere
        (HEADER + b"<message><!DOCTYPE x></message>", "restricted-xml"),
        (HEADER + b"<!ATTLIST a b CDATA #IMPLIED>", "restricted-xml"),
        (HEADER + b"<!D", "restricted-xml"),  # expat stops at the first letter
        (HEADER + b"<message><!x/></message>", "not-well-formed"),
        (HEADER + b"<a b=ENTITY/>", "not-well-formed"),
        (HEADER + b"garbage", "not-well-formed"),
        (HEADER + b"<message><body></message>", "not-well-formed"),
        (HEADER + b"<a b='1' b='2'/>", "not-well-formed"),
        (b"\x00\x01\x02\x03", "not-well-formed"),
        (HEADER + b"<foo:bar/>", "bad-namespace-prefix"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>", "unsupported-encoding"),
        (HEADER + b"<message><body>caf\xe9</body></message>", "unsupported-encoding"),
        (HEADER + b"<message><body>\xc3\x28</body></message>", "unsupported-encoding"),
        ("<stream:stream/>".encode("utf-16"), "unsupported-encoding"),
    ],
)
def test_restricted_and_malformed(data: bytes, condition: str) -> None:
    assert feed_error(data) == condition


def test_stanza_size_limit_complete_and_partial() -> None:
    big = b"<message><body>" + b"x" * 20000 + b"</body></message>"
    assert feed_error(HEADER + big, max_stanza_size=10000) == "policy-violation"
    # an unfinished token (huge attribute) is bounded too
    assert feed_error(HEADER + b"<message a='" + b"x" * 20000, max_stanza_size=10000) == (
        "policy-violation"
    )
    parser = XMLStreamParser(max_stanza_size=10000)
    parser.feed(HEADER)
    for _ in range(5):  # many stanzas each under the limit are fine
        assert len(parser.feed(b"<message><body>" + b"y" * 9000 + b"</body></message>")) == 1


def test_depth_limit() -> None:
    assert feed_error(HEADER + b"<a>" * 100, max_depth=16) == "policy-violation"


def test_writer_escapes_and_namespaces() -> None:
    msg = Element("message", ns.CLIENT, {"to": "a&b'<c>", XML_LANG: "en"})
    msg.sub("body", text="1 < 2 & ]]> \r")
    x = msg.sub("x", "urn:x", {"v": 'q"\n'})
    x.sub("y")  # inherits urn:x: no redeclaration
    out = serialize(msg)
    assert out == (
        "<message to='a&amp;b&apos;&lt;c&gt;' xml:lang='en'>"
        "<body>1 &lt; 2 &amp; ]]&gt; &#13;</body>"
        "<x xmlns='urn:x' v='q&quot;&#10;'><y/></x></message>"
    )
    # round trip through the parser
    evs = XMLStreamParser().feed(HEADER + out.encode())
    assert isinstance(evs[1], ElementParsed) and evs[1].element == msg


def test_stream_namespace_prefix() -> None:
    features = Element("features", ns.STREAM)
    features.sub("bind", ns.BIND)
    assert serialize(features) == (
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    )
    hdr = stream_header(from_="localhost", to=None, stream_id="abc")
    assert hdr.startswith(b"<?xml version='1.0'?><stream:stream from='localhost' id='abc'")


def test_escape_fast_paths() -> None:
    assert escape_text("plain") == "plain"
    assert escape_attr("plain") == "plain"


def test_stream_error_element() -> None:
    err = StreamError(StreamErrorCondition.HOST_UNKNOWN, "nope")
    assert serialize(err.to_element()) == (
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>nope</text>"
        "</stream:error>"
    )


def test_all_stream_conditions_defined() -> None:
    assert len(StreamErrorCondition) == 25  # RFC 6120 §4.9.3.1-25


@pytest.mark.parametrize(
    ("condition", "etype", "code"),
    [
        ("bad-request", "modify", "400"),
        ("conflict", "cancel", "409"),
        ("feature-not-implemented", "cancel", "501"),
        ("forbidden", "auth", "403"),
        ("item-not-found", "cancel", "404"),
        ("jid-malformed", "modify", "400"),
        ("not-acceptable", "modify", "406"),
        ("not-allowed", "cancel", "405"),
        ("not-authorized", "auth", "401"),
        ("recipient-unavailable", "wait", "404"),
        ("registration-required", "auth", "407"),
        ("remote-server-not-found", "cancel", "404"),
        ("remote-server-timeout", "wait", "504"),
        ("resource-constraint", "wait", "500"),
        ("service-unavailable", "cancel", "503"),
        ("subscription-required", "auth", "407"),
        ("unexpected-request", "wait", "400"),
    ],
)
def test_stanza_error_types_and_legacy_codes(condition: str, etype: str, code: str) -> None:
    """XEP-0086 §3 table 1."""
    el = StanzaError(StanzaErrorCondition(condition)).to_element()
    assert el.get("type") == etype and el.get("code") == code
    assert el.find(condition, ns.STANZAS) is not None


def test_error_reply_swaps_addresses() -> None:
    iq = Element("iq", ns.CLIENT, {"type": "get", "id": "7", "from": "a@b/c", "to": "b"})
    iq.sub("query", "urn:unknown")
    reply = error_reply(iq, StanzaError(StanzaErrorCondition.SERVICE_UNAVAILABLE))
    assert serialize(reply) == (
        "<iq type='error' id='7' to='a@b/c' from='b'><error type='cancel' code='503'>"
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )


def test_legacy_error_understood() -> None:
    """XEP-0086 §3 table 2: a bare code maps to a condition."""
    err = parse_stanza_error(Element("error", ns.CLIENT, {"code": "404"}))
    assert err.condition is StanzaErrorCondition.ITEM_NOT_FOUND
    err = parse_stanza_error(StanzaError(StanzaErrorCondition.CONFLICT, "x").to_element())
    assert err.condition is StanzaErrorCondition.CONFLICT and err.text == "x"


FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "time", "random", "threading"}


def test_core_is_sans_io() -> None:
    """STYLE 1: nothing in roost.core imports I/O, the clock or randomness."""
    core = pathlib.Path(__file__).parents[2] / "src" / "roost" / "core"
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path} imports {name}"


@pytest.mark.parametrize("cut", [1, 2, 3, 5])
def test_dtd_split_across_chunks_is_restricted(cut: int) -> None:
    """RFC 6120 §11.1: however the bytes of ``<!DOCTYPE`` arrive."""
    parser = XMLStreamParser()
    parser.feed(HEADER)
    decl = b"<!DOCTYPE x>"
    with pytest.raises(StreamError) as info:  # expat stops at the first letter after "<!"
        parser.feed(decl[:cut])
        parser.feed(decl[cut:])
    assert info.value.condition == "restricted-xml"
