"""Incremental XML stream parser on expat: bytes in, stream events out.

Bytes may arrive in any split (a UTF-8 sequence across two chunks included); expat buffers
the incomplete token, so the events are the same however the stream is cut. The parser
enforces RFC 6120 §11 restricted XML and bounds what a peer can make us hold: stanza size
(§13.12 → ``policy-violation``) and nesting depth.

An expat parser that has seen a login holds about 15 KB (name pools, hash tables, buffers),
more than the rest of an idle session together. Between stanzas nothing in it is needed but
the namespace declarations of the stream header, so ``hibernate()`` drops it and the next
``feed()`` builds a fresh one primed with a synthetic header carrying the same declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.parsers import expat
from xml.parsers.expat import XMLParserType

from roost.core.errors import StreamError, StreamErrorCondition
from roost.core.xml.element import Element
from roost.core.xml.writer import escape_attr

__all__ = [
    "ElementParsed",
    "ParserEvent",
    "StreamClosed",
    "StreamOpened",
    "XMLStreamParser",
    "parse_fragment",
]

_SC = StreamErrorCondition


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header (``<stream:stream ...>``)."""

    tag: str
    ns: str
    attrs: dict[str, str]
    #: namespace declarations on the header: prefix ("" for the default) -> URI
    namespaces: dict[str, str]


