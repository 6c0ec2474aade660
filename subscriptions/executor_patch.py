"""Flat memory for long-lived subscriptions on graphql-core 3.3.2 (STACK.md).

Each subscription event runs on a shallow copy of the subscription's executor that
shares `_relevant_sub_fields`, a memo keyed by the id() of field lists that are new
for every event and kept alive by the memo itself: about 1.3 KB retained per event
for the life of the subscription. Giving every per-event executor memos of its own
keeps the memo's benefit inside one event and frees it with the event."""
from __future__ import annotations

from graphql.execution.executor import Executor
from graphql.pyutils import RefMap

from . import fanout

_original = Executor.build_per_event_executor


def _build_per_event_executor(self: Executor, payload):
    executor = _original(self, payload)
    executor._relevant_sub_fields = {}
    executor._stream_usages = RefMap()
    # One execution per group of subscribers that would receive the same bytes.
    fanout.attach(executor, self)
    return executor


def apply() -> None:
    if Executor.build_per_event_executor is not _build_per_event_executor:
        Executor.build_per_event_executor = _build_per_event_executor
