"""What every webhook endpoint shares (SPEC §3): each one finds the channel (404 when
unknown or uninstalled: its secret is per channel), checks the signature over exactly
what was sent (403), parses the whole body (400), and only then stores."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from inbox import installed
from inbox.errors import InboxError
from models import Channel, ChannelKind


async def channel_of(request: Request, kind: ChannelKind) -> Channel | None:
    """The installed channel of this kind the path names, or None."""
    from schema.ids import pk_of  # not at import: the schema is built from the apps of this package

    try:
        pk = pk_of(request.path_params["channel_id"], "Channel")
    except InboxError:
        return None
    channel = await installed.channel(pk)
    return channel if channel is not None and channel.kind is kind else None


def not_found() -> Response:
    return PlainTextResponse("unknown channel", status_code=404)


def forbidden() -> Response:
    return PlainTextResponse("bad or missing signature", status_code=403)


def malformed(error: Exception) -> Response:
    return PlainTextResponse(f"malformed webhook: {error}"[:300], status_code=400)
