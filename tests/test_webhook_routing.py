"""Webhook POSTs go straight to their endpoints, past starlette's middleware and router
(channels/webhooks.py): through the real server, every answer (status, headers, bytes)
is the one starlette's router gives, errors and unknown paths or methods included, and
the body limit still stands in front."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Route

from channels import webhooks
from channels.webhooks import WebhooksFirst

from conftest import unique
from test_messenger import install_page, sign, text_message, webhook
from test_telegram import chat, install_bot, update
from test_twilio import PUBLIC_URL, e164, install_sender, twilio_signature


async def both_ways(monkeypatch, request) -> tuple[httpx.Response, httpx.Response, bool]:
    """`request()` sent twice to the running server: answered past starlette's router, then
    with that path turned off (starlette's router); both answers, and whether the first
    was answered past the router."""
    served = []
    real = WebhooksFirst._serve

    async def counted(self, *args):
        served.append(args[0])
        await real(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(WebhooksFirst, "_serve", counted)
        direct = await request()
    with monkeypatch.context() as patch:
        patch.setattr(WebhooksFirst, "_route", lambda self, scope: None)
        routed = await request()
    return direct, routed, bool(served)


def same(direct: httpx.Response, routed: httpx.Response) -> None:
    assert (direct.status_code, direct.content) == (routed.status_code, routed.content)
    # Every header, in order, but the time of the answer.
    assert ([item for item in direct.headers.multi_items() if item[0] != "date"]
            == [item for item in routed.headers.multi_items() if item[0] != "date"])


def signed_post(page, payload: dict | bytes, *, path: str | None = None, method: str = "POST",
                signature: str | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    async def request():
        return await page.http.request(method, path or page.url, content=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": signature or sign(body, page.app_secret)})

    return request


async def test_a_messenger_message_is_taken_past_the_router_with_the_routers_answer(company, http, server,
                                                                                   monkeypatch):
    page = await install_page(company, http, server)
    psid = unique("psid")
    # given two messages, one for each way (the same message twice would be a redelivery)
    messages = iter([text_message(psid, page.page_id, "first"), text_message(psid, page.page_id, "second")])

    async def request():
        return await signed_post(page, webhook(page.page_id, next(messages)))()

    direct, routed, past_the_router = await both_ways(monkeypatch, request)
    same(direct, routed)
    assert past_the_router and direct.status_code == 200 and direct.text == "EVENT_RECEIVED"
    assert [m["body"] for m in await page.messages()] == ["first", "second"]


@pytest.mark.parametrize("case", ["bad signature", "malformed", "unknown channel", "malformed channel id",
                                  "another kind's channel"])
async def test_a_refused_messenger_webhook_gets_the_routers_answer(company, http, server, monkeypatch, case):
    page = await install_page(company, http, server)
    payload = webhook(page.page_id, text_message(unique("psid"), page.page_id))
    request = {
        "bad signature": signed_post(page, payload, signature="sha256=" + "0" * 64),
        "malformed": signed_post(page, b'{"object": "page", "entry": 3}'),
        "unknown channel": signed_post(page, payload, path=page.url.rsplit("/", 1)[0] + "/Q2hhbm5lbDo5ODc2NTQzMjE="),
        "malformed channel id": signed_post(page, payload, path=page.url.rsplit("/", 1)[0] + "/not-an-id"),
        "another kind's channel": signed_post(page, payload, path=f"{server.url}/webhooks/telegram/{page.channel_id}"),
    }[case]
    direct, routed, past_the_router = await both_ways(monkeypatch, request)
    same(direct, routed)
    assert past_the_router and direct.status_code in (400, 403, 404)
    assert await page.messages() == []


@pytest.mark.parametrize("case", ["PUT", "GET without a token", "trailing slash", "no channel", "unknown app"])
async def test_what_no_webhook_route_takes_gets_the_routers_answer(company, http, server, monkeypatch, case):
    page = await install_page(company, http, server)
    payload = webhook(page.page_id, text_message(unique("psid"), page.page_id))
    request = {
        "PUT": signed_post(page, payload, method="PUT"),
        "GET without a token": signed_post(page, b"", method="GET"),
        "trailing slash": signed_post(page, payload, path=page.url + "/"),
        "no channel": signed_post(page, payload, path=f"{server.url}/webhooks/messenger"),
        "unknown app": signed_post(page, payload, path=f"{server.url}/webhooks/carrier-pigeon/{page.channel_id}"),
    }[case]
    direct, routed, past_the_router = await both_ways(monkeypatch, request)
    same(direct, routed)
    assert not past_the_router and direct.status_code in (403, 404, 405, 307)
    assert await page.messages() == []


async def test_a_webhook_over_the_body_limit_is_413_before_any_route(company, http, server, monkeypatch):
    page = await install_page(company, http, server)
    request = signed_post(page, b"x" * (server.settings.max_body_bytes + 1))
    direct, routed, past_the_router = await both_ways(monkeypatch, request)
    same(direct, routed)
    assert not past_the_router and direct.status_code == 413


async def test_a_webhook_whose_endpoint_fails_is_the_routers_500(company, http, server, monkeypatch):
    import channels.messenger

    page = await install_page(company, http, server)

    async def fails(*args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(channels.messenger, "apply", fails)
    request = signed_post(page, webhook(page.page_id, text_message(unique("psid"), page.page_id)))
    # (each on a connection of its own: the server closes one after an exception)
    direct, routed, past_the_router = await both_ways(monkeypatch, request)
    same(direct, routed)
    assert past_the_router and (direct.status_code, direct.text) == (500, "Internal Server Error")


async def test_a_whatsapp_message_signed_over_its_url_gets_the_routers_answer(company, http, server, monkeypatch):
    sender = await install_sender(company, http, server)
    number = e164()

    async def request():
        params = sender.inbound(number)
        return await http.post(server.url + sender.path, content=urlencode(params).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(PUBLIC_URL + sender.path, params, sender.auth_token)})

    direct, routed, past_the_router = await both_ways(monkeypatch, request)
    same(direct, routed)
    assert past_the_router and direct.status_code == 200 and direct.headers["content-type"].startswith("text/xml")
    assert len(await sender.messages()) == 2


async def test_a_telegram_update_gets_the_routers_answer(company, http, server, fakes, monkeypatch):
    bot = await install_bot(company, http, server, fakes)
    chat_id = chat()
    direct, routed, past_the_router = await both_ways(monkeypatch, lambda: bot.post(update(chat_id)))
    same(direct, routed)
    assert past_the_router and direct.status_code == 200
    assert len(await bot.messages()) == 2


# -- which routes are served past the router -----------------------------------------------------

async def _post(request):
    return None


def test_every_webhook_route_taking_posts_is_served_past_the_router():
    app = Starlette(routes=[Route("/graphql", _post, methods=["POST"]), *webhooks.routes])
    assert WebhooksFirst(app, webhooks.routes).served == [route for route in webhooks.routes
                                                         if "POST" in route.methods]


def test_a_route_of_the_app_that_may_take_a_webhooks_post_leaves_it_to_the_router():
    # given a route before the webhooks that takes POSTs of any path under /webhooks/
    app = Starlette(routes=[Route("/webhooks/{anything:path}", _post, methods=["POST"]), *webhooks.routes])
    # then no webhook is served past the router: the router would choose that route
    assert WebhooksFirst(app, webhooks.routes).served == []


def test_an_app_with_middleware_of_its_own_serves_every_webhook_through_it():
    app = Starlette(routes=webhooks.routes, middleware=[Middleware(GZipMiddleware)])
    assert WebhooksFirst(app, webhooks.routes).served == []
