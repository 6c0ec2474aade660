"""Handing replies to the messaging apps' APIs, with each answer classified as
sent, retryable (network, timeout, 429, 5xx) or rejected (other 4xx). Each app's
module builds its calls (its `deliver`); this module holds what they share. Answers are
read up to MAX_ANSWER bytes; a partner's callbackUrl is called at the public address it
was checked to resolve to (inbox/callbacks.py), and redirects are never followed."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Awaitable, Callable

import httpx

from inbox import callbacks, media
from inbox.queue import Rejected, Retryable
from inbox.sending import NO_ANSWER, Outgoing

log = logging.getLogger(__name__)

# What is read of an answer: its id or error message is near the start, and more costs
# memory for nothing.
MAX_ANSWER = 64 * 1024
# The messaging app's own error message, as much of it as a failureReason keeps.
MAX_APP_MESSAGE = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Answer:
    """A messaging app's answer, its body cut at MAX_ANSWER bytes."""

    status: int
    reason_phrase: str
    content_type: str
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> object:
        try:
            return json.loads(self.body)
        except ValueError:  # not JSON, or cut short
            return None


def _short(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()[:MAX_APP_MESSAGE]


def _reason(answer: Answer) -> str:
    """The status and the messaging app's own words where it gives them (Graph API
    `error.message`, Twilio `message`, Telegram `description`, a partner's `error` or
    plain-text answer); never
    any other text of the answer (an HTML page is nobody's error message)."""
    body = answer.json()
    message = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(body.get("message"), str):
            message = body["message"]
        elif isinstance(body.get("description"), str):
            message = body["description"]
    elif answer.content_type.startswith("text/plain"):
        message = answer.body.decode("utf-8", "replace")
    message = _short(message or "") or _short(answer.reason_phrase)
    return f"{answer.status}: {message}" if message else str(answer.status)


def check(answer: Answer) -> None:
    if answer.is_success:
        return
    if answer.status == 429 or answer.status >= 500:
        raise Retryable(_reason(answer))
    raise Rejected(_reason(answer))


def field(answer: Answer, name: str) -> str | None:
    """A field of a JSON answer, as text (None when absent)."""
    body = answer.json()
    value = body.get(name) if isinstance(body, dict) else None
    return str(value) if value is not None else None


async def send_parts(out: Outgoing, parts: list[Callable[[], Awaitable[str | None]]]) -> str | None:
    """Sends a reply made of several calls (its text, then each attachment), each once:
    a retry starts after the last part the app accepted. Returns the app's id of the
    first part, the reply's id for status reports."""
    for index, send in enumerate(parts):
        if index < out.parts_sent:
            continue
        await out.part_sent(index + 1, await send(), more=index + 1 < len(parts))
    return out.first_external_id


class Providers:
    """One HTTP client for every messaging app's API; `deliver` is the sender's hook,
    and the apps' hooks that call their APIs (install, uninstall, templates) get it as
    their `api`. Its pool never makes a send wait: the sender bounds what is in flight
    (per channel and in all), and each send is bounded by the send timeout."""

    def __init__(self, settings) -> None:
        from channels import providers

        providers()  # every app registered
        self.settings = settings
        self.http = httpx.AsyncClient(
            timeout=settings.send_timeout, follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            # Bodies as sent, so that MAX_ANSWER bounds what is held, not what is unpacked.
            headers={"Accept-Encoding": "identity"})

    async def aclose(self) -> None:
        await self.http.aclose()

    async def deliver(self, out: Outgoing) -> str | None:
        from channels import provider

        if any(attachment.get("mediaId") for attachment in out.message.attachments or []):
            # The server's own files go out as signed, expiring URLs the app can fetch.
            out.message.attachments = [
                {**attachment, "url": media.signed_link(attachment["mediaId"], media.APP)}
                if attachment.get("mediaId") and attachment.get("storage") == media.STORED else attachment
                for attachment in out.message.attachments]
        try:
            return await provider(out.channel.kind).deliver(self, out)
        except httpx.TransportError as error:  # connection refused, reset, timeouts
            # Not the error's text in the reason (nor its URL in the log: it may carry a token).
            log.info("message %s on channel %s: %s", out.message.id, out.channel.id, type(error).__name__)
            raise Retryable(NO_ANSWER) from error

    async def post(self, url: str | httpx.URL, **kwargs) -> Answer:
        return await self._request("POST", url, **kwargs)

    async def get(self, url: str | httpx.URL, **kwargs) -> Answer:
        return await self._request("GET", url, **kwargs)

    async def _request(self, method: str, url: str | httpx.URL, **kwargs) -> Answer:
        async with self.http.stream(method, url, **kwargs) as response:
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) >= MAX_ANSWER:
                    break  # the rest is never read: closing the response drops the connection
            return Answer(response.status_code, response.reason_phrase,
                          response.headers.get("content-type", ""), bytes(body[:MAX_ANSWER]))

    async def checked_callback(self, callback_url: str) -> tuple[httpx.URL, str, str]:
        """The callbackUrl with its host replaced by the public address it resolves to
        now (checked again at every send: DNS may have changed since install), its Host
        header, and its host name."""
        try:
            url = httpx.URL(callback_url)
            host = url.raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeError):
            raise Rejected("the callbackUrl is not a valid URL") from None
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            address = await callbacks.address_to_call(host, port,
                                                      allow_private=self.settings.callback_allow_private)
        except callbacks.NotPublic:
            raise Rejected(callbacks.NOT_PUBLIC) from None
        except OSError as error:  # does not resolve
            log.info("callbackUrl host %r does not resolve: %r", host, error)
            raise Retryable(NO_ANSWER) from None
        return url.copy_with(host=address), url.netloc.decode("ascii"), host
