"""Event bus with two kinds of handlers: filters, which may take a stanza, and observers.

Events are typed (``roost.server.events``): an ``Filter[P]`` or ``Observer[P]`` carries the
signature ``P`` its handlers have, so mypy checks every handler and every firing.

* Filters run in priority order until one returns something true: it has taken the stanza
  (routed, answered or refused it). A filter that raises takes it too, as ``FAILED``: the
  stanza goes no further and the caller answers with an error. This is how privacy fails
  closed; the module that failed is named in the log.
* Observers all run, before the filters of the same event; they cannot take anything. One
  that raises is logged and skipped (ejabberd's ``safe_apply``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, Generic, ParamSpec

__all__ = ["FAILED", "TAKEN", "EventBus", "Filter", "Observer", "Outcome"]

log = logging.getLogger(__name__)

P = ParamSpec("P")


class Filter(Generic[P]):
    """An event whose handlers may take what it carries."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Filter({self.name!r})"


class Observer(Generic[P]):
    """An event whose handlers only watch."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Observer({self.name!r})"


class Outcome(enum.Enum):
    TAKEN = "taken"
    #: a filter raised: the stanza is refused (fail closed)
    FAILED = "failed"


TAKEN = Outcome.TAKEN
FAILED = Outcome.FAILED

_Entry = tuple[int, Callable[..., Any], str]


class EventBus:
    """Synchronous hooks; handlers needing I/O schedule their own tracked work."""

    __slots__ = ("_filters", "_observers")

    def __init__(self) -> None:
        self._filters: dict[str, tuple[_Entry, ...]] = {}
        self._observers: dict[str, tuple[_Entry, ...]] = {}

    @staticmethod
    def _add(table: dict[str, tuple[_Entry, ...]], name: str, entry: _Entry) -> Callable[[], None]:
        # Copy on write: adding and removing are rare, running is per stanza, and a handler
        # may remove itself (or add another) while its event runs without disturbing it.
        table[name] = tuple(sorted((*table.get(name, ()), entry), key=lambda e: -e[0]))

        def remove() -> None:
            entries = table.get(name, ())
            if any(e is entry for e in entries):
                rest = tuple(e for e in entries if e is not entry)
                if rest:
                    table[name] = rest
                else:
                    del table[name]

        return remove

    def filter(
        self, event: Filter[P], handler: Callable[P, object], priority: int = 0, owner: str = "?"
    ) -> Callable[[], None]:
        """Add a filter (higher priority first); returns the function that removes it."""
        return self._add(self._filters, event.name, (priority, handler, owner))

    def observe(
        self, event: Filter[P] | Observer[P], handler: Callable[P, object], priority: int = 0,
        owner: str = "?",
    ) -> Callable[[], None]:
        """Add an observer (higher priority first); returns the function that removes it."""
        return self._add(self._observers, event.name, (priority, handler, owner))

    def has(self, event: Filter[Any] | Observer[Any]) -> bool:
        return event.name in self._filters or event.name in self._observers

    def run(self, event: Filter[P], *args: P.args, **kwargs: P.kwargs) -> Outcome | None:
        """Observers, then filters until one takes; ``None`` when none did."""
        name = event.name
        observers = self._observers.get(name)
        if observers:
            self._notify(name, observers, args, kwargs)
        for _, handler, owner in self._filters.get(name, ()):
            try:
                if handler(*args, **kwargs):
                    return TAKEN
            except Exception:
                log.exception("module %s failed on %s; the stanza is refused", owner, name)
                return FAILED
        return None

    def notify(self, event: Observer[P], *args: P.args, **kwargs: P.kwargs) -> None:
        """Call every observer of ``event``."""
        observers = self._observers.get(event.name)
        if observers:
            self._notify(event.name, observers, args, kwargs)

    @staticmethod
    def _notify(
        name: str, observers: tuple[_Entry, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        for _, handler, owner in observers:
            try:
                handler(*args, **kwargs)
            except Exception:
                log.exception("module %s failed observing %s (ignored)", owner, name)
