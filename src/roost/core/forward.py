"""XEP-0297 Stanza Forwarding: a copy of a stanza inside ``<forwarded/>``.

Carbons (XEP-0280) and archive results (XEP-0313) wrap messages this way. The copy is in
``jabber:client`` whatever stream the original came in on (``jabber:server`` from a
peer): a client reads it in its own stream's namespace (XEP-0297 §3).
"""

from __future__ import annotations

from typing import Final

from roost.core import ns
from roost.core.xml.element import Element

__all__ = ["FORWARD", "as_client", "forwarded"]

FORWARD: Final = "urn:xmpp:forward:0"
_OTHER_STANZA_NS: Final = frozenset((ns.SERVER, ns.COMPONENT))


def as_client(el: Element) -> Element:
    """``el`` with its stanza namespace (and its children's) as ``jabber:client``;
    subtrees with nothing to change are shared, not copied."""
    children: list[Element | str] = []
    changed = el.ns in _OTHER_STANZA_NS
    for child in el.children:
        if isinstance(child, Element):
            mapped = as_client(child)
            changed = changed or mapped is not child
            children.append(mapped)
        else:
            children.append(child)
    if not changed:
        return el
    tag_ns = ns.CLIENT if el.ns in _OTHER_STANZA_NS else el.ns
    return Element(el.tag, tag_ns, dict(el.attrs), children)


def forwarded(stanza: Element, delay: Element | None = None) -> Element:
    """XEP-0297 §3: ``<forwarded/>`` with an optional XEP-0203 ``delay`` and the copy."""
    wrapper = Element("forwarded", FORWARD)
    if delay is not None:
        wrapper.append(delay)
    wrapper.append(as_client(stanza))
    return wrapper
