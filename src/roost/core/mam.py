"""XEP-0313 Message Archive Management payloads, with XEP-0059 RSM and the XEP-0004 query
form: parsed into values, built from them. Pure: no clock, no I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from roost.core import ns
from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.forward import FORWARD, forwarded
from roost.core.jid import JID, InvalidJID
from roost.core.xml.element import Element

__all__ = [
    "DATA",
    "FORWARD",
    "HINTS",
    "MAM0",
    "MAM1",
    "MAM2",
    "MAM2_EXTENDED",
    "MAM_NAMESPACES",
    "RSM",
    "SID",
    "MamQuery",
    "Prefs",
    "fin_element",
    "parse_datetime",
    "parse_prefs",
    "parse_query",
    "prefs_element",
    "query_form",
    "result_message",
]

MAM2: Final = "urn:xmpp:mam:2"
#: the previous version: the same protocol under another namespace (clients still use it)
MAM1: Final = "urn:xmpp:mam:1"
#: XEP-0313 v0.3 (2014): the same query and results, but the end of the results is a
#: ``<fin/>`` in a message after them (the "sentinel"), the iq result coming first and
#: empty; v0.4 moved ``<fin/>`` back into the iq result under ``urn:xmpp:mam:1``
MAM0: Final = "urn:xmpp:mam:0"
MAM2_EXTENDED: Final = "urn:xmpp:mam:2#extended"
MAM_NAMESPACES: Final = (MAM2, MAM1, MAM0)
RSM: Final = "http://jabber.org/protocol/rsm"
SID: Final = "urn:xmpp:sid:0"
HINTS: Final = "urn:xmpp:hints"
DATA: Final = "jabber:x:data"

_C = StanzaErrorCondition
_FIELDS: Final = frozenset({"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"})
_POLICIES: Final = ("always", "never", "roster")


def _bad(text: str) -> StanzaError:
    return StanzaError(_C.BAD_REQUEST, text)


def parse_datetime(text: str) -> float:
    """A XEP-0082 §3.2 DateTime as seconds since the epoch (no zone is taken as UTC);
    ``ValueError`` if it is not one."""
    value = text.strip()
    if "T" not in value:
        raise ValueError(f"not a XEP-0082 DateTime: {text!r}")
    when = datetime.datetime.fromisoformat(value.replace("z", "Z"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class MamQuery:
    """A parsed ``<query/>`` (XEP-0313 §4): the form's filters and the RSM page."""

    queryid: str | None = None
    with_: JID | None = None
    start: float | None = None
    end: float | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] | None = None
    #: XEP-0059 §2.1: ``None`` lets the server choose
    max: int | None = None
    after: str | None = None
    #: ``""``: the last page (XEP-0059 §2.5)
    before: str | None = None
    #: XEP-0313 §4.3.4: send the page newest first
    flip: bool = False


def _values(field: Element) -> list[str]:
    return [v.text for v in field.find_all("value", DATA)]


def _single(field: Element, var: str) -> str | None:
    values = _values(field)
    if len(values) > 1:
        raise _bad(f"field {var!r} takes one value")
    value = values[0].strip() if values else ""
    return value or None


def parse_query(query: Element) -> MamQuery:
    """The filters and paging of a MAM ``<query/>``; raises ``StanzaError``: bad-request
    for a malformed form or RSM set, feature-not-implemented for a field this server does
    not know (XEP-0313 §4.1.5)."""
    fields: dict[str, object] = {}
    form = query.find("x", DATA)
    if form is not None:
        if form.get("type") not in ("submit", None):
            raise _bad("the query form must be of type 'submit'")
        for field in form.find_all("field", DATA):
            var = field.get("var")
            if var is None:
                raise _bad("a form field without 'var'")
            if var not in _FIELDS:
                raise StanzaError(_C.FEATURE_NOT_IMPLEMENTED, f"unknown field {var!r}")
            if var == "FORM_TYPE":
                if _single(field, var) != query.ns:
                    raise _bad(f"FORM_TYPE must be {query.ns}")
            elif var == "with":
                value = _single(field, var)
                if value is not None:
                    try:
                        fields["with_"] = JID.parse(value)
                    except InvalidJID:
                        raise _bad(f"'with' is not a JID: {value!r}") from None
            elif var in ("start", "end"):
                value = _single(field, var)
                if value is not None:
                    try:
                        fields[var] = parse_datetime(value)
                    except ValueError:
                        raise _bad(f"{var!r} is not a XEP-0082 DateTime") from None
            elif var == "ids":
                fields["ids"] = tuple(v.strip() for v in _values(field) if v.strip())
            else:
                fields[var.replace("-", "_")] = _single(field, var)
    rsm = query.find("set", RSM)
    if rsm is not None:
        for el in rsm.elements():
            if el.ns != RSM:
                continue
            if el.tag == "max":
                try:
                    fields["max"] = int(el.text.strip())
                except ValueError:
                    raise _bad("RSM <max/> must be an integer") from None
                if fields["max"] < 0:  # type: ignore[operator]
                    raise _bad("RSM <max/> must not be negative")
            elif el.tag == "after":
                if not el.text.strip():
                    raise _bad("RSM <after/> must name an item")
                fields["after"] = el.text.strip()
            elif el.tag == "before":
                fields["before"] = el.text.strip()
            elif el.tag == "index":
                # XEP-0059 §2.4 jumping to a page is optional; not offered here.
                raise StanzaError(_C.FEATURE_NOT_IMPLEMENTED, "RSM <index/> is not supported")
        if "after" in fields and "before" in fields:
            # XEP-0313 §4.3.2: undefined; before-id/after-id are the way to a range.
            raise _bad("RSM <after/> and <before/> together: use after-id and before-id")
    flip = query.find("flip-page", query.ns) is not None
    return MamQuery(queryid=query.get("queryid"), flip=flip, **fields)  # type: ignore[arg-type]


