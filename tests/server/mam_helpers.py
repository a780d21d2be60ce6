"""Helpers shared by the XEP-0313 raw-XML tests: a query over the wire and readers of its
results."""

from __future__ import annotations

import itertools

from roost.core import ns
from roost.core.mam import MAM1, MAM2, RSM, SID
from roost.core.xml.element import Element
from roost.core.xml.writer import serialize
from roost.server.app import Server
from roost.server.modules.mam import MamModule
from tests.helpers import RawClient

FORWARD = "urn:xmpp:forward:0"


def archive_module(server: Server) -> MamModule:
    module = server.services["archive"]
    assert isinstance(module, MamModule)
    return module


def _form(fields: dict[str, str | list[str]], mam_ns: str = MAM2) -> str:
    out = [
        f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{mam_ns}</value></field>"
    ]
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out.append(
            f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
        )
    out.append("</x>")
    return "".join(out)


_qids = itertools.count()


async def mam(
    c: RawClient,
    fields: dict[str, str | list[str]] | None = None,
    rsm: str = "",
    *,
    to: str | None = None,
    extra: str = "",
    mam_ns: str = MAM2,
) -> tuple[list[Element], Element]:
    """Run one query: the result messages (checked against the query id) and the iq."""
    n = next(_qids)
    form = _form(fields, mam_ns) if fields is not None else ""
    rsm_el = f"<set xmlns='{RSM}'>{rsm}</set>" if rsm else ""
    target = f" to='{to}'" if to else ""
    await c.send(
        f"<iq type='set' id='mq{n}'{target}><query xmlns='{mam_ns}' queryid='q{n}'>"
        f"{form}{rsm_el}{extra}</query></iq>"
    )
    results: list[Element] = []
    while True:
        el = await c.next()
        if el.tag == "iq" and el.get("id") == f"mq{n}":
            return results, el
        result = el.find("result", mam_ns)
        assert el.tag == "message" and result is not None, serialize(el)
        assert result.get("queryid") == f"q{n}"
        results.append(el)


def ids_of(results: list[Element]) -> list[str]:
    out = []
    for el in results:
        result = el.find("result", MAM2) or el.find("result", MAM1)
        assert result is not None
        out.append(result.get("id") or "")
    return out


def forwarded(el: Element) -> Element:
    result = el.find("result", MAM2) or el.find("result", MAM1)
    assert result is not None
    fwd = result.find("forwarded", FORWARD)
    assert fwd is not None
    msg = fwd.find("message", ns.CLIENT)
    assert msg is not None
    return msg


def fin(iq: Element, mam_ns: str = MAM2) -> tuple[bool, list[str], int | None, int | None]:
    """(complete, [first, last] ids, first index, count) of a query's result."""
    assert iq.get("type") == "result", serialize(iq)
    f = iq.find("fin", mam_ns)
    assert f is not None, serialize(iq)
    rsm = f.find("set", RSM)
    assert rsm is not None
    first, last, count = rsm.find("first", RSM), rsm.find("last", RSM), rsm.find("count", RSM)
    bounds = [first.text, last.text] if first is not None and last is not None else []
    index = int(first.get("index") or 0) if first is not None else None
    return (
        f.get("complete") == "true",
        bounds,
        index,
        int(count.text) if count is not None else None,
    )


def error_condition(iq: Element) -> str:
    assert iq.get("type") == "error", serialize(iq)
    err = iq.find("error", ns.CLIENT)
    assert err is not None
    return next(c.tag for c in err.elements() if c.ns == ns.STANZAS)


def stanza_ids(msg: Element) -> list[tuple[str | None, str | None]]:
    return [(s.get("by"), s.get("id")) for s in msg.find_all("stanza-id", SID)]
