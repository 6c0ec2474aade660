"""Messaging apps as the domain sees them: each kind of channel is one MessagingApp
(its module under channels/ subclasses it and registers it), and the rest of the
inbox asks the registry rather than switching on the kind. Framework-free: what needs
HTTP gets the caller's `api` (channels/outbound.py's Providers) as an argument.

Also the reply-window rules (Meta's and WhatsApp's messaging-window policies): when a
reply may be sent, computed from the messaging app's time of the contact's latest
message."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, ClassVar

from models import Channel, ChannelKind

from . import validation
from .errors import BadInput, Forbidden

REPLY_WINDOW_CLOSED = "REPLY_WINDOW_CLOSED"


class WindowState(str, Enum):
    OPEN = "OPEN"
    HUMAN_AGENT = "HUMAN_AGENT"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Window:
    state: WindowState
    closes_at: datetime | None  # when the current state ends; None for CLOSED


def window(last_inbound_at: datetime | None, now: datetime, *, open_for: timedelta,
           human_agent_until: timedelta | None = None) -> Window:
    """OPEN for `open_for` after the contact's latest message, then HUMAN_AGENT until
    `human_agent_until` (when the app allows tagged replies), then CLOSED. A time in the
    future (a skewed clock) counts as now: it never holds a window open longer."""
    if last_inbound_at is None:
        return Window(WindowState.CLOSED, None)
    start = min(last_inbound_at, now)
    if now < start + open_for:
        return Window(WindowState.OPEN, start + open_for)
    if human_agent_until is not None and now < start + human_agent_until:
        return Window(WindowState.HUMAN_AGENT, start + human_agent_until)
    return Window(WindowState.CLOSED, None)


@dataclass(frozen=True)
class Template:
    """A pre-approved message (WhatsApp's Content API): its id and placeholder values."""

    content_sid: str
    variables: tuple[str, ...] = ()


class MessagingApp:
    """One kind of channel. The defaults are those of an app with no policy of its own."""

    kind: ClassVar[ChannelKind]
    # Where the app posts its webhooks on this server ("{}" is the channel's id); None: no webhooks.
    webhook_path: ClassVar[str | None] = None
    # Whether sendMessage(template:) is for this app.
    takes_templates: ClassVar[bool] = False
    # The config an install must have (the contract's names); `check_config` may check more.
    required_config: ClassVar[tuple[str, ...]] = ()
    config_required: ClassVar[bool] = True

    def check_config(self, config: dict | None) -> dict:
        """The config to store, validated (BadInput)."""
        if config is None and self.config_required:
            raise BadInput(f"a {self.kind.value} channel needs its {self.kind.value.lower()} settings")
        config = dict(config or {})
        for key in self.required_config:
            config[key] = validation.text(config.get(key), key, 1024)
        return config

    def can_reply(self, channel: Channel) -> None:
        """Raises when the channel cannot send replies at all."""

    def reply_window(self, channel: Channel, last_inbound_at: datetime | None, now: datetime) -> Window | None:
        """None: the app has no window policy, a reply may always be sent."""
        return None

    async def installed(self, api: Any, channel: Channel) -> None:
        """Called once the channel is stored (registering its webhook with the app, say).
        Raising undoes the install."""

    async def uninstalled(self, api: Any, channel: Channel) -> None:
        """Called after the uninstall; a failure is logged, never undoes it."""

    async def file_request(self, api: Any, channel: Channel, source: dict) -> tuple[Any, dict]:
        """Where an inbound attachment's file is fetched from (server/media.py): its URL,
        and what the request needs besides (httpx's `auth`, `headers`, `extensions`,
        `follow_redirects`)."""
        if not source.get("url"):
            raise ValueError("no URL for this file")
        return source["url"], {}

    async def template_text(self, api: Any, channel: Channel, template: Template) -> str:
        """The text a template shows, its placeholders filled in (what the inbox stores)."""
        raise BadInput(f"templates are for WhatsApp conversations, not {self.kind.value}")


_APPS: dict[ChannelKind, MessagingApp] = {}


def register(app: MessagingApp) -> MessagingApp:
    _APPS[app.kind] = app
    return app


def of(kind: ChannelKind) -> MessagingApp:
    try:
        return _APPS[kind]
    except KeyError:
        raise BadInput(f"no messaging app is installed for {kind.value}") from None


def all_apps() -> list[MessagingApp]:
    return list(_APPS.values())


def window_of(channel: Channel, last_inbound_at: datetime | None, now: datetime | None = None) -> Window | None:
    return of(channel.kind).reply_window(channel, last_inbound_at, now or datetime.now(timezone.utc))


def require_open(window_now: Window | None) -> None:
    """Free text (and attachments) only while the window is not CLOSED."""
    if window_now is not None and window_now.state is WindowState.CLOSED:
        raise Forbidden("the messaging app's reply window is closed: the contact has not written for too long",
                        reason=REPLY_WINDOW_CLOSED)
