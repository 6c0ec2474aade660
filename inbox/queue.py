"""Durable work queues (replies to send, emails to send): a table of due rows that
every process may work. A row is leased before its attempt (`FOR UPDATE SKIP
LOCKED` on PostgreSQL; SQLite is one process), and the lease outlasts the
attempt's timeout, so no row is attempted by two workers at once."""
from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable

from tortoise.expressions import Q
from tortoise.functions import Count, Min
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from borrowed.tortoise import meta

log = logging.getLogger(__name__)


class AttemptFailed(Exception):
    """The other side (a messaging app, the SMTP server) did not take it; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retryable(AttemptFailed):
    """It may go through later: retried with backoff."""


class Rejected(AttemptFailed):
    """Refused for good: not retried."""


# What `QueueWorker.perform` returns for a row that has nothing left to do.
GONE = object()
# How long `stop` waits for a claim or an attempt's database work to finish.
STOP_SECONDS = 5.0


async def due_rows(rows: QuerySet, connection, now: datetime, limit: int) -> list:
    """Up to `limit` rows of `rows` (a queryset of a model with `next_attempt_at` and
    `leased_until`) that are due and not leased, oldest first, locked until the caller's
    transaction ends; rows another transaction holds are skipped."""
    # Bound to the transaction: a queryset keeps the connection it was made with, and on
    # SQLite the outer one waits for the lock this transaction holds. `of`: when `rows`
    # filters through a join, only the queue's own rows are locked.
    return await (rows.using_db(connection).filter(next_attempt_at__lte=now)
                  .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
                  .select_for_update(skip_locked=True, of=(meta(rows.model).db_table,))
                  .order_by("next_attempt_at", "id").limit(limit))


async def lease(model, ids: list[int], connection, until: datetime) -> None:
    if ids:
        await model.filter(id__in=ids).using_db(connection).update(leased_until=until)


async def lease_due(rows: QuerySet, lease_for: timedelta, batch: int) -> list[int]:
    """Leases up to `batch` rows of `rows` that are due and not leased; returns their ids."""
    now = datetime.now(timezone.utc)
    async with in_transaction() as connection:
        ids = [row.id for row in await due_rows(rows, connection, now, batch)]
        await lease(rows.model, ids, connection, now + lease_for)
    return ids


async def backlog(rows: QuerySet) -> tuple[int, datetime | None]:
    """How many rows of `rows` wait and when the oldest of them was queued: one aggregate
    query (for /metrics)."""
    found = await rows.annotate(depth=Count("id"), oldest=Min("created_at")).values("depth", "oldest")
    depth, oldest = (found[0]["depth"], found[0]["oldest"]) if found else (0, None)
    if isinstance(oldest, str):  # SQLite answers an aggregate of a datetime column in text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    return int(depth or 0), oldest


class QueueWorker:
    """Claims due rows and attempts each in a task of its own, at most `max_in_flight` at
    once; wakes when told, at the time it was told, or every `poll_seconds` (rows other
    processes queued). Subclasses say what a row's work is (`perform`) and how it ends
    (`succeed`, `give_up`)."""

    name = "queue"
    model: type  # the queue's table
    # Retries back off exponentially from `backoff` seconds up to this delay.
    max_backoff = 60.0

    def __init__(self, *, timeout: float, backoff_seconds: float, retry_seconds: float,
                 poll_seconds: float = 1.0, batch: int = 20, max_in_flight: int = 100) -> None:
        self.timeout = timeout
        self.backoff = backoff_seconds
        self.retry_window = timedelta(seconds=retry_seconds)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.max_in_flight = max_in_flight
        # The lease outlasts the attempt's timeout: no other worker takes a row being attempted.
        self.lease = timedelta(seconds=timeout + 30)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._attempts: set[asyncio.Task] = set()
        self._calls: set[asyncio.Future] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._stopping = False
        # Set by a claim that left due rows behind (a bound was reached): a finished
        # attempt then wakes the worker to take them.
        self.held_back = False

    def room(self) -> int:
        """How many more rows this worker may take now."""
        return max(0, min(self.batch, self.max_in_flight - len(self._attempts)))

    async def claim(self) -> list[int]:
        """Leases up to `room()` due rows; returns their ids."""
        raise NotImplementedError

    async def perform(self, row) -> Any:
        """The row's work, its call to the other side made through `call`: returns what
        `succeed` takes, or GONE when the row has nothing left to do (and is deleted);
        raises Retryable or Rejected when the other side did not take it."""
        raise NotImplementedError

    async def succeed(self, row, result: Any) -> None:
        raise NotImplementedError

    async def give_up(self, row, reason: str) -> None:
        """What becomes of a row that will not be attempted again."""
        raise NotImplementedError

    def reason_of(self, error: Exception) -> str:
        """A retried failure's reason, kept in `last_error` and given up with."""
        return _reason(error, self.timeout)

    async def attempt(self, row_id: int) -> None:
        """One attempt of a leased row. It is counted first, so that whatever goes wrong
        after, wherever (the other side, a row it reads, a bug), is a failed attempt:
        retried with backoff and given up once the retry window is over, never leased for
        ever."""
        row = await self.model.get_or_none(id=row_id)
        if row is None:  # done meanwhile, or erased with what caused it
            return
        row.first_attempt_at = row.first_attempt_at or datetime.now(timezone.utc)
        row.attempts += 1
        await self.model.filter(id=row.id).update(first_attempt_at=row.first_attempt_at, attempts=row.attempts)
        try:
            result = await self.perform(row)
        except Rejected as error:
            await self.give_up(row, error.reason)
        except (Retryable, OSError) as error:  # timeouts are OSErrors too
            log.info("%s: row %s, attempt %s: %r", self.name, row.id, row.attempts, error)
            await self.retry_or_give_up(row, self.reason_of(error))
        except Exception as error:  # a bug must not lose the work, nor hold it for ever
            log.exception("%s: attempt %s of row %s raised", self.name, row.attempts, row.id)
            await self.retry_or_give_up(row, f"internal error ({type(error).__name__})")
        else:
            if result is not GONE:
                await self.succeed(row, result)

    async def retry_or_give_up(self, row, reason: str) -> None:
        """After a retryable failure: back off and try again, or give up once the row's
        first attempt is `retry_window` old."""
        if datetime.now(timezone.utc) - row.first_attempt_at >= self.retry_window:
            await self.give_up(row, f"gave up after {row.attempts} attempts: {reason}")
            return
        delay = await self.retry_later(row, reason)
        log.info("%s: row %s attempt %s failed (%s); retrying in %.1f s", self.name, row.id, row.attempts,
                 reason, delay)

    async def retry_later(self, row, reason: str) -> float:
        """Puts an attempted row (with `attempts`) back in the queue after its backoff,
        releasing its lease; returns the delay."""
        delay = min(self.max_backoff, self.backoff * 2 ** (row.attempts - 1)) * random.uniform(0.8, 1.2)
        await type(row).filter(id=row.id).update(
            next_attempt_at=datetime.now(timezone.utc) + timedelta(seconds=delay), leased_until=None,
            last_error=reason[:2000])
        if delay < self.poll_seconds:  # retry on time, not at the next poll
            self.wake_in(delay)
        return delay

    def wake(self) -> None:
        self._wake.set()

    def wake_in(self, seconds: float) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            self.wake()

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self._timers.add(handle)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"inbox-{self.name}")

    async def stop(self) -> None:
        """Stops claiming and ends the attempts in flight: a call to the other side is
        cancelled (the row is attempted again once its lease runs out), but database work is
        let finish: a task cancelled while it opens a transaction keeps tortoise's SQLite
        transaction lock for ever (tortoise 1.1's `SqliteTransactionContext.__aenter__`)."""
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        self._stopping = True
        self.wake()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)
            self._task.cancel()  # only if a claim outlived STOP_SECONDS (the database is away)
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for call in list(self._calls):
            call.cancel()
        if self._attempts:
            await asyncio.wait(set(self._attempts), timeout=STOP_SECONDS)
        for task in list(self._attempts):
            task.cancel()
        await asyncio.gather(*self._attempts, return_exceptions=True)

    async def call(self, work: Awaitable) -> Any:
        """`work` (the call to the other side), within `timeout`; `stop` cancels it."""
        task = asyncio.ensure_future(asyncio.wait_for(work, self.timeout))
        self._calls.add(task)
        try:
            return await task
        finally:
            self._calls.discard(task)

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before claiming: a wake while claiming makes another round at once.
            self._wake.clear()
            try:
                claimed = await self.claim() if self.room() else []
                self.held_back = self.held_back or not self.room()
                for row_id in claimed:
                    task = asyncio.create_task(self._attempt_logged(row_id), name=f"inbox-{self.name}-{row_id}")
                    self._attempts.add(task)
                    task.add_done_callback(self._attempt_done)
                if claimed:  # more may be due: a batch's worth, or rows a bound held back
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: keep the worker alive
                log.exception("%s: claiming failed; retrying", self.name)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except asyncio.TimeoutError:
                pass

    async def _attempt_logged(self, row_id: int) -> None:
        try:
            await self.attempt(row_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Counting the attempt or recording its end failed (the database is away): the
            # row is attempted again once its lease runs out.
            log.exception("%s: attempt of row %s did not finish; retried when its lease runs out",
                          self.name, row_id)

    def _attempt_done(self, task: asyncio.Task) -> None:
        self._attempts.discard(task)
        if self.held_back:
            self.held_back = False
            self.wake()


def _reason(error: Exception, timeout: float) -> str:
    if isinstance(error, AttemptFailed):
        return error.reason
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    return f"{type(error).__name__}: {error}"
