"""The client's events and the iterator over them (``Client.events``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Generic, TypeVar

from roost.client.roster import RosterChanged
from roost.client.stanzas import Connected, ConnectionLost, Message, Presence

__all__ = ["END", "Event", "EventStream", "put"]

log = logging.getLogger(__name__)

#: what a ``Client`` hands to handlers and iterators
Event = Message | Presence | Connected | ConnectionLost | RosterChanged
#: the end of an iteration (``Client.disconnect``)
END = object()
T = TypeVar("T")


class EventStream(Generic[T]):
    """An iterator over a client's events (``Client.events``, ``Client.messages``)."""

    def __init__(
        self,
        queues: list[tuple[tuple[type, ...], asyncio.Queue[object]]],
        kinds: tuple[type, ...],
        maxsize: int,
    ) -> None:
        self._queues = queues
        self._entry = (kinds, asyncio.Queue[object](maxsize))
        queues.append(self._entry)

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._entry[1].get()
        if item is END:
            self.close()
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def next(self, timeout: float) -> T:
        """The next event, within ``timeout`` seconds (``TimeoutError``)."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def close(self) -> None:
        """Stop collecting events."""
        if self._entry in self._queues:
            self._queues.remove(self._entry)

    def __enter__(self) -> EventStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def put(queue: asyncio.Queue[object], item: object) -> None:
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        log.warning("an event iterator is %d events behind: dropping", queue.maxsize)
