"""Resolvers of Mutation."""
from __future__ import annotations

from typing import Optional

import strawberry
from strawberry.types import Info

import models
from channels import provider, providers
from inbox import accounts, apps, channels, conversations, messages, sections, sending
from inbox import attachments as attachment_rules
from inbox.errors import BadInput, NotFound
from schema import types
from schema.ids import global_id, pk_of
from schema.inputs import AttachmentInput, CreateUserInput, InstallChannelInput, ReceiveMessageInput, TemplateInput


def _conversation_pk(value: str) -> int:
    return pk_of(value, "Conversation")


async def assign_conversation(info: Info, conversation_id: strawberry.ID,
                              user_id: strawberry.ID) -> types.Conversation:
    row = await conversations.assign(info.context.viewer, _conversation_pk(conversation_id), pk_of(user_id, "User"))
    return types.Conversation.of(row)


async def unassign_conversation(info: Info, conversation_id: strawberry.ID) -> types.Conversation:
    return types.Conversation.of(await conversations.unassign(info.context.viewer, _conversation_pk(conversation_id)))


async def close_conversation(info: Info, conversation_id: strawberry.ID) -> types.Conversation:
    return types.Conversation.of(await conversations.close(info.context.viewer, _conversation_pk(conversation_id)))


async def reopen_conversation(info: Info, conversation_id: strawberry.ID) -> types.Conversation:
    return types.Conversation.of(await conversations.reopen(info.context.viewer, _conversation_pk(conversation_id)))


async def delete_conversation(info: Info, conversation_id: strawberry.ID) -> strawberry.ID:
    pk = await conversations.delete(info.context.viewer, _conversation_pk(conversation_id))
    return strawberry.ID(global_id("Conversation", pk))


async def mark_conversation_read(info: Info, conversation_id: strawberry.ID) -> types.Conversation:
    row = await conversations.mark_read(info.context.viewer, _conversation_pk(conversation_id))
    return types.Conversation.of(row)


async def set_availability(info: Info, available: bool) -> types.User:
    return types.User.of(await accounts.set_availability(info.context.viewer, available))


async def create_user(info: Info, input: CreateUserInput) -> types.CreateUserPayload:
    user, token = await accounts.create_user(info.context.viewer, input.name, input.email, bool(input.is_admin))
    return types.CreateUserPayload(user=types.User.of(user), api_token=token)


def _provider_config(input: InstallChannelInput) -> dict | None:
    kind = models.ChannelKind(input.kind)
    given = {app.kind: getattr(input, app.input_field, None) for app in providers()}
    # A config for another kind is a client's mistake (wrong kind or wrong form), not something to ignore.
    if any(other is not kind and config is not None for other, config in given.items()):
        raise BadInput(f"a {kind.value} channel takes only the {kind.value.lower()} settings")
    return provider(kind).config_of(given.get(kind))


async def install_channel(info: Info, input: InstallChannelInput) -> types.InstallChannelPayload:
    kind = models.ChannelKind(input.kind)
    installed = await channels.install(info.context.viewer, kind, input.name, _provider_config(input),
                                       whatsapp_new_installs=info.context.settings.whatsapp_new_installs,
                                       callback_allow_private=info.context.settings.callback_allow_private,
                                       api=info.context.providers)
    channel = types.Channel.of(installed.channel)
    path = provider(kind).webhook_path
    return types.InstallChannelPayload(channel=channel, webhook_path=path.format(channel.id) if path else None,
                                       channel_token=installed.channel_token)


def _user_pks(user_ids: list[strawberry.ID]) -> list[int]:
    return [pk_of(user_id, "User") for user_id in user_ids]


async def share_channel(info: Info, channel_id: strawberry.ID, user_ids: list[strawberry.ID]) -> types.Channel:
    row = await channels.share(info.context.viewer, pk_of(channel_id, "Channel"), _user_pks(user_ids))
    return types.Channel.of(row)


async def unshare_channel(info: Info, channel_id: strawberry.ID, user_ids: list[strawberry.ID]) -> types.Channel:
    row = await channels.unshare(info.context.viewer, pk_of(channel_id, "Channel"), _user_pks(user_ids))
    return types.Channel.of(row)


async def uninstall_channel(info: Info, channel_id: strawberry.ID) -> strawberry.ID:
    pk = await channels.uninstall(info.context.viewer, pk_of(channel_id, "Channel"), api=info.context.providers)
    return strawberry.ID(global_id("Channel", pk))


def _given(attachments: Optional[list[AttachmentInput]]) -> list[attachment_rules.Given] | None:
    if attachments is None:
        return None
    return [attachment_rules.Given(item.kind.value if hasattr(item.kind, "value") else item.kind, item.url, item.name)
            for item in attachments]


async def send_message(info: Info, conversation_id: strawberry.ID, body: Optional[str] = None,
                       client_message_id: Optional[str] = None,
                       attachments: Optional[list[AttachmentInput]] = None,
                       template: Optional[TemplateInput] = None) -> types.Message:
    wanted = apps.Template(template.content_sid, tuple(template.variables or ())) if template else None
    message = await sending.send_message(info.context.viewer, _conversation_pk(conversation_id), body,
                                         client_message_id, on_queued=info.context.wake_sender,
                                         attachments=_given(attachments), template=wanted, api=info.context.providers)
    return types.Message.of(message)


async def update_channel_message_status(info: Info, external_message_id: str, status: types.DeliveryStatus,
                                        failure_reason: Optional[str] = None) -> types.Message:
    channel = info.context.channel
    status = models.DeliveryStatus(status)
    if status in (models.DeliveryStatus.PENDING, models.DeliveryStatus.RECEIVED):
        raise BadInput("a partner reports SENT, DELIVERED, READ or FAILED")
    message = await sending.update_status_by_external_id(channel, external_message_id, status, failure_reason)
    if message is None:
        raise NotFound("no message with this externalMessageId on this channel")
    return types.Message.of(message)


async def receive_channel_message(info: Info, input: ReceiveMessageInput) -> types.Message:
    channel = info.context.channel
    received, = await messages.receive_all([(channel, messages.Inbound(
        external_message_id=input.external_message_id, sender_external_id=input.sender.external_id,
        sender_name=input.sender.name, avatar_url=input.sender.avatar_url, body=input.body,
        sent_at=input.sent_at, attachments=attachment_rules.checked(_given(input.attachments))))])
    # Answered from what the batch wrote and read: no statement after its commit.
    sender = (sections.sender_name(received.message, received.contact_name, None)
              if received.contact_name is not None else None)
    return types.Message.of(received.message, sender, received.conversation)


__all__ = ["Optional"]