@dataclass(frozen=True, slots=True)
class ElementParsed:
    """A complete first-level element (stanza or stream-level element)."""

    element: Element


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer closed its stream (``</stream:stream>``)."""


ParserEvent = StreamOpened | ElementParsed | StreamClosed

_ERR = expat.errors.codes
_ERROR_MAP = {
    _ERR[expat.errors.XML_ERROR_UNDEFINED_ENTITY]: _SC.RESTRICTED_XML,
    _ERR[expat.errors.XML_ERROR_EXTERNAL_ENTITY_HANDLING]: _SC.RESTRICTED_XML,
    _ERR[expat.errors.XML_ERROR_UNBOUND_PREFIX]: _SC.BAD_NAMESPACE_PREFIX,
    _ERR[expat.errors.XML_ERROR_INCORRECT_ENCODING]: _SC.UNSUPPORTED_ENCODING,
    _ERR[expat.errors.XML_ERROR_UNKNOWN_ENCODING]: _SC.UNSUPPORTED_ENCODING,
}

_SEP = "\x01"
#: expat's "uri<SEP>local" names split once for the whole process
_NAMES: dict[str, tuple[str, str]] = {}
#: pyexpat's name-interning dict, shared by every parser instead of one per parser (a few KB
#: each); emptied by ``trim_shared_names`` when junk names from peers have grown it.
_INTERN: dict[str, str] = {}
_INTERN_LIMIT = 16384
#: stands in for the expat parser of a stream that holds none (never fed into)
_ASLEEP = expat.ParserCreate()


def trim_shared_names() -> None:
    """Forget interned names if peers have grown the shared table past its bound."""
    if len(_INTERN) > _INTERN_LIMIT:
        _INTERN.clear()


def _bad_utf8_at(data: bytes, pos: int) -> bool:
    """Whether the bytes at ``pos`` (where expat gave up) are not valid UTF-8."""
    if not 0 <= pos < len(data) or data[pos] < 0x80:
        return False
    try:
        data[pos : pos + 4].decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start == 0 and exc.reason != "unexpected end of data"
    return False


#: markup declarations (XML 1.0 §2.8), which only a DTD may hold
_DECLARATIONS = (b"DOCTYPE", b"ENTITY", b"ELEMENT", b"ATTLIST", b"NOTATION")


def _declaration_at(data: bytes, pos: int) -> bool:
    """Whether expat stopped at a markup declaration: ``<!`` then a declaration keyword.

    expat stops at the byte after ``<!``, as soon as it sees it, so the keyword may be cut
    short by the end of ``data``; when ``<!`` came in an earlier chunk, the keyword alone
    decides.
    """
    if not 0 <= pos < len(data):
        return False
    if pos >= 2 and data[pos - 2 : pos] != b"<!":
        return False
    word = data[pos : pos + 8]
    return any(kw.startswith(word[: len(kw)]) for kw in _DECLARATIONS)


class _Restricted(Exception):
    """Raised inside an expat callback to abort parsing with a stream error."""

    def __init__(self, error: StreamError) -> None:
        super().__init__(str(error))
        self.error = error


class XMLStreamParser:
    """Feed bytes, get events. One instance per stream: a stream restart needs a new one.

    The expat parser is created on the first ``feed`` and can be dropped between stanzas
    (``hibernate``), so a stream that is waiting for its peer costs a few hundred bytes.
    """

    __slots__ = (
        "_boundary",
        "_depth",
        "_events",
        "_expat",
        "_fed",
        "_max_depth",
        "_max_stanza",
        "_pending_ns",
        "_root",
        "_stack",
        "closed",
    )

    def __init__(self, *, max_stanza_size: int = 262144, max_depth: int = 64) -> None:
        self._max_stanza = max_stanza_size
        self._max_depth = max_depth
        self._events: list[ParserEvent] = []
        self._stack: list[Element] = []
        self._depth = 0
        self._fed = 0
        self._boundary = 0
        self._pending_ns: dict[str, str] = {}
        self.closed = False
        self._expat = _ASLEEP  # the real one is made by the first feed
        #: the stream header re-stated for a fresh expat after ``hibernate()``
        self._root: bytes | None = None

    def _new_expat(self) -> XMLParserType:
        p = expat.ParserCreate("UTF-8", _SEP, intern=_INTERN)
        p.buffer_text = True
        # Memory per active stream matters more than fewer callbacks for long texts.
        p.buffer_size = 2048
        p.ordered_attributes = False
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        if self._root is not None:
            # Waking from hibernation: the header we wrote ourselves is parsed before any
            # handler is set (its StreamOpened was reported long ago; depth stays 1).
            p.Parse(self._root, False)
            self._fed = self._boundary = len(self._root)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartNamespaceDeclHandler = self._ns_decl
        p.XmlDeclHandler = self._xml_decl
        p.StartDoctypeDeclHandler = self._forbidden_dtd
        p.EntityDeclHandler = self._forbidden_entity
        p.CommentHandler = self._forbidden_comment
        p.ProcessingInstructionHandler = self._forbidden_pi
        p.ExternalEntityRefHandler = self._forbidden_external
        self._expat = p
        return p

    def hibernate(self) -> bool:
        """Drop the expat parser if the stream sits between stanzas; True if it is dropped.

        Only safe when expat has consumed every byte fed (``CurrentByteIndex`` is where its
        unprocessed input starts) and no stanza is open: then a fresh parser primed with the
        header continues exactly where this one stopped.
        """
        p = self._expat
        if p is _ASLEEP:
            return True
        if self.closed or self._depth != 1 or self._root is None or p.CurrentByteIndex != self._fed:
            return False
        self._expat = _ASLEEP
        return True

    def discard(self) -> None:
        """Done with this stream (a restart or close): free expat now, not at the next GC.

        expat's handlers are bound methods of this object, a reference cycle that only the
        cyclic collector would otherwise break.
        """
        self.closed = True
        self._expat = _ASLEEP

    @property
    def hibernating(self) -> bool:
        """Whether no expat parser is held (before the first byte, or after ``hibernate``)."""
        return self._expat is _ASLEEP

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse a chunk; return the events it completed. Raises ``StreamError``."""
        if self.closed:
            return []
        p = self._expat
        if p is _ASLEEP:
            p = self._new_expat()
        if not self._fed and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            # A UTF-16 byte order mark: expat would honour it; RFC 6120 §11.6 allows UTF-8 only.
            self.closed = True
            raise StreamError(_SC.UNSUPPORTED_ENCODING, "UTF-16 is not allowed")
        self._fed += len(data)
        try:
            p.Parse(data, False)
        except _Restricted as exc:
            self.closed = True
            raise exc.error from None
        except expat.ExpatError as exc:
            self.closed = True
            condition = _ERROR_MAP.get(exc.code or 0, _SC.NOT_WELL_FORMED)
            pos = p.ErrorByteIndex - (self._fed - len(data))
            if condition is _SC.NOT_WELL_FORMED and _bad_utf8_at(data, pos):
                # RFC 6120 §4.9.3.22: bytes that are not UTF-8.
                condition = _SC.UNSUPPORTED_ENCODING
            elif condition is _SC.NOT_WELL_FORMED and _declaration_at(data, pos):
                # RFC 6120 §11.1: a DTD SHOULD get restricted-xml wherever it appears; after
                # the prolog expat only sees a syntax error.
                raise StreamError(_SC.RESTRICTED_XML, "DTDs are not allowed") from None
            raise StreamError(condition, expat.errors.messages[exc.code or 0]) from None
        # A peer may hold an unfinished token (a huge attribute, say) in expat's buffer:
        # bound everything fed since the last stanza boundary, not just completed elements.
        if self._fed - self._boundary > self._max_stanza and not self.closed:
            self.closed = True
            raise StreamError(_SC.POLICY_VIOLATION, "stanza too large")
        events, self._events = self._events, []
        return events

    # -- expat callbacks -------------------------------------------------------------------

    @staticmethod
    def _split(name: str) -> tuple[str, str]:
        cached = _NAMES.get(name)
        if cached is None:
            uri, sep, local = name.rpartition(_SEP)
            cached = (uri, local) if sep else ("", name)
            if len(_NAMES) < 16384:  # shared by all streams; bounded against junk names
                _NAMES[name] = cached
        return cached

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        uri, tag = self._split(name)
        if attrs:
            for key in [k for k in attrs if _SEP in k]:
                a_uri, _, local = key.rpartition(_SEP)
                attrs["{" + a_uri + "}" + local] = attrs.pop(key)
        depth = self._depth
        if depth == 0:
            namespaces, self._pending_ns = self._pending_ns, {}
            self._depth = 1
            self._boundary = self._expat.CurrentByteIndex
            if self._root is None:
                self._root = _restate_header(tag, uri, namespaces)
            self._events.append(StreamOpened(tag, uri, attrs, namespaces))
            return
        self._pending_ns.clear()
        if depth >= self._max_depth:
            raise _Restricted(StreamError(_SC.POLICY_VIOLATION, "elements nested too deep"))
        el = Element(tag, uri, attrs)
        if depth == 1:
            self._boundary = self._expat.CurrentByteIndex
        else:
            self._stack[-1].children.append(el)
            if self._expat.CurrentByteIndex - self._boundary > self._max_stanza:
                raise _Restricted(StreamError(_SC.POLICY_VIOLATION, "stanza too large"))
        self._stack.append(el)
        self._depth = depth + 1

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.closed = True
            self._events.append(StreamClosed())
            return
        el = self._stack.pop()
        if self._depth == 1:
            if self._expat.CurrentByteIndex - self._boundary > self._max_stanza:
                raise _Restricted(StreamError(_SC.POLICY_VIOLATION, "stanza too large"))
            self._boundary = self._expat.CurrentByteIndex
            self._events.append(ElementParsed(el))

    def _chars(self, data: str) -> None:
        if self._depth >= 2:
            children = self._stack[-1].children
            if children and isinstance(children[-1], str):
                children[-1] += data
            else:
                children.append(data)
        elif data.strip(" \t\r\n"):
            # RFC 6120 §4.7.5 ... only elements may appear at the stream level.
            raise _Restricted(StreamError(_SC.NOT_WELL_FORMED, "text at stream level"))

    def _ns_decl(self, prefix: str | None, uri: str | None) -> None:
        self._pending_ns[prefix or ""] = uri or ""

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        # RFC 6120 §11.6: UTF-8 only.
        if encoding is not None and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise _Restricted(StreamError(_SC.UNSUPPORTED_ENCODING, f"encoding {encoding}"))

    @staticmethod
    def _forbidden(what: str) -> _Restricted:
        # RFC 6120 §11.1: comments, PIs, DTDs and entity references are not allowed.
        return _Restricted(StreamError(_SC.RESTRICTED_XML, f"{what} not allowed"))

    def _forbidden_dtd(self, *args: object) -> None:
        raise self._forbidden("DTD")

    def _forbidden_entity(self, *args: object) -> None:
        raise self._forbidden("entity declaration")

    def _forbidden_comment(self, data: str) -> None:
        raise self._forbidden("comment")

    def _forbidden_pi(self, target: str, data: str) -> None:
        raise self._forbidden("processing instruction")

    def _forbidden_external(self, *args: object) -> int:
        raise self._forbidden("external entity")


