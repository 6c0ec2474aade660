"""Recording conversation events: a row of the timeline, and its broadcast after commit."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from models import Conversation, ConversationEvent, EventKind, User
from subscriptions.events import ConversationChanged

from . import sql
from .transaction import Action


async def record_event(act: Action, conversation: Conversation, kind: EventKind, *,
                       audience: tuple[int, ...], actor: User | None = None,
                       assignee: User | None = None, message_id: int | None = None) -> ConversationEvent:
    event = await ConversationEvent.create(
        company_id=conversation.company_id, conversation_id=conversation.id, kind=kind,
        actor_id=actor.id if actor else None, assignee_id=assignee.id if assignee else None,
        message_id=message_id, occurred_at=datetime.now(timezone.utc),
    )
    act.emit(_broadcast(conversation.company_id, conversation.channel_id, conversation.id, audience, event.id,
                        kind, event.occurred_at, actor_id=event.actor_id, assignee_id=event.assignee_id,
                        message_id=message_id))
    return event


@dataclass(frozen=True)
class NewEvent:
    """An event with no actor (the contact wrote), for `record_events`."""

    company_id: int
    channel_id: int
    conversation_id: int
    kind: EventKind
    audience: tuple[int, ...]
    message_id: int | None = None


async def record_events(events: list[NewEvent], occurred_at: datetime) -> list[ConversationChanged]:
    """Records the events in one statement, with ids in this order (so the timeline's order);
    returns their broadcasts in the same order, for the caller to emit among its others."""
    rows = await sql.insert(
        "conversation_event", ("company_id", "conversation_id", "kind", "message_id", "occurred_at"),
        [(e.company_id, e.conversation_id, e.kind.value, e.message_id, occurred_at) for e in events],
        returning="id, conversation_id, kind, message_id")
    # A conversation has at most one event of a kind per message (or per batch, without one).
    ids = {(row["conversation_id"], row["kind"], row["message_id"]): row["id"] for row in rows}
    return [_broadcast(e.company_id, e.channel_id, e.conversation_id, e.audience,
                       ids[(e.conversation_id, e.kind.value, e.message_id)], e.kind, occurred_at,
                       message_id=e.message_id) for e in events]


def _broadcast(company_id: int, channel_id: int, conversation_id: int, audience: tuple[int, ...], event_id: int,
               kind: EventKind, occurred_at: datetime, *, actor_id: int | None = None,
               assignee_id: int | None = None, message_id: int | None = None) -> ConversationChanged:
    return ConversationChanged(
        company_id=company_id, channel_id=channel_id, conversation_id=conversation_id, audience=audience,
        event_id=event_id, kind=kind.value, actor_id=actor_id, assignee_id=assignee_id, message_id=message_id,
        occurred_at=occurred_at.isoformat(),
    )
