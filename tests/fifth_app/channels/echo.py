"""Echo: a fifth messaging app, made up for the tests, added the way docs/adding-a-messaging-app.md
says: this one module (with its GraphQL input type) and its tests, nothing else edited.

It lives in tests/fifth_app/channels/, a `channels/` folder that joins the channels package
when tests/fifth_app is on sys.path (tests/test_fifth_app.py runs a test session so); in
the server it would be channels/echo.py. Echo's made-up API: its webhook posts
`{"id", "from": {"id", "name"}, "text", "time"}` signed with the channel's API key
(`X-Echo-Signature: sha256=<hex HMAC of the body>`); a reply is `POST {base}/send`
with the key as a bearer token, answered `{"id": …}`."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

import strawberry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from channels import Malformed, Provider, web, without_nul
from channels.outbound import check, field, send_parts
from inbox import apps
from inbox.errors import BadInput, NotFound
from inbox.messages import Inbound, receive
from models import ChannelKind

# This app, as models/kinds.py reads it (literals, read without importing this module):
# its ChannelKind, its place among the kinds, its settings (environment variable, default, help).
KIND = "ECHO"
KIND_ORDER = 5
SETTINGS = [("INBOX_ECHO_API_BASE", "https://api.echo.example", "Echo API base (the tests' fifth messaging app)")]


@strawberry.input
class EchoConfigInput:
    api_key: str = strawberry.field(description="The Echo account's API key (it also signs the webhooks).")


def signature(key: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


async def webhook(request: Request) -> Response:
    channel = await web.channel_of(request, ChannelKind.ECHO)
    if channel is None:
        return web.not_found()
    body = await request.body()
    given = request.headers.get("x-echo-signature", "")
    if not hmac.compare_digest(given.encode("latin-1", "replace"), signature(channel.config["apiKey"], body).encode()):
        return web.forbidden()
    try:
        try:
            update = without_nul(json.loads(body))
            sender, sent_at = update["from"], datetime.fromtimestamp(update["time"], tz=timezone.utc)
            message_id, sender_id, text = str(update["id"]), str(sender["id"]), update["text"]
        except (ValueError, KeyError, TypeError, OverflowError) as error:
            raise Malformed(f"not an Echo message ({type(error).__name__})") from None
        await receive(channel, Inbound(external_message_id=message_id, sender_external_id=sender_id,
                                       sender_name=sender.get("name"), body=text, sent_at=sent_at,
                                       default_name="Echo user"))
    except (Malformed, BadInput) as error:
        return web.malformed(error)
    except NotFound:
        return web.not_found()
    return PlainTextResponse("ok")


class Echo(Provider):
    kind = ChannelKind.ECHO
    webhook_path = "/webhooks/echo/{}"
    input_field = "echo"
    config_input = EchoConfigInput
    required_config = ("apiKey",)

    def routes(self) -> list:
        return [Route("/webhooks/echo/{channel_id}", webhook, methods=["POST"])]

    async def deliver(self, api, out) -> str | None:
        async def send() -> str | None:
            answer = await api.post(f"{api.settings.echo_api_base}/send",
                                    json={"to": out.contact.external_id, "text": out.message.body},
                                    headers={"Authorization": f"Bearer {out.channel.config['apiKey']}"})
            check(answer)
            return field(answer, "id")

        return await send_parts(out, [send])


APP = apps.register(Echo())
