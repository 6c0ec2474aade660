"""Real time (SPEC §6) and websocket authentication (SPEC §1), one test per protocol rule,
through real websocket clients on graphql-transport-ws and the legacy graphql-ws.

Runs on memory:// always; the broadcast-failure test needs Redis (INBOX_TEST_BROADCAST_URL)."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from inbox import sections
from schema.ids import parse_global_id
from resolvers import subscriptions as streams
from subscriptions import direct
from inbox.events import company_topic
from subscriptions.publish import current_hub

from conftest import (DEADLINE, TEST_BROADCAST_URL, DirectEvents, Subscriber, company_pk, eventually,
                      subscriptions_live)

PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]
WS_REJECTED = 4403
TRY_AGAIN_LATER = 1013

MESSAGE_ADDED = """
subscription($c: ID, $after: String) {
  messageAdded(conversationId: $c, after: $after) { id body cursor conversation { id } }
}"""
CONVERSATION_CHANGED = """
subscription($c: ID) {
  conversationChanged(conversationId: $c) { kind conversationId actor { id } assignee { id } }
}"""
MESSAGE_UPDATED = "subscription($c: ID) { messageUpdated(conversationId: $c) { id status } }"
NOTIFICATION_RECEIVED = "subscription { notificationReceived { id kind } }"
# The subscriptions that take a conversationId.
PER_CONVERSATION = pytest.mark.parametrize("query", [MESSAGE_ADDED, MESSAGE_UPDATED, CONVERSATION_CHANGED],
                                           ids=["messageAdded", "messageUpdated", "conversationChanged"])


# -- helpers ------------------------------------------------------------------------------


async def rejection_code(server, protocol: str, payload: dict, headers: dict | None = None) -> int:
    """Sends connection_init and returns the code the server closes the socket with."""
    async with websockets.connect(server.ws_url, subprotocols=[protocol], additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # legacy graphql-ws sends connection_error before closing
                await asyncio.wait_for(ws.recv(), DEADLINE)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def next_for(sub: Subscriber, op_id: str) -> dict:
    message = await sub.receive()
    assert message.get("id") == op_id and message["type"] == "next", message
    assert not message["payload"].get("errors"), message
    return message["payload"]["data"]


async def error_code_for(sub: Subscriber, op_id: str) -> str:
    message = await sub.receive()
    assert message.get("id") == op_id and message["type"] == "error", message
    return message["payload"][0]["extensions"]["code"]


async def messages_until(sub: Subscriber, last_id: str) -> list[dict]:
    """messageAdded payloads received up to and including the message `last_id`."""
    received = []
    while not received or received[-1]["id"] != last_id:
        received.append((await sub.next_data())["messageAdded"])
    return received


def topic_subscribers(company_id: int) -> int:
    """Local subscriptions of the company's topic (the test server runs in this process,
    so its hub is this one), handed over to direct delivery or not."""
    return direct.live_subscriptions(current_hub(), company_topic(company_id))


async def set_access(company, user: str, shared: bool = True) -> None:
    """Shares the company's CUSTOM channel with `user` ("ann", "bob"), or unshares it."""
    mutation = "shareChannel" if shared else "unshareChannel"
    await company.admin.data(f"mutation($c: ID!, $u: [ID!]!) {{ {mutation}(channelId: $c, userIds: $u) {{ id }} }}",
                             {"c": company.channel_id, "u": [company.ids[user]]})


async def until(predicate) -> None:
    """Waits, up to the deadline, for server-side state with no event to wait on."""
    async def probe():
        return predicate()

    await eventually(probe, bool, interval=0.01)


# -- authentication (SPEC §1) -------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connection_init_without_token_closes_with_4403(server, protocol):
    assert await rejection_code(server, protocol, {}) == WS_REJECTED


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connection_init_with_a_bad_token_closes_with_4403(server, protocol):
    assert await rejection_code(server, protocol, {"authorization": "Bearer not-a-token"}) == WS_REJECTED


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_custom_channel_token_cannot_open_a_websocket(server, company, protocol):
    payload = {"authorization": f"Bearer {company.partner.token}"}
    assert await rejection_code(server, protocol, payload) == WS_REJECTED


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_channel_token_in_the_upgrade_header_is_refused_too(server, company, protocol):
    headers = {"Authorization": f"Bearer {company.partner.token}"}
    assert await rejection_code(server, protocol, {}, headers) == WS_REJECTED


