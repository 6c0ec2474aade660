"""Actions on a conversation (SPEC §2): assign, unassign, close, reopen, delete, mark read."""
from __future__ import annotations

from datetime import datetime, timezone

from models import (Channel, Conversation, ConversationEvent, ConversationLink, ConversationStatus, EventKind,
                    Message, Notification, NotificationEmail, ReadState, User)

from . import media, notes, notifications
from .access import audience, company_user, has_access, visible_conversation
from .errors import Forbidden, UserUnavailable
from .events import record_event
from .transaction import action


async def assign(viewer: User, conversation_id: int, user_id: int) -> Conversation:
    await visible_conversation(viewer, conversation_id)
    assignee = await company_user(viewer, user_id)
    async with action(viewer.company_id) as act:
        # Row-locked on PostgreSQL (SQLite serialises transactions): two assignments
        # at the same instant run one after the other, each with its own event.
        conversation = await visible_conversation(viewer, conversation_id, for_update=True)
        if not await has_access(assignee, conversation.channel_id):
            raise Forbidden("only users with access to the channel can be assignees")
        await assignee.refresh_from_db(fields=["available"])
        if not assignee.available:
            raise UserUnavailable(f"{assignee.name} is unavailable")
        previous_assignee_id = conversation.assignee_id
        conversation.assignee_id = assignee.id
        await conversation.save(update_fields=["assignee_id"])
        await notes.on_assignment(conversation)
        await record_event(act, conversation, EventKind.ASSIGNED, actor=viewer, assignee=assignee,
                           audience=await audience(conversation.channel_id))
        await notifications.on_assignment(act, conversation, viewer, assignee, previous_assignee_id)
    return conversation


async def unassign(viewer: User, conversation_id: int) -> Conversation:
    async with action(viewer.company_id) as act:
        conversation = await visible_conversation(viewer, conversation_id, for_update=True)
        if conversation.assignee_id is not None:
            conversation.assignee_id = None
            await conversation.save(update_fields=["assignee_id"])
            await notes.on_assignment(conversation)
            await record_event(act, conversation, EventKind.UNASSIGNED, actor=viewer,
                               audience=await audience(conversation.channel_id))
    return conversation


async def _set_status(viewer: User, conversation_id: int, status: ConversationStatus,
                      kind: EventKind) -> Conversation:
    async with action(viewer.company_id) as act:
        conversation = await visible_conversation(viewer, conversation_id, for_update=True)
        if conversation.status is not status:
            conversation.status = status
            await conversation.save(update_fields=["status"])
            await record_event(act, conversation, kind, actor=viewer,
                               audience=await audience(conversation.channel_id))
    return conversation


async def close(viewer: User, conversation_id: int) -> Conversation:
    """Closed conversations keep their assignee."""
    return await _set_status(viewer, conversation_id, ConversationStatus.CLOSED, EventKind.CLOSED)


async def reopen(viewer: User, conversation_id: int) -> Conversation:
    return await _set_status(viewer, conversation_id, ConversationStatus.OPEN, EventKind.REOPENED)


async def erase_history(conversation_id: int) -> None:
    """What delete erases for good: messages, events, read state, links, and the
    notifications about them with their unsent emails (notes in the CRM stay)."""
    await Notification.filter(conversation_id=conversation_id).delete()
    await NotificationEmail.filter(conversation_id=conversation_id).delete()
    await ConversationLink.filter(conversation_id=conversation_id).delete()
    await Message.filter(conversation_id=conversation_id).delete()
    await ConversationEvent.filter(conversation_id=conversation_id).delete()
    await ReadState.filter(conversation_id=conversation_id).delete()
    await media.erase_conversation(conversation_id)


async def delete(viewer: User, conversation_id: int) -> int:
    await visible_conversation(viewer, conversation_id)
    async with action(viewer.company_id) as act:
        conversation = await visible_conversation(viewer, conversation_id, for_update=True)
        channel = await Channel.get(id=conversation.channel_id)
        if channel.installed_by_id != viewer.id:
            raise Forbidden("only the channel's installer may delete its conversations")
        await erase_history(conversation.id)
        conversation.deleted_at = datetime.now(timezone.utc)
        conversation.last_message_id = None
        await conversation.save(update_fields=["deleted_at", "last_message_id"])
        await record_event(act, conversation, EventKind.DELETED, actor=viewer,
                           audience=await audience(conversation.channel_id))
    return conversation.id


async def mark_read(viewer: User, conversation_id: int) -> Conversation:
    async with action(viewer.company_id) as act:
        conversation = await visible_conversation(viewer, conversation_id)
        latest = conversation.last_message_id or 0
        state, _ = await ReadState.get_or_create(user_id=viewer.id, conversation_id=conversation.id)
        if state.last_read_message_id < latest:
            state.last_read_message_id = latest
            await state.save(update_fields=["last_read_message_id"])
            await record_event(act, conversation, EventKind.READ, actor=viewer,
                               audience=await audience(conversation.channel_id))
    return conversation
