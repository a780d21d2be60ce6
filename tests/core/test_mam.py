"""XEP-0313 payloads (``roost.core.mam``): queries, forms, RSM, preferences. Pure."""

from __future__ import annotations

import pytest

from roost.core.errors import StanzaError
from roost.core.jid import JID
from roost.core.mam import (
    MAM2,
    MamQuery,
    Prefs,
    fin_element,
    parse_datetime,
    parse_prefs,
    parse_query,
    prefs_element,
)
from roost.core.xml.parser import parse_fragment
from roost.core.xml.writer import serialize

FORM = (
    "<x xmlns='jabber:x:data' type='submit'>"
    "<field var='FORM_TYPE'><value>{ns}</value></field>{fields}</x>"
)
RSM = "<set xmlns='http://jabber.org/protocol/rsm'>{}</set>"


def query(inner: str = "", ns: str = MAM2, attrs: str = "") -> MamQuery:
    iq = parse_fragment(f"<iq type='set' id='q'><query xmlns='{ns}'{attrs}>{inner}</query></iq>")
    q = iq.find("query", ns)
    assert q is not None
    return parse_query(q)


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        ("", MamQuery()),
        (
            FORM.format(ns=MAM2, fields=field("with", "Juliet@Capulet.lit")),
            MamQuery(with_=JID.parse("juliet@capulet.lit")),
        ),
        (
            FORM.format(ns=MAM2, fields=field("start", "2010-06-07T00:00:00Z")),
            MamQuery(start=1275868800.0),
        ),
        (
            FORM.format(ns=MAM2, fields=field("end", "2010-06-07T02:00:00+02:00")),
            MamQuery(end=1275868800.0),
        ),
        (
            FORM.format(ns=MAM2, fields=field("ids", "a", "b") + field("after-id", "c")),
            MamQuery(ids=("a", "b"), after_id="c"),
        ),
        (RSM.format("<max>10</max><after>x</after>"), MamQuery(max=10, after="x")),
        (RSM.format("<before/>"), MamQuery(before="")),
        ("<flip-page/>", MamQuery(flip=True)),
    ],
)
def test_queries(inner: str, expected: MamQuery) -> None:
    assert query(inner) == expected


def test_queryid() -> None:
    assert query(attrs=" queryid='f27'").queryid == "f27"


@pytest.mark.parametrize(
    ("inner", "condition"),
    [
        (FORM.format(ns="urn:example", fields=""), "bad-request"),
        (FORM.format(ns=MAM2, fields=field("start", "noon")), "bad-request"),
        (FORM.format(ns=MAM2, fields=field("with", "a@b@c")), "bad-request"),
        (FORM.format(ns=MAM2, fields=field("with", "a", "b")), "bad-request"),
        (FORM.format(ns=MAM2, fields=field("colour", "blue")), "feature-not-implemented"),
        (RSM.format("<max>-1</max>"), "bad-request"),
        (RSM.format("<after/>"), "bad-request"),
        (RSM.format("<after>a</after><before>b</before>"), "bad-request"),
        (RSM.format("<index>2</index>"), "feature-not-implemented"),
    ],
)
def test_bad_queries(inner: str, condition: str) -> None:
    with pytest.raises(StanzaError) as info:
        query(inner)
    assert info.value.condition == condition


def test_datetimes() -> None:
    assert parse_datetime("1970-01-01T00:00:01.5Z") == 1.5
    assert parse_datetime("1970-01-01T00:00:01") == 1.0  # no zone: UTC
    with pytest.raises(ValueError):
        parse_datetime("1970-01-01")


def test_fin() -> None:
    assert serialize(fin_element(MAM2, "a", "b", 3, 10, complete=False)) == (
        "<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'>"
        "<first index='3'>a</first><last>b</last><count>10</count></set></fin>"
    )
    assert serialize(fin_element(MAM2, None, None, 0, 0, complete=True)) == (
        "<fin xmlns='urn:xmpp:mam:2' complete='true'>"
        "<set xmlns='http://jabber.org/protocol/rsm'><count>0</count></set></fin>"
    )


def test_prefs_round_trip() -> None:
    el = parse_fragment(
        f"<prefs xmlns='{MAM2}' default='roster'><always><jid>A@b</jid><jid>c@d</jid></always>"
        "<never><jid>c@d</jid></never></prefs>"
    )
    prefs = parse_prefs(el)
    assert prefs == Prefs("roster", ("a@b",), ("c@d",))  # never wins
    assert parse_prefs(prefs_element(MAM2, prefs)) == prefs
    for bad in (f"<prefs xmlns='{MAM2}'/>", f"<prefs xmlns='{MAM2}' default='maybe'/>"):
        with pytest.raises(StanzaError):
            parse_prefs(parse_fragment(bad))
