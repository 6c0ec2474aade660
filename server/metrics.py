"""What operators can see (issue 11): the process's metrics in Prometheus' text format,
one definition each, so that every bound reports its refusals the same way, every
GraphQL operation is counted by one rule, and a scrape is cheap whatever happens.

Metrics are per process (`inbox serve --workers N`: each worker answers for itself);
the queue gauges, read from the database, are the same in every process."""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import logging
import re
import time
from datetime import datetime, timezone
from typing import Awaitable, Callable, Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

REQUESTS = Counter("inbox_graphql_requests_total",
                   "GraphQL operations by type (query, mutation, subscription; unknown when the document "
                   "names none) and the code of their first error ('' when none)",
                   ["operation_type", "code"])
REFUSALS = Counter("inbox_refusals_total", "Requests, frames, sockets and jobs refused by a bound", ["bound"])
SOCKETS = Gauge("inbox_open_websockets", "Open websockets at /graphql")
SUBSCRIPTIONS = Gauge("inbox_open_subscriptions", "Live subscription operations")
SOCKET_CLOSES = Counter("inbox_websocket_closes_total", "Websockets closed by the server, by close code", ["code"])
BACKLOG_BYTES = Gauge("inbox_subscription_backlog_bytes", "Bytes queued for subscribers that have not read them")
BATCH_SIZE = Histogram("inbox_group_commit_batch_size", "Items stored per group commit (one transaction)",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BROADCAST_RECONNECTS = Counter("inbox_broadcast_reconnects_total", "Reconnects to the broadcast backend")
BROADCAST_GAPS = Counter("inbox_broadcast_gaps_total", "Publishes that may have been lost (a gap recorded)")
MEDIA_STORED_BYTES = Gauge("inbox_media_stored_bytes", "Bytes of files the server keeps, per company (issue 16)",
                           ["company"])
QUEUE_DEPTH = Gauge("inbox_queue_depth", "Rows waiting in a durable queue (send: replies, outbox: emails)",
                    ["queue"])
QUEUE_OLDEST_AGE = Gauge("inbox_queue_oldest_age_seconds",
                         "Age of the oldest row waiting in a durable queue (0 when empty)", ["queue"])
QUEUE_READ_FAILURES = Counter("inbox_queue_read_failures_total",
                              "Scrape-time reads of the queues that failed (the gauges keep their last values)")


def refused(bound: str) -> None:
    """Count one refusal by the named bound (e.g. "query_cost", "ws_message_bytes")."""
    REFUSALS.labels(bound=bound).inc()


def closed(code: int) -> None:
    """Count one websocket closed by the server. Called where every close leaves
    (server/app.py wraps the socket's ASGI `send`): not at the places that decide one."""
    SOCKET_CLOSES.labels(code=str(code)).inc()


# --- GraphQL operations ----------------------------------------------------------------------

# The refusals of the document limits, known by their errors: graphql-core's parser (the
# token limit) and strawberry's depth and alias rules. Recognised in the answer rather
# than where they are raised, because documents are parsed and validated through caches:
# a refused document sent again is refused from the cache, and counted again.
_LIMITS = (
    (re.compile(r"Syntax Error: Document contains more than \d+ tokens\. Parsing aborted\."), "query_tokens"),
    (re.compile(r"Syntax Error: Document is nested too deeply\. Parsing aborted\."), "query_depth"),
    (re.compile(r"'\w+' exceeds maximum operation depth of \d+"), "query_depth"),
    (re.compile(r"\d+ aliases found\. Allowed: \d+"), "query_aliases"),
)


_requests: dict[tuple[str, str], Counter] = {}


def answered(operation_type: str, errors: Iterable | None = None, *, code: str | None = None) -> None:
    """Counts one GraphQL operation by its type and the contract code of its first error
    (its errors have their codes: schema/errors.py) or `code`, and each document limit
    it broke."""
    code = code or ""
    bounds = set()
    for error in errors or ():
        extensions = getattr(error, "extensions", None) or {}
        if not code:
            code = str(extensions.get("code") or "INTERNAL")
        if not getattr(error, "path", None):
            message = getattr(error, "message", "")
            bounds.update(bound for pattern, bound in _LIMITS if pattern.fullmatch(message))
    counter = _requests.get((operation_type, code))
    if counter is None:  # a handful of types times the contract's codes
        counter = _requests[operation_type, code] = REQUESTS.labels(operation_type=operation_type, code=code)
    counter.inc()
    for bound in bounds:
        refused(bound)


class SubscriptionSlot:
    """One websocket operation, counted in SUBSCRIPTIONS from the moment it runs as a
    subscription until its connection's handler ends it (completed, stopped, the socket
    gone): with direct delivery a subscription outlives strawberry's run of it."""

    __slots__ = ("counted",)

    def __init__(self) -> None:
        self.counted = False

    def start(self) -> None:
        if not self.counted:
            self.counted = True
            SUBSCRIPTIONS.inc()

    def end(self) -> None:
        if self.counted:
            self.counted = False
            SUBSCRIPTIONS.dec()


_SLOT: contextvars.ContextVar[SubscriptionSlot | None] = contextvars.ContextVar("inbox_subscription_slot",
                                                                                default=None)


def websocket_operation() -> SubscriptionSlot:
    """Called by a websocket handler in the task that runs one operation; it ends the slot
    when the operation is over."""
    slot = SubscriptionSlot()
    _SLOT.set(slot)
    return slot


def subscription_started() -> None:
    """Called when the operation of the current task turns out to be a subscription."""
    slot = _SLOT.get()
    if slot is not None:
        slot.start()


# --- The queues, read at scrape time ---------------------------------------------------------

# At most one read of the queues per this many seconds, whatever the scrape rate; a
# scrape waits for it this long at most (then answers with the last values), and a read
# that takes longer than QUEUE_READ_LIMIT is given up.
QUEUE_READ_EVERY = 5.0
QUEUE_READ_TIMEOUT = 2.0
QUEUE_READ_LIMIT = 30.0

Backlog = tuple[int, datetime | None]


async def _read_queues() -> dict[str, Backlog]:
    import models
    from inbox.queue import backlog

    return {"send": await backlog(models.Delivery.all()),
            "outbox": await backlog(models.NotificationEmail.filter(failed_at__isnull=True))}


class QueueGauges:
    """QUEUE_DEPTH and QUEUE_OLDEST_AGE, refreshed by scrapes: one aggregate query per
    queue at most every QUEUE_READ_EVERY seconds, one read in flight at a time."""

    def __init__(self, read: Callable[[], Awaitable[dict[str, Backlog]]] = _read_queues) -> None:
        self.read = read
        self._oldest: dict[str, datetime | None] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Task | None = None

    async def refresh(self) -> None:
        now = time.monotonic()
        if self._reading is None and (self._read_at is None or now - self._read_at >= QUEUE_READ_EVERY):
            self._read_at = now
            self._reading = asyncio.ensure_future(self._read())
        if self._reading is not None:
            # Shielded: a scrape that stops waiting leaves the read to finish for the next one.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reading), QUEUE_READ_TIMEOUT)
        wall = datetime.now(timezone.utc)
        for queue, oldest in self._oldest.items():
            QUEUE_OLDEST_AGE.labels(queue=queue).set(0 if oldest is None else max(0.0, (wall - oldest).total_seconds()))

    async def _read(self) -> None:
        try:
            backlogs = await asyncio.wait_for(self.read(), QUEUE_READ_LIMIT)
        except Exception:
            QUEUE_READ_FAILURES.inc()
            log.warning("reading the queues for /metrics failed", exc_info=True)
        else:
            for queue, (depth, oldest) in backlogs.items():
                QUEUE_DEPTH.labels(queue=queue).set(depth)
                self._oldest[queue] = oldest
        finally:
            self._reading = None


# --- The endpoint ----------------------------------------------------------------------------

def authorized(authorization: str | None, token: str) -> bool:
    """Whether the header is `Bearer <token>`, compared in constant time (digests of equal
    length, so not even the token's length shows)."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(token.encode()).digest()) and bool(given.strip())


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The body and content type of a scrape: the text format (0.0.4), or OpenMetrics
    when the scraper's Accept header asks for it."""
    encode, content_type = choose_encoder(accept)
    return encode(REGISTRY), content_type
