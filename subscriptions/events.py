"""The catalogue of events that cross the broadcast backend: one typed definition
each, serialised in one place so that publishers and subscribers cannot drift."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar


def company_topic(company_id: int) -> str:
    """Every event of a company travels on one topic; subscribers filter per viewer."""
    return f"inbox.company.{company_id}"


@dataclass(frozen=True)
class _Event:
    type: ClassVar[str]
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
    message_id: int

    @property
    def position(self) -> int:
        return self.message_id


@dataclass(frozen=True)
class MessageUpdated(_Event):
    type: ClassVar[str] = "message_updated"
    message_id: int
    # The change's position in the company's messageUpdated stream (inbox/replay.py).
    position: int


@dataclass(frozen=True)
class ConversationChanged(_Event):
    """A conversation event, whole: a DELETED conversation's rows are gone when it arrives."""

    type: ClassVar[str] = "conversation_changed"
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
    values = {f.name: payload[f.name] for f in fields(cls)}
    values["audience"] = tuple(values["audience"])
    return cls(**values)


def decoded(payload: dict) -> _Event | None:
    """The payload's event, decoded once per process: the hub hands the same payload to
    every local subscriber."""
    event = payload.get("_event")
    if event is None:
        event = payload["_event"] = decode(payload)
    return event
