"""Many server processes serving one inbox (SPEC §6–§7), run as a deployment runs them:
real `inbox serve` processes on PostgreSQL and Redis, real websocket clients, and the
faults of both services (tests/cluster.py starts and stops them).

The PostgreSQL + Redis tests need INBOX_TEST_DATABASE_URL and INBOX_TEST_BROADCAST_URL
(the server, not the database, is used: each cluster gets a database of its own); the
Redis and PostgreSQL fault tests run private instances, never the machine's shared ones."""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest
import websockets

from cluster import (INBOX, MESSAGE_ADDED, SETUP, HoldingProxy, PrivatePostgres, RedisServer, ServerProcess,
                     bootstrap_admins, company_on, create_database, data_of, drop_database, inbound_on, live,
                     messages_of, next_of, on, run, server_env, start_servers)
from conftest import (DEADLINE, TEST_BROADCAST_URL, TEST_DATABASE_URL, Client, Company, Subscriber, eventually,
                      free_port, unique)
from schema.ids import pk_of

needs_postgres_and_redis = pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_BROADCAST_URL),
    reason="scale-out tests need PostgreSQL and Redis: set INBOX_TEST_DATABASE_URL and INBOX_TEST_BROADCAST_URL")

CONVERSATION_CHANGED = "subscription { conversationChanged { kind conversationId assignee { id } } }"
MESSAGE_UPDATED = "subscription { messageUpdated { id status } }"
NOTIFICATION_RECEIVED = "subscription { notificationReceived { kind conversation { id } } }"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"
SEND = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id status } }"
STATUS = "query($id: ID!) { node(id: $id) { ... on Message { status } } }"
REPORT = """mutation($e: String!, $s: DeliveryStatus!) {
  updateChannelMessageStatus(externalMessageId: $e, status: $s) { id status } }"""
HISTORY = """query($c: ID!) { conversation(id: $c) {
  unreadCount lastMessage { id }
  messages(first: 100) { edges { node { id body } } }
  events { kind message { id } } } }"""


MESSAGE_PAGE = """query($c: ID!, $a: String) { conversation(id: $c) {
  messages(first: 100, after: $a) { edges { node { id } } pageInfo { hasNextPage endCursor } } } }"""


def message_pk(message: dict) -> int:
    return pk_of(message["id"], "Message")


async def subscribed_from(sub: Subscriber, company: Company, server: ServerProcess) -> str:
    """A messageAdded subscription that is live: it is started after a stored message and
    replays the one after it, which it only does once subscribed upstream."""
    contact = unique("start")
    first = await inbound_on(company, server, f"{SETUP} start one", contact)
    second = await inbound_on(company, server, f"{SETUP} start two", contact)
    op = await sub.subscribe(MESSAGE_ADDED, {"after": first["cursor"]})
    assert (await data_of(sub, op))["messageAdded"]["id"] == second["id"]
    return op


# -- SQLite is one process ----------------------------------------------------------------


def sqlite_env(tmp_path) -> dict:
    return {"INBOX_DATABASE_URL": f"sqlite://{tmp_path}/inbox.sqlite3", "INBOX_BROADCAST_URL": "memory://"}


async def test_several_workers_on_sqlite_are_refused_naming_postgresql(tmp_path):
    # when: several workers are asked for on a SQLite database
    code, output = await run(INBOX, "serve", "--workers", "2", "--port", str(free_port()), env=sqlite_env(tmp_path))

    # then: it stops at once, saying what to use instead
    assert code != 0
    assert "PostgreSQL" in output and "--workers 2" in output


async def test_second_server_on_one_sqlite_file_stops_with_a_clear_message(tmp_path):
    # given: a server on a SQLite file
    first = ServerProcess(sqlite_env(tmp_path), "sqlite-first")
    await first.start()
    try:
        # when: another one starts on the same file
        code, output = await run(INBOX, "serve", "--port", str(free_port()), env=sqlite_env(tmp_path), timeout=30)

        # then: it stops, naming the reason, and the first one serves on
        assert code != 0
        assert "already running" in output and "PostgreSQL" in output
        assert await first.healthz() == 200
    finally:
        await first.stop()


