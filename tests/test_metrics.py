"""GET /metrics (issue 11, part 9): off unless INBOX_METRICS_TOKEN is set, then only for
that bearer token, in Prometheus' text format; every family moves when its thing happens.

The metrics server is a second app on the session server's database and hub (lifespan
off, as tests/test_access.py's `whatsapp_closed`), with a token. Metrics are per process
and the test server runs in this one, so what clients do against either server shows in
its scrapes; tests compare a scrape before with one after."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from schema.ids import global_id, parse_global_id
from test_limits import deep_selection
from test_realtime import BIG_EVENTS, connect_without_reading, topic_subscribers

from conftest import (DEADLINE, Client, DirectEvents, RunningServer, Subscriber, eventually,
                      subscriptions_live)

TOKEN = "metrics-secret-token"
FAMILIES = ("inbox_graphql_requests", "inbox_refusals", "inbox_open_websockets", "inbox_open_subscriptions",
            "inbox_websocket_closes", "inbox_subscription_backlog_bytes", "inbox_group_commit_batch_size",
            "inbox_broadcast_reconnects", "inbox_broadcast_gaps", "inbox_queue_depth",
            "inbox_queue_oldest_age_seconds")
CONVERSATION_CHANGED = "subscription { conversationChanged { id kind } }"


@dataclasses.dataclass
class Metrics:
    server: RunningServer
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.server.url

    async def scrape(self) -> dict[tuple[str, frozenset], float]:
        """Every sample by name and labels."""
        response = await self.http.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(response.text) for sample in family.samples}

    async def value(self, name: str, **labels) -> float:
        return (await self.scrape()).get((name, frozenset(labels.items())), 0.0)

    def client(self, token: str | None) -> Client:
        return Client(self.url, token, self.http)


@pytest.fixture
async def metrics(app_with, http):
    """A fresh app (its queue gauges never read yet) with INBOX_METRICS_TOKEN set."""
    return Metrics(await app_with(metrics_token=TOKEN), http)


async def counted(metrics: Metrics, action, name: str, **labels) -> float:
    """How much the sample moved over `await action()`."""
    before = await metrics.value(name, **labels)
    await action()
    return await metrics.value(name, **labels) - before


# -- the endpoint -------------------------------------------------------------------------

async def test_metrics_is_404_like_an_unknown_path_when_no_token_is_set(server, http):
    response = await http.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    unknown = await http.get(f"{server.url}/no-such-path")
    assert response.status_code == unknown.status_code == 404
    assert response.text == unknown.text


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x",
                                           f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN])
async def test_metrics_without_the_right_bearer_token_is_401(metrics, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await metrics.http.get(f"{metrics.url}/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "inbox_" not in response.text


async def test_metrics_with_the_token_is_prometheus_text_with_every_family(metrics):
    response = await metrics.http.get(f"{metrics.url}/metrics", headers={"Authorization": f"bearer  {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert set(FAMILIES) <= names


# -- requests by operation type and error code --------------------------------------------

async def test_queries_and_mutations_are_counted_by_type_and_code_on_the_direct_path(metrics, company):
    admin = metrics.client(company.admin.token)
    assert await counted(metrics, lambda: admin.data("{ me { id } }"),
                         "inbox_graphql_requests_total", operation_type="query", code="") == 1
    missing = "mutation($c: ID!) { closeConversation(conversationId: $c) { id } }"
    assert await counted(metrics, lambda: admin.execute(missing, {"c": global_id("Conversation", 0)}),
                         "inbox_graphql_requests_total", operation_type="mutation", code="NOT_FOUND") == 1


async def test_requests_through_strawberrys_view_are_counted(metrics, company):
    async def get_query():
        response = await metrics.http.get(f"{metrics.url}/graphql", params={"query": "{ me { id } }"},
                                          headers={"Authorization": f"Bearer {company.admin.token}"})
        assert response.status_code == 200, response.text

    assert await counted(metrics, get_query, "inbox_graphql_requests_total", operation_type="query", code="") == 1

    async def bad_document():
        assert await metrics.client(company.admin.token).error_code("{ me { nope } }") == "BAD_USER_INPUT"

    assert await counted(metrics, bad_document, "inbox_graphql_requests_total",
                         operation_type="query", code="BAD_USER_INPUT") == 1


async def test_unauthenticated_and_unreadable_requests_are_counted_with_their_code(metrics):
    async def no_token():
        assert (await metrics.client(None).post("{ me { id } }")).status_code == 401

    assert await counted(metrics, no_token, "inbox_graphql_requests_total",
                         operation_type="unknown", code="UNAUTHENTICATED") == 1


async def test_websocket_queries_and_subscriptions_are_counted(metrics, server, company, subscribers):
    async def over_websocket():
        sub = await subscribers(company.admin.token)
        op = await sub.subscribe("query { me { id } }")
        assert (await sub.receive())["id"] == op
        await sub.subscribe(CONVERSATION_CHANGED)
        await subscriptions_live(company)

    before = await metrics.scrape()
    await over_websocket()
    after = await metrics.scrape()

    def moved(operation_type: str) -> float:
        key = ("inbox_graphql_requests_total", frozenset({"operation_type": operation_type, "code": ""}.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("query") == 1
    assert moved("subscription") == 1


# -- refusals per bound -------------------------------------------------------------------

async def test_body_too_large_counts_a_refusal(metrics, company):
    async def too_large():
        response = await metrics.http.post(f"{metrics.url}/graphql", content=b"x" * (1024 * 1024 + 1),
                                           headers={"Content-Type": "application/json"})
        assert response.status_code == 413

    assert await counted(metrics, too_large, "inbox_refusals_total", bound="http_body_bytes") == 1


@pytest.mark.parametrize("bound, document", [
    ("query_depth", f"query($id: ID!) {{ conversation(id: $id) {{ {deep_selection(13)} }} }}"),
    ("query_tokens", "{ me { " + "id " * 1001 + "} }"),
    ("query_aliases", "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(31)) + " }"),
])
async def test_document_limits_count_a_refusal_every_time_even_from_the_cache(metrics, company, bound, document):
    admin = metrics.client(company.admin.token)

    async def twice():
        for _ in range(2):
            assert await admin.error_code(document, {"id": global_id("Conversation", 0)}) == "BAD_USER_INPUT"

    assert await counted(metrics, twice, "inbox_refusals_total", bound=bound) == 2


async def test_an_overflowing_subscriber_counts_a_refusal_and_a_1013_close(metrics, server, company):
    # As test_realtime's slow consumer: a client that stops reading, big events in bursts,
    # until its subscription leaves the fan-out (its backlog went past the buffer).
    message = await company.inbound("x" * 4096)
    events = await DirectEvents.of(message)
    _, message_pk = parse_global_id(message["id"])
    slow = await connect_without_reading(server, company.admin.token)
    await slow.send(json.dumps({"id": "slow", "type": "subscribe", "payload": {
        "query": BIG_EVENTS, "variables": {"c": message["conversation"]["id"]}}}))
    await subscriptions_live(company)
    before = await metrics.scrape()

    for _ in range(2000):
        if topic_subscribers(events.company_id) < 1:
            break
        for _ in range(10):
            await events.publish(await events.payload("MESSAGE_ADDED", message_pk))
        await asyncio.sleep(0)  # memory:// publishes never yield: let the hub fan them out
    else:
        raise AssertionError("the slow consumer never overflowed its buffer")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(slow.recv(), DEADLINE)
    assert closed.value.rcvd.code == 1013

    after = await metrics.scrape()
    refusals = ("inbox_refusals_total", frozenset({"bound": "subscription_buffer"}.items()))
    closes = ("inbox_websocket_closes_total", frozenset({"code": "1013"}.items()))
    assert after[refusals] - before.get(refusals, 0) == 1
    assert after[closes] - before.get(closes, 0) == 1


# -- sockets, subscriptions, closes -------------------------------------------------------

async def nothing_open(metrics: Metrics) -> None:
    """Waits until the sockets and subscriptions of earlier tests have ended on the server
    (their clients closed them; the server's side ends a moment later): a baseline that
    cannot move under the test."""
    for gauge in ("inbox_open_websockets", "inbox_open_subscriptions"):
        await eventually(lambda: metrics.value(gauge), lambda v: v == 0)


async def test_open_sockets_and_subscriptions_follow_clients(metrics, company):
    await nothing_open(metrics)

    sub = await Subscriber.connect(metrics.server, company.admin.token)
    assert await metrics.value("inbox_open_websockets") == 1
    op = await sub.subscribe(CONVERSATION_CHANGED)
    await subscriptions_live(company)
    assert await metrics.value("inbox_open_subscriptions") == 1

    await sub.socket.send(json.dumps({"id": op, "type": "complete"}))
    await eventually(lambda: metrics.value("inbox_open_subscriptions"), lambda v: v == 0)
    await sub.close()
    await eventually(lambda: metrics.value("inbox_open_websockets"), lambda v: v == 0)


async def test_a_closed_socket_ends_its_subscriptions_in_the_gauge(metrics, company):
    await nothing_open(metrics)
    sub = await Subscriber.connect(metrics.server, company.admin.token)
    await sub.subscribe(CONVERSATION_CHANGED)
    await sub.subscribe("subscription { notificationReceived { id } }")
    await eventually(lambda: metrics.value("inbox_open_subscriptions"), lambda v: v == 2)
    await sub.close()
    await nothing_open(metrics)


async def test_legacy_protocol_subscriptions_are_counted_until_stopped(metrics, company):
    await nothing_open(metrics)
    sub = await Subscriber.connect(metrics.server, company.admin.token, protocol="graphql-ws")
    await sub.socket.send(json.dumps({"id": "1", "type": "start", "payload": {"query": CONVERSATION_CHANGED}}))
    await subscriptions_live(company)
    assert await metrics.value("inbox_open_subscriptions") == 1
    await sub.socket.send(json.dumps({"id": "1", "type": "stop"}))
    await eventually(lambda: metrics.value("inbox_open_subscriptions"), lambda v: v == 0)
    await sub.close()


async def test_a_refused_connection_counts_a_4403_close(metrics, server):
    async def refused():
        socket = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer nope"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), DEADLINE)
        assert closed.value.rcvd.code == 4403

    assert await counted(metrics, refused, "inbox_websocket_closes_total", code="4403") == 1


async def test_a_socket_whose_token_cannot_be_checked_counts_a_1011_close(metrics, server, monkeypatch):
    from server import app

    async def database_down(token):
        raise ConnectionError("database down")

    monkeypatch.setattr(app, "authenticate", database_down)

    async def internal_error():
        socket = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer any"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), DEADLINE)
        assert closed.value.rcvd.code == 1011

    assert await counted(metrics, internal_error, "inbox_websocket_closes_total", code="1011") == 1


# -- queues, group commits, the broadcast backend ------------------------------------------

async def test_a_queued_reply_shows_in_the_send_queue_depth_and_age(metrics, company, fakes, monkeypatch):
    from fakes import HANG
    from server import metrics as server_metrics
    from test_sending import install_partner, send

    monkeypatch.setattr(server_metrics, "QUEUE_READ_EVERY", 0.0)  # every scrape reads
    partner = await install_partner(company, fakes)
    fakes.script(partner.name, HANG, (200, {"externalMessageId": "ext-metrics"}))
    await send(company.ann, partner.conversation_id, "Queued while the partner hangs")
    # The first attempt hangs for the 1 s send timeout: the row waits meanwhile.
    scraped = await metrics.scrape()
    assert scraped[("inbox_queue_depth", frozenset({"queue": "send"}.items()))] >= 1
    assert scraped[("inbox_queue_oldest_age_seconds", frozenset({"queue": "send"}.items()))] > 0
    assert ("inbox_queue_depth", frozenset({"queue": "outbox"}.items())) in scraped


async def test_a_scrape_while_the_database_fails_still_answers(metrics, company, monkeypatch):
    from inbox import queue
    from server import metrics as server_metrics

    async def down(rows):
        raise ConnectionError("database down")

    monkeypatch.setattr(queue, "backlog", down)
    monkeypatch.setattr(server_metrics, "QUEUE_READ_EVERY", 0.0)  # every scrape reads
    before = await metrics.value("inbox_queue_read_failures_total")
    scraped = await metrics.scrape()
    assert scraped[("inbox_queue_read_failures_total", frozenset())] == before + 1
    assert ("inbox_open_websockets", frozenset()) in scraped

    async def hangs(rows):
        await asyncio.Future()

    monkeypatch.setattr(queue, "backlog", hangs)
    monkeypatch.setattr(server_metrics, "QUEUE_READ_TIMEOUT", 0.05)
    assert ("inbox_open_websockets", frozenset()) in await metrics.scrape()


async def test_an_inbound_message_is_one_group_commit_batch(metrics, company):
    assert await counted(metrics, lambda: company.inbound("batched"), "inbox_group_commit_batch_size_count") >= 1


async def test_a_failed_publish_counts_a_gap_and_the_reconnect(metrics, monkeypatch):
    from subscriptions.hub import Hub

    hub = Hub("memory://")
    await hub.start()
    try:
        gaps = await metrics.value("inbox_broadcast_gaps_total")
        reconnects = await metrics.value("inbox_broadcast_reconnects_total")

        async def fail(channel, message):
            raise ConnectionError("boom")

        monkeypatch.setattr(hub._broadcast, "publish", fail)
        assert await hub.publish("metrics.gap", {"n": 1}) is False
        assert await metrics.value("inbox_broadcast_gaps_total") == gaps + 1
        await eventually(lambda: metrics.value("inbox_broadcast_reconnects_total"), lambda v: v == reconnects + 1)
    finally:
        await hub.stop()
