"""Telegram bots (the Bot API, https://core.telegram.org/bots/api): installed with the
bot's token, the server registers its webhook with a random secret (`setWebhook`),
Telegram posts each update with that secret in a header, and replies go out through
`sendMessage`, `sendPhoto` and `sendDocument`. Uninstalling removes the webhook.

Every Bot API call is `{api base}/bot<token>/<method>` and answers
`{"ok": true, "result": …}` or `{"ok": false, "error_code": …, "description": …}`.
The contact is the chat (a private chat's id is the user's). Telegram reports no
delivery or read receipts: a reply the Bot API took is SENT, and stays so."""
from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import strawberry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from inbox import apps, attachments
from inbox.errors import BadInput, NotFound
from inbox.messages import Inbound, receive
from inbox.queue import Rejected
from models import Channel, ChannelKind

from . import Malformed, Provider, json_without_nul, web
from .outbound import Answer, check, send_parts

# This app, as models/kinds.py reads it (literals, read without importing this module):
# its ChannelKind, its place among the kinds, its settings (environment variable, default, help).
KIND = "TELEGRAM"
KIND_ORDER = 4
SETTINGS = [("INBOX_TELEGRAM_API_BASE", "https://api.telegram.org", "Telegram Bot API base")]

log = logging.getLogger(__name__)

DEFAULT_NAME = "Telegram user"
MAX_ID = 255
# BotFather's tokens are the bot's numeric id, a colon and a secret part; whether one is
# valid is Telegram's to say (setWebhook refuses it). Checked here: only what can sit in
# the API's URL path as it is.
TOKEN = re.compile(r"^[A-Za-z0-9:_-]{1,256}$")
INSTALL_TIMEOUT = 10.0


@strawberry.input
class TelegramConfigInput:
    bot_token: str = strawberry.field(description="The bot's token from BotFather.")


def method_url(api_base: str, token: str, method: str) -> str:
    return f"{api_base}/bot{token}/{method}"