def _restate_header(tag: str, uri: str, namespaces: dict[str, str]) -> bytes:
    """An opening tag with the header's name and namespace declarations, nothing else."""
    prefix = ""
    if namespaces.get("", "") != uri:
        prefix = next((p for p, u in namespaces.items() if p and u == uri), "")
    name = f"{prefix}:{tag}" if prefix else tag
    decls = "".join(
        f" xmlns{':' + p if p else ''}='{escape_attr(u)}'" for p, u in namespaces.items()
    )
    return f"<{name}{decls}>".encode()


_FRAGMENT_OPEN = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


def parse_fragment(text: str, *, max_size: int = 1 << 20) -> Element:
    """One stanza serialised by us (stored offline, say) back into an element.

    Parsed inside a synthetic ``jabber:client`` stream so unprefixed elements land in the
    content namespace, with the same restrictions as the wire. Raises ``ValueError``.
    """
    parser = XMLStreamParser(max_stanza_size=max_size)
    try:
        events = parser.feed(_FRAGMENT_OPEN + text.encode())
    except StreamError as exc:
        raise ValueError(f"not a stanza: {exc}") from None
    stanzas = [e.element for e in events if isinstance(e, ElementParsed)]
    if len(stanzas) != 1:
        raise ValueError("expected exactly one stanza")
    return stanzas[0]
