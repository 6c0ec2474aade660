"""Facebook Messenger: the webhook's signature and events, and the contact's profile,
fetched from the Graph API in the background so that it never holds up a message."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional
from urllib.parse import quote

import httpx
import strawberry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from inbox import apps, attachments
from inbox.contacts import apply_profile
from inbox.errors import BadInput, NotFound
from inbox.messages import Inbound, receive_all
from inbox.sending import update_statuses_up_to
from models import Channel, ChannelKind, DeliveryStatus

from . import Malformed, Provider, inbound_body, json_without_nul, web
from .outbound import check, field, send_parts

# This app, as models/kinds.py reads it (literals, read without importing this module):
# its ChannelKind, its place among the kinds, its settings (environment variable, default, help).
KIND = "MESSENGER"
KIND_ORDER = 1
SETTINGS = [("INBOX_MESSENGER_API_BASE", "https://graph.facebook.com/v19.0",
             "Meta Graph API base, version included (profiles and the Send API)")]

log = logging.getLogger(__name__)

# What a contact is called until (or unless) its profile arrives (SPEC §3).
DEFAULT_NAME = "Messenger user"
PROFILE_TIMEOUT = 5.0
# A profile the Graph API refuses (4xx: no permission, a deleted user) is not asked for
# again for this long; after a transient failure (network, 429, 5xx) the next message asks.
REFUSED_PROFILE_SECONDS = 3600.0
REFUSED_PROFILES_KEPT = 10_000
# Profiles fetched at once: a burst of new contacts queues here rather than opening a
# connection each (httpx's pool costs more CPU per request the more are in flight), and
# the Graph API's rate limit is spent more gently.
PROFILE_FETCHES = 8
MAX_ID = 255


def signature_valid(body: bytes, header: str | None, app_secret: str) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`."""
    if not header:
        return False
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    # Latin-1 is how the header arrived; compare bytes so that any header compares in constant time.
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode("latin-1", "replace"))


@dataclass(frozen=True)
class MessageEvent:
    page_id: str
    psid: str
    mid: str
    body: str
    sent_at: datetime
    files: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ReceiptEvent:
    """`delivery` (with the mids it names) or `read`: everything up to the watermark."""

    page_id: str
    psid: str
    status: DeliveryStatus
    watermark: datetime
    mids: tuple[str, ...] = ()


Event = MessageEvent | ReceiptEvent


def _id(value, what: str) -> str:
    # Graph ids are strings, but a PSID may come as a number from older tools.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Malformed(f"{what} must be a string")
    text = str(value).strip()
    if not text or len(text) > MAX_ID:
        raise Malformed(f"{what} must be a non-empty string of at most {MAX_ID} characters")
    return text


