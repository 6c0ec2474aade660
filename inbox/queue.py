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


# What `QueueWorker.try_once` returns for an attempt that did not go through.
FAILED = object()


async def lease_due(rows: QuerySet, lease: timedelta, batch: int) -> list[int]:
    """Leases up to `batch` rows of `rows` (a queryset of a model with `next_attempt_at`
    and `leased_until`) that are due and not leased; returns their ids."""
    now = datetime.now(timezone.utc)
    async with in_transaction() as connection:
        # Bound to the transaction: a queryset keeps the connection it was made with,
        # and on SQLite the outer one waits for the lock this transaction holds.
        due = await (rows.using_db(connection).filter(next_attempt_at__lte=now)
                     .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
                     .select_for_update(skip_locked=True)
                     .order_by("next_attempt_at", "id").limit(batch))
        ids = [row.id for row in due]
        if ids:
            await rows.model.filter(id__in=ids).using_db(connection).update(leased_until=now + lease)
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
    """Claims due rows and attempts each in a task of its own; wakes when told, at the
    time it was told, or every `poll_seconds` (rows other processes queued)."""

    name = "queue"
    # Retries back off exponentially from `backoff` seconds up to this delay.
    max_backoff = 60.0

    def __init__(self, *, backoff_seconds: float, retry_seconds: float, poll_seconds: float = 1.0,
                 batch: int = 20) -> None:
        self.backoff = backoff_seconds
        self.retry_window = timedelta(seconds=retry_seconds)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._attempts: set[asyncio.Task] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    async def claim(self) -> list[int]:
        raise NotImplementedError

    async def attempt(self, row_id: int) -> None:
        raise NotImplementedError

    async def give_up(self, row, reason: str) -> None:
        """What becomes of a row that will not be attempted again."""
        raise NotImplementedError

    async def retry_or_give_up(self, row, reason: str) -> None:
        """After a retryable failure: back off and try again, or give up once the row's
        first attempt is `retry_window` old."""
        if datetime.now(timezone.utc) - row.first_attempt_at >= self.retry_window:
            await self.give_up(row, f"gave up after {row.attempts} attempts: {reason}")
            return
        delay = await self.retry_later(row, reason)
        log.info("%s: row %s attempt %s failed (%s); retrying in %.1f s", self.name, row.id, row.attempts,
                 reason, delay)

    async def try_once(self, row, work: Awaitable, timeout: float, what: str) -> Any:
        """One attempt of `row`: `work`, within `timeout`. Returns its result, or FAILED
        once the row has been given up (refused for good) or put back for a retry."""
        try:
            return await asyncio.wait_for(work, timeout)
        except Rejected as error:
            await self.give_up(row, error.reason)
        except (Retryable, OSError) as error:  # timeouts are OSErrors too
            await self.retry_or_give_up(row, _reason(error, timeout))
        except Exception as error:  # a bug must not lose the work: treat it as retryable
            log.exception("%s: unexpected error attempting %s", self.name, what)
            await self.retry_or_give_up(row, f"internal error: {type(error).__name__}")
        return FAILED

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
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for task in list(self._attempts):
            task.cancel()
        await asyncio.gather(*self._attempts, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            # Cleared before claiming: a wake while claiming makes another round at once.
            self._wake.clear()
            try:
                claimed = await self.claim()
                for row_id in claimed:
                    task = asyncio.create_task(self.attempt(row_id))
                    self._attempts.add(task)
                    task.add_done_callback(self._attempts.discard)
                if len(claimed) == self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: keep the worker alive
                log.exception("%s: claiming failed; retrying", self.name)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except asyncio.TimeoutError:
                pass


def _reason(error: Exception, timeout: float) -> str:
    if isinstance(error, AttemptFailed):
        return error.reason
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    return f"{type(error).__name__}: {error}"
