"""A partner's own messaging app (CUSTOM): messages come in through the GraphQL API
with the channel's token (receiveChannelMessage), and replies go to the partner's
callbackUrl as signed JSON."""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Optional
from urllib.parse import urlparse

import strawberry

from inbox import apps
from inbox.errors import BadInput
from models import ChannelKind

from . import Provider
from .outbound import check, field, send_parts


@strawberry.input
class CustomConfigInput:
    callback_url: Optional[str] = strawberry.field(
        default=None,
        description="Where the server POSTs outbound messages for the partner to deliver; without it the "
                    "channel only receives.")


class Custom(Provider):
    kind = ChannelKind.CUSTOM
    input_field = "custom"
    config_input = CustomConfigInput
    config_required = False

    def check_config(self, config: dict | None) -> dict:
        config = {key: value for key, value in super().check_config(config).items() if value is not None}
        callback = config.get("callbackUrl")
        if callback is not None:
            parsed = urlparse(callback)
            if parsed.scheme not in ("http", "https") or not parsed.netloc or len(callback) > 2048:
                raise BadInput("callbackUrl must be an http(s) URL")
        return config

    def can_reply(self, channel) -> None:
        if not (channel.config or {}).get("callbackUrl"):
            raise BadInput("this channel has no callbackUrl: it only receives messages")

    async def deliver(self, api, out) -> str | None:
        from schema.ids import global_id  # not at import: the schema is built from the apps of this package

        config = out.channel.config
        payload = {
            "messageId": global_id("Message", out.message.id),
            "conversationId": global_id("Conversation", out.message.conversation_id),
            "recipient": {"externalId": out.contact.external_id},
            "body": out.message.body,
            "sentAt": out.message.sent_at.isoformat(),
        }
        if out.message.attachments:
            payload["attachments"] = [{"kind": a["kind"], "url": a["url"], "name": a.get("name")}
                                      for a in out.message.attachments]
        body = json.dumps(payload).encode()
        signature = hmac.new(config["channelToken"].encode(), body, hashlib.sha256).hexdigest()

        async def send() -> str | None:
            answer = await api.post(config["callbackUrl"], content=body, headers={
                "Content-Type": "application/json", "X-Inbox-Signature": f"sha256={signature}"})
            check(answer)
            return field(answer, "externalMessageId")

        return await send_parts(out, [send])


APP = apps.register(Custom())
