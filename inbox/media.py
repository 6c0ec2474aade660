"""Files kept by the server (issue 16): inbound attachments fetched from their messaging
app, and users' uploads for replies. Each file is a MediaFile row; its bytes live in a
store (server/media.py: a folder or an S3 bucket) that this module never touches.

An inbound attachment gets a `mediaId` and a `storage` state in the message's JSON when
the message is stored: PENDING until the worker has fetched it, then STORED (its URL is
the server's own), or FAILED / TOO_LARGE / OVER_QUOTA for good. The row is also the
queue row of its fetch, and of its erasure (ERASING) once its conversation or channel
goes: the worker deletes the bytes, then the row.

URLs: `/media/{id}` opens with a user's bearer token, or with a signature, for one user
(what Attachment.url gives, so that `<img src>` works in a browser) or for the
messaging app a reply's file is handed to."""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlencode

from tortoise.functions import Sum

from models import MediaFile, Message, User

from . import sql
from .access import visible_conversation
from .errors import BadInput, NotFound

PENDING = "PENDING"
STORED = "STORED"
FAILED = "FAILED"
TOO_LARGE = "TOO_LARGE"
OVER_QUOTA = "OVER_QUOTA"
ERASING = "ERASING"
# What an attachment may say of its file (Attachment.storage); NOT_KEPT: a URL a user gave.
NOT_KEPT = "NOT_KEPT"
STATES = (PENDING, STORED, FAILED, TOO_LARGE, OVER_QUOTA, NOT_KEPT)
# Who a signature lets open a file besides a user: the messaging app a reply goes to.
APP = "app"


class _Config:
    public_url = ""
    secret = secrets.token_bytes(32)
    url_seconds = 3600.0
    wake: Callable[[], None] | None = None


def configure(public_url: str, secret: str, url_seconds: float, wake: Callable[[], None] | None) -> None:
    """Set by the server at start: where /media is, the signing key (random when not set:
    then only this process's signatures open files), and the worker to wake."""
    _Config.public_url = public_url.rstrip("/")
    _Config.secret = secret.encode() if secret else _Config.secret
    _Config.url_seconds = max(60.0, url_seconds)
    _Config.wake = wake


def wake() -> None:
    if _Config.wake is not None:
        sql.call_on_loop(_Config.wake)


def new_id() -> str:
    return secrets.token_hex(16)


def link(media_id: str) -> str:
    """The file's stable URL (bearer token needed): how notes and emails show it."""
    return f"{_Config.public_url}/media/{media_id}"


def media_id_of(url: str) -> str | None:
    """The id in one of the server's own /media URLs (what POST /media answered), else None."""
    prefix = f"{_Config.public_url}/media/"
    if not url.startswith(prefix):
        return None
    media_id = url[len(prefix):].partition("?")[0]
    return media_id if media_id.isalnum() and len(media_id) <= 32 else None


def _signature(media_id: str, audience: str, expires: int) -> str:
    return hmac.new(_Config.secret, f"{media_id}\n{audience}\n{expires}".encode(), hashlib.sha256).hexdigest()[:40]


def signed_link(media_id: str, audience: str, now: float | None = None) -> str:
    """`/media/{id}` with a signature for `audience` (a user's id, or APP). It expires
    between one and two URL lifetimes from now, on a boundary, so that the same file
    has the same URL for a while (browsers cache it)."""
    step = _Config.url_seconds
    expires = int((math.floor((now or time.time()) / step) + 2) * step)
    query = {"expires": expires, "signature": _signature(media_id, audience, expires)}
    if audience != APP:
        query = {"user": audience, **query}
    return f"{link(media_id)}?{urlencode(query)}"


def signature_holder(media_id: str, user: str | None, expires: str | None, signature: str | None,
                     now: float | None = None) -> str | None:
    """Whom a signed URL was made for (a user's id or APP), or None when it is not valid
    (wrong, or expired)."""
    if not (expires and expires.isdigit() and signature) or int(expires) < (now or time.time()):
        return None
    audience = user if user else APP
    return audience if hmac.compare_digest(signature, _signature(media_id, audience, int(expires))) else None


# --- inbound ---------------------------------------------------------------------------------------

def keep(attachments: list[dict] | None) -> None:
    """Gives each of an inbound message's attachments its file's id (before the message is stored)."""
    for attachment in attachments or []:
        attachment.setdefault("mediaId", new_id())
        attachment.setdefault("storage", PENDING)


async def queue_fetches(messages: list[Message]) -> int:
    """The fetch rows of the files of new inbound messages (in their transaction, so that
    no file is forgotten); the worker is woken after the commit."""
    now = datetime.now(timezone.utc)
    rows = [MediaFile(id=attachment["mediaId"], company_id=message.company_id, channel_id=message.channel_id,
                      conversation_id=message.conversation_id, message_id=message.id, kind=attachment["kind"],
                      name=attachment.get("name"), content_type=attachment.get("mimeType"), status=PENDING,
                      source={key: attachment[key] for key in ("url", "fileId") if attachment.get(key)},
                      next_attempt_at=now, created_at=now)
            for message in messages for attachment in message.attachments or []
            if attachment.get("storage") == PENDING]
    if rows:
        await MediaFile.bulk_create(rows)
    return len(rows)


