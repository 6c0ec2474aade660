"""The GraphQL types of notifications: a user's desktop notifications, and their
desktop and email toggles with the inputs that change them."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import strawberry
from strawberry.types import Info

import models
from inbox.notifications import Toggles

from .ids import global_id, notification_cursor
from .types import Conversation, Message, Node, PageInfo, User, _user

NotificationKind = strawberry.enum(models.NotificationKind, name="NotificationKind")


@strawberry.type
class Notification(Node):
    kind: NotificationKind
    created_at: datetime
    read_at: Optional[datetime]
    row: strawberry.Private[models.Notification]
    # Channels the viewer has access to now: a notification of a channel they lost keeps
    # its kind and time, but no longer shows the conversation or the message.
    accessible: strawberry.Private[frozenset[int]]

    @classmethod
    def of(cls, row: models.Notification, accessible: frozenset[int]) -> "Notification":
        return cls(id=global_id("Notification", row.id), kind=row.kind, created_at=row.created_at,
                   read_at=row.read_at, row=row, accessible=accessible)

    async def _conversation(self, info: Info) -> models.Conversation | None:
        row = await info.context.loaders.conversation.load(self.row.conversation_id)
        if row is None or row.deleted_at is not None or row.channel_id not in self.accessible:
            return None
        return row

    @strawberry.field(description="Usable as `after` in `notificationReceived` (and `notifications`).")
    def cursor(self) -> str:
        return notification_cursor(self.row.id)

    @strawberry.field
    async def conversation(self, info: Info) -> Optional[Conversation]:
        row = await self._conversation(info)
        return Conversation.of(row) if row else None

    @strawberry.field
    async def message(self, info: Info) -> Optional[Message]:
        if self.row.message_id is None or await self._conversation(info) is None:
            return None
        row = await info.context.loaders.message.load(self.row.message_id)
        return Message.of(row) if row else None

    @strawberry.field(description="Who caused it (the assigning user), where a user did.")
    async def actor(self, info: Info) -> Optional[User]:
        return await _user(info, self.row.actor_id)


@strawberry.type
class NotificationEdge:
    cursor: str
    node: Notification


@strawberry.type
class NotificationConnection:
    edges: list[NotificationEdge]
    page_info: PageInfo


def notification_connection(rows: list[models.Notification], accessible: frozenset[int], has_next: bool,
                            has_previous: bool) -> NotificationConnection:
    edges = [NotificationEdge(cursor=notification_cursor(row.id), node=Notification.of(row, accessible))
             for row in rows]
    return NotificationConnection(edges=edges, page_info=PageInfo.of(edges, has_next, has_previous))


@strawberry.type
class NotificationToggles:
    new_message_assigned_to_me: bool
    new_message_assigned_to_others: bool
    new_message_unassigned: bool
    conversation_assigned_to_me: bool


@strawberry.type
class NotificationSettings:
    desktop: NotificationToggles
    email: NotificationToggles

    @classmethod
    def of(cls, toggles: dict[models.NotificationKind, Toggles]) -> "NotificationSettings":
        return cls(desktop=NotificationToggles(**{kind.value.lower(): t.desktop for kind, t in toggles.items()}),
                   email=NotificationToggles(**{kind.value.lower(): t.email for kind, t in toggles.items()}))


@strawberry.input
class NotificationTogglesInput:
    new_message_assigned_to_me: Optional[bool] = None
    new_message_assigned_to_others: Optional[bool] = None
    new_message_unassigned: Optional[bool] = None
    conversation_assigned_to_me: Optional[bool] = None

    def changes(self) -> dict[models.NotificationKind, bool | None]:
        """The toggles to change, by kind (None: leave it as it is)."""
        return {kind: getattr(self, kind.value.lower()) for kind in models.NotificationKind}


@strawberry.input
class NotificationSettingsInput:
    desktop: Optional[NotificationTogglesInput] = None
    email: Optional[NotificationTogglesInput] = None
