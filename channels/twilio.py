"""WhatsApp through Twilio: the webhook's signature, inbound messages and the status
callbacks of our replies, all form-encoded."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl

import httpx
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from inbox import apps, attachments
from inbox.errors import BadInput, NotFound
from inbox.messages import Inbound, receive
from inbox.sending import update_status_by_external_id
from models import Channel, ChannelKind, DeliveryStatus

from . import Malformed, Provider, inbound_body, web, without_nul
from .outbound import check, field, send_parts

# This app, as models/kinds.py reads it (literals, read without importing this module):
# its ChannelKind, its place among the kinds, its settings (environment variable, default, help).
KIND = "WHATSAPP"
KIND_ORDER = 2
SETTINGS = [("INBOX_TWILIO_API_BASE", "https://api.twilio.com", "Twilio REST API base (Messages API)"),
            ("INBOX_TWILIO_CONTENT_API_BASE", "https://content.twilio.com",
             "Twilio Content API base (the text of WhatsApp templates)")]

log = logging.getLogger(__name__)

MAX_ID = 255
MAX_MEDIA = 10  # Twilio sends at most 10 media per message

# Twilio's message statuses (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
# The ones still on their way (accepted, scheduled, queued, sending) say nothing new: the
# reply is PENDING until the API took it and SENT after.
STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}
INBOUND_STATUSES = {"received", "receiving"}

# The usual reasons a WhatsApp message fails, for callbacks that give only the code
# (https://www.twilio.com/docs/api/errors).
ERRORS = {
    "30003": "Unreachable destination handset",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered",
    "30008": "Unknown error",
    "63003": "Channel could not find To address",
    "63016": "Failed to send freeform message because you are outside the allowed window; use a template",
}


def form(body: bytes) -> list[tuple[str, str]] | None:
    """The POST parameters in their order; None when the body is not a form."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None


def expected_signature(url: str, params: list[tuple[str, str]], auth_token: str) -> str:
    """Twilio's documented algorithm: the full URL, then each POST parameter's name and
    value with no delimiters, sorted by name (case-sensitive); HMAC-SHA1 with the auth
    token, base64 (https://www.twilio.com/docs/usage/security#validating-requests)."""
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_valid(url: str, params: list[tuple[str, str]], header: str | None, auth_token: str) -> bool:
    if not header:
        return False
    expected = expected_signature(url, params, auth_token)
    return hmac.compare_digest(expected.encode(), header.strip().encode("latin-1", "replace"))


@dataclass(frozen=True)
class MessageEvent:
    sid: str
    number: str
    name: str | None
    body: str
    files: tuple[dict, ...] = ()


@dataclass(frozen=True)
class StatusEvent:
    sid: str
    status: DeliveryStatus
    failure_reason: str | None = None


def _sid(fields: dict[str, str]) -> str:
    sid = (fields.get("MessageSid") or fields.get("SmsSid") or "").strip()
    if not sid or len(sid) > MAX_ID:
        raise Malformed("MessageSid is missing")
    return sid


def _failure_reason(fields: dict[str, str], status: str) -> str:
    code = fields.get("ErrorCode", "").strip()
    message = fields.get("ErrorMessage", "").strip() or ERRORS.get(code, "")
    if code:
        return f"Twilio error {code}: {message}" if message else f"Twilio error {code}"
    return f"Twilio reported the message {status}"