# -- a cluster: two processes on one PostgreSQL database and Redis ------------------------------


@dataclass
class Cluster:
    database_url: str
    env: dict
    a: ServerProcess  # speaks to Redis through `proxy`
    b: ServerProcess
    proxy: HoldingProxy
    admins: list[str]


@pytest.fixture(scope="module")
async def cluster(fakes, mailbox):
    redis = urlparse(TEST_BROADCAST_URL)
    proxy = HoldingProxy(redis.hostname or "127.0.0.1", redis.port or 6379)
    await proxy.start()
    database_url = await create_database(TEST_DATABASE_URL)
    env = server_env(database_url, TEST_BROADCAST_URL, f"inbox-scale-{uuid.uuid4().hex[:8]}", fakes, mailbox)
    proxied = redis._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    a = ServerProcess({**env, "INBOX_BROADCAST_URL": proxied}, "a")
    b = ServerProcess(env, "b")
    try:
        # Both processes and a bootstrap start at once on the empty database: they must
        # not race on its migrations.
        _, admins = await asyncio.gather(start_servers(a, b), bootstrap_admins(database_url, 20))
        yield Cluster(database_url, env, a, b, proxy, admins)
    finally:
        await asyncio.gather(a.stop(), b.stop())
        await proxy.stop()
        await drop_database(database_url)


@pytest.fixture
async def company(cluster, http, fakes) -> Company:
    """A company on the cluster whose CUSTOM channel replies to a fake partner endpoint
    of its own (`company.ids["callback"]` is the endpoint's key)."""
    callback = unique("partner")
    made = await company_on(cluster.a, http, cluster.admins.pop(), fakes.callback_url(callback))
    made.ids["callback"] = callback
    return made


@pytest.fixture
async def sockets(cluster):
    opened: list[Subscriber] = []

    async def connect(server: ServerProcess, client: Client) -> Subscriber:
        sub = await Subscriber.connect(server, client.token)
        opened.append(sub)
        return sub

    yield connect
    for sub in opened:
        await sub.close()


@needs_postgres_and_redis
async def test_commands_started_together_on_an_empty_database_migrate_it_once():
    # given: an empty database
    database_url = await create_database(TEST_DATABASE_URL)
    try:
        # when: three commands that migrate first start at the same moment on it
        results = await asyncio.gather(*(run(INBOX, "bootstrap", "--company", f"Acme {i}", "--admin-name", "Ada",
                                             "--admin-email", f"ada{i}@example.com",
                                             env={"INBOX_DATABASE_URL": database_url}) for i in range(3)))

        # then: all of them succeed, and each migration was applied once
        assert [code for code, _ in results] == [0, 0, 0], results
        import asyncpg

        connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
        try:
            applied = await connection.fetch("SELECT app, name, COUNT(*) AS times FROM tortoise_migrations "
                                             "GROUP BY app, name")
        finally:
            await connection.close()
        assert applied and all(row["times"] == 1 for row in applied)
    finally:
        await drop_database(database_url)


@needs_postgres_and_redis
async def test_processes_started_together_on_an_empty_database_all_serve_it(cluster, http):
    # given: the cluster's two processes and a bootstrap, started at the same moment on an
    # empty database
    # then: both processes serve the bootstrapped admins
    for server in (cluster.a, cluster.b):
        assert (await Client(server.url, cluster.admins[0], http).data("{ me { isAdmin } }"))["me"]["isAdmin"]


@needs_postgres_and_redis
async def test_workers_option_runs_worker_processes_that_all_stream_live_events(cluster, company, sockets):
    # given: `inbox serve --workers 2`, and clients spread over its connections
    server = ServerProcess({**cluster.env, "INBOX_LOG_LEVEL": "INFO"}, "workers", workers=2)
    await server.start()
    try:
        clients = [await sockets(server, company.ann) for _ in range(6)]
        ops = [await subscribed_from(sub, company, cluster.b) for sub in clients]

        # when: a message arrives through another process
        sent = await inbound_on(company, cluster.b, "to every worker")

        # then: every client, on whichever worker, gets it
        for sub, op in zip(clients, ops):
            assert (await messages_of(sub, op))[0]["id"] == sent["id"]
        assert server.log().count("Started server process") == 2
    finally:
        await server.stop()


