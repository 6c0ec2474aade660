"""What operators can see (issue 11): the process's metrics in Prometheus' text
format, one definition each, so that every bound reports its refusals the same way."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("inbox_graphql_requests_total", "GraphQL operations by type and error code ('' when none)",
                   ["operation_type", "code"])
REFUSALS = Counter("inbox_refusals_total", "Requests, frames, sockets and jobs refused by a bound", ["bound"])
SOCKETS = Gauge("inbox_open_websockets", "Open websockets at /graphql")
SUBSCRIPTIONS = Gauge("inbox_open_subscriptions", "Live subscription operations")
SOCKET_CLOSES = Counter("inbox_websocket_closes_total", "Websockets closed by the server, by close code", ["code"])
BACKLOG_BYTES = Gauge("inbox_subscription_backlog_bytes", "Bytes queued for subscribers that have not read them")
BATCH_SIZE = Histogram("inbox_group_commit_batch_size", "Inbound messages stored per group commit",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BROADCAST_RECONNECTS = Counter("inbox_broadcast_reconnects_total", "Reconnects to the broadcast backend")
BROADCAST_GAPS = Counter("inbox_broadcast_gaps_total", "Publishes that may have been lost (a gap recorded)")


def refused(bound: str) -> None:
    """Count one refusal by the named bound (e.g. "query_cost", "ws_message_bytes")."""
    REFUSALS.labels(bound=bound).inc()
