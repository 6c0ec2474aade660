"""Resolvers of notifications: the viewer's settings, list and read state."""
from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

from inbox import access, notifications
from schema.ids import parse_notification_cursor, pk_of
from schema.notifications import (NotificationConnection, NotificationSettings, NotificationSettingsInput,
                                  notification_connection)


async def notification_settings(info: Info) -> NotificationSettings:
    return NotificationSettings.of(await notifications.settings_of(info.context.viewer))


async def notifications_page(info: Info, unread_only: Optional[bool] = False, first: Optional[int] = 25,
                             after: Optional[str] = None) -> NotificationConnection:
    viewer = info.context.viewer
    after_pk = parse_notification_cursor(after)
    rows, has_next = await notifications.notifications_page(viewer, unread_only=bool(unread_only), first=first,
                                                            after=after_pk)
    accessible = frozenset(await access.accessible_channel_ids(viewer))
    return notification_connection(rows, accessible, has_next, has_previous=after_pk is not None)


async def update_notification_settings(info: Info, input: NotificationSettingsInput) -> NotificationSettings:
    toggles = await notifications.update_settings(
        info.context.viewer, desktop=input.desktop.changes() if input.desktop else {},
        email=input.email.changes() if input.email else {})
    return NotificationSettings.of(toggles)


async def mark_notifications_read(info: Info, ids: Optional[list[strawberry.ID]] = None) -> int:
    pks = [pk_of(value, "Notification") for value in ids] if ids is not None else None
    return await notifications.mark_read(info.context.viewer, pks)
