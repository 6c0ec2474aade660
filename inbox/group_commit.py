"""Group commit: what concurrent callers submit is stored in batches, one batch at a time,
each in one transaction. SQLite writes one transaction at a time anyway and flushes the
disk at every commit; a batch pays for its statements, its commit and its thread hops
once for all its items. Nothing waits to fill a batch: the items that arrive while one
batch is written make the next one, so a lone item goes at once."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Generic, TypeVar

from server import metrics

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# `store(items)` returns one outcome per item, in order: its result, or the exception
# that item alone raises (the others are stored all the same).
Store = Callable[[list[Item]], Awaitable[list["Result | Exception"]]]


class GroupCommit(Generic[Item, Result]):
    def __init__(self, store: Store, max_batch: int) -> None:
        self._store = store
        self.max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, items: list[Item]) -> list[Result]:
        """Stores the items (in this order, in one batch or consecutive ones); returns their
        results once their transaction has committed, or raises the first one's error."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing of the old one survives
            self._queue, self._writer, self._loop = [], None, loop
        futures = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write(), name="group-commit")
        if len(futures) == 1:  # the common case (a message per webhook): no gathering future
            return [await futures[0]]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes

    async def _write(self) -> None:
        batch: list[tuple[Item, asyncio.Future]] = []
        try:
            while self._queue:
                batch = self._queue[:self.max_batch]
                del self._queue[:len(batch)]
                metrics.BATCH_SIZE.observe(len(batch))
                await self._commit(batch)
        except BaseException:
            # Cancelled (shutdown): whoever still waits hears it instead of waiting forever.
            for _, future in [*batch, *self._queue]:
                future.cancel()
            self._queue.clear()
            raise

    async def _commit(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            outcomes = await self._store([item for item, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0][1], error)
                return
            # One item may fail a whole batch (a concurrent duplicate on another process):
            # each alone, so that the others are stored and it gets its own outcome.
            log.debug("a batch of %d failed (%r): storing its items one by one", len(batch), error)
            for one in batch:
                await self._commit([one])
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)


def _settle(future: asyncio.Future, outcome) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
