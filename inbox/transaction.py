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
async def action(company_id: int | None = None) -> AsyncIterator[Action]:
    """`company_id`: the action records events, notifications or message changes of that
    company, whose positions must commit in order (inbox/replay.py): its order lock is
    taken first, before any row lock, so that two actions never wait for each other
    in opposite orders."""
    from .replay import lock_company_order

    act = Action()
    async with in_transaction():
        if company_id is not None:
            await lock_company_order(company_id)
        yield act
    # Outside the block: committed. Never publish what may still roll back.
    await committed(act)


async def committed(act: Action) -> None:
    """What an action does once its transaction has committed: publishes its events, then
    runs its callbacks."""
    await publish(act.events)
    for callback in act.committed:
        callback()
