"""Handing replies to the messaging apps' APIs, with each answer classified as
sent, retryable (network, timeout, 429, 5xx) or rejected (other 4xx)."""
from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from inbox.queue import Rejected, Retryable
from inbox.sending import Outgoing
from models import ChannelKind
from schema.ids import global_id


def _reason(response: httpx.Response) -> str:
    """The messaging app's own words where it gives them (Graph API `error.message`,
    Twilio `message`), else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{response.status_code}: {error['message']}"
        if isinstance(error, str):
            return f"{response.status_code}: {error}"
        if body.get("message"):
            return f"{response.status_code}: {body['message']}"
    text = response.text.strip()[:300]
    return f"{response.status_code}: {text or response.reason_phrase}"


def check(response: httpx.Response) -> None:
    if response.is_success:
        return
    if response.status_code == 429 or response.status_code >= 500:
        raise Retryable(_reason(response))
    raise Rejected(_reason(response))


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Providers:
    """One HTTP client for every messaging app's API; `deliver` is the sender's hook."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(timeout=settings.send_timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def deliver(self, out: Outgoing) -> str | None:
        try:
            if out.channel.kind is ChannelKind.MESSENGER:
                return await self._messenger(out)
            if out.channel.kind is ChannelKind.WHATSAPP:
                return await self._twilio(out)
            return await self._custom(out)
        except httpx.TransportError as error:  # connection refused, reset, timeouts
            raise Retryable(f"network error: {type(error).__name__}: {error}"[:300]) from error

    async def _messenger(self, out: Outgoing) -> str | None:
        config = out.channel.config
        response = await self.http.post(
            f"{self.settings.messenger_api_base}/me/messages",
            params={"access_token": config["pageAccessToken"]},
            json={"recipient": {"id": out.contact.external_id}, "messaging_type": "RESPONSE",
                  "message": {"text": out.message.body}})
        check(response)
        return _json(response).get("message_id")

    async def _twilio(self, out: Outgoing) -> str | None:
        config = out.channel.config
        account = config["accountSid"]
        response = await self.http.post(
            f"{self.settings.twilio_api_base}/2010-04-01/Accounts/{account}/Messages.json",
            auth=(account, config["authToken"]),
            data={"From": f"whatsapp:{config['fromNumber']}", "To": f"whatsapp:{out.contact.external_id}",
                  "Body": out.message.body,
                  "StatusCallback": f"{self.settings.public_url}/webhooks/twilio/"
                                    f"{global_id('Channel', out.channel.id)}"})
        check(response)
        return _json(response).get("sid")

    async def _custom(self, out: Outgoing) -> str | None:
        config = out.channel.config
        body = json.dumps({
            "messageId": global_id("Message", out.message.id),
            "conversationId": global_id("Conversation", out.message.conversation_id),
            "recipient": {"externalId": out.contact.external_id},
            "body": out.message.body,
            "sentAt": out.message.sent_at.isoformat(),
        }).encode()
        signature = hmac.new(config["channelToken"].encode(), body, hashlib.sha256).hexdigest()
        response = await self.http.post(config["callbackUrl"], content=body, headers={
            "Content-Type": "application/json", "X-Inbox-Signature": f"sha256={signature}"})
        check(response)
        external = _json(response).get("externalMessageId")
        return str(external) if external is not None else None
