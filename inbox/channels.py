"""Messaging settings: installing, sharing, unsharing and uninstalling channels (admins only)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tortoise.transactions import in_transaction

from models import Channel, ChannelKind, ChannelMember, Contact, Conversation, EventKind, User

from . import apps, callbacks, installed, media, validation
from .access import audience, company_user, live_channels, require_admin
from .errors import BadInput, Forbidden, NotFound
from .events import record_event
from .tokens import CHANNEL_PREFIX, new_token, token_hash
from .transaction import action

log = logging.getLogger(__name__)

@dataclass
class Installed:
    channel: Channel
    channel_token: str | None


async def install(viewer: User, kind: ChannelKind, name: str, config: dict | None,
                  *, whatsapp_new_installs: bool = True, callback_allow_private: bool = False,
                  api: Any = None) -> Installed:
    """`callback_allow_private`: INBOX_CALLBACK_ALLOW_PRIVATE (inbox/callbacks.py). `api`:
    what the messaging app's install hook calls its API with (registering the channel's
    webhook, say); when the app refuses, the install is undone."""
    require_admin(viewer)
    name = validation.text(name, "name")
    app = apps.of(kind)
    config = app.check_config(config)
    if config.get("callbackUrl") is not None:
        await callbacks.check_at_install(config["callbackUrl"], allow_private=callback_allow_private)
    if kind is ChannelKind.WHATSAPP and not whatsapp_new_installs:
        has_whatsapp = await Channel.filter(company_id=viewer.company_id, kind=ChannelKind.WHATSAPP).exists()
        if not has_whatsapp:
            raise Forbidden("WhatsApp is closed to new customers")
    token = new_token(CHANNEL_PREFIX) if kind is ChannelKind.CUSTOM else None
    if token:
        # Kept, unlike user tokens: replies to the partner are signed with it (SPEC §3).
        config["channelToken"] = token
    async with in_transaction():
        channel = await Channel.create(company_id=viewer.company_id, kind=kind, name=name,
                                       installed_by_id=viewer.id, config=config,
                                       token_hash=token_hash(token) if token else None)
        await ChannelMember.create(channel_id=channel.id, user_id=viewer.id)
    try:
        await app.installed(api, channel)
    except BaseException:
        await channel.delete()
        raise
    return Installed(channel, token)


async def _admin_channel(viewer: User, channel_id: int) -> Channel:
    require_admin(viewer)
    channel = await live_channels(viewer.company_id).get_or_none(id=channel_id)
    if channel is None:
        raise NotFound("channel not found")
    return channel


async def share(viewer: User, channel_id: int, user_ids: list[int]) -> Channel:
    validation.ids(user_ids)
    channel = await _admin_channel(viewer, channel_id)
    users = [await company_user(viewer, user_id) for user_id in dict.fromkeys(user_ids)]
    async with in_transaction():
        for user in users:
            await ChannelMember.get_or_create(channel_id=channel.id, user_id=user.id)
    return channel


async def unshare(viewer: User, channel_id: int, user_ids: list[int]) -> Channel:
    validation.ids(user_ids)
    channel = await _admin_channel(viewer, channel_id)
    users = [await company_user(viewer, user_id) for user_id in dict.fromkeys(user_ids)]
    if any(user.id == channel.installed_by_id for user in users):
        raise BadInput("the installer always keeps access to the channel")
    await ChannelMember.filter(channel_id=channel.id, user_id__in=[u.id for u in users]).delete()
    return channel


async def uninstall(viewer: User, channel_id: int, *, api: Any = None) -> int:
    """Removes the channel and its conversations from the inbox; live clients get DELETED events."""
    channel = await _admin_channel(viewer, channel_id)
    members = await audience(channel.id)
    async with action(viewer.company_id) as act:
        conversations = await Conversation.filter(channel_id=channel.id, deleted_at__isnull=True)
        for conversation in conversations:
            await record_event(act, conversation, EventKind.DELETED, actor=viewer, audience=members)
        await Contact.filter(channel_id=channel.id).delete()  # cascades to conversations and messages
        await media.erase_channel(channel.id)
        channel.uninstalled_at = datetime.now(timezone.utc)
        channel.token_hash = None
        await channel.save(update_fields=["uninstalled_at", "token_hash"])
    installed.forget(channel.id)
    try:
        await apps.of(channel.kind).uninstalled(api, channel)
    except Exception as error:  # the channel is gone from the inbox either way
        log.warning("uninstall hook of channel %s failed: %s", channel.id, type(error).__name__)
    return channel.id