async def test_token_in_the_upgrade_authorization_header_authenticates(server, company):
    headers = {"Authorization": f"Bearer {company.ann.token}"}
    async with websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"],
                                  additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))["type"] == "connection_ack"
        sub = Subscriber(ws)
        op = await sub.subscribe(MESSAGE_ADDED)
        await subscriptions_live(company)

        message = await company.inbound("via header auth")

        assert (await next_for(sub, op))["messageAdded"]["id"] == message["id"]


# -- delivery to whoever may see the item -------------------------------------------------


async def test_message_added_reaches_users_with_access_only(company, other_company, subscribers):
    admin, ann, bob = [await subscribers(user.token) for user in (company.admin, company.ann, company.bob)]
    foreign = await subscribers(other_company.admin.token)
    ops = [await s.subscribe(MESSAGE_ADDED) for s in (admin, ann, bob, foreign)]
    await subscriptions_live(company, 3)
    await subscriptions_live(other_company, 1)

    message = await company.inbound("for the channel's members")

    assert (await next_for(admin, ops[0]))["messageAdded"]["id"] == message["id"]
    assert (await next_for(ann, ops[1]))["messageAdded"]["id"] == message["id"]
    # Bob gets access, then a second message: the first thing he receives is that one.
    await set_access(company, "bob")
    second = await company.inbound("now bob is a member")
    assert (await next_for(bob, ops[2]))["messageAdded"]["id"] == second["id"]
    own = await other_company.inbound("the other company's own")
    assert (await next_for(foreign, ops[3]))["messageAdded"]["id"] == own["id"]
    assert await foreign.nothing_within(0.2)


async def test_conversation_changed_reaches_entitled_users_only(company, other_company, subscribers):
    admin, ann, bob = [await subscribers(user.token) for user in (company.admin, company.ann, company.bob)]
    foreign = await subscribers(other_company.admin.token)
    ops = [await s.subscribe(CONVERSATION_CHANGED) for s in (admin, ann, bob, foreign)]
    await subscriptions_live(company, 3)
    await subscriptions_live(other_company, 1)

    conversation = await company.conversation_of(await company.inbound("hello"))
    await company.admin.data("mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }",
                             {"c": conversation, "u": company.ids["ann"]})
    await company.ann.data("mutation($c: ID!) { closeConversation(conversationId: $c) { id } }", {"c": conversation})

    expected = [("CREATED", None, None), ("MESSAGE_ADDED", None, None),
                ("ASSIGNED", company.ids["admin"], company.ids["ann"]), ("CLOSED", company.ids["ann"], None)]
    for sub, op in ((admin, ops[0]), (ann, ops[1])):
        events = [(await next_for(sub, op))["conversationChanged"] for _ in expected]
        assert [(e["kind"], (e["actor"] or {}).get("id"), (e["assignee"] or {}).get("id")) for e in events] == expected
        assert {e["conversationId"] for e in events} == {conversation}
    # Bob gets access, then the conversation reopens: that is the first event he receives.
    await set_access(company, "bob")
    await company.admin.data("mutation($c: ID!) { reopenConversation(conversationId: $c) { id } }", {"c": conversation})
    assert (await next_for(bob, ops[2]))["conversationChanged"]["kind"] == "REOPENED"
    assert await foreign.nothing_within(0.2)


async def test_a_member_removed_from_the_channel_stops_receiving_its_messages(company, subscribers):
    ann, admin = await subscribers(company.ann.token), await subscribers(company.admin.token)
    ann_op, admin_op = await ann.subscribe(MESSAGE_ADDED), await admin.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 2)

    await set_access(company, "ann", shared=False)
    hidden = await company.inbound("after ann lost access")

    assert (await next_for(admin, admin_op))["messageAdded"]["id"] == hidden["id"]
    # Shared again, the next message is the first thing she receives.
    await set_access(company, "ann")
    visible = await company.inbound("ann is back")
    assert (await next_for(ann, ann_op))["messageAdded"]["id"] == visible["id"]


