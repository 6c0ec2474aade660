"""Resolvers of Query."""
from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

import models
from inbox import access, notifications, sections, validation
from inbox.errors import InboxError
from schema import crm as crm_types, notifications as notification_types, types
from schema.ids import parse_conversation_cursor, parse_global_id, pk_of


async def node(info: Info, id: strawberry.ID) -> Optional[types.Node]:
    viewer = info.context.viewer
    type_name, pk = parse_global_id(id)
    try:
        return await _visible_node(viewer, type_name, pk)
    except InboxError as error:
        if error.code == "NOT_FOUND":
            return None
        raise


async def _visible_node(viewer: models.User, type_name: str, pk: int):
    if type_name == "User":
        row = await models.User.get_or_none(id=pk, company_id=viewer.company_id)
        return types.User.of(row) if row else None
    if type_name == "Channel":
        return types.Channel.of(await access.visible_channel(viewer, pk))
    if type_name == "Conversation":
        return types.Conversation.of(await access.visible_conversation(viewer, pk))
    if type_name == "Contact":
        row = await models.Contact.get_or_none(id=pk, company_id=viewer.company_id)
        if row is None:
            return None
        await access.visible_channel(viewer, row.channel_id)
        return types.Contact.of(row)
    if type_name == "Message":
        row = await models.Message.get_or_none(id=pk, company_id=viewer.company_id)
        if row is None:
            return None
        await access.visible_conversation(viewer, row.conversation_id)
        return types.Message.of(row)
    if type_name == "ConversationEvent":
        row = await models.ConversationEvent.get_or_none(id=pk, company_id=viewer.company_id)
        if row is None:
            return None
        await access.visible_conversation(viewer, row.conversation_id)
        return types.ConversationEvent.of(row)
    if type_name in ("Person", "Lead", "Deal", "Note", "ConversationLink"):
        return await _visible_crm_node(viewer, type_name, pk)
    if type_name == "Notification":  # the viewer's own only
        row = await notifications.own_notification(viewer, pk)
        return notification_types.Notification.of(row, frozenset(await access.accessible_channel_ids(viewer)))
    return None


async def _visible_crm_node(viewer: models.User, type_name: str, pk: int):
    """The CRM is the company's: persons, leads, deals and notes are visible to all of its
    users; a link, like its conversation, only with access to the conversation's channel."""
    model = getattr(models, type_name)
    row = await model.get_or_none(id=pk, company_id=viewer.company_id)
    if row is None:
        return None
    if type_name == "ConversationLink":
        await access.visible_conversation(viewer, row.conversation_id)
    return getattr(crm_types, type_name).of(row)


def me(info: Info) -> types.User:
    return types.User.of(info.context.viewer)


async def users(info: Info) -> list[types.User]:
    rows = await (models.User.filter(company_id=info.context.viewer.company_id).order_by("name", "id")
                  .limit(validation.MAX_USERS))
    return [types.User.of(row) for row in rows]


async def assignable_users(info: Info, conversation_id: strawberry.ID) -> list[types.User]:
    rows = await sections.assignable_users(info.context.viewer, pk_of(conversation_id, "Conversation"))
    return [types.User.of(row) for row in rows]


async def channels(info: Info) -> list[types.Channel]:
    ids = await access.accessible_channel_ids(info.context.viewer)
    rows = await models.Channel.filter(id__in=ids).order_by("name", "id").limit(validation.MAX_CHANNELS)
    return [types.Channel.of(row) for row in rows]


async def inbox(info: Info, section: types.InboxSection, channel_id: Optional[strawberry.ID] = None,
                search: Optional[str] = None, first: Optional[int] = 25,
                after: Optional[str] = None) -> types.ConversationConnection:
    key = parse_conversation_cursor(after)
    page = await sections.section_page(
        info.context.viewer, sections.Section(section),
        channel_id=pk_of(channel_id, "Channel") if channel_id is not None else None,
        search=search, first=first, after=key)
    return types.conversation_connection(page, has_previous=key is not None)


async def inbox_counts(info: Info, channel_id: Optional[strawberry.ID] = None) -> types.InboxCounts:
    found = await sections.counts(info.context.viewer,
                                  pk_of(channel_id, "Channel") if channel_id is not None else None)
    return types.InboxCounts(**found)


async def conversation(info: Info, id: strawberry.ID) -> Optional[types.Conversation]:
    pk = pk_of_or_none(id, "Conversation")
    if pk is None:
        return None
    try:
        return types.Conversation.of(await access.visible_conversation(info.context.viewer, pk))
    except InboxError as error:
        if error.code == "NOT_FOUND":
            return None
        raise


def pk_of_or_none(value: str, type_name: str) -> int | None:
    """For lookups that answer null: a well-formed ID of another type is simply not found."""
    kind, pk = parse_global_id(value)
    return pk if kind == type_name else None
