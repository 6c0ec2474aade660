"""Handing replies to the messaging apps' APIs, with each answer classified as
sent, retryable (network, timeout, 429, 5xx) or rejected (other 4xx). Each app's
module builds its calls (its `deliver`); this module holds what they share."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Awaitable, Callable

import httpx

from inbox import media
from inbox.queue import Rejected, Retryable
from inbox.sending import Outgoing


@dataclass(frozen=True)
class Answer:
    """A messaging app's answer, as the apps' modules read it."""

    status: int
    reason_phrase: str
    content_type: str
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> object:
        """The JSON body; None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _reason(answer: Answer) -> str:
    """The messaging app's own words where it gives them (Graph API `error.message`,
    Twilio `message`, Telegram `description`), else the status line."""
    body = answer.json()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return f"{answer.status}: {error['message']}"
        if isinstance(error, str):
            return f"{answer.status}: {error}"
        for name in ("message", "description"):
            if isinstance(body.get(name), str) and body[name]:
                return f"{answer.status}: {body[name]}"
    text = answer.body.decode("utf-8", "replace").strip()[:300]
    return f"{answer.status}: {text or answer.reason_phrase}"


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
    their `api`."""

    def __init__(self, settings) -> None:
        from . import providers

        self.settings = settings
        self.http = httpx.AsyncClient(timeout=settings.send_timeout)
        providers()  # every app registered

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, url: str, **kwargs) -> Answer:
        return _answer(await self.http.post(url, **kwargs))

    async def get(self, url: str, **kwargs) -> Answer:
        return _answer(await self.http.get(url, **kwargs))

    async def deliver(self, out: Outgoing) -> str | None:
        from . import provider

        if any(attachment.get("mediaId") for attachment in out.message.attachments or []):
            # The server's own files go out as signed, expiring URLs the app can fetch.
            out.message.attachments = [
                {**attachment, "url": media.signed_link(attachment["mediaId"], media.APP)}
                if attachment.get("mediaId") and attachment.get("storage") == media.STORED else attachment
                for attachment in out.message.attachments]
        try:
            return await provider(out.channel.kind).deliver(self, out)
        except httpx.TransportError as error:  # connection refused, reset, timeouts
            raise Retryable(f"network error: {type(error).__name__}: {error}"[:300]) from error


def _answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, response.reason_phrase, response.headers.get("content-type", ""),
                  response.content)