# -- every event reaches its clients on every process ------------------------------------------


@needs_postgres_and_redis
async def test_message_added_reaches_clients_on_another_process(cluster, company, sockets):
    # given: ann connected to process B
    sub = await sockets(cluster.b, company.ann)
    op = await subscribed_from(sub, company, cluster.b)

    # when: a message arrives through process A
    sent = await inbound_on(company, cluster.a, "across processes")

    # then: she gets it
    assert (await messages_of(sub, op))[0] == {"id": sent["id"], "body": "across processes", "cursor": sent["cursor"]}


@needs_postgres_and_redis
async def test_message_updated_reaches_clients_on_another_process(cluster, company, sockets, fakes):
    # given: a reply the partner took under an id of its own, and ann connected to process B
    conversation = (await inbound_on(company, cluster.a, "hello"))["conversation"]["id"]
    external_id = unique("ext")
    fakes.script(company.ids["callback"], (200, {"externalMessageId": external_id}))
    reply = (await on(company.admin, cluster.a).data(SEND, {"c": conversation, "b": "hi"}))["sendMessage"]
    await eventually(lambda: company.admin.data(STATUS, {"id": reply["id"]}), lambda d: d["node"]["status"] == "SENT")
    sub = await sockets(cluster.b, company.ann)
    op = await sub.subscribe(MESSAGE_UPDATED)
    await live(sub, company, cluster.b)

    # when: the partner reports it delivered through process A
    await on(company.partner, cluster.a).data(REPORT, {"e": external_id, "s": "DELIVERED"})

    # then: ann on B sees the new status
    assert (await data_of(sub, op))["messageUpdated"] == {"id": reply["id"], "status": "DELIVERED"}


@needs_postgres_and_redis
async def test_conversation_changed_reaches_clients_on_another_process(cluster, company, sockets):
    # given: a conversation, and ann connected to process B
    conversation = (await inbound_on(company, cluster.a, "hello"))["conversation"]["id"]
    sub = await sockets(cluster.b, company.ann)
    op = await sub.subscribe(CONVERSATION_CHANGED)
    await live(sub, company, cluster.b)

    # when: the admin assigns it to ann through process A
    await on(company.admin, cluster.a).data(ASSIGN, {"c": conversation, "u": company.ids["ann"]})

    # then: ann on B sees the assignment (skipping what the start of the test caused)
    while (event := (await data_of(sub, op))["conversationChanged"])["kind"] != "ASSIGNED":
        pass
    assert event == {"kind": "ASSIGNED", "conversationId": conversation, "assignee": {"id": company.ids["ann"]}}


@needs_postgres_and_redis
async def test_notification_received_reaches_clients_on_another_process(cluster, company, sockets):
    # given: a conversation, and ann connected to process B
    conversation = (await inbound_on(company, cluster.a, "hello"))["conversation"]["id"]
    sub = await sockets(cluster.b, company.ann)
    op = await sub.subscribe(NOTIFICATION_RECEIVED)
    await live(sub, company, cluster.b)

    # when: the admin assigns it to ann through process A
    await on(company.admin, cluster.a).data(ASSIGN, {"c": conversation, "u": company.ids["ann"]})

    # then: ann on B is notified (skipping the new-message notifications of the test's start)
    while (notification := (await data_of(sub, op))["notificationReceived"])["kind"] != "CONVERSATION_ASSIGNED_TO_ME":
        pass
    assert notification["conversation"] == {"id": conversation}