async def test_conversation_id_filter_streams_one_conversation(company, subscribers):
    first = await company.conversation_of(await company.inbound("a", contact="alice"))
    second = await company.conversation_of(await company.inbound("b", contact="bruno"))
    sub = await subscribers(company.ann.token)
    messages = await sub.subscribe(MESSAGE_ADDED, {"c": first})
    changes = await sub.subscribe(CONVERSATION_CHANGED, {"c": first})
    await subscriptions_live(company, 2)

    await company.inbound("to the other conversation", contact="bruno")
    await company.admin.data("mutation($c: ID!) { closeConversation(conversationId: $c) { id } }", {"c": second})
    mine = await company.inbound("to the watched conversation", contact="alice")

    received = [await sub.receive() for _ in range(2)]
    by_op = {op: [m["payload"]["data"] for m in received if m["id"] == op] for op in (messages, changes)}
    assert [d["messageAdded"]["id"] for d in by_op[messages]] == [mine["id"]]
    assert [d["conversationChanged"]["kind"] for d in by_op[changes]] == ["MESSAGE_ADDED"]
    assert {d["conversationChanged"]["conversationId"] for d in by_op[changes]} == {first}
    assert await sub.nothing_within(0.2)


# -- subscribing to what the viewer cannot see --------------------------------------------


@PER_CONVERSATION
async def test_another_companys_conversation_is_not_found_and_the_socket_stays_open(
        company, other_company, subscribers, query):
    foreign = await other_company.conversation_of(await other_company.inbound("theirs"))
    sub = await subscribers(company.admin.token)

    refused = await sub.subscribe(query, {"c": foreign})

    assert await error_code_for(sub, refused) == "NOT_FOUND"
    valid = await sub.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company)
    message = await company.inbound("still served")
    assert (await next_for(sub, valid))["messageAdded"]["id"] == message["id"]


@PER_CONVERSATION
async def test_a_conversation_of_a_channel_without_access_is_not_found(company, subscribers, query):
    conversation = await company.conversation_of(await company.inbound("members only"))
    sub = await subscribers(company.bob.token)

    refused = await sub.subscribe(query, {"c": conversation})

    assert await error_code_for(sub, refused) == "NOT_FOUND"
    await set_access(company, "bob")
    await sub.subscribe(query, {"c": conversation})
    await subscriptions_live(company)  # accepted: it is in the hub's fan-out
    assert await sub.nothing_within(0.1)


@pytest.mark.parametrize("variables", [{"c": "not-an-id"}, {"after": "not-a-cursor"}], ids=["conversationId", "after"])
async def test_a_malformed_argument_is_bad_user_input(company, subscribers, variables):
    sub = await subscribers(company.ann.token)

    op = await sub.subscribe(MESSAGE_ADDED, variables)

    assert await error_code_for(sub, op) == "BAD_USER_INPUT"


# -- resuming with `after` ----------------------------------------------------------------


async def test_resume_with_after_replays_the_missed_messages_in_order_then_streams_live(company, subscribers):
    sub = await subscribers(company.ann.token)
    await sub.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company)
    seen = [await company.inbound(f"seen {i}") for i in range(2)]
    last_cursor = (await messages_until(sub, seen[-1]["id"]))[-1]["cursor"]
    await sub.close()

    missed = [await company.inbound(f"missed {i}", contact=f"c{i % 2}") for i in range(5)]
    again = await subscribers(company.ann.token)
    await again.subscribe(MESSAGE_ADDED, {"after": last_cursor})
    replayed = await messages_until(again, missed[-1]["id"])
    await subscriptions_live(company)
    live = await company.inbound("live")

    assert [m["id"] for m in replayed] == [m["id"] for m in missed]
    assert (await again.next_data())["messageAdded"]["id"] == live["id"]
    assert await again.nothing_within(0.2)


async def test_resume_replays_only_what_the_viewer_may_see(company, other_company, subscribers):
    start = await company.inbound("start")
    missed = [await company.inbound(f"missed {i}") for i in range(3)]
    admin, bob = await subscribers(company.admin.token), await subscribers(company.bob.token)
    foreign = await subscribers(other_company.admin.token)

    for sub in (admin, bob, foreign):
        await sub.subscribe(MESSAGE_ADDED, {"after": start["cursor"]})

    assert [m["id"] for m in await messages_until(admin, missed[-1]["id"])] == [m["id"] for m in missed]
    assert await bob.nothing_within(0.2)
    assert await foreign.nothing_within(0.2)


