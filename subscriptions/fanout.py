"""Subscription fan-out: one execution per event for every subscriber that would get
the same bytes, rather than one per subscriber (issue 7).

The subscription generators (streams.py) yield, for one event, one root object shared
by every local subscriber (`shared_root`, cached on the hub's payload like `_row`). Each
subscriber's per-event execution (executor_patch.py) then looks up the result of its
operation and variables on that root: the first one to get there executes, everyone
else reuses its result. The root dies with the payload, the results with the root.

Which scope a result may be shared in is learnt while it executes: the first execution
runs with a context that forwards everything but notes any read of per-connection
state (the viewer, the principal, the request, the viewer's unread counts...). One
that read none of it depends only on the event, the document and the variables: every
subscriber the per-viewer event filter let through (streams.py `_subscribe`, run before,
unchanged) gets it. One that read any of it was computed for its own viewer: it goes to
that subscriber only, and every other subscriber executes its own, as before, and skips
the shared attempt from then on. Results with errors are never shared.

The shared result's data is a `SharedData`, which encodes itself to JSON once; the
websocket view (server/app.py `encode_json`) splices each operation's id around it."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from graphql import ExecutionResult

# Attribute of a shared root object: its results by (operation, variables).
_RESULTS = "_fanout_results"
# Attribute of a subscription's executor once its executions proved viewer-dependent.
_OWN = "_fanout_own"
# Attribute of a subscription's executor: its key in a root's results (False: never shared).
_KEY = "_fanout_key"

# What a shared execution may read of the context without depending on the viewer.
_NEUTRAL_CONTEXT = frozenset({"settings"})
# schema/context.py Loaders: by id, no cache, the same rows whoever asks. `unread` is the
# viewer's read state; any loader not listed here counts as viewer-dependent.
_NEUTRAL_LOADERS = frozenset({"user", "channel", "contact", "conversation", "message", "person", "lead", "deal"})

_JSON = json.JSONEncoder(separators=(",", ":")).encode

stats = {"shared": 0, "reused": 0, "own": 0}
"""Executions by kind, for tests and benchmarks: `shared` ran for a group, `reused`
took a group's result, `own` ran for one subscriber only."""


class SharedData(dict):
    """The data of a result shared by a group of subscribers: encoded to JSON once."""

    __slots__ = ("_json",)

    def encoded(self) -> str:
        try:
            return self._json
        except AttributeError:
            self._json = _JSON(self)
            return self._json


def next_frame(message: dict) -> str | None:
    """The JSON of a graphql-transport-ws `next` / legacy `data` message whose payload is
    exactly a shared result's data, with the data encoded once for the group; None for
    any other message."""
    if len(message) != 3:
        return None
    payload = message.get("payload")
    if type(payload) is not dict or len(payload) != 1:
        return None
    data = payload.get("data")
    if type(data) is not SharedData:
        return None
    kind = message.get("type")
    if kind not in ("next", "data"):
        return None
    return f'{{"id":{_JSON(message["id"])},"type":"{kind}","payload":{{"data":{data.encoded()}}}}}'


def shared_root(payload: dict, key: tuple, make: Callable[[], Any]) -> Any:
    """The root object of `key` for this event, the same for every local subscriber
    (the hub hands them all the same payload dict)."""
    roots = payload.get("_roots")
    if roots is None:
        roots = payload["_roots"] = {}
    root = roots.get(key)
    if root is None:
        root = roots[key] = make()
        setattr(root, _RESULTS, {})
    return root


class Watch:
    __slots__ = ("dependent",)

    def __init__(self) -> None:
        self.dependent = False


class WatchedLoaders:
    __slots__ = ("_loaders", "_watch")

    def __init__(self, loaders: Any, watch: Watch) -> None:
        self._loaders = loaders
        self._watch = watch

    def __getattr__(self, name: str) -> Any:
        if name not in _NEUTRAL_LOADERS:
            self._watch.dependent = True
        return getattr(self._loaders, name)


class WatchedContext:
    """The subscriber's context, noting any read that may depend on who is watching."""

    __slots__ = ("_context", "_watch")

    def __init__(self, context: Any, watch: Watch) -> None:
        self._context = context
        self._watch = watch

    def __getattr__(self, name: str) -> Any:
        if name == "loaders":
            return WatchedLoaders(self._context.loaders, self._watch)
        if name not in _NEUTRAL_CONTEXT:
            self._watch.dependent = True
        return getattr(self._context, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in WatchedContext.__slots__:
            object.__setattr__(self, name, value)
        else:
            self._watch.dependent = True
            setattr(self._context, name, value)


class _Group:
    """The execution of one operation with one set of variables for one event."""

    __slots__ = ("operation", "done", "result")

    def __init__(self, operation: Any) -> None:
        self.operation = operation  # keeps id(operation) in the key unique while the group lives
        self.done = asyncio.get_running_loop().create_future()
        # The result every subscriber may get; None when it cannot be shared.
        self.result: ExecutionResult | None = None


def _variables_key(variables: Any) -> str | None:
    """None when the coerced values are not plain JSON: such a subscription does not share."""
    variables = getattr(variables, "coerced", variables)  # graphql-core 3.3's VariableValues
    if not variables:
        return ""
    try:
        return json.dumps(variables, sort_keys=True)
    except (TypeError, ValueError):
        return None


def group_key(base: Any) -> tuple | None:
    """The key of the group a subscription's executions share (its operation and
    variables, the same for each event); None when they are its own."""
    if getattr(base, _OWN, False):
        return None
    key = getattr(base, _KEY, None)
    if key is None:
        variables = _variables_key(base.variable_values)
        key = (id(base.operation), variables) if variables is not None else False
        setattr(base, _KEY, key)
    return key or None


def is_own(base: Any) -> bool:
    return getattr(base, _OWN, False)


def mark_own(base: Any) -> None:
    """Its executions proved viewer-dependent: the same document will be again."""
    setattr(base, _OWN, True)


def attach(executor: Any, base: Any) -> None:
    """Called for each per-event executor (`base`: the subscription's own executor)."""
    results = getattr(executor.root_value, _RESULTS, None)
    if results is None:
        return
    key = group_key(base)
    if key is None:
        return
    original = executor.execute_operation

    async def execute_operation(serially: bool | None = None):
        group = results.get(key)
        if group is None:
            group = results[key] = _Group(executor.operation)
            return await _execute_for_group(executor, original, serially, group, base)
        if not group.done.done():
            await asyncio.shield(group.done)
        if group.result is not None:
            stats["reused"] += 1
            return group.result
        if group.done.result() == "dependent":
            mark_own(base)
        stats["own"] += 1
        return await _await(executor, original(serially))

    executor.execute_operation = execute_operation


async def _await(executor: Any, result: Any) -> Any:
    return await result if executor.is_awaitable(result) else result


async def _execute_for_group(executor: Any, original: Any, serially: bool | None, group: _Group, base: Any):
    watch = Watch()
    executor.context_value = WatchedContext(executor.context_value, watch)
    outcome = "failed"
    try:
        result = await _await(executor, original(serially))
        if watch.dependent:
            outcome = "dependent"
            mark_own(base)
            stats["own"] += 1
        elif result.errors:
            stats["own"] += 1
        else:
            result = ExecutionResult(SharedData(result.data) if result.data is not None else None, None,
                                     result.extensions)
            group.result = result
            outcome = "shared"
            stats["shared"] += 1
        return result
    finally:
        group.done.set_result(outcome)
