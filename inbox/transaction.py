"""One transaction per action, and its events published only after it commits."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from tortoise.transactions import in_transaction

from subscriptions.publish import publish


class Action:
    """Collects the events of one action while its transaction runs."""

    def __init__(self) -> None:
        self.events: list = []

    def emit(self, event) -> None:
        self.events.append(event)


@asynccontextmanager
async def action() -> AsyncIterator[Action]:
    act = Action()
    async with in_transaction():
        yield act
    # Outside the block: committed. Never publish what may still roll back.
    await publish(act.events)
