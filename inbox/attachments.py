"""Files sent with messages, by URL: what an attachment is, the bounds on the ones a
user or a partner gives, and how notes and emails show them (as links).

A message keeps its attachments as a list of {"kind", "url", "name", "mimeType"}
(Message.attachments, None when there are none). `url` is what a client may open: the
messaging app's URL, except where that URL would carry a credential (Telegram's file
URLs hold the bot token): there it is a reference to the app's file, `telegram-file:<id>`,
and the app's own id is kept beside it ("fileId")."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlparse

from . import media
from .errors import BadInput
from .validation import MAX_NAME

class Kind(str, Enum):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    FILE = "FILE"


KINDS = tuple(kind.value for kind in Kind)
# Twilio takes at most 10 media per message; the other apps get one call per file.
MAX_ATTACHMENTS = 10
MAX_URL = 2048


@dataclass(frozen=True)
class Given:
    """An attachment as a user or a partner gives it (AttachmentInput)."""

    kind: str
    url: str
    name: str | None = None


def kind_of(mime_type: str | None) -> str:
    """The kind of a file by its MIME type (image/png: IMAGE...)."""
    major = (mime_type or "").partition("/")[0].lower()
    return {"image": "IMAGE", "video": "VIDEO", "audio": "AUDIO"}.get(major, "FILE")


def of(kind: str, url: str, name: str | None = None, mime_type: str | None = None, **more) -> dict:
    """An attachment as stored, from what a messaging app said of it (cut to the bounds)."""
    return {"kind": kind if kind in KINDS else "FILE", "url": url[:MAX_URL],
            "name": name[:MAX_NAME] if isinstance(name, str) and name.strip() else None,
            "mimeType": mime_type[:MAX_NAME] if isinstance(mime_type, str) and mime_type.strip() else None, **more}


def checked(given: list[Given] | None) -> list[dict]:
    """Attachments given by a user or a partner: at most MAX_ATTACHMENTS, each an http(s)
    URL the messaging app can fetch; BadInput otherwise."""
    if not given:
        return []
    if len(given) > MAX_ATTACHMENTS:
        raise BadInput(f"at most {MAX_ATTACHMENTS} attachments")
    stored = []
    for item in given:
        kind = str(getattr(item.kind, "value", item.kind))
        if kind not in KINDS:
            raise BadInput(f"attachment kind must be one of {', '.join(KINDS)}")
        url = (item.url or "").strip()
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or len(url) > MAX_URL:
            raise BadInput(f"an attachment's url must be an http(s) URL of at most {MAX_URL} characters")
        name = item.name.strip() if item.name else None
        if name and len(name) > MAX_NAME:
            raise BadInput(f"an attachment's name is longer than {MAX_NAME} characters")
        stored.append(of(kind, url, name or None))
    return stored


def link_of(attachment: dict) -> str:
    """Where notes and emails point: a kept file by the server's own stable URL (the
    app's may expire or hold a credential), else the URL given."""
    return media.link(attachment["mediaId"]) if attachment.get("mediaId") else attachment["url"]


def links(attachments: list[dict] | None) -> list[str]:
    """One line per attachment for notes and emails: "[image] photo.jpg: https://…"."""
    lines = []
    for attachment in attachments or []:
        label = f"[{attachment['kind'].lower()}]"
        if attachment.get("name"):
            label += f" {attachment['name']}:"
        lines.append(f"{label} {link_of(attachment)}")
    return lines


def with_links(body: str, attachments: list[dict] | None) -> str:
    """A message's text followed by its attachments' links: how notes and emails show it."""
    return "\n".join(line for line in [body, *links(attachments)] if line)