def _ms(value, what: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Malformed(f"{what} must be a time in milliseconds")
    try:
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise Malformed(f"{what} is out of range") from None


def _dict(value, what: str, required: bool = True) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{what} must be an object")
    return value


# Meta's attachment types that are files (https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages).
FILE_KINDS = {"image": "IMAGE", "video": "VIDEO", "audio": "AUDIO", "file": "FILE"}


def _attachments(value) -> tuple[list[dict], list[tuple[str, str | None]]]:
    """The files (a sticker is an image), and the rest as lines of the body (a location...)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise Malformed("message.attachments must be a list")
    files, described = [], []
    for attachment in value:
        attachment = _dict(attachment, "an attachment")
        payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
        kind = attachment.get("type") if isinstance(attachment.get("type"), str) else "attachment"
        url = payload.get("url") if isinstance(payload.get("url"), str) else None
        if url and kind in FILE_KINDS:
            title = payload.get("title") or attachment.get("title")
            files.append(attachments.of(FILE_KINDS[kind], url, title if isinstance(title, str) else None))
            continue
        coordinates = payload.get("coordinates")
        if url is None and isinstance(coordinates, dict):
            url = f"{coordinates.get('lat')},{coordinates.get('long')}"
        described.append((kind, url))
    # Meta sends at most 10 (the inbox shows as many).
    return files[:attachments.MAX_ATTACHMENTS], described


def _message(page_id: str, psid: str, sent_at: datetime, message: dict) -> MessageEvent | None:
    if message.get("is_echo"):
        return None  # our own reply (or one sent from the page's inbox), echoed back
    mid = _id(message.get("mid"), "message.mid")
    text = message.get("text")
    if text is not None and not isinstance(text, str):
        raise Malformed("message.text must be a string")
    files, described = _attachments(message.get("attachments"))
    body = inbound_body(text, described)
    if body is None and not files:
        return None  # nothing an agent could read
    return MessageEvent(page_id, psid, mid, body or "", sent_at, tuple(files))


def _postback(page_id: str, psid: str, sent_at: datetime, postback: dict) -> MessageEvent | None:
    """A button the contact tapped: shown as what they tapped. Only with a `mid`, the
    key that makes its retries one message."""
    if postback.get("mid") is None:
        return None
    title = postback.get("title")
    body = inbound_body(title if isinstance(title, str) else None, []) or "[postback]"
    return MessageEvent(page_id, psid, _id(postback["mid"], "postback.mid"), body, sent_at)


def _receipt(page_id: str, psid: str, status: DeliveryStatus, receipt: dict) -> ReceiptEvent:
    mids = receipt.get("mids") or []
    if not isinstance(mids, list):
        raise Malformed("delivery.mids must be a list")
    return ReceiptEvent(page_id, psid, status, _ms(receipt.get("watermark"), "watermark"),
                        tuple(_id(mid, "delivery.mids[]") for mid in mids))


def parse(body: bytes) -> list[Event]:
    """Every event of a webhook, checked whole before anything is stored. Events the
    inbox has no use for (reactions, opt-ins, standby...) are left out."""
    try:
        payload = json_without_nul(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not JSON") from None
    payload = _dict(payload, "the body")
    if payload.get("object") != "page":
        raise Malformed('"object" must be "page"')
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise Malformed('"entry" must be a list')
    events: list[Event] = []
    for entry in entries:
        entry = _dict(entry, "an entry")
        page_id = _id(entry["id"], "entry.id") if entry.get("id") is not None else ""
        messaging = entry.get("messaging", [])
        if not isinstance(messaging, list):
            raise Malformed('"entry.messaging" must be a list')
        for item in messaging:
            item = _dict(item, "a messaging event")
            psid = _id(_dict(item.get("sender"), "sender").get("id"), "sender.id")
            event: Event | None = None
            if "message" in item:
                sent_at = _ms(item.get("timestamp"), "timestamp")
                event = _message(page_id, psid, sent_at, _dict(item["message"], "message"))
            elif "postback" in item:
                sent_at = _ms(item.get("timestamp"), "timestamp")
                event = _postback(page_id, psid, sent_at, _dict(item["postback"], "postback"))
            elif "delivery" in item:
                event = _receipt(page_id, psid, DeliveryStatus.DELIVERED, _dict(item["delivery"], "delivery"))
            elif "read" in item:
                event = _receipt(page_id, psid, DeliveryStatus.READ, _dict(item["read"], "read"))
            if event is not None:
                events.append(event)
    return events


async def page_channels(channel: Channel, events: list[Event]) -> dict[str, Channel]:
    """One Meta app posts the events of all its pages to one URL: an entry of another
    page goes to this company's channel for that page when it shares the app secret
    (the signature proves the post for it too); entries of unknown pages are dropped."""
    own = channel.config.get("pageId")
    others = {event.page_id for event in events} - {own, ""}
    routed = {own: channel, "": channel}
    if others:
        candidates = await Channel.filter(company_id=channel.company_id, kind=ChannelKind.MESSENGER,
                                          uninstalled_at__isnull=True)
        for candidate in candidates:
            page = candidate.config.get("pageId")
            if page in others and hmac.compare_digest(candidate.config.get("appSecret", "").encode(),
                                                      channel.config.get("appSecret", "").encode()):
                routed[page] = candidate
        for page in others - routed.keys():
            log.warning("messenger webhook of channel %s: dropping events of unknown page %s", channel.id, page)
    return routed


async def apply(channel: Channel, events: list[Event], profiles: "Profiles") -> None:
    routed = await page_channels(channel, events)
    routed_events = [(routed[event.page_id], event) for event in events if event.page_id in routed]
    arrived = [(target, event) for target, event in routed_events if isinstance(event, MessageEvent)]
    # The messages of one webhook are stored together, and in the order they came.
    received = await receive_all([(target, Inbound(
        external_message_id=event.mid, sender_external_id=event.psid, sender_name=None, body=event.body,
        attachments=list(event.files),
        sent_at=event.sent_at, default_name=DEFAULT_NAME)) for target, event in arrived])
    for (target, event), stored in zip(arrived, received):
        if stored.created and stored.contact_name == DEFAULT_NAME:
            profiles.fetch_later(target, event.psid)
    for target, event in routed_events:
        if isinstance(event, ReceiptEvent):
            await update_statuses_up_to(target, event.psid, event.status, event.watermark, list(event.mids))


class Profiles:
    """Fetches contacts' names and avatars in the background: the webhook answers at
    once, a slow or failing Graph API only delays (or skips) the rename."""

    def __init__(self, api_base: str, http: httpx.AsyncClient, timeout: float = PROFILE_TIMEOUT) -> None:
        self.api_base = api_base
        self.http = http
        self.timeout = timeout
        # Held until done (the event loop keeps only weak references to tasks), one per
        # contact: a burst of messages from a new contact fetches its profile once.
        self._tasks: dict[tuple[int, str], asyncio.Task] = {}
        # Contacts that wrote again while their fetch ran: if it fails, one more try.
        self._again: set[tuple[int, str]] = set()
        self._refused: OrderedDict[tuple[int, str], float] = OrderedDict()
        self._fetching = asyncio.Semaphore(PROFILE_FETCHES)

    def fetch_later(self, channel: Channel, psid: str) -> None:
        key = (channel.id, psid)
        if key in self._tasks:
            self._again.add(key)
            return
        refused_at = self._refused.get(key)
        if refused_at is not None and time.monotonic() - refused_at < REFUSED_PROFILE_SECONDS:
            return
        self._tasks[key] = asyncio.create_task(self._fetch(key, channel, psid),
                                               name=f"messenger-profile-{channel.id}")

    async def _fetch(self, key: tuple[int, str], channel: Channel, psid: str) -> None:
        try:
            while not await self._settled(key, channel, psid) and key in self._again:
                self._again.discard(key)
        finally:
            # No await between the last check and here: a message arriving from now on
            # starts a fetch of its own.
            self._tasks.pop(key, None)
            self._again.discard(key)

    def _refuse(self, key: tuple[int, str]) -> None:
        self._refused[key] = time.monotonic()
        self._refused.move_to_end(key)
        while len(self._refused) > REFUSED_PROFILES_KEPT:
            self._refused.popitem(last=False)

    async def _settled(self, key: tuple[int, str], channel: Channel, psid: str) -> bool:
        """One fetch; True when there is no point in another (fetched, or refused)."""
        try:
            async with self._fetching:
                response = await self.http.get(
                    f"{self.api_base}/{quote(psid, safe='')}",
                    params={"fields": "first_name,last_name,profile_pic",
                            "access_token": channel.config["pageAccessToken"]},
                    timeout=self.timeout)
            if not response.is_success:
                log.info("messenger profile of %s on channel %s: HTTP %s; keeping %r",
                         psid, channel.id, response.status_code, DEFAULT_NAME)
                if response.status_code == 429 or response.status_code >= 500:
                    return False
                self._refuse(key)
                return True
            profile = response.json()
            if not isinstance(profile, dict):
                return False
            parts = [profile.get(field) for field in ("first_name", "last_name")]
            name = " ".join(part.strip() for part in parts if isinstance(part, str) and part.strip())
            picture = profile.get("profile_pic")
            avatar = picture if isinstance(picture, str) and picture.startswith(("https://", "http://")) else None
            await apply_profile(channel, psid, name, avatar)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the message is stored already; the name can wait for the next one
            # Not the exception's text: an httpx error may carry the URL, and with it the access token.
            log.info("messenger profile of %s on channel %s failed: %s", psid, channel.id,
                     type(error).__name__)
            return False

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@strawberry.input
class MessengerConfigInput:
    page_id: str
    app_secret: str
    verify_token: str
    page_access_token: str
    human_agent_tag: Optional[bool] = strawberry.field(
        default=False,
        description="The Meta app has the Human Agent permission: replies 24 hours to 7 days after the "
                    "contact's latest message go out with the HUMAN_AGENT tag.")


async def verify(request: Request) -> Response:
    """Meta's subscription handshake: echo `hub.challenge` when the verify token matches."""
    channel = await web.channel_of(request, ChannelKind.MESSENGER)
    if channel is None:
        return web.not_found()
    params = request.query_params
    token = params.get("hub.verify_token") or ""
    if params.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token.encode(), channel.config["verifyToken"].encode()):
        return PlainTextResponse(params.get("hub.challenge", ""))
    return PlainTextResponse("verification failed", status_code=403)


