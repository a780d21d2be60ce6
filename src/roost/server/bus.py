"""Event bus: named events, prioritised handlers, first non-None result wins.

A handler that raises is logged with its name and skipped, so one broken module cannot take
the router down (ejabberd's ``safe_apply``). Event names are built in ``roost.server.events``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["EventBus", "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


class EventBus:
    """Synchronous hooks; handlers needing I/O schedule their own tracked work."""

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[str, list[tuple[int, Handler]]] = {}

    def on(self, event: str, handler: Handler, priority: int = 0) -> Callable[[], None]:
        """Register ``handler``; higher priority runs first. Returns an unregister function."""
        entries = self._handlers.setdefault(event, [])
        entry = (priority, handler)
        entries.append(entry)
        entries.sort(key=lambda e: -e[0])

        def remove() -> None:
            if entry in entries:
                entries.remove(entry)

        return remove

    def has(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def fire(self, event: str, *args: Any) -> Any:
        """Call handlers in priority order until one returns something other than None."""
        for _, handler in self._handlers.get(event, ()):
            try:
                result = handler(*args)
            except Exception:
                log.exception(
                    "handler %s for %s failed", getattr(handler, "__qualname__", handler), event
                )
                continue
            if result is not None:
                return result
        return None