@needs_postgres_and_redis
async def test_events_reach_no_client_who_may_not_see_them_on_another_process(cluster, company, sockets):
    # given: bob (no access to the channel) connected to process B, with ann beside him
    bob = await sockets(cluster.b, company.bob)
    await bob.subscribe("subscription { messageAdded { id } }")
    ann = await sockets(cluster.b, company.ann)
    ann_op = await subscribed_from(ann, company, cluster.b)

    # when: a message arrives through process A
    sent = await inbound_on(company, cluster.a, "members only")

    # then: ann gets it and bob nothing
    assert (await messages_of(ann, ann_op))[0]["id"] == sent["id"]
    assert await bob.nothing_within(0.3)


# -- resuming across processes: ids, not arrival, set the order ---------------------------------


@needs_postgres_and_redis
async def test_message_committed_first_is_streamed_first_though_its_event_arrives_last(cluster, company, sockets):
    # given: a client on process B, and process A's traffic to Redis held back
    sub = await sockets(cluster.b, company.ann)
    op = await subscribed_from(sub, company, cluster.b)
    contact = unique("race")
    conversation = (await inbound_on(company, cluster.b, "opening", contact))["conversation"]["id"]
    assert (await messages_of(sub, op))[0]["body"] == "opening"
    cluster.proxy.hold()
    try:
        # when: A commits a message (its event stays held), then B commits the next one
        # and publishes it at once
        first = asyncio.create_task(inbound_on(company, cluster.a, "committed first", contact))
        await eventually(lambda: company.admin.data(HISTORY, {"c": conversation}),
                         lambda d: "committed first" in json.dumps(d))
        second = await inbound_on(company, cluster.b, "committed second", contact)

        # then: the client gets both, in id order, before A's event has even left A
        received = await messages_of(sub, op, 2)
        assert [m["body"] for m in received] == ["committed first", "committed second"]
        assert received[1]["id"] == second["id"]
        assert not first.done()
    finally:
        cluster.proxy.release()
    assert (await first)["id"] == received[0]["id"]

    # and: A's late event brings no duplicate
    third = await inbound_on(company, cluster.b, "after the race", contact)
    assert (await messages_of(sub, op))[0]["id"] == third["id"]


@needs_postgres_and_redis
async def test_event_one_process_failed_to_publish_ends_the_subscriptions_of_other_processes(
        cluster, company, sockets):
    # given: ann's subscription on process B, and a conversation
    conversation = (await inbound_on(company, cluster.b, "hello"))["conversation"]["id"]
    sub = await sockets(cluster.b, company.ann)
    op = await sub.subscribe(CONVERSATION_CHANGED)
    await live(sub, company, cluster.b)

    # when: process A cannot publish an assignment (Redis does not answer it in time), and
    # reaches Redis again afterwards
    cluster.proxy.hold()
    try:
        await on(company.admin, cluster.a).data(ASSIGN, {"c": conversation, "u": company.ids["ann"]})
    finally:
        cluster.proxy.release()

    # then: ann's subscription on B, which may have missed it, ends so that her client resumes
    while (await next_of(sub, op))["type"] != "complete":
        pass
    await cluster.a.healthy(200, timeout=DEADLINE)


@needs_postgres_and_redis
async def test_messages_committed_concurrently_on_two_processes_stream_in_id_order_everywhere(
        cluster, company, sockets):
    # given: clients on both processes
    subs = [await sockets(server, company.ann) for server in (cluster.a, cluster.b)]
    ops = [await subscribed_from(sub, company, server) for sub, server in zip(subs, (cluster.a, cluster.b))]

    # when: 30 messages are committed at once through both processes
    sent = await asyncio.gather(*(inbound_on(company, (cluster.a, cluster.b)[i % 2], f"burst {i}", f"c{i % 5}")
                                  for i in range(30)))

    # then: each client gets all of them once, in id (cursor) order
    expected = sorted(message_pk(m) for m in sent)
    for sub, op in zip(subs, ops):
        received = [message_pk(m) for m in await messages_of(sub, op, 30)]
        assert received == expected


