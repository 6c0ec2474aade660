"""Inbound messages, shared by every messaging app's path: the first message of a
contact opens a conversation, a message into a CLOSED one reopens it, into a
deleted one restores it; one message per messaging-app message id."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import (Channel, Contact, Conversation, ConversationStatus, DeliveryStatus, EventKind, Message,
                    MessageDirection)
from subscriptions.events import MessageAdded

from . import notes, notifications, sql, validation
from .access import audience
from .conversations import erase_history
from .errors import BadInput
from .events import record_event
from .transaction import Action, action


@dataclass
class Inbound:
    external_message_id: str
    sender_external_id: str
    # None when the messaging app does not say (Messenger): a new contact is then
    # called `default_name` until its profile arrives.
    sender_name: str | None
    body: str
    sent_at: datetime | None = None
    avatar_url: str | None = None
    default_name: str = "Unknown contact"


async def lock_message_order(company_id: int) -> None:
    """Message ids are cursors: on PostgreSQL, a transaction-scoped lock per company
    makes ids commit in the order they are handed out, so a reader that saw id N
    has seen every id below it (SQLite runs one transaction at a time anyway)."""
    if sql.is_postgres():
        await sql.fetch("SELECT pg_advisory_xact_lock(?, ?)", 7_100, company_id)


async def committed_horizon(company_id: int) -> int:
    """An id H such that every message of the company up to H has committed and every
    later one will get an id above H: where a live stream that starts now takes over
    from what is already stored. On PostgreSQL, the lock of `lock_message_order` (shared,
    so readers do not wait for each other) waits for a message being written, then the
    largest id of the whole table is such an H: the next writer of the company takes
    the lock after us and a sequence value above every one handed out so far."""
    if not sql.is_postgres():
        return (await sql.fetch("SELECT COALESCE(MAX(id), 0) AS horizon FROM message"))[0]["horizon"]
    async with in_transaction():
        await sql.fetch("SELECT pg_advisory_xact_lock_shared(?, ?)", 7_100, company_id)
        return (await sql.fetch("SELECT COALESCE(MAX(id), 0) AS horizon FROM message"))[0]["horizon"]


async def _conversation_for(act: Action, channel: Channel, contact: Contact, members: tuple[int, ...],
                            conversation: Conversation | None) -> Conversation:
    if conversation is None:
        conversation = await Conversation.get_or_none(contact_id=contact.id)
    now = datetime.now(timezone.utc)
    if conversation is None:
        conversation = await Conversation.create(company_id=channel.company_id, channel_id=channel.id,
                                                 contact_id=contact.id, activity_at=now)
        await record_event(act, conversation, EventKind.CREATED, audience=members)
    elif conversation.deleted_at is not None:
        await erase_history(conversation)
        conversation.deleted_at = None
        conversation.status = ConversationStatus.OPEN
        conversation.assignee_id = None
        await conversation.save(update_fields=["deleted_at", "status", "assignee_id"])
        await record_event(act, conversation, EventKind.RESTORED, audience=members)
    elif conversation.status is ConversationStatus.CLOSED:
        conversation.status = ConversationStatus.OPEN
        await conversation.save(update_fields=["status"])
        await record_event(act, conversation, EventKind.REOPENED, audience=members)
    return conversation


async def receive(channel: Channel, inbound: Inbound) -> tuple[Message, bool]:
    """Stores an inbound message once; returns it and whether it is new."""
    external_id = validation.text(inbound.external_message_id, "externalMessageId")
    sender_id = validation.text(inbound.sender_external_id, "sender.externalId")
    name = validation.text(inbound.sender_name, "sender.name", required=inbound.sender_name is not None)
    body = validation.body(inbound.body)
    avatar = validation.text(inbound.avatar_url, "sender.avatarUrl", 2048, required=False)
    sent_at = inbound.sent_at or datetime.now(timezone.utc)
    if sent_at.tzinfo is None:
        raise BadInput("sentAt needs an explicit UTC offset")

    members = await audience(channel.id)
    try:
        async with action() as act:
            await lock_message_order(channel.company_id)
            # Checked under the lock only: a redelivery is rare, a new message is the hot path.
            existing = await Message.get_or_none(channel_id=channel.id, external_id=external_id)
            if existing is not None:
                return existing, False
            # The usual case, a known contact, in one query: its conversation with the contact.
            known = await (Conversation.filter(channel_id=channel.id, contact__external_id=sender_id)
                           .select_related("contact").first())
            contact = known.contact if known else await Contact.get_or_none(channel_id=channel.id,
                                                                            external_id=sender_id)
            if contact is None:
                contact = await Contact.create(channel_id=channel.id, external_id=sender_id,
                                               company_id=channel.company_id,
                                               name=name or inbound.default_name, avatar_url=avatar)
            elif (name and contact.name != name) or (avatar and contact.avatar_url != avatar):
                contact.name = name or contact.name
                contact.avatar_url = avatar or contact.avatar_url
                await contact.save(update_fields=["name", "avatar_url"])
            conversation = await _conversation_for(act, channel, contact, members, known)
            message = await Message.create(
                company_id=channel.company_id, channel_id=channel.id, conversation_id=conversation.id,
                direction=MessageDirection.INBOUND, body=body, sent_at=sent_at,
                status=DeliveryStatus.RECEIVED, external_id=external_id)
            conversation.last_message_id = message.id
            conversation.activity_at = datetime.now(timezone.utc)
            await conversation.save(update_fields=["last_message_id", "activity_at"])
            await notes.on_message(conversation, message)
            act.emit(MessageAdded(company_id=channel.company_id, channel_id=channel.id,
                                  conversation_id=conversation.id, audience=members, message_id=message.id))
            await record_event(act, conversation, EventKind.MESSAGE_ADDED, audience=members,
                               message_id=message.id)
            await notifications.on_inbound_message(act, conversation, message, members)
    except IntegrityError:
        # A concurrent delivery of the same message id won the race: it is stored once.
        existing = await Message.get_or_none(channel_id=channel.id, external_id=external_id)
        if existing is None:
            raise
        return existing, False
    return message, True
