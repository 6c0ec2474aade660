"""Inside broadcaster 0.3.1 (borrowed/__init__.py names the version): the hub
(subscriptions/hub.py) brings its own Redis backend and watches and closes a Broadcast
itself, for which broadcaster has no public API."""
from __future__ import annotations

import asyncio

from broadcaster import Broadcast

# The interface a backend implements, exported only from a private module: the hub's Redis
# backend waits for SUBSCRIBE confirmations and has a connect timeout (broadcaster's has neither).
from broadcaster._backends.base import BroadcastBackend

__all__ = ["BroadcastBackend", "backend", "listener"]


def backend(broadcast: Broadcast) -> BroadcastBackend:
    """The backend a Broadcast was made with (private): the hub closes it without
    `Broadcast.disconnect()`, which re-raises a dead listener's error before disconnecting."""
    return broadcast._backend


def listener(broadcast: Broadcast) -> asyncio.Task | None:
    """The task that moves the backend's events into a connected Broadcast (private): when it
    dies, the Broadcast's subscribers wait for ever and nothing else would notice."""
    return broadcast._listener_task if "_listener_task" in vars(broadcast) else None
