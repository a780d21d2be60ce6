"""XEP-0060 Publish-Subscribe, the pure part: nodes, items, configuration, access, errors.

No I/O here: the PEP module (``roost.server.modules.pep``) keeps these in storage and sends
the notifications. Node configuration is a small frozen value built from (and rendered as)
the XEP-0004 ``pubsub#node_config`` form (§16.4.4); publish-options are checked against it
as preconditions (§7.1.5).
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Literal

from roost.core.errors import StanzaError, StanzaErrorCondition, StanzaErrorType
from roost.core.xml.element import Element
from roost.core.xml.parser import parse_fragment

__all__ = [
    "ACCESS_MODELS",
    "DATA",
    "EVENT",
    "NODE_CONFIG",
    "OWNER",
    "PUBLISH_OPTIONS",
    "PUBSUB",
    "PUBSUB_ERRORS",
    "Item",
    "Node",
    "NodeConfig",
    "config_form",
    "form_fields",
    "form_type",
    "parse_config",
    "pubsub_error",
]

PUBSUB: Final = "http://jabber.org/protocol/pubsub"
OWNER: Final = "http://jabber.org/protocol/pubsub#owner"
EVENT: Final = "http://jabber.org/protocol/pubsub#event"
PUBSUB_ERRORS: Final = "http://jabber.org/protocol/pubsub#errors"
NODE_CONFIG: Final = "http://jabber.org/protocol/pubsub#node_config"
PUBLISH_OPTIONS: Final = "http://jabber.org/protocol/pubsub#publish-options"
DATA: Final = "jabber:x:data"

AccessModel = Literal["open", "presence", "roster", "whitelist"]
ACCESS_MODELS: Final = ("open", "presence", "roster", "whitelist")
_PUBLISH_MODELS: Final = ("publishers", "subscribers", "open")
_SEND_LAST: Final = ("never", "on_sub", "on_sub_and_presence")
_C = StanzaErrorCondition


def pubsub_error(
    condition: StanzaErrorCondition,
    app: str | None = None,
    text: str | None = None,
    *,
    feature: str | None = None,
    type: StanzaErrorType | None = None,
) -> StanzaError:
    """A stanza error with a XEP-0060 §14 application condition (``<closed-node/>``...)."""
    el = None
    if app is not None:
        el = Element(app, PUBSUB_ERRORS, {"feature": feature} if feature else None)
    return StanzaError(condition, text, app=el, type=type)


def _bool(value: str, var: str) -> bool:
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise pubsub_error(_C.NOT_ACCEPTABLE, None, f"{var} must be a boolean")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A node's configuration (XEP-0060 §16.4.4 ``pubsub#node_config`` fields we support).

    ``max_items`` is a number; ``"max"`` in a form means the service's own limit.
    Defaults are XEP-0163 §4's "smart defaults" (presence access, one item).
    """

    access_model: AccessModel = "presence"
    max_items: int = 1
    persist_items: bool = True
    publish_model: str = "publishers"
    send_last_published_item: str = "on_sub_and_presence"
    deliver_notifications: bool = True
    deliver_payloads: bool = True
    notify_retract: bool = True
    notify_delete: bool = True
    roster_groups_allowed: tuple[str, ...] = ()
    title: str | None = None
    type: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> NodeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "roster_groups_allowed" in values:
            values["roster_groups_allowed"] = tuple(values["roster_groups_allowed"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    def value_of(self, var: str, max_items_limit: int) -> list[str] | None:
        """The form value(s) of ``pubsub#var`` (None: not a field we know)."""
        name = var.removeprefix("pubsub#")
        if not var.startswith("pubsub#") or name not in _FIELDS:
            return None
        value = getattr(self, name)
        if name == "max_items":
            return ["max" if value >= max_items_limit else str(value)]
        if isinstance(value, bool):
            return ["true" if value else "false"]
        if isinstance(value, tuple):
            return list(value)
        return [] if value is None else [str(value)]


#: field name -> (XEP-0004 type, label)
_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "access_model": ("list-single", "Who may subscribe and retrieve items"),
    "max_items": ("text-single", "Max number of items to persist"),
    "persist_items": ("boolean", "Persist items to storage"),
    "publish_model": ("list-single", "Who may publish"),
    "send_last_published_item": ("list-single", "When to send the last published item"),
    "deliver_notifications": ("boolean", "Deliver event notifications"),
    "deliver_payloads": ("boolean", "Deliver payloads with event notifications"),
    "notify_retract": ("boolean", "Notify subscribers when items are removed"),
    "notify_delete": ("boolean", "Notify subscribers when the node is deleted"),
    "roster_groups_allowed": ("list-multi", "Roster groups allowed to subscribe"),
    "title": ("text-single", "A friendly name for the node"),
    "type": ("text-single", "The type of node data (payload namespace)"),
}
_OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "access_model": ACCESS_MODELS,
    "publish_model": _PUBLISH_MODELS,
    "send_last_published_item": _SEND_LAST,
}


def form_type(form: Element) -> str | None:
    """The hidden FORM_TYPE of a data form (XEP-0068)."""
    for f in form.find_all("field", DATA):
        if f.get("var") == "FORM_TYPE":
            v = f.find("value", DATA)
            return v.text if v is not None else None
    return None


