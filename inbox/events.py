"""The inbox's events, one typed definition each: what every action publishes after
its commit (serialised in one place, so that publishers and subscribers cannot drift),
how each type is delivered live and resumed, and the recording of a conversation's
timeline rows with their events."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar

from borrowed.tortoise import row_instance
from models import Conversation, ConversationEvent, DeliveryStatus, EventKind, Message, MessageDirection, User

from . import sql

if TYPE_CHECKING:
    from .transaction import Action


def company_topic(company_id: int) -> str:
    """Every event of a company travels on one topic; subscribers filter per viewer."""
    return f"inbox.company.{company_id}"


@dataclass(frozen=True)
class _Event:
    type: ClassVar[str]
    # How it reaches a live subscription: "direct" (the topic's engine, subscriptions/
    # direct.py) or "generator" (the subscription's own generator: rare, per user).
    delivery: ClassVar[str]
    # The stream whose positions it resumes from (inbox/replay.py).
    stream: ClassVar[str]
    company_id: int
    channel_id: int
    conversation_id: int
    # Members of the channel when the event happened; admins see every channel.
    audience: tuple[int, ...]

    def may_see(self, user_id: int, is_admin: bool) -> bool:
        return is_admin or user_id in self.audience

    def to_payload(self) -> dict:
        # Every field is a number, a string or the audience: a shallow copy (asdict's deep
        # copy is most of the cost of an event that inbound messages publish a dozen of).
        return {**self.__dict__, "audience": list(self.audience), "type": self.type}


@dataclass(frozen=True)
class MessageAdded(_Event):
    type: ClassVar[str] = "message_added"
    delivery: ClassVar[str] = "direct"
    stream: ClassVar[str] = "message"
    message_id: int
    # The message as its writer committed it (`message_columns`), and the company's
    # position below which its writer knew every message of the company: when nothing of
    # the company lies in (follows, message_id) but this message, a subscriber that has
    # every message up to `follows` takes it from here instead of reading it back
    # (subscriptions/message_order.py). None: not known, read it.
    message: dict | None = None
    follows: int | None = None

    @property
    def position(self) -> int:
        return self.message_id


def message_columns(message: Message) -> dict:
    """A new message's row as an event carries it (JSON)."""
    return {"id": message.id, "company_id": message.company_id, "channel_id": message.channel_id,
            "conversation_id": message.conversation_id, "direction": message.direction.value, "body": message.body,
            "sent_at": message.sent_at.isoformat(), "status": message.status.value, "author_id": message.author_id,
            "external_id": message.external_id, "client_message_id": message.client_message_id,
            "failure_reason": message.failure_reason, "created_at": message.created_at.isoformat(),
            "update_seq": message.update_seq, "attachments": message.attachments}


def message_of(columns: dict) -> Message:
    """The message of `message_columns`, as a read of its row would build it."""
    return row_instance(Message, **{
        **columns, "direction": MessageDirection(columns["direction"]), "status": DeliveryStatus(columns["status"]),
        "sent_at": datetime.fromisoformat(columns["sent_at"]),
        "created_at": datetime.fromisoformat(columns["created_at"])})


@dataclass(frozen=True)
class MessageUpdated(_Event):
    type: ClassVar[str] = "message_updated"
    delivery: ClassVar[str] = "direct"
    stream: ClassVar[str] = "update"
    message_id: int
    # The change's position in the company's messageUpdated stream (inbox/replay.py).
    position: int


@dataclass(frozen=True)
class ConversationChanged(_Event):
    """A conversation event, whole: a DELETED conversation's rows are gone when it arrives."""

    type: ClassVar[str] = "conversation_changed"
    delivery: ClassVar[str] = "direct"
    stream: ClassVar[str] = "event"
    event_id: int
    kind: str
    actor_id: int | None
    assignee_id: int | None
    message_id: int | None
    occurred_at: str

    @property
    def position(self) -> int:
        return self.event_id


@dataclass(frozen=True)
class NotificationReceived(_Event):
    """A desktop notification of one user: only that user sees it, admin or not."""

    type: ClassVar[str] = "notification_received"
    delivery: ClassVar[str] = "generator"
    stream: ClassVar[str] = "notification"
    notification_id: int
    user_id: int

    @property
    def position(self) -> int:
        return self.notification_id

    def may_see(self, user_id: int, is_admin: bool) -> bool:
        return user_id == self.user_id


CATALOGUE: dict[str, type[_Event]] = {
    cls.type: cls for cls in (MessageAdded, MessageUpdated, ConversationChanged, NotificationReceived)
}


def decode(payload: dict) -> _Event | None:
    cls = CATALOGUE.get(payload.get("type"))
    if cls is None:
        return None
    # A field with a default may be missing from what an older process published.
    values = {f.name: payload[f.name] if f.name in payload or f.default is MISSING else f.default
              for f in fields(cls)}
    values["audience"] = tuple(values["audience"])
    return cls(**values)


def decoded(payload: dict) -> _Event | None:
    """The payload's event, decoded once per process: the hub hands the same payload to
    every local subscriber."""
    event = payload.get("_event")
    if event is None:
        event = payload["_event"] = decode(payload)
    return event


# -- the timeline ----------------------------------------------------------------------

async def record_event(act: "Action", conversation: Conversation, kind: EventKind, *,
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
