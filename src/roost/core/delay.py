"""XEP-0082 date-times and XEP-0203 delayed-delivery stamps (one formatter for both)."""

from __future__ import annotations

import datetime

from roost.core import ns
from roost.core.xml.element import Element

__all__ = ["delay_element", "xep0082_datetime"]


def xep0082_datetime(stamp: float) -> str:
    """XEP-0082 §3.2 DateTime in UTC with milliseconds, e.g. ``2006-12-19T17:58:35.123Z``."""
    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def delay_element(stamp: float, from_: str, reason: str | None = None) -> Element:
    """XEP-0203 ``<delay/>`` for a stanza held since ``stamp`` (seconds since the epoch)."""
    attrs = {"from": from_, "stamp": xep0082_datetime(stamp)}
    return Element("delay", ns.DELAY, attrs, [reason] if reason else None)
