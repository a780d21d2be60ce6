"""Group commit: entries made on the event loop, written in batches by one writer task.

The archives (the user archive, ``modules/mam.py``; room archives, ``modules/muc/archive.py``)
must not put a database write on the routing path, and an XEP-0198 ack must not count a
message before it is on disk. So routing only queues; one task per archive writes what has
gathered in one storage call, and ``flushed`` waits for the commit of everything queued
before it. The queue is bounded: what comes beyond the bound is lost, and ``flushed`` says so
(``StorageError``) instead of promising it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from roost.storage.api import StorageError

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Lost:
    """Entries refused while the queue was full (kept in order, so ``flushed`` reports
    them to exactly the callers whose entries they were)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 1


class GroupCommit(Generic[T]):
    """A bounded queue of ``T`` written ``max_batch`` at a time by ``write``."""

    def __init__(
        self,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        write: Callable[[list[T]], Awaitable[None]],
        *,
        what: str,
        max_batch: int,
        max_queue: int,
        delay: Callable[[], float],
    ) -> None:
        self._spawn = spawn
        self._write_rows = write
        #: for the log: "messages", "room messages"
        self.what = what
        self.max_batch = max_batch
        self.max_queue = max_queue
        #: seconds to let a burst gather before a batch smaller than ``max_batch``
        self._delay = delay
        self._queue: list[T | _Lost] = []
        self._queued = 0  # entries ever queued (lost ones too)
        self._written = 0  # of those, how many the writer is done with
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._wake_scheduled = False

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue

    def put(self, entry: T) -> None:
        """Queue ``entry`` (check ``full`` first; a full queue takes ``lose`` instead)."""
        self._queue.append(entry)
        self._queued += 1
        if not self._wake_scheduled and self._writer is None:
            # Started from a callback, not here: a stream driver that holds its peer's next
            # stanzas behind the tasks this one spawned must not wait for the disk.
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake)

    def lose(self) -> None:
        """Count an entry the full queue could not take: ``flushed`` will raise for it."""
        self._queued += 1
        last = self._queue[-1] if self._queue else None
        if isinstance(last, _Lost):
            last.count += 1
        else:
            log.error("the %s writer is %d behind: not archiving", self.what, self.max_queue)
            self._queue.append(_Lost())

    async def flushed(self) -> None:
        """Return once every entry queued before the call is committed (or raise the error
        its write failed with)."""
        target = self._queued
        if self._written >= target:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future

    def _wake(self) -> None:
        self._wake_scheduled = False
        if self._writer is None and self._queue:
            self._writer = self._spawn(self._write_all())

    async def _write_all(self) -> None:
        try:
            while self._queue:
                if len(self._queue) < self.max_batch and (delay := self._delay()):
                    # one transaction (and one trip to the storage thread) for many entries
                    # costs far less CPU than one each
                    await asyncio.sleep(delay)
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._write(batch)
        except asyncio.CancelledError:
            # Shutdown: the batch in flight completes in the storage worker; what is still
            # queued is written after it, before storage closes.
            rest, self._queue = self._queue, []
            if rest:
                await asyncio.shield(self._write(rest))
            raise
        finally:
            self._writer = None

    async def _write(self, batch: list[T | _Lost]) -> None:
        rows: list[T] = [e for e in batch if not isinstance(e, _Lost)]
        lost = sum(e.count for e in batch if isinstance(e, _Lost))
        error: BaseException | None = None
        try:
            if rows:
                await self._write_rows(rows)
        except Exception as exc:
            log.exception("archiving %d %s failed", len(rows), self.what)
            error = exc
        if lost and error is None:
            error = StorageError(f"{lost} {self.what} were not archived: the queue was full")
        self._written += len(rows) + lost
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._waiters:
            if target > self._written:
                keep.append((target, future))
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        self._waiters = keep
