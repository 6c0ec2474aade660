"""Contacts' names and avatars as the messaging apps report them after the fact
(Messenger's profile arrives after the message it belongs to)."""
from __future__ import annotations

from models import Channel, Contact, Conversation, DeliveryStatus, Message, MessageDirection
from subscriptions.events import MessageUpdated
from subscriptions.publish import publish

from .access import audience
from .validation import MAX_NAME

# Live clients refresh the `senderName` of the messages they show; the latest ones
# are enough for a conversation that is on screen.
REFRESHED_MESSAGES = 20


async def apply_profile(channel: Channel, external_id: str, name: str | None, avatar_url: str | None) -> bool:
    """Renames the contact and sets its avatar; publishes `messageUpdated` for its
    latest inbound messages, whose `senderName` changed. Returns whether it changed."""
    name = (name or "").strip()[:MAX_NAME] or None
    avatar_url = avatar_url if avatar_url and len(avatar_url) <= 2048 else None
    contact = await Contact.get_or_none(channel_id=channel.id, external_id=external_id)
    if contact is None:
        return False
    fields = {}
    if name and contact.name != name:
        fields["name"] = name
    if avatar_url and contact.avatar_url != avatar_url:
        fields["avatar_url"] = avatar_url
    if not fields:
        return False
    await Contact.filter(id=contact.id).update(**fields)
    conversation = await Conversation.get_or_none(contact_id=contact.id, deleted_at__isnull=True)
    if conversation is None:
        return True
    message_ids = await (Message.filter(conversation_id=conversation.id, direction=MessageDirection.INBOUND,
                                        status=DeliveryStatus.RECEIVED)
                         .order_by("-id").limit(REFRESHED_MESSAGES).values_list("id", flat=True))
    members = await audience(channel.id)
    await publish([MessageUpdated(company_id=channel.company_id, channel_id=channel.id,
                                  conversation_id=conversation.id, audience=members, message_id=message_id)
                   for message_id in sorted(message_ids)])
    return True