def form_fields(form: Element) -> dict[str, list[str]]:
    """var -> values of a submitted form, FORM_TYPE left out."""
    out: dict[str, list[str]] = {}
    for f in form.find_all("field", DATA):
        var = f.get("var")
        if var and var != "FORM_TYPE":
            out[var] = [v.text for v in f.find_all("value", DATA)]
    return out


def parse_config(
    fields: dict[str, list[str]], base: NodeConfig, max_items_limit: int
) -> NodeConfig:
    """``base`` changed by submitted ``pubsub#`` fields; an unknown field or a bad value is
    ``not-acceptable`` (§8.2.5 "the request is invalid")."""
    changes: dict[str, object] = {}
    for var, values in fields.items():
        name = var.removeprefix("pubsub#")
        if not var.startswith("pubsub#") or name not in _FIELDS:
            raise pubsub_error(_C.NOT_ACCEPTABLE, None, f"unsupported field {var}")
        kind = _FIELDS[name][0]
        if kind == "list-multi":
            changes[name] = tuple(values)
            continue
        value = values[0] if values else ""
        if kind == "boolean":
            changes[name] = _bool(value, var)
        elif name == "max_items":
            if value == "max":
                changes[name] = max_items_limit
            elif value.isdigit() and int(value) >= 1:
                if int(value) > max_items_limit:
                    raise pubsub_error(
                        _C.NOT_ACCEPTABLE, None, f"{var} is at most {max_items_limit}"
                    )
                changes[name] = int(value)
            else:
                raise pubsub_error(_C.NOT_ACCEPTABLE, None, f"{var} must be a number or max")
        elif name in _OPTIONS:
            if value not in _OPTIONS[name]:
                if name == "access_model" and value == "authorize":
                    raise pubsub_error(
                        _C.FEATURE_NOT_IMPLEMENTED,
                        "unsupported",
                        feature="access-authorize",
                    )
                raise pubsub_error(_C.NOT_ACCEPTABLE, None, f"{var} cannot be {value!r}")
            changes[name] = value
        else:
            changes[name] = value or None
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def config_form(config: NodeConfig, max_items_limit: int, *, node: str | None = None) -> Element:
    """The ``pubsub#node_config`` form for a configure or default request (§8.2, §8.3)."""
    form = Element("x", DATA, {"type": "form"})
    ft = form.sub("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    ft.sub("value", text=NODE_CONFIG)
    for name, (kind, label) in _FIELDS.items():
        f = form.sub("field", attrs={"var": f"pubsub#{name}", "type": kind, "label": label})
        for value in config.value_of(f"pubsub#{name}", max_items_limit) or []:
            f.sub("value", text=value)
        for option in _OPTIONS.get(name, ()):
            f.sub("option").sub("value", text=option)
    return form


@dataclass(slots=True)
class Item:
    """A published item: its id, payload (serialized XML or None), publisher, order and
    publication time."""

    id: str
    payload: str | None
    publisher: str
    seq: int
    #: when it was published (seconds since the epoch), for XEP-0203 delay stamps
    stamp: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"p": self.payload, "by": self.publisher, "seq": self.seq, "t": self.stamp}
        )

    @classmethod
    def from_json(cls, item_id: str, raw: str) -> Item:
        d = json.loads(raw)
        t = d.get("t")
        return cls(item_id, d["p"], d["by"], int(d["seq"]), float(t) if t is not None else None)


@dataclass(slots=True)
class Node:
    """A node: configuration, items oldest first, affiliations and explicit subscriptions.

    ``affiliations`` maps a bare JID to ``owner``, ``publisher``, ``member`` or ``outcast``
    (§4.1); ``subscriptions`` maps a JID (as subscribed) to its subid (§6.1).
    """

    name: str
    config: NodeConfig
    items: OrderedDict[str, Item] = field(default_factory=OrderedDict)
    affiliations: dict[str, str] = field(default_factory=dict)
    subscriptions: dict[str, str] = field(default_factory=dict)
    seq: int = 0

    def meta_json(self) -> str:
        return json.dumps(
            {
                "config": self.config.to_json(),
                "affiliations": self.affiliations,
                "subscriptions": self.subscriptions,
            }
        )

    @classmethod
    def from_json(cls, name: str, raw: str) -> Node:
        d = json.loads(raw)
        return cls(
            name,
            NodeConfig.from_json(d["config"]),
            affiliations=dict(d.get("affiliations", {})),
            subscriptions=dict(d.get("subscriptions", {})),
        )

    def put(self, item: Item) -> list[Item]:
        """Add or replace ``item`` as the newest (§7.1.2: a replaced id moves to the end);
        returns the items pushed out by ``max_items`` (oldest first)."""
        self.seq = max(self.seq, item.seq)
        self.items.pop(item.id, None)
        self.items[item.id] = item
        return self.trim()

    def trim(self) -> list[Item]:
        dropped = []
        while len(self.items) > self.config.max_items:
            dropped.append(self.items.popitem(last=False)[1])
        return dropped

    def last(self, n: int | None = None) -> list[Item]:
        """The newest ``n`` items (all with None), newest first (§6.5.7)."""
        items = list(reversed(self.items.values()))
        return items if n is None else items[:n]

    def item_element(self, item: Item, ns: str, *, payload: bool = True) -> Element:
        """``<item id=...>`` with its payload, in ``ns`` (pubsub or pubsub#event)."""
        el = Element("item", ns, {"id": item.id})
        if payload and item.payload is not None:
            el.append(parse_fragment(item.payload))
        return el
