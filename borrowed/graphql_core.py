"""Flat memory for long-lived subscriptions on graphql-core 3.3.2 (STACK.md).

Each subscription event runs on a shallow copy of the subscription's executor that
shares `_relevant_sub_fields`, a memo keyed by the id() of field lists that are new
for every event and kept alive by the memo itself: about 1.3 KB retained per event
for the life of the subscription. Giving every per-event executor memos of its own
keeps the memo's benefit inside one event and frees it with the event."""
from __future__ import annotations

import contextvars

from graphql.execution.executor import Executor
from graphql.pyutils import RefMap

_original = Executor.build_per_event_executor
_original_build = Executor.build.__func__

# The websocket operation whose task this is (subscriptions/direct.py): graphql-core's
# executor of its subscription is noted on it when built.
OPERATION: contextvars.ContextVar = contextvars.ContextVar("inbox_operation", default=None)


def per_event_executor(base: Executor, payload) -> Executor:
    """The executor of one event, with memos of its own."""
    executor = _original(base, payload)
    executor._relevant_sub_fields = {}
    executor._stream_usages = RefMap()
    return executor


def _build_per_event_executor(self: Executor, payload):
    return per_event_executor(self, payload)


@classmethod
def _build(cls, *args, **kwargs):
    executor = _original_build(cls, *args, **kwargs)
    operation = OPERATION.get()
    if operation is not None and operation.executor is None and isinstance(executor, Executor):
        operation.executor = executor
    return executor


def apply() -> None:
    if Executor.build_per_event_executor is not _build_per_event_executor:
        Executor.build_per_event_executor = _build_per_event_executor
    if Executor.__dict__["build"] is not _build:
        Executor.build = _build
