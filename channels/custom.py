"""A partner's own messaging app (CUSTOM): messages come in through the GraphQL API
with the channel's token (receiveChannelMessage), and replies go to the partner's
callbackUrl as signed JSON, at the public address it resolves to (inbox/callbacks.py)."""
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

# This app, as models/kinds.py reads it (literals, read without importing this module):
# its ChannelKind, its place among the kinds, its settings (environment variable, default, help).
KIND = "CUSTOM"
KIND_ORDER = 3
SETTINGS = []


@strawberry.input
class CustomConfigInput:
    callback_url: Optional[str] = strawberry.field(
        default=None,
        description="Where the server POSTs outbound messages for the partner to deliver; without it the "
                    "channel only receives.")


def _is_http_url(url: str) -> bool:
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 -- raises on a port that is not a number up to 65535
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and len(url) <= 2048


class Custom(Provider):
    kind = ChannelKind.CUSTOM
    input_field = "custom"
    config_input = CustomConfigInput
    config_required = False

    def check_config(self, config: dict | None) -> dict:
        config = {key: value for key, value in super().check_config(config).items() if value is not None}
        callback = config.get("callbackUrl")
        if callback is not None and not _is_http_url(callback):
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
            pinned, netloc, name = await api.checked_callback(config["callbackUrl"])
            headers = {"Content-Type": "application/json", "X-Inbox-Signature": f"sha256={signature}",
                       "Host": netloc}
            # The TLS certificate is still checked against the URL's host name.
            extensions = {"sni_hostname": name} if pinned.scheme == "https" else {}
            answer = await api.post(pinned, content=body, headers=headers, extensions=extensions)
            check(answer)
            return field(answer, "externalMessageId")

        return await send_parts(out, [send])


    async def file_request(self, api, channel, source):
        """A partner's attachment URL is the partner's word: fetched, like its callbacks,
        only from the public address it resolves to now, and without redirects (one could
        lead anywhere)."""
        pinned, netloc, name = await api.checked_callback(source["url"])
        return pinned, {"headers": {"Host": netloc}, "follow_redirects": False,
                        "extensions": {"sni_hostname": name} if pinned.scheme == "https" else {}}


APP = apps.register(Custom())
