"""One transaction per action, and its events published only after it commits."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from tortoise.transactions import in_transaction

from subscriptions.publish import publish


class Action:
    """Collects the events of one action while its transaction runs."""

    def __init__(self) -> None:
        self.events: list = []
        self.committed: list[Callable[[], None]] = []

    def emit(self, event) -> None:
        self.events.append(event)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Runs `callback` once the transaction has committed (after its events)."""
        self.committed.append(callback)


@asynccontextmanager
async def action() -> AsyncIterator[Action]:
    act = Action()
    async with in_transaction():
        yield act
    # Outside the block: committed. Never publish what may still roll back.
    await publish(act.events)
    for callback in act.committed:
        callback()
