"""Elements and stream headers to bytes.

Namespaces are written the way an XMPP stream expects (RFC 6120 §4.8): the stream's default
namespace (``jabber:client``) is never repeated on stanzas, the ``stream:`` prefix is used for
the streams namespace, and any other namespace is declared once, as a default namespace on the
first element that uses it.
"""

from __future__ import annotations

from roost.core import ns
from roost.core.xml.element import Element

__all__ = ["STREAM_CLOSE", "escape_attr", "escape_text", "serialize", "stream_header"]

STREAM_CLOSE = b"</stream:stream>"

_TEXT_SPECIAL = frozenset("&<>\r")
_ATTR_SPECIAL = frozenset("&<>'\"\t\n\r")
_XML_PREFIX = "{" + ns.XML + "}"


def escape_text(text: str) -> str:
    """Escape character data; ``>`` too, so ``]]>`` can never appear."""
    if _TEXT_SPECIAL.isdisjoint(text):
        return text
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_attr(value: str) -> str:
    """Escape an attribute value for single quotes; whitespace kept as character references."""
    if _ATTR_SPECIAL.isdisjoint(value):
        return value
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def _write(el: Element, parent_ns: str, out: list[str]) -> None:
    if el.ns == ns.STREAM:
        name = "stream:" + el.tag
        out.append("<" + name)
        child_ns = parent_ns
    else:
        name = el.tag
        if el.ns == parent_ns:
            out.append("<" + name)
        else:
            out.append(f"<{name} xmlns='{escape_attr(el.ns)}'")
        child_ns = el.ns
    if el.attrs:
        extra = 0
        for key, value in el.attrs.items():
            if key[0] != "{":
                out.append(f" {key}='{escape_attr(value)}'")
            elif key.startswith(_XML_PREFIX):
                out.append(f" xml:{key[len(_XML_PREFIX) :]}='{escape_attr(value)}'")
            else:
                uri, _, local = key[1:].partition("}")
                prefix = f"ns{extra}"
                extra += 1
                out.append(
                    f" xmlns:{prefix}='{escape_attr(uri)}' {prefix}:{local}='{escape_attr(value)}'"
                )
    if not el.children:
        out.append("/>")
        return
    out.append(">")
    for child in el.children:
        if isinstance(child, str):
            out.append(escape_text(child))
        else:
            _write(child, child_ns, out)
    out.append(f"</{name}>")


def serialize(el: Element, default_ns: str = ns.CLIENT) -> str:
    """Serialise ``el`` as it appears inside a stream whose default namespace is ``default_ns``."""
    out: list[str] = []
    _write(el, default_ns, out)
    return "".join(out)


def stream_header(
    *,
    from_: str | None,
    to: str | None,
    stream_id: str | None,
    lang: str = "en",
    default_ns: str = ns.CLIENT,
    version: str = "1.0",
) -> bytes:
    """The opening ``<stream:stream>`` tag with the XML declaration (RFC 6120 §4.7)."""
    parts = ["<?xml version='1.0'?><stream:stream"]
    if from_ is not None:
        parts.append(f" from='{escape_attr(from_)}'")
    if to is not None:
        parts.append(f" to='{escape_attr(to)}'")
    if stream_id is not None:
        parts.append(f" id='{escape_attr(stream_id)}'")
    parts.append(
        f" version='{version}' xml:lang='{escape_attr(lang)}'"
        f" xmlns='{default_ns}' xmlns:stream='{ns.STREAM}'>"
    )
    return "".join(parts).encode()
