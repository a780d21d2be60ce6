"""XEP-0082 date-times and XEP-0203 delayed-delivery stamps (one formatter for both)."""

from __future__ import annotations

import datetime

from roost.core import ns
from roost.core.xml.element import Element

__all__ = ["delay_element", "parse_delay", "parse_xep0082", "xep0082_datetime"]


def xep0082_datetime(stamp: float) -> str:
    """XEP-0082 §3.2 DateTime in UTC with milliseconds, e.g. ``2006-12-19T17:58:35.123Z``."""
    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def delay_element(stamp: float, from_: str, reason: str | None = None) -> Element:
    """XEP-0203 ``<delay/>`` for a stanza held since ``stamp`` (seconds since the epoch)."""
    attrs = {"from": from_, "stamp": xep0082_datetime(stamp)}
    return Element("delay", ns.DELAY, attrs, [reason] if reason else None)


def parse_xep0082(text: str) -> float | None:
    """A XEP-0082 DateTime (``2006-12-19T17:58:35Z``, fractions and offsets allowed) as
    seconds since the epoch; None when it is not one."""
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # XEP-0082 §3.2: the time zone is required
    return when.timestamp()


def parse_delay(el: Element) -> float | None:
    """The stamp of a XEP-0203 ``<delay/>``."""
    stamp = el.get("stamp")
    return parse_xep0082(stamp) if stamp else None