def query_form(mam_ns: str) -> Element:
    """The fields a query may use (XEP-0313 §4.1.5), for an iq get."""
    query = Element("query", mam_ns)
    form = query.sub("x", DATA, {"type": "form"})
    hidden = form.sub("field", attrs={"type": "hidden", "var": "FORM_TYPE"})
    hidden.sub("value", text=mam_ns)
    for var, kind in (
        ("with", "jid-single"),
        ("start", "text-single"),
        ("end", "text-single"),
        ("before-id", "text-single"),
        ("after-id", "text-single"),
    ):
        form.sub("field", attrs={"type": kind, "var": var})
    ids = form.sub("field", attrs={"type": "list-multi", "var": "ids"})
    # XEP-0313 §4.1.5: the list of ids is open, never enumerated.
    validate = ids.sub(
        "validate", "http://jabber.org/protocol/xdata-validate", {"datatype": "xs:string"}
    )
    validate.sub("open")
    return query


def fin_element(
    mam_ns: str,
    first: str | None,
    last: str | None,
    index: int,
    count: int,
    *,
    complete: bool,
    queryid: str | None = None,
) -> Element:
    """``<fin/>`` closing a query (XEP-0313 §4.3), its RSM set per XEP-0059 §2.6; the
    ``queryid`` only in a v0.3 (``MAM0``) sentinel message, which names its query."""
    fin = Element("fin", mam_ns, {"complete": "true"} if complete else {})
    if queryid is not None:
        fin.attrs["queryid"] = queryid
    rsm = fin.sub("set", RSM)
    if first is not None and last is not None:
        rsm.sub("first", attrs={"index": str(index)}, text=first)
        rsm.sub("last", text=last)
    rsm.sub("count", text=str(count))
    return fin


def result_message(
    mam_ns: str,
    to: str,
    from_: str,
    message_id: str,
    queryid: str | None,
    archive_id: str,
    stamp: str,
    original: Element,
) -> Element:
    """One result (XEP-0313 §4.2): the archived message forwarded (XEP-0297) with its
    XEP-0203 delay."""
    msg = Element("message", ns.CLIENT, {"to": to, "from": from_, "id": message_id})
    attrs = {"id": archive_id}
    if queryid is not None:
        attrs["queryid"] = queryid
    result = msg.sub("result", mam_ns, attrs)
    result.append(forwarded(original, Element("delay", ns.DELAY, {"stamp": stamp})))
    return msg


@dataclass(frozen=True, slots=True)
class Prefs:
    """Archiving preferences (XEP-0441 §4, ``<prefs/>``): bare JIDs as strings."""

    default: str
    always: tuple[str, ...] = ()
    never: tuple[str, ...] = ()


def _jids(el: Element | None) -> tuple[str, ...]:
    if el is None:
        return ()
    out: list[str] = []
    for item in el.find_all("jid", el.ns):
        try:
            jid = str(JID.parse(item.text.strip()))
        except InvalidJID:
            raise _bad(f"not a JID: {item.text!r}") from None
        if jid not in out:
            out.append(jid)
    return tuple(out)


def parse_prefs(prefs: Element) -> Prefs:
    """A ``<prefs/>`` set; bad-request if it is malformed."""
    default = prefs.get("default")
    if default not in _POLICIES:
        raise _bad("prefs 'default' must be always, never or roster")
    always = _jids(prefs.find("always", prefs.ns))
    never = _jids(prefs.find("never", prefs.ns))
    # A JID in both lists: never wins (the safer reading).
    return Prefs(default, tuple(j for j in always if j not in never), never)


def prefs_element(mam_ns: str, prefs: Prefs) -> Element:
    el = Element("prefs", mam_ns, {"default": prefs.default})
    for tag, jids in (("always", prefs.always), ("never", prefs.never)):
        lst = el.sub(tag)
        _add_jids(lst, jids)
    return el


def _add_jids(parent: Element, jids: Iterable[str]) -> None:
    for jid in jids:
        parent.sub("jid", text=jid)
