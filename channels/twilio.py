"""WhatsApp through Twilio: the webhook's signature, inbound messages and the status
callbacks of our replies, all form-encoded."""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl

from inbox.messages import Inbound, receive
from inbox.sending import update_status_by_external_id
from models import Channel, DeliveryStatus

from . import Malformed, inbound_body, without_nul

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


def _media(fields: dict[str, str]) -> list[tuple[str, str | None]]:
    try:
        count = min(int(fields.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        raise Malformed("NumMedia must be a number") from None
    media = []
    for index in range(count):
        kind = (fields.get(f"MediaContentType{index}") or "file").partition("/")[0] or "file"
        media.append((kind, fields.get(f"MediaUrl{index}") or None))
    if fields.get("Latitude") and fields.get("Longitude"):
        media.append(("location", f"{fields['Latitude']},{fields['Longitude']}"))
    return media


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
    body = inbound_body(fields.get("Body"), _media(fields))
    if body is None:
        return None  # nothing an agent could read (a reaction, an unsupported type)
    name = (fields.get("ProfileName") or "").strip()[:255] or None
    return MessageEvent(sid, number, name, body)


async def apply(channel: Channel, event: MessageEvent | StatusEvent | None) -> None:
    if isinstance(event, MessageEvent):
        # No ProfileName: a new contact is called by its number, a known one keeps its name.
        await receive(channel, Inbound(external_message_id=event.sid, sender_external_id=event.number,
                                       sender_name=event.name, body=event.body, default_name=event.number))
    elif isinstance(event, StatusEvent):
        # A callback may overtake the API's answer to the send: kept until the sid is recorded.
        await update_status_by_external_id(channel, event.sid, event.status, event.failure_reason,
                                           keep_if_early=True)
