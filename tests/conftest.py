"""Test harness: a real `inbox` server (uvicorn on 127.0.0.1) on a real SQLite file,
or PostgreSQL + Redis when INBOX_TEST_DATABASE_URL / INBOX_TEST_BROADCAST_URL are
set; HTTP and websocket clients that speak to it as any client would.

Each test makes its own company: tenants never see each other, so tests share
one server and database without resetting them."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import socket
import tempfile
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
import websockets

from server.app import create_app
from server.config import APP_SETTINGS, Settings, app_field
from server.serving import uvicorn_options

TEST_DATABASE_URL = os.environ.get("INBOX_TEST_DATABASE_URL")
TEST_BROADCAST_URL = os.environ.get("INBOX_TEST_BROADCAST_URL")
DEADLINE = 10.0


def backend_names() -> str:
    return f"{'postgres' if TEST_DATABASE_URL else 'sqlite'}+{'redis' if TEST_BROADCAST_URL else 'memory'}"


def pytest_report_header(config):
    return f"inbox backends: {backend_names()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def reset_postgres(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


def make_settings(**overrides) -> Settings:
    base = Settings.from_env()
    values = dict(base.__dict__)
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningServer:
    url: str
    settings: Settings
    server: uvicorn.Server
    task: asyncio.Task

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"

    async def stop(self) -> None:
        self.server.should_exit = True
        # A graceful stop waits for the background workers (sender, mailer, media, the
        # hub's last gap announcement) to finish their database work: on a loaded CI
        # machine with PostgreSQL that took over 10 s once.
        await asyncio.wait_for(self.task, 3 * DEADLINE)


async def start_server(settings: Settings, lifespan: str = "on") -> RunningServer:
    """`lifespan="off"`: a second app on the running server's database and hub. The first
    server opened them for this process, and a second lifespan would re-initialise (and, on
    stop, close) the process-wide ORM connections."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            **{**uvicorn_options(settings), "log_level": "warning", "lifespan": lifespan})
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("server did not start")
    return RunningServer(f"http://127.0.0.1:{port}", settings, server, task)


@contextlib.asynccontextmanager
async def second_app(settings: Settings):
    """A second app beside the session's server (`start_server(..., lifespan="off")`) for
    the length of a `with` block: its URL."""
    running = await start_server(settings, lifespan="off")
    try:
        yield running.url
    finally:
        await running.stop()


@pytest.fixture
async def app_with(server):
    """`await app_with(setting=value, ...)`: a second app on the session server's database
    and hub with those settings changed (a RunningServer), stopped when the test ends."""
    started: list[RunningServer] = []

    async def start(**changes) -> RunningServer:
        started.append(await start_server(dataclasses.replace(server.settings, **changes), lifespan="off"))
        return started[-1]

    yield start
    for running in started:
        await running.stop()


@pytest.fixture(scope="session")
async def fakes():
    """Fake Meta Graph API, Twilio API and partner callbacks (tests/fakes.py)."""
    from fakes import start_fakes

    providers, fake_server, task = await start_fakes()
    yield providers
    fake_server.should_exit = True
    await asyncio.wait_for(task, DEADLINE)


def app_apis(fakes) -> dict:
    """Every URL setting of the messaging apps but those set here, pointed at the fake
    server's /apps/<field>/: an app added as a module of channels/ is tested against the
    fake its own tests serve there (FakeProviders.serve_app), without editing this file."""
    return {app_field(name): fakes.app_base(app_field(name))
            for name, default, _ in APP_SETTINGS if "://" in default
            and app_field(name) not in ("messenger_api_base", "twilio_api_base", "twilio_content_api_base",
                                        "telegram_api_base")}


