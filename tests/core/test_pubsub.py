"""roost.core.pubsub: node configuration from forms (XEP-0060 §16.4.4), publish-options
as preconditions, items and max_items, errors with their pubsub#errors condition."""

from __future__ import annotations

import pytest

from roost.core.errors import StanzaError, StanzaErrorCondition
from roost.core.pubsub import (
    PUBSUB_ERRORS,
    Item,
    Node,
    NodeConfig,
    config_form,
    form_fields,
    parse_config,
    pubsub_error,
)

LIMIT = 100


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"pubsub#access_model": ["open"]}, NodeConfig(access_model="open")),
        ({"pubsub#max_items": ["max"]}, NodeConfig(max_items=LIMIT)),
        ({"pubsub#max_items": ["7"]}, NodeConfig(max_items=7)),
        ({"pubsub#persist_items": ["1"]}, NodeConfig(persist_items=True)),
        ({"pubsub#persist_items": ["false"]}, NodeConfig(persist_items=False)),
        (
            {"pubsub#roster_groups_allowed": ["a", "b"]},
            NodeConfig(roster_groups_allowed=("a", "b")),
        ),
        (
            {"pubsub#send_last_published_item": ["never"]},
            NodeConfig(send_last_published_item="never"),
        ),
        ({"pubsub#title": ["T"]}, NodeConfig(title="T")),
    ],
)
def test_parse_config(fields: dict[str, list[str]], expected: NodeConfig) -> None:
    assert parse_config(fields, NodeConfig(), LIMIT) == expected


@pytest.mark.parametrize(
    ("fields", "condition"),
    [
        ({"pubsub#frobnicate": ["1"]}, StanzaErrorCondition.NOT_ACCEPTABLE),
        ({"pubsub#max_items": ["0"]}, StanzaErrorCondition.NOT_ACCEPTABLE),
        ({"pubsub#max_items": [str(LIMIT + 1)]}, StanzaErrorCondition.NOT_ACCEPTABLE),
        ({"pubsub#access_model": ["nobody"]}, StanzaErrorCondition.NOT_ACCEPTABLE),
        ({"pubsub#access_model": ["authorize"]}, StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED),
        ({"pubsub#persist_items": ["maybe"]}, StanzaErrorCondition.NOT_ACCEPTABLE),
    ],
)
def test_bad_config(fields: dict[str, list[str]], condition: StanzaErrorCondition) -> None:
    with pytest.raises(StanzaError) as err:
        parse_config(fields, NodeConfig(), LIMIT)
    assert err.value.condition is condition


def test_config_form_round_trips() -> None:
    config = NodeConfig(access_model="whitelist", max_items=LIMIT, roster_groups_allowed=("x",))
    fields = form_fields(config_form(config, LIMIT))
    assert fields["pubsub#max_items"] == ["max"]
    assert parse_config(fields, NodeConfig(), LIMIT) == config


def test_config_json_round_trips() -> None:
    config = NodeConfig(access_model="roster", roster_groups_allowed=("a",), title="t")
    assert NodeConfig.from_json(config.to_json()) == config


def test_put_replaces_and_trims_oldest_first() -> None:
    node = Node("n", NodeConfig(max_items=2))
    assert node.put(Item("a", None, "x", 1)) == []
    assert node.put(Item("b", None, "x", 2)) == []
    assert [i.id for i in node.put(Item("c", None, "x", 3))] == ["a"]
    assert node.put(Item("b", None, "x", 4)) == []  # §7.1.2: same id replaces, now newest
    assert [i.id for i in node.last()] == ["b", "c"]
    assert [i.id for i in node.last(1)] == ["b"]
    assert node.seq == 4


def test_node_meta_round_trips() -> None:
    node = Node("n", NodeConfig(), affiliations={"a@x": "owner"}, subscriptions={"b@x": "s1"})
    back = Node.from_json("n", node.meta_json())
    assert (back.config, back.affiliations, back.subscriptions) == (
        node.config,
        node.affiliations,
        node.subscriptions,
    )


def test_pubsub_error_carries_its_condition() -> None:
    err = pubsub_error(StanzaErrorCondition.CONFLICT, "precondition-not-met").to_element()
    app = err.find("precondition-not-met", PUBSUB_ERRORS)
    assert app is not None
    unsupported = pubsub_error(
        StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, "unsupported", feature="x"
    ).to_element()
    el = unsupported.find("unsupported", PUBSUB_ERRORS)
    assert el is not None and el.get("feature") == "x"


def test_bookmarks_convert_both_ways() -> None:
    from roost.core.bookmarks import from_0402, to_0402
    from roost.core.xml.parser import parse_fragment
    from roost.core.xml.writer import serialize

    old = parse_fragment(
        "<storage xmlns='storage:bookmarks'><conference jid='a@muc' name='A' autojoin='1'>"
        "<nick>n</nick><password>p</password></conference>"
        "<conference jid='b@muc'/><url name='x' url='http://x'/></storage>"
    )
    new = to_0402(old)
    assert sorted(new) == ["a@muc", "b@muc"]
    assert serialize(new["a@muc"], "") == (
        "<conference xmlns='urn:xmpp:bookmarks:1' name='A' autojoin='true'>"
        "<nick>n</nick><password>p</password></conference>"
    )
    back = from_0402(new)
    assert serialize(back, "") == (
        "<storage xmlns='storage:bookmarks'>"
        "<conference jid='a@muc' name='A' autojoin='true'><nick>n</nick><password>p</password>"
        "</conference><conference jid='b@muc' autojoin='false'/></storage>"
    )