@needs_postgres_and_redis
async def test_client_resuming_on_another_process_misses_nothing_and_gets_no_duplicate(cluster, company, sockets):
    # given: a client on process A that saw part of a burst committed through both processes
    first = await sockets(cluster.a, company.ann)
    op = await subscribed_from(first, company, cluster.a)
    burst = asyncio.gather(*(inbound_on(company, (cluster.a, cluster.b)[i % 2], f"burst {i}", f"c{i % 4}")
                             for i in range(20)))
    seen = await messages_of(first, op, 7)
    await first.close()
    sent = await burst

    # when: it reconnects to process B with the last cursor it saw, while messages keep coming
    second = await sockets(cluster.b, company.ann)
    resumed = await second.subscribe(MESSAGE_ADDED, {"after": seen[-1]["cursor"]})
    later = await inbound_on(company, cluster.a, "after the reconnect")

    # then: it gets every message after that cursor once, in order, then the live ones
    rest = await messages_of(second, resumed, 14)
    received = [message_pk(m) for m in seen + rest]
    assert received == sorted(message_pk(m) for m in [*sent, later])


CHANGED_AFTER = """subscription($after: String) {
  conversationChanged(after: $after) { id cursor kind conversationId } }"""
EVENTS = "query($c: ID!) { conversation(id: $c) { events { id } } }"


@needs_postgres_and_redis
async def test_conversation_changed_resumed_on_another_process_misses_nothing_and_gets_no_duplicate(
        cluster, company, sockets):
    # given: a client on process A that saw part of the events of a burst committed through
    # both processes (each message of a new conversation makes CREATED and MESSAGE_ADDED)
    first = await sockets(cluster.a, company.ann)
    op = await first.subscribe(CHANGED_AFTER)
    await live(first, company, cluster.a)
    contacts = [unique(f"resume{i}") for i in range(4)]
    burst = asyncio.gather(*(inbound_on(company, (cluster.a, cluster.b)[i % 2], f"burst {i}", contacts[i % 4])
                             for i in range(16)))
    seen = []
    while len(seen) < 7:
        event = (await data_of(first, op))["conversationChanged"]
        seen.append(event)
    await first.close()
    sent = await burst

    # when: it reconnects to process B with the last cursor it saw, while events keep coming
    second = await sockets(cluster.b, company.ann)
    resumed = await second.subscribe(CHANGED_AFTER, {"after": seen[-1]["cursor"]})
    later = await inbound_on(company, cluster.a, "after the reconnect", contacts[0])

    # then: it gets every event of those conversations after that cursor once, in order,
    # then the live ones
    conversations = {message["conversation"]["id"] for message in [*sent, later]}
    stored = [event["id"] for conversation in sorted(conversations)
              for event in (await on(company.admin, cluster.a).data(EVENTS, {"c": conversation}))
              ["conversation"]["events"]]
    wanted = sorted(stored, key=lambda gid: pk_of(gid, "ConversationEvent"))
    received = [event["id"] for event in seen if event["conversationId"] in conversations]
    while len(received) < len(wanted):
        event = (await data_of(second, resumed))["conversationChanged"]
        if event["conversationId"] in conversations:
            received.append(event["id"])
    assert received == wanted


# -- what each process knows of the signed-in ------------------------------------------------------


@needs_postgres_and_redis
async def test_availability_set_through_one_process_reads_fresh_on_another(cluster, company):
    # given: ann, signed in on process B (which keeps who she is per token)
    ann_on_b = on(company.ann, cluster.b)
    assert (await ann_on_b.data("{ me { available } }"))["me"]["available"] is True

    # when: she makes herself unavailable through process A
    await on(company.ann, cluster.a).data("mutation { setAvailability(available: false) { id } }")

    # then: process B reads her as unavailable at once, and cannot assign to her
    assert (await ann_on_b.data("{ me { available } }"))["me"]["available"] is False
    conversation = (await inbound_on(company, cluster.b, "hello"))["conversation"]["id"]
    refused = await on(company.admin, cluster.b).execute(ASSIGN, {"c": conversation, "u": company.ids["ann"]})
    assert refused["errors"][0]["extensions"]["code"] == "USER_UNAVAILABLE"