@pytest.fixture(scope="session")
async def server(fakes, mailbox):
    tmp = tempfile.mkdtemp(prefix="inbox-test-")
    database_url = TEST_DATABASE_URL or f"sqlite://{tmp}/inbox.sqlite3"
    if TEST_DATABASE_URL:
        await reset_postgres(TEST_DATABASE_URL)
    # Sends time out after 1 s and are retried for 3 s from 50 ms on, so that retry
    # and give-up paths run in a test's time.
    settings = make_settings(database_url=database_url, broadcast_url=TEST_BROADCAST_URL or "memory://",
                             public_url="http://inbox.test", subscription_buffer=50,
                             # Its own broadcast channels: another test session on the same
                             # Redis (another database) must not be heard here.
                             broadcast_namespace=f"inbox-test-{uuid.uuid4().hex[:8]}",
                             **app_apis(fakes), messenger_api_base=fakes.messenger_base,
                             twilio_api_base=fakes.twilio_base, twilio_content_api_base=fakes.twilio_content_base,
                             telegram_api_base=fakes.telegram_base,
                             send_timeout=1.0, send_retry_seconds=3.0, send_backoff_seconds=0.05,
                             # The fake partner endpoints listen on 127.0.0.1.
                             callback_allow_private=True,
                             # Emails go to the test SMTP server; bursts collapse over 0.3 s.
                             smtp_url=mailbox.url, email_collapse_seconds=0.3, email_timeout=2.0,
                             email_backoff_seconds=0.05, email_retry_seconds=30.0,
                             # Kept files: a folder of this run, or S3 (moto) with
                             # INBOX_TEST_MEDIA_S3=1; files of at most 1 MB, 3 MB per company.
                             media_dir=f"{tmp}/media", media_max_bytes=MEDIA_MAX_BYTES,
                             media_quota_bytes=MEDIA_QUOTA_BYTES, media_retry_seconds=3.0, media_fetch_timeout=5.0,
                             **(s3_settings(start_moto(), "inbox-test-media", "run") if TEST_MEDIA_S3 else {}))
    running = await start_server(settings)
    yield running
    await running.stop()


MEDIA_MAX_BYTES = 1_000_000
MEDIA_QUOTA_BYTES = 3_000_000
TEST_MEDIA_S3 = os.environ.get("INBOX_TEST_MEDIA_S3", "") not in ("", "0")
_moto: list = []


def start_moto() -> str:
    """A real S3-protocol server on 127.0.0.1 (moto's server mode), one per test run; its URL."""
    if not _moto:
        from moto.server import ThreadedMotoServer

        port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        _moto.append((moto, f"http://127.0.0.1:{port}"))
    return _moto[0][1]