async def test_resume_with_a_conversation_filter_replays_that_conversation_only(company, subscribers):
    start = await company.inbound("start", contact="alice")
    others = await company.inbound("elsewhere", contact="bruno")
    mine = await company.inbound("here", contact="alice")
    sub = await subscribers(company.ann.token)

    await sub.subscribe(MESSAGE_ADDED, {"c": start["conversation"]["id"], "after": start["cursor"]})

    assert (await sub.next_data())["messageAdded"]["id"] == mine["id"]
    assert await sub.nothing_within(0.2)
    assert others["conversation"]["id"] != mine["conversation"]["id"]


async def test_resume_while_messages_keep_arriving_has_no_gap_and_no_duplicate(company, subscribers, monkeypatch):
    # A writer posts while the replay runs. To make them interleave for sure, the replay
    # reads small pages and, after each, waits for the writer to commit a few more
    # messages: those are then both in a later page and in the live buffer. Each message
    # must still come exactly once, in order.
    first = await company.inbound("before")
    missed = [await company.inbound(f"missed {i}", contact=f"c{i % 3}") for i in range(20)]
    # Their events (message, conversation event, notifications) all wait in the
    # subscription's buffer (50 here) until the replay ends: four per message today.
    writes = 8
    concurrent: list[dict] = []
    committed = asyncio.Event()
    replayed_pages: list[list[int]] = []
    replay_page = sections.replay_messages

    async def interleaved_replay_page(viewer, after, conversation_id, limit):
        rows = await replay_page(viewer, after, conversation_id, limit)
        replayed_pages.append([row.id for row in rows])
        while len(concurrent) < min(writes, 2 * len(replayed_pages)):
            committed.clear()
            await asyncio.wait_for(committed.wait(), DEADLINE)
        return rows

    monkeypatch.setattr(streams, "REPLAY_BATCH", 5)
    monkeypatch.setattr(sections, "replay_messages", interleaved_replay_page)

    async def write() -> None:
        for i in range(writes):
            concurrent.append(await company.inbound(f"concurrent {i}", contact=f"c{i % 3}"))
            committed.set()

    async def read() -> list[str]:
        return [(await sub.next_data())["messageAdded"]["id"] for _ in range(len(missed) + writes)]

    sub = await subscribers(company.admin.token)
    await sub.subscribe(MESSAGE_ADDED, {"after": first["cursor"]})
    _, received = await asyncio.gather(write(), read())

    assert received == [m["id"] for m in missed + concurrent]
    assert await sub.nothing_within(0.2)
    replayed_concurrent = {pk for page in replayed_pages for pk in page} & {
        parse_global_id(m["id"])[1] for m in concurrent}
    assert replayed_concurrent, "the replay and the writer did not overlap"


# -- slow consumers -----------------------------------------------------------------------

# Each event carries its message's 4 KiB body ten times: 40 KiB frames fill a socket's
# kernel buffers (about 4 MiB here, autotuned) within a hundred events.
BIG_EVENTS = ("subscription($c: ID) { conversationChanged(conversationId: $c) { id message { "
              + " ".join(f"b{i}: body" for i in range(10)) + " } } }")