@needs_postgres_and_redis
async def test_a_channel_uninstalled_through_one_process_refuses_its_token_at_once_on_another(cluster, company):
    # given: the partner pushing through process B
    await inbound_on(company, cluster.b, "before")

    # when: the admin uninstalls the channel through process A
    await on(company.admin, cluster.a).data("mutation($c: ID!) { uninstallChannel(channelId: $c) }",
                                            {"c": company.channel_id})

    # then: process B refuses the partner's very next push and stores nothing: 401 once it
    # knows, NOT_FOUND while it still remembers the channel (inbox/installed.py)
    response = await on(company.partner, cluster.b).post(
        "mutation($i: ReceiveMessageInput!) { receiveChannelMessage(input: $i) { id } }",
        {"i": {"externalMessageId": unique("after"), "sender": {"externalId": "c1", "name": "C"}, "body": "hi"}})
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] in {"UNAUTHENTICATED", "NOT_FOUND"}


# -- background workers on every process ----------------------------------------------------------


@needs_postgres_and_redis
async def test_each_reply_is_sent_once_while_every_process_runs_a_sender(cluster, company, fakes):
    # given: a conversation
    conversation = (await inbound_on(company, cluster.a, "hello"))["conversation"]["id"]

    # when: 40 replies are queued through both processes at once
    replies = await asyncio.gather(*(on(company.admin, (cluster.a, cluster.b)[i % 2]).data(
        SEND, {"c": conversation, "b": f"reply {i}"}) for i in range(40)))
    ids = {reply["sendMessage"]["id"] for reply in replies}
    for message_id in ids:
        await eventually(lambda: company.admin.data(STATUS, {"id": message_id}),
                         lambda d: d["node"]["status"] == "SENT")

    # then: the partner got each of them exactly once
    calls = [json.loads(r.body)["messageId"] for r in fakes.seen("partner", company.ids["callback"])]
    assert sorted(calls) == sorted(ids)


@needs_postgres_and_redis
async def test_each_email_is_sent_once_while_every_process_runs_a_mailer(cluster, company, mailbox):
    # given: ten conversations, and ann's address
    conversations = [(await inbound_on(company, cluster.a, "hello", f"mail-{i}"))["conversation"]["id"]
                     for i in range(10)]
    address = (await company.ann.data("{ me { email } }"))["me"]["email"]

    # when: the admin assigns them all to ann through both processes
    await asyncio.gather(*(on(company.admin, (cluster.a, cluster.b)[i % 2]).data(
        ASSIGN, {"c": conversation, "u": company.ids["ann"]}) for i, conversation in enumerate(conversations)))

    # then: ann gets ten emails, and no eleventh
    assert len(await mailbox.wait_for(address, 10)) == 10
    with pytest.raises(AssertionError):
        await mailbox.wait_for(address, 11, timeout=0.5)


# -- Redis stopped and restarted --------------------------------------------------------------------


@dataclass
class RedisCluster:
    redis: RedisServer
    servers: tuple[ServerProcess, ServerProcess]
    admins: list[str]

    @contextlib.asynccontextmanager
    async def outage(self):
        """Redis stops; at the end it starts again on the same port and both processes
        are healthy again (reconnected by themselves)."""
        await self.redis.stop()
        try:
            yield
        finally:
            await self.redis.start()
            await asyncio.gather(*(server.healthy(200, timeout=DEADLINE) for server in self.servers))


@pytest.fixture(scope="module")
async def redis_cluster(cluster, fakes, mailbox):
    if not RedisServer.available():
        pytest.skip("no redis-server binary on this machine to stop and restart")
    redis = RedisServer()
    await redis.start()
    env = server_env(cluster.database_url, redis.url, f"inbox-scale-{uuid.uuid4().hex[:8]}", fakes, mailbox)
    servers = (ServerProcess(env, "redis-1"), ServerProcess(env, "redis-2"))
    try:
        await start_servers(*servers)
        yield RedisCluster(redis, servers, cluster.admins)
    finally:
        await asyncio.gather(*(server.stop() for server in servers))
        await redis.destroy()


@pytest.fixture
async def redis_company(redis_cluster, http) -> Company:
    return await company_on(redis_cluster.servers[0], http, redis_cluster.admins.pop())