def s3_settings(endpoint: str, bucket: str, prefix: str) -> dict:
    """Settings for a bucket of that S3 server, created if needed."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    if bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=bucket)
    return {"media_s3_url": f"s3://{bucket}/{prefix}", "media_s3_endpoint": endpoint, "media_s3_region": "us-east-1",
            "media_s3_access_key_id": "test", "media_s3_secret_access_key": "test"}


class GraphQLError(AssertionError):
    pass


@dataclass
class Client:
    """A GraphQL client with one bearer token."""

    base_url: str
    token: str | None
    http: httpx.AsyncClient

    async def post(self, query: str, variables: dict | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return await self.http.post(f"{self.base_url}/graphql", json={"query": query, "variables": variables or {}},
                                    headers=headers, **kwargs)

    async def execute(self, query: str, variables: dict | None = None) -> dict:
        """The response body (data and errors)."""
        response = await self.post(query, variables)
        return response.json()

    async def data(self, query: str, variables: dict | None = None) -> dict:
        """The data of a query that must succeed."""
        body = await self.execute(query, variables)
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"], indent=1))
        return body["data"]

    async def error_code(self, query: str, variables: dict | None = None) -> str:
        """The code of the first error of a query that must fail."""
        body = await self.execute(query, variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]["extensions"]["code"]


_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


@dataclass
class Company:
    """A company with an admin, two members and a CUSTOM channel shared with `ann`."""

    admin: Client
    ann: Client
    bob: Client
    ids: dict = field(default_factory=dict)
    channel_id: str = ""
    partner: Client | None = None
    _message_counter: itertools.count = field(default_factory=itertools.count)

    async def inbound(self, body: str = "hello", contact: str = "c1", name: str | None = None,
                      external_id: str | None = None, sent_at: str | None = None,
                      partner: Client | None = None) -> dict:
        """An inbound message from a contact, pushed the way a partner integration does."""
        variables = {"input": {
            "externalMessageId": external_id or f"m-{next(self._message_counter)}-{uuid.uuid4().hex[:8]}",
            "sender": {"externalId": contact, "name": name or f"Contact {contact}"},
            "body": body, **({"sentAt": sent_at} if sent_at else {})}}
        data = await (partner or self.partner).data(RECEIVE, variables)
        return data["receiveChannelMessage"]

    async def conversation_of(self, message: dict) -> str:
        return message["conversation"]["id"]


RECEIVE = """
mutation($input: ReceiveMessageInput!) {
  receiveChannelMessage(input: $input) { id body cursor direction status sentAt senderName
    conversation { id status } }
}"""


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        yield client


async def new_company(server: RunningServer, http: httpx.AsyncClient) -> Company:
    from inbox.accounts import bootstrap

    _, admin_row, admin_token = await bootstrap(unique("Acme"), "Ada Admin", f"{unique('ada')}@example.com")
    return await staff_company(server.url, http, admin_token)


async def staff_company(base_url: str, http: httpx.AsyncClient, admin_token: str,
                        callback_url: str | None = None) -> Company:
    """Around a new company's admin: ann, a member of its CUSTOM channel, and bob, who is
    not; the channel replies to `callback_url` when given."""
    admin = Client(base_url, admin_token, http)
    company = Company(admin=admin, ann=admin, bob=admin)
    for key, name in (("ann", "Ann Agent"), ("bob", "Bob Agent")):
        data = await admin.data(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { user { id } apiToken } }",
            {"i": {"name": name, "email": f"{unique(key)}@example.com"}})
        setattr(company, key, Client(base_url, data["createUser"]["apiToken"], http))
        company.ids[key] = data["createUser"]["user"]["id"]
    company.ids["admin"] = (await admin.data("{ me { id } }"))["me"]["id"]
    custom = {"custom": {"callbackUrl": callback_url}} if callback_url else {}
    data = await admin.data(
        "mutation($i: InstallChannelInput!) { installChannel(input: $i) { channel { id } channelToken } }",
        {"i": {"kind": "CUSTOM", "name": "Partner app", **custom}})
    company.channel_id = data["installChannel"]["channel"]["id"]
    company.partner = Client(base_url, data["installChannel"]["channelToken"], http)
    await admin.data("mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }",
                     {"c": company.channel_id, "u": [company.ids["ann"]]})
    return company


@pytest.fixture
async def company(server, http) -> Company:
    return await new_company(server, http)


@pytest.fixture
async def other_company(server, http) -> Company:
    return await new_company(server, http)


class Subscriber:
    """A graphql-transport-ws client holding one or more subscriptions."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, server: RunningServer, token: str | None, protocol: str = "graphql-transport-ws",
                      compression: str | None = None):
        """`compression="deflate"`: permessage-deflate, as browsers negotiate it; without
        it the server writes shared frames straight to the socket (subscriptions/direct.py)."""
        socket = await websockets.connect(server.ws_url, subprotocols=[protocol], compression=compression)
        await socket.send(json.dumps({"type": "connection_init",
                                      "payload": {"authorization": f"Bearer {token}"} if token else {}}))
        reply = json.loads(await asyncio.wait_for(socket.recv(), DEADLINE))
        assert reply["type"] == "connection_ack", reply
        return cls(socket)

    async def subscribe(self, query: str, variables: dict | None = None) -> str:
        op_id = str(next(self._ids))
        await self.socket.send(json.dumps({"id": op_id, "type": "subscribe",
                                           "payload": {"query": query, "variables": variables or {}}}))
        return op_id

    async def receive(self, timeout: float = DEADLINE) -> dict:
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
            if message["type"] not in ("ping", "pong", "ka"):
                return message

    async def next_data(self, timeout: float = DEADLINE) -> dict:
        message = await self.receive(timeout)
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        return message["payload"]["data"]

    async def nothing_within(self, seconds: float = 0.3) -> bool:
        try:
            message = await self.receive(seconds)
        except asyncio.TimeoutError:
            return True
        raise AssertionError(f"unexpected message {message}")

    async def close(self) -> None:
        await self.socket.close()


@pytest.fixture
async def subscribers(server):
    opened: list[Subscriber] = []

    async def open_one(token, protocol="graphql-transport-ws", compression=None) -> Subscriber:
        sub = await Subscriber.connect(server, token, protocol, compression)
        opened.append(sub)
        return sub

    yield open_one
    for sub in opened:
        await sub.close()


class QueryCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        # Each statement with its parameters, for tests that look for a value in them.
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.statements.append(record.getMessage())


