"""Where kept files live and how they come and go (issue 16): the stores (a folder, or an
S3-compatible bucket), the worker that fetches inbound attachments from their messaging
app and erases deleted ones, and the HTTP routes GET /media/{id} and POST /media.

Keys are `<company>/<channel>/<conversation>/<id>` for inbound files and
`<company>/uploads/<id>` for uploads: a company's or a conversation's files share a prefix.
The rules (who may open what, the quota, the states) are inbox/media.py's."""
from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import tempfile
from collections import Counter
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import quote, urlparse

import httpx
from tortoise.transactions import in_transaction
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from inbox import accounts, apps, media
from inbox.attachments import KINDS, kind_of
from inbox.errors import NotFound
from inbox.queue import GONE, QueueWorker, Rejected, Retryable, due_rows, lease
from models import Channel, MediaFile, User

from . import metrics
from .http import bearer

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# Served as a download, never inline: a user's HTML or SVG would run as this server's page.
ACTIVE_TYPES = {"text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml",
                "text/javascript", "application/javascript"}


class TooLarge(Exception):
    pass


# --- stores ----------------------------------------------------------------------------------------

class FolderStore:
    """Files under one folder (INBOX_MEDIA_DIR): zero set-up, one host."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / key

    async def put(self, key: str, source: Path) -> None:
        def move() -> None:
            target = self._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)  # within one file system: atomic

        await asyncio.to_thread(move)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end (inclusive)."""
        handle = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).exists)

    async def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    def scratch(self) -> Path:
        """Where a file being fetched is written: the same file system, so `put` is a rename."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root


class S3Store:
    """Files in an S3-compatible bucket (INBOX_MEDIA_S3_URL=s3://bucket/prefix): any process
    on any host serves any file. boto3's client is thread-safe; its calls run in threads."""

    def __init__(self, url: str, *, endpoint: str = "", region: str = "us-east-1", access_key_id: str = "",
                 secret_access_key: str = "") -> None:
        import boto3
        from botocore.config import Config

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError("INBOX_MEDIA_S3_URL must look like s3://bucket/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = boto3.client(
            "s3", endpoint_url=endpoint or None, region_name=region or None,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            # Path-style addressing where an endpoint is given: MinIO, moto and most
            # S3-compatible stores answer on one host name, not one per bucket.
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, signature_version="s3v4",
                          s3={"addressing_style": "path"} if endpoint else None))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, source: Path) -> None:
        try:
            await asyncio.to_thread(self.client.upload_file, str(source), self.bucket, self._key(key))
        finally:
            with suppress(FileNotFoundError):
                source.unlink()

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        answer = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self._key(key),
                                         Range=f"bytes={start}-{end}")
        body = answer["Body"]
        try:
            while True:
                chunk = await asyncio.to_thread(body.read, CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def scratch(self) -> Path:
        return Path(tempfile.gettempdir())


def store_of(settings) -> FolderStore | S3Store:
    if settings.media_s3_url:
        return S3Store(settings.media_s3_url, endpoint=settings.media_s3_endpoint, region=settings.media_s3_region,
                       access_key_id=settings.media_s3_access_key_id,
                       secret_access_key=settings.media_s3_secret_access_key)
    return FolderStore(settings.media_dir)


def key_of(row: MediaFile) -> str:
    if row.conversation_id is None or row.uploaded_by_id is not None:
        return f"{row.company_id}/uploads/{row.id}"
    return f"{row.company_id}/{row.channel_id}/{row.conversation_id}/{row.id}"


# --- fetching and erasing --------------------------------------------------------------------------

def content_type_for(kind: str, answered: str, given: str | None, name: str | None) -> str:
    """The type the answer names; when it names none (or a generic one), the type the app
    gave or the name's; checked against the kind (Rejected when an IMAGE is not an image)."""
    answered = answered.partition(";")[0].strip().lower()
    if not answered or answered in ("application/octet-stream", "binary/octet-stream"):
        answered = (given or "").partition(";")[0].strip().lower() or (
            mimetypes.guess_type(name or "")[0] or "application/octet-stream")
    if kind != "FILE" and kind_of(answered) != kind:
        raise Rejected(f"the file is {answered}, not a{'n' if kind == 'IMAGE' else ''} {kind.lower()}")
    return answered[:255]


class MediaKeeper(QueueWorker):
    """Works the media_file rows: fetches PENDING files (at most
    INBOX_MEDIA_FETCHES_PER_CHANNEL of one channel at once across processes, counted from
    the leases; retried with backoff), deletes the bytes of ERASING ones."""

    name = "media"
    model = MediaFile

    def __init__(self, providers, store, settings, *, poll_seconds: float = 1.0, batch: int = 20) -> None:
        super().__init__(timeout=settings.media_fetch_timeout, backoff_seconds=settings.send_backoff_seconds,
                         retry_seconds=settings.media_retry_seconds, poll_seconds=poll_seconds, batch=batch)
        self.providers = providers
        self.store = store
        self.settings = settings
        self.per_channel = settings.media_fetches_per_channel

    async def claim(self) -> list[int]:
        now = datetime.now(timezone.utc)
        async with in_transaction() as connection:
            in_flight = Counter(await MediaFile.filter(status=media.PENDING, leased_until__gte=now)
                                .using_db(connection).values_list("channel_id", flat=True))
            due = await due_rows(MediaFile.filter(status__in=[media.PENDING, media.ERASING]), connection, now,
                                 self.room())
            ids = []
            for row in due:
                if row.status == media.PENDING:
                    if in_flight[row.channel_id] >= self.per_channel:
                        continue
                    in_flight[row.channel_id] += 1
                ids.append(row.id)
            await lease(MediaFile, ids, connection, now + self.lease)
        # Files of a channel at its bound wait for one of its fetches to finish.
        self.held_back = self.held_back or len(ids) < len(due)
        return ids

    async def perform(self, row: MediaFile):
        if row.status == media.ERASING:
            await self.store.delete(key_of(row))  # an error: retried (give_up below)
            await MediaFile.filter(id=row.id, status=media.ERASING).delete()
            return GONE
        if row.status != media.PENDING:
            return GONE
        if not await media.within_quota(row.company_id, self.settings.media_quota_bytes):
            await self._over_quota(row)
            return GONE
        return await self.call(self._download(row))

    async def succeed(self, row: MediaFile, result: tuple[Path, int, str]) -> None:
        path, size, content_type = result
        if not await media.within_quota(row.company_id, self.settings.media_quota_bytes, size):
            path.unlink(missing_ok=True)
            await self._over_quota(row)
            return
        try:
            await self.store.put(key_of(row), path)
        except Exception as error:  # the store may be away for a while
            path.unlink(missing_ok=True)
            await self.retry_or_give_up(row, f"storing the file: {type(error).__name__}")
            return
        if not await media.settle(row, media.STORED, size=size, content_type=content_type):
            await self.store.delete(key_of(row))  # erased while it was fetched

    async def _over_quota(self, row: MediaFile) -> None:
        metrics.refused("media_quota_bytes")
        await media.settle(row, media.OVER_QUOTA, error="the company's stored files are over its quota")

    async def _download(self, row: MediaFile) -> tuple[Path, int, str]:
        channel = await Channel.get_or_none(id=row.channel_id)
        if channel is None:
            raise Rejected("the channel is gone")
        try:
            url, request = await apps.of(channel.kind).file_request(self.providers, channel, row.source or {})
        except httpx.TransportError as error:
            raise Retryable(f"network error: {type(error).__name__}") from None
        except (KeyError, ValueError) as error:
            raise Rejected(f"no way to fetch this file ({type(error).__name__})") from None
        limit = self.settings.media_max_bytes
        handle = tempfile.NamedTemporaryFile(dir=self.store.scratch(), prefix=".fetch-", delete=False)
        path = Path(handle.name)
        try:
            try:
                async with self.providers.http.stream("GET", url, **{"follow_redirects": True, **request}) as answer:
                    if answer.status_code == 429 or answer.status_code >= 500:
                        raise Retryable(f"{answer.status_code} fetching the file")
                    if answer.status_code >= 300:
                        # Meta's CDN URLs expire; a 4xx will not change.
                        raise Rejected(f"{answer.status_code} fetching the file")
                    declared = answer.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise TooLarge()
                    content_type = content_type_for(row.kind, answer.headers.get("content-type", ""),
                                                    row.content_type, row.name)
                    size = 0
                    async for chunk in answer.aiter_bytes(CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise TooLarge()
                        await asyncio.to_thread(handle.write, chunk)
            except httpx.TransportError as error:
                # Not the error's text: for Telegram, the URL holds the bot token.
                raise Retryable(f"network error: {type(error).__name__}") from None
            handle.close()
            return path, size, content_type
        except TooLarge:
            handle.close()
            path.unlink(missing_ok=True)
            metrics.refused("media_max_bytes")
            raise Rejected(f"{media.TOO_LARGE}: the file is larger than {limit} bytes") from None
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            raise

    def reason_of(self, error: Exception) -> str:
        # Never an error's own text: an httpx error names its URL, Telegram's holds the token.
        return error.reason if isinstance(error, (Retryable, Rejected)) else type(error).__name__

    async def give_up(self, row: MediaFile, reason: str) -> None:
        if row.status == media.ERASING:  # bytes are never left behind: tried again, slowly
            await self.retry_later(row, reason)
            return
        status = media.TOO_LARGE if reason.startswith(media.TOO_LARGE) else media.FAILED
        log.info("media: file %s not kept: %s", row.id, reason)
        await media.settle(row, status, error=reason[:2000])


async def refresh_stored_bytes() -> None:
    """The per-company gauge of stored bytes, read at each scrape (one aggregate query);
    a company whose files are all gone drops out."""
    found = await media.stored_bytes_by_company()
    metrics.MEDIA_STORED_BYTES.clear()
    for company_id, total in found.items():
        metrics.MEDIA_STORED_BYTES.labels(company=str(company_id)).set(total)


# --- HTTP --------------------------------------------------------------------------------------------

def _not_found() -> Response:
    # Whatever the reason: another company's file, no access, erased, never existed.
    return PlainTextResponse("Not Found", status_code=404, headers={"X-Content-Type-Options": "nosniff"})


async def _viewer(request: Request) -> User | None:
    principal = await accounts.authenticate(bearer(request.headers.get("authorization")))
    return principal if isinstance(principal, User) else None


def _range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """(start, end) of a single `bytes=` range; None: the whole file; False: unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header or size == 0:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            length = int(last)
            return (max(0, size - length), size - 1) if length > 0 else False
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if start <= end and start < size else False


def disposition(row: MediaFile, inline: bool) -> str:
    name = row.name or f"{row.kind.lower()}{mimetypes.guess_extension(row.content_type or '') or ''}"
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"{'inline' if inline else 'attachment'}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def media_routes(store) -> list[Route]:
    async def serve(request: Request) -> Response:
        media_id = request.path_params["media_id"]
        if not media_id.isalnum() or len(media_id) > 32:
            return _not_found()
        query = request.query_params
        try:
            if query.get("signature"):
                holder = media.signature_holder(media_id, query.get("user"), query.get("expires"),
                                                query.get("signature"))
                if holder is None:
                    return _not_found()
                if holder == media.APP:
                    row = await media.stored(media_id)
                else:
                    user = await User.get_or_none(id=int(holder)) if holder.isdigit() else None
                    if user is None:
                        return _not_found()
                    row = await media.visible(user, media_id)
            else:
                viewer = await _viewer(request)
                if viewer is None:
                    return _not_found()
                row = await media.visible(viewer, media_id)
        except NotFound:
            return _not_found()
        content_type = (row.content_type or "application/octet-stream").lower()
        inline = content_type not in ACTIVE_TYPES and not content_type.startswith("text/")
        headers = {"X-Content-Type-Options": "nosniff", "Accept-Ranges": "bytes",
                   "Content-Disposition": disposition(row, inline),
                   "Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "private, max-age=300"}
        shown_type = content_type if inline else "application/octet-stream"
        wanted = _range(request.headers.get("range"), row.size)
        if wanted is False:
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{row.size}"})
        start, end = wanted or (0, row.size - 1)
        status = 206 if wanted else 200
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{end}/{row.size}"
        headers["Content-Length"] = str(max(0, end - start + 1))
        if row.size == 0:
            return Response(b"", media_type=shown_type, headers=headers)
        return StreamingResponse(store.read(key_of(row), start, end), status_code=status, media_type=shown_type,
                                 headers=headers)

    async def upload(request: Request) -> Response:
        """The body is the file; its type from Content-Type, its name from `?name=`."""
        viewer = await _viewer(request)
        if viewer is None:
            return JSONResponse({"errors": [{"message": "missing or invalid bearer token",
                                             "extensions": {"code": "UNAUTHENTICATED"}}]}, status_code=401)
        settings = request.app.state.settings
        body = await request.body()  # bounded by BodyLimit at INBOX_MEDIA_MAX_BYTES for this path
        name = (request.query_params.get("name") or "").strip()[:255] or None
        content_type = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
        content_type = content_type or mimetypes.guess_type(name or "")[0] or "application/octet-stream"
        kind = request.query_params.get("kind") or kind_of(content_type)
        if kind not in KINDS:
            return _bad(f"kind must be one of {', '.join(KINDS)}")
        if not body:
            return _bad("the body is the file, and it is empty")
        if not await media.within_quota(viewer.company_id, settings.media_quota_bytes, len(body)):
            metrics.refused("media_quota_bytes")
            return JSONResponse({"errors": [{"message": "the company's stored files are over its quota",
                                             "extensions": {"code": "FORBIDDEN", "reason": "MEDIA_QUOTA"}}]},
                                status_code=403)
        media_id = media.new_id()
        handle = tempfile.NamedTemporaryFile(dir=store.scratch(), prefix=".upload-", delete=False)
        with handle:
            await asyncio.to_thread(handle.write, body)
        await store.put(f"{viewer.company_id}/uploads/{media_id}", Path(handle.name))
        row = await media.add_upload(viewer, media_id, kind, name, content_type[:255], len(body))
        return JSONResponse({"id": row.id, "url": media.link(row.id), "kind": kind, "name": name,
                             "mimeType": row.content_type, "size": row.size}, status_code=201)

    return [Route("/media", upload, methods=["POST"]), Route("/media/{media_id}", serve, methods=["GET"])]


def _bad(message: str) -> Response:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]},
                        status_code=400)