@needs_postgres_and_redis
async def test_subscriptions_end_with_complete_when_redis_stops(redis_cluster, redis_company, sockets):
    # given: subscriptions on both processes
    one, two = redis_cluster.servers
    first = await sockets(one, redis_company.ann)
    first_op = await subscribed_from(first, redis_company, one)
    second = await sockets(two, redis_company.ann)
    second_op = await second.subscribe(CONVERSATION_CHANGED)
    await live(second, redis_company, two)

    # when: Redis stops
    async with redis_cluster.outage():
        # then: each subscription ends with `complete` (they may have missed events)
        for sub, op in ((first, first_op), (second, second_op)):
            while (message := await next_of(sub, op))["type"] != "complete":
                pass


@needs_postgres_and_redis
async def test_webhooks_succeed_and_healthz_is_503_while_redis_is_down(redis_cluster, redis_company):
    one, two = redis_cluster.servers
    conversation = (await inbound_on(redis_company, one, "before"))["conversation"]["id"]

    # when: Redis is down
    async with redis_cluster.outage():
        await asyncio.gather(one.healthy(503, timeout=DEADLINE), two.healthy(503, timeout=DEADLINE))
        # then: messages are still taken, through either process
        during = [await inbound_on(redis_company, server, f"during {server.name}") for server in (one, two)]
        assert all(message["id"] for message in during)
        assert await one.healthz() == 503

    # and: they are stored
    history = await on(redis_company.admin, two).data(HISTORY, {"c": conversation})
    bodies = [edge["node"]["body"] for edge in history["conversation"]["messages"]["edges"]]
    assert bodies == ["before", "during redis-1", "during redis-2"]


@needs_postgres_and_redis
async def test_after_redis_restarts_processes_reconnect_and_resuming_clients_miss_nothing(
        redis_cluster, redis_company, sockets):
    one, two = redis_cluster.servers
    sub = await sockets(one, redis_company.ann)
    op = await subscribed_from(sub, redis_company, one)
    before = await inbound_on(redis_company, two, "before")
    assert (await messages_of(sub, op))[0]["id"] == before["id"]

    # given: messages that arrived through both processes while Redis was down
    async with redis_cluster.outage():
        assert (await next_of(sub, op))["type"] == "complete"
        during = [await inbound_on(redis_company, server, f"during {i}") for i in range(3) for server in (one, two)]
    # when: Redis is back (the processes reconnected by themselves) and the client
    # resumes with the last cursor it saw, on the other process
    resumed = await sub.subscribe(MESSAGE_ADDED, {"after": before["cursor"]})
    replayed = await messages_of(sub, resumed, len(during))
    live_one = await inbound_on(redis_company, one, "after")

    # then: it gets what it missed, in order, then live messages from any process
    assert [m["id"] for m in replayed] == [m["id"] for m in during]
    assert (await messages_of(sub, resumed))[0]["id"] == live_one["id"]


# -- PostgreSQL stopped and restarted under load ----------------------------------------------------


@dataclass
class PostgresServer:
    postgres: PrivatePostgres
    server: ServerProcess
    admins: list[str]


@pytest.fixture(scope="module")
async def private_postgres(fakes, mailbox):
    """A server process on a PostgreSQL instance of the test's own."""
    reason = PrivatePostgres.unavailable()
    if reason:
        pytest.skip(reason)
    instance = PrivatePostgres()
    await instance.init()
    server = None
    try:
        database_url = await create_database(instance.url)
        env = server_env(database_url, TEST_BROADCAST_URL, f"inbox-scale-{uuid.uuid4().hex[:8]}", fakes, mailbox)
        server = ServerProcess(env, "private-postgres")
        admins, _ = await asyncio.gather(bootstrap_admins(database_url, 2), server.start())
        yield PostgresServer(instance, server, admins)
    finally:
        if server is not None:
            await server.stop()
        await instance.destroy()


@contextlib.asynccontextmanager
async def postgres_down(private: PostgresServer):
    """PostgreSQL stops (fast: transactions are cut, as in a crash or a failover); at the
    end it starts again."""
    await private.postgres.stop()
    try:
        yield
    finally:
        await private.postgres.start()