def secret_valid(header: str | None, secret: str) -> bool:
    """`X-Telegram-Bot-Api-Secret-Token` is the secret given to setWebhook, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode("latin-1", "replace"), secret.encode())


@dataclass(frozen=True)
class Update:
    update_id: int
    chat_id: str
    name: str | None
    text: str | None
    sent_at: datetime
    files: tuple[dict, ...]


def _file(kind: str, value, name_field: bool = True) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("file_id"), str) or not value["file_id"]:
        raise Malformed(f"message.{kind.lower()} has no file_id")
    file_id = value["file_id"][:MAX_ID]
    # Not the file's URL (getFile's https://api.telegram.org/file/bot<token>/… carries the
    # bot token): a reference to the bot's file, and its id.
    return attachments.of(kind, f"telegram-file:{file_id}", value.get("file_name") if name_field else None,
                          value.get("mime_type"), fileId=file_id)


def _files(message: dict) -> tuple[dict, ...]:
    found = []
    photo = message.get("photo")
    if photo is not None:
        if not isinstance(photo, list) or not photo:
            raise Malformed("message.photo must be a list of sizes")
        found.append(_file("IMAGE", photo[-1], name_field=False))  # the sizes grow: the last is the largest
    for key, kind in (("video", "VIDEO"), ("voice", "AUDIO"), ("audio", "AUDIO"), ("document", "FILE")):
        if message.get(key) is not None:
            found.append(_file(kind, message[key]))
    return tuple(found)


def parse(body: bytes) -> Update | None:
    """The update's new message, or None for updates the inbox has no use for (edits,
    channel posts, callbacks...) and messages with nothing to show (a sticker, a poll)."""
    try:
        update = json_without_nul(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not JSON") from None
    if not isinstance(update, dict):
        raise Malformed("the body must be an object")
    update_id = update.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise Malformed("update_id must be a number")
    message = update.get("message")
    if message is None:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
        raise Malformed("message.chat must be an object")
    chat = message["chat"]
    if isinstance(chat.get("id"), bool) or not isinstance(chat.get("id"), int):
        raise Malformed("message.chat.id must be a number")
    date = message.get("date")
    if isinstance(date, bool) or not isinstance(date, int):
        raise Malformed("message.date must be a time in seconds")
    try:
        sent_at = datetime.fromtimestamp(date, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise Malformed("message.date is out of range") from None
    text = message.get("text", message.get("caption"))
    if text is not None and not isinstance(text, str):
        raise Malformed("message.text must be a string")
    files = _files(message)
    if not (text and text.strip()) and not files:
        return None
    parts = [chat.get(key) for key in ("first_name", "last_name")]
    name = " ".join(part.strip() for part in parts if isinstance(part, str) and part.strip())
    # A private chat's first and last name; else a group's title, else the @username.
    others = [chat.get(key) for key in ("title", "username")]
    name = name or next((other.strip() for other in others if isinstance(other, str) and other.strip()), "")
    return Update(update_id, str(chat["id"]), name[:255] or None, text, sent_at, files)


async def webhook(request: Request) -> Response:
    channel = await web.channel_of(request, ChannelKind.TELEGRAM)
    if channel is None:
        return web.not_found()
    if not secret_valid(request.headers.get("x-telegram-bot-api-secret-token"), channel.config["secretToken"]):
        return web.forbidden()
    try:
        update = parse(await request.body())
        if update is not None:
            # The update's id is the key: Telegram delivers an update again until it is answered 2xx.
            await receive(channel, Inbound(
                external_message_id=f"update:{update.update_id}", sender_external_id=update.chat_id,
                sender_name=update.name, body=update.text or "", sent_at=update.sent_at,
                default_name=DEFAULT_NAME, attachments=list(update.files)))
    except (Malformed, BadInput) as error:
        return web.malformed(error)
    except NotFound:  # uninstalled meanwhile
        return web.not_found()
    return PlainTextResponse("ok")


def _result(answer: Answer) -> dict:
    body = answer.json()
    return body.get("result") if isinstance(body, dict) and isinstance(body.get("result"), dict) else {}


class Telegram(Provider):
    kind = ChannelKind.TELEGRAM
    webhook_path = "/webhooks/telegram/{}"
    input_field = "telegram"
    config_input = TelegramConfigInput
    required_config = ("botToken",)

    def check_config(self, config: dict | None) -> dict:
        config = super().check_config(config)
        if not TOKEN.match(config["botToken"]):
            raise BadInput("botToken is not a Telegram bot token (<bot id>:<secret>, as BotFather gives it)")
        # Telegram allows 1-256 characters of A-Z, a-z, 0-9, _ and -.
        config["secretToken"] = secrets.token_urlsafe(32)
        return {"botToken": config["botToken"], "secretToken": config["secretToken"]}

    def routes(self) -> list:
        return [Route("/webhooks/telegram/{channel_id}", webhook, methods=["POST"])]

    async def _call(self, api, channel: Channel, method: str, payload: dict) -> Answer:
        return await api.post(method_url(api.settings.telegram_api_base, channel.config["botToken"], method),
                              json=payload)

    async def installed(self, api, channel: Channel) -> None:
        if api is None:
            return
        from schema.ids import global_id  # not at import: the schema is built from the apps of this package

        url = f"{api.settings.public_url}{self.webhook_path.format(global_id('Channel', channel.id))}"
        try:
            answer = await self._call(api, channel, "setWebhook", {
                "url": url, "secret_token": channel.config["secretToken"], "allowed_updates": ["message"]})
        except httpx.HTTPError as error:
            # Not the error's text: it may carry the URL, and with it the bot token.
            raise BadInput(f"the Telegram Bot API did not answer ({type(error).__name__})") from None
        if not answer.is_success:
            raise BadInput(f"Telegram refused the bot's webhook: {_description(answer)}")

    async def uninstalled(self, api, channel: Channel) -> None:
        if api is None:
            return
        answer = await self._call(api, channel, "deleteWebhook", {})
        if not answer.is_success:
            log.warning("deleteWebhook of channel %s: %s", channel.id, _description(answer))

    async def file_request(self, api, channel, source):
        """getFile gives the file's path; the download URL holds the bot token, so it
        stays inside this process (never stored, shown or logged)."""
        answer = await self._call(api, channel, "getFile", {"file_id": source["fileId"]})
        check(answer)
        path = _result(answer).get("file_path")
        if not isinstance(path, str) or not path:
            raise Rejected("getFile gave no file_path (a file over 20 MB cannot be downloaded by a bot)")
        return f"{api.settings.telegram_api_base}/file/bot{channel.config['botToken']}/{path}", {}

    async def deliver(self, api, out) -> str | None:
        chat_id = out.contact.external_id
        # The Bot API's chat_id is an Integer (or an @username): sent as the number it came as.
        chat = int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id

        async def send(method: str, payload: dict) -> str | None:
            answer = await self._call(api, out.channel, method, {"chat_id": chat, **payload})
            check(answer)
            message_id = _result(answer).get("message_id")
            # Message ids count per chat: the chat makes it the channel's.
            return f"{chat_id}:{message_id}" if message_id is not None else None

        parts = []
        if out.message.body.strip():
            parts.append(lambda: send("sendMessage", {"text": out.message.body}))
        for attachment in out.message.attachments or []:
            if attachment["kind"] == "IMAGE":
                parts.append(lambda url=attachment["url"]: send("sendPhoto", {"photo": url}))
            else:
                parts.append(lambda url=attachment["url"]: send("sendDocument", {"document": url}))
        return await send_parts(out, parts)


def _description(answer: Answer) -> str:
    body = answer.json()
    described = body.get("description") if isinstance(body, dict) else None
    return f"{answer.status}: {described or answer.reason_phrase}"[:300]


APP = apps.register(Telegram())
