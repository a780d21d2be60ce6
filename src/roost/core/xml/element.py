"""A small, slotted element tree for stanzas.

Why not ``xml.etree``: stanzas are built and routed millions of times, so the element is kept
minimal (namespace and local name held apart, attributes in a plain dict, children a list of
elements and text) and copying a stanza to stamp a new ``from`` shares its children.
Namespaced attributes use Clark notation keys (``{uri}name``); ``xml:lang`` is
``{http://www.w3.org/XML/1998/namespace}lang``.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["XML_LANG", "Element"]

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class Element:
    """One XML element: ``ns`` + ``tag``, ``attrs``, and ``children`` (elements or text)."""

    __slots__ = ("attrs", "children", "ns", "tag")

    def __init__(
        self,
        tag: str,
        ns: str,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.tag = tag
        self.ns = ns
        self.attrs: dict[str, str] = {} if attrs is None else attrs
        self.children: list[Element | str] = [] if children is None else children

    def __repr__(self) -> str:
        return f"<Element {{{self.ns}}}{self.tag} {self.attrs!r} children={len(self.children)}>"

    def get(self, name: str, default: str | None = None) -> str | None:
        """Attribute value, or ``default`` when absent."""
        return self.attrs.get(name, default)

    def set(self, name: str, value: str | None) -> None:
        """Set an attribute; ``None`` removes it."""
        if value is None:
            self.attrs.pop(name, None)
        else:
            self.attrs[name] = value

    @property
    def text(self) -> str:
        """The element's own character data (direct text children joined)."""
        parts = [c for c in self.children if isinstance(c, str)]
        return parts[0] if len(parts) == 1 else "".join(parts)

    def elements(self) -> Iterator[Element]:
        """Child elements, skipping text."""
        for c in self.children:
            if not isinstance(c, str):
                yield c

    def find(self, tag: str | None = None, ns: str | None = None) -> Element | None:
        """First child element matching ``tag`` and/or ``ns`` (``None`` matches any)."""
        for c in self.children:
            if (
                not isinstance(c, str)
                and (tag is None or c.tag == tag)
                and (ns is None or c.ns == ns)
            ):
                return c
        return None

    def find_all(self, tag: str | None = None, ns: str | None = None) -> list[Element]:
        """All child elements matching ``tag`` and/or ``ns``."""
        return [
            c
            for c in self.children
            if not isinstance(c, str)
            and (tag is None or c.tag == tag)
            and (ns is None or c.ns == ns)
        ]

    def append(self, child: Element) -> Element:
        """Append a child element and return it (handy for building)."""
        self.children.append(child)
        return child

    def sub(
        self, tag: str, ns: str | None = None, attrs: dict[str, str] | None = None, text: str = ""
    ) -> Element:
        """Create, append and return a child (namespace defaults to the parent's)."""
        child = Element(tag, self.ns if ns is None else ns, attrs, [text] if text else None)
        self.children.append(child)
        return child

    def copy(self) -> Element:
        """A shallow copy: own attribute dict, shared children. Enough to restamp headers."""
        return Element(self.tag, self.ns, dict(self.attrs), self.children)

    def deepcopy(self) -> Element:
        """A full copy of the tree."""
        return Element(
            self.tag,
            self.ns,
            dict(self.attrs),
            [c if isinstance(c, str) else c.deepcopy() for c in self.children],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.tag == other.tag
            and self.ns == other.ns
            and self.attrs == other.attrs
            and self.children == other.children
        )

    __hash__ = None  # type: ignore[assignment]
