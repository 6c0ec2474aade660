"""Direct delivery (subscriptions/direct.py, issue 7): once a websocket subscription has
replayed, its topic's engine writes its live events, so a subscription holds no task of
its own; hand-overs lose and repeat nothing; clients that negotiated compression (when the
server accepts it) get the same events through the server's own send path; frames written by hand are byte for byte
those of the websockets library."""
from __future__ import annotations

import asyncio
import json

import pytest
from websockets.frames import OP_TEXT, Frame

from borrowed import uvicorn_ws
from subscriptions import direct
from inbox.events import company_topic
from subscriptions.publish import current_hub

from conftest import Subscriber, company_pk, subscriptions_live
from test_realtime import connect_without_reading

MESSAGE_ADDED = "subscription { messageAdded { id body } }"


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_written_by_hand_are_those_of_the_websockets_library(length):
    data = ("é" * length).encode()[:length]
    assert uvicorn_ws.text_frame(data) == Frame(OP_TEXT, data).serialize(mask=False)


async def test_subscriptions_hold_no_task_once_live(company, subscribers):
    client = await subscribers(company.ann.token)
    await client.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 1)
    before = len(asyncio.all_tasks())

    for _ in range(20):
        await client.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 21)
    message = await company.inbound("to all 21")

    received = [await client.receive() for _ in range(21)]
    assert sorted(int(frame["id"]) for frame in received) == list(range(1, 22))
    assert {frame["payload"]["data"]["messageAdded"]["id"] for frame in received} == {message["id"]}
    # One engine reads the topic for all of them; none keeps a task.
    hub, topic = current_hub(), company_topic(await company_pk(company))
    assert len(hub._topics[topic].subscribers) == 1
    assert len(asyncio.all_tasks()) <= before + 2


async def test_completing_one_subscription_stops_only_its_deliveries(company, subscribers):
    client = await subscribers(company.ann.token)
    kept, completed = await client.subscribe(MESSAGE_ADDED), await client.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 2)

    await client.socket.send(json.dumps({"id": completed, "type": "complete"}))
    await subscriptions_live(company, 1)
    message = await company.inbound("after complete")

    frame = await client.receive()
    assert (frame["id"], frame["payload"]["data"]["messageAdded"]["id"]) == (kept, message["id"])
    assert await client.nothing_within(0.3)
    # The id is free again: a new subscription with it is live, not a duplicate (4409).
    await client.socket.send(json.dumps({"id": completed, "type": "subscribe",
                                         "payload": {"query": MESSAGE_ADDED}}))
    await subscriptions_live(company, 2)


@pytest.fixture
async def compressing(app_with):
    """A second app on the session server's database and hub that accepts
    permessage-deflate (INBOX_WS_COMPRESSION=true; the default declines it)."""
    return await app_with(ws_compression=True)


async def test_compression_offered_by_a_client_is_declined_by_default(company, subscribers):
    client = await subscribers(company.ann.token, "graphql-transport-ws", "deflate")
    assert client.socket.protocol.extensions == []


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_compressed_and_plain_sockets_receive_the_same_events(company, compressing, protocol):
    clients = [await Subscriber.connect(compressing, company.ann.token, protocol, compression)
               for compression in (None, "deflate")]
    assert [len(client.socket.protocol.extensions) for client in clients] == [0, 1]
    try:
        for client in clients:
            if protocol == "graphql-ws":
                await client.socket.send(json.dumps({"id": "op", "type": "start",
                                                     "payload": {"query": MESSAGE_ADDED}}))
            else:
                await client.subscribe(MESSAGE_ADDED)
        await subscriptions_live(company, 2)

        message = await company.inbound("the same for both")

        frames = [await client.receive() for client in clients]
        assert frames[0] == frames[1]
        assert frames[0]["type"] == ("data" if protocol == "graphql-ws" else "next")
        assert frames[0]["payload"] == {"data": {"messageAdded": {"id": message["id"], "body": "the same for both"}}}
    finally:
        for client in clients:
            await client.close()


async def test_messages_arriving_while_subscriptions_hand_over_arrive_once_in_order(company, subscribers):
    first = await company.inbound("before")
    clients = [await subscribers(company.ann.token) for _ in range(5)]

    async def write(count: int) -> list[str]:
        return [(await company.inbound(f"during {n}"))["id"] for n in range(count)]

    async def subscribe_all() -> None:
        for client in clients:
            # `after` makes each replay first, then hand over, while messages keep coming.
            await client.subscribe("subscription($a: String) { messageAdded(after: $a) { id cursor } }",
                                   {"a": first["cursor"]})
            await asyncio.sleep(0)

    written, _ = await asyncio.gather(write(30), subscribe_all())
    for client in clients:
        received = [(await client.next_data())["messageAdded"]["id"] for _ in written]
        # Everything after `before`, each exactly once, in order, whenever it subscribed.
        assert received == written
        assert await client.nothing_within(0.2)


@pytest.fixture
async def one_setup_at_a_time(monkeypatch):
    """The process's set-up slots down to one, for this test's event loop."""
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(direct, "SETTING_UP", 1)
    previous = direct._setup_slots.pop(loop, None)
    yield
    direct._setup_slots.pop(loop, None)
    if previous is not None:
        direct._setup_slots[loop] = previous


async def test_a_crowd_subscribing_at_once_is_set_up_in_turn(company, subscribers, one_setup_at_a_time):
    clients = [await subscribers(company.ann.token) for _ in range(5)]
    for client in clients:
        for _ in range(4):
            await client.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 20)

    message = await company.inbound("to the crowd")

    for client in clients:
        assert [(await client.next_data())["messageAdded"]["id"] for _ in range(4)] == [message["id"]] * 4


async def test_a_long_replay_to_a_client_that_does_not_read_holds_up_no_other_set_up(
        server, company, subscribers, one_setup_at_a_time):
    first = await company.inbound("x" * 4000)
    for n in range(100):
        await company.inbound("y" * 4000 + str(n))
    # A replay of 100 messages of 40 KB (each body ten times) to a client that reads nothing.
    stalled = await connect_without_reading(server, company.admin.token)
    big = " ".join(f"b{i}: body" for i in range(10))
    await stalled.send(json.dumps({"id": "replay", "type": "subscribe", "payload": {
        "query": f"subscription($a: String) {{ messageAdded(after: $a) {{ id {big} }} }}",
        "variables": {"a": first["cursor"]}}}))
    await asyncio.sleep(0.3)

    live = await subscribers(company.ann.token)
    await live.subscribe(MESSAGE_ADDED)
    await subscriptions_live(company, 1)
    message = await company.inbound("still live")

    assert (await live.next_data())["messageAdded"]["id"] == message["id"]
    stalled.transport.abort()
