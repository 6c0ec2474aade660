"""Subscription fan-out: one execution per event for every subscriber that would get
the same bytes, rather than one per subscriber (issue 7). The engine of
subscriptions/direct.py applies these rules.

For one event, every local subscriber's stream turns the event into the same root
objects (`shared_root`, cached on the hub's payload, which every local subscriber
shares). Subscriptions with the same operation and variables (`group_key`) then share
one execution per root.

Which scope a result may be shared in is learnt while it executes: the first execution
runs with a context that forwards everything but notes any read of per-connection
state (the viewer, the principal, the request, the viewer's unread counts...). One
that read none of it depends only on the event, the document and the variables: every
subscriber the per-viewer event filter let through (resolvers/subscriptions.py `_subscribe`, run before,
unchanged) gets it. One that read any of it was computed for its own viewer: it goes to
that subscriber only, and every other subscriber executes its own, and skips the shared
attempt from then on (`mark_own`). Results with errors are never shared."""
from __future__ import annotations

import json
from typing import Any, Callable

# Attribute of a subscription executor once its executions proved viewer-dependent.
_OWN = "_fanout_own"

# What a shared execution may read of the context without depending on the viewer.
_NEUTRAL_CONTEXT = frozenset({"settings"})
# schema/context.py Loaders: by id, no cache, the same rows whoever asks. `unread` is the
# viewer's read state; any loader not listed here counts as viewer-dependent.
_NEUTRAL_LOADERS = frozenset({"user", "channel", "contact", "conversation", "message", "person", "lead", "deal"})

stats = {"shared": 0, "reused": 0, "own": 0}
"""Executions by kind, for tests and benchmarks: `shared` ran for a group, `reused`
took a group's result, `own` ran for one subscriber only."""


def shared_root(payload: dict, key: tuple, make: Callable[[], Any]) -> Any:
    """The root object of `key` for this event, the same for every local subscriber
    (the hub hands them all the same payload dict)."""
    roots = payload.get("_roots")
    if roots is None:
        roots = payload["_roots"] = {}
    root = roots.get(key)
    if root is None:
        root = roots[key] = make()
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


def _variables_key(variables: Any) -> str | None:
    """None when the coerced values are not plain JSON: such a subscription does not share."""
    variables = getattr(variables, "coerced", variables)  # graphql-core 3.3's VariableValues
    if not variables:
        return ""
    try:
        return json.dumps(variables, sort_keys=True)
    except (TypeError, ValueError):
        return None


def group_key(executor: Any) -> tuple | None:
    """The key of the group a subscription's executions may share: its operation and
    variables, the same for each event; None when it cannot share (variables that are
    not plain JSON)."""
    variables = _variables_key(executor.variable_values)
    return None if variables is None else (id(executor.operation), variables)


def is_own(executor: Any) -> bool:
    return getattr(executor, _OWN, False)


def mark_own(executor: Any) -> None:
    """Its executions proved viewer-dependent: the same document will be again."""
    setattr(executor, _OWN, True)