def _media(fields: dict[str, str]) -> tuple[list[dict], list[tuple[str, str | None]]]:
    """The files (NumMedia, MediaUrlN, MediaContentTypeN), and a location as a line of the body."""
    try:
        count = min(int(fields.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        raise Malformed("NumMedia must be a number") from None
    files = []
    for index in range(count):
        url = (fields.get(f"MediaUrl{index}") or "").strip()
        if url:
            mime_type = fields.get(f"MediaContentType{index}") or None
            files.append(attachments.of(attachments.kind_of(mime_type), url, None, mime_type))
    described = []
    if fields.get("Latitude") and fields.get("Longitude"):
        described.append(("location", f"{fields['Latitude']},{fields['Longitude']}"))
    return files, described


def parse(params: list[tuple[str, str]]) -> MessageEvent | StatusEvent | None:
    """An inbound message, a status callback, or None for what the inbox has no use for
    (a status with no news, a message with nothing to read)."""
    fields = without_nul(dict(reversed(params)))  # the first value of a repeated name
    sid = _sid(fields)
    status = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").strip().lower()
    if status and status not in INBOUND_STATUSES:
        mapped = STATUSES.get(status)
        if mapped is None:
            return None
        reason = _failure_reason(fields, status) if mapped is DeliveryStatus.FAILED else None
        return StatusEvent(sid, mapped, reason)
    if "Body" not in fields and "NumMedia" not in fields:
        raise Malformed("neither Body nor MessageStatus")
    number = (fields.get("From") or "").strip().removeprefix("whatsapp:").strip()
    if not number or len(number) > MAX_ID:
        raise Malformed("From is missing")
    files, described = _media(fields)
    body = inbound_body(fields.get("Body"), described)
    if body is None and not files:
        return None  # nothing an agent could read (a reaction, an unsupported type)
    name = (fields.get("ProfileName") or "").strip()[:255] or None
    return MessageEvent(sid, number, name, body or "", tuple(files))


async def apply(channel: Channel, event: MessageEvent | StatusEvent | None) -> None:
    if isinstance(event, MessageEvent):
        # No ProfileName: a new contact is called by its number, a known one keeps its name.
        await receive(channel, Inbound(external_message_id=event.sid, sender_external_id=event.number,
                                       sender_name=event.name, body=event.body, default_name=event.number,
                                       attachments=list(event.files)))
    elif isinstance(event, StatusEvent):
        # A callback may overtake the API's answer to the send: kept until the sid is recorded.
        await update_status_by_external_id(channel, event.sid, event.status, event.failure_reason,
                                           keep_if_early=True)


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def signed_url(request: Request) -> str:
    """The URL Twilio signed: the public one when set (behind a proxy the request's own
    host and scheme are not what Twilio called), with the path and query as sent."""
    public = request.app.state.settings.public_url
    if not public:
        return str(request.url)
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{public}{path}?{query}" if query else f"{public}{path}"


async def webhook(request: Request) -> Response:
    channel = await web.channel_of(request, ChannelKind.WHATSAPP)
    if channel is None:
        return web.not_found()
    params = form(await request.body())
    # A body that is not even a form cannot carry a valid signature.
    if params is None or not signature_valid(signed_url(request), params, request.headers.get("x-twilio-signature"),
                                             channel.config["authToken"]):
        return web.forbidden()
    try:
        await apply(channel, parse(params))
    except (Malformed, BadInput) as error:
        return web.malformed(error)
    except NotFound:  # uninstalled meanwhile
        return web.not_found()
    return Response(EMPTY_TWIML, media_type="text/xml")


@strawberry.input
class TwilioConfigInput:
    account_sid: str
    auth_token: str
    from_number: str = strawberry.field(description="The WhatsApp sender number, e.g. +14155238886.")


# WhatsApp's customer service window: free-form replies within 24 hours of the contact's
# latest message; after that only approved templates (Twilio error 63016).
OPEN_FOR = timedelta(hours=24)


class WhatsApp(Provider):
    kind = ChannelKind.WHATSAPP
    webhook_path = "/webhooks/twilio/{}"
    input_field = "whatsapp"
    takes_templates = True
    config_input = TwilioConfigInput
    required_config = ("accountSid", "authToken", "fromNumber")

    def routes(self) -> list:
        return [Route("/webhooks/twilio/{channel_id}", webhook, methods=["POST"])]

    def reply_window(self, channel, last_inbound_at, now):
        return apps.window(last_inbound_at, now, open_for=OPEN_FOR)

    async def file_request(self, api, channel, source):
        # Media URLs may require basic auth with the account (Twilio's "HTTP Basic
        # Authentication for media access" setting); sent either way, never shown.
        return source["url"], {"auth": (channel.config["accountSid"], channel.config["authToken"])}

    async def deliver(self, api, out) -> str | None:
        from schema.ids import global_id  # not at import: the schema is built from the apps of this package

        config = out.channel.config
        account = config["accountSid"]
        data: dict = {"From": f"whatsapp:{config['fromNumber']}", "To": f"whatsapp:{out.contact.external_id}",
                      "StatusCallback": f"{api.settings.public_url}/webhooks/twilio/"
                                        f"{global_id('Channel', out.channel.id)}"}
        if out.template is not None:
            # An approved template, sent in any window: its placeholders' values by number.
            data["ContentSid"] = out.template.content_sid
            data["ContentVariables"] = json.dumps({str(index): value for index, value
                                                   in enumerate(out.template.variables, start=1)})
        else:
            if out.message.body.strip():
                data["Body"] = out.message.body
            media = [attachment["url"] for attachment in out.message.attachments or []]
            if media:
                data["MediaUrl"] = media  # one message carries up to 10

        async def send() -> str | None:
            answer = await api.post(f"{api.settings.twilio_api_base}/2010-04-01/Accounts/{account}/Messages.json",
                                    auth=(account, config["authToken"]), data=data)
            check(answer)
            return field(answer, "sid")

        return await send_parts(out, [send])

    async def template_text(self, api, channel, template) -> str:
        """The template's text from Twilio's Content API, its {{n}} filled in; when that
        fails, "[template HX…]" (the send itself does not depend on it)."""
        config = channel.config
        if api is None:  # no way to ask (the domain called without the server's client)
            return f"[template {template.content_sid}]"
        try:
            answer = await api.get(f"{api.settings.twilio_content_api_base}/v1/Content/{template.content_sid}",
                                   auth=(config["accountSid"], config["authToken"]))
            content = answer.json() if answer.is_success else None
            types = content.get("types") if isinstance(content, dict) else None
        except httpx.HTTPError as error:
            log.info("content %s of channel %s: %s", template.content_sid, channel.id, type(error).__name__)
            types = None
        text = next((kind["body"] for kind in (types if isinstance(types, dict) else {}).values()
                     if isinstance(kind, dict) and isinstance(kind.get("body"), str) and kind["body"].strip()), None)
        if text is None:
            return f"[template {template.content_sid}]"

        def value(match: re.Match) -> str:
            index = int(match.group(1))
            return template.variables[index - 1] if 0 < index <= len(template.variables) else match.group(0)

        return PLACEHOLDER.sub(value, text)


# A Content API placeholder: {{1}}, {{2}}...
PLACEHOLDER = re.compile(r"\{\{\s*([0-9]+)\s*\}\}")


APP = apps.register(WhatsApp())
