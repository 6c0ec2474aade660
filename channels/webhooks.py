"""The messaging apps' webhook endpoints (SPEC §3). Each one finds the channel (404
when unknown or uninstalled: its secret is per channel), checks the signature over
exactly what was sent (403), parses the whole body (400), and only then stores."""
from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from inbox import installed
from inbox.errors import BadInput, InboxError, NotFound
from models import Channel, ChannelKind
from schema.ids import pk_of

from . import Malformed, messenger, twilio

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def _channel(request: Request, kind: ChannelKind) -> Channel | None:
    try:
        pk = pk_of(request.path_params["channel_id"], "Channel")
    except InboxError:
        return None
    channel = await installed.channel(pk)
    return channel if channel is not None and channel.kind is kind else None


def _not_found() -> Response:
    return PlainTextResponse("unknown channel", status_code=404)


def _forbidden() -> Response:
    return PlainTextResponse("bad or missing signature", status_code=403)


def _malformed(error: Exception) -> Response:
    return PlainTextResponse(f"malformed webhook: {error}"[:300], status_code=400)


async def messenger_verify(request: Request) -> Response:
    """Meta's subscription handshake: echo `hub.challenge` when the verify token matches."""
    channel = await _channel(request, ChannelKind.MESSENGER)
    if channel is None:
        return _not_found()
    params = request.query_params
    token = params.get("hub.verify_token") or ""
    if params.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token.encode(), channel.config["verifyToken"].encode()):
        return PlainTextResponse(params.get("hub.challenge", ""))
    return PlainTextResponse("verification failed", status_code=403)


async def messenger_event(request: Request) -> Response:
    channel = await _channel(request, ChannelKind.MESSENGER)
    if channel is None:
        return _not_found()
    body = await request.body()
    if not messenger.signature_valid(body, request.headers.get("x-hub-signature-256"), channel.config["appSecret"]):
        return _forbidden()
    try:
        events = messenger.parse(body)
        await messenger.apply(channel, events, request.app.state.profiles)
    except (Malformed, BadInput) as error:
        return _malformed(error)
    except NotFound:  # uninstalled meanwhile
        return _not_found()
    return PlainTextResponse("EVENT_RECEIVED")


def signed_url(request: Request) -> str:
    """The URL Twilio signed: the public one when set (behind a proxy the request's own
    host and scheme are not what Twilio called), with the path and query as sent."""
    public = request.app.state.settings.public_url
    if not public:
        return str(request.url)
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{public}{path}?{query}" if query else f"{public}{path}"


async def twilio_event(request: Request) -> Response:
    channel = await _channel(request, ChannelKind.WHATSAPP)
    if channel is None:
        return _not_found()
    params = twilio.form(await request.body())
    # A body that is not even a form cannot carry a valid signature.
    if params is None or not twilio.signature_valid(signed_url(request), params,
                                                    request.headers.get("x-twilio-signature"),
                                                    channel.config["authToken"]):
        return _forbidden()
    try:
        await twilio.apply(channel, twilio.parse(params))
    except (Malformed, BadInput) as error:
        return _malformed(error)
    except NotFound:  # uninstalled meanwhile
        return _not_found()
    return Response(EMPTY_TWIML, media_type="text/xml")


routes = [
    Route("/webhooks/messenger/{channel_id}", messenger_verify, methods=["GET"]),
    Route("/webhooks/messenger/{channel_id}", messenger_event, methods=["POST"]),
    Route("/webhooks/twilio/{channel_id}", twilio_event, methods=["POST"]),
]