@needs_postgres_and_redis
async def test_postgresql_restart_under_load_fails_cleanly_and_the_server_recovers(private_postgres, http):
    # given: a partner posting messages without pause
    server = private_postgres.server
    company = await company_on(server, http, private_postgres.admins.pop())
    conversation = (await company.inbound("opening", contact="load"))["conversation"]["id"]
    outcomes: dict[str, str] = {}
    answers: list[tuple[int, dict]] = []
    stop = asyncio.Event()

    async def post(external_id: str) -> None:
        response = await company.partner.post(RECEIVE_LOAD, {"input": {
            "externalMessageId": external_id, "sender": {"externalId": "load", "name": "Load"},
            "body": f"load {external_id}"}})
        body = response.json()
        outcomes[external_id] = "ok" if not body.get("errors") else "error"
        answers.append((response.status_code, body))

    async def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await post(f"load-{worker}-{n}")

    loaders = [asyncio.create_task(load(worker)) for worker in range(4)]
    try:
        await eventually(lambda: _count(outcomes, "ok"), lambda n: n >= 20)

        # when: PostgreSQL stops under the load, then starts again
        async with postgres_down(private_postgres):
            await server.healthy(503, timeout=DEADLINE)
            errors_before = _count_now(outcomes, "error")
            await eventually(lambda: _count(outcomes, "error"), lambda n: n >= errors_before + 5)

        # then: the same server takes messages again by itself
        await server.healthy(200, timeout=DEADLINE)
        ok_after = _count_now(outcomes, "ok")
        await eventually(lambda: _count(outcomes, "ok"), lambda n: n >= ok_after + 20)
    finally:
        stop.set()
        await asyncio.gather(*loaders)

    # and: every failure was a clean, masked INTERNAL error
    failures = [body for _, body in answers if body.get("errors")]
    assert failures
    for body in failures:
        assert body.get("data") in (None, {"receiveChannelMessage": None}), body
        assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == \
            [("Internal server error", "INTERNAL")], body

    # and: nothing was half-written: a failed message, posted again, is stored once, with
    # its event, and the conversation's state counts every message once
    for external_id, outcome in list(outcomes.items()):
        if outcome == "error":
            await post(external_id)
            assert outcomes[external_id] == "ok"
    history = (await company.admin.data(HISTORY, {"c": conversation}))["conversation"]
    # more than a page of messages (and more than `events` lists, its latest 100): paged
    added, after = [], None
    while True:
        page = (await company.admin.data(MESSAGE_PAGE, {"c": conversation, "a": after}))["conversation"]["messages"]
        added += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(added) == len(set(added)) == len(outcomes) + 1
    assert history["unreadCount"] == len(outcomes) + 1
    assert history["lastMessage"]["id"] == max(added, key=lambda g: pk_of(g, "Message"))


@needs_postgres_and_redis
async def test_websocket_opened_while_postgresql_is_down_closes_with_internal_error(private_postgres):
    # given: a user's token
    token = private_postgres.admins.pop()

    # when: a client connects while PostgreSQL is down
    async with postgres_down(private_postgres):
        socket = await websockets.connect(private_postgres.server.ws_url, subprotocols=["graphql-transport-ws"])
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))

        # then: it is closed with 1011 (internal error: try again), not dropped nor refused as 4403
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), DEADLINE)
        assert socket.close_code == 1011

    # and: once PostgreSQL is back, it connects
    await private_postgres.server.healthy(200, timeout=DEADLINE)
    sub = await Subscriber.connect(private_postgres.server, token)
    await sub.close()


RECEIVE_LOAD = """
mutation($input: ReceiveMessageInput!) { receiveChannelMessage(input: $input) { id } }"""


async def _count(outcomes: dict, kind: str) -> int:
    return _count_now(outcomes, kind)


def _count_now(outcomes: dict, kind: str) -> int:
    return sum(1 for outcome in outcomes.values() if outcome == kind)
