"""Recording conversation events: a row of the timeline, and its broadcast after commit."""
from __future__ import annotations

from datetime import datetime, timezone

from models import Conversation, ConversationEvent, EventKind, User
from subscriptions.events import ConversationChanged

from .transaction import Action


async def record_event(act: Action, conversation: Conversation, kind: EventKind, *,
                       audience: tuple[int, ...], actor: User | None = None,
                       assignee: User | None = None, message_id: int | None = None) -> ConversationEvent:
    event = await ConversationEvent.create(
        company_id=conversation.company_id, conversation_id=conversation.id, kind=kind,
        actor_id=actor.id if actor else None, assignee_id=assignee.id if assignee else None,
        message_id=message_id, occurred_at=datetime.now(timezone.utc),
    )
    act.emit(ConversationChanged(
        company_id=conversation.company_id, channel_id=conversation.channel_id,
        conversation_id=conversation.id, audience=audience, event_id=event.id, kind=kind.value,
        actor_id=event.actor_id, assignee_id=event.assignee_id, message_id=message_id,
        occurred_at=event.occurred_at.isoformat(),
    ))
    return event