@pytest.fixture
def count_queries():
    """Counts the SQL statements the in-process server runs (tortoise logs each one)."""
    logger = logging.getLogger("tortoise.db_client")
    counter = QueryCounter()
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    yield counter
    logger.removeHandler(counter)
    logger.setLevel(previous)


async def eventually(probe, done, timeout: float = DEADLINE, interval: float = 0.05):
    """Polls `await probe()` until `done(result)` holds and returns that result; fails at
    the deadline with the last result. For state with no event to wait on (a status
    reached through a background sender or a webhook)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"still not there after {timeout:g} s: {result!r}")
        await asyncio.sleep(interval)


async def company_pk(company: Company) -> int:
    from schema.ids import pk_of

    import models
    return (await models.Channel.get(id=pk_of(company.channel_id, "Channel"))).company_id


async def subscriptions_live(company: Company, count: int = 1) -> None:
    """Waits until `count` subscriptions of the company are in the hub's fan-out with the
    upstream (Redis) subscription confirmed: a subscription starts asynchronously after
    the client's `subscribe` (the protocol has no acknowledgement), and only from then
    on is no event missed. The test server runs in this process, so its hub is this one."""
    from subscriptions import direct
    from inbox.events import company_topic
    from subscriptions.publish import current_hub

    topic = company_topic(await company_pk(company))

    async def state():
        hub = current_hub()
        return hub._topics.get(topic), direct.live_subscriptions(hub, topic)

    await eventually(state, lambda s: s[0] is not None and s[1] >= count
                     and s[0].ready.done() and s[0].ready.result() is None, interval=0.01)




@dataclass(frozen=True)
class DirectEvents:
    """Publishes a conversation's ConversationChanged events straight through the hub, as
    the domain does after a commit, each with its row but nothing else of an action: for
    volume tests."""

    company_id: int
    channel_id: int
    conversation_id: int
    audience: tuple[int, ...]

    @classmethod
    async def of(cls, message: dict) -> "DirectEvents":
        """For the conversation of a message returned by `Company.inbound`."""
        import models
        from inbox.access import audience
        from schema.ids import pk_of

        conversation = await models.Conversation.get(id=pk_of(message["conversation"]["id"], "Conversation"))
        return cls(conversation.company_id, conversation.channel_id, conversation.id,
                   await audience(conversation.channel_id))

    async def payload(self, kind: str = "ASSIGNED", message_id: int | None = None) -> dict:
        """A new event of the conversation: its row (live streams read their items), not
        yet published."""
        from datetime import datetime, timezone

        import models
        from inbox.events import ConversationChanged

        row = await models.ConversationEvent.create(
            company_id=self.company_id, conversation_id=self.conversation_id, kind=models.EventKind(kind),
            message_id=message_id, occurred_at=datetime.now(timezone.utc))
        return ConversationChanged(
            company_id=self.company_id, channel_id=self.channel_id, conversation_id=self.conversation_id,
            audience=self.audience, event_id=row.id, kind=kind, actor_id=None,
            assignee_id=None, message_id=message_id, occurred_at=row.occurred_at.isoformat(),
        ).to_payload()

    async def publish(self, payload: dict) -> None:
        from inbox.events import company_topic
        from subscriptions.publish import current_hub

        assert await current_hub().publish(company_topic(self.company_id), payload)

    @staticmethod
    def global_id(payload: dict) -> str:
        """The `id` a client receives for the event."""
        from schema.ids import global_id

        return global_id("ConversationEvent", payload["event_id"])


MESSAGE_STATE = "query($id: ID!) { node(id: $id) { ... on Message { id status failureReason sentAt } } }"


async def message_state(client: Client, message_id: str) -> dict:
    """An outbound message's delivery state as the client sees it."""
    return (await client.data(MESSAGE_STATE, {"id": message_id}))["node"]


async def message_reaches(client: Client, message_id: str, status: str) -> dict:
    """Polls (with the deadline) until the message has that status; returns its state."""
    return await eventually(lambda: message_state(client, message_id), lambda m: m["status"] == status)


@pytest.fixture(scope="session")
async def mailbox():
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that the session server sends its
    notification emails to (tests/smtp_server.py)."""
    from smtp_server import Mailbox

    box = Mailbox(free_port())
    box.start()
    yield box
    box.stop()