async def webhook(request: Request) -> Response:
    channel = await web.channel_of(request, ChannelKind.MESSENGER)
    if channel is None:
        return web.not_found()
    body = await request.body()
    if not signature_valid(body, request.headers.get("x-hub-signature-256"), channel.config["appSecret"]):
        return web.forbidden()
    try:
        events = parse(body)
        await apply(channel, events, request.app.state.profiles)
    except (Malformed, BadInput) as error:
        return web.malformed(error)
    except NotFound:  # uninstalled meanwhile
        return web.not_found()
    return PlainTextResponse("EVENT_RECEIVED")


# Meta's messaging window: free replies for 24 hours after the contact's latest message;
# with the Human Agent permission, tagged replies up to 7 days.
OPEN_FOR = timedelta(hours=24)
HUMAN_AGENT_UNTIL = timedelta(days=7)


class Messenger(Provider):
    kind = ChannelKind.MESSENGER
    webhook_path = "/webhooks/messenger/{}"
    input_field = "messenger"
    config_input = MessengerConfigInput
    required_config = ("pageId", "appSecret", "verifyToken", "pageAccessToken")

    def check_config(self, config: dict | None) -> dict:
        config = super().check_config(config)
        config["humanAgentTag"] = bool(config.get("humanAgentTag"))
        return config

    def routes(self) -> list:
        return [Route("/webhooks/messenger/{channel_id}", verify, methods=["GET"]),
                Route("/webhooks/messenger/{channel_id}", webhook, methods=["POST"])]

    def reply_window(self, channel, last_inbound_at, now):
        tagged = bool(channel.config.get("humanAgentTag"))
        return apps.window(last_inbound_at, now, open_for=OPEN_FOR,
                           human_agent_until=HUMAN_AGENT_UNTIL if tagged else None)

    async def deliver(self, api, out) -> str | None:
        config = out.channel.config
        if out.window is not None and out.window.state is apps.WindowState.HUMAN_AGENT:
            # Past 24 hours, Meta takes a reply only with the tag the Human Agent permission allows.
            kind = {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        else:
            kind = {"messaging_type": "RESPONSE"}

        async def send(message: dict) -> str | None:
            answer = await api.post(f"{api.settings.messenger_api_base}/me/messages",
                                    params={"access_token": config["pageAccessToken"]},
                                    json={"recipient": {"id": out.contact.external_id}, **kind, "message": message})
            check(answer)
            return field(answer, "message_id")

        # The text, then one call per file: the Send API takes one attachment per message.
        parts = [lambda: send({"text": out.message.body})] if out.message.body.strip() else []
        for attachment in out.message.attachments or []:
            parts.append(lambda attachment=attachment: send({"attachment": {
                "type": attachment["kind"].lower(), "payload": {"url": attachment["url"], "is_reusable": False}}}))
        return await send_parts(out, parts)


APP = apps.register(Messenger())