async def settle(row: MediaFile, status: str, *, size: int = 0, content_type: str | None = None,
                 error: str | None = None) -> bool:
    """A fetch is over: the row and its message's attachment say how. False when the file
    was erased meanwhile (its conversation deleted): the caller drops the bytes."""
    fields = {"status": status, "next_attempt_at": None, "leased_until": None, "last_error": error}
    if status == STORED:
        fields.update(size=size, content_type=content_type)
    if not await MediaFile.filter(id=row.id, status=PENDING).update(**fields):
        return False
    if row.message_id is not None:
        await _mark(row.message_id, row.id, status, content_type)
    return True


async def _mark(message_id: int, media_id: str, status: str, content_type: str | None) -> None:
    from tortoise.transactions import in_transaction

    async with in_transaction():
        # Locked: two files of one message may settle at once.
        message = await Message.filter(id=message_id).select_for_update().first()
        if message is None:
            return
        changed = []
        for attachment in message.attachments or []:
            if attachment.get("mediaId") == media_id:
                attachment["storage"] = status
                if status == STORED and content_type:
                    attachment["mimeType"] = content_type
                changed.append(attachment)
        if changed:
            await Message.filter(id=message_id).update(attachments=message.attachments)


async def stored_bytes(company_id: int) -> int:
    found = await MediaFile.filter(company_id=company_id, status=STORED).annotate(total=Sum("size")).values("total")
    return int((found[0]["total"] if found else 0) or 0)


async def stored_bytes_by_company() -> dict[int, int]:
    """Every company's stored bytes (for /metrics): one aggregate query."""
    rows = await (MediaFile.filter(status=STORED).annotate(total=Sum("size")).group_by("company_id")
                  .values("company_id", "total"))
    return {row["company_id"]: int(row["total"] or 0) for row in rows}


async def within_quota(company_id: int, quota: int | None, adding: int = 0) -> bool:
    return quota is None or await stored_bytes(company_id) + adding <= quota


# --- erasing ---------------------------------------------------------------------------------------

async def erase_conversation(conversation_id: int) -> None:
    """Its files go with its messages (the worker deletes the bytes, then the rows)."""
    await _erase(MediaFile.filter(conversation_id=conversation_id))


async def erase_channel(channel_id: int) -> None:
    await _erase(MediaFile.filter(channel_id=channel_id))


async def _erase(rows) -> None:
    now = datetime.now(timezone.utc)
    if await rows.exclude(status=ERASING).update(status=ERASING, next_attempt_at=now, leased_until=None,
                                                 attempts=0, first_attempt_at=None, last_error=None):
        wake()


# --- uploads and access ---------------------------------------------------------------------------

async def add_upload(viewer: User, media_id: str, kind: str, name: str | None, content_type: str,
                     size: int) -> MediaFile:
    """A user's upload, its bytes already in the store: usable in the user's replies."""
    now = datetime.now(timezone.utc)
    return await MediaFile.create(id=media_id, company_id=viewer.company_id, uploaded_by_id=viewer.id, kind=kind,
                                  name=name, content_type=content_type, size=size, status=STORED, created_at=now)


async def visible(viewer: User, media_id: str) -> MediaFile:
    """A stored file the viewer may open: of a conversation they may see, or their own
    upload not sent yet. NotFound for anything else, whatever the reason."""
    row = await MediaFile.get_or_none(id=media_id, company_id=viewer.company_id, status=STORED)
    if row is None:
        raise NotFound("file not found")
    if row.conversation_id is None:
        if row.uploaded_by_id != viewer.id:
            raise NotFound("file not found")
        return row
    await visible_conversation(viewer, row.conversation_id)
    return row


async def stored(media_id: str) -> MediaFile:
    row = await MediaFile.get_or_none(id=media_id, status=STORED)
    if row is None:
        raise NotFound("file not found")
    return row


async def attach_uploads(viewer: User, conversation_id: int, files: list[dict]) -> None:
    """Attachments given by the server's own /media URL (an upload, or a file the viewer
    may see) become that stored file: the messaging app then gets a signed URL for it."""
    for attachment in files:
        media_id = media_id_of(attachment["url"])
        if media_id is None:
            attachment["storage"] = NOT_KEPT
            continue
        try:
            row = await visible(viewer, media_id)
        except NotFound:
            raise BadInput("an attachment's url names no file of yours") from None
        if row.conversation_id is None:  # an upload: from now on, the conversation's file
            await MediaFile.filter(id=row.id).update(conversation_id=conversation_id)
        attachment.update(url=link(row.id), mediaId=row.id, storage=STORED,
                          name=attachment.get("name") or row.name, mimeType=row.content_type)


def shown_url(attachment: dict, viewer: int | str | None) -> str:
    """Attachment.url: a stored file's signed URL for the viewer (a user's id, or APP for
    a partner); else the messaging app's URL, which the apps' modules keep only when it
    carries no credential."""
    if attachment.get("storage") == STORED and attachment.get("mediaId") and viewer is not None:
        return signed_link(attachment["mediaId"], str(viewer))
    return attachment["url"]


def storage_of(attachment: dict) -> str:
    return attachment.get("storage") or NOT_KEPT