async def connect_without_reading(server, token: str) -> websockets.ClientConnection:
    """A client that stops reading: a tiny kernel receive buffer, no compression and a
    one-message client queue, so that the server's writes back up as soon as its own
    kernel send buffer is full."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    raw.setblocking(False)
    ws = await websockets.connect(server.ws_url, sock=raw, subprotocols=["graphql-transport-ws"],
                                  compression=None, max_queue=1)
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))["type"] == "connection_ack"
    return ws


async def test_a_slow_consumer_is_closed_with_1013_and_never_delays_the_others(server, company, subscribers):
    # Why not a burst of > 50 events in one go: the hub fans out synchronously, so every
    # subscription of the topic (the fast one too) would overflow before any generator
    # runs. What makes a real client slow is TCP back-pressure: its socket stops
    # draining, the server's send for it blocks, and only its buffer keeps growing.
    # So: bursts of 10 events, each read in full by the fast client before the next;
    # the slow client's send blocks once the kernel buffers fill, and its subscription
    # then overflows 5 bursts later while the fast one never holds more than 10.
    message = await company.inbound("x" * 4096)
    events = await DirectEvents.of(message)
    _, message_pk = parse_global_id(message["id"])
    variables = {"c": message["conversation"]["id"]}
    slow = await connect_without_reading(server, company.admin.token)
    await slow.send(json.dumps({"id": "slow", "type": "subscribe",
                                "payload": {"query": BIG_EVENTS, "variables": variables}}))
    fast = await subscribers(company.ann.token)
    fast_op = await fast.subscribe(BIG_EVENTS, variables)
    await subscriptions_live(company, 2)

    published: list[str] = []
    for _ in range(2000):
        if topic_subscribers(events.company_id) < 2:  # the slow one left the fan-out
            break
        burst = [await events.payload("MESSAGE_ADDED", message_pk) for _ in range(10)]
        for payload in burst:
            await events.publish(payload)
        published += [events.global_id(p) for p in burst]
        for expected in published[-10:]:
            assert (await next_for(fast, fast_op))["conversationChanged"]["id"] == expected
    else:
        raise AssertionError("the slow consumer never overflowed its buffer")

    # The fast client received every event, in order (checked burst by burst above), and
    # keeps receiving.
    payload = await events.payload("MESSAGE_ADDED", message_pk)
    await events.publish(payload)
    assert (await next_for(fast, fast_op))["conversationChanged"]["id"] == events.global_id(payload)
    # The slow client, reading at last, finds a prefix of the events, then the 1013 close.
    prefix = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frame = json.loads(await asyncio.wait_for(slow.recv(), DEADLINE))
            if frame["type"] == "next":
                prefix.append(frame["payload"]["data"]["conversationChanged"]["id"])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == TRY_AGAIN_LATER
    assert prefix == published[:len(prefix)]
    assert len(prefix) < len(published) - 50


# -- unsubscribing and freeing the server's resources -------------------------------------


async def test_complete_from_the_client_stops_delivery_and_frees_the_subscription(company, subscribers):
    sub = await subscribers(company.ann.token)
    stopped = await sub.subscribe(MESSAGE_ADDED)
    kept = await sub.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 2)
    company_id = await company_pk(company)

    await sub.socket.send(json.dumps({"id": stopped, "type": "complete"}))

    await until(lambda: topic_subscribers(company_id) == 1)  # the stopped one left the hub
    message = await company.inbound("after unsubscribing")
    assert (await next_for(sub, kept))["messageAdded"]["id"] == message["id"]
    assert await sub.nothing_within(0.2)


async def test_closed_clients_leave_nothing_subscribed_in_the_hub(company, subscribers):
    conversation = await company.conversation_of(await company.inbound("hello"))
    clients = [await subscribers(company.admin.token), await subscribers(company.ann.token),
               await subscribers(company.ann.token, "graphql-ws")]
    for client in clients[:2]:
        await client.subscribe(MESSAGE_ADDED)
        await client.subscribe(MESSAGE_ADDED, {"c": conversation})
        await client.subscribe(CONVERSATION_CHANGED, {"c": conversation})
    await legacy_start(clients[2], "1", CONVERSATION_CHANGED)
    await subscriptions_live(company, 7)
    hub, topic = current_hub(), company_topic(await company_pk(company))

    for client in clients:
        await client.close()

    await until(lambda: topic not in hub._topics and topic not in hub._draining)


# -- the legacy graphql-ws protocol -------------------------------------------------------


async def legacy_start(sub: Subscriber, op_id: str, query: str, variables: dict | None = None) -> None:
    await sub.socket.send(json.dumps({"id": op_id, "type": "start",
                                      "payload": {"query": query, "variables": variables or {}}}))


async def test_legacy_graphql_ws_delivers_data_until_stop(company, subscribers):
    sub = await subscribers(company.ann.token, "graphql-ws")
    await legacy_start(sub, "a", MESSAGE_ADDED)
    await subscriptions_live(company)
    company_id = await company_pk(company)

    message = await company.inbound("over graphql-ws")

    received = await sub.receive()
    assert received["type"] == "data" and received["id"] == "a", received
    assert received["payload"]["data"]["messageAdded"]["id"] == message["id"]
    await sub.socket.send(json.dumps({"id": "a", "type": "stop"}))
    assert await sub.receive() == {"type": "complete", "id": "a"}
    await until(lambda: topic_subscribers(company_id) == 0)  # the stopped one left the hub
    await company.inbound("after stop")
    assert await sub.nothing_within(0.2)


async def test_legacy_graphql_ws_reports_not_found_and_keeps_the_socket(company, other_company, subscribers):
    foreign = await other_company.conversation_of(await other_company.inbound("theirs"))
    sub = await subscribers(company.ann.token, "graphql-ws")

    await legacy_start(sub, "refused", MESSAGE_ADDED, {"c": foreign})

    refused = await sub.receive()
    assert refused["type"] == "error" and refused["id"] == "refused", refused
    assert refused["payload"]["extensions"]["code"] == "NOT_FOUND"
    await legacy_start(sub, "valid", MESSAGE_ADDED)
    await subscriptions_live(company)
    message = await company.inbound("still served")
    received = await sub.receive()
    assert received["id"] == "valid" and received["payload"]["data"]["messageAdded"]["id"] == message["id"]


# -- broadcast backend failure (SPEC §8) --------------------------------------------------


@pytest.mark.parametrize("query", [MESSAGE_ADDED, MESSAGE_UPDATED, CONVERSATION_CHANGED, NOTIFICATION_RECEIVED],
                         ids=["messageAdded", "messageUpdated", "conversationChanged", "notificationReceived"])
async def test_a_subscription_started_during_an_outage_completes_at_once(company, subscribers, monkeypatch, query):
    sub = await subscribers(company.ann.token)
    # The hub's state between losing the backend and reconnecting to it.
    monkeypatch.setattr(current_hub(), "_broadcast", None)

    op = await sub.subscribe(query)

    assert await sub.receive() == {"id": op, "type": "complete"}


requires_redis = pytest.mark.skipif(not TEST_BROADCAST_URL, reason="INBOX_TEST_BROADCAST_URL is not set")


async def kill_hub_pubsub_connection() -> None:
    """CLIENT KILL TYPE pubsub, narrowed to this server's connection so that other test
    runs sharing the Redis server are not disturbed: Redis drops it as a restart would."""
    from redis import asyncio as aioredis

    backend = current_hub()._broadcast._backend
    host, port = backend._pubsub.connection._writer.get_extra_info("sockname")[:2]
    client = aioredis.Redis.from_url(TEST_BROADCAST_URL)
    try:
        assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ADDR", f"{host}:{port}") == 1
    finally:
        await client.aclose()


@requires_redis
async def test_a_broadcast_outage_ends_subscriptions_and_after_catches_up(company, subscribers):
    sub = await subscribers(company.ann.token)
    op = await sub.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company)
    await company.inbound("before the outage")
    cursor = (await next_for(sub, op))["messageAdded"]["cursor"]

    await kill_hub_pubsub_connection()

    # The subscription may have missed events: the server ends it rather than hang.
    try:
        ended = await sub.receive()
        assert ended == {"id": op, "type": "complete"}, ended
    except ConnectionClosed:
        pass
    during = await company.inbound("during the outage")  # persisted even if not published
    hub = current_hub()
    await until(lambda: hub.healthy)  # reconnected
    after = await company.inbound("after the outage")
    again = await subscribers(company.ann.token)
    await again.subscribe(MESSAGE_ADDED, {"after": cursor})
    assert [m["id"] for m in await messages_until(again, after["id"])] == [during["id"], after["id"]]
    await subscriptions_live(company)
    live = await company.inbound("live again")
    assert (await again.next_data())["messageAdded"]["id"] == live["id"]


async def test_events_a_viewer_cannot_see_never_fill_its_buffer(company, subscribers):
    # Given bob, who has no access to the partner channel, subscribed to every change
    message = await company.inbound("hello", contact="busy")
    events = await DirectEvents.of(message)
    bob = await subscribers(company.bob.token)
    await bob.subscribe("subscription { conversationChanged { id kind } }")
    await subscriptions_live(company)
    # When far more events than a subscription may buffer (50 in tests) pass on that channel
    for _ in range(120):
        await events.publish(await events.payload())
    # Then his subscription is still open, and the first event he may see reaches him
    await company.admin.data("mutation($c: ID!, $u: [ID!]!) { shareChannel(channelId: $c, userIds: $u) { id } }",
                             {"c": company.channel_id, "u": [company.ids["bob"]]})
    await company.admin.data("mutation($c: ID!) { closeConversation(conversationId: $c) { id } }",
                             {"c": message["conversation"]["id"]})
    data = await bob.next_data()
    assert data["conversationChanged"]["kind"] == "CLOSED"
