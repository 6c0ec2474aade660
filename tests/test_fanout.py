"""Subscription fan-out (issue 7): one execution per event for every group of subscribers
that would receive the same bytes (same document, variables and visibility scope), never
a viewer-dependent value shared across viewers, never an event someone may not see.

Through real websocket clients; the executions are counted in the in-process server
(subscriptions/fanout.py `stats`)."""
from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager

from subscriptions import fanout

from conftest import DEADLINE, DirectEvents, subscriptions_live

MESSAGE_ADDED = "subscription { messageAdded { id body direction conversation { id status } } }"
VIEWER_DEPENDENT = "subscription { messageAdded { id conversation { id section unreadCount } } }"
CONVERSATION_CHANGED = "subscription($c: ID) { conversationChanged(conversationId: $c) { id kind conversationId } }"
ASSIGN = "mutation($c: ID!, $u: ID!) { assignConversation(conversationId: $c, userId: $u) { id } }"


@contextmanager
def executions():
    """The fan-out's executions during the block: `shared` ran once for a group,
    `reused` took a group's result, `own` ran for one subscriber only."""
    before = dict(fanout.stats)
    counted: dict[str, int] = {}
    yield counted
    counted.update({kind: fanout.stats[kind] - before[kind] for kind in before})


async def raw_frame(sub) -> str:
    """The next data frame exactly as the server sent it."""
    while True:
        frame = await asyncio.wait_for(sub.socket.recv(), DEADLINE)
        if json.loads(frame)["type"] not in ("ping", "pong", "ka"):
            return frame


async def test_subscribers_of_one_document_share_one_execution_and_the_same_bytes(company, subscribers):
    clients = [await subscribers(user.token) for user in (company.admin, company.ann, company.ann)]
    for client in clients:
        await client.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 3)

    with executions() as counted:
        message = await company.inbound("one execution for all")
        frames = [await raw_frame(client) for client in clients]

    assert counted == {"shared": 1, "reused": 2, "own": 0}
    assert frames[0] == frames[1] == frames[2]
    received = json.loads(frames[0])
    assert received["id"] == "1" and received["type"] == "next"
    assert received["payload"] == {"data": {"messageAdded": {
        "id": message["id"], "body": "one execution for all", "direction": "INBOUND",
        "conversation": {"id": message["conversation"]["id"], "status": "OPEN"}}}}


async def test_a_shared_execution_reaches_only_those_who_may_see_the_event(company, subscribers):
    ann, bob = [await subscribers(user.token) for user in (company.ann, company.bob)]
    for client in (ann, bob):
        await client.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 2)

    message = await company.inbound("members only")

    assert (await ann.next_data())["messageAdded"]["id"] == message["id"]
    assert await bob.nothing_within(0.3)


async def test_viewer_dependent_fields_are_executed_for_each_viewer(company, subscribers):
    first = await company.inbound("first", contact="assigned-to-ann")
    conversation = first["conversation"]["id"]
    await company.admin.data(ASSIGN, {"c": conversation, "u": company.ids["ann"]})
    ann, admin = [await subscribers(user.token) for user in (company.ann, company.admin)]
    for client in (ann, admin):
        await client.subscribe(VIEWER_DEPENDENT)
    await subscriptions_live(company, 2)

    with executions() as counted:
        await company.inbound("second", contact="assigned-to-ann")
        seen_by_ann = (await ann.next_data())["messageAdded"]["conversation"]
        seen_by_admin = (await admin.next_data())["messageAdded"]["conversation"]

    assert seen_by_ann["section"] == "ASSIGNED_TO_ME"
    assert seen_by_admin["section"] == "ASSIGNED_TO_OTHERS"
    assert seen_by_ann["id"] == seen_by_admin["id"] == conversation
    assert counted["reused"] == 0 and counted["own"] == 2


async def test_one_viewers_identical_viewer_dependent_subscriptions_share_one_execution(company, subscribers):
    """Tabs of one user (or a client subscribing twice): one execution per viewer and
    event, never one viewer's result for another."""
    first = await company.inbound("first", contact="tabs")
    await company.admin.data(ASSIGN, {"c": first["conversation"]["id"], "u": company.ids["ann"]})
    tabs = [await subscribers(company.ann.token) for _ in range(3)]
    admin = await subscribers(company.admin.token)
    for client in (*tabs, admin):
        await client.subscribe(VIEWER_DEPENDENT)
    await subscriptions_live(company, 4)
    await company.inbound("found viewer-dependent", contact="tabs")
    for client in (*tabs, admin):
        await client.next_data()

    with executions() as counted:
        await company.inbound("third", contact="tabs")
        frames = [await raw_frame(client) for client in (*tabs, admin)]

    assert counted == {"shared": 0, "reused": 2, "own": 2}
    assert frames[0] == frames[1] == frames[2]
    sections = [json.loads(frame)["payload"]["data"]["messageAdded"]["conversation"]["section"] for frame in frames]
    assert sections == ["ASSIGNED_TO_ME"] * 3 + ["ASSIGNED_TO_OTHERS"]


async def test_viewer_dependent_unread_counts_are_each_viewers_own(company, subscribers):
    first = await company.inbound("first", contact="read-by-admin")
    conversation = first["conversation"]["id"]
    await company.admin.data("mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }",
                             {"c": conversation})
    ann, admin = [await subscribers(user.token) for user in (company.ann, company.admin)]
    for client in (ann, admin):
        await client.subscribe(VIEWER_DEPENDENT)
    await subscriptions_live(company, 2)

    await company.inbound("second", contact="read-by-admin")

    assert (await ann.next_data())["messageAdded"]["conversation"]["unreadCount"] == 2
    assert (await admin.next_data())["messageAdded"]["conversation"]["unreadCount"] == 1


async def test_different_variables_do_not_share_an_execution(company, subscribers):
    message = await company.inbound("hello")
    events = await DirectEvents.of(message)
    one_conversation, every_conversation = [await subscribers(company.ann.token) for _ in range(2)]
    await one_conversation.subscribe(CONVERSATION_CHANGED, {"c": message["conversation"]["id"]})
    await every_conversation.subscribe(CONVERSATION_CHANGED)
    await subscriptions_live(company, 2)

    with executions() as counted:
        payload = await events.payload()
        await events.publish(payload)
        received = [(await client.next_data())["conversationChanged"]
                    for client in (one_conversation, every_conversation)]

    assert counted == {"shared": 2, "reused": 0, "own": 0}
    assert received[0] == received[1] == {"id": events.global_id(payload), "kind": "ASSIGNED",
                                          "conversationId": message["conversation"]["id"]}


async def test_legacy_protocol_subscribers_share_the_execution_too(company, subscribers):
    legacy = await subscribers(company.ann.token, "graphql-ws")
    current = await subscribers(company.ann.token)
    await legacy.socket.send(json.dumps({"id": "legacy-op", "type": "start", "payload": {"query": MESSAGE_ADDED}}))
    await current.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 2)

    with executions() as counted:
        message = await company.inbound("both protocols")
        old, new = await legacy.receive(), await current.receive()

    assert counted == {"shared": 1, "reused": 1, "own": 0}
    assert (old["type"], old["id"]) == ("data", "legacy-op")
    assert (new["type"], new["id"]) == ("next", "1")
    assert old["payload"] == new["payload"]
    assert old["payload"]["data"]["messageAdded"]["id"] == message["id"]
